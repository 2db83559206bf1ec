"""Patron authentication against the library's LDAP directory: search, bind, eligibility, failover.

Flow of one login (on one server, so a replica's view is consistent):
service-bound search for the card number (escaped; two matches are enough to know it is
ambiguous) → bind as the found entry with the patron's PIN on a bind-only connection (an unknown
card binds against a decoy entry that does not exist, so it costs the same two round trips as a
wrong PIN) → base-scope searches for `eligible_filter` and each vendor's `eligibility.ldap_filter`
→ `Patron(key=HMAC(entryUUID), databases=…)`. "Not eligible" is said only after the PIN opened
the entry. A card number shared by several entries is refused as ambiguous, except that when
exactly one of them is eligible, that one is the patron's: a second search (card number and
`eligible_filter`) finds it before the bind. So such a card, and only such a card, costs one
search more than an unknown one before its PIN is checked, and the time of a refusal shows that
it exists. Asking `eligible_filter` in every first search would hide that, at one more search per
sign-in for every patron (ldap3's request encoding is most of a sign-in's CPU), for the few cards
a library holds twice while reissuing them; left so on purpose.

ldap3 is blocking, so every call runs in one of `pool_size` worker processes (see `LdapDirectory`)
and never on the event loop; the card number and PIN reach a worker over a local pipe. Socket,
TLS and timeout errors, and a server too slow for the whole sign-in to finish within timeout_s
(`_Budget`), mean "this server failed": the next URL is tried, the failed one is skipped
for `retry_after_s` (tried again only when every other server fails too), and when none answers the
caller gets DirectoryUnavailable — never BadCredentials. The card number, PIN, DN and every
attribute value stay inside this module (both sides of the pipe): exceptions and logs carry fixed
texts, URLs and types, and a worker answers with an `_Outcome`, never with an exception whose text
or traceback could quote a DN.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import multiprocessing
import multiprocessing.context
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ldap3
import structlog
from ldap3.core.exceptions import (
    LDAPCertificateError,
    LDAPException,
    LDAPPasswordIsMandatoryError,
    LDAPSASLPrepError,
)
from ldap3.operation.search import parse_filter
from ldap3.protocol.sasl.sasl import validate_simple_password
from ldap3.utils.conv import escape_filter_chars

from proxy.auth import (
    Patron,
    check_credentials_shape,
    databases_for,
    eligibility_marks,
    patron_key,
)
from proxy.config import Config, DirectoryConfig
from proxy.errors import (
    BadCredentials,
    ConfigError,
    DirectoryUnavailable,
    NotEligible,
    PinExpired,
    PinMustChange,
    Problem,
    network_failure,
)
from proxy.ldap_policy import (
    CHANGE_AFTER_RESET,
    PASSWORD_EXPIRED,
    REQUEST_CONTROL,
    PolicyAnswer,
    policy_answer,
)
from proxy.logs import stacks_on_usr1

T = TypeVar("T")
log = structlog.get_logger(__name__)

_SUCCESS, _SIZE_LIMIT_EXCEEDED, _NO_SUCH_OBJECT = 0, 4, 32
# Bind results that mean "this PIN does not open this entry" (inappropriateAuthentication,
# invalidCredentials, insufficientAccessRights, unwillingToPerform); any other failure is the
# server's problem, not the patron's.
_REFUSED_BIND = frozenset({48, 49, 50, 53})
_INVALID_CREDENTIALS = 49
# A sign-in may spend timeout_s on one server, all its requests together (`_Budget`); failover
# may use part of the one second the contract allows past timeout_s; the caller's hard limit
# sits just under timeout_s + 1 whatever the worker processes are still doing.
_FAILOVER_GRACE_S = 0.75
_CALLER_GRACE_S = 0.9
_MIN_CONNECT_S = 0.05
# Unknown cards bind against this absent entry, so they cost the same round trips as a wrong PIN.
_DECOY_RDN = "cn=no-such-patron"
# Network and TLS failures as ldap3 and the socket layer raise them.
_SERVER_ERRORS = (LDAPException, OSError)


class _ServerFailed(Exception):
    """This server gave an unusable answer; try the next one. Never carries patron data."""


def _why(exc: BaseException) -> str:
    """What went wrong with a server, for IT staff: this module's fixed texts, or what the
    connection met (`errors.network_failure`: ldap3 makes its socket errors subclasses of the
    error it met). Never the exception's own text, which could quote a DN."""
    if isinstance(exc, _ServerFailed):
        return str(exc)
    met: list[BaseException] = [exc]
    if isinstance(exc, LDAPException) and len(exc.args) > 1 and isinstance(exc.args[1], list):
        # "unable to open socket", with what each of the host's addresses raised
        met += [e[0] for e in exc.args[1] if isinstance(e, tuple) and e]
    chained = [c for e in met for c in (e.__cause__, e.__context__) if c is not None]
    if any(isinstance(e, LDAPCertificateError) for e in met + chained):
        # ldap3 checks the host name itself, after the handshake: its own error, whose text
        # quotes the certificate, so only the fact is said.
        return "tls_certificate: the certificate is not for this host name"
    found = network_failure(met)
    if found is None:
        return ""
    kind, detail = found
    return f"{kind}: {detail}" if detail else kind


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


def _parenthesised(text: str) -> str:
    """`uid=x` → `(uid=x)`, so a filter can be combined inside `(&…)`; `(uid=x)` unchanged."""
    text = text.strip()
    return text if text.startswith("(") else f"({text})"


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
        self._lock = threading.Lock()  # the pool's result thread and the event loop share it

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


class _Budget:
    """The time one sign-in (or ping) may spend on one server, every request together.

    A server that answers each request a little under timeout_s would otherwise pass each one
    and still make the sign-in run past the caller's limit, and, having answered, be taken for
    healthy by the breaker. Each request waits for its answer only as long as the budget has
    left (the socket's timeout is set to it), and none goes out when what is left cannot cover
    the slowest request this server has answered in this sign-in: the server then counts as
    failed (`_ServerFailed`, so the breaker rests it) and the next one is tried."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.slowest = 0.0

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def require(self) -> None:
        if self.left() < max(_MIN_CONNECT_S, self.slowest):
            raise _ServerFailed("the sign-in would not finish within timeout_s on this server")

    def arm(self, conn: Any) -> None:
        """Wait for `conn`'s answers no longer than the budget has left."""
        sock = getattr(conn, "socket", None)
        if sock is not None:
            sock.settimeout(max(_MIN_CONNECT_S, self.left()))

    def timed(self, op: Callable[[Any], T]) -> Callable[[Any], T]:
        """`op`, with the connection armed first and its time noted."""

        def run(conn: Any) -> T:
            self.arm(conn)
            started = time.monotonic()
            try:
                return op(conn)
            finally:
                self.slowest = max(self.slowest, time.monotonic() - started)

        return run


@dataclass(frozen=True)
class _Settings:
    """What a directory worker process needs; picklable, built once in the proxy process."""

    directory: DirectoryConfig
    bind_password: str
    ca_file: str | None
    vendor_filters: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Outcome:
    """A worker's answer: fixed words, and which servers failed or answered; no patron text."""

    # ok | bad_credentials | not_eligible | pin_expired | pin_must_change | unavailable |
    # client_error
    status: str
    key: str = ""  # the entry's key_attribute value; the proxy process turns it into an HMAC
    groups: frozenset[str] = frozenset()
    matched: frozenset[str] = frozenset()  # vendors whose eligibility.ldap_filter matched
    failed: tuple[tuple[str, str, str], ...] = ()  # (server URL, exception type, _why)
    answered: tuple[str, ...] = ()
    message: str = ""  # for unavailable: a fixed text of this module; for client_error: a type
    # ok: the password policy's warning at the bind (proxy.ldap_policy), if any
    grace_left: int | None = None
    expires_in_s: int | None = None


_CONTEXT: multiprocessing.context.ForkServerContext | None = None


def _worker_context() -> multiprocessing.context.ForkServerContext:
    """Worker processes fork from a small server process that has this module imported already:
    a new worker starts in milliseconds and shares nothing with the proxy's event loop."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["proxy.ldap_directory"])
        _CONTEXT = ctx
    return _CONTEXT


def _main_reimportable() -> bool:
    """Whether worker processes can import this program's main module, as multiprocessing makes
    them do: a module run with -m, a script file, or none (-c) can; code read from standard input
    or typed at a prompt cannot, and every worker would die before its first call."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return True
    path = getattr(main, "__file__", None)
    return path is None or os.path.exists(path)


_WORKER: _Worker | None = None


def _start_worker(settings: _Settings) -> None:
    """Process-pool initializer: this process's own directory client."""
    global _WORKER
    # The proxy process handles the signals; a Ctrl-C must not print a traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stacks_on_usr1()  # `kill -USR1` prints this worker's stacks too
    _WORKER = _Worker(settings)


def _work(kind: str, order: list[str], card: str, password: str) -> _Outcome:
    """Runs in a worker process: one login (or ping) over the servers in `order`."""
    if _WORKER is None:
        return _Outcome("client_error", message="NoWorker")
    return _WORKER.run(kind, order, card, password)


def _ready() -> bool:
    return _WORKER is not None


class LdapDirectory:
    """The `Directory` of an LDAP server list (search-then-bind), in worker processes.

    ldap3 is blocking and most of a sign-in's CPU goes to its request encoding (pyasn1), so
    the directory work runs in `pool_size` worker processes rather than threads: a burst of
    sign-ins then uses another core instead of holding the event loop's GIL, and pages keep
    flowing meanwhile. (Measured with `bench/run`: threads managed ~170 sign-ins/s on two cores,
    processes ~240/s.) The circuit breaker lives here, in the proxy process, so every worker
    sees one view of which servers are resting; the workers report what failed.
    """

    def __init__(self, config: Config, *, secret: bytes) -> None:
        problems: list[Problem] = []
        check_ldap_filters(config, problems)
        if problems:
            raise ConfigError(problems)
        d: DirectoryConfig = config.directory
        self._d = d
        self._secret = secret
        self._vendors = config.vendors
        self._rules = frozenset(eligibility_marks(config).values())
        self._settings = _Settings(
            directory=d,
            bind_password=_service_password(config),
            # Certificates are always verified; ca_file pins the library's CA, else the system's.
            ca_file=str(config.resolve(d.ca_file)) if d.ca_file else None,
            vendor_filters=tuple(
                (v.id, v.eligibility.ldap_filter)
                for v in config.vendors
                if v.eligibility.ldap_filter
            ),
        )
        self._breaker = _Breaker(d.urls, d.retry_after_s)
        # One per worker: a call takes its servers' order when a worker is free for it, not when
        # it is queued, so calls waiting behind a hung server go to the one the breaker has
        # learnt answers meanwhile. Held until the worker is done (after a caller's timeout too).
        self._free_workers = asyncio.Semaphore(d.pool_size)
        if not _main_reimportable():
            raise RuntimeError(
                "the LDAP directory's worker processes cannot start from a program read from "
                "standard input or a prompt; run the proxy with `weston-proxy` or `python -m proxy`"
            )
        self._procs = self._new_pool()
        self._closed = False

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            max_workers=self._d.pool_size,
            mp_context=_worker_context(),
            initializer=_start_worker,
            initargs=(self._settings,),
        )
        # Start one worker now, so the first patron does not wait for it.
        pool.submit(_ready)
        return pool

    # ----------------------------------------------------------------- the Directory protocol

    async def authenticate(self, username: str, password: str) -> Patron:
        check_credentials_shape(username, password)
        card = username.strip()
        if not card:
            raise BadCredentials
        try:
            # ldap3 prepares every PIN for the bind (SASLprep, RFC 4013) and raises before
            # sending one it cannot, or one that prepares to nothing: a wrong PIN (counted by
            # the throttle), not a fault of the server.
            validate_simple_password(password)
        except (LDAPSASLPrepError, LDAPPasswordIsMandatoryError) as exc:
            raise BadCredentials from exc
        outcome = await self._call("login", card, password)
        return Patron(
            key=patron_key(self._secret, "ldap", outcome.key),
            databases=databases_for(outcome.groups, self._vendors, outcome.matched),
            rules=self._rules,
            pin_grace_left=outcome.grace_left,
            pin_expires_in_s=outcome.expires_in_s,
        )

    async def ping(self) -> None:
        await self._call("ping", "", "")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        manager = _stop_pool(self._procs)
        if manager is not None:
            await asyncio.to_thread(_wait_stopped, manager)

    async def _call(self, kind: str, card: str, password: str) -> _Outcome:
        if self._closed:
            raise DirectoryUnavailable("the directory client is closed")
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._procs
            try:
                async with asyncio.timeout(self._d.timeout_s + _CALLER_GRACE_S):
                    await self._free_workers.acquire()
                    try:
                        future = pool.submit(_work, kind, self._breaker.order(), card, password)
                    except BaseException:
                        self._free_workers.release()
                        raise
                    # Registered before the caller's wrapper: the breaker has learnt (and the
                    # failures are logged) by the time the caller resumes, even after a timeout.
                    future.add_done_callback(self._learn)
                    future.add_done_callback(
                        lambda _: loop.call_soon_threadsafe(self._free_workers.release)
                    )
                    outcome: _Outcome = await asyncio.wrap_future(future)
            except TimeoutError:
                raise DirectoryUnavailable("the directory did not answer in time") from None
            except BrokenProcessPool:
                if self._closed:
                    # `close` stopped the pool under this call (a reload's replaced directory
                    # past its grace, or shutdown): a fresh pool here would outlive the client,
                    # its workers never stopped.
                    raise DirectoryUnavailable("the directory client is closed") from None
                # A worker died (killed, out of memory): start a fresh pool and try once more.
                # Calls in flight on the broken pool all land here; only the first replaces it.
                if self._procs is pool:
                    log.error("ldap_worker_lost")
                    _stop_pool(pool)
                    self._procs = self._new_pool()
                if attempt == 2:
                    raise DirectoryUnavailable("the directory client failed") from None
                continue
            except Exception as exc:
                # Fail closed on anything unforeseen; no chained text travels on.
                log.error("ldap_unexpected_error", error=type(exc).__name__)
                raise DirectoryUnavailable("the directory client failed") from None
            return _raise_for(outcome)
        raise DirectoryUnavailable("the directory client failed")  # pragma: no cover

    def _learn(self, future: Future[_Outcome]) -> None:
        """Runs when a worker answers: the breaker learns, and server failures are logged."""
        if future.cancelled() or future.exception() is not None:
            return
        outcome = future.result()
        for url, error, reason in outcome.failed:
            self._breaker.failed(url)
            log.warning("ldap_server_failed", server=url, error=error, reason=reason)
        for url in outcome.answered:
            self._breaker.answered(url)


def _keep_after(kept: dict[str, Any], url: str, conn: Any, op: Callable[[Any], T]) -> T:
    """`op(conn)`; then `conn` is kept for `url`, or closed if `op` raised anything."""
    try:
        result = op(conn)
    except BaseException:
        _close(conn)
        raise
    kept[url] = conn
    return result


def _stop_pool(pool: ProcessPoolExecutor) -> threading.Thread | None:
    """Stop a pool's workers now; what they hold (kept directory connections) closes with them.
    Returns the pool's manager thread, which goes on for a moment (see `_wait_stopped`).

    `shutdown()` alone is not enough: under load a worker was seen (Python 3.11) still waiting
    for the stop sentinel after the pool's manager thread had sent it, and multiprocessing joins
    every child at interpreter exit, so the proxy process hung instead of exiting after its
    drain. The pool has no public handle on its processes or its thread, hence `_processes` and
    `_executor_manager_thread` (which `shutdown` clears).
    """
    handles = list((getattr(pool, "_processes", None) or {}).values())
    manager: threading.Thread | None = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in handles:
        if process.is_alive():
            process.terminate()
    return manager


# How long closing waits for a stopped pool's manager thread (it normally ends in milliseconds).
_POOL_STOP_WAIT_S = 5.0


def _wait_stopped(manager: threading.Thread) -> None:
    """Wait (in a thread) until a stopped pool's manager thread has finished with its workers.

    At exit, Python 3.11 wakes every pool's manager thread through a pipe that the thread closes
    as it finishes, without a lock between the two; when the exit loses that race it raises
    OSError after the process's work is done, and a `serve --workers` worker then ends with exit
    code 1 and no traceback (multiprocessing's fork start discards it). Such an exit was seen
    once in about 200 stressed start/stops; this race fits it, but 400 bare tries of it alone did
    not reproduce it, so it is a likely cause, not a proven one. Either way, a manager thread that
    has finished leaves nothing to race with, and `close` then means closed.
    """
    manager.join(_POOL_STOP_WAIT_S)
    if manager.is_alive():
        log.warning("ldap_pool_slow_to_stop", waited_s=_POOL_STOP_WAIT_S)


def _raise_for(outcome: _Outcome) -> _Outcome:
    """The outcome as the Directory protocol says it: a result, or one of its exceptions."""
    if outcome.status == "ok":
        return outcome
    if outcome.status == "bad_credentials":
        raise BadCredentials
    if outcome.status == "not_eligible":
        raise NotEligible
    if outcome.status == "pin_expired":
        raise PinExpired
    if outcome.status == "pin_must_change":
        raise PinMustChange
    if outcome.status == "unavailable":
        raise DirectoryUnavailable(outcome.message)
    log.error("ldap_unexpected_error", error=outcome.message)
    raise DirectoryUnavailable("the directory client failed")


class _Worker:
    """The directory client inside one worker process (one call at a time)."""

    def __init__(self, settings: _Settings) -> None:
        d = settings.directory
        self._d = d
        self._bind_password = settings.bind_password
        self._vendor_filters = settings.vendor_filters
        # One per server host: each sends its host name in the handshake (SNI), so a TLS front
        # serving several names (a load balancer, a hosted directory) presents the right
        # certificate. An address sends none, as browsers do.
        self._tls: dict[str, Any] = {}
        self._ca_file = settings.ca_file
        self._decoy_dn = f"{_DECOY_RDN},{d.base_dn}"
        # Per server, the connections this worker keeps between sign-ins (it runs one call at a
        # time, so one of each): the service-bound one for searches, and the one patrons' PIN
        # binds go over. Hand-written because ldap3's own answers do not fit: ServerPool sleeps
        # between retry rounds (unbounded login time) and the REUSABLE strategy runs its own
        # background threads.
        self._services: dict[str, Any] = {}
        self._binders: dict[str, Any] = {}

    def run(self, kind: str, order: list[str], card: str, password: str) -> _Outcome:
        """Try the servers in `order` until one answers, within the time budget."""
        failed: list[tuple[str, str, str]] = []
        try:
            return self._run(kind, order, card, password, failed)
        except Exception as exc:
            return _Outcome("client_error", failed=tuple(failed), message=type(exc).__name__)

    def _run(
        self,
        kind: str,
        order: list[str],
        card: str,
        password: str,
        failed: list[tuple[str, str, str]],
    ) -> _Outcome:
        deadline = time.monotonic() + self._d.timeout_s + _FAILOVER_GRACE_S
        for url in order:
            now = time.monotonic()
            if deadline - now < _MIN_CONNECT_S:
                break
            # The whole sign-in on this server (every request) within timeout_s, and within
            # what the failover allowance has left.
            budget = _Budget(min(deadline, now + self._d.timeout_s))
            try:
                if kind == "ping":
                    self._as_service(url, budget, self._read_root_dse)
                    return _Outcome("ok", failed=tuple(failed), answered=(url,))
                entry, matched, policy = self._login_on(url, budget, card, password)
            except BadCredentials:
                # The server answered; the patron is the problem.
                return _Outcome("bad_credentials", failed=tuple(failed), answered=(url,))
            except NotEligible:
                return _Outcome("not_eligible", failed=tuple(failed), answered=(url,))
            except PinExpired:
                return _Outcome("pin_expired", failed=tuple(failed), answered=(url,))
            except PinMustChange:
                return _Outcome("pin_must_change", failed=tuple(failed), answered=(url,))
            except DirectoryUnavailable as exc:
                return _Outcome("unavailable", failed=tuple(failed), message=str(exc))
            except (_ServerFailed, *_SERVER_ERRORS) as exc:
                failed.append((url, type(exc).__name__, _why(exc)))
                self.drop(url)
                continue
            return _Outcome(
                "ok",
                key=entry.key,
                groups=entry.groups,
                matched=matched,
                failed=tuple(failed),
                answered=(url,),
                grace_left=policy.grace_left,
                expires_in_s=policy.expires_in_s,
            )
        return _Outcome("unavailable", failed=tuple(failed), message="no directory server answered")

    def _tls_for(self, url: str) -> Any:
        """ldap3's TLS settings for the server at `url`: certificates checked against
        `ca_file` (or the system's), and the host name sent as SNI unless it is an address."""
        host = urlsplit(url).hostname or ""
        tls = self._tls.get(host)
        if tls is None:
            try:
                ipaddress.ip_address(host)
                sni = None
            except ValueError:
                sni = host or None
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self._ca_file, sni=sni)
            self._tls[host] = tls
        return tls

    def _connect(self, url: str, budget: _Budget, user: str, password: str) -> Any:
        """An open (not yet bound) connection; StartTLS done when configured."""
        connect_s = max(_MIN_CONNECT_S, min(self._d.timeout_s, budget.left()))
        server = ldap3.Server(
            url,
            use_ssl=url.lower().startswith("ldaps://"),
            tls=self._tls_for(url),
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
            budget.arm(conn)
            if self._d.start_tls and not server.ssl and not conn.start_tls(read_server_info=False):
                raise _ServerFailed("StartTLS refused")
            budget.arm(conn)
        except BaseException:
            _close(conn)
            raise
        return conn

    def _open_service(self, url: str, budget: _Budget) -> Any:
        conn = self._connect(url, budget, self._d.bind_dn, self._bind_password)
        if not conn.bind(read_server_info=False):
            _close(conn)
            raise _ServerFailed("the service account bind was refused")
        return conn

    def _on_kept(
        self,
        kept: dict[str, Any],
        url: str,
        budget: _Budget,
        open_: Callable[[], Any],
        op: Callable[[Any], T],
    ) -> T:
        """`op` on the connection kept in `kept` for `url`, or on a fresh one from `open_` when
        there is none or the kept one fails as a dropped one would (the server restarted or
        closed it while idle; tried once, and only while time is left). The connection is kept
        for the next call when `op` returns, and closed when anything goes wrong.

        Each request goes out only while the sign-in's budget on this server can still cover it
        (`_Budget.require`), and waits for its answer no longer than the budget has left."""
        budget.require()
        conn = kept.pop(url, None)
        if conn is not None and not self._reusable(conn):
            _close(conn)
            conn = None
        if conn is not None:
            try:
                return _keep_after(kept, url, conn, budget.timed(op))
            except (_ServerFailed, *_SERVER_ERRORS):
                budget.require()
        return _keep_after(kept, url, open_(), budget.timed(op))

    def _reusable(self, conn: Any) -> bool:
        # ldap3 reopens a closed connection by itself, without StartTLS: never let it.
        if conn.closed:
            return False
        return not self._d.start_tls or bool(conn.server.ssl) or bool(conn.tls_started)

    def _as_service(self, url: str, budget: _Budget, op: Callable[[Any], T]) -> T:
        """`op` on this worker's service-bound connection to `url`."""
        return self._on_kept(
            self._services, url, budget, lambda: self._open_service(url, budget), op
        )

    def _pin_opens(self, url: str, budget: _Budget, dn: str, password: str) -> PolicyAnswer | None:
        """Bind as `dn` with the PIN, on this worker's bind-only connection to `url`: the
        password policy's answer when the PIN opened the entry, None when it was refused.

        The connection does nothing but binds, so whoever the last bind left it as never matters:
        no search or other operation ever runs on it (the service connection does those), and a
        failed bind leaves it anonymous (RFC 4511 4.2.1). The PIN is cleared from the connection
        object as soon as the bind has answered. Reusing it spares the directory a TCP (and TLS)
        handshake per sign-in.
        """
        return self._on_kept(
            self._binders,
            url,
            budget,
            # Opened as a simple-bind connection for `dn`: an anonymous one would bind without
            # the PIN.
            lambda: self._connect(url, budget, dn, password),
            lambda conn: self._bind_as(conn, dn, password),
        )

    def _bind_as(self, conn: Any, dn: str, password: str) -> PolicyAnswer | None:
        """One simple bind on `conn`: the password policy's answer (NO_ANSWER when it said
        nothing) when the PIN opened `dn`, None when it was refused.

        The bind asks for the directory's password policy (`proxy.ldap_policy`): a right PIN
        that has expired raises PinExpired, and one the directory allows nothing but a change
        (`changeAfterReset`) raises PinMustChange. slapd says either only after a right PIN, and
        a refusal without them stays a wrong PIN. A PIN with grace logins left signs in."""
        conn.user, conn.password = dn, password
        try:
            opened = bool(conn.bind(read_server_info=False, controls=[REQUEST_CONTROL]))
            result = conn.result or {}
            code = result.get("result")
            policy = policy_answer(result)
        finally:
            # Neither the PIN nor whose entry it was tried on stays in the kept connection: ldap3
            # also keeps the last request it sent (the bind, PIN and DN) in `conn.request`.
            conn.user, conn.password, conn.request = self._decoy_dn, None, None
        if opened and policy.error == CHANGE_AFTER_RESET:
            # Bound as the patron with rights to nothing but a PIN change: not kept.
            raise PinMustChange
        if not opened and code == _INVALID_CREDENTIALS and policy.error == PASSWORD_EXPIRED:
            raise PinExpired
        if not opened and code not in _REFUSED_BIND:
            raise _ServerFailed(f"bind result {code}")
        return policy if opened else None

    def drop(self, url: str) -> None:
        """Forget every connection to `url` (after it failed)."""
        for kept in (self._services, self._binders):
            conn = kept.pop(url, None)
            if conn is not None:
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
        """The one entry whose filter matches the card number, or None (none, or ambiguous).
        Two entries for one card (an old and a new one, say) are told apart by eligible_filter
        when there is one."""
        d = self._d
        flt = _parenthesised(d.user_filter.replace("{username}", escape_filter_chars(card)))
        wanted = [d.key_attribute] + ([d.group_attribute] if d.group_attribute else [])
        found = self._search(conn, d.base_dn, flt, ldap3.SUBTREE, wanted)
        if len(found) > 1 and d.eligible_filter:
            flt = f"(&{flt}{_parenthesised(d.eligible_filter)})"
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

    def _vendor_filters_met(self, conn: Any, dn: str) -> frozenset[str]:
        """Ids of the vendors whose eligibility.ldap_filter the entry matches."""
        return frozenset(vid for vid, f in self._vendor_filters if self._matches(conn, dn, f))

    def _login_on(
        self, url: str, budget: _Budget, card: str, password: str
    ) -> tuple[_Entry, frozenset[str], PolicyAnswer]:
        """(the patron's entry, the vendors whose ldap_filter it matches, the password policy's
        answer to the PIN's bind), or an AuthError.

        Until the PIN has opened the entry, every card costs the same two round trips, one
        search and one bind (an unknown card binds against the decoy entry), so the time of
        an answer does not tell whether a card number exists. Eligibility is asked only
        after the bind: without the PIN, it is nobody's business."""
        entry = self._as_service(url, budget, lambda c: self._find(c, card))
        if entry is None:
            self._pin_opens(url, budget, self._decoy_dn, password)
            raise BadCredentials
        policy = self._pin_opens(url, budget, entry.dn, password)
        if policy is None:
            raise BadCredentials
        dn, eligible_filter = entry.dn, self._d.eligible_filter

        def after_bind(c: Any) -> tuple[bool, frozenset[str]]:
            if eligible_filter and not self._matches(c, dn, _parenthesised(eligible_filter)):
                return False, frozenset()
            return True, self._vendor_filters_met(c, dn) if self._vendor_filters else frozenset()

        eligible, matched = self._as_service(url, budget, after_bind)
        if not eligible:
            raise NotEligible
        return entry, matched, policy

    def _read_root_dse(self, conn: Any) -> None:
        """The cheapest question a server can answer (any answer means it is alive)."""
        self._search(conn, "", "(objectClass=*)", ldap3.BASE, ["1.1"])


__all__ = ["LdapDirectory", "check_ldap_filters"]
