"""`public_url` written with a final `/`, as IT staff often copy a URL from a browser's address bar
(`public_url = "https://proxy.westonlibrary.org/"`). The config check accepts it, and every link
the proxy writes from it must come out the same as without the slash: no `//login`, no assertion
whose `iss` a vendor's verifier (configured with the proxy's origin) refuses.

No other test used such a URL, so each `rstrip("/")` on `public_url` (the pages' links, the
assertion's issuer, the "Try again" link, the refused-request pages' sign-in link) could go without
any test noticing; each test below fails when its own one is dropped."""

from __future__ import annotations

import asyncio
from html import unescape
from pathlib import Path
from typing import Any

import jwt
import pytest

from proxy.app import SERVICES
from proxy.errors import StoreUnavailable
from proxy.web.messages import MESSAGES, UI
from tests.canary import CANARY
from tests.harness import ProxyDriver, RecordingVendor, one_vendor_proxy

VENDOR_HOST = "www.slash-db.test"


@pytest.fixture
async def stack(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor]:
    plain = f'public_url = "http://proxy.localhost:{port}"'

    def with_slash(text: str) -> str:
        assert plain in text
        return text.replace(plain, f'public_url = "http://proxy.localhost:{port}/"')

    driver, vendor = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, VENDOR_HOST, edit=with_slash
    )
    assert driver.config.server.public_url.endswith(f":{port}/")
    return driver, vendor


@pytest.fixture
def proxy(stack: tuple[ProxyDriver, RecordingVendor]) -> ProxyDriver:
    return stack[0]


@pytest.fixture
def vendor(stack: tuple[ProxyDriver, RecordingVendor]) -> RecordingVendor:
    return stack[1]


def _origin(proxy: ProxyDriver) -> str:
    return f"http://proxy.localhost:{proxy.port}"


async def test_pages_link_to_the_proxy_without_a_doubled_slash(proxy: ProxyDriver) -> None:
    """proxy/web/pages.py `_public`: the sign-in page's own assets and links are written from
    `public_url`; with its final `/` kept they would all read `…:port//static/…`, which aiohttp
    answers with the "not found" page (no style sheet, broken links)."""
    _, html = await proxy.login_form()
    origin = _origin(proxy)
    assert f"{origin}/" in html
    assert f"{origin}//" not in html


async def test_the_assertion_issuer_is_the_origin_without_the_slash(
    proxy: ProxyDriver, vendor: RecordingVendor
) -> None:
    """proxy/services.py: the assertion's `iss` is `public_url` less its final `/`. A vendor
    verifies `iss` by exact comparison with the origin the library gave it; `…:port/` would fail
    every patron's request at that vendor."""
    assert (await proxy.login(CANARY.uid, CANARY.password)).status == 303
    r = await proxy.get_vendor(VENDOR_HOST, "/article")
    assert r.status == 200, await r.text()
    token = next(v for k, v in vendor.requests[-1].headers if k.lower() == "x-patron-assertion")
    r = await proxy.own("GET", "/.well-known/jwks.json")
    jwks = await r.json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    claims = jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["EdDSA"], audience="one", issuer=_origin(proxy)
    )
    assert claims["iss"] == _origin(proxy)


async def test_try_again_on_the_proxys_own_host_has_one_slash(proxy: ProxyDriver) -> None:
    """proxy/app.py `_try_again`: while the session store is down, a patron's menu gets the
    503 page with a "Try again" link to the same address; with `public_url`'s `/` kept it would
    be `…:port//menu`, the "not found" page once the store is back."""
    assert (await proxy.login(CANARY.uid, CANARY.password)).status == 303
    svc = proxy.client.app[SERVICES]

    async def down(*_: Any, **__: Any) -> Any:
        raise StoreUnavailable(reason="connection refused")

    svc.sessions.load = down
    r = await proxy.own("GET", "/menu?x=1")
    html = unescape(await r.text())
    assert r.status == 503
    assert MESSAGES["store_unavailable"].title in html
    assert UI["try_again"] in html
    assert f'href="{_origin(proxy)}/menu?x=1"' in html


async def test_a_refused_requests_page_links_to_sign_in_with_one_slash(
    proxy: ProxyDriver,
) -> None:
    """proxy/http_errors.py `_Pages`: a request whose cookies have grown past the header limit is
    refused by aiohttp's parser before any handler runs (431), with the proxy's page and its
    "Sign in" link built from `public_url`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(
            b"GET /menu HTTP/1.1\r\nHost: proxy.localhost\r\nCookie: a="
            + b"x" * 20_000
            + b"\r\n\r\n"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"431", head[:80]
    assert f'href="{_origin(proxy)}/login"'.encode() in body
    assert b"//login" not in body.replace(b"http://", b"")
