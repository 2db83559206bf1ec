"""The session cookie as the browser sends it, and what to do when it arrives twice.

Every vendor is served on a subdomain of the proxy's host, so vendor pages (scripts the library
does not control) run on the same site as the sign-in and may write cookies for the proxy's
host and its parent domains. A script cannot overwrite the proxy's HttpOnly session cookie, but
it can add one of the same name with another Domain or Path ("cookie tossing"), and the browser
then sends both. Taking either one would be wrong: the newer or longer-path one is the page's,
and it can name the page author's own session, so the patron's next databases would fill the
author's cookie jar, and signing out would end the author's session and leave the patron's.

So two different values of the session cookie are never taken for a session: the request gets
a page saying so (`SessionConflict`, handled in `proxy/app.py`), every session named is ended,
and every copy the browser could hold for this request is deleted (`clear_copies`): on the host
the request went to, on the proxy's host and on each parent domain up to the registrable one,
for each path the request's path lies under (a cookie is only sent on a path under its own).

The same parent domains serve sign-out on a mapped vendor host (`clear_page_cookies`): cookies a
vendor page's script wrote in the browser are deleted there, for that host and its parents
below the registrable domain (the library's own, whose other sites' cookies are left alone).
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from aiohttp import web

from proxy.config import Config
from proxy.errors import SessionConflict
from proxy.public_suffix import registrable_domain
from proxy.services import SERVICES

# Most `/` of a request path whose prefixes get a deletion each (a deeper path is cut there).
MAX_PATH_DEPTH = 32
# Most cookie names one sign-out deletes on a host: browsers keep no more than 180 cookies per
# domain (Chromium's limit), so a longer Cookie header only asks for a longer answer.
MAX_PAGE_COOKIES = 180


def cookie_values(header: str, name: str) -> list[str]:
    """The raw values of every cookie called `name` in a Cookie header, in order."""
    values = []
    for part in header.split(";"):
        key, _, text = part.partition("=")
        if key.strip() == name:
            values.append(text.strip())  # a bare name is an empty value, as aiohttp reads it
    return values


def _unquoted(name: str, value: str) -> str:
    if not value.startswith('"'):
        return value
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(f"{name}={value}")
    morsel = parsed.get(name)
    return morsel.value if morsel is not None else value


def ids_in(header: str, name: str) -> list[str]:
    """Each different non-empty value of cookie `name` in a Cookie header, unquoted as aiohttp
    unquotes it, in the order sent."""
    ids: list[str] = []
    for value in cookie_values(header, name):
        value = _unquoted(name, value)
        if value and value not in ids:
            ids.append(value)
    return ids


def session_ids(request: web.Request) -> list[str]:
    """Each different session id the request carries, in the order sent (usually one)."""
    name = request.app[SERVICES].config.server.cookie_name
    return ids_in(request.headers.get("Cookie", ""), name)


def session_id(request: web.Request) -> str | None:
    """The one session id the request carries, None without one; SessionConflict for two."""
    ids = session_ids(request)
    if len(ids) > 1:
        raise SessionConflict(ids)
    return ids[0] if ids else None


def _domains(host: str) -> list[str]:
    """A host (the proxy's, or one of its subdomains) and its parent domains up to the
    registrable one (cookies can be set for each of them from the proxy's subdomains)."""
    top = registrable_domain(host)
    labels = host.split(".")
    found = []
    for i in range(len(labels)):
        domain = ".".join(labels[i:])
        found.append(domain)
        if domain == top:
            break
    return found


def _paths(raw_path: str) -> list[str]:
    """Every cookie path a cookie sent on `raw_path` can have (RFC 6265 5.1.4 path-match): each
    prefix ending at a `/`, with and without it, and the whole path. The path as the browser
    sent it (percent-encoded, query cut): cookie paths are matched against that, not against
    the decoded path."""
    path = raw_path.split("?", 1)[0] or "/"
    found = ["/"]
    slashes = [i for i, c in enumerate(path) if c == "/"][1 : MAX_PATH_DEPTH + 1]
    for i in slashes:
        found += [path[:i], path[: i + 1]]
    found.append(path)
    return list(dict.fromkeys(found))


def clear_copies(resp: web.StreamResponse, request: web.Request, config: Config) -> None:
    """Delete every copy of the session cookie this request could have carried.

    Written as raw headers before any cookie the response sets itself, which aiohttp adds
    after them, so a new session cookie set on the same response is not deleted again."""
    name = config.server.cookie_name
    expired = f"{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    here = (request.host or "").rsplit(":", 1)[0].lower()
    domains = _domains(config.public[1])
    if here and here not in domains:
        domains = [here, *domains]  # a Domain cookie for the mapped host the request went to
    for path in _paths(request.raw_path):
        resp.headers.add("Set-Cookie", f"{expired}; Path={path}")  # host-only on this host
        for domain in domains:
            resp.headers.add("Set-Cookie", f"{expired}; Domain={domain}; Path={path}")


def _page_cookie_names(header: str) -> list[str]:
    """Each different cookie name in a Cookie header, in order; "" for a nameless cookie (a
    part without "=", which browsers send for `document.cookie = "text"`: all of it is value)."""
    names: list[str] = []
    for part in header.split(";"):
        if not part.strip():
            continue
        name, eq, _value = part.partition("=")
        name = name.strip() if eq else ""
        # A name a Set-Cookie header could not carry back intact is left alone.
        if name.isascii() and name.isprintable() and name not in names:
            names.append(name)
    return names


def clear_page_cookies(
    resp: web.StreamResponse, request: web.Request, config: Config, *, keep: frozenset[str]
) -> None:
    """Delete every cookie the request carried except those named in `keep`, on the host the
    request went to (host-only) and for that host and each parent domain below the registrable
    one (`_domains`), with Path=/ (a cookie with another path is not sent here, so it is not
    known). Cookies for the registrable domain itself are the library's other sites' as much as
    a page's, and stay. Names only: no value is written back, and none is logged."""
    here = (request.host or "").rsplit(":", 1)[0].lower()
    if not here:
        return
    top = registrable_domain(here)
    domains = [d for d in _domains(here) if d != top]
    secure = "; Secure" if config.public[0] == "https" else ""  # __Secure-/__Host- names need it
    sent = _page_cookie_names(request.headers.get("Cookie", ""))
    for name in [n for n in sent if n not in keep][:MAX_PAGE_COOKIES]:
        # A nameless cookie is deleted by a nameless one: "x" alone is a value, its name is "".
        expired = f"{name}=" if name else "x"
        expired += f"; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/{secure}"
        resp.headers.add("Set-Cookie", expired)  # host-only
        for domain in domains:
            resp.headers.add("Set-Cookie", f"{expired}; Domain={domain}")


__all__ = [
    "MAX_PAGE_COOKIES",
    "MAX_PATH_DEPTH",
    "clear_copies",
    "clear_page_cookies",
    "cookie_values",
    "ids_in",
    "session_id",
    "session_ids",
]
