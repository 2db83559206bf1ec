"""The records inventory: what the proxy holds right now and where, as counts and kinds only.

This is the answer staff give when asked what records exist (the policy's "Surrender of Records").
It never opens a session, a cookie jar or a log line: sessions are counted from the store's index
(Redis) or from the running proxy's /metrics (memory store, where sessions exist only inside that
process), statistics are described by size and date span, keys by number.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import redis
from prometheus_client.parser import text_string_to_metric_families

from proxy.assertion import load_keys
from proxy.config import Config
from proxy.errors import StoreUnavailable
from proxy.metrics import AGE_BUCKETS, age_buckets
from proxy.redis_health import failure_reason, read_settings, settings_warnings
from proxy.redis_store import KEY_KINDS
from proxy.secrets_ import SecretError
from proxy.stats import REDIS_PREFIX, redis_password, stats_inventory, stats_settings
from proxy.stats_store import REDIS_BATCH_PREFIX, REDIS_SEEN_PREFIX

NO_PATRON_DATA = (
    "Counts and kinds only: no patron, card number, name, address, session id, URL or search "
    "is shown, and none is kept in statistics or logs."
)
_AGE_TEXT = {
    "under_15m": "under 15 min",
    "15m_to_1h": "15 min to 1 h",
    "1h_to_4h": "1 h to 4 h",
    "4h_or_more": "4 h or more",
}
# Every key the proxy writes, by prefix (statistics days, REDIS_PREFIX, are described apart);
# tests/test_redis_in_production.py holds this to every `weston:` key named in proxy/.
_SESSION_STORE_PREFIX = "weston:"
_REDIS_KINDS = (
    *((_SESSION_STORE_PREFIX + name, what) for name, what in KEY_KINDS),
    (
        REDIS_SEEN_PREFIX,
        "unique-session token sets (keyed digests of session ids, per hour; two hours at most)",
    ),
    (REDIS_BATCH_PREFIX, "statistics batch ids (random, nothing else; 24 hours)"),
)


def _unspecified(host: str) -> bool:
    try:
        return not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _metrics_host(config: Config) -> str:
    """Where `records` reaches the running proxy (and so the address it asks from)."""
    host = config.listen_addr[0]
    if _unspecified(host):  # listening on every address: reach it on loopback
        host = "::1" if ":" in host else "127.0.0.1"
    return host


def _running_proxy_metrics(config: Config, timeout_s: float) -> dict[str, Any]:
    """Active sessions and ages as the running proxy's /metrics reports them."""
    host, port = _metrics_host(config), config.listen_addr[1]
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    req = urllib.request.Request(
        f"http://{netloc}/metrics", headers={"Host": urlsplit(config.server.public_url).netloc}
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (own listen address)
        text = resp.read().decode("utf-8")
    active: int | None = None
    ages = {name: 0 for _, name in AGE_BUCKETS}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "weston_proxy_active_sessions":
                active = int(sample.value)
            elif sample.name == "weston_proxy_session_ages" and sample.labels.get("age") in ages:
                ages[sample.labels["age"]] = int(sample.value)
    return {"active": active, "ages": ages}


def _refused(exc: urllib.error.HTTPError, config: Config, host: str) -> str:
    why = f"HTTP {exc.code}"
    if exc.code in (403, 404):  # the proxy answers /metrics outside metrics_from with 404
        why += (
            f": /metrics is answered only to `server.metrics_from`, which does not include "
            f"{host}, the address `records` asks from; add it to read the count"
        )
    return (
        f"a proxy answered at {config.server.listen} but refused /metrics ({why}); "
        "it may hold sessions: how many is unknown"
    )


def _memory_sessions(config: Config, timeout_s: float) -> dict[str, Any]:
    info: dict[str, Any] = {
        "store": "memory",
        "where": "the memory of the running proxy process only; nothing on disk",
        "unknown": False,  # True: sessions may exist but could not be counted
    }
    host = _metrics_host(config)
    try:
        info.update(_running_proxy_metrics(config, timeout_s))
    except urllib.error.HTTPError as exc:  # an answer, not an absence: the count is unknown
        exc.close()
        info.update(active=None, ages=None, unknown=True, source=_refused(exc, config, host))
        return info
    except (OSError, urllib.error.URLError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        info.update(active=None, ages=None)
        if isinstance(reason, ConnectionRefusedError):  # nothing listens: no proxy, no session
            info["source"] = (
                f"no proxy listens at {config.server.listen} ({type(reason).__name__}); "
                "when no proxy runs, no session exists"
            )
        else:  # something holds the address but gave no count (timeout, reset, not /metrics)
            info["unknown"] = True
            info["source"] = (
                f"nothing gave a count at {config.server.listen} ({type(reason).__name__}); "
                "a proxy there may hold sessions: how many is unknown"
            )
        return info
    if info["active"] is None:
        info["unknown"] = True
        info["source"] = (
            f"the running proxy's /metrics at {config.server.listen} has no "
            "weston_proxy_active_sessions: how many sessions it holds is unknown"
        )
        return info
    info["source"] = (
        f"the running proxy's /metrics at {config.server.listen} "
        f"(ages refreshed every {stats_settings(config).refresh_interval_s:g} s)"
    )
    return info


async def _redis_session_counts(config: Config) -> tuple[int, list[float]]:
    from proxy.redis_store import RedisStore

    # count() and ages() read the store's index of login times and open no value, so no
    # sealing key is needed: a throwaway one makes plain that nothing could be decrypted.
    store = RedisStore(
        url=config.session.redis_url, key=b"\0" * 32, password=redis_password(config)
    )
    try:
        return await store.count(), await store.ages()
    finally:
        await store.close()


def _settings_warnings(client: redis.Redis) -> list[str]:
    """What in this Redis's settings weakens the proxy's promises; nothing when its CONFIG
    cannot be read (renamed away, a managed Redis): then nothing is said."""
    try:
        return settings_warnings(read_settings(client.config_get))
    except (redis.RedisError, OSError):
        return []


def _match(prefix: str) -> str:
    """The SCAN pattern for a kind: a prefix ending in ':' names a family, else one key."""
    return f"{prefix}*" if prefix.endswith(":") else prefix


def _redis_keys(config: Config) -> dict[str, Any]:
    """How many Redis keys of each kind exist, and the span of statistics days; no values."""
    client = redis.Redis.from_url(
        config.session.redis_url, password=redis_password(config), socket_timeout=2.0
    )
    try:
        kinds = {
            what: sum(1 for _ in client.scan_iter(match=_match(prefix), count=500))
            for prefix, what in _REDIS_KINDS
        }
        days = sorted(
            (raw.decode() if isinstance(raw, bytes) else str(raw)).removeprefix(REDIS_PREFIX)
            for raw in client.scan_iter(match=f"{REDIS_PREFIX}*", count=500)
        )
        warnings = _settings_warnings(client)
    finally:
        client.close()
    return {
        "key_kinds": kinds,
        "settings_warnings": warnings,
        "statistics": {
            "where": f"Redis hashes {REDIS_PREFIX}<day> at the session store",
            "days": len(days),
            "first_day": days[0] if days else None,
            "last_day": days[-1] if days else None,
            "holds": "aggregate counts per day, vendor and metric; no patron, session or URL",
        },
    }


def _redis_sessions(config: Config) -> dict[str, Any]:
    info: dict[str, Any] = {
        "store": "redis",
        "where": (
            "the shared Redis session store (keys are hashes of session ids; each value is "
            "sealed under a key that needs its session id, which only the patron's browser holds)"
        ),
        "unknown": False,
    }
    try:
        active, ages = asyncio.run(_redis_session_counts(config))
        info.update(active=active, ages=age_buckets(ages), source="the Redis session index")
        info.update(_redis_keys(config))
    except (StoreUnavailable, redis.RedisError, OSError, SecretError) as exc:
        info.update(active=None, ages=None, unknown=True, source=_redis_failure(exc))
    return info


def _redis_failure(exc: Exception) -> str:
    """Why Redis gave no count, in the words staff need: an answer that refused (a wrong
    password, a read-only replica) is not a Redis that did not answer."""
    if isinstance(exc, SecretError):
        return f"the Redis password could not be read (session.redis_password_file): {exc}"
    reason = exc.reason if isinstance(exc, StoreUnavailable) else failure_reason(exc)
    if reason == "authentication":
        return (
            "Redis answered but refused the password (authentication): check "
            "session.redis_password_file against Redis's requirepass"
        )
    if reason in (
        "connection refused",
        "connection reset",
        "dns",
        "timeout",
        "connection failed",
        "unavailable",
    ):
        return f"Redis did not answer ({reason})"
    return f"Redis answered with an error ({reason})"


def _key_inventory(config: Config) -> dict[str, Any]:
    key_dir = config.resolve(config.keys.dir)
    return {
        "dir": str(key_dir),
        "count": len(load_keys(key_dir)),
        "holds": "Ed25519 signing keys for assertions; public halves are published at "
        "/.well-known/jwks.json. No patron data.",
    }


def inventory(config: Config, *, timeout_s: float = 3.0) -> dict[str, Any]:
    """Everything the proxy holds at this moment, as counts, kinds and places."""
    s = config.session
    sessions = (
        _redis_sessions(config) if s.store == "redis" else _memory_sessions(config, timeout_s)
    )
    sessions["retention"] = {
        "idle_timeout_s": s.idle_timeout_s,
        "lifetime_s": s.lifetime_s,
        "rule": "a session ends after idle_timeout_s without a request and at most lifetime_s "
        "after login; logout ends it at once; the store expires it even if no proxy runs",
    }
    stats = stats_inventory(stats_settings(config))
    if s.store == "redis":
        stats["note"] = "with store = redis the proxies count into Redis (see sessions)"
    return {
        "taken_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "config": str(config.path),
        "statement": NO_PATRON_DATA,
        "sessions": sessions,
        "cookie_jars": {
            "where": "inside each session, one per vendor the session visited",
            "count": None,
            "holds": "cookies vendors set for that session; destroyed with the session",
            "note": "not counted separately: they are kept inside sessions, so "
            "there are at most active sessions x vendors",
        },
        "statistics": stats,
        "signing_keys": _key_inventory(config),
        "logs": {
            "destination": "stdout (structured lines; the host's journal keeps them)",
            "level": config.logging.level,
            "format": config.logging.format,
            "holds": "events without patron, client address, URL query or search; "
            "retention is set in the host's journal (see docs/records-and-retention.md)",
        },
    }


def _ages_text(ages: dict[str, int] | None) -> str:
    if ages is None:
        return "unknown"
    return ", ".join(f"{_AGE_TEXT[name]}: {ages.get(name, 0)}" for _, name in AGE_BUCKETS)


def render_text(inv: dict[str, Any]) -> str:
    s, st, k, lg = inv["sessions"], inv["statistics"], inv["signing_keys"], inv["logs"]
    r = s["retention"]
    ages = _ages_text(s["ages"])
    if s["unknown"]:
        count = "number unknown, sessions may exist (see counted from)"
    elif s["active"] is None:  # not counted because nothing holds any: no proxy process runs
        count, ages = "none held (no proxy runs)", "no session"
    else:
        count = f"{s['active']} active"
    lines = [
        f"Records held by the Weston patron proxy at {inv['taken_at']} ({inv['config']})",
        inv["statement"],
        "",
        f"Sessions: {count}; store {s['store']}: {s['where']}",
        f"  age since login: {ages}",
        f"  counted from: {s['source']}",
        f"  retention: idle timeout {r['idle_timeout_s']} s, lifetime at most {r['lifetime_s']} s",
    ]
    for what, n in s.get("key_kinds", {}).items():
        lines.append(f"  redis keys: {n} {what}")
    for warning in s.get("settings_warnings", []):
        lines.append(f"  warning: this Redis {warning}")
    cj = inv["cookie_jars"]
    lines += ["", f"Cookie jars: {cj['where']}; {cj['holds']}", f"  {cj['note']}", ""]
    if st["exists"] and st.get("error"):
        # Never "empty": what it holds is unknown.
        lines.append(
            f"Statistics file: {st['path']} ({st['size_bytes']} bytes, could not be read: "
            f"{st['error']}; what it holds is unknown)"
        )
    elif st["exists"]:
        span = f"{st['first_day']} to {st['last_day']}" if st["rows"] else "empty"
        lines.append(f"Statistics file: {st['path']} ({st['size_bytes']} bytes, {span})")
    else:
        lines.append(f"Statistics file: {st['path']} (not created yet)")
    lines.append(f"  holds: {st['holds']}")
    rs = s.get("statistics")
    if rs:
        span = f"{rs['first_day']} to {rs['last_day']}" if rs["days"] else "empty"
        lines.append(f"Statistics in Redis: {rs['days']} day(s), {span}; {rs['where']}")
    lines += [
        "",
        f"Signing keys: {k['count']} in {k['dir']}",
        f"  {k['holds']}",
        "",
        f"Logs: {lg['destination']}, level {lg['level']}, format {lg['format']}",
        f"  holds: {lg['holds']}",
    ]
    return "\n".join(lines) + "\n"


def render_json(inv: dict[str, Any]) -> str:
    return json.dumps(inv, indent=2, sort_keys=True) + "\n"
