"""The patron pages in headless Chromium against a running proxy, real slapd and the demo vendor.

One proxy and one browser serve the module; each test gets fresh browser contexts (no shared
cookies). Screenshots of every page at desktop and phone width land in artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page

from proxy.demo_vendor import DEMO_HOST
from proxy.errors import StoreUnavailable
from proxy.web.messages import MESSAGES, UI, shown
from tests.browser_support import (
    DEAD_HOST,
    PAGE_BUDGET,
    PHONE,
    ZOOM_400,
    Stack,
    axe_browser,
    axe_serious,
    horizontal_overflow,
    new_page,
    page_weight,
    shoot,
    start_stack,
)
from tests.canary import CANARY, leaks

pytestmark = [pytest.mark.browser, pytest.mark.ldap, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(slapd: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    slapd.start()
    s = await start_stack(tmp_path_factory.mktemp("browser"), slapd)
    yield s
    await s.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with axe_browser() as b:
        yield b


# --------------------------------------------------------------------------- how to reach each page


async def submit(page: Page, button: Locator) -> None:
    """Click something that loads a new page, and wait for that page (not the old one)."""
    async with page.expect_navigation():
        await button.click()


async def sign_in(
    page: Page, stack: Stack, pin: str = CANARY.password, card: str = CANARY.uid
) -> None:
    await page.goto(stack.url("/login"))
    await page.get_by_label(UI["card_label"]).fill(card)
    await page.get_by_label(UI["pin_label"], exact=True).fill(pin)
    await submit(page, page.get_by_role("button", name=UI["sign_in"]))


async def end_session_on_server(page: Page, stack: Stack) -> None:
    """What idle expiry does: the store forgets the session while the browser keeps the cookie."""
    name = stack.driver.config.server.cookie_name
    sid = next(c["value"] for c in await page.context.cookies() if c["name"] == name)
    await stack.services.sessions.end(sid)


async def login(page: Page, stack: Stack) -> None:
    await page.goto(stack.url("/login"))


async def login_error(page: Page, stack: Stack) -> None:
    await sign_in(page, stack, pin="not-my-pin", card=stack.next_card())


async def too_many_attempts(page: Page, stack: Stack) -> None:
    card = stack.next_card()
    title = shown("too_many_attempts", {}).title
    for _ in range(20):
        await sign_in(page, stack, pin="not-my-pin", card=card)
        if await page.get_by_role("heading", name=title).count():
            return
    raise AssertionError("the sign-in throttle never answered")


async def login_expired(page: Page, stack: Stack) -> None:
    await sign_in(page, stack)
    await end_session_on_server(page, stack)
    await page.goto(stack.mapped_url(DEMO_HOST, "/"))


async def menu(page: Page, stack: Stack) -> None:
    await sign_in(page, stack)


async def privacy(page: Page, stack: Stack) -> None:
    await page.goto(stack.url("/privacy"))


async def logout(page: Page, stack: Stack) -> None:
    await sign_in(page, stack)
    await submit(page, page.get_by_role("button", name=UI["sign_out"]))


async def not_configured(page: Page, stack: Stack) -> None:
    await page.goto(f"http://no-such-database-test.proxy.localhost:{stack.port}/")


async def vendor_unavailable(page: Page, stack: Stack) -> None:
    await sign_in(page, stack)
    await page.goto(stack.mapped_url(DEAD_HOST, "/"))


PAGES: dict[str, Callable[[Page, Stack], Awaitable[None]]] = {
    "login": login,
    "login-error": login_error,
    "login-expired": login_expired,
    "menu": menu,
    "privacy": privacy,
    "logout": logout,
    "error-not-configured": not_configured,
    "error-vendor-unavailable": vendor_unavailable,
    "error-too-many-attempts": too_many_attempts,
}


# --------------------------------------------------------------------------- the patron's journey


async def test_patron_signs_in_opens_demo_vendor_from_menu_and_signs_out(
    stack: Stack, browser: Browser
) -> None:
    """Card and PIN → menu → demo vendor (assertion verified) → back → sign out → access gone;
    the browser talks to no host but the proxy's own and its mapped vendor hosts."""
    context, page, watch = await new_page(browser)
    await sign_in(page, stack)
    assert page.url == stack.url("/menu")
    await submit(page, page.get_by_role("link", name="Demo Database (vendor's-eye view)"))
    assert page.url == stack.mapped_url(DEMO_HOST, "/")
    assert await page.get_by_text("signature verified").count() == 1
    assert not leaks((await page.content()).encode())
    await page.go_back()
    await submit(page, page.get_by_role("button", name=UI["sign_out"]))
    assert await page.get_by_role("heading", level=1).inner_text() == UI["signed_out_heading"]
    await page.goto(stack.mapped_url(DEMO_HOST, "/"))
    assert page.url.startswith(stack.url("/login?url="))
    assert watch.outside(stack.own_hosts()) == []
    await context.close()


async def test_wrong_pin_explains_and_puts_cursor_on_pin(stack: Stack, browser: Browser) -> None:
    """A wrong PIN: the message says what happened, the PIN field is marked and has the focus."""
    context, page, _ = await new_page(browser)
    card = stack.next_card()
    await sign_in(page, stack, pin="not-my-pin", card=card)
    assert (await page.title()).startswith(UI["error_prefix"])
    pin = page.get_by_label(UI["pin_label"], exact=True)
    assert await page.evaluate("() => document.activeElement.id") == "password"
    assert await pin.get_attribute("aria-invalid") == "true"
    described = (await pin.get_attribute("aria-describedby") or "").split()
    error = await page.locator(f"#{described[0]}").inner_text()
    assert MESSAGES["bad_credentials"].text in error
    # The card number stays filled in; only the PIN is typed again.
    assert await page.get_by_label(UI["card_label"]).input_value() == card
    assert await pin.input_value() == ""
    await context.close()


async def test_expired_session_is_explained_on_the_login_page(
    stack: Stack, browser: Browser
) -> None:
    """A vendor link after the session ended leads to sign-in, saying the session ended."""
    context, page, _ = await new_page(browser)
    await login_expired(page, stack)
    assert page.url.startswith(stack.url("/login?url="))
    assert await page.get_by_role("status").get_by_text(MESSAGES["session_expired"].title).count()
    # Signing in again goes straight back to where the patron was.
    await page.get_by_label(UI["card_label"]).fill(CANARY.uid)
    await page.get_by_label(UI["pin_label"], exact=True).fill(CANARY.password)
    await submit(page, page.get_by_role("button", name=UI["sign_in"]))
    assert page.url == stack.mapped_url(DEMO_HOST, "/")
    await context.close()


async def test_phone_viewport_signs_in_without_sideways_scrolling(
    stack: Stack, browser: Browser
) -> None:
    """At 375 by 700 CSS px (a phone) the form fits, signing in works and the menu fits too."""
    context, page, _ = await new_page(browser, PHONE, is_mobile=True, has_touch=True)
    await page.goto(stack.url("/login"))
    assert await horizontal_overflow(page) == 0
    box = await page.get_by_role("button", name=UI["sign_in"]).bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"] and box["height"] >= 44
    await sign_in(page, stack)
    assert page.url == stack.url("/menu")
    assert await horizontal_overflow(page) == 0
    await context.close()


@pytest.mark.parametrize("name", list(PAGES))
async def test_page_reflows_at_400_percent_zoom(stack: Stack, browser: Browser, name: str) -> None:
    """At 320 CSS px wide (400 % zoom) nothing needs horizontal scrolling (WCAG 1.4.10)."""
    context, page, _ = await new_page(browser, ZOOM_400)
    await PAGES[name](page, stack)
    assert await horizontal_overflow(page) == 0
    await context.close()


@pytest.mark.parametrize("name", list(PAGES))
async def test_page_has_no_serious_accessibility_violations(
    stack: Stack, browser: Browser, name: str
) -> None:
    """axe-core finds no serious or critical WCAG 2.2 A/AA violation on the page."""
    context, page, _ = await new_page(browser)
    await PAGES[name](page, stack)
    assert await axe_serious(page) == []
    await context.close()


@pytest.mark.parametrize("name", list(PAGES))
async def test_page_weighs_under_50_kb_and_loads_only_own_assets(
    stack: Stack, browser: Browser, name: str
) -> None:
    """Document plus assets < 50 KB; every asset comes from the proxy's own host; nothing
    trips the pages' Content-Security-Policy."""
    context, page, watch = await new_page(browser)
    await PAGES[name](page, stack)
    # Count only what the final page loaded: from its document response on.
    start = max(i for i, r in enumerate(watch.responses) if r.request.resource_type == "document")
    assert await page_weight(watch, start) < PAGE_BUDGET
    # The sign-in page after a session ended loads the forget addresses of the mapped hosts,
    # which the proxy answers itself (proxy/web/forget.py); nothing else comes from elsewhere.
    elsewhere = watch.assets_not_from("proxy.localhost")
    forgets = [u for u in elsewhere if "/.weston-proxy/forget?" in u]
    assert all(urlsplit(u).hostname.endswith(".proxy.localhost") for u in forgets)  # type: ignore[union-attr]
    assert bool(forgets) == (name == "login-expired")
    assert [u for u in elsewhere if u not in forgets] == []
    assert watch.csp_refusals() == []
    await context.close()


async def test_static_assets_are_served_with_cache_headers(stack: Stack, browser: Browser) -> None:
    """Stylesheets, scripts and the logo come from the proxy with a public max-age."""
    context, page, _ = await new_page(browser)
    cache: dict[str, str] = {}
    page.on(
        "response",
        lambda r: (
            cache.__setitem__(r.url, r.headers.get("cache-control", ""))
            if "/static/" in r.url
            else None
        ),
    )
    await sign_in(page, stack)
    names = {u.rsplit("/", 1)[1] for u in cache}
    assert {"style.css", "theme.css", "logo.svg", "menu.js"} <= names
    assert all("public" in v and "max-age=" in v for v in cache.values())
    await context.close()


@pytest.mark.parametrize("name", list(PAGES))
async def test_screenshots_at_desktop_and_phone_width(
    stack: Stack, browser: Browser, name: str
) -> None:
    """Saves artifacts/screenshots/<page>-desktop.png and -phone.png for people to look at."""
    context, page, _ = await new_page(browser)
    await PAGES[name](page, stack)
    await shoot(page, name)
    await context.close()


# --------------------------------------------------------------------------- keyboard and menu


async def test_skip_link_is_first_and_focus_is_visible(stack: Stack, browser: Browser) -> None:
    """Tab reaches the skip link first, it is visible with a focus ring, Enter moves to main."""
    context, page, _ = await new_page(browser)
    await page.goto(stack.url("/login"))
    await page.keyboard.press("Tab")
    focused = await page.evaluate(
        """() => { const e = document.activeElement, s = getComputedStyle(e),
                   r = e.getBoundingClientRect();
                   return {cls: e.className, outline: s.outlineStyle, top: r.top}; }"""
    )
    assert focused["cls"] == "skip" and focused["outline"] != "none" and focused["top"] >= 0
    await page.keyboard.press("Enter")
    assert await page.evaluate("() => document.activeElement.id") == "main"
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.id") == "username"
    await context.close()


async def test_menu_filter_works_without_javascript(stack: Stack, browser: Browser) -> None:
    """With scripts off, GET /menu?q= shows only the databases that match."""
    context, page, _ = await new_page(browser, java_script_enabled=False)
    await sign_in(page, stack)
    await page.get_by_label(UI["filter_label"]).fill("wellness")
    await submit(page, page.get_by_role("button", name=UI["filter_button"]))
    assert "q=wellness" in page.url
    visible = await page.locator("#databases li:visible a").all_inner_texts()
    assert visible == ["Health & Wellness Resource Center"]
    # Without regard to accents, as the script filters (a patron types "é" for "e").
    await page.get_by_label(UI["filter_label"]).fill("WÉLLNESS")
    await submit(page, page.get_by_role("button", name=UI["filter_button"]))
    visible = await page.locator("#databases li:visible a").all_inner_texts()
    assert visible == ["Health & Wellness Resource Center"]
    await context.close()


async def test_menu_filter_narrows_the_list_as_the_patron_types(
    stack: Stack, browser: Browser
) -> None:
    """With scripts on, typing filters at once (no page load) and the count is announced."""
    context, page, _ = await new_page(browser)
    await sign_in(page, stack)
    await page.get_by_label(UI["filter_label"]).type("consumer")
    assert page.url == stack.url("/menu")
    visible = await page.locator("#databases li:visible a").all_inner_texts()
    assert visible == ["Consumer Reports"]
    status = page.get_by_role("status").filter(has_text="databases shown")
    await status.get_by_text("1 of 6").wait_for()
    await page.get_by_label(UI["filter_label"]).fill("CONSÚMER")  # accents and case ignored
    await status.get_by_text("1 of 6").wait_for()
    visible = await page.locator("#databases li:visible a").all_inner_texts()
    assert visible == ["Consumer Reports"]
    await page.get_by_label(UI["filter_label"]).fill("zzz")
    await page.locator("#no-match").wait_for()
    await context.close()


async def test_menu_warns_before_idle_expiry_and_extends_the_session(
    running_slapd: Any, browser: Browser, tmp_path: Path
) -> None:
    """With a 12 s idle time-out: a warning with a focused button appears; pressing it keeps
    the session alive past the original expiry (WCAG 2.2.1)."""
    short = await start_stack(tmp_path, running_slapd, idle_timeout_s=12)
    try:
        context, page, _ = await new_page(browser)
        await sign_in(page, short)
        signed_in = time.monotonic()
        button = page.get_by_role("button", name=UI["timeout_extend"])
        await button.wait_for(timeout=12_000)
        assert await page.evaluate("() => document.activeElement.id") == "timeout-extend"
        await button.click()
        await page.locator("#timeout").wait_for(state="hidden")
        await asyncio.sleep(max(0.0, 13 - (time.monotonic() - signed_in)))
        await page.goto(short.url("/menu"))
        assert page.url == short.url("/menu")
        await context.close()
    finally:
        await short.close()


async def test_a_store_outage_while_extending_is_not_called_an_ended_session(
    running_slapd: Any, browser: Browser, tmp_path: Path
) -> None:
    """Pressing the button while the session store does not answer (what RedisStore raises, put
    on the stack's memory store so the session survives): the warning stays and says the session
    could not be checked, never that it has ended; once the store answers, the menu tries again
    by itself and the session outlives its original expiry."""
    short = await start_stack(tmp_path, running_slapd, idle_timeout_s=12)
    try:
        context, page, _ = await new_page(browser)
        await sign_in(page, short)
        signed_in = time.monotonic()
        button = page.get_by_role("button", name=UI["timeout_extend"])
        await button.wait_for(timeout=12_000)
        store = short.services.sessions.store

        async def down(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("session store (redis) did not answer: ConnectionError")

        real = store.get, store.get_versioned
        store.get = store.get_versioned = down  # type: ignore[method-assign]
        try:
            await button.click()
            await page.locator("#timeout-unchecked").wait_for()
            assert await page.locator("#timeout-ended").is_hidden()
            assert await button.is_visible()
        finally:
            store.get, store.get_versioned = real  # type: ignore[method-assign]
        await page.locator("#timeout").wait_for(state="hidden", timeout=6_000)
        await asyncio.sleep(max(0.0, 13 - (time.monotonic() - signed_in)))
        await page.goto(short.url("/menu"))
        assert page.url == short.url("/menu")
        await context.close()
    finally:
        await short.close()


async def test_branding_override_folder_changes_colours_and_help_without_code(
    running_slapd: Any, browser: Browser, tmp_path: Path
) -> None:
    """conf/web/static/theme.css and conf/web/templates/help.html replace the built-in ones."""
    web = tmp_path / "brand"
    (web / "static").mkdir(parents=True)
    (web / "templates").mkdir()
    (web / "static" / "theme.css").write_text(":root{--brand:#5a1a6b}\n")
    (web / "templates" / "help.html").write_text("<p>Text the Reference Desk: 203-555-0199</p>\n")
    branded = await start_stack(tmp_path / "proxy", running_slapd, web_dir=web)
    try:
        context, page, _ = await new_page(browser)
        await page.goto(branded.url("/login"))
        colour = await page.evaluate(
            "() => getComputedStyle(document.querySelector('header.site')).backgroundColor"
        )
        assert colour == "rgb(90, 26, 107)"
        assert await page.get_by_text("Text the Reference Desk").count() == 1
        await context.close()
    finally:
        await branded.close()
