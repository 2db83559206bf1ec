"""From a fresh read of this stop's first commits (250c23d..2c423de): refused requests, playlists,
download counting, long frame tags.

Each test failed on the code it was written against; each asserts what should happen. The one
for aiohttp's Python parser asks what the fix gives (the repairing page, whatever the status
that parser allows), not 431 with Clear-Site-Data, which the fix no longer sends at all.
"""

from __future__ import annotations

import asyncio
import gzip
import html as _html
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests import test_browser_egress
from tests.harness import ldap_directory, vendor_toml, write_config
from tests.test_browser_egress import LEFT, TRACKER, _page
from tests.test_frame_edges import _frames
from tests.test_media_databases import SCRIPT_FETCH, VENDOR_HOST, _signed_in

# The signed-in stack with one recording vendor (tests/test_media_databases.py).


async def _raw(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await reader.read(65536)
    writer.close()
    return answer


async def test_a_long_header_that_is_not_cookie_does_not_clear_the_patrons_cookies(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor page's own script can send any header it likes on its mapped host (a fetch()
    with a 9 KB `X-Client-State`, a large `Authorization` bearer token a single-page app keeps).
    The patron's cookies are small. proxy/http_errors.py `status_for` calls every over-long
    header line 431, and `page` puts `Clear-Site-Data: "cookies"` on every 431: the browser drops
    the session cookie (the patron is signed out of every database mid-work), and with it every
    cookie of the registrable domain, the library's other sites' too. A vendor script can so
    sign the patron out at will with one fetch. The cookies did not cause the refusal, so
    clearing them cannot help: only a Cookie header over the limit should clear cookies, and
    the page should not tell the patron they held too many cookies."""
    driver, _ = await _signed_in(tmp_path, port, running_slapd, vendor_factory, proxy_factory, {})
    sid = driver.sid
    assert sid
    host = driver.mapped(VENDOR_HOST).encode()
    raw = b"GET /api/state HTTP/1.1\r\nHost: %s\r\nCookie: %s=%s\r\nX-Client-State: %s\r\n\r\n" % (
        host,
        driver.config.server.cookie_name.encode(),
        sid.encode(),
        b"s" * 9000,
    )
    answer = await _raw(port, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] in (b"431", b"400"), head[:80]
    assert b"Clear-Site-Data" not in head, head.decode(errors="replace")
    assert b"too many cookies" not in body


async def test_an_hls_playlist_labelled_text_plain_and_gzipped_is_rewritten(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """CloudFront and most CDNs compress text/plain: an `.m3u8` an S3 bucket labels text/plain
    arrives `Content-Encoding: gzip`. forward `_relay` peeks `_read_at_least(resp, head, 7)`:
    seven coded bytes, less than gzip's own 10-byte header, so `_decoded` cannot undo them and
    returns the raw `\\x1f\\x8b…`, which never starts `#EXTM3U`: the playlist goes out as plain
    text with its key, init segment and segments on the vendor's host (the shield blocks them,
    the film does not play; without it they load from the patron's own address). Should: the
    same playlist, gzipped, is rewritten as the uncompressed one is."""
    playlist = (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n"
        f'#EXT-X-KEY:METHOD=AES-128,URI="http://{VENDOR_HOST}/keys/k1"\n'
        f'#EXT-X-MAP:URI="http://{VENDOR_HOST}/film/init.mp4"\n'
        f"#EXTINF:6.0,\nhttp://{VENDOR_HOST}/film/seg0.m4s\n#EXT-X-ENDLIST\n"
    )
    seen: list[str] = []

    async def m3u8(request: web.Request) -> web.StreamResponse:
        accepted = request.headers.get("Accept-Encoding", "")
        seen.append(accepted)
        if "gzip" not in accepted:
            return web.Response(body=playlist.encode(), headers={"Content-Type": "text/plain"})
        return web.Response(
            body=gzip.compress(playlist.encode()),
            headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
        )

    driver, _ = await _signed_in(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, {"/film/index.m3u8": m3u8}
    )
    r = await driver.get_vendor(
        VENDOR_HOST, "/film/index.m3u8", headers={"Accept-Encoding": "gzip", **SCRIPT_FETCH}
    )
    body = (await r.read()).decode()
    assert seen and "gzip" in seen[0], seen  # the vendor did compress it
    assert r.status == 200
    assert f"http://{VENDOR_HOST}/" not in body, body
    assert body.count(f"http://{driver.mapped(VENDOR_HOST)}/") == 3


async def test_a_pdf_labelled_octet_stream_fetched_by_a_script_still_counts(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Many platforms serve their PDFs as `application/octet-stream`, and a vendor's embedded
    viewer (PDF.js) or its "download all" button fetches them with fetch()/XHR
    (`Sec-Fetch-Mode: cors`), as does a patron's bulk-download script run in the page. Before
    f94b34d each was a full-text download; now `usage_limits.is_full_text` returns `saved`
    (False for `cors`) for every octet-stream, so with `downloads_per_hour = 2` a hundred PDFs
    go out uncounted: the limit that stops bulk downloading no longer applies to the PDFs that
    are labelled binary. The test file itself says "a PDF counts whoever fetches it"; a body
    that is a PDF (`%PDF-`) should count whatever its label, as the playlist is told by its
    first line."""

    async def pdf(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=b"%PDF-1.7\n" + b"0" * 4000 + b"\n%%EOF\n",
            headers={"Content-Type": "application/octet-stream"},
        )

    driver, _ = await _signed_in(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        {"/doc.pdf": pdf},
        "\n[limits]\ndownloads_per_hour = 2\n",
    )
    statuses = []
    for _ in range(3):
        r = await driver.get_vendor(VENDOR_HOST, "/doc.pdf", headers=SCRIPT_FETCH)
        await r.read()
        statuses.append(r.status)
    assert statuses == [200, 200, 429]


BIG_HEADER_FETCH = """<!doctype html><title>a</title><p id="out">x</p>
<script>
fetch("/api/state", {headers: {"X-Client-State": "s".repeat(9000)}})
  .then(r => { document.getElementById("out").textContent = "status " + r.status; },
        e => { document.getElementById("out").textContent = "error " + e; });
</script>"""


async def test_a_vendor_scripts_fetch_with_a_long_header_signs_the_patron_out_in_chromium(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The same in Chromium: a vendor page's script sends one same-origin fetch() with a 9 KB
    custom header (nothing to do with cookies). The proxy's 431 carries
    `Clear-Site-Data: "cookies"` and Chromium obeys it for a fetch too: the session cookie is
    gone and the patron, back at the menu, is asked to sign in again. A vendor can thus end the
    patron's session whenever its script likes (and a vendor app that keeps a large token in a
    header signs the patron out of every database at each call). Should: the patron is still
    signed in (their cookies were not the cause)."""
    from playwright.async_api import async_playwright

    from proxy.web.messages import UI
    from tests.browser_support import CHROMIUM, CHROMIUM_ARGS
    from tests.harness import sign_in_through_form

    vendor = await vendor_factory(VENDOR_HOST)

    async def page_route(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=BIG_HEADER_FETCH.encode(), headers={"Content-Type": "text/html; charset=utf-8"}
        )

    vendor.routes["/app"] = page_route
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        extra="\n[throttle]\naddress_limit = 1000\n",
    )
    driver = await proxy_factory(cfg)
    own = f"http://{driver.public}"
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await (await browser.new_context()).new_page()
            await sign_in_through_form(page, own)
            await page.goto(f"http://{driver.mapped(VENDOR_HOST)}/app", wait_until="load")
            await page.wait_for_function("() => document.getElementById('out').textContent !== 'x'")
            said = await page.evaluate("() => document.getElementById('out').textContent")
            await page.wait_for_timeout(300)
            cookies = await page.context.cookies()
            await page.goto(f"{own}/menu")
            body = await page.content()
        finally:
            await browser.close()
    assert said.startswith("status "), said
    names = [c["name"] for c in cookies]
    assert driver.config.server.cookie_name in names, (said, names)
    assert UI["sign_out"] in body, (said, page.url)


async def test_with_aiohttps_python_parser_a_cookie_header_over_the_limit_is_431_too(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    monkeypatch: Any,
) -> None:
    """proxy/http_errors.py `status_for` said a header line over the limit is told by
    `parse_headers` on the traceback "in the Python parser" (aiohttp without its C extension:
    `AIOHTTP_NO_EXTENSIONS`, or an interpreter it has no wheel for). But that parser's
    `HttpParser.feed_data` measures every line itself and raises LineTooLong for a header
    line over `max_field_size` before `parse_headers` ever runs: the cookie bomb's request
    was answered "This address is too long", with nothing that cleared the cookies, and the
    patron stayed locked out. Should: the page that repairs a cookie bomb, whichever of 414
    and 431 the parser allows."""
    from aiohttp import http_parser, web_protocol

    monkeypatch.setattr(web_protocol, "HttpRequestParser", http_parser.HttpRequestParserPy)
    driver, _ = await _signed_in(tmp_path, port, running_slapd, vendor_factory, proxy_factory, {})
    host = driver.public.encode()
    raw = b"GET /menu HTTP/1.1\r\nHost: %s\r\nCookie: bomb=%s\r\n\r\n" % (host, b"b" * 9000)
    answer = await _raw(port, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] in (b"414", b"431"), head[:80]
    assert b'id="repaired"' in body and b"script-src 'sha256-" in head


# ----------------------------------------------------------------------- the frame shield

recorder = test_browser_egress.recorder
browse = test_browser_egress.browse
LONG = "x" * 9000


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_long_frame_tag_whose_srcdoc_holds_a_third_party_frame_loses_it(
    compiled: bool,
) -> None:
    """d40bb58 gives a frame tag over MAX_TAG `src="about:blank"` unread, and says "its
    `srcdoc`, if any, still applies" (proxy/html_tags.py `_third_party_frame`). But a srcdoc
    document outranks `src`, and the srcdoc of a tag that long is never read by
    `_frames_leave`: a srcdoc holding a third-party frame (padded, or beside a long
    attribute) keeps it, the one thing f4a3234 made the shield remove from a srcdoc. Should:
    no third-party frame survives in a srcdoc, however long the tag."""
    inner = _html.escape("<iframe src=https://tracker.example/embed></iframe>")
    out = _frames(f'<iframe data-config="{LONG}" srcdoc="{inner}">', compiled=compiled)
    # Read as a browser reads it (the first of two attributes of one name counts): the frame
    # shows an empty document, the srcdoc holding the tracker is ignored.
    attrs = _first_frame_attributes(out)
    assert attrs.get("srcdoc") == "" and attrs.get("src") == "about:blank", out[-300:]


def _first_frame_attributes(page: str) -> dict[str, str | None]:
    """The first frame's attributes as the HTML tokenizer keeps them (the first of each name)."""
    from html.parser import HTMLParser

    found: list[dict[str, str | None]] = []

    class Frames(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag in ("iframe", "frame") and not found:
                kept: dict[str, str | None] = {}
                for k, v in attrs:
                    kept.setdefault(k, v)
                found.append(kept)

    Frames().feed(page)
    return found[0] if found else {}


@pytest.mark.browser
async def test_browser_long_frame_tag_with_a_srcdoc_third_party_iframe(browse: Any) -> None:
    """In Chromium: the page's frame is over 8 KiB, its srcdoc holds a frame on a third party;
    Chromium connects to it (frame-src refuses the frame only after the connection)."""
    inner = f"&lt;iframe src=&quot;http://{TRACKER}/embed&quot;&gt;&lt;/iframe&gt;"
    body = f'<iframe data-config="{LONG}" srcdoc="{inner}"></iframe>'
    seen = await browse(_page(body))
    assert seen == [], LEFT.format(seen)


# ------------------------------------------------------ the 431's reach beyond the proxy


async def test_a_431_leaves_the_cookies_of_the_librarys_other_sites(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The proxy runs as proxy.<library's domain>; the library's website and catalogue are
    www.<library's domain>. Chromium applies `Clear-Site-Data: "cookies"` to the whole
    registrable domain, host-only cookies of sibling hosts too. So the 431 page
    (proxy/http_errors.py `page`) deletes the library catalogue's sign-in and the website's
    cookie-consent answer as well as the proxy's own: what page_cookies.py and the xfail in
    test_hostile_vendor.py say must not happen ("Clear-Site-Data 'cookies' would clear the
    library's other sites"). Should: the cookies of the library's other hosts stay (the
    proxy can delete the cookies the request carried by name, as page_cookies does)."""
    from playwright.async_api import async_playwright

    from tests.browser_support import CHROMIUM, CHROMIUM_ARGS

    vendor = await vendor_factory(VENDOR_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    cfg.write_text(
        cfg.read_text().replace(
            f'public_url = "http://proxy.localhost:{port}"',
            f'public_url = "http://proxy.weston.localhost:{port}"',
        )
    )
    await proxy_factory(cfg)
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context()
            await context.add_cookies(
                [
                    # The library catalogue's own (host-only) cookie.
                    {
                        "name": "catalogue",
                        "value": "1",
                        "domain": "www.weston.localhost",
                        "path": "/",
                    },
                ]
                + [
                    # What makes the proxy's Cookie header too long (a vendor's cookie bomb).
                    {
                        "name": f"bomb{i}",
                        "value": "b" * 3900,
                        "domain": ".proxy.weston.localhost",
                        "path": "/",
                    }
                    for i in range(3)
                ]
            )
            page = await context.new_page()
            answer = await page.goto(f"http://proxy.weston.localhost:{port}/menu")
            status = answer.status if answer is not None else 0
            await page.wait_for_timeout(300)
            left = {c["name"] for c in await context.cookies()}
        finally:
            await browser.close()
    assert status == 431
    assert not any(n.startswith("bomb") for n in left), left  # the bomb is gone, as intended
    assert "catalogue" in left, f"the library catalogue's cookie was deleted too: {left}"
