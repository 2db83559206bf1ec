"""A session that ended without sign-out (the patron walked away; it expired) leaves nothing of
the vendor's pages in the browser for the next person: the first request to a vendor host with
the dead session cookie is sent to sign-in with `Clear-Site-Data` for that host.

Sign-out clears every host the session used (tests/test_sign_out_forgets.py); after expiry the
list of hosts is gone with the session, so each host is cleared when it is next opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.browser_support import launch
from tests.harness import (
    RECALL_PAGE,
    STORE_PAGE,
    ProxyDriver,
    html_page,
    ldap_directory,
    sign_in_through_form,
    vendor_toml,
    write_config,
)

WWW = "www.vendor-one.test"


async def _stack(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> ProxyDriver:
    vendor = await vendor_factory(WWW)

    vendor.routes.update({"/search": html_page(STORE_PAGE), "/recall": html_page(RECALL_PAGE)})
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
        session='store = "memory"\nidle_timeout_s = 6',
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    return driver


@pytest.mark.browser
async def test_an_expired_sessions_vendor_storage_is_gone_for_the_next_person(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The patron searches (the vendor's page keeps "recent searches" in local storage) and
    walks away. The session expires. The next person opens the vendor page and is sent to
    sign-in; signed in as themselves, they do not find the last patron's searches."""
    driver = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    own = f"http://{driver.public}"
    vendor_page = f"http://{driver.mapped(WWW)}"
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await (await browser.new_context()).new_page()

            await sign_in_through_form(page, own)
            await page.goto(f"{vendor_page}/search")
            assert await page.text_content("#out") == "saved"
            await page.goto(f"{vendor_page}/recall")
            hostname = driver.mapped(WWW).split(":")[0]
            assert await page.text_content("#out") == f"canary-search-{hostname}"
            await page.wait_for_timeout(7000)  # idle_timeout_s passes: the session is dead

            # The next person, with the dead cookie still in the browser.
            response = await page.goto(f"{vendor_page}/recall")
            assert page.url.startswith(f"{own}/login")
            assert response is not None
            redirect = response.request.redirected_from
            assert redirect is not None
            first = await redirect.response()
            assert first is not None and first.status == 302
            assert (await first.all_headers()).get("clear-site-data") == '"cache", "storage"'
            await sign_in_through_form(page, own)
            await page.goto(f"{vendor_page}/recall")
            assert await page.text_content("#out") == "null"
        finally:
            await browser.close()


async def test_no_cookie_no_clearing(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A browser that never had a session (no cookie) is sent to sign-in without clearing: the
    header is for a session that ended, not for every first visit."""
    driver = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    r = await driver.get_vendor(WWW, "/recall", sid="")
    assert r.status == 302
    assert "Clear-Site-Data" not in r.headers
    r = await driver.get_vendor(WWW, "/recall", sid="an-ended-session-id")
    assert r.status == 302
    assert r.headers["Clear-Site-Data"] == '"cache", "storage"'
