"""`create_app(config)`: the proxy's aiohttp application — host routing, patron pages, proxying.

Requests on the proxy's own host get the patron pages and operational routes; requests on a mapped
vendor host are proxied after the session gate; any other Host is refused before anything is
fetched. Resources (directory, store, signer, upstream client) open and close in `cleanup_ctx`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import importlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from proxy.assertion import Signer, ensure_keys
from proxy.auth import Directory, make_directory
from proxy.config import Config, VendorConfig
from proxy.errors import (
    BadCredentials,
    DirectoryUnavailable,
    NotEligible,
    StoreUnavailable,
    VendorTimeout,
    VendorUnavailable,
)
from proxy.forward import Observation, Upstream, upstream_url
from proxy.hosts import HostMap
from proxy.logs import get_logger
from proxy.metrics import Metrics
from proxy.privacy import OWN_PAGE_HEADERS
from proxy.redirects import safe_target
from proxy.secrets_ import server_secret
from proxy.sessions import Session, Sessions, make_store, storage_key
from proxy.web.messages import LANG, MESSAGES, UI, Message, shown

WEB_DIR = Path(__file__).parent / "web"
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
CSRF_COOKIE = "weston_csrf"
MAX_LOGIN_BODY = 8 * 1024
log = get_logger("proxy.app")


Gate = Callable[[web.Request, Session, VendorConfig], Awaitable[web.StreamResponse | None]]
LoginGate = Callable[[web.Request, str], Awaitable[web.StreamResponse | None]]
LoginFailed = Callable[[web.Request, str, str], Awaitable[None]]


@dataclass
class Hooks:
    """Where feature modules (stats, throttling, usage limits) plug into the request flow."""

    gates: list[Gate] = field(default_factory=list)  # before forwarding; a response refuses
    login_gates: list[LoginGate] = field(default_factory=list)  # before asking the directory
    login_failed: list[LoginFailed] = field(default_factory=list)
    login_outcome: list[Callable[[str], None]] = field(default_factory=list)
    denied: list[Callable[[str, str], None]] = field(default_factory=list)  # (vendor id, reason)
    observers: list[Callable[[Observation], None]] = field(default_factory=list)
    # After a reload installed a new config (proxy.reload): features re-read their settings here.
    reloaded: list[Callable[[Config], Awaitable[None]]] = field(default_factory=list)


@dataclass
class Services:
    """Everything a request handler needs; built in `cleanup_ctx`, swapped whole on reload."""

    config: Config
    hosts: HostMap
    sessions: Sessions
    directory: Directory
    signer: Signer
    upstream: Upstream
    templates: jinja2.Environment
    metrics: Metrics
    secret: bytes
    hooks: Hooks = field(default_factory=Hooks)
    # Forwards in progress per upstream client, so a reload closes a replaced one only once idle.
    forwarding: dict[Upstream, int] = field(default_factory=dict)

    @property
    def vendors(self) -> dict[str, VendorConfig]:
        return {v.id: v for v in self.config.vendors}


CONFIG = web.AppKey("config", Config)
SERVICES = web.AppKey("services", Services)


def template_env(config: Config) -> jinja2.Environment:
    """Templates from conf/web/templates (branding overrides) first, then the built-in ones."""
    loaders: list[jinja2.BaseLoader] = []
    override = config.resolve("web/templates")
    if override.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(override)))
    loaders.append(jinja2.FileSystemLoader(str(WEB_DIR / "templates")))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders), autoescape=True, auto_reload=False
    )
    env.globals.update(ui=UI, library=config.library, lang="en")
    return env


def _cookie_secure(config: Config) -> bool:
    return config.public[0] == "https"


def _public(config: Config, path: str) -> str:
    return config.server.public_url.rstrip("/") + path


def render(request: web.Request, template: str, *, status: int = 200, **ctx: Any) -> web.Response:
    svc = request.app[SERVICES]
    ctx.setdefault("lang", LANG)
    # Pages also appear on mapped vendor hosts (errors there): assets and links name the proxy's
    # own host, so they never reach the vendor.
    ctx.setdefault("own", _public(svc.config, ""))
    html = svc.templates.get_template(template).render(**ctx)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def message_page(
    request: web.Request, kind: str, *, links: list[dict[str, str]] | None = None, **fmt: Any
) -> web.Response:
    m = shown(kind, fmt)  # a blank the caller did not fill gets a default, never a KeyError
    svc = request.app[SERVICES]
    if links is None:
        links = [{"href": _public(svc.config, "/menu"), "text": UI["back_to_menu"]}]
    resp = render(
        request,
        "message.html",
        status=m.status,
        message=m,
        links=links,
        signed_in=False,
        code=f"{kind} ({m.status})",  # lets help-desk staff tell which case the patron saw
    )
    # On a vendor host the own-page headers are not added by `dispatch`; an error page there must
    # not be cached either, and may use only the proxy's own assets.
    own = _public(svc.config, "")
    for name, value in OWN_PAGE_HEADERS.items():
        resp.headers.setdefault(name, value.replace("'self'", f"'self' {own}"))
    if m.status == 503:
        resp.headers["Retry-After"] = "60"
    return resp


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
            svc.metrics.denials.labels("not_configured").inc()
            for hook in svc.hooks.denied:
                hook("", "not_configured")
            return message_page(request, "not_configured")
        return await proxy_request(request, vendor_host)
    except StoreUnavailable:
        log.warning("store_unavailable", dependency="store")
        return message_page(request, "store_unavailable", links=[])
    except VendorTimeout as exc:
        v = svc.vendors.get(str(exc))
        return message_page(request, "vendor_timeout", database=v.title if v else "The database")
    except VendorUnavailable as exc:
        v = svc.vendors.get(str(exc))
        return message_page(
            request, "vendor_unavailable", database=v.title if v else "The database"
        )
    except web.HTTPRequestEntityTooLarge:
        return message_page(request, "too_large")
    except web.HTTPException:
        raise
    except Exception as exc:
        log.error("internal_error", exc_type=type(exc).__name__)
        return message_page(request, "internal")


# --------------------------------------------------------------------------- proxying


def _session_cookie(request: web.Request) -> str | None:
    return request.cookies.get(request.app[SERVICES].config.server.cookie_name)


async def proxy_request(request: web.Request, vendor_host: str) -> web.StreamResponse:
    svc = request.app[SERVICES]
    vendor_id = svc.hosts.vendor_for_host(vendor_host)
    vendor = svc.vendors[vendor_id or ""]
    session = await svc.sessions.load(_session_cookie(request))
    if session is None:
        start = upstream_url(vendor, vendor_host, request.raw_path)
        raise web.HTTPFound(_public(svc.config, "/login?url=" + quote(str(start), safe="")))
    if vendor.id not in session.databases:
        svc.metrics.denials.labels("not_eligible").inc()
        for hook in svc.hooks.denied:
            hook(vendor.id, "not_eligible")
        return message_page(request, "not_included")
    for gate in svc.hooks.gates:
        refused = await gate(request, session, vendor)
        if refused is not None:
            return refused
    await svc.sessions.touch(session)
    upstream = svc.upstream  # a reload may replace it meanwhile; this request ends on this one
    svc.forwarding[upstream] = svc.forwarding.get(upstream, 0) + 1
    try:
        return await upstream.forward(request, vendor, vendor_host, session)
    finally:
        svc.forwarding[upstream] -= 1


# --------------------------------------------------------------------------- patron pages


def _set_session_cookie(resp: web.StreamResponse, config: Config, value: str) -> None:
    resp.set_cookie(
        config.server.cookie_name,
        value,
        domain=config.public[1],
        path="/",
        httponly=True,
        samesite="Lax",
        secure=_cookie_secure(config),
    )


def _clear_session_cookie(resp: web.StreamResponse, config: Config) -> None:
    resp.del_cookie(config.server.cookie_name, domain=config.public[1], path="/")


async def login_form(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    url = request.query.get("url", "")[:4096]
    sid = _session_cookie(request)
    session = await svc.sessions.load(sid)
    if session is not None:
        # Already signed in: go straight on, as EZproxy does for login?url=.
        raise web.HTTPSeeOther(safe_target(url, svc.hosts) or _public(svc.config, "/menu"))
    if not sid:
        return _login_page(request, url=url)
    # A session cookie the store no longer knows: the session ended (idle or lifetime) while the
    # patron was away — logout deletes the cookie. Say so once, then drop the dead cookie.
    resp = _login_page(request, url=url, notice=MESSAGES["session_expired"])
    _clear_session_cookie(resp, svc.config)
    return resp


def _login_page(
    request: web.Request,
    *,
    url: str,
    problem: Message | None = None,
    notice: Message | None = None,
    username: str = "",
    status: int = 200,
) -> web.Response:
    svc = request.app[SERVICES]
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    resp = render(
        request,
        "login.html",
        status=status,
        csrf=token,
        url=url,
        problem=problem,
        notice=notice,
        username=username[:64],  # the patron's own card number, so only the PIN is retyped
        signed_in=False,
    )
    # The form's answer is a redirect to the starting point on a mapped vendor host, and browsers
    # hold redirects after a form post to `form-action` too: 'self' alone would stop the patron.
    scheme, host, port = svc.config.public
    mapped = f"{scheme}://*.{host}" + (f":{port}" if port else "")
    resp.headers["Content-Security-Policy"] = OWN_PAGE_HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {mapped}"
    )
    resp.set_cookie(
        CSRF_COOKIE,
        token,
        path="/login",
        httponly=True,
        samesite="Strict",
        secure=_cookie_secure(svc.config),
    )
    return resp


async def login_submit(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    if request.content_length is None or request.content_length > MAX_LOGIN_BODY:
        return message_page(request, "bad_request")
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    url = str(form.get("url", ""))[:4096]
    sent_token = str(form.get("csrf", ""))
    cookie_token = request.cookies.get(CSRF_COOKIE, "")
    if not cookie_token or not hmac.compare_digest(sent_token.encode(), cookie_token.encode()):
        return message_page(request, "csrf", links=[{"href": "/login", "text": UI["sign_in"]}])
    for gate in svc.hooks.login_gates:
        refused = await gate(request, username)
        if refused is not None:
            return refused
    try:
        patron = await svc.directory.authenticate(username, password)
    except BadCredentials:
        return await _login_failed(request, "bad_credentials", username, url)
    except NotEligible:
        return await _login_failed(request, "not_eligible", username, url)
    except DirectoryUnavailable:
        return await _login_failed(request, "directory_unavailable", username, url)
    finally:
        del password
    old = _session_cookie(request)
    if old:
        # Never carry a pre-login id into the new session (fixation).
        await svc.sessions.end(old)
        svc.signer.forget(storage_key(old))
    session = await svc.sessions.start(patron_key=patron.key, databases=patron.databases)
    svc.metrics.logins.labels("success").inc()
    for hook in svc.hooks.login_outcome:
        hook("success")
    log.info("login", outcome="success")
    target = safe_target(url, svc.hosts) or _public(svc.config, "/menu")
    resp = web.HTTPSeeOther(target)
    _set_session_cookie(resp, svc.config, session.id)
    resp.del_cookie(CSRF_COOKIE, path="/login")
    raise resp


async def _login_failed(
    request: web.Request, outcome: str, username: str, url: str
) -> web.Response:
    svc = request.app[SERVICES]
    svc.metrics.logins.labels(outcome).inc()
    log.info("login", outcome=outcome)
    for failed in svc.hooks.login_failed:
        await failed(request, username, outcome)
    for note in svc.hooks.login_outcome:
        note(outcome)
    m = MESSAGES[outcome]
    resp = _login_page(request, url=url, problem=m, username=username, status=m.status)
    if m.status == 503:
        resp.headers["Retry-After"] = "60"
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    sid = _session_cookie(request)
    if sid:
        await svc.sessions.end(sid)
        svc.signer.forget(storage_key(sid))
        log.info("logout")
    resp = render(
        request,
        "message.html",
        message=Message(
            200, UI["signed_out_heading"], UI["signed_out_text"], UI["signed_out_action"]
        ),
        links=[{"href": "/login", "text": UI["sign_in_again"]}],
        signed_in=False,
    )
    _clear_session_cookie(resp, svc.config)
    return resp


async def _require_session(request: web.Request) -> Session:
    svc = request.app[SERVICES]
    session = await svc.sessions.load(_session_cookie(request))
    if session is None:
        raise web.HTTPFound("/login")
    return session


async def menu(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    session = await _require_session(request)
    await svc.sessions.touch(session)  # looking at the menu is using the session
    q = request.query.get("q", "").strip()[:100]
    # Every database is on the page; the ones the filter leaves out are `hidden`, which works
    # without JavaScript, and menu.js can show them again as the patron edits the filter.
    groups: dict[str, dict[str, Any]] = {}
    shown_count = total = 0
    for v in sorted(svc.config.vendors, key=lambda v: v.title.lower()):
        if v.id not in session.databases:
            continue
        text = f"{v.title} {v.description}".lower()
        show = q.lower() in text
        letter = v.title[:1].upper()
        group = groups.setdefault(
            letter if letter.isalpha() else "#",
            {"letter": letter if letter.isalpha() else "#", "items": [], "shown": False},
        )
        href = safe_target(v.start, svc.hosts) or "#"
        group["items"].append(
            {
                "title": v.title,
                "description": v.description,
                "href": href,
                "text": text,
                "shown": show,
            }
        )
        group["shown"] = group["shown"] or show
        total += 1
        shown_count += show
    idle_s = svc.config.session.idle_timeout_s
    warn_s = min(120, idle_s // 2)  # WCAG 2.2.1 asks for at least 20 s to react
    warn_minutes = max(1, round(warn_s / 60))
    return render(
        request,
        "menu.html",
        groups=[groups[k] for k in sorted(groups)],
        q=q,
        shown=shown_count,
        total=total,
        csrf=session.csrf,
        signed_in=True,
        expiry_text=UI["expiry_warning"].format(minutes=idle_s // 60),
        warn_s=warn_s,
        left_s=int(_time_left(svc, session)["left_s"]),
        timeout_text=UI["timeout_text"].format(minutes=warn_minutes),
        timeout_final=UI["timeout_final"].format(minutes=warn_minutes),
    )


def _time_left(svc: Services, session: Session) -> dict[str, Any]:
    now = time.time()
    idle_left = svc.sessions.idle_timeout_s - (now - session.last_seen)
    life_left = svc.sessions.lifetime_s - (now - session.created)
    return {
        "signed_in": True,
        "left_s": max(0, int(min(idle_left, life_left))),
        # Past this point only the absolute lifetime is left, which no activity extends.
        "extendable": idle_left < life_left,
    }


async def session_time(request: web.Request) -> web.StreamResponse:
    """GET: how long the session has left (no effect). POST: count as use, then the same.

    For the menu's time-out warning (menu.js); the POST needs the session's CSRF token.
    """
    svc = request.app[SERVICES]
    session = await svc.sessions.load(_session_cookie(request))
    if session is None:
        return web.json_response({"signed_in": False}, status=401)
    if request.method == "POST":
        sent = request.headers.get("X-CSRF-Token", "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            return web.json_response({"signed_in": True, "error": "csrf"}, status=403)
        await svc.sessions.save(session)
    return web.json_response(_time_left(svc, session))


async def privacy_page(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    rows = []
    for v in sorted(svc.config.vendors, key=lambda v: v.title.lower()):
        adapter = svc.upstream.adapters[v.id]
        c = v.contract
        rows.append(
            {
                "title": v.title,
                "disclosure": adapter.disclosure(),
                "policy": c.privacy_policy_url,
                "reviewed": c.reviewed.isoformat() if c.reviewed else "",
                "expires": c.expires.isoformat() if c.expires else "",
            }
        )
    try:
        session = await svc.sessions.load(_session_cookie(request))
    except StoreUnavailable:
        session = None  # the privacy notice needs no session; show it signed out
    return render(
        request,
        "privacy.html",
        vendors=rows,
        signed_in=session is not None,
        csrf=session.csrf if session else "",
    )


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/menu")


async def static_file(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    name = request.match_info["name"]
    if "/" in name or name.startswith("."):
        raise web.HTTPNotFound()
    for folder in (svc.config.resolve("web/static"), WEB_DIR / "static"):
        path = folder / name
        if path.is_file():
            resp = web.FileResponse(path)
            resp.headers["Cache-Control"] = "public, max-age=86400"
            return resp
    raise web.HTTPNotFound()


async def healthz(request: web.Request) -> web.StreamResponse:
    # The pid tells which worker answered (server.workers > 1); it says nothing about patrons.
    return web.json_response({"status": "ok", "pid": os.getpid()})


async def _check(coro: Awaitable[None], timeout: float) -> bool:
    try:
        await asyncio.wait_for(coro, timeout)
        return True
    except (TimeoutError, DirectoryUnavailable, StoreUnavailable, OSError):
        return False


async def readyz(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    timeout = svc.config.directory.timeout_s + 1
    directory_ok, store_ok = await asyncio.gather(
        _check(svc.directory.ping(), timeout), _check(svc.sessions.store.ping(), 3.0)
    )
    svc.metrics.dependency_up.labels("directory").set(1 if directory_ok else 0)
    svc.metrics.dependency_up.labels("store").set(1 if store_ok else 0)
    body = {
        "directory": "ok" if directory_ok else "unavailable",
        "store": "ok" if store_ok else "unavailable",
    }
    failing = [k for k, v in body.items() if v != "ok"]
    if failing:
        body["failing"] = ", ".join(failing)
    return web.json_response(body, status=200 if not failing else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    try:
        svc.metrics.active_sessions.set(await svc.sessions.store.count())
    except StoreUnavailable:
        svc.metrics.dependency_up.labels("store").set(0)
    return web.Response(body=svc.metrics.render(), content_type="text/plain", charset="utf-8")


async def jwks(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    resp = web.json_response(svc.signer.jwks(), dumps=lambda o: json.dumps(o, sort_keys=True))
    resp.headers["Cache-Control"] = "public, max-age=300"
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp


# --------------------------------------------------------------------------- assembly


def make_signer(config: Config, secret: bytes) -> Signer:
    """A signer over the keys now in the key directory (start-up, and again on reload)."""
    import hashlib

    return Signer(
        ensure_keys(config.resolve(config.keys.dir)),
        issuer=config.server.public_url.rstrip("/"),
        scope=config.library.scope,
        pairwise_secret=hashlib.sha256(b"pairwise-v1\x00" + secret).digest(),
    )


async def build_services(config: Config) -> Services:
    secret = server_secret(config)
    hosts = config.host_map()
    import hashlib

    signer = make_signer(config, secret)
    store_options: dict[str, Any] = {}
    if config.session.store == "redis":
        from proxy.secrets_ import read_secret_file

        store_options = {
            "url": config.session.redis_url,
            "key": hashlib.sha256(b"store-v1\x00" + secret).digest(),
        }
        if config.session.redis_password_file:
            store_options["password"] = read_secret_file(
                config.resolve(config.session.redis_password_file)
            )
    store = make_store(config.session.store, **store_options)
    start = getattr(store, "start", None)
    if start is not None:
        await start()
    sessions = Sessions(
        store, idle_timeout_s=config.session.idle_timeout_s, lifetime_s=config.session.lifetime_s
    )
    directory = make_directory(config, secret=secret)
    metrics_ = Metrics()
    from proxy.rewrite import Rewriter

    rewriter = Rewriter.from_config(config)
    hooks = Hooks(observers=[metrics_.observe])

    def observe(o: Observation) -> None:
        for fn in hooks.observers:
            fn(o)

    upstream = Upstream(
        config, hosts=hosts, signer=signer, sessions=sessions, rewriter=rewriter, observe=observe
    )
    await upstream.start()
    svc = Services(
        config=config,
        hosts=hosts,
        sessions=sessions,
        directory=directory,
        signer=signer,
        upstream=upstream,
        templates=template_env(config),
        metrics=metrics_,
        secret=secret,
        hooks=hooks,
    )
    return svc


async def close_services(svc: Services) -> None:
    await svc.upstream.close()
    await svc.directory.close()
    await svc.sessions.store.close()


async def rebuild_services(svc: Services, config: Config) -> Services:
    """New config-dependent parts for `config`: hosts, directory, signer, upstream, templates.

    Sessions and their store, the server secret, metrics and hooks are shared with `svc`, so
    patrons stay signed in and features stay plugged in. Nothing is installed: see `swap_services`.
    """
    from proxy.rewrite import Rewriter

    hooks = svc.hooks

    def observe(o: Observation) -> None:
        for fn in hooks.observers:
            fn(o)

    hosts = config.host_map()
    signer = make_signer(config, svc.secret)
    upstream = Upstream(
        config,
        hosts=hosts,
        signer=signer,
        sessions=svc.sessions,
        rewriter=Rewriter.from_config(config),
        observe=observe,
    )
    await upstream.start()
    return Services(
        config=config,
        hosts=hosts,
        sessions=svc.sessions,
        directory=make_directory(config, secret=svc.secret),
        signer=signer,
        upstream=upstream,
        templates=template_env(config),
        metrics=svc.metrics,
        secret=svc.secret,
        hooks=hooks,
        forwarding=svc.forwarding,
    )


def swap_services(svc: Services, new: Services) -> Services:
    """Install `new`'s parts into `svc` in one step (no await, so no request sees half of each).

    `svc` itself stays the object under `app[SERVICES]` (an aiohttp app's state is frozen once it
    runs, and features hold `svc`); the replaced parts come back for closing once idle.
    """
    old = dataclasses.replace(svc)
    for f in dataclasses.fields(Services):
        setattr(svc, f.name, getattr(new, f.name))
    return old


def create_app(config: Config) -> web.Application:
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
        )
        yield
        # Normal shutdown: each feature runs its own clean-up (flushes, closes), newest first.
        for f in reversed(started):
            with contextlib.suppress(StopAsyncIteration):
                await anext(f)
        await close_services(app[SERVICES])

    app.cleanup_ctx.append(services_ctx)
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
    return app


__all__ = ["CONFIG", "SERVICES", "Services", "create_app", "message_page", "time"]
