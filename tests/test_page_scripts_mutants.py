"""From a mutation sweep (1 December 2026) of what runs in the patron's browser on the proxy's
own pages (proxy/web/static/menu.js, login.js, again.js, proxy/web/templates/): behaviours that
could break with no test noticing, each now proved against the real proxy (real slapd, the demo
vendor, headless Chromium where a script is concerned)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Request

from proxy.demo_vendor import DEMO_HOST
from proxy.web.messages import UI
from tests.browser_support import axe_browser, new_page, start_stack
from tests.harness import sign_in_through_form


@pytest.mark.browser
@pytest.mark.ldap
async def test_stay_signed_in_extends_in_place_with_the_pages_token(
    running_slapd: Any, tmp_path: Path
) -> None:
    """kills: proxy/web/static/menu.js:ask — `if (method === "POST") options.headers[...]` →
    `if (false) ...` (the "Stay signed in" post sent without its X-CSRF-Token).

    Without the token the proxy refuses the post (403) and the menu reloads itself, which also
    keeps the session alive, so the older test did not notice: but the patron loses what they
    were doing on the page (the filter they typed, where the cursor was), and the "session
    extended" status is never said. Pressing "Stay signed in" must extend the session in place:
    one POST /session carrying the page's token, answered 200, no reload, the typed filter and
    the cursor back where they were, the status message said.

    Also kills: proxy/web/static/menu.js:warn — `finalText.hidden = state.extendable` →
    `finalText.hidden = false`: a warning that can be extended must not also say the final
    "your session ends and cannot be extended" beside its "Stay signed in" button.

    Also kills: proxy/web/static/menu.js:hideWarning — `if (back) back.focus();` dropped: once
    the warning closes, the cursor goes back where the patron was (here the filter box they
    were typing in), not to the top of the page (the older test only asked that it leave the
    hidden button).

    Also kills: proxy/web/static/menu.js:schedule — `Math.max(1, leftS - warnS)` →
    `Math.max(1, leftS)`: the warning must open warn_s before the session ends (here 10 s of a
    20 s idle time-out), leaving the patron time to answer (WCAG 2.2.1), not at the very end
    (the older test waited up to 12 s for the button and so passed either way)."""
    short = await start_stack(tmp_path, running_slapd, idle_timeout_s=20)
    try:
        async with axe_browser() as browser:
            context, page, _ = await new_page(browser)
            posts: list[Request] = []
            page.on(
                "request",
                lambda r: (
                    posts.append(r) if r.method == "POST" and r.url.endswith("/session") else None
                ),
            )
            await sign_in_through_form(page, short.url("").rstrip("/"))
            loaded = time.monotonic()
            token = await page.locator("#timeout").get_attribute("data-csrf")
            await page.locator("#q").fill("zz")
            await page.evaluate("() => { window.__notReloaded = true; }")
            button = page.get_by_role("button", name=UI["timeout_extend"])
            await button.wait_for(timeout=20_000)
            # The warning comes warn_s (10 s) before the end, not in the session's last second.
            assert time.monotonic() - loaded < 15, time.monotonic() - loaded
            assert await page.locator("#timeout-text").is_visible()
            assert await page.locator("#timeout-final").is_hidden()
            await button.click()
            await page.locator("#timeout").wait_for(state="hidden", timeout=5_000)
            await page.wait_for_timeout(500)
            assert await page.evaluate("() => window.__notReloaded === true"), "the menu reloaded"
            assert await page.locator("#q").input_value() == "zz"
            assert await page.evaluate("() => document.activeElement.id") == "q"
            assert await page.locator("#timeout-ok").text_content() == UI["timeout_extended"]
            assert len(posts) == 1
            assert posts[0].headers.get("x-csrf-token") == token
            answer = await posts[0].response()
            assert answer is not None and answer.status == 200
            await context.close()
    finally:
        await short.close()


# --------------------------------------------------------------------------- the templates, as served

HOST = "www.mutjs-db.test"
# A value a patron (or a link someone sent them) can put in what the page shows back: no spaces
# (the card field drops them), under the card field's 64 characters.
MARKUP = '"><b_id=mutjs>x</b>'


@pytest.fixture
async def driver(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> Any:
    from tests.harness import one_vendor_proxy

    d, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, HOST
    )
    return d


def _tag(html: str, element_id: str) -> str:
    m = re.search(r'<(?:input|p|div)\b[^>]*\bid="' + element_id + r'"[^>]*>', html, re.S)
    assert m, f"no element with id {element_id}"
    return m.group(0)


@pytest.mark.ldap
async def test_a_card_number_shown_back_after_a_failed_sign_in_is_escaped(driver: Any) -> None:
    """kills: proxy/web/templates/login.html — `value="{{ username }}"` →
    `value="{{ username | safe }}"`.

    After a wrong PIN the sign-in page gives the patron's card number back in its field. What
    was typed there comes from whoever posted the form (a page elsewhere can post it): it must
    be shown as text, never as markup that becomes part of the sign-in page."""
    from tests.canary import CANARY

    r = await driver.login(MARKUP, "not-the-pin")
    html = await r.text()
    assert r.status == 401
    assert "<b_id=mutjs>" not in html
    assert 'value="&#34;&gt;&lt;b_id=mutjs&gt;x&lt;/b&gt;"' in _tag(html, "username")
    assert CANARY.password not in html


@pytest.mark.ldap
async def test_the_sign_in_form_hides_the_pin_and_names_each_fields_purpose(driver: Any) -> None:
    """kills: proxy/web/templates/login.html — `type="password"` → `type="text"` on the PIN.

    At a shared computer the person behind the patron must not read the PIN off the screen,
    and the browser must not offer it back as a typed word: the PIN field is a password field.
    The card number and PIN fields say what they hold (WCAG 1.3.5) and the PIN is never put
    back in the page."""
    _, html = await driver.login_form()
    pin = _tag(html, "password")
    card = _tag(html, "username")
    assert 'type="password"' in pin
    assert 'autocomplete="current-password"' in pin
    assert "value=" not in pin
    assert 'autocomplete="username"' in card
    r = await driver.login("29999000999999", "Mutjs-PIN-4412")
    again = await r.text()
    assert r.status == 401
    assert "Mutjs-PIN-4412" not in again
    assert 'type="password"' in _tag(again, "password")


@pytest.mark.ldap
async def test_the_menu_filter_is_not_kept_in_the_browsers_form_history(driver: Any) -> None:
    """kills: proxy/web/templates/menu.html — `autocomplete="off"` dropped from the filter box.

    What a patron filters the database list by ("abortion", "HIV") is as private as what they
    read: with autocomplete on, the browser keeps it and offers it to the next person at a
    shared computer who clicks in the box."""
    from tests.canary import CANARY

    await driver.login(CANARY.uid, CANARY.password)
    r = await driver.own("GET", "/menu")
    html = await r.text()
    assert r.status == 200
    assert 'autocomplete="off"' in _tag(html, "q")


@pytest.mark.ldap
async def test_the_time_out_warning_is_announced_when_it_opens(driver: Any) -> None:
    """kills: proxy/web/templates/menu.html — `role="alert"` dropped from `#timeout`.

    The time-out warning opens by itself while the patron may be reading elsewhere on the page
    (WCAG 2.2.1, 4.1.3). The final warning (a session that cannot be extended) has no button to
    take the focus: only the alert role makes a screen reader say it. The "session extended"
    line is a polite status."""
    from tests.canary import CANARY

    await driver.login(CANARY.uid, CANARY.password)
    html = await (await driver.own("GET", "/menu")).text()
    assert 'role="alert"' in _tag(html, "timeout")
    assert 'role="status"' in _tag(html, "timeout-ok")


@pytest.mark.ldap
async def test_a_filter_in_the_menu_address_is_shown_back_as_text(driver: Any) -> None:
    """kills: proxy/web/templates/menu.html — `{{ ui.no_match.format(q=q) }}` →
    `{{ ui.no_match.format(q=q) | safe }}`.

    The menu's filter can come from its address (`/menu?q=…`, a link someone sent): the
    "no database matches" line and the box must show it as text, never as markup in the
    signed-in patron's menu."""
    from tests.canary import CANARY

    await driver.login(CANARY.uid, CANARY.password)
    r = await driver.own("GET", "/menu", params={"q": MARKUP})
    html = await r.text()
    assert r.status == 200
    assert "<b_id=mutjs>" not in html
    assert "&lt;b_id=mutjs&gt;" in html.split('id="no-match"', 1)[1].split("</p>", 1)[0]


# --------------------------------------------------------------------------- the time-out warning


@pytest.mark.browser
@pytest.mark.ldap
async def test_no_warning_while_the_patron_is_busy_in_a_database_in_another_tab(
    running_slapd: Any, tmp_path: Path
) -> None:
    """kills: proxy/web/static/menu.js:check — `else if (state.left_s > warnS + 5)
    schedule(state.left_s)` → `else if (false) ...` (warn whatever the server says is left).

    The menu asks the server before warning because the patron may be reading a database in
    another tab: each page they open there is a use of the session. With a 30 s idle time-out
    (a 15 s warning), a patron who opens a database page 10 s after signing in has 30 s again:
    when the menu checks, 15 s in, it must not show "your session is about to end" (and take
    the focus to its button) but check again later."""
    short = await start_stack(tmp_path, running_slapd, idle_timeout_s=30)
    try:
        async with axe_browser() as browser:
            context, menu, _ = await new_page(browser)
            checks: list[float] = []
            menu.on(
                "request",
                lambda r: (
                    checks.append(time.monotonic())
                    if r.method == "GET" and r.url.endswith("/session")
                    else None
                ),
            )
            await sign_in_through_form(menu, short.url(""))
            loaded = time.monotonic()
            assert await menu.locator("#timeout").get_attribute("data-warn-s") == "15"
            await menu.wait_for_timeout(9_000)
            other = await context.new_page()
            await other.goto(short.mapped_url(DEMO_HOST, "/"))
            await menu.wait_for_timeout(max(0.0, 18 - (time.monotonic() - loaded)) * 1000)
            assert checks, "the menu asked the server how long is left"
            assert await menu.locator("#timeout").is_hidden(), "warned while the patron was busy"
            await context.close()
    finally:
        await short.close()


@pytest.mark.browser
@pytest.mark.ldap
async def test_a_store_outage_when_the_warning_runs_out_is_not_called_an_ended_session(
    running_slapd: Any, tmp_path: Path
) -> None:
    """kills: proxy/web/static/menu.js:expire — the failure branch (keep the warning, ask again
    in 5 s) → `showEnded()`.

    When the warning's time is up the menu asks the server whether the session ended. If the
    session store does not answer (GET /session 503), nothing says it ended: the patron must not
    be told "your session has ended, sign in again" (and lose the button that keeps it) because
    Redis was restarting. The warning stays, with its button."""
    from proxy.sessions import StoreUnavailable

    short = await start_stack(tmp_path, running_slapd, idle_timeout_s=12)
    try:
        async with axe_browser() as browser:
            context, menu, _ = await new_page(browser)
            answers: list[int] = []
            menu.on(
                "response",
                lambda r: answers.append(r.status) if r.url.endswith("/session") else None,
            )
            await sign_in_through_form(menu, short.url(""))
            button = menu.get_by_role("button", name=UI["timeout_extend"])
            await button.wait_for(timeout=12_000)
            opened = time.monotonic()

            async def store_down(session_id: Any) -> Any:
                raise StoreUnavailable("store")

            short.services.sessions.load = store_down  # type: ignore[method-assign]
            # The warning's time (at most 6 s) is up, and its end check answered 503.
            await menu.wait_for_timeout(max(0.0, opened + 8 - time.monotonic()) * 1000)
            assert 503 in answers, answers
            assert await menu.locator("#timeout-ended").is_hidden(), "called ended on a 503"
            assert await button.is_visible()
            await context.close()
    finally:
        await short.close()


@pytest.mark.browser
@pytest.mark.ldap
async def test_stay_signed_in_after_the_session_ended_says_ended_not_extended(
    running_slapd: Any, tmp_path: Path
) -> None:
    """kills: proxy/web/static/menu.js:extend — `if (!state.signed_in) { showEnded(); return; }`
    dropped.

    The patron presses "Stay signed in" after the session has in fact ended (the store let it
    go, or staff ended it): the proxy answers 401. The menu must say the session has ended,
    with the link to sign in again, and never announce "your session has been extended" in
    its status line: a screen-reader user would be told the opposite of what happened."""
    short = await start_stack(tmp_path, running_slapd, idle_timeout_s=12)
    try:
        async with axe_browser() as browser:
            context, page, _ = await new_page(browser)
            await sign_in_through_form(page, short.url(""))
            button = page.get_by_role("button", name=UI["timeout_extend"])
            await button.wait_for(timeout=12_000)
            name = short.driver.config.server.cookie_name
            sid = next(c["value"] for c in await context.cookies() if c["name"] == name)
            await short.services.sessions.end(sid)
            async with page.expect_response(lambda r: r.url.endswith("/session")) as answer:
                await button.click()
            assert (await answer.value).status == 401
            await page.locator("#timeout-ended").wait_for(timeout=3_000)
            await page.wait_for_timeout(300)
            assert (await page.locator("#timeout-ok").text_content() or "") == ""
            assert await button.is_hidden()
            await context.close()
    finally:
        await short.close()


@pytest.mark.browser
@pytest.mark.ldap
async def test_the_final_warning_offers_no_button_that_cannot_keep_the_session(
    running_slapd: Any, tmp_path: Path
) -> None:
    """kills: proxy/web/static/menu.js:warn — `extendButton.hidden = !state.extendable` →
    `extendButton.hidden = false`.

    When the session's fixed lifetime is what ends it, no activity extends it: the warning says
    so (the final text) and must not offer "Stay signed in", a button that cannot do what it
    says, in the last seconds the patron has to save their work."""
    stack = await start_stack(tmp_path, running_slapd)
    try:
        async with axe_browser() as browser:
            context, page, _ = await new_page(browser)
            await sign_in_through_form(page, stack.url(""))
            stack.services.sessions.lifetime_s = 10
            await page.goto(stack.url("/menu"))
            await page.locator("#timeout-final").wait_for(timeout=8_000)
            assert await page.locator("#timeout-extend").is_hidden()
            assert await page.locator("#timeout-text").is_hidden()
            await context.close()
    finally:
        await stack.close()


# --------------------------------------------------------------------------- a failed sign-in


@pytest.mark.browser
@pytest.mark.ldap
async def test_a_refusal_no_field_is_at_fault_for_takes_the_cursor_to_the_message(
    running_slapd: Any, tmp_path: Path
) -> None:
    """kills: proxy/web/templates/login.html — `tabindex="-1" autofocus` dropped from
    `#login-error`.

    When the refusal is not about one field (a card that cannot be used for online databases),
    the sign-in page puts the cursor on the message, so a screen reader reads it out first.
    A plain `<div>` cannot take the focus: without its tabindex neither `autofocus` nor
    login.js can move the cursor there, and the patron is left at the top of the page with no
    word of why they were not let in."""
    from tests.canary import EXPIRED

    stack = await start_stack(tmp_path, running_slapd)
    try:
        async with axe_browser() as browser:
            context, page, _ = await new_page(browser)
            await page.goto(stack.url("/login"))
            await page.get_by_label(UI["card_label"]).fill(EXPIRED.uid)
            await page.get_by_label(UI["pin_label"], exact=True).fill(EXPIRED.password)
            async with page.expect_navigation():
                await page.get_by_role("button", name=UI["sign_in"]).click()
            await page.locator("#login-error").wait_for()
            assert await page.locator("[aria-invalid=true]").count() == 0
            await page.wait_for_timeout(300)
            assert await page.evaluate("() => document.activeElement.id") == "login-error"
            await context.close()
    finally:
        await stack.close()
