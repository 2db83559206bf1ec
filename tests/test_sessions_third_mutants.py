"""From a further mutation sweep (2 December 2026) of sessions (proxy/sessions.py,
proxy/redis_store.py, proxy/throttle.py, proxy/usage_limits.py): each test kills one mutant that
the rest of the suite let through (8 of 44 survived, 4 of them equivalent; each test here failed
with its mutant and passes without). Its docstring names the mutant and the behaviour it
proves. Real Redis (tests/fixtures_redis.py), synthetic data only."""

from __future__ import annotations

import time
import types
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from aiohttp.test_utils import make_mocked_request

from proxy import usage_limits
from proxy.redis_store import RedisStore
from proxy.sessions import Session, Sessions, new_session_id
from proxy.usage_limits import Tracked
from tests.fixtures_redis import RedisServer
from tests.test_usage_mutants import REFUSED, _limits, _vendor

SECRET = b"review-sessions3 sealing secret, synthetic"
PREFIX = "sessions3:"


@pytest.fixture
def raw(redis_server: RedisServer, redis_url: str) -> Iterator[redis.Redis]:
    """A plain client, to look at what Redis really holds."""
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    backend = RedisStore(url=redis_url, key=SECRET, prefix=PREFIX)
    try:
        yield backend
    finally:
        await backend.close()


def _session(**overrides: object) -> Session:
    now = time.time()
    fields: dict[str, object] = {
        "id": new_session_id(),
        "patron_key": "pk-sessions3-synthetic",
        "databases": frozenset({"one"}),
        "created": now,
        "last_seen": now,
        "csrf": "csrf-sessions3-synthetic",
    }
    fields.update(overrides)
    return Session(**fields)  # type: ignore[arg-type]


def _gets(raw: redis.Redis) -> int:
    """How many GETs this Redis has answered since it started."""
    stats = raw.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


@pytest.mark.redis
async def test_a_cookie_longer_than_any_session_id_is_not_looked_up(
    store: RedisStore, raw: redis.Redis
) -> None:
    """kills: proxy/sessions.py:Sessions.load — `if not session_id or len(session_id) > 128:` →
    `if not session_id:`. A cookie value longer than any session id (43 characters) is no
    session and is answered without a store round trip: a client sending kilobyte cookies
    cannot make every request hash them and ask Redis."""
    sessions = Sessions(store, idle_timeout_s=600, lifetime_s=3600)
    session = await sessions.start(patron_key="pk-sessions3-synthetic", databases=frozenset())
    assert await sessions.load(session.id) is not None
    before = _gets(raw)
    assert await sessions.load("A" * 129) is None
    assert await sessions.load(session.id + "A" * 86) is None
    assert _gets(raw) == before
    assert await sessions.load("A" * 128) is None
    assert _gets(raw) == before + 1


@pytest.mark.redis
async def test_session_ages_keep_the_fraction_of_a_second(store: RedisStore) -> None:
    """kills: proxy/redis_store.py:RedisStore._store — `repr(session.created)` →
    `str(int(session.created))` (the login time filed in `born`). The records inventory's ages
    are the seconds since login as the session has them, not rounded down to whole seconds of
    the epoch (up to a second off for every session)."""
    now = time.time()
    created = float(int(now)) - 100 + 0.75
    await store.put(_session(created=created), 30)
    (age,) = await store.ages()
    assert age == pytest.approx(time.time() - created, abs=0.2)


@pytest.mark.redis
async def test_requests_per_minute_starts_again_each_clock_minute(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kills: proxy/usage_limits.py:UsageLimits.gate — `Window.at(now, 60)` →
    `Window.at(now, 120)`. `requests_per_minute` counts one clock minute: a patron making two
    requests in each of two minutes that share a two-minute window (limit two) is not
    suspended in the second minute."""
    minute = 1_780_000_080  # a whole minute, and a whole two minutes
    assert minute % 120 == 0
    now = [minute + 5.0]
    monkeypatch.setattr(usage_limits, "time", types.SimpleNamespace(time=lambda: now[0]))
    ul, session, vendor = await _limits(store, requests_per_minute=2)
    sessions = ul.svc.sessions
    for at in (5.0, 30.0, 65.0, 90.0):
        now[0] = minute + at
        assert await ul.gate(make_mocked_request("GET", "/doc"), session, vendor) is None, at
    stored = await sessions.load(session.id)
    assert stored is not None and not stored.suspended
    now[0] = minute + 100.0
    assert await ul.gate(make_mocked_request("GET", "/doc"), session, vendor) is REFUSED


@pytest.mark.redis
async def test_a_download_from_another_vendor_is_not_counted_against_the_tracked_one(
    store: RedisStore,
) -> None:
    """kills: proxy/usage_limits.py:UsageLimits.check_head — `or tracked.vendor_id != vendor.id`
    dropped. A full-text download is counted only for the vendor whose gate tracked this
    request: an answer from another vendor never spends (or suspends on) the first one's
    `downloads_per_hour`."""
    ul, session, _ = await _limits(store)
    sessions = ul.svc.sessions
    two = _vendor("two", downloads_per_hour=1)
    ul._current.set(Tracked(session, "one", ul.counter(session, "one")))
    request = make_mocked_request("GET", "/article.pdf")
    assert await ul.check_head(request, two, 200, "application/pdf", {}) is None
    stored = await sessions.load(session.id)
    assert stored is not None and not stored.suspended


# Checked and found fine (no test kept):
# - proxy/sessions.py:MemoryStore.incr — `if exp <= now:` → `if exp < now:`: differs only at the
#   one instant the monotonic clock equals the window's end.
# - proxy/throttle.py:Throttle.admit — `limit < 1 or not card` → `limit < 1`: admit runs only
#   after the directory accepted the card and PIN, which never happens for a blank card number.
# - proxy/throttle.py:Throttle.settle — `max(1.0, w.ends - now + 1)` → `w.ends - now + 1`: the
#   counter's name carries its window's index, so a give-back after the window's end lands on a
#   counter no gate reads again (and RedisStore's `_ms` keeps the TTL at 1 ms or more).
# - proxy/redis_store.py:RedisStore.get_versioned — `if session.id == session_id else None`
#   dropped: a value opens only under the key derived from the id it was sealed for, and
#   `_store` seals each session under its own id.
