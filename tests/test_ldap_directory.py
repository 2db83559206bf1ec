"""LdapDirectory against a real slapd: search-then-bind, eligibility, injection, outages, TLS."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
import tomli_w

from proxy.config import load_config
from proxy.errors import BadCredentials, ConfigError, DirectoryUnavailable, NotEligible
from proxy.ldap_directory import (
    LdapDirectory,
    _Outcome,
    _raise_for,
    _service_password,
    _Settings,
    _Worker,
)
from tests.canary import CANARY, EXPIRED, HERON, WREN, leaks
from tests.fixtures_ldap import (
    ELIGIBLE_FILTER,
    GENERIC_COUNT,
    RESIDENT_FILTER,
    SEED_LDIF,
    Slapd,
    generic_password,
    generic_uid,
    render_patrons_ldif,
    write_bind_password,
)

pytestmark = [
    pytest.mark.ldap,
    # ldap3 checks the certificate's name with ssl.match_hostname (deprecated, still correct).
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]

SECRET = b"test-server-secret-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent
OPEN_VENDOR = {
    "id": "open",
    "title": "Open Database",
    "origin": "https://open.example.com",
    "hosts": ["open.example.com"],
}
RESIDENT_VENDOR = {
    "id": "resident",
    "title": "Residents Only Database",
    "origin": "https://resident.example.com",
    "hosts": ["resident.example.com"],
    "eligibility": {"ldap_filter": RESIDENT_FILTER},
}

Build = Callable[..., Awaitable[LdapDirectory]]


def write_config(
    tmp_path: Path, slapd: Slapd, vendors: list[dict[str, Any]], **directory: Any
) -> Path:
    """A proxy.toml for an LDAP directory on the test slapd, plus one TOML file per vendor."""
    vendors_dir = tmp_path / "vendors"
    vendors_dir.mkdir(exist_ok=True)
    for v in vendors:
        (vendors_dir / f"{v['id']}.toml").write_text(tomli_w.dumps(v))
    settings: dict[str, Any] = {
        "kind": "ldap",
        "urls": [slapd.url],
        "bind_dn": slapd.bind_dn,
        "bind_password_file": write_bind_password(tmp_path).name,
        "base_dn": slapd.patrons_base,
        "eligible_filter": ELIGIBLE_FILTER,
        "timeout_s": 2,
    }
    settings.update(directory)
    path = tmp_path / "proxy.toml"
    path.write_text(tomli_w.dumps({"directory": settings, "vendors": {"dir": "vendors"}}))
    return path


@pytest.fixture
async def build(tmp_path: Path, slapd: Slapd) -> AsyncIterator[Build]:
    """Builds LdapDirectory objects from a temp config (proves the keys); closes them after."""
    made: list[LdapDirectory] = []

    async def _build(
        vendors: list[dict[str, Any]] | None = None, **directory: Any
    ) -> LdapDirectory:
        path = write_config(tmp_path, slapd, vendors or [OPEN_VENDOR], **directory)
        made.append(LdapDirectory(load_config(path), secret=SECRET))
        return made[-1]

    yield _build
    for d in made:
        await d.close()


def assert_clean(exc: BaseException) -> None:
    """Neither the exception nor anything chained to it names a canary patron."""
    seen: BaseException | None = exc
    while seen is not None:
        assert leaks(str(seen).encode()) == []
        assert leaks(repr(seen).encode()) == []
        seen = seen.__cause__ or seen.__context__


# --------------------------------------------------------------------------- seed data


def test_seed_ldif_is_generated_from_the_canaries() -> None:
    """conf/ldap/patrons.ldif is exactly what the generator makes from tests/canary.py."""
    assert SEED_LDIF.read_text() == render_patrons_ldif()


# --------------------------------------------------------------------------- logins


async def test_login_returns_opaque_key_not_card_or_dn(build: Build, slapd: Slapd) -> None:
    d = await build()
    patron = await d.authenticate(CANARY.uid, CANARY.password)
    assert leaks(repr(patron).encode()) == []
    assert slapd.patrons_base not in patron.key
    assert len(patron.key) == 64


async def test_key_is_stable_across_logins(build: Build) -> None:
    d = await build()
    first = await d.authenticate(CANARY.uid, CANARY.password)
    second = await d.authenticate(CANARY.uid, CANARY.password)
    assert first.key == second.key


async def test_two_patrons_get_different_keys(build: Build) -> None:
    d = await build()
    canary = await d.authenticate(CANARY.uid, CANARY.password)
    wren = await d.authenticate(WREN.uid, WREN.password)
    assert canary.key != wren.key


async def test_card_number_with_surrounding_spaces_logs_in(build: Build) -> None:
    d = await build()
    assert (await d.authenticate(f" {CANARY.uid} ", CANARY.password)).key


async def test_wrong_pin_is_bad_credentials(build: Build) -> None:
    d = await build()
    with pytest.raises(BadCredentials) as info:
        await d.authenticate(CANARY.uid, WREN.password)
    assert_clean(info.value)


async def test_empty_pin_is_bad_credentials(build: Build) -> None:
    """An empty PIN would be an unauthenticated bind, which LDAP servers report as success."""
    d = await build()
    with pytest.raises(BadCredentials):
        await d.authenticate(CANARY.uid, "")


async def test_unknown_card_is_the_same_error_as_a_wrong_pin(build: Build) -> None:
    d = await build()
    with pytest.raises(BadCredentials) as unknown:
        await d.authenticate("29999000999999", CANARY.password)
    with pytest.raises(BadCredentials) as wrong:
        await d.authenticate(CANARY.uid, "not-the-pin")
    assert type(unknown.value) is type(wrong.value) is BadCredentials
    assert str(unknown.value) == str(wrong.value)


async def test_expired_card_is_not_eligible(build: Build) -> None:
    d = await build()
    with pytest.raises(NotEligible) as info:
        await d.authenticate(EXPIRED.uid, EXPIRED.password)
    assert_clean(info.value)


async def test_expired_card_with_wrong_pin_does_not_reveal_expiry(build: Build) -> None:
    d = await build()
    with pytest.raises(BadCredentials):
        await d.authenticate(EXPIRED.uid, "not-the-pin")


async def test_nonresident_does_not_get_resident_only_database(build: Build) -> None:
    d = await build(vendors=[OPEN_VENDOR, RESIDENT_VENDOR])
    heron = await d.authenticate(HERON.uid, HERON.password)
    canary = await d.authenticate(CANARY.uid, CANARY.password)
    assert heron.databases == frozenset({"open"})
    assert canary.databases == frozenset({"open", "resident"})


async def test_group_attribute_values_are_the_patrons_groups(build: Build) -> None:
    by_group = {**RESIDENT_VENDOR, "eligibility": {"groups": ["resident"]}}
    d = await build(vendors=[OPEN_VENDOR, by_group], group_attribute="employeeType")
    assert (await d.authenticate(HERON.uid, HERON.password)).databases == {"open"}
    assert (await d.authenticate(WREN.uid, WREN.password)).databases == {"open", "resident"}


@pytest.mark.parametrize(
    "username",
    ["*", "x)(uid=*", "*)(|(uid=*", "\x00", "9" * 10_000, f"{CANARY.uid})(uid=*", "2999900042424*"],
    ids=["star", "close-open", "or-all", "nul", "10k", "card-then-any", "prefix-wildcard"],
)
async def test_filter_injection_is_bad_credentials(build: Build, username: str) -> None:
    """Filter metacharacters are escaped: no username matches anyone but its literal card."""
    d = await build()
    with pytest.raises(BadCredentials) as info:
        await d.authenticate(username, CANARY.password)
    assert_clean(info.value)


async def test_many_patrons_log_in_concurrently(build: Build) -> None:
    """The generic patrons all log in at once through the bounded pool, each with its own key."""
    d = await build(pool_size=4)
    patrons = await asyncio.gather(
        *(d.authenticate(generic_uid(i), generic_password(i)) for i in range(GENERIC_COUNT))
    )
    assert len({p.key for p in patrons}) == GENERIC_COUNT


# --------------------------------------------------------------------------- worker processes


def worker_pids(d: LdapDirectory) -> set[int]:
    """The directory's worker processes (ProcessPoolExecutor keeps them in `_processes`)."""
    return {p.pid for p in d._procs._processes.values() if p.pid is not None}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_sign_ins_run_in_worker_processes_not_the_proxy(build: Build) -> None:
    """ldap3's CPU work happens in other processes, so it never holds the event loop's GIL."""
    d = await build(pool_size=2)
    await asyncio.gather(*(d.authenticate(generic_uid(i), generic_password(i)) for i in range(6)))
    pids = worker_pids(d)
    assert 1 <= len(pids) <= 2
    assert os.getpid() not in pids
    assert all(alive(pid) for pid in pids)


async def test_a_killed_worker_is_replaced_and_the_next_sign_in_works(build: Build) -> None:
    d = await build(pool_size=2)
    first = await d.authenticate(CANARY.uid, CANARY.password)
    old = worker_pids(d)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in old) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    with structlog.testing.capture_logs() as logs:
        again = await d.authenticate(CANARY.uid, CANARY.password)
    assert again.key == first.key
    assert not worker_pids(d) & old
    assert any(e["event"] == "ldap_worker_lost" for e in logs)
    assert leaks(repr(logs).encode()) == []


async def test_sign_ins_in_flight_when_workers_die_all_complete(
    build: Build, slapd: Slapd, blackhole_ldap_url: str
) -> None:
    """Workers killed while four sign-ins wait on a silent first server: every call retries on
    one fresh pool (not one pool each, stopping each other's) and signs in."""
    d = await build(urls=[blackhole_ldap_url, slapd.url], pool_size=4, timeout_s=1)
    calls = [
        asyncio.ensure_future(d.authenticate(generic_uid(i), generic_password(i))) for i in range(4)
    ]
    await asyncio.sleep(0.4)  # all four are waiting on the blackhole's connect
    for pid in worker_pids(d):
        os.kill(pid, signal.SIGKILL)
    patrons = await asyncio.gather(*calls)
    assert len({p.key for p in patrons}) == 4


def closed_connections_to(port: int) -> int:
    """TCP connections to `port` on this host that were closed recently (TIME_WAIT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote, state = fields[1], fields[2], fields[3]
                ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
                count += state == "06" and port in ports
    return count


async def test_patron_binds_reuse_one_connection_and_each_answer_is_the_patrons_own(
    build: Build, slapd: Slapd
) -> None:
    """Right and wrong PINs of different patrons alternate over one worker's bind connection:
    every answer is right for that patron, and no sign-in opens (and closes) a connection."""
    d = await build(pool_size=1)
    await d.authenticate(CANARY.uid, CANARY.password)  # the worker's connections now exist
    before = closed_connections_to(slapd.port)
    expected_keys = {}
    for uid, password in ((CANARY.uid, CANARY.password), (WREN.uid, WREN.password)):
        expected_keys[uid] = (await d.authenticate(uid, password)).key
    sequence = [
        (WREN.uid, "wrong-pin", None),
        (CANARY.uid, CANARY.password, CANARY.uid),
        (CANARY.uid, "wrong-pin", None),
        (WREN.uid, WREN.password, WREN.uid),
        (WREN.uid, CANARY.password, None),  # another patron's PIN opens nothing
        (CANARY.uid, CANARY.password, CANARY.uid),
        ("29999000999999", CANARY.password, None),  # no such card: the decoy bind
        (WREN.uid, WREN.password, WREN.uid),
    ]
    for uid, password, who in sequence * 3:
        if who is None:
            with pytest.raises(BadCredentials):
                await d.authenticate(uid, password)
        else:
            assert (await d.authenticate(uid, password)).key == expected_keys[who]
    assert closed_connections_to(slapd.port) - before <= 2  # not one per sign-in (24 here)


def test_a_program_on_standard_input_is_told_why_workers_cannot_start(
    tmp_path: Path, slapd: Slapd
) -> None:
    """multiprocessing makes workers import the main module; from stdin they would all die at
    start and every sign-in fail. The directory refuses at once, saying how to run the proxy."""
    path = write_config(tmp_path, slapd, [OPEN_VENDOR])
    code = (
        "from proxy.config import load_config\n"
        "from proxy.ldap_directory import LdapDirectory\n"
        "try:\n"
        f"    LdapDirectory(load_config({str(path)!r}), secret=bytes(32))\n"
        "except RuntimeError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-"], input=code, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "refused:" in done.stdout, done.stderr
    assert "python -m proxy" in done.stdout


def test_a_worker_keeps_no_pin_and_answers_with_no_patron_data(
    tmp_path: Path, slapd: Slapd, dead_ldap_url: str
) -> None:
    """P2 inside a worker (run in this process so its state can be read): after sign-ins that
    open, fail, miss the card or meet a dead server first, no kept connection holds a PIN and no
    answer carries the card number, the PIN or any other canary value."""
    order = [dead_ldap_url, slapd.url]
    config = load_config(write_config(tmp_path, slapd, [OPEN_VENDOR], urls=order))
    worker = _Worker(_Settings(config.directory, _service_password(config), None, ()))
    outcomes = [
        worker.run("login", order, CANARY.uid, CANARY.password),
        worker.run("login", order, CANARY.uid, WREN.password),
        worker.run("login", order, "29999000999999", CANARY.password),
        worker.run("login", order, EXPIRED.uid, EXPIRED.password),
    ]
    statuses = [o.status for o in outcomes]
    assert statuses == ["ok", "bad_credentials", "bad_credentials", "not_eligible"]
    assert all(o.failed and o.failed[0][0] == dead_ldap_url for o in outcomes)
    assert worker._binders, "the bind connection is kept"
    for conn in worker._binders.values():
        assert conn.password is None
    assert leaks(repr(outcomes).encode()) == []
    assert CANARY.password not in repr(vars(worker)) and WREN.password not in repr(vars(worker))


def test_a_worker_error_reaches_the_caller_as_unavailable_with_no_text() -> None:
    """P7: an unforeseen error in a worker fails closed, and its text does not travel on."""
    with pytest.raises(DirectoryUnavailable) as info:
        _raise_for(_Outcome("client_error", message="KeyError"))
    assert str(info.value) == "the directory client failed"


async def test_close_stops_the_worker_processes(build: Build) -> None:
    d = await build(pool_size=2)
    await d.authenticate(CANARY.uid, CANARY.password)
    pids = worker_pids(d)
    assert pids
    manager = d._procs._executor_manager_thread  # type: ignore[attr-defined]
    await d.close()
    # The pool's manager thread is done when close returns: nothing of it is left for the
    # interpreter's exit to race with (ldap_directory._wait_stopped).
    assert manager is not None and not manager.is_alive()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(DirectoryUnavailable):
        await d.authenticate(CANARY.uid, CANARY.password)


async def test_wrong_service_password_is_unavailable_not_bad_credentials(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused service account is the library's problem, never the patron's PIN."""
    monkeypatch.setenv("TEST_LDAP_BIND_PASSWORD", "not-the-service-password")
    d = await build(bind_password_file="", bind_password_env="TEST_LDAP_BIND_PASSWORD")
    with pytest.raises(DirectoryUnavailable):
        await d.authenticate(CANARY.uid, CANARY.password)


async def test_service_password_from_the_environment(
    build: Build, slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LDAP_BIND_PASSWORD", slapd.bind_password)
    d = await build(bind_password_file="", bind_password_env="TEST_LDAP_BIND_PASSWORD")
    assert (await d.authenticate(CANARY.uid, CANARY.password)).key


async def test_invalid_vendor_filter_is_a_config_error(build: Build) -> None:
    broken = {**RESIDENT_VENDOR, "eligibility": {"ldap_filter": "(employeeType=resident"}}
    with pytest.raises(ConfigError) as info:
        await build(vendors=[OPEN_VENDOR, broken])
    assert "eligibility.ldap_filter" in str(info.value)


# --------------------------------------------------------------------------- outages


async def test_stopped_directory_is_unavailable_within_timeout(
    build: Build, running_slapd: Slapd
) -> None:
    d = await build(timeout_s=1)
    running_slapd.stop()
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable) as info:
        await d.authenticate(CANARY.uid, CANARY.password)
    assert time.monotonic() - started < 2.0
    assert_clean(info.value)


async def test_login_works_again_after_the_directory_restarts(
    build: Build, running_slapd: Slapd
) -> None:
    """Pooled connections that died with the server are replaced; the breaker lets it back."""
    d = await build(timeout_s=1, retry_after_s=60)
    await d.authenticate(CANARY.uid, CANARY.password)
    running_slapd.stop()
    with pytest.raises(DirectoryUnavailable):
        await d.authenticate(CANARY.uid, CANARY.password)
    running_slapd.start()
    assert (await d.authenticate(CANARY.uid, CANARY.password)).key


async def test_failover_to_the_second_url(build: Build, slapd: Slapd, dead_ldap_url: str) -> None:
    d = await build(urls=[dead_ldap_url, slapd.url])
    assert (await d.authenticate(CANARY.uid, CANARY.password)).key


async def test_blackhole_server_is_unavailable_within_timeout(
    build: Build, blackhole_ldap_url: str
) -> None:
    """A server that accepts TCP and never answers must not hang the login."""
    d = await build(urls=[blackhole_ldap_url], timeout_s=1)
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable) as info:
        await d.authenticate(CANARY.uid, CANARY.password)
    assert time.monotonic() - started < 2.0
    assert_clean(info.value)


async def test_blackhole_primary_fails_over_within_timeout(
    build: Build, slapd: Slapd, blackhole_ldap_url: str
) -> None:
    d = await build(urls=[blackhole_ldap_url, slapd.url], timeout_s=1)
    started = time.monotonic()
    assert (await d.authenticate(CANARY.uid, CANARY.password)).key
    assert time.monotonic() - started < 2.0


async def test_failed_server_is_skipped_while_resting(
    build: Build, slapd: Slapd, blackhole_ldap_url: str
) -> None:
    d = await build(urls=[blackhole_ldap_url, slapd.url], timeout_s=1, retry_after_s=60)
    await d.authenticate(CANARY.uid, CANARY.password)
    started = time.monotonic()
    await d.authenticate(WREN.uid, WREN.password)
    assert time.monotonic() - started < 0.5


async def test_directory_calls_do_not_block_the_event_loop(
    build: Build, blackhole_ldap_url: str
) -> None:
    """While a login waits on a silent server, other coroutines keep running."""
    d = await build(urls=[blackhole_ldap_url], timeout_s=1)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    with pytest.raises(DirectoryUnavailable):
        await d.authenticate(CANARY.uid, CANARY.password)
    ticker.cancel()
    assert ticks > 30


async def test_outage_logs_name_no_patron(
    build: Build, dead_ldap_url: str, blackhole_ldap_url: str
) -> None:
    d = await build(urls=[dead_ldap_url, blackhole_ldap_url], timeout_s=1)
    with structlog.testing.capture_logs() as logs, pytest.raises(DirectoryUnavailable):
        await d.authenticate(CANARY.uid, CANARY.password)
    assert logs, "server failures should be logged"
    assert leaks(repr(logs).encode()) == []


async def test_ping_succeeds_on_a_running_directory(build: Build) -> None:
    d = await build()
    await d.ping()


async def test_ping_raises_when_no_server_answers(build: Build, dead_ldap_url: str) -> None:
    d = await build(urls=[dead_ldap_url], timeout_s=1)
    with pytest.raises(DirectoryUnavailable):
        await d.ping()


async def test_closed_directory_is_unavailable(build: Build) -> None:
    d = await build()
    await d.close()
    with pytest.raises(DirectoryUnavailable):
        await d.authenticate(CANARY.uid, CANARY.password)


# --------------------------------------------------------------------------- TLS


async def test_ldaps_login_with_the_directory_ca(build: Build, slapd: Slapd) -> None:
    d = await build(urls=[slapd.ldaps_url], ca_file=str(slapd.ca_file))
    assert (await d.authenticate(CANARY.uid, CANARY.password)).key


async def test_ldaps_with_an_untrusted_certificate_is_unavailable(
    build: Build, slapd: Slapd
) -> None:
    d = await build(urls=[slapd.ldaps_url], ca_file=str(slapd.untrusted_ca_file), timeout_s=1)
    with pytest.raises(DirectoryUnavailable):
        await d.authenticate(CANARY.uid, CANARY.password)


async def test_start_tls_login_with_the_directory_ca(build: Build, slapd: Slapd) -> None:
    d = await build(urls=[slapd.url], start_tls=True, ca_file=str(slapd.ca_file), pool_size=1)
    first = await d.authenticate(CANARY.uid, CANARY.password)
    # Again over the kept (TLS) bind connection, with a wrong PIN in between.
    with pytest.raises(BadCredentials):
        await d.authenticate(CANARY.uid, "wrong-pin")
    assert (await d.authenticate(CANARY.uid, CANARY.password)).key == first.key


def test_start_tls_holds_on_connections_that_replace_dropped_ones(
    tmp_path: Path, slapd: Slapd
) -> None:
    """P2: a worker's kept connections (service and PIN binds) that dropped are replaced, never
    reopened by ldap3 without StartTLS; sign-ins go on working and every kept one is TLS."""
    config = load_config(
        write_config(tmp_path, slapd, [OPEN_VENDOR], start_tls=True, ca_file=str(slapd.ca_file))
    )
    worker = _Worker(_Settings(config.directory, _service_password(config), str(slapd.ca_file), ()))
    order = [slapd.url]
    assert worker.run("login", order, CANARY.uid, CANARY.password).status == "ok"
    kept = [*worker._services.values(), *worker._binders.values()]
    assert len(kept) == 2 and all(c.tls_started for c in kept)
    for conn in kept:
        conn.unbind()  # as when the server drops idle connections
    assert worker.run("login", order, CANARY.uid, WREN.password).status == "bad_credentials"
    assert worker.run("login", order, CANARY.uid, CANARY.password).status == "ok"
    again = [*worker._services.values(), *worker._binders.values()]
    assert len(again) == 2 and all(c.tls_started and not c.closed for c in again)
    assert not any(c in kept for c in again)


async def test_start_tls_with_an_untrusted_certificate_is_unavailable(
    build: Build, slapd: Slapd
) -> None:
    d = await build(
        urls=[slapd.url], start_tls=True, ca_file=str(slapd.untrusted_ca_file), timeout_s=1
    )
    with pytest.raises(DirectoryUnavailable):
        await d.authenticate(CANARY.uid, CANARY.password)


# ------------------------------------------------------ what the time of an answer tells


def _operations(worker: _Worker, order: list[str], card: str, pin: str) -> tuple[str, list[str]]:
    """The outcome of one sign-in and the directory operations it took, in order."""
    ops: list[str] = []
    search, bind_as = worker._search, worker._bind_as

    def counted_search(*a: Any, **k: Any) -> Any:
        ops.append("search")
        return search(*a, **k)

    def counted_bind(*a: Any, **k: Any) -> Any:
        ops.append("bind")
        return bind_as(*a, **k)

    worker._search, worker._bind_as = counted_search, counted_bind  # type: ignore[method-assign]
    try:
        outcome = worker.run("login", order, card, pin)
    finally:
        worker._search, worker._bind_as = search, bind_as  # type: ignore[method-assign]
    return outcome.status, ops


def test_every_card_costs_the_same_operations_until_the_pin_opens_it(
    tmp_path: Path, slapd: Slapd
) -> None:
    """With an eligible_filter: a wrong PIN on an eligible card, on an ineligible one and on no
    card at all take one search and one bind each, so the time of the refusal does not tell
    whether the card exists (or whether it is eligible). Eligibility is asked after the bind."""
    config = load_config(write_config(tmp_path, slapd, [OPEN_VENDOR]))
    assert config.directory.eligible_filter
    worker = _Worker(_Settings(config.directory, _service_password(config), None, ()))
    order = [slapd.url]
    worker.run("login", order, CANARY.uid, CANARY.password)  # the kept connections, opened
    refusals = {
        "eligible": _operations(worker, order, CANARY.uid, "wrong-pin"),
        "ineligible": _operations(worker, order, EXPIRED.uid, "wrong-pin"),
        "unknown": _operations(worker, order, "29999000999999", "wrong-pin"),
    }
    assert all(r == ("bad_credentials", ["search", "bind"]) for r in refusals.values()), refusals
    status, ops = _operations(worker, order, EXPIRED.uid, EXPIRED.password)
    assert status == "not_eligible" and ops[:2] == ["search", "bind"], ops


async def test_closing_the_directory_under_a_sign_in_starts_no_new_workers(
    build: Build, slapd: Slapd
) -> None:
    """A directory client closed while a sign-in waits on it (a reload's replaced client past its
    grace; shutdown) stops its workers, and the waiting sign-in is told the directory is
    unavailable. Taking the stopped pool for a crashed one and starting a fresh pool to retry
    on would leave worker processes behind that nothing ever stops: one more per reload with
    a slow sign-in, and a process that hangs at exit joining them."""
    import multiprocessing

    directory = await build(timeout_s=20)
    with pytest.raises(BadCredentials):  # the workers are up
        await directory.authenticate(CANARY.uid, "not-the-pin")
    before = {p.pid for p in multiprocessing.active_children()}
    pid = slapd._proc.pid if slapd._proc is not None else 0
    os.kill(pid, signal.SIGSTOP)
    try:
        waiting = asyncio.create_task(directory.authenticate(CANARY.uid, CANARY.password))
        await asyncio.sleep(0.5)  # the bind is with slapd, which does not answer
        assert not waiting.done()
        await directory.close()
        with pytest.raises(DirectoryUnavailable):
            await asyncio.wait_for(waiting, 20)
    finally:
        os.kill(pid, signal.SIGCONT)
    await asyncio.sleep(0.5)
    started = [p for p in multiprocessing.active_children() if p.pid not in before and p.is_alive()]
    assert started == [], f"a closed directory started workers: {started}"


async def test_a_sign_in_waiting_for_a_worker_when_the_directory_closes_is_no_error(
    build: Build, slapd: Slapd
) -> None:
    """Shutdown (or a replaced directory's end) while one sign-in holds the only worker and a
    second waits for it: both are told the directory is unavailable, and the log records no
    `ldap_unexpected_error` (an error line IT staff would chase) for what is an ordinary stop."""
    directory = await build(timeout_s=20, pool_size=1)
    with pytest.raises(BadCredentials):  # the worker is up
        await directory.authenticate(CANARY.uid, "not-the-pin")
    pid = slapd._proc.pid if slapd._proc is not None else 0
    os.kill(pid, signal.SIGSTOP)
    try:
        with structlog.testing.capture_logs() as logs:
            held = asyncio.create_task(directory.authenticate(CANARY.uid, CANARY.password))
            waiting = asyncio.create_task(directory.authenticate(WREN.uid, WREN.password))
            await asyncio.sleep(0.5)
            assert not held.done() and not waiting.done()
            await directory.close()
            for call in (held, waiting):
                with pytest.raises(DirectoryUnavailable):
                    await asyncio.wait_for(call, 20)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert [e for e in logs if e.get("log_level") == "error"] == []
