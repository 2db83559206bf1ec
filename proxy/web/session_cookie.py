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
# The sign-in form's double-submit cookie (proxy/web/pages.py).
CSRF_COOKIE = "weston_csrf"


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


def parent_domains(host: str) -> list[str]:
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
    domains = parent_domains(config.public[1])
    if here and here not in domains:
        domains = [here, *domains]  # a Domain cookie for the mapped host the request went to
    for path in _paths(request.raw_path):
        resp.headers.add("Set-Cookie", f"{expired}; Path={path}")  # host-only on this host
        for domain in domains:
            resp.headers.add("Set-Cookie", f"{expired}; Domain={domain}; Path={path}")


__all__ = [
    "CSRF_COOKIE",
    "MAX_PATH_DEPTH",
    "clear_copies",
    "cookie_values",
    "ids_in",
    "parent_domains",
    "session_id",
    "session_ids",
]
