"""From a review of the branch's public computers: one browser profile, one patron after another.

What the proxy let the browser keep after a patron left without signing out (closed the
browser, as the sign-out page itself advises, or walked away until the idle time-out): vendor
documents of HTML, SVG and XML were sent `private, no-store`, but every other vendor answer was
made `private, no-cache` (`proxy/validators.py` `session_cache`), which the browser *stores* on
disk and only revalidates before use. That fits a site's scripts, styles and fonts; it did not
fit the patron's reading itself: an article opened as a page in plain text or PDF, or the search
results a database's page fetches as JSON, stayed in the shared computer's disk cache, with the
search in the cache key (P5). The review's three tests each failed then; now only scripts,
styles and fonts a page loads may be kept (`proxy/forward.py` `_kept`).

Real proxy, real slapd, recording vendors, headless Chromium with a profile on disk (a public
computer's browser keeps one between patrons). After a closed browser the next patron's
sign-in page carries no dead session cookie, so it asks the browser to forget nothing
(`proxy/web/pages.py` `login_form`): what is on disk stays until a later session's first page
on that very host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS
from tests.canary import CANARY
from tests.test_session_cookie_tossing import GOOD, _mapped, _sign_in, _stack

ARTICLE_TEXT = "CANARY-ARTICLE-FULLTEXT the patron's article, read on the library's computer. "
RESULT_TEXT = "CANARY-RESULT-TITLE a record in the patron's search results"
SEARCH = "canary-secret-search-term"

RESULTS_PAGE = f"""<!doctype html><title>results</title><p id=out>searching</p>
<script>
fetch("/api/search?q={SEARCH}").then(r => r.text()).then(t => {{
  document.getElementById("out").textContent = t;
}});
</script>"""


def _files_holding(root: Path, marker: bytes) -> list[str]:
    found = []
    for f in root.rglob("*"):
        if f.is_file():
            try:
                if marker in f.read_bytes():
                    found.append(str(f.relative_to(root)))
            except OSError:
                continue
    return found


async def _patron_reads_then_closes_the_browser(driver: Any, profile: Path, visit: Any) -> None:
    """Patron A, in a browser whose profile stays on disk (a public computer's), signs in,
    reads, and closes the browser without signing out."""
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await context.new_page()
            await _sign_in(page, driver, CANARY.uid, CANARY.password)
            await visit(page)
        finally:
            await context.close()


async def search_left_on_disk(
    driver: Any, good: Any, profile: Path, results_type: str
) -> dict[str, list[str]]:
    """Patron A opens a results page that fetch()es its results (sent as `results_type`) and
    closes the browser: the files of the browser's cache holding the results or the search."""

    async def results(request: web.Request) -> web.StreamResponse:
        return web.Response(text=RESULTS_PAGE, content_type="text/html")

    async def api(request: web.Request) -> web.StreamResponse:
        body = json.dumps({"q": request.query.get("q", ""), "hits": [RESULT_TEXT]})
        return web.Response(text=body, content_type=results_type)

    good.routes["/results"] = results
    good.routes["/api/search"] = api

    async def visit(page: Any) -> None:
        await page.goto(_mapped(driver, GOOD) + "/results")
        await page.wait_for_function(
            "document.getElementById('out').textContent.includes('CANARY-RESULT-TITLE')"
        )
        await page.wait_for_timeout(500)

    await _patron_reads_then_closes_the_browser(driver, profile, visit)
    cache = profile / "Default" / "Cache"
    return {
        "results": _files_holding(cache, b"CANARY-RESULT-TITLE"),
        "search term": _files_holding(cache, SEARCH.encode()),
    }


@pytest.mark.browser
async def test_an_article_read_as_a_plain_text_page_is_not_left_on_the_computers_disk(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A database's full text in plain text (an article's "plain text" view) opened as a page:
    the proxy sends it `private, no-cache` (it is not HTML), so Chromium writes the article to
    its disk cache, and after the patron has closed the browser (the sign-out page's own advice)
    it is still there for whoever uses the computer next. A page of HTML in the same session
    is not kept (`no-store`): what the patron reads must not be kept either, whatever its type."""
    driver, _evil, good = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)

    async def article(request: web.Request) -> web.StreamResponse:
        return web.Response(text=ARTICLE_TEXT * 20, content_type="text/plain")

    async def results(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text='<!doctype html><title>r</title><a href="/fulltext/article.txt">Full text</a>',
            content_type="text/html",
        )

    good.routes["/results"] = results
    good.routes["/fulltext/article.txt"] = article
    profile = tmp_path / "profile"

    async def visit(page: Any) -> None:
        # The results first (the session's first page on the host), then the article from them.
        await page.goto(_mapped(driver, GOOD) + f"/results?q={SEARCH}")
        await page.click("a")
        await page.wait_for_url("**/fulltext/article.txt")
        assert "CANARY-ARTICLE-FULLTEXT" in await page.content()
        await page.wait_for_timeout(1000)  # the patron reads

    await _patron_reads_then_closes_the_browser(driver, profile, visit)
    kept = _files_holding(profile, b"CANARY-ARTICLE-FULLTEXT")
    assert kept == [], f"the article the last patron read is kept in the browser's files: {kept}"


@pytest.mark.browser
async def test_search_results_a_vendor_page_fetched_are_not_left_on_disk_with_the_search(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A database's results page (HTML, `no-store`, not kept) fetches the results as JSON, as
    most of them do today. The JSON answer goes out `private, no-cache`, so Chromium keeps it on
    disk under its URL: the patron's search term and the records found stay in the shared
    computer's cache after the patron closed the browser."""
    driver, _evil, good = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    kept = await search_left_on_disk(driver, good, tmp_path / "profile", "application/json")
    assert kept == {"results": [], "search term": []}, (
        f"the last patron's search and its results are kept in the browser's cache: {kept}"
    )


async def test_a_pdf_article_opened_as_a_page_is_not_kept_by_the_browser(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The article itself, a PDF the patron opens in the browser's viewer (a top-level
    navigation): sent `private, no-cache`, a Cache-Control the browser stores on disk. Like a
    vendor's HTML page it is the patron's reading, and must go out `no-store`."""
    driver, _evil, good = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)

    async def pdf(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=b"%PDF-1.4\n% CANARY-ARTICLE-FULLTEXT\n%%EOF\n",
            content_type="application/pdf",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    good.routes["/pdf/article.pdf"] = pdf
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    resp = await driver.get_vendor(
        GOOD,
        "/pdf/article.pdf",
        headers={
            "Sec-Fetch-Dest": "document",
            "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Site": "same-site",
            "Sec-Fetch-User": "?1",
        },
    )
    assert resp.status == 200
    cache_control = {d.strip().lower() for d in resp.headers.get("Cache-Control", "").split(",")}
    assert "no-store" in cache_control, (
        f"the patron's article goes to the browser as {resp.headers.get('Cache-Control')!r}: "
        "kept on the shared computer's disk"
    )


async def test_only_a_pages_scripts_styles_and_fonts_are_kept(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The line `_kept` draws: a stylesheet a page loads may be kept (private, asked about
    before each use); the same stylesheet opened as a page of its own is not; a 304 answering
    the browser's question about a kept script keeps it (a `no-store` there would make the
    browser drop it); an image (a scanned page, a cover in the results) is not kept."""
    driver, _evil, good = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)

    async def css(request: web.Request) -> web.StreamResponse:
        return web.Response(text="p{}", content_type="text/css")

    async def script(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match"):
            return web.Response(status=304, headers={"Cache-Control": "max-age=600"})
        return web.Response(text="1", content_type="text/javascript", headers={"ETag": '"v1"'})

    async def cover(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"GIF89a", content_type="image/gif")

    good.routes["/site.css"] = css
    good.routes["/app.js"] = script
    good.routes["/cover.gif"] = cover
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303

    async def cache_control(path: str, dest: str, **headers: str) -> str:
        r = await driver.get_vendor(
            GOOD, path, headers={"Sec-Fetch-Dest": dest, "Sec-Fetch-Mode": "no-cors", **headers}
        )
        await r.read()
        return str(r.headers.get("Cache-Control", ""))

    assert await cache_control("/site.css", "style") == "private, no-cache"
    assert await cache_control("/site.css", "document") == "private, no-store"
    assert await cache_control("/cover.gif", "image") == "private, no-store"
    first = await driver.get_vendor(GOOD, "/app.js", headers={"Sec-Fetch-Dest": "script"})
    assert first.headers["Cache-Control"] == "private, no-cache"
    sealed = first.headers["ETag"]
    again = await driver.get_vendor(
        GOOD, "/app.js", headers={"Sec-Fetch-Dest": "script", "If-None-Match": sealed}
    )
    assert again.status == 304
    assert again.headers["Cache-Control"] == "max-age=600, private, no-cache"
