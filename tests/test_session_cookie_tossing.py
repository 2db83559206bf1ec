"""A hostile vendor page against the patron's session: cookie tossing and sign-in forgery.

Every vendor is served on a subdomain of the proxy's own host, so its pages are *same-site*
with the proxy's sign-in, menu and sign-out, and with every other vendor. A page a vendor
relays (or a script injected into it) can write cookies for the parent domain and send
same-site requests. Each test here is such an attack, run in headless Chromium against the
real proxy, real slapd and recording vendors (proxy/web/session_cookie.py, pages.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Page, async_playwright

from proxy.app import SERVICES
from proxy.hosts import map_label
from tests.browser_support import launch
from tests.canary import CANARY, WREN
from tests.harness import (
    ProxyDriver,
    ldap_directory,
    sign_in_through_form,
    vendor_toml,
    write_config,
)

EVIL = "www.evil-db.test"
GOOD = "www.good-db.test"
# As in production (proxy.westonlibrary.org): the proxy's host sits under the library's own
# registrable domain, so pages on its subdomains may write cookies for that domain.
PARENT = "weston.localhost"


def _hostile(script: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<!doctype html><title>results</title><p id=out>working</p><script>"
            + script
            + "</script>",
            content_type="text/html",
        )

    return handler


async def _stack(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    *,
    public_host: str = "proxy.localhost",
    public_url: str | None = None,
    session: str = 'store = "memory"',
) -> tuple[ProxyDriver, Any, Any]:
    evil = await vendor_factory(EVIL)
    good = await vendor_factory(GOOD)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"evil": vendor_toml("evil", evil), "good": vendor_toml("good", good)},
        session=session,
        extra="\n[throttle]\naddress_limit = 1000\n",
    )
    text = cfg.read_text().replace("proxy.localhost", public_host)
    if public_url is not None:
        text = re.sub(r'public_url = "[^"]*"', f'public_url = "{public_url}"', text)
    cfg.write_text(text)
    driver: ProxyDriver = await proxy_factory(cfg)
    driver.public = f"{public_host}:{port}"
    return driver, evil, good


def _mapped(driver: ProxyDriver, vendor_host: str) -> str:
    return f"http://{map_label(vendor_host)}.{driver.public}"


async def _sign_in(page: Page, driver: ProxyDriver, card: str, pin: str) -> None:
    await sign_in_through_form(page, f"http://{driver.public}", card, pin)


async def _browser_sid(context: Any, driver: ProxyDriver) -> str:
    name = driver.config.server.cookie_name
    host = driver.public.split(":")[0]
    [sid] = [
        c["value"]
        for c in await context.cookies()
        if c["name"] == name and c["domain"].lstrip(".") == host
    ]
    return str(sid)


async def _attacker_signed_in(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, Any, str]:
    """The proxy under the library's domain; the attacker (WREN) signed in, and the evil
    vendor's /hostile page tossing the attacker's session cookie for the parent domain."""
    driver, evil, good = await _stack(
        tmp_path, port, slapd, vendor_factory, proxy_factory, public_host=f"proxy.{PARENT}"
    )
    assert (await driver.login(WREN.uid, WREN.password)).status == 303
    atk = driver.session_id()
    assert atk
    evil.routes["/hostile"] = _hostile(_toss_session(atk, driver.config.server.cookie_name))
    return driver, good, atk


async def _patron_meets_hostile_page(context: Any, driver: ProxyDriver) -> tuple[Page, str]:
    """The patron signs in (their session id is returned) and opens the evil vendor's
    /hostile page, which has done its work when it says "tossed"."""
    page = await context.new_page()
    await _sign_in(page, driver, CANARY.uid, CANARY.password)
    victim = await _browser_sid(context, driver)
    await page.goto(_mapped(driver, EVIL) + "/hostile")
    assert await page.text_content("#out") == "tossed"
    return page, victim


def _toss_session(atk: str, cookie_name: str) -> str:
    """The hostile page's script: a session cookie for the library's parent domain."""
    return (
        f'document.cookie = "{cookie_name}={atk}; domain={PARENT}; path=/";'
        'document.getElementById("out").textContent = "tossed";'
    )


@pytest.mark.browser
async def test_vendor_page_cannot_move_patron_into_attackers_session(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Session-cookie tossing. The attacker (a patron, WREN, who controls or has injected script
    into a vendor page) signs in, then plants `weston_session=<own id>; domain=<library domain>;
    path=/` from the vendor page. The browser keeps the patron's HttpOnly cookie too and sends
    both. Taking the last one (as the proxy did) ran the patron's next databases in the
    attacker's session, whose jar then collected the patron's vendor cookies. Now no session is
    taken: the patron gets "Please sign in again" (400), the vendor is not contacted, both
    sessions end, every copy of the cookie is deleted, and signing in again works."""
    driver, good, atk = await _attacker_signed_in(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )

    async def search(request: web.Request) -> web.StreamResponse:
        resp = web.Response(text="<!doctype html><p id=out>results</p>", content_type="text/html")
        resp.set_cookie("recent", "canary-victim-search", path="/")
        return resp

    good.routes["/search"] = search
    svc = driver.client.app[SERVICES]
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            context = await browser.new_context()
            page, victim = await _patron_meets_hostile_page(context, driver)
            # The hostile page's own later requests (its favicon) may meet the two cookies
            # first: the patron then finds the sign-in page rather than the notice.
            await page.goto(_mapped(driver, GOOD) + "/search?q=canary")
            shown = await page.content()
            assert "Please sign in again" in shown or page.url.startswith(
                f"http://{driver.public}/login"
            )
            assert good.requests == []
            metrics = await (await driver.own("GET", "/metrics")).text()
            assert 'weston_proxy_denials_total{reason="session_conflict"} 0.0' not in metrics
            assert await svc.sessions.load(atk) is None
            assert await svc.sessions.load(victim) is None
            names = [c["name"] for c in await context.cookies()]
            assert driver.config.server.cookie_name not in names, "a copy was left behind"
            # Signed in again, the patron reaches the database in a session of their own.
            await _sign_in(page, driver, CANARY.uid, CANARY.password)
            await page.goto(_mapped(driver, GOOD) + "/search?q=canary")
            assert await page.text_content("#out") == "results"
            mine = await svc.sessions.load(await _browser_sid(context, driver))
        finally:
            await browser.close()
    wren_key = (await svc.directory.authenticate(WREN.uid, WREN.password)).key
    assert mine is not None and mine.patron_key != wren_key and "good" in mine.jars


@pytest.mark.browser
async def test_vendor_page_cannot_make_sign_out_end_another_session(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Sign-out with a tossed session cookie. A vendor page plants the attacker's session id
    for the library's parent domain, and the patron signs out on a shared computer. Ending only
    the last cookie's session (as the proxy did) left the patron's own session, with its
    vendor jars, alive while the page said "You are signed out", and the browser carrying it
    for the next person. Now every session named ends and every copy of the cookie goes."""
    driver, _good, atk = await _attacker_signed_in(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    own = f"http://{driver.public}"
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            context = await browser.new_context()
            page, victim = await _patron_meets_hostile_page(context, driver)
            await page.goto(f"{own}/logout")
            assert "You are signed out" in await page.content()
            names = [c["name"] for c in await context.cookies()]
            assert driver.config.server.cookie_name not in names, "a copy was left behind"
            # The next person at this computer opens the sign-in page.
            await page.goto(f"{own}/login")
            next_person_url = page.url
        finally:
            await browser.close()

    svc = driver.client.app[SERVICES]
    assert await svc.sessions.load(victim) is None, "the patron's session outlived sign-out"
    assert await svc.sessions.load(atk) is None
    assert next_person_url.startswith(f"{own}/login"), "the next person is signed in already"


@pytest.mark.browser
async def test_vendor_page_cannot_sign_patron_in_as_someone_else(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Login CSRF from a vendor page. The double-submit CSRF cookie is not bound to anything
    the page cannot write: a vendor page (same site as the proxy) sets `weston_csrf=<known>`
    for the proxy's domain with path /login and POSTs the attacker's card and PIN with that
    token to /login. Accepted (as it was), the patron's browser would be in a session of the
    attacker's card, the patron's reading done as the attacker's patron. The browser says the
    post came from another origin of the site (Sec-Fetch-Site: same-site): refused, 403."""
    driver, evil, _good = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    script = f"""
const own = location.protocol + "//" + location.host.split(".").slice(1).join(".");
const domain = location.hostname.split(".").slice(1).join(".");
document.cookie = "weston_csrf=known-token-1234; domain=" + domain + "; path=/login";
const body = new URLSearchParams({{
  username: "{WREN.uid}", password: "{WREN.password}", url: "", csrf: "known-token-1234"}});
fetch(own + "/login", {{method: "POST", mode: "no-cors", credentials: "include", body}})
  .then(() => {{ document.getElementById("out").textContent = "posted"; }},
        (e) => {{ document.getElementById("out").textContent = "failed " + e; }});
"""
    evil.routes["/hostile"] = _hostile(script)
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            await _sign_in(page, driver, CANARY.uid, CANARY.password)
            victim = await _browser_sid(context, driver)
            await page.goto(_mapped(driver, EVIL) + "/hostile")
            await page.wait_for_function("document.getElementById('out').textContent !== 'working'")
            now = await _browser_sid(context, driver)
        finally:
            await browser.close()

    svc = driver.client.app[SERVICES]
    session = await svc.sessions.load(now)
    wren_key = (await svc.directory.authenticate(WREN.uid, WREN.password)).key
    assert session is not None
    assert session.patron_key != wren_key, "the patron's browser is signed in as the attacker"
    assert now == victim, "a vendor page ended the patron's session"
