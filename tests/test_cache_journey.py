"""What the browser's cache does across a patron's day and the next patron's, in headless
Chromium (from a review of the day's changes: sealed validators and private caching,
proxy/validators.py).

Real slapd, a recording vendor on loopback (two hosts of one vendor: the pages' and a static
host for scripts), the real proxy, headless Chromium; synthetic generic patrons only. Each test
is a defect found; what held is listed in the review report.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from proxy.hosts import map_label
from proxy.web.messages import UI
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, axe_browser
from tests.fixtures_ldap import generic_password, generic_uid
from tests.harness import (
    RecordingVendor,
    free_port,
    ldap_directory,
    start_proxy,
    vendor_toml,
    write_config,
)

pytestmark = [pytest.mark.browser, pytest.mark.ldap, pytest.mark.asyncio(loop_scope="module")]

HOST = "www.journey-db.test"  # the vendor's pages
STATIC_HOST = "static.journey-db.test"  # the same vendor's scripts (as static.ebscohost.com)


# --------------------------------------------------------------------------- the vendor


class Item:
    """A record the vendor lets a patron edit, with optimistic locking (ETag / If-Match)."""

    version = 1


async def api_item(request: web.Request) -> web.StreamResponse:
    tag = f'"item-v{Item.version}"'
    if request.method == "PUT":
        if request.headers.get("If-Match") != tag:  # strong comparison (RFC 9110 13.1.1)
            return web.json_response({"error": "changed by someone else"}, status=412)
        Item.version += 1
        tag = f'"item-v{Item.version}"'
    return web.json_response({"version": Item.version}, headers={"ETag": tag})


# The vendor's page script reads the record, then saves it with the ETag it was given, as
# every optimistic-locking editor does (Google's, Microsoft Graph's, any REST "save" button).
EDIT_PAGE = """<!doctype html><html lang="en"><title>edit</title><p id="out">pending</p><script>
(async () => {
  const r = await fetch('/api/item');
  const tag = r.headers.get('ETag');
  const put = await fetch('/api/item', {method: 'PUT', headers: {'If-Match': tag}, body: 'x'});
  document.getElementById('out').textContent = 'status ' + put.status;
})();
</script></html>"""

# A page whose script, from the vendor's static host, is cached for a year: a vendor (or its
# analytics) can put a visitor id in such a script and read it back on every later visit.
ID_PAGE = f"""<!doctype html><html lang="en"><title>article</title><p id="out">none</p>
<script src="http://{STATIC_HOST}/id.js"></script>
<script>document.getElementById('out').textContent = window.visitor || 'none';</script></html>"""
issued = [0]


async def id_js(request: web.Request) -> web.StreamResponse:
    issued[0] += 1
    return web.Response(
        text=f"window.visitor = 'visitor-{issued[0]}';",
        content_type="text/javascript",
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


def page(text: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text=text, content_type="text/html")

    return handler


class Stack:
    def __init__(self, client: Any, driver: Any, vendor: RecordingVendor) -> None:
        self.client, self.driver, self.vendor = client, driver, vendor

    def url(self, path: str = "/") -> str:
        return f"http://proxy.localhost:{self.driver.port}{path}"

    def mapped(self, path: str = "/") -> str:
        return f"http://{map_label(HOST)}.proxy.localhost:{self.driver.port}{path}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(slapd: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    slapd.start()
    root = tmp_path_factory.mktemp("journey2")
    vendor = RecordingVendor(HOST)  # answers both hosts, recording the Host of each request
    vendor.routes.update(
        {
            "/edit": page(EDIT_PAGE),
            "/api/item": api_item,
            "/article": page(ID_PAGE),
            "/id.js": id_js,
        }
    )
    await vendor.start()
    cfg = write_config(
        root,
        port=free_port(),
        directory=ldap_directory(slapd, root),
        vendors={"one": vendor_toml("one", vendor, hosts=[HOST, STATIC_HOST])},
        extra="\n[throttle]\naddress_limit = 1000\n",
    )
    client, driver = await start_proxy(cfg, io.StringIO())
    yield Stack(client, driver, vendor)
    await client.close()
    await vendor.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with axe_browser() as b:
        yield b


async def sign_in(page: Page, stack: Stack, i: int) -> None:
    """Through the real form, as generic synthetic patron `i`; returns on the menu."""
    await page.goto(stack.url("/login"))
    await page.fill("input[name=username]", generic_uid(i))
    await page.fill("input[name=password]", generic_password(i))
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    assert page.url == stack.url("/menu")


async def sign_out(page: Page, stack: Stack) -> None:
    """The menu's "Sign out" button, then the sign-out page's forget images all loaded."""
    await page.goto(stack.url("/menu"))
    async with page.expect_navigation():
        await page.get_by_role("button", name=UI["sign_out"]).click()
    await page.wait_for_load_state("networkidle")


async def visitor_id(page: Page, stack: Stack) -> str:
    """Open the vendor's article page; the visitor id its cached script says."""
    await page.goto(stack.mapped("/article"))
    await page.wait_for_load_state("load")
    return await page.locator("#out").inner_text()


# --------------------------------------------------------------------------- editing


async def test_an_edit_saved_with_if_match_in_a_fetch_is_not_refused_as_changed(
    stack: Stack, browser: Browser
) -> None:
    """A vendor page reads a record with fetch() and saves it with `If-Match: <the ETag it was
    given>`, within one session, nobody else editing. The vendor answered JSON with a strong
    tag "item-v1"; the proxy rewrites JSON bodies and so weakens the tag (W/"item-v1", sealed),
    and on the way back opens the If-Match to W/"item-v1". If-Match uses the strong comparison
    (RFC 9110 13.1.1): a weak tag never matches, so the vendor answers 412 to every save. The
    patron's every edit ("save notes", "rename folder", "update annotation") fails as if someone
    else had changed the record. The weakness is the proxy's own doing (its rewrite of the
    body), so the tag the proxy sealed should open to the vendor's strong "item-v1"."""
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, stack, 72)
    await page.goto(stack.mapped("/edit"))
    await page.wait_for_function("document.getElementById('out').textContent != 'pending'")
    out = await page.locator("#out").inner_text()
    sent = [dict(r.headers).get("If-Match") for r in stack.vendor.requests if r.method == "PUT"]
    await context.close()
    assert out == "status 200", f"the save was refused; the vendor was sent If-Match {sent}"


# --------------------------------------------------------------------------- the next patron


async def test_the_next_patron_in_the_same_tab_after_sign_out_gets_a_new_vendor_visitor_id(
    stack: Stack, browser: Browser
) -> None:
    """At a shared computer patron A reads an article and signs out as asked (the sign-out page
    loads the forget address of every host the session used, both of this vendor's, and they
    answer). Patron B signs in in the same tab and opens the same database. The vendor's
    script from its static host (cached `max-age` a year; the proxy turned `public` into
    `private` but kept the lifetime) is taken from the browser's cache without asking the
    proxy: B's page runs A's copy, holding the visitor id the vendor gave A's session, and
    the vendor links B's visit to A's (P4: a vendor cannot link two visits; here it links two
    patrons). Sealing the ETags (proxy/validators.py) covers a revalidation, not an answer the
    browser may reuse without one."""
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, stack, 86)
    first = await visitor_id(page, stack)
    await sign_out(page, stack)
    asked = issued[0]
    await sign_in(page, stack, 88)  # the next patron, another card
    second = await visitor_id(page, stack)
    await context.close()
    assert first.startswith("visitor-")
    assert second != first, (
        f"patron B's page ran patron A's cached vendor script ({second}); the vendor was asked "
        f"for it {issued[0] - asked} times in B's session"
    )


async def test_a_new_session_after_the_browser_was_closed_gets_a_new_vendor_visitor_id(
    stack: Stack, tmp_path: Path
) -> None:
    """At a shared computer patron A reads an article and closes the browser without signing
    out (the session cookie goes with the browser; the disk cache stays). Patron B opens the
    browser, signs in and opens the same database. The first navigation to the page host
    clears that host's cache (Clear-Site-Data), but not the vendor's static host: its script,
    cached a year (made `private`, lifetime kept), runs from the disk cache with the visitor
    id A's session was given, and the vendor links B's session to A's (P4). The validators
    module names exactly this case ("the browser's cache outlives sessions (a shared
    computer, a closed browser) ... on any host the new session has not navigated to") and
    seals only the tags; the cached answer itself carries the identifier."""
    profile = tmp_path / "profile"
    async with async_playwright() as p:
        ctx = await p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        pg = await ctx.new_page()
        await sign_in(pg, stack, 85)
        first = await visitor_id(pg, stack)
        await ctx.close()  # the browser closed; no sign-out
        ctx = await p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        await ctx.clear_cookies()  # session cookies do not outlive the browser
        pg = await ctx.new_page()
        await sign_in(pg, stack, 87)  # the next patron
        second = await visitor_id(pg, stack)
        await ctx.close()
    assert first.startswith("visitor-")
    assert second != first, f"patron B's session ran patron A's cached vendor script ({second})"
