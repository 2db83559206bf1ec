"""From a mutation sweep by hand (1 December 2026), third pass over the forwarder's leftovers, with
WebSockets, the session cookie and forgetting (36 mutants, 13 survived the suite):
each test fails with the mutant its docstring names applied and passes on the code as it is.
Real slapd and aiohttp vendors on loopback; the canary patron only."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from proxy.forward import MAX_UNMAP_BODY
from proxy.services import SERVICES
from proxy.web.forget import FORGET_PATH, forget_urls
from proxy.web.session_cookie import clear_copies
from proxy.websocket import offered_protocols, sendable, wants_websocket
from tests.canary import CANARY
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

HOST = "www.vendor-one.test"
NAME = "weston_session"


@pytest.fixture
async def stack(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor]:
    vendor = await vendor_factory(HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        extra="\n[throttle.http]\nheader_timeout_s = 2\n",
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    return driver, vendor


# --- proxy/forward.py -------------------------------------------------------------------------


async def test_stalled_streamed_upload_is_answered_408(stack: Any) -> None:
    """kills: proxy/forward.py:_Paced.__aiter__ — `self.stalled = True` dropped.
    A patron whose streamed upload (a file to a vendor, too big or not a form to be read whole)
    stops arriving gets 408 "the request body stopped arriving", not a 502/504 that blames the
    database (and counts a vendor failure the library's staff would chase)."""
    driver, _vendor = stack
    reader, writer = await asyncio.open_connection("127.0.0.1", driver.port)
    try:
        writer.write(
            (
                f"POST /upload HTTP/1.1\r\nHost: {driver.mapped(HOST)}\r\n"
                f"Cookie: {NAME}={driver.session_id()}\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
            ).encode()
            + b"x" * 1000
        )
        await writer.drain()
        async with asyncio.timeout(20):
            head = await reader.readuntil(b"\r\n")
    finally:
        writer.close()
    assert head.split()[1] == b"408", head


async def _coded_post(driver: ProxyDriver, body: bytes) -> None:
    r = await driver.get_vendor(
        HOST,
        "/save",
        method="POST",
        data=gzip.compress(body),
        headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
    )
    assert r.status == 200, r.status


async def test_coded_body_is_mapped_back_only_up_to_the_bound(stack: Any) -> None:
    """kills: proxy/forward.py:Upstream._request_body — `len(body) <= MAX_UNMAP_BODY` dropped
    (every decoded gzip body mapped back, however large) or `<=` → `<`.
    A gzip-coded text body of exactly MAX_UNMAP_BODY decoded bytes has the proxy's mapped
    addresses in it mapped back to the vendor's; one byte more and it is forwarded as decoded,
    unscanned (the bound keeps a patron's large coded upload from costing a scan of all of it)."""
    driver, vendor = stack
    # The recording vendor is aiohttp with its default 1 MiB body limit; this one takes more.
    vendor.server.app._client_max_size = 4 * MAX_UNMAP_BODY
    mapped = f"http://{driver.mapped(HOST)}/record/42".encode()
    head = b"return=" + mapped + b"\r\nq="
    at_bound = head + b"x" * (MAX_UNMAP_BODY - len(head))
    assert len(at_bound) == MAX_UNMAP_BODY
    await _coded_post(driver, at_bound)
    got = [r for r in vendor.requests if r.method == "POST"][-1].body
    assert got.startswith(b"return=http://" + HOST.encode() + b"/record/42\r\n"), got[:200]
    await _coded_post(driver, at_bound + b"x")
    got = [r for r in vendor.requests if r.method == "POST"][-1].body
    assert got == at_bound + b"x", got[:200]


# --- proxy/websocket.py -----------------------------------------------------------------------


def test_application_close_codes_pass_through_to_4999() -> None:
    """kills: proxy/websocket.py:sendable — `3000 <= code <= 4999` → `3000 <= code < 4999`,
    and `range(1007, 1015)` → `range(1007, 1014)`.
    A vendor's script closing its socket with its own code (3000-4999, 4999 included) or with
    1014 (bad gateway) has the patron's page told that very code, which its reconnect logic reads."""
    assert sendable(4999) == 4999
    assert sendable(3000) == 3000
    assert sendable(1014) == 1014
    assert sendable(1015) == 1000
    assert sendable(5000, abnormal=1011) == 1011


def _ws_request(method: str, **headers: str) -> Any:
    base = {"Upgrade": "websocket", "Connection": "Upgrade"}
    return make_mocked_request(method, "/socket", headers={**base, **headers})


def test_only_a_get_becomes_a_socket() -> None:
    """kills: proxy/websocket.py:wants_websocket — `if request.method != "GET": return False`
    dropped. A POST (an upload a page makes) that carries Upgrade: websocket is forwarded as an
    ordinary request with its body, not taken for a socket handshake (RFC 6455 §4.1: GET only)."""
    assert wants_websocket(_ws_request("GET"))
    assert not wants_websocket(_ws_request("POST"))


def test_subprotocols_of_every_header_line_are_offered() -> None:
    """kills: proxy/websocket.py:offered_protocols — `",".join(getall(...))` → `get(...)`.
    A browser may send Sec-WebSocket-Protocol on two lines; the vendor is offered every
    subprotocol the page asked for, in order, or it refuses a page that would work directly."""
    from multidict import CIMultiDict

    headers = CIMultiDict(
        [("Sec-WebSocket-Protocol", "chat.v2, chat.v1"), ("Sec-WebSocket-Protocol", "json")]
    )
    request = make_mocked_request("GET", "/socket", headers=headers)
    assert offered_protocols(request) == ["chat.v2", "chat.v1", "json"]


# --- proxy/web/session_cookie.py --------------------------------------------------------------


def _deletions(path: str, host: str = "a-b.proxy.example.org:8443") -> list[str]:
    config = SimpleNamespace(
        server=SimpleNamespace(cookie_name=NAME),
        public=("https", "proxy.example.org", 8443),
    )
    resp = web.Response()
    request = make_mocked_request("GET", path, headers={"Host": host})
    clear_copies(resp, request, config)  # type: ignore[arg-type]
    return resp.headers.getall("Set-Cookie")


def test_a_conflict_deletes_every_path_and_host_copy() -> None:
    """kills: proxy/web/session_cookie.py:clear_copies — `.rsplit(":", 1)[0]` dropped from the
    request's host (the port kept: no deletion for the mapped host's Domain at all). The other
    assertions (host-only, whole path, prefixes with and without `/`, query cut) restate, at unit
    level, what tests/test_session_cookie.py already kills.
    After a tossed session cookie, every copy a page could have set is deleted: host-only, on
    the mapped host the request went to (without its port), for the whole path, each prefix
    with and without its `/`, and never a path with the query in it."""
    lines = _deletions("/a/b?x=1/y")
    expired = f"{NAME}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    for path in ("/", "/a", "/a/", "/a/b"):
        assert f"{expired}; Path={path}" in lines, (path, lines)
        for domain in ("a-b.proxy.example.org", "proxy.example.org", "example.org"):
            assert f"{expired}; Domain={domain}; Path={path}" in lines, (path, domain, lines)
    assert not [line for line in lines if "x=1" in line or ":8443" in line], lines


# --- proxy/web/forget.py ----------------------------------------------------------------------


async def test_forget_answer_is_not_cached_and_parts_wrap(stack: Any) -> None:
    """kills: proxy/web/forget.py:forget_here — `int(part) % PARTS` → `int(part)`.
    A signed forget address whose part number is past PARTS still deletes its share of the
    vendor cookies (the same as part 0 for part 2) instead of answering 204 and deleting
    nothing. (Its `Cache-Control: no-store` assertion restates what
    tests/test_sign_out_forgets.py already kills.)"""
    driver, _vendor = stack
    app = driver.client.server.app
    url = forget_urls(app[SERVICES], [HOST])[0]
    query = url.split("?", 1)[1].replace("part=0", "part=2")
    r = await driver.client.get(
        f"{FORGET_PATH}?{query}",
        headers={"Host": driver.mapped(HOST), "Cookie": "vendor_pref=1; tracker=2"},
    )
    assert r.status == 204, r.status
    assert r.headers.get("Cache-Control") == "no-store", r.headers
    deleted = r.headers.getall("Set-Cookie", [])
    r0 = await driver.client.get(
        f"{FORGET_PATH}?{query.replace('part=2', 'part=0')}",
        headers={"Host": driver.mapped(HOST), "Cookie": "vendor_pref=1; tracker=2"},
    )
    assert sorted(deleted) == sorted(r0.headers.getall("Set-Cookie", [])), deleted


async def test_forget_token_is_valid_on_an_uppercase_host(stack: Any) -> None:
    """kills: proxy/web/forget.py:_valid — `.lower()` of the request's host dropped.
    A forget image whose Host arrives in capitals (host names are case-insensitive; some
    clients and terminators keep the case they were given) still clears the vendor's storage,
    since the token is signed for the lowercase host."""
    driver, _vendor = stack
    app = driver.client.server.app
    url = forget_urls(app[SERVICES], [HOST])[0]
    r = await driver.client.get(
        f"{FORGET_PATH}?{url.split('?', 1)[1]}", headers={"Host": driver.mapped(HOST).upper()}
    )
    assert r.status == 204, r.status
    assert r.headers.get("Clear-Site-Data"), r.headers


def test_forget_deletions_are_secure_on_an_https_proxy() -> None:
    """kills: proxy/web/forget.py:clear_page_cookies — `config.public[0] == "https"` → `False`.
    On a proxy served over https, a vendor script's `__Secure-` cookie (a browser refuses to
    change one without Secure) is deleted by the forget answer like any other: the next person
    at a shared computer does not get it back."""
    from proxy.web.forget import PARTS, clear_page_cookies

    config = SimpleNamespace(
        server=SimpleNamespace(cookie_name=NAME), public=("https", "proxy.example.org", None)
    )
    request = make_mocked_request(
        "GET",
        FORGET_PATH,
        headers={"Host": "www-vendor-one-test.proxy.example.org", "Cookie": "__Secure-pref=1"},
    )
    lines: list[str] = []
    for part in range(PARTS):
        resp = web.Response()
        clear_page_cookies(resp, request, config, keep=frozenset({NAME}), part=part)  # type: ignore[arg-type]
        lines += resp.headers.getall("Set-Cookie", [])
    assert lines and all(line.startswith("__Secure-pref=;") for line in lines), lines
    assert all("; Secure" in line for line in lines), lines


async def test_socket_handshake_leaves_without_content_length(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/websocket.py:VendorSockets.connect — the `content-length` filter of the
    handshake's headers dropped. A patron's handshake that carries a Content-Length (the
    allowlist keeps it for requests with bodies) reaches the vendor without it: a handshake has
    no body, and a length on it would make the vendor read the first frames as one."""
    from tests.test_websocket import _socket_headers, _stack

    driver, vendor, _sockets = await _stack(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    headers = {**_socket_headers(driver), "Content-Length": "0"}
    ws = await driver.client.ws_connect("/ws", headers=headers)
    try:
        await ws.send_str("hello")
        msg = await ws.receive(timeout=5)
        assert msg.data == "echo:hello", msg
    finally:
        await ws.close()
    handshake = [r for r in vendor.requests if r.path_qs.startswith("/ws")][-1]
    assert "content-length" not in {k.lower() for k, _ in handshake.headers}, handshake.headers


async def test_sockets_ignore_proxy_environment_variables(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kills: proxy/websocket.py:VendorSockets.client — `trust_env=False` → `True`.
    A host whose environment names an HTTP proxy (HTTP_PROXY, WS_PROXY ...) still opens the
    patron's sockets straight to the vendor, as pages go: the assertion and the patron's
    vendor cookies never pass through a machine the vendor files do not name."""
    from tests.test_websocket import _socket_headers, _stack

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "WS_PROXY", "WSS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
        monkeypatch.setenv(var.lower(), "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    driver, _vendor, _sockets = await _stack(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    ws = await driver.client.ws_connect("/ws", headers=_socket_headers(driver))
    try:
        await ws.send_str("direct")
        msg = await ws.receive(timeout=5)
        assert msg.data == "echo:direct", msg
    finally:
        await ws.close()


def test_a_close_without_a_code_is_passed_on_as_normal() -> None:
    """kills: proxy/websocket.py:sendable — the `code is None or code == 1005` branch dropped
    (`3000 <= None` then raises in the relay, and 1005 becomes the `abnormal` code). A side
    that closes without saying why has the other side told 1000, not a proxy failure."""
    assert sendable(None, abnormal=1011) == 1000
    assert sendable(1005, abnormal=1011) == 1000


async def test_a_store_outage_closes_sockets_with_1011(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kills: proxy/websocket.py:SocketRelay._watch — `INTERNAL_ERROR` → `POLICY` on
    StoreUnavailable. When the session store cannot be asked, the patron's socket is closed
    with 1011 (the page's script may try again), not 1008, which says the session ended."""
    from proxy.errors import StoreUnavailable
    from tests.test_websocket import _socket_headers, _stack

    driver, _vendor, _sockets = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        server_extra="websocket_check_s = 0.2",
    )
    ws = await driver.client.ws_connect("/ws", headers=_socket_headers(driver))
    try:
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "echo:hello"
        app = driver.client.app
        assert app is not None
        sessions = app[SERVICES].sessions

        async def down(session_id: str) -> Any:
            raise StoreUnavailable("redis down")

        monkeypatch.setattr(sessions, "load", down)
        msg = await ws.receive(timeout=5)
    finally:
        await ws.close()
    assert msg.type.name == "CLOSE" and msg.data == 1011, msg
