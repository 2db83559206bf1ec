"""What only the Redis store must do: keep Redis opaque and self-cleaning, and fail closed when down.

These run against a real redis-server (tests/fixtures_redis.py) and read it with a plain client,
the way anyone holding a copy of Redis could.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from structlog.testing import capture_logs

from proxy.crypto import SessionSealer, Unsealable
from proxy.errors import StoreUnavailable
from proxy.redis_store import RedisStore
from proxy.sessions import Session, new_session_id, storage_key
from tests.canary import CANARY, WREN, leaks
from tests.fixtures_redis import RedisServer

pytestmark = pytest.mark.redis

SECRET = b"redis-store test sealing secret, synthetic"
PATRON_KEY = "pk-7f3e9a1c-synthetic-patron-key"


def canary_session() -> Session:
    """A session carrying canary data everywhere a handler could put it."""
    now = time.time()
    return Session(
        id=new_session_id(),
        patron_key=PATRON_KEY,
        databases=frozenset({"ebsco"}),
        created=now,
        last_seen=now,
        csrf="csrf-token-synthetic-5150",
        jars={"ebsco": [{"name": "patron", "value": WREN.email, "domain": "ebscohost.com"}]},
        state={"login": {"username": CANARY.uid, "name": CANARY.cn, "address": CANARY.address}},
        hosts=["search.ebscohost.com", "web.b.ebscohost.com"],  # which vendors: P5, sealed
    )


def raw_keys(client: redis.Redis) -> list[bytes]:
    return cast(list[bytes], client.keys("*"))


def raw_get(client: redis.Redis, key: str | bytes) -> bytes:
    return cast(bytes | None, client.get(key)) or b""


def dump(client: redis.Redis) -> bytes:
    """Every key name and every value Redis holds, concatenated."""
    parts: list[bytes] = []
    for key in raw_keys(client):
        parts.append(key)
        kind = client.type(key)
        if kind == b"string":
            parts.append(raw_get(client, key))
        elif kind == b"zset":
            rows = cast(list[tuple[bytes, float]], client.zrange(key, 0, -1, withscores=True))
            for member, score in rows:
                parts += [member, repr(score).encode()]
        else:
            pytest.fail(f"unexpected Redis type {kind!r} at {key!r}")
    return b"\n".join(parts)


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


# --- opaque ------------------------------------------------------------------------------------


async def test_raw_redis_holds_no_canary_value(store: RedisStore, raw: redis.Redis) -> None:
    await store.put(canary_session(), 30)
    await store.incr(storage_key("counter-of-something"), 30)
    held = dump(raw)
    assert held, "the session should be in Redis"
    assert leaks(held) == []


async def test_raw_redis_holds_no_session_id_patron_key_or_csrf(
    store: RedisStore, raw: redis.Redis
) -> None:
    session = canary_session()
    await store.put(session, 30)
    held = dump(raw)
    for secret in (session.id, PATRON_KEY, session.csrf, "ebsco"):
        assert secret.encode() not in held, secret


async def test_session_is_filed_under_the_hash_of_its_id(
    store: RedisStore, raw: redis.Redis
) -> None:
    session = canary_session()
    await store.put(session, 30)
    assert raw.exists("weston:s:" + storage_key(session.id)) == 1


async def test_prefix_keeps_stores_apart(redis_url: str, raw: redis.Redis) -> None:
    a = RedisStore(url=redis_url, key=SECRET, prefix="east:")
    b = RedisStore(url=redis_url, key=SECRET, prefix="west:")
    try:
        session = canary_session()
        await a.put(session, 30)
        assert await b.get(session.id) is None
        assert (await a.count(), await b.count()) == (1, 0)
        assert all(k.startswith(b"east:") for k in raw_keys(raw))
    finally:
        await a.close()
        await b.close()


# --- self-cleaning -----------------------------------------------------------------------------


async def test_every_key_has_a_ttl_no_longer_than_the_session(
    store: RedisStore, raw: redis.Redis
) -> None:
    await store.put(canary_session(), 30)
    await store.put(canary_session(), 10)
    await store.incr("k-hashed", 20)
    keys = raw.keys("*")
    assert len(keys) == 5  # two sessions, live, born, one counter
    for key in keys:
        assert 0 < raw.pttl(key) <= 30_000, key


async def test_nothing_of_a_session_remains_after_expiry(
    store: RedisStore, raw: redis.Redis
) -> None:
    """No read is needed: the session and its index entries expire on their own."""
    await store.put(canary_session(), 0.3)
    await store.incr("k-hashed", 0.3)
    await asyncio.sleep(0.6)
    assert raw.keys("*") == []
    assert raw.dbsize() == 0


async def test_nothing_of_a_session_remains_after_delete(
    store: RedisStore, raw: redis.Redis
) -> None:
    session = canary_session()
    await store.put(session, 30)
    await store.delete(session.id)
    assert raw.keys("*") == []


async def test_expired_entries_leave_the_index_when_others_remain(
    store: RedisStore, raw: redis.Redis
) -> None:
    short = canary_session()
    await store.put(short, 0.3)
    await store.put(canary_session(), 30)
    await asyncio.sleep(0.5)
    assert await store.count() == 1
    member = storage_key(short.id).encode()
    assert member not in raw.zrange("weston:live", 0, -1)
    assert member not in raw.zrange("weston:born", 0, -1)


# --- sealed ------------------------------------------------------------------------------------


async def test_a_store_with_another_key_sees_no_session(redis_url: str, store: RedisStore) -> None:
    session = canary_session()
    await store.put(session, 30)
    other = RedisStore(url=redis_url, key=b"a different secret, also synthetic")
    try:
        with capture_logs() as logs:
            assert await other.get(session.id) is None
    finally:
        await other.close()
    assert [e["event"] for e in logs] == ["session_store.unsealable_value"]
    assert session.id not in repr(logs) and storage_key(session.id) not in repr(logs)
    assert await store.get(session.id) is not None, "the owner's session is left alone"


async def test_a_value_copied_under_another_session_key_does_not_open(
    store: RedisStore, raw: redis.Redis
) -> None:
    victim, attacker = canary_session(), canary_session()
    await store.put(victim, 30)
    await store.put(attacker, 30)
    raw.set(
        "weston:s:" + storage_key(attacker.id), raw_get(raw, "weston:s:" + storage_key(victim.id))
    )
    assert await store.get(attacker.id) is None


async def test_a_tampered_value_does_not_open(store: RedisStore, raw: redis.Redis) -> None:
    session = canary_session()
    await store.put(session, 30)
    key = "weston:s:" + storage_key(session.id)
    blob = bytearray(raw_get(raw, key))
    blob[-1] ^= 0x01
    raw.set(key, bytes(blob))
    assert await store.get(session.id) is None


def test_sealing_twice_gives_different_blobs() -> None:
    sealer = SessionSealer(SECRET)
    assert sealer.seal("id", b"same", b"aad") != sealer.seal("id", b"same", b"aad")


def test_sealed_blob_opens_only_with_its_aad() -> None:
    sealer = SessionSealer(SECRET)
    blob = sealer.seal("id", b"plain", b"weston:s:aaa")
    assert sealer.open("id", blob, b"weston:s:aaa") == b"plain"
    with pytest.raises(Unsealable):
        sealer.open("id", blob, b"weston:s:bbb")


def test_sealed_blob_opens_only_with_its_session_id() -> None:
    sealer = SessionSealer(SECRET)
    session_id = new_session_id()
    blob = sealer.seal(session_id, b"plain", b"aad")
    assert sealer.open(session_id, blob, b"aad") == b"plain"
    for wrong in (new_session_id(), storage_key(session_id), session_id[:-1], ""):
        with pytest.raises(Unsealable):
            sealer.open(wrong, blob, b"aad")


# --- someone holding a copy of Redis and every secret of the proxy ------------------------------
#
# The store never holds a session id, only its hash; each session is sealed under a key derived
# from the server secret and the id. So the secret, the store's keys and the store's values
# together open nothing: only a request carrying the patron's cookie does.


def _v1_key() -> bytes:
    """Version 1's one store-wide key, from the server secret alone."""
    info = b"weston-proxy session store sealing v1"
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(SECRET)


def _v1_blob(plaintext: bytes, aad: bytes) -> bytes:
    """A session sealed the way version 1 did."""
    nonce = os.urandom(12)
    return b"\x01" + nonce + AESGCM(_v1_key()).encrypt(nonce, plaintext, aad)


async def test_the_server_secret_and_a_copy_of_redis_open_no_session(
    store: RedisStore, raw: redis.Redis
) -> None:
    session = canary_session()
    await store.put(session, 30)
    redis_key = "weston:s:" + storage_key(session.id)
    blob = raw_get(raw, redis_key)
    member = storage_key(session.id)
    # What such a holder can try: the secret's store-wide key (version 1), and a per-session key
    # from everything the copy shows about the session (its hash, its Redis key).
    with pytest.raises(InvalidTag):
        AESGCM(_v1_key()).decrypt(blob[1:13], blob[13:], redis_key.encode())
    sealer = SessionSealer(SECRET)
    for guess in (member, redis_key, "", "weston:"):
        with pytest.raises(Unsealable):
            sealer.open(guess, blob, redis_key.encode())
    # The patron's cookie value is what opens it.
    opened = json.loads(sealer.open(session.id, blob, redis_key.encode()))
    assert opened["hosts"] == session.hosts


async def test_a_session_sealed_by_version_1_is_no_session(
    store: RedisStore, raw: redis.Redis
) -> None:
    """A version-1 blob (the secret alone keys it) is not opened: whoever holds the secret could
    otherwise write one under a live session's Redis key and change that patron's session."""
    session = canary_session()
    await store.put(session, 30)
    redis_key = "weston:s:" + storage_key(session.id)
    plaintext = json.dumps(session.to_dict()).encode()
    raw.set(redis_key, _v1_blob(plaintext, redis_key.encode()), px=30_000)
    with capture_logs() as logs:
        assert await store.get(session.id) is None
    assert [e["event"] for e in logs] == ["session_store.unsealable_value"]


def test_short_secret_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        RedisStore(url=redis_url, key=b"too short")


# --- fail closed -------------------------------------------------------------------------------

Operation = Callable[[RedisStore], Awaitable[Any]]
OPERATIONS: dict[str, Operation] = {
    "get": lambda s: s.get(new_session_id()),
    "put": lambda s: s.put(canary_session(), 30),
    "delete": lambda s: s.delete(new_session_id()),
    "count": lambda s: s.count(),
    "ages": lambda s: s.ages(),
    "incr": lambda s: s.incr("k-hashed", 30),
    "ping": lambda s: s.ping(),
}


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_store_down_raises_store_unavailable_quickly(
    operation: str, store: RedisStore, redis_server: RedisServer
) -> None:
    await store.ping()  # a pooled connection exists, as in a running proxy
    redis_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await OPERATIONS[operation](store)
        assert time.monotonic() - started < 3
    finally:
        redis_server.start()


async def test_hung_redis_raises_store_unavailable_within_3_s() -> None:
    """A Redis that accepts connections but never answers (overloaded, half-dead host)."""

    async def accept_and_stay_silent(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore(url=f"redis://127.0.0.1:{port}/0", key=SECRET)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.get(new_session_id())
        assert time.monotonic() - started < 3
    finally:
        await store.close()
        server.close()


async def test_store_works_again_after_redis_comes_back(
    store: RedisStore, redis_server: RedisServer
) -> None:
    await store.ping()
    redis_server.stop()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    redis_server.start()
    await store.ping()
    session = canary_session()
    await store.put(session, 30)
    assert await store.get(session.id) == session


async def test_wrong_redis_password_is_store_unavailable(redis_url: str, raw: redis.Redis) -> None:
    raw.config_set("requirepass", "synthetic-redis-password")
    try:
        right = RedisStore(url=redis_url, key=SECRET, password="synthetic-redis-password")
        wrong = RedisStore(url=redis_url, key=SECRET, password="not-the-password")
        try:
            await right.ping()
            with pytest.raises(StoreUnavailable):
                await wrong.ping()
        finally:
            await right.close()
            await wrong.close()
    finally:
        raw.auth("synthetic-redis-password")
        raw.config_set("requirepass", "")


# --- shared between proxy processes ------------------------------------------------------------


async def test_two_proxies_sharing_redis_see_each_others_sessions(redis_url: str) -> None:
    first = RedisStore(url=redis_url, key=SECRET)
    second = RedisStore(url=redis_url, key=SECRET)
    try:
        session = canary_session()
        await first.put(session, 30)
        assert await second.get(session.id) == session
        assert await second.count() == 1
        await second.delete(session.id)
        assert await first.get(session.id) is None
    finally:
        await first.close()
        await second.close()


async def test_two_proxies_share_counters(redis_url: str) -> None:
    first = RedisStore(url=redis_url, key=SECRET)
    second = RedisStore(url=redis_url, key=SECRET)
    try:
        await first.incr("k-hashed", 30)
        assert await second.incr("k-hashed", 30) == 2
    finally:
        await first.close()
        await second.close()
