"""Per-session, per-vendor cookie jars kept on the proxy (vendor cookies never reach the browser).

The cookie rules (Domain, Path, Expires/Max-Age, Secure, host-only) are the standard library's
`http.cookiejar`, a long-maintained RFC 6265-style implementation; this module only adapts it to
aiohttp's headers and to a JSON-serialisable form the session store can hold.
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
    return http.cookiejar.Cookie(**kwargs, rest={}, rfc2109=False)  # type: ignore[arg-type]


def dump_jar(jar: http.cookiejar.CookieJar) -> list[dict[str, Any]]:
    jar.clear_expired_cookies()
    out = []
    for c in list(jar)[:MAX_COOKIES_PER_JAR]:
        d = {k: getattr(c, k) for k in _FIELDS}
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
    was = {_key(d): d for d in before}
    now = {_key(d): d for d in ours}
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
    before = [(c.domain, c.path, c.name, c.value, c.expires) for c in jar]
    # The Request is only a container for the URL here: nothing is ever opened.
    jar.extract_cookies(_Response(set_cookies), urllib.request.Request(url))  # type: ignore[arg-type]  # noqa: S310
    return before != [(c.domain, c.path, c.name, c.value, c.expires) for c in jar]


def cookie_header(jar: http.cookiejar.CookieJar, url: str) -> str | None:
    """The Cookie header the jar would send to `url` (domain, path, secure and expiry honoured)."""
    req = urllib.request.Request(url)  # noqa: S310 (a container for the URL; never opened)
    jar.add_cookie_header(req)
    value = req.get_header("Cookie")
    return value if value else None
