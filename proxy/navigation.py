"""Where a browser goes for a URL it navigates to, read as leniently as the browser reads it.

The rewriter maps the spellings of vendor URLs that pages and headers use. A browser's URL parser
(WHATWG URL) accepts more: it drops tabs and newlines anywhere, strips control characters and
spaces at both ends, takes a backslash for a slash in http(s) URLs (`http:\\\\host`, `/\\host`),
skips any number of slashes before the host, drops user information (`http://x@host`), and
percent-decodes and IDNA-maps the host as UTS #46 does (`%77ww`, fullwidth letters, the
ideographic full stop, `ᵂ` and `🅆` for `W`, variation selectors dropped).
A redirect (`Location`), a `Refresh` header or a `<meta http-equiv="refresh">` spelt one of those
ways would send the patron's own browser, from its own address, straight to the vendor: the
navigations the tracker shield's Content-Security-Policy cannot stop. `to_vendor_host` finds the
vendor host such a URL leaves for, so the proxy can map it like any other.

Written by hand: Python's urllib follows RFC 3986, not the browser's rules (it keeps backslashes,
tabs and `http:/host` as they are). This follows WHATWG URL's "special scheme" states only as far
as telling which host a navigation leaves for; when in doubt it names a host, so a doubtful URL is
mapped rather than followed. The host mapping is the `idna` package's UTS #46, which browsers
follow (Python's own "idna" codec knows only IDNA 2003's Unicode 3.2 tables).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import idna

# The schemes WHATWG URL calls special and the proxy carries (file: is never a vendor's).
_SPECIAL = frozenset({"http", "https", "ws", "wss"})
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_AUTHORITY = re.compile(r"/*([^/?#]*)(.*)", re.DOTALL)
_STRIP = "".join(chr(c) for c in range(0x21))  # C0 controls and space, trimmed at both ends
_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")


def to_vendor_host(url: str) -> tuple[str, str] | None:
    """(host, path and the rest) when a browser navigating to `url` from a page would leave the
    page's host for `host`; None for a URL that stays on the page's host (a path, a query, a
    fragment) or is no http(s) URL. `host` is lower-case, percent-decoded and IDNA-mapped, as
    the browser resolves it; the caller decides whether it is a vendor's."""
    found = leaves_for(url)
    if found is None or found[0].startswith("["):
        return None  # an IPv6 literal: never a configured vendor host name
    return found


def leaves_for(url: str) -> tuple[str, str] | None:
    """`to_vendor_host`, with an IPv6 literal too (`[::1]`, as written): where a browser opening
    `url` connects, for a caller that must stop any host but a few (a frame's, `html_tags`)."""
    s = url.strip(_STRIP).translate(_TAB_NEWLINE)
    m = _SCHEME.match(s)
    if m is not None:
        if m.group(1).lower() not in _SPECIAL:
            return None
        rest = _slashes(s[m.end() :])
        # `http:host` and `http:/host` from a page of the same scheme are paths on the page's
        # host; from another scheme's page they name a host. Taken as naming one either way.
    else:
        rest = _slashes(s)
        if not rest.startswith("//"):
            return None  # a path, a query or a fragment: the page's own host
    found = _AUTHORITY.match(rest)
    assert found is not None  # every string matches
    authority, tail = found.groups()
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return (host.partition("]")[0] + "]").lower(), tail
    host = _idna(unquote(host.partition(":")[0]))
    host = host.lower().rstrip(".")
    return (host, tail) if host else None


def _slashes(rest: str) -> str:
    """Backslashes read as slashes, as in an http(s) URL's host and path; not in its query or
    fragment, where a browser keeps them."""
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i != -1), default=len(rest))
    return rest[:cut].replace("\\", "/") + rest[cut:]


def _idna(host: str) -> str:
    """A host as the browser looks it up: UTS #46 mapped (non-transitional, as in WHATWG URL)
    and in its ASCII (punycode) form; as far as it can be mapped, when IDNA refuses the name."""
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True, std3_rules=False, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        try:
            return idna.uts46_remap(host, std3_rules=False, transitional=False)
        except (idna.IDNAError, UnicodeError):
            return host  # compared as it is


# The characters of a host name as pages write it in Unicode: letters and digits of any script,
# combining marks (a decomposed `ü`), `-`, and the dots UTS #46 maps to `.`.
HOST_CHAR = r"(?:[^\W_]|[.\-\u0300-\u036f\u3002\uff0e\uff61])"
UNICODE_HOST = re.compile(HOST_CHAR + "+")


def lookup_host(host: str) -> str:
    """A host name as a page writes it (any case, Unicode or punycode, a trailing dot) as the
    browser looks it up, for comparing with configured hosts: lower-case, UTS #46 mapped, in its
    ASCII (xn--) form, without the trailing dot."""
    return _idna(host.lower()).lower().rstrip(".")


def page_host(raw: bytes) -> str:
    """`lookup_host` of a host's bytes found in a page by a byte pattern that takes every
    non-ASCII byte as a host byte: read as UTF-8 (as windows-1252 when they are not UTF-8, the
    other charset pages commonly have) and cut at the first character no host name has (a
    closing curly quote after the host, say)."""
    if raw.isascii():
        return raw.decode("ascii").lower().rstrip(".")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("windows-1252", "replace")
    m = UNICODE_HOST.match(text)
    return lookup_host(m.group(0)) if m else ""


def refresh_url(value: str) -> tuple[int, int] | None:
    """Where the URL sits in a `Refresh` value (`5; url=https://…`, as the header and
    `<meta http-equiv="refresh">` have it): its (start, end) in `value`, or None when there is
    none. Lenient as browsers are: `,` or `;` after the delay, any case of `url`, spaces, quotes."""
    m = re.match(
        r"""\s*[0-9.]*\s*[;,]?\s*(?:url\s*=\s*)?(["']?)(.*)""",
        value,
        re.IGNORECASE | re.DOTALL,
    )
    if m is None or not m.group(2):
        return None
    start, end = m.start(2), m.end(2)
    if m.group(1) and value[start:end].endswith(m.group(1)):
        end -= 1
    return start, end


__all__ = ["refresh_url", "to_vendor_host"]
