"""Count usage per day, vendor and metric, and keep only those counts (DESIGN P5, P6).

The request path calls `Counters.count()` (plain, no await) and `Counters.unique()`; a `Recorder`
moves the in-memory deltas to a sink every `flush_interval_s`: SQLite (`StatsStore`), or Redis
(`RedisStatsStore`) when several proxies share a Redis session store. What reaches disk is only
`(day, vendor, metric, count)`: no patron, session, address, URL or time of day.

`unique()` counts a token (e.g. a session's random per-vendor token) once per vendor and hour. The
tokens live in one in-memory set per open hour, thrown away when the hour closes; only the count is
kept. Daily figures of a unique metric are therefore "distinct sessions per hour, summed over the
day" (session-hours), not distinct sessions per day — a per-day set would hold tokens far longer.

Reports over these counts (small-cell suppression, COUNTER-like layout) live in proxy.stats_report.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis
import structlog

from proxy.config import Config, doc, read_table
from proxy.errors import ConfigError, Problem

# --------------------------------------------------------------------------- vocabulary

LOGINS_SUCCESS = "logins_success"
LOGINS_FAILURE = "logins_failure"
LOGINS_OUTAGE = "logins_outage"  # directory unavailable at login
SESSIONS_STARTED = "sessions_started"  # first request of a session at a vendor
REQUESTS = "requests"
DOWNLOADS_PDF = "downloads_pdf"
DOWNLOADS_EPUB = "downloads_epub"
DOWNLOADS_OTHER = "downloads_other"
BYTES = "bytes"
SEARCHES = "searches"
DENIED_NOT_ELIGIBLE = "denied_not_eligible"
DENIED_NOT_CONFIGURED = "denied_not_configured"
SUSPENDED = "suspended"
BLOCKED_THIRD_PARTY = "blocked_third_party"
UNIQUE_SESSIONS = "unique_sessions"  # distinct session tokens per vendor and hour

# Report order. A closed vocabulary also keeps free text (a URL, a search) out of the metric column.
METRICS: tuple[str, ...] = (
    LOGINS_SUCCESS,
    LOGINS_FAILURE,
    LOGINS_OUTAGE,
    SESSIONS_STARTED,
    UNIQUE_SESSIONS,
    REQUESTS,
    SEARCHES,
    DOWNLOADS_PDF,
    DOWNLOADS_EPUB,
    DOWNLOADS_OTHER,
    BYTES,
    DENIED_NOT_ELIGIBLE,
    DENIED_NOT_CONFIGURED,
    SUSPENDED,
    BLOCKED_THIRD_PARTY,
)
UNIQUE_METRICS: tuple[str, ...] = (UNIQUE_SESSIONS,)
DOWNLOAD_METRICS: tuple[str, ...] = (DOWNLOADS_PDF, DOWNLOADS_EPUB, DOWNLOADS_OTHER)
LIBRARY_WIDE = ""  # vendor id of counts that belong to no vendor (logins)

# Vendor ids as config.check_vendor allows them, or "" — rejects hosts, URLs and other free text.
_VENDOR_ID = re.compile(r"(?:[a-z0-9][a-z0-9_-]{0,62})?")

# Full-text types. Other document types count as downloads_other; pages, scripts and images are
# navigation, not downloads.
_FULL_TEXT = {
    "application/pdf": DOWNLOADS_PDF,
    "application/epub+zip": DOWNLOADS_EPUB,
}
_OTHER_FULL_TEXT = (
    "application/msword",
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.ms-",
    "application/vnd.oasis.opendocument.",
    "application/rtf",
    "application/x-mobipocket-ebook",
    "application/vnd.amazon.ebook",
    "application/x-research-info-systems",
    "application/x-bibtex",
    "audio/",
    "video/",
)


def download_metric(content_type: str) -> str | None:
    """The download metric for a response's Content-Type, or None if it is not full text."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in _FULL_TEXT:
        return _FULL_TEXT[mime]
    if mime.startswith(_OTHER_FULL_TEXT):
        return DOWNLOADS_OTHER
    return None


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class StatsSection:
    """The raw `[stats]` table of proxy.toml, declared once with defaults and meanings."""

    path: str = doc(
        "SQLite file of daily counts, relative to the config file", "state/stats.sqlite3"
    )
    flush_interval_s: float = doc("seconds between writes of the in-memory counts", 60.0)
    min_cell: int = doc("counts from 1 to min_cell - 1 are suppressed in reports", 10)
    refresh_interval_s: float = doc(
        "seconds between refreshes of the /metrics health and session-age gauges", 15.0
    )


@dataclass(frozen=True)
class StatsSettings:
    path: Path
    flush_interval_s: float = 60.0
    min_cell: int = 10
    refresh_interval_s: float = 15.0


def _section(config: Config, problems: list[Problem]) -> StatsSection | None:
    # read_table is config.py's one generic reader: same messages ("unknown key (did you mean …)")
    # as every other section, instead of a second hand-written one here.
    return read_table(
        StatsSection, config.extra.get("stats", {}), str(config.path), "stats.", problems
    )


def check_stats(config: Config, problems: list[Problem]) -> None:
    """Append a Problem for every wrong key or value of `[stats]` (for load_config extra_checks)."""
    section = _section(config, problems)
    if section is None:
        return
    file = str(config.path)
    if section.flush_interval_s <= 0:
        problems.append(Problem(file, "stats.flush_interval_s", "must be positive"))
    if section.refresh_interval_s <= 0:
        problems.append(Problem(file, "stats.refresh_interval_s", "must be positive"))
    # min_cell 1 would publish every small count; that is not the small-cell promise (P6).
    if section.min_cell < 2:
        problems.append(Problem(file, "stats.min_cell", "must be at least 2"))
    if not section.path:
        problems.append(Problem(file, "stats.path", "must name a file"))


def stats_settings(config: Config) -> StatsSettings:
    """The `[stats]` settings, defaults filled in; ConfigError if check_stats finds a problem."""
    problems: list[Problem] = []
    check_stats(config, problems)
    section = _section(config, problems)
    if problems or section is None:  # fail closed: never report with a weaker min_cell
        raise ConfigError(problems)
    return StatsSettings(
        path=config.resolve(section.path),
        flush_interval_s=section.flush_interval_s,
        min_cell=section.min_cell,
        refresh_interval_s=section.refresh_interval_s,
    )


# --------------------------------------------------------------------------- counting

Key = tuple[str, str, str]  # (day as YYYY-MM-DD, vendor id, metric)


@dataclass(frozen=True, slots=True)
class Row:
    """One stored count: how often `metric` happened at `vendor` on `day` (UTC)."""

    day: dt.date
    vendor: str
    metric: str
    count: int


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Counters:
    """In-memory deltas per (UTC day, vendor, metric) since the last flush, and this hour's tokens."""

    def __init__(self, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._clock = clock
        self._deltas: dict[Key, int] = {}
        self._hour: dt.datetime | None = None
        self._tokens: dict[tuple[str, str], set[str]] = {}

    def count(self, vendor_id: str, metric: str, n: int = 1) -> None:
        """Add n to today's count of `metric` at `vendor_id` ("" = library-wide)."""
        _check_key(vendor_id, metric, METRICS)
        if n < 0:
            raise ValueError("counts only go up")
        if n:
            self._add(self._clock().date().isoformat(), vendor_id, metric, n)

    def unique(self, vendor_id: str, metric: str, token: str) -> None:
        """Count `token` once per hour at `vendor_id`; the token itself is never stored."""
        _check_key(vendor_id, metric, UNIQUE_METRICS)
        now = self._clock()
        self.roll(now)
        seen = self._tokens.setdefault((vendor_id, metric), set())
        if token not in seen:
            seen.add(token)
            self._add(now.date().isoformat(), vendor_id, metric, 1)

    def roll(self, now: dt.datetime | None = None) -> None:
        """Forget the tokens of an hour that has closed (the Recorder calls this even when idle)."""
        hour = (now or self._clock()).replace(minute=0, second=0, microsecond=0)
        if hour != self._hour:
            self._tokens = {}
            self._hour = hour

    def open_tokens(self) -> int:
        """How many tokens are held right now (for tests and /metrics; never the tokens)."""
        return sum(len(s) for s in self._tokens.values())

    def _add(self, day: str, vendor_id: str, metric: str, n: int) -> None:
        key = (day, vendor_id, metric)
        self._deltas[key] = self._deltas.get(key, 0) + n

    def take(self) -> dict[Key, int]:
        """Hand over the deltas and start afresh; give them back with restore() if a write fails."""
        deltas, self._deltas = self._deltas, {}
        return deltas

    def restore(self, deltas: Mapping[Key, int]) -> None:
        for (day, vendor_id, metric), n in deltas.items():
            self._add(day, vendor_id, metric, n)

    def pending(self) -> dict[Key, int]:
        return dict(self._deltas)


def _check_key(vendor_id: str, metric: str, allowed: tuple[str, ...]) -> None:
    if metric not in allowed:
        raise ValueError(f"unknown statistics metric {metric!r}")
    if not _VENDOR_ID.fullmatch(vendor_id):
        raise ValueError("vendor id must be a configured vendor id or ''")


# --------------------------------------------------------------------------- sinks


class StatsSink(Protocol):
    """Where counts are kept: add deltas atomically (all or nothing), read rows back."""

    async def add(self, deltas: Mapping[Key, int]) -> None: ...

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

    async def add(self, deltas: Mapping[Key, int]) -> None:
        if deltas:
            await asyncio.to_thread(sqlite_add, self.path, dict(deltas))

    async def rows(
        self, date_from: dt.date | None = None, date_to: dt.date | None = None
    ) -> list[Row]:
        return await asyncio.to_thread(sqlite_rows, self.path, date_from, date_to)

    async def close(self) -> None:
        """Nothing to close: each call opens and closes its own connection."""


REDIS_PREFIX = "weston:stats:"


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
    """Daily counts in Redis: hash `weston:stats:<day>`, field `<vendor>|<metric>`, no expiry."""

    def __init__(self, url: str, *, password: str | None = None) -> None:
        self._redis = aioredis.Redis.from_url(url, password=password, socket_timeout=2.0)

    async def add(self, deltas: Mapping[Key, int]) -> None:
        if not deltas:
            return
        # MULTI/EXEC: the whole batch is applied or, if the connection drops first, none of it.
        async with self._redis.pipeline(transaction=True) as pipe:
            for (day, vendor, metric), n in deltas.items():
                pipe.hincrby(f"{REDIS_PREFIX}{day}", f"{vendor}|{metric}", n)
            await pipe.execute()

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


def redis_password(config: Config) -> str | None:
    f = config.session.redis_password_file
    return config.resolve(f).read_text(encoding="utf-8").strip() if f else None


def make_sink(config: Config, settings: StatsSettings) -> StatsSink:
    """Redis when sessions are shared through Redis (several proxies), else the SQLite file."""
    if config.session.store == "redis":
        return RedisStatsStore(config.session.redis_url, password=redis_password(config))
    return StatsStore(settings.path)


# --------------------------------------------------------------------------- recorder


class Recorder:
    """Owns the Counters and a sink; flushes every `flush_interval_s` and once more at close."""

    def __init__(
        self,
        sink: StatsSink,
        *,
        flush_interval_s: float = 60.0,
        counters: Counters | None = None,
    ) -> None:
        self.counters = counters or Counters()
        self.sink = sink
        self.flush_interval_s = flush_interval_s
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def flush(self) -> None:
        """Move the deltas to the sink; on failure they go back into memory for the next try."""
        async with self._lock:
            self.counters.roll()
            deltas = self.counters.take()
            try:
                await self.sink.add(deltas)
            except BaseException:
                self.counters.restore(deltas)
                raise

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stats-flush")

    async def _run(self) -> None:
        log = structlog.get_logger("proxy.stats")
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except Exception as exc:
                # Kept in memory and retried next time; the error type says enough (no values).
                log.warning("stats_flush_failed", error=type(exc).__name__)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        finally:
            await self.sink.close()


# --------------------------------------------------------------------------- records inventory


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
