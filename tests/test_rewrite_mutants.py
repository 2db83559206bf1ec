"""From a mutation sweep of link rewriting and redirects (P3): tests for the 12 of 43 mutants no
other test noticed (each failed with its mutant and passes without; no defect was found).

Each test names the mutant it kills. They are unit-level: the behaviour each proves is local to
`proxy.redirects.safe_target`, `proxy.rewrite.Rewriter`, `proxy.rewrite_headers` or
`proxy.html_tags`, on synthetic host maps (no patron data, no network).
"""

from __future__ import annotations

import pytest

from proxy.config import RewriteRule
from proxy.hosts import HostMap
from proxy.redirects import safe_target
from proxy.rewrite import Rewriter

REDIRECT_HOSTS = HostMap.build(
    public_scheme="https",
    public_host="proxy.lib.org",
    public_port=None,
    vendor_hosts=[
        ("one", ["www.vendor-one.com", "*.vendor-one.com"]),
        ("two", ["search.db-two.org"]),
    ],
    never_proxy=["ads.vendor-one.com"],
)
MAPPED_ONE = "https://www-vendor--one-com.proxy.lib.org"


def _host_map(port: int | None = None) -> HostMap:
    return HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=port,
        vendor_hosts=[
            ("mydb", ["www.my-db.com", "static.my-db.com"]),
            ("ebsco", ["search.ebscohost.com", "*.ebscohost.com"]),
        ],
        never_proxy=["ads.ebscohost.com"],
    )


# ---------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("scheme", ["ftp", "ws", "wss", "file", "javascript", "data", "gopher"])
def test_a_starting_point_that_is_not_http_is_refused(scheme: str) -> None:
    """kills: proxy/redirects.py:safe_target — `("http", "https")` → `("http", "https", "ftp")`.

    A sign-in link whose `url` is not plainly an http(s) address on a vendor host (here an
    `ftp://` one naming a real vendor host) sends the patron to the menu, not to a page the link
    did not ask for: the contract is "anything that is not plainly an http(s) URL is refused"."""
    assert safe_target(f"{scheme}://www.vendor-one.com/x", REDIRECT_HOSTS) is None
    assert safe_target("https://www.vendor-one.com/x", REDIRECT_HOSTS) == MAPPED_ONE + "/x"


# ---------------------------------------------------------------------------- CSP headers


def _rw(port: int | None = None) -> Rewriter:
    return Rewriter(
        _host_map(port),
        vendor_origins={"mydb": "https://www.my-db.com", "ebsco": "https://search.ebscohost.com"},
    )


def test_csp_report_uri_to_an_ip_literal_collector_is_dropped() -> None:
    """kills: proxy/rewrite_headers.py:_report_target — `return url if _URL_SCHEME.match(…)
    is None else None` → `return url`.

    A vendor policy's `report-uri` naming a collector by IPv6 literal (which the host reading
    does not name as a host) is dropped: violation reports carry the page's whole URL (a patron's
    search), and would otherwise go from the patron's browser straight to a third party. A
    relative target (the page's own, proxied host) is kept."""
    rw = _rw()
    assert rw.rewrite_csp("default-src 'self'; report-uri https://[2001:db8::1]/r") == (
        "default-src 'self'"
    )
    assert rw.rewrite_csp("report-uri mailto:privacy@collector.example.net") == ""
    assert rw.rewrite_csp("report-uri /csp-report") == "report-uri /csp-report"


def test_shield_csp_covers_every_fetch_and_base_directive() -> None:
    """kills: proxy/rewrite_headers.py:shield_csp — the `"base-uri": ours` entry removed.

    The tracker shield names every directive it needs, each limited to the proxy's own hosts:
    `base-uri` stops a vendor page's `<base href>` from sending every relative link of the page
    to a third party; `worker-src` and `manifest-src` stop loads that `default-src` does not
    govern in every browser."""
    policy = _rw(8443).shield_csp("mydb", allow_third_party=False)
    assert policy is not None
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
    for name in ("base-uri", "worker-src", "manifest-src", "form-action", "object-src"):
        assert name in directives, name
        assert "https://*.proxy.lib.org:8443" in directives[name], name
        assert all(
            s
            in (
                "'self'",
                "https://*.proxy.lib.org:8443",
                "https://proxy.lib.org:8443",
                "data:",
                "blob:",
            )
            for s in directives[name]
        ), directives[name]


def test_a_host_that_merely_ends_like_the_proxy_is_counted_third_party() -> None:
    """kills: proxy/rewrite_headers.py:is_third_party — `host == public or
    host.endswith("." + public)` → `host.endswith(public)`.

    The compliance report and statistics count `notproxy.lib.org` (someone else's name that
    ends with the proxy's) as the third party it is; the proxy's own hosts are not counted."""
    rw = _rw()
    page = (
        b'<img src="https://notproxy.lib.org/p.gif">'
        b'<img src="https://www-my--db-com.proxy.lib.org/a.png">'
        b'<a href="https://proxy.lib.org/menu">menu</a>'
    )
    assert rw.third_party_hosts(page) == {"notproxy.lib.org"}


# ---------------------------------------------------------------------------- bodies


def test_a_long_body_without_cut_bytes_streams_as_it_rewrites_whole() -> None:
    """kills: proxy/rewrite.py:RegexStage._window_step — `keep = max(0, end - self._context)`
    → `keep = max(0, end)` (the lookbehind bytes not carried to the next chunk).

    A minified script or JSON line longer than MAX_CUT_WAIT with no quote, space or newline goes
    through the window path; wherever the chunks split it, the patron's browser gets the same
    bytes as rewriting the whole body: a path `a//www.my-db.com` (not a URL) is left alone, and
    the real vendor URL after it is mapped."""
    rw = _rw()
    body = b"a" * 5000 + b"a//www.my-db.com/p;https://www.my-db.com/q" + b"b" * 400
    whole = rw.rewrite_body("mydb", "application/javascript", None, body)
    assert b"a//www.my-db.com/p" in whole and b"https://www-my--db-com.proxy.lib.org/q" in whole
    for first in range(4990, 5700):  # the window's cut falls on every byte around the URLs
        for second in (1, 4200):
            sr = rw.stream("mydb", "application/javascript", None)
            pieces = [body[:first], body[first : first + second], body[first + second :]]
            out = b"".join(sr.feed(p) for p in pieces) + sr.finish()
            assert out == whole, (first, second)


# ---------------------------------------------------------------------------- [[rewrite]] rules


def test_the_first_rule_listed_for_a_text_wins() -> None:
    """kills: proxy/rewrite.py:Rewriter._compile_rules — `table.setdefault(find, replace)` →
    `table[find] = replace` (the last rule for a text would win).

    When IT staff list two `[[rewrite]]` rules for one text (a specific fix above an older,
    broader one copied from EZproxy), the first one listed is the one applied, as documented."""
    rules = {
        "mydb": (
            RewriteRule(find="TRACK_ON", replace="TRACK_OFF"),
            RewriteRule(find="TRACK_ON", replace="TRACK_MAYBE"),
        )
    }
    rw = Rewriter(_host_map(), rules)
    assert rw.rewrite_body("mydb", "text/html", None, b"x TRACK_ON y") == b"x TRACK_OFF y"


def test_a_longer_rule_text_wins_over_one_it_contains_whatever_the_order() -> None:
    """kills: proxy/rewrite.py:Rewriter._compile_rules — `sorted(table, key=len, reverse=True)`
    → `list(table)` (rules tried in listed order).

    A rule for `ANALYTICS_ON` applies to the text `ANALYTICS_ON` even when a rule for the shorter
    `ANALYTICS` is listed first; otherwise the shorter rule eats the start of the text and the
    vendor's analytics switch is left on (`NOPE_ON`)."""
    rules = {
        "mydb": (
            RewriteRule(find="ANALYTICS", replace="NOPE"),
            RewriteRule(find="ANALYTICS_ON", replace="ANALYTICS_OFF"),
        )
    }
    rw = Rewriter(_host_map(), rules)
    body = b"<script>ANALYTICS_ON; ANALYTICS;</script>"
    assert rw.rewrite_body("mydb", "text/html", None, body) == (
        b"<script>ANALYTICS_OFF; NOPE;</script>"
    )


# ---------------------------------------------------------------------------- charsets


def test_a_shift_jis_page_named_only_by_its_meta_is_read_in_its_charset() -> None:
    """kills: proxy/rewrite.py:Rewriter.stream — `prescan=mt == "text/html"` → `prescan=False`.

    A Japanese vendor page that names its charset only in `<meta charset="shift_jis">` (no
    charset in the Content-Type) is read as the browser reads it. In Shift_JIS, `∥` is the bytes
    `0x81 'a'`: read as bytes, the `a` glued to `https://` hides the URL from the scan, but the
    browser shows `∥` and a live link to the vendor's real host (P3). Read in its charset, the
    link is mapped."""
    body = (
        '<html><head><meta charset="shift_jis"></head><body><p>\u2225https://www.my-db.com/x</p>'
    ).encode("cp932")
    out = _rw().rewrite_body("mydb", "text/html", None, body)
    assert out.decode("cp932").endswith("<p>\u2225https://www-my--db-com.proxy.lib.org/x</p>")


# ---------------------------------------------------------------------------- tags


def test_a_frame_on_a_host_that_merely_ends_like_the_proxy_is_blanked() -> None:
    """kills: proxy/html_tags.py:_third_party_frame — `host == ours or
    host.endswith("." + ours)` → `host.endswith(ours)`.

    With the tracker shield on, a vendor page's frame on `evilproxy.lib.org` (someone else's
    name ending in the proxy's) is a third party: it becomes `about:blank`, so the patron's
    browser never opens a connection there from the patron's address (P3). A frame on a mapped
    host of the proxy itself is left alone."""
    page = (
        b'<iframe src="https://evilproxy.lib.org/x"></iframe>'
        b'<iframe src="https://www-my--db-com.proxy.lib.org/y"></iframe>'
    )
    assert _rw().rewrite_body("mydb", "text/html", None, page) == (
        b'<iframe src="about:blank"></iframe>'
        b'<iframe src="https://www-my--db-com.proxy.lib.org/y"></iframe>'
    )


def test_with_no_shield_an_objects_data_in_a_lenient_spelling_is_mapped() -> None:
    """kills: proxy/html_tags.py — `LOAD_ATTRIBUTES = (b"poster", b"data")` →
    `(b"poster",)`.

    For a vendor configured `third_party = "allow"` (no tracker shield), an `<object data=…>`
    naming the vendor's real host in a spelling the URL scan does not see (`https:host`, which a
    browser still loads) is mapped: no policy would stop the patron's browser from loading it
    from the vendor directly (P3)."""
    rw = Rewriter(_host_map(), unshielded=frozenset({"mydb"}))
    page = b'<object data="https:www.my-db.com/v.pdf"></object>'
    assert rw.rewrite_body("mydb", "text/html", None, page) == (
        b'<object data="https://www-my--db-com.proxy.lib.org/v.pdf"></object>'
    )


# ---------------------------------------------------------------------------- CSP wildcards and report targets


def test_a_csp_wildcard_over_exactly_configured_hosts_admits_their_mapped_hosts() -> None:
    """kills: proxy/rewrite_headers.py:_wildcard_coverage — `elif pattern.endswith("." +
    domain): touches = True` → `pass`.

    A vendor whose hosts are configured one by one (`www.my-db.com`, `static.my-db.com`) but
    whose policy says `img-src *.my-db.com` still gets its images through the proxy: the mapped
    wildcard is added (and the original kept, as other my-db.com hosts are not proxied).
    Without it the browser refuses every image the patron's database shows."""
    assert _rw().rewrite_csp("img-src *.my-db.com") == "img-src *.my-db.com *.proxy.lib.org"


@pytest.mark.parametrize("target", ["https://user@www.my-db.com/r", "https:www.my-db.com/r"])
def test_csp_report_uri_on_a_vendor_host_the_scan_cannot_map_is_dropped(target: str) -> None:
    """kills: proxy/rewrite_headers.py:_report_target — `return mapped if mapped != url else
    None` → `return mapped`.

    A `report-uri` naming the vendor's real host in a spelling the URL scan leaves as it is
    (user info, no slashes) is dropped rather than kept: kept, the patron's browser would send
    violation reports, carrying the page's whole URL, straight to the vendor from the patron's
    address (P3)."""
    assert _rw().rewrite_csp(f"default-src 'self'; report-uri {target}") == "default-src 'self'"
