"""From a second mutation sweep by hand (1 December 2026) of the LDAP directory client
(proxy/ldap_directory.py) and of proxy/auth.py's credential checks and file directory: each test
names the mutant it kills, a behaviour that could break without any earlier test noticing.
Canary patrons only; slapd on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.ldap_directory import _Breaker
from tests.canary import CANARY, WREN, leaks
from tests.fixtures_ldap import Slapd
from tests.test_directory_mutants import _worker
from tests.test_ldap_directory import OPEN_VENDOR, Build
from tests.test_ldap_directory import build as build

pytestmark = [
    pytest.mark.ldap,
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]


def test_a_resting_server_that_answers_again_is_first_in_line_at_once() -> None:
    """kills: proxy/ldap_directory.py:_Breaker.answered — `self._down_until.pop(url, None)`
    → `pass`.

    IT staff: the breaker closes as soon as a resting server answers (it is tried when every
    other one fails too): from the next sign-in on, the library's primary directory is asked
    first again, not only once retry_after_s has run out while the backup carries every
    sign-in."""
    primary, backup = "ldap://primary.example:389", "ldap://backup.example:389"
    breaker = _Breaker((primary, backup), retry_after_s=3600)
    breaker.failed(primary)
    assert breaker.order() == [backup, primary]
    breaker.answered(primary)
    assert breaker.order() == [primary, backup]


def test_a_dropped_kept_connection_is_replaced_not_reused_as_it_is(
    tmp_path: Path, slapd: Slapd
) -> None:
    """kills: proxy/ldap_directory.py:_Worker._reusable — `if conn.closed: return False`
    → `if False:`.

    Patrons and IT staff: when the directory has dropped the connections a worker keeps (a
    restart, an idle timeout), the next sign-in opens fresh ones — the service account bound
    again, the PIN bound as the patron's entry — instead of letting ldap3 reopen the dropped
    socket as it is. A right PIN signs in, a wrong one is refused, and every kept connection
    is a new, bound, open one."""
    worker, order = _worker(tmp_path, slapd, [OPEN_VENDOR])
    assert worker.run("login", order, CANARY.uid, CANARY.password).status == "ok"
    kept = [*worker._services.values(), *worker._binders.values()]
    assert len(kept) == 2
    for conn in kept:
        conn.unbind()  # as when the server drops idle connections
    assert worker.run("login", order, WREN.uid, WREN.password).status == "ok"
    assert worker.run("login", order, CANARY.uid, WREN.password).status == "bad_credentials"
    again = [*worker._services.values(), *worker._binders.values()]
    assert len(again) == 2 and not any(c in kept for c in again)
    assert all(not c.closed for c in again)
    (service,) = worker._services.values()
    assert service.bound


def test_a_directory_read_anonymously_is_pinged_and_asked_without_a_service_bind(
    tmp_path: Path, slapd: Slapd
) -> None:
    """kills: proxy/ldap_directory.py:_Worker._connect — `authentication=ldap3.SIMPLE if user
    else ldap3.ANONYMOUS` → `authentication=ldap3.SIMPLE`.

    IT staff: `bind_dn` may be left empty (a directory that lets anyone search it): the
    service connection is then anonymous, so the readiness ping answers and a sign-in is
    answered by the directory (here, whose patrons anonymous cannot read, as a wrong card),
    never turned into "directory unavailable" by a simple bind without a name."""
    worker, order = _worker(tmp_path, slapd, [OPEN_VENDOR], bind_dn="", bind_password_file="")
    ping = worker.run("ping", order, "", "")
    assert ping.status == "ok", ping
    outcome = worker.run("login", order, CANARY.uid, CANARY.password)
    assert outcome.status == "bad_credentials", outcome
    assert leaks(repr(outcome).encode()) == []


class _AnsweringConn:
    """A stand-in for an ldap3 connection whose searches all end with one result code."""

    def __init__(self, code: int) -> None:
        self.result: dict[str, Any] = {"result": code}
        self.response: list[Any] = []

    def search(self, *args: Any, **kwargs: Any) -> bool:
        return False


@pytest.mark.parametrize("code", [1, 3, 11, 50, 51, 52, 80], ids=lambda c: f"result-{c}")
def test_a_search_the_server_does_not_answer_is_a_server_failure_never_no_such_card(
    tmp_path: Path, slapd: Slapd, code: int
) -> None:
    """kills: proxy/ldap_directory.py:_Worker._search — `if code != _SUCCESS: raise
    _ServerFailed` → `return []`.

    P7, patrons and IT staff: a directory that is busy, unavailable, over its time or admin
    limit or refuses the service account the search (operationsError, timeLimitExceeded,
    adminLimitExceeded, insufficientAccessRights, busy, unavailable, other) has not said the
    card is unknown: the sign-in is a server failure (the next server is tried, the patron is
    told the directory is unavailable), never a "wrong card or PIN" counted against them."""
    from proxy.ldap_directory import _ServerFailed

    worker, _ = _worker(tmp_path, slapd, [OPEN_VENDOR])
    with pytest.raises(_ServerFailed):
        worker._find(_AnsweringConn(code), CANARY.uid)
    with pytest.raises(_ServerFailed):
        worker._matches(_AnsweringConn(code), "uid=x,ou=patrons", "(objectClass=*)")


async def test_the_dummy_hash_pin_on_an_unknown_card_is_a_wrong_card(tmp_path: Path) -> None:
    """kills: proxy/auth.py:FileDirectory.authenticate — `if entry is None or not ok` →
    `if not ok`.

    Patrons file: an unknown card is checked against a dummy hash (so it costs the time of a
    known one); the dummy's own PIN typed on an unknown card is refused as a wrong card or
    PIN like any other, never a server error or a sign-in."""
    from proxy.auth import FileDirectory, hash_password
    from proxy.errors import BadCredentials

    path = tmp_path / "patrons.toml"
    path.write_text(
        f'[[patron]]\ncard = "29990000000021"\nhash = "{hash_password("5678")}"\n',
        encoding="utf-8",
    )
    d = FileDirectory(path, secret=b"mutldap2-review-secret-32-bytes!", vendors=(), workers=1)
    try:
        with pytest.raises(BadCredentials):
            await d.authenticate("29990000000099", "not-a-real-pin")
        assert (await d.authenticate("29990000000021", "5678")).key
    finally:
        await d.close()


async def test_the_breaker_learns_from_a_worker_that_a_resting_server_answered(
    build: Build, slapd: Slapd, dead_ldap_url: str
) -> None:
    """kills: proxy/ldap_directory.py:LdapDirectory._learn — `self._breaker.answered(url)`
    for each answered server → removed.

    IT staff: once the primary directory, resting after a failure, answers a sign-in again,
    the proxy asks it first from the next sign-in on, instead of the backup until
    retry_after_s runs out."""
    d = await build(urls=[slapd.url, dead_ldap_url], retry_after_s=3600)
    d._breaker.failed(slapd.url)  # as after the primary failed a moment ago
    assert d._breaker.order() == [dead_ldap_url, slapd.url]
    await d.authenticate(CANARY.uid, CANARY.password)  # the backup fails; the primary answers
    assert slapd.url not in d._breaker._down_until  # the primary rests no more
    d._breaker.answered(dead_ldap_url)  # and once the backup is back too
    assert d._breaker.order() == [slapd.url, dead_ldap_url]


def _patrons(tmp_path: Path, *entries: tuple[str, str]) -> Any:
    from proxy.auth import FileDirectory

    path = tmp_path / "patrons.toml"
    path.write_text(
        "".join(f'[[patron]]\ncard = "{c}"\nhash = "{h}"\n' for c, h in entries), encoding="utf-8"
    )
    return FileDirectory(path, secret=b"mutldap2-review-secret-32-bytes!", vendors=(), workers=1)


def test_card_and_pin_lengths_are_bounded_exactly() -> None:
    """kills: proxy/auth.py:check_credentials_shape — `len(password) > MAX_PASSWORD` dropped,
    and `len(username) > MAX_USERNAME` → `>=`.

    Patrons and IT staff: a card number of up to 64 characters and a PIN (or passphrase) of
    up to 256 reach the directory; one character more is refused as a wrong card or PIN before
    any directory sees it (a huge PIN would otherwise cost a bind, a SASLprep and a hash)."""
    from proxy.auth import MAX_PASSWORD, MAX_USERNAME, check_credentials_shape
    from proxy.errors import BadCredentials

    check_credentials_shape("9" * MAX_USERNAME, "p" * MAX_PASSWORD)
    with pytest.raises(BadCredentials):
        check_credentials_shape("9" * (MAX_USERNAME + 1), "1234")
    with pytest.raises(BadCredentials):
        check_credentials_shape("29990000000021", "p" * (MAX_PASSWORD + 1))


async def test_a_card_typed_with_spaces_around_it_signs_in_from_the_patrons_file(
    tmp_path: Path,
) -> None:
    """kills: proxy/auth.py:FileDirectory.authenticate — `self._patrons.get(username.strip())`
    → `self._patrons.get(username)`.

    Patrons: a card number pasted or typed with a space before or after it is the same card
    (as with the LDAP directory): the right PIN signs in, a wrong one is refused."""
    from proxy.auth import hash_password
    from proxy.errors import BadCredentials

    d = _patrons(tmp_path, ("29990000000021", hash_password("5678")))
    try:
        plain = await d.authenticate("29990000000021", "5678")
        assert (await d.authenticate(" 29990000000021  ", "5678")).key == plain.key
        with pytest.raises(BadCredentials):
            await d.authenticate(" 29990000000021", "5679")
    finally:
        await d.close()


async def test_a_patrons_file_hash_argon2_cannot_read_opens_nothing(tmp_path: Path) -> None:
    """kills: proxy/auth.py:FileDirectory._verify_one — `except InvalidHashError: return
    False` → `return True`.

    P4, patrons file: an entry whose hash is damaged (a truncated copy, a hand edit) that the
    file check lets through must refuse every PIN — never sign anyone in on that card."""
    from proxy.errors import BadCredentials

    d = _patrons(tmp_path, ("29990000000031", "$argon2i"))
    try:
        for pin in ("1234", "not-a-real-pin"):
            with pytest.raises(BadCredentials):
                await d.authenticate("29990000000031", pin)
    finally:
        await d.close()


async def test_pins_with_characters_saslprep_refuses_are_each_their_own_pin(
    tmp_path: Path,
) -> None:
    """kills: proxy/auth.py:prepare_pin — `except LDAPSASLPrepError: return password` →
    `return ""`.

    P4, patrons file: a PIN holding a character SASLprep refuses (here U+FFFD) is hashed and
    checked as typed, so another such PIN does not open the card — the file directory never
    takes every refused PIN as one and the same (empty) PIN."""
    from proxy.auth import hash_password, prepare_pin
    from proxy.errors import BadCredentials

    assert prepare_pin("12\ufffd34") == "12\ufffd34"
    d = _patrons(tmp_path, ("29990000000041", hash_password("12\ufffd34")))
    try:
        assert (await d.authenticate("29990000000041", "12\ufffd34")).key
        with pytest.raises(BadCredentials):
            await d.authenticate("29990000000041", "99\ufffd99")
    finally:
        await d.close()


def test_a_service_password_file_that_is_not_utf8_is_a_config_error_naming_no_secret(
    tmp_path: Path, slapd: Slapd
) -> None:
    """kills: proxy/ldap_directory.py:_service_password — `except (OSError,
    UnicodeDecodeError)` → `except OSError`.

    IT staff and P2: a bind_password_file saved in another encoding stops the proxy with the
    config problem named (`directory.bind_password_file: cannot be read`), not a raw decoding
    error whose text quotes the password's own bytes into the start-up log."""
    from proxy.config import load_config
    from proxy.errors import ConfigError
    from proxy.ldap_directory import _service_password
    from tests.test_ldap_directory import write_config

    config = load_config(write_config(tmp_path, slapd, [OPEN_VENDOR]))
    (tmp_path / "ldap-bind-password").write_bytes(b"Sekr\xe9t-Bind-\xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        _service_password(config)
    text = str(info.value)
    assert "directory.bind_password_file" in text
    assert "Sekr" not in text and "\\xe9" not in text


async def test_a_blank_card_is_a_wrong_card_without_asking_the_directory(
    build: Build, dead_ldap_url: str
) -> None:
    """kills: proxy/ldap_directory.py:LdapDirectory.authenticate — `card = username.strip()`
    → `card = username`, and `if not card: raise BadCredentials` → `if False:`.

    Patrons and IT staff: a card field holding only spaces is a wrong card, answered at once
    and the same whether the directory is up or down — it costs the directory no search and
    bind, and is never reported (or logged as a server failure) as "directory unavailable"."""
    from proxy.errors import BadCredentials

    d = await build(urls=[dead_ldap_url], timeout_s=1)
    for blank in (" ", "   "):
        with pytest.raises(BadCredentials):
            await d.authenticate(blank, CANARY.password)
    assert dead_ldap_url not in d._breaker._down_until
