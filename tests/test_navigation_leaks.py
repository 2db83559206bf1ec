"""Vendor-page constructs that would send the patron's own browser to a vendor's real host (P3).

The proxy maps vendor URLs to its own mapped hosts, and the tracker-shield CSP blocks loads that
escape rewriting. It cannot block top-level navigations: a link, redirect or refresh whose URL the
rewriter does not recognise, but that Chromium resolves to the vendor's real host, takes the patron
there directly, with their own IP address and browser, outside the proxy (and unauthenticated).

The Chromium tests point the vendor's real host name at a second recording server with
`--host-resolver-rules`: any request it records came straight from the patron's browser.
The unit tests cover further spellings of the same forms; each one was followed by Chromium
to the real host when this review was written (same set-up as the end-to-end tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web
from playwright.async_api import Error, Page, async_playwright

from proxy.hosts import HostMap
from proxy.navigation import to_vendor_host
from proxy.rewrite import Rewriter
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS
from tests.harness import (
    RecordingVendor,
    ldap_directory,
    sign_in_through_form,
    vendor_toml,
    write_config,
)

VENDOR = "www.vendor.test"


async def direct_requests(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    body: str | bytes,
    *,
    content_type: str = "text/html",
    headers: dict[str, str] | None = None,
    status: int = 200,
    click: str | None = None,
    frame_click: str | None = None,
    wait_until: Any = "commit",
    settle_s: float = 3.0,
    vendor_extra: str = "",
) -> list[str]:
    """Serve `body` as it is (with `content_type`, `headers`, `status`) as the vendor's /page
    through the proxy to a signed-in Chromium, click `click` in the page or `frame_click` in
    its first child frame, and return the paths that reached the vendor's real host straight
    from the browser (not through the proxy). `vendor_extra` is added to the vendor's TOML."""
    vendor: RecordingVendor = await vendor_factory(VENDOR)  # what the proxy connects to
    real: RecordingVendor = await vendor_factory(VENDOR)  # the vendor host as DNS gives it
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, extra=vendor_extra)},
    )
    driver = await proxy_factory(cfg)

    async def page_route(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=body if isinstance(body, bytes) else body.encode(),
            status=status,
            headers={"Content-Type": content_type, **(headers or {})},
        )

    vendor.routes["/page"] = page_route
    rules = f"--host-resolver-rules=MAP {VENDOR} 127.0.0.1:{real.port}"
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, rules], headless=True
        )
        try:
            page: Page = await (await browser.new_context()).new_page()
            await sign_in_through_form(page, f"http://{driver.public}")
            # A navigation that ends elsewhere is what is being watched for.
            with contextlib.suppress(Error):
                await page.goto(f"http://{driver.mapped(VENDOR)}/page", wait_until=wait_until)
            with contextlib.suppress(Error):
                if click is not None:
                    await page.click(click, no_wait_after=True, timeout=5000)
                if frame_click is not None:
                    await page.frames[1].click(frame_click, no_wait_after=True, timeout=5000)
            for _ in range(int(settle_s * 10)):
                if real.requests:
                    break
                await asyncio.sleep(0.1)
        finally:
            await browser.close()
    assert vendor.requests, "the proxy fetched the vendor page"
    return [r.path_qs for r in real.requests]


async def _direct_requests(
    watch: Any, body: str, *, click: bool = False, **options: Any
) -> list[str]:
    """`watch` (the fixture) for an HTML page of `body` after a doctype and title; `click`
    clicks `#go`."""
    page = "<!doctype html><title>vendor page</title>" + body
    return list(await watch(page, click="#go" if click else None, **options))


LEAK = "the patron's browser went straight to the vendor's real host: {}"

# Known, and not fixed: a URL in one of the spellings below inside a script (or one the script
# builds), which nothing but running the script reveals. Links, forms, frames and base URLs in
# HTML (`html_tags._edit_links`), redirects, Refresh headers and <meta http-equiv="refresh">
# (`proxy/navigation.py`) are mapped however spelt. docs/vendor-setup.md says so. Strict: a fix
# makes these pass, and then this mark must go.
BODY_GAP = pytest.mark.xfail(
    strict=True, reason="URL spellings in scripts are not mapped (known gap, see BODY_GAP)"
)


# --------------------------------------------------------------------------------------------
# Chromium end to end: does the vendor's real host receive the patron's request?
# --------------------------------------------------------------------------------------------


# Links a patron clicks in a vendor page, each a spelling Chromium follows to the real host.
CLICKED = {
    # `\\` is read as `/` in http(s) URLs.
    "backslashes_after_scheme": "http:\\\\www.vendor.test/leak",
    # A scheme-relative URL to the vendor host.
    "slash_backslash_scheme_relative": "/\\www.vendor.test/leak",
    # Tabs and newlines are dropped anywhere in a URL.
    "tab_inside_scheme": "ht\ttp://www.vendor.test/leak",
    # The host is after the `@`.
    "userinfo": "http://x@www.vendor.test/leak",
    # The host is percent-decoded.
    "percent_encoded_host": "http://%77ww.vendor.test/leak",
    # IDNA mapping: a fullwidth w is a w.
    "fullwidth_host": "http://\uff57ww.vendor.test/leak",
    # The HTML parser decodes character references before the URL is read.
    "entity_encoded_slashes": "http:&#x2F;&#x2F;www.vendor.test/leak",
}


@pytest.mark.browser
@pytest.mark.parametrize("href", list(CLICKED.values()), ids=list(CLICKED))
async def test_a_link_in_a_vendor_page_is_not_followed_to_the_vendor_host(
    watch: Any,
    href: str,
) -> None:
    direct = await _direct_requests(
        watch,
        f'<a id=go href="{href}">next</a>',
        click=True,
    )
    assert not direct, LEAK.format(direct)


# What moves the patron with no click: (page body, response headers, status).
UNCLICKED: dict[str, Any] = {
    "meta_refresh_entity_encoded": pytest.param(
        "<meta http-equiv=refresh content=\"0;URL='http:&#x2F;&#x2F;www.vendor.test/leak'\">",
        {},
        200,
    ),
    # The classic open-redirect spelling.
    "location_slash_backslash": pytest.param("", {"Location": "/\\www.vendor.test/leak"}, 302),
    "refresh_header_userinfo": pytest.param(
        "<p>one moment</p>", {"Refresh": "0; url=http://x@www.vendor.test/leak"}, 200
    ),
    # `'http:\\\\www…'` in a script is the string `http:\\www…`: a URL to the vendor host.
    "script_escaped_backslashes": pytest.param(
        "<script>location.href = 'http:\\\\\\\\www.vendor.test/leak'</script>",
        {},
        200,
        marks=BODY_GAP,
    ),
}


@pytest.mark.browser
@pytest.mark.parametrize(("body", "headers", "status"), UNCLICKED.values(), ids=list(UNCLICKED))
async def test_a_redirect_or_refresh_does_not_send_the_browser_to_the_vendor_host(
    watch: Any,
    body: str,
    headers: dict[str, str],
    status: int,
) -> None:
    direct = await _direct_requests(
        watch,
        body,
        headers=headers,
        status=status,
    )
    assert not direct, LEAK.format(direct)


# --------------------------------------------------------------------------------------------
# Further spellings, on the rewriter (each one Chromium followed to the real host)
# --------------------------------------------------------------------------------------------


def _rewriter() -> Rewriter:
    hosts = HostMap.build(
        public_scheme="http",
        public_host="proxy.localhost",
        public_port=8080,
        vendor_hosts=[("one", [VENDOR])],
    )
    return Rewriter(hosts, {})


def _as_browser_reads(text: str) -> str:
    """Page text roughly as Chromium's parser and URL parser see it: entities decoded, tabs and
    newlines dropped, percent-escapes decoded, IDNA-style width and dot folding, lower case."""
    text = re.sub(r"[\t\n\r]", "", html.unescape(text))
    text = unicodedata.normalize("NFKC", unquote(text)).replace("\u3002", ".")
    return text.lower()


# Chromium 156's HTML and URL parsers resolve each href below, on the mapped page, to
# http(s)://www.vendor.test/leak; the end-to-end tests above show such links are followed.
FOLLOWED_FORMS = {
    "double_backslash_after_scheme": "http:\\\\www.vendor.test/leak",
    "slash_backslash_after_scheme": "http:/\\www.vendor.test/leak",
    "backslash_slash_scheme_relative": "\\/www.vendor.test/leak",
    "double_backslash_scheme_relative": "\\\\www.vendor.test/leak",
    "slash_tab_slash_scheme_relative": "/\t/www.vendor.test/leak",
    "one_slash_other_scheme": "https:/www.vendor.test/leak",
    "newline_inside_host": "http://www.ven\ndor.test/leak",
    "tab_inside_host": "http://www.ven\tdor.test/leak",
    "percent_encoded_dots": "http://www%2Evendor%2Etest/leak",
    "ideographic_full_stop": "http://www\u3002vendor.test/leak",
    "entity_encoded_scheme_letter": "&#x68;ttp://www.vendor.test/leak",
    "entity_named_period": "http://www&period;vendor.test/leak",
    "empty_userinfo": "http://:@www.vendor.test/leak",
}


@pytest.mark.parametrize("href", list(FOLLOWED_FORMS.values()), ids=list(FOLLOWED_FORMS))
def test_rewriter_maps_every_href_form_chromium_follows_to_vendor_host(href: str) -> None:
    """A vendor link Chromium follows to the vendor's real host must come out of the rewriter
    pointing elsewhere (the mapped host), not at the vendor."""
    page = f'<a href="{href}">next</a>'.encode()
    out = _rewriter().rewrite_body("one", "text/html", "utf-8", page).decode()
    assert VENDOR not in _as_browser_reads(out), out


# Header values hold no character references (a browser reads `&#x68;` in a Location as is).
HEADER_FORMS = {k: v for k, v in FOLLOWED_FORMS.items() if "&" not in v} | {
    "userinfo": "http://x@www.vendor.test/leak",
    "percent_encoded_letter": "http://%77ww.vendor.test/leak",
    "fullwidth_letter": "http://\uff57ww.vendor.test/leak",
    "upper_case": "HTTP://WWW.VENDOR.TEST/leak",
    "trailing_dot": "http://www.vendor.test./leak",
    "leading_space_and_controls": " \x01http://www.vendor.test/leak",
}


@pytest.mark.parametrize("url", list(HEADER_FORMS.values()), ids=list(HEADER_FORMS))
@pytest.mark.parametrize("header", ["location", "refresh"])
def test_a_redirect_or_refresh_to_a_vendor_host_is_mapped_however_spelt(
    url: str, header: str
) -> None:
    """Location and Refresh need no click: every spelling Chromium follows to the vendor's host
    comes out on the vendor's mapped host, the path kept."""
    rewriter = _rewriter()
    if header == "location":
        out = rewriter.rewrite_location(url)
    else:
        out = rewriter.rewrite_refresh(f"0; url={url}")
        assert out.startswith("0; url=")
        out = out.removeprefix("0; url=")
    leaving = to_vendor_host(out)  # where the browser goes, read as it reads it
    assert leaving == ("www-vendor-test.proxy.localhost", "/leak"), out


@pytest.mark.parametrize(
    "url",
    [
        "/path?next=x",
        "?q=1",
        "#top",
        "page.html",
        "http://www-vendor-test.proxy.localhost:8080/already",
        "https://elsewhere.example/",
        "mailto:www.vendor.test",
        "javascript:void(0)",
    ],
)
def test_a_redirect_that_does_not_leave_for_a_vendor_host_is_left_as_it_is(url: str) -> None:
    assert _rewriter().rewrite_location(url) == url


# --------------------------------------------------------------------------------------------
# Verified fine (these pass): escape routes the shield CSP does block
# --------------------------------------------------------------------------------------------


@pytest.mark.browser
async def test_shield_blocks_form_base_ping_beacon_and_prefetch_to_vendor_host(
    watch: Any,
) -> None:
    """Unrewritten (backslash) vendor URLs in a form action, `<base href>`, `<a ping>`,
    `sendBeacon`, a `Link: rel=prefetch` header and `<link rel=prefetch>` never reach the real
    host: form-action, base-uri, connect-src and default-src refuse them."""
    url = "http:\\\\www.vendor.test/leak"
    body = (
        f'<base href="{url}/"><link rel=prefetch href="{url}-prefetch">'
        f'<a id=go ping="{url}-ping" href="#here">here</a>'
        f'<form id=f method=post action="{url}-form"><input name=q value=x></form>'
        "<script>navigator.sendBeacon('http:\\\\\\\\www.vendor.test/leak-beacon', 'x');"
        "setTimeout(() => document.getElementById('f').submit(), 300);</script>"
    )
    direct = await _direct_requests(
        watch,
        body,
        headers={"Link": f"<{url}-header>; rel=prefetch"},
        click=True,
    )
    assert not direct, LEAK.format(direct)
