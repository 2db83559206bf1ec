"""What Redis's failures and settings mean to library staff: a short reason for a failure (a
refused password is not a Redis that is down) and the settings that weaken the proxy's promises.

Only kinds and setting names leave here, never a message from Redis: those may carry the URL or
a key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy.errors import network_failure

SETTINGS = ("save", "appendonly", "maxmemory-policy")
# network_failure's kinds, in the words the store's reasons use.
_NETWORK_REASONS = {"refused": "connection refused", "reset": "connection reset"}

# Redis's own error replies, by the word they start with, when redis-py has no class for it.
_REPLY_REASONS = {
    "NOAUTH": "authentication",
    "WRONGPASS": "authentication",
    "NOPERM": "permission denied",
    "READONLY": "read-only",
    "OOM": "out of memory",
    "LOADING": "loading",
    "MASTERDOWN": "primary down",
}


def failure_reason(exc: BaseException) -> str:
    """A short kind of failure for staff ("authentication", "connection refused", "timeout",
    "read-only", "out of memory" …). Never the message: it may carry the URL or a key."""
    if isinstance(exc, AuthenticationError | AuthenticationWrongNumberOfArgsError):
        return "authentication"
    if isinstance(exc, NoPermissionError):
        return "permission denied"
    if isinstance(exc, ReadOnlyError):
        return "read-only"
    if isinstance(exc, OutOfMemoryError):
        return "out of memory"
    if isinstance(exc, BusyLoadingError):
        return "loading"
    if isinstance(exc, ResponseError):
        # Errors raised inside a script keep Redis's own code as their first word.
        words = str(exc).split(maxsplit=1)
        return _REPLY_REASONS.get(words[0] if words else "", "error reply")
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return "timeout"
    # What the socket met, as every other server's failures are read (errors.network_failure):
    # redis-py raises its ConnectionError from the socket's error.
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    found = network_failure(chain)
    if found is not None:
        return _NETWORK_REASONS.get(found[0], found[0])
    if isinstance(exc, RedisConnectionError | OSError):
        return "connection failed"
    return "error"


def settings_warnings(settings: dict[str, str]) -> list[str]:
    """What in a Redis's settings (CONFIG GET save, appendonly, maxmemory-policy) weakens the
    proxy's promises: persistence keeps sealed sessions and counters on disk past their life
    (P5: nothing to surrender), eviction drops counters before their window ends (the throttle's
    bounds) and sessions before their time."""
    out = []
    if settings.get("save", "").strip():
        out.append('persists to disk (save is set); set save ""')
    if settings.get("appendonly", "no").strip().lower() == "yes":
        out.append("persists to disk (appendonly yes); set appendonly no")
    policy = settings.get("maxmemory-policy", "noeviction").strip().lower()
    if policy != "noeviction":
        out.append(f"evicts keys before they expire (maxmemory-policy {policy}); set noeviction")
    return out


def _config_value(raw: Any, name: str) -> str | None:
    if not isinstance(raw, dict):
        return None
    for key, value in raw.items():
        k = key.decode() if isinstance(key, bytes) else str(key)
        if k == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def read_settings(get: Callable[[str], Any]) -> dict[str, str]:
    """The settings `settings_warnings` needs, from a CONFIG GET callable's answers; those it
    could not read are left out (CONFIG renamed away, a managed Redis, no permission)."""
    out = {}
    for name in SETTINGS:
        value = _config_value(get(name), name)
        if value is not None:
            out[name] = value
    return out


__all__ = ["SETTINGS", "failure_reason", "read_settings", "settings_warnings"]
