"""From a second mutation sweep (2 December 2026) of validators, content codings, redirects,
request bodies, sniffing and IDN hosts: each test here was written for a one-line change to the
code that no other test noticed, and fails with it."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

from multidict import CIMultiDict

from proxy.content_coding import decoder_for
from proxy.idn_hosts import read_host
from proxy.navigation import lookup_host
from proxy.redirects import safe_target
from proxy.request_bodies import unmap_multipart
from proxy.sniff import SNIFF_BYTES, sniff_decided, sniff_document
from proxy.validators import open_validators, seal, session_key
from tests.test_redirect_props import HOSTS

MAPPED = "https://www-vendor--one-com.proxy.lib.org"


def _drain(decoder: Any, chunks: list[bytes]) -> bytes:
    out = b"".join(piece for chunk in chunks for piece in decoder.feed(chunk))
    return out + b"".join(decoder.finish())


def _asked(headers: dict[str, str], session_id: str) -> dict[str, str]:
    h: CIMultiDict[str] = CIMultiDict(headers)
    open_validators(h, session_id)
    return dict(h)


# ------------------------------------------------------------------------------ validators


def test_a_vendor_tag_without_its_closing_quote_is_not_sealed() -> None:
    """kills: proxy/validators.py:85 — `or etag[-1] != '"'` dropped from seal's checks.

    A malformed vendor tag (`"abc`, no closing quote) goes to the browser with no tag at all:
    the proxy seals only what it can read back, and a tag it would seal from a cut-off value
    would reach the browser as a validator the vendor never gave."""
    key = session_key("session-one")
    assert seal(key, '"visitor-7') is None
    assert seal(key, 'W/"visitor-7') is None
    assert seal(key, '"visitor-7"') is not None


def test_a_malformed_if_none_match_list_is_dropped_whole() -> None:
    """kills: proxy/validators.py:113 — `if _TAG_LIST.fullmatch(value) is None` → `if False`.

    An If-None-Match the browser did not write as a list of tags (a sealed tag followed by
    junk, `…", visitor=7`) is not picked apart: nothing of it reaches the vendor, and neither
    does the date beside it, so text smuggled next to a sealed tag never leaves the proxy."""
    mine = "session-one"
    tag = str(seal(session_key(mine), '"v1"'))
    date = "Mon, 01 Jan 2024 00:00:00 GMT"
    assert _asked({"If-None-Match": tag, "If-Modified-Since": date}, mine) == {
        "If-None-Match": '"v1"',
        "If-Modified-Since": date,
    }
    assert _asked({"If-None-Match": f"{tag}, visitor=7", "If-Modified-Since": date}, mine) == {}


# ------------------------------------------------------------------------------ sniffing


def test_html_after_a_whole_sniff_window_of_whitespace_is_not_sniffed() -> None:
    """kills: proxy/sniff.py:261 — `head[:SNIFF_BYTES]` → `head`.

    A browser looks at the first 1445 bytes only: a body that is all whitespace there and
    `<html>` after is not a document to it, and the proxy must read it as the browser does."""
    assert sniff_document(b" " * SNIFF_BYTES + b"<html>") is None
    assert sniff_document(b" " * (SNIFF_BYTES - 7) + b"<html>") == "text/html"


def test_a_doctype_without_its_terminator_is_not_yet_decided() -> None:
    """kills: proxy/sniff.py:255 — `_SNIFF_LONGEST = len(b"<!doctype html ")` → `len(b"<!doctype
    html")`.

    `<!doctype html` (14 bytes) is HTML only if a space or `>` follows: the sniffer must wait
    for that byte, or it decides "not a document" on a page the browser renders with scripts
    (which would then reach the patron unrewritten and unshielded)."""
    assert sniff_decided(b"<!doctype html") is False
    assert sniff_decided(b"<!doctype html>") is True
    assert sniff_document(b"<!doctype html>") == "text/html"


# ------------------------------------------------------------------------------ request bodies


def test_a_multipart_preamble_reaches_the_vendor_as_sent() -> None:
    """kills: proxy/request_bodies.py:359 — `range(1, len(pieces))` → `range(0, len(pieces))`.

    Only the content of plain fields is mapped back; the preamble before the first delimiter
    goes on byte for byte, as the module promises for everything but those fields."""
    body = (
        b"preamble\r\n\r\nmapped\r\n"
        b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nmapped\r\n--x--\r\n"
    )
    out = unmap_multipart(body, b"x", lambda b: b.replace(b"mapped", b"vendor"))
    assert out == b"preamble\r\n\r\nmapped\r\n" + (
        b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nvendor\r\n--x--\r\n"
    )


# ------------------------------------------------------------------------------ IDN hosts


def _vendor(host: str) -> Any:
    return lambda candidate: candidate == host


def test_a_fullwidth_digit_in_a_host_is_part_of_its_name() -> None:
    """kills: proxy/idn_hosts.py:428 — `category(c)[0] in "LMN"` → `in "LM"`.

    A fullwidth digit (U+FF11, category Nd) is a digit to UTS #46, which maps it to `1`: a
    page's `bücher` + U+FF11 + `.test` is the vendor host xn--bcher1-3ya.test to the browser,
    so it is read whole and named, and the link is mapped; cut at the digit, the name would be
    no vendor's, and the patron's browser would go to the vendor's real host directly."""
    host = lookup_host("bücher1.test")
    data = "https://bücher\uff11.test/x".encode()
    assert read_host(data, 8, _vendor(host)) == (data.index(b"/x"), host)


# ------------------------------------------------------------------------------ redirects


def test_an_upper_case_scheme_is_a_web_address() -> None:
    """kills: proxy/redirects.py:265 — `scheme.lower() not in …` → `scheme not in …`.

    Schemes are case-insensitive (RFC 3986 3.1): a catalogue link `HTTPS://www.vendor-one.com/x`
    takes the patron to the vendor through the proxy, not to the menu."""
    assert safe_target("HTTPS://www.vendor-one.com/x", HOSTS) == MAPPED + "/x"
    assert safe_target("Http://www.vendor-one.com/x", HOSTS) == MAPPED + "/x"


def test_a_delete_character_refuses_the_starting_point() -> None:
    """kills: proxy/redirects.py:260 — `or ord(c) == 127` dropped.

    A control character anywhere (DEL included) refuses the address: the contract is "no
    control character", so an address a parser might read differently is never redirected to."""
    assert safe_target("https://www.vendor-one.com/a\x7fb", HOSTS) is None
    assert safe_target("https://www.vendor-one.com/ab", HOSTS) == MAPPED + "/ab"


# ------------------------------------------------------------------------------ content codings


def test_a_deflate_body_fed_one_byte_at_a_time_is_decoded() -> None:
    """kills: proxy/content_coding.py:76 — `len(data) < 2` → `len(data) < 1`.

    A zlib-wrapped deflate body whose first chunk is one byte (a slow vendor, a chunk boundary)
    is decoded: the kind (zlib-wrapped or raw) is told from two bytes, so the decoder waits for
    the second rather than failing on the patron's page."""
    page = b"<html><body>record</body></html>"
    coded = zlib.compress(page)
    assert _drain(decoder_for("deflate"), [coded[i : i + 1] for i in range(len(coded))]) == page


def test_what_follows_a_whole_deflate_stream_is_ignored() -> None:
    """kills: proxy/content_coding.py:103 — `self._done = self._kind != "gzip"` → `False`.

    A deflate body is one stream: what a server appends after it (here bytes that happen to
    start like a gzip member) is ignored, as browsers ignore it, and the patron gets the page."""
    page = b"<html><body>record</body></html>"
    assert _drain(decoder_for("deflate"), [zlib.compress(page) + gzip.compress(b"junk")]) == page
