"""Signing out asks the browser to forget what the session's vendor pages stored in it.

On a shared computer (a library PC, a family laptop) the next person opens the same browser.
Vendor pages live on the proxy's mapped hosts, so what they keep in the browser (a database's
"recent searches" in localStorage, pages in the HTTP cache) stays there after the patron signs
out — unless the proxy clears it. The sign-out page loads `/.weston-proxy/forget` from every
vendor host the session used; the proxy itself answers there with `Clear-Site-Data`, and the
vendor never sees the request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from proxy.sessions import MAX_NOTED_HOSTS, Sessions
from tests.browser_support import launch
from tests.canary import CANARY
from tests.harness import ldap_directory, vendor_toml, write_config

WWW = "www.vendor-one.test"
DEEP = "web.b.vendor-one.test"  # served by the wildcard, as EBSCO's deep hosts are
FORGET = "/.weston-proxy/forget"

REMEMBER = """<!doctype html><html><head><title>search</title></head><body>
<p id="out">saving</p>
<script>
localStorage.setItem("recent", "canary-search-" + location.hostname);
document.getElementById("out").textContent = "saved";
</script></body></html>"""

RECALL = """<!doctype html><html><head><title>recall</title></head><body>
<p id="out"></p>
<script>
document.getElementById("out").textContent = String(localStorage.getItem("recent"));
</script></body></html>"""


async def _stack(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[Any, Any]:
    vendor = await vendor_factory(WWW)

    async def remember(request: web.Request) -> web.StreamResponse:
        return web.Response(text=REMEMBER, content_type="text/html")

    async def recall(request: web.Request) -> web.StreamResponse:
        return web.Response(text=RECALL, content_type="text/html")

    async def results(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<!doctype html><title>results</title><p id=out>canary results page</p>",
            content_type="text/html",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    vendor.routes.update({"/search": remember, "/recall": recall, "/results": results})
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[WWW, "*.vendor-one.test"])},
    )
    driver = await proxy_factory(cfg)
    return driver, vendor


def _forget_requests(vendor: Any) -> list[Any]:
    return [r for r in vendor.requests if r.path_qs.startswith("/.weston")]


@pytest.mark.browser
async def test_signing_out_clears_what_vendor_pages_stored_in_the_browser(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    driver, vendor = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    own = f"http://{driver.public}"
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await (await browser.new_context()).new_page()
            await page.goto(f"{own}/login")
            await page.fill("input[name=username]", CANARY.uid)
            await page.fill("input[name=password]", CANARY.password)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{own}/menu")
            results = f"http://{driver.mapped(WWW)}/results"
            await page.goto(results)
            assert await page.text_content("#out") == "canary results page"
            for host in (WWW, DEEP):
                await page.goto(f"http://{driver.mapped(host)}/search")
                assert await page.text_content("#out") == "saved"
                await page.goto(f"http://{driver.mapped(host)}/recall")
                hostname = driver.mapped(host).split(":")[0]
                assert await page.text_content("#out") == f"canary-search-{hostname}"

            await page.goto(f"{own}/menu")
            async with page.expect_response(lambda r: r.url.endswith(FORGET)):
                await page.click("form.signout button")
            await page.wait_for_load_state("networkidle")
            assert "You are signed out" in (await page.content())
            # The vendor's page, cacheable for an hour, is not shown again from the cache:
            # the browser asks the proxy, which wants a session.
            await page.goto(results)
            assert "canary results page" not in await page.content()
            assert page.url.startswith(f"{own}/login")

            # Signed in again, as the next person at this computer would be.
            await page.goto(f"{own}/login")
            await page.fill("input[name=username]", CANARY.uid)
            await page.fill("input[name=password]", CANARY.password)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{own}/menu")
            for host in (WWW, DEEP):
                await page.goto(f"http://{driver.mapped(host)}/recall")
                assert await page.text_content("#out") == "null", host
        finally:
            await browser.close()
    assert _forget_requests(vendor) == []  # the proxy answered them; the vendor saw none


async def test_sign_out_page_names_each_vendor_host_of_the_session_once(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    driver, _vendor = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    for host in (WWW, DEEP, WWW, DEEP):
        assert (await driver.get_vendor(host, "/search")).status == 200

    r = await driver.own("POST", "/logout")
    html = await r.text()
    assert r.status == 200
    wanted = [f"http://{driver.mapped(h)}{FORGET}" for h in (WWW, DEEP)]
    assert [html.count(f'src="{u}"') for u in wanted] == [1, 1]
    assert html.count(f"{FORGET}") == 2
    csp = r.headers["Content-Security-Policy"]
    assert f"img-src 'self' data: http://*.proxy.localhost:{port};" in csp
    assert "default-src 'self'" in csp and "script-src 'self'" in csp


async def test_sign_out_without_vendor_pages_loads_nothing_more(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    driver, _ = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    r = await driver.own("GET", "/logout")
    assert r.status == 200
    assert FORGET not in await r.text()
    assert "img-src 'self' data:;" in r.headers["Content-Security-Policy"]


async def test_forget_path_is_answered_by_the_proxy_without_a_session(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    driver, vendor = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    r = await driver.get_vendor(DEEP, FORGET, sid="")
    assert r.status == 204
    assert r.headers["Clear-Site-Data"] == '"cache", "storage"'
    assert r.headers["Cache-Control"] == "no-store"
    assert await r.read() == b""
    # Another path on the same host is the vendor's, and needs a session.
    assert (await driver.get_vendor(DEEP, FORGET + "x", sid="")).status == 302
    # A host the proxy does not serve is still refused.
    r = await driver.client.get(FORGET, headers={"Host": f"www-other-test.proxy.localhost:{port}"})
    assert r.status == 404
    assert _forget_requests(vendor) == []


async def test_hosts_are_noted_once_each_and_up_to_the_cap(redis_url: str) -> None:
    from proxy.redis_store import RedisStore

    store = RedisStore(url=redis_url, key=b"k" * 32, prefix="forget-test:")
    sessions = Sessions(store, idle_timeout_s=600, lifetime_s=3600)
    try:
        session = await sessions.start(patron_key="k", databases=frozenset({"one"}))
        for host in (WWW, DEEP, WWW):
            await sessions.note_host(session, host)
        stored = await sessions.load(session.id)
        assert stored is not None and stored.hosts == [WWW, DEEP]

        # A copy loaded before another request noted a host does not write it twice.
        stale = await sessions.load(session.id)
        assert stale is not None
        await sessions.note_host(session, "a.vendor-one.test")
        await sessions.note_host(stale, "a.vendor-one.test")
        again = await sessions.load(session.id)
        assert again is not None and again.hosts == [WWW, DEEP, "a.vendor-one.test"]

        for i in range(MAX_NOTED_HOSTS + 5):
            await sessions.note_host(again, f"h{i}.vendor-one.test")
        last = await sessions.load(session.id)
        assert last is not None and len(last.hosts) == MAX_NOTED_HOSTS
        await sessions.end(session.id)
    finally:
        await store.close()
