"""One contract for every session store: the memory and Redis backends must behave the same.

Also the session rules (proxy.sessions.Sessions) on top of each backend: fresh ids, idle timeout,
absolute lifetime, logout.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.sessions import MemoryStore, Session, Sessions, SessionStore, make_store, new_session_id

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


async def test_update_replaces_a_live_session(store: SessionStore) -> None:
    session = make_session()
    await store.put(session, 30)
    session.state["step"] = 2
    assert await store.update(session, 30) is True
    loaded = await store.get(session.id)
    assert loaded is not None and loaded.state == {"step": 2}
    assert await store.count() == 1


async def test_update_never_brings_back_a_deleted_session(store: SessionStore) -> None:
    """A request still running when its patron signs out saves into nothing."""
    session = make_session()
    await store.put(session, 30)
    await store.delete(session.id)
    session.state["step"] = 2
    assert await store.update(session, 30) is False
    assert await store.get(session.id) is None
    assert await store.count() == 0


async def test_update_never_brings_back_an_expired_session(store: SessionStore) -> None:
    session = make_session()
    await store.put(session, 0.3)
    await asyncio.sleep(0.5)
    assert await store.update(session, 30) is False
    assert await store.get(session.id) is None
    assert await store.count() == 0


async def test_update_of_a_never_stored_session_stores_nothing(store: SessionStore) -> None:
    session = make_session()
    assert await store.update(session, 30) is False
    assert await store.get(session.id) is None


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
    await store.incr("k-hashed-3", 0.5)
    await asyncio.sleep(0.3)
    await store.incr("k-hashed-3", 0.5)
    await asyncio.sleep(0.35)
    assert await store.incr("k-hashed-3", 0.5) == 1


async def test_incr_counters_are_independent(store: SessionStore) -> None:
    await store.incr("k-a", 5)
    await store.incr("k-a", 5)
    assert await store.incr("k-b", 5) == 1


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
    sessions = Sessions(store, idle_timeout_s=0.4, lifetime_s=600)
    started = await sessions.start(patron_key="pk", databases=frozenset())
    for _ in range(3):
        await asyncio.sleep(0.2)
        loaded = await sessions.load(started.id)
        assert loaded is not None
        await sessions.touch(loaded, min_interval_s=0)


async def test_lifetime_ends_a_session_despite_activity(store: SessionStore) -> None:
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=0.6)
    started = await sessions.start(patron_key="pk", databases=frozenset())
    await asyncio.sleep(0.3)
    loaded = await sessions.load(started.id)
    assert loaded is not None
    await sessions.touch(loaded, min_interval_s=0)
    await asyncio.sleep(0.45)
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
    b.jars["y"] = [{"name": "y", "value": "1"}]
    b.state.setdefault("seen", []).append("y")
    await sessions.save_vendor(b, "y")
    assert await sessions.suspend(started.id, "too many downloads") is True
    assert await sessions.suspend(started.id, "again") is False  # counted once
    a.jars["x"] = [{"name": "x", "value": "1"}]
    a.state.setdefault("seen", []).append("x")
    a.state["shared_login"] = ["x"]
    await sessions.save_vendor(a, "x")
    final = await store.get(started.id)
    assert final is not None
    assert final.jars == {"x": [{"name": "x", "value": "1"}], "y": [{"name": "y", "value": "1"}]}
    assert sorted(final.state["seen"]) == ["x", "y"]
    assert final.state["shared_login"] == ["x"]
    assert final.suspended == "too many downloads"


async def test_touch_records_use_without_undoing_what_others_changed(store: SessionStore) -> None:
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=3600)
    started = await sessions.start(patron_key="pk", databases=frozenset({"y"}))
    a = await sessions.load(started.id)
    b = await sessions.load(started.id)
    assert a is not None and b is not None
    b.jars["y"] = [{"name": "y", "value": "1"}]
    await sessions.save_vendor(b, "y")
    a.last_seen -= 30  # a's time of use is due to be written
    await sessions.touch(a)
    final = await store.get(started.id)
    assert final is not None
    assert final.jars == {"y": [{"name": "y", "value": "1"}]}
    assert final.last_seen == a.last_seen and final.last_seen > started.last_seen


async def test_save_vendor_of_an_ended_session_stores_nothing(store: SessionStore) -> None:
    sessions = Sessions(store, idle_timeout_s=60, lifetime_s=3600)
    started = await sessions.start(patron_key="pk", databases=frozenset({"x"}))
    copy = await sessions.load(started.id)
    assert copy is not None
    await sessions.end(started.id)
    copy.jars["x"] = [{"name": "x", "value": "1"}]
    await sessions.save_vendor(copy, "x")
    assert await sessions.suspend(started.id, "late") is False
    assert await store.get(started.id) is None and await store.count() == 0


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
