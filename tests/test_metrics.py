"""/metrics: what it counts, that health is refreshed without /readyz, and that no label can carry
a patron, an address, a URL or a search (real slapd, recording vendors, the proxy)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy import rewrite_headers
from proxy.metrics import AGE_BUCKETS, LABEL_VOCABULARY, Metrics, age_buckets
from tests.canary import CANARY
from tests.harness import ProxyDriver, ldap_directory
from tests.test_stats_e2e import (  # the same vendors, sequence and client address
    browsed,
    clean,
    make_config,
    proxies,
    vendors,
)

__all__ = ["browsed", "proxies", "vendors"]  # fixtures used by name
LABEL_NAMES = {"vendor", "status_class", "outcome", "reason", "dependency", "age", "le"}


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(driver: ProxyDriver) -> bytes:
    r = await driver.own("GET", "/metrics")
    assert r.status == 200
    body: bytes = await r.read()
    return body


def test_age_buckets_put_every_age_in_one_bucket() -> None:
    """Ages fall in the first bucket whose limit they are under; every bucket is listed."""
    got = age_buckets([0, 899, 900, 3599, 3600, 14399, 14400, 10**6])
    assert got == {"under_15m": 2, "15m_to_1h": 2, "1h_to_4h": 2, "4h_or_more": 2}
    assert list(age_buckets([])) == [name for _, name in AGE_BUCKETS]


def test_a_proxy_without_the_compiled_scans_says_so_in_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rewrite_headers, "compiled_scan", None)
    assert samples(Metrics().render())[("weston_proxy_rewriter_compiled", ())] == 0


def test_a_fresh_registry_uses_only_the_fixed_vocabulary() -> None:
    """Before any request, every pre-created label value is a vocabulary word."""
    for (_, labels), _ in samples(Metrics().render()).items():
        assert {v for k, v in labels if k != "le"} <= LABEL_VOCABULARY


async def test_labels_after_browsing_are_vendor_ids_or_vocabulary_words(
    browsed: ProxyDriver,
) -> None:
    """After the canary sequence (searches, PDF, denials, unknown host) every label value is a
    configured vendor id, a fixed vocabulary word, or a histogram bucket bound."""
    driver = browsed
    vendor_ids = {v.id for v in driver.config.vendors}
    for (name, labels), _ in samples(await scrape(driver)).items():
        for key, value in labels:
            assert key in LABEL_NAMES, (name, key)
            if key == "le":
                float(value)  # a bucket bound is a number
            elif key == "vendor":
                assert value in vendor_ids, (name, value)
            else:
                assert value in LABEL_VOCABULARY, (name, value)


async def test_metrics_after_browsing_hold_no_canary_address_path_or_search(
    browsed: ProxyDriver,
) -> None:
    """The whole /metrics text is free of canaries, the client address, paths and the term."""
    assert clean(await scrape(browsed)) == []


async def test_metrics_count_requests_logins_denials_and_sessions(browsed: ProxyDriver) -> None:
    """Requests by vendor and status class, login outcomes, both denial reasons, live sessions."""
    await asyncio.sleep(0.5)  # refresh_interval_s = 0.2: the age gauges catch up
    s = samples(await scrape(browsed))
    assert s[("weston_proxy_requests_total", (("status_class", "2xx"), ("vendor", "one")))] == 5
    assert (
        s[("weston_proxy_upstream_seconds_count", (("status_class", "2xx"), ("vendor", "one")))]
        == 5
    )
    assert s[("weston_proxy_logins_total", (("outcome", "success"),))] == 2
    assert s[("weston_proxy_logins_total", (("outcome", "bad_credentials"),))] == 1
    assert s[("weston_proxy_denials_total", (("reason", "not_configured"),))] == 1
    assert s[("weston_proxy_denials_total", (("reason", "not_eligible"),))] == 1
    assert s[("weston_proxy_blocked_third_party_total", (("vendor", "one"),))] == 2
    assert s[("weston_proxy_active_sessions", ())] == 2
    assert s[("weston_proxy_session_ages", (("age", "under_15m"),))] == 2
    assert s[("weston_proxy_rewriter_compiled", ())] == 1  # scripts/setup builds the scans


async def test_dependency_health_is_refreshed_without_readyz(
    tmp_path: Path, port: int, running_slapd: Any, vendors: Any, proxies: Any
) -> None:
    """/metrics says the directory and store are up though nobody asked /readyz."""
    start, _ = proxies
    driver = await start(make_config(tmp_path, port, running_slapd, vendors))
    await asyncio.sleep(0.3)
    s = samples(await scrape(driver))
    assert s[("weston_proxy_dependency_up", (("dependency", "directory"),))] == 1
    assert s[("weston_proxy_dependency_up", (("dependency", "store"),))] == 1


async def test_a_dead_directory_shows_as_down_in_metrics(
    tmp_path: Path, port: int, running_slapd: Any, dead_ldap_url: str, vendors: Any, proxies: Any
) -> None:
    """With the only directory URL dead, dependency_up{directory} drops to 0 by itself."""
    start, _ = proxies
    directory = ldap_directory(running_slapd, tmp_path, urls=[dead_ldap_url], timeout_s=0.5)
    cfg = make_config(tmp_path, port, running_slapd, vendors, directory=directory)
    driver = await start(cfg)
    key = ("weston_proxy_dependency_up", (("dependency", "directory"),))
    for _ in range(40):
        if samples(await scrape(driver)).get(key) == 0:
            break
        await asyncio.sleep(0.1)
    assert samples(await scrape(driver))[key] == 0
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 503
