"""What a fresh read of the session's own change found in it (from a review of 17a1043..HEAD:
caches and validators, usage limits, vendor cookie dates, saved pages for compliance)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from proxy.validators import session_cache
from tests.canary import CANARY
from tests.harness import one_vendor_proxy

VENDOR_HOST = "www.sdiff-vendor.test"


def directives(value: str | None) -> set[str]:
    return {p.strip().partition("=")[0].lower() for p in (value or "").split(",") if p.strip()}


async def test_vendor_no_store_survives_a_cache_control_the_proxy_cannot_fully_read(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor marks a licensed page scan `no-store` (it must never reach the disk cache of a
    shared library computer) but its header has one member the proxy's parser does not read
    (a stray token after a value). Browsers split Cache-Control on commas and honour `no-store`;
    before this change the header went through as sent. Now `session_cache` throws the whole
    header away and sends `private` alone: the browser may now store the scan (heuristically,
    it has a Last-Modified) on a shared computer. Unreadable must not mean more cacheable."""
    driver, vendor = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, VENDOR_HOST
    )
    r = await driver.login(CANARY.uid, CANARY.password)
    assert r.status == 303

    async def scan(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=b"\x89PNG\r\n\x1a\nlicensed-page-scan",
            content_type="image/png",
            headers={
                "Cache-Control": "no-store, no-cache, pre-check=0 post-check=0",
                "Last-Modified": "Mon, 02 Nov 2026 10:00:00 GMT",
            },
        )

    vendor.routes["/scan.png"] = scan
    r = await driver.get_vendor(VENDOR_HOST, "/scan.png")
    await r.read()
    assert r.status == 200
    cc = directives(r.headers.get("Cache-Control"))
    assert "private" in cc
    assert "no-store" in cc, r.headers.get("Cache-Control")


def test_a_hostile_vendor_cache_control_does_not_stall_the_event_loop() -> None:
    """`_DIRECTIVE` splits a run of blanks after `=` between `\\s*=\\s*`, an empty value and the
    `\\s*` before `,`: quadratic backtracking when the member then fails. One 8 KB header (what
    the vendor client accepts) blocks the proxy's event loop, every patron's requests, for about
    half a second per answer; a vendor page with a hundred such images stalls it for a minute."""
    headers = CIMultiDict({"Cache-Control": "max-age=" + " " * 8150 + "x y"})
    started = time.perf_counter()
    session_cache(headers)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.05, f"{elapsed:.3f}s for one answer's Cache-Control"


def test_vendor_cookie_deleted_with_an_expires_before_1970_is_gone() -> None:
    """The mend reads Expires by RFC 6265's algorithm (aiohttp's parser) and then re-spells it
    with `email.utils.formatdate` for http.cookiejar, which reads no date before 1970: a vendor
    deleting its sign-in cookie with `Expires=Wed, 31 Dec 1969 23:59:59 GMT` (or 1 Jan 1900, as
    some frameworks write "long ago") gets it kept as a session cookie, `SID=deleted` sent on
    for the rest of the patron's session, where every browser deletes it."""
    from proxy.jar import cookie_header, dump_jar, load_jar, store_set_cookies

    url = "https://search.vendor-one.test/account/logout"
    for deletion in (
        "SID=deleted; Expires=Wed, 31 Dec 1969 23:59:59 GMT; Path=/",
        "SID=deleted; Expires=Mon, 01 Jan 1900 00:00:00 GMT; Path=/",
    ):
        jar = load_jar([])
        store_set_cookies(jar, url, ["SID=patron-session-at-vendor; Path=/"])
        store_set_cookies(jar, url, [deletion])
        stored = dump_jar(jar)
        assert stored == [], f"kept after {deletion!r}: {stored}"
        assert cookie_header(load_jar(stored), "https://search.vendor-one.test/") is None


async def test_a_page_saved_with_curl_following_a_redirect_is_read_not_passed(
    tmp_path: Path,
) -> None:
    """Vendor start URLs usually redirect (`/` to `/search`), so staff save them with
    `curl -i -L` (and a proxy's CONNECT answer heads `curl -i` output the same way): the file
    holds one header block per answer. `read_page` takes the first block (the redirect's) as the
    headers: the final answer's Content-Encoding is not seen, its gzip body is not decoded, and
    the page reads as a page with no tracker on it: page.trackers passes a page that loads
    Google Tag Manager (the mend promised "never reads as a page with nothing on it")."""
    import asyncio
    import gzip

    from proxy.cli import config_checks
    from proxy.compliance import FAIL, check_page, load_trackers, read_page
    from proxy.config import load_config
    from tests.test_compliance import materialise
    from tests.test_compliance_review import RecordingVendor, unshielded

    config = load_config(materialise(tmp_path / "conf"), extra_checks=config_checks())
    html = (
        b"<!doctype html><html><head><title>Search</title></head><body>"
        b'<script src="https://www.googletagmanager.com/gtag/js?id=G-1"></script></body></html>'
    )

    class Redirecting(RecordingVendor):
        async def __aenter__(self) -> Redirecting:
            app = web.Application()
            app.router.add_get("/", self._page)

            async def moved(request: web.Request) -> web.Response:
                raise web.HTTPFound("/")

            app.router.add_get("/start", moved)
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", 0).start()
            self.port = self.runner.addresses[0][1]
            return self

    out = tmp_path / "start.http"
    async with Redirecting(gzip.compress(html), {"Content-Encoding": "gzip"}) as vendor:
        proc = await asyncio.create_subprocess_exec(
            "curl", "-s", "-i", "-L", "-H", "Accept-Encoding: gzip", "-o", str(out),
            f"http://127.0.0.1:{vendor.port}/start",
            env={"PATH": "/usr/bin:/bin", "NO_PROXY": "*"},
        )  # fmt: skip
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert out.read_bytes().startswith(b"HTTP/1.1 302")
    checks = {
        c.id: c for c in check_page(unshielded(config), config, read_page(out), load_trackers())
    }
    assert checks["page.trackers"].result == FAIL, checks["page.trackers"]
    assert "www.googletagmanager.com" in checks["page.trackers"].evidence
