"""The streaming forwarder: one pooled vendor client (`proxy.vendor_http`) for all vendors.

A request reaches a vendor with only what `proxy.privacy` allows, the vendor's cookies from the
session jar, and what the vendor's adapter adds. Bodies stream both ways; HTML, CSS, JS, JSON and XML
responses go through the rewriter chunk by chunk, everything else passes through untouched.
Proxied HTML gets the tracker-shield CSP, and the distinct third-party hosts it held back are
counted per vendor while the body streams. A body that cannot be decoded ends the response as a
broken connection, never as a clean short page; one the patron stops reading is cut off
(`proxy.patron_reads`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import StreamReader, web
from aiohttp.compression_utils import HAS_ZSTD
from multidict import CIMultiDict
from yarl import URL

from proxy.assertion import Signer
from proxy.config import Config, VendorConfig
from proxy.content_coding import (
    BodyDecoder,
    CorruptBody,
    UnsupportedEncoding,
    decode_prefix,
    decoder_for,
)
from proxy.errors import ProxyError, VendorUnavailable, vendor_failures
from proxy.hosts import HostMap
from proxy.jar import (
    cookie_header,
    cross_site_cookies,
    dump_jar,
    load_jar,
    storable_cross_site,
    store_set_cookies,
)
from proxy.limits_http import http_limits
from proxy.logs import get_logger
from proxy.page_cookies import shared_cookie_deletions
from proxy.patron_reads import PatronReads
from proxy.permissions import policy as permissions_policy
from proxy.privacy import (
    FORGET_WHAT,
    Initiator,
    initiator_host,
    no_password_prompt,
    outbound_headers,
    response_headers,
)
from proxy.public_suffix import same_site
from proxy.rewrite import JAVASCRIPT_TYPES, masks_only, media_type, should_rewrite
from proxy.secret_mask import mask_text
from proxy.sessions import CLEARED, MAX_NOTED_HOSTS, Session, Sessions
from proxy.sniff import SNIFF_BYTES, sniff_decided, sniff_document
from proxy.stats import saved_by_browser
from proxy.validators import open_validators, seal_validators, session_cache
from proxy.vendor_http import IDEMPOTENT, VendorClient, VendorResponse
from proxy.vendors.base import Outbound, VendorAdapter
from proxy.websocket import (
    NotASocket,
    OpenSockets,
    Redirected,
    SocketRelay,
    VendorSockets,
    offered_protocols,
    wants_websocket,
)

if TYPE_CHECKING:
    from proxy.rewrite import Rewriter

# Vendor bodies are relayed in what one socket read brought (asyncio reads up to 256 KiB), not
# cut to 64 KiB pieces: every cut copied the rest of the read (a 256 KiB read was copied ~2.5
# times).
BODY_READ = 256 * 1024
MAX_UNMAP_BODY = 1024 * 1024
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Types a browser renders as a document that loads sub-resources and runs scripts: the tracker
# shield's CSP goes on each (HTML, and SVG opened as a page, XML with an XHTML root, feeds …).
SHIELDED_TYPES = HTML_TYPES | {"image/svg+xml", "application/xml", "text/xml"}


# Types a browser sniffs as if there were none (WHATWG MIME Sniffing, "unknown MIME type").
UNKNOWN_TYPES = frozenset({"unknown/unknown", "application/unknown", "*/*"})


def unknown_type(mt: str) -> bool:
    """Whether a browser takes the media type `mt` for no type and sniffs the body: one of
    UNKNOWN_TYPES, or none that parses (empty, `html` without a `/`, `text/`), which Chromium
    drops (net's ParseMimeTypeWithoutParameter) before sniffing (IsUnknownMimeType)."""
    kind, _, sub = mt.partition("/")
    return not (kind and sub) or mt in UNKNOWN_TYPES


# Types that say nothing of what a body is, which storage and some servers give scripts (S3's
# default `binary/octet-stream`): a browser runs such a body as a classic script when a page asks
# for one (it refuses only image, audio, video and CSV types, Fetch's "should response to request
# be blocked due to its MIME type"), so it is rewritten as a script when asked for as one.
_SCRIPT_SUSPECTS = frozenset({"application/octet-stream", "binary/octet-stream", "text/plain"})
# An HLS playlist's first line, and the type it is rewritten (and sent) as when a CDN labelled
# it one of _SCRIPT_SUSPECTS or nothing.
_PLAYLIST = b"#EXTM3U"
_PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
# A PDF's first bytes, and the type its download counts as whatever its label.
_PDF = b"%PDF-"
_PDF_TYPE = "application/pdf"
_BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
# At most this much of a body is read to tell what it is, waiting at most this long for each
# more piece of it (`_read_decoded`).
MAX_PEEK = 4096
PEEK_WAIT_S = 0.3
# Fetch metadata destinations of scripts that run as workers (their own global, their own policy).
# A service worker's script never gets here (`proxy.service_workers` refuses it before the
# session gate); `serviceworker` stays listed so that, if it ever did, it would be shielded.
_WORKER_DESTS = frozenset({"worker", "sharedworker", "serviceworker"})
# The rewriter reads a script of another type as this one.
_SCRIPT_TYPE = "text/javascript"
# The vendor's digests of its own bytes (RFC 3230, RFC 9530, RFC 1864): wrong for a rewritten body.
_DIGEST_HEADERS = ("Content-MD5", "Digest", "Content-Digest", "Repr-Digest")


# What `Upstream._site` says of a request for the vendor cookie jar's SameSite rules.
SAME, CROSS, UNSURE = "same", "cross", "unsure"


def shielded(mt: str) -> bool:
    return mt in SHIELDED_TYPES or mt.endswith("+xml")


# Third-party counting keeps at most this many hosts and this much unscanned text per response.
MAX_THIRD_PARTY = 256
MAX_SCAN_CARRY = 4096
# Vendor host names whose addresses are kept (for `VendorResolver.ttl_s`).
DNS_CACHE_SIZE = 1024

log = get_logger("proxy.forward")


class BlockedAddress(OSError):
    """A vendor host resolved to an address the proxy must not reach (loopback, private …)."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


class VendorResolver:
    """Where to connect for a vendor host: the vendor's `connect_to` when it has one; otherwise the
    host's public addresses (cached for `ttl_s`), never loopback, private or other non-public ones.
    TLS still verifies the certificate against the vendor's real host name."""

    def __init__(
        self, connect_to: dict[str, tuple[str, int]], hosts: HostMap, ttl_s: float = 300.0
    ) -> None:
        self._connect_to = connect_to
        self._hosts = hosts
        self._ttl_s = ttl_s
        self._cache: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}

    async def __call__(self, host: str, port: int) -> list[tuple[str, int]]:
        vendor_id = self._hosts.vendor_for_host(host)
        target = self._connect_to.get(vendor_id or "")
        if target is not None:
            return [target]
        now = time.monotonic()
        cached = self._cache.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        allowed = [(str(i[4][0]), port) for i in infos if _is_public(str(i[4][0]))]
        if not allowed:
            raise BlockedAddress(f"vendor host resolves only to non-public addresses ({host})")
        allowed = list(dict.fromkeys(allowed))
        if len(self._cache) >= DNS_CACHE_SIZE:
            # Wildcard vendors let signed-in patrons name any number of subdomains: bounded.
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= DNS_CACHE_SIZE:
                self._cache.clear()
        self._cache[(host, port)] = (now + self._ttl_s, allowed)
        return allowed


def upstream_url(vendor: VendorConfig, vendor_host: str, raw_path: str) -> URL:
    """The vendor URL for a request path on a mapped host (path and query passed as received)."""
    scheme, origin_host, origin_port = vendor.origin_parts
    port = origin_port if vendor_host == origin_host else None
    netloc = vendor_host + (f":{port}" if port else "")
    if not raw_path.startswith("/"):
        raw_path = "/" + raw_path
    return URL(f"{scheme}://{netloc}{raw_path}", encoded=True)


@dataclass(frozen=True)
class Observation:
    """What one forwarded request looked like, for metrics and aggregate statistics (no patron)."""

    vendor_id: str
    method: str
    status: int
    bytes: int
    duration_s: float
    content_type: str
    path: str
    first_at_vendor: bool
    # Distinct unproxied hosts an HTML page referred to while the tracker shield was on.
    third_party_hosts: int = 0
    # Whether the browser itself fetched it to keep or show (stats.saved_by_browser), not a
    # page's player or script: a film's segments are not downloads.
    saved: bool = True


Observer = Callable[[Observation], None]
# Asked once the vendor's response head is in (request, vendor, status, Content-Type, the
# vendor's response headers): a response goes to the patron instead of the vendor's
# (proxy.services.Hooks.head_gates).
HeadCheck = Callable[
    [web.Request, VendorConfig, int, str, Mapping[str, str]],
    Awaitable[web.StreamResponse | None],
]


class Upstream:
    """Owns the pooled vendor client and forwards requests to vendors."""

    def __init__(
        self,
        config: Config,
        *,
        hosts: HostMap,
        signer: Signer,
        sessions: Sessions,
        rewriter: Rewriter | None = None,
        observe: Observer | None = None,
        check_head: HeadCheck | None = None,
        open_sockets: OpenSockets | None = None,
    ) -> None:
        self.config = config
        # The process's open WebSockets: a reload's new forwarder takes over the old one's count.
        self.open_sockets = open_sockets or OpenSockets(config.server.max_websockets)
        self.open_sockets.max_open = config.server.max_websockets
        self.hosts = hosts
        self.signer = signer
        self.sessions = sessions
        self.rewriter = rewriter
        self.observe = observe
        self.check_head = check_head
        self.vendor_origins = {v.id: v.origin for v in config.vendors}
        # The longest pause a request body read whole may make: the request holds its admission
        # slots meanwhile, so a client that stops sending must not keep them.
        self.body_idle_s = http_limits(config).header_timeout_s
        # The longest the patron may read nothing of a response waiting to be sent (the same
        # slots are held meanwhile, and the vendor's connection).
        self.patron_reads = PatronReads(http_limits(config).send_timeout_s)
        self.adapters: dict[str, VendorAdapter] = {}
        # Each vendor's Permissions-Policy, in place of its own on every page (proxy.permissions).
        self._permissions: dict[str, str] = {}
        from proxy.web.session_cookie import CSRF_COOKIE  # the web package needs this module

        scheme, self._public_host, _ = config.public
        self._secure = scheme == "https"
        self._own_cookies = frozenset({config.server.cookie_name, CSRF_COOKIE})
        self._client: VendorClient | None = None
        self._sockets: VendorSockets | None = None
        self._ssl: dict[str, ssl.SSLContext] = {}

    async def start(self) -> None:
        from proxy.vendors import make_adapter

        connect_to: dict[str, tuple[str, int]] = {}
        for v in self.config.vendors:
            if (addr := v.connect_addr) is not None:
                connect_to[v.id] = addr
            if not v.tls_verify:
                unverified = ssl.create_default_context()
                unverified.check_hostname = False
                unverified.verify_mode = ssl.CERT_NONE
                self._ssl[v.id] = unverified
            elif v.tls_ca_file:
                self._ssl[v.id] = ssl.create_default_context(cafile=v.resolve(v.tls_ca_file))
            # Otherwise none: the client verifies against the system store by default.
            self.adapters[v.id] = make_adapter(v, self)
            origins = tuple(self.hosts.mapped_origin(h) for h in v.hosts if "*" not in h)
            self._permissions[v.id] = permissions_policy(v.permissions, origins)
        # Large bodies arrive in large reads, while a slow patron holds back at most 256 KiB per
        # vendor response before reading from the vendor pauses.
        resolver = VendorResolver(connect_to, self.hosts)
        self._client = VendorClient(resolver, read_limit=256 * 1024, idle_per_host=64)
        self._sockets = VendorSockets(resolver, self.open_sockets)

    async def end_sockets(self) -> None:
        """Open WebSockets closed (1001), before a shutdown waits for requests to finish."""
        if self._sockets is not None:
            await self._sockets.end_all()

    async def close(self) -> None:
        self.patron_reads.close()
        if self._sockets is not None:
            await self._sockets.close()
        if self._client is not None:
            await self._client.close()

    @property
    def client(self) -> VendorClient:
        assert self._client is not None, "Upstream.start() not awaited"
        return self._client

    async def send(
        self,
        vendor: VendorConfig,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        data: Any = None,
    ) -> VendorResponse:
        """One request to a vendor, errors turned into VendorTimeout / VendorUnavailable."""
        s = self.config.server
        with vendor_failures(vendor.id):
            return await self.client.request(
                method,
                url,
                headers,
                data,
                ssl_context=self._ssl.get(vendor.id),
                connect_timeout=s.upstream_connect_timeout_s,
                read_timeout=vendor.timeout_s or s.upstream_timeout_s,
            )

    async def _request_body(
        self, request: web.Request, out_headers: CIMultiDict[str], vendor: VendorConfig
    ) -> Any:
        if not request.body_exists:
            return None
        content_type = request.headers.get("Content-Type", "")
        limit = vendor.limits.max_upload_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
        rewriter = self.rewriter
        if _coded(request):
            # aiohttp's server has decoded the body, and the allowlist drops Content-Encoding:
            # what reaches the vendor is the decoded body, so the limit holds for it and its
            # own length is sent (the patron's Content-Length counts the coded bytes).
            body = await _read_bounded(request.content, limit, self.body_idle_s)
            if rewriter is not None and len(body) <= MAX_UNMAP_BODY:
                body = rewriter.unmap_body(body, content_type)
            out_headers["Content-Length"] = str(len(body))
            return body
        if (
            rewriter is None
            or length is None
            or length > MAX_UNMAP_BODY
            or not rewriter.unmaps_body(content_type)
        ):
            return _Paced(request.content, self.body_idle_s)
        # Small form and JSON bodies are read whole (they arrive in as many pieces as the
        # network makes of them) so mapped URLs in them can be mapped back (Rewriter.unmap_body).
        body = rewriter.unmap_body(
            await _read_whole(request.content, length, self.body_idle_s), content_type
        )
        out_headers["Content-Length"] = str(len(body))
        return body

    def _outbound_url(self, request: web.Request, vendor: VendorConfig, vendor_host: str) -> URL:
        raw_path = request.raw_path
        if self.rewriter is not None and "?" in raw_path:
            path, _, query = raw_path.partition("?")
            raw_path = path + "?" + self.rewriter.unmap_url(query)
        return upstream_url(vendor, vendor_host, raw_path)

    async def forward(
        self, request: web.Request, vendor: VendorConfig, vendor_host: str, session: Session
    ) -> web.StreamResponse:
        if wants_websocket(request):
            return await self._open_socket(request, vendor, vendor_host, session)
        started = time.monotonic()
        url = self._outbound_url(request, vendor, vendor_host)
        headers = outbound_headers(
            request.headers, hosts=self.hosts, vendor_origins=self.vendor_origins
        )
        open_validators(headers, session.id)
        data = await self._request_body(request, headers, vendor)
        # This request's copy says whether the session has been to the vendor; of a page's
        # requests that each found it had not, the one whose write adds it counts (below).
        first_at_vendor = vendor.id not in session.state.get("seen", [])
        if first_at_vendor:
            session.state.setdefault("seen", []).append(vendor.id)
        adapter = self.adapters[vendor.id]
        out = Outbound(
            vendor=vendor, session=session, method=request.method, url=url, headers=headers
        )
        # A host new to the session is noted with the rest of this request's write, for
        # sign-out to clear from the browser (Sessions.save_vendor).
        new_host = vendor_host not in session.hosts and len(session.hosts) < MAX_NOTED_HOSTS
        # Every session starts clean on every host: its first *page* there carries
        # Clear-Site-Data, whatever reached the host before it (an image of another page).
        cleared = session.state.get(CLEARED)
        if cleared is None:  # a session begun by an older version: cleared as that code did
            forget = new_host and _navigation(request)
        else:
            forget = (
                vendor_host not in cleared
                and len(cleared) < MAX_NOTED_HOSTS
                and _navigation(request)
            )
        out.session_changed = first_at_vendor or new_host or forget
        # The jar as this request found it: what the request changes from it is what it stores.
        before = list(session.jars.get(vendor.id, []))
        try:
            resp = await self._send_with_jar(out, data)
        except ProxyError:
            if isinstance(data, _Paced) and data.stalled:
                # The patron's upload stopped, not the vendor: no vendor failure to report.
                raise web.HTTPRequestTimeout(text="The request body stopped arriving.") from None
            raise
        try:  # whatever fails from here (the vendor, the store, the patron leaving), resp is let go
            head = b""
            # Sent again after a renewal only when it can be sent whole: without a body, or
            # one read whole (a streamed upload is gone; its answer goes to the patron as it is).
            if request.method in IDEMPOTENT and (data is None or isinstance(data, bytes)):
                with vendor_failures(vendor.id):
                    peek = adapter.expiry_peek_bytes()
                    head = await _peek(resp, peek)
                start = _decoded(resp, head, peek)
                if await adapter.vendor_session_expired(out, resp.status, start):
                    resp.release()
                    await adapter.renew(out)
                    resp = await self._send_with_jar(out, data)
                    head = b""
            if (
                resp.status == 206
                and self._ranges_rewritten(resp, vendor.id)
                and (request.method in IDEMPOTENT and (data is None or isinstance(data, bytes)))
            ):
                # A rewritten body is longer or shorter than the vendor's, so a range of the
                # vendor's bytes has no place in it: the whole body is asked for instead, and a
                # 200 answers the Range request (RFC 9110 §14.2 lets a server ignore Range).
                resp.release()
                out.headers.popall("Range", None)
                out.headers.popall("If-Range", None)
                resp = await self._send_with_jar(out, data)
                head = b""
            if out.session_changed:
                added = await self.sessions.save_vendor(
                    session,
                    vendor.id,
                    before,
                    vendor_host if new_host else None,
                    cleared=vendor_host if forget else None,
                )
                first_at_vendor = first_at_vendor and "seen" in added
            return await self._relay(
                request, resp, vendor, out, started, first_at_vendor, head, forget=forget
            )
        finally:
            resp.release()

    async def _open_socket(
        self, request: web.Request, vendor: VendorConfig, vendor_host: str, session: Session
    ) -> web.StreamResponse:
        """The vendor's side of a WebSocket, opened with the request scrubbed and authorized as
        any other; the patron's side is answered by `SocketRelay.relay` (proxy/websocket.py),
        once the admission slot is let go."""
        assert self._sockets is not None, "Upstream.start() not awaited"
        started = time.monotonic()
        if not web.WebSocketResponse().can_prepare(request).ok:
            raise web.HTTPBadRequest(text="This is not a WebSocket handshake.")
        headers = outbound_headers(
            request.headers, hosts=self.hosts, vendor_origins=self.vendor_origins
        )
        url = self._outbound_url(request, vendor, vendor_host)
        out = Outbound(vendor=vendor, session=session, method="GET", url=url, headers=headers)
        before = list(session.jars.get(vendor.id, []))
        site = await self.authorized(out)
        if out.session_changed:
            # A shared login made for this handshake: its cookies are kept for the pages to come,
            # as a page's request keeps them (one login per session, not one per request).
            await self.sessions.save_vendor(session, vendor.id, before)
            out.session_changed = False
            before = list(session.jars.get(vendor.id, []))
        s = self.config.server
        self.open_sockets.reserve(vendor.id, session.id)
        try:
            vendor_ws, set_cookies = await self._sockets.connect(
                out,
                offered_protocols(request),
                ssl_context=self._ssl.get(vendor.id),
                timeout_s=s.upstream_connect_timeout_s + (vendor.timeout_s or s.upstream_timeout_s),
            )
        except (aiohttp.WSServerHandshakeError, Redirected) as exc:
            self.open_sockets.release(session.id)
            if 400 <= exc.status <= 599:
                # The vendor refused (403, 404, 503 ...): its answer, for the page's script.
                self._observe(vendor, out, exc.status, 0, started, "", False)
                return web.Response(status=exc.status, text="The database refused the connection.")
            # Anything else (a page, a redirect) is no socket: the vendor failed to give one.
            raise VendorUnavailable(vendor.id) from NotASocket(exc.status)
        except BaseException:
            self.open_sockets.release(session.id)
            raise
        self._keep_cookies(out, site, set_cookies)
        if out.session_changed:
            # Cookies on the 101 answer are kept as from any answer (browsers do).
            try:
                await self.sessions.save_vendor(session, vendor.id, before)
            except BaseException:
                self.open_sockets.release(session.id)
                with contextlib.suppress(Exception):
                    await vendor_ws.close()
                raise
        self._observe(vendor, out, 101, 0, started, "", False)
        return SocketRelay(vendor_ws, vendor, session, self._sockets, owner=self)

    async def authorized(self, out: Outbound) -> str | None:
        """`out` as it leaves: what the vendor's adapter adds, and the Cookie header from the
        session's jar as SameSite allows. Returns the site decision when one was taken (SAME,
        CROSS or UNSURE; None when the jar was empty and it was not asked)."""
        adapter = self.adapters[out.vendor.id]
        out.headers.popall("Cookie", None)
        # Authorize first: a shared login puts its cookies in the jar, and they must go on this
        # very request (and not be overwritten by a jar loaded before the login).
        await adapter.authorize(out)
        stored_jar = out.session.jars.get(out.vendor.id)
        initiator = getattr(out.headers, "initiator", None)
        site: str | None = None  # asked only when there are cookies to send or to store
        if stored_jar:  # an empty jar sends nothing; building an http.cookiejar costs per request
            site = SAME if initiator is None else self._site(initiator, out.url.host or "")
            if site == CROSS and initiator is not None:
                top_level = initiator.top_level
                stored_jar = cross_site_cookies(stored_jar, method=out.method, top_level=top_level)
            elif site == UNSURE:
                stored_jar = [d for d in stored_jar if d.get("samesite") != "strict"]
            cookie = cookie_header(load_jar(stored_jar), str(out.url))
            if cookie:
                out.headers["Cookie"] = cookie
        return site

    async def _send_with_jar(self, out: Outbound, data: Any) -> VendorResponse:
        site = await self.authorized(out)
        resp = await self.send(out.vendor, out.method, out.url, out.headers, data)
        self._keep_cookies(out, site, resp.headers.getall("Set-Cookie", []))
        return resp

    def _keep_cookies(self, out: Outbound, site: str | None, set_cookies: list[str]) -> None:
        """The vendor's Set-Cookie headers for `out` into this request's copy of the jar, as a
        browser would store them (a cross-site answer that is no top-level navigation: only
        SameSite=None); `Sessions.save_vendor` then stores only the cookies this request
        changed onto the jar as stored by then (requests overlap)."""
        initiator = getattr(out.headers, "initiator", None)
        if set_cookies and initiator is not None and not initiator.top_level:
            if site is None:
                site = self._site(initiator, out.url.host or "")
            if site == CROSS:
                set_cookies = storable_cross_site(set_cookies)
        if set_cookies:
            jar = load_jar(out.session.jars.get(out.vendor.id, []))
            if store_set_cookies(jar, str(out.url), set_cookies):
                out.session.jars[out.vendor.id] = dump_jar(jar)
                out.session_changed = True

    def _site(self, initiator: Initiator, vendor_host: str) -> str:
        """CROSS when the browser, without the proxy, would have taken this request for a
        cross-site one (and held back SameSite cookies): the page that started it, mapped back
        to the vendor URL it stands for, is on another registrable domain than `vendor_host`.
        SAME otherwise; UNSURE when nothing tells (below).

        The browser's own answer (`Sec-Fetch-Site`) only helps when it is "same-origin" (the same
        mapped host, so the same vendor host) or "none" (typed, a bookmark): all vendors and the
        proxy are one site to it. The proxy's own pages (the menu) count as same-site, and so
        does a top-level navigation with neither Origin nor Referer (the menu's links, a typed
        address). What a site outside the proxy asked for is cross-site, as is an opaque Origin
        ("null") the browser does not place. A sub-resource, frame or form post one of the
        proxy's hosts asked for without naming itself ("same-site", no Referer, Origin absent or
        "null": a page with `Referrer-Policy: no-referrer` or `same-origin`, helmet's default)
        is UNSURE: it may be the vendor's own page on a sibling host (its images host, a form
        to its sign-on host), which gets its Lax cookies without the proxy, or another vendor's
        page hiding on purpose; it gets all but the Strict ones.
        """
        if initiator.fetch_site in ("same-origin", "none"):
            return SAME
        origin = initiator.origin if initiator.origin != "null" else None
        source = origin or initiator.referer
        if not source:
            hidden = initiator.fetch_site == "same-site"  # one of the proxy's pages (below)
            if initiator.origin == "null":
                return UNSURE if hidden else CROSS
            if initiator.top_level:
                return SAME
            if hidden:
                return UNSURE
            return CROSS if initiator.fetch_site == "cross-site" else SAME
        own, host = initiator_host(source, self.hosts)
        if own:
            return SAME
        return CROSS if host is None or not same_site(host, vendor_host) else SAME

    def _ranges_rewritten(self, resp: VendorResponse, vendor_id: str) -> bool:
        """Whether a 206 answer's body is one the rewriter would change (asked only of a 206)."""
        # An untyped 206 is left alone (a download server's ranges); should the browser sniff it
        # as a page, `_body_decoder` refuses it.
        if self.rewriter is None:
            return False
        ctype = resp.content_type
        masked = self.adapters[vendor_id].secret_spellings
        return should_rewrite(ctype) or bool(masked and masks_only(ctype))

    def _body_decoder(
        self,
        resp: VendorResponse,
        ctype: str,
        headers: CIMultiDict[str],
        vendor_id: str,
        masked: tuple[str, ...] = (),
    ) -> BodyDecoder | None:
        """The decoder for a body of type `ctype` the rewriter will change, with the headers made
        to match it.

        Decided on the type alone, so HEAD and 304 carry the same headers a GET would: no
        Content-Length or Content-Encoding of the vendor's bytes, no digest of them, a weak
        ETag, and no byte ranges offered (a range of the vendor's bytes would be spliced onto
        rewritten ones). A body in a coding the proxy cannot undo, or a partial one, is refused
        (a 502 page): passed on, a browser would show it with the vendor's links live (P3).
        """
        if not should_rewrite(ctype) and not (masked and masks_only(ctype)):
            return None
        try:
            decoder = decoder_for(resp.headers.get("Content-Encoding"))
        except UnsupportedEncoding as exc:
            raise VendorUnavailable(vendor_id) from exc
        if resp.status == 206 and not _whole_range(resp.headers.get("Content-Range")):
            # A part forward() could not ask again whole (not idempotent, or still a part).
            raise VendorUnavailable(vendor_id) from PartialRewrite()
        for name in ("Content-Length", "Content-Encoding", *_DIGEST_HEADERS, "Content-Range"):
            headers.popall(name, None)
        headers["Accept-Ranges"] = "none"
        # The body differs from the vendor's, so a strong validator would lie: the ETag goes out
        # weak (`proxy.validators.seal`, told by `_relay`).
        return decoder

    async def _relay(
        self,
        request: web.Request,
        resp: VendorResponse,
        vendor: VendorConfig,
        out: Outbound,
        started: float,
        first_at_vendor: bool,
        head: bytes = b"",
        *,
        forget: bool = False,
    ) -> web.StreamResponse:
        """Streams the vendor's response to the patron; `head` is body already read from `resp`.
        With `forget`, the browser is asked to drop what it keeps for this host first."""
        ctype = resp.content_type
        has_body = request.method != "HEAD" and resp.status not in (204, 304)
        untyped = "Content-Type" not in resp.headers
        unknown = untyped or unknown_type(media_type(ctype))
        # A body labelled plain text, binary (S3's default) or nothing is told by its first
        # bytes, as players and viewers tell it: an HLS playlist is rewritten as one (below),
        # a PDF counted as one by the usage limits, whoever fetches it.
        first = b""
        if (
            has_body
            and resp.status in (200, 206)
            and (unknown or media_type(ctype) in _SCRIPT_SUSPECTS)
        ):
            with vendor_failures(vendor.id):
                # A binary body is a download, not a stream: its first bytes are waited for as
                # long as the vendor may take; text (a progress stream, a long poll) not.
                binary = media_type(ctype) in _BINARY_TYPES
                head = await _read_decoded(resp, head, len(_PLAYLIST), patient=binary)
            first = _decoded(resp, head, 16).removeprefix(b"\xef\xbb\xbf")
        # Counted as a PDF, by the limits and the statistics: a body that starts as one, or a
        # range of one from its first few bytes (`bytes=1-` leaves out the `%`).
        pdf = bool(first) and (
            first.startswith(_PDF) or first.startswith(_PDF[_range_start(resp) :] or b"\0")
        )
        if self.check_head is not None:
            counted_as = _PDF_TYPE if pdf else ctype
            refusal = await self.check_head(request, vendor, resp.status, counted_as, resp.headers)
            if refusal is not None:
                return refusal  # the vendor's response is let go unread by forward()
        headers = response_headers(resp.headers.items())
        if resp.status == 401:
            no_password_prompt(headers)
        if len(headers.getall("Content-Type", ())) > 1:
            # The browser is sent the one type the proxy judged the body by.
            headers.popall("Content-Type")
            headers["Content-Type"] = ctype
        if unknown and has_body:
            # A browser sniffs an untyped body, or one typed "unknown" (WHATWG MIME Sniffing);
            # an HTML or XML document it would render is typed, rewritten and shielded as one.
            # Anything else goes on as the vendor sent it, for the browser to sniff.
            with vendor_failures(vendor.id):
                head = await _sniff_head(resp, head)
            sniffed = sniff_document(_decoded(resp, head, SNIFF_BYTES))
            if sniffed is not None:
                ctype = headers["Content-Type"] = sniffed
                untyped = False
        if resp.status == 200 and first.startswith(_PLAYLIST):
            # An HLS playlist a CDN labelled otherwise, which players read whatever the label:
            # rewritten as one, or its segments and keys stay on the vendor's hosts (the shield
            # stops them; without it they load from the patron's address).
            ctype = headers["Content-Type"] = _PLAYLIST_TYPE
            untyped = False
        if shielded(media_type(ctype)) or unknown:
            # A page, or what the browser may take for one: the features it may use are the
            # proxy's to say, not the vendor's.
            headers.popall("Permissions-Policy", None)
            headers.popall("Feature-Policy", None)
            headers["Permissions-Policy"] = self._permissions[vendor.id]
        if resp.status == 304 or _kept(media_type(ctype), request):
            session_cache(headers)
        else:
            _document_cache(headers)
        if forget:
            # This session's first page on the host: what earlier sessions' pages stored in the
            # browser there (local storage, an ID a script kept, cached responses) is dropped
            # before this page runs, so no session finds another's, and a vendor script cannot
            # link two sessions by what it left behind (P4).
            headers["Clear-Site-Data"] = FORGET_WHAT
        cookies = request.headers.get("Cookie")
        if cookies is not None and _navigation(request):
            # A page load: cookies another vendor's script wrote for the proxy's own domain are
            # deleted before this page's scripts can read them; on the session's first page here
            # (`forget`), every script cookie the browser still holds for this host too, as the
            # forget address deletes them at sign-out (a session that ended without one left
            # them): a new session starts clean (proxy.page_cookies).
            here = request.host.rpartition(":")[0] or request.host
            for line in shared_cookie_deletions(
                cookies,
                here.lower(),
                self._public_host,
                self._own_cookies,
                self._secure,
                host_too=forget,
            ):
                headers.add("Set-Cookie", line)
        rewriter = self.rewriter
        decoder: BodyDecoder | None = None
        third_party: _ThirdPartyCount | None = None
        # The type the body is rewritten as: its own, or a script's when the browser asked for one.
        rtype = ctype
        if rewriter is not None and media_type(ctype) in _SCRIPT_SUSPECTS:
            # One URL, two answers (rewritten for a <script>, not for a fetch()): a cache must
            # not give the one for the other, or a script would run with the vendor's URLs.
            _add_vary(headers, "Sec-Fetch-Dest")
            if request.headers.get("Sec-Fetch-Dest") == "script":
                rtype = _SCRIPT_TYPE
        # The library's own credential, where a shared-login vendor echoes it (empty otherwise).
        masked = self.adapters[vendor.id].secret_spellings
        if rewriter is not None:
            rewrite_response_headers(rewriter, headers)
            decoder = self._body_decoder(resp, rtype, headers, vendor.id, masked)
            mt = media_type(ctype)
            csp = None
            # A worker runs under the policy of its own script's response, not the page's: a
            # worker or shared worker script gets the shield too, or its fetch() and
            # importScripts() reach third parties from the patron's address. Every script does,
            # whoever asks (a <script> ignores it), so the answer a browser caches for a page's
            # <script> is also shielded when a worker is started from it. A service worker's
            # script is refused before it gets here (`proxy.service_workers`): the shield on its
            # script did not reach the responses it makes itself, nor stop its cache outliving
            # the session.
            worker = (
                mt in JAVASCRIPT_TYPES or request.headers.get("Sec-Fetch-Dest") in _WORKER_DESTS
            )
            if shielded(mt) or unknown or worker:  # whatever the browser makes of it
                csp = rewriter.shield_csp(vendor.id, vendor.third_party == "allow")
            if csp:
                headers.add("Content-Security-Policy", csp)
                # Counted on HTML, whose attributes the count reads.
                if decoder is not None and has_body and mt in HTML_TYPES:
                    third_party = _ThirdPartyCount(rewriter)

        if masked:
            _mask_headers(headers, masked)
        seal_validators(
            headers,
            out.session.id,
            rewritten=decoder is not None,
            asked=request.headers.get("If-None-Match") if resp.status == 304 else None,
        )
        stream = None
        if rewriter is not None and decoder is not None and has_body:
            stream = rewriter.stream(vendor.id, rtype, resp.charset, masked=masked)
        kind = _UntypedResponse if untyped else web.StreamResponse
        status, reason = resp.status, resp.reason
        if masked and reason:
            reason = mask_text(reason, masked)
        if status == 206 and decoder is not None:
            # All of the body in one range (`_body_decoder` refuses any other): a whole body,
            # rewritten, goes out as the 200 it now is.
            status, reason = 200, "OK"
        response = kind(status=status, reason=reason, headers=headers)
        if stream is None and "Content-Length" in headers and has_body:
            response.content_length = int(headers["Content-Length"])
        await response.prepare(request)
        sent = 0
        patron = self.patron_reads.watch(response, request.transport, vendor.id)
        # A download may outlast the idle timeout: the session is in use all along (`in_use`
        # writes only past `touch_every_s`, so an ordinary response adds no store write).
        every = self.sessions.touch_every_s
        touch_at = started + every
        try:
            async for chunk in _body(head, resp):
                if time.monotonic() >= touch_at:
                    await self.sessions.in_use(out.session)
                    touch_at = time.monotonic() + every
                if stream is None or decoder is None:
                    sent += await patron.write(chunk)
                    continue
                more = False
                for piece in decoder.feed(chunk):
                    if more:
                        # A small coded read can decode to any number of pieces (a gzip
                        # bomb): each after the first gives the other requests a turn.
                        await asyncio.sleep(0)
                    more = True
                    if third_party is not None:
                        third_party.feed(piece)
                    sent += await patron.write(stream.feed(piece))
            if stream is not None and decoder is not None:
                for piece in decoder.finish():
                    await asyncio.sleep(0)
                    if third_party is not None:
                        third_party.feed(piece)
                    sent += await patron.write(stream.feed(piece))
                sent += await patron.write(stream.finish())
            await response.write_eof()
            if time.monotonic() >= touch_at:
                await self.sessions.in_use(out.session)  # the end of a long one is a use too
        except (aiohttp.ClientError, OSError, TimeoutError, ProxyError) as exc:
            # Headers are gone already; the only honest signal left is a broken connection.
            outcome = "corrupt_body" if isinstance(exc, CorruptBody) else "broken"
            log.warning("relay_broken", vendor=vendor.id, outcome=outcome, bytes=sent)
            status = 502
            if request.transport is not None:
                request.transport.close()
            self._observe(
                vendor,
                out,
                status,
                sent,
                started,
                ctype,
                first_at_vendor,
                saved=saved(request, resp),
            )
            return response
        finally:
            patron.done()
        hosts = 0
        if third_party is not None:
            hosts = third_party.finish()
        self._observe(
            vendor,
            out,
            status,
            sent,
            started,
            _PDF_TYPE if pdf else ctype,
            first_at_vendor,
            hosts,
            saved(request, resp),
        )
        return response

    def _observe(
        self,
        vendor: VendorConfig,
        out: Outbound,
        status: int,
        sent: int,
        started: float,
        ctype: str,
        first: bool,
        third_party_hosts: int = 0,
        saved: bool = True,
    ) -> None:
        if self.observe is None:
            return
        duration = time.monotonic() - started
        try:
            self.observe(
                Observation(
                    vendor.id,
                    out.method,
                    status,
                    sent,
                    duration,
                    ctype,
                    out.url.path,
                    first,
                    third_party_hosts=third_party_hosts,
                    saved=saved,
                )
            )
        except Exception as exc:
            # The patron has the response already; a failing counter must not turn it into an error.
            log.error("observer_failed", vendor=vendor.id, exc_type=type(exc).__name__)


class PartialRewrite(ProxyError):
    """A 206 answer's body would have to be rewritten: its Content-Range could not be true."""

    why = "partial_rewritten_body"  # for IT staff (errors.failure_kind)


def _add_vary(headers: CIMultiDict[str], name: str) -> None:
    """`name` added to the response's Vary (one field, as the vendor's values were)."""
    values = [v.strip() for field in headers.popall("Vary", []) for v in field.split(",")]
    values = [v for v in values if v]
    if "*" not in values and name.lower() not in (v.lower() for v in values):
        values.append(name)
    headers["Vary"] = ", ".join(values)


def content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """A 206's Content-Range as (first, last, total), total None when unknown (`bytes 0-9/*`);
    None when it is no byte range as one is written: another unit, a number missing or with a
    leading zero, the last byte before the first."""
    unit, _, spec = (value or "").strip().partition(" ")
    span, _, total = spec.strip().partition("/")
    first, _, last = span.partition("-")
    if unit.lower() != "bytes" or not (_number(first) and _number(last)):
        return None
    if int(last) < int(first) or not (total == "*" or _number(total)):
        return None
    return int(first), int(last), None if total == "*" else int(total)


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))


def _whole_range(value: str | None) -> bool:
    """Whether a 206's Content-Range holds the whole representation (`bytes 0-970/971`)."""
    span = content_range(value)
    return span is not None and span[0] == 0 and span[2] is not None and span[1] + 1 == span[2]


def saved(request: web.Request, resp: VendorResponse) -> bool:
    """`stats.saved_by_browser` for this request and the vendor's answer to it."""
    return saved_by_browser(
        request.headers.get("Sec-Fetch-Mode"), resp.headers.get("Content-Disposition")
    )


def _navigation(request: web.Request) -> bool:
    """A request for a page (a top-level or framed document), as fetch metadata says; without
    it (older browsers), a GET that accepts HTML."""
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode is not None:
        return mode == "navigate"
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


async def _peek(resp: VendorResponse, limit: int) -> bytes:
    """Up to `limit` bytes of a text response's body (still encoded), for the adapter's expiry
    check (shared-login `expired_text`). Only text is peeked, so downloads stream from byte one."""
    if limit <= 0 or not resp.content_type.lower().startswith(
        ("text/", "application/json", "application/xhtml")
    ):
        return b""
    return await resp.content.read_up_to(limit)


class _Paced:
    """A streamed request body that may pause at most `idle_s` between pieces: the request
    holds its admission slots while it is sent, and a client that stops sending must not keep
    them. Whether it stopped is kept, so the failed exchange is not taken for the vendor's."""

    def __init__(self, content: StreamReader, idle_s: float) -> None:
        self.content = content
        self.idle_s = idle_s
        self.stalled = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(self.idle_s):
                    piece = await self.content.readany()
            except TimeoutError:
                self.stalled = True
                raise
            if not piece:
                return
            yield piece


# The request Content-Encodings aiohttp's server decodes before the body is read (its
# http_parser takes the header's whole value, in any case, as one of these); zstd only with a
# zstd module installed (without, aiohttp answers 400 itself).
_DECODED_BY_SERVER = frozenset({"gzip", "deflate", "br"} | ({"zstd"} if HAS_ZSTD else set()))


def _coded(request: web.Request) -> bool:
    """Whether the request body had a Content-Encoding that aiohttp's server has decoded. Any
    other coding is refused (415): the vendor would get coded bytes with no word of their
    coding, since the allowlist drops the header."""
    coding = request.headers.get("Content-Encoding", "")
    coding = coding.lower() if coding.isascii() else coding
    if coding in ("", "identity"):
        return False
    if coding not in _DECODED_BY_SERVER:
        raise web.HTTPUnsupportedMediaType(text="The request body's Content-Encoding is not read.")
    return True


async def _read_bounded(content: StreamReader, limit: int, idle_s: float) -> bytes:
    """A decoded request body read whole, refused (413) as soon as it passes `limit` bytes:
    before any of it is sent; 408 when `idle_s` pass without a byte."""
    pieces: list[bytes] = []
    size = 0
    try:
        async for piece in _Paced(content, idle_s):
            size += len(piece)
            if size > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
            pieces.append(piece)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="The request body stopped arriving.") from None
    except web.RequestPayloadError:
        # Not in the coding it names (aiohttp's server could not decode it): the client's fault.
        raise web.HTTPBadRequest(text="The request body is not in its Content-Encoding.") from None
    return b"".join(pieces)


async def _read_whole(content: StreamReader, length: int, idle_s: float) -> bytes:
    """A request body of `length` bytes (at most MAX_UNMAP_BODY), read as `_Paced` reads a
    streamed one; 408 when `idle_s` pass without a byte, 400 when it ends early."""
    try:
        body = b"".join([piece async for piece in _Paced(content, idle_s)])
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="The request body stopped arriving.") from None
    if len(body) < length:
        raise web.HTTPBadRequest(text="The request body ended early.")
    return body


def _range_start(resp: VendorResponse) -> int:
    """The first byte of a 206's range (0 for any other answer, or one that does not say)."""
    if resp.status != 206:
        return 0
    span = content_range(resp.headers.get("Content-Range"))
    return span[0] if span is not None else 0


async def _read_decoded(
    resp: VendorResponse, head: bytes, n: int, *, patient: bool = False
) -> bytes:
    """`head` and more of the body until it decodes (its Content-Encoding undone) to `n` bytes,
    or the body ends, or MAX_PEEK coded bytes have come (a compressed body's first bytes are
    its coding's header; a piece may take it past MAX_PEEK), or nothing more has come for
    PEEK_WAIT_S: a stream that sends a short first message and then waits (progress, a
    long-poll's acknowledgement) is not held back, it is only not taken for a playlist or a
    PDF. What has arrived is read at once (no timer: the usual case on the hot path); with
    `patient` (a binary body), more is waited for as long as the vendor's own timeout allows."""
    while len(head) < MAX_PEEK and len(_decoded(resp, head, n)) < n:
        # What has arrived, as `_body` would read it: the body still goes out in as few
        # writes as before (a short peek split every response's first write in two).
        if patient or resp.content.ready():
            piece = await resp.content.read(BODY_READ)
        else:
            try:
                async with asyncio.timeout(PEEK_WAIT_S):  # not wait_for (tests/test_tasks.py)
                    piece = await resp.content.read(BODY_READ)
            except TimeoutError:
                break
        if not piece:
            break
        head += piece
    return head


async def _sniff_head(resp: VendorResponse, head: bytes) -> bytes:
    """`head` and more of the body, until what a browser sniffs from it is decided (or the body
    ends): at most SNIFF_BYTES, usually the first piece that arrives."""
    while len(head) < SNIFF_BYTES and not sniff_decided(_decoded(resp, head, SNIFF_BYTES)):
        piece = await resp.content.read(SNIFF_BYTES - len(head))
        if not piece:
            break
        head += piece
    return head


class _UntypedResponse(web.StreamResponse):
    """A response sent on without a Content-Type, as the vendor sent it.

    aiohttp gives any response with a body `application/octet-stream` when it has no type, and a
    browser then offers the page as a download instead of sniffing it. It has no option against
    that, so the header is taken out again right after aiohttp prepares the headers and before
    they are written (tests/test_vendor_content.py checks this still holds)."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall("Content-Type", None)


def _decoded(resp: VendorResponse, head: bytes, limit: int) -> bytes:
    """At most `limit` bytes of the peeked bytes with the Content-Encoding undone (best effort:
    raw when it cannot be). Bounded: a few hundred coded bytes can decode to gigabytes."""
    if not head:
        return head
    try:
        return decode_prefix(resp.headers.get("Content-Encoding"), head, limit)
    except (UnsupportedEncoding, CorruptBody, ValueError):
        return head


# What the browser may keep (`private, no-cache`, its validators sealed for the session): a
# site's furniture that its pages load, scripts, styles and fonts. Everything else is the
# patron's reading or searching (pages; plain text; JSON or XML results a page fetches, with the
# search in their address; PDFs and e-books; images, which are the scanned pages of a newspaper
# or the covers in a list of results; audio and video) and is never kept (`_document_cache`).
_KEPT_TYPES = frozenset(
    {
        "text/css",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/ecmascript",
        "application/wasm",
        "application/font-woff",
        "application/font-woff2",
        "application/font-sfnt",
        "application/x-font-woff",
        "application/x-font-ttf",
        "application/x-font-otf",
        "application/x-font-opentype",
        "application/vnd.ms-fontobject",
    }
)
# The request destinations (Sec-Fetch-Dest) of a script, style or font a page loads. Any other
# is data or a page, whatever the type says: results a page fetch()es that a vendor labels
# `text/javascript` (as older database APIs do), a stylesheet opened as a page.
_KEPT_DESTS = frozenset(
    {"script", "style", "font", "worker", "sharedworker", "audioworklet", "paintworklet"}
)


def _kept(mt: str, request: web.Request) -> bool:
    """Whether the browser may keep this answer: a script, style or font a page loads."""
    dest = request.headers.get("Sec-Fetch-Dest")
    if dest is not None and dest.lower() not in _KEPT_DESTS:
        return False
    return mt in _KEPT_TYPES or mt.startswith("font/")


def _document_cache(headers: CIMultiDict[str]) -> None:
    """What the patron read or searched is never kept by the browser (`private, no-store`),
    whatever the vendor allowed: every answer but the scripts, styles and fonts of `_kept`.

    A page, the results a page fetches, an article in plain text or PDF are the patron's own
    (their search, their reading). Once the session has ended (expired, or the browser closed on
    a shared computer, with no sign-out to clear it) the next person must not be shown them from
    the cache, nor by pressing Back, nor find them in the browser's disk cache: `no-cache` made
    the browser ask the proxy for a typed or bookmarked address, but history navigation showed
    the stored page without asking, and every stored answer stays on disk after the browser is
    closed (a review of the branch's public computers found an article and a search's results
    there). A shared cache in front of the proxy must never hand one to another patron either.
    Scripts, styles and fonts keep the vendor's caching, made private to the session
    (`proxy.validators.session_cache`); so does a 304, which answers the revalidation of one."""
    headers["Cache-Control"] = "private, no-store"
    headers.popall("Expires", None)


async def _body(head: bytes, resp: VendorResponse) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in resp.content.iter_chunked(BODY_READ):
        yield chunk


class _ThirdPartyCount:
    """Distinct third-party hosts in one HTML body, seen piece by piece in bounded memory.

    Each scan stops after the last `>` so a tag split between pieces is scanned whole with the
    next piece; text with no `>` for MAX_SCAN_CARRY bytes is scanned as it is (a count, not a proof).
    """

    def __init__(self, rewriter: Rewriter) -> None:
        self._rewriter = rewriter
        self._hosts: set[str] = set()
        self._carry = b""

    def feed(self, piece: bytes) -> None:
        data = self._carry + piece
        cut = data.rfind(b">") + 1
        if cut == 0 and len(data) > MAX_SCAN_CARRY:
            cut = len(data)
        self._scan(data[:cut])
        self._carry = data[cut:]

    def finish(self) -> int:
        self._scan(self._carry)
        self._carry = b""
        return len(self._hosts)

    def _scan(self, data: bytes) -> None:
        if data and len(self._hosts) < MAX_THIRD_PARTY:
            self._hosts |= self._rewriter.third_party_hosts(data)


# Response headers that name URLs, and the Rewriter method that maps each.
_URL_HEADERS = (
    ("Location", "rewrite_location"),
    ("Content-Location", "rewrite_location"),
    ("Refresh", "rewrite_refresh"),
    ("Link", "rewrite_link"),
    ("Content-Security-Policy", "rewrite_csp"),
    ("Content-Security-Policy-Report-Only", "rewrite_csp"),
    ("Access-Control-Allow-Origin", "rewrite_acao"),
)


def _mask_headers(headers: CIMultiDict[str], masked: tuple[str, ...]) -> None:
    """Every header value with the library's credential (`masked`) replaced by its mask, each
    header kept in its place and every repeat of it kept."""
    shown = [(name, mask_text(value, masked)) for name, value in headers.items()]
    if any(new != old for (_, new), old in zip(shown, headers.values(), strict=True)):
        headers.clear()
        headers.extend(shown)


def rewrite_response_headers(rewriter: Rewriter, headers: CIMultiDict[str]) -> None:
    for name, method in _URL_HEADERS:
        if name in headers:
            rewrite: Callable[[str], str] = getattr(rewriter, method)
            for value in headers.popall(name):
                headers.add(name, rewrite(value))
