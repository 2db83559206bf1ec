"""International host names in the URL scan, read as a browser reads them.

Vendor hosts are configured in their ASCII (xn--, punycode) form, but an international vendor's
pages write its host as people read it: `http://bücher.test/app.js` for `xn--bcher-kva.test`,
`BÜCHER.TEST`, `bücher。test` (U+3002 between labels), fullwidth `\uff42ücher.test`, decomposed
(NFD), in windows-1252 bytes, percent-encoded UTF-8, and under a wildcard with Unicode labels
(`ä.münchen.test` for `*.xn--mnchen-3ya.test`). A browser maps every one of them by UTS #46
(WHATWG URL) and loads the xn-- host. No list of literal spellings covers that, so the scan
reads the host instead:

- Where the scan's host starts and a non-ASCII byte or a percent-encoded one comes before the
  ASCII name bytes run out (`RUN`), the host is the whole run of name bytes: ASCII letters,
  digits, `-`, `_`, non-ASCII bytes and `%80`-`%FF`, in labels separated by `.` or a UTF-8
  Unicode full stop, never ending in one (a trailing full stop is `TRAILING_DOT`'s). The General
  and CJK Punctuation blocks (`\\xe2\\x80`, `\\xe3\\x80`: a closing curly quote, a dash, an
  ideographic comma after a URL in prose) end the run. The compiled scan's `_run_end` is the same
  byte rule; the span is all either path decides.
- What the run means is `read_host`'s, called from the rewriter's (cached) replacement on the
  match's host bytes: percent-decoded, read as UTF-8 (as windows-1252 when it is not), cut at
  the first character that is no letter, mark, digit, `-`, `_` or full stop, mapped by UTS #46
  (`navigation.lookup_host`) and looked up among the configured hosts.

A config with no xn-- host has no run: the scan is exactly the ASCII one.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from proxy.navigation import lookup_host

# The UTF-8 Unicode full stops (ideographic, fullwidth, halfwidth), which UTS #46 maps to `.`.
_UNICODE_DOT = rb"\xe3\x80\x82|\xef\xbc\x8e|\xef\xbd\xa1"
# A non-ASCII name byte, raw or percent-encoded: not a Unicode full stop, nor the start of the
# General or CJK Punctuation blocks. A rule on bytes; `read_host` judges the characters.
_NON_ASCII = (
    rb"(?!\xe2\x80|\xe3\x80|\xef\xbc\x8e|\xef\xbd\xa1)[\x80-\xff]|%(?!e[23]%80)[89a-f][0-9a-f]"
)
_NAME_BYTE = rb"[a-z0-9_\-]|" + _NON_ASCII
# The international host run, for the scan's host alternatives (case-insensitive, as they are):
# taken only when a non-ASCII name byte (or a Unicode full stop before a label) comes before the
# ASCII name bytes run out, so an ASCII host stays the ASCII pattern's. Possessive, so the regex
# takes the same run as `_scan.pyx`'s `_run_end`. Not when it ends in a non-ASCII byte before
# `//`: the rewriter's protocol-relative pass would then see the mapped host's last byte where
# the one scan sees that byte (`Rewriter._plain`).
_LEADS = rb"(?:" + _NON_ASCII + rb"|(?:" + _UNICODE_DOT + rb")(?:" + _NAME_BYTE + rb"))"
RUN = (
    rb"(?=[a-z0-9_\-.]*+" + _LEADS + rb")"
    rb"(?:" + _NAME_BYTE + rb")++(?:(?:\.|" + _UNICODE_DOT + rb")(?:" + _NAME_BYTE + rb")++)*+"
    rb"(?:(?<![\x80-\xff])|(?!//))"
)
# How long a run may be and still name a host (253 characters, each up to four UTF-8 bytes,
# percent-encoded): the rewriter's stream window covers it, so a run cut by the window is longer.
RUN_CAP = 1024

_DOTS = ".\u3002\uff0e\uff61"


def _name_char(c: str) -> bool:
    """A character a host name goes on with: letter, mark, digit, `-`, `_`, a full stop."""
    if c.isascii():
        return c.isalnum() or c in "-_."
    return c in _DOTS or unicodedata.category(c)[0] in "LMN"


def read_host(
    data: bytes, host_start: int, is_vendor: Callable[[str], bool]
) -> tuple[int, str | None]:
    """The host at `host_start` in `data` (a run of name bytes, `RUN`), read as a browser reads
    it: (where its name ends, the configured vendor host it names or None).

    Percent-decoded and read as UTF-8 (as windows-1252 when it is not: the other charset pages
    commonly have), the name ends at the first character no host name has (a `©` after it) or at
    the end of the run; a trailing full stop is left out (the scan's trailing-dot rule has it).
    The name is mapped by UTS #46 (`lookup_host`) and named only when `is_vendor` accepts it."""
    run = data[host_start:]
    stop = len(run)
    for k, byte in enumerate(run):
        if not (byte >= 0x80 or byte in b"%-_." or chr(byte).isalnum()):
            stop = k
            break
    run = run[:stop]
    if not run or len(run) > RUN_CAP:
        return host_start, None
    # Each decoded byte's end in `run`, to put the name's end back in the page's bytes.
    decoded = bytearray()
    ends: list[int] = []
    k = 0
    while k < len(run):
        piece = unquote_to_bytes(run[k : k + 3]) if run[k] == 0x25 else b""
        if len(piece) == 1:
            decoded += piece
            k += 3
        else:
            decoded.append(run[k])
            k += 1
        ends.append(k)
    try:
        text = decoded.decode("utf-8")
        widths = [len(c.encode("utf-8")) for c in text]
    except UnicodeDecodeError:
        text = decoded.decode("windows-1252", "replace")
        widths = [1] * len(text)
    used = 0  # decoded bytes of the name
    count = 0  # its characters
    for c, width in zip(text, widths, strict=True):
        if not _name_char(c):
            break
        used += width
        count += 1
    while count and text[count - 1] in _DOTS:
        count -= 1
        used -= widths[count]
    if not count:
        return host_start, None
    name = text[:count]
    end = host_start + ends[used - 1]
    host = lookup_host(name)
    if len(host) > 253 or not is_vendor(host):
        return end, None
    return end, host
