"""The Redis session store: sessions shared by several proxy processes, sealed so Redis sees nothing.

Layout under the configured prefix (default ``weston:``):

- ``s:<sha256(session id)>`` — the session, JSON sealed with AES-GCM under a key derived from the
  server secret and the session id (proxy.crypto), the Redis key as associated data; expires on
  its own after the session's remaining life. Redis never holds the id, so neither a copy of
  Redis nor that copy with the server secret opens a session.
- ``live`` — sorted set of storage keys scored by expiry (ms, Redis clock): counts live sessions.
- ``born`` — sorted set of storage keys scored by login time (s): records inventory without
  opening any session. Both sets are pruned on every write and read and expire with their last
  member, so an idle Redis ends up empty.
- ``c:<key>`` — fixed-window counters; callers pass keys that are already hashed.
- ``ready`` — "1", written by every readiness check (`ping`) and expiring 10 s later: a store
  that answers but refuses writes (a read-only replica after a failover, full under
  ``noeviction``) is not ready, since every sign-in must write.

`KEY_KINDS` lists these for the records inventory; tests hold it to every key the proxy writes.

Multi-key updates run as Lua scripts so two proxies never see a session without its index entry.
Writes during a request are a compare-and-set (`replace`: only over the value read, by its
SHA-1), so requests of one patron in two proxies never write over each other's changes.
Any failure to get an answer from Redis is StoreUnavailable: "store down" must never look like
"no session". Its `reason` (`failure_reason`) tells staff which failure it was: a refused
password must not look like a Redis that is down.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from proxy.crypto import SessionSealer, Unsealable
from proxy.errors import StoreUnavailable
from proxy.redis_health import SETTINGS, failure_reason, read_settings, settings_warnings
from proxy.sessions import Replaced, Session, storage_key

# Short timeouts: a patron waiting on a dead store should get the "store down" page, not a hang.
_TIMEOUT_S = 2.0

# Lua helpers shared by the scripts. now_ms() reads the Redis clock so every proxy agrees on it.
# prune() drops index entries whose session has expired and lets each index expire with its last
# member.
_PRUNE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function prune(live, born, now)
  local dead = redis.call('ZRANGEBYSCORE', live, '-inf', now)
  for i = 1, #dead, 500 do
    local batch = {unpack(dead, i, math.min(i + 499, #dead))}
    redis.call('ZREM', live, unpack(batch))
    redis.call('ZREM', born, unpack(batch))
  end
  local last = redis.call('ZRANGE', live, -1, -1, 'WITHSCORES')
  if #last == 2 then
    local at = string.format('%d', math.ceil(tonumber(last[2])))
    redis.call('PEXPIREAT', live, at)
    redis.call('PEXPIREAT', born, at)
  end
end
"""

# KEYS: session key, live, born. ARGV: sealed value, ttl ms, member, created (s).
_STORE = """
local now = now_ms()
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], string.format('%d', now + tonumber(ARGV[2])), ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
prune(KEYS[2], KEYS[3], now)
return 1
"""
_PUT = _PRUNE + _STORE
# `_PUT` only while the session key still exists (a session that ended stays ended) and holds
# the value read (ARGV[5]: its SHA-1, as `_version` gives): 1 stored, 0 ended, -1 changed
# meanwhile. Each seal has a fresh nonce, so every write changes the value even when the
# session's content is the same.
_REPLACE = (
    _PRUNE
    + """
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
if redis.sha1hex(current) ~= ARGV[5] then
  return -1
end
"""
    + _STORE
)

# KEYS: session key, live, born. ARGV: member.
_DELETE = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# KEYS: live, born. Returns the number of live sessions.
_COUNT = _PRUNE + "\nprune(KEYS[1], KEYS[2], now_ms())\nreturn redis.call('ZCARD', KEYS[1])\n"

# KEYS: live, born. Returns login times (as strings, to keep fractions) of live sessions.
_CREATED = (
    _PRUNE
    + """
prune(KEYS[1], KEYS[2], now_ms())
local out = {}
local rows = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 2, #rows, 2 do out[#out + 1] = rows[i] end
return out
"""
)


# Key names under the prefix, and what each holds, for the records inventory (proxy/records.py).
SESSION_KEYS = "s:"
LIVE_KEY = "live"
BORN_KEY = "born"
COUNTER_KEYS = "c:"
READY_KEY = "ready"
READY_TTL_MS = 10_000
KEY_KINDS = (
    (SESSION_KEYS, "sessions (sealed: encrypted with a key only the proxies hold)"),
    (LIVE_KEY, "index of live sessions (hashed session ids and when each expires)"),
    (BORN_KEY, "index of login times (hashed session ids and when each signed in)"),
    (COUNTER_KEYS, "rate counters (numbers that expire with their window)"),
    (READY_KEY, 'readiness check ("1", expires 10 s after the last check)'),
)


@contextmanager
def _store_errors() -> Iterator[None]:
    """Turn every way Redis can fail to answer into StoreUnavailable (fail closed)."""
    try:
        yield
    except (RedisError, OSError) as exc:
        # Only the exception type and its kind: messages may carry the Redis URL.
        reason = failure_reason(exc)
        raise StoreUnavailable(
            f"session store (redis) did not answer: {type(exc).__name__} ({reason})",
            reason=reason,
        ) from exc


def _version(blob: bytes) -> str:
    """What `_REPLACE` compares: the stored value's SHA-1 (a fingerprint, not a secret)."""
    return hashlib.sha1(blob, usedforsecurity=False).hexdigest()


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisStore:
    """Sessions in Redis, each sealed under a key from the server secret and its own id; for
    several proxy processes."""

    def __init__(
        self, *, url: str, key: bytes, password: str | None = None, prefix: str = "weston:"
    ) -> None:
        self._sealer = SessionSealer(key)
        self._prefix = prefix
        self._live = prefix + LIVE_KEY
        self._born = prefix + BORN_KEY
        options: dict[str, Any] = {
            "socket_connect_timeout": _TIMEOUT_S,
            "socket_timeout": _TIMEOUT_S,
            # One immediate retry re-dials a pooled connection Redis dropped (restart, failover).
            # Timeouts are not retried, and the library default (10 retries with backoff) is not
            # used: either would keep a patron waiting well past _TIMEOUT_S on a hung Redis.
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            "health_check_interval": 30,
        }
        if password is not None:
            options["password"] = password
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url, **options)
        self._put = self._redis.register_script(_PUT)
        self._replace = self._redis.register_script(_REPLACE)
        self._delete = self._redis.register_script(_DELETE)
        self._count = self._redis.register_script(_COUNT)
        self._created = self._redis.register_script(_CREATED)

    def _session_key(self, session_id: str) -> tuple[str, str]:
        """(Redis key, index member) for a session id; the id itself never reaches Redis."""
        member = storage_key(session_id)
        return self._prefix + SESSION_KEYS + member, member

    async def put(self, session: Session, ttl_s: float) -> None:
        await self._store(self._put, session, ttl_s)

    async def replace(self, session: Session, ttl_s: float, version: str) -> Replaced:
        stored = await self._store(self._replace, session, ttl_s, version)
        return "stored" if stored == 1 else "changed" if stored == -1 else "ended"

    async def _store(
        self, script: AsyncScript, session: Session, ttl_s: float, *version: str
    ) -> int:
        redis_key, member = self._session_key(session.id)
        if ttl_s <= 0:
            # Already past its life: the same outcome as storing it and letting it expire.
            await self.delete(session.id)
            return 0
        plaintext = json.dumps(session.to_dict(), separators=(",", ":")).encode()
        blob = self._sealer.seal(session.id, plaintext, redis_key.encode())
        keys = [redis_key, self._live, self._born]
        args: list[bytes | str | int] = [blob, _ms(ttl_s), member, repr(session.created), *version]
        with _store_errors():
            return int(await script(keys=keys, args=args))

    async def get(self, session_id: str) -> Session | None:
        got = await self.get_versioned(session_id)
        return None if got is None else got[0]

    async def get_versioned(self, session_id: str) -> tuple[Session, str] | None:
        redis_key, _ = self._session_key(session_id)
        with _store_errors():
            blob = cast(bytes | None, await self._redis.get(redis_key))
        if blob is None:
            return None
        try:
            data = json.loads(self._sealer.open(session_id, blob, redis_key.encode()))
        except Unsealable:
            # A value this proxy cannot open (another key, tampering) is no session: the patron
            # logs in again. Nothing identifying is logged, and the value is left for its owner.
            structlog.get_logger(__name__).warning("session_store.unsealable_value")
            return None
        session = Session.from_dict(data)
        return (session, _version(blob)) if session.id == session_id else None

    async def delete(self, session_id: str) -> None:
        redis_key, member = self._session_key(session_id)
        with _store_errors():
            await self._delete(keys=[redis_key, self._live, self._born], args=[member])

    async def count(self) -> int:
        with _store_errors():
            return int(await self._count(keys=[self._live, self._born]))

    async def ages(self) -> list[float]:
        with _store_errors():
            created = cast(list[bytes], await self._created(keys=[self._live, self._born]))
        now = time.time()
        return [now - float(c) for c in created]

    async def incr(self, key: str, window_s: float, *, by: int = 1) -> int:
        counter = self._prefix + COUNTER_KEYS + key
        with _store_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(counter, by)
                # NX: the window starts at the first hit and is not pushed back by later ones.
                pipe.pexpire(counter, _ms(window_s), nx=True)
                value, _ = await pipe.execute()
        return int(value)

    async def ping(self) -> None:
        """A write, not a PING: a Redis that answers but refuses writes (READONLY, OOM) cannot
        take a sign-in, so it is not ready. One tiny key, no patron data, gone after 10 s."""
        with _store_errors():
            await self._redis.set(self._prefix + READY_KEY, b"1", px=READY_TTL_MS)

    async def start(self) -> None:
        """At serve start, say once what is wrong with Redis, without refusing to start: Redis
        may come up after the proxy (a store that is down is a 503 until it answers)."""
        log = structlog.get_logger(__name__)
        try:
            await self.ping()
        except StoreUnavailable as exc:
            log.warning("store_unavailable_at_start", dependency="store", reason=exc.reason)
            return
        for warning in await self.settings_warnings():
            log.warning("store_settings", dependency="store", reason=warning)

    async def settings_warnings(self) -> list[str]:
        """`settings_warnings` for this Redis; none when its CONFIG cannot be read."""
        try:
            answers = {}
            for name in SETTINGS:
                answers[name] = await self._redis.config_get(name)
        except (RedisError, OSError):
            return []
        return settings_warnings(read_settings(answers.get))

    async def close(self) -> None:
        await self._redis.aclose()


__all__ = ["KEY_KINDS", "RedisStore"]
