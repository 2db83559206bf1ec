"""From a review of a patron's day in headless Chromium with this stop's changes: a vendor
script's visitor cookie followed the patron into the next session, a granted microphone did not
reach the vendor's own framed recorder, and "Stay signed in" on a menu left open across a
sign-out and sign-in in another tab signed the patron out. Each failed on the code it was
written against.

Real slapd, recording vendors and the real proxy; Chromium reaches the proxy as
http://proxy.localhost:PORT and the vendors on their mapped hosts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.browser_support import launch
from tests.harness import html_page, ldap_directory, sign_in_through_form, vendor_toml, write_config

pytestmark = [pytest.mark.browser, pytest.mark.ldap]

ONE = "www.vendor-one.test"


async def _one_vendor(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[Any, Any]:
    """Real slapd, one recording vendor at ONE, a running proxy."""
    one = await vendor_factory(ONE)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", one)},
    )
    return await proxy_factory(cfg), one


VISITOR_ID = """<!doctype html><title>vid</title><p id=out></p>
<script>
// What analytics and A/B-testing scripts do: a visitor id kept a year on the page's own host.
if (!/(^|; )vid=/.test(document.cookie)) {
  document.cookie = "vid=visitor-" + Math.random().toString(36).slice(2) + "; max-age=31536000; path=/";
}
document.getElementById("out").textContent = document.cookie;
</script>"""


async def test_a_vendor_scripts_visitor_cookie_does_not_follow_the_patron_into_the_next_session(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A database's script keeps a visitor id in a cookie on its own (mapped) host, as
    analytics scripts do (`document.cookie = "vid=…; max-age=31536000"`). The patron does not
    sign out (most don't): they close the browser. Next day they open it and sign in again:
    a new session, whose first page on that host carries `Clear-Site-Data: "cache",
    "storage"` so that "every session starts clean on every host … a vendor script cannot link
    two sessions by what it left behind (P4)" (proxy/forward.py, docs/records-and-retention.md).
    But that page's only cookie deletion is for `Domain=proxy.localhost`; the host-only `vid`
    is untouched, so the vendor's script reads yesterday's id and the vendor links the two
    visits (and, on a shared computer, two patrons' visits). The sign-out forget address
    deletes exactly these cookies; the session's first page on the host should too."""
    driver, one = await _one_vendor(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    one.routes["/vid"] = html_page(VISITOR_ID)
    own = f"http://proxy.localhost:{port}"
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            day1 = await browser.new_context()
            page = await day1.new_page()
            await sign_in_through_form(page, own)
            await page.goto(f"http://{driver.mapped(ONE)}/vid")
            first = await page.locator("#out").inner_text()
            # Closing the browser: its session cookies (the proxy's sign-in) go, persistent
            # cookies stay.
            kept = [c for c in await day1.cookies() if c["expires"] != -1]
            await day1.close()
            day2 = await browser.new_context()
            await day2.add_cookies(kept)  # type: ignore[arg-type]
            page = await day2.new_page()
            await sign_in_through_form(page, own)
            r = await page.goto(f"http://{driver.mapped(ONE)}/vid")
            assert r is not None
            assert (await r.all_headers()).get("clear-site-data")  # the session's first page
            second = await page.locator("#out").inner_text()
        finally:
            await browser.close()
    assert first.startswith("vid=visitor-")
    assert second.startswith("vid=visitor-")
    assert second != first, "the new session's page reads the visitor id the last session's left"


MEDIA = "media.vendor-one.test"
COURSE = """<!doctype html><title>lesson</title><p id=top></p>
<iframe id=rec src="http://MEDIA/recorder" allow="microphone"></iframe>
<script>document.getElementById("top").textContent =
  String(document.featurePolicy.allowsFeature("microphone"));</script>"""
RECORDER = """<!doctype html><title>recorder</title><p id=out></p>
<script>document.getElementById("out").textContent =
  String(document.featurePolicy.allowsFeature("microphone"));</script>"""


async def test_a_granted_microphone_reaches_the_vendors_recorder_on_its_other_host(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A language course's pronunciation practice: the lesson page on the vendor's `www` host
    embeds its recorder from the vendor's other host with `<iframe allow="microphone">`, as the
    vendor serves it without a proxy (where no Permissions-Policy header stands in the way and
    `allow` delegates the microphone to the frame). The library grants it as the docs say:
    `permissions = ["microphone"]` with both hosts in the vendor's `hosts` ("its own pages may
    then ask"). But every relayed page carries `microphone=(self)`, and `self` is the one
    mapped host: the lesson page cannot delegate the microphone to its own vendor's recorder,
    so the granted feature is off exactly where the vendor uses it: the grant is accepted and
    shown on /privacy, and pronunciation practice still cannot hear the patron."""
    one = await vendor_factory(ONE)
    one.routes.update(
        {"/lesson": html_page(COURSE.replace("MEDIA", MEDIA)), "/recorder": html_page(RECORDER)}
    )
    granted = 'permissions = ["microphone"]\n'
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", one, hosts=[ONE, MEDIA], extra=granted)},
    )
    driver = await proxy_factory(cfg)
    own = f"http://proxy.localhost:{port}"
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await (await browser.new_context()).new_page()
            await sign_in_through_form(page, own)
            await page.goto(f"http://{driver.mapped(ONE)}/lesson")
            await page.wait_for_timeout(800)
            top = await page.locator("#top").inner_text()
            inner = await page.frame_locator("#rec").locator("#out").inner_text()
        finally:
            await browser.close()
    assert top == "true"  # the lesson page itself may ask
    assert inner == "true", "the vendor's own recorder frame is refused the granted microphone"


async def test_stay_signed_in_on_a_menu_left_open_across_signing_out_and_in_again_works(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A patron has the database menu open in one tab. In another tab they sign out and, at
    once, sign in again (a wrong database, a shared card handed back), then work in a
    database there. The first tab's menu keeps watching the session: its check
    (`GET /session`) reports the new session, so when that session's idle time-out nears the
    menu shows "Are you still there?" with "Stay signed in". The patron presses it: the
    button posts the CSRF token of the session the menu was drawn for, the proxy answers 403,
    and the menu says "Your session could not be checked just now … press the button again";
    pressing again, and the menu's own retries, all get 403 with the same stale token, and the
    session ends as the warning counted down: "Your session has ended". The patron did
    exactly what the warning asked and was signed out (WCAG 2.2.1 Timing Adjustable, the very
    thing the warning is for)."""
    one = await vendor_factory(ONE)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", one)},
        session='store = "memory"\nidle_timeout_s = 44\n',  # the warning opens 22 s before
    )
    driver = await proxy_factory(cfg)
    own = f"http://proxy.localhost:{port}"
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            context = await browser.new_context()
            menu = await context.new_page()
            await sign_in_through_form(menu, own)
            other = await context.new_page()
            await other.goto(own + "/menu")
            await other.get_by_role("button", name="Sign out").click()
            await other.wait_for_url(own + "/logout")
            await sign_in_through_form(other, own)
            await other.goto(f"http://{driver.mapped(ONE)}/article")
            await menu.bring_to_front()
            stay = menu.locator("#timeout-extend")
            await stay.wait_for(state="visible", timeout=60_000)
            await stay.click()
            await menu.wait_for_timeout(2000)
            state = await menu.evaluate("fetch('/session').then(r => r.json())")
        finally:
            await browser.close()
    assert state["signed_in"] is True
    assert state["left_s"] > 30, f"Stay signed in did not extend the session: {state}"
