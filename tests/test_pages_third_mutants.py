"""From a further mutation sweep (2 December 2026) of the patron pages (proxy/web/pages.py,
proxy/web/messages.py, proxy/web/branding.py): each test kills one mutant that the rest of the
suite let through (20 mutants tried, 12 survived the narrow run; each test here failed with
its mutant and passes without).
Its docstring names the mutant and the behaviour it proves. Synthetic canary patrons only.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.canary import CANARY
from tests.harness import one_vendor_proxy

HOST = "www.vendor-one.test"


async def test_a_card_number_typed_in_its_printed_groups_signs_in(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/web/pages.py:login_submit — `"".join(str(form.get("username", "")).split())`
    → `str(form.get("username", ""))`.

    Cards print the number in groups ("2 9999 00042 4242"): a patron who types the spaces with
    it, or pastes it with a trailing space, is signed in as with the bare number, not told the
    card number or PIN is wrong."""
    driver, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, HOST
    )
    u = CANARY.uid
    spaced = f" {u[0]} {u[1:5]} {u[5:10]} {u[10:]} "
    r = await driver.login(spaced, CANARY.password)
    assert r.status == 303, r.status
    assert driver.config.server.cookie_name in r.cookies


def test_a_pin_notice_with_a_ten_digit_number_is_not_shown() -> None:
    """kills: proxy/web/pages.py:_pin_message — `len(number) > 9` → `len(number) > 10`.

    The menu's PIN notice reads its number from a cookie; a number of more than nine digits
    (over 31 years in seconds) is no warning the directory meant, and the menu says nothing
    rather than "your PIN expires in about 115740 days", even with a valid tag."""
    from proxy.web.pages import _pin_message, _pin_tag

    session: Any = SimpleNamespace(id="synthetic-session-id-for-a-test")
    for number in ("999999999", "1000000000"):
        value = f"pin_expiring:{number}"
        said = _pin_message(f"{value}:{_pin_tag(session.id, value)}", session, "the desk")
        assert (said is not None) is (len(number) <= 9), number


# Checked and found fine (no test kept): none proved equivalent in this sweep's 30 minutes.
# Survived the narrow run only, not rerun against the wider suite, no test yet (see the report):
# pages.py renew_sign_in_token `if request.get(SIGN_IN_POST)` → `if True`; _sign_in
# `request[RENEW_TOKEN] = True` (directory unavailable) removed; logout `foreign and ids` →
# `foreign`; menu `not library_ok or` dropped; _time_left `min(idle_left, life_left)` → `max`;
# session_time POST `touch(..., min_interval_s=0)` removed; _login_page Referrer-Policy
# `same-origin` → `no-referrer`; messages.py duration `s >= 3600 and` dropped; branding.py
# `extensions=("html", "txt", "xml")` → `("html",)`, `exc.filename or name` → `name`.
