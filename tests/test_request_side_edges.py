"""What leaves toward a vendor on the request side: preflights, uploads, bodies mapped back.
From a review; every test failed before its fix (two strict xfails record a limit)."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS
from tests.canary import CANARY
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    html_page,
    ldap_directory,
    sign_in_through_form,
    vendor_toml,
    write_config,
)

HOST = "www.review-db.test"


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor]:
    vendor = await vendor_factory(HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    return driver, vendor


def _public_host_in(driver: ProxyDriver, data: bytes) -> bool:
    return b"proxy.localhost" in data


async def _post(driver: ProxyDriver, body: bytes, content_type: str) -> bytes:
    r = await driver.get_vendor(
        HOST, "/save", method="POST", data=body, headers={"Content-Type": content_type}
    )
    assert r.status == 200, r.status
    return b""


async def test_text_plain_form_return_url_is_mapped_back(setup: Any) -> None:
    """An HTML form with enctype="text/plain" (and navigator.sendBeacon with a string, which
    Chromium sends as text/plain;charset=UTF-8) posting the page's address: the README said
    mapped URLs in forms were mapped back, but a text/plain body reached the vendor with the
    proxy's mapped host in it."""
    driver, vendor = setup
    mapped = f"http://{driver.mapped(HOST)}/record/42?from=search"
    body = f"return={mapped}\r\nq=tides\r\n".encode()
    await _post(driver, body, "text/plain")
    got = [r for r in vendor.requests if r.method == "POST"][-1].body
    assert got == f"return=http://{HOST}/record/42?from=search\r\nq=tides\r\n".encode(), got


async def test_xml_soap_body_urls_are_mapped_back(setup: Any) -> None:
    """A vendor script posting XML (SOAP, an OpenURL/XML export, a saved-list call) with the page's
    address: the vendor received the proxy's mapped host instead of its own."""
    driver, vendor = setup
    mapped = f"http://{driver.mapped(HOST)}/record/42"
    for ctype in ("text/xml; charset=utf-8", "application/soap+xml", "application/xml"):
        body = (
            '<?xml version="1.0"?><Envelope><Body><Save>'
            f"<ReturnUrl>{mapped}</ReturnUrl></Save></Body></Envelope>"
        ).encode()
        await _post(driver, body, ctype)
        got = [r for r in vendor.requests if r.method == "POST"][-1].body
        assert not _public_host_in(driver, got), (ctype, got)
        assert f"<ReturnUrl>http://{HOST}/record/42</ReturnUrl>".encode() in got, (ctype, got)


async def test_graphql_body_urls_are_mapped_back(setup: Any) -> None:
    """A GraphQL query posted as application/graphql (the other GraphQL-over-HTTP media type)
    with the page's address in it reached the vendor with the proxy's mapped host."""
    driver, vendor = setup
    mapped = f"http://{driver.mapped(HOST)}/record/42"
    body = f'mutation {{ saveItem(returnUrl: "{mapped}") {{ id }} }}'.encode()
    await _post(driver, body, "application/graphql")
    got = [r for r in vendor.requests if r.method == "POST"][-1].body
    assert got == f'mutation {{ saveItem(returnUrl: "http://{HOST}/record/42") {{ id }} }}'.encode()


async def test_compressed_upload_keeps_its_content_encoding(setup: Any) -> None:
    """A vendor script posting a gzip-compressed body (CompressionStream, with Content-Encoding:
    gzip): the proxy's HTTP server (aiohttp) inflated the body while the allowlist dropped
    Content-Encoding and the compressed Content-Length was kept for the streamed body; the
    inflated bytes overran it, the vendor connection was aborted, and the patron got 502 for
    a valid upload. Now the vendor gets the inflated body with its own length."""
    driver, vendor = setup
    raw = b'{"events": [' + b'{"n": 1},' * 200 + b'{"n": 2}]}'
    packed = gzip.compress(raw)
    r = await driver.get_vendor(
        HOST,
        "/collect",
        method="POST",
        data=packed,
        headers={"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"},
    )
    assert r.status == 200, r.status
    got = [x for x in vendor.requests if x.method == "POST"][-1]
    sent = {k.lower(): v for k, v in got.headers}
    # Either the coding travels with the bytes, or the proxy decodes them: never gzip bytes as data.
    assert (sent.get("content-encoding") == "gzip" and got.body == packed) or got.body == raw, sent


async def test_nested_multipart_mixed_files_reach_the_vendor_byte_for_byte(setup: Any) -> None:
    """RFC 2388/7578 multipart/form-data may carry several files of one field as a nested
    multipart/mixed part whose own parts hold the file names. request_bodies.py promised an
    uploaded file reached the vendor exactly as sent, but it only looked for "filename" in the
    outer part's headers, so the nested files were rewritten as if they were text fields."""
    driver, vendor = setup
    mapped = f"http://{driver.mapped(HOST)}/x".encode()
    upload = b"%PDF-1.4 see " + mapped + b" \x00\x01\x02"
    body = (
        b'--outer\r\nContent-Disposition: form-data; name="files"\r\n'
        b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n"
        b'--inner\r\nContent-Disposition: file; filename="a.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n" + upload + b"\r\n--inner--\r\n"
        b"\r\n--outer--\r\n"
    )
    await _post(driver, body, "multipart/form-data; boundary=outer")
    got = [r for r in vendor.requests if r.method == "POST"][-1].body
    assert upload in got, got


API_HOST = "api.review-db.test"

CORS_SCRIPT = """<!doctype html><title>search</title><p id="out">waiting</p>
<script>
fetch("http://api.review-db.test/api/save", {{
  method: "POST",{credentials}
  headers: {{"Content-Type": "application/json"}},
  body: JSON.stringify({{list: "my-list"}}),
}}).then(r => r.text()).then(t => {{ document.title = "ok:" + t; }})
  .catch(e => {{ document.title = "failed"; }});
</script>"""

CREDENTIALLESS_LIMIT = (
    "a request the browser sends without cookies cannot be tied to a session, and forwarding "
    "it without one would make the proxy an open relay to licensed content for IP-authenticated "
    "vendors (P7); a known limitation (docs/vendor-setup.md)"
)


async def _cors_api(request: web.Request) -> web.StreamResponse:
    """A vendor API host answering CORS as the common middleware does (Express `cors` with
    `credentials: true`): the preflight's allowed headers are the ones the browser asked for,
    and the page's own origin is allowed with credentials."""
    origin = request.headers.get("Origin", "")
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
    if request.method == "OPTIONS":
        headers["Access-Control-Allow-Methods"] = "GET,HEAD,PUT,PATCH,POST,DELETE"
        asked = request.headers.get("Access-Control-Request-Headers")
        if asked:
            headers["Access-Control-Allow-Headers"] = asked
        return web.Response(status=204, headers=headers)
    return web.Response(text="saved", headers=headers, content_type="text/plain")


async def _post_across_hosts(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    credentials: str,
) -> tuple[str, list[str], RecordingVendor]:
    """A signed-in patron's Chromium opening the vendor's www page, whose script POSTs JSON to
    the vendor's API host; (the page's title when done, console lines, the vendor)."""
    vendor: RecordingVendor = await vendor_factory(HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[HOST, API_HOST])},
    )
    driver = await proxy_factory(cfg)
    vendor.routes["/page"] = html_page(CORS_SCRIPT.format(credentials=credentials))
    vendor.routes["/api/save"] = _cors_api
    console: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await (await browser.new_context()).new_page()
            page.on("console", lambda m: console.append(m.text))
            await sign_in_through_form(page, f"http://{driver.public}")
            await page.goto(f"http://{driver.mapped(HOST)}/page")
            for _ in range(50):
                if (await page.title()) != "search":
                    break
                await asyncio.sleep(0.1)
            title = await page.title()
        finally:
            await browser.close()
    return title, console, vendor


async def test_cors_preflight_between_a_vendors_hosts_succeeds_in_chromium(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor page on www calling its API host with a credentialed JSON POST (fetch with
    credentials "include", as XHR withCredentials): Chromium first sent a CORS preflight
    (OPTIONS), which never carries cookies, and the proxy's session gate answered it with a
    redirect to /login ("Redirect is not allowed for a preflight request"), so Chromium blocked
    the real request. The proxy now answers the preflight itself; the POST, with the session
    cookie, reaches the vendor's API host."""
    title, console, vendor = await _post_across_hosts(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, '\n  credentials: "include",'
    )
    assert title == "ok:saved", (title, console)
    posts = [r for r in vendor.requests if r.method == "POST" and r.host == API_HOST]
    assert len(posts) == 1 and posts[0].body == b'{"list":"my-list"}', posts
    # The patron's vendor side worked: the adapter's assertion went with it, as on any request.
    sent = {k.lower(): v for k, v in posts[0].headers}
    assert "x-patron-assertion" in sent, sent
    assert not [r for r in vendor.requests if r.method == "OPTIONS"], "preflight was forwarded"


@pytest.mark.xfail(strict=True, reason=CREDENTIALLESS_LIMIT)
async def test_default_credentials_post_between_a_vendors_hosts_succeeds_in_chromium(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The same JSON POST with fetch's default credentials ("same-origin"): between two mapped
    hosts it goes without the session cookie, so after the preflight (now answered) the POST
    itself meets the session gate and is redirected to /login."""
    title, console, vendor = await _post_across_hosts(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, ""
    )
    assert title == "ok:saved", (title, console)
    posts = [r for r in vendor.requests if r.method == "POST" and r.host == API_HOST]
    assert len(posts) == 1, posts


OTHER_HOST = "www.other-db.test"


async def test_preflight_is_answered_by_the_proxy(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A preflight was forwarded (with a session cookie; without one it met the session gate)
    without Access-Control-Request-Method and -Headers, which are not on the allowlist, so the
    vendor could not answer it as one. The proxy now answers it itself, without a session:
    allowed for an origin of the same vendor, no CORS headers for another vendor's, the proxy's
    own or an unknown one; no vendor receives anything."""
    vendor: RecordingVendor = await vendor_factory(HOST)
    other_vendor: RecordingVendor = await vendor_factory(OTHER_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "one": vendor_toml("one", vendor, hosts=[HOST, API_HOST]),
            "two": vendor_toml("two", other_vendor),
        },
    )
    driver = await proxy_factory(cfg)
    asked = {
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type,x-requested-with",
    }
    origin = f"http://{driver.mapped(HOST)}"
    r = await driver.get_vendor(
        API_HOST, "/api/save", method="OPTIONS", sid="", headers={"Origin": origin, **asked}
    )
    assert r.status == 204, r.status
    assert r.headers.get("Access-Control-Allow-Origin") == origin
    assert r.headers.get("Access-Control-Allow-Credentials") == "true"
    assert r.headers.get("Access-Control-Allow-Methods") == "PUT"
    assert r.headers.get("Access-Control-Allow-Headers") == "content-type,x-requested-with"
    assert r.headers.get("Access-Control-Max-Age") == "600"
    assert r.headers.get("Vary") == "Origin"
    assert r.headers.get("Cache-Control") == "no-store"
    # A method the proxy never forwards, and a header list that is not one, are not allowed.
    r = await driver.get_vendor(
        API_HOST,
        "/api/save",
        method="OPTIONS",
        sid="",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "TRACE",
            "Access-Control-Request-Headers": "x-a;x-b",
        },
    )
    assert r.status == 204 and r.headers.get("Access-Control-Allow-Origin") == origin
    assert "Access-Control-Allow-Methods" not in r.headers
    assert "Access-Control-Allow-Headers" not in r.headers
    for other in (
        f"http://{driver.mapped(OTHER_HOST)}",
        f"http://{driver.public}",
        "http://evil.example",
        "null",
    ):
        r = await driver.get_vendor(
            API_HOST, "/api/save", method="OPTIONS", sid="", headers={"Origin": other, **asked}
        )
        assert r.status == 204, (other, r.status)
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], (
            other,
            r.headers,
        )
    assert vendor.requests == [] and other_vendor.requests == []


STATIC_HOST = "static.review-db.test"

FONT_PAGE = """<!doctype html><title>fonts</title>
<style>
@font-face { font-family: VendorFont; src: url(http://static.review-db.test/f.woff2) format("woff2"); }
body { font-family: VendorFont, serif; }
</style><p>Search results</p>
<script>
document.fonts.load("16px VendorFont").then(() => fetch("http://static.review-db.test/list.json"))
  .then(r => r.text()).then(t => { document.title = "got:" + t; })
  .catch(e => { document.title = "failed"; });
</script>"""


@pytest.mark.xfail(strict=True, reason=CREDENTIALLESS_LIMIT)
async def test_credentialless_requests_to_a_vendors_other_host_reach_it(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A web font (CORS, credentials "same-origin") and a plain fetch() from a vendor's www page
    to its static host: both were cross-origin between mapped hosts, so Chromium sent them
    without the proxy's session cookie, and the session gate redirected them to /login. The
    vendor never got them: fonts and the page's data calls failed for every patron. Still so:
    a known limit (the reason below)."""
    vendor: RecordingVendor = await vendor_factory(HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[HOST, STATIC_HOST])},
    )
    driver = await proxy_factory(cfg)

    async def cors_file(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=b"[1,2,3]",
            content_type="application/json",
            headers={"Access-Control-Allow-Origin": "*"},
        )

    vendor.routes["/page"] = html_page(FONT_PAGE)
    vendor.routes["/list.json"] = cors_file
    vendor.routes["/f.woff2"] = cors_file
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await (await browser.new_context()).new_page()
            await sign_in_through_form(page, f"http://{driver.public}")
            await page.goto(f"http://{driver.mapped(HOST)}/page")
            for _ in range(50):
                if (await page.title()) != "fonts":
                    break
                await asyncio.sleep(0.1)
            title = await page.title()
        finally:
            await browser.close()
    paths = [r.path_qs for r in vendor.requests if r.host == STATIC_HOST]
    assert "/f.woff2" in paths, paths
    # What the proxy answers such a request (no cookie, as Chromium sends it): not the vendor's file.
    r = await driver.client.get(
        "/list.json",
        headers={"Host": driver.mapped(STATIC_HOST), "Origin": f"http://{driver.mapped(HOST)}"},
        allow_redirects=False,
    )
    assert r.status == 200 and await r.read() == b"[1,2,3]", (r.status, r.headers.get("Location"))
    assert title == "got:[1,2,3]", title


async def test_upload_limit_holds_for_a_compressed_body(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """`limits.max_upload_bytes` is "largest request body forwarded". A JSON body sent with
    Content-Encoding: gzip was inflated by the proxy's HTTP server (aiohttp), and the limit was
    checked against the small compressed Content-Length only: the inflated body, many times the
    limit, was read whole and sent to the vendor. Now it is refused (413) and nothing is sent."""
    vendor: RecordingVendor = await vendor_factory(HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "one": vendor_toml("one", vendor, extra="\n[limits]\nmax_upload_bytes = 100000\n")
        },
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    inflated = b'{"pad": "' + b" " * 900_000 + b'"}'
    packed = gzip.compress(inflated)
    assert len(packed) < 100000
    r = await driver.get_vendor(
        HOST,
        "/save",
        method="POST",
        data=packed,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    biggest = max((len(x.body) for x in vendor.requests if x.method == "POST"), default=0)
    assert biggest <= 100000, f"vendor was sent {biggest} bytes; limit 100000 (status {r.status})"
    assert r.status == 413, r.status


async def test_upload_in_a_coding_the_proxy_does_not_read_is_refused(setup: Any) -> None:
    """A body in a Content-Encoding aiohttp's server does not decode (here `compress`) went on
    as it came, the coding dropped by the allowlist: coded bytes taken by the vendor as data.
    Now it is refused (415) and nothing is sent."""
    driver, vendor = setup
    r = await driver.get_vendor(
        HOST,
        "/collect",
        method="POST",
        data=b"\x1f\x9d\x90coded",
        headers={"Content-Type": "application/octet-stream", "Content-Encoding": "compress"},
    )
    assert r.status == 415, r.status
    assert not [x for x in vendor.requests if x.method == "POST"]
