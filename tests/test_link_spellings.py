"""Links, forms, frames and base URLs spelt so that a browser reads a vendor host the URL scan
does not see (`html_tags._edit_links`, the compiled pre-check `_scan.tag_spans`).

The end-to-end proof that such a link is not followed is in `test_navigation_leaks.py`; here
are the rewriter's own rules: every navigation URL in a rewritten page is off the vendor hosts
as a browser reads it, whatever the spelling, the tag, the chunking or the scan path; the links
the URL scan already maps come out byte for byte as before; and the compiled pre-check never
leaves out a tag the full reading would change.
"""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from proxy import html_tags, rewrite_headers
from proxy.hosts import HostMap
from proxy.navigation import to_vendor_host
from proxy.rewrite import Rewriter
from tests.test_navigation_leaks import VENDOR, _direct_requests

compiled = rewrite_headers.compiled_scan
OTHER = "other.example"


def _rewriter(*, shield: bool = True) -> Rewriter:
    """Vendor "one"; with `shield` off, as `third_party = "allow"` makes it."""
    hosts = HostMap.build(
        public_scheme="http",
        public_host="proxy.localhost",
        public_port=8080,
        vendor_hosts=[("one", [VENDOR, "*.cdn.vendor.test"])],
    )
    return Rewriter(hosts, {}, unshielded=frozenset() if shield else frozenset({"one"}))


def _rewrite(page: bytes, *, chunk: int | None = None, shield: bool = True) -> bytes:
    stream = _rewriter(shield=shield).stream("one", "text/html", "utf-8")
    if chunk is None:
        return stream.feed(page) + stream.finish()
    out = b"".join(stream.feed(page[i : i + chunk]) for i in range(0, len(page), chunk))
    return out + stream.finish()


@pytest.fixture(params=["compiled", "regex"])
def scan_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with the compiled pre-check and with the pure-Python path."""
    if request.param == "compiled":
        assert compiled is not None, "the compiled scans are built in CI"
    else:
        monkeypatch.setattr(rewrite_headers, "compiled_scan", None)
    return str(request.param)


class _Links(HTMLParser):
    """The URL attributes of navigation tags (with `loads`, of load tags too, and the URLs of
    list attributes), as Python's HTML parser reads them (names in lower case, values unquoted
    with character references decoded): an independent reading."""

    def __init__(self, loads: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.tags = html_tags.NAVIGATION_TAGS | (html_tags.LOAD_TAGS if loads else frozenset())
        self.singles = html_tags.NAVIGATION_ATTRIBUTES + (
            html_tags.LOAD_ATTRIBUTES if loads else ()
        )
        self.lists = html_tags.LIST_ATTRIBUTES if loads else ()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.encode() not in self.tags:
            return
        seen = set()
        for name, value in attrs:
            if name not in seen:
                if name.encode() in self.singles:
                    self.urls.append(value or "")
                elif name.encode() in self.lists:
                    value = value or ""
                    self.urls += value.split() if name == "ping" else _srcset_urls(value)
            seen.add(name)

    handle_startendtag = handle_starttag


_CANDIDATE = re.compile(r"[\t\n\f\r ,]*([^\t\n\f\r ]+)")
_DESCRIPTORS = re.compile(r"(?:[^,(]|\([^)]*\)?)*,?")


def _srcset_urls(value: str) -> list[str]:
    """The URLs of a `srcset` value (HTML's "parse a srcset attribute"): after whitespace and
    commas, a candidate's URL runs to whitespace, less trailing commas; descriptors, if any, run
    to the next comma not inside parentheses."""
    urls, at = [], 0
    while (m := _CANDIDATE.match(value, at)) is not None:
        url, at = m.group(1), m.end()
        urls.append(url.rstrip(","))
        if not url.endswith(","):
            descriptors = _DESCRIPTORS.match(value, at)
            assert descriptors is not None
            at = descriptors.end()
    return urls


def _leaving_urls(page: bytes, *, loads: bool = False) -> list[str]:
    """The navigation URLs of `page` (with `loads`, the loads' too) that a browser would follow
    to a vendor host."""
    hm = _rewriter().host_map
    parser = _Links(loads)
    parser.feed(page.decode("utf-8", "surrogateescape"))
    parser.close()
    found = []
    for url in parser.urls:
        leaving = to_vendor_host(url)
        if leaving is not None and hm.vendor_for_host(leaving[0]) is not None:
            found.append(url)
    return found


# Each spelling takes a browser to the vendor's real host (test_navigation_leaks shows Chromium
# following them); the URL scan alone maps none of them.
LENIENT = [
    "http:\\\\www.vendor.test/leak",
    "/\\www.vendor.test/leak",
    "\\\\www.vendor.test/leak",
    "ht\ttp://www.vendor.test/leak",
    "http://x@www.vendor.test/leak",
    "http://%77ww.vendor.test/leak",
    "http://\uff57ww.vendor.test/leak",
    "http:&#x2F;&#x2F;www.vendor.test/leak",
    "&#x68;ttp://www.vendor.test/leak",
    "https:/www.vendor.test/leak",
    "https:www.vendor.test/leak",
    "http:///www.vendor.test/leak",
    "http://www.ven\ndor.test/leak",
    "http://www\u3002vendor.test/leak",
    " \x01http://x@www.vendor.test/leak",
    "//a.cdn.vendor.test@www.vendor.test/leak",
    "http://img%2Ecdn.vendor.test/leak",
]

TAGS = [
    '<a href="{}">next</a>',
    "<a href='{}'>next</a>",
    "<A HREF={}>next</A>",
    '<area shape=rect coords="0,0,9,9" href="{}">',
    '<svg><a xlink:href="{}"><text>next</text></a></svg>',
    '<form action="{}"><button>go</button></form>',
    '<form><button formaction="{}">go</button></form>',
    '<form><input type=submit formaction="{}"></form>',
    '<iframe src="{}"></iframe>',
    '<frame src="{}">',
    '<base href="{}">',
]


@pytest.mark.parametrize(
    ("tag", "url"),
    # An unquoted value ends at whitespace: those spellings need quotes to be one URL.
    [(t, u) for t in TAGS for u in LENIENT if '"' in t or "'" in t or not re.search(r"\s", u)],
)
def test_a_navigation_url_spelt_leniently_is_mapped(scan_path: str, tag: str, url: str) -> None:
    page = ("<!doctype html><p>results</p>" + tag.format(url)).encode()
    assert _leaving_urls(page), "the spelling does lead to the vendor host"
    out = _rewrite(page)
    assert not _leaving_urls(out), out
    assert b"proxy.localhost" in out, out  # mapped, not dropped


def test_the_mapped_url_keeps_the_path_query_and_quotes(scan_path: str) -> None:
    page = (
        b"<a class=x href='http:\\\\www.vendor.test/a/b?q=1&amp;back=https://www.vendor.test/c'"
        b' title="t">n</a>'
    )
    out = _rewrite(page)
    assert out == (
        b"<a class=x href='http://www-vendor-test.proxy.localhost:8080/a/b?q=1&amp;"
        b'back=http://www-vendor-test.proxy.localhost:8080/c\' title="t">n</a>'
    ), out


def test_links_the_url_scan_maps_come_out_as_before(scan_path: str) -> None:
    """A page of ordinary links: the tag stage changes nothing the URL scan did not."""
    links = [
        "https://www.vendor.test/a?x=1&amp;y=2",
        "//www.vendor.test/b",
        "HTTPS://WWW.VENDOR.TEST/c",
        "https://www.vendor.test:443/d%20e",
        "https://img.cdn.vendor.test/f.png",
        "/relative/path%2F@x",
        "?q=a&amp;b",
        "#top",
        "mailto:x@example.org",
        f"https://{OTHER}/x",
        "javascript:void(0)",
    ]
    page = "".join(f'<a href="{u}">{i}</a><form action="{u}"></form>' for i, u in enumerate(links))
    rw = _rewriter()
    assert _rewrite(page.encode()) == rw.rewrite_bytes(page.encode())


def test_with_no_shield_every_url_of_a_srcset_or_ping_is_read(scan_path: str) -> None:
    """A `srcset` candidate right after a descriptor's comma, a URL with a comma inside, and
    each of a `ping`'s URLs are read as the browser reads them; the descriptors stay."""
    page = (
        b'<img srcset="a.png 2x,http:\\\\www.vendor.test/b.png 1x, /c,d.png 3x">'
        b'<a href=/x ping="/p http://x@img.cdn.vendor.test/p2">n</a>'
        b'<img srcset="http:\\\\www.vendor.test/e,f.png">'
    )
    assert len(_leaving_urls(page, loads=True)) == 3
    out = _rewrite(page, shield=False)
    assert not _leaving_urls(out, loads=True), out
    assert out == (
        b'<img srcset="a.png 2x,http://www-vendor-test.proxy.localhost:8080/b.png 1x, /c,d.png 3x">'
        b'<a href=/x ping="/p http://img-cdn-vendor-test.proxy.localhost:8080/p2">n</a>'
        b'<img srcset="http://www-vendor-test.proxy.localhost:8080/e,f.png">'
    ), out
    assert _rewrite(page) == page  # with the shield on, its policy stops these loads


def test_a_third_party_link_spelt_leniently_is_left_alone(scan_path: str) -> None:
    """The proxy maps vendor hosts only; another site's link is the vendor's business."""
    page = f'<a href="http:\\\\{OTHER}/x">o</a><a href="http://x@{OTHER}/">p</a>'.encode()
    assert _rewrite(page) == page


def test_a_quoted_gt_does_not_end_the_tag_early(scan_path: str) -> None:
    """A `>` in a quoted value (a title, a data attribute) is not the tag's end, for the browser
    nor for the tag stage: the link after it is read and mapped."""
    page = (
        b'<a title=\'Home > Results\' data-x="a<b>c" href="http:\\\\www.vendor.test/leak">n</a>'
        b'<meta data-x=">" http-equiv=refresh content="0;url=http:\\\\www.vendor.test/r">'
    )
    assert len(_leaving_urls(page)) == 1
    out = _rewrite(page)
    assert not _leaving_urls(out), out
    assert out.count(b"www-vendor-test.proxy.localhost") == 2, out
    assert b"title='Home > Results' data-x=\"a<b>c\"" in out


def test_a_tag_too_long_to_read_is_skipped_the_same_for_any_chunking(scan_path: str) -> None:
    """A tag with an unclosed quote is not read past MAX_TAG, and no tag starts inside what was
    skipped: a `<` in there with no `>` after it in a chunk must not be held back and read as a
    tag start in the next (`resume`), or the page would come out differently for other cuts."""
    head = b"<a x='" + b"y" * 100 + b'<a href="http:\\\\www.vendor.test/inner" '
    # The inner tag's `>` lies past where the outer tag is given up (MAX_TAG after its name)
    # but within the inner tag's own reach.
    gt = 6 + html_tags.MAX_TAG + 40
    page = head + b"z" * (gt - len(head)) + b">" + b"w" * 200 + b"'>"
    page += b'<a href="http:\\\\www.vendor.test/leak">n</a>'
    whole = _rewrite(page)
    assert b"/leak" in whole and b"www-vendor-test.proxy.localhost:8080/leak" in whole
    for chunk in (50, 117, 1000, 4096, 8000, gt - 20, gt - 5, 9000, 65536):
        assert _rewrite(page, chunk=chunk) == whole, chunk


def test_every_chunking_gives_the_same_page(scan_path: str) -> None:
    page = (
        b'<p>x</p><a id=1 href="http:&#x2F;&#x2F;www.vendor.test/leak">n</a><b>y</b>'
        b"<a title='a > b' href=/\\www.vendor.test/x>m</a><i>z</i>"
    )
    whole = _rewrite(page)
    assert not _leaving_urls(whole)
    for chunk in range(1, len(page) + 1):
        assert _rewrite(page, chunk=chunk) == whole, chunk


# Pieces of navigation tags, for generated pages: tag names (some not navigation tags), URL
# attributes and others, quotes, and the bits lenient URLs are made of.
PIECES = [
    "<a", "<A", "<area", "<form", "<iframe", "<input", "<button", "<base", "<frame", "<abbr",
    "<script", "<meta", " href=", " HREF = ", " xlink:href=", " src=", " action=",
    " formaction=", " class=", "=", '"', "'", " ", "\t", "\n", "/", "//", "///", "\\", "http:",
    "https:", "HTTP:", "ws:", "mailto:", "javascript:", "&#x2F;", "&#47;", "&period;", "&amp;",
    "&", "&#x68;", "%77", "%2E", "%2F", "@", "x@", ":", ":443", "?", "#", VENDOR,
    "WWW.VENDOR.TEST", "www.ven\tdor.test", "\uff57ww.vendor.test", "www\u3002vendor.test",
    "a.cdn.vendor.test", OTHER, "\x01", "é", ">", "x", "leak",
]  # fmt: skip


def _generated(rng: random.Random) -> bytes:
    """A run of pieces, tags or not."""
    return "".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 30))).encode()


URL_PIECES = [p for p in PIECES if "<" not in p and ">" not in p and "=" not in p]
URL_PARTS = [
    ["", " ", "\x01", "x"],
    ["http:", "https:", "HTTP:", "ht\ttp:", "&#x68;ttp:", "ws:", "mailto:", "javascript:", ""],
    ["//", "\\\\", "/\\", "&#x2F;&#x2F;", "&#47;/", "/", "", "///", "/\t/"],
    ["", "", "x@", ":@", "a.cdn.vendor.test@", "x&#64;"],
    [VENDOR, "WWW.VENDOR.TEST", "%77ww.vendor.test", "\uff57ww.vendor.test", "www%2Evendor%2Etest",
     "www\u3002vendor.test", "www.ven\tdor.test", "www&period;vendor.test", "a.cdn.vendor.test",
     OTHER, "www.vendor.test.", "www.vendor.testx"],
    ["", ":443", ":80x", ":"],
    ["/leak", "", "?q=1&amp;x=https://www.vendor.test/", "#f", "\\leak", " "],
]  # fmt: skip


def _url(rng: random.Random) -> str:
    """A URL of lenient parts (most lead to a vendor host), now and then with a piece more."""
    parts = [rng.choice(choices) for choices in URL_PARTS]
    if rng.random() < 0.3:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(URL_PIECES))
    return "".join(parts)


TAG_NAMES = ["a", "A", "area", "form", "iframe", "input", "button", "base", "abbr"]
TAG_NAMES += ["img", "IMG", "source", "video", "audio", "track", "embed", "object"]
ATTRIBUTES = ["href", "HREF", "xlink:href", "src", "action", "formaction", "class"]
ATTRIBUTES += ["srcset", "ping", "poster", "data", "SrcSet"]


def _generated_tag(rng: random.Random) -> bytes:
    """A navigation or load tag (most of the time) with URL attributes spelt leniently; a list
    attribute's value is two of them, with a descriptor or a comma between."""
    name = rng.choice(TAG_NAMES)
    attrs = []
    for _ in range(rng.randrange(1, 4)):
        attr = rng.choice(ATTRIBUTES)
        quote = rng.choice(['"', "'", ""])
        value = _url(rng)
        if attr.lower() in ("srcset", "ping"):
            value += rng.choice([" 2x, ", ", ", " ", " 300w,"]) + _url(rng)
        value = value.replace(quote, "") if quote else re.sub(r"[\s>]", "", value)
        attrs.append(f"{attr}={quote}{value}{quote}")
    return f"<{name} {' '.join(attrs)}>x".encode()


@pytest.mark.parametrize("shield", [True, False], ids=["shield", "no_shield"])
def test_no_generated_navigation_url_leaves_for_a_vendor_host(scan_path: str, shield: bool) -> None:
    """Whatever the pieces, every navigation URL of the rewritten page (and with no shield every
    load's URL too) stays off the vendor hosts as a browser reads it (where the page had one
    that left, the tag stage mapped it)."""
    rng = random.Random(3)
    leaving_pages = 0
    for i in range(6000):
        page = _generated(rng) if i % 2 else _generated_tag(rng)
        leaving_pages += bool(_leaving_urls(page, loads=not shield))
        out = _rewrite(page, shield=shield)
        assert not _leaving_urls(out, loads=not shield), (page, out)
    assert leaving_pages > 400, "the generator makes pages with leaving links"


@pytest.mark.skipif(compiled is None, reason="the compiled scans are not built")
@pytest.mark.parametrize("loads", [False, True], ids=["shield", "no_shield"])
def test_the_compiled_pre_check_never_leaves_out_a_tag_the_full_reading_changes(
    loads: bool,
) -> None:
    """The navigation (and load) tags `_scan.tag_spans` leaves out (of those
    `html_tags.every_tag` finds) are ones `edit_tag` returns unchanged. (test_scan_compiled
    checks the other tags.)"""
    assert compiled is not None
    rw = _rewriter(shield=not loads)
    tags = html_tags.NAVIGATION_TAGS | (html_tags.LOAD_TAGS if loads else frozenset())
    rng = random.Random(5)
    left_out = kept = 0
    for i in range(6000):
        data = _generated(rng) if i % 2 else _generated_tag(rng)
        spans = set(compiled.tag_spans(data, html_tags.MAX_TAG, loads)[0])
        for start, end in html_tags.every_tag(data, html_tags.MAX_TAG, loads)[0]:
            tag = data[start:end]
            name = re.match(rb"<([a-z]+)", tag.lower())
            assert name is not None
            if name.group(1) not in tags:
                continue
            if (start, end) in spans:
                kept += 1
            else:
                left_out += 1
                assert rw._edit_tag(tag, loads=loads) == tag, data
    assert left_out > 300 and kept > 800, (left_out, kept)


# Chromium end to end, with the tracker shield off (`third_party = "allow"`): then no policy
# stops a form, a frame or a base URL either.
ALLOW = 'third_party = "allow"\nthird_party_reason = "test: no shield"\n'


@pytest.mark.browser
@pytest.mark.parametrize(
    ("body", "click"),
    [
        ('<form action="http:\\\\www.vendor.test/leak"><button id=go>go</button></form>', True),
        ('<base href="http://x@www.vendor.test/"><a id=go href="leak">next</a>', True),
        ('<iframe src="/\\www.vendor.test/leak"></iframe>', False),
    ],
    ids=["form_action", "base_href", "iframe_src"],
)
async def test_without_the_shield_no_form_base_or_frame_reaches_the_vendor_host(
    watch: Any,
    body: str,
    click: bool,
) -> None:
    direct = await _direct_requests(
        watch,
        body,
        click=click,
        vendor_extra=ALLOW,
    )
    assert not direct, f"the patron's browser went straight to the vendor's real host: {direct}"
