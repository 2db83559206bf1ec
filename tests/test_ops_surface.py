"""What IT staff run: key commands, check-config and a clean stop (from a review of the
operational surface: health, metrics, CLI, reload, shutdown)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ldap_directory, vendor_toml, write_config
from tests.test_reload_signals import _healthy_within, _kill_tree, _spawn
from tests.test_scale_out import REPO


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def keys_dir_is_a_file(tmp_path: Path, port: int) -> Path:
    """A file-directory config whose `keys.dir` names a regular file (a typo, a stray file)."""
    (tmp_path / "patrons.toml").write_text("")
    cfg = write_config(
        tmp_path, port=port, directory='kind = "file"\npatrons_file = "patrons.toml"\n', vendors={}
    )
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state" / "keys").write_text("not a directory\n")
    return cfg


def test_keys_rotate_with_an_unusable_key_dir_names_it_without_a_traceback(
    keys_dir_is_a_file: Path,
) -> None:
    """`keys rotate` when keys.dir cannot be used: one line naming the file and key, exit != 0,
    no Python traceback (as `serve` does for the same config)."""
    r = _run("keys", "rotate", "--config", str(keys_dir_is_a_file))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    assert "keys.dir" in r.stderr + r.stdout


def test_check_config_reports_a_keys_dir_that_serve_refuses(keys_dir_is_a_file: Path) -> None:
    """README: check-config lists every config problem and exits 1. `serve` refuses this config
    ("keys.dir: … cannot be used"), so check-config must not say OK."""
    served = _run("serve", "--config", str(keys_dir_is_a_file))
    assert served.returncode != 0 and "keys.dir" in served.stderr  # what serve says (holds)
    r = _run("check-config", "--config", str(keys_dir_is_a_file))
    assert r.returncode == 1, r.stdout
    assert "keys.dir" in r.stdout + r.stderr


def test_keys_rotate_into_a_directory_it_cannot_write_names_it(tmp_path: Path, port: int) -> None:
    """A key directory that exists but cannot be written (here made immutable: root ignores
    modes): one line naming the file and key, exit 1, no traceback, and no key added."""
    (tmp_path / "patrons.toml").write_text("")
    cfg = write_config(
        tmp_path, port=port, directory='kind = "file"\npatrons_file = "patrons.toml"\n', vendors={}
    )
    keys = tmp_path / "state" / "keys"
    keys.mkdir(parents=True)
    if subprocess.run(["chattr", "+i", str(keys)], capture_output=True).returncode != 0:
        pytest.skip("this file system cannot make a directory immutable")
    try:
        r = _run("keys", "rotate", "--config", str(cfg))
    finally:
        subprocess.run(["chattr", "-i", str(keys)], check=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    assert f"{cfg}: keys.dir: {keys} cannot be written" in r.stderr
    assert list(keys.iterdir()) == []


async def test_serve_with_workers_leaves_no_pid_file_after_sigterm(
    tmp_path: Path, port: int, running_slapd: Any, redis_url: str, vendor_factory: Any
) -> None:
    """`serve --workers 2`, then SIGTERM: it exits 0 and leaves no stale pid file behind (a
    single process removes its own; the workers write the parent's pid and nobody removes it)."""
    v = await vendor_factory("www.pid-db.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"pid": vendor_toml("pid", v)},
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )
    proc, log = _spawn(cfg, "--workers", "2")
    try:
        assert await _healthy_within(port, f"proxy.localhost:{port}", proc, 30), log.read_text()
        pidfile = tmp_path / "state" / "proxy.pid"
        assert pidfile.read_text().strip() == str(proc.pid)
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 30)
        assert rc == 0, log.read_text()[-2000:]
        assert not pidfile.exists(), f"stale pid file {pidfile}: {pidfile.read_text()!r}"
    finally:
        _kill_tree(proc)
