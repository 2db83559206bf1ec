"""Reload without downtime: on SIGHUP, re-read the configuration and swap it in, or keep the old.

The running proxy re-reads the file it was started with (vendors, templates, compliance and other
feature settings, signing keys), validates it exactly as `check-config` does, and only then swaps
the config-dependent parts in (`proxy.app.swap_services`). Sessions and their store, the server
secret and metrics are kept, so signed-in patrons notice nothing. A config that fails validation,
or that changes what only a restart can change, is refused: the running one stays and the log
says which file and key. Replaced upstream clients close once their last forward has finished.

`weston-proxy reload` finds the process through the pid file (`server.pid_file`) this feature
writes at start, and reads the outcome from the status file written next to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from aiohttp import web

from proxy import tasks
from proxy.config import Config, load_config
from proxy.errors import ConfigError, Problem
from proxy.limits_http import http_limits
from proxy.logs import get_logger
from proxy.services import Services, rebuild_services, swap_services
from proxy.stats import stats_section

log = get_logger("proxy.reload")

# What a running process cannot change: the socket and what `serve` hands web.run_app once
# (backlog, shutdown grace, and the [throttle.http] limits, see restart_only_changes), where and
# how often statistics are written (STATS_RESTART_ONLY), the cookie patrons hold, the session
# store and secret (sessions must survive), and process-wide logging. Changing these needs a
# restart.
RESTART_ONLY = (
    ("server", "listen"),
    ("server", "workers"),
    ("server", "public_url"),
    ("server", "cookie_name"),
    ("server", "pid_file"),
    ("server", "shutdown_grace_s"),
    ("server", "listen_backlog"),
    ("session", None),
    ("logging", None),
    ("demo", None),
)
# The statistics feature reads these `[stats]` keys once, when it opens its store and starts its
# timers (proxy.usage_stats.feature; its reload hook only refreshes search paths). They are
# restart-only rather than applied on reload: moving the file while running would mean flushing
# the pending counts to the old store and reopening the recorder under the flush timer, for a
# setting changed once in years, and a reload that answered "reloaded" while the counts still
# went to the old file lost them from the monthly report. min_cell is not here: each report
# reads it.
STATS_RESTART_ONLY = ("path", "flush_interval_s", "refresh_interval_s")
# A replaced directory may still be answering a login; it closes after this long at least
# (longer when its `directory.timeout_s` lets a sign-in take longer: `Reloader._retire`).
DIRECTORY_GRACE_S = 30.0
# A replaced upstream is closed after this long even if a download is still streaming.
MAX_DRAIN_S = 3600.0


@dataclass(frozen=True)
class Outcome:
    """What one reload did: `problems` empty means the new configuration is running."""

    ok: bool
    problems: tuple[str, ...] = ()
    vendors: int = 0
    kids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": "reloaded" if self.ok else "refused",
            "problems": list(self.problems),
            "vendors": self.vendors,
            "kids": list(self.kids),
            "pid": os.getpid(),
            "at": time.time(),
        }


def pid_path(config: Config) -> Path:
    return config.resolve(config.server.pid_file)


def status_path(config: Config) -> Path:
    """Where the last reload's outcome is written, next to the pid file."""
    p = pid_path(config)
    return p.with_name(p.name + ".reload.json")


def restart_only_changes(old: Config, new: Config) -> list[Problem]:
    """Settings that differ between `old` and `new` but only take effect on a restart."""
    changed = []
    for section, key in RESTART_ONLY:
        a, b = getattr(old, section), getattr(new, section)
        if key is not None:
            a, b = getattr(a, key), getattr(b, key)
        if a != b:
            changed.append(f"{section}.{key}" if key else f"[{section}]")
    if http_limits(old) != http_limits(new):
        changed.append("[throttle.http]")
    old_stats, new_stats = stats_section(old), stats_section(new)
    for key in STATS_RESTART_ONLY:
        a, b = getattr(old_stats, key), getattr(new_stats, key)
        if key == "path":  # relative to the config file: the same file spelt two ways is no change
            a, b = old.resolve(a), new.resolve(b)
        if a != b:
            changed.append(f"stats.{key}")
    return [
        Problem(
            str(new.path), name, "changed; only a restart applies this, so nothing was reloaded"
        )
        for name in changed
    ]


@dataclass
class Reloader:
    """Serialises reloads of one app and closes replaced parts once they are idle."""

    svc: Services
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    retiring: set[asyncio.Task[None]] = field(default_factory=set)

    async def reload(self) -> Outcome:
        async with self.lock:
            outcome = await self._reload()
        _write_status(self.svc.config, outcome)
        return outcome

    async def _reload(self) -> Outcome:
        from proxy.cli import config_checks

        svc = self.svc
        path = svc.config.path
        try:
            # The loader reads a few small files; a thread keeps the event loop serving meanwhile.
            config = await asyncio.to_thread(load_config, path, extra_checks=config_checks())
        except ConfigError as exc:
            return self._refused(exc.problems)
        problems = restart_only_changes(svc.config, config)
        if problems:
            return self._refused(problems)
        try:
            new = await rebuild_services(svc, config)
        except (OSError, ValueError) as exc:
            # Key directory unreadable, a broken key file, a secret file gone: keep what runs.
            return self._refused([Problem(str(path), "(services)", f"{type(exc).__name__}: {exc}")])
        old = swap_services(svc, new)
        task = asyncio.create_task(self._retire(old))
        self.retiring.add(task)
        task.add_done_callback(self.retiring.discard)
        for hook in svc.hooks.reloaded:
            try:
                await hook(config)
            except Exception as exc:  # one feature's failure must not undo the swap
                log.error("reload_hook_failed", exc_type=type(exc).__name__)
        kids = tuple(k.kid for k in svc.signer.keys)
        log.info("reloaded", config=str(path), vendors=len(config.vendors), kid=list(kids))
        return Outcome(True, vendors=len(config.vendors), kids=kids)

    def _refused(self, problems: list[Problem]) -> Outcome:
        texts = tuple(str(p) for p in problems)
        log.error(
            "reload_refused",
            config=str(self.svc.config.path),
            reason="the running configuration is kept",
            problems=list(texts),
            count=len(texts),
        )
        return Outcome(False, problems=texts, vendors=len(self.svc.config.vendors))

    async def _retire(self, old: Services) -> None:
        """Close a replaced upstream once its forwards are done, and the old directory after it."""
        started = time.monotonic()
        try:
            try:
                while self.svc.forwarding.get(old.upstream, 0) > 0:
                    if time.monotonic() - started > MAX_DRAIN_S:
                        break
                    await asyncio.sleep(0.1)
            finally:
                self.svc.forwarding.pop(old.upstream, None)
                await old.upstream.close()
            # A sign-in may wait on the directory for its whole `timeout_s` (which a library
            # whose directory is slow to answer may set past the grace), and once more after a
            # worker is lost.
            grace = max(DIRECTORY_GRACE_S, 2 * (old.config.directory.timeout_s + 1.0))
            await asyncio.sleep(max(0.0, grace - (time.monotonic() - started)))
        finally:
            await old.directory.close()

    async def close(self) -> None:
        """On shutdown, replaced parts close now rather than after their grace."""
        for t in list(self.retiring):
            await tasks.stop(t)


def _signal_target() -> int:
    """The pid `reload` should signal: the parent of `serve --workers N`, else this process."""
    if multiprocessing.parent_process() is not None:
        return os.getppid()
    return os.getpid()


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_status(config: Config, outcome: Outcome) -> None:
    try:
        _write_atomically(status_path(config), json.dumps(outcome.to_json()))
    except OSError as exc:
        log.warning("reload_status_unwritten", exc_type=type(exc).__name__)


async def feature(app: web.Application, svc: Services) -> AsyncIterator[None]:
    """Write the pid file, reload on SIGHUP, and close replaced parts at shutdown."""
    reloader = Reloader(svc)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[Outcome]] = set()

    def on_hup() -> None:
        task = loop.create_task(reloader.reload())
        pending.add(task)
        task.add_done_callback(pending.discard)

    pidfile = pid_path(svc.config)
    me = _signal_target()
    try:
        _write_atomically(pidfile, f"{me}\n")
    except OSError as exc:
        log.warning("pid_file_unwritten", exc_type=type(exc).__name__)
    handled = True
    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError, ValueError):
        handled = False  # not the main thread (e.g. embedded): `reload` cannot reach this app
    if handled:
        # `serve` blocks SIGHUP until now (proxy.cli.cmd_serve): one sent during start-up is
        # delivered here, as a reload.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    try:
        yield
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGHUP)
            # Not back to the default action (end the process): a reload overlapping a stop
            # would cut short what closes after this (the last statistics flush, the services).
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for t in list(pending):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await reloader.close()
        if me == os.getpid():
            forget_pid_file(svc.config, me)


def forget_pid_file(config: Config, pid: int) -> None:
    """Remove the pid file when it still names `pid` (the process that wrote it is stopping;
    a newer instance's file is left alone). With workers, the parent calls this once they have
    all stopped: they write its pid, and a stale one could later name an unrelated process."""
    pidfile = pid_path(config)
    with contextlib.suppress(OSError):
        if pidfile.read_text().strip() == str(pid):
            pidfile.unlink()


def hup_forwarder(procs: list[Any]) -> Callable[[int, FrameType | None], None]:
    """The `serve --workers N` parent's SIGHUP handler: every live worker reloads on its own."""

    def forward(signum: int, frame: FrameType | None) -> None:
        for p in procs:
            if p.pid and p.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGHUP)

    return forward
