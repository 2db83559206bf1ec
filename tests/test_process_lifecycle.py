"""From a review of the proxy process's life (start, reload, stop) as IT staff meet it: a port
in use, a second serve, a stop logged, a killed worker's helpers, a stop during start-up. Every
test failed on the code it was written against.

Real `python -m proxy serve` processes on free loopback ports, a real slapd and a recording vendor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.config import load_config
from tests.harness import ldap_directory, vendor_toml, write_config
from tests.test_reload_signals import _healthy_within, _kill_tree
from tests.test_scale_out import REPO

VENDOR_HOST = "www.life-db.test"


@pytest.fixture
async def config_path(tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any) -> Path:
    v = await vendor_factory(VENDOR_HOST)
    return write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"life": vendor_toml("life", v)},
    )


def _serve(config_path: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config_path), *extra],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "two-workers"])
async def test_port_in_use_is_one_clear_line_naming_the_address_not_a_traceback(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    redis_url: str,
    vendor_factory: Any,
    workers: list[str],
) -> None:
    """Something else already listens on server.listen: `serve` must say so in a line naming the
    address and exit non-zero, not print a Python traceback (nor claim "listening on")."""
    v = await vendor_factory(VENDOR_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"life": vendor_toml("life", v)},
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.bind(("127.0.0.1", port))
    squatter.listen(1)
    log = tmp_path / "serve.log"
    proc = _serve(cfg, log, *workers)
    try:
        rc = await asyncio.to_thread(proc.wait, 40)
    finally:
        _kill_tree(proc)
        squatter.close()
    out = log.read_text(errors="replace")
    assert rc != 0, out
    assert f"127.0.0.1:{port}" in out.replace("('127.0.0.1', ", "127.0.0.1:"), out
    assert "Traceback" not in out, out[-3000:]


async def test_second_serve_that_cannot_bind_leaves_the_running_proxys_pid_file(
    config_path: Path, tmp_path: Path
) -> None:
    """A second `serve` of the same config (started by mistake; or systemd restarting while the
    old one still holds the port) fails to bind. It must not take the running proxy's pid file
    with it: afterwards `weston-proxy reload` can no longer reach the proxy that is serving."""
    config = load_config(config_path)
    port = config.listen_addr[1]
    first = _serve(config_path, tmp_path / "first.log")
    try:
        assert await _healthy_within(port, f"proxy.localhost:{port}", first, 30)
        pidfile = config.resolve(config.server.pid_file)
        assert pidfile.read_text().strip() == str(first.pid)
        second = _serve(config_path, tmp_path / "second.log")
        try:
            rc = await asyncio.to_thread(second.wait, 40)
        finally:
            _kill_tree(second)
        assert rc != 0
        assert first.poll() is None
        assert pidfile.exists(), "the running proxy's pid file was removed by the failed start"
        assert pidfile.read_text().strip() == str(first.pid)
        reload = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "proxy", "reload", "--config", str(config_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=40,
        )
        assert reload.returncode == 0, reload.stdout + reload.stderr
    finally:
        _stop(first)
        with contextlib.suppress(Exception):
            _kill_tree(first)


async def test_a_stop_is_logged(config_path: Path, tmp_path: Path) -> None:
    """docs/systemd-and-tls.md: `journalctl -u weston-proxy` shows why the proxy did not answer,
    "it logs start-up, stops, `vendor_failed` ...". After SIGTERM the journal must show the stop;
    today the last line is `started`, so a stopped proxy reads as a running one."""
    import json

    config = load_config(config_path)
    port = config.listen_addr[1]
    log = tmp_path / "serve.log"
    proc = _serve(config_path, log)
    try:
        assert await _healthy_within(port, f"proxy.localhost:{port}", proc, 30)
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 30)
    finally:
        _kill_tree(proc)
    assert rc == 0
    events = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line).get("event", ""))
    assert "started" in events
    after = events[events.index("started") + 1 :]
    assert any("stop" in e or "shut" in e for e in after), events


async def test_a_worker_killed_with_sigkill_leaves_no_orphan_processes(
    tmp_path: Path, port: int, running_slapd: Any, redis_url: str, vendor_factory: Any
) -> None:
    """`serve --workers 2`, one worker SIGKILLed (the OOM killer): the parent stops the other and
    exits non-zero, as documented, so the supervisor restarts the set. But the dead worker's
    helpers (its multiprocessing forkserver, the directory worker holding the LDAP bind password
    and the PINs it checks, the resource tracker) must not live on as orphans: today they stay
    forever, re-parented to init, and each crash adds more."""
    from tests.canary import CANARY
    from tests.test_scale_out import process_tree, serve

    v = await vendor_factory(VENDOR_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"life": vendor_toml("life", v)},
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )
    served = await serve(cfg, extra_args=("--workers", "2"))
    tree: list[int] = []
    try:
        # A sign-in, so the answering worker has started its directory worker.
        assert (await served.driver.login(CANARY.uid, CANARY.password)).status == 303
        await asyncio.sleep(1.0)
        tree = process_tree(served.process.pid)
        workers = [
            p for p in tree[1:] if b"serve" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        ]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        rc = await served.stop(timeout=20)
        assert rc != 0  # documented: the supervisor restarts the whole set
        await asyncio.sleep(10.0)
        left = [p for p in tree if Path(f"/proc/{p}").exists()]
        assert left == [], {p: Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in left}
    finally:
        for p in tree:  # only what is still this serve's (a pid is not reused for another)
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{p}/cmdline").read_bytes()
                if b"proxy" in cmd or b"multiprocessing" in cmd:
                    os.kill(p, signal.SIGKILL)


async def test_a_second_workers_serve_on_a_port_in_use_is_refused_not_sharing_it(
    tmp_path: Path, port: int, running_slapd: Any, redis_url: str, vendor_factory: Any
) -> None:
    """`serve --workers 2` binds with SO_REUSEPORT, so a second `serve --workers 2` of the same
    address (by hand while systemd's runs; an old config left in another shell) binds too: the
    kernel then splits patrons between two proxies, maybe with different configs, and the pid
    file names only the newer one, so `reload` misses the other. The port is in use: the second
    must be refused with a message naming the address, and exit non-zero."""
    from tests.test_scale_out import serve

    v = await vendor_factory(VENDOR_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"life": vendor_toml("life", v)},
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )
    first = await serve(cfg, extra_args=("--workers", "2"))
    log = tmp_path / "second.log"
    second = _serve(cfg, log, "--workers", "2")
    try:
        try:
            rc = await asyncio.to_thread(second.wait, 30)
        except subprocess.TimeoutExpired:
            rc = None
        out = log.read_text(errors="replace")
        assert rc is not None and rc != 0, f"a second proxy is serving {port} too:\n{out}"
        assert f"127.0.0.1:{port}" in out, out
    finally:
        _kill_tree(second)
        await first.stop()


async def test_a_stop_while_workers_start_exits_0(
    tmp_path: Path, port: int, running_slapd: Any, redis_url: str, vendor_factory: Any
) -> None:
    """`systemctl stop` (or a restart) in the first second after `serve --workers 2` started:
    the parent forwards SIGTERM to workers that have not installed aiohttp's handler yet, they
    die of it, and the parent reports "worker N exited with -15" and exits 1, so systemd marks
    the unit failed for a stop it asked for (a single-process serve in the same moment dies by
    SIGTERM, which systemd counts as clean). A requested stop must end with exit 0."""
    from tests.test_reload_signals import _catches

    v = await vendor_factory(VENDOR_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"life": vendor_toml("life", v)},
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )
    log = tmp_path / "serve.log"
    proc = _serve(cfg, log, "--workers", "2")
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while not _catches(proc.pid, signal.SIGTERM):  # the parent forwards from now on
            assert proc.poll() is None, log.read_text(errors="replace")
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 30)
    finally:
        _kill_tree(proc)
    assert rc == 0, log.read_text(errors="replace")[-3000:]
