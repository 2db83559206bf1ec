"""What the directory's password policy warns of at a sign-in that succeeds: a PIN that expires
soon (`timeBeforeExpiration`, within the policy's pwdExpireWarning) and an expired PIN still let
in a few times (`graceAuthNsRemaining`). The patron is signed in and told once, on the menu, with
a link on to the page the sign-in was for; before this, such a patron was signed in silently and
found out only when the PIN stopped working.

Real slapd with the ppolicy overlay (tests/test_directory_realities.py builds it), the real
proxy, a recording vendor."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.ldap_policy import PASSWORD_POLICY_OID, PolicyAnswer, policy_answer
from proxy.web.messages import shown, until
from proxy.web.pages import NOTICE_COOKIE
from tests.canary import CANARY
from tests.fixtures_ldap import BASE_DN, Slapd
from tests.test_directory_realities import (
    POLICY,
    _patron,
    _policy,
    _pp_proxy_config,
    start_ppolicy_slapd,
)

pytestmark = [
    pytest.mark.ldap,
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]

WARN = f"cn=warn-policy,{BASE_DN}"
GRACE_TWO = f"cn=grace-two-policy,{BASE_DN}"
SOON = ("29999000880001", "Soon-PIN-1")
GRACE = ("29999000880002", "Grace-PIN-2")
GRACE_LAST = ("29999000880003", "Grace-PIN-3")
CONTACT = {"contact": "Call the desk at 203-555-0100."}
DAY = 86400


def _generalized(t: dt.datetime) -> str:
    return t.strftime("%Y%m%d%H%M%SZ")


@pytest.fixture(scope="module")
def warn_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    # A PIN changed 6.5 days ago under a 10-day maximum age that warns for its last 10 days:
    # slapd says it expires in about 3.5 days. Two expired PINs with one and no grace sign-in
    # left after this one (pwdGraceAuthNLimit 2; the last already used one, pwdGraceUseTime).
    changed = dt.datetime.now(dt.UTC) - dt.timedelta(days=6, hours=12)
    extra = [
        _policy(POLICY, "default-policy", []),
        _policy(WARN, "warn-policy", [f"pwdMaxAge: {10 * DAY}", f"pwdExpireWarning: {10 * DAY}"]),
        _policy(GRACE_TWO, "grace-two-policy", [f"pwdMaxAge: {DAY}", "pwdGraceAuthNLimit: 2"]),
        _patron(SOON, [f"pwdChangedTime: {_generalized(changed)}", f"pwdPolicySubentry: {WARN}"]),
        _patron(GRACE, ["pwdChangedTime: 20200101000000Z", f"pwdPolicySubentry: {GRACE_TWO}"]),
        _patron(
            GRACE_LAST,
            [
                "pwdChangedTime: 20200101000000Z",
                f"pwdPolicySubentry: {GRACE_TWO}",
                "pwdGraceUseTime: 20210101000000Z",
            ],
        ),
    ]
    server = start_ppolicy_slapd(tmp_path_factory.mktemp("warn-slapd"), extra)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def warned(
    tmp_path: Path, port: int, warn_slapd: Slapd, vendor_factory: Any, proxy_factory: Any
) -> Any:
    vendor = await vendor_factory("one.example.com")
    driver = await proxy_factory(_pp_proxy_config(tmp_path, port, warn_slapd, vendor))
    return driver, vendor


async def _menu(driver: Any, login: Any) -> tuple[Any, str]:
    """Follow a sign-in's 303 to the menu, with the cookies it set, as a browser would."""
    location = login.headers["Location"]
    path = location.split(driver.public, 1)[1]
    notice = login.cookies[NOTICE_COOKIE].value
    cookie = f"{driver.config.server.cookie_name}={driver.sid}; {NOTICE_COOKIE}={notice}"
    r = await driver.own("GET", path, headers={"Cookie": cookie})
    return r, html.unescape(await r.text())


def test_time_before_expiration_is_read_from_the_ber_value() -> None:
    """warning [0] { timeBeforeExpiration [0] 259200 } and the grace count beside it."""
    soon = b"\x30\x07\xa0\x05\x80\x03\x03\xf4\x80"
    answer = policy_answer({"controls": {PASSWORD_POLICY_OID: {"value": soon}}})
    assert answer == PolicyAnswer(expires_in_s=259200)
    grace = b"\x30\x05\xa0\x03\x81\x01\x01"
    assert policy_answer({"controls": {PASSWORD_POLICY_OID: {"value": grace}}}) == PolicyAnswer(
        grace_left=1
    )


def test_the_time_left_is_said_rounded_down() -> None:
    """Never more time than is left: a patron told "3 days" with 2.9 left would be caught out."""
    assert until(3.5 * DAY) == "3 days"
    assert until(2 * DAY - 1) == "1 day"
    assert until(DAY) == "1 day"
    assert until(5 * 3600 + 59) == "5 hours"
    assert until(3599) == "less than an hour"
    assert until(-5) == "less than an hour"


async def test_a_pin_that_expires_soon_is_told_on_the_way_in(warned: Any) -> None:
    """The patron is signed in (303 with the session cookie), sent to the menu, which says how
    long the PIN has and what to do, with a link on to the database page the sign-in was for
    (the starting point a plain sign-in goes to). Said once: the menu deletes the notice."""
    driver, vendor = warned
    start = "http://one.example.com/results?q=whales"
    plain = await driver.login(*SOON[:1], "not-the-pin", url=start)
    assert plain.status == 401
    r = await driver.login(*SOON, url=start)
    assert r.status == 303
    assert driver.sid
    assert "/menu?url=" in r.headers["Location"]
    menu, page = await _menu(driver, r)
    assert menu.status == 200
    said = shown("pin_expiring", {"expires_in_s": 3.5 * DAY, **CONTACT})
    assert said.title == "Your PIN expires soon"
    assert "about 3 days" in said.text and said.text in page
    assert said.action in page and CONTACT["contact"] in page
    links = re.findall(r'<a href="([^"]+)">Continue to the page you asked for</a>', page)
    assert links == [f"http://{driver.mapped('one.example.com')}/results?q=whales"]
    # Said once.
    deleted = [c for c in menu.headers.getall("Set-Cookie", []) if c.startswith(NOTICE_COOKIE)]
    assert len(deleted) == 1 and "Max-Age=0" in deleted[0], deleted
    # The vendor heard nothing of it (nothing at all yet: the patron has not gone on).
    assert vendor.requests == []


async def test_grace_sign_ins_left_and_the_last_one_are_told(warned: Any) -> None:
    """An expired PIN the policy still lets in: the menu says how many sign-ins are left, and
    on the last one that the next will not work. Without a starting point, no link on."""
    driver, _ = warned
    r = await driver.login(*GRACE)
    assert r.status == 303 and driver.sid
    _, page = await _menu(driver, r)
    said = shown("pin_grace", {"grace_left": 1, **CONTACT})
    assert "sign in 1 more time;" in said.text and said.text in page
    assert "Continue to the page you asked for" not in page
    r = await driver.login(*GRACE_LAST)
    assert r.status == 303 and driver.sid
    _, page = await _menu(driver, r)
    assert shown("pin_grace_last", CONTACT).text in page


async def test_a_notice_cookie_a_page_wrote_says_nothing(warned: Any) -> None:
    """Vendor pages are on the proxy's subdomains and their scripts can write a cookie for the
    menu's path: a notice must carry a tag keyed by the session, which they cannot read. A
    plain patron's menu given another session's notice, or a made-up one, says nothing of a
    PIN."""
    driver, _ = warned
    r = await driver.login(*SOON)
    theirs = r.cookies[NOTICE_COOKIE].value
    assert theirs.startswith("pin_expiring:")
    other = await driver.login(CANARY.uid, CANARY.password)
    assert other.status == 303 and NOTICE_COOKIE not in other.cookies
    name = driver.config.server.cookie_name
    for forged in (theirs, "pin_grace:0", "pin_grace:0:" + "0" * 24, "pin_expiring:x:y"):
        menu = await driver.own(
            "GET", "/menu", headers={"Cookie": f"{name}={driver.sid}; {NOTICE_COOKIE}={forged}"}
        )
        page = html.unescape(await menu.text())
        assert menu.status == 200
        assert "Your PIN" not in page, forged
