"""Config checks that need more than a type: addresses, hosts, secrets, vendors side by side.

Each check appends `Problem`s (file, key, message) and never stops at the first, so
`check-config` shows every mistake at once. Pure apart from looking at secret files' modes.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import stat
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qsl, urlsplit

from proxy.assertion import load_keys
from proxy.client_ip import parse_networks
from proxy.crypto import server_secret_problem
from proxy.errors import EnvironmentProblem, Problem
from proxy.hosts import host_matches, is_valid_hostname, map_label
from proxy.logs import LOG_FORMATS, LOG_LEVELS
from proxy.patrons_file import read_patrons_file
from proxy.permissions import GRANTABLE
from proxy.public_suffix import suffix_list
from proxy.secrets_ import readable_by_others, secret_text_problem

if TYPE_CHECKING:
    from proxy.config import Config, VendorConfig

ADAPTER_KINDS = ("ip", "assertion", "shared-login", "referer")
RELEASE_LEVELS = ("anonymous", "pseudonymous")
STORE_KINDS = ("memory", "redis")
DIRECTORY_KINDS = ("ldap", "file")

# Names under which any registrant holds a domain: a vendor wildcard over one would proxy every
# registrant's hosts (anyone's S3 bucket, anyone's blog) as that vendor, assertion and all. The
# Public Suffix List (publicsuffixlist bundles it, ICANN and private sections) decides; these are
# refused as well, as shared hosting no vendor's own wildcard should span.
_SHARED_HOSTING = frozenset({"amazonaws.com", "cloudfront.net", "azurewebsites.net"})


# Hosts whose URLs are also identifiers (XML namespace names in SVG, MathML, XHTML and scripts'
# `createElementNS`): the rewriter maps every URL of a listed host, and a mapped namespace name
# is another namespace, so browsers stop rendering the vendor's SVG. A review found them in
# leaflet, tinymce and MathJax.
NAMESPACE_HOSTS = ("www.w3.org", "w3.org", "www.w3c.org")


def _is_loopback(host: str) -> bool:
    if host in ("localhost",) or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def covers_public_suffix(pattern: str) -> bool:
    """True when a wildcard host pattern would proxy a whole public suffix (*.com, *.co.uk,
    *.co.za, *.s3.amazonaws.com, *.blogspot.com …)."""
    if not pattern.startswith("*."):
        return False
    suffix = pattern[2:].lower().rstrip(".")
    return "." not in suffix or suffix in _SHARED_HOSTING or bool(suffix_list().is_public(suffix))


def split_url(url: str) -> SplitResult:
    """urlsplit, or an empty result for what urllib cannot split (unbalanced IPv6 brackets), so
    a check reports the value as not an http(s) URL instead of raising."""
    try:
        return urlsplit(url)
    except ValueError:
        return urlsplit("")


def url_parts(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a configured URL; no port where urllib cannot read one
    (`url_mistake` says what is wrong, and check-config refuses it)."""
    parts = split_url(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or ""), port


# A DNS label's longest (RFC 1035 2.3.4): a mapped vendor host is one label under the proxy's.
MAX_DNS_LABEL = 63


def url_mistake(url: str) -> str | None:
    """Why urllib cannot read `url`'s host and port (a port out of range or not a number,
    unbalanced IPv6 brackets), or None."""
    try:
        port = urlsplit(url).port
    except ValueError as exc:
        return f"{url!r} is not a usable URL: {exc}"
    if port == 0:
        return f"{url!r} is not a usable URL: port 0"
    return None


def check_environment(name: str, file: str, key: str, problems: list[Problem]) -> None:
    """A secret's environment variable must be set where this check runs (see
    EnvironmentProblem for the one place it is not: `weston-proxy reload`)."""
    if name and name not in os.environ:
        problems.append(EnvironmentProblem(file, key, f"environment variable {name} is not set"))


def _not_negative(
    obj: object, zero_means: dict[str, str], file: str, prefix: str, problems: list[Problem]
) -> None:
    """Numbers where 0 has a meaning (given) and a negative one none: each dotted name is read
    from `obj`; an unset (None) value is left alone."""
    for name, zero in zero_means.items():
        value: object = obj
        for part in name.split("."):
            value = getattr(value, part)
        if isinstance(value, int | float) and value < 0:
            problems.append(Problem(file, f"{prefix}{name}", f"must not be negative (0 = {zero})"))


def _public_host_problem(host: str) -> str | None:
    """Why the proxy's own host cannot serve vendor hosts as its subdomains (`L.<host>`), or
    cannot match the Host header browsers send, or None."""
    # An IP address is let by: it cannot have vendor subdomains, but a proxy with only its own
    # pages (a test, a first try on one machine) works, and refusing would stop it starting.
    if not host.isascii():
        try:
            ascii_form = host.encode("idna").decode("ascii")
        except UnicodeError:
            return f"host {host} is not ASCII; write the xn-- form browsers send"
        return f"host {host} is not ASCII; write the form browsers send, {ascii_form}"
    if host.endswith("."):
        return f"host {host} must not end with a dot; browsers send {host.rstrip('.')}"
    if "%" in host:
        # A Host header never holds one: a proxy with this host would answer none of its own.
        return f"host {host} must not be percent-encoded; write it as browsers send it"
    return None


def check_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def _check_secret_file(
    path: Path, file: str, key: str, problems: list[Problem], *, text: bool = False
) -> None:
    """A secret file that exists, is a file and only its owner may read; with `text`, one
    holding a password (`secret_text_problem`: UTF-8, not empty), as `serve` will read it."""
    try:
        st = path.stat()
    except OSError:
        problems.append(Problem(file, key, f"secret file {path} does not exist or cannot be read"))
        return
    if not stat.S_ISREG(st.st_mode):
        # A folder (the 0700 secrets directory, systemd's StateDirectory) passes the mode check
        # and only fails when read: at start, at a reload, or at a patron's first request.
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        problems.append(Problem(file, key, f"secret file {path} is {what}; name the file in it"))
        return
    if readable_by_others(st.st_mode):
        problems.append(
            Problem(file, key, f"secret file {path} is readable by group or others; chmod 600 it")
        )
    elif text:
        try:
            problem = secret_text_problem(path.read_bytes())
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror})"
        if problem is not None:
            problems.append(Problem(file, key, f"secret file {path} {problem}"))


def _check_ca_file(path: Path, file: str, key: str, problems: list[Problem]) -> None:
    """A CA bundle that exists and holds at least one certificate in PEM form, loaded as the
    connection will load it: an empty file, a DER one or a private key in its place passed
    before, and then `serve` died with an SSLError (vendor) or every sign-in failed (directory)."""
    if not path.is_file():
        problems.append(Problem(file, key, f"{path} does not exist"))
        return
    try:
        context = ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or type(exc).__name__
        problems.append(Problem(file, key, f"{path} holds no CA certificate in PEM form ({why})"))
        return
    if not context.cert_store_stats()["x509"]:  # every certificate loaded, CA-marked or not
        problems.append(Problem(file, key, f"{path} holds no CA certificate in PEM form"))


def _check_server_secret(value: str, file: str, key: str, problems: list[Problem]) -> None:
    problem = server_secret_problem(value)
    if problem is not None:
        problems.append(Problem(file, key, problem))


def _not_a_directory(path: Path) -> Path | None:
    """The first of `path` and the folders above it that exists, when it is not a directory
    (nothing can be made there); None when the nearest existing one is a directory."""
    for candidate in (path, *path.parents):
        # A link to nothing (a volume not mounted) counts: making the directory there fails.
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def _check_key_files(cfg: Config, file: str, problems: list[Problem]) -> None:
    """Signing keys readable by group or others are refused, and so is a key or activation
    file that does not load (proxy.assertion.load_keys): `serve` could not start on them."""
    key_dir = cfg.resolve(cfg.keys.dir)
    blocker = _not_a_directory(key_dir)
    if blocker is not None:
        # `serve` would make the directory and cannot: a file stands where it, or a folder
        # above it, should be.
        problems.append(
            Problem(file, "keys.dir", f"{key_dir} cannot be used: {blocker} is not a directory")
        )
        return
    before = len(problems)
    for pem in sorted(key_dir.glob("*.pem")) if key_dir.is_dir() else ():
        _check_secret_file(pem, file, "keys.dir", problems)
    if len(problems) > before:
        return
    try:
        load_keys(key_dir)
    except (ValueError, OSError) as exc:
        problems.append(Problem(file, "keys.dir", str(exc)))


def check_server(cfg: Config, file: str, problems: list[Problem]) -> None:
    s = cfg.server
    if not check_host_port(s.listen):
        problems.append(Problem(file, "server.listen", f"must be address:port, not {s.listen!r}"))
    parts = split_url(s.public_url)
    mistake = url_mistake(s.public_url)
    if mistake:
        problems.append(Problem(file, "server.public_url", mistake))
    elif parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(Problem(file, "server.public_url", "must be an http(s) URL with a host"))
    elif "@" in parts.netloc:
        # public_url is the assertion's iss and the start of every link the proxy writes.
        problems.append(
            Problem(
                file,
                "server.public_url",
                "must not have a user name or password (user@): every vendor and browser would "
                "receive them",
            )
        )
    elif "#" in s.public_url:
        problems.append(Problem(file, "server.public_url", "must not have a fragment (#)"))
    elif parts.path not in ("", "/") or "?" in s.public_url:  # an empty query `?` too
        problems.append(Problem(file, "server.public_url", "must not have a path or query"))
    elif host_problem := _public_host_problem(parts.hostname):
        problems.append(Problem(file, "server.public_url", host_problem))
    elif parts.scheme == "http" and not _is_loopback(parts.hostname):
        problems.append(
            Problem(
                file,
                "server.public_url",
                "must be https (session cookies would travel in clear text)",
            )
        )
    if s.max_in_flight < 1:
        problems.append(Problem(file, "server.max_in_flight", "must be at least 1"))
    elif not 0 <= s.max_in_flight_per_vendor <= s.max_in_flight:
        problems.append(
            Problem(
                file,
                "server.max_in_flight_per_vendor",
                f"must be between 0 (three quarters of max_in_flight) and max_in_flight "
                f"({s.max_in_flight})",
            )
        )
    for key in (
        "admission_wait_s",
        "upstream_timeout_s",
        "upstream_connect_timeout_s",
        "websocket_check_s",
    ):
        if not getattr(s, key) > 0:
            problems.append(Problem(file, f"server.{key}", "must be positive"))
    _not_negative(
        s,
        {"shutdown_grace_s": "stop at once", "max_websockets": "no WebSockets"},
        file,
        "server.",
        problems,
    )
    for key in ("workers", "listen_backlog"):
        if getattr(s, key) < 1:
            problems.append(Problem(file, f"server.{key}", "must be at least 1"))
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", s.cookie_name):
        problems.append(Problem(file, "server.cookie_name", "must be letters, digits or _"))
    try:
        parse_networks(s.metrics_from)
    except ValueError as exc:
        problems.append(Problem(file, "server.metrics_from", str(exc)))


def check_library(cfg: Config, file: str, problems: list[Problem]) -> None:
    help_url = cfg.library.help_url
    parts = split_url(help_url)
    if help_url and (parts.scheme not in ("http", "https") or not parts.hostname):
        # It becomes a link on every page (footer, sign-in help, the suspended page): a
        # javascript: URL there would run in the proxy's origin, as for privacy_policy_url.
        problems.append(Problem(file, "library.help_url", "must be an http(s) URL"))


def check_logging_and_keys(cfg: Config, file: str, problems: list[Problem]) -> None:
    """Values `serve` would otherwise only meet at start (configure_logging raises on a level it
    does not know) or act on wrongly (a negative delay activates a rotated key at once)."""
    if cfg.logging.level.lower() not in LOG_LEVELS:
        problems.append(Problem(file, "logging.level", f"must be one of {', '.join(LOG_LEVELS)}"))
    if cfg.logging.format not in LOG_FORMATS:
        problems.append(Problem(file, "logging.format", f"must be one of {', '.join(LOG_FORMATS)}"))
    _not_negative(cfg.keys, {"activate_after_s": "sign at once"}, file, "keys.", problems)
    _check_key_files(cfg, file, problems)


def check_directory(cfg: Config, file: str, problems: list[Problem]) -> None:
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
        else:
            problems += read_patrons_file(cfg.resolve(d.patrons_file))[1]
        return
    if not d.urls:
        problems.append(Problem(file, "directory.urls", "at least one LDAP URL is required"))
    for i, url in enumerate(d.urls):
        u = split_url(url)
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
            cfg.resolve(d.bind_password_file),
            file,
            "directory.bind_password_file",
            problems,
            text=True,
        )
    check_environment(d.bind_password_env, file, "directory.bind_password_env", problems)
    if d.ca_file:
        _check_ca_file(cfg.resolve(d.ca_file), file, "directory.ca_file", problems)
    if d.pool_size < 1:
        problems.append(Problem(file, "directory.pool_size", "must be at least 1"))


def redis_url_has_password(url: str) -> bool:
    """Whether a Redis URL carries a password, as redis-py reads one: after the user name
    (`redis://:PW@host`, `redis://USER:PW@host`) or as a `password=` query parameter."""
    # Read by hand, up to the last `@`: a password holding `/`, `?` or `#` ends urlsplit's
    # netloc before its `@`, so urlsplit finds no password in it.
    rest = url.partition("://")[2]
    if "@" in rest:
        _user, colon, password = rest.rpartition("@")[0].partition(":")
        if colon and password:
            return True
    query = url.partition("?")[2]
    return any(k.lower() == "password" and v for k, v in parse_qsl(query))


def check_session(cfg: Config, file: str, problems: list[Problem]) -> None:
    s = cfg.session
    if s.store not in STORE_KINDS:
        problems.append(Problem(file, "session.store", f"must be one of {', '.join(STORE_KINDS)}"))
    if s.store == "redis" and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append(
            Problem(
                file, "session.redis_url", "store = redis needs redis_url = redis://host:port/db"
            )
        )
    if s.redis_url and redis_url_has_password(s.redis_url):
        # The proxy.toml is group-readable and goes into every config backup. The URL itself
        # is never repeated: it holds the password.
        problems.append(
            Problem(
                file,
                "session.redis_url",
                "holds a password (secrets must not be inline); put it in redis_password_file "
                "and write the URL without it, redis://host:port/db (a user name alone, "
                "redis://USER@host:port/db, is fine)",
            )
        )
    if cfg.server.workers > 1 and s.store == "memory":
        # Each worker would hold its own sessions: a patron would be signed out at random.
        problems.append(Problem(file, "session.store", 'server.workers > 1 needs store = "redis"'))
    if s.idle_timeout_s <= 0 or s.lifetime_s <= 0:
        problems.append(Problem(file, "session.idle_timeout_s", "timeouts must be positive"))
    if s.idle_timeout_s > s.lifetime_s:
        problems.append(Problem(file, "session.idle_timeout_s", "must not exceed lifetime_s"))
    if s.secret_env:
        check_environment(s.secret_env, file, "session.secret_env", problems)
        if s.secret_env in os.environ:
            _check_server_secret(os.environ[s.secret_env], file, "session.secret_env", problems)
    else:
        p = cfg.resolve(s.secret_file)
        if p.exists():
            before = len(problems)
            _check_secret_file(p, file, "session.secret_file", problems)
            if len(problems) == before:
                value = p.read_text(encoding="utf-8", errors="replace").rstrip("\r\n")
                _check_server_secret(value, file, "session.secret_file", problems)
    if s.redis_password_file:
        _check_secret_file(
            cfg.resolve(s.redis_password_file),
            file,
            "session.redis_password_file",
            problems,
            text=True,
        )


# A vendor file's numbers where 0 has a meaning, and a negative value none (e.g. timeout_s = -1
# made every request a 504, requests_per_minute = -1 suspended every session at its first).
_VENDOR_ZERO_MEANS = {
    "timeout_s": "server.upstream_timeout_s",
    "limits.requests_per_minute": "no limit",
    "limits.downloads_per_hour": "no limit",
    "limits.bytes_per_hour": "no limit",
    "limits.max_upload_bytes": "no request bodies",
    "contract.retention_days": "not kept",
    "contract.breach_notice_days": "the same day",
}


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
    origin = urlsplit(v.origin)
    mistake = url_mistake(v.origin)
    if "@" in v.origin.partition("://")[2]:
        # Anywhere after the scheme, not only in urlsplit's netloc: a password holding `/`, `?`
        # or `#` ends that netloc before its `@` (and an origin has no path for an @ to be in).
        # Never echoed: what is before the @ is a user name and password (secrets are never
        # inline), and the proxy would not send it anyway.
        problems.append(
            Problem(
                f,
                "origin",
                "must not carry a user name or password (user:password@); for a vendor that "
                'needs the library\'s account, use auth = "shared-login" with its secret files',
            )
        )
    elif mistake:
        problems.append(Problem(f, "origin", mistake))
    elif scheme not in ("http", "https") or not host:
        problems.append(Problem(f, "origin", f"must be an http(s) URL, not {v.origin!r}"))
    elif origin.path not in ("", "/") or origin.query or origin.fragment:
        # Requests keep only the scheme, host and port; the menu's link would be the origin
        # with "/" added (`…/login.aspx/`). EZproxy's URL line belongs in start_url.
        problems.append(
            Problem(
                f,
                "origin",
                "must be scheme://host[:port] only, no path, query or fragment; put the "
                "database's first page in start_url",
            )
        )
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
        elif len(map_label(bare)) > MAX_DNS_LABEL:
            # Served at map_label(host).<public host>, one DNS label: no resolver looks up a
            # longer one and no certificate names it (EZproxy has ProxyHostnameEdit for this).
            problems.append(
                Problem(
                    f,
                    f"hosts[{i}]",
                    f"{h!r} maps to a name label of {len(map_label(bare))} characters "
                    f"({map_label(bare)[:20]}…), over DNS's {MAX_DNS_LABEL}: patrons could never "
                    "reach it",
                )
            )
        elif covered := next((n for n in NAMESPACE_HOSTS if host_matches(h, n)), None):
            problems.append(
                Problem(
                    f,
                    f"hosts[{i}]",
                    f"{h!r} covers {covered}, whose URLs name XML namespaces (SVG, MathML, "
                    "XHTML): rewritten, the vendor's icons and charts stop rendering; no vendor "
                    "needs it proxied",
                )
            )
    if host and v.hosts and not any(host_matches(p, host) for p in v.hosts):
        problems.append(Problem(f, "origin", f"host {host!r} is not listed in hosts"))
    for i, np in enumerate(v.never_proxy):
        # Every vendor's never_proxy applies to the whole host map: an entry outside this
        # vendor's own hosts would take hosts away from another vendor (its origin, even).
        sample = "a" + np[1:] if np.startswith("*.") else np
        if not any(host_matches(p, sample.lower()) for p in v.hosts):
            problems.append(
                Problem(f, f"never_proxy[{i}]", f"{np!r} is not under this vendor's own hosts")
            )
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
    if v.release == "pseudonymous" and v.contract.expires is None:
        # The pseudonym is sent only while the contract runs (VendorConfig.releases_pseudonym).
        problems.append(
            Problem(
                f,
                "contract.expires",
                "pseudonymous release needs the contract's end date: the pseudonym stops then",
            )
        )
    if not 0 <= v.max_in_flight <= cfg.server.max_in_flight:
        problems.append(
            Problem(
                f,
                "max_in_flight",
                f"must be between 0 (the server's per-vendor share) and server.max_in_flight "
                f"({cfg.server.max_in_flight})",
            )
        )
    _not_negative(v, _VENDOR_ZERO_MEANS, f, "", problems)
    if v.tls_ca_file:
        _check_ca_file(v.resolve(v.tls_ca_file), f, "tls_ca_file", problems)
    if v.connect_to and not check_host_port(v.connect_to):
        problems.append(Problem(f, "connect_to", f"must be host:port, not {v.connect_to!r}"))
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", v.assertion_header):
        problems.append(Problem(f, "assertion_header", "must be a header name"))
    if v.third_party not in ("block", "allow"):
        problems.append(Problem(f, "third_party", "must be block or allow"))
    for i, feature in enumerate(v.permissions):
        if feature not in GRANTABLE:
            problems.append(
                Problem(
                    f,
                    f"permissions[{i}]",
                    f"{feature!r} cannot be granted; valid choices: {', '.join(sorted(GRANTABLE))}",
                )
            )
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
                        text=True,
                    )
    for i, pat in enumerate(v.search_paths):
        try:
            re.compile(pat)
        except re.error as exc:
            problems.append(Problem(f, f"search_paths[{i}]", f"not a regular expression: {exc}"))
    scheme_s = split_url(v.start).scheme
    start_host = split_url(v.start).hostname or ""
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
    if policy and split_url(policy).scheme not in ("http", "https"):
        # It becomes a link on /privacy: a javascript: URL there would run in the proxy's origin.
        problems.append(Problem(f, "contract.privacy_policy_url", "must be an http(s) URL"))
    if v.auth == "assertion" and v.assertion_header.lower() in _RESERVED_HEADERS:
        problems.append(Problem(f, "assertion_header", f"{v.assertion_header} is reserved"))
    if v.auth == "referer" and v.referer and split_url(v.referer).scheme not in ("http", "https"):
        problems.append(Problem(f, "referer", "must be an http(s) URL"))
    if v.auth in ADAPTER_KINDS:
        # Settings only another adapter reads would be silently ignored: the vendor would never
        # get the library's login (or referer), and nothing would say why.
        if v.shared_login is not None and v.auth != "shared-login":
            problems.append(
                Problem(
                    f,
                    "shared_login",
                    f"only auth = shared-login reads a [shared_login] table, not auth = {v.auth}",
                )
            )
        if v.referer and v.auth != "referer":
            problems.append(
                Problem(f, "referer", f"only auth = referer reads referer, not auth = {v.auth}")
            )
    sl = v.shared_login
    if v.auth == "shared-login" and sl is not None:
        login_host = split_url(sl.login_url).hostname or ""
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
            check_environment(getattr(sl, key), f, f"shared_login.{key}", problems)
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
    """Cross-vendor checks: duplicate ids, two vendors claiming one host, wildcards over our host,
    a vendor's own addresses served as another vendor."""
    check_own_addresses(cfg, problems)
    seen_ids: dict[str, str] = {}
    audiences: dict[str, VendorConfig] = {}
    claimed: dict[str, VendorConfig] = {}
    _, public_host, _ = cfg.public
    for v in cfg.vendors:
        if v.id in seen_ids:
            problems.append(Problem(v.file, "id", f"{v.id!r} is also used by {seen_ids[v.id]}"))
        seen_ids[v.id] = v.file
        if v.auth == "assertion":
            # An assertion names the one vendor it is for (`aud`): with two vendors on one
            # audience, either could replay the other's patrons' live assertions at it.
            twin = audiences.get(v.aud)
            if twin is not None:
                problems.append(
                    Problem(v.file, "audience", f"{v.aud!r} is also {twin.file}'s audience")
                )
            audiences[v.aud] = v
        for i, h in enumerate(v.hosts):
            other = claimed.get(h)
            if other is not None and other.id != v.id:
                problems.append(Problem(v.file, "hosts", f"{h!r} is also claimed by {other.file}"))
            claimed[h] = v
            # Every vendor's never_proxy applies to the whole host map: one naming a host that
            # is another vendor's own (exact) host takes it away, and that database is
            # unreachable. (Over a vendor's own host it is EZproxy's NeverProxy, kept by the
            # importer with a warning.)
            if not h.startswith("*."):
                for o in cfg.vendors:
                    if o.id == v.id:
                        continue
                    np = next((p for p in o.never_proxy if host_matches(p, h)), None)
                    if np is not None:
                        problems.append(
                            Problem(
                                v.file,
                                f"hosts[{i}]",
                                f"{h!r} is never proxied: {o.file} lists {np!r} in never_proxy, "
                                "so patrons could never reach it",
                            )
                        )
            if public_host and (
                host_matches(h, public_host) or host_matches(h, "x." + public_host)
            ):
                problems.append(
                    Problem(v.file, "hosts", f"{h!r} covers the proxy's own host {public_host}")
                )
            elif public_host and h.lower().endswith("." + public_host):
                # With the wildcard DNS record host mapping needs, the name reaches the proxy
                # itself: it would fetch "the vendor" (assertion and all) from itself.
                problems.append(
                    Problem(v.file, "hosts", f"{h!r} is under the proxy's own host {public_host}")
                )


def check_own_addresses(cfg: Config, problems: list[Problem]) -> None:
    """A vendor's origin, start URL and shared-login URL must be served as that vendor. Another
    vendor's more specific host (an exact `go.gale.com` against `*.gale.com`) would serve them
    with its own adapter and eligibility: a patron without the first database would reach it."""
    host_map = cfg.host_map()
    for v in cfg.vendors:
        urls = [("origin", v.origin), ("start_url", v.start)]
        if v.shared_login is not None and v.shared_login.login_url:
            urls.append(("shared_login.login_url", v.shared_login.login_url))
        for key, url in urls:
            host = (split_url(url).hostname or "").lower()
            served_as = host_map.vendor_for_host(host) if host else None
            if served_as is not None and served_as != v.id:
                problems.append(
                    Problem(v.file, key, f"{host} is served as vendor {served_as!r}, not {v.id!r}")
                )
