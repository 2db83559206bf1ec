"""Where the proxy may send a patron: only to configured vendor hosts, in their mapped form.

Every redirect the proxy issues from patron input (`url` on /login) goes through `safe_target`;
anything that is not plainly an http(s) URL on a configured vendor host is refused, and the caller
sends the patron to /menu instead.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from proxy.hosts import HostMap, is_valid_hostname

MAX_TARGET = 4096


def safe_target(url: str, hosts: HostMap) -> str | None:
    """The mapped URL for a starting point on a configured vendor host, or None."""
    if not url or len(url) > MAX_TARGET or not url.isascii():
        # Browsers percent-encode what they send; raw non-ASCII here is a homograph or a
        # fullwidth-dot trick, and could not go into a Location header anyway.
        return None
    if "\\" in url or any(ord(c) < 33 or ord(c) == 127 for c in url):
        return None
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    netloc = parts.netloc.lower()
    if "@" in netloc or "%" in netloc or not netloc.isascii():
        return None
    vendor_host = hosts.vendor_host_from_request(netloc)
    if vendor_host is None:
        host = parts.hostname or ""
        if not is_valid_hostname(host) or hosts.vendor_for_host(host) is None:
            return None
        vendor_host = host
    path = parts.path or "/"
    if not path.startswith("/"):
        return None
    target = f"{hosts.public_scheme}://{hosts.to_mapped(vendor_host)}{path}"
    if parts.query:
        target += "?" + parts.query
    # Belt and braces: what we hand out must parse back to the mapped host we meant.
    check = urlsplit(target)
    if (
        check.netloc != hosts.to_mapped(vendor_host)
        or hosts.vendor_host_from_request(check.netloc) != vendor_host
    ):
        return None
    return target
