"""`create_app(config)`: the proxy's aiohttp application — host routing, patron pages, proxying.

Requests on the proxy's own host get the patron pages and operational routes; requests on a mapped
vendor host are proxied after the session gate; any other Host is refused before anything is
fetched. Resources (directory, store, signer, upstream client) open and close in `cleanup_ctx`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import quote

from aiohttp import web
from aiohttp.web_urldispatcher import (
    AbstractResource,
    AbstractRoute,
    ResourceRoute,
    UrlMappingMatchInfo,
)
from yarl import URL

if TYPE_CHECKING:  # aiohttp's TypedDict for get_info(), named only in its annotations
    from aiohttp.web_urldispatcher import _InfoDict

from proxy import rewrite_headers
from proxy.admission import vendor_share
from proxy.assertion import sweep_assertions
from proxy.auth import library_rule_holds, may_use, rules_changed
from proxy.config import Config, VendorConfig
from proxy.errors import (
    Busy,
    SessionConflict,
    StoreUnavailable,
    VendorAccountRefused,
    VendorError,
    VendorTimeout,
    failure_kind,
)
from proxy.forward import upstream_url
from proxy.http_errors import install as install_error_page
from proxy.limits_http import http_limits
from proxy.logs import get_logger
from proxy.ops import healthz, jwks, metrics, readyz
from proxy.preflight import answer_preflight, is_preflight
from proxy.privacy import FORGET_WHAT, OWN_PAGE_HEADERS, VENDOR_METHODS
from proxy.service_workers import is_service_worker_script, refuse_service_worker
from proxy.services import (
    CONFIG,
    SERVICES,
    Services,
    build_services,
    close_services,
)
from proxy.sessions import Session
from proxy.tasks import stop
from proxy.web.forget import FORGET_PATH, forget_here
from proxy.web.messages import FORMAT_DEFAULTS, UI
from proxy.web.pages import (
    AGAIN,
    _public,
    _session_cookie,
    end_sessions,
    login_form,
    login_submit,
    logout,
    menu,
    message_page,
    privacy_page,
    renew_sign_in_token,
    root,
    session_time,
    static_file,
)
from proxy.web.session_cookie import clear_copies
from proxy.websocket import SocketRelay

# Feature modules plugged into every app, in order. Each has
# `async def feature(app: web.Application, svc: Services) -> AsyncIterator[None]` (a cleanup_ctx-style
# generator) and plugs into `svc.hooks`; app.py knows nothing else about them.
FEATURES: tuple[str, ...] = (
    "proxy.usage_stats",
    "proxy.reload",
    "proxy.throttle",
    "proxy.usage_limits",
    "proxy.limits_http",
)
log = get_logger("proxy.app")


# --------------------------------------------------------------------------- middleware


@web.middleware
async def dispatch(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Route by Host: own pages, a mapped vendor host, or a refusal that fetches nothing."""
    svc = request.app[SERVICES]
    host = request.headers.get("Host", "")
    if not request.raw_path.startswith("/"):
        # An absolute-form request target could name another host than the Host header.
        return message_page(request, "bad_request")
    try:
        if svc.hosts.is_public_host(host):
            resp = await handler(request)
            for name, value in OWN_PAGE_HEADERS.items():
                if name not in resp.headers:
                    resp.headers[name] = value
            return resp
        vendor_host = svc.hosts.vendor_host_from_request(host)
        if vendor_host is None:
            dotless = svc.hosts.dotless_netloc(host)
            if dotless is not None:
                # The same host written with a trailing dot: sent to it, fetching nothing, so
                # the session cookie (host-bound) is sent with the next request.
                location = f"{svc.hosts.public_scheme}://{dotless}{request.raw_path}"
                raise web.HTTPPermanentRedirect(location, headers=OWN_PAGE_HEADERS)
            return _not_configured(request, svc)
        if request.method == "OPTIONS" and is_preflight(request):
            # Without cookies, so before the session gate; nothing reaches the vendor.
            return answer_preflight(request, svc.hosts, vendor_host)
        if request.path == FORGET_PATH:
            return forget_here(request)  # the sign-out page's request; nothing reaches the vendor
        if is_service_worker_script(request):
            # Before the session gate: an update check comes with or without a session, and
            # neither may reach the vendor (proxy/service_workers.py).
            return refuse_service_worker()
        return await proxy_request(request, vendor_host)
    except StoreUnavailable as exc:
        log.warning("store_unavailable", dependency="store", reason=exc.reason)
        unavailable = message_page(request, "store_unavailable", links=_try_again(request))
        renew_sign_in_token(request, unavailable)
        return unavailable
    except SessionConflict as exc:
        # No session is taken: each one named ends and every copy of the cookie goes
        # (proxy/web/session_cookie.py). The event only: no session, patron or address.
        log.warning("session_cookie_conflict", count=len(exc.ids))
        svc.metrics.denials.labels("session_conflict").inc()
        with contextlib.suppress(StoreUnavailable):  # the cookies go; the sessions end unused
            await end_sessions(svc, exc.ids)
        refused = message_page(
            request, "session_conflict", links=[{"href": "/login", "text": UI["sign_in"]}]
        )
        clear_copies(refused, request, svc.config)
        return refused
    except Busy as exc:
        # Counted and logged by the vendor alone: which patron waited is nobody's business.
        log.warning("admission_timeout", vendor=str(exc), whole=exc.whole)
        svc.metrics.denials.labels("busy").inc()
        if exc.whole:
            return message_page(request, "busy")
        return message_page(request, "vendor_busy", database=_database(svc, str(exc)))
    except VendorAccountRefused as exc:
        # Logged once per refused login, where it was refused (`shared_login_failed`: vendor
        # and status); counted here per patron request turned away meanwhile.
        svc.metrics.vendor_failures.labels(str(exc), "account_refused").inc()
        refused = message_page(request, "vendor_account_refused", database=_database(svc, str(exc)))
        refused.headers["Retry-After"] = str(exc.retry_after_s)
        return refused
    except VendorError as exc:
        # The vendor and what failed, for IT ("tls_certificate: certificate has expired" means
        # call the vendor; "refused" means it is down): no patron, address or URL.
        kind, detail = failure_kind(exc)
        log.warning("vendor_failed", vendor=str(exc), error=kind, reason=detail)
        svc.metrics.vendor_failures.labels(str(exc), kind).inc()
        page = "vendor_timeout" if isinstance(exc, VendorTimeout) else "vendor_unavailable"
        return message_page(request, page, database=_database(svc, str(exc)))
    except web.HTTPRequestEntityTooLarge:
        return message_page(request, "too_large")
    except web.HTTPNotFound:
        # An unknown path on the own host (vendor hosts take every path): the patron's own page,
        # not aiohttp's bare text.
        return message_page(request, "not_found")
    except web.HTTPMethodNotAllowed as exc:
        refused = message_page(request, "method_not_allowed")
        refused.headers["Allow"] = exc.headers["Allow"]
        return refused
    except web.HTTPException:
        raise  # redirects, and a refusal aiohttp has already worded
    except Exception as exc:
        log.error("internal_error", exc_type=type(exc).__name__)
        return message_page(request, "internal")


def _try_again(request: web.Request) -> list[dict[str, str]]:
    """A "Try again" link to the address the patron asked for (on the proxy's host or the
    vendor's mapped one), for a page that failed for a moment; none for a form's POST."""
    if request.method not in ("GET", "HEAD"):
        return []
    hosts = request.app[SERVICES].hosts
    host = request.headers.get("Host", "")
    if hosts.is_public_host(host):
        here = request.app[SERVICES].config.server.public_url.rstrip("/")
    else:
        vendor_host = hosts.vendor_host_from_request(host)
        if vendor_host is None:
            return []
        here = hosts.mapped_origin(vendor_host)
    return [{"href": here + request.path_qs, "text": UI["try_again"]}]


def _database(svc: Services, vendor_id: str) -> str:
    """A vendor error page's {database}: the vendor's title, or the messages' own default for a
    vendor a reload has removed meanwhile."""
    vendor = svc.vendors.get(vendor_id)
    return vendor.title if vendor is not None else FORMAT_DEFAULTS["database"]


# --------------------------------------------------------------------------- proxying


def _not_configured(request: web.Request, svc: Services) -> web.StreamResponse:
    """The 404 page for a host no vendor of the configuration in force serves."""
    svc.metrics.denials.labels("not_configured").inc()
    for hook in svc.hooks.denied:
        hook("", "not_configured")
    return message_page(request, "not_configured")


async def proxy_request(request: web.Request, vendor_host: str) -> web.StreamResponse:
    if request.method not in VENDOR_METHODS:
        # Before anything is looked up or sent: the vendor never sees the request.
        raise web.HTTPMethodNotAllowed(request.method, sorted(VENDOR_METHODS))
    svc = request.app[SERVICES]
    config = svc.config  # what `vendor` was looked up in
    vendor = svc.vendors[svc.hosts.vendor_for_host(vendor_host) or ""]
    server = config.server
    share = vendor_share(server, vendor)
    async with svc.admission.slot(vendor.id, share, server.admission_wait_s):
        # The wait for the slot may span a reload: `_proxy_admitted` looks the vendor up again.
        resp = await _proxy_admitted(request, config, vendor, vendor_host)
    if isinstance(resp, SocketRelay):
        # Open for as long as the patron's page keeps it: outside the admission slot, and
        # counted busy on its forwarder so a reload does not close it with the old one.
        owner = resp.owner
        vendor_id = resp.vendor.id
        svc.forwarding[owner] = svc.forwarding.get(owner, 0) + 1
        try:
            return await resp.relay(
                request,
                svc.sessions,
                server.websocket_check_s,
                # The vendor as configured now: a reload that removed it ends its sockets.
                lambda s: (
                    not s.suspended
                    and (now := svc.vendors.get(vendor_id)) is not None
                    and library_rule_holds(s.rules, svc.eligibility)
                    and may_use(s.databases, s.rules, now, svc.eligibility.get(now.id, ""))
                ),
            )
        finally:
            svc.forwarding[owner] -= 1
    return resp


async def _proxy_admitted(
    request: web.Request, config: Config, vendor: VendorConfig, vendor_host: str
) -> web.StreamResponse:
    """Session gate, eligibility, feature gates, then the forward. A reload during any await
    here (the admission wait before it, the store, a gate) installs new vendors, a new forwarder
    and new rules at once (`swap_services`): whenever the configuration in force is not the one
    `vendor` came from, the vendor is looked up again by host (gone: the "not configured" page a
    new request gets) and decided again, so the forward never mixes generations. One identity
    test per await on the ordinary path."""
    svc = request.app[SERVICES]
    sid = _session_cookie(request)
    session = await svc.sessions.load(sid)
    while True:
        if svc.config is not config:
            config = svc.config
            found = svc.vendors.get(svc.hosts.vendor_for_host(vendor_host) or "")
            if found is None:
                return _not_configured(request, svc)
            vendor = found
        if session is None:
            _to_sign_in(svc, vendor, vendor_host, request, sid)
        refused = _not_for_this_patron(request, svc, session, vendor, vendor_host)
        if refused is not None:
            return refused
        for gate in svc.hooks.gates:
            refused = await gate(request, session, vendor)
            if refused is not None:
                return refused
        await svc.sessions.touch(session)
        if svc.config is config:
            break
        # Reloaded during a gate or the touch: decided again under the new configuration (a gate
        # that counts may count this request twice; reloads are rare and the error is upward).
    upstream = svc.upstream  # a reload may replace it meanwhile; this request ends on this one
    svc.forwarding[upstream] = svc.forwarding.get(upstream, 0) + 1
    try:
        return await upstream.forward(request, vendor, vendor_host, session)
    finally:
        svc.forwarding[upstream] -= 1


def _to_sign_in(
    svc: Services, vendor: VendorConfig, vendor_host: str, request: web.Request, sid: str | None
) -> NoReturn:
    """No session (or one that ended): to the sign-in page, with this address to come back to."""
    start = upstream_url(vendor, vendor_host, request.raw_path)
    to_login = _public(svc.config, "/login?url=" + quote(str(start), safe=""))
    if sid:
        # A session that ended without sign-out (idle, too old): the next person on a
        # shared computer is here. What the vendor's pages kept in the browser on this
        # host (cache, local storage) is forgotten before the sign-in page; the hosts the
        # session used are not known any more (they died with it), so each is cleared
        # when it is next opened.
        raise web.HTTPFound(to_login, headers={"Clear-Site-Data": FORGET_WHAT})
    raise web.HTTPFound(to_login)


def _not_for_this_patron(
    request: web.Request,
    svc: Services,
    session: Session,
    vendor: VendorConfig,
    vendor_host: str,
) -> web.StreamResponse | None:
    """The page refusing `vendor` to this session's patron under the rules in force, if any."""
    mark = svc.eligibility.get(vendor.id, "")
    library_ok = library_rule_holds(session.rules, svc.eligibility)
    if library_ok and may_use(session.databases, session.rules, vendor, mark):
        return None
    if not library_ok or rules_changed(session.rules, vendor, mark):
        # Decided under rules a reload has changed since: the patron signs in again to be
        # decided under the new ones (the sign-in ends this session, as every sign-in does).
        start = upstream_url(vendor, vendor_host, request.raw_path)
        again = _public(svc.config, f"/login?{AGAIN}=1&url=" + quote(str(start), safe=""))
        return message_page(
            request,
            "rules_changed",
            session=session,
            links=[{"href": again, "text": UI["sign_in_again"]}],
        )
    svc.metrics.denials.labels("not_eligible").inc()
    for hook in svc.hooks.denied:
        hook(vendor.id, "not_eligible")
    return message_page(request, "not_included")


class _NotOwnHost(AbstractResource):
    """Every request whose Host is not the proxy's own: `dispatch` proxies or refuses those
    without looking at the route, so the router only has to say "found".

    Without it each proxied request walks the router to a miss, and aiohttp builds a 404
    exception and its response body just to be ignored (about 6% of a pass-through's CPU in
    `bench.profile pass`). Registered last and under "/", so own routes still match first
    and the own host keeps its 404 and 405 answers.
    """

    def __init__(self, app: web.Application) -> None:
        super().__init__()
        self._app = app
        self._route = ResourceRoute("*", _never_called, self)

    @property
    def canonical(self) -> str:
        return "/"

    def url_for(self, *args: str, **kwargs: str) -> URL:
        raise RuntimeError("not a linkable resource")

    def add_prefix(self, prefix: str) -> None:
        raise RuntimeError("not a prefixable resource")

    def get_info(self) -> _InfoDict:
        return {}

    def raw_match(self, path: str) -> bool:
        return False

    async def resolve(self, request: web.Request) -> tuple[UrlMappingMatchInfo | None, set[str]]:
        svc = self._app.get(SERVICES)
        host = request.headers.get("Host", "")
        if svc is None or svc.hosts.is_public_host(host):
            return None, set()
        return UrlMappingMatchInfo({}, self._route), {request.method}

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[AbstractRoute]:
        return iter([self._route])


async def _never_called(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound()  # dispatch answers every request this route matches


# --------------------------------------------------------------------------- patron pages


# --------------------------------------------------------------------------- assembly


def create_app(config: Config) -> web.Application:
    # Requests the parser refuses: a fixed page, never quoting them.
    install_error_page(config.server.public_url, http_limits(config).max_header_size)
    app = web.Application(middlewares=[dispatch], client_max_size=1024**2)
    app[CONFIG] = config

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        svc = await build_services(config)
        app[SERVICES] = svc
        features = [importlib.import_module(name).feature(app, svc) for name in FEATURES]
        started: list[AsyncIterator[None]] = []
        try:
            for f in features:
                await anext(f)
                started.append(f)
        except BaseException:
            # A feature failed to start: undo what did start, then let startup fail loudly.
            for f in reversed(started):
                await f.aclose()  # type: ignore[attr-defined]
            await close_services(svc)
            raise
        log.info(
            "started",
            public_url=config.server.public_url,
            vendors=len(config.vendors),
            store=config.session.store,
            # Which loop serves: asyncio's own, on purpose (see proxy/cli.py, _serve_one).
            event_loop=type(asyncio.get_running_loop()).__name__,
            compiled_rewriter=rewrite_headers.compiled_scan is not None,
        )
        if rewrite_headers.compiled_scan is None:
            log.warning(
                "rewriter_not_compiled",
                reason="proxy/_scan.pyx was not built, so pages are rewritten by the pure-Python "
                "passes: the same bytes, several times slower; install a C compiler (Debian: gcc) "
                "and reinstall the package",
            )
        sweeper = asyncio.create_task(sweep_assertions(lambda: app[SERVICES].signer))
        yield
        await stop(sweeper)
        # Normal shutdown: each feature runs its own clean-up (flushes, closes), newest first.
        for f in reversed(started):
            with contextlib.suppress(StopAsyncIteration):
                await anext(f)
        await close_services(app[SERVICES])
        log.info("stopped")  # in-flight requests drained, statistics flushed, stores closed

    app.cleanup_ctx.append(services_ctx)

    async def end_sockets(app: web.Application) -> None:
        # Open sockets never finish on their own: closed first (1001), or a shutdown would wait
        # its whole grace for them while the other requests are long done.
        if SERVICES in app:
            await app[SERVICES].upstream.end_sockets()

    app.on_shutdown.append(end_sockets)
    app.router.add_get("/", root)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/logout", logout)
    app.router.add_post("/logout", logout)
    app.router.add_get("/menu", menu)
    app.router.add_get("/privacy", privacy_page)
    app.router.add_get("/session", session_time)
    app.router.add_post("/session", session_time)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/static/{name}", static_file)
    app.router.register_resource(_NotOwnHost(app))
    return app


# Names other modules and tests reach through proxy.app.
__all__ = ["CONFIG", "FEATURES", "SERVICES", "Services", "create_app", "dispatch"]
