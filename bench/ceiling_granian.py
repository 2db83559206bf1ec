"""`bench.ceiling`'s relays with the patron side served by Granian (a Rust HTTP server, RSGI).

Not the proxy, and never for patrons. The fourteenth round asks one question: would a server
whose HTTP parsing, framing and socket writes run in Rust, off the Python thread, lift a relay
that does the proxy's per-request work in Python towards the 0.40 x `proxy_pass` target? The
vendor side stays the bare httptools client `bench.ceiling` uses. Two kinds, chosen by the
environment `bench.ceiling` sets when it starts Granian:

- `granian`       the relay only (`raw`'s work: none)
- `granian+work`  `raw+work`'s per-request work from the proxy's own modules: Host to vendor,
                  session load and touch, admission, the request-header allowlist, the cached
                  signed assertion, the response-header filter, the unique-session token and the
                  statistics and Prometheus counts

    python -m bench.ceiling --kinds raw,raw+work,granian,granian+work

Started by `bench.ceiling` as `python -m granian --interface rsgi --workers 1 ...
bench.ceiling_granian:app`.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httptools
from multidict import CIMultiDict

from proxy.privacy import outbound_headers
from proxy.sessions import storage_key
from proxy.stats import UNIQUE_SESSIONS
from proxy.web.session_cookie import cookie_values

KIND = os.environ.get("CEILING_KIND", "granian")
ORIGIN_PORT = int(os.environ.get("CEILING_ORIGIN_PORT", "0"))
PORT = int(os.environ.get("CEILING_PORT", "0"))
BENCH_SESSION = "ceiling-session"
DROP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class UpProto(asyncio.Protocol):
    """One keep-alive connection to the origin; collects one response at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.headers, self.chunks = [], []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(bytes(body))

    def on_message_complete(self) -> None:
        assert self.done is not None
        self.done.set_result(None)


FREE: list[UpProto] = []
WORK: dict[str, Any] = {}


async def fetch(head: bytes) -> tuple[UpProto, int]:
    """Send one request to the origin and wait for the whole response (30 KB: nginx buffers too)."""
    loop = asyncio.get_running_loop()
    if FREE:
        proto = FREE.pop()
    else:
        _, proto = await loop.create_connection(UpProto, "127.0.0.1", ORIGIN_PORT)
    proto.done = loop.create_future()
    proto.transport.write(head)
    await proto.done
    FREE.append(proto)
    return proto, proto.parser.get_status_code()


async def setup_work() -> None:
    import tempfile
    from pathlib import Path

    from bench.bench import CDN, VENDOR
    from proxy.assertion import Signer, ensure_keys
    from proxy.forward import Observation
    from proxy.hosts import HostMap
    from proxy.metrics import Metrics
    from proxy.privacy import response_headers
    from proxy.sessions import MemoryStore, Sessions
    from proxy.stats import Counters
    from proxy.usage_stats import UsageCounter

    hosts = HostMap.build(
        public_scheme="http",
        public_host="proxy.localhost",
        public_port=PORT,
        vendor_hosts=[("bench", [VENDOR, CDN])],
    )
    sessions = Sessions(MemoryStore(), idle_timeout_s=3600, lifetime_s=8 * 3600)
    session = await sessions.start(patron_key="k" * 43, databases=frozenset({"bench"}))
    keys = ensure_keys(Path(tempfile.mkdtemp(prefix="weston-ceiling-keys-")))
    WORK.update(
        response_headers=response_headers,
        Observation=Observation,
        hosts=hosts,
        sessions=sessions,
        cookie={BENCH_SESSION: session.id},
        signer=Signer(keys, issuer="http://proxy.localhost", scope="x.org", pairwise_secret=b"s"),
        origins={"bench": f"http://{VENDOR}"},
        usage=UsageCounter(Counters(), {"bench": []}, secret=b"s" * 32),
        metrics=Metrics(),
        admission=asyncio.Semaphore(64),
    )


async def relay(scope: Any, proto: Any) -> None:
    target = scope.path + ("?" + scope.query_string if scope.query_string else "")
    head = f"GET {target} HTTP/1.1\r\nHost: origin\r\nX-Patron-Assertion: x\r\n\r\n"
    up, status = await fetch(head.encode("latin-1"))
    headers = [
        (n.decode("latin-1"), v.decode("latin-1"))
        for n, v in up.headers
        if n.decode("latin-1").lower() not in DROP
    ]
    proto.response_bytes(status, headers, b"".join(up.chunks))


async def relay_with_work(scope: Any, proto: Any) -> None:
    if not WORK:
        await setup_work()
    started = time.monotonic()
    incoming = CIMultiDict(scope.headers.items())
    if scope.authority and "Host" not in incoming:  # HTTP/1.1's Host arrives as the authority
        incoming["Host"] = scope.authority
    hosts = WORK["hosts"]
    vendor_host = hosts.vendor_host_from_request(incoming.get("Host", ""))
    vendor_id = hosts.vendor_for_host(vendor_host or "")
    cookie = (cookie_values(incoming.get("Cookie", ""), "weston_session") or [None])[-1]
    session = await WORK["sessions"].load(WORK["cookie"].get(cookie or ""))
    if vendor_id is None or session is None or vendor_id not in session.databases:
        raise SystemExit("the ceiling relay got a request it was not set up for")
    await WORK["admission"].acquire()
    WORK["usage"].counters.unique(
        vendor_id, UNIQUE_SESSIONS, WORK["usage"].session_token(session.id)
    )
    await WORK["sessions"].touch(session)
    out = outbound_headers(incoming, hosts=hosts, vendor_origins=WORK["origins"])
    out["X-Patron-Assertion"] = WORK["signer"].assertion(
        cache_key=storage_key(session.id),
        audience="bench",
        patron_key=session.patron_key,
        vendor_id=vendor_id,
        pseudonymous=False,
    )
    out["Host"] = vendor_host or ""
    target = scope.path + ("?" + scope.query_string if scope.query_string else "")
    head = f"GET {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in out.items())
    up, status = await fetch((head + "\r\n").encode("latin-1"))
    kept = WORK["response_headers"](
        (n.decode("latin-1"), v.decode("latin-1")) for n, v in up.headers
    )
    body = b"".join(up.chunks)
    headers = [(n, v) for n, v in kept.items() if n.lower() not in DROP]
    proto.response_bytes(status, headers, body)
    WORK["admission"].release()
    o = WORK["Observation"](
        "bench", "GET", status, len(body), time.monotonic() - started,
        kept.get("Content-Type", ""), "/", False,
    )  # fmt: skip
    WORK["usage"].observe(o)
    WORK["metrics"].observe(o)


app = relay_with_work if KIND == "granian+work" else relay
