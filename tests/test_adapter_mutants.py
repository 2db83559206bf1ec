"""From a mutation sweep of the vendor adapters (proxy/vendors/): each test here kills a mutant that
the rest of the suite let live. Its docstring names the mutant and the behaviour it proves.

Unit-level where the behaviour is local to an adapter; otherwise end to end through the real proxy
(real slapd, the canary patron, a recording aiohttp vendor on loopback).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
from aiohttp import web
from yarl import URL

from proxy.vendors import shared_login
from proxy.vendors.referer import _same_page
from proxy.vendors.shared_login import SharedLoginAdapter, _Login
from tests.canary import CANARY
from tests.harness import ldap_directory, vendor_toml, write_config, write_secret
from tests.test_shared_login_refusals import (
    HOST,
    REFUSED_ROUTES,
    good_login,
    shared_login_proxy,
)


def _done_login(jar_after: list[dict[str, Any]], ok: bool, before: list[dict[str, Any]]) -> _Login:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[tuple[list[dict[str, Any]], bool]] = loop.create_future()
    fut.set_result((jar_after, ok))
    return _Login(fut, before)


def _cookie(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value, "domain": HOST, "path": "/"}


def _logins(vendor: Any) -> int:
    return len([r for r in vendor.requests if r.path_qs == "/account/login"])


# ------------------------------------------------------------------ which requests take a login


async def test_a_refused_login_that_set_cookies_serves_no_other_request() -> None:
    """kills: proxy/vendors/shared_login.py:_Login.serves — `return ok and any(...)` →
    `return any(...)`.

    A vendor that refuses the library's account may still set cookies on its refusal page (a
    tracking or pre-login session cookie). Such a finished, refused login must never be handed to
    another request of the session as if it had signed in: that request decides afresh (the
    hold-off, or a new login once the account works again), and it never carries the refusal's
    cookies in the belief that it holds the library's account."""
    refused = _done_login([_cookie("prelogin", "x1")], ok=False, before=[])
    assert refused.serves([]) is False


async def test_a_request_turned_away_with_the_fresh_cookie_is_not_served_by_that_login() -> None:
    """kills: proxy/vendors/shared_login.py:_Login.serves — `brought = [c for c in jar_after if
    c not in self.before]` → `brought = list(jar_after)`.

    Only the cookies the login *brought* say whether a request went without them. A request that
    carried the fresh vendor session cookie and was still turned away (the vendor dropped it) needs
    a login of its own, even when an older cookie of the jar (a display preference) was meanwhile
    deleted by the vendor: otherwise it would be resent with the dead cookie and the patron would
    get the vendor's own sign-in page instead of the database."""
    pref = _cookie("pref", "compact")
    fresh = _cookie("vsess", "fresh-token")
    login = _done_login([pref, fresh], ok=True, before=[pref])
    assert login.serves([fresh]) is False  # had the fresh cookie: needs a new login
    assert login.serves([pref]) is True  # went without it: takes it


async def test_a_login_still_running_serves_every_request_of_the_session() -> None:
    """(Guard for the two tests above: a login under way is shared, whatever the jar.)"""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    assert _Login(fut, []).serves([_cookie("vsess", "t")]) is True
    fut.cancel()


# ------------------------------------------------------------------ the refusal page's Retry-After


def test_retry_after_is_at_least_one_second_even_when_the_hold_off_was_just_ended() -> None:
    """kills: proxy/vendors/shared_login.py:_refusal — `retry_after_s=max(1, left)` →
    `retry_after_s=left`.

    A refusal can be raised after another session's login that worked has already ended the
    hold-off (`_refused_until = 0`, logins overlapping). The patron's page must still carry a
    positive Retry-After (RFC 9110: a non-negative delay; 0 or a negative number makes browsers
    and clients retry at once or reject the header)."""
    adapter = object.__new__(SharedLoginAdapter)
    adapter.vendor = SimpleNamespace(id="rv")  # type: ignore[assignment]
    adapter._refused_until = 0.0
    assert adapter._refusal().retry_after_s >= 1
    adapter._refused_until = time.monotonic() + 0.2
    assert adapter._refusal().retry_after_s == 1


# ------------------------------------------------------------------ how a login answer is read


async def test_a_login_url_failing_with_500_is_a_vendor_failure_not_a_refusal_of_the_account(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/shared_login.py:_login — `if resp.status >= 500` →
    `if resp.status > 500`.

    A vendor whose login URL answers 500 (a restart, an overload) has not refused the library's
    account. The patron gets the vendor-failure page (502), no hold-off starts, and the next
    request signs in and gets the database. With the mutant a plain 500 counts as a refusal: the
    library's account is held off for REFUSAL_HOLD_OFF_S for every patron."""
    calls = 0

    async def login(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            await request.post()
            return web.Response(status=500, text="<p>Internal error</p>", content_type="text/html")
        return await good_login(request)

    routes = {**REFUSED_ROUTES, "/account/login": login}
    driver, vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, routes
    )
    r = await driver.get_vendor(HOST, "/p")
    await r.read()
    assert r.status == 502, r.status
    assert "Retry-After" not in r.headers
    r = await driver.get_vendor(HOST, "/p")
    assert (r.status, await r.text()) == (200, "<p>content</p>")
    assert _logins(vendor) == 2


async def test_a_login_answered_400_is_a_refusal_even_with_the_success_text(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/shared_login.py:_login — `ok = resp.status < 400 and ...` →
    `ok = resp.status <= 400 and ...`.

    A login answered with a client error (400: the vendor's form changed and our fields are
    wrong) has not signed in, whatever words its page holds (a 400 page may well repeat "Signed
    in" in its help text). The patron gets the refusal page, not the vendor's sign-in form."""

    async def login(request: web.Request) -> web.StreamResponse:
        await request.post()
        resp = web.Response(
            status=400,
            text="<p>Bad request. Signed in users: see help.</p>",
            content_type="text/html",
        )
        resp.set_cookie("vsess", "not-really", path="/")
        return resp

    routes = {**REFUSED_ROUTES, "/account/login": login}
    driver, vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, routes
    )
    r = await driver.get_vendor(HOST, "/p")
    await r.read()
    assert r.status == 503, r.status
    assert _logins(vendor) == 1


async def test_a_login_answered_200_without_the_success_text_is_a_refusal(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/shared_login.py:_login — `(not sl.success_text or
    sl.success_text.encode() in body)` → `True`.

    Many vendors answer a wrong password with 200 and a page saying so. When the configured
    `success_text` is missing from the login answer, the account was refused: the patron gets the
    proxy's refusal page (503), never the vendor's own sign-in form with a password field that
    invites the patron's card and PIN, and the account is not posted again on the next request."""

    async def login(request: web.Request) -> web.StreamResponse:
        await request.post()
        return web.Response(text="<p>Login failed</p>", content_type="text/html")

    routes = {**REFUSED_ROUTES, "/account/login": login}
    driver, vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, routes
    )
    r = await driver.get_vendor(HOST, "/p")
    body = await r.text()
    assert r.status == 503, (r.status, body)
    assert "type=password" not in body
    await (await driver.get_vendor(HOST, "/p")).read()
    assert _logins(vendor) == 1


# ------------------------------------------------------------------ one login per request, hold-off


async def test_a_request_already_signed_in_for_is_not_signed_in_for_again(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/shared_login.py:vendor_session_expired — `if sl.method != "form" or
    out.renewed` → `if sl.method != "form"`.

    One login per patron request: when the request's own first login worked and the vendor still
    answers "session required" (it ignores the cookie: a misconfigured account), the proxy does not
    post the library's credential a second time for that same request. Every retry would otherwise
    double the logins a vendor counts towards locking the library's account."""

    async def login(request: web.Request) -> web.StreamResponse:
        await request.post()
        resp = web.Response(text="<p>Signed in</p>", content_type="text/html")
        resp.set_cookie("vsess", f"t{_logins(vendor)}", path="/")
        return resp

    async def always_expired(request: web.Request) -> web.StreamResponse:
        return web.Response(status=401, text="session required")

    routes = {**REFUSED_ROUTES, "/account/login": login, "/p": always_expired}
    driver, vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, routes
    )
    r = await driver.get_vendor(HOST, "/p")
    await r.read()
    assert _logins(vendor) == 1


async def test_a_login_that_works_ends_the_hold_off_for_every_session(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/shared_login.py:_login — `if ok: self._refused_until = 0.0` →
    `if ok: pass`.

    Logins of two sessions overlap: one is refused (the hold-off starts) while the other, under
    way, works. The account plainly works, so the hold-off ends with it: a third patron's session
    signs in and gets the database, instead of REFUSAL_HOLD_OFF_S of refusal pages for everyone."""
    from proxy.app import SERVICES

    adapter_box: list[Any] = []

    async def login(request: web.Request) -> web.StreamResponse:
        if not adapter_box:  # the first login: another session's refusal lands meanwhile
            adapter = driver.client.server.app[SERVICES].upstream.adapters["rv"]  # type: ignore[attr-defined]
            adapter._refused_until = time.monotonic() + shared_login.REFUSAL_HOLD_OFF_S
            adapter_box.append(adapter)
        return await good_login(request)

    routes = {**REFUSED_ROUTES, "/account/login": login}
    driver, vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, routes
    )
    r = await driver.get_vendor(HOST, "/p")
    assert (r.status, await r.text()) == (200, "<p>content</p>")
    first = driver.session_id()
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert driver.session_id() != first
    r = await driver.get_vendor(HOST, "/p")
    assert (r.status, await r.text()) == (200, "<p>content</p>")
    assert _logins(vendor) == 2


# ------------------------------------------------------------------ assertions, per vendor


async def test_two_assertion_vendors_in_one_session_each_get_their_own_assertion(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/assertion.py:AssertionAdapter.authorize — `vendor_id=self.vendor.id`
    → `vendor_id="all"`.

    One patron visits two assertion vendors in one session. Each receives an assertion made for
    it (its own `aud`, so neither can replay what it received at the other) and, where the
    contracts permit a pseudonym, a different pairwise `sub` (P4: the two vendors cannot link the
    patron by comparing notes). Assertions are cached per session; the cache must not hand
    one vendor's assertion to the next."""
    alpha = await vendor_factory("www.alpha-mut.test")
    beta = await vendor_factory("www.beta-mut.test")
    pseudo = (
        'release = "pseudonymous"\n\n[contract]\npermits_pseudonymous_id = true\n'
        "expires = 2099-12-31\n"
    )
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "alpha": vendor_toml("alpha", alpha, extra=pseudo),
            "beta": vendor_toml("beta", beta, extra=pseudo),
        },
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert (await driver.get_vendor("www.alpha-mut.test", "/")).status == 200
    assert (await driver.get_vendor("www.beta-mut.test", "/")).status == 200

    def claims(vendor: Any) -> dict[str, Any]:
        (token,) = [v for k, v in vendor.requests[-1].headers if k.lower() == "x-patron-assertion"]
        return dict(jwt.decode(token, options={"verify_signature": False}))

    to_alpha, to_beta = claims(alpha), claims(beta)
    assert (to_alpha["aud"], to_beta["aud"]) == ("alpha", "beta")
    assert to_alpha["sub"] != to_beta["sub"]


# ------------------------------------------------------------------ the secret Referer, start page only


def test_the_secret_referer_page_must_match_scheme_and_query() -> None:
    """kills: proxy/vendors/referer.py:_same_page — `a.scheme == b.scheme` → `True`, and
    `and a.raw_query_string == b.raw_query_string` → removed.

    The library's authorised Referer is its secret and goes only on the configured start page:
    not on the same path over another scheme (an `https` start URL's secret must not travel in
    clear on an `http` request), and not on the same path with another query (a deep link or a
    patron's search on the start path). Elsewhere the patron's own Referer, cut to the origin,
    stands."""
    start = URL("https://www.vendor.test:8443/start?lib=weston")
    assert _same_page(URL("https://WWW.vendor.test:8443/start/?lib=weston"), start)
    assert not _same_page(URL("http://www.vendor.test:8443/start?lib=weston"), start)
    assert not _same_page(URL("https://www.vendor.test/start?lib=weston&q=search"), start)
    assert not _same_page(URL("https://www.vendor.test/start"), start)


# ------------------------------------------------------------------ a renewal keeps the session's jar


async def test_a_renewed_vendor_login_keeps_the_patrons_other_vendor_cookies(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/shared_login.py:_login — `jar = load_jar(jar_before)` →
    `jar = load_jar([])`.

    When the vendor's session ends and the proxy signs in again for the patron, the session's
    other cookies at that vendor (the patron's display preference, a saved-results list) stay in
    the session's jar: the renewal adds the new vendor session, it does not wipe what the patron
    set up in this session."""
    valid: set[str] = set()
    n = 0

    async def login(request: web.Request) -> web.StreamResponse:
        nonlocal n
        await request.post()
        n += 1
        token = f"vendor-session-{n}"
        valid.add(token)
        resp = web.Response(text="<p>Signed in</p>", content_type="text/html")
        resp.set_cookie("vsess", token, path="/")
        return resp

    async def page(request: web.Request) -> web.StreamResponse:
        if request.cookies.get("vsess") not in valid:
            return web.Response(status=401, text="session required")
        resp = web.Response(text=f"pref={request.cookies.get('pref', 'none')}")
        if request.path == "/setpref":
            resp.set_cookie("pref", "kept", path="/")
        return resp

    routes = {"/account/login": login, "/p": page, "/setpref": page}
    driver, vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, routes
    )
    assert (await driver.get_vendor(HOST, "/setpref")).status == 200
    assert await (await driver.get_vendor(HOST, "/p")).text() == "pref=kept"
    valid.clear()  # the vendor ends its session
    r = await driver.get_vendor(HOST, "/p")
    assert (r.status, await r.text()) == (200, "pref=kept")
    assert _logins(vendor) == 2


async def test_an_old_logins_timer_does_not_drop_the_sessions_newer_login() -> None:
    """kills: proxy/vendors/shared_login.py:_drop — `if self._logins.get(key) is login` →
    `if key in self._logins`.

    A session's first login is dropped LOGIN_REUSE_S after it ends; by then the vendor may have
    ended the session and a newer login taken its place. The old login's timer must drop only the
    old login: dropping the newer one makes the page's late requests post the library's
    credential again instead of taking the login that just worked (more logins towards the
    vendor's lockout count)."""
    adapter = object.__new__(SharedLoginAdapter)
    old = _done_login([_cookie("vsess", "old")], ok=True, before=[])
    new = _done_login([_cookie("vsess", "new")], ok=True, before=[])
    adapter._logins = {"k": new}
    adapter._drop("k", old)
    assert adapter._logins == {"k": new}
    adapter._drop("k", new)
    assert adapter._logins == {}


async def test_the_basic_adapter_sets_the_library_account_never_adds_a_second_one() -> None:
    """kills: proxy/vendors/shared_login.py:SharedLoginAdapter.authorize —
    `out.headers["Authorization"] = self._basic` → `out.headers.add("Authorization", ...)`.

    Defence in depth (end to end the privacy allowlist already drops the browser's
    Authorization, so today this mutant is only observable at the adapter): whatever
    Authorization a request holds when it reaches the adapter (the patron's own card and PIN as
    HTTP Basic, were the allowlist ever to let it through), the vendor receives exactly one, the
    library account's."""
    from multidict import CIMultiDict

    from proxy.vendors.base import Outbound

    adapter = object.__new__(SharedLoginAdapter)
    adapter.vendor = SimpleNamespace(id="rv", shared_login=SimpleNamespace(method="basic"))  # type: ignore[assignment]
    adapter._basic = "Basic bGlicmFyeTphY2NvdW50"
    headers: CIMultiDict[str] = CIMultiDict({"Authorization": "Basic cGF0cm9uOnBpbg=="})
    out = Outbound(
        vendor=adapter.vendor,
        session=SimpleNamespace(state={}, jars={}),  # type: ignore[arg-type]
        method="GET",
        url=URL(f"http://{HOST}/p"),
        headers=headers,
    )
    await adapter.authorize(out)
    assert out.headers.getall("Authorization") == ["Basic bGlicmFyeTphY2NvdW50"]


async def test_a_streamed_upload_is_not_resent_after_a_vendor_session_renewal(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:Upstream.forward — `if request.method in IDEMPOTENT and (data is
    None or isinstance(data, bytes))` → `if True` (the renewal check around the adapter).

    A streamed upload (a binary body, read as it arrives) is gone once sent: when the vendor answers it
    with "session required", the patron gets that answer as it is. The proxy must not sign in
    again and resend the request with a body it no longer has (the vendor would receive an empty
    or truncated submission under the library's account)."""
    valid: set[str] = set()
    uploads: list[bytes] = []

    async def login(request: web.Request) -> web.StreamResponse:
        await request.post()
        token = f"vendor-session-{_logins(vendor)}"
        valid.add(token)
        resp = web.Response(text="<p>Signed in</p>", content_type="text/html")
        resp.set_cookie("vsess", token, path="/")
        return resp

    async def page(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.cookies.get("vsess") not in valid:
            return web.Response(status=401, text="session required")
        if request.method == "POST":
            uploads.append(body)
        return web.Response(text="ok")

    routes = {"/account/login": login, "/p": page, "/up": page}
    driver, vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, routes
    )
    assert (await driver.get_vendor(HOST, "/p")).status == 200
    valid.clear()

    # A binary upload (not a form or JSON body the proxy reads whole to unmap): streamed.
    r = await driver.get_vendor(
        HOST,
        "/up",
        method="POST",
        data=b"x" * 16384,
        headers={"Content-Type": "application/octet-stream"},
    )
    await r.read()
    assert r.status == 401
    assert _logins(vendor) == 1
    assert uploads == []


# ------------------------------------------------------------------ two shared-login vendors


async def test_each_shared_login_vendor_of_a_session_gets_its_own_login_once(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/shared_login.py:SharedLoginAdapter.authorize — `if self.vendor.id
    not in done and ...` → `if not done and ...`; and SharedLoginAdapter.renew — `done = [d for d
    in ... if d != self.vendor.id]` → `done = []`.

    A patron uses two shared-login databases in one session. Signing in at the first must not
    count as signed in at the second: the second vendor would answer with its own sign-in form
    (here a 200 page, no expiry signal), a form the patron is invited to fill with their card and
    PIN. And signing in at the second must not forget the first: the library's account would be
    posted to the first vendor again on the patron's next request there."""
    hosts = ("www.alpha-shared.test", "www.beta-shared.test")
    logins: dict[str, int] = {h: 0 for h in hosts}

    def routes(host: str) -> dict[str, Any]:
        async def login(request: web.Request) -> web.StreamResponse:
            await request.post()
            logins[host] += 1
            resp = web.Response(text="<p>Signed in</p>", content_type="text/html")
            resp.set_cookie("vsess", f"{host}-{logins[host]}", path="/")
            return resp

        async def page(request: web.Request) -> web.StreamResponse:
            if "vsess" not in request.cookies:
                return web.Response(
                    text="<form method=post><input name=card><input type=password name=pin></form>",
                    content_type="text/html",
                )
            return web.Response(text=f"content of {host}", content_type="text/html")

        return {"/account/login": login, "/p": page}

    vendors = {}
    write_secret(tmp_path / "vendors" / "secrets" / "u", "weston-library-account")
    write_secret(tmp_path / "vendors" / "secrets" / "p", "Library-Shared-Secret-5512")
    for vid, host in zip(("alpha", "beta"), hosts, strict=True):
        v = await vendor_factory(host)
        v.routes.update(routes(host))
        extra = (
            f'start_url = "http://{host}/p"\n\n[shared_login]\nmethod = "form"\n'
            'username_file = "secrets/u"\npassword_file = "secrets/p"\n'
            f'login_url = "http://{host}/account/login"\n'
            'username_field = "acct"\npassword_field = "pw"\nsuccess_text = "Signed in"\n'
        )
        vendors[vid] = vendor_toml(vid, v, auth="shared-login", extra=extra)
    cfg = write_config(
        tmp_path, port=port, directory=ldap_directory(running_slapd, tmp_path), vendors=vendors
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    for host in (*hosts, hosts[0], hosts[1]):
        r = await driver.get_vendor(host, "/p")
        body = await r.text()
        assert (r.status, body) == (200, f"content of {host}"), body
    assert logins == {hosts[0]: 1, hosts[1]: 1}
