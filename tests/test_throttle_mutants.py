"""From a mutation sweep by hand (1 December 2026) of the sign-in throttle, the compliance
stand-ins, the patrons file and the usage statistics (50 mutants, 24 non-equivalent survivors). Each test names the mutant it kills and the behaviour it proves."""

from __future__ import annotations

import datetime as dt
import time
import types
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

import proxy.throttle as throttle_mod
from proxy.sessions import MemoryStore
from proxy.throttle import Throttle, ThrottleSection, Window, address_bucket

# An instant one minute past a whole UTC hour: the card window (900 s) ends 840 s from now, an
# hour-long address window 3540 s from now.
HOUR = 1_780_000_000 - 1_780_000_000 % 3600
NOW = HOUR + 60
CARD = "29990000123456"


def _request(remote: str = "198.51.100.7") -> Any:
    return make_mocked_request("POST", "/login").clone(remote=remote)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """The throttle's wall clock stopped at NOW, its wait short, and its refusals recorded as
    (kind, seconds until the patron may come back) instead of rendered."""
    refusals: list[tuple[str, float]] = []

    def refusal(request: Any, kind: str, retry_s: float) -> tuple[str, float]:
        refusals.append((kind, retry_s))
        return (kind, retry_s)

    monkeypatch.setattr(
        throttle_mod, "time", types.SimpleNamespace(time=lambda: NOW, monotonic=time.monotonic)
    )
    monkeypatch.setattr(throttle_mod, "WAIT_S", 0.3)
    monkeypatch.setattr(throttle_mod, "_refusal", refusal)
    return refusals


def _throttle(**settings: Any) -> Throttle:
    return Throttle(MemoryStore(), b"k" * 32, ThrottleSection(**settings), ())


async def _wrong_pin(t: Throttle, card: str, remote: str = "198.51.100.7") -> Any:
    request = _request(remote)
    answer = await t.gate(request, card)
    if answer is None:
        await t.failed(request, card, "bad_credentials")
        await t.settle(request)
    return answer


# --------------------------------------------------------------------------- throttle


async def test_retry_after_is_the_end_of_the_longest_window_that_refuses(
    frozen: list[tuple[str, float]],
) -> None:
    """kills: proxy/throttle.py:Throttle.gate — `max(w.ends for w in over)` → `min(...)`.

    A card at its limit (15-minute window) from an address at its limit (hour window): the
    patron told to come back when the card window ends, 14 minutes from now, is refused again
    then by the address counter. Retry-After must be the later end, 59 minutes."""
    t = _throttle(card_limit=1, address_limit=1, address_window_s=3600)
    assert await _wrong_pin(t, CARD) is None
    assert await _wrong_pin(t, CARD) == ("too_many_attempts", 3540)


async def test_too_many_sign_ins_says_when_the_card_window_ends(
    frozen: list[tuple[str, float]],
) -> None:
    """kills: proxy/throttle.py:Throttle.admit — `w.ends - now` → `WAIT_RETRY_S`.

    A card past its sign-in bound is refused until its window ends (840 s from now): a
    Retry-After of 10 s would send the patron (or the library PC) back into 429 after 429."""
    t = _throttle(card_sign_in_limit=1)
    assert await t.admit(_request(), CARD) is None
    assert await t.admit(_request(), CARD) == ("too_many_sign_ins", 840)


def test_a_window_ends_at_the_next_boundary() -> None:
    """kills: proxy/throttle.py:Window.at — `(index + 1) * length_s` → anything else.

    Windows are aligned to the clock: the one holding 00:01 of a 15-minute grid ends at 00:15,
    which is both when the counter expires and what Retry-After tells the patron."""
    assert Window.at(NOW, 900) == Window(NOW // 900, HOUR + 900)
    assert Window.at(HOUR + 900, 900).ends == HOUR + 1800  # a boundary opens the next window


def test_ipv4_mapped_addresses_are_counted_as_their_ipv4_address() -> None:
    """kills: proxy/throttle.py:address_bucket — the `ipv4_mapped` branch dropped.

    Without it every IPv4 client reached through a dual-stack socket (::ffff:a.b.c.d) falls in
    one IPv6 /64, `::/64`: every patron would share one address counter and twenty wrong PINs
    anywhere would lock the whole library out."""
    assert address_bucket("::ffff:198.51.100.7") == "198.51.100.7"
    assert address_bucket("::ffff:198.51.100.7") != address_bucket("::ffff:203.0.113.9")


def test_an_ipv6_client_is_counted_per_64() -> None:
    """kills: proxy/throttle.py:address_bucket — `(ip, 64)` → `(ip, 128)`.

    One IPv6 client holds a whole /64 and picks new addresses in it at will: counted per
    address it would have 2^64 counters, and no address limit at all."""
    assert address_bucket("2001:db8:1:2::1") == address_bucket("2001:db8:1:2:ffff:1:2:3")
    assert address_bucket("2001:db8:1:2::1") != address_bucket("2001:db8:1:3::1")


# --------------------------------------------------------------------------- statistics


def _stats_config(tmp_path: Path, **stats: Any) -> Any:
    from proxy.config import Config

    return Config(path=tmp_path / "proxy.toml", extra={"stats": stats})


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"flush_interval_s": 0}, "stats.flush_interval_s"),
        ({"refresh_interval_s": 0}, "stats.refresh_interval_s"),
        ({"path": ""}, "stats.path"),
    ],
)
def test_check_stats_refuses_a_zero_interval_and_an_empty_path(
    tmp_path: Path, table: dict[str, Any], key: str
) -> None:
    """kills: proxy/stats.py:check_stats — `flush_interval_s <= 0` → `< 0`;
    `refresh_interval_s <= 0` → `< 0`; the `if not section.path` refusal dropped.

    A flush interval of 0 turns the Recorder into a loop that writes to the stats store without
    pause (and a refresh interval of 0 asks the directory and store without pause): the proxy
    must refuse to start with them, naming the key, as it does with a negative one. An empty
    path would put the counts in the config folder itself."""
    from proxy.stats import check_stats

    problems: list[Any] = []
    check_stats(_stats_config(tmp_path, **table), problems)
    assert [p.key for p in problems] == [key]


# --------------------------------------------------------------------------- usage_stats


def _usage(secret: bytes = b"s" * 32) -> Any:
    from proxy.stats import Counters
    from proxy.usage_stats import UsageCounter

    at = dt.datetime(2026, 3, 10, 9, 30, tzinfo=dt.UTC)
    return UsageCounter(Counters(clock=lambda: at), {"one": ["^/find"]}, secret=secret)


def _obs(path: str = "/", **kw: Any) -> Any:
    from proxy.forward import Observation

    fields: dict[str, Any] = {
        "vendor_id": "one",
        "method": "GET",
        "status": 200,
        "bytes": 100,
        "duration_s": 0.01,
        "content_type": "text/html",
        "path": path,
        "first_at_vendor": False,
    }
    fields.update(kw)
    return Observation(**fields)


def _seen(u: Any) -> dict[str, int]:
    return {m: n for (_, _, m), n in u.counters.pending().items()}


def test_a_search_the_vendor_answered_with_400_is_not_a_search() -> None:
    """kills: proxy/usage_stats.py:UsageCounter.observe — `o.status < 400` → `<= 400`.

    A search form the vendor rejected (400 Bad Request) found nothing: counting it would
    inflate the searches the library reports to its board."""
    from proxy.stats import SEARCHES

    u = _usage()
    u.observe(_obs("/find", status=400))
    u.observe(_obs("/find", status=399))
    assert _seen(u).get(SEARCHES) == 1


async def test_a_reload_brings_a_vendors_new_search_rule() -> None:
    """kills: proxy/usage_stats.py:UsageCounter.reloaded — the search paths not replaced.

    Staff add a vendor's search path and reload: searches there are counted from then on."""
    from proxy.stats import SEARCHES

    u = _usage()
    config = types.SimpleNamespace(
        vendors=(types.SimpleNamespace(id="one", search_paths=("^/query",)),)
    )
    await u.reloaded(config)
    u.observe(_obs("/query"))
    u.observe(_obs("/query"))
    u.observe(_obs("/find"))  # the old rule is gone
    assert _seen(u).get(SEARCHES) == 2


# --------------------------------------------------------------------------- patrons file


def _patrons(tmp_path: Path, body: str | bytes) -> tuple[dict[str, Any], list[str]]:
    from proxy.patrons_file import read_patrons_file

    path = tmp_path / "patrons.toml"
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body, encoding="utf-8")
    patrons, problems = read_patrons_file(path)
    return patrons, [p.key for p in problems]


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('card = true\nhash = "$argon2id$x"', "patron[0].card"),
        ('card = "29990000123456"\nhash = 1234', "patron[0].hash"),
        (
            'card = "29990000123456"\nhash = "$argon2id$x"\ngroups = ["resident", 3]',
            "patron[0].groups",
        ),
        ('card = "29990000123456"\nhash = "$argon2id$x"\nblocked = "no"', "patron[0].blocked"),
    ],
)
def test_a_patrons_file_value_of_the_wrong_kind_is_named_and_its_patron_not_loaded(
    tmp_path: Path, line: str, key: str
) -> None:
    """kills: proxy/patrons_file.py:read_patrons_file — `or isinstance(card, bool)` dropped;
    the `hash` type check dropped; `all(isinstance(g, str) …)` dropped; the `blocked` type
    check dropped; the `continue` after a wrong entry dropped.

    `card = true` would make a card named "True"; a PIN hash written as a number fails every
    sign-in of that card with a 500; a group that is a number; `blocked = "no"` (a string, so
    truthy) would block the patron. Each must be refused naming its key, and the entry never
    loaded half-checked."""
    patrons, keys = _patrons(tmp_path, f"[[patron]]\n{line}\n")
    assert keys == [key]
    assert patrons == {}


def test_a_patrons_file_whose_patron_is_not_a_table_list_or_not_text_is_refused(
    tmp_path: Path,
) -> None:
    """kills: proxy/patrons_file.py:read_patrons_file — the `[[patron]] tables` check dropped;
    `UnicodeDecodeError` dropped from the unreadable-file `except`.

    `patron = "x"` or a file saved in Latin-1 must be a problem naming the file, which
    check-config prints, not a traceback at start."""
    assert _patrons(tmp_path, 'patron = "x"\n') == ({}, ["patron"])
    assert _patrons(tmp_path, b'[[patron]]\ncard = "caf\xe9"\n') == ({}, ["(file)"])


# --------------------------------------------------------------------------- compliance


@pytest.mark.parametrize(
    "template", ["{cardnumber}", "{{ barcode }}", "%pin%", "?email=", "${telephonenumber}"]
)
def test_the_patron_words_include_what_ils_templates_call_the_card(template: str) -> None:
    """kills: proxy/compliance_settings.py:PATRON_WORDS — `"cardnumber"` (or another card,
    contact or PIN word) dropped.

    A vendor rewrite carrying `{cardnumber}` expects the card number to reach the vendor: the
    compliance check must flag it whatever the directory calls its attribute."""
    from proxy.compliance import _template_pattern
    from proxy.compliance_settings import PATRON_WORDS

    assert _template_pattern(PATRON_WORDS).search(f"value={template}")


def test_the_live_check_config_keeps_only_compliance_and_a_store_in_memory(
    tmp_path: Path,
) -> None:
    """kills: proxy/compliance_stub.py:live_config — `k == "compliance"` → `k != "throttle"`;
    `session` kept from the library's config; `card_sign_in_limit: 0` dropped.

    The synthetic canary traffic of a live compliance run must never reach the library's own
    statistics (its [stats] file) or its Redis session store, and its many sign-ins must not be
    refused by the card's sign-in bound."""
    from proxy.compliance_stub import live_config
    from proxy.config import Config, SessionConfig

    config = Config(
        path=tmp_path / "proxy.toml",
        session=SessionConfig(store="redis", redis_url="redis://127.0.0.1:1/0"),
        extra={
            "compliance": {"max_retention_days": 30},
            "stats": {"path": "state/stats.sqlite3"},
        },
    )
    live = live_config(config, 9, tmp_path / "work")
    assert live.extra == {
        "compliance": {"max_retention_days": 30},
        "throttle": {"enabled": False, "card_sign_in_limit": 0},
    }
    assert live.session.store == "memory"


def test_the_live_check_leaves_urls_on_other_hosts_alone(tmp_path: Path) -> None:
    """kills: proxy/compliance_stub.py:live_vendor.to_http — the `hosts` check dropped.

    Only the vendor's own hosts are pointed at the stand-in over plain http: a start URL at a
    sign-on host outside them stays as the library configured it."""
    from proxy.compliance_stub import live_vendor
    from proxy.config import VendorConfig

    v = VendorConfig(
        id="one",
        title="One",
        origin="https://www.vendor-one.test",
        hosts=("www.vendor-one.test",),
        start_url="https://sso.elsewhere.test/start?x=1",
    )
    assert live_vendor(v, 9, tmp_path).start_url == "https://sso.elsewhere.test/start?x=1"
    own = VendorConfig(
        id="one",
        title="One",
        origin="https://www.vendor-one.test",
        hosts=("www.vendor-one.test",),
        start_url="https://www.vendor-one.test/start?x=1",
    )
    assert live_vendor(own, 9, tmp_path).start_url == "http://www.vendor-one.test/start?x=1"


# --------------------------------------------------------------------------- throttle, continued


def test_a_fullwidth_card_number_shares_the_cards_counter() -> None:
    """kills: proxy/throttle.py:normal_card — `unicodedata.normalize("NFKC", username)` →
    `username`.

    The directory folds compatibility forms (a fullwidth two, U+FF12, is a 2), so a guesser typing the
    card in fullwidth digits reaches the same patron: without the fold each spelling would get
    its own five guesses, and one card its limit many times over."""
    from proxy.throttle import normal_card

    fullwidth = "".join(chr(ord(c) - ord("0") + 0xFF10) for c in CARD)  # U+FF12 …
    assert fullwidth != CARD and normal_card(fullwidth) == normal_card(CARD)


async def test_a_reload_changes_which_proxies_are_trusted(tmp_path: Path) -> None:
    """kills: proxy/throttle.py:Throttle.reloaded — `self.trusted = parse_networks(...)`
    dropped.

    Staff put the proxy behind a new load balancer and reload: without the new trusted proxy,
    every patron arrives from the balancer's one address and shares one address counter, so
    twenty wrong PINs anywhere lock out the whole library until a restart."""
    from proxy.client_ip import parse_networks
    from proxy.config import Config, ServerConfig

    t = _throttle()
    config = Config(
        path=tmp_path / "proxy.toml", server=ServerConfig(trusted_proxies=("10.0.0.0/8",))
    )
    await t.reloaded(config)
    assert t.trusted == parse_networks(["10.0.0.0/8"])


async def test_the_refusal_page_rounds_the_minutes_up(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kills: proxy/throttle.py:_refusal — `math.ceil(seconds / 60)` → `seconds // 60`.

    Five wrong PINs at 00:01:01 of a 15-minute window: the card may sign in again in 839 s.
    The page must say 14 minutes (when it is true), not 13 (the patron comes back at 00:14:01
    and is refused again)."""
    from tests.test_throttle import VENDOR_HOST, _config

    monkeypatch.setattr(
        throttle_mod, "time", types.SimpleNamespace(time=lambda: NOW + 1, monotonic=time.monotonic)
    )
    vendor = await vendor_factory(VENDOR_HOST)
    driver = await proxy_factory(_config(tmp_path, port, running_slapd, vendor))
    for _ in range(5):
        await driver.login(CARD, "wrong-pin")
    r = await driver.login(CARD, "wrong-pin")
    assert r.status == 429 and r.headers["Retry-After"] == "839"
    assert "14 minutes" in await r.text()
