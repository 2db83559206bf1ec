"""Scale-out edges: two real `python -m proxy serve` instances sharing one real redis-server.

From a review: each test was a defect (a short idle timeout ending sessions in use, statistics
counted twice after a Redis stall), now mended (`Sessions.touch`, `Recorder.flush` with batch
ids); the bytes limit across instances is a known gap, a strict xfail. The harness is the one of
tests/test_scale_out.py (real slapd, real Redis, real recording vendor, no mocks); the statistics
test drives the proxies' own Recorder and Redis sink against the real redis-server.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from redis.exceptions import RedisError

from proxy.stats import REQUESTS, Counters, Recorder, utcnow
from proxy.stats_store import BATCH_TTL_S, REDIS_BATCH_PREFIX, RedisStatsStore
from tests.canary import CANARY
from tests.harness import RecordingVendor, free_port, ldap_directory, vendor_toml, write_config
from tests.test_scale_out import VENDOR_HOST, ServedProxy, second_config, serve
from tests.test_scale_out import redis_client as redis_client
from tests.test_scale_out import vendor as vendor


async def _pair(
    tmp_path: Path,
    slapd: Any,
    redis_url: str,
    vendor: RecordingVendor,
    *,
    session: str = "",
    vendor_extra: str = "",
    extra: str = "",
) -> tuple[ServedProxy, ServedProxy]:
    """Proxies A and B: one config, one Redis, the public host on A's port."""
    port_a, port_b = free_port(), free_port()
    cfg_a = write_config(
        tmp_path,
        port=port_a,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"shared": vendor_toml("shared", vendor, extra=vendor_extra)},
        session=f'store = "redis"\nredis_url = "{redis_url}"\n{session}',
        extra=extra,
    )
    a = await serve(cfg_a)
    try:
        b = await serve(second_config(cfg_a, port_b), public_port=port_a)
    except BaseException:
        await a.stop()
        raise
    return a, b


@pytest.fixture
async def stopper() -> AsyncIterator[list[ServedProxy]]:
    running: list[ServedProxy] = []
    yield running
    for p in running:
        if p.process.poll() is None:
            await p.stop()


# --------------------------------------------------------------------------- session expiry


async def test_patron_browsing_through_both_instances_is_signed_out_at_idle_timeout(
    tmp_path: Path, running_slapd: Any, redis_url: str, vendor: Any, stopper: Any
) -> None:
    """A patron who makes a request every 1.5 s (alternately through A and B) is never idle
    for `idle_timeout_s` (6 s), yet is sent to sign in 6 s after login: `Sessions.touch` writes
    the time of use (and renews the Redis TTL) at most every 15 s, so the stored `last_seen`
    stays at login time and both `load` and the Redis TTL end the session as idle. Any
    `idle_timeout_s` under 15 s signs out active patrons; at the default 1800 s a patron's
    session still ends up to 15 s before their idle time is really up."""
    a, b = await _pair(
        tmp_path, running_slapd, redis_url, vendor, session="idle_timeout_s = 6\nlifetime_s = 60"
    )
    stopper.extend((a, b))
    assert (await a.driver.login(CANARY.uid, CANARY.password)).status == 303
    b.driver.sid = a.driver.sid
    statuses = []
    for i in range(7):  # 0 s … 9 s, never more than 1.5 s apart
        r = await (a, b)[i % 2].driver.get_vendor(VENDOR_HOST, f"/page{i}")
        statuses.append(r.status)
        await asyncio.sleep(1.5)
    assert statuses == [200] * 7, f"active patron sent to sign in: {statuses}"


# --------------------------------------------------------------------------- statistics


async def test_statistics_count_a_flush_twice_when_redis_stalls_during_it(
    redis_url: str,
    redis_server: Any,
    redis_client: Any,
) -> None:
    """Redis stalls for a few seconds (a fork for a save, a failover, a paused VM) while a proxy
    flushes its statistics to it (the sink every instance uses with `store = "redis"`,
    `make_sink`): the MULTI/EXEC reaches Redis, the client gives up after 2 s, `Recorder.flush`
    puts the deltas back for the next flush, Redis applies the transaction when it resumes, and
    the next flush adds the same deltas again. The library's usage reports (requests and
    downloads per database) are inflated by every such stall; statistics must count each
    request once. (Seen once through two `serve` instances too, 12 requests counted for 10;
    shown here on the proxies' own Recorder and Redis sink, where it happens every time.)"""
    sink = RedisStatsStore(redis_url, seen_key=b"k" * 32)
    # One instant for every count: on the wall clock, a count before midnight (UTC) and the
    # next ones after it fall on two days, and the day read below holds only some of them.
    start = utcnow()
    recorder = Recorder(sink, flush_interval_s=3600, counters=Counters(clock=lambda: start))
    recorder.counters.count("shared", REQUESTS, 1)
    await recorder.flush()  # a pooled connection, as a running proxy has
    for _ in range(5):
        recorder.counters.count("shared", REQUESTS, 1)  # clock: today, whatever day it is
    today = next(iter(recorder.counters.pending()))[0]
    assert redis_server._process is not None
    pid = redis_server._process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises((RedisError, OSError)):  # the flush times out
            await recorder.flush()
    finally:
        os.kill(pid, signal.SIGCONT)
    await asyncio.sleep(0.5)
    await recorder.close()  # the next flush, then the sink closes
    stored = int(redis_client.hget(f"weston:stats:{today}", "shared|requests") or 0)
    assert stored == 6, f"6 requests counted, {stored} stored"
    # The batch ids hold nothing but themselves, and go (records-and-retention: 24 hours).
    batches = redis_client.keys(REDIS_BATCH_PREFIX + "*")
    assert batches
    for key in batches:
        assert redis_client.get(key) == b"1"
        assert 0 < redis_client.ttl(key) <= BATCH_TTL_S


# --------------------------------------------------------------------------- usage limits


# Known, and not mended: bytes are counted once the response has gone, in the background, and
# only the instance that counted waits for that count before its next request. Waiting on the
# count before the last byte would hold every download's end for a store round trip. Strict: a
# fix makes this pass, and then the mark must go.
@pytest.mark.xfail(
    strict=True, reason="a bytes limit crossed on one instance lets another's next request by"
)
async def test_bytes_limit_reached_through_a_lets_the_next_request_through_b(
    tmp_path: Path, running_slapd: Any, redis_url: str, vendor: Any, stopper: Any
) -> None:
    """A session downloads more than its vendor's `bytes_per_hour` through instance A; its
    very next request, served by instance B, still reaches the vendor. A counts the bytes in a
    background task (up to 256 sequential INCRs) and only A's own gate waits for that task
    (`UsageLimits._pending` is per process), so behind a load balancer the patron gets past
    the limit the library set to keep the vendor from cutting everyone off. Through A alone the
    same request is refused."""

    async def pdf(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"%PDF-" + b"x" * 20000, content_type="application/pdf")

    vendor.routes["/big.pdf"] = pdf
    a, b = await _pair(
        tmp_path,
        running_slapd,
        redis_url,
        vendor,
        vendor_extra="\n[limits]\nbytes_per_hour = 10000\n",
    )
    stopper.extend((a, b))
    assert (await a.driver.login(CANARY.uid, CANARY.password)).status == 303
    b.driver.sid = a.driver.sid
    r = await a.driver.get_vendor(VENDOR_HOST, "/big.pdf")
    assert r.status == 200
    await r.read()  # 20 KB: twice the hour's allowance
    r = await b.driver.get_vendor(VENDOR_HOST, "/next")
    assert r.status == 429, f"over the bytes limit, B forwarded: {r.status}"
    assert [q.path_qs for q in vendor.requests] == ["/big.pdf"]
