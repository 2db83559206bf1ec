"""From a mutation sweep (1 December 2026) of bodies, codings, charsets, sniffing, sockets,
service workers, redirects and HTTP limits.

Each test names the mutant it kills: a one-line change to the proxy that every other test let
through, and the behaviour it would have broken for a patron, a vendor or the library's staff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import brotli
import pytest

from proxy.charsets import charset_is_bytes_safe, codec_is_bytes_safe, meta_charset
from proxy.content_coding import CorruptBody, decoder_for
from proxy.limits_http import HttpLimits, check_http_limits
from proxy.request_bodies import boundary, unmap_multipart
from proxy.sniff import sniff_document


def _drain(decoder: Any, data: bytes) -> bytes:
    return b"".join(decoder.feed(data)) + b"".join(decoder.finish())


def test_a_truncated_brotli_body_is_reported_as_corrupt() -> None:
    """kills: proxy/content_coding.py:_Brotli.finish — `self._fed and not
    self._d.is_finished()` → `False`.

    A br body cut off before its end (a vendor connection dropped mid-page) is reported as a
    corrupt body, as a truncated gzip body is, instead of the patron getting half a page passed
    off as the whole one (and IT staff no failure to see)."""
    whole = brotli.compress(b"<html><body>" + b"catalogue record " * 4000 + b"</body></html>")
    assert _drain(decoder_for("br"), whole).startswith(b"<html>")
    with pytest.raises(CorruptBody):
        _drain(decoder_for("br"), whole[: len(whole) // 2])


def test_a_non_ascii_multipart_boundary_is_no_boundary() -> None:
    """kills: proxy/request_bodies.py:boundary — `or not value.isascii()` dropped.

    A form whose Content-Type names a non-ASCII boundary (not a valid one, RFC 2046) is taken
    as having none, so the request goes on as any body, instead of the proxy failing with an
    error (UnicodeEncodeError) on the patron's upload."""
    assert boundary("multipart/form-data; boundary=caf\u00e9") is None
    assert boundary("multipart/form-data; boundary=cafe") == b"cafe"


def test_a_file_named_with_rfc5987_filename_star_reaches_the_vendor_as_sent() -> None:
    """kills: proxy/request_bodies.py:_passes_whole — `b"filename"` → `b"filename="`.

    A file part whose name is given only as `filename*=UTF-8''…` (RFC 7578 4.2, RFC 5987: how a
    non-ASCII file name is sent) is a file: the patron's uploaded bytes reach the vendor
    exactly as sent, even when they happen to hold a mapped proxy address."""
    file_part = (
        b"--x\r\nContent-Disposition: form-data; name=f; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
        b"\r\n\r\nmapped\r\n"
    )
    body = file_part + b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nmapped\r\n--x--\r\n"
    out = unmap_multipart(body, b"x", lambda b: b.replace(b"mapped", b"vendor"))
    assert out == file_part + body[len(file_part) :].replace(b"mapped", b"vendor")


def test_iso_2022_jp_bodies_are_transcoded_not_rewritten_as_bytes() -> None:
    """kills: proxy/charsets.py:codec_is_bytes_safe — `("iso2022", "utf-7", "hz")` →
    `("utf-7", "hz")`.

    In ISO-2022-JP, ASCII bytes after `ESC $ B` are Japanese characters: rewriting such a page
    as bytes would garble the patron's Japanese text (and could take kanji bytes for a URL), so
    it must go through the transcoder."""
    assert codec_is_bytes_safe("iso2022_jp") is False
    assert charset_is_bytes_safe("iso-2022-jp") is False


def test_a_meta_charset_inside_a_comment_is_not_the_pages_charset() -> None:
    """kills: proxy/charsets.py:_prescan — `b"<!--"` → `b"<!---"`.

    A browser's prescan skips a whole comment, even one holding a `>`: a `<meta charset>` in a
    commented-out block does not decide how the page is read, so the proxy must not decode the
    page in that charset either (it would rewrite a different page than the patron sees)."""
    head = b'<!-- old > <meta charset="shift_jis"> --><p>x</p>'
    assert meta_charset(head) is None
    assert meta_charset(b'<!-- x --><meta charset="shift_jis">') == "cp932"


def test_a_meta_content_charset_needs_the_content_type_pragma() -> None:
    """kills: proxy/charsets.py:_meta — `value == b"content-type"` → `True`.

    `<meta http-equiv=refresh content="…charset=big5">` is no charset declaration for a
    browser (only `http-equiv=content-type` makes `content` one): the page is read as the
    browser reads it, not as Big5."""
    assert meta_charset(b'<meta http-equiv="refresh" content="5; charset=big5">') is None
    assert (
        meta_charset(b'<meta http-equiv="Content-Type" content="text/html; charset=big5">')
        == "big5hkscs"
    )


def test_an_untyped_page_after_a_form_feed_is_sniffed_as_html() -> None:
    """kills: proxy/sniff.py:_SNIFF — leading `[\\t\\n\\f\\r ]*` → `[\\t\\n\\r ]*`.

    WHATWG MIME Sniffing skips a leading form feed like any whitespace: a browser renders
    `\\f<script>…` sent without a Content-Type as HTML and runs its scripts, so the proxy must
    take it for HTML too and rewrite and shield it (P3)."""
    assert sniff_document(b"\x0c<script>fetch('https://tracker.test/')</script>") == "text/html"


@pytest.mark.parametrize("tag", [b"<iframe", b"<IFRAME"])
def test_an_untyped_body_starting_with_an_iframe_is_sniffed_as_html(tag: bytes) -> None:
    """kills: proxy/sniff.py:_SNIFF — `|<iframe` dropped from the HTML patterns.

    `<iframe ` is one of WHATWG's HTML patterns: an untyped body starting with one is a page to
    the browser (it loads the frame and any script in the page), so the proxy rewrites and
    shields it rather than passing it on untouched."""
    assert sniff_document(tag + b' src="https://tracker.test/"></iframe>') == "text/html"


async def test_a_cookie_set_on_one_patrons_socket_never_reaches_another_patrons_socket(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """kills: proxy/websocket.py:VendorSockets.client — `aiohttp.DummyCookieJar()` →
    `aiohttp.CookieJar()`.

    The proxy's one WebSocket client is shared by every patron: a cookie a vendor sets on its
    101 answer belongs to that patron's session jar only, and the next patron's handshake must
    not carry it (the vendor would take the second patron for the first: P1, P4)."""
    import aiohttp
    from aiohttp import web

    from tests.canary import CANARY, WREN
    from tests.harness import ldap_directory, vendor_toml, write_config

    www = "www.vendor-one.test"
    vendor = await vendor_factory(www)

    async def socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        ws.set_cookie("wsid", "first-patrons-socket", path="/")
        await ws.prepare(request)
        await ws.close()
        return ws

    vendor.routes["/ws"] = socket
    vendor.routes["/ws2"] = socket
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[www])},
    )
    driver = await proxy_factory(cfg)
    mapped = driver.mapped(www)

    async def open_socket(path: str) -> None:
        ws = await driver.client.ws_connect(
            path,
            headers={
                "Host": mapped,
                "Origin": f"http://{mapped}",
                "Cookie": f"{driver.config.server.cookie_name}={driver.session_id()}",
            },
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
        )
        await ws.receive()
        await ws.close()

    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    first = driver.session_id()
    await open_socket("/ws")
    assert (await driver.login(WREN.uid, WREN.password)).status == 303
    assert driver.session_id() != first
    await open_socket("/ws2")
    [second] = [r for r in vendor.requests if r.path_qs == "/ws2"]
    cookies = " ".join(v for k, v in second.headers if k.lower() == "cookie")
    assert "first-patrons-socket" not in cookies, cookies


async def test_one_session_gets_exactly_its_share_of_sockets_and_then_429(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """kills: proxy/websocket.py:OpenSockets.reserve — `held >= min(...)` → `held > min(...)`.

    With `max_websockets = 8` one session may hold a quarter, 2 sockets: its third handshake is
    refused with 429 and the vendor hears nothing of it, so one patron's runaway tab cannot
    take more than its share of the places other patrons' live features need."""
    import aiohttp

    from tests.test_websocket import _connect, _handshakes
    from tests.test_websocket_edges import _stack

    driver, vendor, _, _, _ = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        server_extra="max_websockets = 8",
    )
    held = [await _connect(driver), await _connect(driver)]
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            held.append(await _connect(driver))
        assert caught.value.status == 429
        assert len(_handshakes(vendor)) == 2
    finally:
        for ws in held:
            await ws.close()


def test_an_upgrade_header_without_connection_upgrade_is_no_websocket_handshake() -> None:
    """kills: proxy/websocket.py:wants_websocket — `and "upgrade" in connection` dropped.

    RFC 6455 4.1 (and HTTP/1.1 Upgrade) need both `Upgrade: websocket` and `Connection:
    upgrade`: a GET with only the first is an ordinary page request, so the proxy must not open
    a socket to the vendor (and take one of its places) for a handshake it cannot complete."""
    from aiohttp.test_utils import make_mocked_request

    from proxy.websocket import wants_websocket

    only_upgrade = make_mocked_request("GET", "/", headers={"Upgrade": "websocket"})
    assert wants_websocket(only_upgrade) is False
    both = make_mocked_request(
        "GET", "/", headers={"Upgrade": "websocket", "Connection": "keep-alive, Upgrade"}
    )
    assert wants_websocket(both) is True


async def test_a_vendor_socket_that_vanishes_is_told_to_the_patron_as_1011(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """kills: proxy/websocket.py:SocketRelay._pump — `INTERNAL_ERROR if side == "vendor"` →
    `if side == "patron"`.

    A vendor connection that drops without a close frame reaches the patron's page as 1011
    (the server side failed: pages' scripts take it as "try again"), not as 1001 (going away,
    which many pages take as "do not reconnect")."""
    import asyncio

    from aiohttp import WSMsgType, web

    from tests.test_websocket import _connect
    from tests.test_websocket_edges import _stack

    driver, vendor, _, _, _ = await _stack(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )

    async def vanish(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # the patron's first message, then the connection drops
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(1)
        return ws

    vendor.routes["/vanish"] = vanish
    ws = await _connect(driver, "/vanish")
    await ws.send_str("hello")
    msg = await ws.receive(timeout=10)
    await ws.close()
    assert msg.type == WSMsgType.CLOSE, msg
    assert msg.data == 1011, msg


def test_a_header_timeout_over_five_minutes_is_refused_by_the_config_check() -> None:
    """kills: proxy/limits_http.py:check_http_limits — `<= 300.0` → `<= 3000.0`.

    `throttle.http.header_timeout_s` is also the idle keep-alive and the longest pause in an
    upload forwarded to a vendor: IT staff who set it past 300 s (a client trickling headers
    holding a connection for most of an hour) are told so by the config check."""
    problems: list = []  # type: ignore[type-arg]
    check_http_limits(HttpLimits(header_timeout_s=301.0), "proxy.toml", problems)
    assert [p.key for p in problems] == ["throttle.http.header_timeout_s"], problems
    problems.clear()
    check_http_limits(HttpLimits(header_timeout_s=300.0), "proxy.toml", problems)
    assert problems == []


def test_an_x_gzip_body_is_decoded_as_gzip() -> None:
    """kills: proxy/content_coding.py:_one_decoder — `("gzip", "x-gzip")` → `("gzip",)`.

    Browsers undo `Content-Encoding: x-gzip` as gzip (RFC 9110 8.4.1.3): the proxy must decode
    it too, or it would pass a page whose vendor links it never mapped (a click leaving the
    proxy from the patron's own address) or refuse a page the vendor's own site shows."""
    import gzip

    page = b'<a href="https://www.vendor-one.test/next">next</a>'
    assert _drain(decoder_for("x-gzip"), gzip.compress(page)) == page
    assert _drain(decoder_for("X-GZIP"), gzip.compress(page)) == page


def test_the_http_limit_floors_themselves_are_accepted() -> None:
    """kills: proxy/limits_http.py:check_http_limits — `< floor` → `<= floor`.

    The documented floors (1024-byte request line and header line, 16 headers) are the least
    a configuration may set, and IT staff who set exactly them get no complaint; one below is
    refused."""
    problems: list = []  # type: ignore[type-arg]
    floors = HttpLimits(max_request_line=1024, max_header_size=1024, max_headers=16)
    check_http_limits(floors, "proxy.toml", problems)
    assert problems == []
    check_http_limits(HttpLimits(max_headers=15), "proxy.toml", problems)
    assert [p.key for p in problems] == ["throttle.http.max_headers"]


@pytest.mark.parametrize("label", ["iso-2022-kr", " HZ-GB-2312 ", "replacement"])
def test_a_replacement_label_in_the_header_is_a_label_that_decides(label: str) -> None:
    """kills: proxy/charsets.py:known_label — `or label in _REPLACEMENT_LABELS` dropped.

    A Content-Type charset of WHATWG's "replacement" encoding is one a browser knows: it
    decides over the page's `<meta charset>` (the browser shows one U+FFFD), so the proxy does
    not hold the page back for a meta prescan and read it in some other charset."""
    from proxy.charsets import known_label

    assert known_label(label) is True
    assert known_label("utf8mb4") is False
