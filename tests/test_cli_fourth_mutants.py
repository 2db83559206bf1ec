"""From a fourth mutation sweep (2 December 2026) of the command line IT staff use,
proxy/cli.py and proxy/admin_cli.py: 28 mutants tried, 13 survived the existing tests; each
test here was written for one of those survivors and fails with it (see each docstring)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import argon2
import pytest

from proxy.assertion import JWKS_MAX_AGE_S, load_keys
from proxy.auth import prepare_pin
from proxy.cli import _listen_problem, main
from proxy.config import load_config
from proxy.reload import pid_path
from tests.test_reload import ROOT, file_directory_config, run_cli
from tests.test_scale_out import process_tree, serve
from tests.test_vendors_cli import two_toml


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another program listens on for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        yield int(taken.getsockname()[1])


def _serve(cfg: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--config", str(cfg), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


# --------------------------------------------------------------------------- hash-password


def test_hash_password_refuses_an_empty_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/cli.py:cmd_hash_password — `if not password:` → `if False:`.
    A PIN typed as nothing (Enter pressed twice, an empty line piped in) must not become a hash
    in the patrons file, where it would let anyone in with that card and no PIN: exit 2 with a
    message, and nothing on standard output to paste."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    status = main(["hash-password", "--stdin"])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert "an empty password cannot be hashed" in err


def test_hash_password_hashes_the_line_without_its_newline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/cli.py:cmd_hash_password — `.rstrip("\\n")` → `` (the line read as is).
    `echo 4321 | weston-proxy hash-password --stdin` must hash the PIN the patron types, not
    the PIN and a newline no sign-in form ever sends: otherwise the patron is refused for ever."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("4321\n"))
    status = main(["hash-password", "--stdin"])
    out, _ = capsys.readouterr()
    assert status == 0
    assert argon2.PasswordHasher().verify(out.strip(), prepare_pin("4321"))


# --------------------------------------------------------------------------- serve


def test_serve_names_a_demo_vendor_port_already_taken_and_exits_2(
    tmp_path: Path, port: int, held_port: int
) -> None:
    """kills: proxy/cli.py:_listen_problem — `if config.demo.vendor_listen:` (its check) →
    `if False:`. The bundled demo vendor's port, taken by another program, must be found before
    the banner: one line naming `demo.vendor_listen` and exit 2, not "listening on" followed by
    a traceback from the demo vendor's start."""
    cfg = file_directory_config(tmp_path, port, {})
    cfg.write_text(cfg.read_text() + f'\n[demo]\nvendor_listen = "127.0.0.1:{held_port}"\n')
    done = _serve(cfg)
    assert done.returncode == 2, done.stderr
    assert "listening on" not in done.stdout
    assert (
        f"demo.vendor_listen: 127.0.0.1:{held_port} cannot be listened on: Address already in use"
        in done.stderr
    )


def test_serve_refuses_workers_with_the_demo_vendor(
    tmp_path: Path, port: int, redis_url: str, held_port: int
) -> None:
    """kills: proxy/cli.py:_workers_refusal — `if config.demo.vendor_listen:` → `if False:`.
    The demo vendor is one listener started inside the serving process: with two workers each
    would try to start it on the same port. `serve --workers 2` must say the demo vendor runs
    with one worker only and exit 2. (The proxy's own port is taken too, so that the mutant
    exits instead of serving.)"""
    cfg = file_directory_config(
        tmp_path, held_port, {}, session=f'store = "redis"\nredis_url = "{redis_url}"'
    )
    cfg.write_text(cfg.read_text() + f'\n[demo]\nvendor_listen = "127.0.0.1:{port}"\n')
    done = _serve(cfg, "--workers", "2")
    assert done.returncode == 2, done.stderr
    assert "the bundled demo vendor ([demo] vendor_listen) runs with one worker only" in done.stderr


def test_an_ipv6_listen_address_in_brackets_is_probed_as_an_address(
    tmp_path: Path, port: int
) -> None:
    """kills: proxy/cli.py:_listen_problem — `host.strip("[]")` → `host`.
    `listen = "[::1]:8080"` is how an IPv6 address is written with a port: the probe before the
    banner must bind ::1, not look up a host named "[::1]" and refuse a listen address that
    works; and a port taken on ::1 must be named as taken."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as taken:
        taken.bind(("::1", 0))
        taken.listen(1)
        busy = int(taken.getsockname()[1])
        config = load_config(file_directory_config(tmp_path, port, {}))

        def listening_on(listen: str) -> str | None:
            server = dataclasses.replace(config.server, listen=listen)
            return _listen_problem(dataclasses.replace(config, server=server))

        assert listening_on(f"[::1]:{port}") is None
        problem = listening_on(f"[::1]:{busy}")
    assert problem is not None and problem.endswith(
        f"server.listen: [::1]:{busy} cannot be listened on: Address already in use"
    )


async def test_a_worker_stopped_from_outside_makes_serve_exit_1(
    tmp_path: Path, port: int, redis_url: str
) -> None:
    """kills: proxy/cli.py:_serve_workers — `clean = not unexpected and all(...)` →
    `clean = all(...)`. A worker that ends on its own, even cleanly (a `kill` of its pid, an
    admin's stray signal), leaves the set short: the parent stops the others and must exit 1 so
    the supervisor (systemd `Restart=on-failure`, Docker) starts the whole set again, not 0,
    which it reads as a stop that was asked for and leaves the library's proxy down."""
    cfg = file_directory_config(
        tmp_path, port, {}, session=f'store = "redis"\nredis_url = "{redis_url}"'
    )
    served = await serve(cfg, extra_args=("--workers", "2"))
    tree = process_tree(served.process.pid)
    try:
        workers = [
            p for p in tree[1:] if b"serve" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        ]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGTERM)
        served.signalled = True  # the parent itself is sent nothing: it must notice
        rc = await served.stop(timeout=30)
    finally:
        for p in tree:
            with contextlib.suppress(OSError):
                if b"proxy" in Path(f"/proc/{p}/cmdline").read_bytes():
                    os.kill(p, signal.SIGKILL)
    assert f"worker {workers[0]} exited with 0; stopping the others" in served.output()
    assert rc == 1


# --------------------------------------------------------------------------- keys


def test_keys_rotate_says_when_the_new_key_signs(
    tmp_path: Path, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/cli.py:cmd_keys — `if delay > 0` → `if delay >= 0`, and
    `min(delay, JWKS_MAX_AGE_S)` → `delay`. Staff rotating a key read when it starts signing:
    with no delay, from the next reload on; with a delay, once the delay has passed and it has
    been published for the time vendors may keep the JWKS (300 s), not the whole delay again."""
    cfg = file_directory_config(tmp_path, port, {})
    assert main(["keys", "rotate", "--config", str(cfg), "--delay", "0"]) == 0
    now = capsys.readouterr().out
    assert now.rstrip().endswith("and it signs from then on.")
    assert main(["keys", "rotate", "--config", str(cfg), "--delay", "3600"]) == 0
    later = capsys.readouterr().out
    assert (
        f"signs once 3600 s have passed and it has been published for {JWKS_MAX_AGE_S} s." in later
    )


def test_retire_reads_a_dash_kid_written_after_a_double_dash(tmp_path: Path, port: int) -> None:
    """kills: proxy/cli.py:_kid_as_operand — `or "--" in argv` dropped.
    Staff who know the trick write `keys retire --config X -- -kid` themselves: that must reach
    the key named (here: none such, so "no key", exit 1), not be rewritten a second time."""
    cfg = file_directory_config(tmp_path, port, {})
    assert run_cli("keys", "rotate", "--config", str(cfg), "--delay", "0").returncode == 0
    kid = "-" + "B" * 42
    r = run_cli("keys", "retire", "--config", str(cfg), "--", kid)
    assert r.returncode == 1, r.stderr
    assert f"no key {kid} in" in r.stderr


def test_retire_force_removes_a_key_whose_assertions_may_still_be_valid(
    tmp_path: Path, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/cli.py:cmd_keys — `and not args.force` dropped (the refusal ignores
    `--force`). `--force` is for a key that leaked: staff
    cannot wait five minutes for its last assertion to expire, so it must be retired at once
    (exit 0), both of its files gone from the key directory, while the key signing now stays."""
    cfg = file_directory_config(tmp_path, port, {})
    config = load_config(cfg)
    key_dir = config.resolve(config.keys.dir)
    assert main(["keys", "rotate", "--config", str(cfg), "--delay", "0"]) == 0
    assert main(["keys", "rotate", "--config", str(cfg), "--delay", "0"]) == 0
    old, new = load_keys(key_dir)
    capsys.readouterr()
    assert main(["keys", "retire", old.kid, "--config", str(cfg)]) == 1
    assert "may still be valid" in capsys.readouterr().err
    assert main(["keys", "retire", old.kid, "--config", str(cfg), "--force"]) == 0
    assert f"retired {old.kid}." in capsys.readouterr().out
    assert [k.kid for k in load_keys(key_dir)] == [new.kid]
    assert sorted(p.name for p in key_dir.iterdir() if p.stem == old.kid) == []


# --------------------------------------------------------------------------- vendors list


def test_vendors_list_cuts_a_long_title_to_keep_the_columns(
    tmp_path: Path, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/cli.py:cmd_vendors — `r['title'][:40]` → `r['title']`.
    The text listing is columns IT staff read (and scripts cut): a database with a long title
    must not push its adapter, release and contract expiry out of their columns."""
    title = "Two Database of Historical Newspapers and Parish Registers"
    vendor = two_toml().replace('title = "Two Database"', f'title = "{title}"')
    cfg = file_directory_config(tmp_path, port, {"two": vendor})
    assert main(["vendors", "list", "--config", str(cfg)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first[21:61] == title[:40]
    assert first[62:].split() == ["ip", "anonymous", "2027-06-30"]


# --------------------------------------------------------------------------- reload


def test_reload_with_a_damaged_pid_file_says_there_is_no_running_proxy(
    tmp_path: Path, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/admin_cli.py:_read_pid — `except (OSError, ValueError):` → `except OSError:`.
    A pid file cut short by a full disk or written over by hand must be answered as a missing
    one: "no running proxy", naming the file, exit 1; not a ValueError traceback."""
    cfg = file_directory_config(tmp_path, port, {})
    pidfile = pid_path(load_config(cfg))
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text("12ab\n")
    rc = main(["reload", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"no running proxy: {pidfile} is missing or unreadable" in err


def test_reload_of_a_proxy_that_has_stopped_says_the_process_is_gone(
    tmp_path: Path, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/admin_cli.py:cmd_reload — `except ProcessLookupError:` →
    `except ChildProcessError:`. A pid file left behind by a proxy that crashed names a process
    that no longer exists: `reload` must say so and exit 1, not end in a traceback."""
    cfg = file_directory_config(tmp_path, port, {})
    pidfile = pid_path(load_config(cfg))
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    pidfile.write_text(f"{ended.pid}\n")
    rc = main(["reload", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"no running proxy: process {ended.pid} from {pidfile} is gone" in err
