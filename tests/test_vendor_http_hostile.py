"""`proxy.vendor_http` against a hostile or broken vendor (and unsafe caller input), on loopback
sockets that write whatever bytes each test chooses.

The first section holds one test per rule of the module docstring that such a vendor attacks: a
head line that never ends, a vendor that stops reading an upload, an early answer with the body
still unsent, a chunked body cut short under two Transfer-Encoding fields, a streamed body longer
than its Content-Length, a request target with whitespace, bytes after a HEAD answer, and idle
connections over many hosts. The last section holds properties attacked the same way that held
from the start. Every test bounds its own run time with asyncio.wait / wait_for (no
pytest-timeout here).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from proxy.vendor_http import VendorClient, VendorConnectionError
from tests.test_vendor_http import get

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def loopback(host: str, port: int) -> list[tuple[str, int]]:
    return [("127.0.0.1", port)]


@pytest.fixture
async def client() -> AsyncIterator[VendorClient]:
    c = VendorClient(loopback, read_limit=64 * 1024)
    yield c
    await c.close()


class Raw:
    """A loopback server whose every byte `handler` writes; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Raw:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.tasks.discard(task)
            writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.sleep(0)


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


# Paths go out exactly as given (a hostile target is the point); answers are expected quickly.
send = functools.partial(get, encoded=True, read_timeout=3.0)


async def finishes_within(awaitable: Awaitable[object], seconds: float) -> asyncio.Task[object]:
    """The awaitable's task once done; fails the test if it is still waiting after `seconds`."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task not in done:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        pytest.fail(f"still waiting after {seconds} s")
    return task


# ------------------------------------------------------------------------------------------------
# The client's rules under attack: one way a vendor (or a caller's input) breaks each.
# ------------------------------------------------------------------------------------------------


async def test_one_endless_header_value_is_refused_in_bounded_memory(
    client: VendorClient,
) -> None:
    """MAX_HEAD_BYTES must bound a single header line too. httptools accumulates a header's
    name and value until the line ends before calling `on_header`, so `_count_head` never sees
    a value that does not end: the client buffers everything until `read_timeout` (here 5 s;
    30 s by default) instead of refusing after 64 KiB."""
    sent = 0

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        while sent < 512 * 1024 * 1024:
            writer.write(b"a" * 65536)
            sent += 65536
            await writer.drain()
        await asyncio.sleep(30)

    s = await Raw(endless).start()
    try:
        task = await finishes_within(send(client, s.port, read_timeout=5.0), 8)
        exc = task.exception()
        assert isinstance(exc, VendorConnectionError) and "head too large" in str(exc), (
            f"{exc!r} after the vendor pushed {sent >> 20} MiB of one header line"
        )
    finally:
        await s.close()


async def test_a_vendor_that_stops_reading_a_streamed_upload_times_out(
    client: VendorClient,
) -> None:
    """A vendor that takes the request head and then stops reading the body holds the request
    forever: `_exchange` waits for the answer or the end of sending with no timeout, and
    `_send_body` waits in `drain()` with none. Waiting on the vendor to take bytes is the
    vendor's delay, and should end with TimeoutError after `read_timeout`."""

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(60)  # never reads the body, never answers

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(4096):  # 256 MiB, far more than the socket buffers hold
            yield b"u" * 65536

    s = await Raw(deaf).start()
    try:
        task = await finishes_within(
            send(client, s.port, "/upload", "POST", body=upload(), read_timeout=1.0), 6
        )
        with pytest.raises(TimeoutError):
            task.result()
    finally:
        await s.close()


async def test_an_early_answer_while_a_bytes_body_is_still_unsent_closes_the_connection(
    client: VendorClient,
) -> None:
    """The rule "back to the pool only when the request body went out whole" is checked for
    streamed bodies (`conn.sending`) but not for bytes bodies: those are handed to the transport
    in one write and `finished()` never looks at its write buffer. A vendor that answers 413
    from the headers and reads no further gets the connection back with megabytes of the old
    body still queued; the next patron's request goes out behind them and is never answered."""

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"POST"):
            writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(60)  # reads nothing more on this connection
        else:
            writer.write(ok(b"fresh"))
            await writer.drain()

    s = await Raw(early).start()
    try:
        status, _ = await asyncio.wait_for(
            send(client, s.port, "/upload", "POST", body=b"b" * (32 * 1024 * 1024)), 5
        )
        assert status == 413
        task = await finishes_within(send(client, s.port, "/next", read_timeout=2.0), 5)
        assert task.result() == (200, b"fresh")
        assert s.connections == 2
    finally:
        await s.close()


async def test_a_chunked_body_cut_short_is_an_error_when_transfer_encoding_is_two_fields(
    client: VendorClient,
) -> None:
    """`_ends_at_close` reads only the first Transfer-Encoding field. With `gzip` and `chunked`
    in two fields llhttp frames the body as chunked, but a close mid-body is taken for the end
    of a close-delimited body: the truncated body is handed over as whole (no error), so the
    forwarder relays a short page as a complete one."""

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.1)  # then closes, with no last chunk

    s = await Raw(cut).start()
    try:
        with pytest.raises(VendorConnectionError):
            status, body = await asyncio.wait_for(send(client, s.port), 5)
            print("delivered as whole:", status, body)
    finally:
        await s.close()


async def test_a_streamed_body_longer_than_its_content_length_is_not_sent_past_it(
    client: VendorClient,
) -> None:
    """With a Content-Length header and a streamed body the client announces that length but
    writes whatever the body yields: bytes past the length reach the vendor as a request of
    their own (request smuggling on a shared connection). It should stop (and fail the exchange)
    rather than write past the length it announced."""
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head.split(b"\r\n", 1)[0])
            if head.startswith(b"POST"):
                await reader.readexactly(3)
            writer.write(ok(b"ok"))
            await writer.drain()

    async def upload() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"GET /smuggled HTTP/1.1\r\nHost: vendor.test\r\n\r\n"

    s = await Raw(record).start()
    try:
        with contextlib.suppress(VendorConnectionError, TimeoutError):
            await asyncio.wait_for(
                send(client, s.port, "/form", "POST", {"Content-Length": "3"}, upload()), 5
            )
        await asyncio.sleep(0.2)
        assert heads == [b"POST /form HTTP/1.1"]
    finally:
        await s.close()


async def test_a_request_target_with_whitespace_is_refused(client: VendorClient) -> None:
    """The head check refuses CR, LF and NUL only. A target holding a space or tab (a URL built
    with encoded=True) rewrites the request line: here the vendor reads
    `GET /a HTTP/1.0 ...`-style lines the caller never meant to send."""
    lines: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines.append(head.split(b"\r\n", 1)[0])
        writer.write(ok(b"ok"))
        await writer.drain()

    s = await Raw(record).start()
    try:
        with pytest.raises(ValueError):
            await asyncio.wait_for(send(client, s.port, "/a HTTP/1.0\tx"), 5)
        assert lines == []
    finally:
        await s.close()


async def test_bytes_after_a_head_answer_drop_the_connection(client: VendorClient) -> None:
    """The rule "an answer nobody asked for drops the connection" does not hold after HEAD: the parser is
    stopped at the headers and the rest of that read (here a whole second response) is thrown
    away silently while the connection goes back to the pool. The vendor is demonstrably out of
    step (it sent a body to HEAD); the connection should be closed as after any other extra
    bytes, not reused for another patron."""

    async def head_with_extra(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"HEAD"):
                planted = ok(b"planted")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(planted))
                writer.write(planted)
            else:
                writer.write(ok(b"next"))
            await writer.drain()

    s = await Raw(head_with_extra).start()
    try:
        assert await asyncio.wait_for(send(client, s.port, method="HEAD"), 5) == (200, b"")
        await asyncio.sleep(0.1)
        assert await asyncio.wait_for(send(client, s.port), 5) == (200, b"next")
        assert s.connections == 2
    finally:
        await s.close()


async def test_idle_connections_are_bounded_in_total_not_only_per_host(
    client: VendorClient,
) -> None:
    """`idle_per_host` (64) bounds kept connections per (scheme, host, port, TLS) key, but the
    number of keys is not bounded: a wildcard vendor lets a signed-in patron name any number of
    subdomains (the resolver's cache is bounded for that reason), and each keeps its own idle
    connection for 15 s. 400 subdomains leave 400 open sockets; nothing caps the total."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok(b"ok"))
            await writer.drain()

    s = await Raw(answer).start()
    try:

        async def many() -> None:
            for i in range(400):
                await send(client, s.port, host=f"s{i}.vendor.test")

        await asyncio.wait_for(many(), 12)
        await asyncio.sleep(0.1)
        open_now = len(s.tasks)
        assert open_now <= 256, f"{open_now} idle vendor connections kept open"
    finally:
        await s.close()


# ------------------------------------------------------------------------------------------------
# Properties attacked the same way that held from the start.
# ------------------------------------------------------------------------------------------------


async def test_fine_a_handler_cancelled_mid_body_never_hands_its_bytes_to_the_next_request(
    client: VendorClient,
) -> None:
    """Patron A's handler is cancelled after half of a body arrived; the rest of A's body, sent
    later, must not become patron B's answer: A's connection is closed, B gets a new one."""

    async def split(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"/private" in head:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nPRIVATE-")
                await writer.drain()
                await asyncio.sleep(0.3)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nA-SECRET!")
            else:
                writer.write(ok(b"for B"))
            await writer.drain()

    s = await Raw(split).start()
    try:
        a = asyncio.ensure_future(send(client, s.port, "/private"))
        await asyncio.sleep(0.1)
        a.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await a
        started = time.monotonic()
        assert await asyncio.wait_for(send(client, s.port, "/b"), 5) == (200, b"for B")
        assert time.monotonic() - started < 1
        await asyncio.sleep(0.4)
        assert await asyncio.wait_for(send(client, s.port, "/b"), 5) == (200, b"for B")
        assert s.connections == 2
    finally:
        await s.close()


async def test_fine_several_interim_answers_then_reuse_keeps_answers_in_step(
    client: VendorClient,
) -> None:
    """100, 103 and 100 again before the answer are skipped; the connection is reused and the
    next answer is the next request's, not a leftover."""
    n = 0

    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal n
        while True:
            await reader.readuntil(b"\r\n\r\n")
            n += 1
            writer.write(
                b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"answer %d" % n)
            )
            await writer.drain()

    s = await Raw(interim).start()
    try:
        assert await asyncio.wait_for(send(client, s.port), 5) == (200, b"answer 1")
        assert await asyncio.wait_for(send(client, s.port), 5) == (200, b"answer 2")
        assert s.connections == 1
    finally:
        await s.close()
