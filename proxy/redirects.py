"""Where the proxy may send a patron: only to configured vendor hosts, in their mapped form.

Every redirect the proxy issues from patron input (`url` on /login) goes through `safe_target`;
anything that is not plainly an http(s) URL on a configured vendor host is refused, and the caller
sends the patron to /menu instead.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from proxy.hosts import HostMap, is_valid_hostname

# The server's default longest request line (`throttle.http.max_request_line`): the browser
# asks for the mapped address on one, so a longer one could not be opened anyway.
MAX_TARGET = 8190
# What a browser keeps as written in a link's path, query and fragment (WHATWG URL): printable
# ASCII but space, quotes, angle brackets and backtick, which (with non-ASCII letters) may not go
# into a Location header or an href raw. `%` is kept: the link's own escapes (and a lone `%`)
# reach the vendor as written.
_BROWSER_KEEPS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"<>`')


def _request_line_length(target: str) -> int:
    """The length of the request line a browser sends to open `target` (`GET <path?query>
    HTTP/1.1`): the fragment stays in the browser."""
    parts = target.partition("://")[2]
    slash = parts.find("/")
    path_qs = parts[slash:].partition("#")[0] if slash >= 0 else "/"
    return len(f"GET {path_qs} HTTP/1.1")


def _browser_encoded(text: str) -> str | None:
    """`text` with space, quotes, angle brackets, backtick and every non-ASCII character
    percent-encoded as UTF-8, as a browser sends a typed or linked address; None for text that
    is not Unicode (a lone surrogate)."""
    try:
        return quote(text, safe=_BROWSER_KEEPS)
    except UnicodeEncodeError:
        return None


def safe_target(url: str, hosts: HostMap, *, max_line: int = MAX_TARGET) -> str | None:
    """The mapped URL for a starting point on a configured vendor host, or None.

    The scheme and host are taken as strictly as a phisher's input deserves (ASCII only, no
    `@`, `%`, `\\` or control character: a homograph or a parser disagreement would pick the
    host); the path, query and fragment are passed on as written, percent-encoding only what a
    browser would (`?q=café` → `?q=caf%C3%A9`). The fragment is kept: a single-page database
    routes by it, and the browser keeps it through the redirect. None too when the browser could
    not ask for the address on one request line of `max_line` characters."""
    if not url or len(url) > 4 * max_line:
        return None
    if "\\" in url or any(ord(c) < 32 or ord(c) == 127 for c in url):
        # Browsers read `\` as `/` and drop tabs and newlines where Python's parser does not:
        # the two could disagree on the host.
        return None
    scheme, sep, after = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    # The host ends at the first `/`, `?` or `#` for every parser once `\` is refused.
    end = min((i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after))
    netloc, rest = after[:end], after[end:]
    if not netloc or not netloc.isascii() or any(c in netloc for c in "@% "):
        # Raw non-ASCII here is a homograph or a fullwidth-dot trick. Checked before
        # lower-casing: str.lower() turns the Kelvin sign into an ASCII "k".
        return None
    netloc = netloc.lower()
    try:
        parts = urlsplit(f"{scheme}://{netloc}/")
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return None
    vendor_host = hosts.vendor_host_from_request(netloc)
    if vendor_host is None:
        host = parts.hostname or ""
        if not is_valid_hostname(host) or hosts.vendor_for_host(host) is None:
            return None
        vendor_host = host
    before_fragment, _hash, fragment = rest.partition("#")
    path, _mark, query = before_fragment.partition("?")
    encoded = [_browser_encoded(p) for p in (path or "/", query, fragment)]
    if None in encoded:
        return None
    path, query, fragment = (e or "" for e in encoded)
    target = f"{hosts.public_scheme}://{hosts.to_mapped(vendor_host)}{path}"
    if query:
        target += "?" + query
    if fragment:
        target += "#" + fragment
    # Belt and braces: what we hand out must parse back to the mapped host we meant.
    check = urlsplit(target)
    if (
        check.netloc != hosts.to_mapped(vendor_host)
        or hosts.vendor_host_from_request(check.netloc) != vendor_host
    ):
        return None
    if _request_line_length(target) > max_line:
        return None
    return target
