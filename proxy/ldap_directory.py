"""Patron authentication against the library's LDAP directory: search, bind, eligibility, failover.

Flow of one login (on one server, so a replica's view is consistent):
service-bound search for the card number (escaped, at most one match) → bind as the found entry with
the patron's PIN on a fresh connection → base-scope searches for `eligible_filter` and each vendor's
`eligibility.ldap_filter` → `Patron(key=HMAC(entryUUID), databases=…)`.

ldap3 is blocking, so every call runs in a bounded thread pool and never on the event loop. Socket,
TLS and timeout errors mean "this server failed": the next URL is tried, the failed one is skipped
for `retry_after_s` (tried again only when every other server fails too), and when none answers the
caller gets DirectoryUnavailable — never BadCredentials. The card number, PIN, DN and every
attribute value stay inside this module: exceptions and logs carry fixed texts, URLs and types.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import queue
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import ldap3
import structlog
from ldap3.core.exceptions import LDAPException
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars

from proxy.auth import Patron, check_credentials_shape, databases_for, patron_key
from proxy.config import Config, DirectoryConfig
from proxy.errors import (
    AuthError,
    BadCredentials,
    ConfigError,
    DirectoryUnavailable,
    NotEligible,
    Problem,
)

T = TypeVar("T")
log = structlog.get_logger(__name__)

_SUCCESS, _SIZE_LIMIT_EXCEEDED, _NO_SUCH_OBJECT = 0, 4, 32
# Bind results that mean "this PIN does not open this entry" (inappropriateAuthentication,
# invalidCredentials, insufficientAccessRights, unwillingToPerform); any other failure is the
# server's problem, not the patron's.
_REFUSED_BIND = frozenset({48, 49, 50, 53})
# Failover may use part of the one second the contract allows past timeout_s; the caller's hard
# limit sits just under timeout_s + 1 whatever the worker threads are still doing.
_FAILOVER_GRACE_S = 0.75
_CALLER_GRACE_S = 0.9
_MIN_CONNECT_S = 0.05
# Unknown cards bind against this absent entry, so they cost the same round trips as a wrong PIN.
_DECOY_RDN = "cn=no-such-patron"
# Network and TLS failures as ldap3 and the socket layer raise them.
_SERVER_ERRORS = (LDAPException, OSError)


class _ServerFailed(Exception):
    """This server gave an unusable answer; try the next one. Never carries patron data."""


@dataclass(frozen=True)
class _Entry:
    dn: str
    key: str
    groups: frozenset[str]


def _first(value: Any) -> str:
    """First value of an ldap3 attribute (a list without schema info, a scalar with it)."""
    if isinstance(value, list | tuple):
        return str(value[0]) if value else ""
    return "" if value is None else str(value)


def _close(conn: Any) -> None:
    # The connection is being thrown away, usually because it is already broken.
    with contextlib.suppress(*_SERVER_ERRORS):
        conn.unbind()


def _is_filter(text: str) -> bool:
    """Whether ldap3's own parser accepts `text`, so a bad filter fails at startup, not at login."""
    try:
        parse_filter(text, None, True, True, None, False)
    except LDAPException:
        return False
    return True


def check_ldap_filters(config: Config, problems: list[Problem]) -> None:
    """Config check (`load_config(extra_checks=…)`): every LDAP filter must parse."""
    if config.directory.kind != "ldap":
        return
    d, file = config.directory, str(config.path)
    checks = [
        (file, "directory.user_filter", d.user_filter.replace("{username}", "x")),
        (file, "directory.eligible_filter", d.eligible_filter),
        *((v.file, "eligibility.ldap_filter", v.eligibility.ldap_filter) for v in config.vendors),
    ]
    for where, key, text in checks:
        if text and not _is_filter(text):
            problems.append(Problem(where, key, "is not a valid LDAP filter"))


def _service_password(config: Config) -> str:
    """The service account password: bind_password_file wins over bind_password_env."""
    d, file = config.directory, str(config.path)
    if d.bind_password_file:
        try:
            text = config.resolve(d.bind_password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise ConfigError(
                [Problem(file, "directory.bind_password_file", "cannot be read")]
            ) from None
        return text.rstrip("\r\n")
    if d.bind_password_env:
        value = os.environ.get(d.bind_password_env)
        if value is None:
            raise ConfigError([Problem(file, "directory.bind_password_env", "is not set")])
        return value
    return ""


class _Breaker:
    """Circuit breaker: servers that failed recently go to the back of the line for a while."""

    def __init__(self, urls: tuple[str, ...], retry_after_s: float) -> None:
        self._urls = urls
        self._retry_after_s = retry_after_s
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()  # worker threads share it

    def order(self) -> list[str]:
        """Healthy servers in configured order, then the resting ones (so recovery is noticed)."""
        now = time.monotonic()
        with self._lock:
            resting = {u for u, until in self._down_until.items() if until > now}
        return [u for u in self._urls if u not in resting] + [u for u in self._urls if u in resting]

    def failed(self, url: str) -> None:
        with self._lock:
            self._down_until[url] = time.monotonic() + self._retry_after_s

    def answered(self, url: str) -> None:
        with self._lock:
            self._down_until.pop(url, None)


class _ServicePool:
    """Idle service-bound connections per server, reused across logins, dropped on any error.

    Hand-written because ldap3's own answers do not fit: ServerPool sleeps between retry rounds
    (unbounded login time) and the REUSABLE strategy runs its own background threads. A queue
    per server of connections, each owned by one worker at a time, is easy to bound in time.
    """

    def __init__(
        self, urls: tuple[str, ...], size: int, opener: Callable[[str, float], Any]
    ) -> None:
        self._idle: dict[str, queue.LifoQueue[Any]] = {u: queue.LifoQueue(size) for u in urls}
        self._open = opener

    def run(self, url: str, deadline: float, op: Callable[[Any], T]) -> T:
        """Run `op` on a service connection; a stale pooled one is replaced once."""
        try:
            conn, reused = self._idle[url].get_nowait(), True
        except queue.Empty:
            conn, reused = self._open(url, deadline), False
        try:
            result = op(conn)
        except _SERVER_ERRORS:
            _close(conn)
            if not reused or time.monotonic() >= deadline:
                raise
            # The server restarted or dropped idle connections: the other idle ones are dead too.
            self.drain(url)
            conn = self._open(url, deadline)
            try:
                result = op(conn)
            except BaseException:
                _close(conn)
                raise
        except BaseException:
            _close(conn)
            raise
        try:
            self._idle[url].put_nowait(conn)
        except queue.Full:
            _close(conn)
        return result

    def drain(self, url: str) -> None:
        while True:
            try:
                _close(self._idle[url].get_nowait())
            except queue.Empty:
                return

    def drain_all(self) -> None:
        for url in self._idle:
            self.drain(url)


class LdapDirectory:
    """The `Directory` of an LDAP server list (search-then-bind), off the event loop."""

    def __init__(self, config: Config, *, secret: bytes) -> None:
        problems: list[Problem] = []
        check_ldap_filters(config, problems)
        if problems:
            raise ConfigError(problems)
        d: DirectoryConfig = config.directory
        self._d = d
        self._secret = secret
        self._vendors = config.vendors
        self._vendor_filters = tuple(
            (v.id, v.eligibility.ldap_filter) for v in config.vendors if v.eligibility.ldap_filter
        )
        self._bind_password = _service_password(config)
        # Certificates are always verified; ca_file pins the library's CA, else the system store.
        ca_file = str(config.resolve(d.ca_file)) if d.ca_file else None
        self._tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
        self._decoy_dn = f"{_DECOY_RDN},{d.base_dn}"
        self._breaker = _Breaker(d.urls, d.retry_after_s)
        self._service = _ServicePool(d.urls, d.pool_size, self._open_service)
        self._pool = ThreadPoolExecutor(max_workers=d.pool_size, thread_name_prefix="ldap")
        self._closed = False

    # ----------------------------------------------------------------- the Directory protocol

    async def authenticate(self, username: str, password: str) -> Patron:
        check_credentials_shape(username, password)
        card = username.strip()
        if not card:
            raise BadCredentials
        return await self._call(
            lambda: self._on_some_server(lambda url, dl: self._login_on(url, dl, card, password))
        )

    async def ping(self) -> None:
        await self._call(
            lambda: self._on_some_server(
                lambda url, dl: self._service.run(url, dl, self._read_root_dse)
            )
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        # Workers stuck on a dead server keep their connections; those die with the process.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                loop.run_in_executor(self._pool, self._service.drain_all), self._d.timeout_s
            )
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _call(self, work: Callable[[], T]) -> T:
        if self._closed:
            raise DirectoryUnavailable("the directory client is closed")
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._pool, work), self._d.timeout_s + _CALLER_GRACE_S
            )
        except TimeoutError:
            raise DirectoryUnavailable("the directory did not answer in time") from None
        except AuthError:
            raise
        except Exception as exc:
            # Fail closed on anything unforeseen, without letting ldap3's text (which may quote a
            # DN) or the chained traceback travel on.
            log.error("ldap_unexpected_error", error=type(exc).__name__)
            raise DirectoryUnavailable("the directory client failed") from None

    # ----------------------------------------------------------------- worker thread side

    def _on_some_server(self, op: Callable[[str, float], T]) -> T:
        """Run `op(url, deadline)` on the first server that answers, within the time budget."""
        deadline = time.monotonic() + self._d.timeout_s + _FAILOVER_GRACE_S
        for url in self._breaker.order():
            if deadline - time.monotonic() < _MIN_CONNECT_S:
                break
            try:
                result = op(url, deadline)
            except AuthError:
                self._breaker.answered(url)  # the server answered; the patron is the problem
                raise
            except (_ServerFailed, *_SERVER_ERRORS) as exc:
                self._breaker.failed(url)
                self._service.drain(url)
                log.warning("ldap_server_failed", server=url, error=type(exc).__name__)
                continue
            self._breaker.answered(url)
            return result
        raise DirectoryUnavailable("no directory server answered")

    def _connect(self, url: str, deadline: float, user: str, password: str) -> Any:
        """An open (not yet bound) connection; StartTLS done when configured."""
        connect_s = max(_MIN_CONNECT_S, min(self._d.timeout_s, deadline - time.monotonic()))
        server = ldap3.Server(
            url,
            use_ssl=url.lower().startswith("ldaps://"),
            tls=self._tls,
            connect_timeout=connect_s,
            get_info=ldap3.NONE,
        )
        conn = ldap3.Connection(
            server,
            user=user or None,
            password=password or None,
            authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
            client_strategy=ldap3.SYNC,
            # ldap3 packs this into SO_RCVTIMEO as whole seconds; the caller's limit is exact.
            receive_timeout=max(1, math.ceil(self._d.timeout_s)),
            raise_exceptions=False,
            auto_referrals=False,  # a referral must not carry a PIN to another server
            read_only=True,
        )
        try:
            conn.open(read_server_info=False)
            if self._d.start_tls and not server.ssl and not conn.start_tls(read_server_info=False):
                raise _ServerFailed("StartTLS refused")
        except BaseException:
            _close(conn)
            raise
        return conn

    def _open_service(self, url: str, deadline: float) -> Any:
        conn = self._connect(url, deadline, self._d.bind_dn, self._bind_password)
        if not conn.bind(read_server_info=False):
            _close(conn)
            raise _ServerFailed("the service account bind was refused")
        return conn

    def _pin_opens(self, url: str, deadline: float, dn: str, password: str) -> bool:
        """Bind as `dn` on a fresh connection.

        A fresh connection per login rather than a rebind of a pooled one: a half-failed rebind
        cannot leave a connection authenticated as a patron for the next search, and the
        connection (holding the PIN) dies with the attempt. It costs one handshake per login.
        """
        conn = self._connect(url, deadline, dn, password)
        try:
            if conn.bind(read_server_info=False):
                return True
            code = conn.result.get("result") if conn.result else None
            if code in _REFUSED_BIND:
                return False
            raise _ServerFailed(f"bind result {code}")
        finally:
            _close(conn)

    def _search(self, conn: Any, base: str, flt: str, scope: str, attrs: list[str]) -> list[Any]:
        conn.search(
            base,
            flt,
            scope,
            attributes=attrs,
            size_limit=2,  # two are enough to know the match is ambiguous
            time_limit=max(1, math.ceil(self._d.timeout_s)),
        )
        code = conn.result.get("result") if conn.result else None
        if code == _SIZE_LIMIT_EXCEEDED:
            return [None, None]  # stands for "more than one entry matched"
        if code == _NO_SUCH_OBJECT:
            return []
        if code != _SUCCESS:
            raise _ServerFailed(f"search result {code}")
        return [e for e in conn.response or () if e.get("type") == "searchResEntry"]

    def _find(self, conn: Any, card: str) -> _Entry | None:
        """The one entry whose filter matches the card number, or None (none, or ambiguous)."""
        d = self._d
        flt = d.user_filter.replace("{username}", escape_filter_chars(card))
        wanted = [d.key_attribute] + ([d.group_attribute] if d.group_attribute else [])
        found = self._search(conn, d.base_dn, flt, ldap3.SUBTREE, wanted)
        if len(found) != 1:
            return None
        attrs = found[0].get("attributes") or {}
        key = _first(attrs.get(d.key_attribute))
        if not key:
            raise DirectoryUnavailable("patron entries lack the configured key_attribute")
        raw_groups = attrs.get(d.group_attribute) if d.group_attribute else None
        groups = raw_groups if isinstance(raw_groups, list) else [raw_groups] if raw_groups else []
        return _Entry(dn=str(found[0]["dn"]), key=key, groups=frozenset(map(str, groups)))

    def _matches(self, conn: Any, dn: str, flt: str) -> bool:
        return bool(self._search(conn, dn, flt, ldap3.BASE, ["1.1"]))

    def _filters_met(self, conn: Any, dn: str) -> tuple[bool, frozenset[str]]:
        """(meets eligible_filter, ids of vendors whose ldap_filter the entry matches)."""
        if self._d.eligible_filter and not self._matches(conn, dn, self._d.eligible_filter):
            return False, frozenset()
        return True, frozenset(vid for vid, f in self._vendor_filters if self._matches(conn, dn, f))

    def _login_on(self, url: str, deadline: float, card: str, password: str) -> Patron:
        entry = self._service.run(url, deadline, lambda c: self._find(c, card))
        if entry is None:
            self._pin_opens(url, deadline, self._decoy_dn, password)
            raise BadCredentials
        if not self._pin_opens(url, deadline, entry.dn, password):
            raise BadCredentials
        eligible, matched = self._service.run(
            url, deadline, lambda c: self._filters_met(c, entry.dn)
        )
        if not eligible:
            raise NotEligible
        return Patron(
            key=patron_key(self._secret, "ldap", entry.key),
            databases=databases_for(entry.groups, self._vendors, matched),
        )

    def _read_root_dse(self, conn: Any) -> None:
        """The cheapest question a server can answer (any answer means it is alive)."""
        self._search(conn, "", "(objectClass=*)", ldap3.BASE, ["1.1"])


__all__ = ["LdapDirectory", "check_ldap_filters"]
