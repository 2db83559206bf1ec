"""Signing out asks the browser to forget what the session's vendor pages stored in it.

On a shared computer (a library PC, a family laptop) the next person opens the same browser.
Vendor pages live on the proxy's mapped hosts, so what they keep in the browser (a database's
"recent searches" in localStorage, pages in the HTTP cache) stays there after the patron signs
out — unless the proxy clears it. The sign-out page loads `/.weston-proxy/forget` from every
vendor host the session used; the proxy itself answers there with `Clear-Site-Data`, and the
vendor never sees the request. The same answer deletes the cookies vendor scripts wrote with
`document.cookie` (for the vendor host, or a parent domain down to the proxy's own host).
And a vendor page is never kept by the browser (`no-store`), so once a session has expired (no
sign-out) the next person gets the sign-in page, not the last patron's results.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from proxy.hosts import map_label
from proxy.services import SERVICES
from proxy.sessions import MAX_NOTED_HOSTS, Sessions
from proxy.web.forget import PARTS, forget_urls
from tests.browser_support import launch, signed_in
from tests.canary import CANARY, leaks
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
DEEP = "web.b.vendor-one.test"  # served by the wildcard, as EBSCO's deep hosts are
FORGET = "/.weston-proxy/forget"


async def _stack(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    session: str = 'store = "memory"',
    *,
    public_host: str = "proxy.localhost",
) -> tuple[Any, Any]:
    """Real slapd, one vendor (WWW and the DEEP hosts under its wildcard), a running proxy at
    `public_host` (reach its hosts with `_at`: `driver.mapped` knows only proxy.localhost)."""
    vendor = await vendor_factory(WWW)

    async def results(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<!doctype html><title>results</title><p id=out>canary results page</p>",
            content_type="text/html",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    async def typed(request: web.Request) -> web.StreamResponse:
        kind = request.query["type"]
        return web.Response(
            body=b"<x/>" if "xml" in kind or "svg" in kind else b"data",
            headers={
                "Content-Type": kind,
                "Cache-Control": request.query["cc"],
                "Expires": "Thu, 01 Jan 2099 00:00:00 GMT",
            },
        )

    vendor.routes.update(
        {
            "/search": html_page(STORE_PAGE),
            "/recall": html_page(RECALL_PAGE),
            "/results": results,
            "/typed": typed,
        }
    )
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[WWW, "*.vendor-one.test"])},
        session=session,
    )
    cfg.write_text(cfg.read_text().replace("proxy.localhost", public_host))
    driver = await proxy_factory(cfg)
    driver.public = f"{public_host}:{port}"
    return driver, vendor


def _at(driver: ProxyDriver, vendor_host: str) -> str:
    """The mapped host (with port) of `vendor_host` on the driver's public host."""
    return f"{map_label(vendor_host)}.{driver.public}"


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
            await sign_in_through_form(page, own)
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
            async with page.expect_response(lambda r: FORGET in r.url):
                await page.click("form.signout button")
            await page.wait_for_load_state("networkidle")
            assert "You are signed out" in (await page.content())
            # The vendor's page, cacheable for an hour, is not shown again from the cache:
            # the browser asks the proxy, which wants a session.
            await page.goto(results)
            assert "canary results page" not in await page.content()
            assert page.url.startswith(f"{own}/login")

            # Signed in again, as the next person at this computer would be.
            await sign_in_through_form(page, own)
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
    for h in (WWW, DEEP):  # each host once, in every part, signed for that host
        for part in range(PARTS):
            assert html.count(f'src="http://{driver.mapped(h)}{FORGET}?part={part}&amp;t=') == 1
    assert html.count(f"{FORGET}") == 2 * PARTS
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


def _forget_paths(driver: ProxyDriver, vendor_host: str) -> list[str]:
    """The forget addresses a sign-out page would load for `vendor_host` (path and query)."""
    urls = forget_urls(driver.client.app[SERVICES], [vendor_host])
    return [urlsplit(u).path + "?" + urlsplit(u).query for u in urls]


async def test_forget_path_is_answered_by_the_proxy_without_a_session(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    driver, vendor = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    for path in _forget_paths(driver, DEEP):
        r = await driver.get_vendor(DEEP, path, sid="")
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


async def test_forget_clears_nothing_without_a_token_for_its_host(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A page (another vendor's, in the middle of the patron's session) that loads a forget
    address itself has no valid token: nothing is cleared. Only the proxy's own pages name
    them, each signed for its host and for a few minutes."""
    driver, vendor = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    good = _forget_paths(driver, WWW)[0]
    expires, mac = good.split("&t=")[1].split(".")
    for path in (
        FORGET,  # no token
        good.replace(f"&t={expires}", f"&t={int(expires) + 1}"),  # another expiry
        good.replace(mac, mac[:-1] + ("0" if mac[-1] != "0" else "1")),  # another mac
        good.replace(f"&t={expires}", "&t=1000000000"),  # long expired
    ):
        r = await driver.get_vendor(WWW, path, headers={"Cookie": "vendor_pref=1"})
        assert r.status == 403, path
        assert "Clear-Site-Data" not in r.headers
        assert "Set-Cookie" not in r.headers
    # Signed for the deep host, it clears nothing on the www host.
    r = await driver.get_vendor(WWW, _forget_paths(driver, DEEP)[0])
    assert r.status == 403
    assert _forget_requests(vendor) == []


async def test_hosts_are_noted_once_each_and_up_to_the_cap(redis_url: str) -> None:
    """A request's write (`save_vendor`) notes the vendor host it went to: once, also when a
    copy loaded before another request's write names it again, and at most MAX_NOTED_HOSTS."""
    from proxy.redis_store import RedisStore

    store = RedisStore(url=redis_url, key=b"k" * 32, prefix="forget-test:")
    sessions = Sessions(store, idle_timeout_s=600, lifetime_s=3600)
    try:
        session = await sessions.start(patron_key="k", databases=frozenset({"one"}))
        for host in (WWW, DEEP, WWW):
            await sessions.save_vendor(session, "one", [], host)
        stored = await sessions.load(session.id)
        assert stored is not None and stored.hosts == [WWW, DEEP]

        stale = await sessions.load(session.id)
        assert stale is not None
        await sessions.save_vendor(session, "one", [], "a.vendor-one.test")
        await sessions.save_vendor(stale, "one", [], "a.vendor-one.test")
        again = await sessions.load(session.id)
        assert again is not None and again.hosts == [WWW, DEEP, "a.vendor-one.test"]

        for i in range(MAX_NOTED_HOSTS + 5):
            await sessions.save_vendor(again, "one", [], f"h{i}.vendor-one.test")
        last = await sessions.load(session.id)
        assert last is not None and len(last.hosts) == MAX_NOTED_HOSTS
        await sessions.end(session.id)
    finally:
        await store.close()


@pytest.mark.browser
async def test_an_expired_sessions_page_is_not_shown_again_from_the_cache(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The patron walks away without signing out; the session expires. The next person at the
    computer opens the results page again (history, the address bar): the browser must ask
    the proxy, which wants a session, although the vendor said the page may be kept an hour."""
    driver, _ = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        session='store = "memory"\nidle_timeout_s = 6',
    )
    own = f"http://{driver.public}"
    results = f"http://{driver.mapped(WWW)}/results"
    async with signed_in(own) as (_context, page):
        await page.goto(results)
        assert await page.text_content("#out") == "canary results page"
        await page.goto(f"{own}/privacy")
        await page.wait_for_timeout(7000)  # idle_timeout_s passes (counted from sign-in)
        await page.goto(results)
        assert "canary results page" not in await page.content()
        assert page.url.startswith(f"{own}/login")


@pytest.mark.parametrize(
    ("kind", "vendor_says", "sent"),
    [
        ("text/html", "public, max-age=3600", "private, no-store"),
        ("application/xhtml+xml", "max-age=600", "private, no-store"),
        ("image/svg+xml", "public, max-age=86400, immutable", "private, no-store"),
        ("text/html", "no-store, max-age=0", "private, no-store"),
        # What the patron read or searched, never kept: an image (a scanned page, the covers in
        # a results list), plain text, JSON results, a PDF (a review of public computers).
        ("image/png", "public, max-age=86400", "private, no-store"),
        ("text/plain", "max-age=3600", "private, no-store"),
        ("application/json", "max-age=60", "private, no-store"),
        ("application/pdf", "public, max-age=86400", "private, no-store"),
        # A site's scripts, styles and fonts: kept by the browser, asked about before each use
        # (a body can carry a visitor id), and never by a shared cache (one session's).
        ("text/css", "max-age=3600", "max-age=3600, private, no-cache"),
        ("text/javascript", "max-age=3600", "max-age=3600, private, no-cache"),
        (
            "font/woff2",
            "public, max-age=31536000, immutable",
            "max-age=31536000, private, no-cache",
        ),
    ],
)
async def test_vendor_documents_are_kept_only_until_asked_again(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    kind: str,
    vendor_says: str,
    sent: str,
) -> None:
    driver, _ = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    r = await driver.get_vendor(WWW, "/typed", params={"type": kind, "cc": vendor_says})
    assert r.status == 200
    assert r.headers.getall("Cache-Control") == [sent]
    document = sent.startswith("private")
    assert ("Expires" in r.headers) is not document


# ------------------------------------------------------------ cookies written by vendor scripts

# As in production (proxy.westonlibrary.org): the proxy's host sits under the library's own
# registrable domain, where the library's other sites (its catalogue) keep cookies too.
LIBRARY = "weston.localhost"
PUBLIC = f"proxy.{LIBRARY}"
# What the vendor's script writes on each host it runs on, canary values all: host-only, for the
# host itself as a Domain, for the proxy's host (a parent below the library's domain), nameless.
WRITTEN = {
    "host_note": CANARY.uid,
    "own_domain_note": CANARY.phone,
    "parent_note": CANARY.email,
    "": CANARY.surname,
}
WRITE = f"""<!doctype html><html><head><title>write</title></head><body>
<p id="out">writing</p>
<script>
document.cookie = "host_note={CANARY.uid}; path=/";
document.cookie = "own_domain_note={CANARY.phone}; domain=" + location.hostname + "; path=/";
document.cookie = "parent_note={CANARY.email}; domain={PUBLIC}; path=/";
document.cookie = "{CANARY.surname}; path=/";
document.cookie = "catalogue_pref=large-print; domain={LIBRARY}; path=/";
document.getElementById("out").textContent = document.cookie;
</script></body></html>"""
READ = """<!doctype html><html><head><title>read</title></head><body>
<p id="out"></p>
<script>document.getElementById("out").textContent = "[" + document.cookie + "]";</script>
</body></html>"""


def _written_in(text: str) -> list[str]:
    """Which of the canary values the vendor's script wrote appear in `text`."""
    return [value for value in WRITTEN.values() if value in text]


@pytest.mark.browser
async def test_signing_out_deletes_the_cookies_vendor_scripts_wrote(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
) -> None:
    """A database's script writes cookies in the browser with `document.cookie` (host-only,
    for its own host, for the proxy's host), each carrying a canary value. Sign-out's forget
    answer on each vendor host deletes them, so the next person at a shared computer does not
    find them; the library's own cookie (its registrable domain) and the proxy's sign-in are
    left alone, the vendor sees no forget request, and no log names a value."""

    async def write(request: web.Request) -> web.StreamResponse:
        return web.Response(text=WRITE, content_type="text/html")

    async def read(request: web.Request) -> web.StreamResponse:
        return web.Response(text=READ, content_type="text/html")

    driver, vendor = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        public_host=PUBLIC,
    )
    vendor.routes.update({"/write": write, "/read": read})
    own = f"http://{driver.public}"
    async with signed_in(own) as (context, page):
        for host in (WWW, DEEP):
            await page.goto(f"http://{_at(driver, host)}/write")
            written = await page.text_content("#out") or ""
            assert _written_in(written) == list(WRITTEN.values()), host
            assert "catalogue_pref=large-print" in written

        await page.goto(f"{own}/menu")
        async with page.expect_response(lambda r: FORGET in r.url):
            await page.click("form.signout button")
        await page.wait_for_load_state("networkidle")
        assert "You are signed out" in await page.content()
        for host in (WWW, DEEP):
            left = await context.cookies(f"http://{_at(driver, host)}/")
            assert _written_in(repr(left)) == [], host
            assert [c["name"] for c in left] == ["catalogue_pref"], host

        # The next person signs in at this computer: the proxy's sign-in works, and the
        # database's pages find nothing of the last patron's in document.cookie.
        await sign_in_through_form(page, own)
        for host in (WWW, DEEP):
            await page.goto(f"http://{_at(driver, host)}/read")
            assert await page.text_content("#out") == "[catalogue_pref=large-print]", host
    assert _forget_requests(vendor) == []
    assert leaks(log_stream.getvalue().encode()) == []


@pytest.mark.parametrize(
    ("public_host", "parents"),
    [
        (PUBLIC, [PUBLIC]),  # the proxy's host is below the library's registrable domain
        # The proxy's host is itself the registrable domain: nothing of the library's is there.
        ("proxy.localhost", ["proxy.localhost"]),
    ],
)
async def test_the_forget_answer_deletes_each_cookie_sent_but_the_proxys_own(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
    public_host: str,
    parents: list[str],
) -> None:
    """Each cookie name the browser sent gets one deletion per domain: host-only, the vendor
    host, and each parent domain below the registrable one, Path=/. Not the session cookie,
    not the CSRF cookie; never a cookie's value, in the answer or in a log."""
    driver, vendor = await _stack(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        public_host=public_host,
    )
    host = _at(driver, DEEP)
    sent = (
        f"weston_session=sess-{CANARY.uid}; note={CANARY.email}; weston_csrf=tok-{CANARY.uid}; "
        f"__Secure-x={CANARY.phone}; note=again-{CANARY.uid}; {CANARY.surname}; ;"
    )
    got: list[str] = []
    for path in _forget_paths(driver, DEEP):  # the parts together
        r = await driver.client.get(path, headers={"Host": host, "Cookie": sent})
        assert r.status == 204
        assert r.headers["Clear-Site-Data"] == '"cache", "storage"'
        got += r.headers.getall("Set-Cookie", [])
        for value in (CANARY.uid, CANARY.email, CANARY.phone, CANARY.surname):
            assert value not in repr(list(r.headers.items())) + log_stream.getvalue()
        assert await r.read() == b""
    expired = "=; Max-Age=0; Path=/"
    domains = [host.split(":")[0], *parents]
    wanted = []
    for start in ("note" + expired, "__Secure-x" + expired, "x" + expired[1:]):
        wanted += [start] + [f"{start}; Domain={d}" for d in domains]
    assert sorted(got) == sorted(wanted)
    assert _forget_requests(vendor) == []


def test_a_cookie_header_gives_each_name_once_and_never_a_value() -> None:
    from proxy.page_cookies import page_cookie_names

    header = "a=1; b=x=y;a=2;  ; =orphan; bare-value; c; \x01=z"
    assert page_cookie_names(header) == ["a", "b", ""]
