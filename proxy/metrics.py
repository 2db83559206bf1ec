"""Prometheus metrics on a registry owned by the app: no label can hold a patron, IP, URL or search.

Labels are only vendor ids (from config), status classes, outcomes, denial reasons, dependency
names and session-age buckets — all from fixed vocabularies (`LABEL_VOCABULARY`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from proxy import rewrite_headers
from proxy.errors import FAILURE_KINDS
from proxy.forward import Observation

LOGIN_OUTCOMES = (
    "success",
    "bad_credentials",
    "not_eligible",
    "pin_expired",
    "pin_must_change",
    "directory_unavailable",
    "throttled",
)
DEPENDENCIES = ("directory", "store")
DENIAL_REASONS = ("not_configured", "not_eligible", "busy", "session_conflict")
# Session ages, coarse on purpose: counts per bucket say how long sessions live, never whose.
AGE_BUCKETS: tuple[tuple[float, str], ...] = (
    (15 * 60, "under_15m"),
    (60 * 60, "15m_to_1h"),
    (4 * 60 * 60, "1h_to_4h"),
    (float("inf"), "4h_or_more"),
)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
# Every label value a metric may carry besides a configured vendor id (tests check the output).
LABEL_VOCABULARY = frozenset(
    {*LOGIN_OUTCOMES, *DEPENDENCIES, *DENIAL_REASONS, *STATUS_CLASSES, *FAILURE_KINDS}
    | {name for _, name in AGE_BUCKETS}
)


def age_buckets(ages: list[float]) -> dict[str, int]:
    """How many of `ages` (seconds) fall in each AGE_BUCKETS bucket, every bucket present."""
    out = {name: 0 for _, name in AGE_BUCKETS}
    for age in ages:
        out[next(name for limit, name in AGE_BUCKETS if age < limit)] += 1
    return out


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self.requests = Counter(
            "weston_proxy_requests",
            "Requests forwarded to vendors",
            ["vendor", "status_class"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "weston_proxy_upstream_seconds",
            "Time from request to the end of the vendor's response",
            ["vendor", "status_class"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        # No byte count: scraped every few seconds, the bytes between two scrapes at a quiet hour
        # are the exact size of the one document a patron fetched, which names the document.
        self.logins = Counter(
            "weston_proxy_logins", "Login attempts by outcome", ["outcome"], registry=r
        )
        self.denials = Counter("weston_proxy_denials", "Requests refused", ["reason"], registry=r)
        self.active_sessions = Gauge("weston_proxy_active_sessions", "Live sessions", registry=r)
        self.dependency_up = Gauge(
            "weston_proxy_dependency_up", "1 when a dependency answers", ["dependency"], registry=r
        )
        self.blocked_third_party = Counter(
            "weston_proxy_blocked_third_party",
            "Third-party origins in vendor pages held back by the shield",
            ["vendor"],
            registry=r,
        )
        self.vendor_failures = Counter(
            "weston_proxy_vendor_failures",
            "Proxied requests a vendor did not answer (the patron got a 502 or 504 page), by kind",
            ["vendor", "kind"],
            registry=r,
        )
        self.in_flight = Gauge(
            "weston_proxy_in_flight",
            "Proxied requests being worked on in this process, per vendor",
            ["vendor"],
            registry=r,
        )
        self.admission_waiting = Gauge(
            "weston_proxy_admission_waiting",
            "Proxied requests waiting for a slot in this process, per vendor",
            ["vendor"],
            registry=r,
        )
        self.suspensions = Counter(
            "weston_proxy_suspensions", "Sessions suspended by usage limits", ["vendor"], registry=r
        )
        self.session_ages = Gauge(
            "weston_proxy_session_ages",
            "Live sessions by time since login (refreshed in the background)",
            ["age"],
            registry=r,
        )
        # Set as a function of the process's open sockets when the services are built.
        self.websockets_open = Gauge(
            "weston_proxy_websockets_open",
            "WebSockets to vendors open in this process (server.max_websockets caps them)",
            registry=r,
        )
        # 0 means pages are rewritten by the slower regex paths (no C compiler at install).
        self.rewriter_compiled = Gauge(
            "weston_proxy_rewriter_compiled",
            "1 when the rewriter's compiled scans (proxy/_scan.pyx) are in use",
            registry=r,
        )
        self.rewriter_compiled.set(int(rewrite_headers.compiled_scan is not None))
        for outcome in LOGIN_OUTCOMES:
            self.logins.labels(outcome)
        for reason in DENIAL_REASONS:
            self.denials.labels(reason)
        self.set_session_ages([])

    def set_admission(
        self, vendor_ids: Iterable[str], in_flight: Mapping[str, int], waiting: Mapping[str, int]
    ) -> None:
        """The admission gauges as they are now, every configured vendor present."""
        for vendor_id in {*vendor_ids, *in_flight, *waiting}:
            self.in_flight.labels(vendor_id).set(in_flight.get(vendor_id, 0))
            self.admission_waiting.labels(vendor_id).set(waiting.get(vendor_id, 0))

    def set_session_ages(self, ages: list[float]) -> None:
        for name, n in age_buckets(ages).items():
            self.session_ages.labels(name).set(n)

    def observe(self, o: Observation) -> None:
        sc = status_class(o.status)
        children = self._children.get((o.vendor_id, sc))
        if children is None:
            # `labels()` looks the child up under a lock with its arguments checked: done once
            # per vendor and status class (children are never removed from these metrics).
            children = (
                self.requests.labels(o.vendor_id, sc),
                self.upstream_seconds.labels(o.vendor_id, sc),
            )
            self._children[(o.vendor_id, sc)] = children
        requests, seconds = children
        requests.inc()
        seconds.observe(o.duration_s)
        if o.third_party_hosts:
            self.blocked_third_party.labels(o.vendor_id).inc(o.third_party_hosts)

    def render(self) -> bytes:
        return generate_latest(self.registry)
