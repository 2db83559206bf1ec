"""Logging that cannot carry a patron: structlog JSON lines with an allowlist redaction processor.

Only keys named in `ALLOWED_KEYS` survive; values that look like an address, an e-mail or a URL
with a query are cut. Records from other libraries (aiohttp, ldap3, asyncio) keep only their logger
name, level and exception type, because their messages can quote URLs, hosts and request lines.
"""

from __future__ import annotations

import faulthandler
import logging
import re
import signal
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

ALLOWED_KEYS = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "logger",
        "vendor",
        "method",
        "status",
        "bytes",
        "duration_ms",
        "outcome",
        "dependency",
        "error",
        "reason",
        "count",
        "kid",
        "config",
        "problems",
        "listen",
        "public_url",
        "workers",
        "vendors",
        "store",
        "directory",
        "pid",
        "exc_type",
        "retry_in_s",
        "server",
        "event_loop",
        "compiled_rewriter",
    }
)
# What `[logging]` accepts: `level` case-insensitively (configure_logging upper-cases it for the
# logging module), `format` as written.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "console", "auto")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_IPV6 = re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b")
# The shortened spellings (`2001:db8::7`, `fe80::1`, `::1`): any run of hex digits, dots and
# colons holding `::`. Cut whatever such a run is; `ipaddress` would tell an address from a
# C++-style `a::b`, but a log line has no use for either, and a miss here is a leak.
_IPV6_SHORT = re.compile(r"(?<![\w:.])[0-9a-fA-F:.]*::[0-9a-fA-F:.]*(?:%[\w.-]+)?")
# `@` also as `%40`, as an address appears in a URL or a form body (`+` as `%2B` in its name).
# A match starts only where such a run starts: tried at every position of a long run, it was
# quadratic.
_EMAIL = re.compile(r"(?<![\w.+%-])[\w.+%-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
_QUERY = re.compile(r"\?[^\s\"']*")


def scrub(text: str) -> str:
    text = _EMAIL.sub("[email]", text)
    text = _QUERY.sub("?[query]", text)
    text = _IPV6_SHORT.sub("[ip]", text)
    text = _IPV6.sub("[ip]", text)
    # Loopback listen addresses are the proxy's own, not a patron's; everything else is cut.
    return _IPV4.sub(lambda m: m.group(0) if m.group(0).startswith("127.") else "[ip]", text)


class Redact:
    """structlog processor: keep allowlisted keys only, scrub their string values."""

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        out: dict[str, Any] = {}
        for key, value in event_dict.items():
            if key not in ALLOWED_KEYS:
                continue
            if isinstance(value, str):
                value = scrub(value)[:500]
            elif isinstance(value, list | tuple):
                value = [scrub(v)[:500] if isinstance(v, str) else v for v in value][:50]
            elif not isinstance(value, int | float | bool) and value is not None:
                value = scrub(str(value))[:200]
            out[key] = value
        return out


def _foreign(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Other libraries' records: keep the logger name and exception type, never the message."""
    record = event_dict.get("_record")
    exc = event_dict.pop("exc_info", None)
    out: MutableMapping[str, Any] = {"event": "library_log", "logger": getattr(record, "name", "?")}
    if record is not None and record.exc_info and record.exc_info[0] is not None:
        out["exc_type"] = record.exc_info[0].__name__
    elif isinstance(exc, BaseException):
        out["exc_type"] = type(exc).__name__
    out["_record"] = record
    out["_from_structlog"] = event_dict.get("_from_structlog", False)
    return dict(out)


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Route structlog and stdlib logging through the redaction processor to `stream` (stdout)."""
    stream = stream or sys.stdout
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if console
        else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, Redact(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[_foreign, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, Redact(), renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would write client addresses and full request lines: never enabled.
    logging.getLogger("aiohttp.access").disabled = True


def get_logger(name: str = "proxy") -> Any:
    return structlog.get_logger(name)


def stacks_on_usr1() -> None:
    """`kill -USR1` makes this process print every thread's stack to its standard error.

    For a proxy that will not stop or answer: frames name only files, functions and lines, never
    a variable's value, so the dump carries no patron data. Registered by `serve` (forked workers
    inherit it) and by each directory worker process, which the forkserver starts afresh.
    """
    faulthandler.register(signal.SIGUSR1, all_threads=True)
