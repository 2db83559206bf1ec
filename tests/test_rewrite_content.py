"""What real vendor content needs beyond a URL swap, unit by unit: `integrity` and a meta CSP in
HTML, the charset a browser would use (byte-order mark, WHATWG labels), playlists and event
streams, and the sniff of an untyped body. The end-to-end forms are in tests/test_vendor_content.py.
"""

from __future__ import annotations

import pytest

from proxy.charsets import charset_codec, charset_is_bytes_safe
from proxy.hosts import HostMap
from proxy.html_tags import MAX_TAG
from proxy.rewrite import Rewriter, should_rewrite
from proxy.sniff import sniff_decided, sniff_document

MAPPED = b"https://www-my--db-com.proxy.lib.org"


@pytest.fixture
def rw() -> Rewriter:
    hm = HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=None,
        vendor_hosts=[("mydb", ["www.my-db.com", "cdn.my-db.com", "*.my-db.org"])],
    )
    return Rewriter(hm)


def html(rw: Rewriter, data: bytes, charset: str | None = "utf-8") -> bytes:
    return rw.rewrite_body("mydb", "text/html", charset, data)


def fed(rw: Rewriter, data: bytes, step: int, charset: str | None = None) -> bytes:
    """`data` rewritten as an HTML body fed `step` bytes at a time."""
    sr = rw.stream("mydb", "text/html", charset)
    return b"".join(sr.feed(data[i : i + step]) for i in range(0, len(data), step)) + sr.finish()


# ------------------------------------------------------------------------------ integrity


@pytest.mark.parametrize(
    "tag",
    [
        b'<script src="https://www.my-db.com/app.js" integrity="sha384-abc"></script>',
        b"<script integrity='sha384-abc' src=//cdn.my-db.com/app.js></script>",
        b'<SCRIPT SRC="/js/app.js" INTEGRITY="sha384-abc" crossorigin></SCRIPT>',
        b'<link rel="stylesheet" href="https://x.my-db.org/s.css" integrity="sha384-abc">',
        b'<link rel=modulepreload href="app.js"\n  integrity="sha384-abc" />',
    ],
)
def test_integrity_is_dropped_where_the_proxy_serves_the_resource(rw: Rewriter, tag: bytes) -> None:
    """Relative URLs and proxied vendor hosts come through the proxy, which may rewrite them."""
    out = html(rw, tag)
    assert b"integrity" not in out.lower()
    assert b"sha384" not in out


@pytest.mark.parametrize(
    "tag",
    [
        b'<script src="https://cdnjs.example.net/lib.js" integrity="sha384-abc"></script>',
        b'<link href="//fonts.example.com/f.css" rel=stylesheet integrity="sha384-abc">',
        b'<script src="data:text/javascript,1" integrity="sha384-abc"></script>',
        b'<script integrity="sha384-abc">inline()</script>',
        b'<div integrity="sha384-abc" src="/x.js"></div>',
    ],
)
def test_integrity_stays_where_the_proxy_does_not_touch_the_bytes(rw: Rewriter, tag: bytes) -> None:
    assert html(rw, tag) == tag


def test_integrity_is_dropped_from_the_tag_only(rw: Rewriter) -> None:
    page = (
        b'<p>integrity="x"</p><script src="/a.js" integrity="sha384-abc"'
        b' crossorigin="anonymous"></script>'
    )
    assert html(rw, page) == (
        b'<p>integrity="x"</p><script src="/a.js" crossorigin="anonymous"></script>'
    )


def test_a_tag_longer_than_max_tag_is_left_as_it_is(rw: Rewriter) -> None:
    tag = b'<script src="/a.js" data-x="' + b"a" * MAX_TAG + b'" integrity="sha384-abc">'
    assert html(rw, tag) == tag


# ------------------------------------------------------------------------------ meta CSP


def test_meta_csp_host_sources_are_mapped_as_the_header_is(rw: Rewriter) -> None:
    page = (
        b'<meta http-equiv="Content-Security-Policy" content="default-src \'self\'; '
        b"script-src 'self' cdn.my-db.com https://www.my-db.com; img-src *.my-db.org\">"
    )
    expected = (
        b'<meta http-equiv="Content-Security-Policy" content="default-src \'self\'; '
        b"script-src 'self' cdn-my--db-com.proxy.lib.org https://www-my--db-com.proxy.lib.org; "
        b'img-src *.proxy.lib.org">'
    )
    assert html(rw, page) == expected


def test_meta_csp_in_single_quotes_with_entities_stays_well_formed(rw: Rewriter) -> None:
    page = b"<meta content='script-src &#39;self&#39; cdn.my-db.com' http-equiv=content-security-policy>"
    assert html(rw, page) == (
        b"<meta content='script-src &#39;self&#39; cdn-my--db-com.proxy.lib.org'"
        b" http-equiv=content-security-policy>"
    )


def test_other_meta_tags_are_left_alone(rw: Rewriter) -> None:
    page = b'<meta http-equiv="refresh" content="0; cdn.my-db.com"><meta name=x content="cdn.my-db.com">'
    assert html(rw, page) == page


# ------------------------------------------------------------------------------ chunking


PAGE = (
    b"<html><head><meta charset=utf-8>"
    b'<meta http-equiv="Content-Security-Policy" content="script-src cdn.my-db.com">'
    b'<script src="https://www.my-db.com/app.js" integrity="sha384-abc"></script>'
    b'<link href="/s.css" integrity="sha384-def" rel="stylesheet">'
    b'</head><body><a href="https://www.my-db.com/x">x</a> < <script'
)


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, len(PAGE)])
def test_tags_split_across_chunks_give_the_same_page(rw: Rewriter, step: int) -> None:
    whole = html(rw, PAGE)
    assert b"integrity" not in whole and b"cdn-my--db-com.proxy.lib.org" in whole
    assert fed(rw, PAGE, step) == whole


def test_a_finished_tag_is_not_held_back(rw: Rewriter) -> None:
    sr = rw.stream("mydb", "text/html", "utf-8")
    out = sr.feed(b'<p>results</p><script src="/a.js" integrity="sha384-abc">')
    assert out == b'<p>results</p><script src="/a.js">'


# ------------------------------------------------------------------------------ charsets


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("Windows-31J", "cp932"),
        ("x-sjis", "cp932"),
        ("Shift_JIS", "cp932"),
        ("x-gbk", "gb18030"),
        ("euc-kr", "cp949"),
        (" unicode-1-1-utf-8 ", "utf-8"),
        ("utf-16", "utf_16_le"),
        ("x-mac-cyrillic", "mac_cyrillic"),
        # Python knows it, WHATWG does not: browsers ignore it and use their default.
        ("utf-32-le", "utf-8"),
        (None, "utf-8"),
    ],
)
def test_charset_labels_are_read_as_browsers_read_them(label: str | None, codec: str) -> None:
    assert charset_codec(label) == codec


@pytest.mark.parametrize("label", ["iso-2022-kr", "replacement", "hz-gb-2312"])
def test_a_replacement_label_has_no_codec(label: str) -> None:
    assert charset_codec(label) is None
    assert not charset_is_bytes_safe(label)


@pytest.mark.parametrize("label", ["x-no-such-charset", "utf8mb4"])
def test_a_body_in_an_unknown_charset_is_mapped_as_browsers_render_it(
    rw: Rewriter, label: str
) -> None:
    """A browser ignores a label it does not know and renders with its (ASCII-compatible)
    default: the page's links must be mapped, or a click leaves the proxy."""
    assert charset_codec(label) == "utf-8" and charset_is_bytes_safe(label)
    body = b'<a href="https://www.my-db.com/x">'
    assert html(rw, body, label) == b'<a href="' + MAPPED + b'/x">'


def test_windows_31j_links_after_a_fullwidth_colon_are_mapped(rw: Rewriter) -> None:
    text = "\u8a73\u7d30\uff1ahttps://www.my-db.com/a \u2460"  # ① only in Windows-31J
    out = html(rw, text.encode("cp932"), "Windows-31J")
    assert out.decode("cp932") == text.replace("https://www.my-db.com", MAPPED.decode())


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("step", [1, 2, 3, 5, 1000])
def test_a_byte_order_mark_decides_over_the_header(rw: Rewriter, codec: str, step: int) -> None:
    text = '\ufeff<a href="https://www.my-db.com/x">\u00e9</a>'
    out = fed(rw, text.encode(codec), step, charset="iso-8859-1")
    assert out == text.replace("https://www.my-db.com", MAPPED.decode()).encode(codec)


def test_a_utf8_byte_order_mark_is_kept(rw: Rewriter) -> None:
    body = b'\xef\xbb\xbf<a href="https://www.my-db.com/x">'
    assert fed(rw, body, 1, charset="utf-16") == b'\xef\xbb\xbf<a href="' + MAPPED + b'/x">'


@pytest.mark.parametrize("body", [b"", b"\xff", b"\xef\xbb", b"ab"])
def test_bodies_shorter_than_a_mark_come_out_whole(rw: Rewriter, body: bytes) -> None:
    assert fed(rw, body, 1) == body


# ------------------------------------------------------------------------------ playlists, events


@pytest.mark.parametrize(
    "ctype",
    [
        "application/vnd.apple.mpegurl",
        "application/x-mpegURL",
        "audio/mpegurl",
        "text/event-stream",
    ],
)
def test_playlists_and_event_streams_are_rewritten(ctype: str) -> None:
    assert should_rewrite(ctype)


@pytest.mark.parametrize(
    "event",
    [
        b'data: {"cite":"https://www.my-db.com/a"}\n\n',
        b"data: https://www.my-db.com/a\r\r",
        b"data: https://www.my-db.com/a\r\n\r\n",
        b"event: ping\ndata: https://www.my-db.com\n\n",
    ],
)
def test_an_event_comes_out_as_soon_as_it_is_in(rw: Rewriter, event: bytes) -> None:
    """A complete event is written out by the `feed` that brings its end, nothing held back for
    the next bytes (which may come only seconds later)."""
    sr = rw.stream("mydb", "text/event-stream", None)
    out = sr.feed(event)
    assert out == event.replace(b"https://www.my-db.com", MAPPED)
    assert sr.finish() == b""


# ------------------------------------------------------------------------------ sniffing


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"<!DOCTYPE html><html>", "text/html"),
        (b"\r\n  <HTML lang=en>", "text/html"),
        (b"<p>hi", "text/html"),
        (b"<!-- x -->", "text/html"),
        (b'<?xml version="1.0"?>', "text/xml"),
        (b"%PDF-1.7", None),
        (b"<pre>text", None),
        (b"\xef\xbb\xbf<html>", None),  # a BOM makes it text/plain for the browser
        (b"hello <html>", None),
    ],
)
def test_untyped_documents_are_sniffed_as_browsers_do(head: bytes, kind: str | None) -> None:
    assert sniff_document(head) == kind


def test_sniffing_waits_only_until_the_answer_is_certain() -> None:
    assert not sniff_decided(b"  <!DOCTYPE")
    assert sniff_decided(b"  <!DOCTYPE html>")
    assert sniff_decided(b" " * 1445)
