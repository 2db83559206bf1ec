"""Cookies a vendor page's script writes for the proxy's own domain, where every other vendor's
page reads them.

Every mapped host is a subdomain of the proxy's public host, so a script on one vendor's pages
can write `document.cookie = "id=…; domain=proxy.westonlibrary.org"`, and every other vendor's
pages read it back from `document.cookie`: an identifier the two can use to link one patron's
visits across databases (P4). The proxy never forwards such cookies to a vendor, but it cannot
stop a script reading them in the browser; what it can do is delete them whenever the browser
shows one on a vendor's page load, before that page's scripts run. On a session's first page on a
host, the script cookies the browser still holds for that host itself go too (a session that
ended without sign-out left them; the forget address deletes them at sign-out): a new session
starts clean there, as its Clear-Site-Data does for storage.

A deletion names the parent domain (`Domain=`) it clears, so the host-only cookies a vendor's
scripts keep on their own mapped host (preferences, a consent banner's answer) are untouched:
a cookie is replaced or deleted only by one of the same name, domain and path. Only `Path=/` is
deleted (a cookie with another path is one the browser sends only there, and it cannot be told
apart from the header). Domains above the public host are the library's other sites' (for
`proxy.westonlibrary.org`, `westonlibrary.org`), and are left.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

# Bytes of such deletions in one answer at most (as the forget address's, with the rest of
# the answer under a TLS terminator's default 4 KiB header buffer).
HEADER_BUDGET = 2800


def page_cookie_names(header: str) -> list[str]:
    """Each different cookie name in a Cookie header, in order; "" for a nameless cookie (a
    part without "=", which browsers send for `document.cookie = "text"`: all of it is value)."""
    names: list[str] = []
    for piece in header.split(";"):
        if not piece.strip():
            continue
        name, eq, _value = piece.partition("=")
        name = name.strip() if eq else ""
        # A name a Set-Cookie header could not carry back intact is left alone.
        if name.isascii() and name.isprintable() and name not in names:
            names.append(name)
    return names


@functools.lru_cache(maxsize=1024)
def shared_domains(host: str, public_host: str) -> tuple[str, ...]:
    """The parent domains of the mapped `host` that other mapped hosts share, down to and with
    `public_host` (not `host` itself, whose cookies only its own subdomains see)."""
    found: list[str] = []
    domain = host
    while "." in domain:
        domain = domain.split(".", 1)[1]
        if domain != public_host and not domain.endswith("." + public_host):
            break
        found.append(domain)
    return tuple(found)


def shared_cookie_deletions(
    cookie_header: str,
    host: str,
    public_host: str,
    keep: frozenset[str],
    secure: bool,
    *,
    host_too: bool = False,
    wanted: Callable[[str], bool] | None = None,
) -> list[str]:
    """`Set-Cookie` values deleting, on each of `shared_domains`, every cookie the header names
    but those in `keep` (the proxy's own); with `host_too` (a session's first page on the host),
    on the host itself too, host-only and as a domain (what the forget address deletes at
    sign-out); `wanted` picks the names when the deletions are spread over several answers.
    Names only, never a value."""
    domains = shared_domains(host, public_host)
    if not domains and not host_too:
        return []
    flag = "; Secure" if secure else ""  # __Secure-/__Host- names need it
    out: list[str] = []
    budget = HEADER_BUDGET
    for name in page_cookie_names(cookie_header):
        if name in keep or (wanted is not None and not wanted(name)):
            continue
        expired = (f"{name}=" if name else "x") + f"; Max-Age=0; Path=/{flag}"
        lines = [f"{expired}; Domain={d}" for d in domains]
        if host_too:
            lines = [expired, f"{expired}; Domain={host}", *lines]
        cost = sum(len(line) + len("Set-Cookie: \r\n") for line in lines)
        if cost > budget:
            break
        budget -= cost
        out += lines
    return out
