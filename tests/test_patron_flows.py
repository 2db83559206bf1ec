"""Ordinary patrons' flows around sign-in and the vendor cookie jar that the session defences
must not break: a vendor form posted to its own sign-on host from a same-origin page, signing
in from a second tab. Headless Chromium against the real proxy, real slapd and recording
vendors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from tests.browser_support import launch
from tests.canary import CANARY
from tests.harness import ldap_directory, vendor_toml, write_config
from tests.test_session_cookie_tossing import _mapped, _sign_in

MAIN = "www.multi-db.test"
SIGNON = "login.multi-db.test"


async def _multi_host_stack(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[Any, Any]:
    """One vendor on two hosts of its own domain (pages and sign-on), one server answering both."""
    vendor = await vendor_factory(MAIN)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"multi": vendor_toml("multi", vendor, hosts=[MAIN, SIGNON])},
        extra="\n[throttle]\naddress_limit = 1000\n",
    )
    driver = await proxy_factory(cfg)
    driver.public = f"proxy.localhost:{port}"
    return driver, vendor


@pytest.mark.browser
async def test_vendor_form_to_its_sign_on_host_keeps_the_vendor_session(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A database whose pages are `Referrer-Policy: same-origin` (a common privacy setting)
    posts its "save to my folder" form from www.<vendor> to login.<vendor>. Chromium sends
    such a post as a same-site navigation with `Origin: null` and no Referer, and without the
    proxy it carries the vendor's (SameSite unset, so Lax) session cookie. Through the proxy
    the jar takes it for cross-site and drops the cookie: the patron is thrown out of the
    database's account ("please sign in") on every such form."""
    driver, vendor = await _multi_host_stack(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )

    async def start(request: web.Request) -> web.StreamResponse:
        resp = web.Response(
            text="<!doctype html><title>results</title><form method=post "
            f"action='http://{SIGNON}/save'><input name=item value=1>"
            "<button id=save>Save</button></form>",
            content_type="text/html",
            headers={"Referrer-Policy": "same-origin"},
        )
        resp.headers.add("Set-Cookie", "vsid=v-123; Domain=multi-db.test; Path=/")
        return resp

    async def save(request: web.Request) -> web.StreamResponse:
        got = "vsid=v-123" in request.headers.get("Cookie", "")
        text = "saved" if got else "please sign in"
        return web.Response(text=f"<!doctype html><p id=out>{text}</p>", content_type="text/html")

    vendor.routes["/start"] = start
    vendor.routes["/save"] = save
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            await _sign_in(page, driver, CANARY.uid, CANARY.password)
            await page.goto(_mapped(driver, MAIN) + "/start")
            async with page.expect_navigation():
                await page.click("#save")
            assert await page.text_content("#out") == "saved"
        finally:
            await browser.close()


@pytest.mark.browser
async def test_signing_in_in_a_second_tab(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A patron opens the sign-in page in two tabs (two database links) and signs in in the
    first, then in the second. The second tab's sign-in goes on too: the first one no longer
    deletes the CSRF cookie both forms share (it was answered "Please try again", 400)."""
    driver, _vendor = await _multi_host_stack(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    own = f"http://{driver.public}"
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            context = await browser.new_context()
            first = await context.new_page()
            second = await context.new_page()
            await first.goto(own + "/login")
            await second.goto(own + "/login")
            await _sign_in_here(first)
            assert first.url == own + "/menu"
            await _sign_in_here(second)
            assert second.url == own + "/menu", await second.text_content("h1")
        finally:
            await browser.close()


async def _sign_in_here(page: Any) -> None:
    await page.fill("input[name=username]", CANARY.uid)
    await page.fill("input[name=password]", CANARY.password)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
