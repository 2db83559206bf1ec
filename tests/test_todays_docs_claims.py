"""From a review of this stop's documentation claims (README.md, docs/*.md, module docstrings):
each test asserts what the docs tell library staff, and failed because the code did otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.config import load_config
from proxy.stats import sqlite_rows, stats_settings
from tests.canary import CANARY
from tests.harness import ldap_directory, vendor_toml, write_config

VENDOR = "www.vendor-one.test"
PDF_BODY = b"%PDF-1.4\n" + b"x" * 3000


def _pdf_labelled(ctype: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=PDF_BODY, headers={"Content-Type": ctype})

    return handler


async def test_a_pdf_labelled_binary_or_plain_text_counts_as_a_pdf_download_in_the_statistics(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """docs/vendor-setup.md (usage limits): what a player fetches "is not a download in the
    statistics either (a body labelled binary, plain text or nothing that starts as a PDF does,
    `%PDF-`, counts as a PDF whoever fetches it)". The usage-limit gate does count such a body
    as a PDF (forward._relay's `counted_as`), but the statistics observation is given the
    vendor's label (`ctype`), so `downloads_pdf` stays 0: a PDF the patron opened from a link
    (Sec-Fetch-Mode: navigate) is no download at all in the statistics (octet-stream and
    text/plain are not full text), and one a viewer script fetched neither."""
    vendor = await vendor_factory(VENDOR)
    vendor.routes["/bin.pdf"] = _pdf_labelled("application/octet-stream")
    vendor.routes["/plain.pdf"] = _pdf_labelled("text/plain")
    vendor.routes["/viewer.pdf"] = _pdf_labelled("binary/octet-stream")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        extra='\n[stats]\npath = "state/stats.sqlite3"\n',
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    for path, mode in (
        ("/bin.pdf", "navigate"),
        ("/plain.pdf", "navigate"),
        ("/viewer.pdf", "cors"),
    ):
        r = await driver.get_vendor(VENDOR, path, headers={"Sec-Fetch-Mode": mode})
        assert r.status == 200 and (await r.read()).startswith(b"%PDF-")
    await driver.client.close()  # app cleanup: the last flush of the counts
    config = load_config(cfg)
    counts = {
        (r.vendor, r.metric): r.count for r in sqlite_rows(stats_settings(config).path, None, None)
    }
    assert counts.get(("one", "downloads_pdf")) == 3, counts


# A vendor page whose script writes two nameless cookies (`document.cookie = "value"`, which
# browsers keep as a cookie with an empty name) that together pass the header limit.
NAMELESS_BOMB = """<!doctype html><title>bomb</title><p id="out">writing</p>
<script>
document.cookie = "A".repeat(4090) + "; path=/";
document.cookie = "B".repeat(4090) + "; path=/app";
document.getElementById("out").textContent = "written " + document.cookie.length;
</script>"""


async def test_a_cookie_bomb_of_nameless_cookies_is_repaired_too(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """README ("Requests too large to read") and proxy/http_errors.py: when the cookies a site's
    scripts stored are what is too long (a cookie bomb, which would lock the patron out of every
    page), the 431 page's script "deletes them and loads the page again". The repair
    (`_REPAIR`) takes each cookie's name as the text before "=": a nameless cookie (what
    `document.cookie = "AAAA…"` writes, sent as just its value) is "deleted" under its value as
    a name, a cookie that does not exist, so it stays; the page stays a dead end and the patron
    can reach nothing on that database's /app until they clear the browser by hand (P7).
    Should: the nameless cookies are deleted too (a nameless write such as
    `x; Max-Age=0; Path=/`, as proxy/page_cookies.py already writes for them, deletes one in
    Chromium) and the page loads again."""
    from playwright.async_api import async_playwright

    from tests.browser_support import CHROMIUM, CHROMIUM_ARGS
    from tests.harness import html_page

    vendor = await vendor_factory(VENDOR)
    vendor.routes["/app/w"] = html_page(NAMELESS_BOMB)
    # Another page under /app: the one the patron opens next (the bomb page itself would write
    # the bomb again when the repair loads it again).
    vendor.routes["/app/x"] = html_page("<!doctype html><title>x</title><p>x</p>")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    host = driver.mapped(VENDOR).rsplit(":", 1)[0]
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context()
            await context.add_cookies(
                [
                    {
                        "name": driver.config.server.cookie_name,
                        "value": driver.session_id() or "",
                        "domain": ".proxy.localhost",
                        "path": "/",
                        "httpOnly": True,
                    }
                ]
            )
            page = await context.new_page()
            first = await page.goto(f"http://{host}:{port}/app/w")
            assert first is not None and first.status == 200
            assert (await page.text_content("#out") or "").startswith("written 8")
            again = await page.goto(f"http://{host}:{port}/app/x")
            status = again.status if again is not None else 0
            await page.wait_for_timeout(1000)
            left = [c for c in await context.cookies() if c["name"] == ""]
        finally:
            await browser.close()
    assert status == 431
    assert left == [], f"the nameless bomb is still there: {[len(c['value']) for c in left]}"
