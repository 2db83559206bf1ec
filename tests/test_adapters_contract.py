"""One contract suite for every vendor adapter, end to end through the real proxy.

Each adapter kind (ip, assertion anonymous/pseudonymous, shared-login basic/form, referer) is driven
the same way: the canary patron signs in against real slapd, browses a recording vendor (a GET with
a query, a form POST, a redirect) while the browser sends hostile headers, and the vendor's record
is searched for anything that identifies the patron or the proxy session. Then each kind's own
positive check: the assertion verifies, the shared login is obtained and replayed, the referer goes
only where it is configured, and ip adds nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web

from proxy.privacy import REQUEST_ALLOWLIST
from tests.canary import CANARY, leaks
from tests.harness import (
    ProxyDriver,
    Recorded,
    RecordingVendor,
    ldap_directory,
    vendor_toml,
    write_config,
    write_secret,
)

HOST = "www.vendor-contract.test"
START = f"http://{HOST}/start"
SEARCH_TERM = "quokkasearchterm"
CLIENT_IP = "203.0.113.77"
FORGED = "forged-assertion-from-browser"
CUSTOM_HEADER = "X-Library-Pass"
CUSTOM_AUDIENCE = "urn:example:contract-vendor"
SECRET_REFERER = "https://westonlibrary.org/databases/r-7f3c9a"
# The library-wide account of the shared-login vendors (synthetic).
LIBRARY_USER = "weston-library-account"
LIBRARY_PASSWORD = "Library-Shared-Secret-5512"
EXPIRED_TEXT = "Please sign in again"
FORWARDING = ("forwarded", "x-forwarded", "x_forwarded", "x-real-ip", "true-client-ip", "via")

KINDS = [
    "ip",
    "assertion-anonymous",
    "assertion-pseudonymous",
    "shared-login-basic",
    "shared-login-form",
    "referer",
]


def vendor_extra(kind: str) -> tuple[str, str]:
    """(auth, extra TOML) for one adapter kind."""
    start = f'start_url = "{START}"\n'
    if kind == "ip":
        return "ip", start
    if kind == "assertion-anonymous":
        return "assertion", (
            start + f'assertion_header = "{CUSTOM_HEADER}"\naudience = "{CUSTOM_AUDIENCE}"\n'
        )
    if kind == "assertion-pseudonymous":
        return "assertion", (
            start
            + 'release = "pseudonymous"\n\n[contract]\npermits_pseudonymous_id = true\n'
            + "expires = 2099-12-31\n"
        )
    if kind == "shared-login-basic":
        return "shared-login", (
            start + '\n[shared_login]\nmethod = "basic"\n'
            'username_file = "secrets/library-user"\npassword_file = "secrets/library-password"\n'
        )
    if kind == "shared-login-form":
        return "shared-login", (
            start + '\n[shared_login]\nmethod = "form"\n'
            f'login_url = "http://{HOST}/account/login"\n'
            'username_field = "acct"\npassword_field = "pw"\nextra_fields = { lib = "weston" }\n'
            'username_file = "secrets/library-user"\npassword_file = "secrets/library-password"\n'
            f'success_text = "Signed in"\nexpired_text = "{EXPIRED_TEXT}"\nexpired_status = [401]\n'
        )
    if kind == "referer":
        return "referer", start + f'referer = "{SECRET_REFERER}"\n'
    raise AssertionError(kind)


@dataclass
class VendorSite:
    """The recording vendor's behaviour: pages, a redirect, and (form kind) an account login."""

    needs_login: bool = False
    expire_with: str = "status"  # how an ended vendor session shows: a 401, or a page of text
    tokens: set[str] = field(default_factory=set)
    logins: list[dict[str, str]] = field(default_factory=list)
    login_delay_s: float = 0.0  # how long the vendor takes to answer a login

    def routes(self) -> dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]:
        return {
            "/start": self.page,
            "/search": self.page,
            "/form": self.page,
            "/landing": self.page,
            "/old": self.redirect,
            "/account/login": self.login,
        }

    def signed_in(self, request: web.Request) -> bool:
        return not self.needs_login or request.cookies.get("vsess", "") in self.tokens

    def expired(self) -> web.Response:
        if self.expire_with == "status":
            return web.Response(status=401, text="session required")
        return web.Response(text=f"<html><p>{EXPIRED_TEXT}</p></html>", content_type="text/html")

    async def page(self, request: web.Request) -> web.StreamResponse:
        if not self.signed_in(request):
            return self.expired()
        resp = web.Response(
            text=f"<html><a href='http://{HOST}/landing'>landing</a></html>",
            content_type="text/html",
        )
        resp.set_cookie("pref", "compact-view", path="/")
        return resp

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        if not self.signed_in(request):
            return self.expired()
        raise web.HTTPFound(f"http://{HOST}/landing")

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.logins.append(form)
        await asyncio.sleep(self.login_delay_s)
        if form == {"acct": LIBRARY_USER, "pw": LIBRARY_PASSWORD, "lib": "weston"}:
            token = secrets.token_hex(12)
            self.tokens.add(token)
            resp = web.Response(text="<p>Signed in</p>", content_type="text/html")
            resp.set_cookie("vsess", token, path="/", httponly=True)
            return resp
        return web.Response(text="<p>Login failed</p>", content_type="text/html")


@dataclass
class Rig:
    kind: str
    driver: ProxyDriver
    vendor: RecordingVendor
    site: VendorSite
    seen_by_browser: list[bytes] = field(default_factory=list)

    def content_requests(self) -> list[Recorded]:
        return [r for r in self.vendor.requests if r.path_qs != "/account/login"]


async def make_rig(
    kind: str, tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> Rig:
    vendor = await vendor_factory(HOST)
    site = VendorSite(needs_login=kind == "shared-login-form")
    vendor.routes.update(site.routes())
    auth, extra = vendor_extra(kind)
    # Secret files next to the vendor file (paths there are relative to it), 0600.
    write_secret(tmp_path / "vendors" / "secrets" / "library-user", LIBRARY_USER)
    write_secret(tmp_path / "vendors" / "secrets" / "library-password", LIBRARY_PASSWORD)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"contract": vendor_toml("contract", vendor, auth=auth, extra=extra)},
    )
    return Rig(kind, await proxy_factory(cfg), vendor, site)


def hostile_headers(driver: ProxyDriver) -> dict[str, str]:
    """What a browser (or a script in a vendor page) might send that must never pass on."""
    patron_basic = base64.b64encode(f"{CANARY.uid}:{CANARY.password}".encode()).decode()
    return {
        "X-Forwarded-For": CLIENT_IP,
        "X_Forwarded_For": CLIENT_IP,
        "Forwarded": f"for={CLIENT_IP}",
        "X-Real-IP": CLIENT_IP,
        "True-Client-IP": CLIENT_IP,
        "Via": f"1.1 {CLIENT_IP}",
        "X-Patron-Assertion": FORGED,
        CUSTOM_HEADER: FORGED,
        "Authorization": f"Basic {patron_basic}",
        "Cookie": f"tracker={CANARY.email}",
        "Referer": f"http://{driver.mapped(HOST)}/start?name={CANARY.surname}",
    }


async def _keep(rig: Rig, resp: Any) -> Any:
    body = await resp.read()
    head = f"{resp.status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in resp.headers.items())
    rig.seen_by_browser.append(head.encode() + body)
    return resp


async def browse(rig: Rig) -> None:
    """Sign in as the canary, then a GET with a query, a form POST and a followed redirect."""
    d = rig.driver
    r = await d.login(CANARY.uid, CANARY.password, url=START)
    assert r.status == 303 and r.headers["Location"] == f"http://{d.mapped(HOST)}/start"
    hostile = hostile_headers(d)
    r = await _keep(rig, await d.get_vendor(HOST, "/start", headers=hostile))
    assert r.status == 200
    r = await _keep(rig, await d.get_vendor(HOST, f"/search?q={SEARCH_TERM}", headers=hostile))
    assert r.status == 200
    r = await _keep(
        rig,
        await d.get_vendor(HOST, "/form", method="POST", data={"q": SEARCH_TERM}, headers=hostile),
    )
    assert r.status == 200
    r = await _keep(rig, await d.get_vendor(HOST, "/old", headers=hostile))
    assert r.status == 302 and r.headers["Location"] == f"http://{d.mapped(HOST)}/landing"
    r = await _keep(rig, await d.get_vendor(HOST, "/landing", headers=hostile))
    assert r.status == 200


@pytest.fixture(params=KINDS)
async def rig(
    request: Any,
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> Rig:
    rig = await make_rig(
        request.param, tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    await browse(rig)
    return rig


def header_values(req: Recorded, name: str) -> list[str]:
    return [v for k, v in req.headers if k.lower() == name.lower()]


def uid_digests() -> list[bytes]:
    """The card number's digests in the spellings a vendor-side tracker would use."""
    raw = CANARY.uid.encode()
    out = []
    for algo in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "blake2b", "sha3_256"):
        digest = hashlib.new(algo, raw).digest()
        out += [
            digest.hex().encode(),
            digest.hex().upper().encode(),
            base64.b64encode(digest).rstrip(b"="),
            base64.urlsafe_b64encode(digest).rstrip(b"="),
            base64.b32encode(digest).rstrip(b"=").lower(),
        ]
    return out


# --------------------------------------------------------------------------- shared contract


async def test_canary_data_never_reaches_vendor(rig: Rig) -> None:
    """No canary value, raw or encoded or hashed, in any request line, header or body."""
    assert len(rig.content_requests()) == 5
    everything = rig.vendor.all_bytes()
    assert leaks(everything) == []
    lowered = everything.lower()
    assert [d for d in uid_digests() if d.lower() in lowered] == []


async def test_no_forwarding_headers_client_ip_or_proxy_cookie(rig: Rig) -> None:
    """P3: no forwarding header, no client address, no proxy session id or cookie name."""
    sid = rig.driver.session_id()
    assert sid
    everything = rig.vendor.all_bytes()
    assert CLIENT_IP.encode() not in everything
    assert b"127.0.0.1" not in everything
    assert sid.encode() not in everything
    assert rig.driver.config.server.cookie_name.encode() not in everything
    assert b"tracker=" not in everything
    for req in rig.vendor.requests:
        names = [k.lower() for k, _ in req.headers]
        assert [n for n in names if n.startswith(FORWARDING)] == []


async def test_browser_sent_assertion_is_dropped(rig: Rig) -> None:
    """An assertion header the browser sends never reaches the vendor, whatever the adapter."""
    assert FORGED.encode() not in rig.vendor.all_bytes()


async def test_patron_authorization_never_forwarded(rig: Rig) -> None:
    """The browser's Authorization (here the patron's card and PIN) is dropped for every adapter."""
    for req in rig.vendor.requests:
        for value in header_values(req, "Authorization"):
            assert rig.kind == "shared-login-basic"
            assert (
                value
                == "Basic "
                + base64.b64encode(f"{LIBRARY_USER}:{LIBRARY_PASSWORD}".encode()).decode()
            )


async def test_browser_never_sees_vendor_cookie_or_library_credential(rig: Rig) -> None:
    """Vendor cookies stay in the session jar; the shared account never reaches the browser."""
    seen = b"\n".join(rig.seen_by_browser)
    assert b"compact-view" not in seen and b"vsess" not in seen
    assert b"set-cookie" not in seen.lower()
    for value in (LIBRARY_USER, LIBRARY_PASSWORD):
        assert value.encode() not in seen
        assert base64.b64encode(value.encode()).rstrip(b"=") not in seen
    assert base64.b64encode(f"{LIBRARY_USER}:{LIBRARY_PASSWORD}".encode()) not in seen


async def test_logs_hold_no_canary_credential_or_search(rig: Rig, log_stream: Any) -> None:
    """P2/P5 for every adapter: no patron value, no library credential, no search term logged."""
    logs = log_stream.getvalue().encode()
    assert logs, "the proxy logged something"
    assert leaks(logs) == []
    for value in (LIBRARY_USER, LIBRARY_PASSWORD, SEARCH_TERM, SECRET_REFERER, CLIENT_IP):
        assert value.encode() not in logs


async def test_vendor_cookie_replayed_from_jar(rig: Rig) -> None:
    """A cookie the vendor set comes back on later requests, from the proxy's jar."""
    later = rig.content_requests()[1:]
    assert all("pref=compact-view" in "; ".join(header_values(r, "Cookie")) for r in later)


async def test_adapter_positive_check(rig: Rig) -> None:
    """What each kind must add, and only that."""
    checks: dict[str, Callable[[Rig], Awaitable[None]]] = {
        "ip": check_ip,
        "assertion-anonymous": check_assertion_anonymous,
        "assertion-pseudonymous": check_assertion_pseudonymous,
        "shared-login-basic": check_shared_login_basic,
        "shared-login-form": check_shared_login_form,
        "referer": check_referer,
    }
    await checks[rig.kind](rig)


# --------------------------------------------------------------------------- per-kind checks


def _headers_added_by_adapter(req: Recorded) -> set[str]:
    # What the browser may send on (the privacy allowlist), plus what every request has.
    ordinary = REQUEST_ALLOWLIST | {"host", "accept-encoding", "cookie", "referer"}
    return {k.lower() for k, _ in req.headers} - ordinary


async def check_ip(rig: Rig) -> None:
    """ip: nothing beyond the ordinary request headers, and no Referer but the cut patron one."""
    for req in rig.content_requests():
        assert _headers_added_by_adapter(req) == set(), req.headers
        assert header_values(req, "Referer") in ([], [f"http://{HOST}/"])


async def _verified_claims(rig: Rig, header: str, audience: str) -> list[dict[str, Any]]:
    jwks = await (await rig.driver.own("GET", "/.well-known/jwks.json")).json()
    out = []
    for req in rig.content_requests():
        tokens = header_values(req, header)
        assert len(tokens) == 1
        kid = jwt.get_unverified_header(tokens[0])["kid"]
        key = next(k for k in jwks["keys"] if k["kid"] == kid)
        out.append(
            jwt.decode(
                tokens[0],
                jwt.PyJWK(key).key,
                algorithms=["EdDSA"],
                audience=audience,
                issuer=f"http://{rig.driver.public}",
            )
        )
    return out


async def check_assertion_anonymous(rig: Rig) -> None:
    """Configured header name and audience; exactly the anonymous claims; no default header."""
    claims = await _verified_claims(rig, CUSTOM_HEADER, CUSTOM_AUDIENCE)
    for c in claims:
        assert set(c) == {"iss", "aud", "iat", "exp", "jti", "affiliation"}
        assert c["affiliation"] == "member@westonlibrary.org"
    for req in rig.content_requests():
        assert header_values(req, "X-Patron-Assertion") == []


async def check_assertion_pseudonymous(rig: Rig) -> None:
    """Default header, aud = vendor id, plus one stable pairwise `sub` for the whole session."""
    claims = await _verified_claims(rig, "X-Patron-Assertion", "contract")
    assert {c["sub"] for c in claims} and len({c["sub"] for c in claims}) == 1
    assert claims[0]["sub"].endswith("@westonlibrary.org")


async def check_shared_login_basic(rig: Rig) -> None:
    """Every request carries the library account as HTTP Basic; no login form is posted."""
    expected = "Basic " + base64.b64encode(f"{LIBRARY_USER}:{LIBRARY_PASSWORD}".encode()).decode()
    for req in rig.content_requests():
        assert header_values(req, "Authorization") == [expected]
    assert rig.site.logins == []


async def check_shared_login_form(rig: Rig) -> None:
    """One login with the library credential from the secret files; its cookie on every request."""
    assert rig.site.logins == [{"acct": LIBRARY_USER, "pw": LIBRARY_PASSWORD, "lib": "weston"}]
    login = next(r for r in rig.vendor.requests if r.path_qs == "/account/login")
    assert leaks(login.raw()) == []
    assert header_values(login, "Referer") == [] and header_values(login, "Cookie") == []
    (token,) = rig.site.tokens
    for req in rig.content_requests():
        assert f"vsess={token}" in "; ".join(header_values(req, "Cookie"))
        assert header_values(req, "Authorization") == []


async def check_referer(rig: Rig) -> None:
    """The configured Referer on the start URL only; elsewhere the patron's, cut to the origin."""
    for req in rig.content_requests():
        refs = header_values(req, "Referer")
        if req.path_qs == "/start":
            assert refs == [SECRET_REFERER]
        else:
            assert refs in ([], [f"http://{HOST}/"]), (req.path_qs, refs)
            assert SECRET_REFERER.encode() not in req.raw()


# --------------------------------------------------------------------------- kind-specific flows


@pytest.fixture
async def form_rig(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> Rig:
    rig = await make_rig(
        "shared-login-form", tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    await browse(rig)
    return rig


@pytest.mark.parametrize("expire_with", ["status", "text"])
async def test_shared_login_renews_when_vendor_session_ends(
    form_rig: Rig, expire_with: str
) -> None:
    """The vendor forgets its session (401, or a page saying so): the proxy signs in again by
    itself and the patron's retried request succeeds with the new cookie."""
    site = form_rig.site
    site.expire_with = expire_with
    (old,) = site.tokens
    site.tokens.clear()
    r = await form_rig.driver.get_vendor(HOST, f"/search?q={SEARCH_TERM}")
    assert r.status == 200
    assert EXPIRED_TEXT not in await r.text()
    assert len(site.logins) == 2
    (new,) = site.tokens
    assert new != old
    last = form_rig.vendor.requests[-1]
    assert last.path_qs == f"/search?q={SEARCH_TERM}"
    assert f"vsess={new}" in "; ".join(header_values(last, "Cookie"))
    # The renewed cookie is kept: the next request needs no further login.
    assert (await form_rig.driver.get_vendor(HOST, "/landing")).status == 200
    assert len(site.logins) == 2


@pytest.mark.parametrize("case", ["first", "expired"])
async def test_simultaneous_requests_share_one_vendor_login(form_rig: Rig, case: str) -> None:
    """A page's requests arrive together. One form login serves them all, whether it is the
    session's first or the vendor's session just ended, and each request goes through with the
    new cookie (the library's account is posted once, not once per request)."""
    site = form_rig.site
    if case == "first":  # a new session, not yet signed in at the vendor
        assert (await form_rig.driver.login(CANARY.uid, CANARY.password)).status == 303
    else:  # the vendor forgets the session every request will carry
        site.tokens.clear()
    old_tokens = set(site.tokens)
    logins = len(site.logins)
    site.login_delay_s = 0.3
    pages = await asyncio.gather(*(form_rig.driver.get_vendor(HOST, "/landing") for _ in range(6)))
    assert [r.status for r in pages] == [200] * 6
    for r in pages:
        assert EXPIRED_TEXT not in await r.text()
    assert len(site.logins) == logins + 1
    (token,) = site.tokens - old_tokens
    for req in [r for r in form_rig.vendor.requests if r.path_qs == "/landing"][-6:]:
        assert f"vsess={token}" in "; ".join(header_values(req, "Cookie"))
    # The session keeps that login: later requests need none.
    site.login_delay_s = 0.0
    assert (await form_rig.driver.get_vendor(HOST, "/start")).status == 200
    assert len(site.logins) == logins + 1


async def test_a_finished_login_is_forgotten_soon_after(form_rig: Rig, monkeypatch: Any) -> None:
    """The login kept for latecomers holds the session's vendor cookies: it is dropped
    LOGIN_REUSE_S after it ends, so they do not outlive the session by more than that."""
    from proxy.app import SERVICES
    from proxy.vendors import shared_login

    monkeypatch.setattr(shared_login, "LOGIN_REUSE_S", 0.2)
    form_rig.site.tokens.clear()
    assert (await form_rig.driver.get_vendor(HOST, "/landing")).status == 200
    adapter = form_rig.driver.client.server.app[SERVICES].upstream.adapters["contract"]
    assert isinstance(adapter, shared_login.SharedLoginAdapter)
    assert len(adapter._logins) == 1
    await asyncio.sleep(0.5)
    assert adapter._logins == {}


async def test_a_vendor_turning_away_fresh_cookies_gets_a_new_login(form_rig: Rig) -> None:
    """Taking another request's login is only for requests that went without its cookies: when
    the vendor ends the session again right after a login, the next request signs in anew."""
    site = form_rig.site
    site.tokens.clear()
    assert (await form_rig.driver.get_vendor(HOST, "/landing")).status == 200
    assert len(site.logins) == 2
    site.tokens.clear()  # the vendor drops the cookie it just handed out
    assert (await form_rig.driver.get_vendor(HOST, "/landing")).status == 200
    assert len(site.logins) == 3


async def test_shared_login_jar_is_per_session(form_rig: Rig) -> None:
    """A second session signs in to the vendor on its own; it never gets the first one's cookie."""
    first_sid = form_rig.driver.session_id()
    r = await form_rig.driver.login(CANARY.uid, CANARY.password)
    assert r.status == 303 and form_rig.driver.session_id() != first_sid
    assert (await form_rig.driver.get_vendor(HOST, "/start")).status == 200
    assert len(form_rig.site.logins) == 2 and len(form_rig.site.tokens) == 2


# --------------------------------------------------------------------------- config validation


def _load_one_vendor(tmp_path: Path, vendor_text: str) -> str:
    """Load a config with one vendor file `v.toml`; returns the ConfigError text ('' if valid)."""
    from proxy.config import load_config
    from proxy.errors import ConfigError

    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors").mkdir(exist_ok=True)
    (tmp_path / "vendors" / "v.toml").write_text(
        'id = "v"\ntitle = "V"\norigin = "https://v.test"\nhosts = ["v.test"]\n' + vendor_text
    )
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(
        '[server]\npublic_url = "http://proxy.localhost:8080"\n'
        '[directory]\nkind = "file"\npatrons_file = "patrons.toml"\n'
        '[session]\nsecret_file = "state/s"\n'
    )
    try:
        load_config(cfg)
    except ConfigError as exc:
        return str(exc)
    return ""


def test_unknown_adapter_names_file_and_valid_choices(tmp_path: Path) -> None:
    err = _load_one_vendor(tmp_path, 'auth = "saml"\n')
    assert str(tmp_path / "vendors" / "v.toml") + ": auth: unknown adapter 'saml'" in err
    assert "valid choices: ip, assertion, shared-login, referer" in err


def test_config_adapter_kinds_match_the_adapter_modules() -> None:
    """Validation and the factory know the same kinds; the factory refuses anything else."""
    from proxy.config import ADAPTER_KINDS, VendorConfig
    from proxy.vendors import adapter_classes, make_adapter

    assert tuple(adapter_classes()) == ADAPTER_KINDS
    bad = VendorConfig(id="v", title="V", origin="https://v.test", hosts=("v.test",), auth="x")
    with pytest.raises(ValueError, match="valid choices: ip, assertion, shared-login, referer"):
        make_adapter(bad, None)  # type: ignore[arg-type]


def test_pseudonymous_needs_contract_permission(tmp_path: Path) -> None:
    err = _load_one_vendor(tmp_path, 'auth = "assertion"\nrelease = "pseudonymous"\n')
    assert "v.toml: release: pseudonymous needs contract.permits_pseudonymous_id = true" in err


def test_pseudonymous_needs_the_contracts_end_date(tmp_path: Path) -> None:
    """The pseudonym is sent only while the contract runs: without its end date, none could be."""
    err = _load_one_vendor(
        tmp_path,
        'auth = "assertion"\nrelease = "pseudonymous"\n[contract]\npermits_pseudonymous_id = true\n',
    )
    assert "v.toml: contract.expires: pseudonymous release needs the contract's end date" in err


def test_pseudonymous_needs_assertion_adapter(tmp_path: Path) -> None:
    """Only an assertion can carry a sub; another adapter with pseudonymous is a mistake."""
    err = _load_one_vendor(
        tmp_path,
        'auth = "ip"\nrelease = "pseudonymous"\n[contract]\npermits_pseudonymous_id = true\n',
    )
    assert "v.toml: release: pseudonymous release needs auth = assertion" in err


def test_shared_login_without_table_fails(tmp_path: Path) -> None:
    err = _load_one_vendor(tmp_path, 'auth = "shared-login"\n')
    assert "v.toml: shared_login: auth = shared-login needs a [shared_login] table" in err


def test_shared_login_without_secrets_fails(tmp_path: Path) -> None:
    err = _load_one_vendor(tmp_path, 'auth = "shared-login"\n[shared_login]\nmethod = "basic"\n')
    assert "v.toml: shared_login.username_file: needs username_file or username_env" in err
    assert "v.toml: shared_login.password_file: needs password_file or password_env" in err


def test_shared_login_secret_file_missing_or_readable_by_others_fails(tmp_path: Path) -> None:
    (tmp_path / "vendors").mkdir()
    loose = tmp_path / "vendors" / "user"
    loose.write_text("acct\n")
    loose.chmod(0o644)
    err = _load_one_vendor(
        tmp_path,
        'auth = "shared-login"\n[shared_login]\nusername_file = "user"\npassword_file = "nope"\n',
    )
    assert "shared_login.username_file: secret file" in err and "chmod 600" in err
    assert "shared_login.password_file: secret file" in err and "does not exist" in err


def test_shared_login_env_not_set_fails(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("WESTON_TEST_UNSET_VAR", raising=False)
    err = _load_one_vendor(
        tmp_path,
        'auth = "shared-login"\n[shared_login]\nusername_env = "WESTON_TEST_UNSET_VAR"\n'
        'password_env = "WESTON_TEST_UNSET_VAR"\n',
    )
    assert "shared_login.username_env: environment variable WESTON_TEST_UNSET_VAR is not set" in err


def test_form_login_url_must_be_on_vendor_hosts(tmp_path: Path) -> None:
    """The library's credential may only go to the vendor itself."""
    write_secret(tmp_path / "vendors" / "u", "acct")
    write_secret(tmp_path / "vendors" / "p", "pw")
    err = _load_one_vendor(
        tmp_path,
        'auth = "shared-login"\n[shared_login]\nmethod = "form"\n'
        'login_url = "https://collector.example/login"\nusername_file = "u"\npassword_file = "p"\n',
    )
    assert "v.toml: shared_login.login_url: must be on one of the vendor's hosts" in err


def test_referer_without_url_fails(tmp_path: Path) -> None:
    err = _load_one_vendor(tmp_path, 'auth = "referer"\n')
    assert "v.toml: referer: auth = referer needs the authorised referer URL" in err


def test_assertion_header_must_not_be_a_reserved_header(tmp_path: Path) -> None:
    err = _load_one_vendor(tmp_path, 'auth = "assertion"\nassertion_header = "Cookie"\n')
    assert "v.toml: assertion_header: Cookie is reserved" in err


def test_valid_adapter_configs_load(tmp_path: Path) -> None:
    write_secret(tmp_path / "vendors" / "u", "acct")
    write_secret(tmp_path / "vendors" / "p", "pw")
    assert (
        _load_one_vendor(
            tmp_path,
            'auth = "shared-login"\n[shared_login]\nmethod = "form"\n'
            'login_url = "https://v.test/login"\nusername_file = "u"\npassword_file = "p"\n',
        )
        == ""
    )
