"""Asking the browser to forget what vendor pages stored in it (shared computers).

Vendor pages run on the proxy's mapped hosts, so what they keep in the browser (pages in the HTTP
cache, a database's "recent searches" in local storage, cookies their scripts wrote) stays there
for the next person at a shared computer unless the proxy clears it. On every mapped host,
FORGET_PATH is answered by the proxy itself (the vendor never sees it) with `Clear-Site-Data` for
that origin and a deletion of each cookie the browser sent there but the proxy's own.

The pages that load it as images: sign-out (every host the session used) and the sign-in page
shown after a session ended without sign-out (every host the vendor files name; the session's own
list died with it). Each URL carries a token the proxy signed for that host, valid for
TOKEN_S: without one, the answer clears nothing, so one vendor's page cannot wipe another's
storage in the middle of a session by loading its forget address.

`FORGET_WHAT` (proxy/privacy.py) leaves cookies out: the cookies vendor scripts wrote are
deleted one by one instead. The deletions of one host are spread over PARTS requests (by a hash
of the name, so the split does not depend on which cookies an earlier part deleted), each at
most `page_cookies.HEADER_BUDGET` bytes of `Set-Cookie`: a TLS terminator in front refuses an answer whose head outgrows its buffer
(nginx's default `proxy_buffer_size` is one 4 KiB page), and then nothing at all is cleared.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import zlib
from urllib.parse import urlsplit

from aiohttp import web

from proxy.config import Config
from proxy.page_cookies import shared_cookie_deletions
from proxy.privacy import FORGET_WHAT
from proxy.services import SERVICES, Services
from proxy.web.session_cookie import CSRF_COOKIE

FORGET_PATH = "/.weston-proxy/forget"
TOKEN_S = 600  # how long a page's forget addresses work after it was made
PARTS = 2
MAX_HOSTS = 200  # forget images on one page


def _key(svc: Services) -> bytes:
    return hashlib.sha256(b"forget-v1\x00" + svc.secret).digest()


def _mac(key: bytes, host: str, expires: int) -> str:
    return hmac.new(key, f"{host}|{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def forget_urls(svc: Services, vendor_hosts: list[str]) -> list[str]:
    """The forget addresses (every part) of each vendor host's mapped host, signed."""
    key = _key(svc)
    expires = int(time.time()) + TOKEN_S
    urls: list[str] = []
    for vendor_host in list(dict.fromkeys(vendor_hosts))[:MAX_HOSTS]:
        origin = svc.hosts.mapped_origin(vendor_host)
        mapped = (urlsplit(origin).hostname or "").lower()
        token = f"{expires}.{_mac(key, mapped, expires)}"
        urls += [f"{origin}{FORGET_PATH}?part={part}&t={token}" for part in range(PARTS)]
    return urls


def configured_hosts(config: Config) -> list[str]:
    """The vendor hosts the vendor files name (wildcards cannot be listed: their hosts are
    cleared when next opened with a dead session's cookie, `proxy/app.py`)."""
    return [h for v in config.vendors for h in v.hosts if not h.startswith("*")]


def _number(text: str) -> bool:
    """ASCII digits, at most twelve (`str.isdigit` takes "²", which `int` refuses)."""
    return 0 < len(text) <= 12 and text.isascii() and text.isdigit()


def _valid(svc: Services, request: web.Request) -> bool:
    expires_text, _, mac = request.query.get("t", "").partition(".")
    if not _number(expires_text) or int(expires_text) < time.time():
        return False
    here = request.host.rsplit(":", 1)[0].lower()
    return hmac.compare_digest(mac, _mac(_key(svc), here, int(expires_text)))


def forget_here(request: web.Request) -> web.Response:
    """The answer on FORGET_PATH: with a valid token, Clear-Site-Data for this origin (HTTP
    cache, localStorage, IndexedDB, service workers ...) and this part's deletions of the
    cookies the browser sent, but the proxy's own. Without one, 403 and nothing cleared."""
    svc = request.app[SERVICES]
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if not _valid(svc, request):
        return web.Response(status=403, headers=headers)
    resp = web.Response(status=204, headers={**headers, "Clear-Site-Data": FORGET_WHAT})
    part = request.query.get("part", "0")
    clear_page_cookies(
        resp,
        request,
        svc.config,
        keep=own_cookies(svc.config),
        part=int(part) % PARTS if _number(part) else 0,
    )
    return resp


def own_cookies(config: Config) -> frozenset[str]:
    """The names of the cookies the proxy sets itself."""
    return frozenset({config.server.cookie_name, CSRF_COOKIE})


def clear_page_cookies(
    resp: web.StreamResponse,
    request: web.Request,
    config: Config,
    *,
    keep: frozenset[str],
    part: int,
) -> None:
    """Delete the cookies of `part` that the request carried, except those named in `keep`:
    host-only on this host, and for this host and each parent domain down to the proxy's public
    host, with Path=/ (a cookie with another path is not sent here, so it is
    not known). Names only: no value is written back, and none is logged."""
    here = request.host.rsplit(":", 1)[0].lower()
    if not here:
        return
    # The same deletions a session's first page on a host makes (proxy.page_cookies), of this
    # part's names; the rest stay when the budget is spent (the docs say so).
    for line in shared_cookie_deletions(
        request.headers.get("Cookie", ""),
        here,
        config.public[1],
        keep,
        config.public[0] == "https",
        host_too=True,
        wanted=lambda name: zlib.crc32(name.encode()) % PARTS == part,
    ):
        resp.headers.add("Set-Cookie", line)
