"""Edges of the session defences: a browser without fetch metadata, a public_url with its
default port, a tossed cookie on a percent-encoded path, the Back button after expiry (real
proxy, real slapd, recording vendors; Chromium where only a browser shows it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from tests.browser_support import launch
from tests.canary import CANARY, WREN
from tests.test_session_cookie_tossing import (
    GOOD,
    PARENT,
    _mapped,
    _patron_meets_hostile_page,
    _sign_in,
    _stack,
)

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]*)"')


async def test_sign_in_forgery_without_fetch_metadata_is_refused(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Login CSRF in a browser without fetch metadata (Safari before 16.4, iPadOS 16.3 on a
    library's lending iPads). The vendor page tosses `weston_csrf=<known>` for the proxy's
    domain (path /login) and posts the attacker's card with that token using
    `fetch(..., {method: "POST", mode: "no-cors", credentials: "include", referrerPolicy:
    "no-referrer"})`: the browser sends `Origin: null` and no Sec-Fetch-Site. The check reads
    null as "says nothing" and the CSRF cookie as proof, so the patron's browser is signed in
    as the attacker (303 with a new session cookie). Now refused (403): the sign-in page's
    Referrer-Policy is same-origin, so its own form sends its real origin, and `Origin: null`
    without fetch metadata is foreign."""
    driver, _evil, _good = await _stack(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    r = await driver.client.post(
        "/login",
        data={"username": WREN.uid, "password": WREN.password, "url": "", "csrf": "known-1234"},
        headers={
            "Host": driver.public,
            "Cookie": "weston_csrf=known-1234",
            "Origin": "null",
            "User-Agent": "Mozilla/5.0 (iPad; CPU OS 16_3 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/16.3 Mobile/15E148 Safari/604.1",
        },
        allow_redirects=False,
    )
    assert r.status == 403, "a vendor page signed the patron in as the attacker (Origin: null)"


async def test_sign_in_works_when_public_url_names_its_default_port(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """`public_url = "http://proxy.localhost:80"` (or `https://proxy.lib.org:443` behind a
    TLS terminator) is a valid configuration: the host map takes `Host: proxy.localhost`. But
    a browser never serialises a default port, so the sign-in origin check must not compare
    against "http://proxy.localhost:80": it refused every patron's own form (403)."""
    driver, _evil, _good = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        public_url="http://proxy.localhost:80",
    )
    host = "proxy.localhost"
    form = await driver.client.get("/login", headers={"Host": host})
    assert form.status == 200
    m = CSRF_FIELD.search(await form.text())
    assert m
    token = m.group(1)
    r = await driver.client.post(
        "/login",
        data={"username": CANARY.uid, "password": CANARY.password, "url": "", "csrf": token},
        headers={
            "Host": host,
            "Cookie": f"weston_csrf={token}",
            "Origin": "http://proxy.localhost",
            "Sec-Fetch-Site": "same-origin",
            "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Dest": "document",
        },
        allow_redirects=False,
    )
    assert r.status == 303, f"the patron's own sign-in form was refused ({r.status})"


def test_the_default_port_refusal_is_the_origin_check() -> None:
    """The cause of the test above, without a server: the own origin as the check builds it."""
    from types import SimpleNamespace

    from proxy.web import pages

    config = SimpleNamespace(public=("https", "proxy.lib.org", 443))
    request = SimpleNamespace(
        headers={"Origin": "https://proxy.lib.org", "Sec-Fetch-Site": "same-origin"}
    )
    assert not pages._posted_from_elsewhere(request, config)  # type: ignore[arg-type]


@pytest.mark.browser
async def test_tossed_cookie_on_an_encoded_path_is_deleted(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """clear_copies deletes every copy of the session cookie the request carried, for every
    path the request lies under, as the browser spells it: percent-encoded. A vendor page
    tosses `weston_session=x; domain=<library domain>; path=/r%C3%A9sultats`; built from
    aiohttp's decoded `request.path`, the deletion named Path=/résultats, the tossed copy
    stayed, and the patron met the same refusal on that page after every sign-in."""
    driver, evil, _good = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        public_host=f"proxy.{PARENT}",
    )
    name = driver.config.server.cookie_name

    async def hostile(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<!doctype html><p id=out>working</p><script>"
            f'document.cookie = "{name}=tossed-value; domain={PARENT}; path=/r%C3%A9sultats";'
            'document.getElementById("out").textContent = "tossed";</script>',
            content_type="text/html",
        )

    evil.routes["/hostile"] = hostile
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            context = await browser.new_context()
            page, _victim = await _patron_meets_hostile_page(context, driver)
            resp = await page.goto(_mapped(driver, GOOD) + "/r%C3%A9sultats/list")
            assert resp is not None and resp.status == 400  # the conflict is seen
            left = [(c["domain"], c["path"]) for c in await context.cookies() if c["name"] == name]
        finally:
            await browser.close()
    assert left == [], f"copies left behind: {left}"


@pytest.mark.browser
async def test_expired_sessions_page_is_not_shown_again_by_the_back_button(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The patron leaves the results for another page, walks away, the session expires, and
    the next person at the shared computer presses Back. With `Cache-Control: private,
    no-cache` Chromium showed the results from its cache without asking the proxy; vendor
    documents are now `private, no-store`, and Back asks the proxy, which wants a session."""
    driver, _evil, good = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        session='store = "memory"\nidle_timeout_s = 2',
    )

    async def results(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<!doctype html><title>r</title><p id=out>canary results page</p>",
            content_type="text/html",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    good.routes["/results"] = results
    own = f"http://{driver.public}"
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await (await browser.new_context()).new_page()
            await _sign_in(page, driver, CANARY.uid, CANARY.password)
            await page.goto(_mapped(driver, GOOD) + "/results")
            assert await page.text_content("#out") == "canary results page"
            await page.goto(f"{own}/privacy")
            await page.wait_for_timeout(3000)  # idle_timeout_s passes: the session is gone
            await page.go_back()
            await page.wait_for_load_state()
            shown = await page.content()
        finally:
            await browser.close()
    assert "canary results page" not in shown, "the next person sees the last patron's results"
