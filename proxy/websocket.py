"""WebSockets to vendors: the handshake is a proxied request like any other, then messages are
relayed both ways as they are.

The patron's `Upgrade: websocket` request on a mapped host passes the same gates as a page
(session, eligibility, usage limits, admission) and leaves with what `proxy.privacy` allows:
Origin mapped back to the vendor's, the vendor's adapter's assertion, the jar's cookies as
SameSite allows, nothing else (no proxy cookie, no patron address). aiohttp speaks the protocol
on both sides (the handshake, masking, ping/pong, fragments, permessage-deflate); this module
only decides what is let through and when a socket must end:

- the session ends (sign-out on any instance, expiry, suspension) or a reload removes the
  database: the socket closes within `server.websocket_check_s`, with 1008 (policy
  violation). Messages do not keep a session alive: a page left open on a shared computer
  still times out;
- the store cannot be asked: closed with 1011, as a request would get the "store" page;
- `server.max_websockets` are open (or opening) in this process: the next is refused (503);
  one session has MAX_PER_SESSION: its next is refused (429);
- the vendor does not answer the handshake in time (504), refuses it (its status), or answers
  with a page or a redirect (502, a vendor failure: a redirect is never followed, since its
  host would get this vendor's assertion and cookies with no gate asked);
- either side closes: the other is closed with the same code and reason; the proxy stopping
  closes both with 1001.

Messages are not rewritten: a vendor's socket protocol is its own, and mapped URLs in it are the
proxy's public ones. The admission slot is held for the handshake only (an open socket would
otherwise hold one of the vendor's few slots for hours). Cookies a vendor sets on its 101 answer
are not kept (aiohttp's WebSocket client keeps the response to itself); vendors set theirs on
the page that opens the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
import ssl
import time
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.abc import AbstractResolver, ResolveResult

from proxy.errors import Busy, StoreUnavailable, vendor_failures
from proxy.hosts import socket_scheme
from proxy.logs import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.config import VendorConfig
    from proxy.forward import Upstream, VendorResolver
    from proxy.sessions import Session, Sessions
    from proxy.vendors.base import Outbound

log = get_logger("proxy.websocket")

# Close codes an endpoint may send (RFC 6455 §7.4): 1005, 1006 and 1015 only ever describe a
# connection that closed without one, and codes under 1000 or from 1016 to 2999 are not defined.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
POLICY = WSCloseCode.POLICY_VIOLATION
# The largest message relayed either way; aiohttp's default, which browsers' own limits exceed.
MAX_MESSAGE = 4 * 1024 * 1024
HEARTBEAT_S = 30.0  # pings find a patron's or a vendor's vanished connection
# Sockets one session may have open in a process (and never more than a quarter of
# `server.max_websockets`): a page stuck reconnecting in a forgotten tab, or a script, must not
# take every place from the other patrons.
MAX_PER_SESSION = 16


def wants_websocket(request: web.Request) -> bool:
    """A GET asking to become a WebSocket (RFC 6455 §4.1)."""
    if request.method != "GET":
        return False
    h = request.headers
    connection = {t.strip().lower() for t in h.get("Connection", "").split(",")}
    return h.get("Upgrade", "").strip().lower() == "websocket" and "upgrade" in connection


def offered_protocols(request: web.Request) -> list[str]:
    """The subprotocols the browser offered, in its order."""
    offered = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    return [p.strip() for p in offered.split(",") if p.strip()]


def sendable(code: int | None, *, abnormal: int = WSCloseCode.OK) -> int:
    """A close code received (or None) as one that may be sent on: reserved codes become
    `abnormal`, the application's own (3000-4999) go as they are."""
    if code is None or code == 1005:  # closed without saying why
        return WSCloseCode.OK
    if code in _SENDABLE or 3000 <= code <= 4999:
        return code
    return abnormal


class _Resolver(AbstractResolver):
    """aiohttp's resolver interface over the forwarder's: `connect_to`, and public addresses only.

    Written by hand because aiohttp asks for this one interface; the decision stays in
    `proxy.forward.VendorResolver`, so sockets can reach no address pages cannot."""

    def __init__(self, resolve: VendorResolver) -> None:
        self._resolve = resolve

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=to_port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address, to_port in await self._resolve(host, port)
        ]

    async def close(self) -> None:
        return None


class TooManySockets(web.HTTPTooManyRequests):
    """One session has MAX_PER_SESSION sockets open in this process already."""

    def __init__(self) -> None:
        super().__init__(text="Too many live connections are open for this session.")


class NotASocket(Exception):
    """The vendor's answer to a handshake was neither a socket nor a refusal (a page, a
    redirect): `vendor_failed` says `protocol` with this name."""


class Redirected(Exception):
    """The vendor answered the handshake with a redirect: a socket is never carried to
    another URL (its host would get this vendor's assertion and cookies, with no gate asked)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def _refuse_redirect(
    session: aiohttp.ClientSession,
    context: object,
    params: aiohttp.TraceRequestRedirectParams,
) -> None:
    params.response.close()
    raise Redirected(params.response.status)


# The Set-Cookie headers of the handshake under way in this task: aiohttp's WebSocket client
# keeps its 101 answer to itself, but a trace hook sees it, in the task that connects.
_HANDSHAKE_COOKIES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "weston_handshake_cookies", default=None
)


async def _note_handshake_cookies(
    session: aiohttp.ClientSession,
    context: object,
    params: aiohttp.TraceRequestEndParams,
) -> None:
    sink = _HANDSHAKE_COOKIES.get()
    if sink is not None:
        sink.extend(params.response.headers.getall("Set-Cookie", []))


class OpenSockets:
    """The process's open sockets, shared by every forwarder a reload makes: the cap
    (`server.max_websockets`) and each session's share (MAX_PER_SESSION, at most a quarter of
    the cap), counted from the
    moment a handshake starts, so handshakes at the same time cannot pass the cap together."""

    def __init__(self, max_open: int) -> None:
        self.max_open = max_open
        self.relays: set[SocketRelay] = set()
        self._count = 0
        # By session id, in this process's memory only, while its sockets are open.
        self._by_session: dict[str, int] = {}

    def reserve(self, vendor_id: str, session_id: str) -> None:
        """A place for one more socket of `session_id`, or Busy (503) / TooManySockets (429)."""
        if self._count >= self.max_open:
            raise Busy(vendor_id, whole=True)
        held = self._by_session.get(session_id, 0)
        if held >= min(MAX_PER_SESSION, max(1, self.max_open // 4)):
            raise TooManySockets()
        self._count += 1
        self._by_session[session_id] = held + 1

    def release(self, session_id: str) -> None:
        self._count -= 1
        left = self._by_session.pop(session_id, 1) - 1
        if left > 0:
            self._by_session[session_id] = left

    def __len__(self) -> int:
        return self._count


class VendorSockets:
    """One forwarder's WebSockets to vendors: an aiohttp client for them, and the process's
    open sockets (shared with the other forwarders)."""

    def __init__(self, resolve: VendorResolver, open_sockets: OpenSockets) -> None:
        self._resolve = resolve
        self.open = open_sockets
        self._client: aiohttp.ClientSession | None = None

    def client(self) -> aiohttp.ClientSession:
        if self._client is None:  # made on first use: most vendors never open a socket
            no_redirects = aiohttp.TraceConfig()
            no_redirects.on_request_redirect.append(_refuse_redirect)
            no_redirects.on_request_end.append(_note_handshake_cookies)
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=_Resolver(self._resolve), use_dns_cache=False, limit=0
                ),
                cookie_jar=aiohttp.DummyCookieJar(),  # the session's jar decides, not aiohttp's
                trust_env=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                trace_configs=[no_redirects],
            )
        return self._client

    async def connect(
        self,
        out: Outbound,
        protocols: list[str],
        *,
        ssl_context: ssl.SSLContext | None,
        timeout_s: float,
    ) -> tuple[aiohttp.ClientWebSocketResponse, list[str]]:
        """The vendor's socket for `out` (headers already scrubbed and authorized, a place
        reserved) and the Set-Cookie headers of its 101 answer, which a browser would store as
        from any answer; or VendorTimeout after `timeout_s` / VendorUnavailable, or Redirected
        or aiohttp's WSServerHandshakeError when the vendor answers with something else."""
        url = out.url.with_scheme(socket_scheme(out.url.scheme))
        headers = {k: v for k, v in out.headers.items() if k.lower() != "content-length"}
        set_cookies: list[str] = []
        noted = _HANDSHAKE_COOKIES.set(set_cookies)
        with vendor_failures(out.vendor.id):
            try:
                async with asyncio.timeout(timeout_s):
                    vendor_ws = await self.client().ws_connect(
                        url,
                        protocols=protocols,
                        headers=headers,
                        ssl=ssl_context if ssl_context is not None else True,
                        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
                        heartbeat=HEARTBEAT_S,
                        max_msg_size=MAX_MESSAGE,
                        autoclose=False,
                    )
                return vendor_ws, set_cookies
            except (aiohttp.WSServerHandshakeError, Redirected):
                raise  # the vendor answered: the caller decides
            except (aiohttp.ClientConnectionError, aiohttp.ClientResponseError) as exc:
                # A connection the vendor cut, or an answer that was no HTTP: as the page
                # forwarder reports them.
                raise OSError(str(type(exc).__name__)) from exc
            finally:
                _HANDSHAKE_COOKIES.reset(noted)

    async def end_all(self) -> None:
        """Every open relay closed, both sides told 1001 (going away): the proxy is stopping,
        and the patron's page may reconnect to another instance at once."""
        await asyncio.gather(
            *(r.end(WSCloseCode.GOING_AWAY, b"proxy restarting") for r in self.mine()),
            return_exceptions=True,
        )

    def mine(self) -> list[SocketRelay]:
        return [r for r in self.open.relays if r.sockets is self]

    async def close(self) -> None:
        """Closes every open relay of this forwarder, and the client."""
        await self.end_all()
        if self._client is not None:
            await self._client.close()


class SocketRelay(web.WebSocketResponse):
    """The patron's side of a socket whose vendor side is open: `relay` answers the browser's
    handshake and carries messages until one side closes or the session ends."""

    def __init__(
        self,
        vendor_ws: aiohttp.ClientWebSocketResponse,
        vendor: VendorConfig,
        session: Session,
        sockets: VendorSockets,
        *,
        owner: Upstream,
    ) -> None:
        chosen = vendor_ws.protocol
        super().__init__(
            protocols=(chosen,) if chosen else (),
            heartbeat=HEARTBEAT_S,
            max_msg_size=MAX_MESSAGE,
            autoclose=False,
        )
        self.vendor_ws = vendor_ws
        self.vendor = vendor
        self.session_id = session.id
        self.sockets = sockets
        self.owner = owner  # the forwarder it came from, counted busy while the socket is open
        self._ended: str | None = None
        self._ending: asyncio.Future[None] | None = None

    async def relay(
        self,
        request: web.Request,
        sessions: Sessions,
        check_s: float,
        still_allowed: Callable[[Session], bool],
    ) -> web.WebSocketResponse:
        """Answer 101 and relay; returns once both sides are closed."""
        self.sockets.open.relays.add(self)
        started = time.monotonic()
        try:
            await self.prepare(request)
            pumps = {
                asyncio.create_task(self._pump_to_vendor()),
                asyncio.create_task(self._pump_to_patron()),
                asyncio.create_task(self._watch(sessions, check_s, still_allowed)),
            }
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in pumps:
                    task.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self.sockets.open.relays.discard(self)
            self.sockets.open.release(self.session_id)
            if self._ending is not None:
                await self._ending
            await self._close_both(WSCloseCode.GOING_AWAY, b"")  # ended unasked (cancelled)
            # The vendor and how it ended: no patron, no address, no URL, nothing said.
            log.info(
                "websocket_closed",
                vendor=self.vendor.id,
                outcome=self._ended or "proxy",  # who ended it
                duration_ms=int((time.monotonic() - started) * 1000),
            )
        return self

    async def end(self, code: int, reason: bytes) -> None:
        """Both sides closed with `code`: the first caller decides. Closing one side wakes the
        pump reading it, which must not close the other with a code of its own."""
        if self._ending is None:
            # Its own task: the caller may be cancelled (the relay stops the other pumps as
            # soon as one returns) without cutting the closing short.
            self._ending = asyncio.ensure_future(self._close_both(code, reason))
        await asyncio.shield(self._ending)

    async def _close_both(self, code: int, reason: bytes) -> None:
        if not self.vendor_ws.closed:
            with contextlib.suppress(Exception):
                await self.vendor_ws.close(code=code, message=reason)
        if self.prepared and not self.closed:
            with contextlib.suppress(Exception):
                await self.close(code=code, message=reason)

    async def _pump_to_vendor(self) -> None:
        await self._pump(self, self.vendor_ws, "patron")

    async def _pump_to_patron(self) -> None:
        await self._pump(self.vendor_ws, self, "vendor")

    async def _pump(
        self,
        source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        side: str,
    ) -> None:
        """Messages from `source` to `sink` until `source` closes; then both are closed, the
        other side told `source`'s code and reason."""
        while True:
            msg = await source.receive()
            if msg.type == WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            elif msg.type == WSMsgType.CLOSE:
                self._ended = self._ended or side
                reason = str(msg.extra or "").encode()[:123]
                await self.end(sendable(msg.data), reason)
                return
            else:  # CLOSING, CLOSED, ERROR: gone without a close frame, or garbled
                self._ended = self._ended or f"{side}_lost"
                # To the patron, a vendor gone that way is the proxy's side failing (1011,
                # which pages' scripts take as "try again"); to the vendor, the patron going.
                lost = WSCloseCode.INTERNAL_ERROR if side == "vendor" else WSCloseCode.GOING_AWAY
                await self.end(lost, b"")
                return

    async def _watch(
        self, sessions: Sessions, check_s: float, still_allowed: Callable[[Session], bool]
    ) -> None:
        while True:
            await asyncio.sleep(check_s)
            try:
                session = await sessions.load(self.session_id)
            except StoreUnavailable:
                # Whether the patron signed out cannot be known: closed, as P7 wants.
                self._ended = "store_unavailable"
                await self.end(WSCloseCode.INTERNAL_ERROR, b"")
                return
            if session is None or not still_allowed(session):
                self._ended = "session_ended"
                await self.end(POLICY, b"session ended")
                return
