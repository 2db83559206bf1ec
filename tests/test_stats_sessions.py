"""Sessions started at a vendor, counted once per session whatever the page does.

Real slapd, the proxy through tests.harness, an aiohttp stand-in vendor and the SQLite
statistics file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.stats import REQUESTS, sqlite_rows, stats_settings
from tests.canary import CANARY
from tests.harness import ldap_directory, start_proxy, vendor_toml, write_config

ONE = "www.stats-one.test"


# --------------------------------------------------------------------------- counts after traffic


async def test_concurrent_first_requests_of_one_session_are_one_session_started(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any
) -> None:
    """A patron's first requests at a database that overlap (a slow start page clicked twice,
    several tabs opened from the menu, a page whose images come from another configured
    database) are one session started there, as `unique_sessions` counts it. Before, each
    request decided "first" from its own copy of the session and `sessions_started` read 5:
    now only the request whose write adds the vendor to the session's "seen" counts
    (`Sessions.save_vendor`, a compare-and-set)."""
    vendor = await vendor_factory(ONE)

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.4)
        return web.Response(text="<html><body>start</body></html>", content_type="text/html")

    vendor.routes["/start"] = slow
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        extra='\n[stats]\npath = "state/stats.sqlite3"\nmin_cell = 3\n',
    )
    client, driver = await start_proxy(cfg)
    try:
        assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
        answers = await asyncio.gather(*(driver.get_vendor(ONE, "/start") for _ in range(5)))
        assert [r.status for r in answers] == [200] * 5
    finally:
        await client.close()  # the last flush of the counts
    got = {
        (r.vendor, r.metric): r.count
        for r in sqlite_rows(stats_settings(driver.config).path, None, None)
    }
    assert got[("one", REQUESTS)] == 5
    assert got[("one", "unique_sessions")] == 1
    assert got[("one", "sessions_started")] == 1, "one session, counted as several"
