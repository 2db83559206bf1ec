"""Sign-out cannot be forced by a vendor page.

Vendor pages run on the proxy's subdomains, same-site with its sign-out. Before, any of them
could sign the patron out (`<img src=".../logout">`, `location = ".../logout"`, a form posted
to /logout by script): a nuisance at best, and on a shared computer a way to make "You are
signed out" appear while the patron did not ask for it. Now GET /logout signs out only when
the browser says the patron asked (typed it, a link on the proxy's pages, a link the patron
clicked), and POST /logout only from the proxy's own pages (the sign-in form's test); anything
else ends nothing and says the patron is still signed in, with the sign-out button.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.app import SERVICES
from proxy.web.messages import MESSAGES
from tests.browser_support import signed_in
from tests.canary import CANARY
from tests.harness import ProxyDriver, sign_in_through_form
from tests.test_sign_out_forgets import WWW, _stack

STILL_IN = MESSAGES["logout_not_asked"].title
SIGNED_OUT = "You are signed out"


def _hostile(body: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<!doctype html><title>results</title><p id=out>working</p>" + body,
            content_type="text/html",
        )

    return handler


def _attacks(own: str) -> dict[str, str]:
    """Vendor pages that try to sign the patron out, each in its own way."""
    return {
        "image": f'<img src="{own}/logout" alt="" '
        "onload=\"out.textContent='loaded'\" onerror=\"out.textContent='loaded'\">",
        "navigation": f'<script>location = "{own}/logout";</script>',
        "form": f'<form method="post" action="{own}/logout"><input name="csrf" value="x">'
        "</form><script>document.forms[0].submit();</script>",
    }


async def _alive(driver: ProxyDriver, sid: str) -> bool:
    return await driver.client.app[SERVICES].sessions.load(sid) is not None


async def _browser_sid(context: Any, driver: ProxyDriver) -> str:
    name = driver.config.server.cookie_name
    [sid] = [c["value"] for c in await context.cookies() if c["name"] == name]
    return str(sid)


@pytest.mark.browser
@pytest.mark.parametrize("attack", ["image", "navigation", "form"])
async def test_a_vendor_page_cannot_sign_the_patron_out(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    attack: str,
) -> None:
    """The patron opens a database page that loads /logout as an image, navigates there by
    script, or posts the sign-out form by script. The session lives on: the next database page
    is the database's, not the sign-in page; a page the patron sees says so."""
    driver, vendor = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    own = f"http://{driver.public}"
    vendor.routes["/hostile"] = _hostile(_attacks(own)[attack])
    async with signed_in(own) as (context, page):
        sid = await _browser_sid(context, driver)
        await page.goto(f"http://{driver.mapped(WWW)}/hostile")
        if attack == "image":
            await page.wait_for_function("document.getElementById('out').textContent !== 'working'")
        else:
            await page.wait_for_url(f"{own}/logout")
            shown = await page.content()
            assert STILL_IN in shown and SIGNED_OUT not in shown
        await page.goto(f"http://{driver.mapped(WWW)}/results")
        assert page.url == f"http://{driver.mapped(WWW)}/results", "sent to sign in"
        assert await page.text_content("#out") == "canary results page"
        assert await _alive(driver, sid)


@pytest.mark.browser
async def test_the_patrons_own_sign_out_still_signs_out(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The "still signed in" page's sign-out button signs out; a sign-out link on a database
    page that the patron clicks gets that page (a vendor script navigating on the patron's
    click looks the same), and its button signs out."""
    driver, vendor = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    own = f"http://{driver.public}"
    vendor.routes["/hostile"] = _hostile(_attacks(own)["navigation"])
    vendor.routes["/link"] = _hostile(f'<a id="bye" href="{own}/logout">Sign out</a>')
    results = f"http://{driver.mapped(WWW)}/results"
    async with signed_in(own) as (context, page):
        first = await _browser_sid(context, driver)
        await page.goto(f"http://{driver.mapped(WWW)}/hostile")
        await page.wait_for_url(f"{own}/logout")
        assert STILL_IN in await page.content()
        async with page.expect_navigation():
            await page.click("form.signout button")
        assert SIGNED_OUT in await page.content()
        await page.goto(results)
        assert page.url.startswith(f"{own}/login")
        assert not await _alive(driver, first)

        await sign_in_through_form(page, own)
        second = await _browser_sid(context, driver)
        await page.goto(f"http://{driver.mapped(WWW)}/link")
        async with page.expect_navigation():
            await page.click("#bye")
        assert STILL_IN in await page.content()
        assert await _alive(driver, second)
        async with page.expect_navigation():
            await page.click("form.signout button")
        assert SIGNED_OUT in await page.content()
        assert not await _alive(driver, second)


# ------------------------------------------------------------------- the rules, over plain HTTP


def _fetch(site: str, dest: str, user: str | None = None) -> dict[str, str]:
    headers = {"Sec-Fetch-Site": site, "Sec-Fetch-Dest": dest, "Sec-Fetch-Mode": "navigate"}
    if dest != "document":
        headers["Sec-Fetch-Mode"] = "no-cors"
    if user is not None:
        headers["Sec-Fetch-User"] = user
    return headers


@pytest.mark.parametrize(
    ("headers", "signs_out"),
    [
        pytest.param({}, True, id="no-fetch-metadata"),  # an older browser, curl: as before
        pytest.param(_fetch("none", "document", "?1"), True, id="typed-or-bookmark"),
        pytest.param(_fetch("same-origin", "document"), True, id="link-on-own-page"),
        pytest.param(
            {**_fetch("same-site", "document", "?1"), "Referer": "https://www.westonlibrary.org/"},
            True,
            id="clicked-on-library-site",
        ),
        # A vendor page's script navigating on the patron's first click anywhere looks the same
        # as a link the patron chose: from a mapped host, or with the Referer hidden, refused.
        pytest.param(
            {**_fetch("same-site", "document", "?1"), "Referer": "http://{vendor}/results"},
            False,
            id="clicked-on-database-page",
        ),
        pytest.param(_fetch("same-site", "document", "?1"), False, id="clicked-no-referer"),
        pytest.param(
            {**_fetch("same-site", "document", "?1"), "Referer": "http://{public}/privacy"},
            False,
            id="clicked-referer-own-host-but-same-site",
        ),
        pytest.param(_fetch("same-site", "image"), False, id="img-on-database-page"),
        pytest.param(_fetch("same-site", "document"), False, id="script-navigation"),
        pytest.param(_fetch("cross-site", "document", "?0"), False, id="no-user-activation"),
        pytest.param(_fetch("same-site", "iframe", "?1"), False, id="frame-after-click"),
        pytest.param(_fetch("same-site", "empty"), False, id="fetch"),
        # fetch metadata without a site is not "none"
        pytest.param({"Sec-Fetch-Dest": "image"}, False, id="metadata-without-site"),
    ],
)
async def test_get_logout_signs_out_only_when_the_patron_asked(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    headers: dict[str, str],
    signs_out: bool,
) -> None:
    await _check(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, "GET", headers, signs_out
    )


@pytest.mark.parametrize(
    ("headers", "signs_out"),
    [
        # no fetch metadata, no Origin (a script, curl): as before
        pytest.param({}, True, id="no-fetch-metadata"),
        # the header's button on a (no-referrer) page of the proxy's
        pytest.param({"Sec-Fetch-Site": "same-origin", "Origin": "null"}, True, id="own-page"),
        # the "still signed in" page's button in an older browser
        pytest.param({"Origin": "http://{public}"}, True, id="own-origin-no-metadata"),
        pytest.param(
            {"Sec-Fetch-Site": "same-site", "Origin": "http://{vendor}"}, False, id="database-page"
        ),
        pytest.param(
            {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.test"}, False, id="other-site"
        ),
        # an older browser: a database page's form; a no-referrer page elsewhere
        pytest.param({"Origin": "http://{vendor}"}, False, id="database-page-no-metadata"),
        pytest.param({"Origin": "null"}, False, id="null-origin-no-metadata"),
    ],
)
async def test_post_logout_signs_out_only_from_the_proxys_own_pages(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    headers: dict[str, str],
    signs_out: bool,
) -> None:
    await _check(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, "POST", headers, signs_out
    )


async def _check(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    method: str,
    headers: dict[str, str],
    signs_out: bool,
) -> None:
    driver, _ = await _stack(tmp_path, port, slapd, vendor_factory, proxy_factory)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    sid = driver.session_id()
    assert sid
    sent = {
        k: v.format(public=driver.public, vendor=driver.mapped(WWW)) for k, v in headers.items()
    }
    r = await driver.own(method, "/logout", headers=sent)
    html = await r.text()
    name = driver.config.server.cookie_name
    assert r.status == 200
    assert r.headers["Cache-Control"] == "no-store"
    if signs_out:
        assert SIGNED_OUT in html
        assert not await _alive(driver, sid)
        assert r.cookies[name].value == ""
        return
    assert STILL_IN in html and SIGNED_OUT not in html
    assert f'action="http://{driver.public}/logout" class="signout"' in html
    assert name not in r.cookies, "the refusal deleted the session cookie"
    assert await _alive(driver, sid)
    assert (await driver.own("GET", "/menu")).status == 200
    # Its sign-out form sends its real Origin (an older browser without fetch metadata).
    assert r.headers["Referrer-Policy"] == "same-origin"
    assert '<meta name="referrer" content="same-origin">' in html


async def test_a_refused_sign_out_without_a_session_alive_says_signed_out(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Nothing to keep: a page's /logout for a browser that is not signed in ends nothing and
    does not claim the patron is still signed in."""
    driver, _ = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    r = await driver.own("GET", "/logout", headers=_fetch("same-site", "image"))
    assert r.status == 200
    assert STILL_IN not in await r.text()
