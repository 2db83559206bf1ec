"""Admission control: at most server.max_in_flight proxied requests are worked on at once, one
vendor at most its share of them, and nobody waits longer than server.admission_wait_s."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.admission import Admission, vendor_share
from proxy.config import ServerConfig, VendorConfig
from proxy.errors import Busy
from tests.canary import CANARY, leaks
from tests.harness import SlowRoute, ldap_directory, vendor_toml, write_config

VENDOR_HOST = "www.vendor-one.test"
OTHER_HOST = "www.vendor-two.test"


def _config(tmp_path: Path, port: int, slapd: Any, vendors: dict[str, str], server: str) -> Path:
    """The test proxy's config with `server` lines added to its [server] table."""
    cfg = write_config(
        tmp_path, port=port, directory=ldap_directory(slapd, tmp_path), vendors=vendors
    )
    cfg.write_text(cfg.read_text().replace("[server]\n", f"[server]\n{server}\n", 1))
    return cfg


async def test_requests_beyond_the_cap_wait_their_turn_and_all_succeed(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """With max_in_flight = 2 (and the vendor allowed both slots, as the default share no longer
    does), a burst of 8 slow requests never has more than 2 at the vendor, and every one of them
    is answered 200 (queued, not refused)."""
    vendor = await vendor_factory(VENDOR_HOST)
    slow = SlowRoute(0.2)
    vendor.routes["/slow"] = slow
    cfg = _config(
        tmp_path,
        port,
        running_slapd,
        {"one": vendor_toml("one", vendor)},
        "max_in_flight = 2\nmax_in_flight_per_vendor = 2",
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    responses = await asyncio.gather(*(driver.get_vendor(VENDOR_HOST, "/slow") for _ in range(8)))
    assert [r.status for r in responses] == [200] * 8
    assert slow.most == 2


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


async def test_a_hung_vendor_holds_only_its_share_and_the_others_go_on_answering(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
) -> None:
    """max_in_flight = 4, each vendor's share 2. Six requests to a vendor that hangs: two reach
    it, four wait, and a request to another vendor is answered at once (with one shared cap of 4,
    the hung vendor would hold every slot). Past admission_wait_s the waiting four get a 503 page
    naming the database; the two at the vendor still end well, and nothing leaks a slot."""
    hung = await vendor_factory(VENDOR_HOST)
    other = await vendor_factory(OTHER_HOST)
    release = asyncio.Event()
    at_vendor = 0

    async def hang(request: web.Request) -> web.StreamResponse:
        nonlocal at_vendor
        at_vendor += 1
        await release.wait()
        return web.Response(body=b"late", content_type="application/octet-stream")

    hung.routes["/hang"] = hang
    vendors = {
        "one": vendor_toml("one", hung, title="Slow Periodicals"),
        "two": vendor_toml("two", other),
    }
    server = "max_in_flight = 4\nmax_in_flight_per_vendor = 2\nadmission_wait_s = 1.5"
    cfg = _config(tmp_path, port, running_slapd, vendors, server)
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303

    hanging = [asyncio.create_task(driver.get_vendor(VENDOR_HOST, "/hang")) for _ in range(6)]
    for _ in range(100):
        if at_vendor >= 2:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # time for the others to queue (or, without shares, to reach it)
    assert at_vendor == 2
    # What IT sees meanwhile: which vendor holds its slots, and how many wait for it.
    gauges = await (await driver.own("GET", "/metrics")).text()
    for line in (
        'weston_proxy_in_flight{vendor="one"} 2.0',
        'weston_proxy_admission_waiting{vendor="one"} 4.0',
        'weston_proxy_in_flight{vendor="two"} 0.0',
        'weston_proxy_admission_waiting{vendor="two"} 0.0',
    ):
        assert line in gauges.splitlines(), line

    loop = asyncio.get_running_loop()
    started = loop.time()
    r = await driver.get_vendor(OTHER_HOST, "/")
    assert r.status == 200
    assert "vendor www.vendor-two.test" in await r.text()
    assert loop.time() - started < 1.0  # answered at once, not after a wait for a slot

    for _ in range(250):  # the four waiting ones reach admission_wait_s
        if sum(t.done() for t in hanging) >= 4:
            break
        await asyncio.sleep(0.02)
    refused = [t.result() for t in hanging if t.done()]
    assert [x.status for x in refused] == [503] * 4
    page = await refused[0].text()
    assert "The database is busy" in page and "Slow Periodicals" in page
    assert refused[0].headers["Retry-After"] == "60"
    assert at_vendor == 2  # the refused ones never reached the vendor

    release.set()
    assert sorted(x.status for x in await asyncio.gather(*hanging)) == [200] * 2 + [503] * 4

    # Every slot came back: the vendor takes its full share again, and four at once overall.
    at_vendor = 0
    release.clear()
    again = [asyncio.create_task(driver.get_vendor(VENDOR_HOST, "/hang")) for _ in range(2)]
    for _ in range(100):
        if at_vendor == 2:
            break
        await asyncio.sleep(0.02)
    assert at_vendor == 2
    release.set()
    assert [(await t).status for t in again] == [200, 200]

    metrics = await (await driver.own("GET", "/metrics")).text()
    assert 'weston_proxy_denials_total{reason="busy"} 4.0' in metrics
    assert 'weston_proxy_in_flight{vendor="one"} 0.0' in metrics.splitlines()
    assert 'weston_proxy_admission_waiting{vendor="one"} 0.0' in metrics.splitlines()
    logged = [json.loads(line) for line in log_stream.getvalue().splitlines() if line.strip()]
    timeouts = [e for e in logged if e.get("event") == "admission_timeout"]
    assert len(timeouts) == 4 and {e["vendor"] for e in timeouts} == {"one"}
    assert not leaks(log_stream.getvalue().encode())


async def test_slot_waits_end_at_the_deadline_and_never_leak_a_slot() -> None:
    """Timed-out and cancelled waiters give nothing back that they did not take: after any mix,
    the whole cap and the vendor's share are free again."""
    admission = Admission(3)
    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with admission.slot("a", 2, wait_s=5):
            holding.set()
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await holding.wait()
    await asyncio.sleep(0)
    # Vendor a's share (2) is full: a third request for it waits, then is refused.
    with pytest.raises(Busy) as refused:
        async with admission.slot("a", 2, wait_s=0.05):
            raise AssertionError("admitted past the vendor's share")
    assert str(refused.value) == "a" and not refused.value.whole
    # Vendor b takes the last slot of the whole; a fourth request (vendor c) finds the whole full.
    async with admission.slot("b", 2, wait_s=1):
        with pytest.raises(Busy) as full:
            async with admission.slot("c", 2, wait_s=0.05):
                raise AssertionError("admitted past max_in_flight")
        assert full.value.whole
        # A waiter cancelled while it waits gives nothing back either.
        waiter = asyncio.create_task(admission.slot("c", 2, wait_s=5).__aenter__())
        await asyncio.sleep(0.02)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    release.set()
    await asyncio.gather(*holders)
    assert admission.whole._value == 3
    assert all(admission.share(v, 2)._value == 2 for v in "abc")


async def test_a_resized_whole_takes_new_requests_and_the_old_one_gets_its_slots_back() -> None:
    admission = Admission(2)
    old = admission.whole
    async with admission.slot("a", 2, wait_s=1):
        admission.resize(1)
        assert admission.whole is not old
        async with admission.slot("b", 2, wait_s=1):
            with pytest.raises(Busy) as full:  # the new cap of 1 is taken
                async with admission.slot("c", 2, wait_s=0.05):
                    raise AssertionError("admitted past the new max_in_flight")
            assert full.value.whole
    assert old._value == 2 and admission.whole._value == 1
    admission.resize(1)  # the same cap again changes nothing
    assert admission.whole._value == 1


def test_vendor_share_comes_from_the_vendor_then_the_server_then_three_quarters() -> None:
    vendor = VendorConfig(id="v", title="V", origin="https://v.test", hosts=("v.test",))
    assert vendor_share(ServerConfig(max_in_flight=64), vendor) == 48
    assert vendor_share(ServerConfig(max_in_flight=2), vendor) == 1  # one slot left for others
    assert vendor_share(ServerConfig(max_in_flight=64, max_in_flight_per_vendor=10), vendor) == 10
    own = VendorConfig(
        id="v", title="V", origin="https://v.test", hosts=("v.test",), max_in_flight=3
    )
    assert vendor_share(ServerConfig(max_in_flight=64, max_in_flight_per_vendor=10), own) == 3


@pytest.mark.parametrize(
    ("server", "vendor", "key"),
    [
        ("max_in_flight_per_vendor = 65", "", "server.max_in_flight_per_vendor"),
        ("max_in_flight_per_vendor = -1", "", "server.max_in_flight_per_vendor"),
        ("admission_wait_s = 0", "", "server.admission_wait_s"),
        ("", "max_in_flight = 65", "max_in_flight"),
        ("", "max_in_flight = -2", "max_in_flight"),
    ],
)
def test_admission_settings_out_of_range_name_their_file_and_key(
    tmp_path: Path, server: str, vendor: str, key: str
) -> None:
    from proxy.config import load_config
    from proxy.errors import ConfigError

    (tmp_path / "vendors").mkdir()
    (tmp_path / "p.toml").write_text("")
    (tmp_path / "vendors" / "v.toml").write_text(
        'id = "v"\ntitle = "V"\norigin = "https://www.v.test"\nhosts = ["www.v.test"]\n'
        + vendor
        + "\n"
    )
    (tmp_path / "proxy.toml").write_text(
        f'[server]\n{server}\npublic_url = "http://proxy.localhost:8080"\n'
        '[directory]\nkind = "file"\npatrons_file = "p.toml"\n[vendors]\ndir = "vendors"\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "proxy.toml")
    found = [(p.file, p.key) for p in exc.value.problems]
    expected_file = "v.toml" if vendor else "proxy.toml"
    assert any(k == key and f.endswith(expected_file) for f, k in found), found


async def test_a_patron_who_leaves_gives_the_slot_back_at_once(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any
) -> None:
    """`weston-proxy serve` itself (aiohttp's test server always cancels a handler whose patron
    left; `web.run_app` does not unless told): a patron who closes the tab during a slow search
    gives its slots back at once, not after the vendor's answer or upstream_timeout_s."""
    from tests.test_scale_out import serve

    vendor = await vendor_factory(VENDOR_HOST)
    answer = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(answer.wait(), 30)
        return web.Response(text="late")

    vendor.routes["/slow"] = slow
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    served = await serve(cfg)
    try:
        d = served.driver
        assert (await d.login(CANARY.uid, CANARY.password)).status == 303

        async def in_flight() -> float:
            text = await (await d.own("GET", "/metrics")).text()
            line = 'weston_proxy_in_flight{vendor="one"} '
            return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))

        async def until(value: float) -> float:
            for _ in range(50):
                if (now := await in_flight()) == value:
                    return now
                await asyncio.sleep(0.1)
            return await in_flight()

        _, writer = await asyncio.open_connection("127.0.0.1", port)
        cookie = f"{d.config.server.cookie_name}={d.session_id()}"
        writer.write(
            f"GET /slow HTTP/1.1\r\nHost: {d.mapped(VENDOR_HOST)}\r\nCookie: {cookie}\r\n\r\n"
            .encode()
        )  # fmt: skip
        await writer.drain()
        assert await until(1) == 1  # at the vendor
        writer.close()
        assert await until(0) == 0, "the slot stayed taken after the patron left"
    finally:
        answer.set()
        await served.stop()
