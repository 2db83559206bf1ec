"""From a second mutation sweep by hand (1 December 2026) of what a vendor learns (DESIGN.md P1 to
P2): proxy/privacy.py, proxy/hosts.py, proxy/vendors/{ip,referer,assertion}.py and
proxy/assertion.py.

Each test names the mutant it kills: a small change no earlier test noticed. Each passes on
the current code and failed with its mutant applied."""

from __future__ import annotations

from multidict import CIMultiDict
from yarl import URL

from proxy.hosts import HostMap
from proxy.privacy import outbound_headers
from proxy.vendors.ip import IpAdapter
from proxy.vendors.referer import _same_page
from proxy.web.messages import DISCLOSURES

HM = HostMap.build(
    public_scheme="https",
    public_host="proxy.lib.org",
    public_port=None,
    vendor_hosts=[("v", ["www.v.com", "*.v.com"])],
)
ORIGINS = {"v": "https://www.v.com"}


def test_two_range_headers_ask_for_the_whole_document_like_a_multi_range() -> None:
    """kills: proxy/privacy.py:outbound_headers — `len(ranges) > 1` → `len(ranges) > 2`.

    A request with two Range headers (each a single range) is as much a multi-range request as
    `bytes=0-0,5-9`: a vendor that honours both answers multipart/byteranges, which the usage
    limits do not count and the rewriter cannot read. The proxy asks for the whole document,
    without its If-Range, whichever way the browser (or a script) spelt the ranges."""
    incoming: CIMultiDict[str] = CIMultiDict(
        [("Range", "bytes=0-0"), ("Range", "bytes=5-9"), ("If-Range", '"v1"')]
    )
    out = outbound_headers(incoming, hosts=HM, vendor_origins=ORIGINS)
    assert out.getall("Range", []) == []
    assert "If-Range" not in out
    one: CIMultiDict[str] = CIMultiDict([("Range", "bytes=0-0"), ("If-Range", '"v1"')])
    kept = outbound_headers(one, hosts=HM, vendor_origins=ORIGINS)
    assert kept.getall("Range") == ["bytes=0-0"] and kept["If-Range"] == '"v1"'


def test_a_host_header_port_with_leading_zeros_is_nobodys_host() -> None:
    """kills: proxy/hosts.py:HostMap.split_request_host — `or port_text != str(port)` removed.

    `proxy.lib.org:0443` and `www-v-com.proxy.lib.org:00443` are no spelling a browser sends
    for the proxy's host or a mapped vendor host: they are refused as malformed, never taken
    as the proxy's own pages or as the vendor's host (whose requests then carry the patron's
    session and the vendor's authorisation)."""
    assert HM.split_request_host("proxy.lib.org:0443") is None
    assert not HM.is_public_host("proxy.lib.org:0443")
    assert HM.vendor_host_from_request("www-v-com.proxy.lib.org:00443") is None
    # The plain spellings still are the proxy's and the vendor's hosts.
    assert HM.is_public_host("proxy.lib.org:443")
    assert HM.vendor_host_from_request("www-v-com.proxy.lib.org:443") == "www.v.com"


def test_the_secret_referer_goes_only_to_the_start_pages_host_and_port() -> None:
    """kills: proxy/vendors/referer.py:_same_page — `and a.port == b.port` removed; and
    `and (a.host or "").lower() == (b.host or "").lower()` removed.

    The library's authorised Referer is its secret: it goes on the configured start page only,
    not on the same path and query of another of the vendor's hosts (a `*.vendor` wildcard
    covers hosts the library never configured as a start page) nor of another port there."""
    start = URL("https://www.vendor.test:8443/start?lib=weston")
    assert _same_page(URL("https://www.vendor.test:8443/start?lib=weston"), start)
    assert not _same_page(URL("https://www.vendor.test/start?lib=weston"), start)
    assert not _same_page(URL("https://www.vendor.test:9443/start?lib=weston"), start)
    assert not _same_page(URL("https://cdn.vendor.test:8443/start?lib=weston"), start)
    assert not _same_page(URL("https://other.example:8443/start?lib=weston"), start)


def test_an_ip_vendor_tells_the_patron_it_learns_nothing_of_them() -> None:
    """kills: proxy/vendors/ip.py:IpAdapter.disclosure — `DISCLOSURES["ip"]` →
    `DISCLOSURES["assertion"]` (or any other kind's text).

    What the patron is told about an IP-authorised database is the IP text: the vendor sees
    only the proxy's address, no signed statement about them. Another kind's text would tell
    the patron something untrue about what the vendor learns (P2's disclosure)."""
    adapter = IpAdapter(None, None)  # type: ignore[arg-type]  # disclosure uses neither
    assert adapter.disclosure() == DISCLOSURES["ip"]
    assert all(adapter.disclosure() != text for kind, text in DISCLOSURES.items() if kind != "ip")


def test_a_pseudonymous_vendor_is_disclosed_as_receiving_a_pseudonym() -> None:
    """kills: proxy/vendors/assertion.py:AssertionAdapter.disclosure — the
    `if self.vendor.releases_pseudonym(...)` branch removed (every assertion vendor disclosed
    as anonymous).

    A vendor whose running contract lets it receive a pairwise pseudonym (`sub`) gets one on
    every request (`authorize` asks the same question); what the patron is told must say so,
    never the anonymous text, which would promise less than the vendor learns (P2). Once the
    contract ends, the anonymous text stands."""
    from types import SimpleNamespace

    from proxy.vendors.assertion import AssertionAdapter

    pseudonymous = AssertionAdapter(SimpleNamespace(releases_pseudonym=lambda _d: True), None)  # type: ignore[arg-type]
    anonymous = AssertionAdapter(SimpleNamespace(releases_pseudonym=lambda _d: False), None)  # type: ignore[arg-type]
    assert DISCLOSURES["assertion_pseudonymous"] != DISCLOSURES["assertion"]
    assert pseudonymous.disclosure() == DISCLOSURES["assertion_pseudonymous"]
    assert anonymous.disclosure() == DISCLOSURES["assertion"]


def test_a_page_of_another_site_is_named_by_its_own_host() -> None:
    """kills: proxy/privacy.py:initiator_host — `… vendor_host_from_request(parts.netloc) or
    host` → `… vendor_host_from_request(parts.netloc)` (another site's host lost).

    The jar decides SameSite cookies by where a request came from: the proxy's own pages, a
    mapped host (named by its vendor host), another site (named by its own host, which may be
    same-site with the vendor) or nothing at all (an opaque origin)."""
    from proxy.privacy import initiator_host

    assert initiator_host("https://proxy.lib.org/menu", HM) == (True, None)
    assert initiator_host("https://www-v-com.proxy.lib.org/a", HM) == (False, "www.v.com")
    assert initiator_host("https://search.v.com/q?x=1", HM) == (False, "search.v.com")
    assert initiator_host("https://mail.example/inbox", HM) == (False, "mail.example")
    assert initiator_host("null", HM) == (False, None)


def test_content_codings_are_read_whatever_their_case() -> None:
    """kills: proxy/privacy.py:_accept_encoding — `.strip().lower()` → `.strip()`.

    Content codings are case-insensitive (RFC 9110 §8.4.1): `GZIP, Br` from a client is the
    same wish as `gzip, br`, and the vendor is asked for those (still only the codings the
    proxy can decode for rewriting, never `zstd`), so the patron's pages come compressed."""
    incoming: CIMultiDict[str] = CIMultiDict([("Accept-Encoding", "GZIP, Br;q=0.5, ZSTD")])
    out = outbound_headers(incoming, hosts=HM, vendor_origins=ORIGINS)
    assert out["Accept-Encoding"] == "gzip, br"
