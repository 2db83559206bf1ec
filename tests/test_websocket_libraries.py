"""socket.io, the most used WebSocket library, through the proxy in headless Chromium.

The vendor is a python-socketio server (its aiohttp integration) that records every HTTP request
it receives, and serves a page loading socket.io's own browser client (`socket.io-client`,
installed by `scripts/setup --test`) from the vendor itself. The client connects with its
defaults: Engine.IO long-polling first (XHR GETs and POSTs on `/socket.io/`), then the upgrade
to a WebSocket on the same path. The patron signs in through the real sign-in form.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import socketio
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.hosts import map_label
from tests.browser_support import SOCKET_IO_JS
from tests.canary import CANARY, leaks
from tests.harness import ProxyDriver, Recorded, ldap_directory, write_config

pytestmark = pytest.mark.browser

HOST = "www.vendor-one.test"
ENGINE_PATH = "/socket.io/"
STICKY = "AWSALB"  # the cookie an AWS load balancer keeps a client on one target with
# What a vendor must never hear from a patron's browser (P3): any spelling of these.
FORWARDING = ("forwarded", "x-forwarded", "x-real-ip", "true-client-ip", "via", "client-ip")

LIVE_PAGE = """<!doctype html><html><head><title>live</title>
<script src="/socket.io.min.js"></script></head><body>
<p id="out">waiting</p>
<script>
window.events = [];
const note = (e) => {
  window.events.push(e);
  document.getElementById("out").textContent = window.events.join(" | ");
};
const socket = io();  // this host, path /socket.io/, transports ["polling", "websocket"]
window.socket = socket;
socket.on("connect", () => {
  note("connect");
  socket.emit("hello", "first", (reply) => note(reply));
});
socket.on("disconnect", (reason) => note("disconnect:" + reason));
socket.on("connect_error", (err) => note("connect_error:" + err.message));
socket.io.on("open", () => {
  socket.io.engine.on("upgrade", (transport) => {
    note("upgrade:" + transport.name);
    socket.emit("hello", "second", (reply) => note(reply));
  });
});
</script></body></html>"""


class _BodyAlreadyRead:
    """The request as Engine.IO reads it, for a body the vendor has read already (to record
    it): `content.read()` gives those bytes again. Engine.IO's aiohttp driver reads nothing else
    of a polling POST that a `web.Request` would not give."""

    def __init__(self, request: web.Request, body: bytes) -> None:
        self._request = request
        self._body = body

    @property
    def content(self) -> _BodyAlreadyRead:
        return self

    async def read(self, n: int = -1) -> bytes:
        data, self._body = (self._body, b"") if n < 0 else (self._body[:n], self._body[n:])
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


@dataclass
class SocketIOVendor:
    """A vendor whose live features are python-socketio; records each HTTP request it gets.

    With `sticky`, it stands behind a load balancer with sticky sessions: every polling answer
    sets AWSALB (a new value each time, as AWS does), and the WebSocket upgrade is refused (400,
    what another node answers for a session it does not know) unless it carries one of them."""

    host: str
    sticky: bool = False
    requests: list[Recorded] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    connected: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    refused_upgrades: int = 0
    server: TestServer | None = None

    def __post_init__(self) -> None:
        # Default CORS: only the vendor's own origin, as checked against the Host it hears.
        self.sio = socketio.AsyncServer(async_mode="aiohttp")
        self.sio.on("connect", self._connect)
        self.sio.on("hello", self._hello)
        self.sio.on("disconnect", self._disconnect)

    async def _connect(self, sid: str, environ: dict[str, Any], *_: Any) -> None:
        self.connected.append(sid)

    async def _hello(self, sid: str, data: str) -> str:
        self.events.append(data)
        return f"reply:{data}"

    async def _disconnect(self, sid: str, *reason: Any) -> None:
        self.disconnects.append(str(reason[0]) if reason else "")

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port

    def engine_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path_qs.startswith(ENGINE_PATH)]

    def all_bytes(self) -> bytes:
        return b"\n".join(r.raw() for r in self.requests)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        """Its sockets closed first: the web server's shutdown would wait for them."""
        if self.sio.eio.sockets:
            await self.sio.eio.disconnect()
        await self.sio.shutdown()
        if self.server is not None:
            await self.server.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(
                request.method, request.path_qs, list(request.headers.items()), body, request.host
            )
        )
        if request.path == "/live":
            return web.Response(text=LIVE_PAGE, content_type="text/html")
        if request.path == "/socket.io.min.js":
            return web.Response(
                body=SOCKET_IO_JS.read_bytes(), content_type="application/javascript"
            )
        if request.path != ENGINE_PATH:
            return web.Response(status=404, text="not here")
        transport = request.query.get("transport")
        if (
            self.sticky
            and transport == "websocket"
            and request.cookies.get(STICKY) not in self.issued
        ):
            self.refused_upgrades += 1
            return web.Response(status=400, text='{"code":1,"message":"Session ID unknown"}')
        answer: web.StreamResponse = await self.sio.handle_request(
            _BodyAlreadyRead(request, body) if body else request
        )
        if self.sticky and transport == "polling" and not answer.prepared:
            value = base64.b64encode(secrets.token_bytes(30)).decode()  # "+", "/" and "=" too
            self.issued.append(value)
            answer.headers.add(
                "Set-Cookie", f"{STICKY}={value}; Expires=Tue, 01 Jan 2036 00:00:00 GMT; Path=/"
            )
        return answer


@dataclass
class Browsing:
    """What Chromium did across a context's pages: every request, response and WebSocket."""

    requests: list[str] = field(default_factory=list)
    responses: list[tuple[str, int, str]] = field(default_factory=list)  # url, status, Location
    sockets: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> Any:
        page.on("request", lambda r: self.requests.append(r.url))
        page.on(
            "response",
            lambda r: self.responses.append((r.url, r.status, r.headers.get("location", ""))),
        )
        page.on("websocket", lambda ws: self.sockets.append(ws.url))
        page.on(
            "console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None
        )
        return page

    def outside(self, hosts: set[str]) -> list[str]:
        urls = [*self.requests, *self.sockets]
        return [
            u
            for u in urls
            if not u.startswith(("data:", "about:")) and (urlsplit(u).hostname or "") not in hosts
        ]


async def _stack(
    tmp_path: Path,
    port: int,
    slapd: Any,
    proxy_factory: Any,
    vendors: list[SocketIOVendor],
    *,
    sticky: bool = False,
    server_extra: str = "",
) -> tuple[ProxyDriver, SocketIOVendor]:
    if not SOCKET_IO_JS.is_file():
        pytest.skip("socket.io-client missing: run scripts/setup --test")
    vendor = SocketIOVendor(HOST, sticky=sticky)
    vendors.append(vendor)
    await vendor.start()
    files = {
        "one": textwrap.dedent(
            f"""\
            id = "one"
            title = "Live Database"
            origin = "http://{HOST}"
            hosts = ["{HOST}"]
            auth = "assertion"
            connect_to = "127.0.0.1:{vendor.port}"
            """
        )
    }
    cfg = write_config(
        tmp_path, port=port, directory=ldap_directory(slapd, tmp_path), vendors=files
    )
    if server_extra:
        text = cfg.read_text()
        cfg.write_text(text.replace("[server]\n", "[server]\n" + server_extra + "\n", 1))
    driver: ProxyDriver = await proxy_factory(cfg)
    return driver, vendor


@pytest.fixture
async def vendors() -> Any:
    """Where `_stack` puts the vendors it starts; all closed at the end of the test."""
    started: list[SocketIOVendor] = []
    yield started
    for v in started:
        await v.close()


@pytest.fixture
async def browser(vendors: list[SocketIOVendor]) -> Any:
    """Chromium, closed before the vendors are (a vendor's shutdown waits for its open sockets)."""
    from playwright.async_api import async_playwright

    from tests.browser_support import launch

    async with async_playwright() as p:
        b = await launch(p)
        try:
            yield b
        finally:
            await b.close()


async def _sign_in(page: Any, own: str) -> None:
    """The real sign-in form, as a patron fills it."""
    await page.goto(f"{own}/login")
    await page.fill("input[name=username]", CANARY.uid)
    await page.fill("input[name=password]", CANARY.password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{own}/menu")


async def _open_live(page: Any, driver: ProxyDriver) -> None:
    """The vendor's live page, until the socket runs over a WebSocket and both replies (one
    sent before the upgrade, one after) are on the page."""
    await page.goto(f"http://{driver.mapped(HOST)}/live")
    try:
        await page.wait_for_function(
            """() => window.socket && window.socket.connected
                && window.socket.io.engine.transport.name === 'websocket'
                && window.events.includes('reply:first')
                && window.events.includes('reply:second')""",
            timeout=10_000,
        )
    except Exception as exc:
        events = await page.evaluate("() => window.events")
        raise AssertionError(f"socket.io never got going through the proxy: {events}") from exc


def _own_hosts() -> set[str]:
    return {"proxy.localhost", f"{map_label(HOST)}.proxy.localhost"}


def _headers(record: Recorded) -> dict[str, str]:
    return {k.lower(): v for k, v in record.headers}


def _transport(record: Recorded) -> str:
    return parse_qs(urlsplit(record.path_qs).query).get("transport", [""])[0]


async def _session_cookie(context: Any, driver: ProxyDriver) -> str:
    [value] = [
        c["value"] for c in await context.cookies() if c["name"] == driver.config.server.cookie_name
    ]
    return str(value)


async def test_socket_io_polls_then_upgrades_to_a_websocket_through_the_proxy(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    proxy_factory: Any,
    vendors: list[SocketIOVendor],
    browser: Any,
) -> None:
    """socket.io's client with its defaults on a vendor page: the long-polling handshake, the
    events and the upgrade all go through the proxy; the replies come back on the page and the
    transport ends as "websocket". Every request the vendor got is scrubbed (no proxy cookie,
    no canary, no forwarding header), and Chromium talked to no host but the proxy's."""
    driver, vendor = await _stack(tmp_path, port, running_slapd, proxy_factory, vendors)
    own = f"http://{driver.public}"
    context = await browser.new_context()
    seen = Browsing()
    page = seen.watch(await context.new_page())
    await _sign_in(page, own)
    await _open_live(page, driver)
    sid = await _session_cookie(context, driver)
    events = await page.evaluate("() => window.events")
    assert "connect" in events  # before or after the upgrade, as the race goes
    assert "upgrade:websocket" in events
    assert await page.evaluate("() => window.socket.io.engine.transport.name") == "websocket"
    await context.close()

    assert sorted(vendor.events) == ["first", "second"]
    engine = vendor.engine_requests()
    polls = [r for r in engine if _transport(r) == "polling"]
    upgrades = [r for r in engine if _transport(r) == "websocket"]
    assert {r.method for r in polls} == {"GET", "POST"}  # handshake and long polls; packets sent
    assert "sid=" not in polls[0].path_qs  # the Engine.IO handshake came through, then the rest
    assert len(upgrades) == 1
    upgrade = _headers(upgrades[0])
    assert upgrade["upgrade"].lower() == "websocket"
    assert upgrade["origin"] == f"http://{HOST}"
    for record in vendor.requests:
        headers = _headers(record)
        assert record.host == HOST
        assert "cookie" not in headers, (record.path_qs, headers.get("cookie"))
        assert [h for h in headers if h.startswith(FORWARDING)] == [], record.path_qs
        assert "x-patron-assertion" in headers
    raw = vendor.all_bytes()
    assert sid.encode() not in raw
    assert driver.config.server.cookie_name.encode() not in raw
    assert leaks(raw) == []
    assert seen.outside(_own_hosts()) == []
    [socket_url] = seen.sockets
    assert socket_url.startswith(f"ws://{driver.mapped(HOST)}{ENGINE_PATH}?")
    assert [m for m in seen.console_errors if "Content Security Policy" in m] == []


async def test_a_sticky_session_cookie_from_polling_goes_on_the_upgrade(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    proxy_factory: Any,
    vendors: list[SocketIOVendor],
    browser: Any,
) -> None:
    """Behind a load balancer with sticky sessions, the vendor sets AWSALB on its polling
    answers and takes the WebSocket upgrade only with it: the session's jar carries it from the
    polls to the handshake, so the upgrade succeeds. The browser never sees the cookie."""
    driver, vendor = await _stack(
        tmp_path, port, running_slapd, proxy_factory, vendors, sticky=True
    )
    own = f"http://{driver.public}"
    context = await browser.new_context()
    page = await context.new_page()
    await _sign_in(page, own)
    await _open_live(page, driver)
    assert await page.evaluate("() => window.socket.io.engine.transport.name") == "websocket"
    browser_cookies = {c["name"] for c in await context.cookies()}
    await context.close()

    assert STICKY not in browser_cookies  # kept in the session's jar on the proxy
    assert vendor.refused_upgrades == 0
    engine = vendor.engine_requests()
    [upgrade] = [r for r in engine if _transport(r) == "websocket"]
    cookie = _headers(upgrade).get("cookie", "")
    assert cookie.startswith(f"{STICKY}=")
    assert cookie.removeprefix(f"{STICKY}=") in vendor.issued
    # Every request after the first answer carried a value the balancer issued.
    for record in engine[1:]:
        value = _headers(record).get("cookie", "").removeprefix(f"{STICKY}=")
        assert value in vendor.issued, (record.method, record.path_qs, value)


async def test_sign_out_ends_the_live_socket_io_connection(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    proxy_factory: Any,
    vendors: list[SocketIOVendor],
    browser: Any,
) -> None:
    """The patron signs out (the button on the menu, in another tab) while the vendor page's
    socket is open: the socket closes within `websocket_check_s`, the client's `disconnect`
    fires, and its reconnection attempts get the sign-in redirect, never a socket again; the
    vendor hears nothing more from the page."""
    driver, vendor = await _stack(
        tmp_path,
        port,
        running_slapd,
        proxy_factory,
        vendors,
        server_extra="websocket_check_s = 0.2",
    )
    own = f"http://{driver.public}"
    context = await browser.new_context()
    seen = Browsing()
    page = seen.watch(await context.new_page())
    await _sign_in(page, own)
    await _open_live(page, driver)
    polled = len(vendor.engine_requests())
    answered = len(seen.responses)
    sockets_before = len(seen.sockets)

    menu = seen.watch(await context.new_page())
    await menu.goto(f"{own}/menu")
    await menu.click("form.signout button[type=submit]")
    await menu.wait_for_load_state()
    await page.wait_for_function(
        "() => window.events.some((e) => e.startsWith('disconnect:'))", timeout=5_000
    )
    # socket.io retries after 0.5-1.5 s, then backs off: wait for its first attempts.
    for _ in range(100):
        retries = [r for r in seen.responses[answered:] if urlsplit(r[0]).path == ENGINE_PATH]
        if len(retries) >= 1:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)
    events = await page.evaluate("() => window.events")
    connected = await page.evaluate("() => window.socket.connected")
    await context.close()

    disconnect = next(e for e in events if e.startswith("disconnect:"))
    assert disconnect == "disconnect:transport close"
    after = events[events.index(disconnect) :]
    assert "connect" not in after and not connected
    assert any(e.startswith("connect_error:") for e in after)
    retries = [r for r in seen.responses[answered:] if urlsplit(r[0]).path == ENGINE_PATH]
    assert retries, "socket.io never tried to reconnect"
    for url, status, location in retries:
        assert status == 302, (url, status)
        assert location.startswith(f"{own}/login?url="), location
    assert len(seen.sockets) == sockets_before  # no WebSocket opened again
    assert [r.path_qs for r in vendor.engine_requests()[polled:]] == []  # the vendor heard none
    assert vendor.disconnects  # the vendor's side of the socket was closed too
