"""Turn stored daily counts into a published report: whole periods only, small cells suppressed.

Periods. A report covers whole fixed periods only: with period=day, today (UTC) is left out because it
is still running; with period=month, a month is left out if it is still running or if --from/--to
cut it. The report header lists what was left out.

Suppression. Each metric is its own table: vendors by periods, plus a total column per vendor, a
total row over vendors, and the grand total, all computed from the true counts. Which cells of it
are hidden (small ones, and enough others that no small one can be worked out) is decided by
`proxy.stats_suppression.protect`. Small means a count below `min_cell`, and for what sessions do
at a vendor (requests, searches, downloads, bytes ...: `proxy.stats.SESSION_ACTIVITY`) also a
cell fewer than `min_cell` sessions made (sessions started there in that period), however large
its count: one patron's requests or bytes are one patron's; hidden cells all read "[c]" (null in JSON), whether small or
hidden to protect a small one. Derived figures (all downloads, COUNTER Investigations) are sums of
suppressed tables: a derived cell is shown only if every part is shown, so it never adds an
equation that was not public.

Across reports. Each period is protected on its own, from its own counts, so a closed period is
published the same in every report of the same period kind, whatever other periods the report
covers; a vendor's total over the report's periods (and the grand total) is shown only when every
period it adds up is shown. Subtracting one such report from another (this month's from last
month's, a long range from a short one) therefore gives nothing that either did not show.

What this does not cover: bounds reasoning (a suppressed cell is at least 1 and below min_cell)
can narrow a value to a range, on purpose; a month and its days are protected separately, so a
month report and day reports of the same month can be subtracted from each other: publish one
period kind. A period is published the same only once its counts stop changing: a day report
run within `flush_interval_s` after midnight UTC (or while the sink is failing) may miss the day's
last counts, and a later report of that day would differ.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from redis.exceptions import RedisError

from proxy.config import Config
from proxy.secrets_ import SecretError, redis_password
from proxy.stats import (
    DOWNLOAD_METRICS,
    LOGINS_SUCCESS,
    METRICS,
    REQUESTS,
    SEARCHES,
    SESSION_ACTIVITY,
    SESSIONS_STARTED,
    stats_settings,
)
from proxy.stats_store import Row, redis_rows_sync, sqlite_rows
from proxy.stats_suppression import protect

TOTAL = "total"  # period key of a vendor's total over the report's periods
ALL_VENDORS = "*"  # vendor key of the total over vendors
FORMATS = ("text", "csv", "json", "counter")


@dataclass(frozen=True)
class Cell:
    """A published count; `value` is None when suppressed, so a renderer cannot leak the number."""

    value: int | None

    @property
    def suppressed(self) -> bool:
        return self.value is None


_ZERO = Cell(0)


@dataclass(frozen=True)
class Report:
    period: str  # day | month
    periods: tuple[str, ...]  # "2026-06-03" or "2026-06", oldest first
    vendors: tuple[str, ...]  # "" = library-wide (logins)
    metrics: tuple[str, ...]
    min_cell: int
    notes: tuple[str, ...]
    cells: Mapping[tuple[str, str, str], Cell] = field(default_factory=dict)  # (metric, vendor, p)

    def cell(self, metric: str, vendor: str, period: str) -> Cell:
        """One published cell; vendor may be ALL_VENDORS and period TOTAL."""
        return self.cells.get((metric, vendor, period), _ZERO)

    def derived(self, metrics: Sequence[str], vendor: str, period: str) -> Cell:
        """The sum of several metrics, shown only if every part is shown."""
        parts = [self.cell(m, vendor, period).value for m in metrics]
        return Cell(None) if None in parts else Cell(sum(p or 0 for p in parts))


# --------------------------------------------------------------------------- periods


def _month(day: dt.date) -> str:
    return day.strftime("%Y-%m")


def _month_bounds(label: str) -> tuple[dt.date, dt.date]:
    first = dt.date.fromisoformat(label + "-01")
    nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return first, nxt - dt.timedelta(days=1)


def _periods(
    period: str,
    first_data: dt.date | None,
    date_from: dt.date | None,
    date_to: dt.date | None,
    today: dt.date,
) -> tuple[list[str], list[str]]:
    """The whole periods to publish, and notes on what was left out and why."""
    yesterday = today - dt.timedelta(days=1)
    start = date_from or first_data
    end = min(date_to or yesterday, yesterday)
    notes = []
    if period == "day":
        if date_to is None or date_to >= today:
            notes.append(f"{today.isoformat()} (today, UTC) is left out: it is still running.")
        if start is None or start > end:
            return [], notes
        days = (end - start).days + 1
        return [(start + dt.timedelta(days=k)).isoformat() for k in range(days)], notes
    if start is None:
        return [], notes
    months, label = [], _month(start)
    while label <= _month(max(start, min(date_to or today, today))):
        first, last = _month_bounds(label)
        if last >= today:
            notes.append(f"{label} is left out: the month is still running.")
        elif (date_from and first < date_from) or (date_to and last > date_to):
            notes.append(f"{label} is left out: --from/--to cut it, only whole months are shown.")
        else:
            months.append(label)
        label = _month(last + dt.timedelta(days=1))
    return months, notes


# --------------------------------------------------------------------------- report


def build_report(
    rows: Iterable[Row],
    *,
    period: str,
    date_from: dt.date | None,
    date_to: dt.date | None,
    min_cell: int,
    today: dt.date | None = None,
) -> Report:
    """Sum the rows into whole periods and apply small-cell suppression to every metric table."""
    if period not in ("day", "month"):
        raise ValueError("period must be day or month")
    today = today or dt.datetime.now(dt.UTC).date()
    rows = list(rows)
    first = min((r.day for r in rows), default=None)
    periods, notes = _periods(period, first, date_from, date_to, today)
    wanted = set(periods)
    true: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        label = r.day.isoformat() if period == "day" else _month(r.day)
        if label in wanted and r.count:
            true[r.metric][(r.vendor, label)] += r.count
    metrics = [m for m in METRICS if m in true] + sorted(set(true) - set(METRICS))
    vendors = sorted({v for table in true.values() for v, _ in table})
    cells: dict[tuple[str, str, str], Cell] = {}
    people = true.get(SESSIONS_STARTED, {})
    # Sign-ins bound the people behind a period's totals where the store records them (every
    # proxy does; a store of counts without them, such as an import, is left to the vendors').
    logins = true.get(LOGINS_SUCCESS)
    signins = {p: logins.get(("", p), 0) for p in periods} if logins else None
    for m in metrics:
        activity = m in SESSION_ACTIVITY
        cells.update(
            _publish(
                m,
                true[m],
                periods,
                min_cell,
                people if activity else None,
                signins if activity else None,
            )
        )
    notes.append(
        f"[c] = hidden: a count from 1 to {min_cell - 1}, or a larger count hidden as well so "
        "that no small count can be worked out from the totals."
    )
    return Report(
        period=period,
        periods=tuple(periods),
        vendors=tuple(vendors),
        metrics=tuple(metrics),
        min_cell=min_cell,
        notes=tuple(notes),
        cells=cells,
    )


def _publish(
    metric: str,
    counts: Mapping[tuple[str, str], int],
    periods: Sequence[str],
    min_cell: int,
    people: Mapping[tuple[str, str], int] | None,
    signins: Mapping[str, int] | None = None,
) -> dict[tuple[str, str, str], Cell]:
    """One metric's table with totals, suppressed; vendors with no count here are zeros, left out.

    `people`: for what sessions do at a vendor (SESSION_ACTIVITY), the sessions started there per
    vendor and period; a cell (and a period's all-vendors total) that fewer than `min_cell` of
    them made is hidden however large its count, as a small one is: one patron's hundred
    requests or 50 MB are still one patron's.

    The all-vendors total of a period is made by at most the sessions started at the vendors
    whose count it adds (a vendor with none adds no one, whatever other periods it counts in),
    and at most the library's sign-ins in that period (`signins`): one session at three
    databases started three times there, but is one patron. The smaller bound is taken, so a
    session from an earlier period can only hide more."""
    vendors = sorted({v for v, _ in counts})
    grid = [[counts.get((v, p), 0) for p in periods] for v in vendors]
    for line in grid:
        line.append(sum(line))
    grid.append([sum(col) for col in zip(*grid, strict=True)])
    few: set[tuple[int, int]] = set()
    if people is not None:
        for j, p in enumerate(periods):
            made_by = [people.get((v, p), 0) for v in vendors]
            few |= {(i, j) for i, n in enumerate(made_by) if n < min_cell}
            behind_total = sum(n for i, n in enumerate(made_by) if grid[i][j])
            if signins is not None:
                behind_total = min(behind_total, signins.get(p, 0))
            if behind_total < min_cell:
                few.add((len(vendors), j))
    hidden = protect(grid, min_cell, few)
    row_keys, col_keys = [*vendors, ALL_VENDORS], [*periods, TOTAL]
    return {
        (metric, row_keys[i], col_keys[j]): Cell(None if (i, j) in hidden else grid[i][j])
        for i in range(len(row_keys))
        for j in range(len(col_keys))
    }


# --------------------------------------------------------------------------- rendering


def _label(vendor: str) -> str:
    return {"": "(library)", ALL_VENDORS: "all vendors"}.get(vendor, vendor)


# One mark for every hidden cell (the UK ONS "[c]", confidential): marking small cells apart from
# their complements would tell which hidden cells are below min_cell, and "<10" on a complement
# would be false.
HIDDEN = "[c]"


def _show(cell: Cell) -> str:
    return HIDDEN if cell.value is None else str(cell.value)


def _lines(report: Report) -> list[tuple[str, str]]:
    """(vendor, period) of every published line: each vendor's periods and total, then all."""
    keys = [*report.periods, TOTAL]
    return [(v, p) for v in [*report.vendors, ALL_VENDORS] for p in keys]


def _header(report: Report) -> list[str]:
    span = f"{report.periods[0]} to {report.periods[-1]}" if report.periods else "no whole periods"
    return [
        "Weston patron proxy usage statistics (aggregate counts only, no patron data)",
        # Days and months are UTC ones (docs/records-and-retention.md): a Connecticut evening's
        # sign-ins after 7 pm (8 pm in summer) fall on the next date, and a reader must know.
        f"Period: {report.period} (UTC); covered: {span}",
        *report.notes,
    ]


def render_text(report: Report) -> str:
    head = ["vendor", "period", *report.metrics]
    body = [
        [_label(v), p, *(_show(report.cell(m, v, p)) for m in report.metrics)]
        for v, p in _lines(report)
    ]
    widths = [max(len(r[k]) for r in [head, *body]) for k in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if k < 2 else f"{{:>{w}}}" for k, w in enumerate(widths))
    table = [fmt.format(*head), *(fmt.format(*r) for r in body)]
    return "\n".join([*_header(report), "", *table]) + "\n"


def render_csv(report: Report) -> str:
    """CSV, one table with its header row first (RFC 4180), so a spreadsheet or
    `csv.DictReader` opens it as it is; hidden cells read "[c]". The notes (what "[c]" means,
    the periods left out) are in the text and JSON reports: `#` lines before the header made
    spreadsheets take the first note for the header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["vendor", "period", *report.metrics])
    for v, p in _lines(report):
        writer.writerow([v, p, *(_show(report.cell(m, v, p)) for m in report.metrics)])
    return out.getvalue()


def render_json(report: Report) -> str:
    """JSON: suppressed counts are null and listed under "suppressed" on their line."""
    lines: list[dict[str, Any]] = []
    for v, p in _lines(report):
        cells = {m: report.cell(m, v, p) for m in report.metrics}
        lines.append(
            {
                "vendor": v,
                "period": p,
                "counts": {m: c.value for m, c in cells.items()},
                "suppressed": [m for m, c in cells.items() if c.suppressed],
            }
        )
    doc = {
        "period": report.period,
        "periods": list(report.periods),
        "min_cell": report.min_cell,
        "notes": list(report.notes),
        "vendors": list(report.vendors),
        "metrics": list(report.metrics),
        "total_vendor": ALL_VENDORS,
        "total_period": TOTAL,
        "rows": lines,
    }
    return json.dumps(doc, indent=2) + "\n"


COUNTER_NOTES = (
    "COUNTER-like monthly layout (not a certified COUNTER report):",
    "Database = the vendor id in the proxy's configuration.",
    "Searches = requests whose path matched the vendor's search_paths (like Searches_Regular).",
    "Requests = every request the proxy forwarded to the vendor (Total_Item_Requests-like; "
    "the proxy cannot tell item pages from navigation).",
    "Investigations = Requests + full-text downloads (PDF, EPUB, other documents).",
)


def render_counter(report: Report) -> str:
    """CSV: Database, Month, Searches, Requests, Investigations, per vendor and month, then totals."""
    if report.period != "month":
        raise ValueError("the COUNTER-like layout is monthly: build the report with period=month")
    out = io.StringIO()
    out.writelines(f"# {line}\n" for line in [*COUNTER_NOTES, *report.notes])
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Database", "Month", "Searches", "Requests", "Investigations"])
    for v, p in _lines(report):
        if v == "":  # logins belong to no database
            continue
        row = [
            report.cell(SEARCHES, v, p),
            report.cell(REQUESTS, v, p),
            report.derived((REQUESTS, *DOWNLOAD_METRICS), v, p),
        ]
        writer.writerow([_label(v), p, *(_show(c) for c in row)])
    return out.getvalue()


_RENDERERS = {
    "text": render_text,
    "csv": render_csv,
    "json": render_json,
    "counter": render_counter,
}


def run_stats(
    config: Config,
    *,
    date_from: dt.date | None,
    date_to: dt.date | None,
    period: str,
    fmt: str,
    stdout: TextIO,
    stderr: TextIO,
    today: dt.date | None = None,
) -> int:
    """The `stats` command: read the SQLite file (and Redis when sessions live there), print.

    Only the report goes to `stdout` (staff redirect it into the file they hand on); refusals and
    failures go to `stderr`, so they reach the terminal and never end up inside a report.
    """
    if fmt not in _RENDERERS:
        print(f"unknown format {fmt!r}; choose {', '.join(FORMATS)}", file=stderr)
        return 2
    if fmt == "counter" and period != "month":
        print("the counter format is monthly; use --period month", file=stderr)
        return 2
    settings = stats_settings(config)
    try:
        rows = sqlite_rows(settings.path, None, date_to)
        if config.session.store == "redis":
            url, password = config.session.redis_url, redis_password(config)
            rows += redis_rows_sync(url, None, date_to, password=password)
    # Say what failed; no partial report.
    except (sqlite3.Error, OSError, RedisError, SecretError) as exc:
        print(f"statistics could not be read: {type(exc).__name__}: {exc}", file=stderr)
        return 1
    report = build_report(
        rows,
        period=period,
        date_from=date_from,
        date_to=date_to,
        min_cell=settings.min_cell,
        today=today,
    )
    stdout.write(_RENDERERS[fmt](report))
    return 0
