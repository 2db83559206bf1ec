"""Per-session, per-vendor cookie jars kept on the proxy (vendor cookies never reach the browser).

The cookie rules (Domain, Path, Expires/Max-Age, Secure, host-only) are the standard library's
`http.cookiejar`, a long-maintained RFC 6265-style implementation; this module only adapts it to
aiohttp's headers and to a JSON-serialisable form the session store can hold. It keeps each
cookie's SameSite attribute (cookiejar keeps unknown attributes in `Cookie._rest`, but stores
only the standard ones), so a cross-site request gets only what a browser would send it
(`cross_site_cookies`, RFC 6265bis): every vendor is served on a subdomain of the proxy's host,
so in the browser all vendors are one site, and only the proxy can tell them apart.

Where http.cookiejar follows older rules than browsers, the jar reads each Set-Cookie as a
browser does first (`_as_browsers_read`: size limit, cookie-name prefixes, attributes to ignore)
and matches Domain by RFC 6265 and the Public Suffix List (`_Policy`). A jar holds at most
MAX_COOKIES_PER_JAR cookies and MAX_JAR_BYTES as the session stores them (every field, attribute
values included), dropping the ones the vendor set longest ago, and a stored entry this version
cannot read is left out rather than failing every request.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.cookiejar
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

import aiohttp

from proxy.public_suffix import suffix_list

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
# A cookie whose name and value together pass this is ignored, as browsers do (RFC 6265bis 5.6).
MAX_COOKIE_BYTES = 4096
# An attribute whose value is longer than this is ignored, as browsers do (RFC 6265bis 5.6): the
# attribute, not the cookie (a Path too long leaves the default path, or an earlier Path).
MAX_ATTRIBUTE_BYTES = 1024
# One vendor's jar as the session stores it (`stored_size`: names, values, Domain, Path and every
# other field): the jar is stored in the session and rewritten on every change, and sent back in
# the Cookie header. Past it, the cookies the vendor set longest ago go first (as past
# MAX_COOKIES_PER_JAR). Real vendor jars hold a few KB; a cookie's fixed fields are ~300 bytes.
MAX_JAR_BYTES = 64 * 1024
# When the vendor last set a cookie, as a nonstandard attribute of cookiejar's Cookie (public
# API: get/set_nonstandard_attr) and "set_at" when stored: a full jar drops the oldest.
_SET_AT = "x-weston-set-at"
_MAX_AGE = re.compile(r"-?[0-9]+")
# Attributes RFC 6265 does not have, which http.cookiejar would act on (RFC 2965's Port check,
# and Version > 0 switching on its stricter rules): browsers ignore them, so the jar does too.
_IGNORED_ATTRIBUTES = frozenset({"port", "version"})
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


class _Policy(http.cookiejar.DefaultCookiePolicy):
    """cookiejar's rules with RFC 6265's domain-match: a Domain naming the very host that sets
    it is kept (RFC 2965's match, which cookiejar can apply, refuses it, and with it the session
    of a vendor served from its bare domain), and a Domain that is a public suffix (`com`,
    `co.uk`, `github.io`, by the Public Suffix List) is refused unless it is that host, and then
    the cookie is host-only (RFC 6265 5.3 step 5)."""

    def set_ok_domain(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        if not super().set_ok_domain(cookie, request):
            return False
        if not cookie.domain_specified:
            return True
        domain = cookie.domain.lstrip(".").lower()
        host = (urllib.parse.urlsplit(request.get_full_url()).hostname or "").lower()
        if not suffix_list().is_public(domain):
            return True
        if domain != host:
            return False
        # RFC 6265 5.3 step 5: a public suffix named by the very host that sets it makes the
        # cookie host-only, sent back to that host and never to the sites under the suffix.
        # cookiejar has no hook for it but this one, so the cookie is made host-only here.
        cookie.domain, cookie.domain_specified, cookie.domain_initial_dot = host, False, False
        return True


def _policy() -> http.cookiejar.DefaultCookiePolicy:
    # Domain rules as RFC 6265 5.3 has them: a vendor cannot set cookies for a public suffix or
    # an unrelated domain, and a Domain cookie is only ever sent to that domain and its
    # subdomains. Not DomainStrict: it includes DomainStrictNoDots, which drops a cookie for
    # `.ebscohost.com` set by `web.b.ebscohost.com` (a dot in the part before the domain), and
    # with it the vendor session of a platform that serves from deep hosts. (A jar is one
    # vendor's: its cookies only ever go to that vendor's configured hosts, whatever Domain
    # they name.)
    return _Policy(strict_domain=True, strict_ns_domain=_Policy.DomainStrictNonDomain)


def load_jar(serialised: list[dict[str, Any]]) -> http.cookiejar.CookieJar:
    jar = http.cookiejar.CookieJar(policy=_policy())
    now = time.time()
    for d in serialised:
        cookie = _cookie(d)
        if cookie is None or (cookie.expires is not None and cookie.expires <= now):
            continue
        jar.set_cookie(cookie)
    return jar


# A stored cookie's fields, with the type each must have and what a missing or mistyped one
# becomes: a jar written by another version of the proxy (a rolling upgrade) still loads, and an
# entry that cannot be a cookie is left out rather than failing every request to the vendor.
_FIELD_DEFAULTS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "version": (int, 0),
    "port": (str, None),
    "port_specified": (bool, False),
    "path": (str, "/"),
    "path_specified": (bool, True),
    "secure": (bool, False),
    "expires": ((int, float), None),
    "discard": (bool, False),
    "comment": (str, None),
    "comment_url": (str, None),
}


def _cookie(d: dict[str, Any]) -> http.cookiejar.Cookie | None:
    name, value, domain = d.get("name"), d.get("value"), d.get("domain")
    if not isinstance(name, str) or not isinstance(domain, str) or not domain:
        return None
    if value is not None and not isinstance(value, str):
        return None
    kwargs: dict[str, Any] = {"name": name, "value": value, "domain": domain}
    for field, (kind, default) in _FIELD_DEFAULTS.items():
        given = d.get(field)
        ok = isinstance(given, kind) and not (kind is int and isinstance(given, bool))
        kwargs[field] = given if ok else default
    specified, dot = d.get("domain_specified"), d.get("domain_initial_dot")
    kwargs["domain_specified"] = specified if isinstance(specified, bool) else domain[0] == "."
    kwargs["domain_initial_dot"] = dot if isinstance(dot, bool) else domain[0] == "."
    rest: dict[str, str] = {}
    if isinstance(d.get("samesite"), str):
        rest["SameSite"] = d["samesite"]
    if isinstance(d.get("set_at"), int | float):
        rest[_SET_AT] = repr(float(d["set_at"]))
    return http.cookiejar.Cookie(**kwargs, rest=rest, rfc2109=False)


def _samesite(cookie: http.cookiejar.Cookie) -> str | None:
    """The cookie's SameSite as stored: "strict", "lax", "none", or None when unset or unknown.
    cookiejar keeps an unknown attribute under the name as the vendor spelt it; the last wins."""
    rest: dict[str, str | None] = getattr(cookie, "_rest", {})
    value = None
    for name, text in rest.items():
        if name.lower() == "samesite":
            value = (text or "").strip().lower()
    return value if value in SAMESITE_VALUES else None


def _set_at(cookie: http.cookiejar.Cookie) -> float:
    try:
        return float(cookie.get_nonstandard_attr(_SET_AT) or 0)
    except ValueError:
        return 0.0


def stored_size(entry: dict[str, Any]) -> int:
    """The bytes one stored cookie takes in the session, as the Redis store writes it (compact
    JSON, non-ASCII escaped), so the jar bound is what the store holds, not part of it."""
    return len(json.dumps(entry, separators=(",", ":")))


def dump_jar(jar: http.cookiejar.CookieJar) -> list[dict[str, Any]]:
    """The jar as the session stores it: at most MAX_COOKIES_PER_JAR cookies and MAX_JAR_BYTES
    as stored, the ones the vendor set most recently kept (RFC 6265 5.3 step 12: browsers evict
    the oldest too, so a vendor's new sign-in cookie always stays)."""
    jar.clear_expired_cookies()
    out: list[dict[str, Any]] = []
    size = 0
    for c in sorted(jar, key=_set_at, reverse=True):
        if len(out) == MAX_COOKIES_PER_JAR:
            break
        entry = _entry(c)
        n = stored_size(entry)
        if size + n > MAX_JAR_BYTES:
            continue
        size += n
        out.append(entry)
    return out


def _entry(c: http.cookiejar.Cookie) -> dict[str, Any]:
    """One cookie as the session stores it."""
    d = {k: getattr(c, k) for k in _FIELDS}
    d["samesite"] = _samesite(c)
    d["set_at"] = _set_at(c)
    if d["discard"] and d["expires"] is None:
        # Session cookies live as long as the proxy session; keep them.
        d["discard"] = False
    return d


def _canonical(d: dict[str, Any]) -> dict[str, Any] | None:
    """A stored entry as `dump_jar` would write it now, whichever version stored it."""
    c = _cookie(d)
    return None if c is None else _entry(c)


def _key(d: dict[str, Any]) -> tuple[str, str, str]:
    return (d.get("domain") or "", d.get("path") or "", d.get("name") or "")


def merged_jar(
    latest: list[dict[str, Any]], before: list[dict[str, Any]], ours: list[dict[str, Any]]
) -> http.cookiejar.CookieJar:
    """A three-way merge: the jar as stored now (`latest`), plus what this request changed
    between `before` and `ours` (a shared login's cookies, say). Cookies other overlapping
    requests stored meanwhile are kept; this request's own changes win over them."""
    jar = load_jar(latest)
    # Compared as dump_jar writes them now: a jar stored by an earlier version has entries
    # without some field (SameSite, when it was set), and `ours` (from dump_jar) has them, so
    # every cookie would look changed and this request's stale copies would be written over
    # what overlapping requests stored.
    was = {_key(d): _canonical(d) for d in before}
    now = {_key(d): _canonical(d) for d in ours}
    for key, d in now.items():
        cookie = None if d is None else _cookie(d)
        if was.get(key) != d and cookie is not None:
            jar.set_cookie(cookie)
    for domain, path, name in was.keys() - now.keys():
        with contextlib.suppress(KeyError):  # already gone from the stored jar
            jar.clear(domain, path, name)
    return jar


def _cookie_date(text: str) -> int | None:
    """An Expires date read by RFC 6265 §5.1.1's algorithm, as browsers read it (two-digit years
    70-99 are 1970-1999, the zone is ignored, the parts in any order); None when it finds none.
    aiohttp's CookieJar implements that algorithm; the standard library's cookiejar does not."""
    try:
        return aiohttp.CookieJar._parse_date(text)
    except (ValueError, OverflowError):
        return None


def _as_browsers_read(header: str, *, secure_origin: bool) -> str | None:
    """One Set-Cookie header as http.cookiejar should see it, or None for a cookie a browser
    ignores (RFC 6265bis 5.6 and 5.7): name and value over MAX_COOKIE_BYTES; a `__Secure-`
    cookie without Secure from a secure origin; a `__Host-` one that also has a Domain or a
    Path other than "/" (only the host itself may set it). Attributes a browser ignores are
    dropped instead of costing the cookie: any whose value is over MAX_ATTRIBUTE_BYTES octets,
    a Max-Age that is no number, a Path not starting with "/" (the default path then), an
    empty Domain, and Port and Version (RFC 2965's, which cookiejar would act on). An attribute
    given twice counts by its last occurrence (RFC 6265 5.3: "the last attribute … with an
    attribute-name of"), where cookiejar keeps the first; a Path that is not a path is the
    default path (5.2.4), so it undoes an earlier Path. Written by hand: cookiejar follows the
    older rules here, and this is the RFC's own algorithm, a split on ";"."""
    pair, *attributes = header.split(";")
    name, eq, value = pair.partition("=")
    if _octets(name.strip()) + (_octets(value.strip()) if eq else 0) > MAX_COOKIE_BYTES:
        return None
    kept: dict[str, str] = {}  # attribute name -> its last occurrence
    secure, domain, path = False, False, None
    for attribute in attributes:
        key, _, text = attribute.partition("=")
        key, text = key.strip().lower(), text.strip()
        if key in _IGNORED_ATTRIBUTES or _octets(text) > MAX_ATTRIBUTE_BYTES:
            continue
        if key == "max-age" and not _MAX_AGE.fullmatch(text):
            continue
        if key == "expires":
            when = _cookie_date(text)
            if when is not None:
                # Spelt so cookiejar reads the date the browser does (it takes "70" for 2070 and
                # any zone but GMT, or a JavaScript date, for no date at all).
                # cookiejar reads no date before 1970: any past date deletes alike.
                attribute = f" expires={email.utils.formatdate(max(when, 1), usegmt=True)}"
        if key == "path":
            if not text.startswith("/"):
                kept.pop("path", None)
                path = None
                continue
            path = text
        if key == "domain":
            if not text.strip("."):
                continue
            domain = True
        secure = secure or key == "secure"
        kept.pop(key, None)
        kept[key] = attribute
    prefix = name.strip().lower() if eq else ""
    if prefix.startswith(("__secure-", "__host-")) and not (secure and secure_origin):
        return None
    if prefix.startswith("__host-") and (domain or path != "/"):
        return None
    return ";".join([pair, *kept.values()])


def _octets(text: str) -> int:
    """The length in bytes of a header's text (aiohttp decodes headers as UTF-8, keeping
    undecodable bytes as surrogate escapes, which count one byte each; any other lone
    surrogate, which no header carries, counts as its three UTF-8 bytes)."""
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


def store_set_cookies(jar: http.cookiejar.CookieJar, url: str, set_cookies: list[str]) -> bool:
    """Put a response's Set-Cookie headers into the jar; True when the jar changed."""
    secure_origin = url.lower().startswith("https:")
    read = [_as_browsers_read(h, secure_origin=secure_origin) for h in set_cookies]
    headers = [h for h in read if h is not None]
    if not headers:
        return False
    before = {_key_of(c): _state(c) for c in jar}
    # The Request is only a container for the URL here: nothing is ever opened.
    jar.extract_cookies(_Response(headers), urllib.request.Request(url))  # type: ignore[arg-type]  # noqa: S310
    now = repr(time.time())
    changed = False
    for c in jar:
        if before.get(_key_of(c)) != _state(c):
            c.set_nonstandard_attr(_SET_AT, now)
            changed = True
    return changed or before.keys() != {_key_of(c) for c in jar}


def _key_of(c: http.cookiejar.Cookie) -> tuple[str, str, str]:
    return (c.domain, c.path, c.name)


def _state(c: http.cookiejar.Cookie) -> tuple[Any, ...]:
    return (c.value, c.expires, c.secure, _samesite(c))


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
