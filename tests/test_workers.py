"""`server.workers = N`: N processes on one port, graceful drain on SIGTERM, memory store refused."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.config import load_config
from proxy.errors import ConfigError
from tests.canary import CANARY
from tests.harness import ldap_directory, vendor_toml, write_config
from tests.test_scale_out import REPO, process_tree, serve, stack_printers

VENDOR_HOST = "www.slow-db.test"
SLOW_S = 2.0


@pytest.fixture
async def slow_vendor(vendor_factory: Any) -> Any:
    v = await vendor_factory(VENDOR_HOST)

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(SLOW_S)
        return web.Response(text="finished" * 1000, content_type="text/plain")

    v.routes["/slow"] = slow
    return v


@pytest.fixture
def workers_config(
    tmp_path: Path, port: int, running_slapd: Any, redis_url: str, slow_vendor: Any
) -> Path:
    return write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"slow": vendor_toml("slow", slow_vendor)},
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )


async def test_two_workers_share_one_port_and_both_answer(workers_config: Path) -> None:
    """`serve --workers 2` forks two servers on one port; fresh connections reach both."""
    served = await serve(workers_config, extra_args=("--workers", "2"))
    try:
        pids = set()
        # Until both answer (a loaded machine may start the second worker late), 30 s at most.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # A new connection each time: SO_REUSEPORT spreads connections, not requests.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as c:
                r = await c.get(
                    f"http://127.0.0.1:{served.port}/healthz",
                    headers={"Host": served.driver.public},
                )
                pids.add((await r.json())["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2
        assert served.process.pid not in pids  # the parent only supervises
    finally:
        assert await served.stop() == 0


async def test_sigterm_drains_in_flight_request_and_workers_exit_0(
    workers_config: Path, slow_vendor: Any
) -> None:
    """SIGTERM to the parent: a slow vendor response already in flight completes, then exit 0."""
    served = await serve(workers_config, extra_args=("--workers", "2"))
    await served.driver.login(CANARY.uid, CANARY.password)
    in_flight = asyncio.create_task(served.driver.get_vendor(VENDOR_HOST, "/slow"))
    while not any(r.path_qs == "/slow" for r in slow_vendor.requests):
        await asyncio.sleep(0.02)
    served.send(signal.SIGTERM)
    r = await in_flight
    assert r.status == 200
    assert await r.text() == "finished" * 1000
    started = time.monotonic()
    assert await served.stop() == 0
    assert time.monotonic() - started < 10
    # After the drain nothing listens any more.
    async with aiohttp.ClientSession() as fresh:
        with pytest.raises(aiohttp.ClientConnectionError):
            await fresh.get(f"http://127.0.0.1:{served.port}/healthz")


async def test_sigusr1_prints_every_process_stacks_and_serving_goes_on(
    workers_config: Path,
) -> None:
    """`kill -USR1` on any serving process prints its stacks to the log; nothing stops."""
    served = await serve(workers_config, extra_args=("--workers", "2"))
    try:
        await served.driver.login(CANARY.uid, CANARY.password)
        # The parent, two workers, and at least one directory worker process for each (a
        # worker's directory processes start in the background: wait for them to be ready).
        deadline = time.monotonic() + 15
        while len(everyone := stack_printers(process_tree(served.process.pid))) < 5:
            assert time.monotonic() < deadline, f"stack printers: {everyone}"
            await asyncio.sleep(0.1)
        assert everyone[0] == served.process.pid
        # One at a time: processes dumping at once interleave their lines in the shared log.
        for n, pid in enumerate(everyone, 1):
            os.kill(pid, signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while served.output().count("Current thread") < n:
                assert time.monotonic() < deadline, f"no stacks from {pid}:\n{served.output()}"
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        log = served.output()
        assert log.count("Current thread") == len(everyone)
        assert "proxy/cli.py" in log  # the parent waits in _serve_workers
        assert "concurrent/futures/process.py" in log  # a directory worker waits for work
        assert CANARY.uid not in log and CANARY.password not in log
        r = await served.driver.own("GET", "/healthz")
        assert r.status == 200
        assert served.process.poll() is None
    finally:
        assert await served.stop() == 0


async def test_workers_log_json_to_stdout(workers_config: Path) -> None:
    """Both workers write their start-up line to standard output, as JSON."""
    served = await serve(workers_config, extra_args=("--workers", "2"))

    def started() -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for line in served.output().splitlines()
            if line.startswith("{") and '"started"' in line
        ]

    try:
        # /healthz answered from one worker; a loaded machine may start the other later.
        deadline = time.monotonic() + 30
        while len(started()) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        assert await served.stop() == 0
    assert len(started()) == 2
    assert all(s["store"] == "redis" for s in started())
    # asyncio's own loop, which accepts every queued connection at once; uvloop's accepts one
    # per loop iteration and left new patrons waiting 10-25 s under load (bench/README.md).
    assert {s["event_loop"] for s in started()} == {asyncio.SelectorEventLoop.__name__}


def test_check_config_refuses_workers_with_the_memory_store(
    tmp_path: Path, port: int, running_slapd: Any
) -> None:
    """Sessions in one worker's memory would be unknown to the other: check-config says so."""
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={},
    )
    cfg.write_text(cfg.read_text().replace("[server]\n", "[server]\nworkers = 2\n", 1))
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert any(
        p.key == "session.store" and 'store = "redis"' in p.message for p in exc.value.problems
    )


def test_serve_workers_flag_refuses_the_memory_store(
    tmp_path: Path, port: int, running_slapd: Any
) -> None:
    """`serve --workers 2` on a memory-store config exits 2 before binding anything."""
    cfg = write_config(
        tmp_path, port=port, directory=ldap_directory(running_slapd, tmp_path), vendors={}
    )
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--config", str(cfg), "--workers", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert 'store = "redis"' in done.stderr


def _core_limit(pid: int) -> tuple[str, str]:
    """(soft, hard) "Max core file size" of a process, from /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError(f"no core limit for {pid}")


async def test_no_process_of_serve_can_dump_core(workers_config: Path) -> None:
    """A core file would put sessions, vendor cookies and PINs on disk: the serve process, its
    workers and the directory's worker processes all run with a core limit of 0, soft and hard."""
    # Started from a process that may dump core, as a shell with `ulimit -c unlimited` would.
    before = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    try:
        served = await serve(workers_config, extra_args=("--workers", "2"))
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, before)
    try:
        # A sign-in starts the directory's worker processes (on first use).
        assert (await served.driver.login(CANARY.uid, CANARY.password)).status == 303
        tree = process_tree(served.process.pid)
        assert len(tree) >= 4, tree  # the parent, two workers, the directory's processes
        assert {pid: _core_limit(pid) for pid in tree} == {pid: ("0", "0") for pid in tree}
    finally:
        assert await served.stop() == 0
