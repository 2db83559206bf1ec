"""Usage statistics end to end: real slapd, recording vendors, the proxy, the `stats` CLI, Redis.

A known sequence of patron actions (logins, two searches with a distinctive term, a PDF, a request
refused as not eligible, a request for an unknown host) is driven from a distinctive loopback
client address. Afterwards the statistics (SQLite file read raw, or every Redis key and value),
/metrics, the `records` output and the logs must hold the right counts and none of: canary
values, the client address, the search term or the paths.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.config import Config, load_config
from proxy.logs import configure_logging
from proxy.stats import sqlite_rows, stats_settings
from proxy.usage_stats import CLOCK
from tests.canary import CANARY, HERON, leaks
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

ONE, TWO = "www.vendor-one.test", "www.vendor-two.test"
CLIENT_IP = "127.0.0.9"  # the patron's address: the proxy listens on 127.0.0.1
DAY = dt.date(2026, 3, 10)  # counts are dated here, a whole past day, so reports show them
SEARCH_PATH, SEARCH_TERM = "/find-zq7", "heronsgate-zq9"
PDF_PATH = "/fulltext/zq8-article.pdf"
UNKNOWN_HOST = "canary-zq6.example"
TRACKER = "tracker-zq5.example"
SECRETS = [CLIENT_IP, SEARCH_PATH, SEARCH_TERM, "zq8-article", "zq6", "find-zq7", "zq5"]


def clean(data: bytes) -> list[str]:
    """Canary forms and request details found in `data` (empty = clean)."""
    return leaks(data) + [s for s in SECRETS if s.encode() in data]


def fixed_clock() -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(12, 0), tzinfo=dt.UTC)


async def pdf(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"%PDF-1.4\n" + b"x" * 2000, content_type="application/pdf")


async def search_page(request: web.Request) -> web.StreamResponse:
    # A tracker the shield holds back: counted per vendor, its host never stored.
    page = (
        f"<html><head><script src='https://{TRACKER}/t.js'></script></head><body>hits</body></html>"
    )
    return web.Response(text=page, content_type="text/html")


@pytest.fixture
async def vendors(vendor_factory: Any) -> tuple[RecordingVendor, RecordingVendor]:
    one = await vendor_factory(ONE)
    one.routes.update({PDF_PATH: pdf, SEARCH_PATH: search_page})
    two = await vendor_factory(TWO)
    return one, two


def make_config(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendors: Any,
    *,
    session: str = 'store = "memory"',
    directory: str | None = None,
) -> Path:
    one, two = vendors
    return write_config(
        tmp_path,
        port=port,
        directory=directory or ldap_directory(slapd, tmp_path),
        vendors={
            "one": vendor_toml("one", one, extra='search_paths = ["^/find-"]\n'),
            "two": vendor_toml(
                "two", two, extra='[eligibility]\nldap_filter = "(employeeType=resident)"\n'
            ),
        },
        session=session,
        extra=textwrap.dedent(
            """
            [stats]
            path = "state/stats.sqlite3"
            min_cell = 3
            refresh_interval_s = 0.2
            """
        ),
    )


Start = Callable[[Path], Any]


@pytest.fixture
async def proxies(log_stream: io.StringIO) -> AsyncIterator[tuple[Start, Callable[..., Any]]]:
    """Start proxies whose patrons connect from CLIENT_IP; stop() one to flush its counts."""
    running: list[TestClient[Any, Any]] = []

    async def start(config_path: Path) -> ProxyDriver:
        from proxy.cli import config_checks

        config = load_config(config_path, extra_checks=config_checks())
        configure_logging("debug", "json", stream=log_stream)
        app = create_app(config)
        app[CLOCK] = fixed_clock
        server = TestServer(app, host="127.0.0.1", port=config.listen_addr[1])
        connector = aiohttp.TCPConnector(local_addr=(CLIENT_IP, 0))
        client: TestClient[Any, Any] = TestClient(server, connector=connector)
        await client.start_server()
        running.append(client)
        return ProxyDriver(client, config)

    async def stop(driver: ProxyDriver) -> None:
        running.remove(driver.client)
        await driver.client.close()  # app cleanup: the last flush of the counts

    yield start, stop
    for c in running:
        await c.close()


async def browse(driver: ProxyDriver) -> None:
    """The known sequence. Vendor one: 5 requests, 2 searches (each page with one tracker), 1 PDF,
    2 sessions; two: 1 denial; library-wide: 2 logins, 1 failed login, 1 unknown host."""
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    for path in ("/", f"{SEARCH_PATH}?q={SEARCH_TERM}", f"{SEARCH_PATH}?q={SEARCH_TERM}&p=2"):
        assert (await driver.get_vendor(ONE, path)).status == 200
    r = await driver.get_vendor(ONE, PDF_PATH)
    assert r.status == 200 and (await r.read()).startswith(b"%PDF")
    r = await driver.client.get("/", headers={"Host": UNKNOWN_HOST}, allow_redirects=False)
    assert r.status == 404
    assert (await driver.login(CANARY.uid, "wrong-pin")).status == 401
    assert (await driver.login(HERON.uid, HERON.password)).status == 303
    assert (await driver.get_vendor(TWO, "/")).status == 403
    assert (await driver.get_vendor(ONE, "/")).status == 200


@pytest.fixture
async def browsed(
    tmp_path: Path, port: int, running_slapd: Any, vendors: Any, proxies: Any
) -> ProxyDriver:
    """A proxy on the default config that has run the known sequence (still running)."""
    start, _ = proxies
    driver: ProxyDriver = await start(make_config(tmp_path, port, running_slapd, vendors))
    await browse(driver)
    return driver


async def browse_and_restart(proxies: Any, cfg: Path) -> ProxyDriver:
    """Run the known sequence on one proxy, stop it (flush), start a second on the same file."""
    start, stop = proxies
    first = await start(cfg)
    await browse(first)
    await stop(first)
    second: ProxyDriver = await start(cfg)
    return second


async def search_once_and_stop(proxies: Any, driver: ProxyDriver) -> None:
    """One more login and one more search at vendor one, then stop (flush)."""
    _, stop = proxies
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert (await driver.get_vendor(ONE, f"{SEARCH_PATH}?q={SEARCH_TERM}")).status == 200
    await stop(driver)


def counts(config: Config) -> dict[tuple[str, str], int]:
    return {
        (r.vendor, r.metric): r.count for r in sqlite_rows(stats_settings(config).path, None, None)
    }


EXPECTED = {
    ("", "logins_success"): 2,
    ("", "logins_failure"): 1,
    ("", "denied_not_configured"): 1,
    ("one", "requests"): 5,
    ("one", "sessions_started"): 2,
    ("one", "unique_sessions"): 2,
    ("one", "searches"): 2,
    ("one", "downloads_pdf"): 1,
    ("one", "blocked_third_party"): 2,
    ("two", "denied_not_eligible"): 1,
}


async def run_cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_counts_match_the_known_sequence(browsed: ProxyDriver, proxies: Any) -> None:
    """After shutdown (the last flush) the file holds exactly the counts of the sequence."""
    _, stop = proxies
    driver = browsed
    await stop(driver)
    got = counts(driver.config)
    assert {k: got.get(k) for k in EXPECTED} == EXPECTED
    assert got[("one", "bytes")] >= 2009  # the PDF at least
    assert {day for day, *_ in _days(driver.config)} == {DAY.isoformat()}


def _days(config: Config) -> list[tuple[str, ...]]:
    return [(r.day.isoformat(),) for r in sqlite_rows(stats_settings(config).path, None, None)]


async def test_stats_file_bytes_hold_no_patron_address_path_or_search(
    tmp_path: Path, browsed: ProxyDriver, proxies: Any
) -> None:
    """Every byte of the SQLite file (and any journal) is free of canaries and request details."""
    _, stop = proxies
    await stop(browsed)
    files = list((tmp_path / "state").glob("stats.sqlite3*"))
    assert files, "the stats file exists"
    raw = b"".join(f.read_bytes() for f in files)
    assert b"logins_success" in raw  # the test reads the real file
    assert clean(raw) == []


async def test_metrics_records_and_logs_hold_no_patron_address_path_or_search(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendors: Any,
    proxies: Any,
    log_stream: io.StringIO,
) -> None:
    """/metrics, `records` (both formats) and every log line are clean after the sequence."""
    start, _ = proxies
    cfg = make_config(tmp_path, port, running_slapd, vendors)
    driver = await start(cfg)
    await browse(driver)
    metrics = await (await driver.own("GET", "/metrics")).read()
    assert b'weston_proxy_requests_total{status_class="2xx",vendor="one"} 5.0' in metrics
    records_text = await run_cli("records", "--config", str(cfg))
    records_json = await run_cli("records", "--config", str(cfg), "--format", "json")
    assert "Sessions: 2 active" in records_text
    for name, data in [
        ("metrics", metrics),
        ("records", records_text.encode()),
        ("records json", records_json.encode()),
        ("logs", log_stream.getvalue().encode()),
    ]:
        assert clean(data) == [], name


async def test_counts_survive_a_restart_and_keep_adding_up(
    tmp_path: Path, port: int, running_slapd: Any, vendors: Any, proxies: Any
) -> None:
    """Stop (flush), start a new proxy on the same file: the counts are there, new ones add."""
    second = await browse_and_restart(proxies, make_config(tmp_path, port, running_slapd, vendors))
    assert counts(second.config)[("one", "requests")] == 5
    await search_once_and_stop(proxies, second)
    got = counts(second.config)
    assert got[("", "logins_success")] == 3
    assert got[("one", "requests")] == 6
    assert got[("one", "searches")] == 3
    assert got[("one", "sessions_started")] == 3
    assert got[("one", "unique_sessions")] == 3


async def test_stats_cli_shows_big_cells_and_hides_small_ones(
    tmp_path: Path, port: int, running_slapd: Any, vendors: Any, proxies: Any
) -> None:
    """`weston-proxy stats` (a subprocess) publishes counts >= min_cell (3) and hides 1s and 2s."""
    cfg = make_config(tmp_path, port, running_slapd, vendors)
    await search_once_and_stop(proxies, await browse_and_restart(proxies, cfg))
    day = DAY.isoformat()
    out = await run_cli(
        "stats", "--config", str(cfg), "--period", "day", "--from", day, "--to", day,
        "--format", "json",
    )  # fmt: skip
    assert clean(out.encode()) == []
    doc = json.loads(out)
    line = {(r["vendor"], r["period"]): r for r in doc["rows"]}
    one, lib = line[("one", day)], line[("", day)]
    assert one["counts"]["requests"] == 6
    assert one["counts"]["searches"] == 3
    assert lib["counts"]["logins_success"] == 3
    assert one["counts"]["downloads_pdf"] is None and "downloads_pdf" in one["suppressed"]
    assert lib["counts"]["logins_failure"] is None
    assert line[("two", day)]["counts"]["denied_not_eligible"] is None
    text = await run_cli(
        "stats", "--config", str(cfg), "--period", "day", "--from", day, "--to", day
    )
    assert "[c]" in text
    # Days are UTC days, and the report says so (a Connecticut evening falls on the next date).
    assert f"Period: day (UTC); covered: {day} to {day}" in text


async def test_redis_stats_hold_counts_and_no_patron_bytes(
    tmp_path: Path, port: int, running_slapd: Any, vendors: Any, proxies: Any, redis_url: str
) -> None:
    """With store = redis the counts go to Redis; no key or value there holds a canary or detail."""
    start, stop = proxies
    session = f'store = "redis"\nredis_url = "{redis_url}"\n'
    cfg = make_config(tmp_path, port, running_slapd, vendors, session=session)
    driver = await start(cfg)
    await browse(driver)
    records_text = await run_cli("records", "--config", str(cfg))
    assert "Sessions: 2 active" in records_text
    assert clean(records_text.encode()) == []
    await stop(driver)
    assert not (tmp_path / "state" / "stats.sqlite3").exists()
    assert clean(_redis_dump(redis_url)) == []
    day = DAY.isoformat()
    out = await run_cli(
        "stats", "--config", str(cfg), "--period", "day", "--from", day, "--to", day,
        "--format", "json",
    )  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    try:
        held = client.hgetall(f"weston:stats:{day}")
    finally:
        client.close()
    assert held[b"one|requests"] == b"5"
    assert held[b"one|sessions_started"] == b"2"
    line = {(r["vendor"], r["period"]): r for r in json.loads(out)["rows"]}
    # Two sessions made those five requests: fewer than min_cell (3) people, so hidden.
    assert line[("one", day)]["counts"]["requests"] is None
    assert line[("one", day)]["counts"]["downloads_pdf"] is None


def _redis_dump(url: str) -> bytes:
    """Every key and value in Redis, whatever its type, as bytes."""
    client = redis.Redis.from_url(url)
    parts: list[bytes] = []
    try:
        for key in client.scan_iter(count=500):
            parts.append(key)
            kind = client.type(key)
            if kind == b"string":
                parts.append(client.get(key) or b"")
            elif kind == b"hash":
                for f, v in client.hgetall(key).items():
                    parts += [f, v]
            elif kind == b"zset":
                for m, s in client.zrange(key, 0, -1, withscores=True):
                    parts += [m, repr(s).encode()]
            elif kind == b"set":
                parts += list(client.smembers(key))
            elif kind == b"list":
                parts += list(client.lrange(key, 0, -1))
    finally:
        client.close()
    assert any(p.startswith(b"weston:stats:") for p in parts)
    return b"\n".join(parts)
