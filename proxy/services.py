"""The running proxy's parts (`Services`) and the hook lists features plug into; built, rebuilt on
reload, and closed here. Resources: directory, session store, signer, upstream client, templates."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from proxy.admission import Admission
from proxy.assertion import Signer, ensure_keys
from proxy.auth import (
    LIBRARY_RULE,
    UNMARKED_LIBRARY_RULE,
    Directory,
    eligibility_marks,
    make_directory,
)
from proxy.config import Config, VendorConfig
from proxy.forward import Observation, Upstream
from proxy.hosts import HostMap
from proxy.logs import get_logger
from proxy.metrics import Metrics
from proxy.secrets_ import server_secret
from proxy.sessions import Session, Sessions, make_store
from proxy.web.messages import UI
from proxy.websocket import OpenSockets

if TYPE_CHECKING:
    from proxy.rewrite import Rewriter

WEB_DIR = Path(__file__).parent / "web"
log = get_logger("proxy.services")


Gate = Callable[[web.Request, Session, VendorConfig], Awaitable[web.StreamResponse | None]]


LoginGate = Callable[[web.Request, str], Awaitable[web.StreamResponse | None]]
# (request, vendor, response status, response Content-Type)
# (request, vendor, status, Content-Type, Content-Range)
# (request, vendor, status, Content-Type, the vendor's response headers)
HeadGate = Callable[
    [web.Request, VendorConfig, int, str, Mapping[str, str]],
    Awaitable[web.StreamResponse | None],
]


LoginFailed = Callable[[web.Request, str, str], Awaitable[None]]


@dataclass
class Hooks:
    """Where feature modules (stats, throttling, usage limits) plug into the request flow."""

    gates: list[Gate] = field(default_factory=list)  # before forwarding; a response refuses
    # Once the vendor's response head is in, before anything reaches the patron; a response
    # refuses (usage limits count downloads here, so parallel ones are held to the limit).
    head_gates: list[HeadGate] = field(default_factory=list)
    login_gates: list[LoginGate] = field(default_factory=list)  # before asking the directory
    login_failed: list[LoginFailed] = field(default_factory=list)
    # Once a sign-in that passed the login gates is answered, however it ended (the throttle
    # gives back the try it reserved unless it was a wrong PIN).
    login_settled: list[Callable[[web.Request], Awaitable[None]]] = field(default_factory=list)
    # After the directory accepted the card and PIN, before the session is made; a response
    # refuses (the throttle's bound on sessions per card).
    login_admits: list[LoginGate] = field(default_factory=list)
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
    # Requests being worked on at once, in all and per vendor (proxy/admission.py).
    admission: Admission = field(default_factory=lambda: Admission(64))
    vendors: dict[str, VendorConfig] = field(default_factory=dict)
    # The mark of each conditional database's rule in force (auth.decided_under), by vendor id,
    # which sessions' marks from sign-in are checked against.
    eligibility: dict[str, str] = field(default_factory=dict)
    # The library-wide rule's mark when this process started, kept across reloads: what a
    # session that recorded none (signed in by a version before the mark) is held to.
    library_mark_at_start: str | None = None

    def __post_init__(self) -> None:
        self.vendors = {v.id: v for v in self.config.vendors}
        self.eligibility = eligibility_marks(self.config)
        if self.library_mark_at_start is None:
            self.library_mark_at_start = self.eligibility.get(LIBRARY_RULE)
        if self.library_mark_at_start is not None:
            self.eligibility[UNMARKED_LIBRARY_RULE] = self.library_mark_at_start


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


def make_signer(config: Config, secret: bytes, previous: Signer | None = None) -> Signer:
    """A signer over the keys now in the key directory (start-up, and again on reload, where it
    continues `previous`'s record of what was published and signed when)."""
    import hashlib

    return Signer(
        ensure_keys(config.resolve(config.keys.dir)),
        issuer=config.server.public_url.rstrip("/"),
        scope=config.library.scope,
        pairwise_secret=hashlib.sha256(b"pairwise-v1\x00" + secret).digest(),
        previous=previous,
    )


def make_upstream(
    config: Config,
    hosts: HostMap,
    signer: Signer,
    sessions: Sessions,
    rewriter: Rewriter,
    hooks: Hooks,
    open_sockets: OpenSockets | None = None,
) -> Upstream:
    """The forwarder, calling the features' head gates and observers as they are at each
    request (features plug in after it is built, and stay plugged in across reloads)."""

    def observe(o: Observation) -> None:
        for fn in hooks.observers:
            fn(o)

    async def check_head(
        request: web.Request,
        vendor: VendorConfig,
        status: int,
        content_type: str,
        head: Mapping[str, str],
    ) -> web.StreamResponse | None:
        for gate in hooks.head_gates:
            refusal = await gate(request, vendor, status, content_type, head)
            if refusal is not None:
                return refusal
        return None

    return Upstream(
        config,
        hosts=hosts,
        signer=signer,
        sessions=sessions,
        rewriter=rewriter,
        observe=observe,
        check_head=check_head,
        open_sockets=open_sockets,
    )


async def build_services(config: Config) -> Services:
    secret = server_secret(config)
    hosts = config.host_map()
    import hashlib

    signer = make_signer(config, secret)
    store_options: dict[str, Any] = {}
    if config.session.store == "redis":
        from proxy.secrets_ import redis_password

        store_options = {
            "url": config.session.redis_url,
            "key": hashlib.sha256(b"store-v1\x00" + secret).digest(),
            "password": redis_password(config),
        }
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

    hooks = Hooks(observers=[metrics_.observe])
    upstream = make_upstream(config, hosts, signer, sessions, Rewriter.from_config(config), hooks)
    await upstream.start()
    # One count per process, which every forwarder a reload makes shares.
    metrics_.websockets_open.set_function(upstream.open_sockets.__len__)
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
        admission=Admission(config.server.max_in_flight),
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
    hosts = config.host_map()
    signer = make_signer(config, svc.secret, previous=svc.signer)
    rewriter = Rewriter.from_config(config)
    upstream = make_upstream(
        config, hosts, signer, svc.sessions, rewriter, hooks, svc.upstream.open_sockets
    )
    await upstream.start()
    try:
        directory = make_directory(config, secret=svc.secret)
        templates = template_env(config)
    except BaseException:
        await upstream.close()  # the refused reload leaves no vendor connections behind
        raise
    return Services(
        config=config,
        hosts=hosts,
        sessions=svc.sessions,
        directory=directory,
        signer=signer,
        upstream=upstream,
        templates=templates,
        metrics=svc.metrics,
        secret=svc.secret,
        hooks=hooks,
        forwarding=svc.forwarding,
        admission=svc.admission,
        library_mark_at_start=svc.library_mark_at_start,
    )


def swap_services(svc: Services, new: Services) -> Services:
    """Install `new`'s parts into `svc` in one step (no await, so no request sees half of each).

    `svc` itself stays the object under `app[SERVICES]` (an aiohttp app's state is frozen once it
    runs, and features hold `svc`); the replaced parts come back for closing once idle.
    """
    old = dataclasses.replace(svc)
    for f in dataclasses.fields(Services):
        setattr(svc, f.name, getattr(new, f.name))
    svc.admission.resize(new.config.server.max_in_flight)  # shared, like the sessions
    return old
