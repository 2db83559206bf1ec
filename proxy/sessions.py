"""Patron sessions: the store protocol, the memory store, and the rules for expiry.

A session holds only what browsing needs: an opaque patron key, the databases the patron may use,
a CSRF token, per-vendor cookie jars and adapter state. Stores keep sessions under a hash of the
session id, so a copy of the store cannot be replayed as cookies. Every stored item expires on its
own (TTL = the session's remaining life), so data is destroyed even if no proxy is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import itertools
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Protocol

import structlog

from proxy.errors import StoreUnavailable
from proxy.jar import dump_jar, merged_jar
from proxy.tasks import stop

# How often `Sessions._amend` reads and applies its change again when another write came
# between its read and its write. Writers of one session are the requests of a patron's pages,
# each writing at most once; a page's 16 parallel requests through two instances on Redis
# lost writes after 8 attempts (tests/test_scale_out.py).
AMEND_ATTEMPTS = 24
# After a lost compare-and-set, wait up to this many seconds times the attempt number (random):
# the writers of a page's parallel requests then stop meeting each other in lockstep.
AMEND_BACKOFF_S = 0.002
# How many vendor hosts a session remembers for signing out (`Session.hosts`); a patron's
# databases use a few each. Past it, later hosts are not cleared from the browser at sign-out.
MAX_NOTED_HOSTS = 100
# `Sessions.touch` writes the time of use at most this often (and at least ten times per idle
# timeout).
TOUCH_EVERY_S = 15.0
# The key under `state` of the vendor hosts whose first page this session was sent with
# Clear-Site-Data (proxy/forward.py). Not `Session.hosts`, which notes a host on any request
# (an image, a script) for sign-out: a host first reached by an image must still have its first
# page cleared. In `state` because an instance of an older version carries `state` over whole
# (and leaves a list of hosts in it as it is: it only ever adds or drops a vendor id there).
# A session begun by such an instance has no such list: its hosts are cleared as that code did.
CLEARED = "cleared"


def new_session_id() -> str:
    """256 bits from the OS CSPRNG, URL-safe."""
    return secrets.token_urlsafe(32)


def storage_key(session_id: str) -> str:
    """What a store files a session under: never the cookie value itself."""
    return hashlib.sha256(session_id.encode()).hexdigest()


# The key under `state` of the copy of a session's `rules` (Session.to_dict).
_RULES_IN_STATE = "_rules"


@dataclass
class Session:
    id: str
    patron_key: str
    databases: frozenset[str]
    created: float
    last_seen: float
    csrf: str
    jars: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    suspended: str = ""  # reason, when usage limits suspended the session
    # Vendor hosts this session's browser was sent to, so that signing out can ask the browser
    # to forget what those pages stored in it (`forget_hosts`); dies with the session like `jars`.
    hosts: list[str] = field(default_factory=list)
    # The marks of the eligibility rules `databases` was decided under (auth.decided_under).
    rules: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["databases"] = sorted(self.databases)
        d["rules"] = sorted(self.rules)
        # A copy of the rules where an instance of a version before `rules` (a rolling
        # upgrade) keeps it: such an instance drops fields it does not know when it writes the
        # session back, but carries `state` over whole. Without it every request such an
        # instance served sent the patron to sign in again at a newer one.
        d["state"] = {**d["state"], _RULES_IN_STATE: d["rules"]}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Session:
        """A stored session; fields this code does not know are left out, so a session written
        by a newer instance (a rolling upgrade adds a field) still loads here."""
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["databases"] = frozenset(d.get("databases", ()))
        state = d.get("state")
        if isinstance(state, dict) and _RULES_IN_STATE in state:
            state = dict(state)
            kept = state.pop(_RULES_IN_STATE)
            d["state"] = state
            d.setdefault("rules", kept)  # written back by an older instance: the copy
        rules = d.get("rules", ())
        d["rules"] = frozenset(rules) if isinstance(rules, list) else frozenset()
        return cls(**d)


def _clone(value: Any) -> Any:
    """A deep copy of the JSON-shaped data a session holds (dicts, lists, scalars)."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None), frozenset, tuple)):
        return value
    return copy.deepcopy(value)


def copy_session(session: Session) -> Session:
    """An independent copy, as `Session.from_dict(session.to_dict())` gives, at a fraction of
    the cost (dataclasses.asdict recurses generically; this runs on every proxied request)."""
    return Session(
        id=session.id,
        patron_key=session.patron_key,
        databases=frozenset(session.databases),
        created=session.created,
        last_seen=session.last_seen,
        csrf=session.csrf,
        jars=_clone(session.jars),
        state=_clone(session.state),
        suspended=session.suspended,
        hosts=list(session.hosts),
        rules=session.rules,
    )


Replaced = Literal["stored", "changed", "ended"]


class SessionStore(Protocol):
    """Where sessions live. Every method raises StoreUnavailable when the store cannot answer."""

    async def put(self, session: Session, ttl_s: float) -> None: ...

    async def get(self, session_id: str) -> Session | None: ...

    async def get_versioned(self, session_id: str) -> tuple[Session, str] | None:
        """`get`, with a token for the stored value that `replace` compares."""
        ...

    async def replace(self, session: Session, ttl_s: float, version: str) -> Replaced:
        """`put`, but only while the stored value is still the one `version` was read with:
        "stored"; "changed" (nothing stored) when another write came between; "ended" (nothing
        stored) once the session is gone. Every write during a request goes through it: a
        request still running when the patron signs out cannot bring the session back, and
        overlapping requests that each amend the session (a page's requests each bringing a
        vendor cookie) lose nothing. Only sign-in creates a session (`put`)."""
        ...

    async def delete(self, session_id: str) -> None: ...

    async def count(self) -> int: ...

    async def ages(self) -> list[float]:
        """Seconds since login of every live session (records inventory; no ids)."""
        ...

    async def incr(self, key: str, window_s: float, *, by: int = 1) -> int:
        """Add `by` (one; -1 gives back what was added) to counter `key` (expiring after
        `window_s` from its first change) and return its value."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    """Sessions in this process's memory; for one proxy process."""

    def __init__(self) -> None:
        # storage key -> (monotonic expiry, the session, its revision for `replace`)
        self._items: dict[str, tuple[float, Session, int]] = {}
        self._revisions = itertools.count(1)
        self._counters: dict[str, tuple[float, int]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def _sweep(self, now: float) -> None:
        for k in [k for k, (exp, _, _) in self._items.items() if exp <= now]:
            del self._items[k]
        for k in [k for k, (exp, _) in self._counters.items() if exp <= now]:
            del self._counters[k]

    async def start(self) -> None:
        async def sweep_forever() -> None:
            while True:
                await asyncio.sleep(30)
                self._sweep(time.monotonic())

        self._sweeper = asyncio.create_task(sweep_forever())

    async def put(self, session: Session, ttl_s: float) -> None:
        if ttl_s <= 0:
            self._items.pop(storage_key(session.id), None)
            return
        # A snapshot, as Redis keeps: later changes count only once saved again.
        self._items[storage_key(session.id)] = (
            time.monotonic() + ttl_s,
            copy_session(session),
            next(self._revisions),
        )

    async def replace(self, session: Session, ttl_s: float, version: str) -> Replaced:
        item = self._items.get(storage_key(session.id))
        if item is None or item[0] <= time.monotonic():
            return "ended"
        if str(item[2]) != version:
            return "changed"
        await self.put(session, ttl_s)
        return "stored" if ttl_s > 0 else "ended"

    def _live(self, session_id: str) -> tuple[float, Session, int] | None:
        key = storage_key(session_id)
        item = self._items.get(key)
        if item is not None and item[0] <= time.monotonic():
            del self._items[key]
            return None
        return item

    async def get(self, session_id: str) -> Session | None:
        item = self._live(session_id)
        # Hand out a copy so a handler's changes only count once saved with put().
        return None if item is None else copy_session(item[1])

    async def get_versioned(self, session_id: str) -> tuple[Session, str] | None:
        item = self._live(session_id)
        return None if item is None else (copy_session(item[1]), str(item[2]))

    async def delete(self, session_id: str) -> None:
        self._items.pop(storage_key(session_id), None)

    async def count(self) -> int:
        self._sweep(time.monotonic())
        return len(self._items)

    async def ages(self) -> list[float]:
        self._sweep(time.monotonic())
        now = time.time()
        return [now - s.created for _, s, _ in self._items.values()]

    async def incr(self, key: str, window_s: float, *, by: int = 1) -> int:
        now = time.monotonic()
        exp, n = self._counters.get(key, (now + window_s, 0))
        if exp <= now:
            exp, n = now + window_s, 0
        self._counters[key] = (exp, n + by)
        return n + by

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        if self._sweeper is not None:
            await stop(self._sweeper)  # awaited, so no sweep runs on a closed store
            self._sweeper = None
        self._items.clear()
        self._counters.clear()


class Sessions:
    """Session rules on top of a store: fresh ids, idle timeout and absolute lifetime."""

    def __init__(self, store: SessionStore, *, idle_timeout_s: float, lifetime_s: float) -> None:
        self.store = store
        self.idle_timeout_s = idle_timeout_s
        self.lifetime_s = lifetime_s

    def _ttl(self, session: Session, now: float) -> float:
        return max(0.0, min(self.idle_timeout_s, session.created + self.lifetime_s - now))

    async def start(
        self, *, patron_key: str, databases: frozenset[str], rules: frozenset[str] = frozenset()
    ) -> Session:
        now = time.time()
        session = Session(
            id=new_session_id(),
            patron_key=patron_key,
            databases=databases,
            created=now,
            last_seen=now,
            csrf=secrets.token_urlsafe(24),
            state={CLEARED: []},
            rules=rules,
        )
        await self.store.put(session, self._ttl(session, now))
        return session

    async def load(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value, or None (unknown, idle too long, too old)."""
        if not session_id or len(session_id) > 128:
            return None
        session = await self.store.get(session_id)
        if session is None:
            return None
        now = time.time()
        if now - session.last_seen > self.idle_timeout_s or now - session.created > self.lifetime_s:
            await self.store.delete(session_id)
            return None
        return session

    @property
    def touch_every_s(self) -> float:
        """How often `touch` writes at most: the granularity of "in use"."""
        return min(TOUCH_EVERY_S, self.idle_timeout_s / 10)

    async def in_use(self, session: Session) -> None:
        """`touch` from inside a long relay (a download longer than `touch_every_s`): the
        session is in use while its request runs, not only when it starts. The bytes are on
        their way to the patron: a store that cannot answer now does not break them (the next
        request meets the store as every request does)."""
        with contextlib.suppress(StoreUnavailable):
            await self.touch(session)

    async def touch(self, session: Session, *, min_interval_s: float = TOUCH_EVERY_S) -> None:
        """Record activity; writes at most every `min_interval_s` (and at least ten times per idle
        timeout, so a short `idle_timeout_s` does not end a session in use: a session can end
        at most that interval early), and then only the time of use, onto the session as stored
        now (this request's whole copy would put back what overlapping requests changed since it
        was loaded)."""
        now = time.time()
        since = now - session.last_seen
        # A negative `since` is the wall clock stepped back (NTP): the store's expiry runs on
        # relative time, so the use is recorded, or a session in use would end while `since`
        # stays negative.
        if since < 0 or since >= min(min_interval_s, self.idle_timeout_s / 10):
            session.last_seen = now
            await self._amend(session.id, lambda stored: True, now)

    async def save_vendor(
        self,
        session: Session,
        vendor_id: str,
        jar_before: list[dict[str, Any]],
        host: str | None = None,
        cleared: str | None = None,
    ) -> frozenset[str]:
        """Store what one proxied request for `vendor_id` changed onto the session as stored now:
        the cookies it changed in that vendor's jar (from `jar_before`, the jar as the request
        found it, to the jar it has now), and whether `vendor_id` is in each of the state's
        vendor lists ("seen", "shared_login").

        Requests overlap (a page's, other tabs', another worker's), each with its own copy of the
        session. Saving the whole copy, or even the whole jar, would put back what the others
        changed meanwhile: a cookie another response set, another vendor's cookies, or a
        suspension for usage limits.

        `host`, the vendor host the request went to, is added to `Session.hosts` (up to
        MAX_NOTED_HOSTS) in the same write, for sign-out to clear from the browser; `cleared`,
        a host whose first page this request answers with Clear-Site-Data, to the state's
        CLEARED list, so the session's later pages there keep what it stored.

        Returns the state lists this write put `vendor_id` into (empty when nothing was
        written): of a page's overlapping requests that each found "seen" without the vendor,
        only the one whose write added it gets "seen" back, so a session is counted as started
        at a vendor once.
        """
        ours = session.jars.get(vendor_id, [])
        added: set[str] = set()

        def change(stored: Session) -> bool:
            added.clear()  # a retry applies the change again, to what another write stored
            if host and host not in stored.hosts and len(stored.hosts) < MAX_NOTED_HOSTS:
                stored.hosts.append(host)
            if cleared:
                done = stored.state.get(CLEARED)
                if isinstance(done, list) and cleared not in done:
                    done.append(cleared)
            if ours != jar_before:
                jar = dump_jar(merged_jar(stored.jars.get(vendor_id, []), jar_before, ours))
                if jar:
                    stored.jars[vendor_id] = jar
                else:
                    stored.jars.pop(vendor_id, None)
            for key in (set(session.state) | set(stored.state)) - {CLEARED}:
                mine, theirs = session.state.get(key), stored.state.get(key)
                if not isinstance(mine, list | None) or not isinstance(theirs, list | None):
                    # Not a list of vendor ids: this request's value, as a whole save would store.
                    if key in session.state:
                        stored.state[key] = mine
                    continue
                merged = [v for v in theirs or [] if v != vendor_id]
                if vendor_id in (mine or []):
                    merged.append(vendor_id)
                    if vendor_id not in (theirs or []):
                        added.add(key)
                stored.state[key] = merged
            return True

        return frozenset(added) if await self._amend(session.id, change) else frozenset()

    async def suspend(self, session_id: str, reason: str) -> bool:
        """Mark the stored session suspended (usage limits); False when it had ended, or was
        suspended already."""

        def change(stored: Session) -> bool:
            if stored.suspended:
                return False
            stored.suspended = reason
            return True

        return await self._amend(session_id, change)

    async def _amend(
        self, session_id: str, change: Callable[[Session], bool], now: float | None = None
    ) -> bool:
        """The one way a running session is written: `change` applied to it as stored now, and
        written back with its time of use only while it is still stored (a session that ended
        meanwhile, signed out or expired, stays ended) and still the value read (a compare-and-
        set: when another write came between, `change` is applied again to what that wrote).
        False when nothing was written."""
        for attempt in range(AMEND_ATTEMPTS):
            got = await self.store.get_versioned(session_id)
            if got is None:
                return False
            stored, version = got
            if not change(stored):
                return False
            at = time.time() if now is None else now
            stored.last_seen = at
            ttl = self._ttl(stored, at)
            if ttl <= 0:
                await self.store.delete(session_id)
                return False
            replaced = await self.store.replace(stored, ttl, version)
            if replaced != "changed":
                return replaced == "stored"
            await asyncio.sleep(random.uniform(0, AMEND_BACKOFF_S * (attempt + 1)))
        # Every attempt met another write: this one change is dropped rather than written over
        # theirs. The event only, for IT: no session, patron or vendor.
        structlog.get_logger(__name__).warning("session_update_contended", attempts=AMEND_ATTEMPTS)
        return False

    async def end(self, session_id: str) -> None:
        await self.store.delete(session_id)


def make_store(kind: str, **options: Any) -> SessionStore:
    """Build a store by kind; raises ValueError on an unknown kind."""
    if kind == "memory":
        return MemoryStore()
    if kind == "redis":
        from proxy.redis_store import RedisStore

        return RedisStore(**options)
    raise ValueError(f"unknown session store {kind!r}")


__all__ = ["MemoryStore", "Session", "SessionStore", "Sessions", "StoreUnavailable", "make_store"]
