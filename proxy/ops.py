"""Operational routes: liveness, readiness by dependency, Prometheus metrics, the JWKS."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable

from aiohttp import web

from proxy.errors import (
    DirectoryUnavailable,
    StoreUnavailable,
)
from proxy.services import SERVICES


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
