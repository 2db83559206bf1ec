"""Host mapping (EZproxy proxy-by-hostname with hyphens), both ways, and vendor ownership."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.hosts import HostMap, host_matches, map_label, unmap_label

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostname = st.lists(label, min_size=2, max_size=5).map(".".join)


@pytest.mark.parametrize(
    ("host", "mapped"),
    [
        ("www.my-db.com", "www-my--db-com"),
        ("search.ebscohost.com", "search-ebscohost-com"),
        ("a--b.c", "a----b-c"),
        ("x-y-z.example.org", "x--y--z-example-org"),
    ],
)
def test_design_examples(host: str, mapped: str) -> None:
    assert map_label(host) == mapped
    assert unmap_label(mapped) == host


@given(hostname)
def test_mapping_round_trips(host: str) -> None:
    assert unmap_label(map_label(host)) == host


@given(hostname, hostname)
def test_mapping_is_injective(a: str, b: str) -> None:
    if a != b:
        assert map_label(a) != map_label(b)


@pytest.mark.parametrize("bad", ["", "-abc", "abc-", "a---b", "a.b", "UPPER_case"])
def test_labels_that_are_no_mapping(bad: str) -> None:
    assert unmap_label(bad) is None or map_label(unmap_label(bad) or "") == bad.lower()


def _map(port: int | None = 8443) -> HostMap:
    return HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=port,
        vendor_hosts=[
            ("ebsco", ["search.ebscohost.com", "*.ebscohost.com"]),
            ("jstor", ["www.jstor.org"]),
        ],
        never_proxy=["ads.ebscohost.com"],
    )


def test_request_host_with_port() -> None:
    hm = _map()
    assert hm.vendor_host_from_request("www-jstor-org.proxy.lib.org:8443") == "www.jstor.org"
    assert hm.vendor_host_from_request("www-jstor-org.proxy.lib.org") is None  # wrong port
    assert hm.vendor_host_from_request("www-jstor-org.proxy.lib.org:9999") is None
    assert hm.to_mapped("www.jstor.org") == "www-jstor-org.proxy.lib.org:8443"


def test_default_port_is_optional() -> None:
    hm = _map(None)
    assert hm.vendor_host_from_request("www-jstor-org.proxy.lib.org:443") == "www.jstor.org"
    assert hm.vendor_host_from_request("WWW-JSTOR-ORG.proxy.lib.org") == "www.jstor.org"
    assert hm.is_public_host("proxy.lib.org") and hm.is_public_host("proxy.lib.org:443")


def test_wildcards_and_never_proxy() -> None:
    hm = _map()
    assert hm.vendor_for_host("pdf.ebscohost.com") == "ebsco"
    assert hm.vendor_for_host("ebscohost.com") is None
    assert hm.vendor_for_host("ads.ebscohost.com") is None
    assert hm.vendor_for_host("evilebscohost.com") is None
    assert hm.vendor_for_host("search.ebscohost.com.evil.org") is None


@pytest.mark.parametrize(
    "host",
    [
        "evil.org",
        "www-evil-org.proxy.lib.org:8443",
        "www-jstor-org.proxy.lib.org.evil.org:8443",
        "a.www-jstor-org.proxy.lib.org:8443",
        "www-jstor-org.proxy.lib.org:8443@evil.org",
        "www-jstor-org.proxy.lib.org:84a3",
        "",
        " ",
        "[::1]:8443",
    ],
)
def test_hosts_that_are_not_ours(host: str) -> None:
    assert _map().vendor_host_from_request(host) is None


def _by_patterns(hm: HostMap, host: str) -> str | None:
    """vendor_for_host as the patterns say it, one by one in order (the indexed lookup's spec)."""
    host = host.lower()
    if any(host_matches(p, host) for p in hm.never_proxy):
        return None
    return next((vid for p, vid in hm.patterns if host_matches(p, host)), None)


def test_indexed_vendor_lookup_agrees_with_the_patterns_in_order() -> None:
    """Exact before wildcard, first listed wins, most specific wildcard wins, never_proxy wins,
    `*.x.com` is not `x.com` — on many generated hosts, against a pattern-by-pattern scan."""
    rng = random.Random(11_25)
    labels = ["a", "b", "www", "x", "db", "search", "com", "org", "test"]
    vendor_hosts = [
        ("v1", ["www.x.com", "*.x.com", "db.test"]),
        ("v2", ["*.search.x.com", "www.x.com", "*.b.org"]),
        ("v3", ["*.x.com", "a.b.org", "*.test"]),
        ("v4", [f"h{i}.many.test" for i in range(300)] + ["*.deep.a.b.org"]),
    ]
    hm = HostMap.build(
        public_scheme="https",
        public_host="proxy.example.org",
        public_port=None,
        vendor_hosts=vendor_hosts,
        never_proxy=["login.x.com", "*.cdn.search.x.com"],
    )
    hosts = [
        "x.com",
        ".x.com",
        "www.x.com",
        "WWW.X.COM",
        "h7.many.test",
        "many.test",
        "q.deep.a.b.org",
    ]
    for _ in range(3000):
        hosts.append(".".join(rng.choice(labels) for _ in range(rng.randint(1, 5))))
    hosts += ["login.x.com", "a.cdn.search.x.com", "cdn.search.x.com", "z.search.x.com"]
    for host in hosts:
        assert hm.vendor_for_host(host) == _by_patterns(hm, host), host
    assert hm.vendor_for_host("z.search.x.com") == "v2"
    assert hm.vendor_for_host("a.cdn.search.x.com") is None
    assert hm.vendor_for_host("x.com") is None
