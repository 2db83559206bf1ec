"""The vendor-facing HTTP/1.1 client (`proxy.vendor_http`) against scripted loopback servers.

Each server here speaks raw HTTP over asyncio streams, so a test controls every byte a vendor
sends (framing, early closes, interim answers) and sees every byte the client sent. End-to-end
forwarding through the proxy is covered by the e2e suites; these pin the client's own rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict
from yarl import URL

from proxy.vendor_http import VendorClient, VendorConnectionError, VendorResponse
from tests.canary import CANARY
from tests.fixtures_ldap import make_tls_files
from tests.harness import ldap_directory, write_config

Reply = Callable[[int, bytes], Awaitable[bytes | None]]


class Scripted:
    """A loopback HTTP server: reads each request whole, answers what `reply` returns for it
    (None: close the connection without answering). Records requests and connections."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lower = head.lower()
        body = b""
        if b"content-length:" in lower:
            n = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            body = await reader.readexactly(n)
        elif b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                data = await reader.readexactly(size + 2)
                if size == 0:
                    break
                body += data[:-2]
        return head + body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while (request := await self._read_request(reader)) is not None:
                self.requests.append(request)
                answer = await self.reply(len(self.requests), request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def raw_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, int]:
    """A loopback server whose every byte the test's `handler` writes; (server, port)."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def ok(body: bytes = b"hello", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def always(answer: bytes) -> Reply:
    async def reply(n: int, request: bytes) -> bytes | None:
        return answer

    return reply


async def loopback(host: str, port: int) -> list[tuple[str, int]]:
    return [("127.0.0.1", port)]


@pytest.fixture
async def client() -> AsyncIterator[VendorClient]:
    c = VendorClient(loopback, read_limit=64 * 1024)
    yield c
    await c.close()


async def serve(reply: Reply) -> Scripted:
    s = Scripted(reply)
    await s.start()
    return s


async def open_response(
    client: VendorClient, url: str, *, connect_timeout: float = 5.0, read_timeout: float = 5.0
) -> VendorResponse:
    """A GET whose response the test reads (and releases) itself."""
    return await client.request(
        "GET",
        URL(url),
        CIMultiDict(),
        ssl_context=None,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


async def get(
    client: VendorClient,
    port: int,
    path: str = "/",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | AsyncIterator[bytes] | None = None,
    read_timeout: float | None = 5.0,
    *,
    host: str = "vendor.test",
    encoded: bool = False,
) -> tuple[int, bytes]:
    """One request, its status and whole body; `encoded`: the path goes out exactly as given."""
    resp = await client.request(
        method,
        URL(f"http://{host}:{port}{path}", encoded=encoded),
        CIMultiDict(headers or {}),
        body,
        ssl_context=None,
        connect_timeout=5.0,
        read_timeout=read_timeout,
    )
    try:
        return resp.status, await resp.read()
    finally:
        resp.release()


async def test_sends_exactly_the_given_headers_and_its_own_framing(client: VendorClient) -> None:
    s = await serve(await always(ok()))
    await get(client, s.port, "/a?q=1", headers={"Accept": "text/html", "X-Assertion": "sig"})
    head = s.requests[0].decode()
    lines = head.split("\r\n")
    assert lines[0] == "GET /a?q=1 HTTP/1.1"
    assert sorted(lines[1:-2]) == sorted(
        [f"Host: vendor.test:{s.port}", "Accept: text/html", "X-Assertion: sig"]
    )
    await s.close()


async def test_header_with_a_line_break_is_refused_before_anything_is_sent(
    client: VendorClient,
) -> None:
    s = await serve(await always(ok()))
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        await get(client, s.port, headers={"X-Evil": "a\r\nX-Injected: 1"})
    await asyncio.sleep(0.05)
    assert s.connections == 0 and s.requests == []
    await s.close()


async def test_keep_alive_connection_is_reused_for_requests_read_whole(
    client: VendorClient,
) -> None:
    s = await serve(await always(ok(b"x" * 5000)))
    for _ in range(5):
        assert await get(client, s.port) == (200, b"x" * 5000)
    assert s.connections == 1 and len(s.requests) == 5
    await s.close()


async def test_a_body_left_unread_closes_its_connection(client: VendorClient) -> None:
    s = await serve(await always(ok(b"y" * 200_000)))
    resp = await open_response(client, f"http://vendor.test:{s.port}/")
    assert len(await resp.content.read(1000)) > 0
    resp.release()
    assert await get(client, s.port) == (200, b"y" * 200_000)
    assert s.connections == 2
    await s.close()


async def test_connection_close_answer_is_not_reused(client: VendorClient) -> None:
    s = await serve(await always(ok(b"z", "Connection: close\r\n")))
    for _ in range(3):
        assert await get(client, s.port) == (200, b"z")
    assert s.connections == 3
    await s.close()


async def test_head_answer_with_a_length_has_no_body_and_the_connection_goes_on(
    client: VendorClient,
) -> None:
    async def reply(n: int, request: bytes) -> bytes:
        if request.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        return ok(b"after head")

    s = await serve(reply)
    assert await get(client, s.port, method="HEAD") == (200, b"")
    assert await get(client, s.port) == (200, b"after head")
    assert s.connections == 1
    await s.close()


async def test_chunked_and_close_delimited_bodies_arrive_whole(client: VendorClient) -> None:
    body = bytes(range(256)) * 300

    async def reply(n: int, request: bytes) -> bytes:
        if b"/chunked" in request:
            chunks = b"".join(
                b"%x\r\n%s\r\n" % (len(body[i : i + 7000]), body[i : i + 7000])
                for i in range(0, len(body), 7000)
            )
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        return b"HTTP/1.0 200 OK\r\nContent-Type: application/pdf\r\n\r\n" + body

    s = await serve(reply)
    assert await get(client, s.port, "/chunked") == (200, body)

    # HTTP/1.0 without a length: the body ends when the vendor closes.
    async def close_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(await reply(1, b"GET /plain"))
        await writer.drain()
        writer.close()

    server, port = await raw_server(close_after)
    assert await get(client, port, "/plain") == (200, body)
    server.close()
    await s.close()


async def test_body_cut_short_of_its_length_is_an_error_not_a_short_body(
    client: VendorClient,
) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 5000)
        await writer.drain()
        writer.close()

    server, port = await raw_server(cut)
    with pytest.raises(VendorConnectionError, match="mid-body"):
        await get(client, port)
    server.close()


async def test_interim_100_continue_is_skipped(client: VendorClient) -> None:
    s = await serve(await always(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final")))
    assert await get(client, s.port) == (200, b"final")
    await s.close()


async def test_malformed_answer_is_a_connection_error(client: VendorClient) -> None:
    s = await serve(await always(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n"))
    with pytest.raises(VendorConnectionError, match="malformed"):
        await get(client, s.port)
    await s.close()


async def test_kept_connection_closed_by_the_vendor_is_replaced_once_for_a_get(
    client: VendorClient,
) -> None:
    # The vendor takes the second request on the kept connection and closes without answering,
    # as one that timed the connection out at that moment does.
    async def reply(n: int, request: bytes) -> bytes | None:
        return None if n == 2 else ok(b"again")

    s = await serve(reply)
    assert await get(client, s.port) == (200, b"again")
    assert await get(client, s.port) == (200, b"again")
    assert s.connections == 2 and len(s.requests) == 3
    await s.close()


async def test_kept_connection_closed_under_a_post_is_not_sent_twice(
    client: VendorClient,
) -> None:
    async def reply(n: int, request: bytes) -> bytes | None:
        return None if n == 2 else ok()

    s = await serve(reply)
    await get(client, s.port)
    with pytest.raises(VendorConnectionError):
        await get(client, s.port, method="POST", body=b"card=1")
    await asyncio.sleep(0.05)
    assert [r.split(b" ", 1)[0] for r in s.requests] == [b"GET", b"POST"]
    await s.close()


async def test_request_bodies_by_length_and_streamed_chunked(client: VendorClient) -> None:
    s = await serve(await always(ok()))
    await get(client, s.port, method="POST", body=b"q=weston")
    assert s.requests[-1].endswith(b"Content-Length: 8\r\n\r\nq=weston")

    async def pieces() -> AsyncIterator[bytes]:
        for part in (b"one,", b"", b"two,", b"three"):
            yield part

    await get(client, s.port, method="POST", body=pieces())
    assert b"Transfer-Encoding: chunked\r\n" in s.requests[-1]
    assert s.requests[-1].endswith(b"\r\n\r\none,two,three")
    await get(client, s.port, method="POST", body=None)
    assert s.requests[-1].endswith(b"Content-Length: 0\r\n\r\n")
    await s.close()


async def test_reading_pauses_while_the_patron_lags(client: VendorClient) -> None:
    big = b"p" * (8 * 1024 * 1024)
    s = await serve(await always(ok(big)))
    resp = await open_response(client, f"http://vendor.test:{s.port}/")
    await asyncio.sleep(0.3)  # the vendor could send it all by now; the client must not take it
    held = resp.content._size
    assert 64 * 1024 <= held <= 64 * 1024 + 512 * 1024
    got = len(await resp.read())
    resp.release()
    assert got == len(big)
    await s.close()


async def test_silent_vendor_times_out(client: VendorClient) -> None:
    async def never(n: int, request: bytes) -> bytes | None:
        await asyncio.sleep(30)
        return None

    s = await serve(never)
    with pytest.raises(TimeoutError):
        await get(client, s.port, read_timeout=0.2)
    await s.close()


async def test_connect_timeout_covers_a_resolver_that_hangs() -> None:
    async def hang(host: str, port: int) -> list[tuple[str, int]]:
        await asyncio.sleep(30)
        return []

    c = VendorClient(hang)
    with pytest.raises(TimeoutError):
        await open_response(c, "http://vendor.test/", connect_timeout=0.2)
    await c.close()


async def test_refused_connection_is_a_connection_error(client: VendorClient) -> None:
    s = await serve(await always(ok()))
    port = s.port
    await s.close()
    assert s.server is not None
    await s.server.wait_closed()
    with pytest.raises(VendorConnectionError, match="cannot connect"):
        await get(client, port)


async def test_https_verifies_the_vendor_certificate(tmp_path: Path) -> None:
    ca_file, cert_file, key_file, other_ca = make_tls_files(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    s = Scripted(await always(ok(b"secure")))
    await s.start(server_ctx)
    c = VendorClient(loopback)
    url = URL(f"https://localhost:{s.port}/")

    async def fetch(ctx: ssl.SSLContext | None) -> bytes:
        resp = await c.request(
            "GET", url, CIMultiDict(), ssl_context=ctx, connect_timeout=5, read_timeout=5
        )
        try:
            return await resp.read()
        finally:
            resp.release()

    assert await fetch(ssl.create_default_context(cafile=str(ca_file))) == b"secure"
    for wrong in (ssl.create_default_context(cafile=str(other_ca)), None):
        # Another CA, or none given (the system's): refused, and never sent in the clear.
        with pytest.raises(VendorConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await fetch(wrong)
    assert len(s.requests) == 1
    await c.close()
    await s.close()


async def test_connection_answered_before_the_body_was_sent_is_not_reused(
    client: VendorClient,
) -> None:
    """A vendor may refuse an upload from its headers (413) and keep the connection; what is left
    of the body must not be read by it as the next request, so that connection is dropped."""
    seen: list[bytes] = []
    connections = 0

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(head.split(b"\r\n", 1)[0])
                if head.startswith(b"POST"):
                    writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(ok(b"fresh"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server, port = await raw_server(early)
    answered = asyncio.Event()

    async def upload() -> AsyncIterator[bytes]:
        yield b"first part,"
        await answered.wait()
        yield b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

    resp = await client.request(
        "POST",
        URL(f"http://vendor.test:{port}/upload"),
        CIMultiDict(),
        upload(),
        ssl_context=None,
        connect_timeout=5,
        read_timeout=5,
    )
    assert resp.status == 413
    assert await resp.read() == b""
    resp.release()
    answered.set()
    assert await get(client, port, "/next") == (200, b"fresh")
    await asyncio.sleep(0.05)
    assert connections == 2
    assert seen == [b"POST /upload HTTP/1.1", b"GET /next HTTP/1.1"]
    server.close()


async def test_a_response_head_without_end_is_refused_in_bounded_memory(
    client: VendorClient,
) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        try:
            for i in range(100_000):
                writer.write(f"X-Filler-{i}: {'f' * 100}\r\n".encode())
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server, port = await raw_server(endless)
    with pytest.raises(VendorConnectionError, match="head too large"):
        await get(client, port)
    server.close()


async def test_vendor_hosts_resolving_to_non_public_addresses_are_refused() -> None:
    """Without `connect_to`, a vendor host that resolves to loopback (or any private address) is
    not connected to: a vendor's DNS must not point the proxy at the library's own network."""
    from proxy.forward import BlockedAddress, VendorResolver
    from proxy.hosts import HostMap

    hosts = HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.test",
        public_port=None,
        vendor_hosts=[("inside", ["localhost", "127.0.0.1"]), ("pinned", ["db.vendor.test"])],
    )
    resolve = VendorResolver({"pinned": ("127.0.0.1", 8443)}, hosts)
    for host in ("localhost", "127.0.0.1", "10.1.2.3", "::1"):
        with pytest.raises(BlockedAddress, match="non-public"):
            await resolve(host, 443)
    assert await resolve("db.vendor.test", 443) == [("127.0.0.1", 8443)]  # connect_to wins

    # Through the client: nothing is opened, and the forwarder's 502 path gets an OSError.
    c = VendorClient(resolve)
    with pytest.raises(OSError, match="non-public"):
        await open_response(c, "http://localhost/")
    await c.close()


async def test_a_slow_upload_is_not_the_vendors_silence(client: VendorClient) -> None:
    s = await serve(await always(ok(b"stored")))

    async def slow() -> AsyncIterator[bytes]:
        for i in range(4):
            await asyncio.sleep(0.15)
            yield b"part %d," % i

    assert await get(client, s.port, method="POST", body=slow(), read_timeout=0.3) == (
        200,
        b"stored",
    )
    assert s.requests[-1].endswith(b"part 0,part 1,part 2,part 3,")
    await s.close()


async def test_bytes_beyond_the_answer_drop_the_connection(client: VendorClient) -> None:
    """A vendor that sends more than it answered (a second response, stray bytes while idle) gets
    a new connection next time: nothing it sent unasked is read as the answer to a later request."""

    async def extra(n: int, request: bytes) -> bytes:
        if n == 1:
            return ok(b"first") + ok(b"planted")  # two answers to one request
        return ok(b"next %d" % n)

    s = await serve(extra)
    status, body = await get(client, s.port)
    assert (status, body) == (200, b"first")
    assert await get(client, s.port) == (200, b"next 2")
    assert s.connections == 2

    # Unasked bytes on the idle kept connection: the start of an answer whose body would swallow
    # the real answer to the next request.
    connections = 0

    async def stray(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        n = 0
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                n += 1
                writer.write(ok(b"answer %d on %d" % (n, connections)))
                await writer.drain()
                if n == 1:
                    await asyncio.sleep(0.05)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\nplanted")
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server, port = await raw_server(stray)
    assert await get(client, port) == (200, b"answer 1 on 1")
    await asyncio.sleep(0.2)
    assert await get(client, port) == (200, b"answer 1 on 2")
    server.close()
    await s.close()


async def test_host_header_keeps_an_ipv6_literal_in_brackets(client: VendorClient) -> None:
    s = await serve(await always(ok()))
    resp = await open_response(client, f"http://[::1]:{s.port}/v6")
    await resp.read()
    resp.release()
    assert f"\r\nHost: [::1]:{s.port}\r\n".encode() in s.requests[0]
    await s.close()


async def test_framing_headers_given_are_replaced_by_the_clients_own(client: VendorClient) -> None:
    """Host, Content-Length, Transfer-Encoding and Connection are the client's to write: a stale
    length (a body changed by unmapping) or a second framing never reaches the vendor."""
    s = await serve(await always(ok()))
    given = {
        "Content-Length": "999",
        "Transfer-Encoding": "chunked",
        "Connection": "close",
        "Host": "elsewhere.test",
    }
    await get(client, s.port, "/post", method="POST", headers=given, body=b"abc")
    lines = s.requests[0].split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    names = [line.split(b":", 1)[0].lower() for line in lines]
    assert sorted(names) == [b"content-length", b"host"]
    assert f"Host: vendor.test:{s.port}".encode() in lines and b"Content-Length: 3" in lines
    assert s.requests[0].endswith(b"\r\n\r\nabc")
    await s.close()


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["length-and-chunked", "two-lengths", "folded-header", "space-in-name"],
)
async def test_ambiguous_vendor_framing_is_refused(client: VendorClient, head: bytes) -> None:
    """A response whose length two readers could disagree on is not relayed (llhttp's strict
    mode): the forwarder answers 502 instead of passing on bytes it cannot frame."""
    s = await serve(await always(head + b"0\r\n\r\nhello"))
    with pytest.raises(VendorConnectionError, match="malformed"):
        await get(client, s.port)
    await s.close()


async def test_a_post_after_a_pause_goes_on_a_new_connection() -> None:
    """The vendor closes a kept connection as the next request arrives on it (its idle timeout
    running out just then). A GET would be sent again; a POST cannot be, so after a pause it is
    not put on a kept connection at all, and arrives."""
    seen: list[tuple[int, bytes]] = []
    connections = 0

    async def one_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        connections += 1
        number = connections
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"POST"):
            await reader.readexactly(3)
        seen.append((number, head.split(b" ", 1)[0]))
        writer.write(ok(b"answer on %d" % number))
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")  # a second request here: closed unanswered
        writer.close()

    server, port = await raw_server(one_per_connection)
    c = VendorClient(loopback, fresh_s=0.2)
    assert await get(c, port) == (200, b"answer on 1")
    await asyncio.sleep(0.3)
    assert await get(c, port, method="POST", body=b"q=1") == (200, b"answer on 2")
    assert seen == [(1, b"GET"), (2, b"POST")]
    await c.close()
    server.close()


async def test_each_vendors_tls_settings_reach_the_client(
    tmp_path: Path, port: int, running_slapd: Any, proxy_factory: Any
) -> None:
    """Through the proxy, against a vendor speaking TLS with a certificate from a private CA:
    `tls_ca_file` naming that CA → 200; no CA given (the system's store) → 502 and the request
    never sent; `tls_verify = false` → 200. A mix-up in `Upstream.start` (every vendor verified
    against the wrong store, or none verified) fails here."""
    names = {"trusted": "www.tls-trusted.test", "plain": "www.tls-plain.test"}
    names["noverify"] = "www.tls-noverify.test"
    ca_file, cert_file, key_file, _ = make_tls_files(tmp_path, tuple(names.values()))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    s = Scripted(await always(ok(b"over tls", "Content-Type: text/plain\r\n")))
    await s.start(server_ctx)
    extra = {
        "trusted": f'tls_ca_file = "{ca_file}"\n',
        "plain": "",
        "noverify": "tls_verify = false\n",
    }
    vendors = {
        vid: (
            f'id = "{vid}"\ntitle = "TLS {vid}"\norigin = "https://{host}"\nhosts = ["{host}"]\n'
            f'auth = "assertion"\nconnect_to = "127.0.0.1:{s.port}"\n' + extra[vid]
        )
        for vid, host in names.items()
    }
    cfg = write_config(
        tmp_path, port=port, directory=ldap_directory(running_slapd, tmp_path), vendors=vendors
    )
    driver = await proxy_factory(cfg)
    await driver.login(CANARY.uid, CANARY.password)
    statuses = {}
    for vid, host in names.items():
        r = await driver.get_vendor(host, f"/{vid}")
        statuses[vid] = r.status
        await r.read()
    assert statuses == {"trusted": 200, "plain": 502, "noverify": 200}
    assert sorted(r.split(b" ", 2)[1] for r in s.requests) == [b"/noverify", b"/trusted"]
    await s.close()


async def test_the_resolvers_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patrons can name any subdomain of a wildcard vendor; the addresses kept stay bounded.
    (Numeric public addresses: getaddrinfo answers them without the network.)"""
    from proxy import forward
    from proxy.hosts import HostMap

    monkeypatch.setattr(forward, "DNS_CACHE_SIZE", 4)
    hosts = HostMap.build(
        public_scheme="https", public_host="proxy.lib.test", public_port=None, vendor_hosts=[]
    )
    resolve = forward.VendorResolver({}, hosts)
    for i in range(1, 11):
        assert await resolve(f"8.8.4.{i}", 443) == [(f"8.8.4.{i}", 443)]
        assert len(resolve._cache) <= 4
    assert ("8.8.4.10", 443) in resolve._cache  # the newest is kept


async def test_idle_connections_are_closed_after_keepalive_even_if_the_vendor_keeps_them() -> None:
    """A vendor that never closes idle connections does not make the proxy hold them (and their
    file descriptors) for ever: past `keepalive_s` they are closed and the host forgotten."""
    c = VendorClient(loopback, keepalive_s=0.2)
    s = await serve(await always(ok()))
    assert await get(c, s.port) == (200, b"hello")
    (kept,) = [conn for conns in c._idle.values() for conn in conns]
    await asyncio.sleep(0.6)
    assert kept.closed and c._idle == {}
    assert await get(c, s.port) == (200, b"hello")  # and a new one serves the next request
    assert s.connections == 2
    await c.close()
    await s.close()
