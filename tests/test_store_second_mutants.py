"""From a second mutation sweep by hand (1 December 2026) of what the proxy keeps: the Redis
session store, the records inventory, the statistics store, small-cell suppression and the
statistics report (DESIGN.md P5 to P7). Each test here kills a mutant the rest of the suite let live; its
docstring names the mutant and the behaviour it proves. Real Redis (tests/fixtures_redis.py),
synthetic data only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from proxy.redis_store import RedisStore
from proxy.sessions import Session, new_session_id, storage_key
from tests.fixtures_redis import RedisServer

SECRET = b"review-mutstore2 sealing secret, synthetic"


@pytest.fixture
def raw(redis_server: RedisServer, redis_url: str) -> Iterator[redis.Redis]:
    """A plain client; every key the test created is removed after it (the server is shared
    by the whole session, and other tests count what Redis holds)."""
    client = redis_server.client()
    before = set(client.keys("*"))
    try:
        yield client
    finally:
        new = set(client.keys("*")) - before
        if new:
            client.delete(*new)
        client.close()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    backend = RedisStore(url=redis_url, key=SECRET, prefix="mutstore2:")
    try:
        yield backend
    finally:
        await backend.close()


def _session() -> Session:
    now = time.time()
    return Session(
        id=new_session_id(),
        patron_key="pk-mutstore2-synthetic",
        databases=frozenset({"ebsco"}),
        created=now,
        last_seen=now,
        csrf="csrf-mutstore2-synthetic",
    )


@pytest.mark.redis
async def test_a_session_written_past_its_life_is_gone_from_redis(
    store: RedisStore, raw: redis.Redis
) -> None:
    """kills: proxy/redis_store.py:RedisStore._store — `await self.delete(session.id)` dropped
    from the `ttl_s <= 0` branch.

    A session whose life ran out while a request was in flight is written back with no life
    left: it must end at once (gone from Redis, key and both indexes), not stay readable for
    whatever TTL its previous write gave it."""
    s = _session()
    await store.put(s, 600)
    assert await store.get(s.id) is not None
    await store.put(s, 0)
    assert await store.get(s.id) is None
    member = storage_key(s.id).encode()
    assert not raw.exists(f"mutstore2:s:{storage_key(s.id)}")
    assert raw.zscore("mutstore2:live", member) is None
    assert raw.zscore("mutstore2:born", member) is None


@pytest.mark.redis
async def test_a_session_that_ended_is_not_brought_back_by_a_late_write(
    store: RedisStore, raw: redis.Redis
) -> None:
    """kills: proxy/redis_store.py:_REPLACE — `if not current then return 0 end` dropped.

    A patron signs out (or staff end the session) while another request of theirs is still
    running at another proxy: that request's write-back must not bring the session back to
    life in Redis; it is told "ended" and nothing is stored."""
    s = _session()
    await store.put(s, 600)
    got = await store.get_versioned(s.id)
    assert got is not None
    await store.delete(s.id)
    assert await store.replace(s, 600, got[1]) == "ended"
    assert await store.get(s.id) is None
    assert not raw.exists(f"mutstore2:s:{storage_key(s.id)}")
    assert raw.zscore("mutstore2:live", storage_key(s.id).encode()) is None


@pytest.mark.redis
async def test_a_rate_window_is_not_pushed_back_by_later_hits(
    store: RedisStore, raw: redis.Redis
) -> None:
    """kills: proxy/redis_store.py:RedisStore.incr — `pexpire(..., nx=True)` → `pexpire(...)`.

    A rate counter's window starts at the first hit and ends on time: a patron (or a sign-in
    attacker's victim) who keeps trying is let through again when the window closes, and the
    counter does not live on in Redis past its window however often it is hit."""
    key = "mutstore2-" + new_session_id()[:16]
    assert await store.incr(key, 10.0) == 1
    await asyncio.sleep(1.5)
    assert await store.incr(key, 10.0) == 2
    pttl = raw.pttl(f"mutstore2:c:{key}")
    assert 0 < pttl <= 9000, pttl  # pushed back, it would be ~10,000 again


# --- statistics store --------------------------------------------------------------------------

_SEEN_KEY = b"mutstore2 seen key, synthetic, 32b"


@pytest.mark.redis
async def test_a_retried_statistics_batch_is_counted_once(redis_url: str, raw: redis.Redis) -> None:
    """kills: proxy/stats_store.py:_ADD_ONCE — `SET ... 'NX' 'EX'` → `SET ... 'EX'`.

    A flush that reached Redis but whose answer was lost is sent again with the same batch id:
    the library's published counts must not double (an inflated figure is a false record)."""
    from proxy.stats_store import RedisStatsStore

    vendor = "mutstore2-" + new_session_id()[:12]
    batch = "mutstore2-batch-" + new_session_id()[:12]
    st = RedisStatsStore(redis_url, seen_key=_SEEN_KEY)
    try:
        deltas = {("2031-02-03", vendor, "requests"): 7}
        await st.add(deltas, batch=batch)
        await st.add(deltas, batch=batch)
        rows = [r for r in await st.rows() if r.vendor == vendor]
    finally:
        await st.close()
    assert [(r.metric, r.count) for r in rows] == [("requests", 7)]


@pytest.mark.redis
async def test_the_hourly_session_digests_are_kept_two_hours_at_most(
    redis_url: str, raw: redis.Redis
) -> None:
    """kills: proxy/stats_store.py — `SEEN_TTL_S = 2 * 3600` raised (e.g. 200 h).

    The sets of keyed session digests behind "distinct sessions" are the one statistics record
    tied to single sessions: the records inventory promises staff they last two hours at most."""
    from proxy.stats_store import REDIS_SEEN_PREFIX, RedisStatsStore

    vendor = "mutstore2-" + new_session_id()[:12]
    st = RedisStatsStore(redis_url, seen_key=_SEEN_KEY)
    try:
        before = set(raw.scan_iter(match=f"{REDIS_SEEN_PREFIX}*"))
        await st.add({}, {("2031-02-03T10", vendor, "sessions"): ["tok-a", "tok-b"]})
        new = set(raw.scan_iter(match=f"{REDIS_SEEN_PREFIX}*")) - before
    finally:
        await st.close()
    assert new
    for key in new:
        assert 0 < raw.ttl(key) <= 2 * 3600


@pytest.mark.redis
async def test_a_batch_id_is_remembered_for_a_day_and_no_longer(
    redis_url: str, raw: redis.Redis
) -> None:
    """kills: proxy/stats_store.py — `BATCH_TTL_S = 24 * 3600` cut (e.g. to 60 s).

    A proxy whose flush failed keeps retrying the same batch while Redis is troubled (a
    failover can take minutes): the batch id must be remembered long enough that a late retry
    is refused, and (as the records inventory tells staff) for 24 hours at most."""
    from proxy.stats_store import REDIS_BATCH_PREFIX, RedisStatsStore

    vendor = "mutstore2-" + new_session_id()[:12]
    batch = "mutstore2-batch-" + new_session_id()[:12]
    st = RedisStatsStore(redis_url, seen_key=_SEEN_KEY)
    try:
        await st.add({("2031-02-05", vendor, "requests"): 1}, batch=batch)
    finally:
        await st.close()
    ttl = raw.ttl(REDIS_BATCH_PREFIX + batch)
    assert 23 * 3600 < ttl <= 24 * 3600, ttl


@pytest.mark.redis
async def test_a_stray_key_under_the_statistics_prefix_does_not_break_the_report(
    redis_url: str, raw: redis.Redis
) -> None:
    """kills: proxy/stats_store.py:_in_range — `except ValueError: return False` → `return True`.

    A key under `weston:stats:` that is not a day (left by an operator or another tool) is
    skipped: staff still get their report of the days, instead of the reader failing on it."""
    from proxy.stats_store import REDIS_PREFIX, RedisStatsStore, redis_rows_sync

    vendor = "mutstore2-" + new_session_id()[:12]
    stray = f"{REDIS_PREFIX}mutstore2-not-a-day"
    raw.hset(stray, "x|requests", 1)
    st = RedisStatsStore(redis_url, seen_key=_SEEN_KEY)
    try:
        await st.add({("2031-02-06", vendor, "requests"): 4})
        rows = [r for r in await st.rows() if r.vendor == vendor]
        sync_rows = [r for r in redis_rows_sync(redis_url, None, None) if r.vendor == vendor]
    finally:
        await st.close()
        raw.delete(stray)
    assert [(r.metric, r.count) for r in rows] == [("requests", 4)]
    assert [(r.metric, r.count) for r in sync_rows] == [("requests", 4)]


# --- suppression and report ---------------------------------------------------------------------


def test_a_lone_single_count_is_protected_when_min_cell_is_two() -> None:
    """kills: proxy/stats_suppression.py:protect_line — `if len(hidden) == 1:` →
    `if len(hidden) == 1 and min_cell > 2:` (the complement skipped for a small min_cell).

    A library that sets `min_cell = 2` hides counts of 1: one patron's visit. If that were the
    only hidden cell of a day, the day's all-vendors total minus the shown vendors would give
    it back; a second cell must be hidden with it, whatever min_cell is."""
    from proxy.stats_suppression import protect, protect_line

    assert protect_line([1, 5, 6], 2) == {0, 1}
    hidden = protect([[1, 1], [5, 5], [6, 6]], 2)
    assert {(0, 0), (1, 0)} <= hidden


def test_activity_by_sessions_started_on_an_earlier_day_is_hidden() -> None:
    """kills: proxy/stats_report.py:_publish — `n < min_cell` → `0 < n < min_cell` (a vendor
    cell that no session started in that period is taken as made by many).

    A patron signs in at 23:50 and reads one database past midnight: the next day that vendor
    has hundreds of requests and no session started there. Those requests are one patron's and
    must be hidden, not published because the day's count of people there is zero."""
    import datetime as dt

    from proxy.stats import LOGINS_SUCCESS, REQUESTS, SESSIONS_STARTED
    from proxy.stats_report import build_report
    from proxy.stats_store import Row

    d1, d2 = dt.date(2031, 3, 1), dt.date(2031, 3, 2)
    rows = [
        Row(d1, "", LOGINS_SUCCESS, 30),
        Row(d2, "", LOGINS_SUCCESS, 30),
        Row(d1, "ebsco", SESSIONS_STARTED, 1),
        Row(d1, "ebsco", REQUESTS, 3),
        Row(d2, "ebsco", REQUESTS, 500),
        Row(d2, "jstor", SESSIONS_STARTED, 25),
        Row(d2, "jstor", REQUESTS, 900),
    ]
    report = build_report(
        rows, period="day", date_from=d1, date_to=d2, min_cell=10, today=dt.date(2031, 3, 10)
    )
    assert report.cell(REQUESTS, "ebsco", "2031-03-02").suppressed


def test_a_redis_that_does_not_answer_gives_staff_a_message_not_a_report(tmp_path: Path) -> None:
    """kills: proxy/stats_report.py:run_stats — `RedisError` dropped from the caught errors.

    Staff run `stats > usage.csv` while the shared Redis is down: they get exit 1 and a
    message on stderr saying the statistics could not be read; no partial report (the
    SQLite counts alone, an undercount handed on as the library's usage) and no traceback."""
    import datetime as dt
    import io

    from proxy.config import Config, SessionConfig
    from proxy.stats_report import run_stats
    from tests import ports

    dead = f"redis://127.0.0.1:{ports.free_port()}/0"
    cfg = Config(path=tmp_path / "proxy.toml", session=SessionConfig(store="redis", redis_url=dead))
    out, err = io.StringIO(), io.StringIO()
    code = run_stats(
        cfg, date_from=None, date_to=None, period="day", fmt="csv", stdout=out, stderr=err,
        today=dt.date(2031, 3, 10),
    )  # fmt: skip
    assert code == 1
    assert out.getvalue() == ""
    assert "statistics could not be read" in err.getvalue()
