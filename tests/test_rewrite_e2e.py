"""End to end: a realistic vendor site on two hosts of one vendor, through the real proxy.

One recording server plays `www.vendor-one.test` and `cdn.vendor-one.test` (both reached through
`connect_to`); patrons log in against real slapd. The tests check what the patron's browser gets
(every configured URL mapped, nothing else touched, consistent codings, the tracker shield) and
what the vendor gets (its own URLs back, the PDF streamed, no canary byte).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from random import Random
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import brotli
import pytest
from aiohttp import web
from yarl import URL

from proxy.app import SERVICES
from proxy.forward import Observation
from tests.canary import CANARY, leaks
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

WWW = "www.vendor-one.test"
CDN = "cdn.vendor-one.test"
STATIC = "static.vendor-one.test"  # under *.vendor-one.test but never_proxy
TWO = "www.vendor-two.test"
SITE = Path(__file__).parent / "data" / "vendor_site"
PAGE = (SITE / "page.html").read_bytes()
API = (SITE / "api.json").read_bytes()
# The vendor's "page-v1", made weak (the body was rewritten) and sealed for the session
# (proxy.validators).
SEALED_PAGE_TAG = re.compile(r'W/"[0-9a-f]{16}~page-v1"')
THIRD_PARTY = {
    "fonts.thirdparty.test",
    "tracker.example-ads.test",
    "pixel.example-ads.test",
    STATIC,
    "www.westonlibrary.org",
}
UNTOUCHED = (
    b"https://fonts.thirdparty.test/css2?family=Serif",
    b"https://tracker.example-ads.test/t.js?id=VENDOR-ONE",
    b"https:\\/\\/analytics.thirdparty.test\\/collect",
    b"https://static.vendor-one.test/brand/guide.pdf",
    b"https://static.vendor-one.test/thumbs/1002.jpg",
    b"https://tracker.example-ads.test/pixel.gif?page=results",
    b"//pixel.example-ads.test/p.gif",
    b"https://www.westonlibrary.org/",
)
PDF_PIECE = 256 * 1024
PDF_HEAD = b"%PDF-1.7\n% https://www.vendor-one.test/ must pass untouched\n"
PDF = PDF_HEAD + Random(7).randbytes(5 * 1024 * 1024 - len(PDF_HEAD) - 7) + b"\n%%EOF\n"
RULES = """\
never_proxy = ["static.vendor-one.test"]

[[rewrite]]
find = 'var vendorHost = "www.vendor-one.test";'
replace = "var vendorHost = location.host;"

[[rewrite]]
find = "if (top !== self) { top.location = self.location; }"
replace = "/* frame-buster removed */"
"""


class Site:
    """The vendor's routes, plus what the test needs to steer and measure the PDF stream."""

    def __init__(self) -> None:
        self.release_last_piece = asyncio.Event()
        self.timeline: dict[str, float] = {}
        self.raw_targets: list[str] = []  # request targets as sent (RecordingVendor normalises)

    async def search(self, request: web.Request) -> web.StreamResponse:
        self.raw_targets.append(request.raw_path)
        return web.Response(text="<p>results</p>", content_type="text/html")

    async def page(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match", "").removeprefix("W/") == '"page-v1"':
            return web.Response(status=304, headers={"ETag": '"page-v1"'})
        coding = request.path.rsplit(".", 1)[-1]
        body = {"gz": gzip.compress(PAGE), "br": brotli.compress(PAGE)}.get(coding, PAGE)
        headers = {
            "Content-Type": "text/html; charset=utf-8",
            "ETag": '"page-v1"',
            "Report-To": '{"group":"v","endpoints":[{"url":"https://tracker.example-ads.test/r"}]}',
            "NEL": '{"report_to":"v","max_age":86400}',
            "Reporting-Endpoints": 'v="https://tracker.example-ads.test/r"',
        }
        if coding in ("gz", "br"):
            headers["Content-Encoding"] = {"gz": "gzip", "br": "br"}[coding]
        return web.Response(body=body, headers=headers)

    async def api(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=API, content_type="application/json")

    async def go(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": f"http://{CDN}/hop?n=1"})

    async def hop(self, request: web.Request) -> web.StreamResponse:
        # A raw header: aiohttp's HTTPFound would normalise the %-encoded URL in the query.
        via = quote(f"https://{CDN}/hop", safe="")
        return web.Response(status=301, headers={"Location": f"https://{WWW}/landing?via={via}"})

    async def landing(self, request: web.Request) -> web.StreamResponse:
        self.raw_targets.append(request.raw_path)
        return web.Response(
            text=f"<a href='https://{WWW}/next'>next</a>",
            content_type="text/html",
            headers={
                "Link": f"<https://{CDN}/css/site.css>; rel=preload; as=style",
                "Content-Location": f"https://{WWW}/landing",
                "Refresh": f"600; url=https://{WWW}/session/timeout",
            },
        )

    async def pdf(self, request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/pdf", "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return web.Response(body=PDF, headers=headers)
        if "Range" in request.headers:
            part = request.http_range
            start = part.start or 0
            body = PDF[part]
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(PDF)}"
            return web.Response(status=206, body=body, headers=headers)
        resp = web.StreamResponse(headers=headers)
        resp.content_length = len(PDF)
        await resp.prepare(request)
        t = self.timeline
        t["vendor_start"] = time.monotonic()
        last = len(PDF) - PDF_PIECE
        for offset in range(0, last, PDF_PIECE):
            await resp.write(PDF[offset : min(offset + PDF_PIECE, last)])
        t["vendor_paused"] = time.monotonic()
        try:
            await asyncio.wait_for(self.release_last_piece.wait(), 10)
        except TimeoutError:
            t["vendor_timed_out"] = time.monotonic()
        await resp.write(PDF[last:])
        await resp.write_eof()
        t["vendor_done"] = time.monotonic()
        return resp

    async def corrupt(self, request: web.Request) -> web.StreamResponse:
        packed = gzip.compress(PAGE * 40)
        body = packed[: len(packed) // 2] + b"\x00not gzip at all\xff" * 64
        headers = {"Content-Type": "text/html", "Content-Encoding": "gzip"}
        return web.Response(body=body, headers=headers)

    async def truncated(self, request: web.Request) -> web.StreamResponse:
        packed = gzip.compress(PAGE)
        headers = {"Content-Type": "text/html", "Content-Encoding": "gzip"}
        return web.Response(body=packed[:-12], headers=headers)

    def routes(self) -> dict[str, Any]:
        return {
            "/results": self.page,
            "/results.gz": self.page,
            "/results.br": self.page,
            "/api/v2/search": self.api,
            "/go": self.go,
            "/hop": self.hop,
            "/landing": self.landing,
            "/search": self.search,
            "/doc.pdf": self.pdf,
            "/corrupt": self.corrupt,
            "/truncated": self.truncated,
        }


@pytest.fixture
async def site() -> Site:
    return Site()


@pytest.fixture
async def setup(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    site: Site,
) -> AsyncIterator[tuple[ProxyDriver, RecordingVendor, list[Observation]]]:
    vendor = await vendor_factory(WWW)
    vendor.routes.update(site.routes())
    two = await vendor_factory(TWO)
    two.routes["/results"] = site.page
    allow = 'third_party = "allow"\nthird_party_reason = "synthetic test vendor"\n'
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "one": vendor_toml("one", vendor, hosts=[WWW, "*.vendor-one.test"], extra=RULES),
            "two": vendor_toml("two", two, extra=allow),
        },
    )
    driver = await proxy_factory(cfg)
    observed: list[Observation] = []
    # First, so another observer's failure cannot hide what the forwarder reported.
    driver.client.server.app[SERVICES].hooks.observers.insert(0, observed.append)
    r = await driver.login(CANARY.uid, CANARY.password)
    assert r.status == 303
    yield driver, vendor, observed
    # Whatever a test did, the vendors never received a canary byte (P1).
    assert leaks(vendor.all_bytes()) == []
    assert leaks(two.all_bytes()) == []


def mapped(driver: ProxyDriver, host: str) -> str:
    return f"http://{driver.mapped(host)}"


def hosts_named(body: bytes) -> set[str]:
    """Every host an absolute or protocol-relative URL names, after undoing JSON and %-escapes."""
    text = unquote(unquote(body.decode("utf-8").replace("\\/", "/")))
    return {h.lower() for h in re.findall(r"(?:https?:)?//([a-z0-9.\-]+)", text, re.IGNORECASE)}


def expected_rewrites(driver: ProxyDriver) -> list[str]:
    w, c = mapped(driver, WWW), mapped(driver, CDN)
    rel_c = "//" + driver.mapped(CDN)
    pc = driver.mapped(WWW).replace(":", "%3A")
    return [
        f'<base href="{w}/search/">',
        f'content="1800; url={w}/session/timeout?from=results"',
        f'<link rel="stylesheet" href="{c}/css/site.css?v=42">',
        f'href="{rel_c}/fonts/serif.woff2"',
        f'href="{c}/favicon.ico"',
        f"url({c}/img/paper.png)",
        f"url('{rel_c}/img/logo.svg')",
        f'@import url("{c}/css/print.css")',
        f"src: url({c}/fonts/serif.woff2)",
        f'<script src="{c}/js/app.js" defer>',
        '"apiBase":"' + w.replace("/", "\\/") + '\\/api\\/v2"',
        f'"http%3A%2F%2F{pc}%2Fsearch%3Fq%3Dtides"',
        '"http%253A%252F%252F' + driver.mapped(CDN).replace(":", "%253A") + '%252Fexport"',
        "var vendorHost = location.host;",
        "/* frame-buster removed */",
        f'fetch("{w}/api/v2/session/ping"',
        f'<body background="{c}/img/bg.jpg">',
        f'style="background-image: url({c}/img/header.png)"',
        f'<a href="{w}/">Vendor One</a>',
        f'<a href="{w}/help">Help</a>',
        f'<form action="{w}/search" method="get">',
        f'name="return" value="{w}/search/results"',
        f'formaction="{w}/search/advanced"',
        f'<a href="{w}/article/1001?db=a9h&amp;AN=1001">',
        f'srcset="{c}/thumbs/1001.jpg 1x, {c}/thumbs/1001@2x.jpg 2x"',
        f'<a href="{w}/pdf/1001.pdf" download>',
        f"<a href='//{driver.mapped(WWW)}/article/1002'>",
        f'srcset="{rel_c}/thumbs/1002.webp 320w,{rel_c}/thumbs/1002-big.webp 640w"',
        f'poster="{c}/video/intro.jpg"',
        f'<source src="{c}/video/intro.mp4"',
        f'<object data="{c}/widgets/citation.svg"',
        f'<td background="{rel_c}/img/cell.gif">',
        f'<iframe src="{w}/embed/viewer?doc=1001"',
        f"Contact us at {w}/contact.",
    ]


# ------------------------------------------------------------------------------------ bodies


@pytest.mark.parametrize("path", ["/results", "/results.gz", "/results.br"])
async def test_page_every_link_kind_mapped_and_nothing_else(setup: Any, path: str) -> None:
    """Identity, gzip and br: every configured URL form is mapped, third-party URLs are byte-for-byte
    untouched, the configured hosts never survive, and the body's headers match the body."""
    driver, vendor, _ = setup
    r = await driver.get_vendor(
        WWW, path, headers={"Accept-Encoding": "gzip, deflate, br"}, auto_decompress=False
    )
    body = await r.read()
    assert r.status == 200
    assert "Content-Encoding" not in r.headers  # sent uncompressed, so nothing to mismatch
    if "Content-Length" in r.headers:
        assert int(r.headers["Content-Length"]) == len(body)
    assert SEALED_PAGE_TAG.fullmatch(r.headers["ETag"]), r.headers["ETag"]
    text = body.decode("utf-8")
    missing = [e for e in expected_rewrites(driver) if e not in text]
    assert missing == []
    assert [u for u in UNTOUCHED if u not in body] == []
    assert WWW.encode() not in body.lower() and CDN.encode() not in body.lower()
    ours = {driver.mapped(h).split(":")[0] for h in (WWW, CDN)}
    assert hosts_named(body) == ours | THIRD_PARTY | {"analytics.thirdparty.test"}
    assert vendor.requests[-1].host == WWW


async def test_charset_is_read_as_a_parameter_not_found_in_another_ones_quotes(
    setup: Any,
) -> None:
    """`charset=utf-16` inside another parameter's quoted value is not the page's charset: the
    page is read as the real one (UTF-8), so its vendor URLs are rewritten, not left behind
    undecodable."""
    driver, vendor, _ = setup

    async def quoted(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=PAGE,
            headers={"Content-Type": 'text/html; profile="a;charset=utf-16"; charset=utf-8'},
        )

    vendor.routes["/quoted"] = quoted
    r = await driver.get_vendor(WWW, "/quoted")
    body = await r.read()
    assert r.status == 200
    assert WWW.encode() not in body.lower() and CDN.encode() not in body.lower()
    assert [e for e in expected_rewrites(driver) if e not in body.decode("utf-8")] == []


async def test_three_codings_give_the_same_rewritten_page(setup: Any) -> None:
    driver, _, _ = setup
    bodies = []
    for path in ("/results", "/results.gz", "/results.br"):
        r = await driver.get_vendor(WWW, path, headers={"Accept-Encoding": "gzip, br"})
        bodies.append(await r.read())
    assert bodies[0] == bodies[1] == bodies[2]


async def test_vendor_asked_only_for_codings_the_proxy_can_undo(setup: Any) -> None:
    driver, vendor, _ = setup
    await driver.get_vendor(WWW, "/results", headers={"Accept-Encoding": "zstd, br, gzip, sdch"})
    sent = dict((k.lower(), v) for k, v in vendor.requests[-1].headers)
    assert sent["accept-encoding"] == "br, gzip"


async def test_json_api_urls_mapped(setup: Any) -> None:
    driver, _, _ = setup
    r = await driver.get_vendor(CDN, "/api/v2/search")
    raw = await r.read()
    assert WWW.encode() not in raw and CDN.encode() not in raw
    data = await r.json()
    w, c = mapped(driver, WWW), mapped(driver, CDN)
    assert data["next"] == f"{w}/api/v2/search?q=tides&page=2"
    assert data["escaped"] == f"{c}/thumbs/1001.jpg"
    assert data["relative"] == f"//{driver.mapped(CDN)}/thumbs/1002.webp"
    assert unquote(data["encoded"]) == f"{w}/article/1001"
    assert data["ads"] == "https://tracker.example-ads.test/api-beacon"
    assert [i["url"] for i in data["items"]] == [f"{w}/article/1001", f"{w}/article/1002"]
    assert data["items"][1]["title"] == "Weston\u2019s Mills"


async def test_reporting_headers_never_reach_the_browser(setup: Any) -> None:
    """Report-To, NEL and Reporting-Endpoints would post page URLs straight to a vendor endpoint."""
    driver, _, _ = setup
    r = await driver.get_vendor(WWW, "/results")
    assert not {"Report-To", "NEL", "Reporting-Endpoints", "Set-Cookie"} & set(r.headers)


# ------------------------------------------------------------------------------- headers


async def test_redirect_chain_across_vendor_hosts_stays_on_the_proxy(
    setup: Any, site: Site
) -> None:
    """www → cdn → www: each Location is the mapped host, and the last hop's query URL reaches
    the vendor as its own URL again."""
    driver, vendor, _ = setup
    r = await driver.get_vendor(WWW, "/go")
    assert r.status == 302
    assert r.headers["Location"] == f"{mapped(driver, CDN)}/hop?n=1"
    r = await driver.get_vendor(CDN, "/hop?n=1")
    assert r.status == 301
    via = quote(f"{mapped(driver, CDN)}/hop", safe="")
    assert r.headers["Location"] == f"{mapped(driver, WWW)}/landing?via={via}"
    # encoded=True: the client must send the %-escapes as they are, as a browser does.
    r = await driver.get_vendor(WWW, URL(f"/landing?via={via}", encoded=True))
    assert r.status == 200
    assert r.headers["Link"] == f"<{mapped(driver, CDN)}/css/site.css>; rel=preload; as=style"
    assert r.headers["Content-Location"] == f"{mapped(driver, WWW)}/landing"
    assert r.headers["Refresh"] == f"600; url={mapped(driver, WWW)}/session/timeout"
    assert [(q.host, q.path_qs.split("?")[0]) for q in vendor.requests] == [
        (WWW, "/go"),
        (CDN, "/hop"),
        (WWW, "/landing"),
    ]
    assert site.raw_targets == ["/landing?via=" + quote(f"http://{CDN}/hop", safe="")]


async def test_head_has_the_headers_a_get_would_have(setup: Any) -> None:
    """HEAD of a gzip page: no Content-Encoding or vendor Content-Length (the GET body is the
    rewritten, uncompressed one); HEAD of the PDF keeps its length."""
    driver, _, _ = setup
    r = await driver.get_vendor(WWW, "/results.gz", method="HEAD", auto_decompress=False)
    assert r.status == 200 and await r.read() == b""
    assert "Content-Encoding" not in r.headers
    assert r.headers.get("Content-Length", "0") == "0" or "Content-Length" not in r.headers
    assert SEALED_PAGE_TAG.fullmatch(r.headers["ETag"]), r.headers["ETag"]
    assert "Content-Security-Policy" in r.headers
    r = await driver.get_vendor(WWW, "/doc.pdf", method="HEAD")
    assert r.status == 200 and await r.read() == b""
    assert r.headers["Content-Length"] == str(len(PDF))


async def test_not_modified_passes_through_with_the_weak_etag(setup: Any) -> None:
    """The tag the browser was given (weak, sealed for the session) asks the vendor with its
    own tag, and the 304 comes back with the browser's."""
    driver, vendor, _ = setup
    given = (await driver.get_vendor(WWW, "/results")).headers["ETag"]
    r = await driver.get_vendor(WWW, "/results", headers={"If-None-Match": given})
    assert r.status == 304
    assert r.headers["ETag"] == given
    assert await r.read() == b""
    sent = dict((k.lower(), v) for k, v in vendor.requests[-1].headers)
    # The vendor gets its own (strong) tag back: the weakening was the proxy's.
    assert sent["if-none-match"] == '"page-v1"'


# ---------------------------------------------------------------------------- request side


async def test_mapped_url_in_query_reaches_vendor_as_its_own(setup: Any, site: Site) -> None:
    driver, _, _ = setup
    back = quote(f"{mapped(driver, WWW)}/back?x=1", safe="")
    plain = f"{mapped(driver, CDN)}/img"
    await driver.get_vendor(WWW, URL(f"/search?return={back}&u={plain}", encoded=True))
    assert site.raw_targets[-1] == (
        f"/search?return={quote(f'http://{WWW}/back?x=1', safe='')}&u=http://{CDN}/img"
    )


async def test_mapped_url_in_form_body_reaches_vendor_as_its_own(setup: Any) -> None:
    driver, vendor, _ = setup
    form = {"q": "tides", "return": f"{mapped(driver, WWW)}/search/results"}
    await driver.get_vendor(WWW, "/search", method="POST", data=form)
    got = vendor.requests[-1]
    assert got.body == b"q=tides&return=" + quote(f"http://{WWW}/search/results", safe="").encode()
    assert dict((k.lower(), v) for k, v in got.headers)["content-length"] == str(len(got.body))
    assert b"proxy.localhost" not in vendor.all_bytes()


async def test_never_proxy_host_is_refused_without_contacting_the_vendor(setup: Any) -> None:
    driver, vendor, _ = setup
    r = await driver.get_vendor(STATIC, "/brand/guide.pdf")
    assert r.status == 404
    assert vendor.requests == []


# ---------------------------------------------------------------------------- tracker shield


def _host_sources(csp: str) -> list[str]:
    tokens = [t for d in csp.split(";") for t in d.split()[1:]]
    return [t for t in tokens if not t.startswith("'") and not t.endswith(":")]


async def test_shield_csp_names_only_the_proxy(setup: Any) -> None:
    driver, _, _ = setup
    r = await driver.get_vendor(WWW, "/results")
    policies = r.headers.getall("Content-Security-Policy")
    assert len(policies) == 1
    sources = _host_sources(policies[0])
    assert sources
    suffix = f"proxy.localhost:{driver.port}"
    assert [s for s in sources if not s.split("//")[-1].endswith(suffix)] == []
    assert "vendor-one" not in policies[0] and "example-ads" not in policies[0]


async def test_shield_off_for_a_vendor_that_allows_third_parties(setup: Any) -> None:
    driver, _, observed = setup
    r = await driver.get_vendor(TWO, "/results")
    assert r.status == 200
    assert "Content-Security-Policy" not in r.headers
    assert observed[-1].third_party_hosts == 0


async def test_blocked_third_party_hosts_counted_per_vendor(setup: Any) -> None:
    """The page refers to five unproxied hosts: the Observation says 5 and the counter adds 5."""
    driver, _, observed = setup
    rewriter = driver.client.server.app[SERVICES].upstream.rewriter
    assert rewriter.third_party_hosts(PAGE) == THIRD_PARTY
    for path in ("/results", "/results.br"):
        await driver.get_vendor(WWW, path)
        assert observed[-1].third_party_hosts == len(THIRD_PARTY)
    await driver.get_vendor(WWW, "/doc.pdf", headers={"Range": "bytes=0-9"})
    assert observed[-1].third_party_hosts == 0
    metrics = await (await driver.own("GET", "/metrics")).text()
    line = 'weston_proxy_blocked_third_party_total{vendor="one"} '
    assert f"{line}{2.0 * len(THIRD_PARTY)}" in metrics


# ---------------------------------------------------------------------------- streaming


async def test_pdf_first_bytes_arrive_before_the_vendor_finishes(
    setup: Any, site: Site, capsys: Any
) -> None:
    """The vendor holds its last piece until the patron has read the first bytes; the whole PDF
    then arrives byte-for-byte."""
    driver, _, _ = setup
    t0 = time.monotonic()
    r = await driver.get_vendor(WWW, "/doc.pdf")
    assert r.status == 200
    assert r.headers["Content-Length"] == str(len(PDF))
    first = await r.content.readany()
    t_first = time.monotonic()
    assert first and "vendor_done" not in site.timeline
    site.release_last_piece.set()
    rest = await r.read()
    t_done = time.monotonic()
    assert "vendor_timed_out" not in site.timeline
    assert first + rest == PDF
    t = site.timeline
    with capsys.disabled():
        print(
            f"\n[pdf 5 MiB] first {len(first)} B at patron {1000 * (t_first - t0):.1f} ms;"
            f" vendor paused at {1000 * (t['vendor_paused'] - t0):.1f} ms,"
            f" finished {1000 * (t['vendor_done'] - t0):.1f} ms;"
            f" patron has all at {1000 * (t_done - t0):.1f} ms"
        )


async def test_range_request_gives_206_with_the_exact_bytes(setup: Any) -> None:
    driver, vendor, _ = setup
    r = await driver.get_vendor(WWW, "/doc.pdf", headers={"Range": "bytes=1000-1999"})
    assert r.status == 206
    assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(PDF)}"
    assert await r.read() == PDF[1000:2000]
    sent = dict((k.lower(), v) for k, v in vendor.requests[-1].headers)
    assert sent["range"] == "bytes=1000-1999"


@pytest.mark.parametrize("path", ["/corrupt", "/truncated"])
async def test_corrupt_compressed_body_breaks_the_connection(
    setup: Any, log_stream: io.StringIO, path: str
) -> None:
    """A body the decoder cannot undo ends in a broken connection (never a clean short page),
    logged as an outcome without the URL."""
    driver, _, observed = setup
    r = await driver.get_vendor(WWW, path, headers={"Accept-Encoding": "gzip"})
    assert r.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await r.read()
    assert observed[-1].status == 502
    await asyncio.sleep(0.05)
    logs = log_stream.getvalue()
    assert '"outcome": "corrupt_body"' in logs
    assert path not in logs
