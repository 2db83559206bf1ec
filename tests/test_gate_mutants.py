"""From a mutation sweep of the sign-in gate, the file directory, the compliance checks and the
usage limits: behaviours that could break without any other test noticing (12 of 47 mutants
survived the suite; each test here failed with its mutant and passes without). Each test names
the mutant it kills. Synthetic cards and PINs only; no network."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import argon2
import pytest

from proxy.auth import FileDirectory, hash_password
from proxy.errors import BadCredentials, NotEligible

SECRET = b"mutstats-review-secret-32-bytes!"


def _file_directory(tmp_path: Path, entries: str) -> FileDirectory:
    path = tmp_path / "patrons.toml"
    path.write_text(entries, encoding="utf-8")
    return FileDirectory(path, secret=SECRET, vendors=(), workers=1)


def _entry(card: str, pin_hash: str, extra: str = "") -> str:
    return f'[[patron]]\ncard = "{card}"\nhash = "{pin_hash}"\n{extra}\n'


async def test_blocked_card_in_patrons_file_is_not_eligible(tmp_path: Path) -> None:
    """kills: proxy/auth.py:FileDirectory.authenticate — `if entry.blocked or (...)` → `if (...)`.
    A card the library blocked (lost, stolen, barred) is turned away with the not-eligible page
    even with the right PIN; an unblocked card with the same PIN signs in."""
    h = hash_password("4321")
    d = _file_directory(
        tmp_path,
        _entry("29990000000011", h, "blocked = true") + _entry("29990000000012", h),
    )
    try:
        with pytest.raises(NotEligible):
            await d.authenticate("29990000000011", "4321")
        assert (await d.authenticate("29990000000012", "4321")).key
    finally:
        await d.close()


async def test_card_expiring_today_still_signs_in_and_yesterday_does_not(tmp_path: Path) -> None:
    """kills: proxy/auth.py:FileDirectory.authenticate — `entry.expires < today` →
    `entry.expires <= today`. A card's `expires` date is its last good day: the patron can
    still sign in on it, and is turned away (not eligible) from the day after."""
    h = hash_password("4321")
    today = dt.date.today()
    d = _file_directory(
        tmp_path,
        _entry("29990000000021", h, f"expires = {today.isoformat()}")
        + _entry("29990000000022", h, f"expires = {(today - dt.timedelta(days=1)).isoformat()}"),
    )
    try:
        assert (await d.authenticate("29990000000021", "4321")).key
        with pytest.raises(NotEligible):
            await d.authenticate("29990000000022", "4321")
    finally:
        await d.close()


async def test_pin_hashed_before_saslprep_still_verifies(tmp_path: Path) -> None:
    """kills: proxy/auth.py:FileDirectory._verify — `return prepared != password and
    self._verify_one(hashed, password)` → `return False`. A patrons file whose hash was made from
    the PIN as typed (before PINs were SASLprep-prepared; here with a no-break space, which
    SASLprep maps to a space) keeps signing its patron in: no locked-out staff accounts after an
    upgrade. A wrong PIN against that hash is still refused."""
    raw = "12\u00a034"
    d = _file_directory(tmp_path, _entry("29990000000031", argon2.PasswordHasher().hash(raw)))
    try:
        assert (await d.authenticate("29990000000031", raw)).key
        with pytest.raises(BadCredentials):
            await d.authenticate("29990000000031", "12 35")
    finally:
        await d.close()


@pytest.mark.parametrize("field", ["username", "password"])
async def test_delete_character_in_card_or_pin_never_reaches_the_directory(
    tmp_path: Path, field: str
) -> None:
    """kills: proxy/auth.py:check_credentials_shape — `ord(c) < 32 or ord(c) == 127` →
    `ord(c) < 32`. A card number or PIN carrying DEL (U+007F, a control character an LDAP
    filter or log must never see) is refused as a wrong card or PIN, like other controls."""
    # The file holds exactly that card and PIN (TOML's \\u007F escape), so only the shape check
    # stands between the DEL and a successful sign-in.
    if field == "username":
        d = _file_directory(tmp_path, _entry("2999\\u007F0041", hash_password("4321")))
        user, pin = "2999\x7f0041", "4321"
    else:
        d = _file_directory(tmp_path, _entry("29990000000041", hash_password("43\x7f21")))
        user, pin = "29990000000041", "43\x7f21"
    try:
        with pytest.raises(BadCredentials):
            await d.authenticate(user, pin)
    finally:
        await d.close()


# --------------------------------------------------------------------------- compliance boundaries

TODAY = dt.date(2026, 6, 15)


def _contract_checks(**contract: object) -> dict[str, tuple[str, str]]:
    from proxy.compliance import check_contract
    from proxy.compliance_settings import ComplianceSettings
    from proxy.config import Contract, VendorConfig

    base: dict[str, object] = {
        "privacy_policy_url": "https://v.example/privacy",
        "reviewed": TODAY - dt.timedelta(days=30),
        "expires": TODAY + dt.timedelta(days=365),
        "retention_days": 30,
    }
    base.update(contract)
    extra = {k: base.pop(k) for k in ("auth", "release") if k in base}
    v = VendorConfig(
        id="v",
        title="V",
        origin="https://v.example",
        hosts=("v.example",),
        contract=Contract(**base),  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )
    return {c.id: (c.severity, c.result) for c in check_contract(v, ComplianceSettings(), TODAY)}


def test_contract_ending_today_is_still_current_and_expired_the_day_after() -> None:
    """kills: proxy/compliance.py:check_contract — `c.expires < today` → `c.expires <= today`.
    On a contract's last day privacy staff see it as current (critical check passes, the
    expiry warning fails); from the next day it is a critical failure."""
    from proxy.compliance_model import FAIL, PASS

    on_day = _contract_checks(expires=TODAY)
    assert on_day["contract.expired"][1] == PASS
    assert on_day["contract.expiring"][1] == FAIL
    assert _contract_checks(expires=TODAY - dt.timedelta(days=1))["contract.expired"][1] == FAIL


def test_expiry_warning_starts_exactly_warn_days_before() -> None:
    """kills: proxy/compliance.py:check_contract — `left <= warn_days_before_expiry` → `<`.
    A contract ending exactly 60 days from today (the default warning period) is flagged so
    staff start the renewal review; 61 days out it is not."""
    from proxy.compliance_model import FAIL, PASS, WARNING

    assert _contract_checks(expires=TODAY + dt.timedelta(days=60))["contract.expiring"] == (
        WARNING,
        FAIL,
    )
    assert _contract_checks(expires=TODAY + dt.timedelta(days=61))["contract.expiring"][1] == PASS


def test_review_exactly_max_months_ago_is_overdue() -> None:
    """kills: proxy/compliance.py:check_contract — `months >= max_months_since_review` → `>`.
    A contract last reviewed exactly 12 months ago (the default maximum) is overdue; 11 months
    ago it is not."""
    from proxy.compliance_model import FAIL, PASS

    assert _contract_checks(reviewed=dt.date(2025, 6, 15))["contract.review_overdue"][1] == FAIL
    assert _contract_checks(reviewed=dt.date(2025, 7, 15))["contract.review_overdue"][1] == PASS


def test_retention_and_breach_notice_at_the_library_maximum_pass() -> None:
    """kills: proxy/compliance.py:check_contract — `retention_days > max_retention_days` → `>=`,
    and proxy/compliance.py:_clause_checks — `value > max_breach_notice_days` → `>=`. A vendor
    keeping usage data exactly the library's maximum (90 days) or promising breach notice in
    exactly the maximum (30 days) complies; one day more is a critical failure."""
    from proxy.compliance_model import CRITICAL, FAIL, PASS

    at_max = _contract_checks(retention_days=90, breach_notice_days=30)
    assert at_max["contract.retention"] == (CRITICAL, PASS)
    assert at_max["clause.breach_notice_days"] == (CRITICAL, PASS)
    over = _contract_checks(retention_days=91, breach_notice_days=31)
    assert over["contract.retention"] == (CRITICAL, FAIL)
    assert over["clause.breach_notice_days"] == (CRITICAL, FAIL)


def test_plain_http_privacy_policy_url_is_flagged() -> None:
    """kills: proxy/compliance.py:check_contract — `policy.scheme == "https" and
    bool(policy.hostname)` → `bool(policy.hostname)`. A privacy policy on file only at an
    http:// address (which anyone on the path can alter) is a warning-level failure."""
    from proxy.compliance_model import FAIL, PASS, WARNING

    checks = _contract_checks(privacy_policy_url="http://v.example/privacy")
    assert checks["contract.privacy_policy"] == (WARNING, FAIL)
    assert _contract_checks()["contract.privacy_policy"][1] == PASS


def test_pseudonymous_release_without_assertion_auth_fails() -> None:
    """kills: proxy/compliance.py:_release_check — `v.auth == "assertion" and
    v.releases_pseudonym(today)` → `v.releases_pseudonym(today)`. A vendor set to release a
    pseudonymous id whose auth is not the signed assertion (here `ip`) is a critical failure,
    even when the contract permits pseudonyms; with `auth = "assertion"` it passes."""
    from proxy.compliance_model import CRITICAL, FAIL, PASS

    ip = _contract_checks(auth="ip", release="pseudonymous", permits_pseudonymous_id=True)
    assert ip["release.permitted"] == (CRITICAL, FAIL)
    ok = _contract_checks(auth="assertion", release="pseudonymous", permits_pseudonymous_id=True)
    assert ok["release.permitted"] == (CRITICAL, PASS)


# --------------------------------------------------------------------------- usage limits


async def test_bytes_per_hour_suspends_when_the_sent_bytes_reach_the_limit() -> None:
    """kills: proxy/usage_limits.py:UsageLimits._account — `incr(...) >= BYTE_UNITS` →
    `> BYTE_UNITS`. A session that has been sent exactly `bytes_per_hour` (BYTE_UNITS units)
    at a vendor this hour is suspended, as `downloads_per_hour` suspends at its limit; one
    unit less is not. Unit-level: a counting store standing in for Redis."""
    import types

    from proxy.usage_limits import BYTE_UNITS, Tracked, UsageLimits

    counts: dict[str, int] = {}

    class Store:
        async def incr(self, name: str, ttl: float, by: int = 1) -> int:
            counts[name] = counts.get(name, 0) + by
            return counts[name]

    suspended: list[tuple[str, str]] = []
    limits = UsageLimits.__new__(UsageLimits)
    limits.svc = types.SimpleNamespace(sessions=types.SimpleNamespace(store=Store()))  # type: ignore[assignment]

    async def suspend(session: object, vendor_id: str, reason: str) -> None:
        suspended.append((vendor_id, reason))

    limits.suspend = suspend  # type: ignore[method-assign]
    session = types.SimpleNamespace(id="s", suspended=False)
    tracked = Tracked(session=session, vendor_id="v", counter="usage:test")  # type: ignore[arg-type]
    await limits._account(tracked, BYTE_UNITS - 1, None)
    assert suspended == []
    await limits._account(tracked, 1, None)
    assert [v for v, _ in suspended] == ["v"]
