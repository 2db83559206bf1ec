"""Two proxy processes sharing one Redis: a patron's session, vendor cookies and keys work on both.

Each proxy is a real `python -m proxy serve` process. Both serve the same public host, as they
would behind a load balancer: requests go to each process's own port with the public Host header.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from proxy.config import load_config
from proxy.sessions import storage_key
from tests.canary import CANARY
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    free_port,
    ldap_directory,
    vendor_toml,
    write_config,
)

REPO = Path(__file__).resolve().parent.parent
VENDOR_HOST = "www.shared-db.test"
START_TIMEOUT_S = 20.0


@dataclass
class ServedProxy:
    """A `python -m proxy serve` child process and a driver speaking to its port."""

    process: subprocess.Popen[bytes]
    port: int
    driver: ProxyDriver
    http: aiohttp.ClientSession
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    signalled: bool = False

    def send(self, sig: int = signal.SIGTERM) -> None:
        """Send one signal; a second SIGTERM during the drain would be a different test."""
        self.signalled = True
        self.process.send_signal(sig)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None and (not self.signalled or sig == signal.SIGKILL):
            self.send(sig)
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.process.poll() is None:
            # Stuck: every process of the tree prints its stacks (SIGUSR1, proxy/cli.py) into
            # the log, then the whole tree is killed so no worker outlives the test.
            tree = process_tree(self.process.pid)
            for pid in stack_printers(tree):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)
                await asyncio.sleep(0.3)  # one at a time: dumps at once interleave their lines
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait()
            await self.http.close()
            pytest.fail(
                f"proxy on port {self.port} did not stop within {timeout}s; "
                f"processes {tree}; its log:\n{self.output()[-20000:]}"
            )
        await self.http.close()
        if self.process.returncode != 0:  # shown with the failing assertion
            print(
                f"proxy exited with {self.process.returncode}; its log:\n{self.output()[-20000:]}"
            )
        return self.process.returncode


def stack_printers(tree: list[int]) -> list[int]:
    """The processes of a serve tree that print stacks on SIGUSR1: the proxy's own (parent and
    workers) and the directory workers, once each has installed its handler (a directory worker
    still starting would be killed by the signal). Not multiprocessing's forkserver and resource
    tracker, whose command lines do not say `serve`: they would stop."""

    def serving(pid: int) -> bool:
        with contextlib.suppress(OSError):
            return b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return False

    helpers = [p for p in tree[1:] if not serving(p)]
    found = [p for p in tree if serving(p)] + [c for h in helpers for c in process_tree(h)[1:]]
    return [p for p in found if catches_usr1(p)]


def catches_usr1(pid: int) -> bool:
    """Whether `pid` has a SIGUSR1 handler installed (Linux /proc: the SigCgt mask)."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        caught = next(line for line in status if line.startswith("SigCgt:")).split()[1]
        return bool(int(caught, 16) >> (signal.SIGUSR1 - 1) & 1)
    return False


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Linux /proc), parents first."""
    found, i = [pid], 0
    while i < len(found):
        for task in Path(f"/proc/{found[i]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found.extend(int(c) for c in task.read_text().split())
        i += 1
    return found


async def serve(
    config_path: Path, *, public_port: int | None = None, extra_args: tuple[str, ...] = ()
) -> ServedProxy:
    """Start `python -m proxy serve --config config_path` and wait until /healthz answers.

    `public_port` is the port of the public host the driver puts in Host headers (the load
    balancer's, shared by all instances); by default the process's own listen port.
    """
    config = load_config(config_path)
    port = config.listen_addr[1]
    log = config_path.with_suffix(f".{port}.log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config_path), *extra_args],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    # The session cookie is sent explicitly by the driver; the jar only carries the CSRF cookie.
    http = aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{port}", cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    driver = ProxyDriver(http, config)  # type: ignore[arg-type]
    if public_port is not None:
        driver.port = public_port
        driver.public = f"proxy.localhost:{public_port}"
    served = ServedProxy(process, port, driver, http, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            await http.close()
            pytest.fail(f"proxy exited with {process.returncode}:\n{served.output()}")
        try:
            r = await driver.own("GET", "/healthz")
            if r.status == 200:
                return served
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    await served.stop(signal.SIGKILL)
    pytest.fail(f"proxy did not answer /healthz within {START_TIMEOUT_S}s:\n{served.output()}")


def second_config(config_a: Path, port_b: int) -> Path:
    """The same config (same keys, secret, vendors, Redis) listening on another port."""
    port_a = load_config(config_a).listen_addr[1]
    text = config_a.read_text().replace(
        f'listen = "127.0.0.1:{port_a}"', f'listen = "127.0.0.1:{port_b}"'
    )
    assert f"127.0.0.1:{port_b}" in text
    path = config_a.with_name("proxy-b.toml")
    path.write_text(text)
    return path


@pytest.fixture
def redis_client(redis_server: Any, redis_url: str) -> Iterator[Any]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
async def vendor(vendor_factory: Any) -> RecordingVendor:
    v: RecordingVendor = await vendor_factory(VENDOR_HOST)

    async def set_cookie(request: web.Request) -> web.StreamResponse:
        resp = web.Response(text="<p>cookie set</p>", content_type="text/html")
        resp.set_cookie("vendor_sid", "v-7731", path="/", httponly=True)
        return resp

    v.routes["/set-cookie"] = set_cookie
    return v


@pytest.fixture
async def pair(
    tmp_path: Path, running_slapd: Any, redis_url: str, vendor: RecordingVendor
) -> AsyncIterator[tuple[ServedProxy, ServedProxy]]:
    """Proxies A and B: one config directory, one Redis, ports A and B, public host on A's port."""
    port_a, port_b = free_port(), free_port()
    cfg_a = write_config(
        tmp_path,
        port=port_a,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"shared": vendor_toml("shared", vendor)},
        session=f'store = "redis"\nredis_url = "{redis_url}"\nidle_timeout_s = 3\nlifetime_s = 6',
    )
    cfg_b = second_config(cfg_a, port_b)
    a = await serve(cfg_a)
    b = await serve(cfg_b, public_port=port_a)
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def test_login_on_a_browses_on_b(pair: tuple[ServedProxy, ServedProxy], vendor: Any) -> None:
    """A session made by one instance is honoured by the other."""
    a, b = pair
    r = await a.driver.login(CANARY.uid, CANARY.password)
    assert r.status == 303
    b.driver.sid = a.driver.sid
    r = await b.driver.get_vendor(VENDOR_HOST, "/article")
    assert r.status == 200, await r.text()
    assert [q.path_qs for q in vendor.requests] == ["/article"]


async def test_vendor_cookie_set_via_a_is_replayed_via_b(
    pair: tuple[ServedProxy, ServedProxy], vendor: Any
) -> None:
    """The per-session vendor cookie jar lives in Redis, so B sends the cookie A received."""
    a, b = pair
    await a.driver.login(CANARY.uid, CANARY.password)
    r = await a.driver.get_vendor(VENDOR_HOST, "/set-cookie")
    assert r.status == 200
    assert "vendor_sid" not in r.headers.getall("Set-Cookie", [""])[0]  # the jar kept it
    b.driver.sid = a.driver.sid
    r = await b.driver.get_vendor(VENDOR_HOST, "/after")
    assert r.status == 200
    last = dict(vendor.requests[-1].headers)
    assert "vendor_sid=v-7731" in last.get("Cookie", "")


PAGE_REQUESTS = 16


async def test_cookies_a_page_brings_through_both_instances_are_all_kept(
    pair: tuple[ServedProxy, ServedProxy], vendor: Any
) -> None:
    """A page's requests run at once, half through each instance, and every response sets a
    cookie of its own and renews a load balancer's: all of them are in the jar afterwards.
    Each request stores its own changes by compare-and-set onto the jar as stored then; when
    each stored its copy, or had no compare-and-set, the writes in between were lost."""
    a, b = pair

    async def set_one(request: web.Request) -> web.StreamResponse:
        n = request.match_info.get("n") or request.path.rsplit("/", 1)[-1]
        await asyncio.sleep(0.01 * (int(n) % 4))
        resp = web.Response(text="ok", content_type="text/plain")
        resp.set_cookie(f"c{n}", n, path="/")
        resp.set_cookie("AWSALB", f"lb-{n}", path="/")
        return resp

    for n in range(PAGE_REQUESTS):
        vendor.routes[f"/c/{n}"] = set_one
    assert (await a.driver.login(CANARY.uid, CANARY.password)).status == 303
    b.driver.sid = a.driver.sid
    drivers = (a.driver, b.driver)
    replies = await asyncio.gather(
        *(drivers[n % 2].get_vendor(VENDOR_HOST, f"/c/{n}") for n in range(PAGE_REQUESTS))
    )
    assert [r.status for r in replies] == [200] * PAGE_REQUESTS
    r = await a.driver.get_vendor(VENDOR_HOST, "/after")
    assert r.status == 200
    sent = dict(vendor.requests[-1].headers).get("Cookie", "")
    got = dict(part.split("=", 1) for part in sent.split("; ") if part)
    assert {k: v for k, v in got.items() if k != "AWSALB"} == {
        f"c{n}": str(n) for n in range(PAGE_REQUESTS)
    }
    assert got["AWSALB"] in {f"lb-{n}" for n in range(PAGE_REQUESTS)}


async def test_logout_on_a_ends_access_on_b(
    pair: tuple[ServedProxy, ServedProxy], vendor: Any
) -> None:
    """Logging out on one instance deletes the session for all of them."""
    a, b = pair
    await a.driver.login(CANARY.uid, CANARY.password)
    b.driver.sid = a.driver.sid
    assert (await b.driver.get_vendor(VENDOR_HOST, "/before")).status == 200
    r = await a.driver.own("POST", "/logout")
    assert r.status == 200
    r = await b.driver.get_vendor(VENDOR_HOST, "/after")
    assert r.status == 302
    assert "/login?url=" in r.headers["Location"]
    assert [q.path_qs for q in vendor.requests] == ["/before"]


async def test_expired_session_leaves_no_key_in_redis(
    pair: tuple[ServedProxy, ServedProxy], redis_client: Any
) -> None:
    """After the idle timeout Redis holds nothing of the session, with no proxy running at all."""
    a, b = pair
    await a.driver.login(CANARY.uid, CANARY.password)
    assert a.driver.sid is not None
    b.driver.sid = a.driver.sid
    assert (await b.driver.get_vendor(VENDOR_HOST, "/set-cookie")).status == 200
    member = storage_key(a.driver.sid)
    keys = [k.decode() for k in redis_client.scan_iter("*")]
    assert any(member in k for k in keys), keys
    # Stop both proxies: expiry must not depend on a proxy sweeping.
    await a.stop()
    await b.stop()
    deadline = time.monotonic() + 3 + 2  # idle_timeout_s plus slack for Redis's expiry cycle
    while time.monotonic() < deadline and session_traces(redis_client, member):
        await asyncio.sleep(0.2)
    assert session_traces(redis_client, member) == []
    assert a.driver.sid.encode() not in b"".join(
        redis_client.dump(k) or b"" for k in redis_client.scan_iter("*")
    )


def session_traces(redis_client: Any, member: str) -> list[str]:
    """Keys that are, or index, the session filed under `member` (other features' aggregate
    counters, such as statistics, are not the session's)."""
    found = []
    for raw in redis_client.scan_iter("*"):
        key = raw.decode()
        if member in key:
            found.append(key)
        elif redis_client.type(raw) == b"zset" and redis_client.zscore(raw, member) is not None:
            found.append(key + " (member)")
    return found


async def test_jwks_identical_and_assertion_from_a_verifies_with_b_keys(
    pair: tuple[ServedProxy, ServedProxy], vendor: Any
) -> None:
    """Shared signing keys: both publish the same JWKS, so a vendor can verify either's assertion."""
    a, b = pair
    jwks_a = await (await a.driver.own("GET", "/.well-known/jwks.json")).json()
    jwks_b = await (await b.driver.own("GET", "/.well-known/jwks.json")).json()
    assert jwks_a == jwks_b and jwks_a["keys"]
    await a.driver.login(CANARY.uid, CANARY.password)
    assert (await a.driver.get_vendor(VENDOR_HOST, "/")).status == 200
    token = dict(vendor.requests[-1].headers)["X-Patron-Assertion"]
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks_b["keys"] if k["kid"] == kid)
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["EdDSA"], audience="shared")
    assert claims["affiliation"] == "member@westonlibrary.org"


__all__ = ["ServedProxy", "second_config", "serve"]
