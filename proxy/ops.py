"""Operational routes: liveness, readiness by dependency, Prometheus metrics, the JWKS."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable

from aiohttp import web

from proxy.assertion import JWKS_MAX_AGE_S
from proxy.client_ip import Network, address_in, client_address, parse_networks
from proxy.config import ServerConfig
from proxy.errors import (
    DirectoryUnavailable,
    StoreUnavailable,
)
from proxy.services import SERVICES, Services


async def healthz(request: web.Request) -> web.StreamResponse:
    # The pid tells which worker answered (server.workers > 1); it says nothing about patrons.
    return web.json_response({"status": "ok", "pid": os.getpid()})


async def _failure(ping: Awaitable[None], timeout: float) -> str | None:
    """None when the check passed, else a short reason (StoreUnavailable's own, "timeout")."""
    try:
        async with asyncio.timeout(timeout):
            await ping
        return None
    except TimeoutError:
        return "timeout"
    except StoreUnavailable as exc:
        return exc.reason
    except (DirectoryUnavailable, OSError):
        return "unavailable"


async def dependency_failures(svc: Services) -> tuple[str | None, str | None]:
    """Ask the directory and the store once, at the same time; why each failed (None: it
    answered), also set on the `dependency_up` gauge. The store's check is a write (see
    RedisStore.ping): a store that answers but refuses writes is not ready."""
    directory, store = await asyncio.gather(
        _failure(svc.directory.ping(), svc.config.directory.timeout_s + 1),
        _failure(svc.sessions.store.ping(), 3.0),
    )
    svc.metrics.dependency_up.labels("directory").set(0 if directory else 1)
    svc.metrics.dependency_up.labels("store").set(0 if store else 1)
    return directory, store


async def check_dependencies(svc: Services) -> tuple[bool, bool]:
    """(directory up, store up), as `dependency_failures`; the metrics refresher uses it."""
    directory, store = await dependency_failures(svc)
    return directory is None, store is None


async def readyz(request: web.Request) -> web.StreamResponse:
    _, store_failure = failures = await dependency_failures(request.app[SERVICES])
    body = {
        name: "ok" if failure is None else "unavailable"
        for name, failure in zip(("directory", "store"), failures, strict=True)
    }
    failing = [k for k, v in body.items() if v != "ok"]
    if failing:
        body["failing"] = ", ".join(failing)
    if store_failure is not None:
        # Why, in a word for staff ("authentication", "read-only" …): a refused password must
        # not look like a Redis that is down. Never a key, value or session.
        body["store_reason"] = store_failure
    return web.json_response(body, status=200 if not failing else 503)


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(entries)  # checked by check-config


def metrics_allowed(request: web.Request, server: ServerConfig) -> bool:
    """Whether the client may read /metrics: from `server.metrics_from` (by default loopback and
    private networks, where a Prometheus scrapes from). The counters identify no one, but read
    live from the internet they would show when a database is in use at a small library."""
    if not server.metrics_from:
        return True
    address = client_address(
        request.remote,
        request.headers.getall("X-Forwarded-For", []),
        _networks(server.trusted_proxies),
    )
    return address_in(address, _networks(server.metrics_from))


async def metrics(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    if not metrics_allowed(request, svc.config.server):
        raise web.HTTPNotFound()  # as if there were none: the own host's not-found page
    svc.metrics.set_admission(svc.vendors, svc.admission.in_flight, svc.admission.waiting)
    try:
        svc.metrics.active_sessions.set(await svc.sessions.store.count())
    except StoreUnavailable:
        svc.metrics.dependency_up.labels("store").set(0)
    return web.Response(body=svc.metrics.render(), content_type="text/plain", charset="utf-8")


async def jwks(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    resp = web.json_response(svc.signer.jwks(), dumps=lambda o: json.dumps(o, sort_keys=True))
    resp.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_S}"
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp
