"""Three survivors of the further mutation sweep of the application front (2 December 2026),
each with its test here: a suspended session's socket, a cookie set on a socket's handshake,
and a session kept alive by vendor pages alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.test_websocket import _connect
from tests.test_websocket_edges import HOST, _stack


async def test_suspending_a_session_closes_its_open_socket(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/app.py, the `still_allowed` check handed to `SocketRelay.relay` —
    `not s.suspended` dropped. A card suspended by the usage limits (downloading in a loop: a
    stolen card, a scraper) must stop reaching the vendor on every channel: pages are refused
    by the gate, and an open socket is closed at its next session check."""
    from proxy.services import SERVICES

    driver, _, _, _, _ = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        server_extra="websocket_check_s = 0.2",
    )
    ws = await _connect(driver)
    try:
        await ws.send_str("before")
        assert (await ws.receive(timeout=5)).data == "echo:before"
        sid = driver.session_id()
        assert sid is not None
        svc = driver.client.app[SERVICES]
        assert await svc.sessions.suspend(sid, "downloads") is True
        try:
            msg = await ws.receive(timeout=5)
        except TimeoutError:
            await ws.send_str("after")
            relayed = await ws.receive(timeout=5)
            raise AssertionError(
                f"the suspended session's socket is open 5 s later; it relayed {relayed.data!r}"
            ) from None
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), msg
        if msg.type == WSMsgType.CLOSE:
            assert msg.data == 1008, msg  # policy: the library's rules ended it
    finally:
        await ws.close()


async def test_a_cookie_set_on_the_socket_handshake_goes_to_the_jar_not_the_browser(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/websocket.py `_note_handshake_cookies` — the Set-Cookie of the 101 answer
    not noted. A vendor that sets its session cookie on the socket's handshake (chat and
    live-search services do) must find it on the next page request, from the patron's jar on
    the proxy; the browser never gets the Set-Cookie."""
    driver, vendor, _, _, _ = await _stack(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )

    async def socket_setting_a_cookie(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        ws.set_cookie("wsid", "set-on-the-handshake", path="/")
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
        return ws

    vendor.routes["/ws-cookie"] = socket_setting_a_cookie
    ws = await _connect(driver, "/ws-cookie")
    try:
        assert "Set-Cookie" not in ws._response.headers  # what the browser got on the 101
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "echo:hello"
    finally:
        await ws.close()
    page = await driver.get_vendor(HOST, "/page")
    assert page.status == 200
    assert all("set-on-the-handshake" not in c for c in page.headers.getall("Set-Cookie", []))
    (sent,) = [r for r in vendor.requests if r.path_qs == "/page"]
    assert "wsid=set-on-the-handshake" in dict(sent.headers).get("Cookie", "")


async def test_reading_vendor_pages_alone_keeps_the_session_alive(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/app.py `_proxy_admitted` — `await svc.sessions.touch(session)` dropped
    (survived the front sweep). A patron who reads a database for longer than the idle
    timeout, one page after another and never back at the menu, is using the session: it must
    not end under them. Idle timeout 4 s here, a page a second for 9 s; then 5 s idle ends it."""
    driver, _, _, _, _ = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        session='store = "memory"\nidle_timeout_s = 4\nlifetime_s = 3600',
    )
    loop = asyncio.get_running_loop()
    end = loop.time() + 9
    pages = 0
    while loop.time() < end:
        r = await driver.get_vendor(HOST, f"/article/{pages}")
        assert r.status == 200, f"signed out after {pages} pages ({r.status})"
        pages += 1
        await asyncio.sleep(1)
    assert pages >= 8
    await asyncio.sleep(5.5)  # longer than the idle timeout: the check itself can fail
    r = await driver.get_vendor(HOST, "/article/after-idle")
    assert r.status in (302, 303), r.status
