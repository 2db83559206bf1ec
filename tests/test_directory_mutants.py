"""From a mutation sweep of the LDAP directory client (proxy/ldap_directory.py, proxy/ldap_policy.py,
proxy/auth.py's patron_key / databases_for / group matching): 16 of 46 mutants survived the
suite; each test names the mutant it kills, a behaviour that could break without any earlier test
noticing. No defect was found. Timed checks leave seconds of margin for a loaded machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.config import load_config
from proxy.ldap_directory import _service_password, _Settings, _Worker
from tests.canary import CANARY, WREN, leaks
from tests.fixtures_ldap import Slapd
from tests.test_ldap_directory import OPEN_VENDOR, Build, write_config
from tests.test_ldap_directory import build as build
from tests.test_ldap_sign_in_edges import DUP_CARD, DUP_PIN
from tests.test_ldap_sign_in_edges import dup_slapd as dup_slapd

pytestmark = [
    pytest.mark.ldap,
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]


def _worker(
    tmp_path: Path, slapd: Slapd, vendors: list[dict[str, Any]] | None = None, **directory: Any
) -> tuple[_Worker, list[str]]:
    """A directory worker run in this process (its state can be read), on the test slapd."""
    config = load_config(write_config(tmp_path, slapd, vendors or [OPEN_VENDOR], **directory))
    filters = tuple(
        (v.id, v.eligibility.ldap_filter) for v in config.vendors if v.eligibility.ldap_filter
    )
    worker = _Worker(_Settings(config.directory, _service_password(config), None, filters))
    return worker, list(config.directory.urls)


def test_entries_without_the_key_attribute_are_unavailable_never_one_shared_key(
    tmp_path: Path, slapd: Slapd
) -> None:
    """kills: proxy/ldap_directory.py:_Worker._find — `if not key: raise DirectoryUnavailable`
    → `if False:`.

    P3/P4: key_attribute names an attribute the patrons' entries do not hold (a typo, or a
    directory that does not publish it): every sign-in must fail closed as "directory
    unavailable". Otherwise every patron's opaque key is HMAC("") — one shared key, so one
    patron's sessions, cookie jar and usage limits would be another's."""
    worker, order = _worker(tmp_path, slapd, key_attribute="carLicense")
    for patron in (CANARY, WREN):
        outcome = worker.run("login", order, patron.uid, patron.password)
        assert outcome.status == "unavailable", outcome
        assert outcome.key == ""
        assert "key_attribute" in outcome.message
        assert leaks(repr(outcome).encode()) == []


def test_a_card_two_entries_share_opens_neither_when_nothing_tells_them_apart(
    tmp_path: Path, dup_slapd: Slapd
) -> None:
    """kills: proxy/ldap_directory.py:_Worker._find — `if len(found) != 1: return None`
    → `if not found or found[0] is None: return None` (an ambiguous match takes the first entry).

    P4: a card number held by two entries (a reissue) with no eligible_filter to tell them apart
    is refused as ambiguous, whichever entry's PIN is typed: a patron is never signed in as
    whichever entry the directory happened to list first (slapd answers exactly two matches
    under size_limit=2 with success, not sizeLimitExceeded)."""
    worker, order = _worker(tmp_path, dup_slapd, eligible_filter="")
    assert worker.run("login", order, DUP_CARD, DUP_PIN).status == "bad_credentials"
    assert worker.run("login", order, DUP_CARD, "Old-PIN-1").status == "bad_credentials"


def test_the_kept_connections_never_follow_a_referral(tmp_path: Path, slapd: Slapd) -> None:
    """kills: proxy/ldap_directory.py:_Worker._connect — `auto_referrals=False` → `True`.

    P2: a directory entry or a hostile/misconfigured replica that answers with a referral must
    not make the worker carry the service password or a patron's PIN (binds are re-sent to the
    referred server when ldap3 follows referrals) to another host. Both connections a worker
    keeps after a sign-in (the service one and the PIN-bind one) refuse to follow referrals."""
    worker, order = _worker(tmp_path, slapd)
    assert worker.run("login", order, CANARY.uid, CANARY.password).status == "ok"
    kept = [*worker._services.values(), *worker._binders.values()]
    assert len(kept) == 2
    for conn in kept:
        assert conn.auto_referrals is False


def test_tls_sends_the_directory_host_name_and_no_name_for_an_address(
    tmp_path: Path, slapd: Slapd
) -> None:
    """kills: proxy/ldap_directory.py:_Worker._tls_for — `sni = host or None` → `sni = None`.

    IT staff: a hosted directory or a load balancer serving several names picks its certificate
    by the name the client sends (SNI); without it the handshake meets the wrong certificate
    and every sign-in fails. An address sends none (as browsers do). Certificates are always
    verified."""
    import ssl

    worker, _ = _worker(tmp_path, slapd)
    by_name = worker._tls_for("ldaps://directory.weston.example:636")
    assert by_name.sni == "directory.weston.example"
    assert by_name.validate == ssl.CERT_REQUIRED
    assert worker._tls_for("ldaps://127.0.0.1:636").sni is None
    assert worker._tls_for("ldap://[::1]:389").sni is None


class _AnsweringConn:
    """Stands for a bind connection whose server answers every bind with `code`."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.user: str | None = None
        self.password: str | None = None
        self.request: Any = None
        self.result: dict[str, Any] = {}

    def bind(self, read_server_info: bool = False, controls: Any = None) -> bool:
        self.result = {"result": self.code, "controls": {}}
        return self.code == 0


@pytest.mark.parametrize("code", [48, 49, 50, 53])
def test_each_refusing_bind_answer_is_a_wrong_pin(tmp_path: Path, slapd: Slapd, code: int) -> None:
    """kills: proxy/ldap_directory.py:_REFUSED_BIND — `{48, 49, 50, 53}` → `{49}`.

    P7, patrons and IT staff: the answers by which directories say "this PIN does not open this
    entry" (inappropriateAuthentication, invalidCredentials, insufficientAccessRights,
    unwillingToPerform — the last is what several directories send for a locked or disabled
    account) are a wrong PIN, not a server failure: otherwise the patron is told the directory
    is down and the healthy server is rested by the circuit breaker."""
    worker, _ = _worker(tmp_path, slapd)
    conn = _AnsweringConn(code)
    assert worker._bind_as(conn, "uid=x,ou=patrons", "some-PIN") is None
    assert conn.password is None and conn.request is None


@pytest.mark.parametrize("code", [1, 51, 52, 80])
def test_a_bind_the_server_could_not_answer_is_a_server_failure_not_a_wrong_pin(
    tmp_path: Path, slapd: Slapd, code: int
) -> None:
    """kills: proxy/ldap_directory.py:_Worker._bind_as — `if not opened and code not in
    _REFUSED_BIND: raise _ServerFailed` → `if False:`.

    P7: a bind the server failed to answer (operationsError, busy, unavailable, other) is the
    server's problem: the next server is tried, and if none answers the patron hears "directory
    unavailable" — never "wrong PIN", which the sign-in throttle counts against the card."""
    from proxy.ldap_directory import _ServerFailed

    worker, _ = _worker(tmp_path, slapd)
    conn = _AnsweringConn(code)
    with pytest.raises(_ServerFailed):
        worker._bind_as(conn, "uid=x,ou=patrons", "some-PIN")
    assert conn.password is None and conn.request is None


def test_a_server_that_failed_mid_sign_in_keeps_no_connection_in_the_worker(
    tmp_path: Path, slapd: Slapd
) -> None:
    """kills: proxy/ldap_directory.py:_Worker._run — `self.drop(url)` after a server failure
    → removed.

    IT staff: once a server has failed a sign-in, the worker forgets every connection it kept
    to it (the service one and the PIN-bind one): nothing half-broken is held open to a server
    the breaker now rests, and the next sign-in there starts on fresh connections."""
    from proxy.ldap_directory import _ServerFailed

    worker, order = _worker(tmp_path, slapd)
    assert worker.run("login", order, CANARY.uid, CANARY.password).status == "ok"
    assert worker._services and worker._binders
    kept = [*worker._services.values(), *worker._binders.values()]
    find = worker._find

    def failing(conn: Any, card: str) -> Any:
        raise _ServerFailed("search result 51")

    worker._find = failing  # type: ignore[method-assign]
    try:
        outcome = worker.run("login", order, WREN.uid, WREN.password)
    finally:
        worker._find = find  # type: ignore[method-assign]
    assert outcome.status == "unavailable" and outcome.failed[0][0] == order[0]
    assert worker._services == {} and worker._binders == {}
    assert all(conn.closed for conn in kept)
    assert worker.run("login", order, WREN.uid, WREN.password).status == "ok"


def test_a_negative_grace_count_or_expiry_from_the_directory_is_read_as_zero() -> None:
    """kills: proxy/ldap_policy.py:policy_answer — `grace = max(0, int(...))` → `int(...)`.

    Patrons: a directory (or a proxy in front of one) that sends a negative graceAuthNsRemaining
    or timeBeforeExpiration must not make the sign-in page tell a patron they have "-1 grace
    logins left"; it is read as none left."""
    from proxy.ldap_policy import PASSWORD_POLICY_OID, policy_answer

    def answer(value: bytes) -> Any:
        return policy_answer({"controls": {PASSWORD_POLICY_OID: {"value": value}}})

    assert answer(b"\x30\x05\xa0\x03\x81\x01\xff").grace_left == 0  # graceAuthNsRemaining -1
    assert answer(b"\x30\x05\xa0\x03\x81\x01\x03").grace_left == 3
    assert answer(b"\x30\x05\xa0\x03\x80\x01\xff").expires_in_s == 0  # timeBeforeExpiration -1
    assert answer(b"\x30\x06\xa0\x04\x80\x02\x0e\x10").expires_in_s == 3600


def test_with_start_tls_a_plain_or_dropped_connection_is_never_reused(
    tmp_path: Path, slapd: Slapd
) -> None:
    """kills: proxy/ldap_directory.py:_Worker._reusable — `return not self._d.start_tls or
    bool(conn.server.ssl) or bool(conn.tls_started)` → `return True`.

    P2: with start_tls, a kept connection that is not (or no longer) TLS must not carry the next
    patron's PIN bind: ldap3 reopens a closed connection by itself, without StartTLS (seen in
    this review: with the mutant, a PIN bind went over a reopened plain connection when the
    dropped connection's socket was already gone). Checked on the decision itself, since
    whether ldap3 reopens or raises first depends on the state the drop left the socket in."""
    import time as _time

    from proxy.ldap_directory import _Budget

    (tmp_path / "plain").mkdir()
    (tmp_path / "tls").mkdir()
    plain_worker, order = _worker(tmp_path / "plain", slapd)
    tls_worker, _ = _worker(tmp_path / "tls", slapd, start_tls=True, ca_file=str(slapd.ca_file))
    tls_worker._ca_file = str(slapd.ca_file)
    budget = _Budget(_time.monotonic() + 2)
    plain = plain_worker._connect(order[0], budget, "", "")
    secured = tls_worker._connect(order[0], budget, "", "")
    try:
        assert secured.tls_started and tls_worker._reusable(secured)
        assert not plain.tls_started
        assert tls_worker._reusable(plain) is False  # open, but never upgraded
        assert plain_worker._reusable(plain) is True  # without start_tls it may be kept
        secured.unbind()  # as when the server drops an idle connection
        assert tls_worker._reusable(secured) is False
    finally:
        plain.unbind()


def test_a_patron_key_is_bound_to_the_kind_of_directory_it_came_from() -> None:
    """kills: proxy/auth.py:patron_key — `f"patron:{namespace}:{stable_value}"` →
    `f"patron:{stable_value}"`.

    P3/P4: the same stable value in two kinds of directory (a patrons-file card number that
    happens to equal an LDAP entry's key value, during a move from one to the other) gives two
    different patrons' keys, so one patron never inherits another's sessions, jar or usage
    counts; and the key of an LDAP patron stays what it was across releases (sessions and
    usage records in Redis are filed under it)."""
    from proxy.auth import patron_key

    secret = b"test-server-secret-0123456789abcdef"
    assert patron_key(secret, "ldap", "29999000424242") != patron_key(
        secret, "file", "29999000424242"
    )
    assert patron_key(secret, "ldap", "5c7f13b2-8178-1041-806e-d5143f7144b4") == (
        "23cdaea542b24b7341ec0a26e24e003f29b0f01d7b799a296d4b172d933a3abe"
    )


def test_an_entry_gone_between_the_pin_and_the_eligibility_check_is_no_server_failure(
    tmp_path: Path, slapd: Slapd
) -> None:
    """kills: proxy/ldap_directory.py:_Worker._search — `if code == _NO_SUCH_OBJECT: return []`
    → removed (noSuchObject becomes "this server failed").

    Patrons and IT staff: the base-scope searches after the PIN bind ask about the patron's own
    entry; when the library's ILS has just removed it (a card cancelled mid-sign-in), the answer
    noSuchObject means "does not match" (so: not eligible), not a broken server that the
    circuit breaker should rest for every other patron."""
    import time as _time

    import ldap3

    from proxy.ldap_directory import _Budget

    worker, order = _worker(tmp_path, slapd)
    gone = f"uid=29999000000001,{slapd.patrons_base}"
    budget = _Budget(_time.monotonic() + 2)
    found = worker._as_service(
        order[0], budget, lambda c: worker._search(c, gone, "(objectClass=*)", ldap3.BASE, ["1.1"])
    )
    assert found == []
    assert not worker._as_service(
        order[0], budget, lambda c: worker._matches(c, gone, "(!(description=expired))")
    )
    assert order[0] in worker._services  # the connection is kept: the server is fine


def test_a_connection_whose_operation_failed_is_closed_not_kept() -> None:
    """kills: proxy/ldap_directory.py:_keep_after — `_close(conn)` on an exception → removed.

    P2: a connection an operation failed on is unbound at once and not kept: for a PIN that
    must be changed (PinMustChange) that connection is bound as the patron, and it must not
    stay open to the directory under the patron's identity until the garbage collector
    happens to drop it; a successful one is kept for the next sign-in."""
    from proxy.errors import PinMustChange
    from proxy.ldap_directory import _keep_after

    class Conn:
        unbound = False

        def unbind(self) -> None:
            self.unbound = True

    def must_change(conn: Any) -> Any:
        raise PinMustChange

    kept: dict[str, Any] = {}
    failed = Conn()
    with pytest.raises(PinMustChange):
        _keep_after(kept, "ldap://d", failed, must_change)
    assert failed.unbound and kept == {}
    fine = Conn()
    assert _keep_after(kept, "ldap://d", fine, lambda c: "answer") == "answer"
    assert kept == {"ldap://d": fine} and not fine.unbound


def test_a_certificate_for_another_host_is_named_for_it_staff_without_its_text() -> None:
    """kills: proxy/ldap_directory.py:_why — `if any(isinstance(e, LDAPCertificateError) …)`
    → `if False:`.

    IT staff: when the directory's certificate is not for the host name in `urls`, the
    ldap_server_failed log says so ("tls_certificate: …"), raised directly or chained under
    ldap3's socket error, and never repeats ldap3's text, which quotes the certificate."""
    from ldap3.core.exceptions import LDAPCertificateError, LDAPSocketOpenError

    from proxy.ldap_directory import _why

    quoted = "hostname 'directory.weston.example' doesn't match 'Zebulon Canaryfeather'"
    direct = LDAPCertificateError(quoted)
    try:
        try:
            raise LDAPCertificateError(quoted)
        except LDAPCertificateError as inner:
            raise LDAPSocketOpenError("socket ssl wrapping error") from inner
    except LDAPSocketOpenError as outer:
        chained = outer
    for exc in (direct, chained):
        why = _why(exc)
        assert why == "tls_certificate: the certificate is not for this host name"
        assert "Canaryfeather" not in why and "weston.example" not in why


def test_servers_left_untried_when_time_ran_out_are_not_reported_as_failed(
    tmp_path: Path, slapd: Slapd, dead_ldap_url: str
) -> None:
    """kills: proxy/ldap_directory.py:_Worker._run — `if deadline - now < _MIN_CONNECT_S: break`
    → `if False:`.

    IT staff and patrons: when the first server used up the whole sign-in's time, the servers
    after it were never asked; they must not be reported as failed (the circuit breaker would
    rest a healthy server, and the log would blame it), so the next sign-in goes to them first."""
    import time as _time

    from proxy.ldap_directory import _ServerFailed

    order = [dead_ldap_url, slapd.url]
    worker, _ = _worker(tmp_path, slapd, urls=order, timeout_s=0.5)
    login_on = worker._login_on

    def slow_first(url: str, budget: Any, card: str, password: str) -> Any:
        if url == dead_ldap_url:
            _time.sleep(0.5 + 0.75 + 0.1)  # past timeout_s and the failover grace
            raise _ServerFailed("the sign-in would not finish within timeout_s on this server")
        return login_on(url, budget, card, password)

    worker._login_on = slow_first  # type: ignore[method-assign]
    outcome = worker.run("login", order, CANARY.uid, CANARY.password)
    assert outcome.status == "unavailable"
    assert [f[0] for f in outcome.failed] == [dead_ldap_url]


def test_each_request_waits_no_longer_than_the_sign_in_has_left() -> None:
    """kills: proxy/ldap_directory.py:_Budget.arm — `sock.settimeout(max(_MIN_CONNECT_S,
    self.left()))` → removed.

    Patrons: a server that answers slowly must not hold a request past what the sign-in's
    budget on that server has left (ldap3's own receive timeout is whole seconds, at least
    timeout_s): the socket's timeout is cut to the time left, never below the minimum."""
    import time as _time

    from proxy.ldap_directory import _MIN_CONNECT_S, _Budget

    class Sock:
        timeout: float | None = None

        def settimeout(self, value: float) -> None:
            self.timeout = value

    class Conn:
        socket = Sock()

    conn = Conn()
    _Budget(_time.monotonic() + 10).arm(conn)
    assert conn.socket.timeout is not None and 8 < conn.socket.timeout <= 10
    _Budget(_time.monotonic() - 1).arm(conn)
    assert conn.socket.timeout == _MIN_CONNECT_S


async def test_a_stuck_worker_process_still_answers_the_patron_within_the_time_limit(
    build: Build,
) -> None:
    """kills: proxy/ldap_directory.py:LdapDirectory._call — `asyncio.timeout(self._d.timeout_s
    + _CALLER_GRACE_S)` → `asyncio.timeout(self._d.timeout_s + 5)`.

    Patrons (P7): when the worker process itself is stuck (stopped, swapping), the caller's own
    limit still answers "directory unavailable" within timeout_s plus under a second, as the
    contract says (checked here with room for a loaded machine); the workers' time budget alone
    cannot promise that."""
    import asyncio
    import os
    import signal
    import time as _time

    from proxy.errors import DirectoryUnavailable

    d = await build(pool_size=1, timeout_s=0.5)
    await d.authenticate(CANARY.uid, CANARY.password)  # the worker is up
    pids = [p.pid for p in d._procs._processes.values() if p.pid is not None]
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGSTOP)
    try:
        started = _time.monotonic()
        with pytest.raises(DirectoryUnavailable):
            await d.authenticate(WREN.uid, WREN.password)
        # timeout_s + 0.9 s is the caller's own limit; 3 s leaves room for a loaded machine and
        # is still far from timeout_s + 5 s.
        assert _time.monotonic() - started < 3.0
    finally:
        os.kill(pids[0], signal.SIGCONT)
    await asyncio.sleep(0)
