"""Login throttling: per card and per address, shared through the store, never naming either."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from proxy.client_ip import client_address, parse_networks
from proxy.config import load_config
from proxy.errors import ConfigError
from proxy.throttle import check_throttle, counter_name, day_key, normal_card
from tests.canary import CANARY, EXPIRED, WREN, leaks
from tests.harness import ProxyDriver, free_port, ldap_directory, vendor_toml, write_config

VENDOR_HOST = "www.vendor-one.test"
UNKNOWN_CARD = "29999000999999"


def _config(
    root: Path,
    port: int,
    slapd: Any,
    vendor: Any,
    *,
    throttle: str = "",
    session: str = 'store = "memory"',
    trusted: str = "",
) -> Path:
    cfg = write_config(
        root,
        port=port,
        directory=ldap_directory(slapd, root),
        vendors={"one": vendor_toml("one", vendor)},
        session=session,
        extra=throttle,
    )
    if trusted:
        cfg.write_text(cfg.read_text().replace("[server]\n", f"[server]\n{trusted}\n", 1))
    return cfg


@pytest.fixture
async def proxy(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> ProxyDriver:
    vendor = await vendor_factory(VENDOR_HOST)
    driver: ProxyDriver = await proxy_factory(_config(tmp_path, port, running_slapd, vendor))
    return driver


@pytest.fixture
def address_limited(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> Callable[..., Awaitable[ProxyDriver]]:
    """Start a proxy that allows 3 failed logins per address; `trusted` adds trusted proxies."""

    async def start(trusted: str = "") -> ProxyDriver:
        vendor = await vendor_factory(VENDOR_HOST)
        cfg = _config(
            tmp_path,
            port,
            running_slapd,
            vendor,
            throttle="\n[throttle]\naddress_limit = 3\n",
            trusted=trusted,
        )
        driver: ProxyDriver = await proxy_factory(cfg)
        return driver

    return start


async def _fail(driver: ProxyDriver, card: str, n: int, **kw: Any) -> list[int]:
    statuses = []
    for _ in range(n):
        r = await driver.login(card, "wrong-pin", **kw)
        statuses.append(r.status)
    return statuses


# --------------------------------------------------------------------------- client address


TRUSTED = parse_networks(["10.0.0.0/8", "127.0.0.1"])


@pytest.mark.parametrize(
    ("remote", "xff", "expected"),
    [
        ("198.51.100.7", ["203.0.113.1"], "198.51.100.7"),  # untrusted peer: header ignored
        ("127.0.0.1", ["203.0.113.1"], "203.0.113.1"),
        ("127.0.0.1", ["6.6.6.6, 203.0.113.1"], "203.0.113.1"),  # left hops are the client's
        ("127.0.0.1", ["6.6.6.6, 203.0.113.1, 10.1.2.3"], "203.0.113.1"),  # skip trusted hops
        ("127.0.0.1", ["6.6.6.6", "203.0.113.1"], "203.0.113.1"),  # several header lines
        ("127.0.0.1", ["garbage, 10.1.2.3"], "10.1.2.3"),  # chain broken: last good trusted hop
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("127.0.0.1", ["203.0.113.9:5678"], "203.0.113.9"),
        ("::ffff:127.0.0.1", ["203.0.113.1"], "203.0.113.1"),  # v4-mapped peer is the v4 peer
    ],
)
def test_client_address_believes_only_trusted_proxies(
    remote: str, xff: list[str], expected: str
) -> None:
    assert client_address(remote, xff, TRUSTED) == expected


def test_client_address_without_trusted_proxies_is_the_peer() -> None:
    assert client_address("127.0.0.1", ["203.0.113.1"], ()) == "127.0.0.1"


# --------------------------------------------------------------------------- counter names


def test_counter_names_never_contain_the_value_and_change_daily() -> None:
    """The store sees an HMAC under a per-day key: not the card, not a plain hash of it."""
    secret = b"s" * 32
    today = day_key(secret, dt.date(2026, 11, 29))
    tomorrow = day_key(secret, dt.date(2026, 11, 30))
    a = counter_name(today, "card", CANARY.uid)
    assert leaks(a.encode()) == []
    assert counter_name(tomorrow, "card", CANARY.uid) != a
    assert counter_name(today, "card", WREN.uid) != a
    assert counter_name(today, "addr", CANARY.uid) != a  # kinds never collide


def test_card_spellings_share_one_counter() -> None:
    """The directory compares uid case- and space-insensitively, so must the throttle."""
    assert normal_card(f"  {CANARY.uid} ") == normal_card(CANARY.uid)
    assert normal_card("AbC  d") == normal_card("abc d")


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("card_limit = 0", "throttle.card_limit"),
        ("address_limit = -1", "throttle.address_limit"),
        ("card_window_s = 7", "throttle.card_window_s"),
        ("address_window_s = 1000", "throttle.address_window_s"),  # does not divide a day
        ("card_limt = 5", "throttle.card_limt"),
        ('card_limit = "5"', "throttle.card_limit"),
        ("[throttle.http]\nmax_headers = 2", "throttle.http.max_headers"),
        ("[throttle.http]\nheader_timeout_s = 0", "throttle.http.header_timeout_s"),
    ],
)
def test_check_config_reports_bad_throttle_values(
    tmp_path: Path, table: str, key: str, running_slapd: Any
) -> None:
    cfg = write_config(
        tmp_path,
        port=free_port(),
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={},
        extra=f"\n[throttle]\n{table}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg, extra_checks=(check_throttle,))
    assert [p.key for p in err.value.problems] == [key]


def test_check_config_reports_a_bad_trusted_proxy(tmp_path: Path, running_slapd: Any) -> None:
    cfg = write_config(
        tmp_path,
        port=free_port(),
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={},
    )
    cfg.write_text(cfg.read_text().replace("[server]\n", '[server]\ntrusted_proxies = ["lb"]\n'))
    with pytest.raises(ConfigError) as err:
        load_config(cfg, extra_checks=(check_throttle,))
    assert [p.key for p in err.value.problems] == ["server.trusted_proxies"]


# --------------------------------------------------------------------------- end to end


async def test_sixth_attempt_on_a_card_is_refused_with_retry_after(proxy: ProxyDriver) -> None:
    """Five wrong PINs, then even the right PIN gets 429 with Retry-After; no session."""
    assert await _fail(proxy, CANARY.uid, 5) == [401] * 5
    r = await proxy.login(CANARY.uid, CANARY.password)
    assert r.status == 429
    retry = int(r.headers["Retry-After"])
    assert 0 < retry <= 900
    html = (await r.text()).replace("&#39;", "'")
    assert "Too many sign-in attempts" in html
    # "in 1 minute" in a window's last minute (windows keep clock time), "in N minutes" before.
    assert re.search(r"in \d+ minutes?\b", html), html
    assert proxy.config.server.cookie_name not in r.cookies


async def test_throttled_page_is_the_same_for_existing_and_unknown_cards(
    proxy: ProxyDriver,
) -> None:
    """Nothing in the refusal tells whether the card exists."""
    await _fail(proxy, CANARY.uid, 5)
    await _fail(proxy, UNKNOWN_CARD, 5)
    a = await proxy.login(CANARY.uid, "wrong-pin")
    b = await proxy.login(UNKNOWN_CARD, "wrong-pin")
    assert a.status == b.status == 429
    assert await a.text() == await b.text()
    assert (
        a.headers["Retry-After"] == b.headers["Retry-After"]
        or abs(int(a.headers["Retry-After"]) - int(b.headers["Retry-After"])) <= 1
    )


async def test_other_cards_are_not_throttled_by_one_card(proxy: ProxyDriver) -> None:
    await _fail(proxy, CANARY.uid, 5)
    r = await proxy.login(WREN.uid, WREN.password)
    assert r.status == 303


async def test_card_spelling_variants_share_the_limit(proxy: ProxyDriver) -> None:
    """Case and padding do not buy extra guesses."""
    for card in (CANARY.uid, f" {CANARY.uid}", f"{CANARY.uid} ", CANARY.uid.upper(), CANARY.uid):
        await proxy.login(card, "wrong-pin")
    r = await proxy.login(CANARY.uid, CANARY.password)
    assert r.status == 429


async def test_successful_logins_are_not_counted(proxy: ProxyDriver) -> None:
    for _ in range(7):
        r = await proxy.login(CANARY.uid, CANARY.password)
        assert r.status == 303


async def test_ineligible_card_attempts_are_not_counted(proxy: ProxyDriver) -> None:
    """A right PIN on an expired card is not a guess."""
    for _ in range(7):
        r = await proxy.login(EXPIRED.uid, EXPIRED.password)
        assert r.status == 403


async def test_directory_outage_is_not_counted(proxy: ProxyDriver, running_slapd: Any) -> None:
    """Attempts during an outage get 503 and do not use up the patron's tries."""
    running_slapd.stop()
    try:
        for _ in range(7):
            r = await proxy.login(CANARY.uid, "wrong-pin")
            assert r.status == 503
    finally:
        running_slapd.start()
    r = await proxy.login(CANARY.uid, CANARY.password)
    assert r.status == 303


async def test_address_limit_spans_cards(address_limited: Any) -> None:
    """Credential stuffing with many cards from one address hits the address limit."""
    driver = await address_limited()
    for i in range(3):
        assert (await driver.login(f"2999900000000{i}", "wrong-pin")).status == 401
    r = await driver.login(WREN.uid, WREN.password)
    assert r.status == 429


async def test_spoofed_forwarded_for_does_not_evade_the_address_limit(
    address_limited: Any,
) -> None:
    """Without trusted proxies, X-Forwarded-For is the client's own invention and is ignored."""
    driver = await address_limited()
    for i in range(3):
        await _stuff(driver, f"2999900000000{i}", f"203.0.113.{i}")
    assert (await _stuff(driver, WREN.uid, "203.0.113.99", WREN.password)) == 429


async def test_behind_a_trusted_balancer_addresses_are_told_apart(address_limited: Any) -> None:
    """With the balancer trusted, one address's failures do not lock out another's patrons."""
    driver = await address_limited(trusted='trusted_proxies = ["127.0.0.1"]')
    for i in range(3):
        assert await _stuff(driver, f"2999900000000{i}", "203.0.113.1") == 401
    assert await _stuff(driver, WREN.uid, "203.0.113.1", WREN.password) == 429
    assert await _stuff(driver, WREN.uid, "198.51.100.2", WREN.password) == 303


async def _stuff(driver: ProxyDriver, card: str, xff: str, pin: str = "wrong-pin") -> int:
    """One login attempt claiming to come from `xff`; returns the status."""
    csrf, _ = await driver.login_form()
    r = await driver.client.post(
        "/login",
        data={"username": card, "password": pin, "url": "", "csrf": csrf},
        headers={"Host": driver.public, "X-Forwarded-For": xff},
        allow_redirects=False,
    )
    return int(r.status)


async def test_two_instances_sharing_redis_enforce_one_limit_and_store_no_names(
    tmp_path: Path,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    redis_url: str,
    redis_server: Any,
) -> None:
    """Failures on instance A count on instance B; Redis holds no card number and no address."""
    vendor = await vendor_factory(VENDOR_HOST)
    session = f'store = "redis"\nredis_url = "{redis_url}"'
    port_a, port_b = free_port(), free_port()
    cfg_a = _config(tmp_path, port_a, running_slapd, vendor, session=session)
    # Replica B: same folder (same server secret), its own port.
    cfg_b = tmp_path / "proxy-b.toml"
    cfg_b.write_text(cfg_a.read_text().replace(str(port_a), str(port_b)))
    a = await proxy_factory(cfg_a)
    b = await proxy_factory(cfg_b)
    assert await _fail(a, CANARY.uid, 3) == [401] * 3
    assert await _fail(b, CANARY.uid, 2) == [401] * 2
    r = await a.login(CANARY.uid, CANARY.password)
    assert r.status == 429
    r = await b.login(CANARY.uid, CANARY.password)
    assert r.status == 429
    assert (await b.login(WREN.uid, WREN.password)).status == 303

    raw = redis.Redis.from_url(redis_url)
    try:
        dump = b""
        keys = raw.keys("*")
        counters = [k for k in keys if b"throttle" in k]
        assert counters, "the counters are in the shared store"
        for k in keys:
            dump += k + b"\n"
            if raw.type(k) == b"string":
                dump += (raw.get(k) or b"") + b"\n"
            if k in counters:
                ttl = raw.pttl(k)
                assert 0 < ttl <= 901_000, "a counter expires with its window"
    finally:
        raw.close()
    assert leaks(dump) == []
    address = b"127.0.0.1"  # the test client's address, raw and as a plain hash
    assert address not in dump
    assert hashlib.sha256(address).hexdigest().encode() not in dump


async def test_throttle_can_be_switched_off(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    vendor = await vendor_factory(VENDOR_HOST)
    cfg = _config(tmp_path, port, running_slapd, vendor, throttle="\n[throttle]\nenabled = false\n")
    driver = await proxy_factory(cfg)
    assert await _fail(driver, CANARY.uid, 7) == [401] * 7
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
