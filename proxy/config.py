"""Load the TOML configuration into frozen dataclasses, reporting every mistake with file and key.

Each option is declared once, as a dataclass field with its type, default and a one-line meaning
(`doc` metadata). Reading is generic (`read_table`), and the checks that need more than a type are
plain functions that append `Problem`s, so `check-config` shows all mistakes at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import re
import stat
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union
from urllib.parse import urlsplit

from proxy.errors import ConfigError, Problem
from proxy.hosts import HostMap, host_matches, is_valid_hostname

T = TypeVar("T")

ADAPTER_KINDS = ("ip", "assertion", "shared-login", "referer")
RELEASE_LEVELS = ("anonymous", "pseudonymous")
STORE_KINDS = ("memory", "redis")
DIRECTORY_KINDS = ("ldap", "file")

# Public suffixes with more than one label that a vendor wildcard must not cover. The full Public
# Suffix List is large and changes; a wildcard on a bare TLD is caught by label count, these cover
# the common two-label registries vendors actually sit under.
_MULTI_LABEL_SUFFIXES = frozenset(
    {
        "co.uk", "ac.uk", "org.uk", "gov.uk", "com.au", "edu.au", "org.au", "co.nz", "ac.nz",
        "co.jp", "ac.jp", "com.br", "com.cn", "edu.cn", "co.in", "ac.in", "github.io",
        "herokuapp.com", "cloudfront.net", "amazonaws.com", "azurewebsites.net", "appspot.com",
    }
)  # fmt: skip
_SECRETISH = re.compile(r"(password|secret|token|private_key|api_key)$")


def doc(text: str, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with a one-line meaning attached."""
    if default is dataclasses.MISSING:
        return field(metadata={"doc": text})
    if isinstance(default, list | dict | tuple):
        frozen = default
        return field(default_factory=lambda: frozen, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class ServerConfig:
    listen: str = doc("address:port the proxy listens on", "127.0.0.1:8080")
    public_url: str = doc("the proxy's own URL as patrons see it", "http://proxy.localhost:8080")
    workers: int = doc("processes sharing the listening port (SO_REUSEPORT)", 1)
    cookie_name: str = doc("name of the proxy's session cookie", "weston_session")
    trusted_proxies: tuple[str, ...] = doc(
        "load balancer addresses whose X-Forwarded-For is used for throttling", ()
    )
    upstream_timeout_s: float = doc("default vendor response timeout", 30.0)
    upstream_connect_timeout_s: float = doc("vendor connect timeout", 10.0)
    shutdown_grace_s: float = doc("how long SIGTERM waits for in-flight requests", 10.0)
    pid_file: str = doc("where serve writes the pid that `reload` signals", "state/proxy.pid")


@dataclass(frozen=True)
class LibraryConfig:
    name: str = doc("library name shown to patrons", "Weston Public Library")
    scope: str = doc("security domain used in the affiliation claim", "westonlibrary.org")
    contact: str = doc(
        "how patrons reach the library for help",
        "Ask at the circulation desk or call (203) 555-0100.",
    )
    help_url: str = doc("library help page", "")


@dataclass(frozen=True)
class DirectoryConfig:
    kind: str = doc("ldap, or file (a local patrons file with hashed passwords)", "file")
    urls: tuple[str, ...] = doc("LDAP servers, tried in order", ())
    bind_dn: str = doc("service account DN", "")
    bind_password_file: str = doc("file holding the service account password", "")
    bind_password_env: str = doc("environment variable holding the service account password", "")
    base_dn: str = doc("where patrons are searched", "")
    user_filter: str = doc(
        "search filter; {username} is the escaped card number",
        "(&(objectClass=inetOrgPerson)(uid={username}))",
    )
    eligible_filter: str = doc("optional filter the patron's entry must also match", "")
    key_attribute: str = doc("stable attribute the opaque patron key is derived from", "entryUUID")
    group_attribute: str = doc(
        "attribute whose values are the patron's groups (per-database eligibility)", ""
    )
    timeout_s: float = doc("per-server connect and response timeout", 3.0)
    start_tls: bool = doc("upgrade ldap:// connections with StartTLS", False)
    ca_file: str = doc("CA bundle to verify the directory's certificate", "")
    pool_size: int = doc("LDAP worker threads and pooled service connections", 4)
    retry_after_s: float = doc(
        "pause before a failed server is tried again (circuit breaker)", 10.0
    )
    patrons_file: str = doc("kind=file: TOML file of patrons", "patrons.toml")


@dataclass(frozen=True)
class SessionConfig:
    store: str = doc("memory, or redis for several proxy instances", "memory")
    redis_url: str = doc("redis://host:port/db when store = redis", "")
    redis_password_file: str = doc("file holding the Redis password", "")
    idle_timeout_s: int = doc("session ends after this long without a request", 1800)
    lifetime_s: int = doc("session ends this long after login, whatever happens", 28800)
    secret_file: str = doc(
        "server secret for opaque keys; generated (0600) when missing", "state/server-secret"
    )
    secret_env: str = doc(
        "environment variable holding the server secret instead of secret_file", ""
    )


@dataclass(frozen=True)
class KeysConfig:
    dir: str = doc("directory of Ed25519 signing keys; a key is generated when empty", "state/keys")
    activate_after_s: int = doc(
        "a rotated key signs only after this delay (published at once)", 600
    )


@dataclass(frozen=True)
class VendorsConfig:
    dir: str = doc("directory with one TOML file per vendor", "vendors")


@dataclass(frozen=True)
class LoggingConfig:
    level: str = doc("debug, info, warning or error", "info")
    format: str = doc("json, console, or auto (console on a TTY)", "auto")


@dataclass(frozen=True)
class DemoConfig:
    vendor_listen: str = doc("if set, serve the demo vendor ('vendor's-eye view') here", "")


@dataclass(frozen=True)
class Contract:
    privacy_policy_url: str = doc("vendor's privacy policy", "")
    reviewed: dt.date | None = doc("date the contract was last reviewed", None)
    expires: dt.date | None = doc("date the contract ends", None)
    retention_days: int | None = doc("days the vendor keeps usage data", None)
    permits_pseudonymous_id: bool = doc("contract allows a pairwise pseudonymous id", False)
    no_sale_of_data: bool | None = doc("vendor may not sell patron data", None)
    breach_notice_days: int | None = doc("days within which the vendor reports a breach", None)
    law_enforcement_notice: bool | None = doc(
        "vendor tells the library of law-enforcement requests", None
    )
    subprocessors_bound: bool | None = doc("subprocessors bound by the same terms", None)
    deletion_at_termination: bool | None = doc("vendor deletes data when the contract ends", None)


@dataclass(frozen=True)
class Eligibility:
    groups: tuple[str, ...] = doc("patron must be in one of these groups", ())
    ldap_filter: str = doc("LDAP filter the patron's entry must match", "")


@dataclass(frozen=True)
class RewriteRule:
    find: str = doc("literal text to find in vendor bodies")
    replace: str = doc("replacement text")
    types: tuple[str, ...] = doc("content types the rule applies to", ("text/html",))


@dataclass(frozen=True)
class SharedLogin:
    method: str = doc("basic, or form", "basic")
    login_url: str = doc("form: the vendor URL the login form posts to", "")
    username_field: str = doc("form: field name for the account", "username")
    password_field: str = doc("form: field name for the password", "password")
    extra_fields: dict[str, str] = doc("form: further fixed fields", {})
    username_file: str = doc("file holding the library-wide account name", "")
    password_file: str = doc("file holding the library-wide account password", "")
    username_env: str = doc("environment variable holding the account name", "")
    password_env: str = doc("environment variable holding the account password", "")
    success_text: str = doc("form: text present in the response after a good login", "")
    expired_text: str = doc("text in a vendor page that means its session ended", "")
    expired_status: tuple[int, ...] = doc("vendor statuses that mean its session ended", (401,))


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int = doc("per session; 0 = no limit", 0)
    downloads_per_hour: int = doc("full-text downloads per session per hour; 0 = no limit", 0)
    bytes_per_hour: int = doc("bytes per session per hour; 0 = no limit", 0)
    max_upload_bytes: int = doc("largest request body forwarded", 10 * 1024 * 1024)


@dataclass(frozen=True)
class VendorConfig:
    id: str = doc("short stable id; also the assertion audience by default")
    title: str = doc("name shown to patrons")
    origin: str = doc("scheme://host[:port] of the vendor")
    hosts: tuple[str, ...] = doc("hosts proxied for this vendor (exact, or *.domain)")
    auth: str = doc("ip | assertion | shared-login | referer", "ip")
    release: str = doc("anonymous | pseudonymous", "anonymous")
    description: str = doc("one-line description on the menu", "")
    start_url: str = doc("where patrons start; default origin + /", "")
    connect_to: str = doc("host:port to connect to instead of resolving the host", "")
    assertion_header: str = doc("header carrying the assertion", "X-Patron-Assertion")
    audience: str = doc("assertion aud claim; default the vendor id", "")
    referer: str = doc("auth = referer: the authorised referring URL", "")
    third_party: str = doc("block (tracker shield) or allow", "block")
    third_party_reason: str = doc("why the shield is off (required when allow)", "")
    never_proxy: tuple[str, ...] = doc("host patterns never proxied even if under hosts", ())
    tls_verify: bool = doc("verify the vendor's TLS certificate", True)
    tls_ca_file: str = doc("CA bundle for the vendor's certificate", "")
    timeout_s: float = doc("response timeout for this vendor; 0 = server default", 0.0)
    search_paths: tuple[str, ...] = doc("regexes on the path that mark a search (statistics)", ())
    contract: Contract = doc("contract entry", Contract())
    eligibility: Eligibility = doc("who may use this database", Eligibility())
    rewrite: tuple[RewriteRule, ...] = doc("find/replace rules for stubborn sites", ())
    shared_login: SharedLogin | None = doc("auth = shared-login: how to log in", None)
    limits: Limits = doc("per-session usage limits", Limits())
    file: str = doc("the file this vendor came from", "")

    @property
    def origin_parts(self) -> tuple[str, str, int | None]:
        parts = urlsplit(self.origin)
        return parts.scheme, (parts.hostname or ""), parts.port

    @property
    def origin_host(self) -> str:
        return self.origin_parts[1]

    @property
    def start(self) -> str:
        return self.start_url or self.origin.rstrip("/") + "/"

    @property
    def aud(self) -> str:
        return self.audience or self.id


@dataclass(frozen=True)
class Config:
    path: Path
    server: ServerConfig = ServerConfig()
    library: LibraryConfig = LibraryConfig()
    directory: DirectoryConfig = DirectoryConfig()
    session: SessionConfig = SessionConfig()
    keys: KeysConfig = KeysConfig()
    vendors_dir: VendorsConfig = VendorsConfig()
    logging: LoggingConfig = LoggingConfig()
    demo: DemoConfig = DemoConfig()
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    vendors: tuple[VendorConfig, ...] = ()

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(relative)
        return p if p.is_absolute() else (self.path.parent / p)

    @property
    def public(self) -> tuple[str, str, int | None]:
        parts = urlsplit(self.server.public_url)
        return parts.scheme, (parts.hostname or ""), parts.port

    @property
    def listen_addr(self) -> tuple[str, int]:
        host, _, port = self.server.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def vendor(self, vendor_id: str) -> VendorConfig | None:
        for v in self.vendors:
            if v.id == vendor_id:
                return v
        return None

    def host_map(self) -> HostMap:
        scheme, host, port = self.public
        return HostMap.build(
            public_scheme=scheme,
            public_host=host,
            public_port=port,
            vendor_hosts=[(v.id, v.hosts) for v in self.vendors],
            never_proxy=[p for v in self.vendors for p in v.never_proxy],
        )


# --------------------------------------------------------------------------- generic table reader

# Sections of proxy.toml other modules own (stats, compliance, limits …) are kept raw in `extra`
# and validated by their owners, so the loader does not need to know every later feature.
EXTRA_SECTIONS = ("stats", "compliance", "throttle", "shield")


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check and convert one TOML value against a field type; returns (ok, converted)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        for a in args:
            ok, v = _type_ok(value, a)
            if ok:
                return True, v
        return False, None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if tp is str:
        return isinstance(value, str), value
    if tp is dt.date:
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime), value
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        if not isinstance(value, list):
            return False, None
        out = []
        for item in value:
            ok, v = _type_ok(item, inner)
            if not ok:
                return False, None
            out.append(v)
        return True, tuple(out)
    if origin is dict:
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        return ok, dict(value) if ok else None
    return False, None


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "table of strings"
    return {
        str: "string",
        int: "integer",
        float: "number",
        bool: "true or false",
        dt.date: "date",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def read_table(
    cls: type[T], table: Any, file: str, prefix: str, problems: list[Problem]
) -> T | None:
    """Build dataclass `cls` from a TOML table, appending a Problem for every wrong key."""
    if not isinstance(table, dict):
        problems.append(Problem(file, prefix.rstrip(".") or "(top)", "must be a table"))
        return None
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{prefix}{key}"
        if key not in known or key == "file":
            if _SECRETISH.search(key):
                problems.append(
                    Problem(file, where, f"secrets must not be inline; use {key}_file or {key}_env")
                )
            else:
                import difflib

                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(Problem(file, where, f"unknown key{hint}"))
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp) or (
            typing.get_origin(tp) in (Union, types.UnionType)
            and any(dataclasses.is_dataclass(a) for a in typing.get_args(tp))
        ):
            inner: Any = next(
                a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)
            )
            sub = read_table(inner, value, file, f"{where}.", problems)
            if sub is not None:
                kwargs[key] = sub
            continue
        if typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            inner = typing.get_args(tp)[0]
            if not isinstance(value, list):
                problems.append(Problem(file, where, "must be an array of tables ([[...]])"))
                continue
            items = [
                read_table(inner, v, file, f"{where}[{i}].", problems) for i, v in enumerate(value)
            ]
            if all(i is not None for i in items):
                kwargs[key] = tuple(items)
            continue
        good, converted = _type_ok(value, tp)
        if not good:
            problems.append(Problem(file, where, f"must be {_type_name(tp)}, not {value!r}"))
            continue
        kwargs[key] = converted
    missing_required = False
    for name, f in known.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in kwargs:
            if name not in table:
                problems.append(Problem(file, f"{prefix}{name}", "is required"))
            missing_required = True
    # Keys that were wrong are left at their defaults (their problems are recorded), so the
    # checks that follow still see every other value and report their problems too.
    if missing_required:
        return None
    return cls(**kwargs)


# --------------------------------------------------------------------------- checks beyond types


def _is_loopback(host: str) -> bool:
    if host in ("localhost",) or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def covers_public_suffix(pattern: str) -> bool:
    """True when a wildcard host pattern would proxy a whole public suffix (e.g. *.com, *.co.uk)."""
    if not pattern.startswith("*."):
        return False
    suffix = pattern[2:]
    return "." not in suffix or suffix in _MULTI_LABEL_SUFFIXES


def check_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def _check_secret_file(path: Path, file: str, key: str, problems: list[Problem]) -> None:
    try:
        st = path.stat()
    except OSError:
        problems.append(Problem(file, key, f"secret file {path} does not exist or cannot be read"))
        return
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        problems.append(
            Problem(file, key, f"secret file {path} is readable by group or others; chmod 600 it")
        )


def _check_server(cfg: Config, file: str, problems: list[Problem]) -> None:
    s = cfg.server
    if not check_host_port(s.listen):
        problems.append(Problem(file, "server.listen", f"must be address:port, not {s.listen!r}"))
    parts = urlsplit(s.public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(Problem(file, "server.public_url", "must be an http(s) URL with a host"))
    elif parts.path not in ("", "/") or parts.query:
        problems.append(Problem(file, "server.public_url", "must not have a path or query"))
    elif parts.scheme == "http" and not _is_loopback(parts.hostname):
        problems.append(
            Problem(
                file,
                "server.public_url",
                "must be https (session cookies would travel in clear text)",
            )
        )
    if s.workers < 1:
        problems.append(Problem(file, "server.workers", "must be at least 1"))
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", s.cookie_name):
        problems.append(Problem(file, "server.cookie_name", "must be letters, digits or _"))


def _check_directory(cfg: Config, file: str, problems: list[Problem]) -> None:
    d = cfg.directory
    if d.kind not in DIRECTORY_KINDS:
        problems.append(
            Problem(file, "directory.kind", f"must be one of {', '.join(DIRECTORY_KINDS)}")
        )
        return
    if d.timeout_s <= 0:
        problems.append(Problem(file, "directory.timeout_s", "must be positive"))
    if d.kind == "file":
        if not cfg.resolve(d.patrons_file).is_file():
            problems.append(
                Problem(
                    file, "directory.patrons_file", f"{cfg.resolve(d.patrons_file)} does not exist"
                )
            )
        return
    if not d.urls:
        problems.append(Problem(file, "directory.urls", "at least one LDAP URL is required"))
    for i, url in enumerate(d.urls):
        u = urlsplit(url)
        if u.scheme not in ("ldap", "ldaps") or not u.hostname:
            problems.append(
                Problem(file, f"directory.urls[{i}]", f"must be ldap:// or ldaps://, not {url!r}")
            )
        elif u.scheme == "ldap" and not d.start_tls and not _is_loopback(u.hostname):
            problems.append(
                Problem(
                    file,
                    f"directory.urls[{i}]",
                    "plain ldap:// to another machine would send PINs in clear; use ldaps:// or start_tls = true",
                )
            )
    if not d.base_dn:
        problems.append(Problem(file, "directory.base_dn", "is required for kind = ldap"))
    if "{username}" not in d.user_filter:
        problems.append(Problem(file, "directory.user_filter", "must contain {username}"))
    for key in ("user_filter", "eligible_filter"):
        text = getattr(d, key).replace("{username}", "x")
        if text and (not text.startswith("(") or text.count("(") != text.count(")")):
            problems.append(Problem(file, f"directory.{key}", "is not a valid LDAP filter"))
    if d.bind_dn and not (d.bind_password_file or d.bind_password_env):
        problems.append(
            Problem(
                file,
                "directory.bind_password_file",
                "bind_dn needs bind_password_file or bind_password_env",
            )
        )
    if d.bind_password_file:
        _check_secret_file(
            cfg.resolve(d.bind_password_file), file, "directory.bind_password_file", problems
        )
    if d.bind_password_env and d.bind_password_env not in os.environ:
        problems.append(
            Problem(
                file,
                "directory.bind_password_env",
                f"environment variable {d.bind_password_env} is not set",
            )
        )
    if d.ca_file and not cfg.resolve(d.ca_file).is_file():
        problems.append(
            Problem(file, "directory.ca_file", f"{cfg.resolve(d.ca_file)} does not exist")
        )
    if d.pool_size < 1:
        problems.append(Problem(file, "directory.pool_size", "must be at least 1"))


def _check_session(cfg: Config, file: str, problems: list[Problem]) -> None:
    s = cfg.session
    if s.store not in STORE_KINDS:
        problems.append(Problem(file, "session.store", f"must be one of {', '.join(STORE_KINDS)}"))
    if s.store == "redis" and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append(
            Problem(
                file, "session.redis_url", "store = redis needs redis_url = redis://host:port/db"
            )
        )
    if cfg.server.workers > 1 and s.store == "memory":
        # Each worker would hold its own sessions: a patron would be signed out at random.
        problems.append(Problem(file, "session.store", 'server.workers > 1 needs store = "redis"'))
    if s.idle_timeout_s <= 0 or s.lifetime_s <= 0:
        problems.append(Problem(file, "session.idle_timeout_s", "timeouts must be positive"))
    if s.idle_timeout_s > s.lifetime_s:
        problems.append(Problem(file, "session.idle_timeout_s", "must not exceed lifetime_s"))
    if s.secret_env and s.secret_env not in os.environ:
        problems.append(
            Problem(file, "session.secret_env", f"environment variable {s.secret_env} is not set")
        )
    elif not s.secret_env:
        p = cfg.resolve(s.secret_file)
        if p.exists():
            _check_secret_file(p, file, "session.secret_file", problems)
    if s.redis_password_file:
        _check_secret_file(
            cfg.resolve(s.redis_password_file), file, "session.redis_password_file", problems
        )


def vendor_path(v: VendorConfig, relative: str) -> Path:
    """A path from a vendor file, relative to that file's folder."""
    p = Path(relative)
    return p if p.is_absolute() else Path(v.file).parent / p


def check_vendor(v: VendorConfig, cfg: Config, problems: list[Problem]) -> None:
    """Checks of one vendor file that need more than types."""
    f = v.file
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", v.id):
        problems.append(Problem(f, "id", "must be lowercase letters, digits, - or _"))
    scheme, host, _ = v.origin_parts
    if scheme not in ("http", "https") or not host:
        problems.append(Problem(f, "origin", f"must be an http(s) URL, not {v.origin!r}"))
    if not v.hosts:
        problems.append(Problem(f, "hosts", "at least one host is required"))
    for i, h in enumerate(v.hosts):
        bare = h[2:] if h.startswith("*.") else h
        if not is_valid_hostname(bare):
            problems.append(
                Problem(f, f"hosts[{i}]", f"{h!r} is not a hostname or *.domain pattern")
            )
        elif covers_public_suffix(h):
            problems.append(Problem(f, "hosts", f"{h!r} would proxy a whole public suffix"))
    if host and v.hosts and not any(host_matches(p, host) for p in v.hosts):
        problems.append(Problem(f, "origin", f"host {host!r} is not listed in hosts"))
    if v.auth not in ADAPTER_KINDS:
        problems.append(
            Problem(
                f, "auth", f"unknown adapter {v.auth!r}; valid choices: {', '.join(ADAPTER_KINDS)}"
            )
        )
    if v.release not in RELEASE_LEVELS:
        problems.append(Problem(f, "release", f"must be one of {', '.join(RELEASE_LEVELS)}"))
    elif v.release == "pseudonymous" and not v.contract.permits_pseudonymous_id:
        problems.append(
            Problem(f, "release", "pseudonymous needs contract.permits_pseudonymous_id = true")
        )
    if v.release == "pseudonymous" and v.auth != "assertion":
        problems.append(Problem(f, "release", "pseudonymous release needs auth = assertion"))
    if v.connect_to and not check_host_port(v.connect_to):
        problems.append(Problem(f, "connect_to", f"must be host:port, not {v.connect_to!r}"))
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", v.assertion_header):
        problems.append(Problem(f, "assertion_header", "must be a header name"))
    if v.third_party not in ("block", "allow"):
        problems.append(Problem(f, "third_party", "must be block or allow"))
    if v.auth == "referer" and not v.referer:
        problems.append(Problem(f, "referer", "auth = referer needs the authorised referer URL"))
    if v.auth == "shared-login":
        sl = v.shared_login
        if sl is None:
            problems.append(
                Problem(f, "shared_login", "auth = shared-login needs a [shared_login] table")
            )
        else:
            if sl.method not in ("basic", "form"):
                problems.append(Problem(f, "shared_login.method", "must be basic or form"))
            if sl.method == "form" and not sl.login_url:
                problems.append(Problem(f, "shared_login.login_url", "form login needs login_url"))
            for which in ("username", "password"):
                file_key, env_key = getattr(sl, f"{which}_file"), getattr(sl, f"{which}_env")
                if not (file_key or env_key):
                    problems.append(
                        Problem(
                            f, f"shared_login.{which}_file", f"needs {which}_file or {which}_env"
                        )
                    )
                elif file_key:
                    _check_secret_file(
                        vendor_path(v, file_key),
                        f,
                        f"shared_login.{which}_file",
                        problems,
                    )
    for i, pat in enumerate(v.search_paths):
        try:
            re.compile(pat)
        except re.error as exc:
            problems.append(Problem(f, f"search_paths[{i}]", f"not a regular expression: {exc}"))
    scheme_s = urlsplit(v.start).scheme
    start_host = urlsplit(v.start).hostname or ""
    if scheme_s not in ("http", "https") or not any(host_matches(p, start_host) for p in v.hosts):
        problems.append(
            Problem(f, "start_url", "must be an http(s) URL on one of the vendor's hosts")
        )
    check_vendor_access(v, cfg, problems)


# Headers an assertion must not be carried in: the proxy or the browser already owns them.
_RESERVED_HEADERS = frozenset(
    {"host", "cookie", "authorization", "referer", "origin", "content-length", "content-type",
     "transfer-encoding", "connection", "accept", "accept-encoding", "user-agent", "range"}
)  # fmt: skip


def check_vendor_access(v: VendorConfig, cfg: Config, problems: list[Problem]) -> None:
    """Adapter and eligibility checks: secrets present, credentials only to the vendor's hosts,
    and eligibility conditions the configured directory can actually decide."""
    f = v.file
    policy = v.contract.privacy_policy_url
    if policy and urlsplit(policy).scheme not in ("http", "https"):
        # It becomes a link on /privacy: a javascript: URL there would run in the proxy's origin.
        problems.append(Problem(f, "contract.privacy_policy_url", "must be an http(s) URL"))
    if v.auth == "assertion" and v.assertion_header.lower() in _RESERVED_HEADERS:
        problems.append(Problem(f, "assertion_header", f"{v.assertion_header} is reserved"))
    if v.auth == "referer" and v.referer and urlsplit(v.referer).scheme not in ("http", "https"):
        problems.append(Problem(f, "referer", "must be an http(s) URL"))
    sl = v.shared_login
    if v.auth == "shared-login" and sl is not None:
        login_host = urlsplit(sl.login_url).hostname or ""
        if (
            sl.method == "form"
            and sl.login_url
            and not any(host_matches(p, login_host) for p in v.hosts)
        ):
            # The library's credential must never go to a host that is not the vendor's.
            problems.append(
                Problem(f, "shared_login.login_url", "must be on one of the vendor's hosts")
            )
        for key in ("username_env", "password_env"):
            env = getattr(sl, key)
            if env and env not in os.environ:
                problems.append(
                    Problem(f, f"shared_login.{key}", f"environment variable {env} is not set")
                )
    e = v.eligibility
    if e.ldap_filter and cfg.directory.kind != "ldap":
        problems.append(
            Problem(f, "eligibility.ldap_filter", "needs [directory] kind = ldap; use groups")
        )
    if e.groups and cfg.directory.kind == "ldap" and not cfg.directory.group_attribute:
        problems.append(
            Problem(f, "eligibility.groups", "needs [directory] group_attribute to read groups")
        )


def check_vendors_together(cfg: Config, problems: list[Problem]) -> None:
    """Cross-vendor checks: duplicate ids, two vendors claiming one host, wildcards over our host."""
    seen_ids: dict[str, str] = {}
    claimed: dict[str, VendorConfig] = {}
    _, public_host, _ = cfg.public
    for v in cfg.vendors:
        if v.id in seen_ids:
            problems.append(Problem(v.file, "id", f"{v.id!r} is also used by {seen_ids[v.id]}"))
        seen_ids[v.id] = v.file
        for h in v.hosts:
            other = claimed.get(h)
            if other is not None and other.id != v.id:
                problems.append(Problem(v.file, "hosts", f"{h!r} is also claimed by {other.file}"))
            claimed[h] = v
            if public_host and (
                host_matches(h, public_host) or host_matches(h, "x." + public_host)
            ):
                problems.append(
                    Problem(v.file, "hosts", f"{h!r} covers the proxy's own host {public_host}")
                )


def load_vendor(path: Path, problems: list[Problem]) -> VendorConfig | None:
    name = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(name, "(file)", f"cannot be read: {exc}"))
        return None
    except tomllib.TOMLDecodeError as exc:
        problems.append(Problem(name, "(syntax)", str(exc)))
        return None
    data["file"] = name
    before = len(problems)
    data_no_file = {k: v for k, v in data.items() if k != "file"}
    v = read_table(VendorConfig, data_no_file, name, "", problems)
    if v is None:
        return None
    v = dataclasses.replace(v, file=name)
    if len(problems) > before:
        return None
    if data.get("id") and path.stem != data["id"]:
        problems.append(
            Problem(name, "id", f"{data['id']!r} should match the file name {path.stem!r}")
        )
    return v


_SECTIONS: dict[str, tuple[str, type[Any]]] = {
    "server": ("server", ServerConfig),
    "library": ("library", LibraryConfig),
    "directory": ("directory", DirectoryConfig),
    "session": ("session", SessionConfig),
    "keys": ("keys", KeysConfig),
    "vendors": ("vendors_dir", VendorsConfig),
    "logging": ("logging", LoggingConfig),
    "demo": ("demo", DemoConfig),
}

ExtraChecker = Callable[[Config, list[Problem]], None]


def load_config(path: str | Path, *, extra_checks: tuple[ExtraChecker, ...] = ()) -> Config:
    """Read proxy.toml and every vendor file; raise ConfigError listing every mistake."""
    path = Path(path).resolve()
    name = str(path)
    problems: list[Problem] = []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([Problem(name, "(file)", f"cannot be read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(name, "(syntax)", str(exc))]) from None
    kwargs: dict[str, Any] = {"path": path}
    extra: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key in _SECTIONS:
            attr, cls = _SECTIONS[key]
            section = read_table(cls, value, name, f"{key}.", problems)
            if section is not None:
                kwargs[attr] = section
        elif key in EXTRA_SECTIONS and isinstance(value, dict):
            extra[key] = value
        else:
            problems.append(Problem(name, key, "unknown section"))
    kwargs["extra"] = extra
    cfg = Config(**kwargs)
    _check_server(cfg, name, problems)
    _check_directory(cfg, name, problems)
    _check_session(cfg, name, problems)
    vendors: list[VendorConfig] = []
    vdir = cfg.resolve(cfg.vendors_dir.dir)
    if not vdir.is_dir():
        problems.append(Problem(name, "vendors.dir", f"{vdir} is not a directory"))
    else:
        for vpath in sorted(vdir.glob("*.toml")):
            v = load_vendor(vpath, problems)
            if v is not None:
                check_vendor(v, cfg, problems)
                vendors.append(v)
    cfg = dataclasses.replace(cfg, vendors=tuple(vendors))
    check_vendors_together(cfg, problems)
    for check in extra_checks:
        check(cfg, problems)
    if problems:
        raise ConfigError(problems)
    return cfg
