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
    keys = [("weston_proxy_dependency_up", (("dependency", d),)) for d in ("directory", "store")]
    # The first refresh checks slapd, which takes longer than a fixed 0.3 s on a busy machine:
    # wait for it (no request but /metrics is made meanwhile, so nothing else can set them).
    for _ in range(100):
        s = samples(await scrape(driver))
        if all(s.get(k) == 1 for k in keys):
            break
        await asyncio.sleep(0.1)
    assert [s.get(k) for k in keys] == [1, 1]


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


# ------------------------------------------------------------------ who may read /metrics


@pytest.mark.parametrize(
    ("metrics_from", "client", "readable"),
    [
        (None, "203.0.113.9", False),  # the default: loopback and private networks only
        (None, "10.1.2.3", True),
        (None, "192.168.7.7", True),
        (None, "2001:db8::9", False),
        ('["198.51.100.0/24"]', "198.51.100.20", True),
        ('["198.51.100.0/24"]', "10.1.2.3", False),
        ("[]", "203.0.113.9", True),  # the library chose: anyone
    ],
)
async def test_metrics_are_read_only_from_the_networks_allowed(
    tmp_path: Path,
    port: int,
    vendor_factory: Any,
    proxy_factory: Any,
    metrics_from: str | None,
    client: str,
    readable: bool,
) -> None:
    """Behind a trusted balancer, as the client address is worked out for throttling. The counts
    identify no one, but read live from the internet they show when a database is in use; from
    elsewhere /metrics is the own host's not-found page."""
    from tests.harness import vendor_toml, write_config

    vendor = await vendor_factory("www.vendor-one.test")
    (tmp_path / "patrons.toml").write_text("")
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"one": vendor_toml("one", vendor)},
    )
    server = 'trusted_proxies = ["127.0.0.1"]\n'
    if metrics_from is not None:
        server += f"metrics_from = {metrics_from}\n"
    cfg.write_text(cfg.read_text().replace("[server]\n", f"[server]\n{server}", 1))
    driver = await proxy_factory(cfg)
    r = await driver.own("GET", "/metrics", headers={"X-Forwarded-For": client})
    body = await r.text()
    if readable:
        assert r.status == 200 and "weston_proxy_requests_total" in body
    else:
        assert r.status == 404 and "weston_proxy" not in body
        assert "There is no page at this address" in body


def test_a_metrics_network_that_is_not_one_names_the_key(tmp_path: Path) -> None:
    from proxy.config import load_config
    from proxy.errors import ConfigError

    (tmp_path / "patrons.toml").write_text("")
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(
        '[server]\npublic_url = "http://proxy.localhost:8080"\n'
        'metrics_from = ["10.0.0.0/33"]\n'
        '[directory]\nkind = "file"\npatrons_file = "patrons.toml"\n'
    )
    with pytest.raises(ConfigError, match=r"server\.metrics_from: .*10\.0\.0\.0/33"):
        load_config(cfg)
