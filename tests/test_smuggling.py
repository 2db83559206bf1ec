"""Request smuggling over raw sockets: ambiguous framing gets 400 and a closed connection, and the
vendor behind the proxy receives nothing.

What aiohttp's parser (llhttp, the C extension) does with each case was checked by hand first:
every row below is refused by the parser itself before any handler runs, so neither the proxy's
code nor the vendor ever sees these requests. The proxy re-frames every request it forwards (the
upstream client writes its own Content-Length or chunking), so a framing disagreement between the
proxy and a vendor's server cannot arise from a request that did parse. Tabs around a header
value (`Transfer-Encoding:\\tchunked`) are valid whitespace and parse normally; HTTP/1.0 with
Transfer-Encoding is read as chunked and the connection is closed after the response.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from proxy.app import SERVICES
from tests.canary import CANARY, leaks
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    one_vendor_proxy,
)
from tests.test_hostile_inputs import raw_exchange

VENDOR_HOST = "www.vendor-one.test"
SECRET = CANARY.uid  # placed in smuggled bodies: must not reach the vendor or the logs


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor]:
    driver, vendor = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, VENDOR_HOST
    )
    await driver.login(CANARY.uid, CANARY.password)
    return driver, vendor


# Each case is the part after the request line; {H} is the Host line, {C} the session cookie line.
CASES = {
    "cl-then-te": "POST /a HTTP/1.1\r\n{H}{C}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-then-cl": "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    "cl-te-smuggled-prefix": "POST /a HTTP/1.1\r\n{H}{C}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n{H}\r\n",
    "duplicate-cl-different": "POST /a HTTP/1.1\r\n{H}{C}Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "duplicate-cl-same": "POST /a HTTP/1.1\r\n{H}{C}Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
    "cl-list": "POST /a HTTP/1.1\r\n{H}{C}Content-Length: 4, 4\r\n\r\nabcd",
    "cl-plus-sign": "POST /a HTTP/1.1\r\n{H}{C}Content-Length: +4\r\n\r\nabcd",
    "cl-negative": "POST /a HTTP/1.1\r\n{H}{C}Content-Length: -1\r\n\r\nabcd",
    "obs-fold": "GET /a HTTP/1.1\r\n{H}{C}X-Folded: one\r\n two\r\n\r\n",
    "obs-fold-te": "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "chunk-size-not-hex": "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "chunk-size-negative": "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n",
    "chunk-size-overflow": "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "chunk-ext-bare-lf": "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding: chunked\r\n\r\n3;x\nabc\r\n0\r\n\r\n",
    "chunk-data-bare-lf": "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
    "te-unknown": "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-chunked-not-last": "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-twice": "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-space-before-colon": "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "bare-lf-request": "GET /a HTTP/1.1\n{H_LF}{C_LF}\n",
    "bare-lf-header": "GET /a HTTP/1.1\r\n{H}{C}X-A: b\nX-B: c\r\n\r\n",
    "two-hosts": "GET /a HTTP/1.1\r\n{H}Host: evil.test\r\n{C}\r\n",
    "no-host": "GET /a HTTP/1.1\r\n{C}\r\n",
    "nul-in-header": "GET /a HTTP/1.1\r\n{H}{C}X-A: a\x00b\r\n\r\n",
    "space-in-header-name": "GET /a HTTP/1.1\r\n{H}{C}X A: b\r\n\r\n",
    "bad-version": "GET /a HTTP/1.2\r\n{H}{C}\r\n",
    "bad-method": "G(T /a HTTP/1.1\r\n{H}{C}\r\n",
}


def _fill(template: str, driver: ProxyDriver) -> bytes:
    host = f"Host: {driver.mapped(VENDOR_HOST)}"
    cookie = f"Cookie: {driver.config.server.cookie_name}={driver.session_id()}"
    body_marker = f"X-Secret: {SECRET}\r\n"
    text = (
        template.replace("{H}", host + "\r\n")
        .replace("{C}", cookie + "\r\n" + body_marker)
        .replace("{H_LF}", host + "\n")
        .replace("{C_LF}", cookie + "\n")
    )
    return text.encode("latin-1")


@pytest.mark.parametrize("case", list(CASES))
async def test_ambiguous_framing_is_refused_and_the_connection_closed(
    setup: Any, case: str, log_stream: io.StringIO
) -> None:
    driver, vendor = setup
    status, closed, _ = await raw_exchange(driver.port, _fill(CASES[case], driver))
    assert status == 400
    assert closed
    assert vendor.requests == []
    assert leaks(log_stream.getvalue().encode()) == []
    app = driver.client.server.app
    assert await app[SERVICES].sessions.store.count() == 1, "only the login's own session"


async def test_a_well_framed_request_on_the_same_path_does_reach_the_vendor(setup: Any) -> None:
    """The control: the same request with honest framing is proxied (so the rows above could fail)."""
    driver, vendor = setup
    good = "POST /a HTTP/1.1\r\n{H}{C}Content-Length: 4\r\nConnection: close\r\n\r\nabcd"
    status, _, _ = await raw_exchange(driver.port, _fill(good, driver))
    assert status == 200
    assert [r.body for r in vendor.requests] == [b"abcd"]


async def test_pipelined_requests_are_framed_one_by_one(setup: Any) -> None:
    """Two honest pipelined requests arrive at the vendor as two requests, bodies intact."""
    driver, vendor = setup
    one = "POST /one HTTP/1.1\r\n{H}{C}Content-Length: 3\r\n\r\nabc"
    two = "POST /two HTTP/1.1\r\n{H}{C}Content-Length: 3\r\nConnection: close\r\n\r\nxyz"
    await raw_exchange(driver.port, _fill(one, driver) + _fill(two, driver))
    assert [(r.path_qs, r.body) for r in vendor.requests] == [("/one", b"abc"), ("/two", b"xyz")]


async def test_honest_chunked_body_gets_411_and_the_connection_closed(setup: Any) -> None:
    """Well-formed chunking parses, but its size cannot be checked up front (proxy.limits_http):
    411, the connection is closed so the unread body is never taken for a request."""
    driver, vendor = setup
    chunked = (
        "POST /a HTTP/1.1\r\n{H}{C}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        "GET /smuggled HTTP/1.1\r\n{H}{C}\r\n"
    )
    status, closed, _ = await raw_exchange(driver.port, _fill(chunked, driver))
    assert status == 411 and closed
    assert vendor.requests == []
