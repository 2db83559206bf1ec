"""From a mutation sweep by hand (1 December 2026), second pass over the vendor HTTP client,
admission and the send watch (54 mutants, 18 non-equivalent survivors, each killed here).

Each test names the mutant of proxy/vendor_http.py, proxy/admission.py or proxy/patron_reads.py
it kills, and the behaviour it proves. Vendors are scripted loopback servers (every byte seen);
no personal data, loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import pytest
from multidict import CIMultiDict
from yarl import URL

from proxy.admission import Admission
from proxy.errors import Busy
from proxy.vendor_http import VendorClient, VendorConnectionError
from tests.fixtures_ldap import make_tls_files
from tests.test_vendor_http import Scripted, always, get, loopback, ok, raw_server, serve


async def test_a_get_the_vendor_dropped_on_a_new_connection_is_not_sent_again() -> None:
    """kills: proxy/vendor_http.py:_Connection.connection_lost — `self.used > 1 and not
    self._received` → `self.used >= 1 and not self._received`.

    Only a *kept* connection the vendor closed as the request went out is worth a second try
    (it was the vendor timing out an idle connection). A vendor that takes a request on a brand
    new connection and drops it (crashing on it, or refusing it) gets it once: the patron sees
    the error, and the vendor is not hit with every failing request twice."""
    c = VendorClient(loopback)
    s = await serve(await always(None))  # type: ignore[arg-type]
    with pytest.raises(VendorConnectionError) as failed:
        await get(c, s.port)
    assert failed.value.why == "closed_before_answer"
    await asyncio.sleep(0.05)
    assert len(s.requests) == 1 and s.connections == 1
    await c.close()
    await s.close()


async def test_a_kept_connection_closed_after_part_of_an_answer_is_not_sent_again() -> None:
    """kills: proxy/vendor_http.py:_Connection.connection_lost — `self.used > 1 and not
    self._received` → `self.used > 1`.

    A second try is only for a kept connection closed *before any answer*. Once the vendor has
    begun to answer (part of a head came back) it has taken and worked on the request: the
    request is not sent again (a PUT or DELETE, a GET with side effects at the vendor), the
    patron gets the error."""
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                requests.append(await reader.readuntil(b"\r\n\r\n"))
                if len(requests) == 1:
                    writer.write(ok())
                    await writer.drain()
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Ty")
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server, port = await raw_server(handler)
    c = VendorClient(loopback)
    assert await get(c, port) == (200, b"hello")
    with pytest.raises(VendorConnectionError):
        await get(c, port, method="DELETE")
    await asyncio.sleep(0.05)
    assert [r.split(b" ", 1)[0] for r in requests] == [b"GET", b"DELETE"]
    await c.close()
    server.close()


async def test_https_to_a_vendor_sends_its_host_name_for_sni(tmp_path: Path) -> None:
    """kills: proxy/vendor_http.py:VendorClient._open — `server_hostname=host if ssl_context is
    not None else None` → `server_hostname=None`.

    The TLS handshake names the vendor's host (SNI) and the certificate is checked against that
    name, not against the address connected to: a vendor on shared hosting or a CDN picks its
    certificate by SNI, and a certificate valid only for the IP address must not pass for the
    vendor's host."""
    ca_file, cert_file, key_file, _ = make_tls_files(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    seen: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen.append(name)  # type: ignore[assignment,return-value]
    s = Scripted(await always(ok(b"secure")))
    await s.start(server_ctx)
    c = VendorClient(loopback)
    resp = await c.request(
        "GET",
        URL(f"https://localhost:{s.port}/"),
        CIMultiDict(),
        ssl_context=ssl.create_default_context(cafile=str(ca_file)),
        connect_timeout=5,
        read_timeout=5,
    )
    assert await resp.read() == b"secure"
    resp.release()
    assert seen == ["localhost"]
    await c.close()
    await s.close()


async def test_kept_connections_keep_being_swept_while_any_are_kept() -> None:
    """kills: proxy/vendor_http.py:VendorClient._sweep — `if self._idle:` (arm the next sweep)
    → `if False:`.

    The sweep that closes one vendor's idle connection must come round again for another
    vendor's connection kept a moment later: otherwise that one (and its descriptor) is held
    for as long as no other connection goes back to the pool, however long past keepalive_s."""
    c = VendorClient(loopback, keepalive_s=0.3)
    a = await serve(await always(ok()))
    b = await serve(await always(ok()))
    assert await get(c, a.port) == (200, b"hello")
    await asyncio.sleep(0.15)
    assert await get(c, b.port) == (200, b"hello")
    (kept_b,) = [conn for conns in c._idle.values() for conn in conns if conn.key[2] == b.port]
    await asyncio.sleep(3.0)  # b is due at 0.3 s; room for a loaded machine's late sweeps
    assert kept_b.closed and c._idle == {}
    await c.close()
    await a.close()
    await b.close()


async def test_a_whole_answer_followed_by_stray_bytes_still_streams_to_its_end() -> None:
    """kills: proxy/vendor_http.py:ResponseBody._fail — `if not self._eof:` → `if True:`.

    A vendor that sends a complete answer and then bytes nobody asked for (a second answer in
    the same write) loses its connection, but the answer that arrived whole is still delivered
    whole: the forwarder streams it chunk by chunk to the patron and reaches its end, instead of
    failing the patron's page after the last byte with an error from the bytes that followed."""
    s = await serve(await always(ok(b"first") + ok(b"planted")))
    c = VendorClient(loopback)
    resp = await c.request(
        "GET",
        URL(f"http://vendor.test:{s.port}/"),
        CIMultiDict(),
        ssl_context=None,
        connect_timeout=5,
        read_timeout=5,
    )
    await asyncio.sleep(0.1)  # the whole write (the answer and what follows) has arrived
    got = [chunk async for chunk in resp.content.iter_chunked(1024)]
    assert b"".join(got) == b"first"
    resp.release()
    await c.close()
    await s.close()


async def test_the_host_header_names_no_default_port() -> None:
    """kills: proxy/vendor_http.py:VendorClient.request — `name if port == default else
    f"{name}:{port}"` → always with the port.

    A vendor reached on its scheme's default port gets `Host: www.vendor.test`, as a browser
    sends it, not `Host: www.vendor.test:80`: virtual-hosted vendors and ones that sign or check
    the Host they see would otherwise answer with the wrong site or refuse the request."""
    s = await serve(await always(ok()))

    async def to_scripted(host: str, port: int) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port)]

    c = VendorClient(to_scripted)
    resp = await c.request(
        "GET",
        URL("http://www.vendor.test/a"),
        CIMultiDict(),
        ssl_context=None,
        connect_timeout=5,
        read_timeout=5,
    )
    await resp.read()
    resp.release()
    assert b"\r\nHost: www.vendor.test\r\n" in s.requests[0]
    await c.close()
    await s.close()


async def test_a_connection_opened_while_the_client_closes_is_not_kept() -> None:
    """kills: proxy/vendor_http.py:VendorClient._put_back — `if self._closing or len(idle) >=
    self._idle_per_host:` → `if len(idle) >= self._idle_per_host:`.

    A client being closed (a reload or shutdown replaces it) keeps nothing: a request that was
    still connecting when close() ran gets its answer, and then its connection is closed, not
    put in a pool nobody will sweep or use again (a descriptor held for ever per such request)."""
    s = await serve(await always(ok()))
    resolving = asyncio.Event()
    go_on = asyncio.Event()

    async def slow_resolve(host: str, port: int) -> list[tuple[str, int]]:
        resolving.set()
        await go_on.wait()
        return [("127.0.0.1", s.port)]

    c = VendorClient(slow_resolve)
    task = asyncio.create_task(get(c, s.port))
    await resolving.wait()
    await c.close()
    go_on.set()
    assert await task == (200, b"hello")
    assert c._idle.get((False, "vendor.test", s.port, None), []) == [] and not c._idle_all
    await s.close()


async def test_a_streamed_body_with_a_negative_length_is_refused_before_anything_is_sent() -> None:
    """kills: proxy/vendor_http.py:VendorClient._head — `if length < 0: raise ValueError` →
    `if False:`.

    A streamed upload announced with `Content-Length: -1` is refused (ValueError) before a byte
    goes to the vendor: a head carrying a negative length would make a vendor (or a front server
    before it) read the framing its own way, the start of request smuggling."""
    s = await serve(await always(ok()))
    c = VendorClient(loopback)

    async def body():  # type: ignore[no-untyped-def]
        yield b""

    with pytest.raises(ValueError):
        await get(c, s.port, method="POST", headers={"Content-Length": "-1"}, body=body())
    await asyncio.sleep(0.05)
    assert s.requests == []
    await c.close()
    await s.close()


async def test_a_method_that_is_not_a_token_is_refused_before_anything_is_sent() -> None:
    """kills: proxy/vendor_http.py:VendorClient._head — `not _is_token(method) or` dropped.

    A method with a space or a slash in it (`GET /admin`) would make a request line the vendor
    reads with another target than the one the proxy checked: it is refused (ValueError) and
    nothing reaches the vendor."""
    s = await serve(await always(ok()))
    c = VendorClient(loopback)
    for method in ("GET /admin", "GET\t", "PO(ST)"):
        with pytest.raises(ValueError):
            await get(c, s.port, "/a", method=method)
    await asyncio.sleep(0.05)
    assert s.requests == [] and s.connections == 0
    await c.close()
    await s.close()


async def test_a_header_line_that_never_ends_is_refused_at_64_kib() -> None:
    """kills: proxy/vendor_http.py:_Connection.data_received — `self._head_fed > MAX_HEAD_BYTES`
    → `self._head_fed > MAX_HEAD_BYTES * 4`.

    A vendor that starts a header line and never ends it (100 KB of one value, then silence)
    has its answer refused as soon as the head passes 64 KiB (`head_too_large`, a 502 to the
    patron at once), not held in the proxy's memory until the read timeout."""

    async def unending(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Long: " + b"v" * 100_000)
        try:
            await writer.drain()
            await asyncio.sleep(5)
        except ConnectionError:
            pass
        writer.close()

    server, port = await raw_server(unending)
    c = VendorClient(loopback)
    with pytest.raises(VendorConnectionError) as refused:
        await get(c, port, read_timeout=3)
    assert refused.value.why == "head_too_large"
    await c.close()
    server.close()


async def test_a_proxy_with_one_slot_still_serves_a_vendor() -> None:
    """kills: proxy/admission.py:vendor_share — `max(1, min(whole - whole // 4, whole - 1))` →
    `min(whole - whole // 4, whole - 1)`.

    With `server.max_in_flight = 1` (a small branch library's tiny host) a vendor without a
    share of its own still gets that one slot: a share of 0 would make every patron request
    wait out admission_wait_s and get the 503 "busy" page, the proxy refusing everyone."""
    from proxy.admission import vendor_share
    from proxy.config import ServerConfig, VendorConfig

    vendor = VendorConfig(id="v", title="V", origin="https://v.test", hosts=("v.test",))
    share = vendor_share(ServerConfig(max_in_flight=1), vendor)
    assert share == 1
    admission = Admission(1)
    async with admission.slot("v", share, wait_s=0.05):
        assert admission.in_flight["v"] == 1


async def test_a_paused_connection_goes_back_to_the_pool_reading_again() -> None:
    """kills: proxy/vendor_http.py:_Connection.finished — `self.resume()` before `_put_back`
    dropped.

    An answer that arrived whole while the patron lagged (reading from the vendor paused past
    `read_limit`) and was let go unread still leaves a reusable connection; it goes back to the
    pool reading again, so the next patron's request on it is answered instead of waiting out
    the read timeout on a connection that no longer reads."""
    s = await serve(await always(ok(b"x" * 5000)))
    c = VendorClient(loopback, read_limit=1024)
    resp = await c.request(
        "GET",
        URL(f"http://vendor.test:{s.port}/"),
        CIMultiDict(),
        ssl_context=None,
        connect_timeout=5,
        read_timeout=5,
    )
    await asyncio.sleep(0.1)
    resp.release()
    assert await get(c, s.port, read_timeout=3) == (200, b"x" * 5000)
    assert s.connections == 1
    await c.close()
    await s.close()


async def test_both_slot_waits_share_one_deadline() -> None:
    """kills: proxy/admission.py:_Slot.__aenter__ — `if deadline is None:` (before the wait for
    a slot of the whole) → `if True:` (a second, fresh deadline).

    A request that first waited for its vendor's share and then finds the whole service full
    waits only for what is left of `admission_wait_s`: the patron gets the 503 "busy" page
    after admission_wait_s in all, not after nearly twice that."""
    admission = Admission(2)
    leave_a = asyncio.Event()
    in_a = asyncio.Event()
    in_b = asyncio.Event()
    hold_all = asyncio.Event()

    async def holder(vendor: str, share: int, entered: asyncio.Event, leave: asyncio.Event) -> None:
        async with admission.slot(vendor, share, wait_s=10):
            entered.set()
            await leave.wait()

    a = asyncio.create_task(holder("a", 1, in_a, leave_a))
    b = asyncio.create_task(holder("b", 2, in_b, hold_all))
    await in_a.wait()
    await in_b.wait()
    c = asyncio.create_task(holder("c", 2, asyncio.Event(), hold_all))  # queued for the whole
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    asyncio.get_running_loop().call_later(0.4, leave_a.set)  # a's share frees, c takes the whole
    start = loop.time()
    with pytest.raises(Busy) as busy:
        async with admission.slot("a", 1, wait_s=0.6):
            raise AssertionError("admitted past max_in_flight")
    elapsed = loop.time() - start
    assert busy.value.whole
    assert elapsed < 0.85
    hold_all.set()
    await asyncio.gather(a, b, c)
    assert admission.whole._value == 2 and admission.share("a", 1)._value == 1


def test_the_send_queue_of_a_unix_socket_is_measured() -> None:
    """kills: proxy/patron_reads.py:_kernel_unsent — `socket.AF_UNIX` dropped from the families
    whose send queue is read.

    A patron connection on a Unix socket (a front server on the same host passing patrons on)
    has its kernel send queue measured like a TCP one (TIOCOUTQ: bytes not yet taken by the
    reader), so a patron who stops reading there can be cut; `None` would mean "cannot tell,
    never cut", the slot held for as long as the patron likes."""
    import socket

    from proxy.patron_reads import _kernel_unsent

    class _OnSocket:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def get_extra_info(self, name: str) -> socket.socket | None:
            return self.sock if name == "socket" else None

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        assert _kernel_unsent(_OnSocket(ours)) == 0  # type: ignore[arg-type]
        ours.sendall(b"x" * 1000)  # nobody reads it on the other side
        unsent = _kernel_unsent(_OnSocket(ours))  # type: ignore[arg-type]
        assert unsent is not None and unsent > 0
    finally:
        ours.close()
        theirs.close()


async def test_a_patron_whose_reading_cannot_be_measured_is_never_cut() -> None:
    """kills: proxy/patron_reads.py:_Sending.stalled — `if unsent is None: return False` →
    `return True`.

    When the platform cannot say what the patron has taken (a socket family without a send
    queue to read), the watch never cuts: a patron reading a long download is not cut off
    on a guess, and nothing is logged as `patron_stopped_reading` for them."""
    import socket

    from proxy.patron_reads import PatronReads

    class _OddSocket:
        family = socket.AF_NETLINK

    class _Unmeasurable:
        def __init__(self) -> None:
            self.aborted = False

        def get_write_buffer_size(self) -> int:
            return 50_000

        def get_extra_info(self, name: str) -> object:
            return _OddSocket() if name == "socket" else None

        def is_closing(self) -> bool:
            return self.aborted

        def abort(self) -> None:
            self.aborted = True

    watch = PatronReads(0.1)
    transport = _Unmeasurable()
    writer = watch.watch(_NoWrite(), transport, "one")  # type: ignore[arg-type]
    await writer.write(b"x" * 60_000)
    await asyncio.sleep(0.4)  # four times the bound: a guess would have cut by now
    assert not transport.aborted
    writer.done()
    watch.close()


class _Stalled:
    """A patron's transport with 50,000 bytes waiting that never drain: a patron not reading."""

    def __init__(self) -> None:
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return 50_000  # nothing read

    def get_extra_info(self, name: str) -> None:
        return None

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


class _NoWrite:
    async def write(self, data: bytes) -> None:
        return None


async def test_one_broken_response_does_not_stop_the_watch_for_the_others() -> None:
    """kills: proxy/patron_reads.py:PatronReads._sweep — `except Exception` → `except
    ZeroDivisionError` (a failure escapes the sweep).

    The send watch is one timer for every response: one response whose transport fails when
    asked (logged as `patron_reads_failed`) must not stop it, or every patron who stops reading
    from then on holds an admission slot and a vendor connection for as long as they like.
    (The broken transport fails at the first sweep only, so the test does not hang on the order
    the watch visits responses in.)"""
    from proxy.patron_reads import PatronReads

    class _Broken(_Stalled):
        failed = False

        def get_write_buffer_size(self) -> int:
            if not self.failed:  # fails once, at the first sweep
                self.failed = True
                raise RuntimeError("transport in a bad state")
            return 0

    watch = PatronReads(0.1)
    broken, stalled = _Broken(), _Stalled()
    loop = asyncio.get_running_loop()
    handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda loop, context: None)  # the mutant's escape is not noise
    try:
        w1 = watch.watch(_NoWrite(), broken, "one")  # type: ignore[arg-type]
        w2 = watch.watch(_NoWrite(), stalled, "two")  # type: ignore[arg-type]
        await w1.write(b"x" * 60_000)
        await w2.write(b"x" * 60_000)
        for _ in range(60):  # cut after 0.1 s; up to 6 s on a loaded machine
            if stalled.aborted:
                break
            await asyncio.sleep(0.1)
        assert stalled.aborted
    finally:
        loop.set_exception_handler(handler)
        w1.done()
        w2.done()
        watch.close()


async def test_a_response_that_always_fails_to_be_measured_stops_the_watch_for_no_other() -> None:
    """A defect the sweep above found (fixed 1 December 2026): `PatronReads._sweep` had one `try`
    round the whole loop, so a response whose transport failed at every sweep ended each sweep
    there, and every response the set happened to visit after it was never checked: those
    patrons could stop reading and hold their slot and vendor connection for ever. Thirty
    always-failing responses and one stalled one: before the fix the stalled one was cut only
    when the set visited it first (about one run in thirty-one). The failing ones leave the
    watch (a response that cannot be measured is never cut on a guess) and are logged once."""
    from proxy.patron_reads import PatronReads

    class _Broken(_Stalled):
        asked = 0

        def get_write_buffer_size(self) -> int:
            self.asked += 1
            raise RuntimeError("transport in a bad state")

    watch = PatronReads(0.1)
    broken = [_Broken() for _ in range(30)]
    stalled = _Stalled()
    writers = [watch.watch(_NoWrite(), t, "one") for t in broken]  # type: ignore[arg-type]
    writers.append(watch.watch(_NoWrite(), stalled, "two"))  # type: ignore[arg-type]
    try:
        for w in writers:
            await w.write(b"x" * 60_000)
        for _ in range(60):  # cut after 0.1 s; up to 6 s on a loaded machine
            if stalled.aborted:
                break
            await asyncio.sleep(0.1)
        assert stalled.aborted
        assert [t.asked for t in broken] == [1] * 30 and not any(t.aborted for t in broken)
    finally:
        for w in writers:
            w.done()
        watch.close()


async def test_a_connection_whose_exchange_failed_is_closed_at_once() -> None:
    """kills: proxy/vendor_http.py:VendorClient.request — `conn.close()` after a failed
    exchange dropped.

    When a vendor stays silent past the read timeout (the patron gets a 504), the connection
    is closed there and then: the vendor sees it end, its late answer can reach nobody, and the
    proxy does not hold a descriptor per timed-out request, in no pool, never swept."""
    saw_end = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the proxy closes its side
        saw_end.set()
        writer.close()

    server, port = await raw_server(silent)
    c = VendorClient(loopback)
    with pytest.raises(TimeoutError):
        await get(c, port, read_timeout=0.3)
    await asyncio.wait_for(saw_end.wait(), 2)
    assert not c._busy and not c._idle_all
    await c.close()
    server.close()


async def test_a_head_answer_saying_connection_close_is_not_reused() -> None:
    """kills: proxy/vendor_http.py:_Connection.data_received — `self.parser.should_keep_alive()
    and` dropped from the HEAD answer's keep-alive condition.

    A vendor that answers a HEAD with `Connection: close` has said it reads nothing more on
    that connection, even when it is slow to close it: the next patron's request goes on a new
    connection and is answered, instead of going to a vendor that no longer listens."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            if request.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
                await writer.drain()
                await asyncio.sleep(3)  # closes late, and reads nothing more meanwhile
            else:
                writer.write(ok(b"fresh"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server, port = await raw_server(handler)
    c = VendorClient(loopback)
    assert await get(c, port, method="HEAD") == (200, b"")
    assert await get(c, port, read_timeout=2) == (200, b"fresh")  # the HEAD's connection: 3 s
    assert connections == 2
    await c.close()
    server.close()
