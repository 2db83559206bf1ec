"""The `weston-proxy` command line (also `python -m proxy`)."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from proxy.config import Config, ExtraChecker, load_config
from proxy.errors import ConfigError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


# Commands owned by feature modules: each module has `register(subparsers) -> None`.
COMMAND_MODULES: tuple[str, ...] = ("proxy.stats_cli", "proxy.admin_cli", "proxy.compliance_cli")
# Config sections owned by feature modules: each entry is (module, checker function name).
CONFIG_CHECKS: tuple[tuple[str, str], ...] = (
    ("proxy.ldap_directory", "check_ldap_filters"),
    ("proxy.stats", "check_stats"),
    ("proxy.compliance", "check_compliance_settings"),
    ("proxy.throttle", "check_throttle"),
    ("proxy.web.branding", "check_templates"),
)


def config_checks() -> tuple[ExtraChecker, ...]:
    """Validation owned by feature modules, run by the loader after its own checks."""
    return tuple(getattr(importlib.import_module(m), fn) for m, fn in CONFIG_CHECKS)


def load(path: str, err: TextIO) -> Config | None:
    try:
        return load_config(path, extra_checks=config_checks())
    except ConfigError as exc:
        print(f"configuration has {len(exc.problems)} problem(s):", file=err)
        for p in exc.problems:
            print(f"  {p}", file=err)
        return None


def _demo_ctx(config: Config):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        from proxy.app import SERVICES
        from proxy.demo_vendor import create_demo_vendor_app

        demo = next((v for v in config.vendors if v.id == "demo"), None)
        host, _, port = config.demo.vendor_listen.rpartition(":")
        runner = web.AppRunner(
            create_demo_vendor_app(
                origin=demo.origin if demo else "http://demo.vendor.test",
                audience=demo.aud if demo else "demo",
                # What the proxy publishes now: a reload brings new services, and new keys.
                jwks=lambda: app[SERVICES].signer.jwks(),
                header=demo.assertion_header if demo else "X-Patron-Assertion",
            ),
            access_log=None,
        )
        await runner.setup()
        await web.TCPSite(runner, host, int(port)).start()
        yield
        await runner.cleanup()

    return ctx


def _banner(config: Config, out: TextIO) -> None:
    print(f"Weston patron proxy listening on {config.server.listen}", file=out)
    print(f"Open {config.server.public_url.rstrip('/')}/login", file=out)
    if config.directory.kind == "file":
        demo_card = config.resolve(config.directory.patrons_file).with_suffix(".README")
        if demo_card.exists():
            print(demo_card.read_text(encoding="utf-8").strip(), file=out)
    out.flush()


def build_serving_app(config: Config) -> web.Application:
    from proxy.app import create_app

    app = create_app(config)
    if config.demo.vendor_listen:
        app.cleanup_ctx.append(_demo_ctx(config))
    return app


def _serve_one(config: Config, *, reuse_port: bool) -> None:
    from proxy.limits_http import server_limits
    from proxy.logs import configure_logging

    configure_logging(config.logging.level, config.logging.format)
    # The standard asyncio loop, not uvloop: libuv (since 1.45) accepts one connection per loop
    # iteration, so under load new patrons waited in the accept queue for seconds (10-25 s at
    # 1,000 connections, 0.2-1 % of requests over 10 s) while open connections were served;
    # asyncio accepts up to `listen_backlog` per iteration. uvloop was no faster here either
    # (bench/README.md, "Event loop").
    host, port = config.listen_addr
    web.run_app(
        build_serving_app(config),
        host=host,
        port=port,
        access_log=None,
        reuse_port=reuse_port,
        shutdown_timeout=config.server.shutdown_grace_s,
        backlog=config.server.listen_backlog,
        print=None,
        handle_signals=True,
        # A patron who leaves (closes the tab, reloads during a slow search) ends the request:
        # its admission slots and vendor connection go back at once, not when the vendor has
        # answered or upstream_timeout_s has passed (aiohttp's default keeps the handler going).
        # The test server always cancels, so this is also what the tests run.
        handler_cancellation=True,
        **server_limits(config),
    )


def _prepare_shared_state(config: Config) -> str | None:
    """Create the server secret and first signing key before serving; None, or why not.

    Before any worker starts: workers that raced to create them could read a half-written
    secret, or each make a key of their own; then one worker could not open sessions sealed by
    another. And before the banner: a key directory that cannot be written (a read-only
    mount, another owner, a file in its place) is one line naming the key, not a traceback
    after "listening on".
    """
    from proxy.assertion import ensure_keys
    from proxy.secrets_ import server_secret

    def cannot(key: str, path: Path, exc: OSError) -> str:
        why = exc.strerror or type(exc).__name__
        return f"{config.path}: {key}: {path} cannot be used: {why}"

    if not config.session.secret_env:
        try:
            server_secret(config)
        except OSError as exc:
            return cannot("session.secret_file", config.resolve(config.session.secret_file), exc)
    key_dir = config.resolve(config.keys.dir)
    try:
        ensure_keys(key_dir)
    except OSError as exc:
        return cannot("keys.dir", key_dir, exc)
    except ValueError as exc:  # a key file readable by others, or broken: the message names it
        return f"{config.path}: keys.dir: {exc}"
    return None


def _workers_refusal(config: Config, workers: int) -> str | None:
    """Why `workers` processes cannot serve this config, or None."""
    if workers <= 1:
        return None
    if config.session.store == "memory":
        return (
            f'{workers} workers need [session] store = "redis": with the memory store each worker '
            "keeps its own sessions and patrons would be signed out at random"
        )
    if config.demo.vendor_listen:
        return "the bundled demo vendor ([demo] vendor_listen) runs with one worker only"
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    import signal

    # A reload (SIGHUP) waits until the proxy can reload (see proxy.launch, which blocks it
    # before any import; this covers a serve started through `main` itself). proxy.reload
    # unblocks it once its handler is in place; workers inherit the block.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    _no_core_dumps()
    config = load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    workers = args.workers or config.server.workers
    refusal = _workers_refusal(config, workers)
    if refusal is not None:
        print(f"cannot serve: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    from proxy.logs import stacks_on_usr1

    stacks_on_usr1()
    problem = _prepare_shared_state(config) or _listen_problem(config)
    if problem is not None:
        print(f"cannot serve: {problem}", file=sys.stderr)
        return EXIT_USAGE
    _banner(config, sys.stdout)
    if workers <= 1:
        try:
            _serve_one(config, reuse_port=False)
        except OSError as exc:  # taken between the check and the start
            print(f"cannot serve: {_cannot_listen(config, exc)}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK
    return _serve_workers(config, workers)


def _listen_problem(config: Config) -> str | None:
    """Why `server.listen` (or the demo vendor's `[demo] vendor_listen`) cannot be listened
    on: taken by another process, or an address this machine does not have. Found by binding
    each once before the banner and before anything starts (the pid file, the workers); None
    when they can be. Without it the banner said "listening on" and a traceback followed, and
    a second `serve --workers` shared the port of a running one (SO_REUSEPORT): the probe binds
    without it, so any listener there refuses it."""
    checks = [("server.listen", config.server.listen)]
    if config.demo.vendor_listen:
        checks.append(("demo.vendor_listen", config.demo.vendor_listen))
    for key, listen in checks:
        host, _, port = listen.rpartition(":")
        why = _bind_problem(host.strip("[]"), int(port))
        if why is not None:
            return f"{config.path}: {key}: {listen} cannot be listened on: {why}"
    return None


def _bind_problem(host: str, port: int) -> str | None:
    import socket

    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    for family, kind, proto, _, address in found:
        with socket.socket(family, kind, proto) as probe:
            # As asyncio's server binds: an address still in TIME_WAIT after a restart is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
                probe.listen(1)
            except OSError as exc:
                return exc.strerror or type(exc).__name__
    return None


def _cannot_listen(config: Config, exc: OSError) -> str:
    why = exc.strerror or str(exc) or type(exc).__name__
    return f"{config.path}: server.listen: {config.server.listen} cannot be listened on: {why}"


def _no_core_dumps() -> None:
    """No core file of this process or any it starts (workers, directory workers), ever.

    A core dump is a copy of memory written to disk (by systemd-coredump, kept for days): live
    sessions, vendor cookies and the sealing keys, and in a directory worker the PIN being
    checked. Those must never reach a disk (P2, P5). Soft and hard limit 0, so nothing started
    from here can raise it again; children inherit it, and a core_pattern pipe such as
    systemd-coredump honours it too.
    """
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _worker(config: Config) -> None:
    """A worker process: signals back to normal (aiohttp installs its own), then serve."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    # Out of the terminal's process group: Ctrl-C reaches only the parent, which forwards one
    # SIGTERM. A second signal in the middle of aiohttp's drain would cut the cleanup short.
    os.setpgid(0, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    _serve_one(config, reuse_port=True)


def _serve_workers(config: Config, workers: int) -> int:
    """N processes on one port (SO_REUSEPORT); the parent forwards SIGTERM/SIGINT and waits.

    Each worker drains its in-flight requests on SIGTERM (aiohttp's graceful shutdown, up to
    server.shutdown_grace_s). If a worker dies on its own, the parent stops the others and exits
    non-zero, so the supervisor (systemd, Docker) restarts the whole set rather than running short.
    """
    import multiprocessing
    import signal
    from multiprocessing.connection import wait

    stopping = False
    unexpected = False
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(config,), daemon=False) for _ in range(workers)]

    def stop_all(signum: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal stopping
        if stopping:
            return  # each worker gets one SIGTERM; it is already draining
        stopping = True
        for p in procs:
            if p.pid and p.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)

    # Blocked until the handlers are in place, so a signal during start-up is forwarded, not lost
    # (SIGHUP since cmd_serve; each worker unblocks its own once it can reload).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        for p in procs:
            p.start()
        signal.signal(signal.SIGTERM, stop_all)
        signal.signal(signal.SIGINT, stop_all)
        signal.signal(signal.SIGHUP, importlib.import_module("proxy.reload").hup_forwarder(procs))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    # A worker stopped by the SIGTERM the parent forwarded before aiohttp's own handler was in
    # place (a stop in the first second) ends by that signal: a stop that was asked for.
    stopped = (0, -signal.SIGTERM)
    running = list(procs)
    while running:
        for sentinel in wait([p.sentinel for p in running]):
            done = next(p for p in running if p.sentinel == sentinel)
            done.join()
            running.remove(done)
            _end_process_group(done.pid)
            if not stopping:
                unexpected = True
                print(
                    f"worker {done.pid} exited with {done.exitcode}; stopping the others",
                    file=sys.stderr,
                )
                stop_all()
            elif done.exitcode not in stopped:
                print(f"worker {done.pid} exited with {done.exitcode}", file=sys.stderr)
    # No worker is left to reload: a late reload must not end the stopping parent either.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    importlib.import_module("proxy.reload").forget_pid_file(config, os.getpid())
    clean = not unexpected and all(p.exitcode in stopped for p in procs)
    return EXIT_OK if clean else EXIT_FAIL


def _end_process_group(worker_pid: int | None) -> None:
    """Kill what is left of an ended worker's process group (each worker leads its own,
    `_worker`): a worker killed outright (SIGKILL, the OOM killer) leaves its directory worker
    processes, multiprocessing's fork server and resource tracker behind, holding the directory
    bind password, for ever. A worker that ended cleanly has closed them; then there is none."""
    import signal

    if worker_pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker_pid, signal.SIGKILL)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load(args.config, sys.stdout)
    if config is None:
        return EXIT_FAIL
    print(f"{args.config}: OK ({len(config.vendors)} vendor(s))")
    return EXIT_OK


def cmd_hash_password(args: argparse.Namespace) -> int:
    from proxy.auth import hash_password

    password = (
        sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("PIN/password: ")
    )
    if not password:
        print("an empty password cannot be hashed", file=sys.stderr)
        return EXIT_USAGE
    print(hash_password(password))
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    from proxy.assertion import ASSERTION_LIFETIME_S, JWKS_MAX_AGE_S, create_key, load_keys

    config = load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    key_dir = config.resolve(config.keys.dir)
    if args.keys_command == "list":
        now = time.time()
        for k in load_keys(key_dir):
            state = (
                "signing-eligible"
                if k.not_before <= now
                else f"published, signs from {time.ctime(k.not_before)}"
            )
            print(f"{k.kid}  {state}")
        return EXIT_OK
    if args.keys_command == "rotate":
        delay = config.keys.activate_after_s if args.delay is None else args.delay
        try:
            key = create_key(key_dir, not_before=time.time() + delay)
        except OSError as exc:  # a read-only mount, another owner, a full disk
            why = exc.strerror or type(exc).__name__
            print(f"{config.path}: keys.dir: {key_dir} cannot be written: {why}", file=sys.stderr)
            return EXIT_FAIL
        # The running proxy reads the key directory at its next reload or restart: only then is
        # the key in its JWKS, and it signs once its delay has passed *and* it has been published
        # that long (at most JWKS_MAX_AGE_S, the time vendors may keep the JWKS).
        signs = (
            f"signs once {delay:g} s have passed and it has been published for "
            f"{min(delay, JWKS_MAX_AGE_S):g} s"
            if delay > 0
            else "signs from then on"
        )
        print(
            f"added {key.kid}; not yet published: the running proxy lists it in "
            f"/.well-known/jwks.json at its next reload or restart (do one now), and it {signs}."
        )
        return EXIT_OK
    if args.keys_command == "retire":
        keys = load_keys(key_dir)
        match = [k for k in keys if k.kid == args.kid]
        if not match:
            print(f"no key {args.kid} in {key_dir}", file=sys.stderr)
            return EXIT_FAIL
        now = time.time()
        active = [k for k in keys if k.not_before <= now]
        newest_active = active[-1] if active else None
        if newest_active is not None and newest_active.kid == args.kid:
            print("refusing to retire the key that currently signs; rotate first", file=sys.stderr)
            return EXIT_FAIL
        # The newest key took over at its not_before; the retired key's last assertion expires
        # ASSERTION_LIFETIME_S after that.
        successor = min(
            (k for k in keys if k.not_before > match[0].not_before),
            key=lambda k: k.not_before,
            default=None,
        )
        if (
            successor is not None
            and successor.not_before + ASSERTION_LIFETIME_S > now
            and not args.force
        ):
            wait = int(successor.not_before + ASSERTION_LIFETIME_S - now)
            print(
                f"assertions signed by {args.kid} may still be valid for {wait} s; retry later or --force",
                file=sys.stderr,
            )
            return EXIT_FAIL
        match[0].path.unlink()
        match[0].path.with_suffix(".json").unlink(missing_ok=True)
        print(f"retired {args.kid}. Reload or restart the proxy.")
        return EXIT_OK
    return EXIT_USAGE


def cmd_vendors(args: argparse.Namespace) -> int:
    config = load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    if args.vendors_command == "list":
        rows: list[dict[str, Any]] = [
            {
                "id": v.id,
                "title": v.title,
                "hosts": list(v.hosts),
                "auth": v.auth,
                "release": v.release,
                "contract_expires": v.contract.expires.isoformat() if v.contract.expires else None,
            }
            for v in config.vendors
        ]
        if args.format == "json":
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print(
                    f"{r['id']:<20} {r['title'][:40]:<40} {r['auth']:<12} {r['release']:<12} {r['contract_expires'] or '-'}"
                )
                print(f"{'':<20} hosts: {', '.join(r['hosts'])}")
        return EXIT_OK
    return EXIT_USAGE


def cmd_import_ezproxy(args: argparse.Namespace) -> int:
    from proxy.ezproxy import run_import

    return run_import(Path(args.config_txt), Path(args.out), stdout=sys.stdout, force=args.force)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="weston-proxy", description="Privacy-first remote-access proxy for library databases."
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the proxy")
    s.add_argument("--config", required=True)
    s.add_argument("--workers", type=int, default=0, help="override server.workers")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("check-config", help="validate the configuration and report every problem")
    s.add_argument("--config", required=True)
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("hash-password", help="print an argon2id hash for the patrons file")
    s.add_argument("--stdin", action="store_true", help="read the password from standard input")
    s.set_defaults(func=cmd_hash_password)

    s = sub.add_parser("keys", help="list, rotate or retire assertion signing keys")
    ks = s.add_subparsers(dest="keys_command", required=True)
    k = ks.add_parser("list")
    k.add_argument("--config", required=True)
    k = ks.add_parser("rotate")
    k.add_argument("--config", required=True)
    k.add_argument("--delay", type=int, default=None, help="seconds before the new key signs")
    k = ks.add_parser("retire")
    k.add_argument("kid")
    k.add_argument("--config", required=True)
    k.add_argument("--force", action="store_true")
    s.set_defaults(func=cmd_keys)

    s = sub.add_parser("vendors", help="list configured vendors")
    vs = s.add_subparsers(dest="vendors_command", required=True)
    v = vs.add_parser("list")
    v.add_argument("--config", required=True)
    v.add_argument("--format", choices=("text", "json"), default="text")
    s.set_defaults(func=cmd_vendors)

    s = sub.add_parser("import-ezproxy", help="convert an EZproxy config.txt to vendor TOML files")
    s.add_argument("config_txt")
    s.add_argument("--out", required=True)
    s.add_argument("--force", action="store_true", help="overwrite existing files")
    s.set_defaults(func=cmd_import_ezproxy)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


# A key id is an RFC 7638 thumbprint: 43 base64url characters, so one key in 64 starts with "-".
_KID = re.compile(r"-[A-Za-z0-9_-]{42}")


def _kid_as_operand(argv: list[str]) -> list[str]:
    """`keys retire <kid>` with a kid that starts with "-": argparse would take it for an option
    ("the following arguments are required: kid"), so it goes behind "--", where only operands
    are read. Every other command line is returned as it is."""
    if argv[:2] != ["keys", "retire"] or "--" in argv:
        return argv
    kids = [a for a in argv[2:] if _KID.fullmatch(a)]
    rest = [a for a in argv[2:] if not _KID.fullmatch(a)]
    return ["keys", "retire", *rest, "--", *kids] if kids else argv


# Commands whose --config belongs to the action after them (`vendors list`, `keys rotate`).
_GROUPS = ("keys", "vendors")


def _config_after_action(argv: list[str]) -> list[str]:
    """`vendors --config X list`, the option before the action as many tools allow: the group's
    parser knows no --config, so argparse read X as the action ("invalid choice: 'X'"), which
    tells IT staff nothing about the option. The option is moved behind the action, where it is
    read; any other command line is returned as it is."""
    if len(argv) >= 4 and argv[0] in _GROUPS and argv[1] == "--config":
        return [argv[0], argv[3], *argv[1:3], *argv[4:]]
    if len(argv) >= 3 and argv[0] in _GROUPS and argv[1].startswith("--config="):
        return [argv[0], argv[2], argv[1], *argv[3:]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    line = _config_after_action(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(_kid_as_operand(line))
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
