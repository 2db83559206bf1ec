"""Load the TOML configuration into frozen dataclasses, reporting every mistake with file and key.

Each option is declared once, as a dataclass field with its type, default and a one-line meaning
(`doc`). Reading is generic (`proxy.config_read.read_table`), and the checks that need more than a
type live in `proxy.config_checks`, so `check-config` shows all mistakes at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.config_checks import (
    ADAPTER_KINDS,
    DIRECTORY_KINDS,
    RELEASE_LEVELS,
    STORE_KINDS,
    check_directory,
    check_host_port,
    check_library,
    check_logging_and_keys,
    check_server,
    check_session,
    check_vendor,
    check_vendor_access,
    check_vendors_together,
    covers_public_suffix,
    url_parts,
    vendor_path,
)
from proxy.config_read import doc, read_table, read_toml
from proxy.errors import ConfigError, EnvironmentProblem, Problem
from proxy.hosts import HostMap


@dataclass(frozen=True)
class ServerConfig:
    listen: str = doc("address:port the proxy listens on", "127.0.0.1:8080")
    public_url: str = doc("the proxy's own URL as patrons see it", "http://proxy.localhost:8080")
    workers: int = doc("processes sharing the listening port (SO_REUSEPORT)", 1)
    cookie_name: str = doc("name of the proxy's session cookie", "weston_session")
    trusted_proxies: tuple[str, ...] = doc(
        "load balancer addresses whose X-Forwarded-For is used for throttling", ()
    )
    metrics_from: tuple[str, ...] = doc(
        "networks that may read /metrics (the client address as for throttling); [] = anyone",
        ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),
    )
    upstream_timeout_s: float = doc("default vendor response timeout", 30.0)
    upstream_connect_timeout_s: float = doc("vendor connect timeout", 10.0)
    shutdown_grace_s: float = doc("how long SIGTERM waits for in-flight requests", 10.0)
    max_in_flight: int = doc(
        "proxied requests worked on at once per process; more wait their turn", 64
    )
    max_in_flight_per_vendor: int = doc(
        "of those, how many one vendor may have (a hung vendor holds only its share); "
        "0 = three quarters of max_in_flight (at least one slot short of it, unless it is 1); "
        "a vendor file's max_in_flight overrides it",
        0,
    )
    admission_wait_s: float = doc(
        "longest a proxied request waits for a slot before the patron is told the database is "
        "busy (503)",
        15.0,
    )
    listen_backlog: int = doc("pending connections the kernel queues before accept", 1024)
    max_websockets: int = doc(
        "WebSockets to vendors open at once per process; more are refused (503); 0 = none", 1000
    )
    websocket_check_s: float = doc(
        "how often an open WebSocket checks that its session lives (sign-out, expiry)", 15.0
    )
    pid_file: str = doc("where serve writes the pid that `reload` signals", "state/proxy.pid")


@dataclass(frozen=True)
class LibraryConfig:
    name: str = doc("library name shown to patrons", "Weston Public Library")
    scope: str = doc("security domain used in the affiliation claim", "westonlibrary.org")
    contact: str = doc(
        "how patrons reach the library for help (one sentence; give the library's real number)",
        # No number of its own: a built-in one would send patrons who need help to a number
        # that does not exist (the demo config, conf/proxy.toml, shows a fictional one).
        "Ask at the library's circulation desk.",
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
    timeout_s: float = doc(
        "time one sign-in may take on one server (connect and every request together)", 3.0
    )
    start_tls: bool = doc("upgrade ldap:// connections with StartTLS", False)
    ca_file: str = doc("CA bundle to verify the directory's certificate", "")
    pool_size: int = doc(
        "directory worker processes (sign-ins at once), each with its own connections; about"
        " 30 MB of memory each",
        4,
    )
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
        "a rotated key signs only after this delay, and once published (at the next reload or "
        "restart) for as long, at most 300 s",
        600,
    )


@dataclass(frozen=True)
class VendorsConfig:
    dir: str = doc("directory with one TOML file per vendor", "vendors")


@dataclass(frozen=True)
class LoggingConfig:
    level: str = doc("debug, info, warning, error or critical", "info")
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
    history_off_checked: dt.date | None = doc(
        "date staff last confirmed the shared account keeps no search history, saved items or "
        "recently viewed list at the vendor (every patron would see them)",
        None,
    )
    expired_status: tuple[int, ...] = doc("vendor statuses that mean its session ended", (401,))


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int = doc("per session; 0 = no limit", 0)
    downloads_per_hour: int = doc("full-text downloads per session per hour; 0 = no limit", 0)
    bytes_per_hour: int = doc("bytes per session per hour; 0 = no limit", 0)
    max_upload_bytes: int = doc(
        "largest request body forwarded; 0 = no request bodies", 10 * 1024 * 1024
    )


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
    permissions: tuple[str, ...] = doc(
        "browser features this vendor's pages may ask the patron for (microphone, camera,"
        " geolocation, …); the proxy turns every other one off (proxy/permissions.py)",
        (),
    )
    tls_verify: bool = doc("verify the vendor's TLS certificate", True)
    tls_ca_file: str = doc(
        "CA bundle for the vendor's certificate, relative to this vendor file", ""
    )
    timeout_s: float = doc("response timeout for this vendor; 0 = server default", 0.0)
    max_in_flight: int = doc(
        "requests to this vendor worked on at once per process; 0 = "
        "server.max_in_flight_per_vendor",
        0,
    )
    search_paths: tuple[str, ...] = doc("regexes on the path that mark a search (statistics)", ())
    contract: Contract = doc("contract entry", Contract())
    eligibility: Eligibility = doc("who may use this database", Eligibility())
    rewrite: tuple[RewriteRule, ...] = doc("find/replace rules for stubborn sites", ())
    shared_login: SharedLogin | None = doc("auth = shared-login: how to log in", None)
    limits: Limits = doc("per-session usage limits", Limits())
    file: str = doc("the file this vendor came from", "")

    @functools.cached_property
    def origin_parts(self) -> tuple[str, str, int | None]:
        # Cached (read on every proxied request); the config is frozen, so it cannot go stale.
        return url_parts(self.origin)

    def resolve(self, relative: str) -> Path:
        """A path from this vendor file, relative to that file's folder."""
        return vendor_path(self, relative)

    @property
    def origin_host(self) -> str:
        return self.origin_parts[1]

    @property
    def start(self) -> str:
        return self.start_url or self.origin.rstrip("/") + "/"

    @property
    def aud(self) -> str:
        return self.audience or self.id

    @property
    def connect_addr(self) -> tuple[str, int] | None:
        """`connect_to` as (host, port), an IPv6 address without its brackets; None without one."""
        if not self.connect_to:
            return None
        host, _, port = self.connect_to.rpartition(":")
        return host.strip("[]"), int(port)

    def releases_pseudonym(self, today: dt.date) -> bool:
        """Pseudonymous release under a contract that permits it and is still running on
        `today`: once it has ended (`contract.expires` past, or never recorded) the vendor gets
        the anonymous assertion, as the compliance check's `release.permitted` requires."""
        c = self.contract
        return (
            self.release == "pseudonymous"
            and c.permits_pseudonymous_id
            and c.expires is not None
            and c.expires >= today
        )


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
        return url_parts(self.server.public_url)

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


# Sections of proxy.toml other modules own (stats, compliance, limits …) are kept raw in `extra`
# and validated by their owners, so the loader does not need to know every later feature. The
# tracker shield has no section: it is set per vendor (`third_party`, `third_party_reason`).
EXTRA_SECTIONS = ("stats", "compliance", "throttle")
_NOT_A_SECTION = {
    "shield": "unknown section; the tracker shield is set per vendor file "
    '(third_party = "block" or "allow" with a third_party_reason)',
}


def _key_root(key: str) -> str:
    """`hosts` for `hosts[2]`, `shared_login` for `shared_login.method`."""
    return key.split(".", 1)[0].split("[", 1)[0]


# A required vendor key that is missing or wrong gets a stand-in, so the file's other keys are
# still checked (and its hosts still checked against the other vendors).
_STAND_INS: dict[str, Callable[[Path], Any]] = {
    "id": lambda path: path.stem,
    "title": lambda path: "",
    "origin": lambda path: "",
    "hosts": lambda path: [],
}
# Keys whose checks a wrong (so defaulted or stood-in) key would set off again.
_FOLLOWS_FROM: dict[str, frozenset[str]] = {
    "hosts": frozenset({"start_url", "never_proxy"}),
    "origin": frozenset({"start_url"}),
    "auth": frozenset({"shared_login", "referer"}),
}


def load_vendor(path: Path, problems: list[Problem]) -> VendorConfig | None:
    """Read one vendor file, appending a Problem for every wrong key.

    A wrong key is left at its default (a required one gets a stand-in) and the rest is still
    read, so `check-config` reports every problem of the file at once; None only when the file
    cannot be read or parsed at all. Check it with `check_loaded_vendor`."""
    name = str(path)
    data = read_toml(path)
    if isinstance(data, Problem):
        problems.append(data)
        return None
    data.pop("file", None)  # set from where the file is, below
    before = len(problems)
    v = read_table(VendorConfig, data, name, "", problems)
    if v is None:
        broken = {_key_root(p.key) for p in problems[before:]}
        stand_ins = {
            key: make(path) for key, make in _STAND_INS.items() if key in broken or key not in data
        }
        v = read_table(VendorConfig, {**data, **stand_ins}, name, "", [])  # reported above
        if v is None:
            return None
    if isinstance(data.get("id"), str) and path.stem != data["id"]:
        problems.append(
            Problem(name, "id", f"{data['id']!r} should match the file name {path.stem!r}")
        )
    return dataclasses.replace(v, file=name)


def _repeats(key: str, broken: set[str]) -> bool:
    """Whether a check of `key` only repeats a problem already reported for one of `broken`:
    the same key, a key inside it (`hosts[0]` of `hosts`), or the table holding it (a
    `shared_login` left out because `shared_login.login_url` was wrong)."""
    return any(
        key == b or key.startswith((b + ".", b + "[")) or b.startswith((key + ".", key + "["))
        for b in broken
    )


def check_loaded_vendor(
    v: VendorConfig, cfg: Config, problems: list[Problem], loading: Sequence[Problem]
) -> None:
    """`check_vendor`, less the problems that only repeat one of `loading` (what `load_vendor`
    reported for this file): a key left at its default or a stand-in is reported once."""
    broken = {p.key for p in loading if p.file == v.file and p.key != "id"}
    for key in list(broken):
        broken |= _FOLLOWS_FROM.get(key, frozenset())
    found: list[Problem] = []
    check_vendor(v, cfg, found)
    problems.extend(p for p in found if not _repeats(p.key, broken))


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


def load_config(
    path: str | Path, *, extra_checks: tuple[ExtraChecker, ...] = (), environment: bool = True
) -> Config:
    """Read proxy.toml and every vendor file; raise ConfigError listing every mistake.

    `environment=False` leaves out the checks that a secret's environment variable is set, for a
    command run outside the service's environment (`reload`); the running proxy still makes them.
    """
    path = Path(path).resolve()
    name = str(path)
    problems: list[Problem] = []
    data = read_toml(path)
    if isinstance(data, Problem):
        raise ConfigError([data])
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
            problems.append(Problem(name, key, _NOT_A_SECTION.get(key, "unknown section")))
    kwargs["extra"] = extra
    cfg = Config(**kwargs)
    check_server(cfg, name, problems)
    check_library(cfg, name, problems)
    check_directory(cfg, name, problems)
    check_session(cfg, name, problems)
    check_logging_and_keys(cfg, name, problems)
    vendors: list[VendorConfig] = []
    faulty: list[VendorConfig] = []
    vdir = cfg.resolve(cfg.vendors_dir.dir)
    if not vdir.is_dir():
        problems.append(Problem(name, "vendors.dir", f"{vdir} is not a directory"))
    else:
        for vpath in sorted(vdir.glob("*.toml")):
            before = len(problems)
            v = load_vendor(vpath, problems)
            if v is not None:
                check_loaded_vendor(v, cfg, problems, problems[before:])
                wrong = any(not isinstance(p, EnvironmentProblem) for p in problems[before:])
                (faulty if wrong else vendors).append(v)
    # Of two files claiming one host the later is named: a file with problems of its own comes
    # after the clean ones, so a clean file is not blamed for a broken one's hosts. (Such a
    # problem refuses the config, so this order never reaches a running proxy.)
    cfg = dataclasses.replace(cfg, vendors=(*vendors, *faulty))
    check_vendors_together(cfg, problems)
    for check in extra_checks:
        check(cfg, problems)
    if not environment:
        problems = [p for p in problems if not isinstance(p, EnvironmentProblem)]
    if problems:
        raise ConfigError(problems)
    return cfg


__all__ = [
    "ADAPTER_KINDS",
    "DIRECTORY_KINDS",
    "RELEASE_LEVELS",
    "STORE_KINDS",
    "Config",
    "ExtraChecker",
    "VendorConfig",
    "check_host_port",
    "check_loaded_vendor",
    "check_vendor",
    "check_vendor_access",
    "check_vendors_together",
    "covers_public_suffix",
    "doc",
    "load_config",
    "load_vendor",
    "read_table",
    "vendor_path",
]
