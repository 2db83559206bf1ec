"""Patron sign-in against the LDAP directory under strain (proxy/ldap_directory.py, the sign-in
page): a burst while one server hangs goes to the healthy one, a kept bind connection holds no
PIN or DN, a reissued card signs in as its eligible entry, a paused directory is a 503 with no
session. (From a review: the first part's tests failed before their fixes.)
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.config import load_config
from proxy.ldap_directory import _service_password, _Settings, _Worker
from tests.canary import CANARY, leaks
from tests.fixtures_ldap import (
    PATRONS_BASE,
    Slapd,
    generic_password,
    generic_uid,
    render_patrons_ldif,
    ssha,
    start_slapd,
)
from tests.harness import one_vendor_proxy
from tests.test_ldap_directory import OPEN_VENDOR, Build, write_config
from tests.test_ldap_directory import build as build

pytestmark = [
    pytest.mark.ldap,
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]

# A card number held by two entries (an old, expired one and the current one), and a card number
# held by two expired entries: what a library's directory holds after a card is reissued.
DUP_CARD, DUP_PIN = "29999000880001", "Dup-PIN-5120"
DUP_EXPIRED_CARD = "29999000880002"


def _entry(rdn: str, uid: str, pin: str, *, expired: bool) -> str:
    lines = [
        f"dn: {rdn},{PATRONS_BASE}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        "cn: Synthetic Duplicate",
        "sn: Duplicate",
        "employeeType: resident",
        *(["description: expired"] if expired else []),
        f"userPassword: {ssha(pin, rdn)}",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def dup_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A slapd of its own: the seed patrons plus cards that two entries share."""
    root = tmp_path_factory.mktemp("dup-slapd")
    extra = [
        _entry(f"uid={DUP_CARD}", DUP_CARD, DUP_PIN, expired=False),
        _entry("cn=reissued card 1", DUP_CARD, "Old-PIN-1", expired=True),
        _entry(f"uid={DUP_EXPIRED_CARD}", DUP_EXPIRED_CARD, "Exp-PIN-2", expired=True),
        _entry("cn=reissued card 2", DUP_EXPIRED_CARD, "Old-PIN-2", expired=True),
    ]
    ldif = root / "patrons.ldif"
    ldif.write_text(render_patrons_ldif() + "\n" + "\n".join(extra))
    (root / "data").mkdir()
    server = start_slapd(root / "data", ldif)
    try:
        yield server
    finally:
        server.stop()


# =========================================================================== fixed


async def test_a_burst_larger_than_the_pool_fails_over_to_the_healthy_second_server(
    build: Build, slapd: Slapd, blackhole_ldap_url: str
) -> None:
    """P7: the first server hangs (accepts TCP, never answers), the second is healthy. Ten
    patrons sign in at once with two workers: every one of them signs in on the second server.

    Now the server order is fixed when a call is queued, not when a worker takes it: calls that
    waited behind the first two still try the hung server first although the breaker has
    learnt it is down, and their callers' time runs out - "sign-in is unavailable" (503) for
    eight patrons while a healthy directory server answers in milliseconds."""
    d = await build(urls=[blackhole_ldap_url, slapd.url], pool_size=2, timeout_s=1)
    results = await asyncio.gather(
        *(d.authenticate(generic_uid(i), generic_password(i)) for i in range(10)),
        return_exceptions=True,
    )
    outcomes = [type(r).__name__ for r in results]
    assert outcomes == ["Patron"] * 10, outcomes


def test_a_kept_bind_connection_holds_no_pin_after_the_sign_in(
    tmp_path: Path, slapd: Slapd
) -> None:
    """P2 inside a worker: once a sign-in has answered, the connection the worker keeps for the
    next PIN bind holds neither the PIN nor the DN it was tried on, in any attribute
    (`_bind_as` says "the PIN does not stay in the kept connection").

    Now only `conn.password` is cleared: ldap3 keeps the decoded bind request in `conn.request`
    ({'name': <DN>, 'authentication': {'simple': <PIN>}}), so an idle worker holds the last
    patron's PIN and DN in memory until the next sign-in, however long that is."""
    config = load_config(write_config(tmp_path, slapd, [OPEN_VENDOR]))
    worker = _Worker(_Settings(config.directory, _service_password(config), None, ()))
    order = [slapd.url]
    assert worker.run("login", order, CANARY.uid, CANARY.password).status == "ok"
    (conn,) = worker._binders.values()
    assert conn.password is None  # what is cleared now
    held = repr(vars(conn)) + repr(vars(conn.strategy))
    assert CANARY.password not in held, conn.request
    assert CANARY.uid not in held, conn.request


# =========================================================================== held


def test_verified_a_reissued_card_signs_in_as_its_one_eligible_entry(
    tmp_path: Path, dup_slapd: Slapd
) -> None:
    """Two entries for one card, one of them expired: the current entry's PIN signs in, the old
    entry's PIN opens nothing (never a session on the expired entry)."""
    config = load_config(write_config(tmp_path, dup_slapd, [OPEN_VENDOR]))
    worker = _Worker(_Settings(config.directory, _service_password(config), None, ()))
    order = [dup_slapd.url]
    assert worker.run("login", order, DUP_CARD, DUP_PIN).status == "ok"
    assert worker.run("login", order, DUP_CARD, "Old-PIN-1").status == "bad_credentials"


async def test_verified_directory_paused_mid_sign_in_is_503_with_no_session(
    tmp_path: Path,
    port: int,
    slapd: Slapd,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
) -> None:
    """P7/P2: slapd stopped with SIGSTOP (kept connections hang mid-request): the sign-in page
    says "unavailable" with 503 and Retry-After, not "wrong PIN"; no session cookie is set; the
    page and the logs hold no PIN; and once slapd runs again the same sign-in works."""
    driver, _ = await one_vendor_proxy(
        tmp_path, port, slapd, vendor_factory, proxy_factory, "www.review-ldap.test"
    )
    first = await driver.login(CANARY.uid, CANARY.password)  # workers hold their connections
    assert first.status == 303
    driver.sid = None
    assert slapd._proc is not None
    pid = slapd._proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        r = await driver.login(CANARY.uid, CANARY.password)
        body = await r.read()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.status == 503
    assert r.headers.get("Retry-After") == "60"
    assert driver.config.server.cookie_name not in r.cookies
    assert b"not a problem with your card" in body
    assert CANARY.password.encode() not in body
    logs = log_stream.getvalue().encode()
    assert CANARY.password.encode() not in logs
    assert CANARY.password.encode() not in base64.b64encode(logs)
    assert leaks(logs) == []
    again = await driver.login(CANARY.uid, CANARY.password)
    assert again.status == 303
