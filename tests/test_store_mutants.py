"""From a mutation sweep (1 December 2026) of the Redis store, its health reasons, reload,
services, tasks and launch: each test here kills a mutant the rest of the suite let live (its
docstring names it): a readiness key that never expires, the first request after a Redis restart,
the failure reasons IT staff act on, a reload that moves the statistics file, a failing reload
hook, sessions from before the library mark, a replaced directory's grace."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from proxy.errors import StoreUnavailable
from proxy.redis_store import READY_TTL_MS, RedisStore
from tests.fixtures_redis import RedisServer

SECRET = b"review-mutstore sealing secret, synthetic"


@pytest.fixture
def raw(redis_server: RedisServer, redis_url: str) -> redis.Redis:
    return redis_server.client()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    backend = RedisStore(url=redis_url, key=SECRET)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.mark.redis
async def test_the_readiness_key_expires_ten_seconds_after_the_last_check(
    store: RedisStore, raw: redis.Redis
) -> None:
    """kills: proxy/redis_store.py:RedisStore.ping — `set(..., px=READY_TTL_MS)` → `set(...)`.

    The readiness check writes one key; it must expire on its own, so an idle Redis ends up empty
    (privacy staff: nothing is kept that outlives its use) and a Redis whose last check is old
    does not look freshly checked."""
    await store.ping()
    keys = raw.keys("*")
    assert keys == [b"weston:ready"]
    assert 0 < raw.pttl(b"weston:ready") <= READY_TTL_MS


@pytest.mark.redis
async def test_the_first_request_after_a_redis_restart_is_served(
    store: RedisStore, redis_server: RedisServer
) -> None:
    """kills: proxy/redis_store.py:RedisStore.__init__ — `Retry(NoBackoff(), 1, …)` → `Retry(NoBackoff(), 0, …)`.

    After Redis restarts (an upgrade, a failover), the pooled connection is dead. The first
    patron whose request uses it must be served (one immediate re-dial), not shown the "store
    down" page while Redis is in fact up."""
    await store.ping()  # a pooled connection exists, as in a running proxy
    redis_server.stop()
    redis_server.start()
    started = time.monotonic()
    await store.ping()  # no StoreUnavailable
    assert await store.get("x" * 43) is None
    assert time.monotonic() - started < 3


@pytest.mark.redis
async def test_a_socket_error_from_the_client_is_store_down_not_a_crash(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kills: proxy/redis_store.py:_store_errors — `except (RedisError, OSError)` → `except RedisError`.

    An OSError that reaches the store from below the client (a socket call redis-py does not
    wrap) must still be "store down" (StoreUnavailable: the 503 page, fail closed), never an
    unhandled error whose message could carry the Redis URL."""

    async def broken(*_: object, **__: object) -> None:
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(store._redis, "get", broken)
    with pytest.raises(StoreUnavailable) as caught:
        await store.get("x" * 43)
    assert caught.value.reason == "connection reset"


def test_every_kind_of_redis_failure_staff_can_act_on_is_named() -> None:
    """kills: proxy/redis_health.py:failure_reason — the `BusyLoadingError` → "loading" branch
    removed; the `NoPermissionError` → "permission denied" branch removed; "MASTERDOWN" dropped from _REPLY_REASONS; "NOPERM"
    dropped from _REPLY_REASONS.

    IT staff read the reason on /readyz and in the log: a Redis still loading its data, an ACL
    user without the rights the proxy needs, a replica whose primary
    is down, each needs a different fix and must not be reported as "connection failed" or
    "error reply"."""
    from redis.exceptions import BusyLoadingError, NoPermissionError, ResponseError

    from proxy.redis_health import failure_reason

    assert failure_reason(BusyLoadingError("Redis is loading the dataset in memory")) == "loading"
    assert failure_reason(NoPermissionError("this user has no permissions")) == (
        "permission denied"
    )
    assert failure_reason(ResponseError("NOPERM this user has no permissions, script: x")) == (
        "permission denied"
    )
    assert failure_reason(ResponseError("MASTERDOWN Link with MASTER is down")) == "primary down"


def test_a_reload_that_moves_the_statistics_file_is_refused(tmp_path: Path) -> None:
    """kills: proxy/reload.py:STATS_RESTART_ONLY — "path" removed.

    The statistics feature opens its file once, at start. A reload that moved it to another file
    must be refused ("only a restart applies this"): answered "reloaded", the counts would still
    go to the old file while IT staff believed the new one was in use, and the monthly report
    read from the new file would miss them."""
    from proxy.config import load_config
    from proxy.reload import restart_only_changes
    from tests.test_config_mutants import vendor, write

    old = load_config(write(tmp_path, {"gale": vendor()}))
    new = dataclasses.replace(old, extra={"stats": {"path": "state/elsewhere.sqlite3"}})
    keys = [p.key for p in restart_only_changes(old, new)]
    assert keys == ["stats.path"]


@pytest.mark.redis
async def test_serve_says_at_start_that_its_redis_is_not_answering(
    tmp_path: Path, port: int, running_slapd: object, vendor_factory: object
) -> None:
    """kills: proxy/services.py:build_services — `await start()` of the session store skipped.

    The proxy starts even when its Redis is down (Redis may come up after it), but IT staff must
    be told once, at start, why: without the probe the first they hear is patrons' 503 pages."""
    from structlog.testing import capture_logs

    from proxy.config import load_config
    from proxy.services import build_services, close_services
    from tests.ports import free_port
    from tests.test_redis_in_production import _proxy_config

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cfg = await _proxy_config(tmp_path, port, running_slapd, vendor_factory, dead)
    with capture_logs() as logs:
        svc = await build_services(load_config(cfg))
    try:
        said = [e for e in logs if e["event"] == "store_unavailable_at_start"]
        assert [e["reason"] for e in said] == ["connection refused"]
    finally:
        await close_services(svc)


async def test_one_features_failing_reload_hook_leaves_the_others_and_the_outcome(
    tmp_path: Path, port: int, vendor_factory: Any
) -> None:
    """kills: proxy/reload.py:Reloader._reload — the `except Exception` around each reload hook
    re-raising instead of logging `reload_hook_failed`.

    The new configuration is already swapped in when the hooks run. One feature failing to
    re-read its settings must not stop the features after it from re-reading theirs (they would
    silently keep the old values), nor leave `weston-proxy reload` without an outcome: the
    reload is reported "reloaded" and the status file is written."""
    from proxy.config import Config, load_config
    from proxy.reload import Reloader, status_path
    from proxy.services import build_services, close_services
    from tests.harness import vendor_toml
    from tests.test_reload import file_directory_config

    vendor = await vendor_factory("one.example.org")
    cfg = file_directory_config(tmp_path, port, {"one": vendor_toml("one", vendor)})
    svc = await build_services(load_config(cfg))
    seen: list[Config] = []

    async def broken(_: Config) -> None:
        raise RuntimeError("a feature that fails on reload")

    async def later(config: Config) -> None:
        seen.append(config)

    svc.hooks.reloaded[:] = [broken, later]
    reloader = Reloader(svc)
    try:
        outcome = await reloader.reload()
        assert outcome.ok, outcome.problems
        assert len(seen) == 1
        assert json.loads(status_path(svc.config).read_text())["outcome"] == "reloaded"
    finally:
        await reloader.close()
        await close_services(svc)


async def test_a_reload_whose_rebuild_meets_a_value_error_is_refused_with_an_outcome(
    tmp_path: Path, port: int, vendor_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kills: proxy/reload.py:Reloader._reload — `except (OSError, ValueError)` around
    rebuild_services → `except OSError`; and proxy/reload.py:Reloader.reload — `_write_status`
    only when the outcome is ok (a refused reload left no status for `weston-proxy reload`).

    Building the new parts can fail with ValueError after the configuration validated (the key
    loader raises it for a key file mangled or made readable by others between the check and the
    rebuild; a secret file gone bad). The reload must be refused — the running configuration
    stays — and say so in the status file `weston-proxy reload` reads, rather than fail with no
    outcome and no log line for IT staff."""
    import proxy.reload
    from proxy.config import load_config
    from proxy.reload import Reloader, status_path
    from proxy.services import build_services, close_services
    from tests.harness import vendor_toml
    from tests.test_reload import file_directory_config

    vendor = await vendor_factory("one.example.org")
    cfg = file_directory_config(tmp_path, port, {"one": vendor_toml("one", vendor)})
    config = load_config(cfg)
    svc = await build_services(config)
    reloader = Reloader(svc)

    async def broken_rebuild(*_: object) -> None:
        raise ValueError("keys/k1.pem: not a readable private key (ValueError)")

    monkeypatch.setattr(proxy.reload, "rebuild_services", broken_rebuild)
    try:
        outcome = await reloader.reload()
        assert not outcome.ok
        assert any("(services)" in p and "ValueError" in p for p in outcome.problems)
        assert json.loads(status_path(svc.config).read_text())["outcome"] == "refused"
        assert svc.config is config  # the running configuration is kept
    finally:
        await reloader.close()
        await close_services(svc)


async def test_sessions_from_before_the_library_mark_stay_held_to_the_rule_at_start(
    tmp_path: Path, port: int, running_slapd: object, vendor_factory: Any
) -> None:
    """kills: proxy/services.py:rebuild_services — `library_mark_at_start=svc.library_mark_at_start`
    dropped (each reload then takes the mark of the rule it installs).

    A session that recorded no library-wide mark (signed in under a version before the mark) is
    held to the eligibility rule in force when this process started. A reload that tightens
    `eligible_filter` must not make such sessions look as if they had been admitted under the
    new rule: they must stay held to the old one, so the tightened rule ends them."""
    from proxy.auth import UNMARKED_LIBRARY_RULE
    from proxy.config import load_config
    from proxy.services import build_services, close_services, rebuild_services
    from tests.harness import ldap_directory, vendor_toml, write_config

    vendor = await vendor_factory("one.example.org")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    config = load_config(cfg)
    svc = await build_services(config)
    at_start = svc.library_mark_at_start
    assert at_start is not None
    tightened = dataclasses.replace(
        config,
        directory=dataclasses.replace(config.directory, eligible_filter="(employeeType=staff)"),
    )
    new = await rebuild_services(svc, tightened)
    try:
        assert new.library_mark_at_start == at_start
        assert new.eligibility[UNMARKED_LIBRARY_RULE] == at_start
    finally:
        await new.upstream.close()
        await new.directory.close()
        await close_services(svc)


async def test_a_replaced_directory_keeps_answering_logins_for_its_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kills: proxy/reload.py:Reloader._retire — the `asyncio.sleep(DIRECTORY_GRACE_S - …)`
    before closing the old directory removed.

    A reload swaps in a new directory while a patron's sign-in may still be waiting on the old
    one. The old directory must stay open for its grace period after its vendor connections are
    closed, so that sign-in is answered instead of failing half-way."""
    from types import SimpleNamespace

    import proxy.reload
    from proxy.reload import Reloader

    monkeypatch.setattr(proxy.reload, "DIRECTORY_GRACE_S", 1.5)
    closed: list[str] = []

    async def close_upstream() -> None:
        closed.append("upstream")

    async def close_directory() -> None:
        closed.append("directory")

    class Part:  # hashable, as the forwarding count keys upstream clients by identity
        def __init__(self, close: Any) -> None:
            self.close = close

    old = SimpleNamespace(
        upstream=Part(close_upstream),
        directory=Part(close_directory),
        config=SimpleNamespace(directory=SimpleNamespace(timeout_s=0.1)),  # grace is 1.5 s
    )
    reloader = Reloader(SimpleNamespace(forwarding={}))  # type: ignore[arg-type]
    task = asyncio.create_task(reloader._retire(old))  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    assert closed == ["upstream"]  # idle upstream closed at once, directory still open
    await asyncio.wait_for(task, 10)
    assert closed == ["upstream", "directory"]
