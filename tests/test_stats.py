"""Usage statistics: counting, flushing, unique tokens, small-cell suppression, reports, config."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config import Config, SessionConfig, load_config
from proxy.errors import ConfigError
from proxy.forward import Observation
from proxy.sessions import storage_key
from proxy.stats import (
    BYTES,
    DENIED_NOT_CONFIGURED,
    DENIED_NOT_ELIGIBLE,
    DOWNLOADS_EPUB,
    DOWNLOADS_OTHER,
    DOWNLOADS_PDF,
    LOGINS_FAILURE,
    LOGINS_OUTAGE,
    LOGINS_SUCCESS,
    REQUESTS,
    SEARCHES,
    SESSIONS_STARTED,
    SUSPENDED,
    UNIQUE_SESSIONS,
    Counters,
    Recorder,
    RedisStatsStore,
    Row,
    StatsSettings,
    StatsStore,
    check_stats,
    download_metric,
    make_sink,
    sqlite_add,
    sqlite_rows,
    stats_inventory,
    stats_settings,
)
from proxy.stats_report import (
    ALL_VENDORS,
    TOTAL,
    build_report,
    protect,
    render_counter,
    render_csv,
    render_json,
    render_text,
    run_stats,
)
from proxy.stats_store import REDIS_SEEN_PREFIX, SEEN_TTL_S
from proxy.usage_stats import UsageCounter
from tests.canary import ALL, CANARY, WREN, leaks
from tests.fixtures_redis import RedisServer, redis_server, redis_url  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
DAY = dt.datetime(2026, 6, 3, 10, 15, tzinfo=dt.UTC)
SECRET = b"server-secret-of-the-test-proxies"
SEEN_KEY = b"k" * 32


class Clock:
    """A settable UTC clock, so hours and days can pass inside a test."""

    def __init__(self, now: dt.datetime = DAY) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def as_dict(rows: list[Row]) -> dict[tuple[str, str, str], int]:
    return {(r.day.isoformat(), r.vendor, r.metric): r.count for r in rows}


def all_bytes(folder: Path) -> bytes:
    """Every byte under `folder` (the SQLite file and any journal next to it)."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


# --------------------------------------------------------------------------- counting and flushing


async def test_counts_match_a_known_sequence_of_calls(tmp_path: Path) -> None:
    clock = Clock()
    store = StatsStore(tmp_path / "stats.sqlite3")
    rec = Recorder(store, counters=Counters(clock))
    rec.counters.count("ebsco", REQUESTS)
    rec.counters.count("ebsco", REQUESTS, 4)
    rec.counters.count("gale", SEARCHES)
    rec.counters.count("", LOGINS_SUCCESS, 2)
    clock.now += dt.timedelta(days=1)
    rec.counters.count("ebsco", REQUESTS)
    rec.counters.count("ebsco", BYTES, 0)  # zero adds nothing, writes nothing
    await rec.close()
    assert as_dict(await store.rows()) == {
        ("2026-06-03", "ebsco", REQUESTS): 5,
        ("2026-06-03", "gale", SEARCHES): 1,
        ("2026-06-03", "", LOGINS_SUCCESS): 2,
        ("2026-06-04", "ebsco", REQUESTS): 1,
    }


async def test_counts_survive_a_restart_and_are_added_to(tmp_path: Path) -> None:
    path = tmp_path / "state" / "stats.sqlite3"
    first = Recorder(StatsStore(path), counters=Counters(Clock()))
    first.counters.count("ebsco", REQUESTS, 7)
    await first.close()
    second = Recorder(StatsStore(path), counters=Counters(Clock()))
    second.counters.count("ebsco", REQUESTS, 3)
    await second.flush()
    await second.flush()  # nothing pending: adds nothing
    await second.close()
    assert as_dict(sqlite_rows(path, None, None)) == {("2026-06-03", "ebsco", REQUESTS): 10}


async def test_failed_flush_keeps_the_deltas_for_the_next_try(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    path = blocker / "stats.sqlite3"
    rec = Recorder(StatsStore(path), counters=Counters(Clock()))
    rec.counters.count("ebsco", REQUESTS, 2)
    with pytest.raises(OSError):
        await rec.flush()
    rec.counters.count("ebsco", REQUESTS, 1)
    assert rec.pending() == {("2026-06-03", "ebsco", REQUESTS): 3}
    blocker.unlink()
    await rec.close()
    assert as_dict(sqlite_rows(path, None, None)) == {("2026-06-03", "ebsco", REQUESTS): 3}


async def test_recorder_flushes_periodically_while_running(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite3"
    rec = Recorder(StatsStore(path), flush_interval_s=0.02, counters=Counters(Clock()))
    await rec.start()
    rec.counters.count("gale", SEARCHES, 3)
    # Up to 20 s for a flush due every 0.02 s: on a loaded machine the flush's thread can wait
    # long for a core, and only a flush that never comes should fail this.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        if sqlite_rows(path, None, None):
            break
    assert as_dict(sqlite_rows(path, None, None)) == {("2026-06-03", "gale", SEARCHES): 3}
    await rec.close()


def test_count_refuses_unknown_metrics_and_free_text_vendors() -> None:
    counters = Counters(Clock())
    with pytest.raises(ValueError):
        counters.count("ebsco", "https://search.ebscohost.com/?q=secret")
    with pytest.raises(ValueError):
        counters.count("search.ebscohost.com/login", REQUESTS)
    with pytest.raises(ValueError):
        counters.unique("ebsco", REQUESTS, "token")  # not a unique metric
    assert counters.pending() == {}


def test_count_many_adds_what_count_adds_and_refuses_the_same_inputs() -> None:
    one, many = Counters(Clock()), Counters(Clock())
    for metric, n in ((REQUESTS, 1), (BYTES, 3000), (SEARCHES, 0), (REQUESTS, 1)):
        one.count("ebsco", metric, n)
    many.count_many("ebsco", [(REQUESTS, 1), (BYTES, 3000), (SEARCHES, 0), (REQUESTS, 1)])
    assert many.pending() == one.pending() != {}
    with pytest.raises(ValueError):
        many.count_many("ebsco", [(REQUESTS, 1), ("https://x/?q=secret", 1)])
    with pytest.raises(ValueError):
        many.count_many("search.ebscohost.com/login", [(REQUESTS, 1)])
    with pytest.raises(ValueError):
        many.count_many("ebsco", [(BYTES, -1)])


@pytest.mark.parametrize(
    ("content_type", "metric"),
    [
        ("application/pdf", DOWNLOADS_PDF),
        ("Application/PDF; charset=binary", DOWNLOADS_PDF),
        ("application/epub+zip", DOWNLOADS_EPUB),
        (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            DOWNLOADS_OTHER,
        ),
        ("text/html; charset=utf-8", None),
        ("image/png", None),
        ("", None),
    ],
)
def test_download_metric_by_content_type(content_type: str, metric: str | None) -> None:
    assert download_metric(content_type) == metric


# --------------------------------------------------------------------------- unique tokens


def test_unique_token_is_counted_once_per_hour_and_again_next_hour() -> None:
    clock = Clock()
    counters = Counters(clock)
    for _ in range(3):
        counters.unique("ebsco", UNIQUE_SESSIONS, "tok-a")
    counters.unique("ebsco", UNIQUE_SESSIONS, "tok-b")
    counters.unique("gale", UNIQUE_SESSIONS, "tok-a")  # per vendor
    clock.now += dt.timedelta(hours=1)
    counters.unique("ebsco", UNIQUE_SESSIONS, "tok-a")
    assert counters.pending() == {
        ("2026-06-03", "ebsco", UNIQUE_SESSIONS): 3,
        ("2026-06-03", "gale", UNIQUE_SESSIONS): 1,
    }


def test_tokens_are_forgotten_when_the_hour_closes() -> None:
    clock = Clock()
    counters = Counters(clock)
    counters.unique("ebsco", UNIQUE_SESSIONS, "tok-a")
    assert counters.open_tokens() == 1
    clock.now += dt.timedelta(hours=1)
    counters.roll()
    assert counters.open_tokens() == 0


async def test_tokens_and_canaries_never_reach_the_disk(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    canary_tokens = [token, *(s for p in ALL for s in p.secrets())]
    rec = Recorder(StatsStore(tmp_path / "stats.sqlite3"), counters=Counters(Clock()))
    for t in canary_tokens:
        rec.counters.unique("ebsco", UNIQUE_SESSIONS, t)
        rec.counters.unique("ebsco", UNIQUE_SESSIONS, t)
    await rec.close()
    raw = all_bytes(tmp_path)
    assert raw, "the statistics file was written"
    assert token.encode() not in raw
    assert leaks(raw) == []
    assert as_dict(sqlite_rows(tmp_path / "stats.sqlite3", None, None)) == {
        ("2026-06-03", "ebsco", UNIQUE_SESSIONS): len(set(canary_tokens))
    }


async def test_redis_sink_keeps_counts_per_day_hash_without_expiry(
    redis_server: RedisServer,  # noqa: F811
    redis_url: str,  # noqa: F811
) -> None:
    clock = Clock()
    rec = Recorder(RedisStatsStore(redis_url, seen_key=SEEN_KEY), counters=Counters(clock))
    rec.counters.count("ebsco", REQUESTS, 2)
    rec.counters.unique("ebsco", UNIQUE_SESSIONS, CANARY.uid)
    await rec.flush()
    rec.counters.count("ebsco", REQUESTS, 3)
    await rec.close()
    client = redis_server.client()
    try:
        assert client.hgetall("weston:stats:2026-06-03") == {
            b"ebsco|requests": b"5",
            b"ebsco|unique_sessions": b"1",
        }
        assert client.ttl("weston:stats:2026-06-03") == -1
        dump = b"".join(client.dump(k) or b"" for k in client.keys("*"))
        assert leaks(dump) == []
    finally:
        client.close()
    reader = RedisStatsStore(redis_url)
    assert as_dict(await reader.rows(dt.date(2026, 6, 1), dt.date(2026, 6, 30))) == {
        ("2026-06-03", "ebsco", REQUESTS): 5,
        ("2026-06-03", "ebsco", UNIQUE_SESSIONS): 1,
    }
    assert await reader.rows(dt.date(2026, 7, 1), None) == []
    await reader.close()


def test_first_sightings_a_sink_could_not_take_become_plain_counts_after_two_hours() -> None:
    """Tokens wait for a flush until the hour after theirs has closed too, then only their count
    is kept: a long store outage never makes the process hold tokens for longer."""
    clock = Clock()
    counters = Counters(clock)
    counters.unique("ebsco", UNIQUE_SESSIONS, "tok-a")
    counters.unique("ebsco", UNIQUE_SESSIONS, "tok-b")
    deltas, fresh = counters.take()  # a batch the sink did not confirm (Recorder.flush)
    clock.now += dt.timedelta(hours=1)
    assert counters.aged(deltas, fresh) == (
        {},
        {("2026-06-03T10", "ebsco", UNIQUE_SESSIONS): {"tok-a", "tok-b"}},
    )
    clock.now += dt.timedelta(hours=1)
    assert counters.aged(deltas, fresh) == ({("2026-06-03", "ebsco", UNIQUE_SESSIONS): 2}, {})


async def test_one_session_seen_by_two_proxies_sharing_redis_is_one_distinct_session(
    redis_url: str,  # noqa: F811
) -> None:
    """Two replicas (or `serve --workers 2`) on one Redis, nginx sending a session's requests to
    each in turn: the hour counts one distinct session, not one per process."""
    cfg = Config(
        path=Path("/nonexistent/proxy.toml"),
        session=SessionConfig(store="redis", redis_url=redis_url),
    )
    replicas = [UsageCounter(Counters(Clock()), {"ebsco": ()}, secret=SECRET) for _ in range(2)]
    recorders = [
        Recorder(make_sink(cfg, stats_settings(cfg), secret=SECRET), counters=u.counters)
        for u in replicas
    ]
    session, other = SimpleNamespace(id=secrets.token_urlsafe(32)), SimpleNamespace(id="x" * 43)
    vendor = SimpleNamespace(id="ebsco")
    for i in range(4):
        await replicas[i % 2].gate(None, session, vendor)  # type: ignore[arg-type]
        await recorders[i % 2].flush()
    await replicas[1].gate(None, other, vendor)  # type: ignore[arg-type]
    for r in recorders:
        await r.close()
    reader = RedisStatsStore(redis_url)
    assert as_dict(await reader.rows()) == {("2026-06-03", "ebsco", UNIQUE_SESSIONS): 2}
    await reader.close()


async def test_redis_keeps_only_expiring_hour_bound_digests_of_the_tokens(
    redis_server: RedisServer,  # noqa: F811
    redis_url: str,  # noqa: F811
) -> None:
    """The hour's set of distinct sessions: named by a keyed digest (no vendor, no hour in the
    name), members neither the session id nor its token, and it expires."""
    sid = secrets.token_urlsafe(32)
    u = UsageCounter(Counters(Clock()), {"ebsco": ()}, secret=SECRET)
    token = u.session_token(sid)
    rec = Recorder(RedisStatsStore(redis_url, seen_key=SEEN_KEY), counters=u.counters)
    await u.gate(None, SimpleNamespace(id=sid), SimpleNamespace(id="ebsco"))  # type: ignore[arg-type]
    await rec.close()
    client = redis_server.client()
    try:
        (name,) = client.keys(REDIS_SEEN_PREFIX + "*")
        assert b"ebsco" not in name and b"2026" not in name
        assert 0 < client.ttl(name) <= SEEN_TTL_S
        (member,) = client.smembers(name)
        assert member.decode() not in (sid, token, storage_key(sid))
        dump = b"".join(client.dump(k) or b"" for k in client.keys("*"))
        assert sid.encode() not in dump and token.encode() not in dump
    finally:
        client.close()


async def test_redis_sink_failure_keeps_the_deltas(
    redis_server: RedisServer,  # noqa: F811
    redis_url: str,  # noqa: F811
) -> None:
    rec = Recorder(RedisStatsStore(redis_url), counters=Counters(Clock()))
    rec.counters.count("gale", SEARCHES, 4)
    redis_server.stop()
    try:
        with pytest.raises(redis.RedisError):
            await rec.flush()
        assert rec.pending() == {("2026-06-03", "gale", SEARCHES): 4}
    finally:
        redis_server.start()
    await rec.close()
    client = redis_server.client()
    try:
        assert client.hgetall("weston:stats:2026-06-03") == {b"gale|searches": b"4"}
    finally:
        client.close()


# --------------------------------------------------------------------------- suppression proofs

Grid = Sequence[Sequence[int]]


def with_totals(interior: Grid) -> list[list[int]]:
    grid = [[*row, sum(row)] for row in interior]
    grid.append([sum(col) for col in zip(*grid, strict=True)])
    return grid


def lines(n_rows: int, n_cols: int) -> list[list[tuple[int, int]]]:
    """Each row and each column with its total last: the cells before it add up to it."""
    rows = [[(i, j) for j in range(n_cols)] for i in range(n_rows)]
    cols = [[(i, j) for i in range(n_rows)] for j in range(n_cols)]
    return rows + cols


def subtraction_attack(grid: Grid, hidden: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Hidden cells an attacker works out by total-minus-visible, repeated while it helps."""
    known = {(i, j) for i in range(len(grid)) for j in range(len(grid[0]))} - hidden
    recovered: set[tuple[int, int]] = set()
    progress = True
    while progress:
        progress = False
        for line in lines(len(grid), len(grid[0])):
            unknown = [c for c in line if c not in known]
            if len(unknown) == 1:
                known.add(unknown[0])
                recovered.add(unknown[0])
                progress = True
    return recovered


def _rank(matrix: list[list[Fraction]]) -> int:
    rows = [r[:] for r in matrix]
    rank, n_cols = 0, len(rows[0]) if rows else 0
    for col in range(n_cols):
        pivot = next((r for r in range(rank, len(rows)) if rows[r][col] != 0), None)
        if pivot is None:
            continue
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        for r in range(len(rows)):
            if r != rank and rows[r][col] != 0:
                f = rows[r][col] / rows[rank][col]
                rows[r] = [a - f * b for a, b in zip(rows[r], rows[rank], strict=True)]
        rank += 1
    return rank


def linear_attack(grid: Grid, hidden: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Hidden cells fixed by ANY linear combination of the row and column equations.

    Cell k is determined iff the unit vector e_k lies in the row space of the equations restricted to
    the hidden cells, i.e. appending e_k does not raise the rank.
    """
    unknowns = sorted(hidden)
    index = {c: k for k, c in enumerate(unknowns)}
    equations = []
    for line in lines(len(grid), len(grid[0])):
        eq = [Fraction(0)] * len(unknowns)
        for pos, cell in enumerate(line):
            if cell in index:
                eq[index[cell]] = Fraction(-1 if pos == len(line) - 1 else 1)
        if any(eq):
            equations.append(eq)
    if not equations:
        return set()
    base = _rank(equations)
    found = set()
    for k, cell in enumerate(unknowns):
        unit = [Fraction(int(i == k)) for i in range(len(unknowns))]
        if _rank([*equations, unit]) == base:
            found.add(cell)
    return found


def naive_complement(grid: Grid, min_cell: int) -> set[tuple[int, int]]:
    """Only 'never exactly one hidden cell per line', the weaker rule protect() improves on."""
    hidden = {
        (i, j) for i in range(len(grid)) for j in range(len(grid[0])) if 0 < grid[i][j] < min_cell
    }
    changed = True
    while changed:
        changed = False
        for line in lines(len(grid), len(grid[0])):
            if sum(c in hidden for c in line) == 1:
                shown = [c for c in line if c not in hidden]
                hidden.add(min(shown, key=lambda c: (grid[c[0]][c[1]] == 0, grid[c[0]][c[1]])))
                changed = True
    return hidden


def test_the_attacks_can_fail_a_table_with_one_hidden_cell() -> None:
    """Guard for the proofs below: both attacks do recover an unprotected small cell."""
    grid = with_totals([[3, 40], [50, 60]])
    hidden = {(0, 0)}
    assert subtraction_attack(grid, hidden) == {(0, 0)}
    assert linear_attack(grid, hidden) == {(0, 0)}


def test_small_cells_are_suppressed_and_big_ones_shown() -> None:
    grid = with_totals([[3, 40, 55], [50, 60, 70], [45, 80, 90]])
    hidden = protect(grid, 10)
    assert (0, 0) in hidden
    assert (1, 1) not in hidden or (2, 2) not in hidden  # not everything is hidden
    assert all(grid[i][j] >= 10 or grid[i][j] == 0 for i, j in set(protect(grid, 10)) - {(0, 0)})


def test_a_lone_hidden_cell_gets_complements_in_its_row_and_column() -> None:
    grid = with_totals([[3, 40, 55], [50, 60, 70], [45, 80, 90]])
    hidden = protect(grid, 10)
    assert any(i == 0 and j != 0 for i, j in hidden)
    assert any(j == 0 and i != 0 for i, j in hidden)
    assert subtraction_attack(grid, hidden) == set()
    assert linear_attack(grid, hidden) == set()


def test_every_line_rule_alone_leaks_where_protect_does_not() -> None:
    """Two hidden rectangles joined by one cell: every line has two hidden cells, yet it leaks."""
    big = 100
    interior = [[big] * 5 for _ in range(5)]
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 3), (3, 2), (3, 3), (0, 2)]:
        interior[i][j] = 2
    grid = with_totals(interior)
    naive = naive_complement(grid, 10)
    assert (0, 2) in linear_attack(grid, naive)  # the weaker rule leaks the joining cell
    hidden = protect(grid, 10)
    assert linear_attack(grid, hidden) == set()
    assert subtraction_attack(grid, hidden) == set()


def test_small_totals_are_hidden_and_protected_too() -> None:
    grid = with_totals([[1, 2, 0], [0, 0, 0], [30, 40, 50]])
    hidden = protect(grid, 10)
    assert (0, 3) in hidden  # vendor total 3
    assert linear_attack(grid, hidden) == set()


cell_values = st.one_of(st.just(0), st.integers(1, 9), st.integers(10, 500))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 5).flatmap(
        lambda n_cols: st.lists(
            st.lists(cell_values, min_size=n_cols, max_size=n_cols), min_size=1, max_size=5
        )
    )
)
def test_no_hidden_cell_can_be_recovered_from_the_totals(interior: list[list[int]]) -> None:
    """For random tables: no subtraction and no linear combination pins any hidden cell."""
    grid = with_totals(interior)
    hidden = protect(grid, 10)
    small = {(i, j) for i, row in enumerate(grid) for j, v in enumerate(row) if 0 < v < 10}
    assert small <= hidden
    assert subtraction_attack(grid, hidden) == set()
    assert linear_attack(grid, hidden) == set()


# --------------------------------------------------------------------------- reports

TODAY = dt.date(2026, 7, 15)


def sample_rows() -> list[Row]:
    """May and June 2026 (whole months) and July (still running), three vendors."""
    rows = []
    for month, scale in ((5, 1), (6, 2), (7, 3)):
        day = dt.date(2026, month, 10)
        rows += [
            # Sessions that used each vendor: what sessions do there is shown only where ten or
            # more of them did it (gale's three sessions are too few, whatever they did).
            Row(day, "ebsco", SESSIONS_STARTED, 15 * scale),
            Row(day, "gale", SESSIONS_STARTED, 3),
            Row(day, "proquest", SESSIONS_STARTED, 12),
            Row(day, "ebsco", REQUESTS, 100 * scale),
            Row(day + dt.timedelta(days=1), "ebsco", REQUESTS, 20),
            Row(day, "ebsco", SEARCHES, 30 * scale),
            Row(day, "ebsco", DOWNLOADS_PDF, 12 * scale),
            Row(day, "gale", REQUESTS, 3),  # small every month
            Row(day, "gale", SEARCHES, 40),
            Row(day, "proquest", REQUESTS, 50 * scale),
            Row(day, "proquest", SEARCHES, 60),
            Row(day, "", LOGINS_SUCCESS, 25 * scale),
            Row(day, "", LOGINS_FAILURE, 2),
        ]
    return rows


def test_month_report_leaves_out_the_running_month_and_says_so() -> None:
    report = build_report(
        sample_rows(), period="month", date_from=None, date_to=None, min_cell=10, today=TODAY
    )
    assert report.periods == ("2026-05", "2026-06")
    assert any("2026-07" in n and "still running" in n for n in report.notes)
    assert report.cell(REQUESTS, "ebsco", "2026-06").value == 220
    assert report.cell(REQUESTS, "ebsco", TOTAL).value == 120 + 220


def test_month_report_leaves_out_months_cut_by_from_and_to() -> None:
    report = build_report(
        sample_rows(),
        period="month",
        date_from=dt.date(2026, 5, 2),
        date_to=dt.date(2026, 6, 30),
        min_cell=10,
        today=TODAY,
    )
    assert report.periods == ("2026-06",)
    assert any("2026-05" in n and "cut" in n for n in report.notes)


def test_day_report_leaves_out_today() -> None:
    rows = [
        Row(TODAY - dt.timedelta(days=1), "ebsco", SESSIONS_STARTED, 12),
        Row(TODAY - dt.timedelta(days=1), "ebsco", REQUESTS, 50),
        Row(TODAY, "ebsco", SESSIONS_STARTED, 12),
        Row(TODAY, "ebsco", REQUESTS, 70),
    ]
    report = build_report(
        rows, period="day", date_from=None, date_to=None, min_cell=10, today=TODAY
    )
    assert report.periods == ("2026-07-14",)
    assert report.cell(REQUESTS, ALL_VENDORS, TOTAL).value == 50
    assert any("2026-07-15" in n and "today" in n for n in report.notes)


def test_report_suppresses_small_counts_and_their_complements() -> None:
    report = build_report(
        sample_rows(), period="month", date_from=None, date_to=None, min_cell=10, today=TODAY
    )
    assert report.cell(REQUESTS, "gale", "2026-05").suppressed
    assert report.cell(REQUESTS, "gale", "2026-06").suppressed
    assert report.cell(REQUESTS, "gale", TOTAL).suppressed  # 6
    assert report.cell(LOGINS_FAILURE, "", TOTAL).suppressed  # 4
    hidden = [(v, p) for v in (*report.vendors, ALL_VENDORS) for p in (*report.periods, TOTAL)]
    assert sum(report.cell(REQUESTS, v, p).suppressed for v, p in hidden) > 3  # complements
    # 40 searches, but by three sessions: hidden like a small count, and protected like one.
    assert report.cell(SEARCHES, "gale", "2026-05").suppressed
    assert report.cell(SEARCHES, "proquest", "2026-05").value == 60  # twelve sessions


def test_csv_parses_and_holds_the_published_numbers() -> None:
    report = build_report(
        sample_rows(), period="month", date_from=None, date_to=None, min_cell=10, today=TODAY
    )
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    by_key = {(r["vendor"], r["period"]): r for r in rows}
    assert by_key[("proquest", "2026-05")][SEARCHES] == "60"
    assert by_key[("ebsco", "2026-05")][SEARCHES] == "[c]"  # hidden with gale's, its complement
    assert by_key[("proquest", TOTAL)][SEARCHES] == "120"
    assert by_key[("gale", "2026-05")][REQUESTS] == "[c]"
    assert by_key[(ALL_VENDORS, TOTAL)][SEARCHES] == str(30 + 60 + 80 + 120)


def test_json_parses_and_marks_suppressed_cells_null() -> None:
    report = build_report(
        sample_rows(), period="month", date_from=None, date_to=None, min_cell=10, today=TODAY
    )
    doc = json.loads(render_json(report))
    assert doc["periods"] == ["2026-05", "2026-06"]
    rows = {(r["vendor"], r["period"]): r for r in doc["rows"]}
    assert rows[("proquest", "2026-06")]["counts"][SEARCHES] == 60
    assert rows[("gale", "2026-06")]["counts"][REQUESTS] is None
    assert REQUESTS in rows[("gale", "2026-06")]["suppressed"]
    assert any("still running" in n for n in doc["notes"])


def test_text_shows_numbers_suppression_marks_and_the_header() -> None:
    report = build_report(
        sample_rows(), period="month", date_from=None, date_to=None, min_cell=10, today=TODAY
    )
    text = render_text(report)
    assert "2026-07 is left out" in text
    assert "[c]" in text
    line = next(x for x in text.splitlines() if x.startswith("proquest") and "2026-06" in x)
    assert "60" in line.split()  # proquest searches in June
    total = next(x for x in text.splitlines() if x.startswith("all vendors") and TOTAL in x)
    assert str(30 + 60 + 80 + 120) in total.split()


def test_counter_layout_has_its_columns_and_hides_derived_cells_with_hidden_parts() -> None:
    report = build_report(
        sample_rows(), period="month", date_from=None, date_to=None, min_cell=10, today=TODAY
    )
    text = render_counter(report)
    assert "Investigations = " in text
    body = [line for line in text.splitlines() if not line.startswith("#")]
    rows = {(r["Database"], r["Month"]): r for r in csv.DictReader(io.StringIO("\n".join(body)))}
    assert list(next(iter(rows.values()))) == [
        "Database", "Month", "Searches", "Requests", "Investigations",
    ]  # fmt: skip
    proquest = report.cell(REQUESTS, "proquest", "2026-05")
    assert rows[("proquest", "2026-05")]["Investigations"] == str(proquest.value or "[c]")
    assert rows[("proquest", "2026-05")]["Searches"] == "60"
    requests = report.cell(REQUESTS, "ebsco", "2026-05").value
    pdf = report.cell(DOWNLOADS_PDF, "ebsco", "2026-05").value
    expected = "[c]" if requests is None or pdf is None else str(requests + pdf)
    assert rows[("ebsco", "2026-05")]["Investigations"] == expected
    assert rows[("gale", "2026-05")]["Investigations"] == "[c]"
    assert not any(db == "(library)" for db, _ in rows)


def test_no_published_table_lets_a_hidden_count_be_recovered() -> None:
    report = build_report(
        sample_rows(), period="month", date_from=None, date_to=None, min_cell=10, today=TODAY
    )
    for metric in report.metrics:
        vendors = sorted({v for (m, v, _) in report.cells if m == metric and v != ALL_VENDORS})
        keys = [*vendors, ALL_VENDORS], [*report.periods, TOTAL]
        grid = [[0] * len(keys[1]) for _ in keys[0]]  # values do not matter to the attacks
        hidden = {
            (i, j)
            for i, v in enumerate(keys[0])
            for j, p in enumerate(keys[1])
            if report.cell(metric, v, p).suppressed
        }
        assert linear_attack(grid, hidden) == set(), metric


MONTHS = ("2026-01", "2026-02", "2026-03", "2026-04")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(cell_values, min_size=len(MONTHS), max_size=len(MONTHS)), min_size=1, max_size=4
    )
)
def test_a_closed_period_is_published_the_same_whatever_else_the_report_covers(
    counts: list[list[int]],
) -> None:
    """Reports over different runs of whole months (January alone, January to March, February
    to April, ...) show each month's cells identically, and show a total across months only
    when every month it adds up is shown: nothing one report adds to another can be subtracted."""
    vendors = [f"v{k}" for k in range(len(counts))]
    rows = [
        Row(dt.date.fromisoformat(f"{month}-15"), vendor, REQUESTS, n)
        for vendor, line in zip(vendors, counts, strict=True)
        for month, n in zip(MONTHS, line, strict=True)
    ]
    spans = [(a, b) for a in range(len(MONTHS)) for b in range(a, len(MONTHS))]
    seen: dict[tuple[str, str], int | None] = {}
    for a, b in spans:
        first = dt.date(2026, a + 1, 1)  # MONTHS[a] to MONTHS[b], whole
        last = dt.date(2026, b + 2, 1) - dt.timedelta(days=1)
        report = build_report(
            rows, period="month", date_from=first, date_to=last, min_cell=10, today=TODAY
        )
        assert report.periods == MONTHS[a : b + 1]
        for vendor in [*vendors, ALL_VENDORS]:
            parts = [report.cell(REQUESTS, vendor, p).value for p in report.periods]
            for period, value in zip(report.periods, parts, strict=True):
                assert seen.setdefault((vendor, period), value) == value, (vendor, period)
            total = report.cell(REQUESTS, vendor, TOTAL).value
            assert total == (None if None in parts else sum(p or 0 for p in parts))


def test_successive_monthly_reports_do_not_give_away_a_small_count(tmp_path: Path) -> None:
    """Staff run the default monthly report every month (whole months, no --from/--to). The run
    in February covers January; the run in March covers January and February. Were January
    protected afresh with each run's complements, the February run could publish z's January
    (60) and the all-vendors January (112), the March run y's January (50), and together
    x's January = 112 - 60 - 50 = 2, a hidden small count (min_cell 10), would be worked out."""
    stats_file = tmp_path / "state" / "stats.sqlite3"
    sqlite_add(
        stats_file,
        {
            ("2026-01-15", "x", REQUESTS): 2,
            ("2026-01-15", "y", REQUESTS): 50,
            ("2026-01-15", "z", REQUESTS): 60,
            ("2026-02-15", "x", REQUESTS): 40,
            ("2026-02-15", "y", REQUESTS): 100,
            ("2026-02-15", "z", REQUESTS): 10,
        },
    )
    cfg = Config(path=tmp_path / "proxy.toml", extra={"stats": {"min_cell": 10}})
    reports = []
    for today in (dt.date(2026, 2, 10), dt.date(2026, 3, 10)):  # January; January and February
        code, out, err = _run_stats(cfg, period="month", fmt="json", today=today)
        assert code == 0, err
        rows = json.loads(out)["rows"]
        reports.append({(r["vendor"], r["period"]): r["counts"][REQUESTS] for r in rows})
    february, march = reports
    jan = "2026-01"
    assert february[("x", jan)] is None and march[("x", jan)] is None  # hidden in both runs
    published: dict[str, int] = {}
    for report in (february, march):
        for vendor in ("y", "z", ALL_VENDORS):
            value = report[(vendor, jan)]
            if value is not None:
                published[vendor] = value
    worked_out = None
    if {"y", "z", ALL_VENDORS} <= set(published):
        worked_out = published[ALL_VENDORS] - published["y"] - published["z"]
    assert worked_out is None, f"x's January requests worked out from two reports: {worked_out}"


# --------------------------------------------------------------------------- config, CLI, inventory


def write_config(folder: Path, stats: str) -> Path:
    (folder / "vendors").mkdir()
    (folder / "patrons.toml").write_text("")
    path = folder / "proxy.toml"
    path.write_text(stats)
    return path


def test_check_stats_reports_unknown_keys_and_wrong_types_with_file_and_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[stats]\npth = "x"\nmin_cell = "ten"\nflush_interval_s = 0\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, extra_checks=(check_stats,))
    found = {(p.file, p.key) for p in err.value.problems}
    assert (str(path), "stats.pth") in found
    assert (str(path), "stats.min_cell") in found
    assert "did you mean 'path'" in str(err.value)


def test_check_stats_refuses_values_that_weaken_the_promise(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[stats]\nmin_cell = 1\nflush_interval_s = -5\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, extra_checks=(check_stats,))
    assert {p.key for p in err.value.problems} >= {"stats.min_cell", "stats.flush_interval_s"}


def test_stats_settings_defaults_are_relative_to_the_config_file(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, ""), extra_checks=(check_stats,))
    s = stats_settings(cfg)
    assert s == StatsSettings(tmp_path / "state" / "stats.sqlite3", 60.0, 10)


def test_stats_settings_refuses_a_bad_section_even_without_check_stats(tmp_path: Path) -> None:
    cfg = Config(path=tmp_path / "proxy.toml", extra={"stats": {"min_cell": 1}})
    with pytest.raises(ConfigError) as err:
        stats_settings(cfg)
    assert [p.key for p in err.value.problems] == ["stats.min_cell"]


def _run_stats(
    cfg: Config, *, period: str, fmt: str, today: dt.date | None = None
) -> tuple[int, str, str]:
    """The `stats` command over the whole stored range: (exit status, report, error output)."""
    out, err = io.StringIO(), io.StringIO()
    code = run_stats(
        cfg,
        date_from=None,
        date_to=None,
        period=period,
        fmt=fmt,
        stdout=out,
        stderr=err,
        today=today,
    )
    return code, out.getvalue(), err.getvalue()


async def test_run_stats_prints_the_report_from_the_sqlite_file(tmp_path: Path) -> None:
    cfg = Config(
        path=tmp_path / "proxy.toml", extra={"stats": {"path": "s.sqlite3", "min_cell": 5}}
    )
    rec = Recorder(StatsStore(tmp_path / "s.sqlite3"), counters=Counters(Clock()))
    rec.counters.count("ebsco", SESSIONS_STARTED, 20)
    rec.counters.count("gale", SESSIONS_STARTED, 6)
    rec.counters.count("ebsco", REQUESTS, 42)
    rec.counters.count("gale", REQUESTS, 4)
    await rec.close()
    code, out, _ = _run_stats(cfg, period="month", fmt="json", today=dt.date(2026, 7, 1))
    assert code == 0
    doc = json.loads(out)
    assert doc["min_cell"] == 5
    rows = {(r["vendor"], r["period"]): r["counts"] for r in doc["rows"]}
    assert rows[("gale", "2026-06")][REQUESTS] is None  # 4 < min_cell
    assert rows[("ebsco", "2026-06")][REQUESTS] is None  # else 46 - 42 gives gale away
    assert rows[(ALL_VENDORS, "2026-06")][REQUESTS] == 46


async def test_run_stats_adds_redis_counts_when_sessions_live_in_redis(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    cfg = Config(
        path=tmp_path / "proxy.toml", session=SessionConfig(store="redis", redis_url=redis_url)
    )
    for sink, n in ((StatsStore(stats_settings(cfg).path), 30), (RedisStatsStore(redis_url), 12)):
        rec = Recorder(sink, counters=Counters(Clock()))
        rec.counters.count("ebsco", SESSIONS_STARTED, n)
        rec.counters.count("ebsco", SEARCHES, n)
        await rec.close()
    code, out, _ = _run_stats(cfg, period="day", fmt="csv", today=dt.date(2026, 6, 4))
    assert code == 0
    rows = {(r["vendor"], r["period"]): r for r in csv.DictReader(io.StringIO(out))}
    assert rows[("ebsco", "2026-06-03")][SEARCHES] == "42"


def test_run_stats_refuses_an_unknown_format(tmp_path: Path) -> None:
    code, out, err = _run_stats(Config(path=tmp_path / "proxy.toml"), period="month", fmt="xml")
    assert code == 2 and "unknown format" in err and out == ""


def test_a_refused_period_is_told_on_stderr_and_leaves_the_report_output_empty(
    tmp_path: Path,
) -> None:
    """`stats --format counter --period day > usage.csv`: the refusal reaches the terminal,
    not the file staff hand on."""
    code, out, err = _run_stats(Config(path=tmp_path / "proxy.toml"), period="day", fmt="counter")
    assert code == 2 and out == "" and "--period month" in err


def test_unreadable_statistics_are_told_on_stderr_and_leave_the_report_output_empty(
    tmp_path: Path,
) -> None:
    cfg = Config(path=tmp_path / "proxy.toml", extra={"stats": {"path": "s.sqlite3"}})
    (tmp_path / "s.sqlite3").write_bytes(b"this is not a sqlite database" * 100)
    code, out, err = _run_stats(cfg, period="month", fmt="csv")
    assert code == 1 and out == "" and "statistics could not be read" in err


def test_stats_command_writes_its_refusals_to_stderr(tmp_path: Path) -> None:
    """The command line hands run_stats the terminal's stderr, not stdout."""
    cfg = write_config(tmp_path, '[server]\npublic_url = "http://proxy.localhost:8080"\n')
    command = ["stats", "--config", str(cfg), "--format", "counter", "--period", "day"]
    r = subprocess.run(
        [sys.executable, "-m", "proxy", *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2
    assert r.stdout == "" and "--period month" in r.stderr


async def test_inventory_gives_size_span_and_row_count_never_contents(tmp_path: Path) -> None:
    settings_ = StatsSettings(tmp_path / "stats.sqlite3")
    assert stats_inventory(settings_)["exists"] is False
    clock = Clock()
    rec = Recorder(StatsStore(settings_.path), counters=Counters(clock))
    rec.counters.count("ebsco", REQUESTS, 3)
    clock.now += dt.timedelta(days=2)
    rec.counters.count("gale", SEARCHES, 1)
    rec.counters.unique("gale", UNIQUE_SESSIONS, WREN.uid)
    await rec.close()
    inv = stats_inventory(settings_)
    assert inv["rows"] == 3
    assert (inv["first_day"], inv["last_day"]) == ("2026-06-03", "2026-06-05")
    assert inv["size_bytes"] > 0
    assert "ebsco" not in json.dumps(inv) and leaks(json.dumps(inv).encode()) == []
    with sqlite3.connect(settings_.path) as conn:
        assert conn.execute("SELECT count(*) FROM counts").fetchone() == (3,)


# --------------------------------------------------------------------------- usage_stats wiring


def usage(clock_day: dt.date = dt.date(2026, 3, 10), secret: bytes = SECRET) -> UsageCounter:
    at = dt.datetime.combine(clock_day, dt.time(9, 30), tzinfo=dt.UTC)
    return UsageCounter(
        Counters(clock=lambda: at), {"one": ["^/find", r"/search\b"]}, secret=secret
    )


def seen(u: UsageCounter) -> dict[tuple[str, str], int]:
    return {(v, m): n for (_, v, m), n in u.counters.pending().items()}


def obs(path: str = "/", **kw: object) -> Observation:
    fields: dict[str, object] = {
        "vendor_id": "one",
        "method": "GET",
        "status": 200,
        "bytes": 100,
        "duration_s": 0.01,
        "content_type": "text/html",
        "path": path,
        "first_at_vendor": False,
    }
    fields.update(kw)
    return Observation(**fields)  # type: ignore[arg-type]


def test_login_outcomes_are_success_failure_or_outage_library_wide() -> None:
    """success, any refusal, directory_unavailable → three library-wide counts ('' vendor)."""
    u = usage()
    for outcome in (
        "success",
        "bad_credentials",
        "not_eligible",
        "throttled",
        "directory_unavailable",
    ):
        u.login_outcome(outcome)
    assert seen(u) == {("", LOGINS_SUCCESS): 1, ("", LOGINS_FAILURE): 3, ("", LOGINS_OUTAGE): 1}


def test_denials_outside_the_vocabulary_are_not_counted() -> None:
    """Known reasons count; an unexpected reason string never reaches the counters."""
    u = usage()
    u.denied("one", "not_eligible")
    u.denied("", "not_configured")
    u.denied("one", "suspended")
    u.denied("one", "https://evil.example/?q=secret")
    assert seen(u) == {
        ("one", DENIED_NOT_ELIGIBLE): 1,
        ("", DENIED_NOT_CONFIGURED): 1,
        ("one", SUSPENDED): 1,
    }


def test_a_search_is_a_path_matching_the_vendor_rule_and_not_refused() -> None:
    """search_paths regexes are searched in the path; 4xx/5xx and other paths are not searches."""
    u = usage()
    u.observe(obs("/find/results"))
    u.observe(obs("/x/search"))
    u.observe(obs("/find", status=404))
    u.observe(obs("/browse"))
    assert seen(u)[("one", SEARCHES)] == 2
    assert seen(u)[("one", REQUESTS)] == 4


def test_a_download_is_a_whole_200_get_of_full_text() -> None:
    """A PDF 200 counts; a 206 range, a HEAD and an HTML page do not."""
    u = usage()
    u.observe(obs(content_type="application/pdf"))
    u.observe(obs(content_type="application/pdf", status=206))
    u.observe(obs(content_type="application/pdf", method="HEAD"))
    u.observe(obs(content_type="application/epub+zip"))
    assert seen(u).get(("one", DOWNLOADS_PDF)) == 1
    assert seen(u).get(("one", DOWNLOADS_EPUB)) == 1


def test_first_request_at_a_vendor_starts_a_session_there() -> None:
    """first_at_vendor counts sessions_started; bytes add up."""
    u = usage()
    u.observe(obs(first_at_vendor=True, bytes=10))
    u.observe(obs(bytes=5))
    assert seen(u)[("one", SESSIONS_STARTED)] == 1
    assert seen(u)[("one", BYTES)] == 15


def test_session_token_is_one_for_all_proxies_and_neither_the_id_nor_its_storage_key() -> None:
    """The unique-sessions token is keyed by the server secret: every process sharing the secret
    gives a session the same token, another secret another one, and it is unlike the session id
    or the store's hash of it."""
    sid = secrets.token_urlsafe(32)
    a, b, other = usage(), usage(), usage(secret=b"another-library's-server-secret")
    assert a.session_token(sid) == b.session_token(sid)
    assert a.session_token(sid) != other.session_token(sid)
    assert sid not in a.session_token(sid)
    assert a.session_token(sid) != storage_key(sid)


def test_a_reload_replaces_the_search_rules() -> None:
    """New rules (what reloaded() installs from the new config) replace the old ones."""
    u = usage()
    u.set_search_paths({"one": ["^/query"]})
    u.observe(obs("/find/results"))
    u.observe(obs("/query"))
    assert seen(u)[("one", SEARCHES)] == 1
