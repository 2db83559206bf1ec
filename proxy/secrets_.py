"""Reading secrets from files (mode-checked) or environment variables, and the server secret."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from proxy.crypto import server_secret_problem

if TYPE_CHECKING:
    from proxy.config import Config


class SecretError(Exception):
    """A secret could not be read safely."""


def readable_by_others(mode: int) -> bool:
    """Whether a file's mode lets anyone but its owner read or write it: a secret file's must
    not (keys, passwords, the referer URL)."""
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def read_secret_file(path: Path) -> str:
    """The file's content without the trailing newline; refuses group/world-readable files."""
    try:
        st = path.stat()
    except OSError as exc:
        raise SecretError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretError(f"{path}: is not a regular file (a directory?); name the file in it")
    if readable_by_others(st.st_mode):
        raise SecretError(f"{path}: readable by group or others; chmod 600 it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SecretError(f"{path}: cannot be read ({exc.strerror})") from None
    problem = secret_text_problem(data)
    if problem is not None:
        raise SecretError(f"{path}: {problem}")
    return data.decode("utf-8").rstrip("\r\n")


def secret_text_problem(data: bytes) -> str | None:
    """What is wrong with a secret file's bytes as a password, or None: not UTF-8 (an editor
    saving in Latin-1), or nothing in it but a newline (a file made with `touch` and never
    filled, which would sign in with an empty password: an anonymous bind for LDAP)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 text; save it as UTF-8"
    if not text.rstrip("\r\n"):
        return "is empty; put the secret in it"
    return None


def read_secret(config: Config, *, file: str, env: str, base: Path | None = None) -> str:
    if env:
        value = os.environ.get(env)
        if value is None:
            raise SecretError(f"environment variable {env} is not set")
        return value
    path = Path(file)
    if not path.is_absolute():
        path = (base or config.path.parent) / path
    return read_secret_file(path)


def redis_password(config: Config) -> str | None:
    """The Redis password from `session.redis_password_file`, or None: the one reader every
    Redis client of the proxy uses (sessions, statistics, `stats`, `records`), so that they all
    send the same password (every character but the line end)."""
    f = config.session.redis_password_file
    return read_secret_file(config.resolve(f)) if f else None


def server_secret(config: Config) -> bytes:
    """The server secret for opaque keys; generated (32 random bytes, 0600) on first start.
    SecretError for one too short to be safe (`crypto.MIN_SERVER_SECRET_BYTES`)."""
    value = _server_secret(config)
    problem = server_secret_problem(value)
    if problem is not None:
        raise SecretError(problem)
    return value.encode()


def _server_secret(config: Config) -> str:
    s = config.session
    if s.secret_env:
        return read_secret(config, file="", env=s.secret_env)
    path = config.resolve(s.secret_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        except FileExistsError:
            pass  # another worker wrote it first
    return read_secret_file(path)
