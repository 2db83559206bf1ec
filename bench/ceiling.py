"""How fast can a Python proxy on this machine pass a 30 KB page through, whatever it does?

Not the proxy, and never for patrons: *minimal* GET relays with none of the proxy's work
(no session, no privacy filter, no assertion, no statistics), measured against nginx `proxy_pass`
in one run, to show where the HTTP layers alone put the ceiling:

- `aiohttp`      aiohttp server + aiohttp ClientSession (the proxy's layers until November 2026)
- `aiohttp+raw`  aiohttp server + a bare asyncio client parsing responses with httptools (the
                 layers the proxy runs on since `proxy/vendor_http.py`)
- `raw+aiohttp`  a bare asyncio server parsing requests with httptools + aiohttp ClientSession
- `raw`          bare asyncio + httptools on both sides
- `raw+work`     `raw`, plus the proxy's own per-request work called from the proxy's modules:
                 Host to vendor, the session from a memory store (load and touch), admission,
                 the request-header allowlist, the cached signed assertion, the response-header
                 filter, the unique-session token and the statistics and Prometheus counts.
                 What a proxy on an httptools data path would at best reach (no URL rewriting,
                 cookie jar, timeouts or error pages; still not a proxy to serve anyone)
- `raw+rewrite`  `raw+work`, and HTML through the proxy's own rewriter as the proxy sends it:
                 response headers rewritten, the tracker-shield CSP, `Rewriter.stream` and the
                 third-party count piece by piece, chunked framing. Run it on `/page30k.html`,
                 where the figures are also set against nginx `sub_filter`

    python -m bench.ceiling                 # 5 s per run, 2 interleaved rounds
    python -m bench.ceiling --seconds 10 --rounds 3 --path /pass/page1m.dat
    python -m bench.ceiling --path /page30k.html --kinds raw,raw+work,raw+rewrite

Needs Debian `nginx` and `wrk` (as `bench/run`); httptools is one of the proxy's dependencies. The relays speak
just enough HTTP/1.1 for wrk's keep-alive GETs; they have no backpressure, no error handling and
no body for requests. That is the point: a figure here is what any proxy built on those layers
can at best reach, before it does anything useful.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

from multidict import CIMultiDict

from bench.bench import (
    CDN,
    VENDOR,
    Nginx,
    free_port,
    front_conf,
    origin_conf,
    page_tree,
    wait_port,
    wrk,
)
from proxy.privacy import outbound_headers
from proxy.sessions import storage_key
from proxy.stats import UNIQUE_SESSIONS
from proxy.web.session_cookie import cookie_values

KINDS = ("aiohttp", "aiohttp+raw", "raw+aiohttp", "raw", "raw+work", "raw+rewrite")
GRANIAN = ("granian", "granian+work")  # bench/ceiling_granian.py: Rust HTTP server, Python work
BENCH_SESSION = "ceiling-session"
DROP = {b"connection", b"keep-alive"}


def serve(kind: str, port: int, origin_port: int) -> None:
    import httptools
    from aiohttp import ClientSession, TCPConnector, web

    raw_server, raw_client = kind.startswith("raw"), kind.endswith("raw")

    class UpProto(asyncio.Protocol):
        """One keep-alive connection to the origin; hands the response to its current sink."""

        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.sink: Any = None
            self.headers: list[tuple[bytes, bytes]] = []

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_begin(self) -> None:
            self.headers = []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_headers_complete(self) -> None:
            self.sink.head(self.parser.get_status_code(), self.headers)

        def on_body(self, body: bytes) -> None:
            self.sink.body(body)

        def on_message_complete(self) -> None:
            self.sink.done(self)

    free: list[UpProto] = []

    async def upstream() -> UpProto:
        if free:
            return free.pop()
        _, proto = await asyncio.get_running_loop().create_connection(
            UpProto, "127.0.0.1", origin_port
        )
        return proto

    def request_bytes(target: bytes) -> bytes:
        return b"GET " + target + b" HTTP/1.1\r\nHost: origin\r\nX-Patron-Assertion: x\r\n\r\n"

    client: list[ClientSession] = []

    async def aiohttp_client() -> ClientSession:
        if not client:
            client.append(ClientSession(connector=TCPConnector(limit=0)))
        return client[0]

    # ------------------------------------------------------------- aiohttp server
    class Collect:
        def __init__(self) -> None:
            loop = asyncio.get_running_loop()
            self.started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = (
                loop.create_future()
            )
            self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
            self.started.set_result((status, headers))

        def body(self, data: bytes) -> None:
            self.queue.put_nowait(bytes(data))

        def done(self, proto: UpProto) -> None:
            free.append(proto)
            self.queue.put_nowait(None)

    async def handler(request: web.Request) -> web.StreamResponse:
        if not raw_client:
            cs = await aiohttp_client()
            async with cs.get(f"http://127.0.0.1:{origin_port}{request.path_qs}") as r:
                resp = web.StreamResponse(status=r.status)
                resp.content_length = r.content_length
                resp.content_type = r.content_type
                await resp.prepare(request)
                async for chunk in r.content.iter_any():
                    await resp.write(chunk)
                return resp
        proto = await upstream()
        sink = Collect()
        proto.sink = sink
        proto.transport.write(request_bytes(request.path_qs.encode()))
        status, headers = await sink.started
        resp = web.StreamResponse(status=status)
        for name, value in headers:
            if name.lower() == b"content-length":
                resp.content_length = int(value)
            elif name.lower() not in DROP:
                resp.headers[name.decode()] = value.decode()
        await resp.prepare(request)
        while (data := await sink.queue.get()) is not None:
            await resp.write(data)
        return resp

    # ------------------------------------------------------------- the proxy's own work
    work: dict[str, Any] = {}

    async def setup_work() -> None:
        import tempfile
        from pathlib import Path

        from proxy.assertion import Signer, ensure_keys
        from proxy.forward import Observation, _ThirdPartyCount, rewrite_response_headers
        from proxy.hosts import HostMap
        from proxy.metrics import Metrics
        from proxy.privacy import response_headers
        from proxy.rewrite import Rewriter
        from proxy.sessions import MemoryStore, Sessions
        from proxy.stats import Counters
        from proxy.usage_stats import UsageCounter

        work.update(response_headers=response_headers, Observation=Observation)
        hosts = HostMap.build(
            public_scheme="http",
            public_host="proxy.localhost",
            public_port=port,
            vendor_hosts=[("bench", [VENDOR, CDN])],
        )
        sessions = Sessions(MemoryStore(), idle_timeout_s=3600, lifetime_s=8 * 3600)
        session = await sessions.start(patron_key="k" * 43, databases=frozenset({"bench"}))
        sessions_by_cookie = {BENCH_SESSION: session.id}
        keys = ensure_keys(Path(tempfile.mkdtemp(prefix="weston-ceiling-keys-")))
        work.update(
            hosts=hosts,
            sessions=sessions,
            cookie=sessions_by_cookie,
            signer=Signer(
                keys, issuer="http://proxy.localhost", scope="x.org", pairwise_secret=b"s"
            ),
            origins={"bench": f"http://{VENDOR}"},
            usage=UsageCounter(Counters(), {"bench": []}, secret=b"s" * 32),
            metrics=Metrics(),
            admission=asyncio.Semaphore(64),
        )
        work.update(
            rewriter=Rewriter(hosts),
            third_party=_ThirdPartyCount,
            rewrite_headers=rewrite_response_headers,
        )

    class WorkRelay:
        """`Relay` with the proxy's response-side work: header filter, then the counts."""

        def __init__(self, down: DownProto, started: float, admitted: asyncio.Semaphore) -> None:
            self.down, self.started, self.admitted, self.sent = down, started, admitted, 0
            self.status, self.ctype = 0, ""

        def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
            kept = work["response_headers"](
                (n.decode("latin-1"), v.decode("latin-1")) for n, v in headers
            )
            self.status, self.ctype = status, kept.get("Content-Type", "")
            self.stream = self.tp = None
            if kind == "raw+rewrite" and self.ctype.startswith("text/html"):
                rewriter = work["rewriter"]
                work["rewrite_headers"](rewriter, kept)
                kept.popall("Content-Length", None)
                kept["Transfer-Encoding"] = "chunked"
                kept["Content-Security-Policy"] = rewriter.shield_csp("bench", False)
                self.stream = rewriter.stream("bench", self.ctype, "utf-8")
                self.tp = work["third_party"](rewriter)
            out = [f"HTTP/1.1 {status} OK\r\n"]
            out += [f"{n}: {v}\r\n" for n, v in kept.items()]
            self.down.transport.write("".join(out).encode("latin-1") + b"\r\n")

        def body(self, data: bytes) -> None:
            if self.stream is not None:
                self.tp.feed(data)
                data = self.stream.feed(data)
                if data:
                    self.down.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
            else:
                self.down.transport.write(data)
            self.sent += len(data)

        def done(self, proto: UpProto) -> None:
            if self.stream is not None:
                data = self.stream.finish()
                self.tp.finish()
                tail = b"%x\r\n%b\r\n" % (len(data), data) if data else b""
                self.down.transport.write(tail + b"0\r\n\r\n")
            free.append(proto)
            self.admitted.release()
            o = work["Observation"](
                "bench", "GET", self.status, self.sent, time.monotonic() - self.started,
                self.ctype, "/", False,
            )  # fmt: skip
            work["usage"].observe(o)
            work["metrics"].observe(o)
            self.down.next()

    async def go_with_work(down: DownProto, target: bytes) -> None:
        started = time.monotonic()
        incoming = CIMultiDict((n.decode("latin-1"), v.decode("latin-1")) for n, v in down.headers)
        hosts = work["hosts"]
        vendor_host = hosts.vendor_host_from_request(incoming.get("Host", ""))
        vendor_id = hosts.vendor_for_host(vendor_host or "")
        cookie = (cookie_values(incoming.get("Cookie", ""), "weston_session") or [None])[-1]
        session = await work["sessions"].load(work["cookie"].get(cookie or ""))
        if vendor_id is None or session is None or vendor_id not in session.databases:
            raise SystemExit("the ceiling relay got a request it was not set up for")
        await work["admission"].acquire()
        work["usage"].counters.unique(
            vendor_id, UNIQUE_SESSIONS, work["usage"].session_token(session.id)
        )
        await work["sessions"].touch(session)
        out = outbound_headers(incoming, hosts=hosts, vendor_origins=work["origins"])
        out["X-Patron-Assertion"] = work["signer"].assertion(
            cache_key=storage_key(session.id),
            audience="bench",
            patron_key=session.patron_key,
            vendor_id=vendor_id,
            pseudonymous=False,
        )
        out["Host"] = vendor_host or ""
        head = "".join(f"{n}: {v}\r\n" for n, v in out.items()).encode("latin-1")
        proto = await upstream()
        proto.sink = WorkRelay(down, started, work["admission"])
        proto.transport.write(b"GET " + target + b" HTTP/1.1\r\n" + head + b"\r\n")

    # ------------------------------------------------------------- raw server
    class Relay:
        def __init__(self, down: DownProto) -> None:
            self.down = down

        def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
            out = [b"HTTP/1.1 %d OK\r\n" % status]
            out += [n + b": " + v + b"\r\n" for n, v in headers if n.lower() not in DROP]
            self.down.transport.write(b"".join(out) + b"\r\n")

        def body(self, data: bytes) -> None:
            self.down.transport.write(data)

        def done(self, proto: UpProto) -> None:
            free.append(proto)
            self.down.next()

    class DownProto(asyncio.Protocol):
        """Requests of one patron connection, answered in order."""

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.pending: list[bytes] = []
            self.busy = False
            self.url = b""

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_begin(self) -> None:
            self.url = b""
            self.headers: list[tuple[bytes, bytes]] = []

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_message_complete(self) -> None:
            self.pending.append(self.url)
            if not self.busy:
                self.next()

        def next(self) -> None:
            self.busy = bool(self.pending)
            if self.pending:
                self.task = asyncio.ensure_future(self.go(self.pending.pop(0)))

        async def go(self, target: bytes) -> None:
            if kind in ("raw+work", "raw+rewrite"):
                await go_with_work(self, target)
                return
            if raw_client:
                proto = await upstream()
                proto.sink = Relay(self)
                proto.transport.write(request_bytes(target))
                return
            cs = await aiohttp_client()
            async with cs.get(f"http://127.0.0.1:{origin_port}{target.decode()}") as r:
                out = [b"HTTP/1.1 %d OK\r\n" % r.status]
                for n, v in r.raw_headers:
                    if n.lower() not in DROP:
                        out.append(n + b": " + v + b"\r\n")
                self.transport.write(b"".join(out) + b"\r\n")
                async for chunk in r.content.iter_any():
                    self.transport.write(chunk)
            self.next()

    async def main() -> None:
        if kind in ("raw+work", "raw+rewrite"):
            await setup_work()
        if raw_server:
            await asyncio.get_running_loop().create_server(DownProto, "127.0.0.1", port)
        else:
            app = web.Application()
            app.router.add_get("/{tail:.*}", handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def granian(kind: str, port: int, origin_port: int) -> subprocess.Popen[bytes]:
    """Granian, one worker, asyncio's own loop (as the proxy), serving bench/ceiling_granian.py."""
    import os

    env = dict(os.environ, CEILING_KIND=kind, CEILING_PORT=str(port))
    env["CEILING_ORIGIN_PORT"] = str(origin_port)
    cmd = [sys.executable, "-m", "granian", "--interface", "rsgi", "--workers", "1"]
    cmd += ["--loop", "asyncio", "--http", "1", "--no-ws", "--no-access-log"]
    cmd += ["--log-level", "warning", "--host", "127.0.0.1", "--port", str(port)]
    # Granian forks its worker: a session of its own lets `stop` end the worker with the parent
    return subprocess.Popen([*cmd, "bench.ceiling_granian:app"], env=env, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a relay and, for Granian, the worker it forked (its own process group)."""
    import os
    import signal

    if proc.poll() is None and os.getpgid(proc.pid) == proc.pid:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--path", default="/pass/page30k.dat")
    ap.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="comma-separated, of " + " ".join(KINDS + GRANIAN),
    )
    ap.add_argument("--serve", nargs=3, metavar=("KIND", "PORT", "ORIGIN_PORT"), help="internal")
    args = ap.parse_args(argv)
    from proxy.hosts import map_label

    if args.serve:
        serve(args.serve[0], int(args.serve[1]), int(args.serve[2]))
        return 0
    work, docroot, _, _ = page_tree("weston-ceiling-")
    origin_port, pass_port, sub_port = free_port(), free_port(), free_port()
    origin = Nginx(work / "origin", origin_conf(origin_port, docroot))
    from proxy.hosts import map_label as label

    mapped = {f"https://{h}": f"http://{label(h)}.proxy.localhost:8080" for h in (VENDOR, CDN)}
    mapped.update({f"//{h}": f"//{label(h)}.proxy.localhost:8080" for h in (VENDOR, CDN)})
    front = Nginx(work / "front", front_conf(pass_port, sub_port, origin_port, mapped))
    procs: list[subprocess.Popen[bytes]] = []
    ports = {"nginx proxy_pass": pass_port}
    if args.path.endswith(".html"):
        ports["nginx sub_filter"] = sub_port
    try:
        origin.start()
        front.start()
        wait_port(origin_port)
        wait_port(pass_port)
        for kind in args.kinds.split(","):
            port = free_port()
            if kind in GRANIAN:
                procs.append(granian(kind, port, origin_port))
            else:
                cmd = [sys.executable, "-m", "bench.ceiling", "--serve", kind, str(port)]
                procs.append(subprocess.Popen([*cmd, str(origin_port)]))
            wait_port(port)
            ports[kind] = port
        rps: dict[str, list[float]] = {name: [] for name in ports}
        for rnd in range(args.rounds):
            for name, port in ports.items():
                url = f"http://127.0.0.1:{port}{args.path}"
                headers = {}
                if name in ("raw+work", "raw+rewrite", "granian+work"):
                    # a mapped vendor host and the relay's one session
                    host = f"{map_label(VENDOR)}.proxy.localhost:{port}"
                    headers = {"Host": host, "Cookie": f"weston_session={BENCH_SESSION}"}
                run = wrk(name, url, seconds=args.seconds, conns=args.conns, headers=headers)
                if run.errors:
                    raise SystemExit(f"{name}: {run.errors} errors; the figures would mean nothing")
                rps[name].append(run.rps)
                print(f"round {rnd + 1}  {name:18} {run.rps:9,.0f} req/s  p99 {run.p99_ms} ms")
        base = "nginx sub_filter" if "nginx sub_filter" in rps else "nginx proxy_pass"
        nginx = statistics.median(rps[base])
        print(f"\nmedian req/s over {args.rounds} rounds, {args.path}, {args.conns} connections")
        for name, values in rps.items():
            med = statistics.median(values)
            print(f"  {name:18} {med:9,.0f}   {med / nginx:5.2f} x {base}")
    finally:
        for p in procs:
            stop(p)
        front.stop()
        origin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
