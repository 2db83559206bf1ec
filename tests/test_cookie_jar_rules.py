"""The vendor cookie jar keeps what a browser would keep, and nothing it would not (RFC 6265 and
6265bis through proxy/jar.py, proxy/forward.py and the WebSocket handshake), and it stays bounded
and apart: per patron, per vendor, across two instances on Redis.

Real slapd, a real recording aiohttp vendor that plays every host of `vendor-one.test`, the
proxy on a real port. (From a review: the first part's tests each failed before their fix.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.app import SERVICES
from tests.canary import CANARY, WREN
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

APEX = "vendor-one.test"
WWW = "www.vendor-one.test"
CDN = "cdn.vendor-one.test"
TWO = "www.vendor-two.test"


def setter(*set_cookies: str, status: int = 200, **headers: str) -> Callable[..., Any]:
    """A vendor route answering with these Set-Cookie headers."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.Response(
            status=status, text="<p>ok</p>", content_type="text/html", headers=headers
        )
        for value in set_cookies:
            resp.headers.add("Set-Cookie", value)
        return resp

    return handler


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> AsyncIterator[tuple[ProxyDriver, RecordingVendor]]:
    vendor = await vendor_factory(WWW)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[APEX, WWW, "*.vendor-one.test"])},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    yield driver, vendor


def received(vendor: RecordingVendor) -> dict[str, str]:
    """The cookies the vendor got on its last request, by name."""
    values = [v for k, v in vendor.requests[-1].headers if k.lower() == "cookie"]
    assert len(values) <= 1
    jar: SimpleCookie = SimpleCookie()
    for v in values:
        jar.load(v)
    return {name: morsel.value for name, morsel in jar.items()}


def cookie_header(vendor: RecordingVendor) -> str:
    values = [v for k, v in vendor.requests[-1].headers if k.lower() == "cookie"]
    return values[0] if values else ""


async def visit(driver: ProxyDriver, host: str, path: str, **kw: Any) -> Any:
    r = await driver.get_vendor(host, path, **kw)
    await r.read()
    return r


async def stored_jar(driver: ProxyDriver, vendor_id: str = "one") -> list[dict[str, Any]]:
    session = await driver.client.server.app[SERVICES].sessions.load(driver.session_id())
    assert session is not None
    return list(session.jars.get(vendor_id, []))


# ================================================================ what a browser keeps, and drops


@pytest.mark.parametrize(
    ("host", "set_cookie"),
    [
        # A vendor served from its bare domain scoping its session to that domain (and its
        # subdomains): RFC 6265 5.3 step 6 accepts it, every browser keeps it.
        (APEX, "vsid=S1; Domain=vendor-one.test; Path=/"),
        (APEX, "vsid=S1; Domain=.vendor-one.test; Path=/"),
        # Domain naming the very host that sets it.
        (WWW, "vsid=S1; Domain=www.vendor-one.test; Path=/"),
    ],
)
async def test_a_domain_cookie_naming_the_setting_host_itself_is_kept(
    setup: Any, host: str, set_cookie: str
) -> None:
    """A cookie whose Domain is the host that sets it is stored and sent back to that host."""
    driver, vendor = setup
    vendor.routes["/signin"] = setter(set_cookie)
    assert (await visit(driver, host, "/signin")).status == 200
    await visit(driver, host, "/search")
    assert vendor.requests[-1].host == host
    assert received(vendor) == {"vsid": "S1"}


async def test_a_cookie_over_4096_bytes_is_ignored(setup: Any) -> None:
    """RFC 6265bis 5.6 (step 4): a cookie whose name and value exceed 4096 octets is ignored,
    as browsers do; the proxy stores it and replays it on every request."""
    driver, vendor = setup
    vendor.routes["/big"] = setter("big=" + "x" * 5000 + "; Path=/")
    await visit(driver, WWW, "/big")
    await visit(driver, WWW, "/search")
    assert "big" not in received(vendor)
    assert await stored_jar(driver) == []


async def test_a_vendor_cannot_grow_the_session_past_a_megabyte(setup: Any) -> None:
    """A vendor answering 24 requests each with one new 50 KB cookie: the session (the value
    kept in the store and re-encoded on every write, in Redis sealed whole) should stay bounded
    (browsers keep at most 4 KiB a cookie). Before the limits it reached 1.2 MB here."""
    driver, vendor = setup

    async def fat(request: web.Request) -> web.StreamResponse:
        # Each on a path of its own, so no request carries them back (this vendor's own server
        # answers 400 to a Cookie header over 8 KiB).
        n = request.query["n"]
        return await setter(f"c{n}=" + "v" * 50_000 + f"; Path=/only/{n}")(request)

    vendor.routes["/fat"] = fat
    for n in range(24):
        assert (await visit(driver, WWW, f"/fat?n={n}")).status == 200
    jar = await stored_jar(driver)
    size = len(json.dumps(jar))
    assert size < 1_000_000, f"{len(jar)} cookies, {size} bytes stored in the session"


async def test_a_full_jar_keeps_the_cookie_the_vendor_just_set(setup: Any) -> None:
    """With 200 cookies in the jar (MAX_COOKIES_PER_JAR), a new one the vendor sets is stored
    and sent, as a browser would (it evicts the oldest, RFC 6265 5.3 step 12), not dropped
    for sorting last by (domain, path, name), which lost every sign-in at the vendor."""
    driver, vendor = setup
    vendor.routes["/prefs"] = setter(*(f"a{n:03d}=1; Path=/" for n in range(100)))
    vendor.routes["/prefs2"] = setter(*(f"b{n:03d}=1; Path=/" for n in range(100)))
    vendor.routes["/signin"] = setter("session=NEW; Path=/")
    await visit(driver, WWW, "/prefs")
    await visit(driver, WWW, "/prefs2")
    await visit(driver, WWW, "/signin")
    await visit(driver, WWW, "/search")
    assert received(vendor).get("session") == "NEW"


async def test_a_sibling_host_cannot_plant_a_host_prefixed_cookie(setup: Any) -> None:
    """`__Host-` cookies must have no Domain, be Secure and have Path=/ (RFC 6265bis 4.1.3.2),
    so the vendor can trust a `__Host-` cookie came from the host itself: cdn (a sibling, maybe
    user content) cannot plant `__Host-csrf` with Domain=vendor-one.test for www."""
    driver, vendor = setup
    vendor.routes["/toss"] = setter("__Host-csrf=planted; Domain=vendor-one.test; Path=/")
    await visit(driver, CDN, "/toss")
    await visit(driver, WWW, "/account")
    assert vendor.requests[-1].host == WWW
    assert "__Host-csrf" not in received(vendor)


async def test_a_secure_prefixed_cookie_without_secure_is_ignored(setup: Any) -> None:
    """`__Secure-` (and `__Host-`) cookies without the Secure attribute, here set over plain
    http, are ignored by browsers (RFC 6265bis 5.7 steps 20-21); the jar keeps and sends them."""
    driver, vendor = setup
    vendor.routes["/set"] = setter("__Secure-id=x; Path=/", "__Host-id=y; Path=/")
    await visit(driver, WWW, "/set")
    await visit(driver, WWW, "/search")
    assert received(vendor) == {}


@pytest.mark.parametrize(
    "set_cookie",
    [
        "vsid=S1; Path=/; Max-Age=3600s",  # RFC 6265 5.2.2: an unparsable Max-Age is ignored
        "vsid=S1; Path=/; Max-Age=",
        "vsid=S1; Path=/; Port=443",  # no RFC 6265 attribute: ignored by browsers
        "vsid=S1; Path=search",  # 5.2.4: a Path not starting with "/" means the default path
    ],
)
async def test_an_attribute_to_be_ignored_does_not_cost_the_cookie(
    setup: Any, set_cookie: str
) -> None:
    """An attribute RFC 6265 says to ignore leaves the cookie itself in place: the vendor gets
    `vsid` back on its next page (cookiejar alone drops the cookie for a bad Max-Age or a Port
    not matching, and keeps Path=search, which matches no path)."""
    driver, vendor = setup
    vendor.routes["/signin"] = setter(set_cookie)
    await visit(driver, WWW, "/signin")
    await visit(driver, WWW, "/search")
    assert received(vendor) == {"vsid": "S1"}


async def test_a_cookie_set_in_the_websocket_handshake_is_kept(setup: Any) -> None:
    """A vendor's Set-Cookie on its 101 answer is processed as on any answer (RFC 6455 4.1,
    browsers do): the next page request carries it."""
    driver, vendor = setup

    async def socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        ws.set_cookie("wsid", "W1", path="/")
        await ws.prepare(request)
        await ws.close()
        return ws

    vendor.routes["/ws"] = socket
    mapped = driver.mapped(WWW)
    ws = await driver.client.ws_connect(
        "/ws",
        headers={
            "Host": mapped,
            "Origin": f"http://{mapped}",
            "Cookie": f"{driver.config.server.cookie_name}={driver.session_id()}",
        },
        timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
    )
    assert "Set-Cookie" not in ws._response.headers
    await ws.receive()
    await ws.close()
    await visit(driver, WWW, "/search")
    assert received(vendor) == {"wsid": "W1"}


async def test_a_jar_entry_from_another_version_does_not_break_the_vendor(setup: Any) -> None:
    """A session whose stored jar holds an entry without some field this code writes (a newer
    instance in a rolling upgrade writing a leaner form; Session.from_dict is tolerant of such
    changes) still reaches the vendor, with the cookie, instead of a 500 on every request to
    the vendor until sign-out (TypeError in http.cookiejar: `None > 0`)."""
    driver, vendor = setup
    vendor.routes["/signin"] = setter("vsid=S1; Path=/")
    await visit(driver, WWW, "/signin")
    store = driver.client.server.app[SERVICES].sessions.store
    session = await store.get(driver.session_id())
    lean = [
        {k: v for k, v in d.items() if k in ("name", "value", "domain", "path", "expires")}
        for d in session.jars["one"]
    ]
    session.jars["one"] = lean
    await store.put(session, 600)
    r = await visit(driver, WWW, "/search")
    assert r.status == 200
    assert received(vendor) == {"vsid": "S1"}


# ================================================================ isolation


@pytest.mark.parametrize("status", [200, 302, 304, 401])
async def test_no_vendor_cookie_reaches_the_browser_in_any_answer(setup: Any, status: int) -> None:
    """Set-Cookie (any case) and Set-Cookie2 on a page, a redirect, a 304 or a 401 never reach
    the browser; the Set-Cookie ones land in the jar."""
    driver, vendor = setup

    async def odd(request: web.Request) -> web.StreamResponse:
        resp = web.Response(status=status, headers={"Location": f"http://{WWW}/next"})
        resp.headers.add("SET-COOKIE", "upper=1; Path=/")
        resp.headers.add("set-cookie", "lower=1; Path=/")
        resp.headers.add("Set-Cookie2", 'old=1; Version="1"')
        return resp

    vendor.routes["/odd"] = odd
    r = await visit(driver, WWW, "/odd")
    assert r.status == status
    assert not [k for k in r.headers if k.lower().startswith("set-cookie")]
    await visit(driver, WWW, "/search")
    assert received(vendor) == {"upper": "1", "lower": "1"}


async def test_concurrent_patrons_never_get_each_others_cookies(setup: Any) -> None:
    """Two patrons at the same vendor, 20 overlapping requests each setting a per-patron cookie:
    each patron's requests carry only their own."""
    driver, vendor = setup

    async def per_patron(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.02)
        return await setter(f"who={request.query['p']}; Path=/")(request)

    vendor.routes["/who"] = per_patron
    canary = driver.session_id()
    assert (await driver.login(WREN.uid, WREN.password)).status == 303
    wren = driver.session_id()
    runs: list[Awaitable[Any]] = []
    for n in range(10):
        runs.append(visit(driver, WWW, f"/who?p=canary&n={n}", sid=canary))
        runs.append(visit(driver, WWW, f"/who?p=wren&n={n}", sid=wren))
    await asyncio.gather(*runs)
    for req in vendor.requests:
        cookie = dict(req.headers).get("Cookie", "")
        if "p=canary" in req.path_qs:
            assert "wren" not in cookie
        if "p=wren" in req.path_qs:
            assert "canary" not in cookie
    await visit(driver, WWW, "/search", sid=canary)
    assert received(vendor) == {"who": "canary"}
    await visit(driver, WWW, "/search", sid=wren)
    assert received(vendor) == {"who": "wren"}


async def test_no_domain_lets_one_vendors_cookie_reach_another(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Vendor two names the shared TLD, vendor one's domain, the proxy's own domain and an IP:
    none of it ever reaches vendor one (a jar is one vendor's), and no cookie reaches the
    browser."""
    one = await vendor_factory(WWW)
    two = await vendor_factory(TWO)
    two.routes["/toss"] = setter(
        "tld=1; Domain=test; Path=/",
        "parent=1; Domain=vendor-one.test; Path=/",
        "own=1; Domain=vendor-two.test; Path=/",
        "proxy=1; Domain=proxy.localhost; Path=/",
        "ip=1; Domain=127.0.0.1; Path=/",
    )
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "one": vendor_toml("one", one, hosts=[WWW, "*.vendor-one.test"]),
            "two": vendor_toml("two", two, hosts=[TWO, "*.vendor-two.test"]),
        },
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    r = await visit(driver, TWO, "/toss")
    assert r.headers.getall("Set-Cookie", []) == []
    await visit(driver, WWW, "/search")
    await visit(driver, CDN, "/search")
    assert [dict(q.headers).get("Cookie") for q in one.requests] == [None, None]
    await visit(driver, TWO, "/search")
    assert received(two) == {"own": "1"}


async def test_two_instances_on_redis_keep_patrons_jars_apart(
    tmp_path: Path, running_slapd: Any, redis_url: str, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Two proxies on one Redis, two patrons, 24 overlapping requests spread over both, each
    answer setting a per-patron cookie: no request carries the other patron's cookie."""
    from tests.harness import free_port
    from tests.test_scale_out import second_config

    vendor = await vendor_factory(WWW)

    async def per_patron(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.01)
        p = request.query["p"]
        return await setter(f"who={p}; Path=/", f"{p}{request.query['n']}=1; Path=/")(request)

    vendor.routes["/who"] = per_patron
    port_a, port_b = free_port(), free_port()
    cfg_a = write_config(
        tmp_path,
        port=port_a,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[WWW, "*.vendor-one.test"])},
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )
    a = await proxy_factory(cfg_a)
    b = await proxy_factory(second_config(cfg_a, port_b))
    assert (await a.login(CANARY.uid, CANARY.password)).status == 303
    canary = a.session_id()
    assert (await a.login(WREN.uid, WREN.password)).status == 303
    wren = a.session_id()
    host = a.mapped(WWW)
    cookie = a.config.server.cookie_name

    async def go(driver: ProxyDriver, sid: str | None, path: str) -> None:
        r = await driver.client.get(
            path, headers={"Host": host, "Cookie": f"{cookie}={sid}"}, allow_redirects=False
        )
        await r.read()
        assert r.status == 200

    runs = []
    for n in range(6):
        for sid, p in ((canary, "canary"), (wren, "wren")):
            runs.append(go(a, sid, f"/who?p={p}&n={n}"))
            runs.append(go(b, sid, f"/who?p={p}&n={n + 10}"))
    await asyncio.gather(*runs)
    for req in vendor.requests:
        sent = dict(req.headers).get("Cookie", "")
        other = "wren" if "p=canary" in req.path_qs else "canary"
        assert other not in sent, (req.path_qs, sent)
    await go(b, canary, "/search")
    got = received(vendor)
    assert got["who"] == "canary" and not [k for k in got if k.startswith("wren")]
