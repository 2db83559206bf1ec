"""From a mutation sweep (1 December 2026) of the patron's own pages: tests for behaviours of
proxy/web/pages.py, session_cookie.py, disclosure.py, branding.py, messages.py and
proxy/navigation.py that could break without any other test noticing. Each docstring names the
mutant it kills. Unit-level where the behaviour is local; end-to-end (real slapd, a recording
vendor, the real proxy) where it is about what a browser receives. Synthetic canary patrons only.
"""

from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web

from proxy.web.messages import MESSAGES
from proxy.web.pages import NOTICE_COOKIE
from tests.canary import CANARY
from tests.harness import one_vendor_proxy
from tests.test_pin_warnings import SOON, warn_slapd, warned  # noqa: F401 (fixtures)

HOST = "www.vendor-one.test"


def _https_config() -> Any:
    return SimpleNamespace(
        server=SimpleNamespace(cookie_name="weston_session"),
        public=("https", "proxy.westonlibrary.org"),
    )


def test_the_menu_notice_cookie_is_out_of_scripts_reach_and_short_lived() -> None:
    """kills: proxy/web/pages.py:_set_notice — `httponly=True` → `False`; `max_age=120` →
    `12000000`; `path="/menu"` → `"/"`; `secure=_cookie_secure(config)` → `False`;
    `samesite="Lax"` → `"None"`.

    The "PIN warning / not one of our databases" note the menu shows once after sign-in rides in
    a cookie. Its PIN tag is keyed by the session id, and it is only safe because no page script
    can read it (HttpOnly): a vendor script on a mapped host reading it would learn the tag and
    something of the patron's PIN state. It must go to /menu only (not to every vendor host's
    request, where it would be one more thing about the patron on the wire), live two minutes
    (a shared computer's next user must not see the last patron's PIN warning), be Secure on an
    https proxy, and not be sent on cross-site requests."""
    from proxy.web.pages import _set_notice

    resp = web.Response()
    _set_notice(resp, _https_config(), "not_configured")
    morsel = resp.cookies[NOTICE_COOKIE]
    assert morsel.value == "not_configured"
    assert morsel["httponly"] is True
    assert morsel["path"] == "/menu"
    assert str(morsel["max-age"]) == "120"
    assert morsel["secure"] is True
    assert morsel["samesite"] == "Lax"
    assert not morsel["domain"]  # host-only: no mapped vendor host is sent it


def test_the_sign_in_token_cookie_is_strict_httponly_and_for_the_form_only() -> None:
    """kills: proxy/web/pages.py:_set_csrf — `httponly=True` → `False`; `samesite="Strict"` →
    `"None"`; `path="/login"` → `"/"`; `secure=_cookie_secure(config)` → `False`.

    The sign-in form's double-submit token: a vendor script that could read it (no HttpOnly)
    could post a sign-in with the library's own token; sent cross-site (no Strict) it stops
    protecting the form; sent to every path it travels to the vendors' mapped hosts' requests
    for nothing; without Secure it crosses plain http."""
    from proxy.web.pages import _set_csrf
    from proxy.web.session_cookie import CSRF_COOKIE

    resp = web.Response()
    _set_csrf(resp, _https_config(), "synthetic-token")
    morsel = resp.cookies[CSRF_COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/login"
    assert morsel["secure"] is True


async def test_a_notice_cookie_naming_any_other_message_says_nothing(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/web/pages.py:menu — `asked in NOTICES` → `asked in MESSAGES`.

    A vendor page on a mapped host can write `weston_notice` for the menu's path. Only the two
    starting-point notes may be shown from it untagged: a cookie naming any other message kind
    (a forged "Your PIN has expired", "card can't be used") must make the signed-in patron's
    menu say nothing, or a vendor script could put the library's own alarming words on the
    library's own page."""
    driver, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, HOST
    )
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    name = driver.config.server.cookie_name
    for forged in ("pin_expired", "not_eligible", "session_conflict"):
        menu = await driver.own(
            "GET", "/menu", headers={"Cookie": f"{name}={driver.sid}; {NOTICE_COOKIE}={forged}"}
        )
        page = html.unescape(await menu.text())
        assert menu.status == 200
        assert MESSAGES[forged].title not in page, forged
    # The genuine untagged notice is still said (the test would pass vacuously otherwise).
    menu = await driver.own(
        "GET",
        "/menu",
        headers={"Cookie": f"{name}={driver.sid}; {NOTICE_COOKIE}=not_configured"},
    )
    assert MESSAGES["not_configured"].title in html.unescape(await menu.text())


def test_a_pin_notice_carries_only_a_starting_point_note_of_its_own_kinds() -> None:
    """kills: proxy/web/pages.py:_pin_message — `start in NOTICES` → `start in MESSAGES`.

    The part of a PIN notice after its tag (why the starting point was not opened) is not
    covered by the tag: only the two starting-point notes may come from it. With any message
    kind taken there, a notice whose tag holds could carry the library's words of another case
    ("Your PIN has expired", "card can't be used") beside the PIN warning."""
    from proxy.web.pages import _pin_message, _pin_tag

    session: Any = SimpleNamespace(id="synthetic-session-id")
    tag = _pin_tag(session.id, "pin_expiring:7200")
    said = _pin_message(f"pin_expiring:7200:{tag}:not_configured", session, "Call the desk.")
    assert said is not None and said[1] == MESSAGES["not_configured"]
    for other in ("pin_expired", "not_eligible", "session_conflict"):
        said = _pin_message(f"pin_expiring:7200:{tag}:{other}", session, "Call the desk.")
        assert said is not None, other
        assert said[1] is None, other


async def test_a_pin_warned_sign_in_to_a_link_just_too_long_for_the_menu_goes_to_the_database(
    warned: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    """kills: proxy/web/pages.py:_redirect_to_start — `len(f"GET /menu{query} HTTP/1.1") >
    max_line` → `>= max_line + 50`.

    A patron whose PIN expires soon signs in from a long deep link. The menu would come first
    (to say so), with the link in its address; when that address would be a few bytes longer
    than the request line the proxy accepts, the patron must be sent straight to the database
    page instead: a menu address over the limit would be refused, and the patron would be left
    on an error page instead of the article asked for."""
    from urllib.parse import quote

    from proxy.limits_http import http_limits
    from proxy.web.pages import _QUERY_SAFE

    driver, _ = warned
    max_line = http_limits(driver.config).max_request_line
    base = "http://one.example.com/article?id="

    def menu_line(url: str) -> int:
        return len(f"GET /menu?url={quote(url, safe=_QUERY_SAFE)} HTTP/1.1")

    url = base + "a" * (max_line + 10 - menu_line(base))
    assert menu_line(url) == max_line + 10
    csrf, _ = await driver.login_form()
    # A browser reads a Location this long; aiohttp's client needs its line limits raised.
    async with aiohttp.ClientSession(max_line_size=65536, max_field_size=65536) as browser:
        r = await browser.post(
            f"http://127.0.0.1:{driver.port}/login",
            data={"username": SOON[0], "password": SOON[1], "url": url, "csrf": csrf},
            headers={"Host": driver.public, "Cookie": f"weston_csrf={csrf}"},
            allow_redirects=False,
        )
        assert r.status == 303
        location = r.headers["Location"]
    assert "/menu" not in location, location[:80]
    assert location.endswith("/article?id=" + "a" * (len(url) - len(base)))
    assert driver.mapped("one.example.com") in location


async def test_a_sign_in_post_with_no_token_at_all_is_refused(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/web/pages.py:login_submit — `not cookie_token or hmac.compare_digest(...)` →
    `hmac.compare_digest(...)` (the empty-cookie check dropped).

    A post with neither the sign-in token cookie nor the form's token field (a page somewhere
    else posting card and PIN, from a client that sends no Origin or fetch metadata) must not
    sign anyone in: the empty token is not a token. It gets the "Please try again" page (400)
    and no session cookie; the directory is not asked."""
    driver, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, HOST
    )
    r = await driver.client.post(
        "/login",
        data={"username": CANARY.uid, "password": CANARY.password, "url": "", "csrf": ""},
        headers={"Host": driver.public},
        allow_redirects=False,
    )
    assert r.status == MESSAGES["csrf"].status == 400
    assert driver.config.server.cookie_name not in r.cookies
    assert MESSAGES["csrf"].title in html.unescape(await r.text())


def test_a_conflict_on_a_mapped_host_deletes_that_hosts_own_domain_cookie() -> None:
    """kills: proxy/web/session_cookie.py:clear_copies — `if here and here not in domains` →
    `if False`.

    A vendor page's script on a mapped host can set `weston_session` with `Domain=` its own host
    (cookie tossing). That copy is neither host-only nor the proxy's host's, so only a deletion
    naming that host as Domain removes it; without it the browser keeps sending two session
    cookies there, and the patron keeps getting the "two sessions" page on that database."""
    from aiohttp.test_utils import make_mocked_request

    from proxy.web.session_cookie import clear_copies

    mapped = "www-vendor-one-test.proxy.westonlibrary.org"
    config: Any = SimpleNamespace(
        server=SimpleNamespace(cookie_name="weston_session"),
        public=("https", "proxy.westonlibrary.org", None),
    )
    request = make_mocked_request("GET", "/search", headers={"Host": mapped})
    resp = web.Response()
    clear_copies(resp, request, config)
    sent = resp.headers.getall("Set-Cookie")
    assert (
        f"weston_session=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Domain={mapped}; Path=/"
        in sent
    )
    assert any("Domain=proxy.westonlibrary.org; Path=/search" in c for c in sent)
    assert any(c.endswith("GMT; Path=/search") for c in sent)  # the host-only copy


def test_cookie_copies_are_deleted_up_to_the_registrable_domain_and_no_further() -> None:
    """kills: proxy/web/session_cookie.py:parent_domains — `break` → `pass` (past the
    registrable domain).

    The domains a tossed session cookie can have been set for are the host and its parents up
    to `westonlibrary.org`; a deletion for `org` (a public suffix no browser lets a page set a
    cookie for) is a wasted header on every path of a two-sessions answer, and such answers
    already carry dozens of Set-Cookie lines."""
    from proxy.web.session_cookie import parent_domains

    assert parent_domains("www-x-com.proxy.westonlibrary.org") == [
        "www-x-com.proxy.westonlibrary.org",
        "proxy.westonlibrary.org",
        "westonlibrary.org",
    ]


def test_a_cookie_tossed_for_any_folder_of_a_deep_path_is_deleted() -> None:
    """kills: proxy/web/session_cookie.py:_paths — `[1 : MAX_PATH_DEPTH + 1]` → `[1:3]`.

    A vendor script can set its session cookie with `Path=` any folder of the page it is on.
    The two-sessions answer must delete a copy at every folder of the request's path (within
    MAX_PATH_DEPTH), or the tossed copy at a deeper folder survives and the patron is stuck on
    the conflict page there."""
    from aiohttp.test_utils import make_mocked_request

    from proxy.web.session_cookie import MAX_PATH_DEPTH, _paths, clear_copies

    assert _paths("/a/b/c/d/e?q=1") == [
        "/", "/a", "/a/", "/a/b", "/a/b/", "/a/b/c", "/a/b/c/", "/a/b/c/d", "/a/b/c/d/", "/a/b/c/d/e",
    ]  # fmt: skip
    deep = "".join(f"/{i}" for i in range(MAX_PATH_DEPTH + 5))
    prefixes = _paths(deep)
    assert "".join(f"/{i}" for i in range(MAX_PATH_DEPTH)) + "/" in prefixes
    config: Any = SimpleNamespace(
        server=SimpleNamespace(cookie_name="weston_session"),
        public=("https", "proxy.westonlibrary.org", None),
    )
    resp = web.Response()
    request = make_mocked_request("GET", "/a/b/c/d/e", headers={"Host": "proxy.westonlibrary.org"})
    clear_copies(resp, request, config)
    assert any(c.endswith("; Path=/a/b/c/") for c in resp.headers.getall("Set-Cookie"))


def test_an_empty_session_cookie_beside_the_patrons_is_not_a_second_session() -> None:
    """kills: proxy/web/session_cookie.py:ids_in — `if value and value not in ids` →
    `if value not in ids`.

    A page script can add an empty `weston_session=` (or a bare `weston_session`) for another
    path. It names no session: counted as a second one it would put the patron's every request
    on the "two sessions" page and end the patron's session, a sign-out any vendor page could
    force."""
    from proxy.web.session_cookie import ids_in

    assert ids_in("weston_session=; a=1; weston_session=abc", "weston_session") == ["abc"]
    assert ids_in('weston_session=abc; weston_session=""; weston_session', "weston_session") == [
        "abc"
    ]


def test_the_privacy_page_tells_which_device_permissions_a_vendor_may_ask_for(
    tmp_path: Path,
) -> None:
    """kills: proxy/web/disclosure.py:vendor_disclosure — `DISCLOSURES.get(f"feature_{f}", f)`
    → `f` (and the whole `if v.permissions:` caveat dropped).

    A vendor allowed to ask for the patron's location or camera reaches the patron's device
    beyond the proxy: the privacy page must say so, in words a patron reads ("location,
    camera"), not the policy tokens ("geolocation")."""
    import dataclasses

    from proxy.web.disclosure import vendor_disclosure
    from proxy.web.messages import DISCLOSURES
    from tests.test_disclosures import _fixture_config

    config = _fixture_config(tmp_path)
    v = dataclasses.replace(config.vendor("good"), permissions=("geolocation", "camera"))
    row = vendor_disclosure("Sent: X.", v, config)
    assert row == "Sent: X. " + DISCLOSURES["permissions"].format(features="location, camera")
    assert "geolocation" not in row


async def test_a_sign_in_post_without_a_length_is_a_bad_request_not_an_error(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/web/pages.py:login_submit — `request.content_length is None or
    request.content_length > MAX_LOGIN_BODY` → `request.content_length > MAX_LOGIN_BODY`.

    A sign-in post sent in chunks, without Content-Length (a script, a client that streams its
    body), is the client's mistake: the "bad request" page (400) that says so, not an internal
    error (500) that has IT staff looking for a bug, and nobody is signed in."""
    driver, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, HOST
    )
    csrf, _ = await driver.login_form()
    body = f"username={CANARY.uid}&password={CANARY.password}&url=&csrf={csrf}".encode()

    async def chunks() -> Any:
        yield body

    r = await driver.client.post(
        "/login",
        data=chunks(),
        headers={
            "Host": driver.public,
            "Content-Type": "application/x-www-form-urlencoded",
        },
        allow_redirects=False,
    )
    assert r.status == 400, r.status
    assert driver.config.server.cookie_name not in r.cookies


async def test_sign_in_again_shows_the_form_to_a_signed_in_patron(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/web/pages.py:login_form — `session is not None and AGAIN not in
    request.query` → `session is not None and True`.

    After a reload changed the rules a patron's databases were decided under, the menu's "Sign
    in again" link is `/login?again=1`. It must show the sign-in form though the patron is
    signed in; sent on to the menu instead, the patron could never sign in again and would keep
    the databases of the old rules hidden. A plain `/login` still goes straight on."""
    driver, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, HOST
    )
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    r = await driver.own("GET", "/login?again=1")
    assert r.status == 200
    assert 'name="csrf"' in await r.text()
    plain = await driver.own("GET", "/login")
    assert plain.status in (302, 303) and plain.headers["Location"].endswith("/menu")


def test_a_navigation_to_a_vendor_host_with_a_trailing_dot_names_the_vendor_host() -> None:
    """kills: proxy/navigation.py:leaves_for — `host.lower().rstrip(".")` → `host.lower()`.

    `www.vendor.com.` (the fully qualified spelling) is the same site to the browser, which
    connects to it from the patron's own address. A redirect or Refresh spelt that way must be
    found to leave for the vendor host as configured (no trailing dot), so the proxy maps it;
    with the dot kept, no configured host matches and the patron's browser goes to the vendor
    directly, showing it the patron's IP address (P3)."""
    from proxy.navigation import to_vendor_host

    assert to_vendor_host("http:\\\\One.Example.COM.\\path?q=1") == ("one.example.com", "/path?q=1")
    assert to_vendor_host("//one.example.com.:8443/x") == ("one.example.com", "/x")


async def test_counting_as_use_needs_the_sessions_token(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/web/pages.py:session_time — `if not hmac.compare_digest(sent, csrf)` →
    `if False and not hmac.compare_digest(...)`.

    POST /session ("I'm still here", from the menu's time-out warning) extends the patron's
    session. Vendor pages are same-site with the proxy: without the session's own token a
    vendor script could post it every few minutes and keep a patron signed in at a shared
    computer long after they walked away. A post without the right token is refused (403)."""
    driver, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, HOST
    )
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    for sent in ({}, {"X-CSRF-Token": "not-the-token"}):
        r = await driver.own("POST", "/session", headers=sent)
        assert r.status == 403, sent
        assert (await r.json())["error"] == "csrf"


async def test_a_card_that_cannot_be_used_is_forbidden_not_a_wrong_pin(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/web/messages.py:MESSAGES["not_eligible"] — status `403` → `401`.

    An expired card with the right PIN: the answer is 403 (the card is recognised and may not
    use remote access; ask the library), not 401 with a sign-in challenge, which tells a
    browser and a password manager that the card number or PIN was wrong."""
    from tests.canary import EXPIRED

    driver, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, HOST
    )
    r = await driver.login(EXPIRED.uid, EXPIRED.password)
    assert r.status == 403
    assert "WWW-Authenticate" not in r.headers
    assert MESSAGES["not_eligible"].title in html.unescape(await r.text())
