"""The HTTP/1.1 client that carries patrons' requests to vendors: pooled keep-alive connections on
asyncio protocols, responses parsed by httptools (llhttp, the parser Node.js and aiohttp use).

Why not aiohttp's ClientSession, which the proxy used until November 2026: on this hot path it
cost about 200 µs of CPU per 30 KB response against about 35 µs for a protocol that hands llhttp
the bytes (bench/README.md, "Fourth round"), and it was the largest single cost of a proxied
request. What this client does is narrow on purpose, and all of it is tested in
tests/test_vendor_http.py (and from a hostile vendor's side in tests/test_vendor_http_hostile.py):

- It sends exactly the headers it is given, plus `Host` and its own framing (`Content-Length` for
  a known length, chunked otherwise): no User-Agent, Accept-Encoding or cookie of its own. Header
  values with CR, LF or NUL, a method or header name that is not an RFC 9110 token, and a request
  target with a control byte, space or DEL are refused (ValueError) before anything is written.
  A streamed body sent with the caller's `Content-Length` is held to it: a byte past the length
  is never written, and a body longer or shorter fails the exchange and closes the connection.
- It never follows redirects, never decompresses and keeps no cookies: the forwarder does what
  the proxy's rules say with each of those.
- Responses stream: body bytes are handed over as they arrive, and reading from the vendor
  pauses while more than `read_limit` bytes wait for the patron. A response head, counted in raw
  bytes while it is read (a line that never ends too), is refused past `MAX_HEAD_BYTES`.
- A request that cannot be sent again (a POST, a streamed upload) takes a kept connection only if
  it was used in the last `fresh_s` seconds, and a new one otherwise: a vendor closing an idle
  connection just as the request goes out must not cost a patron's form.
- Kept connections idle for more than `keepalive_s` (15 s) are closed, whether or not the vendor
  closes them, as aiohttp's connector did. At most `idle_per_host` are kept per host and
  `MAX_IDLE_TOTAL` in all; past those the connection idle longest is closed.
- A connection goes back to its pool only when its response arrived whole (llhttp saw its end),
  the request went out whole (no byte of it left in the transport's buffer), nothing came after
  the answer (bytes after a HEAD answer's head included), and both sides allow keep-alive;
  anything else closes it. A reused connection that the vendor had closed is replaced once, for
  idempotent requests whose body can be sent again, as aiohttp does.
- Timeouts: `connect_timeout` for TCP and TLS set-up, `read_timeout` for each wait on the vendor
  (for an answer, and for it to take more of a request body).
  Timeouts raise TimeoutError; a refused, reset or malformed exchange raises OSError
  (`VendorConnectionError`), the two kinds the forwarder maps to 504 and 502.

Where to connect is the caller's: `resolve(host, port)` gives the addresses to try (the forwarder's
says which vendors have `connect_to` and refuses non-public addresses). There is no limit of its
own on connections per vendor: each proxied request uses at most one at a time, and admission
control (`server.max_in_flight`, 64 by default, what aiohttp's per-host limit was) bounds those.
"""

from __future__ import annotations

import asyncio
import collections
import email.message
import functools
import re
import ssl
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

import httptools
from aiohttp import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

Resolve = Callable[[str, int], Awaitable[list[tuple[str, int]]]]
Body = bytes | StreamReader | AsyncIterable[bytes] | None

# Requests that may be sent again (RFC 9110 §9.2.2): here after a dropped kept connection, in the
# forwarder after a vendor session was renewed.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Methods whose empty body is still announced, as user agents should (RFC 9110 §8.6).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_OWN_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})
SEND_CHUNK = 64 * 1024
TLS_SHUTDOWN_S = 2.0
# llhttp sets no limit on a response head; these bound what a misbehaving vendor can make the
# proxy hold (aiohttp's client allows 8 KiB lines; vendors' heads are a few KiB).
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 200
# Kept connections in total, over all hosts (idle_per_host bounds each): a wildcard vendor lets a
# patron name any number of hosts. 256 is four times the default admission bound
# (server.max_in_flight, 64), so the pool still holds a full host's 64 and a connection for
# each of some 190 other vendors, while a worker's descriptors (often 1024 by default) stay
# mostly for patrons. Past it the connection idle longest is closed.
MAX_IDLE_TOTAL = 256
# RFC 9110 §5.6.2 tokens (methods, field names); and the bytes a request target may not hold
# (controls, space, DEL: RFC 9112 §3.2 has none of them).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NOT_IN_TARGET = re.compile(r"[\x00-\x20\x7f]")


@functools.lru_cache(maxsize=1024)
def _is_token(text: str) -> bool:
    """Cached: a proxy sends the same few methods and header names on every request."""
    return _TOKEN.fullmatch(text) is not None


class VendorConnectionError(ConnectionError):
    """The vendor refused, reset or garbled the exchange (an OSError, like aiohttp's).

    `why` is a fixed word for IT staff (`failure_kind` logs it): the message can quote what
    the vendor sent, so it is never logged."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


class _Retry(Exception):
    """A reused connection was found closed before any answer: send again on a new one."""


class ResponseBody:
    """The response body as it arrives: `read(n)` and `iter_chunked(n)`, as aiohttp's reader."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._eof = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- fed by the connection
    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        self._wake()
        if self._size > self._conn.client.read_limit:
            self._conn.pause()

    def _feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self._eof:
            self._exc = exc
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the forwarder
    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    def ready(self) -> bool:
        """Whether `read` would answer at once (bytes, the end, or an error have arrived)."""
        return bool(self._chunks) or self._eof or self._exc is not None

    async def _wait(self) -> None:
        self._conn.resume()
        self._waiter = self._conn.loop.create_future()
        try:
            await self._conn.timed(self._waiter)
        finally:
            self._waiter = None

    async def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (all that is left when `n` < 0); b"" only at the end of the body."""
        if n < 0:
            parts = []
            while not self.at_eof():
                parts.append(await self.read(1 << 30))
            return b"".join(parts)
        while not self._chunks:
            if self._exc is not None:
                raise self._exc
            if self._eof:
                return b""
            await self._wait()
        if n == 0:
            return b""
        first = self._chunks.popleft()
        if len(first) > n:
            self._chunks.appendleft(first[n:])
            first = first[:n]
        else:
            while self._chunks and len(first) + len(self._chunks[0]) <= n:
                first += self._chunks.popleft()
        self._size -= len(first)
        if self._size <= self._conn.client.read_limit // 2:
            self._conn.resume()
        return first

    async def read_up_to(self, limit: int) -> bytes:
        """The first `limit` bytes of the body, or all of it when shorter: `read` answers with
        what has arrived, and a body comes in as many pieces as the network makes of it."""
        parts: list[bytes] = []
        size = 0
        while size < limit:
            piece = await self.read(limit - size)
            if not piece:
                break
            parts.append(piece)
            size += len(piece)
        return b"".join(parts)

    async def iter_chunked(self, n: int) -> collections.abc.AsyncIterator[bytes]:
        while True:
            chunk = await self.read(n)
            if not chunk:
                return
            yield chunk


@functools.lru_cache(maxsize=256)
def content_charset(content_type: str) -> str | None:
    """The charset parameter of a Content-Type value, lower-cased, or None.

    Python's email parser reads the parameters (quoted strings, backslash escapes, RFC 2231), so
    `charset=` inside another parameter's quoted value is not taken for the real one: the charset
    decides how the rewriter decodes a page, and a wrong one would leave vendor URLs unrewritten.
    Cached per value (a vendor sends the same few).
    """
    message = email.message.Message()
    message["Content-Type"] = content_type
    return message.get_content_charset() or None


def browser_content_type(values: list[str]) -> str:
    """The one Content-Type a browser reads from a response's Content-Type headers.

    Chromium reads every one and the last valid one wins (HttpResponseHeaders::
    GetMimeTypeAndCharset; `*/*` and a value without `/` are no type to it), so a front server's
    default `text/plain` ahead of the application's `text/html` is a page; but a last one of
    the same type without a charset keeps the earlier charset. With none valid, the last one
    (which the caller then takes for no type and sniffs).
    """
    if len(values) < 2:
        return values[0] if values else ""
    chosen, mime = "", ""
    for value in values:
        mt = value.split(";", 1)[0].strip().lower()
        if "/" not in mt or mt == "*/*":
            continue
        # A later value of the same type without a charset keeps the earlier one, charset and
        # all (HttpUtil::ParseContentType): `text/html; charset=utf-8` then `text/html` is UTF-8.
        if mt != mime or content_charset(value) is not None:
            chosen, mime = value, mt
    return chosen or values[-1]


class VendorResponse:
    """Status, headers and streamed body of one vendor response; `release()` when done.

    `content_type` is the Content-Type as a browser reads it (`browser_content_type`), which
    the proxy judges the body by and sends on alone."""

    def __init__(self, conn: _Connection, status: int, reason: str, headers: CIMultiDict[str]):
        self._conn: _Connection | None = conn
        self.status = status
        self.reason = reason
        self.headers = CIMultiDictProxy(headers)
        self.content_type = browser_content_type(headers.getall("Content-Type", []))
        self.content = ResponseBody(conn)

    @property
    def charset(self) -> str | None:
        return content_charset(self.content_type)

    async def read(self) -> bytes:
        return await self.content.read()

    def release(self) -> None:
        """Hand the connection back for reuse when the response arrived whole; close it otherwise."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finished()


class _Connection(asyncio.Protocol):
    """One connection to a vendor; carries one request at a time."""

    def __init__(self, client: VendorClient, key: tuple[Any, ...]) -> None:
        self.client = client
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.read_timeout: float | None = None
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.used = 0
        self.idle_since = 0.0
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._head: asyncio.Future[VendorResponse] | None = None
        self._head_only = False
        self._response: VendorResponse | None = None
        self._complete = False
        self._keep_alive = False
        self._received = False
        self.sending: asyncio.Task[None] | None = None
        self._status_text = b""
        self._fields: list[tuple[str, str]] = []
        self._head_bytes = 0
        # Raw bytes fed while a head is being read: llhttp calls on_header only once a line
        # ends, so a line that never ends is bounded here (httptools buffers it meanwhile).
        self._in_head = False
        self._head_fed = 0
        self._heads = 0  # heads completed since start() (interim ones too)

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not (self._head_only and isinstance(exc.__context__, _HeadersOnly)):
                cause = exc.__context__ or exc
                self._abort(
                    VendorConnectionError(f"vendor response refused: {cause}", "response_refused")
                )
                return
            # A HEAD answer has headers only, which llhttp cannot be told: the callback stopped
            # it there, and a new parser reads what comes after our next request. Nothing may
            # follow the head in this read: a head ends at its first CRLFCRLF (llhttp allows no
            # bare CR or LF in one), so this read must hold exactly one per head completed since
            # the request and end with one. Anything else (a body, a second answer, a head
            # split oddly across reads) means the vendor is out of step, or may be: the
            # connection is not reused (its extra bytes are never read as an answer).
            keep_alive = (
                self.parser.should_keep_alive()
                and data.endswith(b"\r\n\r\n")
                and data.count(b"\r\n\r\n") == self._heads
            )
            self.parser = httptools.HttpResponseParser(self)
            self._message_done(keep_alive)
            return
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._abort(
                VendorConnectionError(
                    f"malformed response from vendor: {exc}", "malformed_response"
                )
            )
            return
        if self._in_head:  # only while a head is incomplete; nothing once the body streams
            self._head_fed += len(data)
            if self._head_fed > MAX_HEAD_BYTES:
                self._abort(VendorConnectionError("response head too large", "head_too_large"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        resp = self._response
        if resp is not None and not self._complete:
            if self._ends_at_close(resp):
                self._complete = True
                self._keep_alive = False
                resp.content._feed_eof()
            else:
                resp.content._fail(
                    VendorConnectionError(
                        "vendor closed the connection mid-body", "closed_mid_body"
                    )
                )
        if self._head is not None and not self._head.done():
            if self.used > 1 and not self._received:
                self._head.set_exception(_Retry())
            else:
                self._head.set_exception(
                    VendorConnectionError("vendor closed the connection", "closed_before_answer")
                )
        if self._drain is not None and not self._drain.done():
            # A result, not an exception: nobody may be waiting on it (a bytes body's writes
            # pause too), and drain() raises for a closed connection anyway.
            self._drain.set_result(None)
        self.client._forget(self)

    def pause_writing(self) -> None:
        self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        # One request, one answer. A kept connection stays complete while idle, so an answer
        # nobody asked for (a second one, or bytes while idle) drops the connection.
        if self._complete:
            raise ValueError("vendor sent an answer nobody asked for")
        self._status_text = b""
        self._fields = []
        self._head_bytes = 0
        self._in_head = True
        self._head_fed = 0

    def on_status(self, status: bytes) -> None:
        self._status_text += status
        self._count_head(len(status))

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES or len(self._fields) >= MAX_HEADERS:
            raise ValueError("response head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        # As aiohttp: names are ASCII; values keep any other bytes through surrogateescape.
        self._fields.append(
            (name.decode("ascii", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads += 1
        status = self.parser.get_status_code()
        if status < 200:  # 1xx interim answers (100 Continue, 103 Early Hints) are skipped
            return
        resp = VendorResponse(
            self, status, self._status_text.decode("latin-1"), CIMultiDict(self._fields)
        )
        self._response = resp
        if self._head is not None and not self._head.done():
            self._head.set_result(resp)
        if self._head_only:
            raise _HeadersOnly

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response.content._feed(body)

    def on_message_complete(self) -> None:
        if self._response is not None:  # None after a 1xx
            self._message_done(self.parser.should_keep_alive())

    # -- the connection's side
    def _message_done(self, keep_alive: bool) -> None:
        self._complete = True
        self._keep_alive = keep_alive
        assert self._response is not None
        self._response.content._feed_eof()

    @staticmethod
    def _ends_at_close(resp: VendorResponse) -> bool:
        """A body with neither length nor chunking ends when the vendor closes (RFC 9112 §6.3).

        Every Transfer-Encoding field counts (llhttp reads them as one list), and `chunked`
        anywhere in them means not close-delimited: a close mid-body is then an error, never
        taken for the end of a whole body."""
        h = resp.headers
        if "Content-Length" in h:
            return False
        return not any("chunked" in v.lower() for v in h.getall("Transfer-Encoding", ()))

    def _abort(self, exc: BaseException) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        if self._response is not None:
            self._response.content._fail(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        transport = self.transport
        if transport is not None:
            # Unsent bytes are a request nobody waits for any more: close() would hold the
            # socket until a vendor that stopped reading takes them, so drop it at once.
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    async def timed(self, waiter: asyncio.Future[Any]) -> Any:
        """Await `waiter`, failing with TimeoutError when the vendor stays silent too long."""
        if self.read_timeout is None:
            return await waiter
        handle = self.loop.call_later(self.read_timeout, _time_out, waiter)
        try:
            return await waiter
        finally:
            handle.cancel()

    async def drain(self) -> None:
        """Wait until the vendor takes the bytes written, `read_timeout` at most: a vendor
        that stops reading is the vendor's delay (TimeoutError)."""
        if self._drain is not None:
            await self.timed(self._drain)
        if self.closed:
            raise VendorConnectionError("vendor closed the connection", "closed_while_sending")

    def start(self, head_only: bool, read_timeout: float | None) -> asyncio.Future[VendorResponse]:
        self.used += 1
        self._head = self.loop.create_future()
        self._head_only = head_only
        self._response = None
        self._complete = False
        self._keep_alive = False
        self._received = False
        self._heads = 0
        self.read_timeout = read_timeout
        return self._head

    def finished(self) -> None:
        """The response is done with: back to the pool or closed."""
        self._head = None
        self._response = None
        sending, self.sending = self.sending, None
        reusable = True
        if sending is not None and not sending.done():
            sending.cancel()  # the vendor answered before taking the whole body
            reusable = False
        if self.transport is not None and self.transport.get_write_buffer_size():
            # Part of the request is still unsent (a bytes body the vendor answered early):
            # the next request would queue behind it, or the vendor read it as a request.
            # Over TLS this sees the TLS transport's buffers, not the socket's beneath them.
            reusable = False
        if reusable and self._complete and self._keep_alive and not self.closed:
            self.resume()
            self.client._put_back(self)
        else:
            self.close()


class _HeadersOnly(Exception):
    """Raised from the parser callback to stop llhttp after a HEAD answer's headers."""


def _time_out(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("vendor did not answer in time"))


class VendorClient:
    """Keep-alive connections to vendors, pooled per scheme, host, port and TLS settings."""

    def __init__(
        self,
        resolve: Resolve,
        *,
        read_limit: int = 256 * 1024,
        idle_per_host: int = 64,
        keepalive_s: float = 15.0,
        fresh_s: float = 2.0,
    ) -> None:
        self._resolve = resolve
        self.read_limit = read_limit
        self._idle_per_host = idle_per_host
        self._keepalive_s = keepalive_s
        self._fresh_s = fresh_s
        self._idle: dict[tuple[Any, ...], list[_Connection]] = {}
        # Every kept connection, longest idle first (a dict keeps insertion order).
        self._idle_all: dict[_Connection, None] = {}
        self._busy: set[_Connection] = set()
        self._closing = False
        self._default_tls: ssl.SSLContext | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def close(self) -> None:
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        for conn in list(self._busy):
            conn.close()
        self._idle.clear()
        self._idle_all.clear()
        self._busy.clear()

    async def request(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: Body = None,
        *,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float | None,
        read_timeout: float | None,
    ) -> VendorResponse:
        """Send one request and return once the response headers are in (body still streaming)."""
        if self._closing:
            raise VendorConnectionError("client closed", "client_closed")
        scheme, host, port = url.scheme, url.raw_host or "", url.port or 80
        tls = scheme == "https"
        default = 443 if tls else 80
        name = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
        authority = name if port == default else f"{name}:{port}"
        head, length = self._head(method, url.raw_path_qs or "/", authority, headers, body)
        if tls and ssl_context is None:  # https is never sent in the clear: verify by default
            if self._default_tls is None:
                self._default_tls = ssl.create_default_context()
            ssl_context = self._default_tls
        key = (tls, host, port, id(ssl_context) if tls else None)
        retry_ok = method in IDEMPOTENT and (body is None or isinstance(body, bytes))
        while True:
            # A request that cannot be sent twice takes only a connection used moments ago: the
            # longer one has been idle, the likelier the vendor is closing it just now.
            conn = self._take(key, self._keepalive_s if retry_ok else self._fresh_s)
            if conn is None:
                conn = await self._open(
                    key, host, port, ssl_context if tls else None, connect_timeout
                )
            try:
                return await self._exchange(conn, method, head, body, length, read_timeout)
            except _Retry:
                if not retry_ok:
                    raise VendorConnectionError(
                        "vendor closed a kept connection", "closed_before_answer"
                    ) from None
                retry_ok = False  # once, and on a new connection: _take skips closed ones
            except BaseException:
                if conn.sending is not None:
                    conn.sending.cancel()
                conn.close()
                self._busy.discard(conn)
                raise

    @staticmethod
    def _head(
        method: str, target: str, authority: str, headers: CIMultiDict[str], body: Body
    ) -> tuple[bytes, int | None]:
        """The request line and headers, and the Content-Length a streamed body must have
        (None when it goes chunked, or is not streamed)."""
        fields = [(n, v) for n, v in headers.items() if n.lower() not in _OWN_FRAMING]
        if not _is_token(method) or not all([_is_token(n) for n, _ in fields]):
            raise ValueError("the method or a header name is not a token; refusing to send it")
        if _NOT_IN_TARGET.search(target):
            raise ValueError("the request target holds a control byte or space; refusing it")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}"]
        lines += [f"{n}: {v}" for n, v in fields]
        length: int | None = None
        if isinstance(body, bytes):
            lines.append(f"Content-Length: {len(body)}")
        elif body is None:
            if method in _BODY_METHODS:
                lines.append("Content-Length: 0")
        elif "Content-Length" in headers:
            length = int(headers["Content-Length"])
            if length < 0:
                raise ValueError("a negative Content-Length; refusing to send it")
            lines.append(f"Content-Length: {length}")
        else:
            lines.append("Transfer-Encoding: chunked")
        head = "\r\n".join(lines)
        # One check of the whole head: the only CR and LF in it are the line ends put there.
        if head.count("\r") != len(lines) - 1 or head.count("\n") != len(lines) - 1 or "\0" in head:
            raise ValueError(
                "the request line or a header holds CR, LF or NUL; refusing to send it"
            )
        return (head + "\r\n\r\n").encode("utf-8", "surrogateescape"), length

    async def _exchange(
        self,
        conn: _Connection,
        method: str,
        head: bytes,
        body: Body,
        length: int | None,
        read_timeout: float | None,
    ) -> VendorResponse:
        assert conn.transport is not None
        waiter = conn.start(method == "HEAD", read_timeout)
        if isinstance(body, bytes) or body is None:
            conn.transport.write(head + body if body else head)
            return await conn.timed(waiter)  # type: ignore[no-any-return]
        conn.transport.write(head)
        # The body is sent while the answer is awaited: a vendor may answer before reading it all
        # (a 413, say). The connection is reused only when the body went out whole.
        conn.sending = sending = asyncio.ensure_future(_send_body(conn, body, length))
        # The vendor's silence counts only once the body is out: a patron's slow upload is not
        # the vendor's delay.
        await asyncio.wait((waiter, sending), return_when=asyncio.FIRST_COMPLETED)
        return await conn.timed(waiter)  # type: ignore[no-any-return]

    def _take(self, key: tuple[Any, ...], max_idle_s: float) -> _Connection | None:
        """The kept connection used last, if it has been idle at most `max_idle_s`."""
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle[-1]
            if conn.closed or now - conn.idle_since > self._keepalive_s:
                idle.pop()
                self._idle_all.pop(conn, None)
                conn.close()
                continue
            if now - conn.idle_since > max_idle_s:
                return None  # the others have waited longer still; they stay for other requests
            idle.pop()
            self._idle_all.pop(conn, None)
            self._busy.add(conn)
            return conn
        return None

    async def _open(
        self,
        key: tuple[Any, ...],
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float | None,
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        last: OSError | None = None
        try:
            async with asyncio.timeout(connect_timeout):
                for address, aport in await self._resolve(host, port):
                    try:
                        _, conn = await loop.create_connection(
                            lambda: _Connection(self, key),
                            address,
                            aport,
                            ssl=ssl_context,
                            server_hostname=host if ssl_context is not None else None,
                            # A vendor that never answers TLS close_notify holds a closing
                            # connection 2 s at most (asyncio waits 30 s; aiohttp aborted at 2).
                            ssl_shutdown_timeout=TLS_SHUTDOWN_S
                            if ssl_context is not None
                            else None,
                        )
                    except OSError as exc:  # includes ssl.SSLError
                        last = exc
                        continue
                    self._busy.add(conn)
                    return conn
        except TimeoutError:
            raise TimeoutError(f"no connection to {host}:{port} in time") from None
        raise VendorConnectionError(
            f"cannot connect to {host}:{port}: {last}", "connect_failed"
        ) from last

    def _put_back(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        idle = self._idle.setdefault(conn.key, [])
        if self._closing or len(idle) >= self._idle_per_host:
            conn.close()
            return
        if len(self._idle_all) >= MAX_IDLE_TOTAL:
            oldest = next(iter(self._idle_all))
            self._idle_all.pop(oldest)
            others = self._idle[oldest.key]
            others.remove(oldest)
            if not others and oldest.key != conn.key:
                del self._idle[oldest.key]
            oldest.close()
        conn.idle_since = time.monotonic()
        idle.append(conn)
        self._idle_all[conn] = None
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(self._keepalive_s, self._sweep)

    def _sweep(self) -> None:
        """Close kept connections idle longer than `keepalive_s` (a vendor need not close them
        itself), and forget hosts with none left; again later while any are kept."""
        self._sweeper = None
        now = time.monotonic()
        for key, idle in list(self._idle.items()):
            for conn in [c for c in idle if now - c.idle_since > self._keepalive_s]:
                idle.remove(conn)
                self._idle_all.pop(conn, None)
                conn.close()
            if not idle:
                del self._idle[key]
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(self._keepalive_s, self._sweep)

    def _forget(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
            self._idle_all.pop(conn, None)


async def _send_body(conn: _Connection, body: Body, length: int | None) -> None:
    """Writes a streamed request body, chunked when `length` is None and otherwise exactly
    `length` bytes; a failure ends the exchange (the vendor would wait). A body longer than its
    length fails before a byte past it is written (the vendor would read those as a request of
    their own), and one that ends short fails too."""
    assert conn.transport is not None
    source: AsyncIterable[bytes]
    if isinstance(body, StreamReader):
        source = body.iter_chunked(SEND_CHUNK)
    else:
        assert body is not None and not isinstance(body, bytes)
        source = body
    left = length
    try:
        async for chunk in source:
            if not chunk:
                continue
            if left is None:
                conn.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                left -= len(chunk)
                if left < 0:
                    raise ValueError(f"request body longer than its Content-Length {length}")
                conn.transport.write(chunk)
            try:
                await conn.drain()
            except TimeoutError as exc:  # the vendor stopped taking the body: its delay
                conn._abort(exc)
                return
        if left is None:
            conn.transport.write(b"0\r\n\r\n")
        elif left:
            raise ValueError(f"request body {left} bytes short of its Content-Length {length}")
    except Exception as exc:
        conn._abort(
            VendorConnectionError(f"request body not sent whole: {exc!r}", "request_body_not_sent")
        )
