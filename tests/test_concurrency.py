"""From a review of what happens when things happen at once: parallel sign-ins against the
throttle, a reload while a request waits for its slot, a host first reached by an image, a
download longer than the idle timeout. The reviewer's five tests first, then the edges of
each fix."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.web.messages import MESSAGES
from tests.canary import CANARY
from tests.harness import ldap_directory, vendor_toml, write_config

HOST = "www.race-db.test"


CARD_LIMIT = 3
POOL_SIZE = 4  # directory.pool_size default
GUESSES = 24


async def test_parallel_wrong_pins_reach_directory_at_most_limit_plus_pool(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """`card_limit` failed sign-ins per card per window; proxy/throttle.py's own known limit
    says a burst of parallel guesses exceeds it by at most the number in flight, "bounded by the
    directory's worker pool per instance". A burst of 24 parallel wrong PINs for one card on one
    instance: at most card_limit + pool_size of them may be tried against the directory; the
    rest must be refused with 429 before the directory is asked."""
    d, _vendor = await _race_proxy(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        extra=f"\n[throttle]\ncard_limit = {CARD_LIMIT}\naddress_limit = 1000\n",
    )
    statuses = await d.logins_at_once([(CANARY.uid, f"wrong-pin-{i}") for i in range(GUESSES)])
    tried = [s for s in statuses if s != 429]
    assert 303 not in statuses
    assert len(tried) <= CARD_LIMIT + POOL_SIZE, statuses


GONE = "www.gone-db.test"


async def test_request_waiting_for_a_slot_when_reload_removes_its_vendor(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: Any,
) -> None:
    """A request waiting for its vendor's admission slot while a reload removes that vendor:
    once admitted it must get a clear answer (the vendor is not configured any more, 404), not
    a 500 from the new forwarder that has no adapter for the removed vendor."""
    from proxy.reload import Reloader
    from proxy.services import SERVICES

    keep = await vendor_factory(HOST)
    gone = await vendor_factory(GONE)
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        await release.wait()  # holds the vendor's only slot until the reload is done
        return web.Response(text="<p>slow</p>", content_type="text/html")

    gone.routes["/slow"] = slow
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "race": vendor_toml("race", keep),
            "gone": vendor_toml("gone", gone, extra="max_in_flight = 1\n"),
        },
    )
    d = await proxy_factory(cfg)
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    admission = d.client.app[SERVICES].admission

    async def until(condition: Callable[[], bool], what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, what
            await asyncio.sleep(0.01)

    first = asyncio.create_task(d.get_vendor(GONE, "/slow"))
    await until(lambda: len(gone.requests) == 1, "the first request reaches the vendor")
    second = asyncio.create_task(d.get_vendor(GONE, "/queued"))
    await until(lambda: admission.waiting.get("gone", 0) == 1, "the second waits for the slot")
    (tmp_path / "vendors" / "gone.toml").unlink()
    outcome = await Reloader(d.client.app[SERVICES]).reload()
    assert outcome.ok, outcome
    release.set()
    r1 = await asyncio.wait_for(first, 30)
    await r1.read()
    r2 = await asyncio.wait_for(second, 30)
    await r2.read()
    errors = [line for line in log_stream.getvalue().splitlines() if "internal_error" in line]
    assert (r2.status, errors) == (404, [])
    assert [q.path_qs for q in gone.requests] == ["/slow"]


async def test_parallel_wrong_cards_from_one_address_bounded(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """`address_limit` failed sign-ins per client address per window (docs/systemd-and-tls.md:
    "20 failed sign-ins per address per 15-minute window"); a burst of parallel guesses may pass
    it by at most the directory's worker pool (proxy/throttle.py, known limit). 24 parallel
    made-up cards from one address with address_limit = 3: at most 3 + pool_size reach the
    directory."""
    d, _vendor = await _race_proxy(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        extra="\n[throttle]\naddress_limit = 3\ncard_limit = 1000\n",
    )
    statuses = await d.logins_at_once([(f"2999900099{i:04d}", "wrong-pin") for i in range(GUESSES)])
    tried = [s for s in statuses if s != 429]
    assert len(tried) <= 3 + POOL_SIZE, statuses


CDN = "img.race-db.test"


async def test_first_page_on_a_host_first_reached_by_a_subresource_starts_clean(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """README: "every session starts clean on every host: its first page there carries
    Clear-Site-Data too, so nothing one session's pages stored reaches another's". A vendor
    page on www loads an image from the vendor's img host (a page's parallel loads), so the
    session's first request to img is not a page; when the patron then opens a page on img,
    that first page must still carry Clear-Site-Data, or what the last patron's pages stored
    on img (local storage: recent searches) is there for this one."""
    vendor = await vendor_factory(HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"race": vendor_toml("race", vendor, hosts=[HOST, CDN])},
    )
    d = await proxy_factory(cfg)
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    nav = {
        "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-Dest": "document",
        "Sec-Fetch-Site": "none",
        "Accept": "text/html",
    }
    r = await d.get_vendor(HOST, "/", headers=nav)
    assert r.status == 200 and "Clear-Site-Data" in r.headers
    img = {
        "Sec-Fetch-Mode": "no-cors",
        "Sec-Fetch-Dest": "image",
        "Sec-Fetch-Site": "same-site",
        "Accept": "image/*",
    }
    r = await d.get_vendor(CDN, "/logo.png", headers=img)
    assert r.status == 200
    r = await d.get_vendor(CDN, "/page", headers={**nav, "Sec-Fetch-Site": "same-site"})
    assert r.status == 200
    assert "Clear-Site-Data" in r.headers, dict(r.headers)


async def test_session_in_use_by_a_long_download_is_not_idle(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """docs/records-and-retention.md: a session ends after `idle_timeout_s` "without a request".
    A download that streams for longer than the idle timeout is a request in progress the whole
    time: when it finishes, the patron's next click must still be signed in."""
    vendor = await vendor_factory(HOST)

    async def long_pdf(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        await resp.prepare(request)
        for _ in range(14):
            await resp.write(b"%PDF" + b"x" * 4096)
            await asyncio.sleep(0.25)
        await resp.write_eof()
        return resp

    vendor.routes["/big.pdf"] = long_pdf
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"race": vendor_toml("race", vendor)},
        session='store = "memory"\nidle_timeout_s = 2\nlifetime_s = 60',
    )
    d = await proxy_factory(cfg)
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    r = await d.get_vendor(HOST, "/big.pdf")
    assert r.status == 200
    body = await r.read()
    assert len(body) == 14 * 4100
    r = await d.get_vendor(HOST, "/next")
    assert r.status == 200, r.headers.get("Location")


# --------------------------------------------------------------------------- sign-in throttle


async def _race_proxy(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    extra: str = "",
    session: str = 'store = "memory"',
) -> tuple[Any, Any]:
    """The proxy with one recording vendor ("race" at HOST) on the real slapd: (driver, vendor)."""
    vendor = await vendor_factory(HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"race": vendor_toml("race", vendor)},
        extra=extra,
        session=session,
    )
    return await proxy_factory(cfg), vendor


async def _throttled_proxy(*args: Any, **kw: Any) -> Any:
    return (await _race_proxy(*args, **kw))[0]


async def _wrong(d: Any, card: str, n: int) -> list[int]:
    return [(await d.login(card, "wrong-pin")).status for _ in range(n)]


async def test_parallel_wrong_pins_on_redis_are_held_to_the_limit(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    redis_url: str,
) -> None:
    """The reservation is the store's atomic add: on Redis too, a burst of 24 parallel wrong
    PINs for one card reaches the directory at most `card_limit` times (not limit + pool)."""
    d = await _throttled_proxy(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        f"\n[throttle]\ncard_limit = {CARD_LIMIT}\naddress_limit = 1000\n",
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )
    statuses = await d.logins_at_once([(CANARY.uid, f"wrong-{i}") for i in range(GUESSES)])
    assert len([s for s in statuses if s != 429]) <= CARD_LIMIT, statuses


async def test_sign_ins_that_succeeded_in_parallel_leave_nothing_counted(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A success gives its reservation back: after parallel right PINs (some may wait out
    the limit in flight), the card still has all its tries: `card_limit` wrong PINs are each
    answered 401, and only the next is refused."""
    d = await _throttled_proxy(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        f"\n[throttle]\ncard_limit = {CARD_LIMIT}\n",
    )
    statuses = await d.logins_at_once([(CANARY.uid, CANARY.password)] * CARD_LIMIT)
    assert set(statuses) <= {303, 429} and 303 in statuses, statuses
    assert await _wrong(d, CANARY.uid, CARD_LIMIT) == [401] * CARD_LIMIT
    assert (await d.login(CANARY.uid, CANARY.password)).status == 429


async def test_tries_refused_on_a_locked_card_do_not_use_up_the_address(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A try the card's counter refuses gives back what it reserved on the address's: someone
    hammering one locked card at a branch does not lock every other patron there out."""
    from tests.canary import WREN

    d = await _throttled_proxy(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        "\n[throttle]\ncard_limit = 2\naddress_limit = 4\n",
    )
    assert await _wrong(d, CANARY.uid, 2) == [401, 401]
    assert await _wrong(d, CANARY.uid, 6) == [429] * 6
    assert (await d.login(WREN.uid, WREN.password)).status == 303


async def test_an_outage_during_a_burst_gives_every_try_back(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Sign-ins answered 503 (directory down) are not guesses: their reservations are given
    back, so once the directory is back the patron has every try."""
    d = await _throttled_proxy(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        f"\n[throttle]\ncard_limit = {CARD_LIMIT}\n",
    )
    running_slapd.stop()
    try:
        assert set(await _wrong(d, CANARY.uid, CARD_LIMIT + 2)) == {503}
    finally:
        running_slapd.start()
    assert await _wrong(d, CANARY.uid, CARD_LIMIT) == [401] * CARD_LIMIT
    assert (await d.login(CANARY.uid, "wrong-pin")).status == 429


async def test_store_counters_go_back_down() -> None:
    """`incr(by=-1)` gives back what was added, in the memory store (Redis: the contract
    suite)."""
    from proxy.sessions import MemoryStore

    store = MemoryStore()
    assert [await store.incr("k-hashed", 5) for _ in range(2)] == [1, 2]
    assert await store.incr("k-hashed", 5, by=-1) == 1
    assert await store.incr("k-hashed", 5) == 2
    await store.close()


# --------------------------------------------------------------------------- reload mid-request


async def test_reload_during_a_gate_that_removes_the_vendor_gets_not_configured(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """A reload while a request is in a feature gate (an await after the vendor was found):
    the request is decided again under the new configuration, where the vendor is gone: the
    "not configured" page, and the vendor is not asked."""
    from proxy.reload import Reloader
    from proxy.services import SERVICES

    keep = await vendor_factory(HOST)
    gone = await vendor_factory(GONE)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"race": vendor_toml("race", keep), "gone": vendor_toml("gone", gone)},
    )
    d = await proxy_factory(cfg)
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    svc = d.client.app[SERVICES]

    async def reloading_gate(request: web.Request, session: Any, vendor: Any) -> None:
        if vendor.id == "gone":
            (tmp_path / "vendors" / "gone.toml").unlink()
            assert (await Reloader(svc).reload()).ok
        return None

    svc.hooks.gates.append(reloading_gate)
    try:
        r = await d.get_vendor(GONE, "/page")
        assert r.status == 404
        assert MESSAGES["not_configured"].title in (await r.text()).replace("&#39;", "'")
    finally:
        svc.hooks.gates.remove(reloading_gate)
    assert gone.requests == []
    assert (await d.get_vendor(HOST, "/still")).status == 200


# --------------------------------------------------------------------------- first page per host


async def _two_host_proxy(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> Any:
    vendor = await vendor_factory(HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"race": vendor_toml("race", vendor, hosts=[HOST, CDN])},
    )
    d = await proxy_factory(cfg)
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    return d


NAV = {
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Site": "none",
    "Accept": "text/html",
}
IMG = {
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Dest": "image",
    "Sec-Fetch-Site": "same-site",
    "Accept": "image/*",
}


async def test_only_the_first_page_on_a_host_is_cleared(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Images before and after never carry Clear-Site-Data; the first page does, the second
    does not (it would wipe what this session's own first page stored)."""
    d = await _two_host_proxy(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    seen = []
    for headers in (IMG, IMG, NAV, IMG, NAV):
        r = await d.get_vendor(CDN, "/x", headers=headers)
        assert r.status == 200
        seen.append("Clear-Site-Data" in r.headers)
    assert seen == [False, False, True, False, False]


async def test_sign_out_still_clears_a_host_reached_only_by_an_image(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """`Session.hosts` still notes a host on any request: sign-out asks the browser to forget
    a host the session reached only through an image."""
    from proxy.services import SERVICES

    d = await _two_host_proxy(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    assert (await d.get_vendor(CDN, "/logo.png", headers=IMG)).status == 200
    session = await d.client.app[SERVICES].sessions.load(d.sid)
    assert session is not None and CDN in session.hosts
    assert CDN not in session.state["cleared"]


async def test_a_session_begun_by_an_older_version_is_cleared_as_that_code_did(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Rolling upgrade: a session an older instance began has no "cleared" list; its hosts
    are cleared on a page that is the session's first request there (as before), and never
    again on pages after (so its pages' storage is not wiped mid-session by the upgrade)."""
    from proxy.services import SERVICES
    from proxy.sessions import CLEARED

    d = await _two_host_proxy(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    svc = d.client.app[SERVICES]
    session = await svc.sessions.load(d.sid)
    assert session is not None
    session.state.pop(CLEARED)
    await svc.sessions.store.put(session, 600)
    r = await d.get_vendor(HOST, "/", headers=NAV)
    assert "Clear-Site-Data" in r.headers
    r = await d.get_vendor(HOST, "/again", headers=NAV)
    assert "Clear-Site-Data" not in r.headers
    assert (await d.get_vendor(CDN, "/logo.png", headers=IMG)).status == 200
    r = await d.get_vendor(CDN, "/page", headers=NAV)
    assert "Clear-Site-Data" not in r.headers


async def test_parallel_writes_keep_every_cleared_host() -> None:
    """Two overlapping requests each clearing a host: both hosts stay noted (the list is
    merged in the store's compare-and-set, not overwritten by one request's copy)."""
    from proxy.sessions import CLEARED, MemoryStore, Sessions, copy_session

    sessions = Sessions(MemoryStore(), idle_timeout_s=600, lifetime_s=3600)
    session = await sessions.start(patron_key="k", databases=frozenset({"race"}))
    a, b = copy_session(session), copy_session(session)
    await sessions.save_vendor(a, "race", [], "a.test", cleared="a.test")
    await sessions.save_vendor(b, "race", [], "b.test", cleared="b.test")
    stored = await sessions.load(session.id)
    assert stored is not None
    assert sorted(stored.state[CLEARED]) == ["a.test", "b.test"]
    assert sorted(stored.hosts) == ["a.test", "b.test"]
    await sessions.store.close()


# --------------------------------------------------------------------------- long downloads


def _slow_pdf(chunks: int) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        await resp.prepare(request)
        for _ in range(chunks):
            await resp.write(b"%PDF" + b"x" * 4096)
            await asyncio.sleep(0.25)
        await resp.write_eof()
        return resp

    return handler


async def test_a_long_download_does_not_outlive_the_absolute_limit(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """Use keeps a session from going idle, never past `lifetime_s`: a download that ends
    after it leaves the next click at the sign-in page."""
    d, vendor = await _race_proxy(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        session='store = "memory"\nidle_timeout_s = 2\nlifetime_s = 3',
    )
    vendor.routes["/big.pdf"] = _slow_pdf(14)
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    r = await d.get_vendor(HOST, "/big.pdf")
    assert len(await r.read()) == 14 * 4100
    r = await d.get_vendor(HOST, "/next")
    assert r.status == 302 and "/login" in r.headers["Location"]


async def test_a_session_ended_during_a_download_stays_ended(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """The use recorded during a relay is written onto the session as stored: a sign-out
    (elsewhere) during the download is not undone by it."""
    from proxy.services import SERVICES

    d, vendor = await _race_proxy(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        session='store = "memory"\nidle_timeout_s = 2\nlifetime_s = 60',
    )
    vendor.routes["/big.pdf"] = _slow_pdf(10)
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    download = asyncio.create_task(d.get_vendor(HOST, "/big.pdf"))
    await asyncio.sleep(0.8)
    assert d.sid is not None
    await d.client.app[SERVICES].sessions.store.delete(d.sid)
    r = await download
    await r.read()
    assert await d.client.app[SERVICES].sessions.load(d.sid) is None


async def test_an_ordinary_request_records_no_use_after_it(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    monkeypatch: Any,
) -> None:
    """A response relayed in less than `touch_every_s` costs no write at its end (or during)."""
    from proxy.sessions import Sessions

    calls: list[str] = []
    real = Sessions.in_use

    async def counted(self: Sessions, session: Any) -> None:
        calls.append(session.id)
        await real(self, session)

    monkeypatch.setattr(Sessions, "in_use", counted)
    d, _vendor = await _race_proxy(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    for path in ("/a", "/b", "/c"):
        assert (await d.get_vendor(HOST, path)).status == 200
    assert calls == []
