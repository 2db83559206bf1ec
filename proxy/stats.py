"""Count usage per day, vendor and metric in memory; a Recorder flushes it to a sink (P5, P6).

The request path calls `Counters.count()` (plain, no await) and `Counters.unique()`; a `Recorder`
moves the in-memory deltas to a sink every `flush_interval_s`: SQLite (`StatsStore`), or Redis
(`RedisStatsStore`) when several proxies share a Redis session store; the sinks are in
proxy.stats_store and are re-exported here. What reaches disk is only
`(day, vendor, metric, count)`: no patron, session, address, URL or time of day.

`unique()` counts a token (a keyed digest of the session id, the same in every proxy) once per
vendor and hour. The tokens live in one in-memory set per open hour, thrown away when the hour
closes; those seen for the first time since the last flush go to the sink, which counts the ones
no other proxy sharing it has seen that hour (proxy.stats_store). Only the count is kept. Daily
figures of a unique metric are therefore "distinct sessions per hour, summed over the day"
(session-hours), not distinct sessions per day — a per-day set would hold tokens far longer.

Reports over these counts (small-cell suppression, COUNTER-like layout) live in proxy.stats_report.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import re
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from proxy import tasks
from proxy.config import Config, doc, read_table
from proxy.errors import ConfigError, Problem
from proxy.secrets_ import redis_password
from proxy.stats_store import (
    REDIS_PREFIX,
    REDIS_SEEN_PREFIX,
    HourKey,
    Key,
    RedisStatsStore,
    Row,
    StatsSink,
    StatsStore,
    redis_rows_sync,
    seen_counts,
    sqlite_add,
    sqlite_rows,
    stats_inventory,
)

__all__ = [
    "BLOCKED_THIRD_PARTY",
    "BYTES",
    "DENIED_NOT_CONFIGURED",
    "DENIED_NOT_ELIGIBLE",
    "DOWNLOADS_EPUB",
    "DOWNLOADS_OTHER",
    "DOWNLOADS_PDF",
    "DOWNLOAD_METRICS",
    "LIBRARY_WIDE",
    "LOGINS_FAILURE",
    "LOGINS_OUTAGE",
    "LOGINS_SUCCESS",
    "METRICS",
    "REDIS_PREFIX",
    "REDIS_SEEN_PREFIX",
    "REQUESTS",
    "SEARCHES",
    "SESSIONS_STARTED",
    "SUSPENDED",
    "UNIQUE_METRICS",
    "UNIQUE_SESSIONS",
    "Counters",
    "Key",
    "Recorder",
    "RedisStatsStore",
    "Row",
    "StatsSection",
    "StatsSettings",
    "StatsSink",
    "StatsStore",
    "check_stats",
    "download_metric",
    "make_sink",
    "redis_password",
    "redis_rows_sync",
    "sqlite_add",
    "sqlite_rows",
    "stats_inventory",
    "stats_section",
    "stats_settings",
    "utcnow",
]

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
# What sessions do at a vendor. One patron alone can make any of these large (a hundred
# requests, a 50 MB download), so a report shows them for a vendor and period only where at least
# `min_cell` sessions started there (SESSIONS_STARTED): small-cell suppression counts people,
# not events (proxy.stats_report).
SESSION_ACTIVITY: frozenset[str] = frozenset(METRICS) - {
    # Library-wide sign-ins, and refusals before any session used the vendor.
    LOGINS_SUCCESS,
    LOGINS_FAILURE,
    LOGINS_OUTAGE,
    DENIED_NOT_ELIGIBLE,
    DENIED_NOT_CONFIGURED,
}
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


# Types a page's player or script fetches in pieces as it plays (HLS and DASH segments, each
# seek in a film or an audiobook, a DRM licence): a download only when the browser itself
# fetched it to keep or show (`saved_by_browser`).
STREAMED = ("audio/", "video/", "application/octet-stream")


def saved_by_browser(fetch_mode: str | None, disposition: str | None) -> bool:
    """Whether the browser fetched a response to keep or show it itself (a link followed, a form
    posted: `Sec-Fetch-Mode: navigate`; `Content-Disposition: attachment`; or a client that
    sends no fetch metadata at all, as download tools do) rather than for a page's media element
    or script (`no-cors`, `cors`, `same-origin`), which plays or decrypts it."""
    return (
        fetch_mode is None
        or fetch_mode == "navigate"
        or (disposition is not None and disposition.lstrip().lower().startswith("attachment"))
    )


def download_metric(content_type: str, saved: bool = True) -> str | None:
    """The download metric for a response's Content-Type, or None if it is not full text.
    Audio and video count only when `saved` (`saved_by_browser`): a film streamed in segments
    or an audiobook sought through is not a download per piece."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in _FULL_TEXT:
        return _FULL_TEXT[mime]
    if mime.startswith(_OTHER_FULL_TEXT):
        if not saved and mime.startswith(STREAMED):
            return None
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


def stats_section(config: Config) -> StatsSection:
    """The `[stats]` table as written, defaults for anything unset or wrong (check_stats reports
    those): what `proxy.reload` compares to tell a restart-only change."""
    return _section(config, []) or StatsSection()


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


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Counters:
    """In-memory deltas per (UTC day, vendor, metric) since the last flush, this hour's tokens, and
    the tokens seen for the first time since the last flush."""

    def __init__(self, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._clock = clock
        self._deltas: dict[Key, int] = {}
        self._hour: dt.datetime | None = None
        self._tokens: dict[tuple[str, str], set[str]] = {}
        self._fresh: dict[HourKey, set[str]] = {}

    def count(self, vendor_id: str, metric: str, n: int = 1) -> None:
        """Add n to today's count of `metric` at `vendor_id` ("" = library-wide)."""
        self.count_many(vendor_id, ((metric, n),))

    def count_many(self, vendor_id: str, counts: Iterable[tuple[str, int]]) -> None:
        """`count` for several metrics of one vendor, reading the clock once (per request)."""
        day = ""
        for metric, n in counts:
            _check_key(vendor_id, metric, METRICS)
            if n < 0:
                raise ValueError("counts only go up")
            if n:
                day = day or self._clock().date().isoformat()
                self._add(day, vendor_id, metric, n)

    def unique(self, vendor_id: str, metric: str, token: str) -> None:
        """Count `token` once per hour at `vendor_id`; the sink gets it to tell whether another
        proxy saw it already, and keeps at most a keyed digest of it that expires."""
        _check_key(vendor_id, metric, UNIQUE_METRICS)
        now = self._clock()
        self.roll(now)
        seen = self._tokens.setdefault((vendor_id, metric), set())
        if token not in seen:
            seen.add(token)
            self._fresh.setdefault((_hour_label(now), vendor_id, metric), set()).add(token)

    def roll(self, now: dt.datetime | None = None) -> None:
        """Forget the tokens of an hour that has closed (the Recorder calls this even when idle).

        First sightings wait for a flush until the hour after theirs has closed too; older ones
        (the sink failed that long) become plain counts, so no token outlives its sink's sets."""
        hour = (now or self._clock()).replace(minute=0, second=0, microsecond=0)
        if hour != self._hour:
            self._tokens = {}
            self._hour = hour
            self._deltas, self._fresh = self.aged(self._deltas, self._fresh, now)

    def open_tokens(self) -> int:
        """How many tokens are held right now (for tests and /metrics; never the tokens)."""
        return sum(len(s) for s in self._tokens.values())

    def _add(self, day: str, vendor_id: str, metric: str, n: int) -> None:
        key = (day, vendor_id, metric)
        self._deltas[key] = self._deltas.get(key, 0) + n

    def take(self) -> tuple[dict[Key, int], dict[HourKey, set[str]]]:
        """Hand over the deltas and first sightings and start afresh (a batch the sink does not
        confirm waits in the Recorder, see `aged`)."""
        deltas, self._deltas = self._deltas, {}
        fresh, self._fresh = self._fresh, {}
        return deltas, fresh

    def aged(
        self,
        deltas: Mapping[Key, int],
        fresh: Mapping[HourKey, Collection[str]],
        now: dt.datetime | None = None,
    ) -> tuple[dict[Key, int], dict[HourKey, set[str]]]:
        """Deltas and first sightings (the counters' own, or a batch waiting for its sink) as
        they may be kept now: first sightings of an hour before the last closed one become
        plain counts, so no token outlives its sink's sets however long the sink is down."""
        hour = (now or self._clock()).replace(minute=0, second=0, microsecond=0)
        oldest = _hour_label(hour - dt.timedelta(hours=1))
        out = dict(deltas)
        kept: dict[HourKey, set[str]] = {}
        for key, tokens in fresh.items():
            if key[0] < oldest:
                day_key = (key[0][:10], key[1], key[2])
                out[day_key] = out.get(day_key, 0) + len(tokens)
            else:
                kept[key] = set(tokens)
        return out, kept

    def pending(self) -> dict[Key, int]:
        """What this process would add on its own (first sightings counted as distinct)."""
        out = dict(self._deltas)
        for key, n in seen_counts(self._fresh).items():
            out[key] = out.get(key, 0) + n
        return out


def _hour_label(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H")


def _check_key(vendor_id: str, metric: str, allowed: tuple[str, ...]) -> None:
    if metric not in allowed:
        raise ValueError(f"unknown statistics metric {metric!r}")
    if not _vendor_id_ok(vendor_id):
        raise ValueError("vendor id must be a configured vendor id or ''")


@functools.lru_cache(maxsize=1024)
def _vendor_id_ok(vendor_id: str) -> bool:
    """Cached: the same few configured ids are checked several times per proxied request."""
    return _VENDOR_ID.fullmatch(vendor_id) is not None


def make_sink(config: Config, settings: StatsSettings, *, secret: bytes) -> StatsSink:
    """Redis when sessions are shared through Redis (several proxies), else the SQLite file."""
    if config.session.store == "redis":
        return RedisStatsStore(
            config.session.redis_url,
            password=redis_password(config),
            seen_key=hashlib.sha256(b"stats-seen-v1\x00" + secret).digest(),
        )
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
        # A batch the sink did not confirm, kept as it was, with its id, for the next flush:
        # it may have been stored all the same (`RedisStatsStore.add`), so it is sent again as
        # the same batch, never merged into newer counts.
        self._unconfirmed: tuple[dict[Key, int], dict[HourKey, set[str]], str] | None = None

    def pending(self) -> dict[Key, int]:
        """What this process would add on its own: the counters, and a batch the sink has not
        confirmed (first sightings counted as distinct)."""
        out = self.counters.pending()
        if self._unconfirmed is not None:
            deltas, fresh, _ = self._unconfirmed
            for key, n in list(deltas.items()) + list(seen_counts(fresh).items()):
                out[key] = out.get(key, 0) + n
        return out

    async def flush(self) -> None:
        """Move the deltas to the sink; on failure they wait, as one batch, for the next try."""
        async with self._lock:
            # First, whatever the sink does: hours that have closed turn their session tokens
            # into plain counts even while the store is down (they are kept two hours at most).
            self.counters.roll()
            if self._unconfirmed is not None:
                deltas, fresh, batch = self._unconfirmed
                deltas, fresh = self.counters.aged(deltas, fresh)
                self._unconfirmed = (deltas, fresh, batch)
                # If the batch was stored after all, its id refuses the deltas (the tokens made
                # counts here included, counted then by their sets) and the sets take no token
                # twice; if not, all of it is stored now.
                await self.sink.add(deltas, fresh, batch=batch)
                self._unconfirmed = None
            deltas, fresh = self.counters.take()
            batch = secrets.token_hex(12)
            try:
                await self.sink.add(deltas, fresh, batch=batch)
            except BaseException:
                self._unconfirmed = (deltas, fresh, batch)
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
            await tasks.stop(self._task)
            self._task = None
        try:
            await self.flush()
        finally:
            await self.sink.close()
