"""One contract for every session store: the memory and Redis backends must behave the same.

Also the session rules (proxy.sessions.Sessions) on top of each backend: fresh ids, idle timeout,
absolute lifetime, logout.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from proxy.jar import dump_jar, load_jar, store_set_cookies
from proxy.sessions import (
    AMEND_ATTEMPTS,
    MemoryStore,
    Session,
    Sessions,
    SessionStore,
    make_store,
    new_session_id,
    storage_key,
)

STORE_SECRET = b"contract-suite sealing secret, synthetic"


def make_session(**overrides: Any) -> Session:
    now = time.time()
    fields: dict[str, Any] = {
        "id": new_session_id(),
        "patron_key": "pk-synthetic-0001",
        "databases": frozenset({"ebsco", "gale"}),
        "created": now,
        "last_seen": now,
        "csrf": "csrf-synthetic",
    }
    fields.update(overrides)
    return Session(**fields)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        memory = MemoryStore()
        await memory.start()
        backend: SessionStore = memory
    else:
        url = request.getfixturevalue("redis_url")
        backend = make_store("redis", url=url, key=STORE_SECRET)
    try:
        yield backend
    finally:
        await backend.close()


# --- the store ---------------------------------------------------------------------------------


async def test_put_then_get_preserves_every_field(store: SessionStore) -> None:
    session = make_session(
        jars={"ebsco": [{"name": "s", "value": "v1", "domain": "ebscohost.com", "path": "/"}]},
        state={"ebsco": {"assertion_jti": "j-1", "n": 3, "nested": [1, 2.5, None, True]}},
        suspended="too many downloads",
        created=1_700_000_000.25,
        last_seen=1_700_000_100.5,
    )
    await store.put(session, 30)
    loaded = await store.get(session.id)
    assert loaded == session
    assert isinstance(loaded.databases, frozenset)


async def test_get_of_unknown_id_is_none(store: SessionStore) -> None:
    assert await store.get(new_session_id()) is None


async def test_delete_removes_the_session(store: SessionStore) -> None:
    session = make_session()
    await store.put(session, 30)
    await store.delete(session.id)
    assert await store.get(session.id) is None


async def test_delete_of_unknown_id_is_harmless(store: SessionStore) -> None:
    await store.delete(new_session_id())
    assert await store.count() == 0


async def test_put_again_replaces_the_session(store: SessionStore) -> None:
    session = make_session()
    await store.put(session, 30)
    session.state["step"] = 2
    await store.put(session, 30)
    loaded = await store.get(session.id)
    assert loaded is not None and loaded.state == {"step": 2}
    assert await store.count() == 1


async def _version(store: SessionStore, session_id: str) -> str:
    got = await store.get_versioned(session_id)
    assert got is not None
    return got[1]


async def test_replace_writes_over_a_live_session(store: SessionStore) -> None:
    session = make_session()
    await store.put(session, 30)
    version = await _version(store, session.id)
    session.state["step"] = 2
    assert await store.replace(session, 30, version) == "stored"
    loaded = await store.get(session.id)
    assert loaded is not None and loaded.state == {"step": 2}
    assert await store.count() == 1


async def test_replace_never_brings_back_a_deleted_session(store: SessionStore) -> None:
    """A request still running when its patron signs out saves into nothing."""
    session = make_session()
    await store.put(session, 30)
    version = await _version(store, session.id)
    await store.delete(session.id)
    session.state["step"] = 2
    assert await store.replace(session, 30, version) == "ended"
    assert await store.get(session.id) is None
    assert await store.count() == 0


async def test_replace_never_brings_back_an_expired_session(store: SessionStore) -> None:
    session = make_session()
    await store.put(session, 0.3)
    version = await _version(store, session.id)
    await asyncio.sleep(0.5)
    assert await store.replace(session, 30, version) == "ended"
    assert await store.get(session.id) is None
    assert await store.count() == 0


async def test_replace_of_a_never_stored_session_stores_nothing(store: SessionStore) -> None:
    session = make_session()
    assert await store.replace(session, 30, "no-such-version") == "ended"
    assert await store.get(session.id) is None


async def test_replace_stores_only_over_the_value_it_read(store: SessionStore) -> None:
    """The compare-and-set under every write during a request."""
    session = make_session()
    await store.put(session, 30)
    got = await store.get_versioned(session.id)
    assert got is not None
    mine, version = got
    other = await store.get(session.id)
    assert other is not None
    other.state["theirs"] = 1
    await store.put(other, 30)  # a write between my read and my write
    mine.state["mine"] = 1
    assert await store.replace(mine, 30, version) == "changed"
    stored = await store.get(session.id)
    assert stored is not None and stored.state == {"theirs": 1}
    again = await store.get_versioned(session.id)
    assert again is not None and again[1] != version
    again[0].state["mine"] = 1
    assert await store.replace(again[0], 30, again[1]) == "stored"
    stored = await store.get(session.id)
    assert stored is not None and stored.state == {"theirs": 1, "mine": 1}
    await store.delete(session.id)
    assert await store.replace(again[0], 30, again[1]) == "ended"
    assert await store.get(session.id) is None and await store.count() == 0


async def test_a_write_of_the_same_content_is_still_a_new_version(store: SessionStore) -> None:
    session = make_session()
    await store.put(session, 30)
    first = await store.get_versioned(session.id)
    assert first is not None
    assert await store.replace(first[0], 30, first[1]) == "stored"
    second = await store.get_versioned(session.id)
    assert second is not None and second[1] != first[1]


async def test_session_is_there_before_its_ttl(store: SessionStore) -> None:
    session = make_session()
    await store.put(session, 5)
    assert await store.get(session.id) is not None


async def test_session_is_gone_after_its_ttl(store: SessionStore) -> None:
    session = make_session()
    await store.put(session, 0.3)
    await asyncio.sleep(0.5)
    assert await store.get(session.id) is None


async def test_put_with_no_ttl_left_stores_nothing(store: SessionStore) -> None:
    session = make_session()
    await store.put(session, 0)
    assert await store.get(session.id) is None
    assert await store.count() == 0


async def test_count_counts_live_sessions(store: SessionStore) -> None:
    for _ in range(3):
        await store.put(make_session(), 30)
    assert await store.count() == 3


async def test_count_leaves_out_expired_sessions(store: SessionStore) -> None:
    await store.put(make_session(), 30)
    await store.put(make_session(), 0.3)
    await asyncio.sleep(0.5)
    assert await store.count() == 1


async def test_count_leaves_out_deleted_sessions(store: SessionStore) -> None:
    session = make_session()
    await store.put(session, 30)
    await store.put(make_session(), 30)
    await store.delete(session.id)
    assert await store.count() == 1


async def test_ages_are_seconds_since_login(store: SessionStore) -> None:
    now = time.time()
    await store.put(make_session(created=now - 100), 30)
    await store.put(make_session(created=now - 5), 30)
    ages = sorted(await store.ages())
    assert len(ages) == 2
    assert ages[0] == pytest.approx(5, abs=1)
    assert ages[1] == pytest.approx(100, abs=1)


async def test_ages_leave_out_expired_sessions(store: SessionStore) -> None:
    await store.put(make_session(created=time.time() - 60), 0.3)
    await asyncio.sleep(0.5)
    assert await store.ages() == []


async def test_incr_counts_within_the_window(store: SessionStore) -> None:
    assert [await store.incr("k-hashed-1", 5) for _ in range(3)] == [1, 2, 3]


async def test_incr_starts_again_after_the_window(store: SessionStore) -> None:
    await store.incr("k-hashed-2", 0.3)
    await store.incr("k-hashed-2", 0.3)
    await asyncio.sleep(0.5)
    assert await store.incr("k-hashed-2", 0.3) == 1


async def test_incr_window_is_not_pushed_back_by_later_hits(store: SessionStore) -> None:
    # The third hit comes after the first hit's window and well before the end of a window
    # pushed back to the second hit: margins of 1.0 s and 0.7 s, not 0.2 s and 0.15 s, so a
    # busy machine's late wake-ups do not move a hit into the other window.
    window = 2.0
    first = time.monotonic()
    assert await store.incr("k-hashed-3", window) == 1
    await asyncio.sleep(1.0)
    assert await store.incr("k-hashed-3", window) == 2  # still in the first hit's window
    await asyncio.sleep(max(0.0, first + window + 0.3 - time.monotonic()))
    assert await store.incr("k-hashed-3", window) == 1


async def test_incr_counters_are_independent(store: SessionStore) -> None:
    await store.incr("k-a", 5)
    await store.incr("k-a", 5)
    assert await store.incr("k-b", 5) == 1


async def test_incr_gives_back_within_the_window(store: SessionStore) -> None:
    """The throttle's reservation: added at the gate, given back (by=-1) when not a guess."""
    assert await store.incr("k-hashed-4", 5, by=1) == 1
    assert await store.incr("k-hashed-4", 5) == 2
    assert await store.incr("k-hashed-4", 5, by=-1) == 1
    assert await store.incr("k-hashed-4", 5) == 2


async def test_returned_session_is_a_copy(store: SessionStore) -> None:
    session = make_session(state={"n": 1})
    await store.put(session, 30)
    loaded = await store.get(session.id)
    assert loaded is not None
    loaded.state["n"] = 2
    loaded.jars["gale"] = [{"name": "x"}]
    again = await store.get(session.id)
    assert again is not None and again.state == {"n": 1} and again.jars == {}


async def test_stored_session_is_a_snapshot_at_put(
    store: SessionStore, request: pytest.FixtureRequest
) -> None:
    """Changing a session after put() must not change the store until the next put()."""
    session = make_session(state={"n": 1})
    await store.put(session, 30)
    session.state["n"] = 2
    again = await store.get(session.id)
    assert again is not None and again.state == {"n": 1}


async def test_ping_answers_when_the_store_is_up(store: SessionStore) -> None:
    await store.ping()


# --- the session rules on top of each store ----------------------------------------------------


async def test_start_gives_a_fresh_256_bit_id_each_time(store: SessionStore) -> None:
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=600)
    ids = [(await sessions.start(patron_key="pk", databases=frozenset())).id for _ in range(5)]
    assert len(set(ids)) == 5
    for session_id in ids:
        assert len(base64.urlsafe_b64decode(session_id + "=" * (-len(session_id) % 4))) == 32


async def test_started_session_loads_back(store: SessionStore) -> None:
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=600)
    started = await sessions.start(patron_key="pk-1", databases=frozenset({"gale"}))
    loaded = await sessions.load(started.id)
    assert loaded is not None
    assert (loaded.patron_key, loaded.databases) == ("pk-1", frozenset({"gale"}))


async def test_load_of_missing_or_overlong_id_is_none(store: SessionStore) -> None:
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=600)
    assert await sessions.load(None) is None
    assert await sessions.load("") is None
    assert await sessions.load("x" * 129) is None


async def test_idle_session_ends(store: SessionStore) -> None:
    sessions = Sessions(store, idle_timeout_s=0.3, lifetime_s=600)
    started = await sessions.start(patron_key="pk", databases=frozenset())
    await asyncio.sleep(0.5)
    assert await sessions.load(started.id) is None


async def test_activity_keeps_a_session_alive_past_the_idle_timeout(store: SessionStore) -> None:
    """A use every 0.5 s for 3 s keeps a session with a 2 s idle timeout (a loaded machine may
    stall a step by over a second without the test failing)."""
    sessions = Sessions(store, idle_timeout_s=2.0, lifetime_s=600)
    started = await sessions.start(patron_key="pk", databases=frozenset())
    for _ in range(6):
        await asyncio.sleep(0.5)
        loaded = await sessions.load(started.id)
        assert loaded is not None
        await sessions.touch(loaded, min_interval_s=0)


async def test_lifetime_ends_a_session_despite_activity(store: SessionStore) -> None:
    """Used early in its 2 s lifetime, a session still ends when the lifetime does."""
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=2.0)
    begun = time.monotonic()
    started = await sessions.start(patron_key="pk", databases=frozenset())
    await asyncio.sleep(0.3)
    loaded = await sessions.load(started.id)
    assert loaded is not None
    await sessions.touch(loaded, min_interval_s=0)
    await asyncio.sleep(max(0.0, begun + 2.3 - time.monotonic()))
    assert await sessions.load(started.id) is None


async def test_load_refuses_and_deletes_a_session_older_than_its_lifetime(
    store: SessionStore,
) -> None:
    """Even if the store still holds it (e.g. lifetime shortened in config), the rules refuse it."""
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=50)
    old = make_session(created=time.time() - 100)
    await store.put(old, 30)
    assert await sessions.load(old.id) is None
    assert await store.get(old.id) is None


async def test_load_refuses_a_session_idle_too_long(store: SessionStore) -> None:
    sessions = Sessions(store, idle_timeout_s=10, lifetime_s=600)
    idle = make_session(last_seen=time.time() - 20)
    await store.put(idle, 30)
    assert await sessions.load(idle.id) is None


async def test_save_vendor_keeps_what_overlapping_requests_changed(store: SessionStore) -> None:
    """Two requests load the session, a third suspends it; each request stores only its own
    vendor's jar and visit, so neither undoes the other's, nor the suspension."""
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=3600)
    started = await sessions.start(patron_key="pk", databases=frozenset({"x", "y"}))
    a = await sessions.load(started.id)
    b = await sessions.load(started.id)
    assert a is not None and b is not None
    b.jars["y"] = dump_jar_of("y=1; Path=/")
    b.state.setdefault("seen", []).append("y")
    await sessions.save_vendor(b, "y", [])
    assert await sessions.suspend(started.id, "too many downloads") is True
    assert await sessions.suspend(started.id, "again") is False  # counted once
    a.jars["x"] = dump_jar_of("x=1; Path=/")
    a.state.setdefault("seen", []).append("x")
    a.state["shared_login"] = ["x"]
    await sessions.save_vendor(a, "x", [])
    final = await store.get(started.id)
    assert final is not None
    assert cookies(final.jars) == {"x": [("x", "1")], "y": [("y", "1")]}
    assert sorted(final.state["seen"]) == ["x", "y"]
    assert final.state["shared_login"] == ["x"]
    assert final.suspended == "too many downloads"


async def test_save_vendor_says_which_overlapping_request_first_saw_the_vendor(
    store: SessionStore,
) -> None:
    """A page's requests all find "seen" without the vendor; only the one whose write adds it
    is told so (it counts the session as started there, once). A save onto a session that
    has ended is told nothing."""
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=3600)
    started = await sessions.start(patron_key="pk", databases=frozenset({"x"}))
    copies = [await sessions.load(started.id) for _ in range(3)]
    for copy in copies:
        assert copy is not None
        copy.state.setdefault("seen", []).append("x")
    answers = [await sessions.save_vendor(c, "x", []) for c in copies if c is not None]
    assert answers == [frozenset({"seen"}), frozenset(), frozenset()]
    later = await sessions.load(started.id)
    assert later is not None and later.state["seen"] == ["x"]
    await sessions.end(started.id)
    assert await sessions.save_vendor(later, "x", []) == frozenset()


async def test_touch_records_use_without_undoing_what_others_changed(store: SessionStore) -> None:
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=3600)
    started = await sessions.start(patron_key="pk", databases=frozenset({"y"}))
    a = await sessions.load(started.id)
    b = await sessions.load(started.id)
    assert a is not None and b is not None
    b.jars["y"] = dump_jar_of("y=1; Path=/")
    await sessions.save_vendor(b, "y", [])
    a.last_seen -= 30  # a's time of use is due to be written
    await sessions.touch(a)
    final = await store.get(started.id)
    assert final is not None
    assert cookies(final.jars) == {"y": [("y", "1")]}
    assert final.last_seen == a.last_seen and final.last_seen > started.last_seen


async def test_save_vendor_of_an_ended_session_stores_nothing(store: SessionStore) -> None:
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=3600)
    started = await sessions.start(patron_key="pk", databases=frozenset({"x"}))
    copy = await sessions.load(started.id)
    assert copy is not None
    await sessions.end(started.id)
    copy.jars["x"] = dump_jar_of("x=1; Path=/")
    await sessions.save_vendor(copy, "x", [])
    assert await sessions.suspend(started.id, "late") is False
    assert await store.get(started.id) is None and await store.count() == 0


class _Interleaved:
    """The store, with one other write made right after the first `get_versioned`: what a
    second worker's request does between this one's read and its write."""

    def __init__(self, store: SessionStore, other_write: Callable[[], Awaitable[None]]) -> None:
        self._store = store
        self._other_write: Callable[[], Awaitable[None]] | None = other_write
        self.reads = 0

    async def get_versioned(self, session_id: str) -> tuple[Session, str] | None:
        got = await self._store.get_versioned(session_id)
        self.reads += 1
        if self._other_write is not None:
            other_write, self._other_write = self._other_write, None
            await other_write()
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def cookies(jars: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[str, str]]]:
    """Each vendor's cookies as (name, value): what a jar holds, without when it was set."""
    return {v: sorted((d["name"], d["value"]) for d in jar) for v, jar in jars.items()}


def dump_jar_of(*set_cookies: str, start: list[dict[str, Any]] | None = None) -> Any:
    jar = load_jar(start or [])
    store_set_cookies(jar, "https://www.vendor.test/", list(set_cookies))
    return dump_jar(jar)


async def test_a_write_between_read_and_write_is_kept(store: SessionStore) -> None:
    """Two requests of one page at one vendor each bring a cookie; the second stores its own
    between the first's read and write. The first applies its change again to what is stored
    then, so both cookies are kept (without the compare-and-set, the first wrote over it)."""
    plain = Sessions(store, idle_timeout_s=60, lifetime_s=3600)
    started = await plain.start(patron_key="pk", databases=frozenset({"v"}))
    a = await plain.load(started.id)
    b = await plain.load(started.id)
    assert a is not None and b is not None
    b.jars["v"] = dump_jar_of("b=2; Path=/")

    async def b_saves() -> None:
        await plain.save_vendor(b, "v", [])

    interleaved = _Interleaved(store, b_saves)
    racing = Sessions(cast(SessionStore, interleaved), idle_timeout_s=60, lifetime_s=3600)
    a.jars["v"] = dump_jar_of("a=1; Path=/")
    await racing.save_vendor(a, "v", [])
    assert interleaved.reads == 2  # read, lost the race, read again
    final = await store.get(started.id)
    assert final is not None
    assert {c["name"]: c["value"] for c in final.jars["v"]} == {"a": "1", "b": "2"}


async def test_each_request_stores_only_the_cookies_it_changed(store: SessionStore) -> None:
    """Of one vendor's jar, a request stores its own changes (a new cookie, a new value, a
    deletion) onto the jar as stored now; cookies it only carried are not put back over newer
    ones another request stored."""
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=3600)
    started = await sessions.start(patron_key="pk", databases=frozenset({"v"}))
    seed = await sessions.load(started.id)
    assert seed is not None
    seed.jars["v"] = dump_jar_of("keep=1; Path=/", "bye=1; Path=/", "lb=old; Path=/")
    await sessions.save_vendor(seed, "v", [])
    a = await sessions.load(started.id)
    b = await sessions.load(started.id)
    assert a is not None and b is not None
    before = list(a.jars["v"])
    b.jars["v"] = dump_jar_of("lb=new; Path=/", start=b.jars["v"])  # a load balancer's cookie
    await sessions.save_vendor(b, "v", before)
    a.jars["v"] = dump_jar_of("sid=s1; Path=/", "bye=; Path=/; Max-Age=0", start=a.jars["v"])
    await sessions.save_vendor(a, "v", before)
    final = await store.get(started.id)
    assert final is not None
    assert {c["name"]: c["value"] for c in final.jars["v"]} == {
        "keep": "1",
        "lb": "new",
        "sid": "s1",
    }


async def test_an_amend_that_always_loses_the_race_gives_up_and_says_so(
    store: SessionStore,
) -> None:
    """A write between every read and write: after AMEND_ATTEMPTS reads the change is dropped
    (never written over the others') and IT sees an event naming no session."""
    plain = Sessions(store, idle_timeout_s=60, lifetime_s=3600)
    started = await plain.start(patron_key="pk", databases=frozenset({"v"}))
    other = await plain.load(started.id)
    assert other is not None

    class Busy(_Interleaved):
        async def get_versioned(self, session_id: str) -> tuple[Session, str] | None:
            got = await super().get_versioned(session_id)
            other.state["n"] = self.reads
            await store.put(other, 30)
            return got

    busy = Busy(store, lambda: asyncio.sleep(0))
    racing = Sessions(cast(SessionStore, busy), idle_timeout_s=60, lifetime_s=3600)
    with capture_logs() as logs:
        assert await racing.suspend(started.id, "limits") is False
    assert busy.reads == AMEND_ATTEMPTS
    final = await store.get(started.id)
    assert final is not None and final.suspended == "" and final.state["n"] == AMEND_ATTEMPTS
    assert [e["event"] for e in logs] == ["session_update_contended"]
    assert started.id not in repr(logs) and storage_key(started.id) not in repr(logs)


async def test_end_destroys_the_session(store: SessionStore) -> None:
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=600)
    started = await sessions.start(patron_key="pk", databases=frozenset())
    await sessions.end(started.id)
    assert await sessions.load(started.id) is None
    assert await store.count() == 0


async def test_memory_store_close_ends_its_sweeper_before_returning() -> None:
    """close() waits for the sweeper (tasks.stop), so no sweep runs on a closed store and no
    task is left for the event loop's shutdown to find."""
    memory = MemoryStore()
    await memory.start()
    sweeper = memory._sweeper
    assert sweeper is not None and not sweeper.done()
    await memory.close()
    assert sweeper.done() and sweeper.cancelled()
