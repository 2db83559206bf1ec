"""From a hand mutation sweep of what the browser is allowed on a relayed page (P1, P3, P4, P7):
the tracker shield's CSP, the Permissions-Policy and its grants, the fixed page for a refused
request, the service-worker refusal, CORS preflights and the proxy's own pages' headers.

Each test here failed with one small change to the code (named in its docstring as
"kills: file:function — change") that no other test noticed, and passes on the code as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from proxy import permissions
from proxy.hosts import HostMap

# The features every relayed page has off unless its vendor is granted one, written out here
# rather than read from proxy.permissions, so that dropping one from the module is noticed.
OFF_BY_DEFAULT = (
    "geolocation",
    "camera",
    "microphone",
    "display-capture",
    "clipboard-read",
    "usb",
    "serial",
    "hid",
    "bluetooth",
    "midi",
    "payment",
    "idle-detection",
    "local-fonts",
    "window-management",
    "screen-wake-lock",
    "accelerometer",
    "gyroscope",
    "magnetometer",
    "ambient-light-sensor",
    "xr-spatial-tracking",
    "publickey-credentials-get",
    "publickey-credentials-create",
    "identity-credentials-get",
    "otp-credentials",
    "storage-access",
    "attribution-reporting",
    "browsing-topics",
    "interest-cohort",
    "join-ad-interest-group",
    "run-ad-auction",
    "private-state-token-issuance",
    "private-state-token-redemption",
    "shared-storage",
    "shared-storage-select-url",
    "keyboard-map",
    "compute-pressure",
)
# What a database may be granted (a language course's microphone, a map's position, …).
GRANTABLE = (
    "geolocation",
    "camera",
    "microphone",
    "display-capture",
    "clipboard-read",
    "screen-wake-lock",
    "midi",
    "xr-spatial-tracking",
)


def _policy_dict(value: str) -> dict[str, str]:
    out = {}
    for item in value.split(", "):
        name, _, allow = item.partition("=")
        out[name] = allow
    return out


def test_every_device_tracking_and_fingerprinting_feature_is_off_on_a_vendor_page() -> None:
    """kills: proxy/permissions.py:FEATURES — `"local-fonts",` removed (or any other name).

    A vendor page's Permissions-Policy turns off every feature a script could use to tell one
    patron's device from another (the local fonts, the keyboard map, the motion sensors), to
    advertise (topics, ad auctions) or to reach the patron's devices (USB, serial, HID): the
    browser tests probe four of them, so dropping any other one from the list was unnoticed and
    a vendor's script could, for instance, enumerate the patron's installed fonts again."""
    got = _policy_dict(permissions.policy())
    for feature in OFF_BY_DEFAULT:
        assert got.get(feature) == "()", (feature, got.get(feature))
    granted = _policy_dict(
        permissions.policy(("microphone",), ("http://media-x-test.proxy.localhost:8080",))
    )
    assert granted["microphone"] == '(self "http://media-x-test.proxy.localhost:8080")'
    for feature in OFF_BY_DEFAULT:
        if feature != "microphone":
            assert granted.get(feature) == "()", feature


def test_every_feature_a_database_may_need_can_be_granted(tmp_path: Path) -> None:
    """kills: proxy/permissions.py:GRANTABLE — `"camera",` removed (or any other of the eight).

    IT staff may grant a vendor any of the features a database can need of the patron (the
    camera for a sign-language course, the position for a local-history map, …): check-config
    accepts each of them. The existing test only tried the microphone, so losing another from
    the grantable set went unnoticed, and the library's config would have been refused at the
    next reload."""
    from tests.test_check_config_cross import check, vendor

    listed = ", ".join(f'"{f}"' for f in GRANTABLE)
    _code, problems = check(
        tmp_path,
        {
            "films": vendor(
                "films", "www.films.test", ["www.films.test"], f"permissions = [{listed}]\n"
            )
        },
    )
    assert not [p for p in problems if "permissions[" in p], problems


# ------------------------------------------------------------------------------ CORS preflights

PUBLIC_HTTPS = "proxy.lib.org"


def _https_hosts() -> HostMap:
    return HostMap.build(
        public_scheme="https",
        public_host=PUBLIC_HTTPS,
        public_port=None,
        vendor_hosts=[("a", ["www.a-db.test", "api.a-db.test"]), ("b", ["www.b-db.test"])],
        never_proxy=[],
    )


def _preflight(origin: str | None, host: str = "api-a--db-test.proxy.lib.org") -> Any:
    headers = {"Host": host, "Access-Control-Request-Method": "PUT"}
    if origin is not None:
        headers["Origin"] = origin
    return make_mocked_request("OPTIONS", "/api/save", headers=headers)


def test_a_preflight_from_the_vendors_host_over_plain_http_is_not_allowed() -> None:
    """kills: proxy/preflight.py:_same_vendor — `hosts.mapped_origin(origin_host) !=
    origin.lower()` check dropped (any scheme or spelling of a mapped host passes).

    On an HTTPS proxy the vendor's page lives at `https://www-a--db-test.proxy.lib.org`; a page
    at `http://` on the same name is not it (a network attacker answers plain-HTTP requests to
    any name). The proxy's answer must not let that page make credentialed calls to the
    vendor's API host with the patron's session cookie and read the answers."""
    from proxy.preflight import answer_preflight

    hosts = _https_hosts()
    good = answer_preflight(
        _preflight("https://www-a--db-test.proxy.lib.org"), hosts, "api.a-db.test"
    )
    assert good.headers.get("Access-Control-Allow-Origin") == "https://www-a--db-test.proxy.lib.org"
    for origin in (
        "http://www-a--db-test.proxy.lib.org",
        "https://www-a--db-test.proxy.lib.org:8443",
        "wss://www-a--db-test.proxy.lib.org",
    ):
        resp = answer_preflight(_preflight(origin), hosts, "api.a-db.test")
        assert not [h for h in resp.headers if h.lower().startswith("access-control-")], origin


def test_an_options_request_without_an_origin_is_not_a_preflight() -> None:
    """kills: proxy/preflight.py:is_preflight — `"Origin" in request.headers and …` → only
    Access-Control-Request-Method asked for.

    A browser's preflight always names its Origin; an OPTIONS request without one (a vendor's
    own API client, a WebDAV-style probe) is the patron's request to the vendor and goes through
    the session gate to it, not answered by the proxy (where its missing Origin made the answer
    fail with a server error)."""
    from proxy.preflight import is_preflight

    assert is_preflight(_preflight("https://www-a--db-test.proxy.lib.org"))
    assert not is_preflight(_preflight(None))


# ------------------------------------------------------------------------ the proxy's own pages


def _csp(value: str) -> dict[str, list[str]]:
    out = {}
    for d in value.split(";"):
        parts = d.split()
        if parts:
            out[parts[0]] = parts[1:]
    return out


async def test_the_sign_in_page_and_the_menu_carry_the_proxys_own_page_headers(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/privacy.py:OWN_PAGE_HEADERS — `"Permissions-Policy": …` removed;
    `base-uri 'none'` removed; `script-src 'self'` → `script-src 'self' 'unsafe-inline'`;
    `"Cross-Origin-Opener-Policy"` removed.

    The pages where the patron types the card number and PIN, and the menu, run only the
    proxy's own script files (an inline script a vendor managed to inject, through a reflected
    `url`, would read the form), cannot have their links re-based by an injected `<base>`, take
    no part in the browser's ad-topics, and open in their own browsing-context group (a vendor
    script's `window.name` does not survive into the next patron's session)."""
    from tests.fixtures_ldap import generic_password, generic_uid
    from tests.test_hostile_vendor import _stack

    driver, _va, _vb = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    pages = [await driver.own("GET", "/login")]
    assert (await driver.login(generic_uid(3), generic_password(3))).status == 303
    pages.append(await driver.own("GET", "/menu"))
    for r in pages:
        assert r.status == 200, r.status
        csp = _csp(r.headers["Content-Security-Policy"])
        assert csp["script-src"] == ["'self'"], csp
        assert csp["base-uri"] == ["'none'"], csp
        assert csp["object-src"] == ["'none'"], csp
        assert csp["frame-ancestors"] == ["'none'"], csp
        assert csp["default-src"] == ["'self'"], csp
        policy = _policy_dict(r.headers.get("Permissions-Policy", ""))
        assert policy.get("interest-cohort") == "()" and policy.get("browsing-topics") == "()"
        assert r.headers.get("Cross-Origin-Opener-Policy") == "same-origin"
        assert r.headers.get("X-Frame-Options") == "DENY"
        assert r.headers.get("X-Content-Type-Options") == "nosniff"
        assert r.headers.get("Cache-Control") == "no-store"


# ------------------------------------------------------------------------------- the tracker shield


def test_the_shield_names_the_proxy_alone_in_the_directives_default_src_does_not_cover() -> None:
    """kills: proxy/rewrite_headers.py:shield_csp — `"base-uri": ours` removed.

    `base-uri` and `form-action` do not fall back to `default-src`: without them in the shield,
    a vendor page's `<base href="https://tracker.example/">` re-bases every relative link and
    form of the page onto a third party, so the patron's next click or search goes from the
    patron's own address straight to it (P3), with the search terms in its URL."""
    from proxy.rewrite_headers import shield_csp

    hosts = _https_hosts()
    policy = shield_csp(hosts, allow_third_party=False)
    assert policy is not None
    csp = _csp(policy)
    ours = ["'self'", "https://*.proxy.lib.org", "https://proxy.lib.org"]
    assert csp.get("base-uri") == ours, csp
    assert csp.get("form-action") == ours, csp


def test_a_host_that_merely_ends_in_the_proxys_name_is_a_third_party() -> None:
    """kills: proxy/rewrite_headers.py:is_third_party — `host.endswith("." + public_host)` →
    `host.endswith(public_host)`.

    `adsproxy.lib.org` is not the proxy (`proxy.lib.org`) nor one of its mapped hosts: a page
    referring to it is counted as referring to a third party, in the statistics and in the
    compliance report privacy staff read, and the shield blocks it."""
    from proxy.rewrite_headers import is_third_party

    hosts = _https_hosts()
    assert is_third_party(hosts, "adsproxy.lib.org")
    assert is_third_party(hosts, "tracker.example")
    assert not is_third_party(hosts, "proxy.lib.org")
    assert not is_third_party(hosts, "www-a--db-test.proxy.lib.org")
    assert not is_third_party(hosts, "www.a-db.test")


@pytest.mark.browser
async def test_a_vendor_page_opens_a_socket_to_the_vendors_other_host_under_the_shield(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/rewrite_headers.py:shield_csp — `connect-src` without its
    `ws://*.<public host>` source.

    In Chromium, a vendor page on `www.` opening a WebSocket to the vendor's live host (a chat
    with a librarian, live captions), written as the vendor's URL and mapped by the rewriter,
    connects through the proxy: the shield's `connect-src` must name the mapped hosts with the
    WebSocket scheme too, since 'self' covers only the page's own host."""
    from playwright.async_api import async_playwright

    from tests.browser_support import launch
    from tests.canary import CANARY
    from tests.harness import ldap_directory, sign_in_through_form, vendor_toml, write_config
    from tests.test_websocket import HOST, SOCKET_PAGE, SocketVendor

    live_host = "live.vendor-one.test"
    vendor = await vendor_factory(HOST)
    sockets = SocketVendor()
    vendor.routes["/ws"] = sockets.echo
    url = f'"ws://{live_host}/ws"'

    async def live(request: Any) -> Any:
        from aiohttp import web

        return web.Response(text=SOCKET_PAGE % url, content_type="text/html")

    vendor.routes["/live"] = live
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[HOST, live_host])},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await (await browser.new_context()).new_page()
            await sign_in_through_form(page, f"http://{driver.public}")
            await page.goto(f"http://{driver.mapped(HOST)}/live")
            await page.wait_for_function(
                "document.getElementById('out').textContent !== 'waiting'", timeout=10_000
            )
            assert await page.text_content("#out") == "echo:from the browser via chat.v2"
        finally:
            await browser.close()
    assert sockets.messages == [("text", "from the browser")]


async def test_a_worker_script_the_vendor_mislabels_still_gets_the_shield(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:_relay — `worker = mt in JAVASCRIPT_TYPES or Sec-Fetch-Dest in
    _WORKER_DESTS` → `mt in JAVASCRIPT_TYPES` alone.

    A worker runs under the CSP of its own script's response. Storage buckets and CDNs often
    label scripts `application/octet-stream`, which browsers still run as a worker's script:
    asked for as a worker (`Sec-Fetch-Dest: worker` / `sharedworker`), that answer carries the
    tracker shield, or the worker's fetch() and importScripts() reach third parties from the
    patron's own address (P3)."""
    from aiohttp import web

    from tests.fixtures_ldap import generic_password, generic_uid
    from tests.test_hostile_vendor import A, _stack

    driver, va, _vb = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)

    async def worker(request: web.Request) -> web.StreamResponse:
        body = b'fetch("https://tracker.example/beacon"); onmessage = () => {};\n'
        return web.Response(body=body, headers={"Content-Type": "application/octet-stream"})

    va.routes["/w.js"] = worker
    assert (await driver.login(generic_uid(4), generic_password(4))).status == 303
    for dest in ("worker", "sharedworker"):
        r = await driver.get_vendor(A, "/w.js", headers={"Sec-Fetch-Dest": dest})
        assert r.status == 200, r.status
        policies = r.headers.getall("Content-Security-Policy", [])
        assert any("connect-src 'self'" in p for p in policies), (dest, policies)


def test_a_string_that_is_no_host_name_is_not_counted_as_a_third_party() -> None:
    """kills: proxy/rewrite_headers.py:is_third_party — `is_valid_hostname(host) and` dropped.

    What follows a `//` in a page is not always a host (`//----` rulers, `//..` in a path):
    only a real host name is counted as a third party the page refers to, so the per-vendor
    third-party counts in the statistics and the compliance report privacy staff read are not
    inflated by text that names no one."""
    from proxy.rewrite_headers import is_third_party

    hosts = _https_hosts()
    for junk in ("--", "..", "-tracker-.example", "a..b", "tracker_x.example"):
        assert not is_third_party(hosts, junk), junk
    assert is_third_party(hosts, "tracker-x.example")


# An untyped vendor answer that is no document, as the browser receives it.
from tests.test_vendor_content import WWW, raw_vendor  # noqa: E402,F401


async def test_an_untyped_answer_that_is_no_document_still_gets_the_permissions_policy(
    raw_vendor: Any,  # noqa: F811
) -> None:
    """kills: proxy/forward.py:_relay — `if shielded(media_type(ctype)) or unknown:` →
    `if shielded(media_type(ctype)):` (the Permissions-Policy step).

    A vendor answer with no Content-Type goes to the browser untyped, for it to sniff; whatever
    the browser makes of it, it carries the proxy's Permissions-Policy (as it carries the
    shield's CSP), so a body the browser renders as a page cannot ask the patron for the
    position, camera or microphone under the library's name."""
    driver, answer = raw_vendor
    body = b"%PDF-1.7\n" + bytes(range(256))
    answer["raw"] = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    r = await driver.get_vendor(WWW, "/download")
    assert r.status == 200
    assert "Content-Type" not in r.headers
    policy = _policy_dict(r.headers.get("Permissions-Policy", ""))
    assert policy.get("geolocation") == "()" and policy.get("camera") == "()", dict(r.headers)


from tests.test_compliance import config  # noqa: E402,F401  (the compliance suite's library)


def test_a_blank_reason_does_not_explain_turning_the_shield_off(config: Any) -> None:  # noqa: F811
    """kills: proxy/compliance.py:check_configuration — `not v.third_party_reason.strip()` →
    `not v.third_party_reason`.

    Privacy staff are told, as a critical failure, when a vendor's tracker shield is off with
    no recorded reason: a `third_party_reason` of spaces is no reason, and must not turn the
    check green."""
    import dataclasses

    from proxy.compliance import CRITICAL, FAIL, PASS, check_configuration
    from proxy.compliance_settings import ComplianceSettings

    good = config.vendor("good")
    assert good is not None

    def shield_check(reason: str) -> Any:
        v = dataclasses.replace(good, third_party="allow", third_party_reason=reason)
        checks = check_configuration(v, config, ComplianceSettings())
        return next(c for c in checks if c.id == "shield.disabled_without_reason")

    blank = shield_check("   ")
    assert (blank.severity, blank.result) == (CRITICAL, FAIL), blank
    assert shield_check("a maps widget the contract names").result == PASS


async def test_a_handlers_crash_is_left_to_aiohttp_not_dressed_as_a_refused_request() -> None:
    """kills: proxy/http_errors.py:install.handle_error — `if not isinstance(exc,
    HttpProcessingError)` → `if exc is None`.

    Only a request aiohttp's parser refused gets the fixed "could not be read" page. A crash in
    a handler stays aiohttp's 500, which logs the traceback for IT staff; dressed as a refused
    request, the patron would be told their browser sent something unreadable (and to try
    again), and IT staff would see only a `request_refused` line naming no error."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from proxy import http_errors

    pages = http_errors._pages
    http_errors.install("http://proxy.localhost:8080", 8190)  # as the proxy does at start

    async def crash(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("a bug in a handler")

    app = web.Application()
    app.router.add_get("/crash", crash)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        r = await client.get("/crash")
        body = await r.text()
    finally:
        await client.close()
        http_errors._pages = pages
    assert r.status == 500
    assert http_errors.UNREADABLE[0] not in body, body[:200]


def test_the_shield_lets_a_page_use_what_it_builds_itself() -> None:
    """kills: proxy/rewrite_headers.py:shield_csp — `"img-src": f"{ours} data: blob:"` →
    `f"{ours}"` (and the same for fonts, media and workers).

    `data:` and `blob:` URLs are made inside the page and reach no one, so the shield allows
    them: a database's icons and spinners written as `data:` images, its embedded fonts, a
    PDF viewer's canvas exports (`blob:` images) and its `blob:` worker still work through
    the proxy, where a shield without them left the patron a broken page."""
    from proxy.rewrite_headers import shield_csp

    policy = shield_csp(_https_hosts(), allow_third_party=False)
    assert policy is not None
    csp = _csp(policy)
    for name in ("default-src", "img-src", "font-src", "media-src", "worker-src", "style-src"):
        assert "data:" in csp[name] and "blob:" in csp[name], (name, csp[name])


PREFS = """<!doctype html><title>a</title><p id="out">x</p>
<script>document.cookie = "prefs=wide-sidebar; path=/; max-age=3600";
document.getElementById("out").textContent = "set";</script>"""


@pytest.mark.browser
async def test_a_link_too_long_for_the_proxy_leaves_the_vendors_cookies_and_does_not_reload(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/http_errors.py:_REPAIR — `if (document.cookie.length + 256 < limit)
    return;` → `if (false) return;` (the repair acting whatever the cookies' size).

    A patron who follows a link whose address alone is over the limit gets the 414 page. Its
    repair script acts only on a cookie bomb: the small cookies the vendor's own pages keep on
    its host (a layout preference) stay, and the page does not reload itself (which would ask
    for the same long address again, in a loop)."""
    from tests.harness import sign_in_through_form
    from tests.test_hostile_vendor import A, _browser_page, _route, _stack, _text

    driver, va, _vb = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    va.routes["/prefs"] = _route(PREFS)
    own = f"http://{driver.public}"
    async with _browser_page() as page:
        await sign_in_through_form(page, own)
        await page.goto(f"http://{driver.mapped(A)}/prefs", wait_until="load")
        assert await _text(page) == "set"
        loads: list[int] = []
        page.on("load", lambda _p: loads.append(1))
        resp = await page.goto(f"http://{driver.mapped(A)}/" + "x" * 9000)
        assert resp is not None and resp.status == 414, resp.status if resp else None
        await page.wait_for_timeout(1500)
        names = [c["name"] for c in await page.context.cookies()]
        hidden = await page.evaluate("() => document.getElementById('repaired').hidden")
    assert "prefs" in names, names
    assert hidden is True
    assert len(loads) == 1, f"the page reloaded itself {len(loads) - 1} times"
