"""From a further mutation sweep (2 December 2026) of the adapters: each test kills one mutant that
the rest of the suite let through (17 of 33 survived, 4 of them equivalent: 7 of 17 in
proxy/vendors/shared_login.py, 3 of 6 in proxy/vendors/assertion.py, 0 of 1 in
proxy/vendors/ip.py, 2 of 2 in proxy/vendors/base.py, 5 of 7 in proxy/preflight.py; each test
here failed with its mutant and passes without). Its docstring names the mutant and the
behaviour it proves: what a vendor learns of a patron (one assertion, with the right audience
and a pseudonym per patron), how the library's shared account is used and held off, and which
CORS preflights the proxy allows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from proxy.errors import VendorAccountRefused
from proxy.hosts import HostMap
from proxy.preflight import answer_preflight
from proxy.vendors.shared_login import SharedLoginAdapter
from tests.canary import CANARY, WREN
from tests.harness import RecordingVendor, ldap_directory, vendor_toml, write_config
from tests.test_shared_login_refusals import (
    HOST,
    REFUSED_ROUTES,
    needs_account,
    shared_login_proxy,
)
from tests.test_shared_login_relay import HOST as RELAY_HOST
from tests.test_shared_login_relay import _setup, _shared_form_extra

# ------------------------------------------------------------------ the library account held off


def _bare_adapter(vendor_id: str = "rv") -> SharedLoginAdapter:
    """A form shared-login adapter without a credential or an upstream (the parts under test
    need neither)."""
    adapter = object.__new__(SharedLoginAdapter)
    adapter.vendor = SimpleNamespace(  # type: ignore[assignment]
        id=vendor_id, shared_login=SimpleNamespace(method="form")
    )
    adapter._logins = {}
    adapter._refused_until = 0.0
    return adapter


def test_retry_after_never_sends_the_patron_back_before_the_hold_off_ends() -> None:
    """kills: proxy/vendors/shared_login.py:_refusal — `left = math.ceil(...)` → `left = int(...)`.

    Retry-After is whole seconds. Rounded down, it tells a patron (or a client that honours it)
    to come back a fraction of a second before the hold-off ends: the retry meets the hold-off
    again and gets a second refusal page. Rounded up, the retry comes after the proxy tries
    the library's account again."""
    adapter = _bare_adapter()
    adapter._refused_until = time.monotonic() + 599.5
    assert adapter._refusal().retry_after_s == 600
    adapter._refused_until = time.monotonic() + 1.5
    assert adapter._refusal().retry_after_s == 2


async def test_a_refused_account_is_held_off_for_ten_minutes(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/shared_login.py — `REFUSAL_HOLD_OFF_S = 600.0` →
    `REFUSAL_HOLD_OFF_S = 60.0`.

    After the vendor refuses the library's account, no login is tried for ten minutes: account
    lockout policies commonly count 3 to 5 failures over 15 to 30 minutes, so one attempt a
    minute (from each of a few replicas) would lock the account and every patron out. The
    patron's refusal page says so in Retry-After."""
    driver, _vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, REFUSED_ROUTES
    )
    r = await driver.get_vendor(HOST, "/p")
    await r.read()
    assert r.status == 503
    assert 590 < int(r.headers["Retry-After"]) <= 600, r.headers["Retry-After"]


async def test_a_login_answered_with_a_redirect_signs_in_when_no_success_text_is_set(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/shared_login.py:_login — `ok = resp.status < 400 and …` →
    `ok = resp.status < 300 and …`.

    Most login forms answer a login that worked with a redirect (303 to the start page) and
    the session cookie. Without a `success_text` to look for, that answer is a login that
    worked: the patron gets the database, and no refusal holds the library's account off for
    ten minutes for every patron."""
    vendor: RecordingVendor = await vendor_factory(RELAY_HOST)

    async def login(request: web.Request) -> web.StreamResponse:
        await request.post()
        resp = web.Response(status=303, headers={"Location": "/start"})
        resp.set_cookie("vsess", "redirected-session", path="/")
        return resp

    vendor.routes.update({"/account/login": login, "/p": needs_account})
    driver = await _setup(
        tmp_path,
        port,
        running_slapd,
        vendor,
        proxy_factory,
        auth="shared-login",
        extra=_shared_form_extra(success_text=""),
    )
    r = await driver.get_vendor(RELAY_HOST, "/p")
    assert (r.status, await r.text()) == (200, "<p>content</p>")


# ------------------------------------------------------------------ what the session records


def _outbound(state: list[str]) -> Any:
    session = SimpleNamespace(id="sid-test", jars={}, state={"shared_login": list(state)})
    return SimpleNamespace(session=session, renewed=False, session_changed=False)


def _login_answering(ok: bool) -> Any:
    async def login(jar_before: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        return [], ok

    return login


async def test_a_renewal_names_the_vendor_once_and_a_refused_one_forgets_it() -> None:
    """kills: proxy/vendors/shared_login.py:SharedLoginAdapter.renew — `done = [d for d in …
    if d != self.vendor.id]` → `done = [d for d in …]`.

    The session records which shared-login vendors it is signed in to. A renewal that works
    names the vendor once (not once more per renewal: the session record, stored in Redis,
    would grow for as long as the patron reads); one the vendor refuses takes the vendor off,
    so the session's next request tries the account again (or meets the hold-off) instead of
    going to the vendor as if signed in, where it would get the vendor's own sign-in form."""
    adapter = _bare_adapter()
    adapter._login = _login_answering(True)  # type: ignore[method-assign]
    out = _outbound(["other", "rv"])
    await adapter.renew(out)
    assert out.session.state["shared_login"] == ["other", "rv"]

    refused = _bare_adapter()
    refused._login = _login_answering(False)  # type: ignore[method-assign]
    out = _outbound(["other", "rv"])
    with pytest.raises(VendorAccountRefused):
        await refused.renew(out)
    assert out.session.state["shared_login"] == ["other"]


# ------------------------------------------------------------------ what an assertion vendor gets

RANGE_HOST = "www.range-review.test"


async def test_a_range_request_asked_again_whole_carries_one_assertion(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/assertion.py:AssertionAdapter.authorize —
    `out.headers[self.vendor.assertion_header] = token` → `out.headers.add(...)`.

    A Range request whose 206 answer is a page the proxy rewrites is sent to the vendor again
    for the whole page, through the adapter once more. The vendor must get one assertion, as
    on any request: two copies of the header are a request many vendors reject (or read the
    wrong one of), and the patron gets an error instead of the page."""
    vendor: RecordingVendor = await vendor_factory(RANGE_HOST)
    full = b"<!doctype html><p>" + b"x" * 300 + b"</p>"

    async def export(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return web.Response(body=full, content_type="text/html")
        return web.Response(
            status=206,
            body=full[:100],
            headers={"Content-Type": "text/html", "Content-Range": f"bytes 0-99/{len(full)}"},
        )

    vendor.routes["/export.html"] = export
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"rr": vendor_toml("rr", vendor)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    r = await driver.get_vendor(RANGE_HOST, "/export.html", headers={"Range": "bytes=0-99"})
    assert (r.status, await r.read()) == (200, full)
    sent = [r for r in vendor.requests if r.path_qs == "/export.html"]
    assert len(sent) == 2, sent  # the range, then the whole page
    for req in sent:
        copies = [v for k, v in req.headers if k.lower() == "x-patron-assertion"]
        assert len(copies) == 1, req.headers


async def test_an_assertion_names_the_audience_the_vendor_configured(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/assertion.py:AssertionAdapter.authorize — `audience=self.vendor.aud`
    → `audience=self.vendor.id`.

    A vendor that gave the library its own audience (`audience`, often its SAML entity ID or
    a URL) verifies the assertion's `aud` against it: an assertion naming the proxy's short
    vendor id instead is refused, and every patron is turned away."""
    vendor: RecordingVendor = await vendor_factory(RANGE_HOST)
    vendor.routes["/p"] = needs_account
    audience = "https://sp.range-review.test/shibboleth"
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"rr": vendor_toml("rr", vendor, extra=f'audience = "{audience}"\n')},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    await (await driver.get_vendor(RANGE_HOST, "/p")).read()
    tokens = [
        v for req in vendor.requests for k, v in req.headers if k.lower() == "x-patron-assertion"
    ]
    assert tokens, vendor.requests
    for token in tokens:
        assert jwt.decode(token, options={"verify_signature": False})["aud"] == audience


async def test_the_pairwise_pseudonym_tells_two_patrons_apart(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/assertion.py:AssertionAdapter.authorize —
    `patron_key=out.session.patron_key` → `patron_key=""`.

    Where the contract permits a pseudonym, the vendor gets one per patron (stable across the
    patron's sessions, so saved searches and lists follow them): two patrons must get two
    different `sub` values. From a key that is not the patron's, every patron of the library
    shares one `sub`, and each sees the others' saved lists at the vendor."""
    vendor: RecordingVendor = await vendor_factory(RANGE_HOST)
    extra = (
        'release = "pseudonymous"\n\n[contract]\npermits_pseudonymous_id = true\n'
        "expires = 2099-12-31\n"
    )
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"rr": vendor_toml("rr", vendor, extra=extra)},
    )
    driver = await proxy_factory(cfg)
    subs: dict[str, set[str]] = {}
    for patron in (CANARY, WREN, CANARY):
        assert (await driver.login(patron.uid, patron.password)).status == 303
        await (await driver.get_vendor(RANGE_HOST, "/p")).read()
        (token,) = [v for k, v in vendor.requests[-1].headers if k.lower() == "x-patron-assertion"]
        sub = jwt.decode(token, options={"verify_signature": False})["sub"]
        subs.setdefault(patron.uid, set()).add(sub)
    assert len(subs[CANARY.uid]) == 1 and len(subs[WREN.uid]) == 1, subs
    assert subs[CANARY.uid] != subs[WREN.uid], subs


async def test_an_assertion_vendors_page_is_asked_for_once(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/vendors/base.py:VendorAdapter.vendor_session_expired — `return False` →
    `return True`.

    Only a shared-login vendor has a session of its own that can end. An assertion (or IP)
    vendor's answer, even a 401, is never taken for an ended vendor session: the patron's
    request reaches the vendor once, not twice (twice the use counted by the vendor, twice the
    load, and a second copy of the patron's request in its logs)."""
    vendor: RecordingVendor = await vendor_factory(RANGE_HOST)
    vendor.routes["/p"] = needs_account  # 401 and a sign-in form: no vsess cookie here
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"rr": vendor_toml("rr", vendor)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    r = await driver.get_vendor(RANGE_HOST, "/p")
    await r.read()
    assert r.status == 401
    assert [req.path_qs for req in vendor.requests] == ["/p"]


# ------------------------------------------------------------------ a login shared by a page


async def test_a_request_that_went_without_a_fresh_logins_cookies_takes_them() -> None:
    """kills: proxy/vendors/shared_login.py — `LOGIN_REUSE_S = 10.0` → `LOGIN_REUSE_S = 0.0`.

    The requests of one page arrive together. One signs in with the library's account; another,
    whose copy of the session was read before that login's cookies were saved, is turned away
    by the vendor a moment later. It takes the finished login's cookies instead of posting the
    library's credential once more (a vendor may lock an account that signs in many times a
    second)."""
    adapter = _bare_adapter()
    fresh = {"name": "vsess", "value": "fresh", "domain": "www.rv.test", "path": "/"}
    calls = 0

    async def login(jar_before: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        nonlocal calls
        calls += 1
        return [fresh], True

    adapter._login = login  # type: ignore[method-assign]
    await adapter.renew(_outbound([]))
    await asyncio.sleep(0.05)  # the other request of the page, a moment later
    late = _outbound([])  # its session copy: no vendor cookies yet
    await adapter.renew(late)
    assert calls == 1
    assert late.session.jars["rv"] == [fresh]


# ------------------------------------------------------------------ CORS preflights

WWW_ORIGIN = "https://www-a--db-test.proxy.lib.org"
# An HTTPS proxy mapping vendor a's two hosts (www calls api) and vendor b's one. Built here, not
# imported from tests/test_shield_mutants.py: importing that module brings in test files that
# do not pass `mypy --strict`.
HOSTS = HostMap.build(
    public_scheme="https",
    public_host="proxy.lib.org",
    public_port=None,
    vendor_hosts=[("a", ["www.a-db.test", "api.a-db.test"]), ("b", ["www.b-db.test"])],
    never_proxy=[],
)


def _asking(origin: str, **asked: str) -> web.Response:
    """The proxy's answer to a preflight from `origin` to vendor a's API host."""
    headers = {
        "Host": "api-a--db-test.proxy.lib.org",
        "Origin": origin,
        "Access-Control-Request-Method": "PUT",
        **{f"Access-Control-Request-{k.title()}": v for k, v in asked.items()},
    }
    request = make_mocked_request("OPTIONS", "/api/save", headers=headers)
    return answer_preflight(request, HOSTS, "api.a-db.test")


def _cors(resp: web.Response) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.lower().startswith("access-control-")}


def test_a_preflight_asking_for_no_headers_is_allowed_none() -> None:
    """kills: proxy/preflight.py:answer_preflight — `if asked and _HEADER_LIST.fullmatch(asked)`
    → `if _HEADER_LIST.fullmatch(asked)`.

    A preflight for a PUT that adds no header of its own names none. The answer then allows no
    header (no Access-Control-Allow-Headers at all), not an empty list the proxy made up."""
    resp = _asking(WWW_ORIGIN)
    assert resp.headers["Access-Control-Allow-Origin"] == WWW_ORIGIN
    assert "Access-Control-Allow-Headers" not in resp.headers


def test_a_header_list_with_spaces_after_its_commas_is_allowed() -> None:
    """kills: proxy/preflight.py — `_HEADER_LIST` without the space in its character class.

    RFC 9110's list syntax (5.6.1) allows a space after each comma, and a client may write the
    list as `content-type, x-requested-with`: refusing that spelling would block the vendor's own
    credentialed API calls between its hosts."""
    asked = "content-type, x-requested-with"
    resp = _asking(WWW_ORIGIN, headers=asked)
    assert resp.headers.get("Access-Control-Allow-Headers") == asked


def test_a_preflight_whose_origin_is_no_url_is_refused_not_a_server_error() -> None:
    """kills: proxy/preflight.py:_same_vendor — `except ValueError: return False` → `except
    TypeError: return False`.

    An Origin that is no URL at all (a broken IPv6 literal, `http://[::1`) is sent by no browser
    but by anyone probing the proxy. The answer is the refusal (a 204 without CORS headers), not
    an exception the proxy turns into a 500 and a logged error per probe."""
    for origin in ("http://[::1", "https://www-a--db-test.proxy.lib.org]"):
        assert _cors(_asking(origin)) == {}, origin


def test_an_origin_in_capitals_is_the_same_origin() -> None:
    """kills: proxy/preflight.py:_same_vendor — `!= origin.lower()` → `!= origin`.

    Scheme and host are case-insensitive (RFC 3986): an Origin spelled with capitals names the
    vendor's own mapped host, and its calls to the API host are allowed like the lower-case
    spelling's, the answer naming the origin as it was sent."""
    origin = "HTTPS://WWW-A--DB-TEST.proxy.lib.org"
    assert _asking(origin).headers.get("Access-Control-Allow-Origin") == origin
