"""The spellings in which pages write a configured international vendor host, for the URL scan.

Vendor hosts are configured in their ASCII (xn--, punycode) form, but an international vendor's
pages write its host as people read it: `http://bücher.test/app.js` for `xn--bcher-kva.test`,
which a browser loads from `xn--bcher-kva.test` (WHATWG URL maps the host by UTS #46). The URL
scan knows only ASCII host bytes, so each such host gets literal spellings that the scan tries
before its ASCII host (`proxy.rewrite.Rewriter`, `proxy/_scan.pyx`'s `_idn_host_end`):

- the Unicode name in UTF-8, composed (NFC) and decomposed (NFD): what a UTF-8 page holds, and
  what every other multi-byte charset is transcoded to before the scan (`charsets.Transcoded`);
- the same in windows-1252 when the name fits it: the single-byte charset pages commonly use
  (bytes that are not valid UTF-8, so they never match in a UTF-8 page);
- percent-encoded UTF-8 (`b%C3%BCcher.test`), which a browser decodes in a host.

A spelling under a wildcard (`*.xn--bcher-kva.test`) is a suffix: it follows one or more ASCII
labels and a dot (`www.bücher.test`). A literal is matched in any ASCII case (as the scan's
other bytes are), so it is kept with its ASCII letters in lower case; its non-ASCII letters are
spelt all in lower case and all in capitals (`BÜCHER.TEST`), not mixed. A literal is a host only
where the name ends (`LITERAL_END`): `bücher.testä` is another host. A configured config with
no xn-- label has no spellings: the scan is then exactly the ASCII one.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Iterable

import idna

from proxy.navigation import lookup_host

# (literal, under a wildcard): under a wildcard the literal follows `label.` (one or more).
Spelling = tuple[bytes, bool]


def idn_spellings(patterns: Iterable[str]) -> tuple[Spelling, ...]:
    """The literal spellings of every configured host pattern with an xn-- label, longest first
    (so that of two literals where one starts the other, the longer is tried first)."""
    found: dict[Spelling, None] = {}
    for pattern in patterns:
        wild = pattern.startswith("*.")
        name = pattern[2:] if wild else pattern
        if "xn--" not in name:
            continue
        try:
            unicode = idna.decode(name)
        except (idna.IDNAError, UnicodeError):
            continue  # check-config reports a host that is no valid name
        if lookup_host(unicode) != name:
            continue  # not how a browser reads it back: no spelling would reach this host
        for form in ("NFC", "NFD"):
            for case in (str.lower, str.upper):
                text = unicodedata.normalize(form, case(unicode))
                if case is str.upper and lookup_host(text) != name:
                    continue  # `ß` is `SS` in capitals: another host
                # ASCII letters in lower case: the scan matches them in any case.
                text = "".join(c.lower() if c.isascii() else c for c in text)
                raw = text.encode("utf-8")
                found[(raw, wild)] = None
                found[(_percent(raw), wild)] = None
                with contextlib.suppress(UnicodeEncodeError):
                    found[(text.encode("windows-1252"), wild)] = None
    return tuple(sorted(found, key=lambda s: (-len(s[0]), s)))


def _percent(raw: bytes) -> bytes:
    """Non-ASCII bytes percent-encoded, hex in lower case (the scan matches any case)."""
    return b"".join(b"%%%02x" % b if b >= 0x80 else bytes([b]) for b in raw)


# The Unicode full stops in UTF-8 (ideographic, fullwidth, halfwidth), which UTS #46 maps to `.`.
_UNICODE_DOT = rb"(?:\xe3\x80\x82|\xef\xbc\x8e|\xef\xbd\xa1)"
# A letter or mark going on with a name, in UTF-8 or windows-1252, raw or percent-encoded: a
# byte from 0xC3 up (UTF-8 lead bytes from U+00C0, and windows-1252's letters), but for the
# General and CJK Punctuation blocks (`\xe2\x80`, `\xe3\x80`: a closing curly quote, a dash,
# an ideographic comma after a URL in prose). A heuristic on bytes, not Unicode's categories.
_LETTER = rb"(?:(?!\xe2\x80|\xe3\x80)[\xc3-\xff]|%(?!e[23]%80)(?:c[3-9a-f]|[d-f][0-9a-f]))"
# What a literal spelling must not be followed by, besides `host_end`'s ASCII host bytes: the
# name going on in a non-ASCII letter or mark (`bücher.testä`, a combining mark after the last
# letter), raw or percent-encoded, or a dot (ASCII or Unicode) before more of the name: another,
# longer host. A Unicode full stop before anything else is the host's trailing dot
# (`TRAILING_DOT`). To be used case-insensitively, as `idn_host`'s regex is. The compiled scan's
# `_name_goes_on` is the same test.
LITERAL_END = (
    rb"(?!" + _LETTER + rb"|(?:\.|" + _UNICODE_DOT + rb")(?:[a-z0-9_\-]|" + _LETTER + rb"))"
)


def idn_host(spellings: tuple[Spelling, ...], host: bytes, host_end: bytes) -> bytes:
    """The regex for a host: each spelling, then `host` (the ASCII host pattern), in that order.

    `host_end` is the whole-host lookahead the ASCII pattern ends with. The regex must be used
    case-insensitively (inside `(?i:…)` or with re.IGNORECASE). A literal that ends with a
    non-ASCII byte is not taken before `//`: the rewriter's protocol-relative pass would then see
    the mapped host's last byte where the one scan sees that byte (`Rewriter._plain`)."""
    if not spellings:
        return host
    alts = []
    for literal, wild in spellings:
        alt = re.escape(literal) + host_end + LITERAL_END
        if literal[-1] >= 0x80:
            alt += rb"(?!//)"
        if wild:
            alt = rb"[a-z0-9][a-z0-9\-]*+(?:\.[a-z0-9\-]++)*\." + alt
        alts.append(alt)
    return rb"(?:" + b"|".join(alts) + rb"|" + host + rb")"
