"""From a second mutation sweep by hand (1 December 2026) of link rewriting (P3): `proxy/rewrite.py`
and `proxy/rewrite_headers.py` (39 mutants, 10 non-equivalent survivors, each killed here).

Each test kills one mutant no other test noticed (it passes on the code as it is and fails with
its mutant applied). Unit-level: the behaviours are local to `proxy.rewrite.Rewriter`, its
stream stages and `proxy.rewrite_headers`, on synthetic host maps (no patron data, no network).
"""

from __future__ import annotations

import pytest

from proxy import rewrite_headers
from proxy.config import RewriteRule
from proxy.hosts import HostMap
from proxy.rewrite import Rewriter

MAPPED = "https://www-my--db-com.proxy.lib.org"


def _host_map() -> HostMap:
    return HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=None,
        vendor_hosts=[
            ("mydb", ["www.my-db.com", "static.my-db.com"]),
            ("ebsco", ["search.ebscohost.com", "*.ebscohost.com"]),
        ],
        never_proxy=["ads.ebscohost.com"],
    )


def _rw(rules: dict[str, tuple[RewriteRule, ...]] | None = None) -> Rewriter:
    return Rewriter(
        _host_map(),
        rules,
        vendor_origins={
            "mydb": "http://www.my-db.com:8080",
            "ebsco": "https://search.ebscohost.com",
        },
        unshielded=frozenset({"ebsco"}),
    )


@pytest.fixture
def python_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The regex paths a proxy built without the compiled scans takes."""
    monkeypatch.setattr(rewrite_headers, "compiled_scan", None)


# ---------------------------------------------------------------------------- [[rewrite]] rules


def test_a_rule_listing_several_types_applies_to_each_of_them() -> None:
    """kills: proxy/rewrite.py:_rule_matches_type — `any(t == mt or …)` → `all(…)`.

    A vendor's `[[rewrite]]` rule with `types = ["text/html", "application/json"]` fixes the
    vendor's JSON answers as well as its pages (and its replacement's vendor URL is then mapped),
    so the patron's search results do not break or point at the vendor directly."""
    rule = RewriteRule(
        find="OLD", replace="https://www.my-db.com/new", types=("text/html", "application/json")
    )
    rw = _rw({"mydb": (rule,)})
    assert rw.rewrite_body("mydb", "application/json", None, b'{"a":"OLD"}') == (
        b'{"a":"' + MAPPED.encode() + b'/new"}'
    )
    assert rw.rewrite_body("mydb", "text/html", None, b"<p>OLD</p>") == (
        b"<p>" + MAPPED.encode() + b"/new</p>"
    )


# ---------------------------------------------------------------------------- CSP and reports


def test_csp_wildcard_under_a_never_proxied_parent_keeps_the_vendors_own_source() -> None:
    """kills: proxy/rewrite_headers.py:_wildcard_coverage — `_under(n, domain) or _under(domain,
    n)` → `_under(n, domain)`.

    With `*.example.com` never proxied, `*.cdn.example.com` in a vendor's policy names hosts the
    browser still loads from directly: the vendor's own source stays (beside the mapped
    wildcard), or the page's never-proxied images stop loading."""
    hm = HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=None,
        vendor_hosts=[("cdn", ["*.cdn.example.com"])],
        never_proxy=["*.example.com"],
    )
    assert rewrite_headers.rewrite_csp(hm, str, "img-src *.cdn.example.com") == (
        "img-src *.cdn.example.com *.proxy.lib.org"
    )


def test_csp_report_uri_in_capitals_to_a_third_party_is_dropped() -> None:
    """kills: proxy/rewrite_headers.py:_rewrite_directive — `name.lower() == "report-uri"` →
    `name == "report-uri"`.

    Directive names are case-insensitive: `REPORT-URI https://collector.example/r` sends the
    page's whole URL (the patron's search) to a third party and is dropped like the lower-case
    one."""
    assert _rw().rewrite_csp("default-src 'self'; REPORT-URI https://collector.example/r") == (
        "default-src 'self'"
    )


def test_csp_report_uri_in_a_second_policy_is_dropped() -> None:
    """kills: proxy/rewrite_headers.py:rewrite_csp — `value.split(",")` → the value as one policy.

    A header carrying two policies (comma-separated) has each rewritten: a third-party
    `report-uri` in the second one is dropped too."""
    assert _rw().rewrite_csp("script-src 'self', report-uri https://collector.example/r") == (
        "script-src 'self', "
    )


def test_without_the_compiled_scan_a_never_proxied_host_under_a_wildcard_is_reported(
    python_paths: None,
) -> None:
    """kills: proxy/rewrite_headers.py:unknown_host_pattern — `not host_map.never_proxy and
    host_map.wildcard_suffixes` → `host_map.wildcard_suffixes`.

    The compliance report lists the unproxied hosts a page loads: `ads.ebscohost.com` is never
    proxied although `*.ebscohost.com` is, and a proxy without the compiled scans still reports
    it to the privacy staff."""
    page = b'<img src="https://ads.ebscohost.com/p.gif"><a href="https://x.ebscohost.com/">'
    assert _rw().third_party_hosts(page) == {"ads.ebscohost.com"}


# ---------------------------------------------------------------------------- more types, charsets


# 餌 in Shift_JIS is 0x89 0x61: read as bytes its second byte is an `a` glued to the scheme
# (`ahttps://`), which no scan takes for a URL.
_SJIS_PAGE = "<meta charset=shift_jis><p>餌https://www.my-db.com/a</p>".encode("shift_jis")


def test_a_meta_charset_is_read_when_the_page_arrives_in_small_chunks() -> None:
    """kills: proxy/rewrite.py:StreamRewriter.feed — `or (self._prescan and len(chunk) <
    PRESCAN_BYTES)` dropped (stages started on the first chunk, before the `<meta>`).

    A Shift_JIS page that names its charset only in `<meta>` and arrives in small chunks is read
    as Shift_JIS, as the browser reads it: its vendor link is mapped."""
    sr = _rw().stream("mydb", "text/html", None)
    out = b"".join(sr.feed(_SJIS_PAGE[i : i + 8]) for i in range(0, len(_SJIS_PAGE), 8))
    out += sr.finish()
    assert out.decode("shift_jis") == f"<meta charset=shift_jis><p>餌{MAPPED}/a</p>"


# ---------------------------------------------------------------------------- request side, more


def test_an_xml_flavoured_request_body_is_unmapped() -> None:
    """kills: proxy/rewrite.py:Rewriter.unmaps_body — `mt.endswith(("+json", "+xml"))` →
    `mt.endswith(("+json",))`.

    An Atom document the patron's page posts (`application/atom+xml`) names the vendor's URLs as
    the vendor wrote them, not the proxy's."""
    body = b'<link href="https://www-my--db-com.proxy.lib.org/x"/>'
    assert _rw().unmap_body(body, "application/atom+xml") == (
        b'<link href="http://www.my-db.com:8080/x"/>'
    )


def test_a_text_plain_request_body_is_unmapped() -> None:
    """kills: proxy/rewrite.py:_UNMAPPED_BODIES — `text/plain` removed.

    A form posted with `enctype="text/plain"` (or sendBeacon with a string) names vendor URLs
    as the vendor wrote them."""
    body = b"u=https://www-my--db-com.proxy.lib.org/x"
    assert _rw().unmap_body(body, "text/plain") == b"u=http://www.my-db.com:8080/x"


# ---------------------------------------------------------------------------- third-party count


def test_a_third_party_image_named_only_in_srcset_is_reported() -> None:
    """kills: proxy/rewrite_headers.py:_REF — `srcset` removed from the attributes read.

    The compliance report lists a tracker a vendor page loads through `srcset` alone."""
    page = b'<img srcset="https://cdn.tracker.example/a.png 2x">'
    assert _rw().third_party_hosts(page) == {"cdn.tracker.example"}


def test_csp_sources_on_unconfigured_and_never_proxied_hosts_are_left_alone() -> None:
    """kills: proxy/rewrite_headers.py:_rewrite_source — the `vendor_for_host(host) is None:
    return [token]` early return removed (every host source mapped).

    P3: hosts not configured are left alone. A vendor policy's source on a host the proxy does
    not serve (another site, or `ads.ebscohost.com`, never proxied) stays as written: mapped, it
    would name a proxy host that serves nothing and drop the one the page really loads from."""
    assert _rw().rewrite_csp("img-src https://cdn.other.example ads.ebscohost.com") == (
        "img-src https://cdn.other.example ads.ebscohost.com"
    )
    assert _rw().rewrite_csp("img-src https://static.my-db.com") == (
        "img-src https://static-my--db-com.proxy.lib.org"
    )
