"""From a review of starting points and deep links: `/login?url=…` (EZproxy's unencoded
form), `/login?qurl=<encoded>`, links already signed in, the menu's links, and the vendor's end of
each, as a library website and catalog use them, through the real proxy, real slapd and a
recording vendor (proxy/web/pages.py `starting_point`, `login_form`, `login_submit`, `menu`;
proxy/redirects.py `safe_target`). Each test was a defect when written; the edges decided in the
fix follow the reviewer's tests.
"""

from __future__ import annotations

import html as htmllib
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from aiohttp import web
from yarl import URL

from proxy.demo_vendor import DEMO_HOST
from proxy.web.messages import MESSAGES, UI
from proxy.web.pages import NOTICE_COOKIE
from tests.browser_support import axe_browser, new_page, start_stack
from tests.canary import CANARY
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

pytestmark = [pytest.mark.ldap]

VENDOR_HOST = "www.vendor-one.test"


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor]:
    vendor: RecordingVendor = await vendor_factory(VENDOR_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[VENDOR_HOST, "*.vendor-one.test"])},
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    return driver, vendor


async def raw_get(driver: ProxyDriver, path_qs: str, host: str, sid: str | None = None) -> Any:
    """GET `path_qs` exactly as written (no re-quoting), as a browser sends a link's bytes."""
    headers = {"Host": host}
    if sid:
        headers["Cookie"] = f"{driver.config.server.cookie_name}={sid}"
    url = URL(f"http://127.0.0.1:{driver.port}{path_qs}", encoded=True)
    return await driver.client.session.request("GET", url, headers=headers, allow_redirects=False)


def form_fields(page: str) -> tuple[str, str]:
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    url = page.split('name="url" value="', 1)[1].split('"', 1)[0]
    return htmllib.unescape(csrf), htmllib.unescape(url)


async def sign_in_from_link(driver: ProxyDriver, login_query: str) -> Any:
    """The patron follows `/login?<login_query>`, gets the form, and signs in through it."""
    r = await raw_get(driver, "/login?" + login_query, driver.public)
    assert r.status == 200, r.status
    csrf, url = form_fields(await r.text())
    signed = await driver.client.post(
        "/login",
        data={"username": CANARY.uid, "password": CANARY.password, "url": url, "csrf": csrf},
        headers={"Host": driver.public},
        allow_redirects=False,
    )
    assert signed.status == 303, signed.status
    driver.sid = signed.cookies[driver.config.server.cookie_name].value
    return signed


async def follow_to_vendor(driver: ProxyDriver, vendor: RecordingVendor, location: str) -> str:
    """Open the Location the proxy answered; the path and query the vendor received."""
    parts = urlsplit(location)
    assert parts.netloc == driver.mapped(VENDOR_HOST) or parts.netloc.endswith(
        f".proxy.localhost:{driver.port}"
    ), f"landed on {location}"
    path_qs = parts.path + (f"?{parts.query}" if parts.query else "")
    raw: list[str] = []

    async def record_raw(request: web.Request) -> web.StreamResponse:
        raw.append(request.raw_path)  # the bytes of the request target, as received
        return web.Response(text="<p>article</p>", content_type="text/html")

    vendor.routes[URL(path_qs, encoded=True).path] = record_raw
    r = await raw_get(driver, path_qs, parts.netloc, driver.sid)
    assert r.status == 200, r.status
    assert len(raw) == 1, "the vendor page was not asked for"
    return raw[0]


# --------------------------------------------------------------------------- deep links land


DEEP = [
    # (id, the link's query after /login?, what the vendor must receive)
    (
        "qurl-non-ascii",
        "qurl=" + quote(f"http://{VENDOR_HOST}/search?q=caf\u00e9&db=a9h", safe=""),
        "/search?q=caf%C3%A9&db=a9h",
    ),
    (
        "qurl-space",
        "qurl=" + quote(f"http://{VENDOR_HOST}/search?q=climate change&db=a9h", safe=""),
        "/search?q=climate%20change&db=a9h",
    ),
    (
        "url-unencoded-query-starting-with-ampersand",
        f"url=http://{VENDOR_HOST}/results?&db=a9h&AN=123&site=ehost-live",
        "/results?&db=a9h&AN=123&site=ehost-live",
    ),
    (
        "url-unencoded-query-starting-with-a-flag",
        f"url=http://{VENDOR_HOST}/openurl?fulltext&id=doi:10.1000/182&sid=library",
        "/openurl?fulltext&id=doi:10.1000/182&sid=library",
    ),
]


@pytest.mark.parametrize(("link", "received"), [d[1:] for d in DEEP], ids=[d[0] for d in DEEP])
async def test_a_deep_link_reaches_the_vendor_with_its_whole_address(
    setup: Any, link: str, received: str
) -> None:
    """A library website or catalog deep link: sign in through the form, follow the 303, and
    the vendor must receive the path and query the link was for. Instead the patron lands on
    the menu (space or non-ASCII in a `qurl`: `safe_target` refuses the decoded address rather
    than percent-encoding it as a browser would) or on the vendor's bare page with the link's
    parameters dropped (an unencoded `url=` whose own query does not start with `name=`:
    `starting_point` falls back to the parsed `url` parameter, cut at the first `&`)."""
    driver, vendor = setup
    signed = await sign_in_from_link(driver, link)
    got = await follow_to_vendor(driver, vendor, signed.headers["Location"])
    assert got == received


async def test_a_signed_in_patron_following_the_same_links_lands_on_the_page(setup: Any) -> None:
    """Already signed in, the same `qurl` link with a non-ASCII search term: straight on to
    the vendor page, not the menu."""
    driver, vendor = setup
    await sign_in_from_link(driver, "")
    target = f"http://{VENDOR_HOST}/search?q=caf\u00e9"
    r = await raw_get(driver, "/login?qurl=" + quote(target, safe=""), driver.public, driver.sid)
    assert r.status == 303
    got = await follow_to_vendor(driver, vendor, r.headers["Location"])
    assert got == "/search?q=caf%C3%A9"


async def test_an_encoded_fragment_is_kept_for_a_hash_routed_database(setup: Any) -> None:
    """`qurl=` of `https://app.vendor/#/article/42` (single-page databases route by the
    fragment): `safe_target` builds the mapped address from path and query only, so the patron
    lands on the database's home page instead of the article. The fragment never reaches the
    vendor over the wire; it has to be in the Location for the browser to keep it."""
    driver, _ = setup
    await sign_in_from_link(driver, "")
    target = f"http://{VENDOR_HOST}/app/#/article/42?tab=full"
    r = await raw_get(driver, "/login?qurl=" + quote(target, safe=""), driver.public, driver.sid)
    assert r.status == 303
    assert r.headers["Location"] == f"http://{driver.mapped(VENDOR_HOST)}/app/#/article/42?tab=full"


async def test_a_long_deep_link_is_not_cut_short(setup: Any) -> None:
    """A catalog link of some 5 000 characters (an OpenURL with a long title and abstract, a
    saved search): `starting_point` keeps only the first 4 096 (`MAX_START`) and `safe_target`
    takes the cut address, so the vendor receives a query cut mid-value and the patron a wrong
    or failed search, with nothing said. The request line is well within the server's limit
    (8 190), and the forwarder passes such an address whole once signed in: the sign-in must
    carry the whole address to the vendor too."""
    driver, vendor = setup
    query = "sid=library&title=" + "a" * 4900 + "&end=1"
    signed = await sign_in_from_link(driver, f"url=http://{VENDOR_HOST}/openurl?{query}")
    location = signed.headers["Location"]
    assert location.startswith(f"http://{driver.mapped(VENDOR_HOST)}/"), (
        f"landed on {location[:80]}"
    )
    got = await follow_to_vendor(driver, vendor, location)
    assert got == f"/openurl?{query}", f"the vendor got {len(got)} characters, ending {got[-20:]!r}"


# --------------------------------------------------------------------------- not configured


async def test_a_signed_in_patron_following_a_link_to_an_unconfigured_site_is_told(
    setup: Any,
) -> None:
    """A patron who signed in earlier follows a library link to a database the library does not
    have (`/login?url=http://www.not-subscribed.test/article/42`). After a fresh sign-in the
    menu says so (`NOTICE_COOKIE`), but already signed in `login_form` sends them to the menu
    with no word about it: they hunt the list for a database that is not there."""
    driver, _ = setup
    await sign_in_from_link(driver, "")
    target = "http://www.not-subscribed.test/article/42"
    r = await raw_get(driver, "/login?url=" + quote(target, safe=""), driver.public, driver.sid)
    assert r.status == 303
    assert urlsplit(r.headers["Location"]).path == "/menu"
    menu = await raw_get(driver, "/menu", driver.public, driver.sid)
    text = await menu.text()
    assert NOTICE_COOKIE in r.cookies or MESSAGES["not_configured"].title in text, (
        "the menu does not say the address is none of the library's databases"
    )


# --------------------------------------------------------------------------- byte-exact


async def test_the_sign_in_redirect_keeps_the_links_percent_escapes_as_written(setup: Any) -> None:
    """The link's address goes through the sign-in form byte for byte (the hidden field holds
    it exactly), and a request on the mapped host is forwarded byte for byte; but the 303 after
    sign-in (and the one for a signed-in patron) is built with aiohttp's `HTTPSeeOther`, whose
    yarl `URL` re-quotes the Location: `%3B` in the path becomes `;` (a path parameter to a
    servlet vendor), `%2F` and `%3A` in the query become `/` and `:`, `%7E` becomes `~`, a lone
    `%` becomes `%25`. A signed link (a token over the exact query bytes) then fails at the
    vendor. The vendor must receive the link's path and query exactly as written."""
    driver, vendor = setup
    path_qs = "/doc/10.1000%3B182?token=ab%2Fcd%2B%3D%3D&ref=urn%3Aisbn%3A123&k=%7E&pct=100%"
    signed = await sign_in_from_link(driver, f"url=http://{VENDOR_HOST}{path_qs}")
    got = await follow_to_vendor(driver, vendor, signed.headers["Location"])
    assert got == path_qs


# --------------------------------------------------------------------------- the menu

MENU_STARTS = [
    ("fragment", "http://www.vendor-two.test/app/#/home", "/app/#/home"),
    ("non-ascii", "http://www.vendor-two.test/b\u00fasqueda?lang=es", "/b%C3%BAsqueda?lang=es"),
]


@pytest.mark.parametrize(
    ("start", "mapped_path"), [m[1:] for m in MENU_STARTS], ids=[m[0] for m in MENU_STARTS]
)
async def test_the_menu_link_goes_where_the_vendor_config_says(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    start: str,
    mapped_path: str,
) -> None:
    """A vendor's `start_url` ("where the menu link goes", docs/vendor-setup.md) is accepted by
    the config check, but the menu builds its link with `safe_target`, which drops a fragment
    (a single-page database's `#/home`: the link opens the bare app) and refuses a non-ASCII
    path (a Spanish-language database's `/búsqueda`: the link is `href="#"` and goes nowhere)."""
    vendor: RecordingVendor = await vendor_factory("www.vendor-two.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"two": vendor_toml("two", vendor, title="Two", extra=f'start_url = "{start}"\n')},
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    await sign_in_from_link(driver, "")
    menu = await raw_get(driver, "/menu", driver.public, driver.sid)
    page = await menu.text()
    hrefs = [htmllib.unescape(h) for h in re.findall(r'href="([^"]*)"[^>]*>\s*Two\b', page)]
    assert hrefs == [f"http://{driver.mapped('www.vendor-two.test')}{mapped_path}"]


# --------------------------------------------------------------------------- in Chromium

BROWSER_LINKS = [
    (
        "url-unencoded-query-starting-with-ampersand",
        lambda: f"/login?url=http://{DEMO_HOST}/search?&q=cats&page=2",
        "/search?&q=cats&page=2",
    ),
    (
        "qurl-non-ascii",
        lambda: "/login?qurl=" + quote(f"http://{DEMO_HOST}/search?q=caf\u00e9&page=2", safe=""),
        "/search?q=caf%C3%A9&page=2",
    ),
]


@pytest.mark.browser
@pytest.mark.parametrize(
    ("link", "landed_path"), [b[1:] for b in BROWSER_LINKS], ids=[b[0] for b in BROWSER_LINKS]
)
async def test_a_catalog_link_through_the_real_form_lands_on_its_page(
    tmp_path: Path, running_slapd: Any, link: Any, landed_path: str
) -> None:
    """The same links in headless Chromium, typed through the real sign-in form: the patron
    must land on the vendor page the link was for, not the menu or the bare search page."""
    stack = await start_stack(tmp_path, running_slapd)
    try:
        async with axe_browser() as browser:
            context, page, _ = await new_page(browser)
            await page.goto(stack.url(link()))
            await page.get_by_label(UI["card_label"]).fill(CANARY.uid)
            await page.get_by_label(UI["pin_label"], exact=True).fill(CANARY.password)
            async with page.expect_navigation():
                await page.get_by_role("button", name=UI["sign_in"]).click()
            landed = page.url
            await context.close()
    finally:
        await stack.close()
    assert landed == stack.mapped_url(DEMO_HOST, landed_path)


# --------------------------------------------------------------------------- edges of the fix


async def test_a_link_as_long_as_a_request_line_with_many_parameters_signs_in(setup: Any) -> None:
    """A link near the server's request-line limit (8 190) made mostly of `&`, `=` and `/`:
    the sign-in form posts it percent-encoded, three times as long, and the post must still be
    taken (MAX_LOGIN_BODY), and the vendor receive every byte."""
    driver, vendor = setup
    query = "&".join(f"k{i}=a/b" for i in range(1000))[: 8190 - 200]
    query = query.rpartition("&")[0] + "&end=1"
    signed = await sign_in_from_link(driver, f"url=http://{VENDOR_HOST}/openurl?{query}")
    got = await follow_to_vendor(driver, vendor, signed.headers["Location"])
    assert got == f"/openurl?{query}"


async def test_an_address_too_long_to_open_is_refused_with_a_notice_never_cut(setup: Any) -> None:
    """An address on a configured database whose request line a browser could not send (a
    sign-in post holding one of 9 000 characters: a link's own request line bounds any `url`
    or `qurl` that comes by GET): the patron lands on the menu, which says why, rather than on
    a page asked for with its address cut short."""
    driver, _ = setup
    r = await raw_get(driver, "/login", driver.public)
    csrf, _ = form_fields(await r.text())
    url = f"http://{VENDOR_HOST}/openurl?q=" + "a" * 9000
    signed = await driver.client.post(
        "/login",
        data={"username": CANARY.uid, "password": CANARY.password, "url": url, "csrf": csrf},
        headers={"Host": driver.public},
        allow_redirects=False,
    )
    assert signed.status == 303
    assert signed.headers["Location"] == f"http://{driver.public}/menu"
    assert signed.cookies[NOTICE_COOKIE].value == "link_too_long"
    driver.sid = signed.cookies[driver.config.server.cookie_name].value
    menu = await raw_get(driver, "/menu", driver.public, driver.sid)
    assert MESSAGES["link_too_long"].title in htmllib.unescape(await menu.text())


async def test_a_signed_in_patron_is_sent_on_byte_for_byte_with_the_fragment(setup: Any) -> None:
    """Already signed in, the redirect is built as after sign-in: a `qurl` whose address holds
    `%3B`, `%7E`, a lone `%` and a fragment gets a Location with all of them as written, and
    the vendor receives the path and query byte for byte."""
    driver, vendor = setup
    await sign_in_from_link(driver, "")
    path_qs = "/doc/10.1000%3B182?k=%7E&pct=100%"
    target = f"http://{VENDOR_HOST}{path_qs}#/view"
    r = await raw_get(driver, "/login?qurl=" + quote(target, safe=""), driver.public, driver.sid)
    assert r.status == 303
    assert r.headers["Location"] == f"http://{driver.mapped(VENDOR_HOST)}{path_qs}#/view"
    got = await follow_to_vendor(driver, vendor, r.headers["Location"].partition("#")[0])
    assert got == path_qs
