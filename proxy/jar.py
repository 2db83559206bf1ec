"""Per-session, per-vendor cookie jars kept on the proxy (vendor cookies never reach the browser).

The cookie rules (Domain, Path, Expires/Max-Age, Secure, host-only) are the standard library's
`http.cookiejar`, a long-maintained RFC 6265-style implementation; this module only adapts it to
aiohttp's headers and to a JSON-serialisable form the session store can hold. It keeps each
cookie's SameSite attribute (cookiejar keeps unknown attributes in `Cookie._rest`, but stores
only the standard ones), so a cross-site request gets only what a browser would send it
(`cross_site_cookies`, RFC 6265bis): every vendor is served on a subdomain of the proxy's host,
so in the browser all vendors are one site, and only the proxy can tell them apart.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import time
import urllib.request
from collections.abc import Iterable
from typing import Any

_FIELDS = (
    "version",
    "name",
    "value",
    "port",
    "port_specified",
    "domain",
    "domain_specified",
    "domain_initial_dot",
    "path",
    "path_specified",
    "secure",
    "expires",
    "discard",
    "comment",
    "comment_url",
)
MAX_COOKIES_PER_JAR = 200
# SameSite values as stored ("samesite" in a serialised cookie); any other value, or none, is
# stored as None: RFC 6265bis treats it as "Default", which browsers enforce as Lax.
SAMESITE_VALUES = frozenset({"strict", "lax", "none"})
# Methods RFC 6265bis calls safe: a cross-site top-level navigation with one of them carries Lax
# cookies (OPTIONS and TRACE are never navigations).
SAFE_METHODS = frozenset({"GET", "HEAD"})


class _Headers:
    """The headers http.cookiejar reads from a response: `get_all` of Set-Cookie (and the
    obsolete Set-Cookie2, never kept). Not `email.message.Message`: for a value with a byte
    outside ASCII (a vendor's locale or preference cookie in Latin-1) it hands back a `Header`
    object, cookiejar's parser fails on it, and every cookie of that response is lost, the
    vendor's session cookie with the rest."""

    def __init__(self, set_cookies: Iterable[str]) -> None:
        self._set_cookies = list(set_cookies)

    def get_all(self, name: str, default: list[str]) -> list[str]:
        if name.lower() == "set-cookie" and self._set_cookies:
            return list(self._set_cookies)
        return default


class _Response:
    """The minimal response object http.cookiejar.extract_cookies reads."""

    def __init__(self, set_cookies: Iterable[str]) -> None:
        self._headers = _Headers(set_cookies)

    def info(self) -> _Headers:
        return self._headers


def _policy() -> http.cookiejar.DefaultCookiePolicy:
    # Domain rules as RFC 6265 5.3 has them: a vendor cannot set cookies for a bare TLD, a
    # country's registry (`.co.uk`: strict_domain) or an unrelated domain, and a Domain cookie
    # is only ever sent to that domain and its subdomains. Not DomainStrict: it includes
    # DomainStrictNoDots, which drops a cookie for `.ebscohost.com` set by `web.b.ebscohost.com`
    # (a dot in the part before the domain), and with it the vendor session of a platform that
    # serves from deep hosts. (A jar is one vendor's: its cookies only ever go to that vendor's
    # configured hosts, whatever Domain they name.)
    policy = http.cookiejar.DefaultCookiePolicy
    return policy(
        strict_domain=True,
        strict_ns_domain=policy.DomainStrictNonDomain | policy.DomainRFC2965Match,
    )


def load_jar(serialised: list[dict[str, Any]]) -> http.cookiejar.CookieJar:
    jar = http.cookiejar.CookieJar(policy=_policy())
    now = time.time()
    for d in serialised:
        if d.get("expires") is not None and d["expires"] <= now:
            continue
        jar.set_cookie(_cookie(d))
    return jar


def _cookie(d: dict[str, Any]) -> http.cookiejar.Cookie:
    kwargs = {k: d.get(k) for k in _FIELDS}
    samesite = d.get("samesite")
    rest = {"SameSite": samesite} if samesite else {}
    return http.cookiejar.Cookie(**kwargs, rest=rest, rfc2109=False)  # type: ignore[arg-type]


def _samesite(cookie: http.cookiejar.Cookie) -> str | None:
    """The cookie's SameSite as stored: "strict", "lax", "none", or None when unset or unknown.
    cookiejar keeps an unknown attribute under the name as the vendor spelt it; the last wins."""
    rest: dict[str, str | None] = getattr(cookie, "_rest", {})
    value = None
    for name, text in rest.items():
        if name.lower() == "samesite":
            value = (text or "").strip().lower()
    return value if value in SAMESITE_VALUES else None


def dump_jar(jar: http.cookiejar.CookieJar) -> list[dict[str, Any]]:
    jar.clear_expired_cookies()
    out = []
    for c in list(jar)[:MAX_COOKIES_PER_JAR]:
        d = {k: getattr(c, k) for k in _FIELDS}
        d["samesite"] = _samesite(c)
        if d["discard"] and d["expires"] is None:
            # Session cookies live as long as the proxy session; keep them.
            d["discard"] = False
        out.append(d)
    return out


def _key(d: dict[str, Any]) -> tuple[str, str, str]:
    return (d.get("domain") or "", d.get("path") or "", d.get("name") or "")


def merged_jar(
    latest: list[dict[str, Any]], before: list[dict[str, Any]], ours: list[dict[str, Any]]
) -> http.cookiejar.CookieJar:
    """A three-way merge: the jar as stored now (`latest`), plus what this request changed
    between `before` and `ours` (a shared login's cookies, say). Cookies other overlapping
    requests stored meanwhile are kept; this request's own changes win over them."""
    jar = load_jar(latest)
    # Compared with SameSite filled in: a jar stored before it was kept has entries without it,
    # and `ours` (from dump_jar) has it, so every cookie would look changed and this request's
    # stale copies would be written over what overlapping requests stored.
    was = {_key(d): {"samesite": None, **d} for d in before}
    now = {_key(d): {"samesite": None, **d} for d in ours}
    for key, d in now.items():
        if was.get(key) != d:
            jar.set_cookie(_cookie(d))
    for domain, path, name in was.keys() - now.keys():
        with contextlib.suppress(KeyError):  # already gone from the stored jar
            jar.clear(domain, path, name)
    return jar


def store_set_cookies(jar: http.cookiejar.CookieJar, url: str, set_cookies: list[str]) -> bool:
    """Put a response's Set-Cookie headers into the jar; True when the jar changed."""
    if not set_cookies:
        return False
    before = [(c.domain, c.path, c.name, c.value, c.expires, _samesite(c)) for c in jar]
    # The Request is only a container for the URL here: nothing is ever opened.
    jar.extract_cookies(_Response(set_cookies), urllib.request.Request(url))  # type: ignore[arg-type]  # noqa: S310
    return before != [(c.domain, c.path, c.name, c.value, c.expires, _samesite(c)) for c in jar]


def cookie_header(jar: http.cookiejar.CookieJar, url: str) -> str | None:
    """The Cookie header the jar would send to `url` (domain, path, secure and expiry honoured)."""
    req = urllib.request.Request(url)  # noqa: S310 (a container for the URL; never opened)
    jar.add_cookie_header(req)
    value = req.get_header("Cookie")
    return value if value else None


def storable_cross_site(set_cookies: list[str]) -> list[str]:
    """The Set-Cookie headers of an answer to a cross-site request that is no top-level
    navigation which a browser would store (RFC 6265bis 5.7, step 13): only SameSite=None ones.
    Without it another vendor's page could plant cookies in this vendor's jar (post this
    vendor's sign-in form with an account of its own, and the patron's reading there would land
    in that account)."""
    kept = []
    for header in set_cookies:
        value = None
        for attribute in header.split(";")[1:]:
            name, _, text = attribute.partition("=")
            if name.strip().lower() == "samesite":
                value = text.strip().lower()
        if value == "none":
            kept.append(header)
    return kept


def cross_site_cookies(
    serialised: list[dict[str, Any]], *, method: str, top_level: bool
) -> list[dict[str, Any]]:
    """The cookies of a serialised jar a browser would send on a cross-site request (RFC 6265bis
    5.8.3): never SameSite=Strict; Lax, and unset (browsers default it to Lax), only on a
    top-level navigation with a safe method; SameSite=None always. (Browsers also require Secure
    of a None cookie; the jar talks to the vendor itself, where Secure already keeps the cookie
    off plain http, so it is not asked again here. Chromium's two-minute "Lax+POST" grace for
    new unset cookies is not copied: such a cookie stays off cross-site POSTs.)"""
    lax = top_level and method.upper() in SAFE_METHODS
    return [
        d
        for d in serialised
        if d.get("samesite") == "none" or (lax and d.get("samesite") != "strict")
    ]
