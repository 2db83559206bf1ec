"""Statistics and the records inventory hold no patron: totals, token retention, Redis key kinds.

From a review of issue #6 end to end: one patron's day published as the all-vendors total (one
session at three databases counted as three people), a total whose hiding depended on the other
months a report covered, session tokens kept past two hours while the store was down, Redis key
kinds missing from `records`, and an unreadable statistics file called empty. Every test failed
before its fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.config import Config, load_config
from proxy.records import inventory, render_text
from proxy.redis_store import RedisStore
from proxy.sessions import Session
from proxy.stats import UNIQUE_SESSIONS, Counters, Recorder, RedisStatsStore, sqlite_add
from proxy.stats_report import ALL_VENDORS, Report, build_report, render_csv, run_stats
from proxy.stats_store import Row
from proxy.usage_stats import CLOCK
from tests.canary import CANARY
from tests.harness import ProxyDriver, free_port, ldap_directory, vendor_toml, write_config

FILE_DIRECTORY = 'kind = "file"\npatrons_file = "patrons.toml"\n'


def config(tmp_path: Path, *, session: str = 'store = "memory"') -> Config:
    (tmp_path / "patrons.toml").write_text("")
    cfg = write_config(
        tmp_path,
        port=free_port(),
        directory=FILE_DIRECTORY,
        vendors={},
        session=session + "\nidle_timeout_s = 1200\nlifetime_s = 14400\n",
    )
    return load_config(cfg)


async def test_records_counts_every_kind_of_key_the_proxy_keeps_in_redis(
    tmp_path: Path, redis_url: str
) -> None:
    """`records` is the answer to "what do you hold": with store = "redis" it must account for
    every key the proxies keep there. docs/records-and-retention.md lists the unique-session
    token sets (`weston:stats-seen:*`, keyed digests of session ids, kept two hours) and the
    statistics batch ids as records; `records` counts only sessions and rate counters, so the
    token sets a patron's visit left in Redis are missing from the inventory."""
    cfg = config(tmp_path, session=f'store = "redis"\nredis_url = "{redis_url}"')
    store = RedisStore(url=redis_url, key=b"k" * 32)
    now = time.time()
    try:
        await store.put(
            Session(
                id=f"session-{CANARY.uid}",
                patron_key=CANARY.uid,
                databases=frozenset({"one"}),
                created=now - 60,
                last_seen=now,
                csrf="c",
            ),
            600,
        )
    finally:
        await store.close()
    # One flush of a running proxy: a request at vendor "one" by that session.
    sink = RedisStatsStore(
        redis_url, seen_key=hashlib.sha256(b"stats-seen-v1\x00" + b"s" * 32).digest()
    )
    counters = Counters()
    counters.count("one", "requests")
    counters.unique("one", UNIQUE_SESSIONS, "token-of-the-session")
    await Recorder(sink, counters=counters).close()

    client = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(k.decode() for k in client.scan_iter(match="*"))
    finally:
        client.close()
    seen_sets = [k for k in keys if k.startswith("weston:stats-seen:")]
    assert len(seen_sets) == 1  # the session's token digest, kept up to two hours
    # Every key is a record of some kind and must be counted: sessions, the session index
    # (weston:live, weston:born: hashed ids with expiry and login times), rate counters,
    # statistics days, token sets, batch ids.
    records_kept = keys

    inv = await asyncio.to_thread(inventory, cfg)
    kinds = inv["sessions"]["key_kinds"]
    counted = sum(kinds.values()) + inv["sessions"]["statistics"]["days"]
    assert counted == len(records_kept), (kinds, records_kept)


def test_records_does_not_call_an_unreadable_statistics_file_empty(tmp_path: Path) -> None:
    """A statistics file `records` cannot read (damaged, or not readable by the staff account
    running `records`) is described as "empty" in the text report, and `records` exits 0: staff
    answering a records request are told the file holds nothing when its contents are unknown.
    proxy.stats_store.stats_inventory notes the error; proxy.records.render_text ignores it."""
    cfg = config(tmp_path)
    path = tmp_path / "state" / "stats.sqlite3"
    sqlite_add(path, {("2026-01-05", "one", "requests"): 40})
    data = bytearray(path.read_bytes())
    data[:16] = b"not a database!\x00"  # the header damaged: the rows are there, unreadable
    path.write_bytes(bytes(data))
    inv = inventory(cfg, timeout_s=0.5)
    assert "error" in inv["statistics"]  # the inventory knows
    text = render_text(inv)
    stats_line = next(line for line in text.splitlines() if line.startswith("Statistics file"))
    assert "empty" not in stats_line, stats_line
    assert "unreadable" in text or "could not be read" in text, stats_line


# --------------------------------------------------------------------------- suppression


def _report(rows: list[Row], date_from: dt.date, date_to: dt.date) -> Report:
    return build_report(
        rows,
        period="month",
        date_from=date_from,
        date_to=date_to,
        min_cell=10,
        today=dt.date(2026, 3, 15),
    )


def test_two_patrons_downloads_total_is_hidden_whatever_other_months_the_report_covers() -> None:
    """January: one patron at database "a" and one at "b" each download 12 PDFs (one session
    started at each); 20 sessions at "w" download no PDF. February: "w" has PDFs.

    The all-vendors PDF total of January (24) was made by 2 sessions, below min_cell = 10: the
    January-only report hides it, as the docs promise ("a cell (and a period's all-vendors
    total) that fewer than min_cell of them made is hidden"). The January-to-February report
    publishes it as 24, because "w" is now a row of the PDF table and its 20 sessions (which
    made none of the PDFs) are counted among the people who made January's PDF total. So the
    same closed month reads differently in two reports (the guarantee in
    docs/records-and-retention.md), and two patrons' downloads are published.
    Fault: proxy.stats_report._publish (`few` for the total row sums people over every vendor
    of the table, including those with no count in that period)."""
    jan, feb = dt.date(2026, 1, 10), dt.date(2026, 2, 10)
    rows = [
        Row(jan, "a", "sessions_started", 1),
        Row(jan, "a", "requests", 30),
        Row(jan, "a", "downloads_pdf", 12),
        Row(jan, "b", "sessions_started", 1),
        Row(jan, "b", "requests", 30),
        Row(jan, "b", "downloads_pdf", 12),
        Row(jan, "w", "sessions_started", 20),
        Row(jan, "w", "requests", 200),
        Row(feb, "w", "sessions_started", 20),
        Row(feb, "w", "requests", 200),
        Row(feb, "w", "downloads_pdf", 15),
    ]
    january = _report(rows, dt.date(2026, 1, 1), dt.date(2026, 1, 31))
    both = _report(rows, dt.date(2026, 1, 1), dt.date(2026, 2, 28))
    assert january.cell("downloads_pdf", ALL_VENDORS, "2026-01").suppressed
    # The same month, published the same, in every report; and never the two patrons' 24.
    assert both.cell("downloads_pdf", ALL_VENDORS, "2026-01").suppressed
    assert "24" not in render_csv(both).split("*,2026-01,")[1].split("\n")[0]


# --------------------------------------------------------------------------- token lifetime


class _DownSink:
    """A statistics store that cannot be written (disk full, Redis away)."""

    async def add(self, *args: Any, **kwargs: Any) -> None:
        raise OSError("No space left on device")

    async def rows(self, *args: Any) -> list[Row]:
        return []

    async def close(self) -> None:
        pass


async def test_an_idle_proxy_forgets_session_tokens_while_the_statistics_store_is_down() -> None:
    """docs/records-and-retention.md: unique-session tokens (keyed digests of session ids) stay
    in memory "until the hour closes and the next flush (at most two hours if the statistics
    store is down, then only the count is kept)"; Counters.roll: "the Recorder calls this even
    when idle". A patron's last request at 22:05, then the statistics store fails and no one
    uses the proxy overnight: every flush first retries the unconfirmed batch, which raises,
    so `counters.roll()` is never reached and the 22:00 token set is still held at 03:05.
    Fault: proxy.stats.Recorder.flush (roll is skipped when the retry of the unconfirmed batch
    fails)."""
    now = [dt.datetime(2026, 3, 10, 22, 5, tzinfo=dt.UTC)]
    counters = Counters(clock=lambda: now[0])
    recorder = Recorder(_DownSink(), counters=counters)
    counters.count("one", "requests")
    counters.unique("one", UNIQUE_SESSIONS, "token-of-the-canary-session")
    for hours in range(6):  # the flush timer keeps running, the proxy is idle
        now[0] = dt.datetime(2026, 3, 10, 22, 5, tzinfo=dt.UTC) + dt.timedelta(hours=hours)
        with contextlib.suppress(OSError):
            await recorder.flush()
    assert counters.open_tokens() == 0  # 03:05: the 22:00 hour closed five hours ago
    # The count itself is not lost: it waits for the store.
    assert recorder.pending()[("2026-03-10", "one", UNIQUE_SESSIONS)] == 1


# --------------------------------------------------------------------------- one patron, real traffic

DAY = dt.date(2026, 3, 10)
HOSTS = ("www.review-a.test", "www.review-b.test", "www.review-c.test")


def _clock() -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(12, 0), tzinfo=dt.UTC)


async def test_one_patrons_day_across_three_databases_is_not_published_as_the_total(
    tmp_path: Path, running_slapd: Any, vendor_factory: Any
) -> None:
    """One patron signs in once (one session) on a quiet day and opens three databases: 3
    requests each, one of them a 50 KB PDF. With min_cell = 3 every database's cells are hidden
    (one session started at each). The all-vendors total row is not: its "people" are the
    sessions started summed over databases (1 + 1 + 1 = 3), so the day report publishes that
    patron's own requests, bytes and sessions as the library's totals. The docstring of
    proxy.stats_report._publish promises that "a period's all-vendors total that fewer than
    min_cell [sessions] made is hidden however large its count" (docs: "one patron alone can
    make a hundred requests or fifty megabytes, and those are still one patron's").
    Fault: proxy.stats_report._publish (the total row's people add up one session once per
    database it visited)."""
    vendors = [await vendor_factory(h) for h in HOSTS]

    async def pdf(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"%PDF-1.4\n" + b"x" * 50_000, content_type="application/pdf")

    vendors[0].routes["/article.pdf"] = pdf
    port = free_port()
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={f"db{i}": vendor_toml(f"db{i}", v) for i, v in enumerate(vendors)},
        extra="[stats]\nmin_cell = 3\nrefresh_interval_s = 0.2\n",
    )
    from proxy.cli import config_checks

    config = load_config(cfg, extra_checks=config_checks())
    app = create_app(config)
    app[CLOCK] = _clock
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    try:
        driver = ProxyDriver(client, config)
        assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
        for host in HOSTS:
            for path in ("/", "/page-2", "/page-3"):
                assert (await driver.get_vendor(host, path)).status == 200
        r = await driver.get_vendor(HOSTS[0], "/article.pdf")
        assert r.status == 200 and len(await r.read()) > 50_000
    finally:
        await client.close()  # the last flush
    out, err = io.StringIO(), io.StringIO()
    day = DAY.isoformat()
    code = run_stats(
        config, date_from=DAY, date_to=DAY, period="day", fmt="json",
        stdout=out, stderr=err, today=DAY + dt.timedelta(days=1),
    )  # fmt: skip
    assert code == 0, err.getvalue()
    rows = {(r["vendor"], r["period"]): r for r in json.loads(out.getvalue())["rows"]}
    assert rows[("db0", day)]["counts"]["bytes"] is None  # each database: hidden
    total = rows[(ALL_VENDORS, day)]["counts"]
    # The day's totals are one session's: none of them may be published.
    assert total["requests"] is None, total
    assert total["bytes"] is None, total
    assert total["downloads_pdf"] is None, total
