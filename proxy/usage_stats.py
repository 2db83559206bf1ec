"""Wire usage statistics into the running proxy: hook calls become counts, counts reach the sink.

The feature plugs `UsageCounter` into `svc.hooks` and runs two background jobs: the Recorder's
periodic flush (SQLite, or Redis when sessions live in Redis) and a refresh of the /metrics gauges
that need a question to a dependency (directory and store health, session ages). Nothing here keeps
a request: each hook call adds to a count and returns.

Distinct sessions per vendor and hour: `Counters.unique()` needs a token per session. The token is
a keyed digest of the session id under a key derived from the server secret, so every proxy
process sharing the session store gives one session the same token (one session served by two
replicas is one distinct session), while the token matches neither the cookie nor the store's key
and cannot be turned back into either. Counters drops it when the hour closes; with Redis, the
sink keeps an hour-bound digest of it for at most two hours (proxy.stats_store). It is derived in
a gate (gates see the session; observers do not), which keeps `Observation` free of anything
session-shaped. The gate never refuses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from proxy import tasks
from proxy.config import Config, VendorConfig
from proxy.errors import StoreUnavailable
from proxy.forward import Observation
from proxy.logs import get_logger
from proxy.ops import check_dependencies
from proxy.sessions import Session
from proxy.stats import (
    BLOCKED_THIRD_PARTY,
    BYTES,
    DENIED_NOT_CONFIGURED,
    DENIED_NOT_ELIGIBLE,
    LOGINS_FAILURE,
    LOGINS_OUTAGE,
    LOGINS_SUCCESS,
    REQUESTS,
    SEARCHES,
    SESSIONS_STARTED,
    SUSPENDED,
    UNIQUE_SESSIONS,
    Counters,
    Recorder,
    download_metric,
    make_sink,
    stats_settings,
    utcnow,
)

if TYPE_CHECKING:
    from proxy.services import Services

# Tests date counts in the past through this key, so that a report (which leaves out the running
# day) shows them; a running proxy uses the real UTC clock.
Clock = Callable[[], dt.datetime]
CLOCK: web.AppKey[Clock] = web.AppKey("usage_stats_clock")

_DENIALS = {
    "not_eligible": DENIED_NOT_ELIGIBLE,
    "not_configured": DENIED_NOT_CONFIGURED,
    "suspended": SUSPENDED,
}
log = get_logger("proxy.usage_stats")


class UsageCounter:
    """Turns hook calls into counts; holds the session-token key and nothing per request."""

    def __init__(
        self, counters: Counters, search_paths: Mapping[str, Sequence[str]], *, secret: bytes
    ) -> None:
        """`search_paths`: per vendor id, the regexes whose match on a path marks a search;
        `secret`: the server secret, which every proxy sharing the session store has."""
        self.counters = counters
        self.set_search_paths(search_paths)
        self._token_key = hashlib.sha256(b"stats-token-v1\x00" + secret).digest()

    def set_search_paths(self, search_paths: Mapping[str, Sequence[str]]) -> None:
        self._searches = {vid: [re.compile(p) for p in ps] for vid, ps in search_paths.items()}

    async def reloaded(self, config: Config) -> None:
        """A reloaded configuration may add vendors or change their search rules."""
        self.set_search_paths({v.id: v.search_paths for v in config.vendors})

    def observe(self, o: Observation) -> None:
        counts = [(REQUESTS, 1), (BYTES, o.bytes)]
        if o.first_at_vendor:
            counts.append((SESSIONS_STARTED, 1))
        # A full text is one whole 200 to a GET: 206 ranges of one PDF would count it many times
        # (and a film's segments, which its player fetches, are not downloads: `o.saved`).
        if o.method == "GET" and o.status == 200:
            metric = download_metric(o.content_type, o.saved)
            if metric is not None:
                counts.append((metric, 1))
        # The path is matched and forgotten; only the count is kept (it never has a query).
        if o.status < 400 and any(p.search(o.path) for p in self._searches.get(o.vendor_id, ())):
            counts.append((SEARCHES, 1))
        # Distinct third-party hosts the tracker shield held back on this page (a number only).
        counts.append((BLOCKED_THIRD_PARTY, o.third_party_hosts))
        self.counters.count_many(o.vendor_id, counts)

    def login_outcome(self, outcome: str) -> None:
        """Library-wide: a login is no vendor's. Every refusal but an outage is a failure."""
        if outcome == "success":
            metric = LOGINS_SUCCESS
        elif outcome == "directory_unavailable":
            metric = LOGINS_OUTAGE
        else:
            metric = LOGINS_FAILURE
        self.counters.count("", metric)

    def denied(self, vendor_id: str, reason: str) -> None:
        metric = _DENIALS.get(reason)
        if metric is not None:  # a reason outside the vocabulary is not counted, never stored
            self.counters.count(vendor_id, metric)

    def session_token(self, session_id: str) -> str:
        # Keyed BLAKE2b is a MAC in its own right and costs ~1.4 µs here; HMAC-SHA256 through
        # OpenSSL 3 costs ~4 µs (one-shot) to ~6 µs (hmac.new), on every proxied request.
        return hashlib.blake2b(session_id.encode(), key=self._token_key, digest_size=16).hexdigest()

    async def gate(
        self, request: web.Request, session: Session, vendor: VendorConfig
    ) -> web.StreamResponse | None:
        self.counters.unique(vendor.id, UNIQUE_SESSIONS, self.session_token(session.id))
        return None


async def refresh_gauges(svc: Services) -> None:
    """Ask the directory and store once; set dependency_up, active sessions and session ages."""
    m = svc.metrics
    _, store_ok = await check_dependencies(svc)
    if store_ok:
        try:
            ages = await svc.sessions.store.ages()
        except StoreUnavailable:
            m.dependency_up.labels("store").set(0)
            return
        m.active_sessions.set(len(ages))
        m.set_session_ages(ages)


async def _refresh_forever(svc: Services, interval_s: float) -> None:
    while True:
        try:
            await refresh_gauges(svc)
        except Exception as exc:  # a gauge is not worth the proxy; say which kind of failure
            log.warning("metrics_refresh_failed", error=type(exc).__name__)
        await asyncio.sleep(interval_s)


async def feature(app: web.Application, svc: Services) -> AsyncIterator[None]:
    """Count usage through the hooks; flush on a timer and at shutdown."""
    settings = stats_settings(svc.config)
    counters = Counters(clock=app.get(CLOCK, utcnow))
    recorder = Recorder(
        make_sink(svc.config, settings, secret=svc.secret),
        flush_interval_s=settings.flush_interval_s,
        counters=counters,
    )
    usage = UsageCounter(
        counters, {v.id: v.search_paths for v in svc.config.vendors}, secret=svc.secret
    )
    svc.hooks.reloaded.append(usage.reloaded)
    svc.hooks.observers.append(usage.observe)
    svc.hooks.login_outcome.append(usage.login_outcome)
    svc.hooks.denied.append(usage.denied)
    svc.hooks.gates.append(usage.gate)
    await recorder.start()
    refresher = asyncio.create_task(
        _refresh_forever(svc, settings.refresh_interval_s), name="metrics-refresh"
    )
    try:
        yield
    finally:
        await tasks.stop(refresher)
        try:
            await recorder.close()  # the last flush: counts since the previous one survive
        except Exception as exc:
            log.error("stats_flush_failed", error=type(exc).__name__)
