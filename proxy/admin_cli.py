"""Staff commands for a running proxy: `reload`, and `vendors test ID`.

`reload` validates the configuration here first (nothing is sent when it is broken), signals the
process named in `server.pid_file`, and waits for the outcome the proxy writes next to that file.
Under systemd, `systemctl reload weston-proxy` does the same through `ExecReload`. Whether a
secret's environment variable is set is left to the running proxy: it is set in the service's
environment, not in the shell `reload` runs in, and the proxy refuses the reload if it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from proxy.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, config_checks, load
from proxy.config import Config, load_config
from proxy.errors import ConfigError

RELOAD_WAIT_S = 15.0


def _looks_like_proxy(pid: int) -> bool:
    """Refuse to signal a recycled pid that now belongs to another program (Linux /proc check)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # no /proc: os.kill(pid, 0) below is the only check available
    try:
        text = cmdline.read_bytes().replace(b"\x00", b" ")
    except OSError:
        return False
    return b"proxy" in text


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _load_for_reload(path: str) -> Config | None:
    """`cli.load` without the environment-variable checks (see the module docstring)."""
    try:
        return load_config(path, extra_checks=config_checks(), environment=False)
    except ConfigError as exc:
        print(f"configuration has {len(exc.problems)} problem(s):")
        for p in exc.problems:
            print(f"  {p}")
        return None


def cmd_reload(args: argparse.Namespace) -> int:
    from proxy.reload import pid_path, status_path

    config = _load_for_reload(args.config)
    if config is None:
        print("nothing was sent; the running proxy keeps its configuration")
        return EXIT_FAIL
    pidfile = pid_path(config)
    pid = args.pid or _read_pid(pidfile)
    if pid is None:
        print(f"no running proxy: {pidfile} is missing or unreadable", file=sys.stderr)
        return EXIT_FAIL
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        print(f"no running proxy: process {pid} from {pidfile} is gone", file=sys.stderr)
        return EXIT_FAIL
    except PermissionError:
        print(f"process {pid} belongs to another user; run as the proxy's user", file=sys.stderr)
        return EXIT_FAIL
    if not _looks_like_proxy(pid):
        print(f"process {pid} is not a weston-proxy (stale {pidfile})", file=sys.stderr)
        return EXIT_FAIL
    status = status_path(config)
    sent = time.time()
    os.kill(pid, signal.SIGHUP)
    print(f"sent SIGHUP to {pid}")
    if args.no_wait:
        return EXIT_OK
    result = _wait_for_outcome(status, sent, args.wait)
    if result is None:
        print(f"no outcome in {status} after {args.wait:g} s; see the proxy's log")
        return EXIT_FAIL
    if result.get("outcome") == "reloaded":
        print(
            f"reloaded: {result.get('vendors')} vendor(s), keys {', '.join(result.get('kids', []))}"
        )
        return EXIT_OK
    print("refused; the running configuration is kept:")
    for p in result.get("problems", []):
        print(f"  {p}")
    return EXIT_FAIL


def _wait_for_outcome(status: Path, sent: float, wait_s: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            data: dict[str, Any] = json.loads(status.read_text())
        except (OSError, ValueError):
            data = {}
        if float(data.get("at", 0)) >= sent:
            return data
        time.sleep(0.1)
    return None


def cmd_vendors_test(args: argparse.Namespace) -> int:
    from proxy.vendor_test import print_report, run_vendor_test

    config = load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    vendor = config.vendor(args.id)
    if vendor is None:
        known = ", ".join(v.id for v in config.vendors) or "none"
        print(f"no vendor {args.id!r} (configured: {known})", file=sys.stderr)
        return EXIT_USAGE
    report = asyncio.run(run_vendor_test(config, vendor))
    print_report(report, sys.stdout, args.format)
    return EXIT_OK if report.ok else EXIT_FAIL


def _subcommands(parser: argparse.ArgumentParser) -> Any:
    # argparse has no public way to reach an existing parser's subcommands; this is the stable one.
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def register(sub: Any) -> None:
    s = sub.add_parser("reload", help="make the running proxy re-read its configuration")
    s.add_argument("--config", required=True)
    s.add_argument("--pid", type=int, default=0, help="signal this pid instead of the pid file's")
    s.add_argument(
        "--wait", type=float, default=RELOAD_WAIT_S, help="seconds to wait for the outcome"
    )
    s.add_argument("--no-wait", action="store_true", help="signal and return at once")
    s.set_defaults(func=cmd_reload)

    t = _subcommands(sub.choices["vendors"]).add_parser(
        "test", help="fetch a vendor's starting point through the proxy and report"
    )
    t.add_argument("id")
    t.add_argument("--config", required=True)
    t.add_argument("--format", choices=("text", "json"), default="text")
    t.set_defaults(func=cmd_vendors_test)
