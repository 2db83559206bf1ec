"""From a review of the compliance checks: vendor pages whose trackers, cookies or third parties
the saved-page check missed (a false pass privacy staff would sign off), a page saved compressed,
a per-patron `jti` the live run let through, and a schema.org false alarm; proven against pages a
real recording aiohttp vendor serves and `curl -i` saves, as the docs tell staff to save them."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
from pathlib import Path

import pytest
from aiohttp import web

from proxy.cli import config_checks
from proxy.compliance import CRITICAL, FAIL, check_page, load_trackers, read_page
from proxy.config import Config, VendorConfig, load_config
from tests.test_compliance import materialise


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(materialise(tmp_path / "conf"), extra_checks=config_checks())


def unshielded(config: Config) -> VendorConfig:
    """The compliant fixture vendor with the shield off for a recorded reason: whatever tracker
    its page loads reaches the patron's browser, so page.trackers must fail (critical)."""
    good = config.vendor("good")
    assert good is not None
    return dataclasses.replace(good, third_party="allow", third_party_reason="maps widget")


class RecordingVendor:
    """A stand-in vendor on loopback that serves one start page and records every request."""

    def __init__(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.body, self.headers = body, headers or {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _page(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        return web.Response(
            body=self.body, headers={"Content-Type": "text/html; charset=utf-8", **self.headers}
        )

    async def __aenter__(self) -> RecordingVendor:
        app = web.Application()
        app.router.add_get("/", self._page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def saved_with_curl(vendor: RecordingVendor, out: Path, *extra: str) -> Path:
    """Save the vendor's start page as the docs say: the whole response, `curl -i`."""
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-s",
        "-i",
        *extra,
        "-o",
        str(out),
        f"http://127.0.0.1:{vendor.port}/",
        env={"PATH": "/usr/bin:/bin", "NO_PROXY": "*"},
    )
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert vendor.requests, "the stand-in vendor was never asked for the page"
    return out


async def page_checks(config: Config, html: bytes, tmp_path: Path, *extra: str) -> dict:
    async with RecordingVendor(html) as vendor:
        path = await saved_with_curl(vendor, tmp_path / "start.http", *extra)
    checks = check_page(unshielded(config), config, read_page(path), load_trackers())
    return {c.id: c for c in checks}


# --------------------------------------------------------------------------- trackers missed

TRACKER_PAGES = {
    # A stylesheet import with a plain string (no url()): the browser fetches it.
    "css_import_string": b"""<!doctype html><html><head><title>Search</title>
<style>@import "https://www.googletagmanager.com/ns.css";
body { font-family: sans-serif }</style></head><body>Search</body></html>""",
    # A tracker URL in an inline JSON config, as json_encode / JSON.stringify write it.
    "json_escaped_slashes_in_script": b"""<!doctype html><html><head>
<script>window.__CONFIG__ = {"pixel":"https:\\/\\/connect.facebook.net\\/en_US\\/fbevents.js"};
var s = document.createElement("script"); s.src = window.__CONFIG__.pixel;
document.head.appendChild(s);</script></head><body>Search</body></html>""",
    # Google's classic ga.js snippet: the host is built from two string literals.
    "classic_ga_snippet": b"""<!doctype html><html><head><script type="text/javascript">
  var _gaq = _gaq || []; _gaq.push(['_setAccount', 'UA-0000-1']); _gaq.push(['_trackPageview']);
  (function() {
    var ga = document.createElement('script'); ga.type = 'text/javascript'; ga.async = true;
    ga.src = ('https:' == document.location.protocol ? 'https://ssl' : 'http://www') + '.google-analytics.com/ga.js';
    var s = document.getElementsByTagName('script')[0]; s.parentNode.insertBefore(ga, s);
  })();
</script></head><body>Search</body></html>""",
    # A style attribute quoting its url() with &quot; (how server renderers escape it).
    "style_attribute_quoted_url": b"""<!doctype html><html><body>
<div style="background-image:url(&quot;https://www.google-analytics.com/collect?v=1&amp;t=pageview&quot;)">
Search</div></body></html>""",
    # The hyperlink auditing attribute: the browser POSTs to it on every click.
    "a_ping_attribute": b"""<!doctype html><html><body>
<a href="/article/1" ping="https://www.google-analytics.com/collect?v=1&amp;t=event">Article</a>
</body></html>""",
    # A preloaded image set: the browser loads it with the page.
    "link_imagesrcset": b"""<!doctype html><html><head>
<link rel="preload" as="image" imagesrcset="https://www.google-analytics.com/p.gif 1x">
</head><body>Search</body></html>""",
}


@pytest.mark.parametrize("variant", sorted(TRACKER_PAGES))
async def test_a_known_tracker_on_an_unshielded_vendor_page_fails(
    config: Config, tmp_path: Path, variant: str
) -> None:
    """A vendor page that loads a listed tracker in the patron's browser (shield off) must fail
    page.trackers (critical) and name the tracker host, however the page spells the load."""
    checks = await page_checks(config, TRACKER_PAGES[variant], tmp_path)
    trackers = checks["page.trackers"]
    assert (trackers.severity, trackers.result) == (CRITICAL, FAIL), trackers
    assert "would load" in trackers.evidence
    assert any(
        h in trackers.evidence
        for h in ("googletagmanager.com", "facebook.net", "google-analytics.com")
    )


# --------------------------------------------------------------------------- compressed pages


async def test_a_page_saved_gzip_encoded_is_read_not_passed(config: Config, tmp_path: Path) -> None:
    """Saved with the browser's Accept-Encoding (`curl -i -H 'Accept-Encoding: gzip'`, what a
    devtools "copy as cURL" sends), the body on disk is gzip. The check reads it as HTML anyway
    and finds nothing: the tracker passes and a lasting script cookie passes as "no lasting
    cookie". It must decode the body (or say it cannot read it), never pass it."""
    html = TRACKER_PAGES["css_import_string"].replace(
        b"<body>",
        b'<body><script src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>'
        b'<script>document.cookie = "visitor=abc; max-age=31536000";</script>',
    )
    async with RecordingVendor(gzip.compress(html), {"Content-Encoding": "gzip"}) as vendor:
        path = await saved_with_curl(vendor, tmp_path / "start.http", "-H", "Accept-Encoding: gzip")
    assert b"content-encoding: gzip" in path.read_bytes().lower()
    checks = {
        c.id: c for c in check_page(unshielded(config), config, read_page(path), load_trackers())
    }
    assert checks["page.trackers"].result == FAIL, checks["page.trackers"]
    assert "www.googletagmanager.com" in checks["page.trackers"].evidence
    assert checks["page.cookies"].result != "pass", checks["page.cookies"]


# --------------------------------------------------------------------------- lasting cookies missed

COOKIE_SCRIPTS: dict[str, str | None] = {
    # js-cookie 3's documented way to give every cookie the same attributes.
    "js_cookie_with_attributes": "Cookies.withAttributes({ path: '/', expires: 365 })"
    ".set('visitor', 'v-8f3a2c');",
    # The usual snippet shape: `document` handed to an IIFE under another name.
    # An inline event handler: the same script, in an attribute instead of a <script>.
    "onload_attribute": None,
    "document_passed_to_a_snippet": "(function (d) {\n"
    "  d.cookie = 'visitor=v-8f3a2c; max-age=31536000; path=/';\n"
    "})(document);",
}


@pytest.mark.parametrize("variant", sorted(COOKIE_SCRIPTS))
async def test_a_script_storing_a_year_long_cookie_is_not_reported_as_none(
    config: Config, tmp_path: Path, variant: str
) -> None:
    """A start page whose script stores a 365-day cookie in the patron's browser must not pass
    page.cookies with "sets no lasting cookie": fail it, or at least leave it for review."""
    if COOKIE_SCRIPTS[variant] is None:
        html = (
            b'<!doctype html><html><head></head><body onload="document.cookie = '
            b"'visitor=v-8f3a2c; max-age=31536000; path=/'\">Search</body></html>"
        )
    else:
        html = (
            b"<!doctype html><html><head><script>"
            + COOKIE_SCRIPTS[variant].encode()
            + b"</script></head><body>Search</body></html>"
        )
    cookies = (await page_checks(config, html, tmp_path))["page.cookies"]
    assert cookies.result != "pass", cookies
    assert "no lasting cookie" not in cookies.message


# --------------------------------------------------------------------------- live: linkable values


def _live_config(tmp_path: Path) -> Config:
    from tests.test_compliance_live import VENDORS, write_live_config

    return load_config(
        write_live_config(tmp_path / "live", {"anon": VENDORS["anon"]}),
        extra_checks=config_checks(),
    )


async def test_a_per_patron_jti_that_links_sessions_fails_the_live_run(tmp_path: Path) -> None:
    """An adapter that signs a well-formed assertion whose `jti` is a keyed hash of the patron
    (same shape as a random jti, the same in every session of one patron) hands an anonymous
    vendor a stable patron identifier (P4). live.unlinkable promises to find such a thread
    "whatever its encoding"; inside a JWT it never does (the token as a whole differs per
    request), and live.assertion_claims does not check that jti is unique, so the run passes."""
    import base64 as b64
    import hashlib
    import itertools
    import time

    from proxy.compliance_live import LiveChecker
    from proxy.vendors.assertion import AssertionAdapter
    from proxy.vendors.base import Outbound

    class PerPatronJtiAdapter(AssertionAdapter):
        signed = itertools.count(1)

        async def authorize(self, out: Outbound) -> None:
            signer = self.upstream.signer
            claims = signer.claims(
                audience=self.vendor.aud,
                patron_key=out.session.patron_key,
                vendor_id=self.vendor.id,
                pseudonymous=False,
                # The visit runs within a second; a patron's sessions are hours apart. Signed
                # a few seconds apart here, the token as a whole differs, as it would.
                now=int(time.time()) - next(self.signed),
            )
            digest = hashlib.sha256(b"vendor-link:" + out.session.patron_key.encode()).digest()
            claims["jti"] = b64.urlsafe_b64encode(digest).decode()[:22]
            out.headers[self.vendor.assertion_header] = signer.sign(claims)

    config = _live_config(tmp_path)
    results = await LiveChecker(config, adapters={"assertion": PerPatronJtiAdapter}).run(["anon"])
    checks = {c.id: c for c in results["anon"]}
    assert FAIL in (checks["live.unlinkable"].result, checks["live.assertion_claims"].result), (
        checks["live.unlinkable"],
        checks["live.assertion_claims"],
    )
    # Each check finds it on its own: the claims are decoded and compared across sessions, and
    # a jti that names more than one assertion is refused.
    assert checks["live.unlinkable"].result == FAIL, checks["live.unlinkable"]
    assert "jti=" in checks["live.unlinkable"].evidence
    assert checks["live.assertion_claims"].result == FAIL, checks["live.assertion_claims"]
    assert "jti" in checks["live.assertion_claims"].evidence


# --------------------------------------------------------------------------- false alarms


async def test_structured_data_context_is_not_a_third_party_load(
    config: Config, tmp_path: Path
) -> None:
    """schema.org JSON-LD (`<script type="application/ld+json">`, on most vendor start pages)
    is data, never fetched by the browser. Reporting `schema.org: would load (shield off)`
    fails page.third_party for a page that loads nothing from a third party: a false alarm
    that sends staff chasing a load that never happens."""
    html = b"""<!doctype html><html><head><title>Search</title>
<script type="application/ld+json">{"@context":"https://schema.org","@type":"WebSite",
"url":"https://search.good-research.test/","name":"Good Research"}</script>
</head><body>Search</body></html>"""
    third = (await page_checks(config, html, tmp_path))["page.third_party"]
    assert "schema.org" not in third.evidence, third
    assert third.result == "pass", third


# --------------------------------------------------------------------------- decisions the fixes made


def _page(config: Config, html: bytes) -> dict:
    from proxy.compliance import PageSource

    page = PageSource("start.html", html, ())
    return {c.id: c for c in check_page(unshielded(config), config, page, load_trackers())}


def test_an_import_map_is_a_load(config: Config) -> None:
    """An import map's URLs are fetched by the browser when scripts import them: not data."""
    html = b"""<script type="importmap">{"imports":{"a":"https:\\/\\/cdn.example.org\\/a.js"}}
</script><script type="module">import "a";</script>"""
    assert "cdn.example.org" in _page(config, html)["page.third_party"].evidence


def test_a_json_block_reports_a_listed_tracker_but_not_other_hosts(config: Config) -> None:
    """A JSON block (application/json) is data a page's script may load from: a listed tracker
    named in it counts; any other host in it (a link, an identifier) does not."""
    html = b"""<script type="application/json" id="cfg">{"pixel":"https://connect.facebook.net/x.js",
"home":"https://www.example.org/"}</script>"""
    checks = _page(config, html)
    assert checks["page.trackers"].result == FAIL
    assert "example.org" not in checks["page.third_party"].evidence


def test_a_body_that_cannot_be_decoded_is_refused_not_passed(tmp_path: Path) -> None:
    """A saved response whose body cannot be decoded (corrupt gzip) raises PageUnreadable."""
    from proxy.compliance import PageUnreadable

    path = tmp_path / "start.http"
    path.write_bytes(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n\x1f\x8bnot gzip at all")
    with pytest.raises(PageUnreadable):
        read_page(path)


def test_js_cookie_defaults_without_a_lifetime_stay_session_cookies() -> None:
    """`withAttributes` without expires sets session cookies; a chained set's own expires wins."""
    from proxy.compliance_cookies import LASTING, SESSION, script_cookies

    plain = script_cookies("Cookies.withAttributes({ path: '/' }).set('a', 'b');")
    assert [(c.name, c.lifetime.kind) for c in plain] == [("a", SESSION)]
    own = script_cookies("Cookies.withAttributes({ path: '/' }).set('a', 'b', { expires: 30 });")
    assert [(c.name, c.lifetime.kind) for c in own] == [("a", LASTING)]


def test_the_cli_refuses_a_page_it_cannot_decode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`compliance --page` with an undecodable body exits 2 (usage) naming the file, not PASSED."""
    from proxy.cli import main

    page = tmp_path / "start.http"
    page.write_bytes(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\nnot brotli")
    cfg = materialise(tmp_path / "conf", ["good"])
    assert main(["compliance", "--config", str(cfg), "--page", f"good={page}"]) == 2
    assert "start.http" in capsys.readouterr().err
