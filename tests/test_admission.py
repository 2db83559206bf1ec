"""Admission control: at most server.max_in_flight proxied requests are worked on at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.canary import CANARY
from tests.harness import ldap_directory, vendor_toml, write_config

VENDOR_HOST = "www.vendor-one.test"


async def test_requests_beyond_the_cap_wait_their_turn_and_all_succeed(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """With max_in_flight = 2, a burst of 8 slow requests never has more than 2 at the vendor,
    and every one of them is answered 200 (queued, not refused)."""
    vendor = await vendor_factory(VENDOR_HOST)
    at_vendor = 0
    most = 0

    async def slow(request: web.Request) -> web.StreamResponse:
        nonlocal at_vendor, most
        at_vendor += 1
        most = max(most, at_vendor)
        await asyncio.sleep(0.2)
        at_vendor -= 1
        return web.Response(body=b"ok", content_type="application/octet-stream")

    vendor.routes["/slow"] = slow
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    cfg.write_text(cfg.read_text().replace("[server]\n", "[server]\nmax_in_flight = 2\n", 1))
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    responses = await asyncio.gather(*(driver.get_vendor(VENDOR_HOST, "/slow") for _ in range(8)))
    assert [r.status for r in responses] == [200] * 8
    assert most == 2


def test_max_in_flight_must_be_positive(tmp_path: Path) -> None:
    from proxy.config import load_config
    from proxy.errors import ConfigError

    (tmp_path / "vendors").mkdir()
    (tmp_path / "p.toml").write_text("")
    (tmp_path / "proxy.toml").write_text(
        '[server]\nmax_in_flight = 0\npublic_url = "http://proxy.localhost:8080"\n'
        '[directory]\nkind = "file"\npatrons_file = "p.toml"\n'
    )
    try:
        load_config(tmp_path / "proxy.toml")
    except ConfigError as exc:
        assert any(p.key == "server.max_in_flight" for p in exc.problems)
    else:
        raise AssertionError("max_in_flight = 0 was accepted")
