"""Sign-in input that LDAP prepares before comparing it: the throttle counts what the directory
compares, and a PIN the bind cannot carry is a wrong PIN, not a directory outage.

Real slapd, real proxy; the card numbers and PINs are the synthetic canaries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.canary import CANARY
from tests.harness import ProxyDriver, ldap_directory, vendor_toml, write_config

VENDOR_HOST = "www.vendor-one.test"
UNKNOWN_CARD = "29999000999999"
# Valid UTF-8 any browser can send, which SASLprep (RFC 4013) prohibits (replacement character,
# private use, a bidi mark, a byte-order mark), and a soft hyphen, which it maps to nothing.
ODD_PINS = ["\ufffd", "pin\ue000", "1234\u200e", "\ufeff", "\u00ad"]


async def _proxy(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    *,
    extra: str = "",
    trusted: bool = False,
) -> ProxyDriver:
    vendor = await vendor_factory(VENDOR_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        extra=extra,
    )
    if trusted:  # behind the library's balancer, as in test_throttle
        text = cfg.read_text().replace("[server]\n", '[server]\ntrusted_proxies = ["127.0.0.1"]\n')
        cfg.write_text(text)
    driver: ProxyDriver = await proxy_factory(cfg)
    return driver


def fullwidth(card: str, mask: int) -> str:
    """`card` with the digits whose bit is set in `mask` written as FULLWIDTH DIGITs."""
    return "".join(chr(0xFF10 + int(c)) if mask >> i & 1 else c for i, c in enumerate(card))


async def test_spellings_of_one_card_share_its_limit(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The directory takes a card number with fullwidth digits for the card itself (NFKC), so
    five wrong PINs under five such spellings use up the card's five tries."""
    driver = await _proxy(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    assert (await driver.login(fullwidth(CANARY.uid, 0b1), CANARY.password)).status == 303
    for mask in range(1, 6):
        assert (await driver.login(fullwidth(CANARY.uid, mask), "wrong-pin")).status == 401
    r = await driver.login(CANARY.uid, CANARY.password)
    assert r.status == 429, "the card's limit was spread over its spellings"


async def test_addresses_of_one_ipv6_block_share_the_address_limit(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """One client holds a whole /64; eight of its addresses meet a limit of three, while an
    address of another /64 still gets its own tries."""
    driver = await _proxy(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        extra="\n[throttle]\naddress_limit = 3\n",
        trusted=True,
    )

    async def attempt(i: int, address: str) -> int:
        csrf, _ = await driver.login_form()
        r = await driver.client.post(
            "/login",
            data={"username": f"2999900000010{i}", "password": "wrong", "url": "", "csrf": csrf},
            headers={"Host": driver.public, "X-Forwarded-For": address},
            allow_redirects=False,
        )
        return int(r.status)

    statuses = [await attempt(i, f"2001:db8:1:2::{i + 1:x}") for i in range(8)]
    assert statuses[:3] == [401, 401, 401] and set(statuses[3:]) == {429}, statuses
    assert await attempt(9, "2001:db8:1:3::1") == 401


@pytest.mark.parametrize("pin", ODD_PINS)
@pytest.mark.parametrize("card", [CANARY.uid, UNKNOWN_CARD])
async def test_a_pin_the_bind_cannot_carry_is_a_wrong_pin(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: Any,
    pin: str,
    card: str,
) -> None:
    """401 with the wrong-PIN page, counted by the throttle; not 503 with the directory
    marked down (one such request used to rest a healthy server for every patron)."""
    driver = await _proxy(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    r = await driver.login(card, pin)
    assert r.status == 401, f"PIN {pin!r} answered {r.status}"
    logs = log_stream.getvalue()
    assert "ldap_server_failed" not in logs and "bad_credentials" in logs, logs
