"""A vendor's SameSite cookies go only where a browser would have sent them without the proxy.

Every vendor is served on a subdomain of the proxy's host, so to the browser all vendors are one
site and its SameSite rules protect nothing between them; the jar keeps each cookie's SameSite
and the proxy decides, from the page that started the request (its Origin or Referer mapped back
to the vendor URL it stands for), whether the vendor would have seen a cross-site request.
Vendor B (`www.vendor-b.test`, also `*.vendor-b.test`) sets one cookie of each kind; requests
carry the headers a browser sends when B's, A's or the proxy's own pages start them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from proxy.hosts import map_label
from proxy.jar import (
    cross_site_cookies,
    dump_jar,
    load_jar,
    merged_jar,
    storable_cross_site,
    store_set_cookies,
)
from proxy.public_suffix import registrable_domain
from proxy.sessions import Session, make_store, new_session_id
from tests.browser_support import launch
from tests.canary import CANARY
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    ldap_directory,
    sign_in_through_form,
    vendor_toml,
    write_config,
)

A = "www.vendor-a.test"
B = "www.vendor-b.test"
B_CDN = "cdn.vendor-b.test"
SET_COOKIES = (
    "strict=S; Path=/; SameSite=Strict",
    "lax=L; Path=/; SameSite=Lax",
    "unset=U; Path=/",
    "none=N; Path=/; SameSite=None",
)
ALL = {"strict", "lax", "unset", "none"}
LAX = {"lax", "unset", "none"}
NONE = {"none"}


def _jar(*set_cookies: str, url: str = "https://www.v.test/") -> list[dict[str, Any]]:
    jar = load_jar([])
    store_set_cookies(jar, url, list(set_cookies))
    return dump_jar(jar)


def _samesite(serialised: list[dict[str, Any]]) -> dict[str, str | None]:
    return {d["name"]: d["samesite"] for d in serialised}


# --- the jar keeps SameSite ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("set_cookie", "kept"),
    [
        ("c=1; SameSite=Strict", "strict"),
        ("c=1; samesite=LAX", "lax"),
        ("c=1; SAMESITE=none; Secure", "none"),
        ("c=1", None),
        ("c=1; SameSite=Sometimes", None),  # RFC 6265bis: an unknown value is "Default"
        ("c=1; SameSite", None),
    ],
)
def test_samesite_survives_dump_and_load(set_cookie: str, kept: str | None) -> None:
    serialised = _jar(set_cookie)
    assert _samesite(serialised) == {"c": kept}
    assert _samesite(dump_jar(load_jar(serialised))) == {"c": kept}


def test_merged_jar_keeps_samesite() -> None:
    before = _jar("a=1; SameSite=Strict")
    ours = _jar("a=1; SameSite=Strict", "b=2; SameSite=Lax")
    latest = _jar("a=1; SameSite=Strict", "c=3; SameSite=None")
    merged = dump_jar(merged_jar(latest, before, ours))
    assert _samesite(merged) == {"a": "strict", "b": "lax", "c": "none"}


def test_a_changed_samesite_alone_changes_the_jar() -> None:
    jar = load_jar(_jar("a=1; Path=/; SameSite=None"))
    assert store_set_cookies(jar, "https://www.v.test/", ["a=1; Path=/; SameSite=Strict"])
    assert _samesite(dump_jar(jar)) == {"a": "strict"}


@pytest.mark.redis
async def test_samesite_survives_the_redis_store(redis_url: str) -> None:
    store = make_store("redis", url=redis_url, key=b"samesite test sealing secret, synthetic")
    now = time.time()
    session = Session(
        id=new_session_id(),
        patron_key="pk-synthetic-0001",
        databases=frozenset({"b"}),
        created=now,
        last_seen=now,
        csrf="csrf-synthetic",
        jars={"b": _jar(*SET_COOKIES)},
    )
    try:
        await store.put(session, 30)
        loaded = await store.get(session.id)
    finally:
        await store.close()
    assert loaded is not None
    expected = {"strict": "strict", "lax": "lax", "unset": None, "none": "none"}
    assert _samesite(loaded.jars["b"]) == expected
    assert _samesite(dump_jar(load_jar(loaded.jars["b"]))) == expected


# --- which cookies a cross-site request gets ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "top_level", "sent"),
    [
        ("GET", True, LAX),
        ("HEAD", True, LAX),
        ("POST", True, NONE),
        ("GET", False, NONE),
        ("POST", False, NONE),
    ],
)
def test_cross_site_cookies_follow_rfc_6265bis(
    method: str, top_level: bool, sent: set[str]
) -> None:
    jar = _jar(*SET_COOKIES)
    assert {d["name"] for d in cross_site_cookies(jar, method=method, top_level=top_level)} == sent


def test_registrable_domains_decide_the_site() -> None:
    assert registrable_domain("www.vendor-b.test") == registrable_domain("cdn.vendor-b.test")
    assert registrable_domain("a.bbc.co.uk") != registrable_domain("b.other.co.uk")
    assert registrable_domain("x.github.io") != registrable_domain("y.github.io")
    assert registrable_domain("127.0.0.1") == "127.0.0.1"


# --- end to end: what vendor B receives ---------------------------------------------------------


async def set_cookies(request: web.Request) -> web.StreamResponse:
    resp = web.Response(text="<p>home</p>", content_type="text/html")
    for value in SET_COOKIES:
        resp.headers.add("Set-Cookie", value)
    return resp


@pytest.fixture
async def stack(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> AsyncIterator[tuple[ProxyDriver, RecordingVendor]]:
    a = await vendor_factory(A)
    b = await vendor_factory(B)
    b.routes["/home"] = set_cookies
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "a": vendor_toml("a", a),
            "b": vendor_toml("b", b, hosts=[B, "*.vendor-b.test"]),
        },
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    r = await driver.get_vendor(B, "/home", headers={"Sec-Fetch-Site": "none"})
    assert r.status == 200
    yield driver, b


def _received(vendor: RecordingVendor) -> set[str]:
    values = [v for k, v in vendor.requests[-1].headers if k.lower() == "cookie"]
    jar: SimpleCookie = SimpleCookie()
    for v in values:
        jar.load(v)
    return set(jar)


def _nav(site: str = "same-site", dest: str = "document") -> dict[str, str]:
    mode = "navigate" if dest in ("document", "iframe") else "no-cors"
    return {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest}


def _from(driver: ProxyDriver, vendor_host: str, path: str = "") -> str:
    return f"http://{driver.mapped(vendor_host)}{path}"


async def _send(driver: ProxyDriver, method: str, headers: dict[str, str]) -> None:
    data = b"confirm=yes" if method == "POST" else None
    if data is not None:
        headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    r = await driver.get_vendor(B, "/account", method=method, headers=headers, data=data)
    await r.read()


@pytest.mark.parametrize(
    ("headers", "stored"),
    [
        (_nav(dest="image"), NONE),  # another vendor's page loads B's address as an image
        (_nav(dest="empty"), NONE),  # or fetches it
        (_nav(), ALL),  # a link the patron follows: a top-level navigation
        ({}, ALL),  # no fetch metadata (an older browser): taken for a navigation
    ],
)
async def test_cookies_a_cross_site_subresource_answer_sets_are_kept_only_if_none(
    stack: Any, headers: dict[str, str], stored: set[str]
) -> None:
    """Browsers store a SameSite Lax, Strict or unset cookie from the answer to a cross-site
    request only when it is a top-level navigation (RFC 6265bis 5.7). Without that, vendor A's
    page could plant cookies in B's jar, e.g. a B sign-in of A's choosing."""
    driver, b = stack
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303  # a fresh jar
    r = await driver.get_vendor(B, "/home", headers={"Referer": _from(driver, A, "/x"), **headers})
    assert r.status == 200
    await driver.get_vendor(B, "/account", headers={"Sec-Fetch-Site": "none"})
    assert _received(b) == stored


def test_storable_cross_site_keeps_samesite_none_only() -> None:
    assert storable_cross_site(
        [*SET_COOKIES, "odd=1; samesite = NONE ; Path=/", "x=1; Path=/; SameSite=Nonsense"]
    ) == ["none=N; Path=/; SameSite=None", "odd=1; samesite = NONE ; Path=/"]


async def test_strict_withheld_from_a_post_another_vendors_page_started(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "POST", {"Origin": _from(driver, A), **_nav(dest="empty")})
    assert _received(b) == NONE


async def test_strict_and_lax_sent_on_a_post_from_the_vendors_own_page(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "POST", {"Origin": _from(driver, B), **_nav("same-origin", "empty")})
    assert _received(b) == ALL


async def test_another_host_of_the_same_site_is_same_site(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "POST", {"Origin": _from(driver, B_CDN), **_nav(dest="empty")})
    assert _received(b) == ALL


async def test_lax_and_unset_sent_on_a_cross_site_top_level_get(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "GET", {"Referer": _from(driver, A, "/results?q=x"), **_nav()})
    assert _received(b) == LAX


async def test_lax_and_unset_withheld_from_a_cross_site_subresource(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "GET", {"Referer": _from(driver, A, "/results"), **_nav(dest="image")})
    assert _received(b) == NONE


async def test_lax_and_unset_withheld_from_a_cross_site_frame(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "GET", {"Referer": _from(driver, A, "/results"), **_nav(dest="iframe")})
    assert _received(b) == NONE


async def test_cross_site_get_without_fetch_metadata_counts_as_navigation(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "GET", {"Referer": _from(driver, A, "/results")})
    assert _received(b) == LAX


async def test_a_page_on_another_site_outside_the_proxy_is_cross_site(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "POST", {"Origin": "https://search.example", **_nav("cross-site")})
    assert _received(b) == NONE


async def test_opaque_origin_is_cross_site(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "POST", {"Origin": "null", **_nav("cross-site", dest="empty")})
    assert _received(b) == NONE


async def test_opaque_origin_from_one_of_the_proxys_pages_gets_no_strict(stack: Any) -> None:
    """A no-referrer (or same-origin) page posting a form to a sibling host sends `Origin: null`
    and `Sec-Fetch-Site: same-site`: maybe the vendor's own sign-on form, maybe another
    vendor hiding. Strict cookies stay home; Lax and unset ones go."""
    driver, b = stack
    await _send(driver, "POST", {"Origin": "null", **_nav(dest="document")})
    assert _received(b) == LAX


async def test_request_from_the_proxys_own_pages_is_same_site(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "POST", {"Origin": f"http://{driver.public}", **_nav()})
    assert _received(b) == ALL


async def test_typed_url_without_origin_or_referer_is_same_site(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "GET", {})
    assert _received(b) == ALL


async def test_menu_link_without_referer_is_same_site(stack: Any) -> None:
    """The proxy's pages send no Referer (Referrer-Policy: no-referrer); their links are
    top-level navigations the browser calls same-site."""
    driver, b = stack
    await _send(driver, "GET", _nav())
    assert _received(b) == ALL


async def test_a_subresource_a_proxied_page_asked_for_without_naming_itself_gets_no_strict(
    stack: Any,
) -> None:
    """A page can drop its Referer (`referrerpolicy=no-referrer`): the browser says only that a
    page of the same site (one of the proxy's hosts) asked for it. It may be B's own page on a
    sibling host (its images host, its sign-on frame), which would get Lax cookies without the
    proxy, or A's page hiding: Strict cookies stay home, Lax and unset ones go."""
    driver, b = stack
    await _send(driver, "GET", _nav(dest="image"))
    assert _received(b) == LAX


async def test_a_subresource_a_site_outside_the_proxy_asked_for_is_cross_site(stack: Any) -> None:
    driver, b = stack
    await _send(driver, "GET", _nav("cross-site", dest="image"))
    assert _received(b) == NONE


# --- in Chromium --------------------------------------------------------------------------------


def _page(body: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<!doctype html><title>results</title><p id=out>working</p>" + body,
            content_type="text/html",
        )

    return handler


async def _two_vendors(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor, RecordingVendor]:
    evil = await vendor_factory(A)
    good = await vendor_factory(B)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"evil": vendor_toml("evil", evil), "good": vendor_toml("good", good)},
        extra="\n[throttle]\naddress_limit = 1000\n",
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    return driver, evil, good


def _mapped(driver: ProxyDriver, vendor_host: str) -> str:
    return f"http://{map_label(vendor_host)}.{driver.public}"


def _cookies_on(vendor: RecordingVendor, path: str) -> str:
    [hit] = [r for r in vendor.requests if r.path_qs == path]
    return ";".join(v for k, v in hit.headers if k.lower() == "cookie")


@pytest.mark.browser
async def test_vendor_page_cannot_send_another_vendors_samesite_cookies(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Cross-vendor CSRF through the jar. Vendor B protects its account actions with a
    `SameSite=Strict` session cookie, which a browser never sends on a request started by
    another site's page. Through the proxy every vendor is same-site with every other, and the
    jar attached B's cookies whatever their SameSite: vendor A's page POSTs to B's mapped host
    and B would receive the patron's B session cookie, acting for the patron (deleting saved
    searches, changing account settings) on A's say-so."""
    driver, evil, good = await _two_vendors(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )

    async def start(request: web.Request) -> web.StreamResponse:
        resp = web.Response(text="<!doctype html><p id=out>home</p>", content_type="text/html")
        resp.headers["Set-Cookie"] = "gsid=good-session-secret; Path=/; HttpOnly; SameSite=Strict"
        return resp

    good.routes["/home"] = start
    script = (
        f'const good = location.protocol + "//" + "{map_label(B)}"'
        """ + location.host.slice(location.host.indexOf("."));
fetch(good + "/account/delete-history", {method: "POST", mode: "no-cors",
  credentials: "include", body: new URLSearchParams({confirm: "yes"})})
  .then(() => { document.getElementById("out").textContent = "posted"; },
        (e) => { document.getElementById("out").textContent = "failed " + e; });
"""
    )
    evil.routes["/hostile"] = _page("<script>" + script + "</script>")
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await (await browser.new_context()).new_page()
            await sign_in_through_form(page, f"http://{driver.public}")
            await page.goto(_mapped(driver, B) + "/home")
            assert await page.text_content("#out") == "home"
            await page.goto(_mapped(driver, A) + "/hostile")
            await page.wait_for_function("document.getElementById('out').textContent !== 'working'")
            assert await page.text_content("#out") == "posted"
        finally:
            await browser.close()

    cookie = _cookies_on(good, "/account/delete-history")
    assert "good-session-secret" not in cookie, "B's SameSite=Strict cookie went on A's request"


@pytest.mark.browser
async def test_chromium_link_to_another_vendor_carries_lax_not_strict(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """What Chromium really sends: a link on A's page to B is a cross-site top-level GET (Lax and
    unset cookies go, Strict does not), an image of B's on A's page is a sub-resource (only
    SameSite=None goes), and B's own form posting to B gets every cookie."""
    driver, evil, good = await _two_vendors(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    good.routes["/home"] = set_cookies
    good.routes["/own"] = _page(
        '<form method=post action="/account/save"><button id=save>save</button></form>'
    )
    good.routes["/account/save"] = _page("")
    good.routes["/landing"] = _page("")
    link = _mapped(driver, B) + "/landing"
    image = _mapped(driver, B) + "/pixel.gif"
    evil.routes["/results"] = _page(f'<img src="{image}"><a id=go href="{link}">B</a>')
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await (await browser.new_context()).new_page()
            await sign_in_through_form(page, f"http://{driver.public}")
            await page.goto(_mapped(driver, B) + "/home")
            await page.goto(_mapped(driver, A) + "/results")
            await page.wait_for_load_state("networkidle")
            await page.click("#go")
            await page.wait_for_url(link)
            await page.goto(_mapped(driver, B) + "/own")
            await page.click("#save")
            await page.wait_for_url(_mapped(driver, B) + "/account/save")
        finally:
            await browser.close()

    def names(path: str) -> set[str]:
        jar: SimpleCookie = SimpleCookie()
        jar.load(_cookies_on(good, path))
        return set(jar)

    assert names("/landing") == LAX
    assert names("/pixel.gif") == NONE
    assert names("/account/save") == ALL
