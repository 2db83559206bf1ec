"""From a fresh read of f709ecf, a1d3f45 and c73bc70 (the peek's 0.3 s wait, the PDF told by its
first bytes for the usage limits and the statistics): each test fails on the code it was written
against."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.test_media_databases import SCRIPT_FETCH, VENDOR_HOST, _signed_in

PDF_BODY = b"%PDF-1.7\n" + b"x" * 20_000
LIMITS = "\n[limits]\ndownloads_per_hour = 2\n"


async def _slow_start_pdf(request: web.Request) -> web.StreamResponse:
    """A PDF labelled binary (S3's default) whose first network piece is short: the vendor
    flushes its first bytes, then the rest half a second later (a PDF rendered on the fly)."""
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = len(PDF_BODY)
    await resp.prepare(request)
    await resp.write(PDF_BODY[:3])
    await asyncio.sleep(0.6)
    await resp.write(PDF_BODY[3:])
    await resp.write_eof()
    return resp


async def test_a_pdf_labelled_binary_whose_first_piece_is_slow_still_counts_against_the_limit(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """docs/vendor-setup.md: a body labelled binary, plain text or nothing "that starts as a PDF
    (`%PDF-`) counts as a PDF whoever fetches it". Since f709ecf `_read_decoded` waits at most
    PEEK_WAIT_S (0.3 s) for each more piece: a PDF whose first piece is shorter than `%PDF-`
    and whose next piece comes later is not taken for a PDF, so the usage-limit gate is told
    `application/octet-stream` (not a download when a script fetches it) and downloads_per_hour
    never stops it: a stolen card downloads such a database's PDFs without limit. Should: the
    third of three such PDFs is refused (429) with downloads_per_hour = 2, as the same PDF
    arriving in one piece is."""
    driver, _vendor = await _signed_in(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        {"/slow.pdf": _slow_start_pdf},
        limits=LIMITS,
    )
    statuses = []
    for i in range(3):
        r = await driver.get_vendor(VENDOR_HOST, f"/slow.pdf?n={i}", headers=SCRIPT_FETCH)
        body = await r.read()
        statuses.append(r.status)
        if r.status == 200:
            assert body == PDF_BODY  # whole and in order, the peek's timeout lost nothing
    assert statuses == [200, 200, 429], statuses


def _ranged_pdf(request: web.Request) -> web.StreamResponse:
    """A PDF labelled binary, served with byte ranges as S3 and CDNs serve them."""
    rng = request.headers.get("Range", "")
    total = len(PDF_BODY)
    if rng.startswith("bytes=") and "," not in rng:
        first_s, _, last_s = rng[6:].partition("-")
        first = int(first_s)
        last = int(last_s) if last_s else total - 1
        return web.Response(
            status=206,
            body=PDF_BODY[first : last + 1],
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {first}-{last}/{total}",
            },
        )
    return web.Response(body=PDF_BODY, headers={"Content-Type": "application/octet-stream"})


async def _ranged(request: web.Request) -> web.StreamResponse:
    return _ranged_pdf(request)


async def test_a_binary_labelled_pdf_fetched_as_bytes_1_onward_counts_against_the_limit(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """proxy/usage_limits.py `is_full_text`/`first_range`: a 206 "holding more than half" of the
    document counts as the document (`bytes=1-` "is the whole document but its first byte").
    forward `_relay` tells a binary-labelled PDF by `%PDF-` at the start of the *range's* body,
    so `Range: bytes=1-` (which starts `PDF-1.7`) is `application/octet-stream` to the gate, not
    a download when a script fetches it: a script with a stolen session gets every PDF of such a
    database whole but one byte (always `%`), and downloads_per_hour never counts one. Should:
    with downloads_per_hour = 2 the third such fetch is refused (429), as three fetches of
    `bytes=0-` are."""
    driver, _vendor = await _signed_in(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        {"/doc.pdf": _ranged},
        limits=LIMITS,
    )
    statuses = []
    for i in range(3):
        r = await driver.get_vendor(
            VENDOR_HOST, f"/doc.pdf?n={i}", headers={**SCRIPT_FETCH, "Range": "bytes=1-"}
        )
        body = await r.read()
        statuses.append(r.status)
        if r.status == 206:
            assert body == PDF_BODY[1:]
    assert statuses == [206, 206, 429], statuses


# ------------------------------------------------- the too-long request's repair (http_errors)


async def test_a_cookie_bomb_of_secure_prefixed_cookies_is_repaired_in_chromium(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """proxy/http_errors.py: when the cookies a script can see on this host are what is too long
    (a vendor's cookie bomb), the 431 page's script "deletes them and loads the page again".
    `_REPAIR` deletes each with `name=; Max-Age=0; Path=…[; Domain=…]`, never `Secure`: a
    browser refuses any write of a `__Secure-` or `__Host-` cookie without `Secure` (RFC 6265bis
    §4.1.3), so cookies a vendor's script wrote under those names (as consent and analytics
    scripts do on https) are never deleted, and every page of that database stays a dead-end
    431 until the patron clears the browser by hand (P7). The cookies are visible to the page
    (not HttpOnly), so a deletion with `Secure` (and, for `__Host-`, Path=/ and no Domain,
    which the repair already tries) removes them. Should: the cookies are gone after the
    repair, as ordinary cookies are."""
    from playwright.async_api import async_playwright

    from tests.browser_support import CHROMIUM, CHROMIUM_ARGS

    driver, _ = await _signed_in(tmp_path, port, running_slapd, vendor_factory, proxy_factory, {})
    host = driver.mapped(VENDOR_HOST).rsplit(":", 1)[0]
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context()
            await context.add_cookies(
                [
                    {
                        "name": f"{prefix}bomb{i}",
                        "value": "b" * 3000,
                        "domain": host,
                        "path": "/",
                        "secure": True,
                    }
                    for i, prefix in enumerate(("__Secure-", "__Host-", "__Secure-"))
                ]
            )
            page = await context.new_page()
            answer = await page.goto(f"http://{host}:{port}/app")
            status = answer.status if answer is not None else 0
            seen = await page.evaluate("document.cookie.length")
            await page.wait_for_timeout(800)
            left = {c["name"] for c in await context.cookies()}
        finally:
            await browser.close()
    assert status == 431
    # By the time the page answers, its script has deleted them and loaded it again (on the code
    # this was written against, the script saw all of them, over 8,000 bytes, and could not).
    assert seen < 8000, seen
    assert not any("bomb" in n for n in left), f"the bomb is still there: {left}"
