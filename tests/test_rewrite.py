"""Unit tests for proxy.rewrite and the modules it uses: bodies, streaming, codings, headers."""

from __future__ import annotations

import gzip
import re
import zlib

import brotli
import pytest

from proxy import rewrite_headers
from proxy.config import RewriteRule
from proxy.content_coding import DECODE_PIECE, CorruptBody, UnsupportedEncoding, decoder_for
from proxy.hosts import HostMap
from proxy.rewrite import URL_CONTEXT, URL_WINDOW, Rewriter, should_rewrite

CONFIGURED = ("www.my-db.com", "static.my-db.com", "search.ebscohost.com", "img.cdn.ebscohost.com")
UNCONFIGURED = (
    "www.my-db.com.evil.org",
    "notwww.my-db.com",
    "tracker.example.net",
    "ads.ebscohost.com",
)

SAMPLE = b"""<!DOCTYPE html>
<html><head>
<base href="https://www.my-db.com/app/">
<meta http-equiv="refresh" content="5; url=https://www.my-db.com/timeout?x=1">
<link rel="stylesheet" href="//static.my-db.com/css/site.css">
<link rel="preconnect" href="https://tracker.example.net">
<style>
  body { background: url("https://img.cdn.ebscohost.com/bg.png") no-repeat; }
  @font-face { src: url(//static.my-db.com/f.woff2) format("woff2"); }
  .ad { background-image: url('https://ads.ebscohost.com/pixel.gif'); }
</style>
<script src="https://www.my-db.com/js/app.js?v=3"></script>
<script src="https://tracker.example.net/t.js"></script>
<script>
  window.__CONFIG__ = {"api":"https:\\/\\/search.ebscohost.com\\/api\\/v1","cdn":"\\/\\/static.my-db.com\\/x",
    "login":"https://www.my-db.com/login?returnUrl=https%3A%2F%2Fwww.my-db.com%2Fsearch%3Fq%3Dcats",
    "lookalike":"https://www.my-db.com.evil.org/steal","other":"https://notwww.my-db.com/"};
  window.__NUXT__ = {"record":"https:\\u002F\\u002Fwww.my-db.com\\u002Frecord\\u002F1",
    "cdn":"\\u002f\\u002fstatic.my-db.com\\u002fimg.png"};
  var img = "http://www.my-db.com:8443/pic.jpg"; // explicit vendor port
</script>
</head>
<body background="https://img.cdn.ebscohost.com/body.jpg" style="background:url(https://static.my-db.com/s.png)">
<a href="https://www.my-db.com/record/123">Record</a>
<a href="HTTPS://WWW.MY-DB.COM/Upper">Upper case</a>
<a href="https://ads.ebscohost.com/click">Ad</a>
<form action="https://search.ebscohost.com/search" method="get">
  <button formaction="//search.ebscohost.com/advanced">Advanced</button>
</form>
<img src="https://img.cdn.ebscohost.com/a.png"
     srcset="https://img.cdn.ebscohost.com/a-1x.png 1x, //img.cdn.ebscohost.com/a-2x.png 2x, https://tracker.example.net/p.png 3x">
<video poster="https://static.my-db.com/poster.jpg" src="https://static.my-db.com/v.mp4"></video>
<object data="https://static.my-db.com/viewer.swf"></object>
<p>Mirror: https://www.my-db.com.evil.org/ and notwww.my-db.com and ftp://www.my-db.com/file.</p>
</body></html>
"""
# Whole-host occurrence of a configured host (not part of a longer name), also after `\u002F`.
ORIGINAL_HOST = re.compile(
    rb"(?:(?<![a-z0-9.\-])|(?<=\\u002f))"
    rb"(?:www\.my-db\.com|static\.my-db\.com|search\.ebscohost\.com|img\.cdn\.ebscohost\.com)"
    rb"(?![a-z0-9\-]|\.[a-z0-9])",
    re.IGNORECASE,
)


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


@pytest.fixture
def rw() -> Rewriter:
    return Rewriter(
        _host_map(),
        vendor_origins={"mydb": "https://www.my-db.com", "ebsco": "https://search.ebscohost.com"},
    )


@pytest.fixture
def rw_port() -> Rewriter:
    return Rewriter(_host_map(8443), vendor_origins={"mydb": "https://www.my-db.com:444"})


def _html(rw: Rewriter, data: bytes = SAMPLE) -> bytes:
    return rw.rewrite_body("mydb", "text/html; charset=utf-8", "utf-8", data)


# ---------------------------------------------------------------------------- the sample page


@pytest.mark.parametrize(
    "expected",
    [
        b'<base href="https://www-my--db-com.proxy.lib.org/app/">',
        b'content="5; url=https://www-my--db-com.proxy.lib.org/timeout?x=1"',
        b'href="//static-my--db-com.proxy.lib.org/css/site.css"',
        b'url("https://img-cdn-ebscohost-com.proxy.lib.org/bg.png")',
        b"url(//static-my--db-com.proxy.lib.org/f.woff2)",
        b'src="https://www-my--db-com.proxy.lib.org/js/app.js?v=3"',
        b'"https:\\/\\/search-ebscohost-com.proxy.lib.org\\/api\\/v1"',
        b'"\\/\\/static-my--db-com.proxy.lib.org\\/x"',
        b'"https:\\u002F\\u002Fwww-my--db-com.proxy.lib.org\\u002Frecord\\u002F1"',
        b'"\\u002f\\u002fstatic-my--db-com.proxy.lib.org\\u002fimg.png"',
        b"returnUrl=https%3A%2F%2Fwww-my--db-com.proxy.lib.org%2Fsearch%3Fq%3Dcats",
        b'"https://www-my--db-com.proxy.lib.org/pic.jpg"',
        b'background="https://img-cdn-ebscohost-com.proxy.lib.org/body.jpg"',
        b"url(https://static-my--db-com.proxy.lib.org/s.png)",
        b'href="https://www-my--db-com.proxy.lib.org/record/123"',
        b'href="https://www-my--db-com.proxy.lib.org/Upper"',
        b'action="https://search-ebscohost-com.proxy.lib.org/search"',
        b'formaction="//search-ebscohost-com.proxy.lib.org/advanced"',
        b'srcset="https://img-cdn-ebscohost-com.proxy.lib.org/a-1x.png 1x, '
        b"//img-cdn-ebscohost-com.proxy.lib.org/a-2x.png 2x, https://tracker.example.net/p.png 3x",
        b'poster="https://static-my--db-com.proxy.lib.org/poster.jpg"',
        b'data="https://static-my--db-com.proxy.lib.org/viewer.swf"',
    ],
)
def test_every_configured_url_form_in_the_sample_is_mapped(rw: Rewriter, expected: bytes) -> None:
    assert expected in _html(rw)


def test_no_configured_host_survives_in_the_sample(rw: Rewriter) -> None:
    assert ORIGINAL_HOST.findall(SAMPLE)  # the check can see them before rewriting
    assert ORIGINAL_HOST.findall(_html(rw)) == [b"www.my-db.com"]  # only the ftp:// URL


@pytest.mark.parametrize(
    "untouched",
    [
        b"https://www.my-db.com.evil.org/steal",
        b"https://notwww.my-db.com/",
        b"https://tracker.example.net/t.js",
        b"https://ads.ebscohost.com/pixel.gif",
        b"https://ads.ebscohost.com/click",
        b"Mirror: https://www.my-db.com.evil.org/ and notwww.my-db.com and ftp://www.my-db.com/",
    ],
)
def test_unconfigured_and_lookalike_hosts_are_left_exactly(rw: Rewriter, untouched: bytes) -> None:
    assert untouched in _html(rw)


def test_unconfigured_text_is_byte_identical(rw: Rewriter) -> None:
    plain = re.sub(rb"(?i)my-db\.com|ebscohost\.com", b"other.org", SAMPLE)
    assert _html(rw, plain) == plain


def test_public_port_is_added_and_vendor_port_dropped(rw_port: Rewriter) -> None:
    out = _html(rw_port)
    assert b'"http://www.my-db.com:8443' not in out
    assert b'"https://www-my--db-com.proxy.lib.org:8443/pic.jpg"' in out
    assert b"%2F%2Fwww-my--db-com.proxy.lib.org%3A8443%2Fsearch" in out
    assert b'"//static-my--db-com.proxy.lib.org:8443/css/site.css"' in out


def test_sentence_period_after_a_url_is_kept(rw: Rewriter) -> None:
    assert (
        rw.rewrite_text("see https://www.my-db.com.") == "see https://www-my--db-com.proxy.lib.org."
    )


def test_double_percent_encoded_url_is_mapped(rw: Rewriter) -> None:
    got = rw.rewrite_text("r=https%253A%252F%252Fwww.my-db.com%252Fx")
    assert got == "r=https%253A%252F%252Fwww-my--db-com.proxy.lib.org%252Fx"


def test_scheme_glued_to_a_word_is_not_a_url(rw: Rewriter) -> None:
    assert rw.rewrite_text("xhttps://www.my-db.com/") == "xhttps://www.my-db.com/"


# State that devalue (Nuxt, SvelteKit) and serialize-javascript embed in a page for its app.
NUXT_STATE = (
    b'<script>window.__NUXT__={"record":"https:\\u002F\\u002Fwww.my-db.com\\u002Frecord\\u002F1",'
    b'"cdn":"\\u002F\\u002Fwww.my-db.com\\u002Fimg.png"}</script>'
)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize(
    "content_type", ["text/html", "application/json", "application/javascript"]
)
def test_unicode_escaped_urls_are_mapped_keeping_their_escapes(
    rw: Rewriter, content_type: str, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`\\u002F` is JSON's and JavaScript's `/`; serialisers write it for every slash, and the app
    then navigates or fetches with the URL. Left unmapped it sends the patron to the vendor
    directly. Absolute and protocol-relative, on the compiled scan and the Python passes."""
    if not compiled:
        monkeypatch.setattr(rewrite_headers, "compiled_scan", None)
    out = rw.rewrite_body("mydb", content_type, "utf-8", NUXT_STATE)
    assert out == NUXT_STATE.replace(b"www.my-db.com", b"www-my--db-com.proxy.lib.org")


def test_each_unicode_escape_keeps_its_case(rw: Rewriter) -> None:
    text = 'a="https:\\u002f\\u002Fwww.my-db.com\\u002f" b="\\u002f\\u002Fstatic.my-db.com"'
    assert rw.rewrite_text(text) == (
        'a="https:\\u002f\\u002Fwww-my--db-com.proxy.lib.org\\u002f" '
        'b="\\u002f\\u002Fstatic-my--db-com.proxy.lib.org"'
    )


def test_unicode_escaped_urls_take_the_public_port(rw_port: Rewriter) -> None:
    text = '"https:\\u002F\\u002Fwww.my-db.com:444\\u002Fx" "\\u002F\\u002Fstatic.my-db.com:444"'
    assert rw_port.rewrite_text(text) == (
        '"https:\\u002F\\u002Fwww-my--db-com.proxy.lib.org:8443\\u002Fx" '
        '"\\u002F\\u002Fstatic-my--db-com.proxy.lib.org:8443"'
    )


@pytest.mark.parametrize(
    "untouched",
    [
        '"ftp:\\u002F\\u002Fwww.my-db.com"',  # another scheme
        '"a\\u002F\\u002Fwww.my-db.com"',  # a path
        '"https:\\u002F\\u002Fwww.my-db.com.evil.org"',
        '"https:\\u002F/www.my-db.com"',  # two spellings of the slash
        '"https:\\u002E\\u002Ewww.my-db.com"',  # not a slash
        '"https:\\u002F\\u002F\\u002Fwww.my-db.com"',
        '"\\u002Fwww.my-db.com"',
        '"https:\\\\u002F\\\\u002Fwww.my-db.com"',
    ],
)
def test_unicode_escaped_lookalikes_are_left_alone(rw: Rewriter, untouched: str) -> None:
    assert rw.rewrite_text(untouched) == untouched


# ---------------------------------------------------------------------------- streaming


def test_every_split_point_gives_the_one_shot_output(rw: Rewriter) -> None:
    whole = _html(rw)
    for i in range(len(SAMPLE) + 1):
        sr = rw.stream("mydb", "text/html", "utf-8")
        assert sr.feed(SAMPLE[:i]) + sr.feed(SAMPLE[i:]) + sr.finish() == whole, i


def test_byte_by_byte_feeding_gives_the_one_shot_output(rw: Rewriter) -> None:
    sr = rw.stream("mydb", "text/html", "utf-8")
    out = b"".join(sr.feed(SAMPLE[i : i + 1]) for i in range(len(SAMPLE))) + sr.finish()
    assert out == _html(rw)


def test_held_back_bytes_stay_bounded_on_a_large_body(rw: Rewriter) -> None:
    # Unconfigured URLs keep output length equal to input length, so the difference is what is held.
    sr = rw.stream("mydb", "text/html", "utf-8")
    chunk = b"<p>" + b"x" * 4000 + b' <a href="https://tracker.example.net/a">a</a></p>\n'
    fed = emitted = 0
    for _ in range(2000):  # ~8 MB
        emitted += len(sr.feed(chunk))
        fed += len(chunk)
        assert fed - emitted <= URL_WINDOW + URL_CONTEXT
    assert emitted + len(sr.finish()) == fed


def test_a_long_run_of_host_characters_is_not_held_forever(rw: Rewriter) -> None:
    sr = rw.stream("mydb", "text/html", "utf-8")
    out = sr.feed(b"https://" + b"a" * 100_000)
    assert len(out) >= 100_008 - URL_WINDOW - URL_CONTEXT
    assert out + sr.finish() == b"https://" + b"a" * 100_000


# ---------------------------------------------------------------------------- types and charsets


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/html; charset=UTF-8",
        "application/xhtml+xml",
        "text/css",
        "text/javascript",
        "application/javascript",
        "application/json",
        "application/ld+json",
        "text/xml",
        "application/xml",
        "image/svg+xml",
    ],
)
def test_markup_style_script_and_data_types_are_rewritten(content_type: str) -> None:
    assert should_rewrite(content_type)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/pdf",
        "image/png",
        "video/mp4",
        "application/octet-stream",
        "application/zip",
        "application/epub+zip",
        "",
    ],
)
def test_binary_types_are_not_rewritten(content_type: str) -> None:
    assert not should_rewrite(content_type)


def test_a_pdf_passes_through_untouched(rw: Rewriter) -> None:
    body = b"%PDF-1.7 /URI (https://www.my-db.com/x)"
    assert rw.rewrite_body("mydb", "application/pdf", None, body) == body


def test_latin1_body_is_rewritten_as_bytes(rw: Rewriter) -> None:
    body = "Caf\u00e9 <a href='https://www.my-db.com/\u00e9'>".encode("latin-1")
    out = rw.rewrite_body("mydb", "text/html", "ISO-8859-1", body)
    assert out == "Caf\u00e9 <a href='https://www-my--db-com.proxy.lib.org/\u00e9'>".encode(
        "latin-1"
    )


@pytest.mark.parametrize("charset", ["utf-16", "utf-16be", "gb18030", "shift_jis", "iso-2022-jp"])
def test_non_ascii_compatible_charsets_are_transcoded_and_kept(rw: Rewriter, charset: str) -> None:
    text = '\u65e5\u672c <a href="https://www.my-db.com/x">\u8a9e</a> //static.my-db.com/y'
    body = text.encode(charset)
    sr = rw.stream("mydb", "text/html", charset)
    out = b"".join(sr.feed(body[i : i + 3]) for i in range(0, len(body), 3)) + sr.finish()
    assert out.decode(charset) == text.replace(
        "www.my-db.com", "www-my--db-com.proxy.lib.org"
    ).replace("static.my-db.com", "static-my--db-com.proxy.lib.org")


def test_odd_trailing_byte_of_utf16_is_kept(rw: Rewriter) -> None:
    body = "//www.my-db.com".encode("utf-16-le") + b"\x41"
    out = rw.rewrite_body("mydb", "text/html", "utf-16le", body)
    assert out == "//www-my--db-com.proxy.lib.org".encode("utf-16-le") + b"\x41"


# ---------------------------------------------------------------------------- [[rewrite]] rules


def _rules_rw() -> Rewriter:
    rules = {
        "mydb": (
            RewriteRule(find="var base = 'www.my-db.com';", replace="var base = location.host;"),
            RewriteRule(find="ANALYTICS_ON", replace="ANALYTICS_OFF", types=("text/*",)),
            RewriteRule(find="ANALYTICS", replace="NOPE"),
        )
    }
    return Rewriter(_host_map(), rules)


def test_rewrite_rules_apply_to_their_content_types_only() -> None:
    rw = _rules_rw()
    body = b"var base = 'www.my-db.com'; ANALYTICS_ON"
    assert (
        rw.rewrite_body("mydb", "text/html", None, body)
        == b"var base = location.host; ANALYTICS_OFF"
    )
    assert rw.rewrite_body("mydb", "text/css", None, body) == body.replace(b"_ON", b"_OFF")
    assert rw.rewrite_body("ebsco", "text/html", None, body) == body


def test_rewrite_rules_survive_every_split_point() -> None:
    rw = _rules_rw()
    body = b"<script>var base = 'www.my-db.com'; ANALYTICS_ON https://www.my-db.com/</script>"
    whole = rw.rewrite_body("mydb", "text/html", None, body)
    assert b"location.host" in whole and b"www-my--db-com.proxy.lib.org" in whole
    for i in range(len(body) + 1):
        sr = rw.stream("mydb", "text/html", None)
        assert sr.feed(body[:i]) + sr.feed(body[i:]) + sr.finish() == whole, i


def test_rule_replacement_naming_a_vendor_url_is_mapped() -> None:
    rules = {"mydb": (RewriteRule(find="LOGO", replace="https://static.my-db.com/logo.png"),)}
    rw = Rewriter(_host_map(), rules)
    assert rw.rewrite_body("mydb", "text/html", None, b"LOGO") == (
        b"https://static-my--db-com.proxy.lib.org/logo.png"
    )


# ---------------------------------------------------------------------------- Content-Encoding


def _decode(coding: str | None, body: bytes, step: int = 7) -> bytes:
    dec = decoder_for(coding)
    out = b"".join(p for i in range(0, len(body), step) for p in dec.feed(body[i : i + step]))
    return out + b"".join(dec.finish())


def test_gzip_is_decoded() -> None:
    assert _decode("gzip", gzip.compress(SAMPLE)) == SAMPLE


def test_multi_member_gzip_is_decoded_whole() -> None:
    assert _decode("gzip", gzip.compress(b"one ") + gzip.compress(b"two")) == b"one two"


def test_zlib_wrapped_deflate_is_decoded() -> None:
    assert _decode("deflate", zlib.compress(SAMPLE)) == SAMPLE


def test_raw_deflate_is_decoded() -> None:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert _decode("Deflate", c.compress(SAMPLE) + c.flush()) == SAMPLE


def test_brotli_is_decoded() -> None:
    assert _decode("br", brotli.compress(SAMPLE)) == SAMPLE


def test_identity_and_absent_encodings_pass_through() -> None:
    assert _decode("identity", SAMPLE) == SAMPLE
    assert _decode(None, SAMPLE) == SAMPLE


def test_chained_encodings_are_undone_in_reverse_order() -> None:
    assert _decode("gzip, br", brotli.compress(gzip.compress(SAMPLE))) == SAMPLE


def test_unknown_encoding_raises_so_the_body_passes_untouched() -> None:
    with pytest.raises(UnsupportedEncoding):
        decoder_for("zstd")


def test_truncated_gzip_is_reported() -> None:
    with pytest.raises(CorruptBody):
        _decode("gzip", gzip.compress(SAMPLE)[:-12])


def test_garbage_brotli_is_reported() -> None:
    with pytest.raises(CorruptBody):
        _decode("br", b"\xff" * 64)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_a_compression_bomb_comes_out_in_bounded_pieces(coding: str) -> None:
    plain = b"\0" * (8 * 1024 * 1024)
    body = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}[coding](plain)
    dec = decoder_for(coding)
    sizes = [len(p) for p in dec.feed(body)] + [len(p) for p in dec.finish()]
    assert sum(sizes) == len(plain)
    assert max(sizes) <= DECODE_PIECE * 2


# ---------------------------------------------------------------------------- headers


def test_location_is_mapped(rw: Rewriter) -> None:
    assert rw.rewrite_location("https://www.my-db.com/a?b=c") == (
        "https://www-my--db-com.proxy.lib.org/a?b=c"
    )


def test_relative_and_unconfigured_locations_are_left_alone(rw: Rewriter) -> None:
    assert rw.rewrite_location("/login?next=/x") == "/login?next=/x"
    assert rw.rewrite_location("https://idp.example.org/sso") == "https://idp.example.org/sso"


def test_refresh_url_is_mapped(rw: Rewriter) -> None:
    assert rw.rewrite_refresh("5; url=https://www.my-db.com/x") == (
        "5; url=https://www-my--db-com.proxy.lib.org/x"
    )


def test_every_link_target_is_mapped(rw: Rewriter) -> None:
    value = '<https://static.my-db.com/a.css>; rel=preload; as=style, <https://cdn.other.org/b.js>; rel=preload, <//www.my-db.com/next>; rel="next"'
    assert rw.rewrite_link(value) == (
        "<https://static-my--db-com.proxy.lib.org/a.css>; rel=preload; as=style, "
        '<https://cdn.other.org/b.js>; rel=preload, <//www-my--db-com.proxy.lib.org/next>; rel="next"'
    )


def test_acao_origin_is_mapped_and_star_kept(rw: Rewriter) -> None:
    assert rw.rewrite_acao("https://www.my-db.com") == "https://www-my--db-com.proxy.lib.org"
    assert rw.rewrite_acao("*") == "*"


def test_csp_exact_host_sources_are_mapped(rw_port: Rewriter) -> None:
    got = rw_port.rewrite_csp(
        "script-src 'self' https://www.my-db.com/js/ static.my-db.com 'nonce-abc'"
    )
    assert got == (
        "script-src 'self' https://www-my--db-com.proxy.lib.org:8443/js/ "
        "static-my--db-com.proxy.lib.org:8443 'nonce-abc'"
    )


def test_csp_fully_proxied_wildcard_becomes_the_public_wildcard() -> None:
    rw = Rewriter(
        HostMap.build(
            public_scheme="https",
            public_host="proxy.lib.org",
            public_port=None,
            vendor_hosts=[("ebsco", ["*.ebscohost.com"])],
        )
    )
    assert rw.rewrite_csp("img-src https://*.ebscohost.com data:") == (
        "img-src https://*.proxy.lib.org data:"
    )


def test_csp_partly_proxied_wildcard_keeps_the_original_too(rw: Rewriter) -> None:
    got = rw.rewrite_csp("img-src *.ebscohost.com *.my-db.com *.unrelated.org")
    assert got == "img-src *.ebscohost.com *.proxy.lib.org *.my-db.com *.unrelated.org"


def test_csp_report_uri_to_a_third_party_is_dropped(rw: Rewriter) -> None:
    got = rw.rewrite_csp(
        "default-src 'self'; report-uri https://collector.example.net/r https://www.my-db.com/r"
    )
    assert got == "default-src 'self'; report-uri https://www-my--db-com.proxy.lib.org/r"
    assert rw.rewrite_csp("report-uri https://collector.example.net/r") == ""


def test_shield_csp_names_only_the_proxy(rw_port: Rewriter) -> None:
    policy = rw_port.shield_csp("mydb", allow_third_party=False)
    assert policy is not None
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
    for name in ("default-src", "script-src", "img-src", "style-src", "font-src", "connect-src"):
        assert name in directives
    for name in ("frame-src", "media-src", "object-src", "form-action"):
        assert name in directives
    for sources in directives.values():
        for source in sources:
            if source.startswith("'") or source in ("data:", "blob:"):
                continue
            host = re.sub(r"^[a-z]+://", "", source)
            assert host in ("*.proxy.lib.org:8443", "proxy.lib.org:8443"), source
    assert "'unsafe-inline'" in directives["script-src"]


def test_shield_csp_is_off_when_third_parties_are_allowed(rw: Rewriter) -> None:
    assert rw.shield_csp("mydb", allow_third_party=True) is None


def test_third_party_hosts_lists_only_unproxied_hosts(rw: Rewriter) -> None:
    assert rw.third_party_hosts(SAMPLE) == {"tracker.example.net", "ads.ebscohost.com"}


def test_third_party_hosts_ignores_the_proxys_own_hosts(rw: Rewriter) -> None:
    assert rw.third_party_hosts(_html(rw)) == {"tracker.example.net", "ads.ebscohost.com"}


# ---------------------------------------------------------------------------- request side


def test_unmap_url_restores_the_vendor_url_in_a_query(rw: Rewriter) -> None:
    value = "/login?url=https%3A%2F%2Fwww-my--db-com.proxy.lib.org%2Fx&b=https://search-ebscohost-com.proxy.lib.org/s"
    assert rw.unmap_url(value) == (
        "/login?url=https%3A%2F%2Fwww.my-db.com%2Fx&b=https://search.ebscohost.com/s"
    )


def test_unmap_uses_the_vendor_origin_scheme_and_port() -> None:
    rw = Rewriter(_host_map(8443), vendor_origins={"mydb": "http://www.my-db.com:8081"})
    assert (
        rw.unmap_url("https://www-my--db-com.proxy.lib.org:8443/a") == "http://www.my-db.com:8081/a"
    )
    assert (
        rw.unmap_url("https://static-my--db-com.proxy.lib.org:8443/a")
        == "http://static.my-db.com/a"
    )


def test_unmap_leaves_other_ports_and_unknown_labels_alone(rw_port: Rewriter) -> None:
    for value in (
        "https://www-my--db-com.proxy.lib.org:9999/a",
        "https://www-my--db-com.proxy.lib.org/a",
        "https://unknown-host-org.proxy.lib.org:8443/a",
        "https://proxy.lib.org:8443/menu",
        "https://www-my--db-com.proxy.lib.org.evil.org:8443/a",
    ):
        assert rw_port.unmap_url(value) == value


def test_unmap_body_handles_form_and_json(rw: Rewriter) -> None:
    form = b"q=cats&return=https%3A%2F%2Fwww-my--db-com.proxy.lib.org%2Fr"
    assert rw.unmap_body(form, "application/x-www-form-urlencoded") == (
        b"q=cats&return=https%3A%2F%2Fwww.my-db.com%2Fr"
    )
    body = b'{"u":"https:\\/\\/www-my--db-com.proxy.lib.org\\/r"}'
    assert rw.unmap_body(body, "application/json; charset=utf-8") == (
        b'{"u":"https:\\/\\/www.my-db.com\\/r"}'
    )


def test_unmap_restores_unicode_escaped_urls_in_a_query_and_a_json_body(rw: Rewriter) -> None:
    """A client app sends back the escaped URLs it was given: in a query (a browser's URL
    parser leaves `\\` raw there) and in a JSON body, each keeping its escapes."""
    query = (
        "next=https:\\u002F\\u002Fwww-my--db-com.proxy.lib.org\\u002Fr"
        "&c=\\u002f\\u002fstatic-my--db-com.proxy.lib.org"
    )
    assert rw.unmap_url(query) == (
        "next=https:\\u002F\\u002Fwww.my-db.com\\u002Fr&c=\\u002f\\u002fstatic.my-db.com"
    )
    body = b'{"u":"https:\\u002F\\u002fwww-my--db-com.proxy.lib.org\\u002Fr"}'
    assert rw.unmap_body(body, "application/json") == (
        b'{"u":"https:\\u002F\\u002fwww.my-db.com\\u002Fr"}'
    )


def test_unmap_body_leaves_other_types_alone(rw: Rewriter) -> None:
    body = b"https://www-my--db-com.proxy.lib.org/r"
    assert rw.unmap_body(body, "application/octet-stream") == body


# ------------------------------------------------------------------ third-party count, streamed


def _vendor_page() -> bytes:
    from pathlib import Path

    return (Path(__file__).parent / "data" / "vendor_site" / "page.html").read_bytes()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 333, 4096, 1 << 20])
def test_third_party_count_is_the_same_for_any_piece_size(size: int) -> None:
    """The forwarder counts per piece; every piece size gives the whole page's answer."""
    from proxy.forward import _ThirdPartyCount

    hosts = HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=None,
        vendor_hosts=[("one", ["www.vendor-one.test", "*.vendor-one.test"])],
        never_proxy=["static.vendor-one.test"],
    )
    rewriter = Rewriter(hosts)
    page = _vendor_page()
    whole = rewriter.third_party_hosts(page)
    assert len(whole) == 5
    count = _ThirdPartyCount(rewriter)
    for i in range(0, len(page), size):
        count.feed(page[i : i + size])
    assert count.finish() == len(whole)


def test_third_party_count_holds_back_little_text() -> None:
    """A body without any `>` is scanned once the carry passes MAX_SCAN_CARRY (bounded memory)."""
    from proxy.forward import MAX_SCAN_CARRY, _ThirdPartyCount

    count = _ThirdPartyCount(Rewriter(_host_map()))
    for _ in range(100):
        count.feed(b"x" * 1000)
        assert len(count._carry) <= MAX_SCAN_CARRY + 1000
    assert count.finish() == 0
