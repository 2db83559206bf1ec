"""From a second mutation sweep (2 December 2026) of usage limits, usage statistics and metrics:
each test here was written for a one-line change to the code that no other test noticed, and
fails with it."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from proxy.config import Limits, VendorConfig
from proxy.metrics import Metrics
from proxy.services import Hooks
from proxy.sessions import MemoryStore, Sessions
from proxy.usage_limits import BYTE_UNITS, Tracked
from tests.canary import CANARY
from tests.harness import ldap_directory, vendor_toml, write_config

REFUSED = web.Response(status=429, text="refused")


class SlowStore(MemoryStore):
    """A memory store whose every `incr` lets other tasks run first, as a network store does."""

    async def incr(self, key: str, window_s: float, *, by: int = 1) -> int:
        await asyncio.sleep(0)
        return await super().incr(key, window_s, by=by)


def _vendor(vid: str, **limits: int) -> VendorConfig:
    return VendorConfig(
        id=vid,
        title=vid.title(),
        origin=f"https://www.vendor-{vid}.test",
        hosts=(f"www.vendor-{vid}.test",),
        limits=Limits(**limits),
    )


async def _limits(store: Any = None, **limits: int) -> tuple[Any, Any, VendorConfig]:
    """A UsageLimits on a memory store with real Sessions, Metrics and Hooks (the suspended page
    stood in by REFUSED: the page itself needs the whole app), one signed-in session and vendor
    "one" with these `[limits]`."""
    from proxy.usage_limits import UsageLimits

    sessions = Sessions(store or MemoryStore(), idle_timeout_s=3600, lifetime_s=36000)
    vendor = _vendor("one", **limits)
    svc = types.SimpleNamespace(
        secret=b"synthetic-secret-0123456789abcdef",
        sessions=sessions,
        metrics=Metrics(),
        hooks=Hooks(),
        vendors={"one": vendor},
    )
    ul = UsageLimits(svc)  # type: ignore[arg-type]
    ul.refusal = lambda request: REFUSED  # type: ignore[method-assign]
    session = await sessions.start(patron_key="pk-synthetic", databases=frozenset({"one"}))
    return ul, session, vendor


def _get(path: str = "/doc") -> Any:
    return make_mocked_request("GET", path)


def _obs(vendor_id: str = "one", size: int = 1000, **kw: Any) -> Any:
    from proxy.forward import Observation

    fields: dict[str, Any] = {
        "vendor_id": vendor_id,
        "method": "GET",
        "status": 200,
        "bytes": size,
        "duration_s": 0.01,
        "content_type": "text/html",
        "path": "/",
        "first_at_vendor": False,
    }
    fields.update(kw)
    return Observation(**fields)


def _track(ul: Any, session: Any, vendor_id: str = "one") -> None:
    """What the gate leaves for the observer, set directly: the gate itself would wait for
    the counts still being written, and these tests need several at once."""
    ul._current.set(Tracked(session, vendor_id, ul.counter(session, vendor_id)))


async def _stored_suspended(ul: Any, session: Any) -> str:
    stored = await ul.svc.sessions.load(session.id)
    return stored.suspended


def _suspensions(ul: Any, vendor_id: str = "one") -> float | None:
    return ul.svc.metrics.registry.get_sample_value(
        "weston_proxy_suspensions_total", {"vendor": vendor_id}
    )


# --------------------------------------------------------------------------- usage_limits.py


async def test_each_vendor_and_each_session_has_its_own_counter() -> None:
    """kills: proxy/usage_limits.py:136 — `msg = session.id.encode() + b"\\x00" +
    vendor_id.encode()` → `msg = session.id.encode()`.

    A limit is per session and vendor: downloads at one database must not use up another's
    (a patron reading at two vendors would be suspended at the stricter one for reading at
    the other), and the counter's name must still name neither."""
    ul, session, _ = await _limits(downloads_per_hour=2)
    other = await ul.svc.sessions.start(patron_key="pk-other", databases=frozenset({"one"}))
    names = {
        ul.counter(session, "one"),
        ul.counter(session, "two"),
        ul.counter(other, "one"),
        ul.counter(other, "two"),
    }
    assert len(names) == 4
    for name in names:
        assert session.id not in name and other.id not in name
        assert "one" not in name.removeprefix("usage:")

    # Through the hooks: two downloads at vendor two and one at vendor one, limit 2 each.
    two = _vendor("two", downloads_per_hour=2)
    ul.svc.vendors["two"] = two
    for vendor in (two, two):
        assert await ul.gate(_get(), session, vendor) is None
        assert await ul.check_head(_get(), vendor, 200, "application/pdf", {}) is None
    assert await _stored_suspended(ul, session) == "downloads_per_hour"
    fresh = await ul.svc.sessions.start(patron_key="pk-fresh", databases=frozenset({"one"}))
    for vendor in (two, ul.svc.vendors["one"]):
        assert await ul.gate(_get(), fresh, vendor) is None
        assert await ul.check_head(_get(), vendor, 200, "application/pdf", {}) is None
    assert await _stored_suspended(ul, fresh) == ""


async def test_the_request_after_the_count_that_crossed_the_limit_is_refused() -> None:
    """kills: proxy/usage_limits.py:154 — `if fresh is not None and fresh.suspended:` →
    `if False:`.

    Each request carries its own copy of the session, read before the previous response's
    bytes were counted: the gate waits for that count and must then judge by the session as
    stored, or one more request reaches the vendor past `bytes_per_hour` (and, with limits
    on downloads only as well, every further one until the copy is read again)."""
    ul, session, vendor = await _limits(bytes_per_hour=BYTE_UNITS * 10)
    copy = await ul.svc.sessions.load(session.id)  # the next request's, read now
    assert await ul.gate(_get(), session, vendor) is None
    ul.observe(_obs(size=BYTE_UNITS * 10 * 2))  # twice the hour's bytes in one response
    assert await ul.gate(_get(), copy, vendor) is REFUSED
    assert await _stored_suspended(ul, session) == "bytes_per_hour"


async def test_requests_per_minute_is_counted_per_clock_minute(monkeypatch: Any) -> None:
    """kills: proxy/usage_limits.py:159 — `Window.at(now, 60)` → `Window.at(now, 3600)`.

    `requests_per_minute` is a rate: a patron reading steadily below it (here two requests
    in each of two minutes, limit two) is never suspended; counting the limit per hour would
    suspend them in their second minute."""
    from proxy import usage_limits

    minute = 1_780_000_020 - 1_780_000_020 % 60
    now = [minute + 5.0]
    monkeypatch.setattr(usage_limits, "time", types.SimpleNamespace(time=lambda: now[0]))
    ul, session, vendor = await _limits(requests_per_minute=2)
    for at in (minute + 5.0, minute + 30.0, minute + 65.0, minute + 90.0):
        now[0] = at
        assert await ul.gate(_get(), session, vendor) is None, at
    now[0] = minute + 100.0
    assert await ul.gate(_get(), session, vendor) is REFUSED
    assert await _stored_suspended(ul, session) == "requests_per_minute"


async def test_downloads_per_hour_counts_the_whole_hour(monkeypatch: Any) -> None:
    """kills: proxy/usage_limits.py:215 — the downloads window `Window.at(now, 3600)` →
    `Window.at(now, 60)`.

    `downloads_per_hour = 2`: a second document twenty minutes after the first, in the same
    clock hour, reaches the limit (a downloader pacing itself one a minute would otherwise
    never be held); the next clock hour starts again."""
    from proxy import usage_limits

    hour = 1_780_000_000 - 1_780_000_000 % 3600
    now = [hour + 60.0]
    monkeypatch.setattr(usage_limits, "time", types.SimpleNamespace(time=lambda: now[0]))
    ul, session, vendor = await _limits(downloads_per_hour=2)
    other = await ul.svc.sessions.start(patron_key="pk-other", databases=frozenset({"one"}))
    for who, times in (
        (other, (hour + 60.0, hour + 3660.0)),
        (session, (hour + 60.0, hour + 1260.0)),
    ):
        for at in times:
            now[0] = at
            assert await ul.gate(_get(), who, vendor) is None
            await ul.check_head(_get(), vendor, 200, "application/pdf", {})
    assert await _stored_suspended(ul, other) == ""
    assert await _stored_suspended(ul, session) == "downloads_per_hour"


async def test_a_session_suspended_by_two_requests_at_once_is_counted_once() -> None:
    """kills: proxy/usage_limits.py:227 — `if not await self.svc.sessions.suspend(...):
    return` → the answer ignored; and proxy/usage_limits.py:231 — `hook(vendor_id,
    "suspended")` removed (the statistics' count of suspensions).

    Two requests of one session (two copies of it) cross the limit together, or two proxy
    instances do: the session is suspended once, and the `weston_proxy_suspensions` metric
    and the statistics' `suspended` count say one session, not two."""
    ul, session, _ = await _limits(downloads_per_hour=1)
    denied: list[tuple[str, str]] = []
    ul.svc.hooks.denied.append(lambda vendor_id, reason: denied.append((vendor_id, reason)))
    a = await ul.svc.sessions.load(session.id)
    b = await ul.svc.sessions.load(session.id)
    await ul.suspend(a, "one", "downloads_per_hour")
    await ul.suspend(b, "one", "downloads_per_hour")
    assert _suspensions(ul) == 1
    assert denied == [("one", "suspended")]


async def test_the_gate_waits_for_every_count_still_being_written() -> None:
    """kills: proxy/usage_limits.py:248 — `previous = self._pending.get(tracked.counter)` →
    `previous = None`.

    With a store that answers over the network, a large response's count (here past the
    hour's bytes) may still be being written when a small one's is done: the gate waits only
    for the latest count, so the latest must wait for those before it, or the request after
    the large response reaches the vendor."""
    ul, session, vendor = await _limits(SlowStore(), bytes_per_hour=BYTE_UNITS * 10)
    copy = await ul.svc.sessions.load(session.id)
    _track(ul, session)
    ul.observe(_obs(size=BYTE_UNITS * 10 * 2))
    _track(ul, session)
    ul.observe(_obs(size=10))
    assert await ul.gate(_get(), copy, vendor) is REFUSED


async def test_a_finished_count_does_not_hide_the_one_after_it() -> None:
    """kills: proxy/usage_limits.py:266 — `if self._pending.get(name) is task:` → `if name in
    self._pending:`.

    When a small response's count lands, it must forget only itself: the large response
    after it, still being counted, is what the next gate has to wait for."""
    ul, session, vendor = await _limits(SlowStore(), bytes_per_hour=BYTE_UNITS * 10)
    copy = await ul.svc.sessions.load(session.id)
    _track(ul, session)
    ul.observe(_obs(size=10))
    _track(ul, session)
    ul.observe(_obs(size=BYTE_UNITS * 10 * 2))
    for _ in range(20):  # the small count lands; the large one is still at its start
        await asyncio.sleep(0)
    assert ul._pending
    assert await ul.gate(_get(), copy, vendor) is REFUSED


async def test_a_bytes_limit_under_256_bytes_an_hour_still_counts() -> None:
    """kills: proxy/usage_limits.py:272 — `unit = max(1, bytes_per_hour // BYTE_UNITS)` →
    `bytes_per_hour // BYTE_UNITS`.

    The configuration accepts any positive `bytes_per_hour` (a library testing its limits
    sets a tiny one): the unit is then one byte, not zero, and a response counts instead of
    failing the observer with ZeroDivisionError."""
    ul, session, vendor = await _limits(bytes_per_hour=100)
    assert ul.byte_units(40, 100) == 40
    assert await ul.gate(_get(), session, vendor) is None
    ul.observe(_obs(size=BYTE_UNITS * 2))
    await asyncio.gather(*ul._pending.values())
    assert await _stored_suspended(ul, session) == "bytes_per_hour"


async def test_a_store_outage_while_counting_bytes_is_logged_and_settled() -> None:
    """kills: proxy/usage_limits.py:294 — `except StoreUnavailable` removed (narrowed to
    another type).

    An outage while a response's bytes are counted is the store's, said once in the log
    with the dependency's name; the count's task ends quietly (no "exception never
    retrieved"), and the next gate meets the outage itself (the store page, fail closed)."""
    import io

    from proxy.errors import StoreUnavailable
    from proxy.logs import configure_logging

    log_stream = io.StringIO()
    configure_logging("info", "json", stream=log_stream)

    class DownStore(MemoryStore):
        async def incr(self, key: str, window_s: float, *, by: int = 1) -> int:
            raise StoreUnavailable("timeout")

    ul, session, vendor = await _limits(DownStore(), bytes_per_hour=BYTE_UNITS * 10)
    assert await ul.gate(_get(), session, vendor) is None
    ul.observe(_obs(size=BYTE_UNITS * 5))
    (task,) = ul._pending.values()
    await asyncio.wait([task], timeout=5)
    assert task.done() and task.exception() is None
    logged = log_stream.getvalue()
    assert "store_unavailable" in logged and '"dependency": "store"' in logged, logged
    assert session.id not in logged


async def test_bytes_and_downloads_are_counted_apart() -> None:
    """kills: proxy/usage_limits.py:291 — the bytes counter `:bytes:` → `:dl:` (the downloads
    counter).

    With both limits set, pages read (bytes) must not use up the downloads allowed, nor
    downloads the bytes: 40 small pages and no download leave the session free."""
    ul, session, vendor = await _limits(downloads_per_hour=5, bytes_per_hour=BYTE_UNITS * 1000)
    for _ in range(10):
        assert await ul.gate(_get(), session, vendor) is None
        ul.observe(_obs(size=4000))  # 4 units
        await asyncio.gather(*ul._pending.values())
    assert await ul.gate(_get(), session, vendor) is None
    assert await ul.check_head(_get(), vendor, 200, "application/pdf", {}) is None
    assert await _stored_suspended(ul, session) == ""


async def test_a_count_that_failed_does_not_lose_the_counts_after_it() -> None:
    """kills: proxy/usage_limits.py:283 — `with contextlib.suppress(Exception): await
    previous` → `await previous`.

    Each count waits for the one before it, whatever became of that one: a count that
    failed for a reason other than an outage (here a store error the proxy did not foresee)
    must not take the later responses' bytes with it, or a session could go past
    `bytes_per_hour` uncounted."""

    class OnceBroken(MemoryStore):
        failed = False

        async def incr(self, key: str, window_s: float, *, by: int = 1) -> int:
            await asyncio.sleep(0)
            if not self.failed:
                self.failed = True
                raise RuntimeError("synthetic store fault")
            return await super().incr(key, window_s, by=by)

    ul, session, _ = await _limits(OnceBroken(), bytes_per_hour=BYTE_UNITS * 10)
    _track(ul, session)
    ul.observe(_obs(size=10))
    first = next(iter(ul._pending.values()))
    _track(ul, session)
    ul.observe(_obs(size=BYTE_UNITS * 10 * 2))
    second = ul._pending[ul.counter(session, "one")]
    await asyncio.wait([first, second], timeout=5)
    assert isinstance(first.exception(), RuntimeError)
    assert second.exception() is None
    assert await _stored_suspended(ul, session) == "bytes_per_hour"


async def test_the_paused_page_links_to_the_librarys_help_page(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/usage_limits.py:178 — `if library.help_url:` → `if False:`.

    A patron whose session was paused is told how to reach the library: with
    `library.help_url` set, the page links to it (before the sign-out link), as every other
    problem page does."""
    help_url = "https://www.westonlibrary.org/help"
    vendor = await vendor_factory("www.vendor-one.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, extra="\n[limits]\nrequests_per_minute = 1\n")},
    )
    cfg.write_text(
        cfg.read_text().replace("[library]\n", f'[library]\nhelp_url = "{help_url}"\n', 1)
    )
    driver = await proxy_factory(cfg)
    await driver.login(CANARY.uid, CANARY.password)
    for i in range(3):
        r = await driver.get_vendor("www.vendor-one.test", f"/p{i}")
        html = await r.text()
    assert r.status == 429 and "suspended (429)" in html
    assert f'href="{help_url}"' in html
    assert html.index(help_url) < html.index("/logout?confirm")


# --------------------------------------------------------------------------- usage_stats.py


def _counter(secret: bytes) -> Any:
    from proxy.stats import Counters
    from proxy.usage_stats import UsageCounter

    return UsageCounter(Counters(), {}, secret=secret)


def test_a_directory_outage_at_sign_in_is_counted_apart_from_failures() -> None:
    """kills: proxy/usage_stats.py:113 — `elif outcome == "directory_unavailable":` → another
    outcome.

    The report tells the board how many sign-ins failed and how many met an outage of the
    directory (the library's fault, not the patron's): an outage is an outage, and every
    other refusal (a throttled sign-in, a wrong PIN) is a failure."""
    from proxy.stats import LOGINS_FAILURE, LOGINS_OUTAGE, LOGINS_SUCCESS

    u = _counter(b"A" * 32)
    for outcome in ("success", "directory_unavailable", "directory_unavailable", "throttled"):
        u.login_outcome(outcome)
    u.login_outcome("bad_credentials")
    seen = {m: n for (_, vendor, m), n in u.counters.pending().items() if vendor == ""}
    assert seen == {LOGINS_SUCCESS: 1, LOGINS_OUTAGE: 2, LOGINS_FAILURE: 2}


def _gauge_svc(ages: Any) -> Any:
    class Store:
        async def ages(self) -> list[float]:
            if isinstance(ages, Exception):
                raise ages
            return ages

    return types.SimpleNamespace(metrics=Metrics(), sessions=types.SimpleNamespace(store=Store()))


async def test_session_ages_and_a_store_that_fails_after_its_ping_reach_the_gauges(
    monkeypatch: Any,
) -> None:
    """kills: proxy/usage_stats.py:144 — `m.dependency_up.labels("store").set(0)` removed.

    When the store answered the ping but not the question that followed (its list of
    session ages), `dependency_up` for the store says 0, not the 1 the ping left, so the
    alert fires; when it answers, the active sessions and their age buckets are set."""
    from proxy import usage_stats
    from proxy.errors import StoreUnavailable

    async def both_up(svc: Any) -> tuple[bool, bool]:
        svc.metrics.dependency_up.labels("directory").set(1)
        svc.metrics.dependency_up.labels("store").set(1)
        return True, True

    monkeypatch.setattr(usage_stats, "check_dependencies", both_up)
    svc = _gauge_svc([60.0, 120.0, 20_000.0])
    await usage_stats.refresh_gauges(svc)
    value = svc.metrics.registry.get_sample_value
    assert value("weston_proxy_active_sessions", {}) == 3
    assert value("weston_proxy_session_ages", {"age": "under_15m"}) == 2
    assert value("weston_proxy_session_ages", {"age": "4h_or_more"}) == 1

    svc = _gauge_svc(StoreUnavailable("timeout"))
    await usage_stats.refresh_gauges(svc)
    assert (
        svc.metrics.registry.get_sample_value("weston_proxy_dependency_up", {"dependency": "store"})
        == 0
    )


async def test_the_gauge_refresher_outlives_an_unforeseen_failure(monkeypatch: Any) -> None:
    """kills: proxy/usage_stats.py:154 — `except Exception` → `except StoreUnavailable`.

    A refresh that fails for any reason (a directory library raising something new) is
    logged by its kind and the refresher carries on: otherwise the /metrics gauges freeze at
    their last values, showing a dependency up that has gone down."""
    from proxy import usage_stats

    calls: list[int] = []
    again = asyncio.Event()

    async def refresh(svc: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("synthetic")
        again.set()

    monkeypatch.setattr(usage_stats, "refresh_gauges", refresh)
    task = asyncio.create_task(usage_stats._refresh_forever(types.SimpleNamespace(), 0.01))
    try:
        await asyncio.wait_for(again.wait(), timeout=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(calls) >= 2


# --------------------------------------------------------------------------- metrics.py


def test_admission_gauges_show_every_vendor_configured_or_busy() -> None:
    """kills: proxy/metrics.py:139 (`Metrics.set_admission`) — `{*vendor_ids, *in_flight,
    *waiting}` → `set(vendor_ids)`.

    Every configured vendor is on /metrics at 0 (an alert on a vendor's queue needs the
    series there before it fills), and a vendor still busy after a reload removed it keeps
    its true count rather than the last one set."""
    m = Metrics()
    m.set_admission(["one", "two"], {"one": 2, "gone": 1}, {"gone": 3})
    value = m.registry.get_sample_value
    assert value("weston_proxy_in_flight", {"vendor": "one"}) == 2
    assert value("weston_proxy_in_flight", {"vendor": "two"}) == 0
    assert value("weston_proxy_admission_waiting", {"vendor": "two"}) == 0
    assert value("weston_proxy_in_flight", {"vendor": "gone"}) == 1
    assert value("weston_proxy_admission_waiting", {"vendor": "gone"}) == 3


def _stats_config(tmp_path: Path, search: str) -> Any:
    from proxy.config import load_config

    (tmp_path / "vendors").mkdir(parents=True, exist_ok=True)
    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors" / "one.toml").write_text(
        'id = "one"\ntitle = "One"\norigin = "https://www.vendor-one.test"\n'
        f'hosts = ["www.vendor-one.test"]\nsearch_paths = ["{search}"]\n'
    )
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(
        '[server]\npublic_url = "http://proxy.localhost:8080"\n'
        '[directory]\nkind = "file"\npatrons_file = "patrons.toml"\n'
        '[vendors]\ndir = "vendors"\n'
    )
    return load_config(cfg)


async def test_the_statistics_feature_takes_a_reload_and_survives_a_failed_last_flush(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """kills: proxy/usage_stats.py:171 — `svc.hooks.reloaded.append(usage.reloaded)` removed;
    and proxy/usage_stats.py:186 — the last flush's `except Exception` narrowed.

    Staff who add a vendor's search path and reload see searches counted from then on,
    without a restart. At shutdown, a last flush that fails (the stats file's disk full) is
    logged by its kind, and the shutdown of the other features goes on."""
    import io

    from proxy import usage_stats
    from proxy.logs import configure_logging
    from proxy.stats import SEARCHES

    log_stream = io.StringIO()
    configure_logging("info", "json", stream=log_stream)

    async def quiet(svc: Any) -> None:
        return None

    monkeypatch.setattr(usage_stats, "refresh_gauges", quiet)
    recorders: list[Any] = []

    class FailingRecorder(usage_stats.Recorder):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            recorders.append(self)

        async def close(self) -> None:
            await super().close()
            raise OSError("synthetic: no space left on device")

    monkeypatch.setattr(usage_stats, "Recorder", FailingRecorder)
    svc = types.SimpleNamespace(
        config=_stats_config(tmp_path, "^/old-search"),
        secret=b"synthetic-secret-0123456789abcdef",
        hooks=Hooks(),
        metrics=Metrics(),
    )
    running = usage_stats.feature(web.Application(), svc)  # type: ignore[arg-type]
    await running.__anext__()
    try:
        new = _stats_config(tmp_path / "new", "^/new-search")
        for hook in svc.hooks.reloaded:
            await hook(new)
        for observe in svc.hooks.observers:
            for path in ("/new-search", "/new-search", "/old-search"):
                observe(_obs(path=path))
        pending = recorders[0].counters.pending()
        assert sum(n for (_, _, m), n in pending.items() if m == SEARCHES) == 2
    finally:
        await running.aclose()
    assert "stats_flush_failed" in log_stream.getvalue()
    assert "OSError" in log_stream.getvalue()


def test_a_fresh_proxy_shows_every_outcome_reason_and_age_bucket_at_zero() -> None:
    """kills: proxy/metrics.py:129-133 (`Metrics.__init__`) — the loops that create each
    login outcome's and denial reason's series removed, and `self.set_session_ages([])`
    removed.

    An alert on failed sign-ins or refusals (`rate(weston_proxy_logins_total{outcome=
    "directory_unavailable"}[5m]) > 0`) sees nothing until the first one unless the series
    is there from the start at 0; the session-age gauges likewise say 0 before the first
    refresh instead of being absent."""
    from proxy.metrics import AGE_BUCKETS, DENIAL_REASONS, LOGIN_OUTCOMES

    value = Metrics().registry.get_sample_value
    for outcome in LOGIN_OUTCOMES:
        assert value("weston_proxy_logins_total", {"outcome": outcome}) == 0, outcome
    for reason in DENIAL_REASONS:
        assert value("weston_proxy_denials_total", {"reason": reason}) == 0, reason
    for _, name in AGE_BUCKETS:
        assert value("weston_proxy_session_ages", {"age": name}) == 0, name
