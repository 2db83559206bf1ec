"""Browser-test support: a real proxy + slapd + demo vendor stack, and page checks run in Chromium.

The proxy listens on 127.0.0.1 and is reached as http://proxy.localhost:PORT — Chromium resolves
every *.localhost name to loopback by itself, so the host-mapped vendor hosts work without any
resolver rules. The checks (axe-core, reflow, page weight, outside requests) take a Playwright page.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import (
    Browser,
    BrowserContext,
    Error,
    Page,
    Request,
    Response,
    async_playwright,
)

from proxy.app import SERVICES, Services
from proxy.demo_vendor import DEMO_HOST, create_demo_vendor_app
from proxy.hosts import map_label
from tests.fixtures_ldap import generic_uid
from tests.harness import (
    ProxyDriver,
    free_port,
    ldap_directory,
    sign_in_through_form,
    start_proxy,
    write_config,
)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_JS = ROOT / "build" / "node_modules" / "axe-core" / "axe.min.js"
SOCKET_IO_JS = ROOT / "build" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 700}
# 400 % zoom of a 1280 by 1024 window leaves 320 by 256 CSS pixels (WCAG 1.4.10 Reflow).
ZOOM_400 = {"width": 320, "height": 256}
PAGE_BUDGET = 50 * 1024
DEAD_HOST = "www.gazette-archive.test"

# A menu that looks like a real library's: the demo vendor is the one that answers; the others
# point at a port where nothing listens (they show the "database isn't responding" page).
OTHER_VENDORS = {
    "gazette": ("Gazette Archive 1890-1990", "Scanned local newspapers, searchable by name."),
    "consumer": ("Consumer Reports", "Product ratings and buying guides."),
    "health": ("Health & Wellness Resource Center", "Articles on medicine, diet and fitness."),
    "legal": ("Legal Forms Library", "Connecticut legal forms with instructions."),
    "news": ("Newsbank: Connecticut Newspapers", "Today's and past news from around the state."),
}


@dataclass
class Stack:
    """A running proxy with the demo vendor behind it; `url()` gives browser addresses."""

    driver: ProxyDriver
    client: TestClient[Any, Any]
    vendor_server: TestServer
    root: Path
    # Synthetic cards for wrong-PIN tests, a fresh one each time so the per-card sign-in
    # throttle of one test never decides another test's page.
    spare_cards: Iterator[str] = field(default_factory=lambda: map(generic_uid, itertools.count()))

    @property
    def port(self) -> int:
        return self.driver.port

    def url(self, path: str = "/") -> str:
        return f"http://proxy.localhost:{self.port}{path}"

    def mapped_url(self, vendor_host: str, path: str = "/") -> str:
        return f"http://{map_label(vendor_host)}.proxy.localhost:{self.port}{path}"

    def own_hosts(self) -> set[str]:
        """Hosts the browser may talk to: the proxy's own and its mapped vendor hosts."""
        return {"proxy.localhost"} | {
            f"{map_label(h)}.proxy.localhost"
            for v in self.driver.config.vendors
            for h in v.hosts
            if not h.startswith("*.")
        }

    @property
    def services(self) -> Services:
        app = self.client.app
        assert app is not None
        svc: Services = app[SERVICES]
        return svc

    def next_card(self) -> str:
        return next(self.spare_cards)

    async def close(self) -> None:
        await self.client.close()
        await self.vendor_server.close()


def _vendor_toml(vid: str, title: str, description: str, host: str, connect_port: int) -> str:
    return textwrap.dedent(
        f"""\
        id = "{vid}"
        title = "{title}"
        description = "{description}"
        origin = "http://{host}"
        hosts = ["{host}"]
        auth = "assertion"
        connect_to = "127.0.0.1:{connect_port}"

        [contract]
        privacy_policy_url = "https://{host}/privacy"
        reviewed = 2026-06-01
        expires = 2027-06-30
        retention_days = 30
        """
    )


async def start_stack(
    root: Path, slapd: Any, *, idle_timeout_s: int = 1800, web_dir: Path | None = None
) -> Stack:
    """Demo vendor + proxy (real slapd directory) on free loopback ports."""
    root.mkdir(parents=True, exist_ok=True)
    holder: dict[str, Any] = {}
    vendor_app = create_demo_vendor_app(
        origin=f"http://{DEMO_HOST}",
        audience="demo",
        jwks=lambda: holder["stack"].services.signer.jwks(),
    )
    vendor_server = TestServer(vendor_app, host="127.0.0.1")
    await vendor_server.start_server()
    assert vendor_server.port is not None
    dead_port = free_port()
    vendors = {
        "demo": _vendor_toml(
            "demo",
            "Demo Database (vendor's-eye view)",
            "Shows exactly what a database receives through the library's proxy.",
            DEMO_HOST,
            vendor_server.port,
        )
    }
    for i, (vid, (title, description)) in enumerate(OTHER_VENDORS.items()):
        host = DEAD_HOST if vid == "gazette" else f"www.{vid}-{i}.test"
        vendors[vid] = _vendor_toml(vid, title, description, host, dead_port)
    cfg = write_config(
        root,
        port=free_port(),
        directory=ldap_directory(slapd, root),
        vendors=vendors,
        session=f'store = "memory"\nidle_timeout_s = {idle_timeout_s}\n',
        # Every browser signs in from 127.0.0.1: the per-address limit would mix tests up.
        extra="\n[throttle]\naddress_limit = 1000\n",
    )
    if web_dir is not None:
        (root / "web").symlink_to(web_dir)
    client, driver = await start_proxy(cfg, io.StringIO())
    stack = Stack(driver=driver, client=client, vendor_server=vendor_server, root=root)
    holder["stack"] = stack
    return stack


async def launch(playwright: Any) -> Browser:
    browser: Browser = await playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    return browser


@contextlib.asynccontextmanager
async def axe_browser() -> AsyncIterator[Browser]:
    """Chromium for the accessibility checks (a module fixture's body); skips the module when
    axe-core is not installed."""
    if not AXE_JS.is_file():
        pytest.skip("axe-core missing: run scripts/setup --test")
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Watch:
    """What a page did: every request (URL, resource type) and every console error."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def outside(self, allowed_hosts: set[str]) -> list[str]:
        """Requests to a host not in `allowed_hosts`."""
        return [u for u, _ in self.requests if (urlsplit(u).hostname or "") not in allowed_hosts]

    def assets_not_from(self, host: str) -> list[str]:
        """Sub-resources (styles, scripts, images, fetches) not loaded from `host`."""
        return [
            u for u, kind in self.requests if kind != "document" and urlsplit(u).hostname != host
        ]

    def csp_refusals(self) -> list[str]:
        return [m for m in self.console_errors if "Content Security Policy" in m]


async def new_page(
    browser: Browser, viewport: dict[str, int] = DESKTOP, **options: Any
) -> tuple[BrowserContext, Page, Watch]:
    context = await browser.new_context(viewport=viewport, **options)  # type: ignore[arg-type]
    page = await context.new_page()
    watch = Watch()

    def on_request(request: Request) -> None:
        if not request.url.startswith(("data:", "about:")):
            watch.requests.append((request.url, request.resource_type))

    page.on("request", on_request)
    page.on("response", lambda r: watch.responses.append(r))
    page.on("console", lambda m: watch.console_errors.append(m.text) if m.type == "error" else None)
    return context, page, watch


async def axe_serious(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page (WCAG 2.x A/AA rules and best practice).

    axe is evaluated through DevTools, so the page's own CSP (`script-src 'self'`) stays in force.
    """
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE_JS.read_text())
    result: dict[str, Any] = await page.evaluate(
        """async () => await axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                                            'wcag22aa', 'best-practice']},
            resultTypes: ['violations']})"""
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the viewport (0 = no horizontal scrolling)."""
    overflow: int = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return overflow


async def page_weight(watch: Watch, since: int = 0) -> int:
    """Bytes of the bodies of every response the page received from `watch.responses[since:]`
    (decoded, so compression can't hide weight; cross-host assets count too)."""
    total = 0
    for response in watch.responses[since:]:
        if 300 <= response.status < 400:
            continue  # a redirect has no body to count
        try:
            total += len(await response.body())
        except Error:
            continue  # a response the browser dropped (e.g. a navigation it left)
    return total


async def shoot(page: Page, name: str) -> None:
    """Full-page screenshots of the page as it is, at desktop and phone width, into SCREENSHOTS."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(viewport)  # type: ignore[arg-type]
        await page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    if before is not None:
        await page.set_viewport_size(before)


@contextlib.asynccontextmanager
async def signed_in(
    own: str, card: str | None = None, pin: str | None = None
) -> AsyncIterator[tuple[BrowserContext, Page]]:
    """A fresh headless Chromium whose patron (the canary patron unless `card` and `pin` are
    given) has signed in through the real form at `own`, the proxy's origin: its context and
    page, the browser closed afterwards."""
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            await sign_in_through_form(page, own, card, pin)
            yield context, page
        finally:
            await browser.close()
