"""A reload signal (SIGHUP: `systemctl reload`, `weston-proxy reload`) at any moment of a serve's
life: while it starts (the unit is `Type=exec` with `ExecReload=/bin/kill -HUP $MAINPID`, so
systemd accepts a reload as soon as the process is exec'd), and while it stops. It reloads, or is
ignored once nothing is left to reload; it never ends the process (systemd would count that as a
clean exit and not restart it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.config import load_config
from tests.harness import ldap_directory, vendor_toml, write_config
from tests.test_scale_out import REPO, process_tree

VENDOR_HOST = "www.hup-db.test"


def _catches(pid: int, sig: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return False
    caught = next(line for line in status if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) >> (sig - 1) & 1)


@pytest.fixture
async def config_path(
    tmp_path: Path, port: int, running_slapd: Any, redis_url: str, vendor_factory: Any
) -> Path:
    v = await vendor_factory(VENDOR_HOST)
    return write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"hup": vendor_toml("hup", v)},
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )


async def _healthy_within(port: int, host: str, proc: subprocess.Popen[bytes], s: float) -> bool:
    deadline = time.monotonic() + s
    async with aiohttp.ClientSession() as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                r = await c.get(f"http://127.0.0.1:{port}/healthz", headers={"Host": host})
                if r.status == 200:
                    return True
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    return False


def _spawn(config_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = config_path.with_suffix(".hup.log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config_path), *extra],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return proc, log


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        for pid in reversed(process_tree(proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


async def _still_serving(
    proc: subprocess.Popen[bytes], log: Path, config_path: Path, failure: str
) -> None:
    """A second after the signal the process lives, and it answers /healthz."""
    await asyncio.sleep(1.0)
    port = load_config(config_path).listen_addr[1]
    alive = proc.poll() is None
    healthy = alive and await _healthy_within(port, f"proxy.localhost:{port}", proc, 20)
    assert alive and healthy, (
        f"{failure}: returncode={proc.returncode}\n{log.read_text(errors='replace')[-3000:]}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)


async def test_reload_signal_during_startup_does_not_kill_single_process_serve(
    config_path: Path,
) -> None:
    """`systemctl start` then `systemctl reload` at once: the proxy must keep running."""
    proc, log = _spawn(config_path)
    try:
        # The interpreter is up and importing (well before the reload feature's handler).
        await asyncio.sleep(0.3)
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGHUP)
        await _still_serving(proc, log, config_path, "serve died on an early SIGHUP")
    finally:
        _stop(proc)


async def test_reload_signal_while_workers_start_does_not_stop_the_service(
    config_path: Path,
) -> None:
    """`serve --workers 2`: the parent forwards SIGHUP to workers still starting; they must not
    die of it (a dead worker makes the parent stop everything and exit 1)."""
    proc, log = _spawn(config_path, "--workers", "2")
    try:
        # Wait until the parent has its SIGHUP forwarder installed (the workers are forked then).
        deadline = time.monotonic() + 20
        while not _catches(proc.pid, signal.SIGHUP):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        os.kill(proc.pid, signal.SIGHUP)
        await _still_serving(
            proc, log, config_path, "serve --workers 2 stopped after an early SIGHUP"
        )
    finally:
        _stop(proc)


async def test_reload_signal_during_shutdown_does_not_fail_the_stop(config_path: Path) -> None:
    """`systemctl stop` and a `systemctl reload` (logrotate, config management) overlapping: the
    workers must still finish their clean-up and the service exit 0."""
    config = load_config(config_path)
    proc, log = _spawn(config_path, "--workers", "2")
    try:
        # A bound, not a wait: two workers starting on a loaded shared machine took over 20 s.
        healthy = await _healthy_within(
            config.listen_addr[1], f"proxy.localhost:{config.listen_addr[1]}", proc, 60
        )
        assert healthy, (
            f"not serving (exit {proc.poll()})\n{log.read_text(errors='replace')[-3000:]}"
        )
        await asyncio.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                os.kill(proc.pid, signal.SIGHUP)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.01)
        proc.wait(timeout=15)
        assert proc.returncode == 0, (
            f"stop with an overlapping reload exited {proc.returncode}\n"
            f"{log.read_text(errors='replace')[-3000:]}"
        )
    finally:
        _kill_tree(proc)
