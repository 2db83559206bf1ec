"""Vendor cookies live in the patron's session on the proxy, end to end (real slapd, real HTTP).

One recording server plays `www.vendor-one.test` and `cdn.vendor-one.test`. `/set` on www sets a
parent-domain cookie, a host-only one and a path-scoped one; later requests show which of them
the vendor gets back from the jar, on which host and path, for which patron.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.jar import (
    MAX_COOKIES_PER_JAR,
    MAX_JAR_BYTES,
    dump_jar,
    load_jar,
    merged_jar,
    store_set_cookies,
    stored_size,
)
from tests.canary import CANARY, WREN, leaks
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

WWW = "www.vendor-one.test"
CDN = "cdn.vendor-one.test"
TWO = "www.vendor-two.test"
DEEP = "web.b.vendor-one.test"
SET_COOKIES = (
    "vsid=S1; Domain=vendor-one.test; Path=/; Max-Age=3600; HttpOnly",
    "pref=host-only; Path=/; Max-Age=3600",
    "acct=A1; Path=/account; Max-Age=3600",
    "stale=gone; Path=/; Max-Age=0",
)


async def set_cookies(request: web.Request) -> web.StreamResponse:
    resp = web.Response(text="<p>signed in at the vendor</p>", content_type="text/html")
    for value in SET_COOKIES:
        resp.headers.add("Set-Cookie", value)
    return resp


async def clear_parent_cookie(request: web.Request) -> web.StreamResponse:
    resp = web.Response(text="bye", content_type="text/plain")
    resp.headers.add("Set-Cookie", "vsid=; Domain=vendor-one.test; Path=/; Max-Age=0")
    return resp


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> AsyncIterator[tuple[ProxyDriver, RecordingVendor]]:
    vendor = await vendor_factory(WWW)
    vendor.routes["/set"] = set_cookies
    vendor.routes["/clear"] = clear_parent_cookie
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[WWW, "*.vendor-one.test"])},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    yield driver, vendor
    assert leaks(vendor.all_bytes()) == []


def cookies_received(vendor: RecordingVendor) -> dict[str, str]:
    """The cookies the vendor got on its last request, by name."""
    values = [v for k, v in vendor.requests[-1].headers if k.lower() == "cookie"]
    assert len(values) <= 1
    jar: SimpleCookie = SimpleCookie()
    for v in values:
        jar.load(v)
    return {name: morsel.value for name, morsel in jar.items()}


async def visit(driver: ProxyDriver, host: str, path: str, **kw: Any) -> Any:
    r = await driver.get_vendor(host, path, **kw)
    await r.read()
    return r


async def test_set_cookie_never_reaches_the_browser(setup: Any) -> None:
    driver, _ = setup
    r = await visit(driver, WWW, "/set")
    assert r.status == 200
    assert r.headers.getall("Set-Cookie", []) == []
    assert "vsid" not in r.cookies and "pref" not in r.cookies


async def test_jar_cookies_return_to_the_setting_host_by_path(setup: Any) -> None:
    """Under /account the vendor gets all three live cookies; elsewhere not the /account one;
    the Max-Age=0 cookie never."""
    driver, vendor = setup
    await visit(driver, WWW, "/set")
    await visit(driver, WWW, "/account/home")
    assert cookies_received(vendor) == {"vsid": "S1", "pref": "host-only", "acct": "A1"}
    await visit(driver, WWW, "/search")
    assert cookies_received(vendor) == {"vsid": "S1", "pref": "host-only"}


async def test_parent_domain_cookie_reaches_the_other_vendor_host(setup: Any) -> None:
    """cdn gets the Domain=vendor-one.test cookie and not the host-only ones set by www."""
    driver, vendor = setup
    await visit(driver, WWW, "/set")
    await visit(driver, CDN, "/account/img.png")
    assert vendor.requests[-1].host == CDN
    assert cookies_received(vendor) == {"vsid": "S1"}


async def test_parent_domain_cookie_set_by_a_deeper_host_is_kept(setup: Any) -> None:
    """Platforms serve from hosts like `web.b.ebscohost.com` and scope their session cookie to
    `Domain=.ebscohost.com` (RFC 6265 5.3 accepts it); the jar keeps it for every host."""
    driver, vendor = setup

    async def deep_set(request: web.Request) -> web.StreamResponse:
        resp = web.Response(text="<p>session started</p>", content_type="text/html")
        resp.headers.add("Set-Cookie", "deep=D1; Domain=vendor-one.test; Path=/; Max-Age=3600")
        return resp

    vendor.routes["/deep-start"] = deep_set
    await visit(driver, DEEP, "/deep-start")
    await visit(driver, DEEP, "/results")
    assert cookies_received(vendor) == {"deep": "D1"}
    await visit(driver, WWW, "/search")
    assert cookies_received(vendor) == {"deep": "D1"}


async def test_browser_cookies_on_the_vendor_host_are_not_forwarded(setup: Any) -> None:
    driver, vendor = setup
    await visit(driver, WWW, "/set")
    await visit(driver, WWW, "/search", headers={"Cookie": "browser_side=1; vsid=forged"})
    assert cookies_received(vendor) == {"vsid": "S1", "pref": "host-only"}
    assert b"browser_side" not in vendor.all_bytes() and b"forged" not in vendor.all_bytes()


async def test_max_age_zero_from_the_vendor_removes_the_cookie(setup: Any) -> None:
    driver, vendor = setup
    await visit(driver, WWW, "/set")
    await visit(driver, CDN, "/clear")
    await visit(driver, WWW, "/search")
    assert cookies_received(vendor) == {"pref": "host-only"}


async def test_another_patron_has_none_of_the_cookies(setup: Any) -> None:
    driver, vendor = setup
    await visit(driver, WWW, "/set")
    canary_sid = driver.session_id()
    assert (await driver.login(WREN.uid, WREN.password)).status == 303
    assert driver.session_id() != canary_sid
    for host, path in ((WWW, "/account/home"), (CDN, "/account/home")):
        await visit(driver, host, path)
        assert cookies_received(vendor) == {}
    # And the canary's session still has its own.
    await visit(driver, WWW, "/account/home", sid=canary_sid)
    assert cookies_received(vendor) == {"vsid": "S1", "pref": "host-only", "acct": "A1"}


async def test_jar_dies_with_the_session(setup: Any) -> None:
    """After logout the same patron signs in again and the vendor sees no cookie at all."""
    driver, vendor = setup
    await visit(driver, WWW, "/set")
    old_sid = driver.session_id()
    assert (await driver.own("GET", "/logout")).status == 200
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert driver.session_id() != old_sid
    await visit(driver, WWW, "/account/home")
    assert cookies_received(vendor) == {}


def _slow_setter(name: str, delay: float) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(delay)
        resp = web.Response(text="ok", content_type="text/plain")
        resp.headers.add("Set-Cookie", f"{name}=1; Path=/; Max-Age=3600")
        return resp

    return handler


async def test_cookies_set_by_overlapping_requests_are_all_kept(setup: Any) -> None:
    """A page fires requests in parallel; a cookie from each must survive (no lost update)."""
    driver, vendor = setup
    vendor.routes["/slow"] = _slow_setter("slow", 0.3)
    vendor.routes["/fast"] = _slow_setter("fast", 0.05)
    await asyncio.gather(visit(driver, WWW, "/slow"), visit(driver, WWW, "/fast"))
    await visit(driver, WWW, "/search")
    assert cookies_received(vendor) == {"slow": "1", "fast": "1"}


async def test_two_vendors_cookies_from_overlapping_requests_are_both_kept(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Two tabs, two databases: a slow page at one vendor and a quick one at another, each
    setting a cookie. Storing the slow request's copy of the session must not drop the other
    vendor's cookie, nor its record of the visit (it would be counted as a new visit again)."""
    one = await vendor_factory(WWW)
    two = await vendor_factory(TWO)
    one.routes["/slow"] = _slow_setter("slow", 0.3)
    two.routes["/fast"] = _slow_setter("fast", 0.05)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", one), "two": vendor_toml("two", two)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    await asyncio.gather(visit(driver, WWW, "/slow"), visit(driver, TWO, "/fast"))
    await visit(driver, TWO, "/search")
    assert cookies_received(two) == {"fast": "1"}
    await visit(driver, WWW, "/search")
    assert cookies_received(one) == {"slow": "1"}
    from proxy.app import SERVICES

    stored = await driver.client.server.app[SERVICES].sessions.load(driver.session_id())
    assert stored is not None and sorted(stored.state["seen"]) == ["one", "two"]


# ---------------------------------------------------------------------- merging (unit)


def _dumped(*set_cookies: str, start: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    jar = load_jar(start or [])
    store_set_cookies(jar, f"http://{WWW}/", list(set_cookies))
    return dump_jar(jar)


def _names(jar: Any) -> dict[str, str]:
    return {c.name: c.value for c in jar}


def test_merge_keeps_cookies_stored_meanwhile() -> None:
    before = _dumped("a=1; Path=/")
    latest = _dumped("b=2; Path=/", start=before)
    assert _names(merged_jar(latest, before, before)) == {"a": "1", "b": "2"}


def test_merge_lets_this_requests_change_win() -> None:
    before = _dumped("a=1; Path=/")
    latest = _dumped("b=2; Path=/", start=before)
    ours = _dumped("a=9; Path=/", start=before)  # e.g. a shared login renewed it
    assert _names(merged_jar(latest, before, ours)) == {"a": "9", "b": "2"}


def test_merge_keeps_this_requests_deletion() -> None:
    before = _dumped("a=1; Path=/", "c=3; Path=/")
    ours = _dumped("c=; Path=/; Max-Age=0", start=before)
    assert _names(merged_jar(before, before, ours)) == {"a": "1"}


@pytest.mark.parametrize(
    ("url", "set_cookie", "kept"),
    [
        ("https://web.b.ebscohost.com/x", "a=1; Domain=.ebscohost.com; Path=/", ".ebscohost.com"),
        ("https://a.b.vendor.test/x", "a=1; Domain=b.vendor.test; Path=/", ".b.vendor.test"),
        ("https://www.vendor.co.uk/x", "a=1; Domain=vendor.co.uk; Path=/", ".vendor.co.uk"),
        ("https://www.vendor.co.uk/x", "a=1; Domain=co.uk; Path=/", None),  # a registry
        ("https://www.vendor.test/x", "a=1; Domain=test; Path=/", None),  # a bare TLD
        ("https://www.vendor.test/x", "a=1; Domain=other.test; Path=/", None),  # not its own
        # The Public Suffix List's private section too: github.io is a registry of sites.
        ("https://lib.github.io/x", "a=1; Domain=github.io; Path=/", None),
        ("https://a.b.vendor.test/x", "a=1; Domain=vendor.test; Path=/", ".vendor.test"),
        # A Domain naming the very host that sets it (RFC 6265 5.3 step 6).
        ("https://vendor.test/x", "a=1; Domain=vendor.test; Path=/", ".vendor.test"),
        ("https://www.vendor.test/x", "a=1; Domain=www.vendor.test; Path=/", ".www.vendor.test"),
        ("https://www.vendor.test/x", "a=1; Domain=; Path=/", "www.vendor.test"),  # empty: ignored
        ("https://www.vendor.test/x", "a=1; Domain=evilvendor.test; Path=/", None),
    ],
)
def test_domain_cookies_as_rfc_6265_has_them(url: str, set_cookie: str, kept: str | None) -> None:
    jar = load_jar([])
    store_set_cookies(jar, url, [set_cookie])
    assert [c.domain for c in jar] == ([kept] if kept else [])


def test_a_full_jar_keeps_the_cookies_set_last_within_its_byte_budget() -> None:
    """Past MAX_JAR_BYTES as stored (every field of each cookie, `stored_size`), the cookies the
    vendor set longest ago go first, as past MAX_COOKIES_PER_JAR (browsers evict the oldest,
    RFC 6265 5.3 step 12)."""
    jar = load_jar([])
    url = "https://www.vendor.test/x"
    for n in range(40):  # 40 x ~4 KB: more than the budget
        store_set_cookies(jar, url, [f"c{n:02d}={'v' * 4000}; Path=/"])
        jar = load_jar(dump_jar(jar))
    stored = dump_jar(jar)
    assert sum(stored_size(d) for d in stored) <= MAX_JAR_BYTES
    names = {d["name"] for d in stored}
    assert len(names) == MAX_JAR_BYTES // max(stored_size(d) for d in stored)
    assert names == {f"c{n:02d}" for n in range(40 - len(names), 40)}


def test_overwriting_a_cookie_makes_it_the_newest() -> None:
    jar = load_jar([])
    url = "https://www.vendor.test/x"
    for n in range(MAX_COOKIES_PER_JAR):
        store_set_cookies(jar, url, [f"c{n:03d}=1; Path=/"])
        jar = load_jar(dump_jar(jar))
    store_set_cookies(jar, url, ["c000=2; Path=/", "fresh=1; Path=/"])
    names = {d["name"]: d["value"] for d in dump_jar(jar)}
    assert names["c000"] == "2" and names["fresh"] == "1"
    assert "c001" not in names  # the oldest one the vendor did not set again


@pytest.mark.parametrize(
    ("set_cookie", "path", "expired"),
    [
        # RFC 6265 5.3: the last attribute of a name counts, as in browsers (cookiejar: the first).
        ("a=1; Path=/first; Path=/last", "/last", False),
        ("a=1; Max-Age=3600; Max-Age=0", "/", True),
        (
            "a=1; Expires=Wed, 01 Jan 2099 00:00:00 GMT; Expires=Thu, 01 Jan 1970 00:00:01 GMT",
            "/",
            True,
        ),
        # An ignored attribute is not an occurrence: the earlier one stands.
        ("a=1; Max-Age=0; Max-Age=soon", "/", True),
        # A Path that is not a path is the default path (5.2.4), undoing the earlier one.
        ("a=1; Path=/first; Path=relative", "/x", False),
    ],
)
def test_a_repeated_cookie_attribute_counts_by_its_last_occurrence(
    set_cookie: str, path: str, expired: bool
) -> None:
    jar = load_jar([])
    store_set_cookies(jar, "https://www.vendor.test/x/page", [set_cookie])
    assert [c.path for c in jar] == ([] if expired else [path])


def test_a_cookie_over_4096_octets_of_non_ascii_text_is_ignored() -> None:
    """The 4,096 limit is in octets (RFC 6265bis 5.6): 2,100 two-byte letters are 4,200."""
    jar = load_jar([])
    store_set_cookies(jar, "https://www.vendor.test/x", ["a=" + "é" * 2100 + "; Path=/"])
    assert list(jar) == []
    store_set_cookies(jar, "https://www.vendor.test/x", ["a=" + "é" * 2000 + "; Path=/"])
    assert [c.name for c in jar] == ["a"]
