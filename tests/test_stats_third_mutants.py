"""From a further mutation sweep (2 December 2026) of stats: each test kills one mutant that the
rest of the suite let through (6 of 47 survived; each test here failed with its mutant and passes
without). Its docstring names the mutant and the behaviour it proves."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import pytest

from proxy.stats import (
    REQUESTS,
    UNIQUE_SESSIONS,
    Counters,
    Recorder,
)
from proxy.stats_report import ALL_VENDORS, TOTAL, Report, build_report
from proxy.stats_store import REDIS_SEEN_PREFIX, RedisStatsStore, Row, StatsStore
from proxy.stats_suppression import protect_line
from tests.fixtures_redis import RedisServer
from tests.test_reports_mutants import JUNE, MIN, _rows


def _month_report(rows: list[Row]) -> Report:
    return build_report(
        rows, period="month", date_from=None, date_to=None, min_cell=MIN, today=dt.date(2026, 8, 1)
    )


def test_a_count_of_exactly_min_cell_is_published() -> None:
    """kills: proxy/stats_suppression.py:protect_line — `0 < value < min_cell` →
    `0 < value <= min_cell`.

    Small means 1 to min_cell - 1 (the report's own note says so): a database used exactly
    min_cell times in a period is published, not hidden with a complement beside it."""
    assert protect_line([MIN, 40, 50 + MIN], MIN) == set()
    assert protect_line([MIN - 1, 40, 49], MIN) == {0, 1}


def test_a_cell_made_by_exactly_min_cell_sessions_is_published() -> None:
    """kills: proxy/stats_report.py:_publish — `n < min_cell` → `n <= min_cell` (people).

    Ten sessions (min_cell 10) made 500 requests at one database in June: enough people, so the
    month's count is published, as is its vendor total; only fewer than min_cell hide it."""
    report = _month_report(_rows(JUNE, alpha=(500, MIN), beta=(800, 60)))
    assert report.cell(REQUESTS, "alpha", "2026-06").value == 500
    assert report.cell(REQUESTS, "alpha", TOTAL).value == 500


def test_an_all_vendors_total_made_by_exactly_min_cell_sessions_is_published() -> None:
    """kills: proxy/stats_report.py:_publish — `behind_total < min_cell` → `<= min_cell`.

    Two databases with 4 and 6 sessions: each vendor's cell is hidden (too few people), but the
    month's all-vendors total is ten people's requests, so it is published (two hidden cells in
    the column pin neither)."""
    report = _month_report(_rows(JUNE, alpha=(300, 4), beta=(300, MIN - 4)))
    assert report.cell(REQUESTS, "alpha", "2026-06").suppressed
    assert report.cell(REQUESTS, "beta", "2026-06").suppressed
    assert report.cell(REQUESTS, ALL_VENDORS, "2026-06").value == 600


async def test_sqlite_adds_first_sightings_to_the_same_days_plain_counts(tmp_path: Path) -> None:
    """kills: proxy/stats_store.py:StatsStore.add — `total.get(key, 0) + n` → `n`.

    A batch can hold both plain counts of distinct sessions for a day (first sightings of an
    hour the sink missed, turned into counts) and that day's new first sightings: the stored
    figure is their sum, not the sightings alone."""
    store = StatsStore(tmp_path / "stats.sqlite3")
    key = ("2031-03-04", "alpha", UNIQUE_SESSIONS)
    await store.add({key: 2}, {("2031-03-04T10", "alpha", UNIQUE_SESSIONS): {"t-a", "t-b", "t-c"}})
    assert [(r.vendor, r.metric, r.count) for r in await store.rows()] == [
        ("alpha", UNIQUE_SESSIONS, 5)
    ]


@pytest.mark.redis
async def test_a_batch_that_waited_hours_for_its_sink_reaches_redis_as_counts_not_tokens(
    tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    """kills: proxy/stats.py:Recorder.flush — `deltas, fresh = self.counters.aged(deltas, fresh)`
    → `pass` (a batch the sink did not confirm).

    A session seen at 10:30 whose flush failed (store down) must not be held as a token for as
    long as the outage lasts: by 13:30 the waiting batch holds only its count, so when the store
    is back no digest of that session is written to Redis three hours after its hour closed."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    now = [dt.datetime(2031, 3, 4, 10, 30, tzinfo=dt.UTC)]
    counters = Counters(clock=lambda: now[0])
    recorder = Recorder(StatsStore(blocker / "stats.sqlite3"), counters=counters)
    vendor = "statsthird-" + secrets.token_hex(6)
    counters.unique(vendor, UNIQUE_SESSIONS, "tok-" + secrets.token_hex(8))
    with pytest.raises(OSError):
        await recorder.flush()  # the sink cannot write: the batch waits
    now[0] += dt.timedelta(hours=3)
    recorder.sink = RedisStatsStore(redis_url, seen_key=b"statsthird seen key, synthetic, 32")
    raw = redis_server.client()
    try:
        await recorder.flush()
        assert list(raw.scan_iter(match=f"{REDIS_SEEN_PREFIX}*")) == []
        rows = [r for r in await recorder.sink.rows() if r.vendor == vendor]
    finally:
        await recorder.sink.close()
        raw.close()
    assert [(r.metric, r.count) for r in rows] == [(UNIQUE_SESSIONS, 1)]


# Checked and found fine (no test kept):
# - proxy/stats_store.py:RedisStatsStore.add — `... .items() if tokens}` → `... .items()}`: no
#   caller sends an hour with no token (Counters makes an hour's set only to add a token to it),
#   and an empty set makes no script call anyway (the loop over its members does not run).
