"""From a mutation sweep by hand (1 December 2026) of the compiled URL scanner (proxy/_scan.pyx):
behaviours no earlier test pinned (27 mutants, 5 survived the suite; each is killed here).

Each test names the mutant of `proxy/_scan.pyx` it kills. They call the compiled scans directly
(`rewrite_headers.compiled_scan`) where the behaviour is the scan's own, and the real `Rewriter`
where it is about what a patron's browser gets.
"""

from __future__ import annotations

import pytest

from proxy import html_tags, rewrite_headers
from proxy.hosts import HostMap
from proxy.rewrite import Rewriter
from proxy.rewrite_headers import _ANY_HOST

scan = rewrite_headers.compiled_scan
pytestmark = pytest.mark.skipif(scan is None, reason="the compiled scans are not built")


@pytest.fixture(scope="module")
def rw() -> Rewriter:
    hm = HostMap.build(
        public_scheme="https",
        public_host="proxy.example.org",
        public_port=None,
        vendor_hosts=[("v", ["www.vendor.test", "cdn.vendor.test", "*.wild.test"])],
        never_proxy=["s.deep.wild.test"],
    )
    return Rewriter(hm)


def _regex_hosts(data: bytes) -> set[bytes]:
    return {h.lower() for h in _ANY_HOST.findall(data)}


def test_every_non_ascii_byte_is_part_of_a_host_for_the_third_party_count() -> None:
    """kills: proxy/_scan.pyx:module tables — SLASH_HOST `_c >= 128` → `_c > 128`.

    The third-party pre-check must see a `//host` whole, whatever UTF-8 its name holds: a host
    spelt with `Ā` (UTF-8 C4 80) or starting with a continuation byte 0x80 is one host, as the
    reports' regex (`_ANY_HOST`) reads it, not cut (or dropped) at the 0x80 byte."""
    assert scan is not None
    for data in (
        "<img src='//tr\u0100cker.example/p.gif'>".encode(),
        b"<img src='//\x80tracker.example/p.gif'>",
        b"//a\x80b.example //\x80",
    ):
        assert scan.slash_hosts(data) == _regex_hosts(data), data
    assert scan.slash_hosts(b"//\x80tracker.example/") == {b"\x80tracker.example"}


def _reference(rw: Rewriter, data: bytes) -> bytes:
    from tests.test_rewrite_equivalence import reference

    return reference(rw, data)


QUERY = "_delimiter_at `(e == 102 or e == 97)` -> `e == 97` (no `%3f` after the dot)"
FRAGMENT = "_delimiter_at `(e == 102 or e == 51)` -> `e == 102` (no `%23` after the dot)"
CAPITAL_2E = "_dot_end `_low(_at(p, n, i + 2)) == 101` -> `_at(p, n, i + 2) == 101`"


@pytest.mark.parametrize(
    ("data", "mutant"),
    [
        # A trailing dot before an encoded `?` or `#` (once or twice) goes with the host.
        (b'"https://www.vendor.test.%3Fq=1"', QUERY),
        (b'"https://www.vendor.test.%253fq=1"', QUERY),
        (b'"//www.vendor.test.%23top"', FRAGMENT),
        (b'"https%3A%2F%2Fwww.vendor.test.%2523top"', FRAGMENT),
        # A trailing dot spelt `%2E` (capital E) goes with the host, as `%2e` does.
        (b'"https://www.vendor.test%2E/x"', CAPITAL_2E),
        (b'"//a.wild.test%2E:8443/x"', CAPITAL_2E),
        (b'"https%3A%2F%2Fwww.vendor.test%2E%2Fx"', CAPITAL_2E),
    ],
)
def test_vendor_urls_at_the_scan_edges_are_mapped_as_the_reference_maps_them(
    rw: Rewriter, data: bytes, mutant: str
) -> None:
    """kills: proxy/_scan.pyx:_dot_end / _delimiter_at — the mutant named in each case.

    A vendor link's trailing dot, spelt `%2E` in capitals, or before a `?` or `#` that is
    percent-encoded once or twice, goes with the host as the reference pattern takes it: the
    patron's link is `https://www-vendor-test.proxy.example.org/x`, not one on the host
    `…proxy.example.org.` (with `%2E:8443`, the vendor's port left on the proxy's host)."""
    assert scan is not None
    assert scan.rewrite(data, rw._replace_url) == _reference(rw, data), mutant


SRCSET = b'<img src="/a.jpg" srcset="/a.jpg 1x,https:/www.vendor.test/b.jpg 2x">'


def test_a_srcset_url_right_after_a_comma_is_read_by_the_compiled_pre_check() -> None:
    """kills: proxy/_scan.pyx:_plain_list — piece end `p[t] > 32 and p[t] != 44` → `p[t] > 32`
    (a comma no longer ends a piece).

    With the shield off (`third_party = "allow"`) every image candidate of a `srcset` is loaded
    by the patron's browser. `1x,https:/www.vendor.test/b.jpg` holds a vendor URL spelt so the
    URL scan does not map it (`https:/host`, which a browser reads as `https://host`); the
    compiled pre-check must hand the tag to the tag editor, or the browser fetches the image
    from the vendor directly (P3), not through the proxy."""
    from tests.test_link_spellings import _leaving_urls, _rewrite

    assert scan is not None
    spans, _, _ = scan.tag_spans(SRCSET, html_tags.MAX_TAG, True)
    assert (0, len(SRCSET)) in spans
    page = b"<!doctype html><p>cover</p>" + SRCSET
    assert _leaving_urls(page, loads=True), "the spelling does lead to the vendor host"
    out = _rewrite(page, shield=False)
    assert not _leaving_urls(out, loads=True), out
