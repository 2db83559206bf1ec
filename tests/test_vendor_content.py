"""Real-world vendor content through the real proxy (recording vendors, real slapd, Chromium).

Each test is something a patron meets on a real vendor site (EBSCO, Gale, ProQuest, JSTOR, video
platforms …) that a proxy easily gets wrong: a page that breaks in the browser, a link or load
that leaves the proxy, a vendor host left in a body, an event that arrives late. The docstrings
say what went wrong before the fix.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS
from tests.canary import CANARY
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

WWW = "www.vendor-one.test"
CDN = "cdn.vendor-one.test"


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> AsyncIterator[tuple[ProxyDriver, RecordingVendor]]:
    vendor = await vendor_factory(WWW)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[WWW, "*.vendor-one.test"])},
    )
    driver = await proxy_factory(cfg)
    r = await driver.login(CANARY.uid, CANARY.password)
    assert r.status == 303
    yield driver, vendor


@asynccontextmanager
async def chromium(driver: ProxyDriver) -> AsyncIterator[tuple[Page, list[str]]]:
    """A headless Chromium page signed in to the proxy (the session cookie on the mapped hosts),
    and the console errors it logs."""
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
                        "url": f"http://{driver.mapped(host)}/",
                    }
                    for host in (WWW, CDN)
                ]
            )
            page = await context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            yield page, errors
        finally:
            await browser.close()


def vendor_hosts_in(text: str) -> list[str]:
    """Vendor host names (any case) still named in a body the patron received."""
    return re.findall(r"(?i)(?:www|cdn)\.vendor-one\.test", text)


# ------------------------------------------------------------------------------ SRI


APP_JS = b"window.appLoaded = true;\nwindow.apiBase = 'http://www.vendor-one.test/api/v2';\n"


def sri(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


async def test_subresource_integrity_script_still_runs_after_rewrite(setup: Any) -> None:
    """A vendor page loads its bundle with `integrity="sha384-…"` (webpack/Vite sites: Gale,
    ProQuest, JSTOR do). The bundle names the vendor's API host, so the proxy rewrites the
    bundle's body, but it leaves the page's `integrity` attribute as it was: Chromium computes the
    hash of what it received, finds no match and refuses to run the script, and the patron gets a
    dead page. The proxy must drop (or recompute) integrity on what it rewrites."""
    driver, vendor = setup

    async def page(request: web.Request) -> web.StreamResponse:
        html = (
            "<!doctype html><html><head><title>t</title>"
            f'<script src="http://{WWW}/app.js" integrity="{sri(APP_JS)}"></script>'
            "</head><body><p>results</p></body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    async def app_js(request: web.Request) -> web.StreamResponse:
        return web.Response(body=APP_JS, content_type="application/javascript")

    vendor.routes["/results"] = page
    vendor.routes["/app.js"] = app_js
    async with chromium(driver) as (page, errors):
        await page.goto(f"http://{driver.mapped(WWW)}/results")
        await page.wait_for_load_state("load")
        loaded = await page.evaluate("() => window.appLoaded === true")
    assert [e for e in errors if "integrity" in e.lower()] == []
    assert loaded, "the vendor's bundle never ran"


# ------------------------------------------------------------------- missing Content-Type


@pytest.fixture
async def raw_vendor(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> AsyncIterator[tuple[ProxyDriver, dict[str, bytes]]]:
    """A vendor that answers every request with the exact bytes in `answer["raw"]` (aiohttp
    would add a Content-Type of its own), behind a running proxy with a signed-in patron."""
    answer: dict[str, bytes] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline() not in (b"\r\n", b""):
            pass
        writer.write(answer["raw"])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    raw_port = server.sockets[0].getsockname()[1]
    answer["port"] = str(raw_port).encode()
    stand_in = await vendor_factory(WWW)  # only for vendor_toml's fields
    toml = vendor_toml("one", stand_in, hosts=[WWW, "*.vendor-one.test"]).replace(
        f"127.0.0.1:{stand_in.port}", f"127.0.0.1:{raw_port}"
    )
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": toml},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    yield driver, answer
    server.close()
    await server.wait_closed()


async def test_html_without_content_type_renders_as_a_page(raw_vendor: Any) -> None:
    """Some vendor endpoints (old CGI/ASP result pages, error pages from a load balancer) send an
    HTML page with no Content-Type at all; Chromium sniffs it and shows the page (checked here
    straight against the vendor). Through the proxy the patron instead gets a file download:
    `forward.Upstream._relay` answers with aiohttp's `web.StreamResponse`, which adds
    `Content-Type: application/octet-stream` to a response that has none, and the body is not
    rewritten either (`rewrite.should_rewrite("")` is False), so once shown its links would
    lead straight to the vendor."""
    driver, answer = raw_vendor
    page = (
        b"<!DOCTYPE html><html><head><title>Results</title></head>"
        b'<body><a href="http://www.vendor-one.test/article/1">Article</a></body></html>'
    )
    answer["raw"] = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page)
    shown: dict[str, Any] = {}
    async with chromium(driver) as (pg, _errors):
        await pg.goto(f"http://127.0.0.1:{answer['port'].decode()}/bare")  # no proxy: a page
        shown["direct"] = await pg.evaluate("() => document.contentType")
        try:
            await pg.goto(f"http://{driver.mapped(WWW)}/bare")
            shown["proxied"] = await pg.evaluate("() => document.contentType")
            shown["link"] = await pg.evaluate("() => document.querySelector('a').hostname")
        except PlaywrightError as exc:
            shown["proxied"] = str(exc).splitlines()[0]  # "Page.goto: Download is starting"
    assert shown["direct"] == "text/html"
    assert shown["proxied"] == "text/html"
    assert shown["link"] == driver.mapped(WWW).split(":")[0]


# ------------------------------------------------------------------------ UTF-16 pages


async def test_utf16_page_with_charset_only_in_the_page_is_rewritten(setup: Any) -> None:
    """A page saved as UTF-16 (a byte-order mark, `<meta charset="utf-16">`, and a bare
    `Content-Type: text/html` from the server, as IIS serves exported Word/Excel reports and
    help pages). Browsers decode by the BOM, so the patron sees a normal page, but the proxy
    rewrites it as UTF-8 bytes, where no URL matches: every vendor link in it goes straight to
    the vendor. The charset is taken only from the Content-Type header (`resp.charset`),
    the BOM is never looked at."""
    driver, vendor = setup
    text = (
        '<!DOCTYPE html><html><head><meta charset="utf-16"><title>Report</title></head>'
        f'<body><a href="https://{WWW}/report/2">Next page</a></body></html>'
    )

    async def report(request: web.Request) -> web.StreamResponse:
        return web.Response(body=text.encode("utf-16"), headers={"Content-Type": "text/html"})

    vendor.routes["/report"] = report
    r = await driver.get_vendor(WWW, "/report")
    body = await r.read()
    assert r.status == 200
    assert body[:2] in (b"\xff\xfe", b"\xfe\xff")  # what the browser decodes the page by
    assert vendor_hosts_in(body.decode("utf-16")) == []


# --------------------------------------------------------------- streaming video playlists


async def test_hls_playlist_segments_stay_on_the_proxy(setup: Any) -> None:
    """Video databases (Films on Demand, Kanopy, JoVE, Alexander Street) stream HLS: the player
    fetches an `.m3u8` playlist (`application/vnd.apple.mpegurl`) that lists its segments and
    the AES key by absolute URL on the vendor's CDN. The proxy does not rewrite that type, so
    the player asks the vendor's CDN directly: under the tracker shield the loads are refused
    and the video never plays; without it the patron's browser leaves the proxy."""
    driver, vendor = setup
    playlist = (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n"
        f'#EXT-X-KEY:METHOD=AES-128,URI="https://{WWW}/drm/key?v=7"\n'
        f"#EXTINF:10.0,\nhttps://{CDN}/v/1001/seg-0.ts\n"
        f"#EXTINF:10.0,\nhttps://{CDN}/v/1001/seg-1.ts\n#EXT-X-ENDLIST\n"
    )

    async def m3u8(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=playlist, headers={"Content-Type": "application/vnd.apple.mpegurl"}
        )

    vendor.routes["/v/1001/index.m3u8"] = m3u8
    r = await driver.get_vendor(CDN, "/v/1001/index.m3u8")
    body = await r.text()
    assert r.status == 200 and body.startswith("#EXTM3U")
    assert vendor_hosts_in(body) == []


# --------------------------------------------------------------------- server-sent events


async def test_server_sent_events_citation_links_are_mapped(setup: Any) -> None:
    """AI research assistants on vendor platforms (ProQuest, EBSCO, JSTOR) stream answers as
    `text/event-stream`, each event carrying JSON with citation links to the vendor's articles.
    The proxy does not rewrite that type, so the citations the patron clicks lead off the proxy
    to the vendor's own host (where the patron is not signed in, and seen with their own IP)."""
    driver, vendor = setup
    events = (
        'event: answer\ndata: {"text":"Tides are driven by the moon.",'
        f'"cite":"https://{WWW}/stable/1001"}}\n\n'
        "event: done\ndata: {}\n\n"
    )

    async def sse(request: web.Request) -> web.StreamResponse:
        return web.Response(text=events, headers={"Content-Type": "text/event-stream"})

    vendor.routes["/assistant/stream"] = sse
    r = await driver.get_vendor(WWW, "/assistant/stream")
    body = await r.text()
    assert r.status == 200 and "event: answer" in body
    assert vendor_hosts_in(body) == []


# ------------------------------------------------------------------------ CSP in a <meta>


async def test_csp_in_meta_tag_lets_the_vendors_own_scripts_run(setup: Any) -> None:
    """A vendor page states its policy in `<meta http-equiv="Content-Security-Policy">` with
    host sources written the usual way, without a scheme (`cdn.vendor.com`, `*.vendor.com`).
    The proxy maps such sources in the CSP *header* (`rewrite_headers.rewrite_csp`) but in a
    body it only maps URLs with a scheme or `//`, so the meta policy still names the vendor's
    real hosts while the page now loads its scripts from mapped hosts: Chromium refuses the
    vendor's own bundle and the patron gets a dead page."""
    driver, vendor = setup

    async def page(request: web.Request) -> web.StreamResponse:
        html = (
            "<!doctype html><html><head><title>t</title>"
            '<meta http-equiv="Content-Security-Policy" '
            "content=\"default-src 'self'; script-src 'self' cdn.vendor-one.test; "
            "img-src 'self' *.vendor-one.test\">"
            f'<script src="http://{CDN}/js/app.js"></script>'
            "</head><body><p>results</p></body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    async def app_js(request: web.Request) -> web.StreamResponse:
        return web.Response(text="window.appLoaded = true;", content_type="text/javascript")

    vendor.routes["/results"] = page
    vendor.routes["/js/app.js"] = app_js
    async with chromium(driver) as (pg, errors):
        await pg.goto(f"http://{driver.mapped(WWW)}/results")
        await pg.wait_for_load_state("load")
        loaded = await pg.evaluate("() => window.appLoaded === true")
    assert [e for e in errors if "Content Security Policy" in e] == []
    assert loaded, "the vendor's own script was refused"


# ------------------------------------------------------------------ Japanese vendor pages


async def test_windows_31j_page_links_after_fullwidth_colon_are_mapped(setup: Any) -> None:
    """Japanese Java platforms label Shift_JIS pages `charset=Windows-31J` (Java's name for it;
    browsers treat it as Shift_JIS). Python has no such codec name, and
    `charsets.charset_is_bytes_safe` takes an unknown label for an ASCII superset, so the
    page is rewritten as raw bytes. In Shift_JIS a double-byte character's second byte can be an
    ASCII letter: the full-width colon (U+FF1A) that Japanese text writes before a link is
    0x81 0x46 (`F`), which the URL pattern's lookbehind takes for part of a word, so that link
    is left pointing straight at the vendor. (Labelled `Shift_JIS`, the same page is fine.)"""
    driver, vendor = setup
    colon = "\uff1a"  # the full-width colon, Shift_JIS 0x81 0x46
    text = (
        "<html><head><title>資料</title></head><body>"
        f"<p>詳細{colon}https://{WWW}/article/1001</p></body></html>"
    )

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=text.encode("shift_jis"),
            headers={"Content-Type": "text/html; charset=Windows-31J"},
        )

    vendor.routes["/ja/results"] = page
    r = await driver.get_vendor(WWW, "/ja/results")
    body = await r.read()
    assert r.status == 200
    shown = body.decode("cp932")  # what the browser's Shift_JIS decoder shows the patron
    assert f"詳細{colon}" in shown
    assert vendor_hosts_in(shown) == []


async def test_server_sent_event_reaches_the_patron_before_the_vendor_sends_more(
    setup: Any,
) -> None:
    """An assistant's answer streams as events, seconds apart. Each event must reach the patron
    when the vendor sends it, rewritten, not when the next bytes come: the vendor here sends one
    event (with LF and with CR line ends) and waits until the patron has read it."""
    driver, vendor = setup
    read = asyncio.Event()

    async def sse(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(f'data: {{"cite":"https://{WWW}/stable/1"}}\n\n'.encode())
        await asyncio.wait_for(read.wait(), 10)
        await resp.write(f"data: https://{WWW}/stable/2\r\r".encode())
        read.clear()
        await asyncio.wait_for(read.wait(), 10)
        await resp.write(b"event: done\ndata: {}\n\n")
        await resp.write_eof()
        return resp

    vendor.routes["/assistant/live"] = sse
    r = await driver.get_vendor(WWW, "/assistant/live")
    assert r.status == 200
    first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
    assert vendor_hosts_in(first.decode()) == [] and b"/stable/1" in first
    read.set()
    second = await asyncio.wait_for(r.content.readuntil(b"\r\r"), 5)
    assert vendor_hosts_in(second.decode()) == [] and b"/stable/2" in second
    read.set()
    assert (await r.read()).endswith(b"data: {}\n\n")


async def test_untyped_body_that_is_no_document_goes_on_untyped(raw_vendor: Any) -> None:
    """A vendor body with no Content-Type that is not HTML or XML (a file from an old download
    script) reaches the patron without one, as the vendor sent it, for the browser to sniff:
    aiohttp's `application/octet-stream` is taken out again (`forward._UntypedResponse`), the
    bytes are not rewritten, and the tracker shield's policy still comes along."""
    driver, answer = raw_vendor
    body = b"%PDF-1.7\n" + f"https://{WWW}/not-rewritten".encode() + bytes(range(256))
    answer["raw"] = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    r = await driver.get_vendor(WWW, "/download")
    assert r.status == 200
    assert "Content-Type" not in r.headers
    assert "Content-Security-Policy" in r.headers
    assert await r.read() == body


# --- pages whose headers say little: an unknown charset label, an "unknown" type -------------


UNLABELLED_PAGE = (
    b"<!DOCTYPE html><html><head><title>Results</title></head>"
    b'<body><a href="http://www.vendor-one.test/article/1">Article</a></body></html>'
)


def _answer(content_type: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        content_type,
        len(body),
        body,
    )


async def test_html_with_unknown_charset_label_has_its_vendor_links_mapped(
    raw_vendor: Any,
) -> None:
    """A vendor page labelled with a charset no codec knows (PHP/MySQL sites really send
    `charset=utf8mb4`) is rendered by Chromium as an ordinary page (it ignores the label), so
    its links are mapped as in any ASCII-compatible page. For a while the proxy left such a
    body unrewritten (`charsets.charset_codec` gave None): a click took the patron's browser
    to the vendor outside the proxy (P3)."""
    driver, answer = raw_vendor
    answer["raw"] = _answer(b"text/html; charset=utf8mb4", UNLABELLED_PAGE)
    r = await driver.get_vendor(WWW, "/results")
    assert r.status == 200
    body = await r.read()
    shown: dict[str, Any] = {}
    async with chromium(driver) as (pg, _errors):
        await pg.goto(f"http://{driver.mapped(WWW)}/results")
        shown["type"] = await pg.evaluate("() => document.contentType")
        shown["link"] = await pg.evaluate("() => document.querySelector('a').hostname")
    assert shown["type"] == "text/html"  # the browser shows it as a page
    assert b"http://www.vendor-one.test/" not in body
    assert shown["link"] == driver.mapped(WWW).split(":")[0]


@pytest.mark.parametrize("content_type", [b"unknown/unknown", b"application/unknown", b"*/*"])
async def test_html_with_unknown_mime_type_is_shielded_and_rewritten(
    raw_vendor: Any, content_type: bytes
) -> None:
    """Browsers sniff a body typed `unknown/unknown`, `application/unknown` or `*/*` as if it
    had no type, and Chromium renders such an HTML body as a page (checked here straight
    against the vendor). The proxy sniffs it too: the page gets the tracker shield and its
    links are mapped. Before, only a missing Content-Type was sniffed, and such a page went
    out unshielded with its links leading off the proxy."""
    driver, answer = raw_vendor
    answer["raw"] = _answer(content_type, UNLABELLED_PAGE)
    shown: dict[str, Any] = {}
    async with chromium(driver) as (pg, _errors):
        await pg.goto(f"http://127.0.0.1:{answer['port'].decode()}/direct")
        shown["direct"] = await pg.evaluate("() => document.contentType")
        resp = await pg.goto(f"http://{driver.mapped(WWW)}/results")
        assert resp is not None
        shown["csp"] = (await resp.all_headers()).get("content-security-policy")
        shown["link"] = await pg.evaluate("() => document.querySelector('a').hostname")
    assert shown["direct"] == "text/html"  # the browser renders it as HTML
    assert shown["csp"], "no tracker shield on a page the browser renders"
    assert shown["link"] == driver.mapped(WWW).split(":")[0]
