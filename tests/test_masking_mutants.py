"""From a mutation sweep by hand (1 December 2026), second pass, of the shared-login vendors, the
secret mask, the tags a browser follows and the charsets a page is read in
(proxy/vendors/shared_login.py, proxy/secret_mask.py, proxy/html_tags.py, proxy/charsets.py).

Each test passes on the current code and fails with the mutant its docstring names (a one-line
change no earlier test noticed). Synthetic credentials and hosts only; no network.
"""

from __future__ import annotations

import base64
from types import SimpleNamespace
from urllib.parse import quote, quote_plus

import pytest

from proxy import rewrite_headers
from proxy.charsets import bom_codec, bom_pending, known_label, meta_charset
from proxy.hosts import HostMap
from proxy.rewrite import Rewriter
from proxy.secret_mask import MASK, secret_spellings
from proxy.vendors import shared_login

LIBRARY_USER = "weston-library-account"

HOSTS = HostMap.build(
    public_scheme="http",
    public_host="proxy.localhost",
    public_port=8080,
    vendor_hosts=[("v", ["www.vendor.test"])],
)


def _masked(password: str, body: bytes, ctype: str = "text/html", chunk: int = 0) -> bytes:
    """`body` as the proxy sends it to the browser for a shared-login vendor whose library-wide
    password is `password` (in chunks of `chunk` bytes, or whole)."""
    token = base64.b64encode(f"{LIBRARY_USER}:{password}".encode()).decode()
    stream = Rewriter(HOSTS).stream("v", ctype, "utf-8", masked=secret_spellings(password, token))
    step = chunk or len(body) or 1
    out = b"".join(stream.feed(body[i : i + step]) for i in range(0, len(body), step))
    return out + stream.finish()


# ------------------------------------------------------------------ proxy/secret_mask.py


def test_a_password_with_a_tilde_echoed_form_encoded_by_python_is_masked() -> None:
    """kills: proxy/secret_mask.py:secret_spellings — `quote_plus(password)` dropped from the
    encodings.

    A vendor page built by a Python framework echoes the form it received (`urlencode`, i.e.
    `quote_plus`): a space as `+`, `~` kept, `!` encoded. No other encoder the mask knows spells
    `Lib~ pass!1` that way, so without it the library's password reaches the patron."""
    password = "Lib~ pass!1"
    spelt = quote_plus(password)
    assert spelt == "Lib~+pass%211"
    out = _masked(password, f"<input value='{spelt}'>".encode())
    assert spelt.encode() not in out and MASK.encode() in out, out


def test_a_password_with_a_slash_echoed_path_encoded_is_masked() -> None:
    """kills: proxy/secret_mask.py:secret_spellings — `quote(password)` (its default `safe="/"`)
    dropped from the encodings.

    A vendor page that puts the password in a URL path (`/account/Lib/pw~%219`) keeps `/` and
    `~` and encodes `!`: no other spelling the mask knows is that one."""
    password = "Lib/pw~!9"
    spelt = quote(password)
    assert spelt == "Lib/pw~%219"
    out = _masked(password, f"<p>Reset link: /account/{spelt}/done</p>".encode())
    assert spelt.encode() not in out and MASK.encode() in out, out


def test_a_password_with_a_quote_and_a_bracket_echoed_as_html_text_is_masked() -> None:
    """kills: proxy/secret_mask.py:secret_spellings — `html.escape(password, quote=False)`
    dropped (only the attribute escaping, which also escapes quotes, kept).

    A vendor's account page shows the password as text, where a template escapes `<` and `&`
    but leaves `"` as it is (`pw&lt;5"x`): that spelling too must not reach the browser."""
    password = 'pw<5"x'
    spelt = 'pw&lt;5"x'
    out = _masked(password, f"<p>Your password: {spelt}</p>".encode())
    assert spelt.encode() not in out and MASK.encode() in out, out


def test_a_password_with_a_double_quote_escaped_as_a_numeric_reference_is_masked() -> None:
    """kills: proxy/secret_mask.py:secret_spellings — `escaped.replace("&quot;", "&#34;")`
    dropped from the HTML spellings.

    Go's html/template (and others) write `"` as `&#34;` in a form field's value: an account
    page showing the library password that way must show the mask instead."""
    password = 'Sh"ared-7'
    spelt = "Sh&#34;ared-7"
    out = _masked(password, f'<input name="pw" value="{spelt}">'.encode())
    assert spelt.encode() not in out and MASK.encode() in out, out


def test_a_password_echoed_as_encodeuri_spells_it_is_masked() -> None:
    """kills: proxy/secret_mask.py:secret_spellings — the `encodeURI` safe set
    (`"-_.!~*'();/?:@&=+$,#"`) dropped.

    A vendor page's script builds a URL with `encodeURI`, which keeps `:` but encodes `é`:
    `pw:%C3%A91`, a spelling no other encoder gives."""
    spelt = "pw:%C3%A91"
    out = _masked("pw:é1", f"<script>location = '/x?{spelt}'</script>".encode())
    assert spelt.encode() not in out and MASK.encode() in out, out


def test_a_password_echoed_as_javas_urlencoder_spells_it_is_masked() -> None:
    """kills: proxy/secret_mask.py:secret_spellings — Java's URLEncoder safe set (`"-_.*"`)
    dropped.

    A Java vendor (URLEncoder) keeps `*`, writes a space as `+` and encodes `~`:
    `pw*+1%7E` for `pw* 1~`, a spelling no other encoder gives."""
    spelt = "pw*+1%7E"
    out = _masked("pw* 1~", f"<a href='/login?pw={spelt}'>again</a>".encode())
    assert spelt.encode() not in out and MASK.encode() in out, out


# ------------------------------------------------------------------ proxy/html_tags.py


def _page(html_text: str, *, loads: bool = False, compiled: bool = True) -> str:
    """A vendor page as the proxy sends it; `loads` for a vendor with no tracker shield
    (`third_party = "allow"`); `compiled` off for the pure-Python tag scan."""
    rewriter = Rewriter(HOSTS, unshielded=frozenset({"v"}) if loads else frozenset())
    with pytest.MonkeyPatch.context() as mp:
        if not compiled:
            mp.setattr(rewrite_headers, "compiled_scan", None)
        return rewriter.rewrite_body("v", "text/html", None, html_text.encode()).decode()


MAPPED = "http://www-vendor-test.proxy.localhost:8080"


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_legacy_named_reference_before_an_equals_sign_stays_in_a_mapped_link(
    compiled: bool,
) -> None:
    """kills: proxy/html_tags.py:unescape_attribute — `following.isalnum() or following == "="`
    → `following.isalnum()`.

    A link the URL scan cannot read (`http:\\\\host`) is mapped from the value as the browser
    reads it; `&not=2` in its query is no `¬` for a browser (a legacy name followed by `=`), so
    the mapped link keeps the patron's search parameter `not=2` as the vendor wrote it."""
    out = _page('<a href="http:\\\\www.vendor.test/x?a=1&not=2">', compiled=compiled)
    assert out == f'<a href="{MAPPED}/x?a=1&amp;not=2">', out


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_protocol_relative_third_party_script_keeps_its_integrity(compiled: bool) -> None:
    """kills: proxy/html_tags.py:_loads_through_proxy — the `//host` → `http://host` reading
    dropped (every protocol-relative URL taken for a relative one).

    A script from a third-party CDN (`//cdn.third.test/…`) never passes through the proxy and
    is not rewritten: its Subresource Integrity hash still protects the patron and must stay.
    A protocol-relative script on the vendor's host (rewritten by the proxy) loses it."""
    out = _page(
        '<script src="//cdn.third.test/x.js" integrity="sha384-abc"></script>'
        '<script src="//www.vendor.test/y.js" integrity="sha384-def"></script>',
        compiled=compiled,
    )
    assert 'src="//cdn.third.test/x.js" integrity="sha384-abc"' in out, out
    assert "sha384-def" not in out, out


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_script_on_the_vendor_host_spelt_with_a_trailing_dot_loses_its_integrity(
    compiled: bool,
) -> None:
    """kills: proxy/html_tags.py:_loads_through_proxy — `.rstrip(".")` dropped from the host.

    `www.vendor.test.` is the vendor's host (a browser resolves it the same), so the script
    comes through the proxy rewritten; a kept SRI hash would make the browser refuse it and
    break the vendor's page for the patron."""
    out = _page(
        '<script src="https://www.vendor.test./x.js" integrity="sha384-abc"></script>',
        compiled=compiled,
    )
    assert "integrity" not in out, out


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_frame_on_the_proxys_own_host_is_not_blanked(compiled: bool) -> None:
    """kills: proxy/html_tags.py:_third_party_frame — `host == ours or` dropped (only
    subdomains of the proxy's public host taken for its own).

    A frame on the proxy's own host (its pages, a mapped path) connects to no third party:
    the patron sees it, not `about:blank`."""
    out = _page('<iframe src="http://proxy.localhost:8080/x"></iframe>', compiled=compiled)
    assert 'src="http://proxy.localhost:8080/x"' in out, out


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_srcset_candidate_ending_in_a_comma_is_followed_by_a_mapped_second_url(
    compiled: bool,
) -> None:
    """kills: proxy/html_tags.py:_list_urls — trailing commas of a candidate's URL kept (the
    `while end > i and value[end - 1] == ","` loop dropped).

    `srcset="A, B 2x"`: A ends with a comma, so it has no descriptors and B is a second
    image the browser may load. With no shield (`third_party = "allow"`) nothing else stops B
    going to the vendor's real host from the patron's address: both URLs are mapped."""
    out = _page(
        '<img srcset="http:\\\\www.vendor.test/b.png, http:\\\\www.vendor.test/c.png 2x">',
        loads=True,
        compiled=compiled,
    )
    assert out == f'<img srcset="{MAPPED}/b.png, {MAPPED}/c.png 2x">', out


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_srcdoc_whose_second_frame_is_third_party_is_emptied(compiled: bool) -> None:
    """kills: proxy/html_tags.py:_frames_leave — only the first frame of a `srcdoc` document
    read (a `break` after it).

    A `srcdoc` document holding a harmless frame and then a tracker's frame: the tracker's
    frame would connect from the patron's address as the page's own frames do (P3)."""
    out = _page(
        '<iframe srcdoc="<iframe src=/ok></iframe><iframe src=https://tracker.example/>'
        '</iframe>"></iframe>',
        compiled=compiled,
    )
    assert "tracker.example" not in out, out


# ------------------------------------------------------------------ proxy/vendors/shared_login.py


def test_a_form_login_vendor_without_expired_text_holds_back_no_bytes_of_its_answers() -> None:
    """kills: proxy/vendors/shared_login.py:SharedLoginAdapter.expiry_peek_bytes —
    `sl.method == "form" and sl.expired_text` → `sl.method == "form"`.

    Only a vendor whose "please sign in" page is recognised by its text (`expired_text`) needs
    the first 32 KiB of each answer read before it is relayed; for any other, every answer (a
    live results stream, a large download) starts reaching the patron at once."""
    adapter = object.__new__(shared_login.SharedLoginAdapter)
    adapter.vendor = SimpleNamespace(  # type: ignore[assignment]
        shared_login=SimpleNamespace(method="form", expired_text="")
    )
    assert adapter.expiry_peek_bytes() == 0
    adapter.vendor.shared_login.expired_text = "Please sign in"  # type: ignore[attr-defined]
    assert adapter.expiry_peek_bytes() == shared_login.EXPIRY_PEEK_BYTES
    adapter.vendor.shared_login.method = "basic"  # type: ignore[attr-defined]
    assert adapter.expiry_peek_bytes() == 0


# ------------------------------------------------------------------ proxy/charsets.py


def test_a_comment_closed_by_its_own_dashes_does_not_hide_the_meta_charset() -> None:
    """kills: proxy/charsets.py:_prescan — `data.find(b"-->", pos + 2)` → `pos + 4`.

    `<!-->` is a whole comment for a browser's prescan (its `>` follows two dashes), so the
    `<meta charset>` after it decides the page's charset: a Shift_JIS page read as UTF-8 would
    hide its vendor URLs from the rewriter."""
    assert meta_charset(b'<!--><meta charset="shift_jis"><p>-->') == "cp932"


def test_a_meta_tag_whose_name_ends_with_a_slash_declares_the_charset() -> None:
    """kills: proxy/charsets.py:_prescan — `b"/"` dropped from what may follow `<meta`.

    `<meta/charset=koi8-r>` is a meta tag for a browser (a `/` ends a tag name)."""
    assert meta_charset(b"<meta/charset=koi8-r><p>") == "koi8_r"


def test_the_first_of_two_charset_attributes_wins() -> None:
    """kills: proxy/charsets.py:_meta — `if name in seen: continue` → never skipped.

    The HTML tokenizer keeps the first of two attributes of one name: the page is read as
    the first one names."""
    assert meta_charset(b'<meta charset="koi8-r" charset="utf-8"><p>') == "koi8_r"


def test_a_charset_attribute_wins_over_a_later_content_charset() -> None:
    """kills: proxy/charsets.py:_meta — `name == b"content" and label is None` →
    `name == b"content"`.

    The prescan takes a `content` charset only while none was found: `charset=` first
    decides."""
    tag = b'<meta charset="windows-1251" http-equiv="content-type" content="text/html; charset=koi8-r">'
    assert meta_charset(tag) == "cp1251"


def test_a_content_charset_without_http_equiv_declares_nothing() -> None:
    """kills: proxy/charsets.py:_meta — `(need_pragma and not got_pragma) or` dropped.

    `<meta content="…charset=…">` without `http-equiv="content-type"` is no declaration for
    a browser: the page keeps the default."""
    assert meta_charset(b'<meta content="text/html; charset=koi8-r"><p>') is None


def test_a_meta_charset_naming_utf16_or_x_user_defined_is_read_as_browsers_do() -> None:
    """kills: proxy/charsets.py:_meta — the UTF-16 → UTF-8 mapping dropped; and the
    x-user-defined → windows-1252 mapping dropped.

    A page whose meta tag says UTF-16 was readable as ASCII, so it is UTF-8 for a browser (read
    as UTF-16 its vendor URLs would be invisible to the rewriter and survive); x-user-defined in
    a meta tag means windows-1252."""
    assert meta_charset(b'<meta charset="utf-16"><p>') == "utf-8"
    assert meta_charset(b'<meta charset="utf-16be"><p>') == "utf-8"
    assert meta_charset(b'<meta charset="x-user-defined"><p>') == "cp1252"


def test_upper_case_names_and_labels_in_a_meta_tag_are_read() -> None:
    """kills: proxy/charsets.py:_attribute — attribute names not lower-cased; and quoted values
    not lower-cased.

    `<META CHARSET="KOI8-R">` declares KOI8-R for a browser."""
    assert meta_charset(b'<META CHARSET="KOI8-R"><p>') == "koi8_r"
    assert meta_charset(b"<meta CHARSET=koi8-r><p>") == "koi8_r"


def test_a_quoted_or_semicolon_ended_charset_in_content_is_read() -> None:
    """kills: proxy/charsets.py:_charset_in_content — the quoted-value branch dropped; and
    `value[end] != 0x3B` dropped (a `;` no longer ends the label).

    `content="text/html; charset='koi8-r'"` and `charset=koi8-r;x` both name KOI8-R."""
    head = b'<meta http-equiv="Content-Type" content="text/html; charset=%s"><p>'
    assert meta_charset(head % b"'koi8-r'") == "koi8_r"
    assert meta_charset(head % b"koi8-r;foo=bar") == "koi8_r"


def test_a_meta_inside_a_processing_instruction_declares_nothing() -> None:
    """kills: proxy/charsets.py:_prescan — `b"<?"` dropped from the constructs skipped to
    their `>`.

    The prescan skips `<?…>` to its first `>`: a meta tag it swallows is no declaration."""
    assert meta_charset(b'<?x <meta charset="koi8-r"><p>') is None


def test_labels_with_surrounding_whitespace_are_known() -> None:
    """kills: proxy/charsets.py:_meta — the label's `.strip("\\t\\n\\f\\r ")` dropped (the
    header side, known_label's strip, is checked too; an earlier sweep already kills that one).

    WHATWG "get an encoding" strips ASCII whitespace around a label, so ` koi8-r ` decides
    the charset as `koi8-r` does."""
    assert known_label(" koi8-r\t")
    assert meta_charset(b'<meta charset=" koi8-r "><p>') == "koi8_r"


def test_a_utf16be_bom_decides_the_charset() -> None:
    """kills: proxy/charsets.py — the UTF-16BE byte-order mark dropped from _BOMS.

    A page beginning with FE FF is UTF-16BE whatever its label: read any other way its vendor
    URLs are invisible to the rewriter."""
    assert bom_codec(b"\xfe\xff\x00<") == "utf_16_be"
    assert bom_pending(b"\xfe")
    page = "\ufeff<a href='http://www.vendor.test/x'>x</a>".encode("utf-16-be")
    out = Rewriter(HOSTS).rewrite_body("v", "text/html", "windows-1252", page)
    assert out.decode("utf-16-be").endswith(f"<a href='{MAPPED}/x'>x</a>"), out


def test_two_bytes_of_a_utf8_bom_wait_for_the_third() -> None:
    """kills: proxy/charsets.py:bom_pending — `len(head) < 3` → `len(head) < 2`.

    A body whose first chunk is `EF BB` may still begin with the UTF-8 BOM."""
    assert bom_pending(b"\xef\xbb")
    assert not bom_pending(b"\xef\xbb\xbf")


# ------------------------------------------------------------------ proxy/html_tags.py: mapped values


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_mapped_link_keeps_angle_brackets_escaped(compiled: bool) -> None:
    """kills: proxy/html_tags.py:_quoted — `.replace("<", "&lt;").replace(">", "&gt;")`
    dropped.

    A mapped link whose query holds `<b>` (written `&lt;b&gt;`) is written back escaped: a raw
    `<` in an attribute makes an XHTML or SVG page not well-formed, and the patron's browser
    then shows an XML error instead of the page."""
    out = _page('<a href="http:\\\\www.vendor.test/x?q=&lt;b&gt;">', compiled=compiled)
    assert out == f'<a href="{MAPPED}/x?q=&lt;b&gt;">', out


def test_a_mapped_link_in_a_koi8_page_keeps_a_character_koi8_cannot_write() -> None:
    """kills: proxy/html_tags.py:_quoted — the per-character fallback (`_spelt`, a character
    reference) → `text.encode(codec, "replace")`.

    A KOI8-R page's link searching for `é` (written `&eacute;`): the mapped link spells it as
    a character reference the browser reads back as `é`, not `?`, so the patron's search is the
    one they asked for."""
    page = '<a href="http:\\\\www.vendor.test/x?q=&eacute;">'.encode("koi8-r")
    out = Rewriter(HOSTS).rewrite_body("v", "text/html", "koi8-r", page)
    assert out == f'<a href="{MAPPED}/x?q=&#233;">'.encode("koi8-r"), out


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_tracks_captions_url_is_mapped_when_the_vendor_has_no_shield(compiled: bool) -> None:
    """kills: proxy/html_tags.py — `b"track"` dropped from LOAD_TAGS.

    A `<track src>` (a video's captions) loads as the page plays; with no tracker shield
    (`third_party = "allow"`) nothing else stops it going to the vendor's real host from the
    patron's address when spelt `http:\\\\host`, which the URL scan does not read."""
    out = _page('<track src="http:\\\\www.vendor.test/x">', loads=True, compiled=compiled)
    assert out == f'<track src="{MAPPED}/x">', out
