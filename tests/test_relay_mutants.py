"""From a mutation sweep of the relay and the vendor HTTP client (proxy/vendor_http.py,
proxy/forward.py's relay, proxy/validators.py, proxy/admission.py): one test per mutant that
survived the existing suite (15 of 55; no defect was found), each naming the mutant it kills and
the behaviour it proves. Loopback vendors only; no real personal data. What a vendor sees is
waited for (up to seconds), not slept on, so a loaded machine does not fail them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from proxy.vendor_http import VendorClient, VendorConnectionError
from tests.test_shared_login_relay import HOST, _login_route, _setup, _shared_form_extra
from tests.test_vendor_body_edges import PAGE, WWW, raw_vendor, setup  # noqa: F401 (fixtures)
from tests.test_vendor_http import get, ok, serve


async def test_a_streamed_upload_is_never_sent_again_on_a_closed_kept_connection(
    client: VendorClient,
) -> None:
    """kills: proxy/vendor_http.py:VendorClient.request — `retry_ok = method in IDEMPOTENT and
    (body is None or isinstance(body, bytes))` → `retry_ok = method in IDEMPOTENT`.

    A patron's streamed PUT (an upload the proxy relays as it arrives) cannot be read twice: when
    the kept connection it went out on turns out closed by the vendor, the exchange fails, and
    the vendor never receives a second PUT with an empty body in place of the patron's file."""

    async def reply(n: int, request: bytes) -> bytes | None:
        return None if n == 2 else ok()

    async def upload() -> AsyncIterator[bytes]:
        for part in (b"chapter-one,", b"chapter-two"):
            yield part

    s = await serve(reply)
    try:
        await get(client, s.port)
        with pytest.raises(VendorConnectionError):
            await get(client, s.port, method="PUT", body=upload())
        await asyncio.sleep(0.05)
        assert [r.split(b" ", 1)[0] for r in s.requests] == [b"GET", b"PUT"]
    finally:
        await s.close()


@pytest.fixture
async def client() -> AsyncIterator[VendorClient]:
    async def loopback(host: str, port: int) -> list[tuple[str, int]]:
        return [("127.0.0.1", port)]

    c = VendorClient(loopback, read_limit=64 * 1024)
    yield c
    await c.close()


async def _raw(handler):  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_head_answer_followed_by_a_second_head_is_not_reused(client: VendorClient) -> None:
    """kills: proxy/vendor_http.py:_Connection.data_received — the HEAD keep-alive condition
    `and data.count(b"\\r\\n\\r\\n") == self._heads` removed.

    A vendor that answers HEAD and, in the same read, a second whole head nobody asked for
    (ending in CRLFCRLF, so the `endswith` check alone passes) is out of step: its connection is
    closed, never handed to the next patron's request."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"HEAD"):
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Planted: 1\r\n\r\n"
                    )
                else:
                    writer.write(ok(b"next"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server, port = await _raw(handler)
    try:
        assert await asyncio.wait_for(get(client, port, method="HEAD"), 5) == (200, b"")
        await asyncio.sleep(0.1)
        assert await asyncio.wait_for(get(client, port), 5) == (200, b"next")
        assert connections == 2
    finally:
        server.close()


async def test_a_head_of_too_many_small_fields_is_refused(client: VendorClient) -> None:
    """kills: proxy/vendor_http.py:_Connection._count_head — `or len(self._fields) >=
    MAX_HEADERS` removed.

    MAX_HEAD_BYTES alone lets a vendor send some ten thousand tiny fields in 64 KiB, each a
    Python object the proxy holds and every later filter walks: a head of more than
    MAX_HEADERS (200) fields is refused as a connection error (a 502 to the patron)."""
    fields = b"".join(b"x%d: y\r\n" % i for i in range(400))
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + fields + b"\r\nok"
    assert len(answer) < 16 * 1024

    async def reply(n: int, request: bytes) -> bytes | None:
        return answer

    s = await serve(reply)
    try:
        with pytest.raises(VendorConnectionError):
            await asyncio.wait_for(get(client, s.port), 5)
    finally:
        await s.close()


async def test_not_one_byte_past_an_announced_length_reaches_the_vendor(
    client: VendorClient,
) -> None:
    """kills: proxy/vendor_http.py:_send_body — `if left < 0` → `if left < -1`.

    A streamed upload that runs one byte past its Content-Length has that byte withheld: on a
    shared vendor connection it would be read as the start of the next request (smuggling)."""
    extra: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(3)
            try:
                extra.append(await asyncio.wait_for(reader.read(100), 1.0))
            except TimeoutError:
                extra.append(b"")
            writer.write(ok(b"ok"))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def upload() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"G"

    server, port = await _raw(handler)
    try:
        with pytest.raises((VendorConnectionError, TimeoutError)):
            await asyncio.wait_for(
                get(client, port, "/form", "POST", {"Content-Length": "3"}, upload(), 3.0), 5
            )
        await _until(lambda: extra)
        assert extra == [b""]
    finally:
        server.close()


async def test_an_upload_short_of_its_length_fails_at_once_not_after_the_vendor_timeout(
    client: VendorClient,
) -> None:
    """kills: proxy/vendor_http.py:_send_body — `elif left: raise ValueError(...)` → `elif False`.

    A patron's upload that ends before its Content-Length (a dropped connection mid-form) fails
    the exchange as a connection error (502) at once; it must not leave the vendor waiting for
    bytes that never come and the patron waiting out the vendor timeout (then a 504)."""

    async def reply(n: int, request: bytes) -> bytes | None:
        return ok()

    async def upload() -> AsyncIterator[bytes]:
        yield b"12345"

    s = await serve(reply)
    try:
        with pytest.raises(VendorConnectionError):
            await asyncio.wait_for(
                get(client, s.port, "/form", "POST", {"Content-Length": "10"}, upload(), 3.0), 5
            )
    finally:
        await s.close()


async def test_a_nul_in_a_header_value_is_refused_before_anything_is_sent(
    client: VendorClient,
) -> None:
    """kills: proxy/vendor_http.py:VendorClient._head — `or "\\0" in head` removed.

    A NUL byte in a header value (RFC 9110 §5.5 forbids it; parsers disagree on where such a
    field ends) is refused with ValueError and nothing reaches the vendor."""

    async def reply(n: int, request: bytes) -> bytes | None:
        return ok()

    s = await serve(reply)
    try:
        with pytest.raises(ValueError, match="NUL"):
            await get(client, s.port, headers={"X-Odd": "a\0b"})
        await asyncio.sleep(0.05)
        assert s.requests == []
    finally:
        await s.close()


async def test_a_rewritten_page_missing_its_first_bytes_is_refused_not_sent_as_whole(
    setup: Any,  # noqa: F811
) -> None:
    """kills: proxy/forward.py:_whole_range — `span[0] == 0 and` removed.

    A vendor that answers a page with a 206 of its tail (`bytes 5-N/N+1`) even when asked
    again without Range cannot be rewritten into a true answer: the proxy refuses it (502)
    rather than send the patron a 200 "whole page" that is missing its start."""
    driver, vendor = setup
    full = (
        b"<!DOCTYPE html><html><body>"
        + b"".join(b'<a href="http://www.vendor-one.test/a/%d">a</a>' % i for i in range(5))
        + b"</body></html>"
    )

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=206,
            body=full[5:],
            headers={
                "Content-Type": "text/html",
                "Content-Range": f"bytes 5-{len(full) - 1}/{len(full)}",
            },
        )

    vendor.routes["/tail.html"] = page
    r = await driver.get_vendor(WWW, "/tail.html")
    await r.read()
    assert r.status == 502


async def test_a_streamed_upload_is_not_sent_again_after_a_vendor_session_renewal(
    tmp_path: Any, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:Upstream.forward — the renewal's `if request.method in IDEMPOTENT
    and (data is None or isinstance(data, bytes))` → `if request.method in IDEMPOTENT`.

    A shared-login vendor whose session ended answers a patron's streamed PUT (an uploaded
    file, not read whole) with its "sign in" answer. The upload has been consumed, so the proxy
    passes that answer on as it is (not a 502): it never signs in again to re-send a PUT whose
    body is gone, which would reach the vendor empty or fail."""
    vendor = await vendor_factory(HOST)
    tokens: set[str] = set()
    received: list[bytes] = []

    async def upload(request: web.Request) -> web.StreamResponse:
        if request.cookies.get("vsess", "") not in tokens:
            await request.read()
            return web.Response(status=401, text="Please sign in again", content_type="text/plain")
        received.append(await request.read())
        return web.Response(text="saved", content_type="text/plain")

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<p>ok</p>", content_type="text/html")

    vendor.routes.update({"/account/login": _login_route(tokens), "/file": upload, "/start": page})
    d = await _setup(
        tmp_path, port, running_slapd, vendor, proxy_factory, auth="shared-login",
        extra=_shared_form_extra(),
    )  # fmt: skip
    assert (await d.get_vendor(HOST, "/start")).status == 200
    tokens.clear()  # the vendor ends its session
    body = b"%PDF-1.7 chapter notes " * 50
    r = await d.get_vendor(
        HOST, "/file", method="PUT", data=body, headers={"Content-Type": "application/octet-stream"}
    )
    await r.read()
    assert received == [], f"vendor stored {received!r}"
    assert r.status == 401


async def test_two_content_types_reach_the_browser_as_the_one_the_proxy_judged(
    raw_vendor: Any,  # noqa: F811
) -> None:
    """kills: proxy/forward.py:Upstream._relay — `len(headers.getall("Content-Type", ())) > 1`
    → `> 2`.

    A vendor's front server adds `text/plain` ahead of the application's `text/html`: the proxy
    judges (rewrites and shields) the body as HTML, and the browser is sent that one type alone,
    so no browser can read the page as another type than the one it was made safe as."""
    driver, answer = raw_vendor
    answer["raw"] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(PAGE), PAGE)
    )
    r = await driver.get_vendor(WWW, "/results")
    body = await r.read()
    assert r.status == 200
    assert r.headers.getall("Content-Type") == ["text/html"]
    assert b"http://www.vendor-one.test" not in body


async def test_a_body_chunked_in_a_coding_list_cut_short_is_an_error(client: VendorClient) -> None:
    """kills: proxy/vendor_http.py:_Connection._ends_at_close — `"chunked" in v.lower()` →
    `v.lower().strip() == "chunked"`.

    `Transfer-Encoding: gzip, chunked` in one field is chunked: a vendor closing mid-body is a
    broken answer (the patron's connection is cut), never a whole body that happens to be short."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n"
            )
            await writer.drain()
            await asyncio.sleep(0.1)
        finally:
            writer.close()

    server, port = await _raw(handler)
    try:
        with pytest.raises(VendorConnectionError):
            await asyncio.wait_for(get(client, port), 5)
    finally:
        server.close()


async def test_no_more_than_idle_per_host_connections_are_kept() -> None:
    """kills: proxy/vendor_http.py:VendorClient._put_back — `len(idle) >= self._idle_per_host`
    → `len(idle) > self._idle_per_host`.

    With `idle_per_host = 1`, two answers finishing together leave one kept connection: the
    other is closed (the vendor sees it end), so a worker holds no more sockets than allowed."""
    ended = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal ended
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(ok(b"ok"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            ended += 1
        finally:
            writer.close()

    async def loopback(host: str, port: int) -> list[tuple[str, int]]:
        return [("127.0.0.1", port)]

    c = VendorClient(loopback, idle_per_host=1)
    server, port = await _raw(handler)
    try:
        from multidict import CIMultiDict
        from yarl import URL

        async def open_one():  # type: ignore[no-untyped-def]
            return await c.request(
                "GET", URL(f"http://vendor.test:{port}/"), CIMultiDict(),
                ssl_context=None, connect_timeout=5.0, read_timeout=5.0,
            )  # fmt: skip

        first, second = await asyncio.gather(open_one(), open_one())
        for resp in (first, second):
            await resp.read()
            resp.release()
        await _until(lambda: ended)
        await asyncio.sleep(0.2)  # a second close, if any, comes with the first
        assert ended == 1
    finally:
        await c.close()
        server.close()


def test_a_304_asked_with_the_strong_tag_keeps_the_strong_tag() -> None:
    """kills: proxy/validators.py:seal_validators — `if weak is not None and asked and weak in
    {…asked…}` → `if weak is not None and asked`.

    A browser revalidating a kept script with the strong tag it was given gets that same tag
    on the 304: the proxy's weak form (which says "rewritten by the proxy") is used only when
    the browser itself asked with it, so the stored answer's validator never changes kind."""
    from multidict import CIMultiDict

    from proxy.validators import seal, seal_validators, session_key

    sid = "s" * 43
    strong = seal(session_key(sid), '"v1"')
    assert strong is not None and not strong.startswith("W/")
    headers: CIMultiDict[str] = CIMultiDict({"ETag": '"v1"'})
    seal_validators(headers, sid, asked=strong)
    assert headers["ETag"] == strong


def test_a_vendor_tag_with_a_quote_inside_goes_unsealed_and_unsent() -> None:
    """kills: proxy/validators.py:seal — `or '"' in inner` removed.

    A malformed vendor ETag (`"a"b"`, a quote inside) is not sealed: the answer goes to the
    browser without a tag rather than with one no parser reads the same way."""
    from proxy.validators import seal, session_key

    assert seal(session_key("s" * 43), '"a"b"') is None


async def test_the_librarys_password_in_a_vendor_reason_phrase_is_masked(
    tmp_path: Any, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:Upstream._relay — `if masked and reason: reason =
    mask_text(reason, masked)` removed.

    A shared-login vendor that echoes the library's account password in its status line's
    reason phrase (a debug build: `403 Bad password <secret>`) must not show it to the patron
    (P2: the library's credential stays home)."""
    from tests.test_shared_login_refusals import HOST as SL_HOST
    from tests.test_shared_login_refusals import LIBRARY_PASSWORD, shared_login_proxy

    async def echo(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=403, reason=f"Bad password {LIBRARY_PASSWORD}", text="no",
            content_type="text/plain",
        )  # fmt: skip

    driver, _vendor = await shared_login_proxy(
        "basic", tmp_path, port, running_slapd, vendor_factory, proxy_factory, {"/r": echo}
    )
    r = await driver.get_vendor(SL_HOST, "/r")
    await r.read()
    assert r.status == 403
    assert LIBRARY_PASSWORD not in (r.reason or "")


async def test_a_download_is_not_peeked_for_the_sign_in_text(
    tmp_path: Any, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:_peek — the text-only condition (`not resp.content_type…
    startswith(("text/", …))`) dropped.

    Only text answers are peeked for a shared-login vendor's "please sign in" page: a PDF
    whose first bytes happen to hold those words streams to the patron from byte one, and
    does not make the proxy sign in with the library's account again and fetch it twice."""
    vendor = await vendor_factory(HOST)
    tokens: set[str] = set()
    logins = 0
    login = _login_route(tokens)
    fetched = 0

    async def counted_login(request: web.Request) -> web.StreamResponse:
        nonlocal logins
        logins += 1
        return await login(request)

    async def pdf(request: web.Request) -> web.StreamResponse:
        nonlocal fetched
        fetched += 1
        return web.Response(
            body=b"%PDF-1.7\n% Please sign in again to annotate\n" + b"x" * 2000,
            content_type="application/pdf",
        )

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<p>ok</p>", content_type="text/html")

    vendor.routes.update({"/account/login": counted_login, "/a.pdf": pdf, "/start": page})
    d = await _setup(
        tmp_path, port, running_slapd, vendor, proxy_factory, auth="shared-login",
        extra=_shared_form_extra(),
    )  # fmt: skip
    assert (await d.get_vendor(HOST, "/start")).status == 200
    before = logins
    r = await d.get_vendor(HOST, "/a.pdf")
    body = await r.read()
    assert r.status == 200 and body.startswith(b"%PDF-1.7")
    assert (logins - before, fetched) == (0, 1)


async def _until(condition: Any, seconds: float = 5.0) -> None:
    """Wait until `condition()` holds, or `seconds` have passed (the caller's assert then says
    what did not happen)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
