"""The oversized-request page's repair script stops when it cannot repair (from a mutation
sweep's list of behaviours no test held: the guard before its `location.replace`).

The 414/431 page (`proxy.http_errors`) deletes the cookies a script can see on the proxy's own
hosts and loads the page again. Cookies it must not delete (those on the library's other sites'
domains, above the proxy's public host) can keep the browser's Cookie header too long; the page
must then stay, with its advice, instead of loading itself again and again. Real Chromium, the
real page and script, an aiohttp server on loopback that counts every request.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

from proxy import http_errors
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.asyncio

PUBLIC = "proxy.lib.localhost"
MAPPED = "www-vendor-one-test.proxy.lib.localhost"
PARENT = "lib.localhost"  # the library's own domain, above the proxy's public host


def _plant(domain: str) -> str:
    """A page whose script writes six 3.9 KB cookies for `domain` (about 24 KB of Cookie)."""
    return f"""<!doctype html><title>p</title><p id="out"></p><script>
var big = "x".repeat(3900);
for (let i = 0; i < 6; i++) {{
  document.cookie = "bomb" + i + "=" + big + "; domain={domain}; path=/; max-age=600";
}}
document.getElementById("out").textContent = String(document.cookie.length);
</script>"""


async def _visit(domain: str) -> dict[str, Any]:
    """Plant the cookies on `domain` from the mapped host, then open the oversized-request page
    there; what the browser did in the next two seconds."""
    hits: list[str] = []

    async def plant(request: web.Request) -> web.Response:
        return web.Response(text=_plant(domain), content_type="text/html")

    async def refused(request: web.Request) -> web.Response:
        hits.append(request.path)
        body, headers = http_errors.page(431)
        return web.Response(status=431, body=body, headers=headers)

    app = web.Application(handler_args={"max_field_size": 65536, "max_line_size": 65536})
    app.router.add_get("/plant", plant)
    app.router.add_get("/page", refused)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    before = http_errors._pages
    http_errors._pages = http_errors._Pages(f"http://{PUBLIC}:{server.port}/", 8190)
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = await (await browser.new_context()).new_page()
                base = f"http://{MAPPED}:{server.port}"
                await page.goto(f"{base}/plant", wait_until="load")
                planted = int(await page.evaluate("document.getElementById('out').textContent"))
                await page.goto(f"{base}/page", wait_until="load")
                await page.wait_for_timeout(2000)
                repaired_shown = await page.evaluate("!document.getElementById('repaired').hidden")
                left = [c["name"] for c in await page.context.cookies() if c["name"][:4] == "bomb"]
            finally:
                await browser.close()
    finally:
        http_errors._pages = before
        await server.close()
    return {"planted": planted, "hits": len(hits), "repaired": repaired_shown, "left": left}


async def test_cookies_the_page_may_not_delete_leave_it_standing_with_its_advice() -> None:
    """kills: proxy/http_errors.py _REPAIR — the closing `if (document.cookie.length + 256 <
    limit)` guard dropped (the page reloads whatever is left). A vendor script on a mapped host
    wrote its cookie bomb for the library's own domain, which the repair leaves alone (other
    library sites' cookies live there). Loading itself again cannot help, so the page must stay:
    one request, its "go back, or close the browser" advice, no claim that it repaired anything.
    Under the mutant the browser reloads the page in a loop."""
    seen = await _visit(PARENT)
    assert seen["planted"] > 20000, "the cookies were written"
    assert sorted(seen["left"]) == [f"bomb{i}" for i in range(6)], "the parent's are kept"
    assert seen["hits"] == 1, f"the page loaded itself {seen['hits']} times in 2 s"
    assert seen["repaired"] is False


async def test_cookies_on_the_proxys_own_domain_are_removed_and_the_page_loaded_again() -> None:
    """The same bomb written for the proxy's public host's domain is the repair's case: the
    script deletes the cookies and loads the page once more (a second request, which this
    server refuses again; its page then finds nothing to repair). This holds the other test to a
    page that does reload when it can."""
    seen = await _visit(PUBLIC)
    assert seen["planted"] > 20000
    assert seen["left"] == []
    assert seen["hits"] == 2, seen
