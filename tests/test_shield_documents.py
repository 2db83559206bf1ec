"""The tracker shield on vendor documents a browser renders that are not HTML: an SVG figure
opened as a page, XML with an XHTML root, feeds. Each loads sub-resources and may run scripts,
so each gets the shield's Content-Security-Policy.

In real Chromium: a "tracker" server on `tracker.localhost:PORT` (Chromium resolves *.localhost
to loopback) counts every request it gets; each one would have come straight from the patron's
browser, with the patron's address.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from tests.browser_support import launch
from tests.canary import CANARY
from tests.harness import ldap_directory, vendor_toml, write_config

WWW = "www.vendor-one.test"


class Tracker:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                self.requests.append(head.split(b"\r\n", 1)[0])
                writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                await writer.drain()
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def tracker() -> Any:
    t = Tracker()
    await t.start()
    yield t
    await t.close()


async def _open(url: str, driver: Any) -> None:
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            context = await browser.new_context()
            await context.add_cookies(
                [
                    {
                        "name": driver.config.server.cookie_name,
                        "value": driver.session_id(),
                        "domain": ".proxy.localhost",
                        "path": "/",
                    }
                ]
            )
            page = await context.new_page()
            await page.goto(url)
            await page.wait_for_timeout(1500)
        finally:
            await browser.close()


async def _stack(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any, routes: Any
) -> Any:
    vendor = await vendor_factory(WWW)
    vendor.routes.update(routes)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    return driver


@pytest.mark.browser
async def test_svg_figure_cannot_reach_a_third_party(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    tracker: Tracker,
) -> None:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        f'<image href="http://tracker.localhost:{tracker.port}/pixel.gif" width="1" height="1"/>'
        "</svg>"
    ).encode()

    async def figure(request: web.Request) -> web.StreamResponse:
        return web.Response(body=svg, content_type="image/svg+xml")

    driver = await _stack(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, {"/fig.svg": figure}
    )
    await _open(f"http://{driver.mapped(WWW)}/fig.svg", driver)
    assert tracker.requests == [], "the patron's browser fetched from the third party directly"


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
    b'<image href="https://tracker.example-ads.test/pixel.gif" width="1" height="1"/>'
    b'<script href="https://tracker.example-ads.test/t.js"/></svg>'
)


XHTML_AS_XML = (
    b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
    b'<script src="https://tracker.example-ads.test/t.js"></script></head>'
    b'<body><img src="https://pixel.example-ads.test/p.gif"/></body></html>'
)


@pytest.mark.parametrize(
    ("ctype", "body"), [("image/svg+xml", SVG), ("application/xml", XHTML_AS_XML)]
)
async def test_svg_and_xml_documents_get_the_shield(
    ctype: str,
    body: bytes,
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    vendor = await vendor_factory(WWW)

    async def svg(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=ctype)

    vendor.routes["/figure.svg"] = svg
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    r = await driver.get_vendor(WWW, "/figure.svg")
    await r.read()
    assert "Content-Security-Policy" in r.headers, f"{ctype} document went out unshielded"
