"""The vendor adapters: a vendor learns "valid patron" and nothing else, and what an adapter adds
never comes back to the patron: no TRACE echo of the shared account, jar or referer secret, one
audience per vendor, no pseudonym once the contract has ended, and assertions per session.

Real slapd, real recording vendors, the real proxy. (From a review: the first section's tests
failed before their fixes.)
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import textwrap
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web

from proxy.config import load_config
from proxy.errors import ConfigError
from tests.canary import CANARY
from tests.harness import (
    ProxyDriver,
    Recorded,
    RecordingVendor,
    ldap_directory,
    vendor_toml,
    write_config,
    write_secret,
)

HOST = "www.echo-vendor.test"
ALPHA = "www.alpha-review.test"
BETA = "www.beta-review.test"
LIBRARY_USER = "weston-library-account"
LIBRARY_PASSWORD = "Library-Shared-Secret-5512"
SECRET_REFERER = "https://westonlibrary.org/databases/r-7f3c9a"
ANONYMOUS_CLAIMS = {"iss", "aud", "iat", "exp", "jti", "affiliation"}


def header_values(req: Recorded, name: str) -> list[str]:
    return [v for k, v in req.headers if k.lower() == name.lower()]


async def echo_request(request: web.Request) -> web.StreamResponse:
    """What a vendor web server with TRACE enabled answers (Apache's default `TraceEnable on`):
    the request it received, as `message/http`."""
    head = f"{request.method} {request.path_qs} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in request.headers.items()
    )
    return web.Response(body=head.encode(), content_type="message/http")


async def account_login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if form.get("acct") == LIBRARY_USER and form.get("pw") == LIBRARY_PASSWORD:
        resp = web.Response(text="<p>Signed in</p>", content_type="text/html")
        resp.set_cookie("vsess", "shared-vendor-session-" + secrets.token_hex(8), path="/")
        return resp
    return web.Response(text="<p>Login failed</p>", content_type="text/html")


def adapter_extra(kind: str) -> tuple[str, str]:
    start = f'start_url = "http://{HOST}/start"\n'
    if kind == "shared-login-basic":
        return "shared-login", (
            start + '\n[shared_login]\nmethod = "basic"\n'
            'username_file = "secrets/u"\npassword_file = "secrets/p"\n'
        )
    if kind == "shared-login-form":
        return "shared-login", (
            start + '\n[shared_login]\nmethod = "form"\n'
            f'login_url = "http://{HOST}/account/login"\n'
            'username_field = "acct"\npassword_field = "pw"\n'
            'username_file = "secrets/u"\npassword_file = "secrets/p"\n'
            'success_text = "Signed in"\n'
        )
    if kind == "referer":
        return "referer", start + f'referer = "{SECRET_REFERER}"\n'
    if kind == "assertion":
        return "assertion", start
    raise AssertionError(kind)


async def one_adapter_proxy(
    kind: str,
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> tuple[ProxyDriver, RecordingVendor]:
    vendor = await vendor_factory(HOST)
    for path in ("/start", "/page"):
        vendor.routes[path] = echo_request
    vendor.routes["/account/login"] = account_login
    write_secret(tmp_path / "vendors" / "secrets" / "u", LIBRARY_USER)
    write_secret(tmp_path / "vendors" / "secrets" / "p", LIBRARY_PASSWORD)
    auth, extra = adapter_extra(kind)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"echo": vendor_toml("echo", vendor, auth=auth, extra=extra)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    return driver, vendor


# =========================================================================== what must not leak


@pytest.mark.parametrize("kind", ["shared-login-basic", "shared-login-form", "referer"])
async def test_trace_never_hands_what_the_adapter_adds_to_the_patrons_browser(
    kind: str,
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """A signed-in patron sends `TRACE` to a vendor host. The proxy must not forward it with
    what the adapter added (the library's Basic credential, the shared vendor-session cookie
    from the jar, the secret referer URL): a vendor that echoes TRACE (Cross-Site Tracing)
    would hand that secret straight back to the patron's browser."""
    driver, _vendor = await one_adapter_proxy(
        kind, tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    if kind == "shared-login-form":
        # An ordinary page first: the proxy signs in with the library account.
        assert (await driver.get_vendor(HOST, "/page")).status == 200
    path = "/start" if kind == "referer" else "/page"
    r = await driver.get_vendor(HOST, path, method="TRACE")
    seen = (
        f"{r.status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in r.headers.items())
    ).encode() + await r.read()
    basic = base64.b64encode(f"{LIBRARY_USER}:{LIBRARY_PASSWORD}".encode())
    assert basic not in seen, seen
    assert b"shared-vendor-session-" not in seen, seen
    assert SECRET_REFERER.encode() not in seen, seen


async def test_two_vendors_never_share_an_assertion_audience(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """`aud` is per vendor: an assertion made for one vendor must not be valid at another. A
    vendor file whose `audience` is another vendor's audience (here beta's `audience = "alpha"`,
    alpha's id) must be refused; otherwise every assertion beta receives is one alpha accepts,
    and beta (or whoever reads beta's logs) can replay patrons' assertions at alpha."""
    alpha = await vendor_factory(ALPHA)
    beta = await vendor_factory(BETA)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "alpha": vendor_toml("alpha", alpha),
            "beta": vendor_toml("beta", beta, extra='audience = "alpha"\n'),
        },
    )
    from proxy.cli import config_checks

    try:
        load_config(cfg, extra_checks=config_checks())
    except ConfigError:
        return  # refused: the property holds
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert (await driver.get_vendor(ALPHA, "/")).status == 200
    assert (await driver.get_vendor(BETA, "/")).status == 200
    (to_alpha,) = header_values(alpha.requests[-1], "X-Patron-Assertion")
    (to_beta,) = header_values(beta.requests[-1], "X-Patron-Assertion")
    jwks = await (await driver.own("GET", "/.well-known/jwks.json")).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    # What alpha's verifier accepts: its own audience ("alpha").
    alpha_aud = jwt.decode(to_alpha, key, algorithms=["EdDSA"], audience="alpha")["aud"]
    beta_aud = jwt.decode(to_beta, options={"verify_signature": False})["aud"]
    assert beta_aud != alpha_aud, (
        f"the assertion beta received (aud={beta_aud!r}) is accepted by alpha's verifier"
    )


async def test_no_sub_for_a_vendor_whose_contract_has_expired(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """P4: the pairwise `sub` goes only to a vendor whose contract permits it. A contract that
    ended yesterday permits nothing any more (the project's own compliance check calls this
    "Pseudonymous id released without a current contract that permits it", CRITICAL), yet the
    proxy keeps sending the stable identifier to that vendor."""
    vendor = await vendor_factory(ALPHA)
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    extra = textwrap.dedent(
        f"""\
        release = "pseudonymous"

        [contract]
        permits_pseudonymous_id = true
        expires = {yesterday}
        """
    )
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"alpha": vendor_toml("alpha", vendor, extra=extra)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    await driver.get_vendor(ALPHA, "/")
    subs = [
        jwt.decode(t, options={"verify_signature": False}).get("sub")
        for req in vendor.requests
        for t in header_values(req, "X-Patron-Assertion")
    ]
    assert [s for s in subs if s] == [], f"expired contract, vendor still received sub={subs}"


# =========================================================================== per session, per vendor


async def test_ok_assertion_is_per_session_and_never_crosses_to_another_vendor(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: Any,
) -> None:
    """Passing (verified): exactly the anonymous claims, aud = vendor id, exp - iat = 300; one
    patron's two sessions get different tokens and jti (the per-session cache does not link
    them); a redirect from alpha to beta (an ip vendor) and a WebSocket-free page load of beta
    carry no assertion to beta."""
    alpha = await vendor_factory(ALPHA)
    beta = await vendor_factory(BETA)

    async def to_beta(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://{BETA}/landing")

    alpha.routes["/go"] = to_beta
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "alpha": vendor_toml("alpha", alpha),
            "beta": vendor_toml("beta", beta, auth="ip"),
        },
    )
    driver = await proxy_factory(cfg)
    tokens = []
    for _ in range(2):
        assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
        r = await driver.get_vendor(ALPHA, "/go")
        assert r.status == 302 and r.headers["Location"] == f"http://{driver.mapped(BETA)}/landing"
        assert (await driver.get_vendor(BETA, "/landing")).status == 200
        (token,) = header_values(alpha.requests[-1], "X-Patron-Assertion")
        tokens.append(token)
    claims = [jwt.decode(t, options={"verify_signature": False}) for t in tokens]
    for c in claims:
        assert set(c) == ANONYMOUS_CLAIMS and c["aud"] == "alpha"
        assert c["exp"] - c["iat"] == 300
    assert tokens[0] != tokens[1] and claims[0]["jti"] != claims[1]["jti"]
    for req in beta.requests:
        names = {k.lower() for k, _ in req.headers}
        assert "x-patron-assertion" not in names and "authorization" not in names
        assert not any(t.encode() in req.raw() for t in tokens)
    logs = log_stream.getvalue()
    assert logs and not any(t in logs for t in tokens)
