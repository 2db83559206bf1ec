"""From a review of Redis as production runs it: passwords, wrong passwords, what staff are told.

The first tests are the reviewer's, each failing before its fix for a defect an IT or privacy
staffer would call wrong; the rest hold the edges decided in fixing them. Real redis-server
processes (own ones, with --requirepass), real slapd, real `serve`/create_app.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from tests.canary import CANARY, WREN
from tests.harness import free_port, ldap_directory, vendor_toml, write_config, write_secret

REPO = Path(__file__).resolve().parent.parent
VENDOR_HOST = "www.redisops-db.test"


class PasswordRedis:
    def __init__(self, port: int, password: str) -> None:
        self.port = port
        self.password = password

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=2
        )


def _start_redis(tmp_path: Path, password: str) -> tuple[subprocess.Popen[bytes], PasswordRedis]:
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--requirepass", password,
            "--dir", str(tmp_path), "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = PasswordRedis(port, password)
    client = server.client()
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("redis-server with --requirepass did not start")
            time.sleep(0.05)
    client.close()
    return process, server


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[PasswordRedis]:
    process, server = _start_redis(tmp_path, "synthetic-redis-password-5150")
    yield server
    process.terminate()
    process.wait(10)


async def _proxy_config(
    tmp_path: Path,
    port: int,
    slapd: object,
    vendor_factory: object,
    redis_url: str,
    password: str | None = None,
    extra: str = "",
) -> Path:
    """A config with one vendor on VENDOR_HOST and the session store at `redis_url`; with a
    `password`, that in `secrets/redis-password` (redis_password_file)."""
    vendor = await vendor_factory(VENDOR_HOST)  # type: ignore[operator]
    session = f'store = "redis"\nredis_url = "{redis_url}"'
    if password is not None:
        write_secret(tmp_path / "secrets" / "redis-password", password)
        session += '\nredis_password_file = "secrets/redis-password"'
    return write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        session=session,
        extra=extra,
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


async def test_check_config_refuses_a_password_written_inline_in_redis_url(
    tmp_path: Path,
    port: int,
    running_slapd: object,
    vendor_factory: object,
    password_redis: PasswordRedis,
) -> None:
    """DESIGN: "Secrets come from files or environment variables, never inline", and
    `session.redis_password = "…"` is refused ("secrets must not be inline"). The same secret
    written in the URL (`redis://:PASSWORD@host`) is accepted silently: it sits in the 0640
    proxy.toml that the whole proxy group (and every config backup) can read."""
    vendor = await vendor_factory(VENDOR_HOST)  # type: ignore[operator]
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        session=(
            'store = "redis"\n'
            f'redis_url = "redis://:{password_redis.password}@127.0.0.1:{password_redis.port}/0"'
        ),
    )
    done = _cli("check-config", "--config", str(cfg))
    out = done.stdout + done.stderr
    assert done.returncode != 0, f"an inline Redis password was accepted:\n{out}"
    assert "session.redis_url" in out
    assert password_redis.password not in out  # the refusal must not print the secret back


async def test_a_wrong_redis_password_is_named_as_such_to_it_staff(
    tmp_path: Path,
    port: int,
    running_slapd: object,
    vendor_factory: object,
    password_redis: PasswordRedis,
) -> None:
    """A wrong `redis_password_file`: `serve` logs "started" and nothing else; /readyz says only
    `"store": "unavailable"`; a patron's sign-in gets the store page and the log line is
    `store_unavailable` with no reason. Nothing anywhere tells staff that Redis answered and
    refused the password (as the LDAP side does with `ldap_server_failed … reason`), so a typo
    in the secret looks exactly like Redis being down. The error type is already known
    (StoreUnavailable carries "AuthenticationError") but is dropped before the log."""
    cfg = await _proxy_config(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        f"redis://127.0.0.1:{password_redis.port}/0",
        "not-the-redis-password",
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(cfg)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    bodies = []
    try:
        host = {"Host": f"proxy.localhost:{port}"}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz", headers=host) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                await asyncio.sleep(0.1)
            async with http.get(f"http://127.0.0.1:{port}/readyz", headers=host) as r:
                assert r.status == 503
                bodies.append(await r.text())
            async with http.get(f"http://127.0.0.1:{port}/login", headers=host) as r:
                form = await r.text()
            csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            data = {"username": CANARY.uid, "password": CANARY.password, "url": "", "csrf": csrf}
            async with http.post(
                f"http://127.0.0.1:{port}/login", headers=host, data=data, allow_redirects=False
            ) as r:
                assert r.status == 503  # fail closed, as it should
        await asyncio.sleep(0.3)
    finally:
        process.terminate()
        process.wait(20)
    output = log_path.read_text(errors="replace")
    told = (output + "\n".join(bodies)).lower()
    assert "traceback" not in told
    assert "auth" in told or "password" in told, (
        "nothing tells staff the Redis password was refused:\n" + output + "\n" + "\n".join(bodies)
    )
    assert CANARY.uid not in output and CANARY.password not in output


async def test_records_with_a_wrong_redis_password_does_not_say_redis_did_not_answer(
    tmp_path: Path,
    port: int,
    running_slapd: object,
    vendor_factory: object,
    password_redis: PasswordRedis,
) -> None:
    """README: `records` exits 1 when sessions could not be counted, "with the reason on
    stderr". With a wrong password the reason given is "Redis did not answer
    (StoreUnavailable)": false (Redis answered, it refused the password) and it sends staff
    looking for a network fault. `stats` on the same config says AuthenticationError."""
    cfg = await _proxy_config(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        f"redis://127.0.0.1:{password_redis.port}/0",
        "not-the-redis-password",
    )
    done = _cli("records", "--config", str(cfg))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "did not answer" not in done.stderr, done.stderr
    assert "auth" in done.stderr.lower() or "password" in done.stderr.lower(), done.stderr


async def test_statistics_reach_redis_with_a_password_that_ends_in_a_space(
    tmp_path: Path, port: int, running_slapd: object, vendor_factory: object, proxy_factory: object
) -> None:
    """The session store reads `redis_password_file` keeping every character but the line end
    (secrets_.read_secret_file: rstrip("\\r\\n")); the statistics sink, `stats` and `records` read
    the same file with .strip() (stats_store.redis_password). With a password that begins or
    ends in a space, sessions work and /readyz is green, but every statistics flush is refused
    (AUTH) and the counts are lost: a config accepted that does not do what it says."""
    password = "synthetic redis pass "
    process, server = _start_redis(tmp_path, password)
    try:
        cfg = await _proxy_config(
            tmp_path,
            port,
            running_slapd,
            vendor_factory,
            f"redis://127.0.0.1:{server.port}/0",
            password,
            extra="\n[stats]\nflush_interval_s = 0.2\n",
        )
        assert _cli("check-config", "--config", str(cfg)).returncode == 0
        driver = await proxy_factory(cfg)  # type: ignore[operator]
        r = await driver.login(CANARY.uid, CANARY.password, url=f"http://{VENDOR_HOST}/")
        assert r.status == 303  # the session store accepts the password
        r = await driver.get_vendor(VENDOR_HOST, "/")
        assert r.status == 200
        r = await driver.own("GET", "/readyz")
        assert r.status == 200
        await asyncio.sleep(1.0)
        raw = server.client()
        try:
            days = raw.keys("weston:stats:*")
        finally:
            raw.close()
        assert days, "no statistics reached Redis: the sink authenticated with another password"
        stats = _cli("stats", "--config", str(cfg), "--format", "json")
        assert stats.returncode == 0, stats.stderr
    finally:
        process.terminate()
        process.wait(10)


async def test_records_accounts_for_every_redis_key_the_proxy_wrote(
    tmp_path: Path,
    port: int,
    running_slapd: object,
    vendor_factory: object,
    proxy_factory: object,
    redis_url: str,
    redis_server: object,
) -> None:
    """`records` is what the library hands over for a records request: "what the proxy holds
    right now, as counts and kinds". After one patron signs in, its `key_kinds` plus the
    statistics days leave two keys out: the session indexes `weston:live` and
    `weston:born` (the latter holding every live session's login time under its hashed id) are
    held but not listed as a kind."""
    import json

    vendor = await vendor_factory(VENDOR_HOST)  # type: ignore[operator]
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        session=f'store = "redis"\nredis_url = "{redis_url}"',
        extra="\n[stats]\nflush_interval_s = 0.2\n",
    )
    driver = await proxy_factory(cfg)  # type: ignore[operator]
    r = await driver.login(CANARY.uid, CANARY.password, url=f"http://{VENDOR_HOST}/")
    assert r.status == 303
    assert (await driver.get_vendor(VENDOR_HOST, "/")).status == 200
    await asyncio.sleep(1.0)
    raw = redis_server.client()  # type: ignore[attr-defined]
    try:
        present = sorted(k.decode() for k in raw.keys("*"))
    finally:
        raw.close()
    done = _cli("records", "--config", str(cfg), "--format", "json")
    assert done.returncode == 0, done.stderr
    sessions = json.loads(done.stdout)["sessions"]
    listed = sum(sessions["key_kinds"].values()) + sessions["statistics"]["days"]
    assert listed == len(present), (
        f"records lists {listed} keys of {len(present)} held: {sessions['key_kinds']}; "
        f"held: {[k.rsplit(':', 1)[0] if len(k) > 40 else k for k in present]}"
    )


@pytest.mark.parametrize("refusal", ["read-only replica", "maxmemory noeviction"])
async def test_readyz_reports_a_store_that_refuses_every_write(
    tmp_path: Path,
    port: int,
    running_slapd: object,
    vendor_factory: object,
    proxy_factory: object,
    refusal: str,
) -> None:
    """/readyz is "dependencies"; its store check is a bare PING. A Redis that answers PING but
    refuses every write (after a failover the old primary is a read-only replica: READONLY;
    a full Redis under maxmemory-policy noeviction: OOM) fails every patron request with the
    503 "store unavailable" page whenever it must write (every sign-in, session renewals), while /readyz says `"store": "ok"` (200)
    and `weston_proxy_dependency_up{dependency="store"}` stays 1: the load balancer keeps
    sending patrons, and monitoring sees nothing wrong."""
    rport = free_port()
    process = subprocess.Popen(
        [
            "redis-server", "--port", str(rport), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        raw = redis.Redis(host="127.0.0.1", port=rport, socket_timeout=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                raw.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        cfg = await _proxy_config(
            tmp_path, port, running_slapd, vendor_factory, f"redis://127.0.0.1:{rport}/0"
        )
        driver = await proxy_factory(cfg)  # type: ignore[operator]
        r = await driver.login(CANARY.uid, CANARY.password, url=f"http://{VENDOR_HOST}/")
        assert r.status == 303
        assert (await driver.get_vendor(VENDOR_HOST, "/")).status == 200
        if refusal == "read-only replica":
            raw.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        else:
            raw.config_set("maxmemory-policy", "noeviction")
            # Half of what it holds, not one byte over it: a few bytes freed meanwhile (the
            # readiness key expiring on a slow machine) must not make room for a write again.
            raw.config_set("maxmemory", str(int(raw.info("memory")["used_memory"]) // 2))
        # A patron signing in is turned away: the store cannot take the new session.
        r = await driver.login(WREN.uid, WREN.password, url=f"http://{VENDOR_HOST}/")
        assert r.status == 503
        r = await driver.own("GET", "/readyz")
        body = await r.text()
        assert r.status == 503, f"/readyz says {body} while patrons get 503 (store: {refusal})"
        assert '"store": "unavailable"' in body
    finally:
        process.terminate()
        process.wait(10)


# --------------------------------------------------------------------------- edges of the fixes


def _plain_redis(tmp_path: Path, *options: str) -> tuple[subprocess.Popen[bytes], int]:
    """An own redis-server without a password, with extra command-line options."""
    rport = free_port()
    process = subprocess.Popen(
        [
            "redis-server", "--port", str(rport), "--bind", "127.0.0.1",
            "--appendonly", "no", "--dir", str(tmp_path), "--loglevel", "warning", *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    raw = redis.Redis(host="127.0.0.1", port=rport, socket_timeout=2)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                raw.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    process.kill()
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
    finally:
        raw.close()
    return process, rport


@pytest.mark.parametrize(
    ("url", "inline"),
    [
        ("redis://:pw@127.0.0.1:6379/0", True),
        ("redis://weston:pw@127.0.0.1:6379/0", True),
        ("rediss://weston:p%40ss@redis.example:6380/0", True),
        ("redis://127.0.0.1:6379/0?password=pw", True),
        ("unix://:pw@/run/redis/redis.sock", True),
        ("redis://weston@127.0.0.1:6379/0", False),  # a user name alone is no secret
        ("redis://127.0.0.1:6379/0", False),
        ("unix:///run/redis/redis.sock?db=0", False),
    ],
)
def test_a_password_is_found_in_every_spelling_of_a_redis_url(url: str, inline: bool) -> None:
    from proxy.config_checks import redis_url_has_password

    assert redis_url_has_password(url) is inline


async def test_serve_refuses_an_inline_redis_password_without_printing_it(
    tmp_path: Path, port: int, running_slapd: object, vendor_factory: object
) -> None:
    """Refused at start as at check-config (the same checks), naming the key, not the URL."""
    vendor = await vendor_factory(VENDOR_HOST)  # type: ignore[operator]
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        session='store = "redis"\nredis_url = "redis://weston:inline-secret-2231@127.0.0.1:1/0"',
    )
    done = _cli("serve", "--config", str(cfg))
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "session.redis_url" in out
    assert "inline-secret-2231" not in out


async def test_a_user_name_in_redis_url_with_the_password_in_its_file_is_accepted(
    tmp_path: Path, port: int, running_slapd: object, vendor_factory: object
) -> None:
    """Redis ACL users: `redis://USER@host` names the user, redis_password_file the password."""
    cfg = await _proxy_config(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        "redis://weston@127.0.0.1:6379/0",
        "synthetic-acl-password",
    )
    done = _cli("check-config", "--config", str(cfg))
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_kind_of_redis_failure_is_named() -> None:
    """The reason is the kind only: built from the exception's class, never its message."""
    from redis.exceptions import (
        AuthenticationError,
        OutOfMemoryError,
        ReadOnlyError,
        ResponseError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from proxy.redis_health import failure_reason

    refused = RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert failure_reason(AuthenticationError("invalid username-password pair")) == (
        "authentication"
    )
    assert failure_reason(ResponseError("NOAUTH Authentication required.")) == "authentication"
    assert failure_reason(ReadOnlyError("You can't write against a read only replica.")) == (
        "read-only"
    )
    assert failure_reason(ResponseError("READONLY You can't write, script: x")) == "read-only"
    assert failure_reason(OutOfMemoryError("command not allowed")) == "out of memory"
    assert failure_reason(ResponseError("OOM command not allowed, script: x")) == ("out of memory")
    assert failure_reason(RedisTimeoutError("Timeout reading from socket")) == "timeout"
    assert failure_reason(refused) == "connection refused"
    assert failure_reason(ResponseError("ERR weston:s:abc something")) == "error reply"


async def test_readyz_says_why_the_store_is_unavailable(
    tmp_path: Path,
    port: int,
    running_slapd: object,
    vendor_factory: object,
    proxy_factory: object,
    password_redis: PasswordRedis,
) -> None:
    """`store_reason` is added next to the unchanged `"store": "unavailable"` and `failing`."""
    cfg = await _proxy_config(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        f"redis://127.0.0.1:{password_redis.port}/0",
        "not-the-redis-password",
    )
    driver = await proxy_factory(cfg)  # type: ignore[operator]
    r = await driver.own("GET", "/readyz")
    assert r.status == 503
    assert await r.json() == {
        "directory": "ok",
        "store": "unavailable",
        "failing": "store",
        "store_reason": "authentication",
    }


async def test_readyz_says_connection_refused_when_redis_is_down(
    redis_url: str, redis_server: object, tmp_path: Path, port: int, running_slapd: object,
    vendor_factory: object, proxy_factory: object,
) -> None:  # fmt: skip
    vendor = await vendor_factory(VENDOR_HOST)  # type: ignore[operator]
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )
    driver = await proxy_factory(cfg)  # type: ignore[operator]
    redis_server.stop()  # type: ignore[attr-defined]
    r = await driver.own("GET", "/readyz")
    assert r.status == 503
    assert (await r.json())["store_reason"] == "connection refused"


async def test_serve_start_warns_of_a_refused_password_and_serves_when_redis_is_fixed(
    password_redis: PasswordRedis,
) -> None:
    """A probe at start names the reason once; it warns, never refuses: Redis may come up (or
    be fixed) after the proxy, and the proxy then works without a restart."""
    from structlog.testing import capture_logs

    from proxy.redis_store import RedisStore

    url = f"redis://127.0.0.1:{password_redis.port}/0"
    store = RedisStore(url=url, key=b"k" * 32, password="not-the-redis-password")
    try:
        with capture_logs() as logs:
            await store.start()
        said = [e for e in logs if e["event"] == "store_unavailable_at_start"]
        assert [e["reason"] for e in said] == ["authentication"]
        assert password_redis.password not in repr(logs)
        raw = password_redis.client()
        try:
            raw.config_set("requirepass", "")  # staff fix Redis's side
        finally:
            raw.close()
        await store.ping()
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("settings", "warned"),
    [
        ({"save": "", "appendonly": "no", "maxmemory-policy": "noeviction"}, []),
        ({}, []),  # CONFIG unreadable: nothing is said
        ({"save": "3600 1 300 100"}, ["persists to disk"]),
        ({"appendonly": "yes"}, ["persists to disk"]),
        ({"maxmemory-policy": "allkeys-lru"}, ["evicts keys"]),
        ({"maxmemory-policy": "volatile-ttl"}, ["evicts keys"]),
    ],
)
def test_redis_settings_that_weaken_the_promises_are_named(
    settings: dict[str, str], warned: list[str]
) -> None:
    from proxy.redis_health import settings_warnings

    got = settings_warnings(settings)
    assert len(got) == len(warned)
    for text, start in zip(got, warned, strict=True):
        assert text.startswith(start)


async def test_start_and_records_warn_of_a_redis_that_persists_to_disk(
    tmp_path: Path, port: int, running_slapd: object, vendor_factory: object
) -> None:
    from structlog.testing import capture_logs

    from proxy.redis_store import RedisStore

    process, rport = _plain_redis(tmp_path, "--save", "3600 1", "--maxmemory-policy", "allkeys-lru")
    try:
        store = RedisStore(url=f"redis://127.0.0.1:{rport}/0", key=b"k" * 32)
        try:
            with capture_logs() as logs:
                await store.start()
        finally:
            await store.close()
        reasons = [e["reason"] for e in logs if e["event"] == "store_settings"]
        assert len(reasons) == 2, logs
        cfg = await _proxy_config(
            tmp_path, port, running_slapd, vendor_factory, f"redis://127.0.0.1:{rport}/0"
        )
        done = _cli("records", "--config", str(cfg))
        assert done.returncode == 0, done.stderr
        assert "warning: this Redis persists to disk" in done.stdout
        assert "warning: this Redis evicts keys" in done.stdout
    finally:
        process.terminate()
        process.wait(10)


async def test_a_redis_without_config_gets_no_warning_and_no_failure(
    tmp_path: Path, port: int, running_slapd: object, vendor_factory: object
) -> None:
    """A managed Redis (CONFIG renamed away): the settings cannot be read, so nothing is said."""
    from structlog.testing import capture_logs

    from proxy.redis_store import RedisStore

    process, rport = _plain_redis(tmp_path, "--save", "3600 1", "--rename-command", "CONFIG", "")
    try:
        store = RedisStore(url=f"redis://127.0.0.1:{rport}/0", key=b"k" * 32)
        try:
            with capture_logs() as logs:
                await store.start()
        finally:
            await store.close()
        assert logs == []
        cfg = await _proxy_config(
            tmp_path, port, running_slapd, vendor_factory, f"redis://127.0.0.1:{rport}/0"
        )
        done = _cli("records", "--config", str(cfg))
        assert done.returncode == 0, done.stderr
        assert "warning" not in done.stdout
    finally:
        process.terminate()
        process.wait(10)


def test_the_redis_password_is_read_in_one_place() -> None:
    """Every Redis client reads `redis_password_file` through secrets_.redis_password (line end
    only, mode-checked); a second reader could send another password than the session store."""
    import ast

    readers = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "proxy").rglob("*.py")
        if any(
            isinstance(node, ast.Attribute) and node.attr == "redis_password_file"
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        )
    )
    # config_checks.py checks the file (mode, UTF-8, not empty); secrets_.py reads it.
    assert readers == ["proxy/config_checks.py", "proxy/secrets_.py"]


def test_records_lists_every_kind_of_redis_key_the_proxy_names() -> None:
    """Every `weston:` key prefix written in proxy/, and every key name the session store puts
    under its prefix, has an entry in the records inventory: a new kind of key without one
    fails here."""
    import re

    from proxy import records, redis_store

    listed = {prefix for prefix, _ in records._REDIS_KINDS} | {records.REDIS_PREFIX}
    named = set()
    for path in (REPO / "proxy").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        named |= set(re.findall(r"""["'](weston:[A-Za-z0-9_-]*:?)""", text))
        if path.name == "redis_store.py":
            # Names the store joins to its prefix: `prefix + "x"` or constants spelled out.
            for name in re.findall(r"""prefix \+ ["']([^"']+)["']""", text):
                named.add("weston:" + name)
    named.discard("weston:")  # the session store's default prefix itself
    for name, _ in redis_store.KEY_KINDS:
        named.add("weston:" + name)
    constants = re.findall(
        r"""^[A-Z_]+(?:KEY|KEYS) = ["']([^"']+)["']""",
        (REPO / "proxy" / "redis_store.py").read_text(encoding="utf-8"),
        flags=re.M,
    )
    named |= {"weston:" + c for c in constants}
    assert named - listed == set(), f"kept but not listed by `records`: {named - listed}"


async def test_the_store_unavailable_log_line_carries_the_reason(
    tmp_path: Path,
    port: int,
    running_slapd: object,
    vendor_factory: object,
    proxy_factory: object,
    log_stream: object,
    password_redis: PasswordRedis,
) -> None:
    """A patron's sign-in meets a refused Redis password: the log line says so, and nothing of
    the patron."""
    cfg = await _proxy_config(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        f"redis://127.0.0.1:{password_redis.port}/0",
        "not-the-redis-password",
    )
    driver = await proxy_factory(cfg)  # type: ignore[operator]
    r = await driver.login(CANARY.uid, CANARY.password, url=f"http://{VENDOR_HOST}/")
    assert r.status == 503
    logged = log_stream.getvalue()  # type: ignore[attr-defined]
    lines = [line for line in logged.splitlines() if "store_unavailable" in line]
    assert lines and all("authentication" in line for line in lines), logged
    assert CANARY.uid not in logged and CANARY.password not in logged
