"""A shared-login (form) vendor's answers on the relay path: the peek for its "please sign in"
page, sending again after signing in again, and reading its answer to a login (real slapd, a
recording vendor, the real proxy)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.canary import CANARY
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    ldap_directory,
    vendor_toml,
    write_config,
    write_secret,
)

HOST = "www.relay-review.test"
TIMEOUT_S = 1


def _shared_form_extra(success_text: str = "Signed in") -> str:
    return (
        f"timeout_s = {TIMEOUT_S}\n"
        '\n[shared_login]\nmethod = "form"\n'
        f'login_url = "http://{HOST}/account/login"\n'
        'username_file = "secrets/u"\npassword_file = "secrets/p"\n'
        f'success_text = "{success_text}"\nexpired_text = "Please sign in again"\n'
    )


async def _setup(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor: RecordingVendor,
    pf: Any,
    auth: str = "assertion",
    extra: str = "",
) -> ProxyDriver:
    write_secret(tmp_path / "vendors" / "secrets" / "u", "libacct")
    write_secret(tmp_path / "vendors" / "secrets" / "p", "libpass")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"rv": vendor_toml("rv", vendor, auth=auth, extra=extra)},
    )
    d: ProxyDriver = await pf(cfg)
    await d.login(CANARY.uid, CANARY.password)
    return d


def _login_route(tokens: set[str]) -> Any:
    async def login(request: web.Request) -> web.StreamResponse:
        token = secrets.token_hex(8)
        tokens.add(token)
        resp = web.Response(text="<p>Signed in</p>", content_type="text/html")
        resp.set_cookie("vsess", token, path="/")
        return resp

    return login


@pytest.mark.parametrize(("breaks", "status", "kind"), [
    ("stalls", 504, "vendor_timeout"), ("drops", 502, "vendor_unavailable"),
])  # fmt: skip
async def test_a_vendor_failing_in_a_peeked_page_is_its_error_page_naming_it(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    breaks: str,
    status: int,
    kind: str,
) -> None:
    """Shared-login (form) vendor: the proxy peeks at text pages before answering. A vendor that
    sends its headers and then goes silent, or drops the connection, gets the page P7 asks for
    (504 or 502 naming the database), not a 500."""
    vendor: RecordingVendor = await vendor_factory(HOST)
    tokens: set[str] = set()

    async def page(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        resp.content_length = 5000
        await resp.prepare(request)
        await resp.write(b"<html>")
        if breaks == "stalls":
            await asyncio.sleep(TIMEOUT_S + 2)
        else:
            await asyncio.sleep(0.1)
            assert request.transport is not None
            request.transport.abort()
        return resp

    vendor.routes.update({"/account/login": _login_route(tokens), "/page": page})
    d = await _setup(
        tmp_path, port, running_slapd, vendor, proxy_factory, auth="shared-login",
        extra=_shared_form_extra(),
    )  # fmt: skip
    r = await d.get_vendor(HOST, "/page")
    text = await r.text()
    assert r.status == status, f"got {r.status}, expected {status} {kind}"
    assert f"{kind} ({status})" in text and "Rv" in text.replace("&#39;", "'"), text


async def test_put_resent_after_a_vendor_session_renewal_keeps_its_body(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Shared-login (form) vendor whose session ended: the proxy signs in again and resends the
    idempotent request. A PUT (saving a note in the vendor's web app) must go again with its body."""
    vendor: RecordingVendor = await vendor_factory(HOST)
    tokens: set[str] = set()
    received: list[bytes] = []

    async def note(request: web.Request) -> web.StreamResponse:
        if request.cookies.get("vsess", "") not in tokens:
            return web.Response(status=401, text="session required")
        received.append(await request.read())
        return web.Response(text='{"saved": true}', content_type="application/json")

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<p>ok</p>", content_type="text/html")

    vendor.routes.update({"/account/login": _login_route(tokens), "/note": note, "/start": page})
    d = await _setup(
        tmp_path,
        port,
        running_slapd,
        vendor,
        proxy_factory,
        auth="shared-login",
        extra=_shared_form_extra(),
    )
    assert (await d.get_vendor(HOST, "/start")).status == 200  # signs in with the library account
    tokens.clear()  # the vendor ends its session
    body = b'{"note": "chapter 3 is useful"}'
    r = await d.get_vendor(
        HOST, "/note", method="PUT", data=body, headers={"Content-Type": "application/json"}
    )
    await r.read()
    assert r.status == 200
    assert received == [body], f"vendor stored {received!r}"


async def test_success_text_in_a_later_piece_of_the_login_answer_counts(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The vendor's "signed in" page arrives in two TCP pieces; the text is in the second. The
    login worked, so the library account must not be signed in again on every request."""
    vendor: RecordingVendor = await vendor_factory(HOST)
    logins: list[int] = []

    async def login(request: web.Request) -> web.StreamResponse:
        logins.append(1)
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        resp.set_cookie("vsess", "t", path="/")
        await resp.prepare(request)
        await resp.write(b"<html><head><title>Vendor</title></head><body>" + b" " * 2000)
        await asyncio.sleep(0.2)
        await resp.write(b"<p>Signed in</p></body></html>")
        await resp.write_eof()
        return resp

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<p>ok</p>", content_type="text/html")

    vendor.routes.update({"/account/login": login, "/start": page})
    d = await _setup(
        tmp_path,
        port,
        running_slapd,
        vendor,
        proxy_factory,
        auth="shared-login",
        extra=_shared_form_extra(),
    )
    for _ in range(3):
        assert (await d.get_vendor(HOST, "/start")).status == 200
    assert len(logins) == 1, f"{len(logins)} logins for 3 page views"
