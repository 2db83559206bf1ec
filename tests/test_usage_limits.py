"""Usage limits without identity: a stolen card downloading in a loop is stopped; nobody else is."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import statistics
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web

from proxy.secrets_ import server_secret
from proxy.sessions import storage_key
from proxy.usage_limits import BYTE_UNITS, is_full_text
from tests.canary import CANARY, WREN, leaks
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

VENDOR_HOST = "www.vendor-one.test"
PDF_SIZE = 100_000


def _pdf(size: int = PDF_SIZE) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"%PDF-1.7\n" + b"x" * (size - 9), content_type="application/pdf")

    return handler


async def _ranged(request: web.Request) -> web.StreamResponse:
    """A part of a PDF after its first (the range from byte 0 is the document's download)."""
    return web.Response(
        status=206,
        body=b"x" * 1024,
        content_type="application/pdf",
        headers={"Content-Range": f"bytes 1024-2047/{PDF_SIZE}"},
    )


async def _setup(
    root: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    limits: str,
    session: str = 'store = "memory"',
) -> tuple[ProxyDriver, RecordingVendor]:
    vendor = await vendor_factory(VENDOR_HOST)
    vendor.routes["/paper.pdf"] = _pdf()
    vendor.routes["/range.pdf"] = _ranged
    cfg = write_config(
        root,
        port=port,
        directory=ldap_directory(slapd, root),
        vendors={"one": vendor_toml("one", vendor, extra=f"\n[limits]\n{limits}\n")},
        session=session,
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    return driver, vendor


@pytest.fixture
async def downloads(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor]:
    return await _setup(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, "downloads_per_hour = 5"
    )


async def _download(driver: ProxyDriver, n: int) -> list[int]:
    """Fetch the PDF n times (each a distinct URL, body read); the statuses in order."""
    statuses = []
    for i in range(n):
        r = await driver.get_vendor(VENDOR_HOST, f"/paper.pdf?n={i}")
        await r.read()
        statuses.append(r.status)
    return statuses


def _pdf_requests(vendor: RecordingVendor) -> int:
    return sum(1 for r in vendor.requests if r.path_qs.startswith("/paper.pdf"))


async def test_stolen_card_downloading_in_a_loop_is_suspended_at_the_limit(
    downloads: Any, log_stream: io.StringIO
) -> None:
    """Five PDFs, then the session is paused: 429 page with the library's contact, and the vendor
    receives nothing more."""
    driver, vendor = downloads
    await driver.login(CANARY.uid, CANARY.password)
    sid = driver.session_id()
    assert sid
    assert await _download(driver, 12) == [200] * 5 + [429] * 7
    assert _pdf_requests(vendor) == 5
    r = await driver.get_vendor(VENDOR_HOST, "/an-ordinary-page")
    html = (await r.text()).replace("&#39;", "'")
    assert r.status == 429
    assert "This session has been paused" in html
    assert "contact the library" in html
    assert driver.config.library.contact in html
    assert len(vendor.requests) == 5, "a suspended session sends the vendor nothing"
    # Nothing that identifies the patron or the session was logged or sent to the vendor.
    logs = log_stream.getvalue().encode()
    assert b"session_suspended" in logs
    for blob in (logs, vendor.all_bytes()):
        assert leaks(blob) == []
        assert sid.encode() not in blob
        assert storage_key(sid).encode() not in blob
    assert b"suspend" not in vendor.all_bytes().lower()


async def test_downloads_fetched_at_once_are_held_to_the_limit(downloads: Any) -> None:
    """A script fetching twelve PDFs at once (bulk downloaders do): each is counted when the
    vendor's answer starts, so five reach the patron and the rest get the paused page (the vendor
    answered those too, once; counting after each body let all twelve through)."""
    driver, vendor = downloads
    await driver.login(CANARY.uid, CANARY.password)

    async def one(i: int) -> tuple[int, bytes]:
        r = await driver.get_vendor(VENDOR_HOST, f"/paper.pdf?n={i}")
        return r.status, await r.read()

    answers = await asyncio.gather(*(one(i) for i in range(12)))
    delivered = [body for status, body in answers if status == 200]
    assert len(delivered) == 5 and all(body.startswith(b"%PDF") for body in delivered)
    assert sorted(status for status, _ in answers) == [200] * 5 + [429] * 7
    before = _pdf_requests(vendor)
    assert (await driver.get_vendor(VENDOR_HOST, "/paper.pdf?later")).status == 429
    assert _pdf_requests(vendor) == before, "a suspended session sends the vendor nothing"


async def test_the_paused_page_is_a_problem_page_like_the_others(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """On a vendor host: the own-page headers every other problem page has (no Referer from the
    vendor host to the library's help page, own assets only, no framing) and the staff code."""
    driver, _ = await _setup(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, "requests_per_minute = 1"
    )
    await driver.login(CANARY.uid, CANARY.password)
    for i in range(3):
        r = await driver.get_vendor(VENDOR_HOST, f"/p{i}")
        html = await r.text()
    assert r.status == 429
    assert r.headers["Referrer-Policy"] == "no-referrer"
    for name in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"):
        assert name in r.headers, name
    assert r.headers["Cache-Control"] == "no-store"
    assert "suspended (429)" in html
    assert driver.config.library.contact in html.replace("&#39;", "'")


async def test_other_patrons_are_unaffected_by_a_suspension(downloads: Any) -> None:
    driver, _vendor = downloads
    await driver.login(CANARY.uid, CANARY.password)
    thief = driver.session_id()
    await _download(driver, 6)
    assert (await driver.get_vendor(VENDOR_HOST, "/", sid=thief)).status == 429
    await driver.login(WREN.uid, WREN.password)
    r = await driver.get_vendor(VENDOR_HOST, "/paper.pdf")
    assert r.status == 200
    assert (await r.read()).startswith(b"%PDF")


async def test_suspension_is_counted_once_in_aggregate(downloads: Any) -> None:
    driver, _ = downloads
    await driver.login(CANARY.uid, CANARY.password)
    await _download(driver, 9)
    text = await (await driver.own("GET", "/metrics")).text()
    line = next(x for x in text.splitlines() if x.startswith("weston_proxy_suspensions_total"))
    assert line == 'weston_proxy_suspensions_total{vendor="one"} 1.0'


async def test_pages_and_partial_ranges_are_not_downloads(downloads: Any) -> None:
    """HTML navigation and a PDF viewer's 206 ranges after the first (which counts the document
    once: tests/test_abuse_limits.py) never use up the download limit."""
    driver, _ = downloads
    await driver.login(CANARY.uid, CANARY.password)
    for i in range(12):
        r = await driver.get_vendor(VENDOR_HOST, "/range.pdf" if i % 2 else f"/page{i}")
        await r.read()
        assert r.status in (200, 206), i


async def test_requests_per_minute_limit(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    driver, vendor = await _setup(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, "requests_per_minute = 4"
    )
    await driver.login(CANARY.uid, CANARY.password)
    statuses = [(await driver.get_vendor(VENDOR_HOST, f"/p{i}")).status for i in range(6)]
    # A minute boundary between requests resets the count: allow one extra success then.
    assert statuses[:4] == [200] * 4
    assert statuses[-1] == 429
    assert len(vendor.requests) in (4, 5)


async def test_bytes_per_hour_limit(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """With 256 000 bytes an hour, the third 100 000-byte PDF crosses the limit."""
    driver, vendor = await _setup(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        f"bytes_per_hour = {BYTE_UNITS * 1000}",
    )
    await driver.login(CANARY.uid, CANARY.password)
    assert await _download(driver, 5) == [200, 200, 200, 429, 429]
    assert _pdf_requests(vendor) == 3


async def test_counters_in_redis_name_no_session_and_no_vendor(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    redis_url: str,
) -> None:
    """The shared counters work through Redis and their names are opaque."""
    driver, _vendor = await _setup(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        "downloads_per_hour = 2",
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )
    await driver.login(CANARY.uid, CANARY.password)
    sid = driver.session_id()
    assert sid
    assert await _download(driver, 4) == [200, 200, 429, 429]
    raw = redis.Redis.from_url(redis_url)
    try:
        usage = [k for k in raw.keys("*") if b":usage:" in k]
    finally:
        raw.close()
    assert usage
    names = b"\n".join(usage).replace(b"weston:c:usage:", b"")
    for needle in (sid, storage_key(sid), "one", VENDOR_HOST):
        assert needle.encode() not in names
    # Someone holding Redis and the server secret sees the session's storage key (its Redis key)
    # and can try every vendor id: the counter's name must not follow from those.
    key = hashlib.sha256(b"usage-limits-v1\x00" + server_secret(driver.config)).digest()
    for stored in (storage_key(sid), "weston:s:" + storage_key(sid)):
        guess = hmac.new(key, stored.encode() + b"\x00one", hashlib.sha256).hexdigest()
        assert guess.encode() not in names


@pytest.mark.parametrize(
    ("method", "status", "ctype", "expected"),
    [
        ("GET", 200, "application/pdf", True),
        ("GET", 200, "application/epub+zip", True),
        ("GET", 200, "application/octet-stream", True),
        ("GET", 200, "Application/PDF; name=x.pdf", True),
        ("GET", 206, "application/pdf", False),
        ("HEAD", 200, "application/pdf", False),
        ("GET", 200, "text/html; charset=utf-8", False),
        ("GET", 404, "application/pdf", False),
    ],
)
def test_what_counts_as_a_full_text_download(
    method: str, status: int, ctype: str, expected: bool
) -> None:
    assert is_full_text(method, status, ctype) is expected


def test_byte_units_are_right_on_average() -> None:
    """Random rounding of the remainder keeps the expected count exact."""
    from proxy.usage_limits import UsageLimits

    limits = UsageLimits.__new__(UsageLimits)
    import random

    limits._rng = random.Random(7)
    per_hour = BYTE_UNITS * 1000  # unit = 1000 bytes
    assert limits.byte_units(5000, per_hour) == 5
    samples = [limits.byte_units(2500, per_hour) for _ in range(4000)]
    assert set(samples) == {2, 3}
    assert abs(statistics.mean(samples) - 2.5) < 0.05
    assert limits.byte_units(10**12, per_hour) == BYTE_UNITS + 1


async def test_close_lets_counts_being_written_land_and_stops_the_rest(monkeypatch: Any) -> None:
    """At shutdown a count still being written is waited for (the store closes after the
    features), a stuck one is stopped after CLOSE_WAIT_S, and close returns with none left."""
    import types

    from proxy import usage_limits

    monkeypatch.setattr(usage_limits, "CLOSE_WAIT_S", 0.3)
    limits = usage_limits.UsageLimits(types.SimpleNamespace(secret=b"synthetic"))  # type: ignore[arg-type]
    landed = asyncio.Event()

    async def quick() -> None:
        await asyncio.sleep(0.05)
        landed.set()

    async def stuck() -> None:
        await asyncio.Event().wait()

    tasks = {"a": asyncio.create_task(quick()), "b": asyncio.create_task(stuck())}
    limits._pending.update(tasks)
    await limits.close()
    assert landed.is_set()
    assert tasks["a"].done() and not tasks["a"].cancelled()
    assert tasks["b"].cancelled()
