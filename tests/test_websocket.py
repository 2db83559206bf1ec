"""WebSockets through the proxy: the handshake passes the same gate and scrub as a page, messages
flow both ways unchanged, and a socket ends when its session does.

Real slapd, a real aiohttp vendor that speaks WebSocket and records every handshake, the proxy
on a real port; the patron is aiohttp's WebSocket client here and headless Chromium in
`test_browser_page_opens_a_socket_to_the_vendor`.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from tests.canary import CANARY, leaks
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    ldap_directory,
    sign_in_through_form,
    vendor_toml,
    write_config,
)

HOST = "www.vendor-one.test"
ASSERTION_HEADER = "X-Patron-Assertion"


class SocketVendor:
    """What the vendor's socket endpoint saw: each message, and how each socket closed."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Any]] = []
        self.closed: list[int | None] = []
        self.opened = 0

    async def echo(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("chat.v2",))
        await ws.prepare(request)
        self.opened += 1
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                self.messages.append(("text", msg.data))
                if msg.data.startswith("close:"):
                    await ws.close(code=int(msg.data.split(":")[1]), message=b"vendor says bye")
                    break
                await ws.send_str("echo:" + msg.data)
            elif msg.type == WSMsgType.BINARY:
                self.messages.append(("binary", msg.data))
                await ws.send_bytes(msg.data[::-1])
        self.closed.append(ws.close_code)
        return ws

    async def page_with_cookie(self, request: web.Request) -> web.StreamResponse:
        resp = web.Response(text="<html><body>vendor page</body></html>", content_type="text/html")
        resp.set_cookie("vsession", "vendor-jar-value", path="/")
        return resp

    async def refuse(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=403, text="no sockets for you")


async def _stack(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    server_extra: str = "",
) -> tuple[ProxyDriver, RecordingVendor, SocketVendor]:
    vendor: RecordingVendor = await vendor_factory(HOST)
    sockets = SocketVendor()
    vendor.routes["/ws"] = sockets.echo
    vendor.routes["/page"] = sockets.page_with_cookie
    vendor.routes["/refuse"] = sockets.refuse
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    if server_extra:
        text = cfg.read_text()
        cfg.write_text(text.replace("[server]\n", "[server]\n" + server_extra + "\n", 1))
    driver: ProxyDriver = await proxy_factory(cfg)
    r = await driver.login(CANARY.uid, CANARY.password)
    assert r.status == 303
    return driver, vendor, sockets


def _socket_headers(driver: ProxyDriver, sid: str | None = None) -> dict[str, str]:
    mapped = driver.mapped(HOST)
    sid = sid if sid is not None else driver.session_id()
    headers = {
        "Host": mapped,
        "Origin": f"http://{mapped}",
        "X-Forwarded-For": "203.0.113.77",
        "User-Agent": "Mozilla/5.0 test",
    }
    if sid:
        headers["Cookie"] = f"{driver.config.server.cookie_name}={sid}; tracker=canary-cookie"
    return headers


_WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_close=5.0)


async def _connect(
    driver: ProxyDriver, path: str = "/ws", sid: str | None = None, **kw: Any
) -> aiohttp.ClientWebSocketResponse:
    """The patron's socket to `path` on the vendor's mapped host, with the session `sid` (the
    driver's own by default; "" for none)."""
    kw.setdefault("timeout", _WS_TIMEOUT)
    ws: aiohttp.ClientWebSocketResponse = await driver.client.ws_connect(
        path, headers=_socket_headers(driver, sid), **kw
    )
    return ws


def _handshakes(vendor: RecordingVendor, path: str = "/ws") -> list[Any]:
    return [r for r in vendor.requests if r.path_qs.startswith(path)]


async def test_messages_flow_both_ways_and_the_handshake_is_scrubbed(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
) -> None:
    """Text and binary messages reach the vendor and come back; the vendor's handshake carries
    the assertion, its own Origin and the subprotocol, and nothing of the patron."""
    driver, vendor, sockets = await _stack(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    ws = await _connect(driver, protocols=("chat.v1", "chat.v2"))
    assert ws.protocol == "chat.v2"  # the vendor's choice reaches the patron
    await ws.send_str("hello vendor")
    assert (await ws.receive(timeout=5)).data == "echo:hello vendor"
    await ws.send_bytes(b"\x00\x01\x02binary")
    assert (await ws.receive(timeout=5)).data == b"yranib\x02\x01\x00"
    await ws.close()
    assert sockets.messages == [("text", "hello vendor"), ("binary", b"\x00\x01\x02binary")]

    [handshake] = _handshakes(vendor)
    headers = {k.lower(): v for k, v in handshake.headers}
    assert headers["upgrade"].lower() == "websocket"
    assert headers["origin"] == f"http://{HOST}"  # mapped back, as for pages
    assert ASSERTION_HEADER.lower() in headers
    assert "chat.v1" in headers["sec-websocket-protocol"]
    assert "cookie" not in headers  # neither the proxy's session nor the browser's own
    assert "x-forwarded-for" not in headers
    raw = vendor.all_bytes()
    sid = driver.session_id()
    assert sid is not None
    assert sid.encode() not in raw
    assert b"203.0.113.77" not in raw and b"canary-cookie" not in raw
    assert leaks(raw) == []
    await asyncio.sleep(0.1)
    assert leaks(log_stream.getvalue().encode()) == []
    closed = [
        json.loads(line)
        for line in log_stream.getvalue().splitlines()
        if '"websocket_closed"' in line
    ]
    assert len(closed) == 1  # for IT: the vendor, who ended it, how long it was open
    assert closed[0]["vendor"] == "one" and closed[0]["outcome"] == "patron"
    assert isinstance(closed[0]["duration_ms"], int)


async def test_the_jar_cookies_go_on_the_handshake(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A cookie the vendor set on its page (kept in the session's jar) goes on the socket's
    handshake, as the vendor's own site would send it."""
    driver, vendor, _ = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    page = await driver.get_vendor(HOST, "/page")
    assert page.status == 200
    ws = await _connect(driver)
    await ws.close()
    [handshake] = _handshakes(vendor)
    headers = {k.lower(): v for k, v in handshake.headers}
    assert headers.get("cookie") == "vsession=vendor-jar-value"


async def test_close_codes_and_reasons_go_through(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The vendor's close code and reason reach the patron; the patron's reach the vendor."""
    driver, _, sockets = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    ws = await _connect(driver)
    await ws.send_str("close:4001")
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.CLOSE
    assert (msg.data, msg.extra) == (4001, "vendor says bye")
    await ws.close()

    ws = await _connect(driver)
    await ws.send_str("hi")
    await ws.receive(timeout=5)
    await ws.close(code=4002, message=b"patron leaves")
    for _ in range(50):
        if len(sockets.closed) == 2:
            break
        await asyncio.sleep(0.05)
    assert sockets.closed == [4001, 4002]


async def test_sign_out_closes_an_open_socket(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Signing out ends the patron's open sockets (1008) within `websocket_check_s`, and the
    vendor's side is closed too: nothing keeps talking for a session that is gone."""
    driver, _, sockets = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        server_extra="websocket_check_s = 0.2",
    )
    ws = await _connect(driver)
    await ws.send_str("still here")
    assert (await ws.receive(timeout=5)).data == "echo:still here"
    r = await driver.own("POST", "/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status == 200
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.CLOSE
    assert msg.data == 1008
    for _ in range(50):
        if sockets.closed:
            break
        await asyncio.sleep(0.05)
    assert sockets.closed == [1008]


async def test_no_session_no_socket(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Without a session the handshake goes to sign-in, and the vendor hears nothing."""
    driver, vendor, _ = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    headers = _socket_headers(driver, sid="")
    r = await driver.client.get(
        "/ws",
        headers={
            **headers,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
        allow_redirects=False,
    )
    assert r.status == 302
    assert "/login?url=" in r.headers["Location"]
    assert _handshakes(vendor) == []


async def test_a_vendor_refusing_the_socket_is_passed_on(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor that answers the handshake with 403 gives the patron's script a failed socket
    with that status, not a 101."""
    driver, _, _ = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await driver.client.ws_connect("/refuse", headers=_socket_headers(driver))
    assert caught.value.status == 403


async def test_a_vendor_down_gives_the_vendor_page(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
) -> None:
    """The vendor not listening: 502 with the vendor's error page, logged and counted for IT."""
    driver, vendor, _ = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    await vendor.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await _connect(driver)
    assert caught.value.status == 502
    lines = [json.loads(x) for x in log_stream.getvalue().splitlines() if x.startswith("{")]
    assert any(x.get("event") == "vendor_failed" and x.get("error") == "refused" for x in lines)
    metrics = await driver.own("GET", "/metrics")
    assert 'weston_proxy_vendor_failures_total{kind="refused",vendor="one"}' in await metrics.text()


async def test_open_sockets_hold_no_admission_slot_and_are_capped(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """With one admission slot, an open socket leaves it free for the patron's pages; past
    `max_websockets` the next socket is refused with 503."""
    driver, _, _ = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        server_extra="max_in_flight = 1\nadmission_wait_s = 0.5\nmax_websockets = 1",
    )
    ws = await _connect(driver)
    await ws.send_str("one")
    assert (await ws.receive(timeout=5)).data == "echo:one"
    page = await driver.get_vendor(HOST, "/page")
    assert page.status == 200  # the socket does not hold the only slot
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await _connect(driver)
    assert caught.value.status == 503
    await ws.send_str("two")
    assert (await ws.receive(timeout=5)).data == "echo:two"  # the first is untouched
    metrics = await (await driver.own("GET", "/metrics")).text()
    assert "weston_proxy_websockets_open 1.0" in metrics  # IT sees how full the cap is
    await ws.close()
    for _ in range(50):
        metrics = await (await driver.own("GET", "/metrics")).text()
        if "weston_proxy_websockets_open 0.0" in metrics:
            break
        await asyncio.sleep(0.05)
    assert "weston_proxy_websockets_open 0.0" in metrics
    ws = await _connect(driver)  # and its place is free again once it closed
    await ws.close()


SOCKET_PAGE = """<!doctype html><html><head><title>live</title></head><body>
<p id="out">waiting</p>
<script>
const ws = new WebSocket(%s, ["chat.v2"]);
ws.onopen = () => ws.send("from the browser");
ws.onmessage = (e) => { document.getElementById("out").textContent = e.data + " via " + ws.protocol; };
ws.onerror = () => { document.getElementById("out").textContent = "error"; };
</script></body></html>"""
# A socket on the page's own host, from `location` (socket.io's default), and a vendor URL
# written into the script, which the rewriter maps to the mapped host.
FROM_LOCATION = '(location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws"'
LITERAL = '"ws://www.vendor-one.test/ws"'


@pytest.mark.browser
@pytest.mark.parametrize("url", [FROM_LOCATION, LITERAL], ids=["from-location", "literal"])
async def test_browser_page_opens_a_socket_to_the_vendor(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    url: str,
) -> None:
    """In Chromium, a vendor page's script opening a socket, on its own host (as socket.io
    does, from `location`) or at the vendor URL written in the script (mapped by the
    rewriter), reaches the vendor through the proxy: the tracker shield lets it connect, and
    the answer comes back on the page."""
    from playwright.async_api import async_playwright

    from tests.browser_support import launch

    driver, vendor, sockets = await _stack(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )

    async def live(request: web.Request) -> web.StreamResponse:
        return web.Response(text=SOCKET_PAGE % url, content_type="text/html")

    vendor.routes["/live"] = live
    own = f"http://{driver.public}"
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await (await browser.new_context()).new_page()
            await sign_in_through_form(page, own)
            await page.goto(f"http://{driver.mapped(HOST)}/live")
            await page.wait_for_function(
                "document.getElementById('out').textContent !== 'waiting'", timeout=10_000
            )
            assert await page.text_content("#out") == "echo:from the browser via chat.v2"
        finally:
            await browser.close()
    assert sockets.messages == [("text", "from the browser")]
    [handshake] = _handshakes(vendor)
    headers = {k.lower(): v for k, v in handshake.headers}
    assert headers["origin"] == f"http://{HOST}"
    assert "cookie" not in headers
    assert leaks(vendor.all_bytes()) == []


async def test_sockets_pass_the_compose_load_balancer(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Debian's nginx with conf/compose/nginx.conf, its replicas replaced by the proxy under
    test: a socket opened through it reaches the vendor (without `Upgrade` and `Connection`
    passed on, nginx would send a plain GET and the handshake would fail)."""
    import re
    import shutil
    import subprocess

    from tests.harness import free_port

    listen = free_port()
    driver, _, sockets = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = (Path(__file__).parents[1] / "conf/compose/nginx.conf").read_text()
    conf = re.sub(r"server proxy-\d+:8080", f"server 127.0.0.1:{port}", conf)
    conf = conf.replace("listen 8080", f"listen 127.0.0.1:{listen}")
    conf = conf.replace("pid /tmp/nginx.pid;", "pid nginx.pid;")
    root = tmp_path / "nginx"
    (root / "logs").mkdir(parents=True)
    (root / "nginx.conf").write_text(conf)
    args = [nginx, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", "stderr"]
    server = subprocess.Popen([*args, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        headers = _socket_headers(driver)  # nginx passes the Host on as it is ($http_host)
        async with aiohttp.ClientSession() as client:
            for _ in range(100):
                try:
                    ws = await client.ws_connect(
                        f"http://127.0.0.1:{listen}/ws", headers=headers, timeout=_WS_TIMEOUT
                    )
                    break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("nginx did not start")
            await ws.send_str("through nginx")
            assert (await ws.receive(timeout=5)).data == "echo:through nginx"
            await ws.close()
        assert sockets.messages == [("text", "through nginx")]
    finally:
        server.terminate()
        server.wait(10)


async def test_stopping_the_proxy_closes_open_sockets_at_once(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """On shutdown (SIGTERM, a restart) open sockets are closed first with 1001 (going away),
    both sides: the page can reconnect to another instance at once, and the shutdown does not
    wait its whole grace for sockets that never end on their own."""
    import time

    driver, _, sockets = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    async with aiohttp.ClientSession() as patron:
        ws = await patron.ws_connect(
            f"http://127.0.0.1:{port}/ws", headers=_socket_headers(driver), timeout=_WS_TIMEOUT
        )
        await ws.send_str("before")
        assert (await ws.receive(timeout=5)).data == "echo:before"
        started = time.monotonic()
        stopping = asyncio.ensure_future(driver.client.server.close())
        msg = await ws.receive(timeout=20)
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
        await asyncio.wait_for(stopping, 20)
        assert time.monotonic() - started < 10  # not aiohttp's 60 s shutdown wait
    for _ in range(50):
        if sockets.closed:
            break
        await asyncio.sleep(0.05)
    assert sockets.closed == [1001]


async def test_a_shared_login_made_for_a_socket_is_kept_for_the_pages(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A shared-login vendor whose first contact in a session is a socket: the library-wide
    login is made for the handshake (its cookie goes on it), and kept in the session's jar, so
    the patron's pages afterwards use it instead of posting the library's credential again."""
    from proxy.vendors import shared_login
    from tests.harness import write_secret

    # A finished login's cookies also serve requests for a few seconds without the jar (the
    # requests of one page); shortened, so the page below can only find them in the jar.
    monkeypatch.setattr(shared_login, "LOGIN_REUSE_S", 0.1)
    vendor: RecordingVendor = await vendor_factory(HOST)
    sockets = SocketVendor()
    logins: list[str] = []

    async def login(request: web.Request) -> web.StreamResponse:
        logins.append("login")
        resp = web.Response(text="<p>Signed in</p>", content_type="text/html")
        resp.set_cookie("vsess", f"library-login-{len(logins)}", path="/")
        return resp

    vendor.routes.update({"/ws": sockets.echo, "/account/login": login})
    write_secret(tmp_path / "vendors" / "secrets" / "u", "libacct")
    write_secret(tmp_path / "vendors" / "secrets" / "p", "libpass")
    extra = (
        '\n[shared_login]\nmethod = "form"\n'
        f'login_url = "http://{HOST}/account/login"\n'
        'username_file = "secrets/u"\npassword_file = "secrets/p"\nsuccess_text = "Signed in"\n'
    )
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, auth="shared-login", extra=extra)},
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    ws = await _connect(driver)
    await ws.send_str("hello")
    assert (await ws.receive(timeout=5)).data == "echo:hello"
    await ws.close()
    [handshake] = _handshakes(vendor)
    assert dict((k.lower(), v) for k, v in handshake.headers)["cookie"] == "vsess=library-login-1"
    await asyncio.sleep(0.3)
    page = await driver.get_vendor(HOST, "/after")
    assert page.status == 200
    assert logins == ["login"]  # the page used the socket's login
    [after] = [r for r in vendor.requests if r.path_qs == "/after"]
    assert dict((k.lower(), v) for k, v in after.headers)["cookie"] == "vsess=library-login-1"
