"""Statistics, /metrics and logs against P5 and P6 (see DESIGN.md), read by someone who can read
what staff may read (the `stats` report, the SQLite file, /metrics) and wants to learn what one
patron did: small-cell suppression counts people (sessions), not events, so one patron's
requests, bytes or blocked trackers are hidden however large; /metrics gives no document's size;
no log line holds a patron or request detail. (From a review: the first part failed before.)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.stats import BLOCKED_THIRD_PARTY, BYTES, REQUESTS, SESSIONS_STARTED, Row
from proxy.stats_report import (
    ALL_VENDORS,
    build_report,
    render_csv,
    render_json,
    render_text,
    run_stats,
)
from tests.canary import CANARY, leaks
from tests.harness import ldap_directory, start_proxy, vendor_toml, write_config

DAY = dt.date(2026, 3, 10)
TODAY = dt.date(2026, 3, 20)
ONE = "www.vendor-one.test"
PDF_PATH = "/fulltext/zq8-article.pdf"
PDF_BODY = b"%PDF-1.4\n" + b"z" * 48204  # 48,213 bytes: "the" article a patron read


def one_patron_day(metric: str, value: int) -> list[Row]:
    """A quiet day: one patron made one request at vendor `one`; busy vendor `two` beside it."""
    return [
        Row(DAY, "one", REQUESTS, 1),
        Row(DAY, "one", metric, value),
        Row(DAY, "two", REQUESTS, 400),
        Row(DAY, "two", metric, value * 300),
    ]


# --------------------------------------------------------------------------- one patron's activity


@pytest.mark.parametrize(
    ("metric", "value"),
    [(BYTES, 48_213), (BLOCKED_THIRD_PARTY, 14)],
)
def test_a_cell_made_by_one_request_is_hidden_whatever_its_magnitude(
    metric: str, value: int
) -> None:
    """P6: a vendor-day with a single request is a small cell in every metric of that request.

    `bytes` and `blocked_third_party` are sums of magnitudes, not counts of events: one request
    can add 48,213 bytes or 14 blocked hosts. One session made them, fewer than min_cell, so
    they are hidden like the request count (the size would name the document fetched, the
    trackers the page seen).
    """
    report = build_report(
        one_patron_day(metric, value),
        period="day",
        date_from=DAY,
        date_to=DAY,
        min_cell=10,
        today=TODAY,
    )
    day = DAY.isoformat()
    assert report.cell(REQUESTS, "one", day).suppressed  # the one request is hidden
    shown = report.cell(metric, "one", day).value
    assert shown is None, f"{metric} of one request published as {shown}"


async def _pdf(request: web.Request) -> web.StreamResponse:
    return web.Response(body=PDF_BODY, content_type="application/pdf")


async def _pdf_vendor_config(tmp_path: Path, port: int, slapd: Any, vendor_factory: Any) -> Path:
    """A proxy config with one vendor serving the PDF, statistics in SQLite, min_cell 10."""
    vendor = await vendor_factory(ONE)
    vendor.routes[PDF_PATH] = _pdf
    return write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        extra='\n[stats]\npath = "state/stats.sqlite3"\nmin_cell = 10\n',
    )


async def test_the_published_day_report_does_not_give_the_size_of_one_patrons_download(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any
) -> None:
    """End to end: one patron signs in and downloads one PDF on a quiet day. The day report
    (`weston-proxy stats --period day --format json`) hides the request, the download and the
    bytes for that vendor and day: the bytes would be exactly the PDF's size, which names the
    article among the vendor's documents."""
    cfg = await _pdf_vendor_config(tmp_path, port, running_slapd, vendor_factory)
    # The counts are dated by a fixed clock: read from the wall clock, a request made just
    # before midnight (UTC) would be counted on one day and looked for on the next.
    today = DAY
    client, driver = await start_proxy(
        cfg, stats_clock=lambda: dt.datetime.combine(today, dt.time(12, 0), tzinfo=dt.UTC)
    )
    try:
        assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
        r = await driver.get_vendor(ONE, PDF_PATH)
        assert r.status == 200 and await r.read() == PDF_BODY
    finally:
        await client.close()  # the last flush of the counts
    out, err = io.StringIO(), io.StringIO()
    code = run_stats(
        driver.config,
        date_from=today,
        date_to=today,
        period="day",
        fmt="json",
        stdout=out,
        stderr=err,
        today=today + dt.timedelta(days=1),  # the day has closed
    )
    assert code == 0, err.getvalue()
    rows = {(r["vendor"], r["period"]): r for r in json.loads(out.getvalue())["rows"]}
    line = rows[("one", today.isoformat())]
    assert line["counts"]["requests"] is None  # 1 < min_cell: hidden
    assert line["counts"]["downloads_pdf"] is None  # 1 < min_cell: hidden
    assert line["counts"]["bytes"] is None, (
        f"bytes published as {line['counts']['bytes']} (the PDF is {len(PDF_BODY)} bytes)"
    )


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


async def test_metrics_scrapes_around_one_patrons_request_do_not_give_the_documents_size(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """/metrics at a quiet hour: with one patron signed in, no sample grows by the exact size of
    the one document they fetched between two scrapes (a byte counter did: the size names the
    document). Per-vendor request counts stay, for operations; docs/records-and-retention.md
    says what they show and how to keep them."""
    driver = await proxy_factory(
        await _pdf_vendor_config(tmp_path, port, running_slapd, vendor_factory)
    )
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    before = _samples(await (await driver.own("GET", "/metrics")).read())
    assert (await driver.get_vendor(ONE, PDF_PATH)).status == 200
    after = _samples(await (await driver.own("GET", "/metrics")).read())
    assert after[("weston_proxy_active_sessions", ())] == 1
    assert after[("weston_proxy_requests_total", (("status_class", "2xx"), ("vendor", "one")))] > 0
    grew = {k: v - before.get(k, 0) for k, v in after.items()}
    sized = sorted(k[0] for k, d in grew.items() if d == len(PDF_BODY))
    assert sized == [], f"{sized} grew by the document's {len(PDF_BODY)} bytes"


# --------------------------------------------------------------------------- differencing and logs


def test_a_lone_small_cell_cannot_be_worked_out_from_totals_in_any_format() -> None:
    """Verified: a lone small vendor count gets a complement, so the total minus the shown cells
    gives nothing, and text, CSV and JSON hide the same cells."""
    rows = [
        *(Row(DAY, v, SESSIONS_STARTED, 20) for v in ("one", "two", "three")),
        Row(DAY, "one", REQUESTS, 3),
        Row(DAY, "two", REQUESTS, 40),
        Row(DAY, "three", REQUESTS, 57),
    ]
    report = build_report(rows, period="day", date_from=DAY, date_to=DAY, min_cell=10, today=TODAY)
    day = DAY.isoformat()
    assert report.cell(REQUESTS, ALL_VENDORS, day).value == 100
    hidden = {v for v in ("one", "two", "three") if report.cell(REQUESTS, v, day).suppressed}
    assert hidden == {"one", "two"}
    table = list(csv.reader(render_csv(report).splitlines()))
    col = table[0].index(REQUESTS)
    assert {r[0] for r in table[1:] if r[1] == day and r[col] == "[c]"} == hidden
    assert "  3" not in render_text(report).split("\n\n", 1)[1]
    doc = json.loads(render_json(report))
    nulls = {
        r["vendor"] for r in doc["rows"] if r["period"] == day and r["counts"][REQUESTS] is None
    }
    assert nulls == hidden


CLIENT_IP = "127.0.0.9"
SEARCH_TERM = "heronsgate-zq9"


async def test_every_log_line_of_a_realistic_session_is_free_of_patron_and_request_details(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, log_stream: io.StringIO
) -> None:
    """Verified: sign-in (good and bad PIN, canary card numbers), searches with a canary term in
    the query, a PDF, a vendor that refuses connections, an unknown host, sign-out: no log line
    holds a canary, the search term, a query string, the client address, the session id or a
    vendor URL with its path."""
    import aiohttp
    from aiohttp.test_utils import TestClient, TestServer

    from proxy.app import create_app
    from proxy.cli import config_checks
    from proxy.config import load_config
    from proxy.logs import configure_logging
    from tests.harness import ProxyDriver, free_port

    one = await vendor_factory(ONE)
    one.routes[PDF_PATH] = _pdf
    dead_host = "www.vendor-dead.test"
    dead = vendor_toml("dead", one, hosts=[dead_host]).replace(
        f"127.0.0.1:{one.port}", f"127.0.0.1:{free_port()}"
    )
    dead = dead.replace(f'origin = "{one.origin}"', f'origin = "http://{dead_host}"')
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", one, extra='search_paths = ["^/find"]\n'), "dead": dead},
        extra='\n[stats]\npath = "state/stats.sqlite3"\n',
    )
    config = load_config(cfg, extra_checks=config_checks())
    configure_logging("debug", "json", stream=log_stream)
    server = TestServer(create_app(config), host="127.0.0.1", port=port)
    client: TestClient[Any, Any] = TestClient(
        server, connector=aiohttp.TCPConnector(local_addr=(CLIENT_IP, 0))
    )
    await client.start_server()
    driver = ProxyDriver(client, config)
    try:
        assert (await driver.login(CANARY.uid, "wrong-" + CANARY.password)).status == 401
        assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
        sid = driver.sid
        assert sid
        for q in (f"/find?q={SEARCH_TERM}", f"/find?q={CANARY.surname}&page=2"):
            assert (await driver.get_vendor(ONE, q)).status == 200
        assert (await driver.get_vendor(ONE, PDF_PATH)).status == 200
        assert (await driver.get_vendor(dead_host, f"/find?q={SEARCH_TERM}")).status == 502
        r = await client.get(f"/x?q={SEARCH_TERM}", headers={"Host": "canary-zq6.example"})
        assert r.status == 404
        assert (await driver.own("POST", "/logout")).status == 200
        assert (await driver.get_vendor(ONE, f"/find?q={SEARCH_TERM}", sid=sid)).status in (
            302,
            303,
        )
    finally:
        await client.close()
    logs = log_stream.getvalue()
    assert '"vendor_failed"' in logs and '"logout"' in logs  # the logs of this run are read
    found = leaks(logs.encode()) + [
        s
        for s in (SEARCH_TERM, CLIENT_IP, sid, "zq8-article", "zq6", "/find", "?q=", dead_host)
        if s in logs
    ]
    assert found == []
