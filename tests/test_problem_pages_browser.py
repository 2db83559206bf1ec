"""Patron-facing pages not covered elsewhere, each reached by a real request in headless Chromium:
axe-clean, one h1, a title, the right status, no-store, and a next step that works.

One proxy (real slapd, recording aiohttp vendors) serves the module. Eligibility per vendor is an
LDAP filter on the card number, so the canary patron sees several databases, WREN exactly one and
HERON none.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, Page, Response

from proxy.app import SERVICES
from proxy.errors import StoreUnavailable
from proxy.web.messages import MESSAGES, UI
from tests.browser_support import axe_browser, axe_serious, new_page
from tests.canary import CANARY, EXPIRED, HERON, WREN
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    free_port,
    html_page,
    ldap_directory,
    start_proxy,
    write_config,
)

pytestmark = [pytest.mark.browser, pytest.mark.ldap, pytest.mark.asyncio(loop_scope="module")]

ONE = "www.review-one.test"
TWO = "www.review-two.test"
DEAD = "www.review-dead.test"


def _vendor(vid: str, title: str, host: str, port: int, who: list[str], extra: str = "") -> str:
    """A vendor file; `who` are the card numbers its eligibility filter lets in."""
    uids = "".join(f"(uid={u})" for u in who)
    return (
        f'id = "{vid}"\ntitle = "{title}"\ndescription = "A database for the review."\n'
        f'origin = "http://{host}"\nhosts = ["{host}"]\nauth = "assertion"\n'
        f'connect_to = "127.0.0.1:{port}"\n{extra}\n'
        f'[eligibility]\nldap_filter = "(|{uids})"\n'
    )


class Stack:
    def __init__(self, driver: ProxyDriver, client: Any, vendors: list[RecordingVendor]) -> None:
        self.driver = driver
        self.client = client
        self.vendors = vendors
        self.port = driver.port
        self.own = f"http://{driver.public}"

    def url(self, path: str = "/") -> str:
        return self.own + path

    def mapped(self, host: str, path: str = "/") -> str:
        return f"http://{self.driver.mapped(host)}{path}"

    @property
    def svc(self) -> Any:
        return self.client.app[SERVICES]


async def _slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(5)
    return web.Response(text="late")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(slapd: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    slapd.start()
    root = tmp_path_factory.mktemp("review-pages")
    one, two = RecordingVendor(host=ONE), RecordingVendor(host=TWO)
    for v in (one, two):
        await v.start()
        v.routes["/slow"] = _slow
        v.routes["/page"] = html_page("<!doctype html><title>vendor</title><p>vendor page</p>")
    dead_port = free_port()
    vendors = {
        "one": _vendor(
            "one", "Alpha Encyclopedia", ONE, one.port, [CANARY.uid, WREN.uid], "timeout_s = 1.0"
        ),
        "two": _vendor(
            "two", "Beta News", TWO, two.port, [CANARY.uid], "[limits]\nmax_upload_bytes = 1024"
        ),
        "dead": _vendor("dead", "Gamma Archive", DEAD, dead_port, [CANARY.uid]),
    }
    cfg = write_config(
        root,
        port=free_port(),
        directory=ldap_directory(slapd, root),
        vendors=vendors,
        extra="\n[throttle]\naddress_limit = 1000\n",
    )
    client, driver = await start_proxy(cfg, io.StringIO())
    s = Stack(driver, client, [one, two])
    yield s
    await client.close()
    for v in (one, two):
        await v.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with axe_browser() as b:
        yield b


# --------------------------------------------------------------------------- reaching each page


async def sign_in(
    page: Page, stack: Stack, card: str = CANARY.uid, pin: str = CANARY.password
) -> Response | None:
    await page.goto(stack.url("/login"))
    await page.fill("#username", card)
    await page.fill("#password", pin)
    async with page.expect_navigation() as nav:
        await page.click("button[type=submit]")
    return await nav.value


async def _sid(page: Page, stack: Stack) -> str:
    name = stack.driver.config.server.cookie_name
    return next(c["value"] for c in await page.context.cookies() if c["name"] == name)


class StoreDown:
    """What RedisStore raises when it does not answer, put on the memory store for a while."""

    def __init__(self, stack: Stack) -> None:
        self.store = stack.svc.sessions.store

    async def __aenter__(self) -> None:
        async def down(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("session store (redis) did not answer: ConnectionError")

        self.real = self.store.get, self.store.get_versioned, self.store.delete
        self.store.get = self.store.get_versioned = self.store.delete = down

    async def __aexit__(self, *exc: object) -> None:
        self.store.get, self.store.get_versioned, self.store.delete = self.real


async def p_logout_forget(page: Page, stack: Stack) -> Response | None:
    await sign_in(page, stack)
    await page.goto(stack.mapped(ONE, "/page"))
    await page.goto(stack.url("/menu"))
    async with page.expect_navigation() as nav:
        await page.click("header form.signout button")
    assert await page.locator("img.forget").count() == 2  # the vendor host used, two parts
    return await nav.value


async def p_logout_store_down(page: Page, stack: Stack) -> Response | None:
    await sign_in(page, stack)
    async with StoreDown(stack):
        async with page.expect_navigation() as nav:
            await page.click("header form.signout button")
        return await nav.value


async def p_store_down(page: Page, stack: Stack) -> Response | None:
    await sign_in(page, stack)
    async with StoreDown(stack):
        return await page.goto(stack.url("/menu"))


async def p_suspended(page: Page, stack: Stack) -> Response | None:
    await sign_in(page, stack)
    await stack.svc.sessions.suspend(await _sid(page, stack), "requests")
    return await page.goto(stack.mapped(ONE, "/page"))


async def p_not_included(page: Page, stack: Stack) -> Response | None:
    await sign_in(page, stack, WREN.uid, WREN.password)
    return await page.goto(stack.mapped(TWO, "/page"))


async def _rules_changed(page: Page, stack: Stack, url: str) -> Response | None:
    """`url` after a reload changed database one's rule since the sign-in (its mark in force
    is not the one the session was decided under)."""
    await sign_in(page, stack)
    marks = stack.svc.eligibility
    stack.svc.eligibility = {**marks, "one": marks["one"] + "-changed"}
    try:
        return await page.goto(url)
    finally:
        stack.svc.eligibility = marks


async def p_rules_changed(page: Page, stack: Stack) -> Response | None:
    return await _rules_changed(page, stack, stack.mapped(ONE, "/page"))


async def p_menu_rules_changed(page: Page, stack: Stack) -> Response | None:
    r = await _rules_changed(page, stack, stack.url("/menu"))
    assert MESSAGES["rules_changed_menu"].title in await page.content()
    return r


async def p_not_found(page: Page, stack: Stack) -> Response | None:
    return await page.goto(stack.url("/no-such-page"))


async def p_vendor_timeout(page: Page, stack: Stack) -> Response | None:
    await sign_in(page, stack)
    return await page.goto(stack.mapped(ONE, "/slow?q=secret-topic"))


async def p_conflict(page: Page, stack: Stack) -> Response | None:
    await sign_in(page, stack)
    name = stack.driver.config.server.cookie_name
    await page.context.add_cookies(
        [{"name": name, "value": "tossed-by-a-page", "domain": "proxy.localhost", "path": "/menu"}]
    )
    return await page.goto(stack.url("/menu"))


async def _post_form(page: Page, action: str) -> Response | None:
    await page.evaluate(
        """action => { const f = document.createElement('form'); f.method = 'post';
           f.action = action; const i = document.createElement('input'); i.name = 'x';
           i.value = 'y'; f.appendChild(i); document.body.appendChild(f); f.submit(); }""",
        action,
    )
    await page.wait_for_load_state()
    return None


async def p_405(page: Page, stack: Stack) -> Response | None:
    await page.goto(stack.url("/privacy"))
    async with page.expect_navigation() as nav:
        await _post_form(page, stack.url("/privacy"))
    return await nav.value


async def p_csrf(page: Page, stack: Stack) -> Response | None:
    await page.goto(stack.url("/login"))
    await page.context.clear_cookies()
    await page.fill("#username", CANARY.uid)
    await page.fill("#password", CANARY.password)
    async with page.expect_navigation() as nav:
        await page.click("button[type=submit]")
    return await nav.value


async def p_menu_zero(page: Page, stack: Stack) -> Response | None:
    return await sign_in(page, stack, HERON.uid, HERON.password)


async def p_menu_one(page: Page, stack: Stack) -> Response | None:
    return await sign_in(page, stack, WREN.uid, WREN.password)


async def p_not_eligible(page: Page, stack: Stack) -> Response | None:
    return await sign_in(page, stack, EXPIRED.uid, EXPIRED.password)


FOREIGN_FORM = """<!doctype html><title>v</title><form method="post" action="{own}/login">
<input name="username" value="1"><input name="password" value="2"><input name="csrf" value="3">
</form><script>document.forms[0].submit();</script>"""

BIG_FORM = """<!doctype html><title>v</title><form method="post" action="/upload">
<input name="text" value="{text}"></form><script>document.forms[0].submit();</script>"""


async def p_foreign_form(page: Page, stack: Stack) -> Response | None:
    stack.vendors[0].routes["/foreign"] = html_page(FOREIGN_FORM.format(own=stack.own))
    await sign_in(page, stack)
    async with page.expect_navigation(url=stack.url("/login")) as nav:
        await page.goto(stack.mapped(ONE, "/foreign"))
    return await nav.value


async def p_too_large(page: Page, stack: Stack) -> Response | None:
    stack.vendors[1].routes["/big"] = html_page(BIG_FORM.format(text="x" * 4000))
    await sign_in(page, stack)
    async with page.expect_navigation(url=stack.mapped(TWO, "/upload")) as nav:
        await page.goto(stack.mapped(TWO, "/big"))
    return await nav.value


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def down(slapd: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A second proxy whose directory does not answer (nothing listens on its LDAP port)."""
    root = tmp_path_factory.mktemp("review-pages-down")
    dead = f"ldap://127.0.0.1:{free_port()}"
    cfg = write_config(
        root,
        port=free_port(),
        directory=ldap_directory(slapd, root, urls=[dead], timeout_s=1.0),
        vendors={"dead": _vendor("dead", "Gamma Archive", DEAD, free_port(), [CANARY.uid])},
    )
    client, driver = await start_proxy(cfg, io.StringIO())
    yield Stack(driver, client, [])
    await client.close()


# --------------------------------------------------------------------------- next steps that work


async def test_the_paused_sessions_sign_out_link_leads_to_a_sign_out_that_works(
    stack: Stack, browser: Browser
) -> None:
    """A patron whose session usage limits paused (429 page, on the database's mapped host)
    follows the page's own "Sign out": a sign-out cannot be asked from a vendor host, so the
    link leads to the proxy's "Sign out?" page, not to "something other than you asked to sign
    you out", and its button signs the patron out."""
    context, page, _ = await new_page(browser)
    r = await p_suspended(page, stack)
    assert r is not None and r.status == 429
    sid = await _sid(page, stack)
    async with page.expect_navigation():
        await page.get_by_role("link", name=UI["sign_out"]).click()
    confirm = (await page.locator("h1").inner_text(), await page.title())
    assert await stack.svc.sessions.load(sid) is not None, "a link alone ends nothing"
    async with page.expect_navigation():
        await page.get_by_role("button", name=UI["sign_out"]).click()
    h1 = await page.locator("h1").inner_text()
    alive = await stack.svc.sessions.load(sid) is not None
    await context.close()
    assert confirm[0] == MESSAGES["logout_confirm"].title
    assert MESSAGES["logout_not_asked"].title not in confirm[1]
    assert (h1, alive) == (UI["signed_out_heading"], False)


@pytest.mark.parametrize("where", ["own", "vendor"])
async def test_the_store_outage_page_offers_to_try_again_where_the_patron_was(
    stack: Stack, browser: Browser, where: str
) -> None:
    """The 503 "briefly unavailable" page (session store down) has a "Try again" link to the
    very address the patron asked for, on the proxy's host or the database's mapped host, and
    once the store answers again it gets the page."""
    context, page, _ = await new_page(browser)
    await sign_in(page, stack)
    url = stack.url("/menu") if where == "own" else stack.mapped(ONE, "/page?q=1")
    async with StoreDown(stack):
        r = await page.goto(url)
        assert r is not None and r.status == 503
        assert await page.locator("h1").inner_text() == MESSAGES["store_unavailable"].title
        link = page.get_by_role("link", name=UI["try_again"])
        href = await link.get_attribute("href")
    async with page.expect_navigation():
        await link.click()
    status = await page.evaluate("performance.getEntriesByType('navigation')[0].responseStatus")
    await context.close()
    assert href == url
    assert status == 200


# --------------------------------------------------------------------------- pages not covered by
# the accessibility tests in test_browser.py and test_sign_out_edges.py


async def p_directory_down(page: Page, stack: Stack) -> Response | None:
    return await sign_in(page, stack)


NEW_PAGES: dict[str, tuple[str, int, Callable[[Page, Stack], Awaitable[Response | None]]]] = {
    # name: (stack, status, how to reach it)
    "sign-out-with-forget-images": ("stack", 200, p_logout_forget),
    "sign-out-store-down": ("stack", 503, p_logout_store_down),
    "store-down": ("stack", 503, p_store_down),
    "suspended": ("stack", 429, p_suspended),
    "not-included": ("stack", 403, p_not_included),
    "rules-changed": ("stack", 403, p_rules_changed),
    "menu-rules-changed": ("stack", 200, p_menu_rules_changed),
    "not-found": ("stack", 404, p_not_found),
    "vendor-timeout": ("stack", 504, p_vendor_timeout),
    "two-session-cookies": ("stack", 400, p_conflict),
    "method-not-allowed": ("stack", 405, p_405),
    "csrf": ("stack", 400, p_csrf),
    "foreign-form": ("stack", 403, p_foreign_form),
    "too-large": ("stack", 413, p_too_large),
    "menu-zero-databases": ("stack", 200, p_menu_zero),
    "menu-one-database": ("stack", 200, p_menu_one),
    "sign-in-not-eligible": ("stack", 403, p_not_eligible),
    "sign-in-directory-down": ("down", 503, p_directory_down),
}


@pytest.mark.parametrize("name", list(NEW_PAGES))
async def test_page_is_axe_clean_with_a_language_one_h1_its_status_and_no_store(
    stack: Stack, down: Stack, browser: Browser, name: str
) -> None:
    """Reached in Chromium: no serious or critical axe violation, lang="en", one h1, a title
    naming the library, the status the case calls for, Cache-Control: no-store."""
    which, status, reach = NEW_PAGES[name]
    context, page, _ = await new_page(browser)
    r = await reach(page, down if which == "down" else stack)
    assert r is not None
    shape = await page.evaluate(
        """() => [document.documentElement.lang, document.querySelectorAll('h1').length,
                  document.title]"""
    )
    violations = await axe_serious(page)
    await context.close()
    assert (r.status, r.headers.get("cache-control")) == (status, "no-store")
    assert shape[:2] == ["en", 1] and shape[2].endswith("Weston Public Library")
    assert violations == []
