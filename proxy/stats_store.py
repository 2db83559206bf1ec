"""Keep the daily counts: a SQLite file, or one Redis hash per day when proxies share Redis.

What is stored is only `(day, vendor, metric, count)`; every sink adds a batch of deltas all or
nothing and reads rows back for reports. The records inventory reads the SQLite file's size and
span, never its contents.

Distinct sessions per hour arrive as the tokens a process saw for the first time (`Seen`), and
the sink decides how many are new. The SQLite file has one writer, so each is new. Proxies
sharing Redis may each have seen one session: there each hour's tokens go into a Redis set, as
keyed digests bound to that hour and named by a keyed digest of hour, vendor and metric (the key
derives from the server secret, so every proxy agrees), and only what the set did not hold yet
is counted. The set expires `SEEN_TTL_S` after its last write.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import sqlite3
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import redis
import redis.asyncio as aioredis

if TYPE_CHECKING:
    from proxy.stats import StatsSettings


Key = tuple[str, str, str]  # (day as YYYY-MM-DD, vendor id, metric)
HourKey = tuple[str, str, str]  # (UTC hour as YYYY-MM-DDTHH, vendor id, metric)
# Per hour, vendor and unique metric: the tokens one process saw for the first time that hour.
Seen = Mapping[HourKey, Collection[str]]


def seen_counts(seen: Seen) -> dict[Key, int]:
    """The daily counts one process's first sightings make on their own."""
    counts: dict[Key, int] = {}
    for (hour, vendor, metric), tokens in seen.items():
        key = (hour[:10], vendor, metric)
        counts[key] = counts.get(key, 0) + len(tokens)
    return counts


@dataclass(frozen=True, slots=True)
class Row:
    """One stored count: how often `metric` happened at `vendor` on `day` (UTC)."""

    day: dt.date
    vendor: str
    metric: str
    count: int


class StatsSink(Protocol):
    """Where counts are kept: add deltas and first sightings atomically (all or nothing), read
    rows back."""

    async def add(
        self, deltas: Mapping[Key, int], seen: Seen | None = None, *, batch: str | None = None
    ) -> None: ...

    async def rows(
        self, date_from: dt.date | None = None, date_to: dt.date | None = None
    ) -> list[Row]: ...

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS counts (
    day TEXT NOT NULL, vendor TEXT NOT NULL, metric TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (day, vendor, metric)
) WITHOUT ROWID
"""
_UPSERT = (
    "INSERT INTO counts (day, vendor, metric, count) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (day, vendor, metric) DO UPDATE SET count = count + excluded.count"
)


def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=10)
        conn.execute(_SCHEMA)
        return conn
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)


def sqlite_add(path: Path, deltas: Mapping[Key, int]) -> None:
    """Upsert-add the deltas in one transaction: all of them land, or none."""
    conn = _connect(path, create=True)
    try:
        with conn:  # commits, or rolls back on any error
            conn.executemany(_UPSERT, [(d, v, m, n) for (d, v, m), n in deltas.items()])
    finally:
        conn.close()


def sqlite_rows(path: Path, date_from: dt.date | None, date_to: dt.date | None) -> list[Row]:
    """The stored counts between the two days (inclusive); none if the file does not exist."""
    if not path.exists():
        return []
    lo = date_from.isoformat() if date_from else "0000-00-00"
    hi = date_to.isoformat() if date_to else "9999-99-99"
    conn = _connect(path, create=False)
    try:
        cur = conn.execute(
            "SELECT day, vendor, metric, count FROM counts WHERE day BETWEEN ? AND ?", (lo, hi)
        )
        return [Row(dt.date.fromisoformat(d), v, m, int(n)) for d, v, m, n in cur]
    finally:
        conn.close()


class StatsStore:
    """Daily counts in a SQLite file; every call runs in a worker thread so the loop never blocks."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def add(
        self, deltas: Mapping[Key, int], seen: Seen | None = None, *, batch: str | None = None
    ) -> None:
        # One process writes this file, one committed transaction a call: a call that fails has
        # written nothing, so a retry (`batch`) cannot count twice. Each of its first sightings
        # is a distinct session.
        total = dict(deltas)
        for key, n in seen_counts(seen or {}).items():
            total[key] = total.get(key, 0) + n
        if total:
            await asyncio.to_thread(sqlite_add, self.path, total)

    async def rows(
        self, date_from: dt.date | None = None, date_to: dt.date | None = None
    ) -> list[Row]:
        return await asyncio.to_thread(sqlite_rows, self.path, date_from, date_to)

    async def close(self) -> None:
        """Nothing to close: each call opens and closes its own connection."""


REDIS_PREFIX = "weston:stats:"
# Outside REDIS_PREFIX, so reading the daily hashes never meets the hourly sets.
REDIS_SEEN_PREFIX = "weston:stats-seen:"
# A stored batch's id (random, nothing else), kept long enough that a retry of it is refused.
REDIS_BATCH_PREFIX = "weston:stats-batch:"
BATCH_TTL_S = 24 * 3600
# Long enough for every proxy to flush an hour's tokens after it closes (and retry a failed
# flush); a set expires this long after its last write.
SEEN_TTL_S = 2 * 3600
_SEEN_BATCH = 1000  # tokens per script call (Lua's unpack has a stack limit)
# KEYS: the hour's set, the day's hash. ARGV: hash field, TTL (s), tokens. Counts what is new.
# The deltas of one batch, applied only if the batch's id is new (SET NX): ARGV = TTL, then
# (hash, field, delta) triples.
_ADD_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, #ARGV, 3 do redis.call('HINCRBY', ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
return 1
"""

_COUNT_NEW = """
local added = redis.call('SADD', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
if added > 0 then redis.call('HINCRBY', KEYS[2], ARGV[1], added) end
return added
"""


def _redis_rows(items: Iterable[tuple[str, Mapping[Any, Any]]]) -> list[Row]:
    out = []
    for key, fields in items:
        day = dt.date.fromisoformat(key.removeprefix(REDIS_PREFIX))
        for field, value in fields.items():
            f = field.decode() if isinstance(field, bytes) else str(field)
            vendor, _, metric = f.rpartition("|")
            out.append(Row(day, vendor, metric, int(value)))
    return out


def _in_range(key: str, date_from: dt.date | None, date_to: dt.date | None) -> bool:
    try:
        day = dt.date.fromisoformat(key.removeprefix(REDIS_PREFIX))
    except ValueError:
        return False
    return (date_from is None or day >= date_from) and (date_to is None or day <= date_to)


class RedisStatsStore:
    """Daily counts in Redis: hash `weston:stats:<day>`, field `<vendor>|<metric>`, no expiry.

    `seen_key` (from the server secret, the same in every proxy) names and fills the hourly sets
    of distinct sessions; without it this store only reads, and refuses first sightings.
    """

    def __init__(
        self, url: str, *, password: str | None = None, seen_key: bytes | None = None
    ) -> None:
        self._redis = aioredis.Redis.from_url(url, password=password, socket_timeout=2.0)
        self._seen_key = seen_key

    async def add(
        self, deltas: Mapping[Key, int], seen: Seen | None = None, *, batch: str | None = None
    ) -> None:
        """Add a batch. With `batch` (an id the caller keeps for the same deltas until they
        are stored) the deltas count once however often the batch is sent: a transaction can
        reach Redis and be applied after the client gave up on it (a stall, a failover), and
        the retry must not add them again. First sightings count once anyway (a set)."""
        seen = {k: tokens for k, tokens in (seen or {}).items() if tokens}
        if not deltas and not seen:
            return
        if seen and self._seen_key is None:
            raise ValueError("distinct sessions need the seen_key every proxy shares")
        # MULTI/EXEC: the whole batch is applied or, if the connection drops first, none of it.
        async with self._redis.pipeline(transaction=True) as pipe:
            if batch is not None and deltas:
                args: list[Any] = [BATCH_TTL_S]
                for (day, vendor, metric), n in deltas.items():
                    args += [f"{REDIS_PREFIX}{day}", f"{vendor}|{metric}", n]
                pipe.eval(_ADD_ONCE, 1, REDIS_BATCH_PREFIX + batch, *args)
            for (day, vendor, metric), n in deltas.items() if batch is None else ():
                pipe.hincrby(f"{REDIS_PREFIX}{day}", f"{vendor}|{metric}", n)
            for (hour, vendor, metric), tokens in seen.items():
                name = REDIS_SEEN_PREFIX + self._digest(f"{hour}|{vendor}|{metric}")
                members = [self._digest(f"{hour}|{t}") for t in tokens]
                for i in range(0, len(members), _SEEN_BATCH):
                    pipe.eval(
                        _COUNT_NEW, 2, name, f"{REDIS_PREFIX}{hour[:10]}", f"{vendor}|{metric}",
                        SEEN_TTL_S, *members[i : i + _SEEN_BATCH],
                    )  # fmt: skip
            await pipe.execute()

    def _digest(self, text: str) -> str:
        assert self._seen_key is not None
        return hashlib.blake2b(text.encode(), key=self._seen_key, digest_size=16).hexdigest()

    async def rows(
        self, date_from: dt.date | None = None, date_to: dt.date | None = None
    ) -> list[Row]:
        items = []
        async for raw in self._redis.scan_iter(match=f"{REDIS_PREFIX}*"):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            if _in_range(key, date_from, date_to):
                items.append((key, await self._redis.hgetall(key)))
        return _redis_rows(items)

    async def close(self) -> None:
        await self._redis.aclose()


def redis_rows_sync(
    url: str, date_from: dt.date | None, date_to: dt.date | None, *, password: str | None = None
) -> list[Row]:
    """Read the Redis counts with a plain client (for the CLI, which has no event loop)."""
    client = redis.Redis.from_url(url, password=password, socket_timeout=2.0)
    try:
        items = []
        for raw in client.scan_iter(match=f"{REDIS_PREFIX}*"):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            if _in_range(key, date_from, date_to):
                items.append((key, client.hgetall(key)))
        return _redis_rows(items)
    finally:
        client.close()


def stats_inventory(settings: StatsSettings) -> dict[str, Any]:
    """What the statistics file holds, for the records inventory: size and span, never contents."""
    path = settings.path
    info: dict[str, Any] = {
        "path": str(path),
        "exists": path.exists(),
        "size_bytes": 0,
        "rows": 0,
        "first_day": None,
        "last_day": None,
        "holds": "aggregate counts per day, vendor and metric; no patron, session or URL",
    }
    if not path.exists():
        return info
    info["size_bytes"] = sum(
        p.stat().st_size for p in (path, path.with_name(path.name + "-journal")) if p.exists()
    )
    try:
        conn = _connect(path, create=False)
        try:
            n, first, last = conn.execute(
                "SELECT count(*), min(day), max(day) FROM counts"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        info["error"] = f"unreadable: {exc}"
        return info
    info.update(rows=int(n), first_day=first, last_day=last)
    return info
