"""The spellings of the library's own credential a vendor page could echo, and their mask.

A shared-login vendor's page may show the library-wide account's password (an account page with
it filled in) or the HTTP Basic token (a page listing the request's headers). The proxy masks
each spelling listed here in what it sends to the patron's browser: response header values
(`mask_text`), the bodies it rewrites and the text bodies it otherwise leaves alone (plain text,
CSV: `proxy.rewrite.Rewriter.stream`, `masked=`, and `proxy.rewrite.masks_only`). Bodies it
passes through untouched (PDFs, images, downloads) are not masked.
"""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote, quote_plus

# What stands for the credential. Fixed, so the mask does not tell the password's length; ASCII
# stars mean nothing in HTML, CSS, JavaScript, JSON or a URL, so no page breaks around them.
MASK = "********"

_PERCENT = re.compile(r"%[0-9A-F]{2}")


def secret_spellings(password: str, basic_token: str) -> tuple[str, ...]:
    """`password` raw, percent-encoded (as `quote`, `quote_plus`, either hex case),
    HTML-escaped (each common spelling of a quote), JSON-escaped (`\\uXXXX` or not, `\\/` or
    not), and `basic_token` (base64 of user:password) raw and JSON-escaped; longest first, so a
    spelling holding another is masked whole."""
    if not password:
        return ()
    forms = {password, basic_token}
    encodings = {quote(password, safe=""), quote(password), quote_plus(password)}
    # What other servers' and browsers' encoders leave as it is (`quote` keeps `~` and encodes
    # `!`): PHP's urlencode and Java's URLEncoder encode `~` (space as +), JavaScript's
    # encodeURIComponent keeps !'()*~, encodeURI keeps URL punctuation too, and some encode
    # every character but letters and digits.
    for safe in ("", "-_.", "-_.*", "-_.!~*'()", "-_.!~*'();/?:@&=+$,#"):
        for plus in (False, True):
            encodings.add(_percent_encoded(password, safe, plus=plus))
    for encoded in encodings:
        forms |= {encoded, _PERCENT.sub(lambda m: m.group(0).lower(), encoded)}
    for escaped in (html.escape(password), html.escape(password, quote=False)):
        forms |= {escaped, escaped.replace("&#x27;", "&#39;"), escaped.replace("&quot;", "&#34;")}
    for text in (password, basic_token):
        for ascii_only in (True, False):
            escaped = json.dumps(text, ensure_ascii=ascii_only)[1:-1]
            forms |= {escaped, escaped.replace("/", "\\/")}
    forms.discard("")
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


def _percent_encoded(text: str, safe: str, *, plus: bool) -> str:
    """`text` as UTF-8, every byte but ASCII letters, digits and `safe` percent-encoded
    (upper-case hex); a space as `+` with `plus`. Written out because urllib's `quote` always
    keeps `_.-~`, where other encoders differ."""
    out = []
    for byte in text.encode("utf-8"):
        c = chr(byte)
        if byte < 128 and (c.isalnum() or c in safe):
            out.append(c)
        elif c == " " and plus:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def mask_pattern(spellings: tuple[str, ...], encoding: str) -> tuple[re.Pattern[bytes], int] | None:
    """One pattern finding every spelling in a body encoded in `encoding`, and the longest
    spelling's length in bytes (how far a match reaches: `proxy.rewrite.RegexStage`'s window).
    A spelling the charset cannot write cannot occur in such a body, and is left out."""
    finds: set[bytes] = set()
    for spelling in spellings:
        try:
            finds.add(spelling.encode(encoding))
        except UnicodeEncodeError:
            continue
    if not finds:
        return None
    ordered = sorted(finds, key=len, reverse=True)
    return re.compile(b"|".join(re.escape(f) for f in ordered)), len(ordered[0])


def mask_text(value: str, spellings: tuple[str, ...]) -> str:
    """`value` (a header value, a reason phrase) with every spelling replaced by MASK."""
    for spelling in spellings:  # longest first
        if spelling in value:
            value = value.replace(spelling, MASK)
    return value
