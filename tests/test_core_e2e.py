"""End to end through the real proxy: real slapd, real HTTP vendors, captured logs."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from aiohttp import web

from tests.canary import CANARY, EXPIRED, WREN, leaks
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    ldap_directory,
    one_vendor_proxy,
    vendor_toml,
    write_config,
)

VENDOR_HOST = "www.vendor-one.test"
ALLOWED_CLAIMS = {"iss", "aud", "iat", "exp", "jti", "affiliation"}
FORWARDING = (
    "forwarded",
    "x-forwarded",
    "x_forwarded",
    "x-real-ip",
    "true-client-ip",
    "via",
    "client-ip",
)


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor]:
    driver, vendor = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, VENDOR_HOST
    )
    return driver, vendor


async def test_login_redirects_to_mapped_starting_point(setup: Any) -> None:
    """A good card and PIN give a session cookie and a 303 to the host-mapped vendor URL."""
    driver, _ = setup
    r = await driver.login(CANARY.uid, CANARY.password, url=f"http://{VENDOR_HOST}/start?x=1")
    assert r.status == 303
    assert r.headers["Location"] == f"http://{driver.mapped(VENDOR_HOST)}/start?x=1"
    cookie = r.cookies[driver.config.server.cookie_name]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert cookie["domain"] == "proxy.localhost"
    assert not leaks(cookie.value.encode())


@pytest.mark.parametrize(
    ("card", "pin", "status", "phrase"),
    [
        (CANARY.uid, "wrong-pin", 401, "card number or PIN is not right"),
        (CANARY.uid, "", 401, "The PIN was empty"),
        ("", CANARY.password, 401, "The card number was empty"),
        ("29999000999999", "whatever", 401, "card number or PIN is not right"),
        (EXPIRED.uid, EXPIRED.password, 403, "can't be used for online databases"),
    ],
    ids=["wrong-pin", "empty-pin", "empty-card", "unknown-card", "ineligible"],
)
async def test_login_failures_say_what_to_do(
    setup: Any, card: str, pin: str, status: int, phrase: str
) -> None:
    """Each failure has its own status and message, and no session is made; a 401 names its
    challenge, the sign-in form (RFC 9110 asks every 401 for one)."""
    driver, _ = setup
    r = await driver.login(card, pin)
    html = await r.text()
    assert r.status == status
    assert (r.headers.get("WWW-Authenticate") == "Form") == (status == 401)
    assert phrase in html.replace("&#39;", "'")
    assert driver.config.server.cookie_name not in r.cookies


async def test_unknown_card_and_wrong_pin_look_the_same(setup: Any) -> None:
    """The response never reveals whether a card number exists."""
    driver, _ = setup
    a = await driver.login(CANARY.uid, "wrong-pin")
    b = await driver.login("29999000999999", "wrong-pin")
    strip = lambda h: h.split('name="csrf"')[0]  # noqa: E731 - the token differs by design
    assert a.status == b.status == 401
    assert strip(await a.text()) == strip(await b.text())


@pytest.mark.parametrize(
    "username",
    [
        "*",
        "x)(uid=*",
        "*)(|(uid=*",
        "29999000424242)(uid=*",
        "a\x00b",
        "9" * 10_000,
        "*)(objectClass=*",
    ],
)
async def test_filter_injection_usernames_never_log_in(setup: Any, username: str) -> None:
    """LDAP filter metacharacters in the card number are escaped: no session, a 401 or 400."""
    driver, _ = setup
    r = await driver.login(username, CANARY.password)
    assert r.status in (400, 401)
    assert driver.config.server.cookie_name not in r.cookies


async def test_directory_down_gives_503_quickly_and_recovers(
    setup: Any, running_slapd: Any
) -> None:
    """slapd stopped: 503 within timeout_s + 1 s saying the login service is unavailable; back when it is."""
    driver, _ = setup
    running_slapd.stop()
    try:
        t0 = time.monotonic()
        r = await driver.login(CANARY.uid, CANARY.password)
        elapsed = time.monotonic() - t0
        assert r.status == 503
        assert "login service is unavailable" in await r.text()
        assert elapsed < driver.config.directory.timeout_s + 1
        ready = await driver.own("GET", "/readyz")
        assert ready.status == 503 and (await ready.json())["directory"] == "unavailable"
    finally:
        running_slapd.start()
    r = await driver.login(CANARY.uid, CANARY.password)
    assert r.status == 303


async def test_failover_to_second_directory_url(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    dead_ldap_url: str,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """The first URL refuses connections; the second one serves the login."""
    vendor = await vendor_factory(VENDOR_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path, urls=[dead_ldap_url, running_slapd.url]),
        vendors={"one": vendor_toml("one", vendor)},
    )
    driver = await proxy_factory(cfg)
    r = await driver.login(CANARY.uid, CANARY.password)
    assert r.status == 303


async def _jwks(driver: ProxyDriver) -> dict[str, Any]:
    r = await driver.own("GET", "/.well-known/jwks.json")
    assert r.status == 200
    data: dict[str, Any] = await r.json()
    return data


async def test_canary_patron_browsing_leaks_nothing_to_vendor_or_logs(
    setup: Any, log_stream: io.StringIO
) -> None:
    """P1/P3/P5: the vendor sees no canary byte, no forwarding header, no proxy cookie; one assertion
    that verifies with the right iss/aud and only the allowed claims; logs hold no canary, IP or search."""
    driver, vendor = setup
    r = await driver.login(CANARY.uid, CANARY.password, url=f"http://{VENDOR_HOST}/")
    assert r.status == 303
    sid = driver.session_id()
    assert sid
    hostile = {
        "X-Forwarded-For": "203.0.113.77",
        "X_Forwarded_For": "203.0.113.77",
        "x-forwarded-host": "203.0.113.77",
        "Forwarded": "for=203.0.113.77",
        "X-Real-IP": "203.0.113.77",
        "True-Client-IP": "203.0.113.77",
        "Via": "1.1 203.0.113.77",
        "X-Patron-Assertion": "forged",
        "Authorization": f"Basic {CANARY.uid}",
        "Cookie": f"tracker={CANARY.email}",
        "Referer": f"http://{driver.mapped(VENDOR_HOST)}/secret-page?name={CANARY.surname}",
        "Sec-CH-UA-Platform": "Linux",
    }
    search_term = "quokkasearchterm"
    r = await driver.get_vendor(VENDOR_HOST, f"/search?q={search_term}", headers=hostile)
    assert r.status == 200
    r = await driver.get_vendor(
        VENDOR_HOST, "/form", method="POST", data={"q": search_term}, headers=hostile
    )
    assert r.status == 200
    assert len(vendor.requests) == 2
    everything = vendor.all_bytes()
    assert leaks(everything) == []
    assert b"203.0.113.77" not in everything
    assert sid.encode() not in everything
    assert driver.config.server.cookie_name.encode() not in everything
    jwks = await _jwks(driver)
    for req in vendor.requests:
        names = [k.lower() for k, _ in req.headers]
        assert not [n for n in names if n.startswith(FORWARDING) or n.startswith("sec-ch-")]
        assert "authorization" not in names and "cookie" not in names
        assert (
            dict((k.lower(), v) for k, v in req.headers).get("referer") == f"http://{VENDOR_HOST}/"
        )
        tokens = [v for k, v in req.headers if k.lower() == "x-patron-assertion"]
        assert len(tokens) == 1 and tokens[0] != "forged"
        header = jwt.get_unverified_header(tokens[0])
        key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
        claims = jwt.decode(
            tokens[0],
            jwt.PyJWK(key).key,
            algorithms=["EdDSA"],
            audience="one",
            issuer=f"http://{driver.public}",
        )
        assert set(claims) == ALLOWED_CLAIMS
        assert claims["affiliation"] == "member@westonlibrary.org"
        assert claims["exp"] - claims["iat"] <= 300
    logs = log_stream.getvalue().encode()
    assert logs, "the proxy logged something"
    assert leaks(logs) == [], logs.decode()[-3000:]
    assert search_term.encode() not in logs
    assert b"127.0.0.1" not in logs.replace(f"127.0.0.1:{driver.port}".encode(), b"")
    assert b"203.0.113.77" not in logs


async def test_unknown_host_refused_without_contacting_anyone(setup: Any) -> None:
    """A Host that maps to no configured vendor gets the 404 page and no outbound request."""
    driver, vendor = setup
    await driver.login(CANARY.uid, CANARY.password)
    for host in (
        f"www-other-test.proxy.localhost:{driver.port}",
        f"{driver.mapped(VENDOR_HOST)}.evil.test",
        f"127.0.0.1:{vendor.port}",
        "evil.test",
        f"{driver.mapped(VENDOR_HOST).split(':')[0]}:1",
    ):
        r = await driver.client.get("/", headers={"Host": host}, allow_redirects=False)
        assert r.status == 404, host
        assert "isn't set up at the library" in (await r.text()).replace("&#39;", "'")
    assert vendor.requests == []


async def test_own_host_keeps_404_and_405_while_vendor_hosts_get_every_path(setup: Any) -> None:
    """Paths that are the proxy's own routes on its own host are the vendor's on a vendor host;
    the own host still says 404 for unknown paths and 405 for a wrong method."""
    driver, vendor = setup
    await driver.login(CANARY.uid, CANARY.password)
    assert (await driver.own("GET", "/no-such-page")).status == 404
    r = await driver.own("PUT", "/login")
    assert r.status == 405
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    for method, path in (("GET", "/no-such-page"), ("PUT", "/login"), ("POST", "/"), ("GET", "/x")):
        r = await driver.get_vendor(VENDOR_HOST, path, method=method)
        assert r.status == 200, (method, path)
        assert (vendor.requests[-1].method, vendor.requests[-1].path_qs) == (method, path)


async def test_no_session_redirects_to_login_with_original_url(setup: Any) -> None:
    driver, vendor = setup
    r = await driver.get_vendor(VENDOR_HOST, "/path/page?a=1&b=2", sid="")
    assert r.status == 302
    loc = urlsplit(r.headers["Location"])
    assert loc.netloc == driver.public and loc.path == "/login"
    assert parse_qs(loc.query)["url"] == [f"http://{VENDOR_HOST}/path/page?a=1&b=2"]
    assert vendor.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.test/",
        "//evil.test/",
        "http://www.vendor-one.test.evil.test/",
        "http://evil.test/http://www.vendor-one.test/",
        "http://www.vendor-one.test@evil.test/",
        "http://evil.test\\@www.vendor-one.test/",
        "javascript:alert(1)",
        "/\\evil.test",
        "http://www-vendor--one-test.proxy.localhost.evil.test/",
        "http:%2f%2fevil.test",
    ],
)
async def test_open_redirect_attempts_land_on_menu(setup: Any, url: str) -> None:
    driver, _ = setup
    r = await driver.login(CANARY.uid, CANARY.password, url=url)
    assert r.status == 303
    assert r.headers["Location"] == f"http://{driver.public}/menu"


async def test_login_issues_a_new_session_id(setup: Any) -> None:
    """A cookie planted before login is never the session id after it (no fixation)."""
    driver, _ = setup
    planted = "A" * 43
    r = await driver.login(
        CANARY.uid, CANARY.password, cookies={driver.config.server.cookie_name: planted}
    )
    sid = r.cookies[driver.config.server.cookie_name].value
    assert sid != planted and len(sid) >= 43
    r2 = await driver.login(CANARY.uid, CANARY.password)
    assert r2.cookies[driver.config.server.cookie_name].value not in (sid, planted)
    # The planted value never opens anything.
    r3 = await driver.get_vendor(VENDOR_HOST, "/", sid=planted)
    assert r3.status == 302


async def test_logout_ends_access_at_once(setup: Any) -> None:
    driver, vendor = setup
    await driver.login(CANARY.uid, CANARY.password)
    sid = driver.session_id()
    assert (await driver.get_vendor(VENDOR_HOST, "/", sid=sid)).status == 200
    r = await driver.own("GET", "/logout")
    assert r.status == 200
    assert "signed out" in await r.text()
    before = len(vendor.requests)
    r = await driver.get_vendor(VENDOR_HOST, "/", sid=sid)
    assert r.status == 302
    assert len(vendor.requests) == before


async def test_a_request_running_at_logout_does_not_bring_the_session_back(setup: Any) -> None:
    """The patron signs out while a vendor page is still loading, and the vendor then sets a
    cookie. The running request's save must not store the session again: it would be valid
    again, jar and all, until its idle timeout, after the patron was told it had ended."""
    from proxy.app import SERVICES

    driver, vendor = setup
    await driver.login(CANARY.uid, CANARY.password)
    sid = driver.session_id()
    assert sid is not None
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        resp = web.Response(text="late", content_type="text/plain")
        resp.set_cookie("vsess", "set-after-logout", path="/")
        return resp

    vendor.routes["/slow"] = slow
    pending = asyncio.create_task(driver.get_vendor(VENDOR_HOST, "/slow", sid=sid))
    await asyncio.wait_for(arrived.wait(), 5)
    assert (await driver.own("GET", "/logout")).status == 200
    release.set()
    assert (await pending).status == 200  # the page itself still arrives
    store = driver.client.server.app[SERVICES].sessions.store
    assert await store.get(sid) is None
    assert await store.count() == 0
    before = len(vendor.requests)
    assert (await driver.get_vendor(VENDOR_HOST, "/", sid=sid)).status == 302
    assert len(vendor.requests) == before


async def test_session_time_post_counts_as_use_and_get_does_not(setup: Any) -> None:
    """The menu's time-out warning: GET says how long is left; POST with the session's CSRF token
    counts as use (and only with it); neither brings back a session that has ended."""
    from proxy.app import SERVICES

    driver, _ = setup
    await driver.login(CANARY.uid, CANARY.password)
    sid = driver.session_id()
    sessions = driver.client.server.app[SERVICES].sessions
    session = await sessions.load(sid)
    assert session is not None
    session.last_seen -= 600  # last used ten minutes ago
    await sessions.store.put(session, 600)
    idle = sessions.idle_timeout_s

    r = await driver.own("GET", "/session")
    assert r.status == 200 and (await r.json())["left_s"] <= idle - 595
    assert (await sessions.load(sid)).last_seen == session.last_seen
    r = await driver.own("POST", "/session", headers={"X-CSRF-Token": "not-the-token"})
    assert r.status == 403
    assert (await sessions.load(sid)).last_seen == session.last_seen
    r = await driver.own("POST", "/session", headers={"X-CSRF-Token": session.csrf})
    assert r.status == 200 and (await r.json())["left_s"] >= idle - 5
    assert (await sessions.load(sid)).last_seen > session.last_seen + 595

    assert (await driver.own("GET", "/logout")).status == 200
    cookie = f"{driver.config.server.cookie_name}={sid}"
    r = await driver.own(
        "POST", "/session", headers={"X-CSRF-Token": session.csrf, "Cookie": cookie}
    )
    assert r.status == 401
    assert await sessions.store.get(sid) is None


async def test_menu_lists_databases_with_mapped_links(setup: Any) -> None:
    driver, _ = setup
    await driver.login(CANARY.uid, CANARY.password)
    r = await driver.own("GET", "/menu")
    html = await r.text()
    assert r.status == 200
    assert f'href="http://{driver.mapped(VENDOR_HOST)}/"' in html
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_two_patrons_get_distinct_unlinkable_assertions(setup: Any) -> None:
    """Anonymous release: nothing in two patrons' assertions tells them apart or links visits."""
    driver, vendor = setup
    for p in (CANARY, WREN):
        await driver.login(p.uid, p.password)
        await driver.get_vendor(VENDOR_HOST, "/")
    tokens = [v for r in vendor.requests for k, v in r.headers if k.lower() == "x-patron-assertion"]
    claims = [jwt.decode(t, options={"verify_signature": False}) for t in tokens]
    assert len(claims) == 2
    assert "sub" not in claims[0] and "sub" not in claims[1]
    assert claims[0]["jti"] != claims[1]["jti"]


async def test_healthz_and_readyz(setup: Any) -> None:
    driver, _ = setup
    assert (await driver.own("GET", "/healthz")).status == 200
    r = await driver.own("GET", "/readyz")
    assert r.status == 200 and await r.json() == {"directory": "ok", "store": "ok"}


async def test_session_requests_concurrent(setup: Any) -> None:
    """Many concurrent requests in one session all reach the vendor with an assertion."""
    driver, vendor = setup
    await driver.login(CANARY.uid, CANARY.password)
    rs = await asyncio.gather(*(driver.get_vendor(VENDOR_HOST, f"/p{i}") for i in range(20)))
    assert [r.status for r in rs] == [200] * 20
    assert all(
        any(k.lower() == "x-patron-assertion" for k, _ in r.headers) for r in vendor.requests
    )
    assert json.dumps([r.path_qs for r in vendor.requests])


async def test_a_vendors_password_challenge_never_reaches_the_browser(setup: Any) -> None:
    """A vendor answering 401 with `WWW-Authenticate: Basic` would make the browser ask for a
    user name and password on the vendor's mapped host, and a patron types their card and PIN
    there (P2; the browser's Authorization never reaches the vendor anyway). The 401 and its
    page reach the patron; the challenge is the proxy's form one, which no browser prompts for."""
    driver, vendor = setup

    async def challenge(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=401,
            text="<p>Sign in to your vendor account</p>",
            content_type="text/html",
            headers={"WWW-Authenticate": 'Basic realm="Vendor", Digest realm="Vendor"'},
        )

    vendor.routes["/private"] = challenge
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    r = await driver.get_vendor(VENDOR_HOST, "/private")
    assert r.status == 401
    assert "vendor account" in await r.text()
    assert r.headers.getall("WWW-Authenticate") == ["Form"]
