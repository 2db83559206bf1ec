"""From a review of the vendor adapters: a shared-login vendor refusing the library-wide account,
and a vendor page echoing that account's password.

Real slapd, recording aiohttp vendors, the canary patron, the real proxy (the review's tests,
each of which failed on the code it was written against), then the edges of the fixes: the
hold-off after a refusal (per vendor, ending by time or with a login that works), the renewal
login refused, and the mask over the credential (chunk boundaries, special characters, every
spelling, header values).
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from proxy.hosts import HostMap
from proxy.rewrite import Rewriter
from proxy.secret_mask import MASK, secret_spellings
from proxy.vendors import shared_login
from proxy.vendors.assertion import AssertionAdapter
from proxy.vendors.base import VendorAdapter
from proxy.vendors.ip import IpAdapter
from proxy.vendors.referer import RefererAdapter
from tests.canary import CANARY
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    ldap_directory,
    vendor_toml,
    write_config,
    write_secret,
)

HOST = "www.adapter-review.test"
# The library-wide account of the shared-login vendor (synthetic).
LIBRARY_USER = "weston-library-account"
LIBRARY_PASSWORD = "Library-Shared-Secret-5512"
BASIC = base64.b64encode(f"{LIBRARY_USER}:{LIBRARY_PASSWORD}".encode())


def shared_login_extra(method: str) -> str:
    text = (
        f'start_url = "http://{HOST}/start"\n\n[shared_login]\nmethod = "{method}"\n'
        'username_file = "secrets/u"\npassword_file = "secrets/p"\n'
    )
    if method == "form":
        text += (
            f'login_url = "http://{HOST}/account/login"\n'
            'username_field = "acct"\npassword_field = "pw"\nsuccess_text = "Signed in"\n'
        )
    return text


async def shared_login_proxy(
    method: str,
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    routes: dict[str, Any],
) -> tuple[ProxyDriver, RecordingVendor]:
    vendor: RecordingVendor = await vendor_factory(HOST)
    vendor.routes.update(routes)
    write_secret(tmp_path / "vendors" / "secrets" / "u", LIBRARY_USER)
    write_secret(tmp_path / "vendors" / "secrets" / "p", LIBRARY_PASSWORD)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={
            "rv": vendor_toml("rv", vendor, auth="shared-login", extra=shared_login_extra(method))
        },
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    return driver, vendor


# ------------------------------------------------------------------ vendor refuses the account


async def refusing_login(request: web.Request) -> web.StreamResponse:
    """The vendor has locked the library's account (or its login form changed)."""
    await request.post()
    return web.Response(status=403, text="<p>Account locked</p>", content_type="text/html")


async def needs_account(request: web.Request) -> web.StreamResponse:
    """A page behind the vendor's account: without its cookie, the vendor's own sign-in form."""
    if "vsess" not in request.cookies:
        return web.Response(
            status=401,
            text="<form action='/account/login' method=post><input name=acct>"
            "<input type=password name=pw><button>Sign in</button></form>",
            content_type="text/html",
        )
    return web.Response(text="<p>content</p>", content_type="text/html")


REFUSED_ROUTES = {"/account/login": refusing_login, "/start": needs_account, "/p": needs_account}


async def test_a_refused_shared_account_gives_the_patron_a_clear_page_not_the_vendors_sign_in_form(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The vendor refuses the library-wide account. The proxy knows its login failed, yet it
    sends the patron's request on without the account and relays whatever the vendor answers:
    here the vendor's own sign-in form, with a password field the patron is invited to fill
    (and would fill with their library card and PIN, straight to the vendor). The patron should
    get the proxy's own page saying the database could not be reached with the library's
    account (a 5xx status), never the vendor's sign-in form."""
    driver, _vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, REFUSED_ROUTES
    )
    r = await driver.get_vendor(HOST, "/p")
    body = await r.text()
    assert "type=password" not in body, body
    assert r.status in (502, 503), (r.status, body)


async def test_a_refused_shared_account_is_not_posted_again_on_every_request(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """After the vendor refused the library's account, each following request of the same
    session (a page's images, a reload) posts the library's credential again: five requests
    within milliseconds, five refused logins. Vendors lock accounts that fail to sign in
    repeatedly, which then locks out every patron. A refused login should hold off the next
    attempt for a while (at least for the requests that follow within the same second)."""
    driver, vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, REFUSED_ROUTES
    )
    for _ in range(5):
        await (await driver.get_vendor(HOST, "/p")).read()
    logins = [r for r in vendor.requests if r.path_qs == "/account/login"]
    assert len(logins) == 1, [r.path_qs for r in vendor.requests]


# ------------------------------------------------------------------ the credential echoed back


async def echo_account_page(request: web.Request) -> web.StreamResponse:
    """A vendor's 'account settings' page that fills in the account it is signed in as."""
    return web.Response(
        text=f"<form><input name=acct value='{LIBRARY_USER}'>"
        f"<input type=password name=pw value='{LIBRARY_PASSWORD}'></form>",
        content_type="text/html",
    )


async def echo_headers(request: web.Request) -> web.StreamResponse:
    """A vendor's diagnostic page that shows the request headers it received (as TRACE would)."""
    return web.json_response({k: v for k, v in request.headers.items()})


async def good_login(request: web.Request) -> web.StreamResponse:
    await request.post()
    resp = web.Response(text="<p>Signed in</p>", content_type="text/html")
    resp.set_cookie("vsess", "shared-vendor-session", path="/")
    return resp


@pytest.mark.parametrize("method", ["form", "basic"])
async def test_the_library_password_a_vendor_page_echoes_never_reaches_the_browser(
    method: str,
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """proxy/vendors/shared_login.py promises the library-wide credential 'never reaches the
    patron's browser', and the proxy already refuses TRACE so that a vendor cannot echo it. But
    an ordinary GET to a vendor page that echoes it (an account page with the password filled
    in; a page showing the request's headers, i.e. the Basic credential) is relayed untouched:
    every patron can read the library's password. The proxy knows the secret and rewrites
    every text body; the password (and its Basic encoding) should not come out of it."""
    driver, _vendor = await shared_login_proxy(
        method,
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        {"/account/login": good_login, "/acct": echo_account_page, "/h": echo_headers},
    )
    r = await driver.get_vendor(HOST, "/acct" if method == "form" else "/h")
    seen = (
        f"{r.status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in r.headers.items())
    ).encode() + await r.read()
    assert LIBRARY_PASSWORD.encode() not in seen, seen
    assert BASIC not in seen, seen


# ------------------------------------------------------------------ edges of the refusal fix


def logins(vendor: RecordingVendor) -> int:
    return sum(1 for r in vendor.requests if r.path_qs == "/account/login")


async def test_the_refusal_page_says_what_happened_with_retry_after_and_is_counted(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The patron's page names the library's account and what to do; Retry-After says when the
    proxy tries the account again (the hold-off's remainder); IT gets the log line (vendor and
    status only) and the vendor_failures counter's `account_refused` kind."""
    driver, _vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, REFUSED_ROUTES
    )
    with capture_logs() as logs:
        r = await driver.get_vendor(HOST, "/p")
        body = await r.text()
    assert r.status == 503
    assert "library&#39;s account" in body or "library's account" in body, body
    assert "tell the library" in body
    assert 0 < int(r.headers["Retry-After"]) <= shared_login.REFUSAL_HOLD_OFF_S
    failed = [e for e in logs if e["event"] == "shared_login_failed"]
    assert failed == [
        {"event": "shared_login_failed", "vendor": "rv", "status": 403, "log_level": "warning"}
    ]
    metrics = await (await driver.own("GET", "/metrics")).text()
    assert 'vendor="rv"' in metrics and 'kind="account_refused"' in metrics, metrics


async def test_the_hold_off_is_per_vendor_not_per_session(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A second patron's session, signed in after the refusal, gets the page without the
    library's credential being posted again: the account is the library's, not the session's."""
    driver, vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, REFUSED_ROUTES
    )
    await (await driver.get_vendor(HOST, "/p")).read()
    first = driver.session_id()
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert driver.session_id() != first
    r = await driver.get_vendor(HOST, "/p")
    assert r.status == 503
    assert logins(vendor) == 1


async def test_the_hold_off_ends_and_a_login_that_works_then_serves_the_patron(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the hold-off the account is tried again, once; when the vendor now accepts it the
    patron gets the page, and the hold-off is over for good (no page of refusal after it)."""
    monkeypatch.setattr(shared_login, "REFUSAL_HOLD_OFF_S", 0.3)
    accepting = False

    async def login(request: web.Request) -> web.StreamResponse:
        if accepting:
            return await good_login(request)
        return await refusing_login(request)

    routes = {**REFUSED_ROUTES, "/account/login": login}
    driver, vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, routes
    )
    assert (await driver.get_vendor(HOST, "/p")).status == 503
    assert (await driver.get_vendor(HOST, "/p")).status == 503
    assert logins(vendor) == 1
    accepting = True
    await asyncio.sleep(0.4)
    r = await driver.get_vendor(HOST, "/p")
    assert (r.status, await r.text()) == (200, "<p>content</p>")
    assert logins(vendor) == 2
    r = await driver.get_vendor(HOST, "/p")
    assert r.status == 200
    assert logins(vendor) == 2


async def test_a_refused_renewal_after_the_vendor_session_expired_gives_the_page(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The vendor's session ended (401) and the login that would renew it is refused: the
    patron gets the proxy's page, not the vendor's sign-in form, and the requests that follow
    within the hold-off post nothing."""
    refusing = False

    async def login(request: web.Request) -> web.StreamResponse:
        if refusing:
            return await refusing_login(request)
        return await good_login(request)

    async def page(request: web.Request) -> web.StreamResponse:
        if refusing:  # the vendor ended every session of the account: its cookie counts no more
            return web.Response(
                status=401,
                text="<form><input name=acct><input type=password name=pw></form>",
                content_type="text/html",
            )
        return await needs_account(request)

    routes = {"/account/login": login, "/start": page, "/p": page}
    driver, vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, routes
    )
    assert (await driver.get_vendor(HOST, "/p")).status == 200
    refusing = True
    for _ in range(3):
        r = await driver.get_vendor(HOST, "/p")
        body = await r.text()
        assert r.status == 503 and "type=password" not in body, (r.status, body)
    assert logins(vendor) == 2


# ------------------------------------------------------------------ edges of the mask


async def test_the_credential_in_a_vendor_header_and_split_across_body_chunks_is_masked(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor header echoing the Basic value, and a streamed body whose chunks cut the
    password in two: neither reaches the browser; the rest of the page does."""

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/html", "X-Echo": f"Basic {BASIC.decode()}"}
        )
        await resp.prepare(request)
        half = len(LIBRARY_PASSWORD) // 2
        await resp.write(b"<p>pw: " + LIBRARY_PASSWORD[:half].encode())
        await asyncio.sleep(0.05)
        await resp.write(LIBRARY_PASSWORD[half:].encode() + b" end</p>")
        await resp.write_eof()
        return resp

    driver, _vendor = await shared_login_proxy(
        "basic", tmp_path, port, running_slapd, vendor_factory, proxy_factory, {"/c": chunked}
    )
    r = await driver.get_vendor(HOST, "/c")
    body = await r.read()
    assert body == f"<p>pw: {MASK} end</p>".encode()
    assert r.headers["X-Echo"] == f"Basic {MASK}"


SPECIAL = "p&<a>'b\"c.*+?(x)|[y]{2}^$\\/é%20 z"


def masked_body(password: str, body: bytes, chunks: list[int], ctype: str = "text/html") -> bytes:
    token = base64.b64encode(f"{LIBRARY_USER}:{password}".encode()).decode()
    hosts = HostMap.build(
        public_scheme="http",
        public_host="proxy.localhost",
        public_port=8080,
        vendor_hosts=[("other", ["www.other.test"])],
    )
    rewriter = Rewriter(hosts)
    stream = rewriter.stream("rv", ctype, "utf-8", masked=secret_spellings(password, token))
    out, at = b"", 0
    for cut in [*chunks, len(body)]:
        out += stream.feed(body[at:cut])
        at = cut
    return out + stream.finish()


def test_every_spelling_of_a_password_with_special_characters_is_masked_at_any_chunk_boundary() -> (
    None
):
    """Raw, percent-encoded (quote, quote_plus), HTML-escaped, JSON-escaped and the Basic token,
    each cut at every byte by the stream's chunks: only masks come out; look-alike text a regex
    reading of the password would match stays."""
    token = base64.b64encode(f"{LIBRARY_USER}:{SPECIAL}".encode()).decode()
    spellings = [
        SPECIAL,
        quote(SPECIAL, safe=""),
        quote_plus(SPECIAL),
        html.escape(SPECIAL),
        json.dumps(SPECIAL)[1:-1],
        json.dumps(SPECIAL, ensure_ascii=False)[1:-1],
        token,
    ]
    lookalike = "p&<a>'b\"cX*+?(x)|[y]{2}^$\\/é%20 z"
    body = ("<p>" + " | ".join(spellings) + f" | {lookalike}</p>").encode()
    for cut in range(1, len(body)):
        out = masked_body(SPECIAL, body, [cut])
        for spelling in spellings:
            assert spelling.encode() not in out, (cut, spelling, out)
        assert out.count(MASK.encode()) == len(spellings), (cut, out)
        assert lookalike.encode() in out, (cut, out)


def test_the_mask_does_not_tell_the_passwords_length() -> None:
    """Two passwords of different lengths leave the same page."""
    short, long = "Sh0rt-pw", "A-much-longer-library-password-0123456789"
    assert masked_body(short, f"<b>{short}</b>".encode(), []) == masked_body(
        long, f"<b>{long}</b>".encode(), []
    )


def test_a_body_the_proxy_passes_through_is_not_masked() -> None:
    """What the module docstring and docs/vendor-setup.md say: a PDF or download is relayed as
    the vendor sent it (the proxy does not read it)."""
    body = f"%PDF {LIBRARY_PASSWORD}".encode()
    assert masked_body(LIBRARY_PASSWORD, body, [7], "application/pdf") == body


def test_only_a_shared_login_adapter_has_a_credential_to_mask() -> None:
    """Every other adapter kind masks nothing: its responses take no extra work."""
    assert VendorAdapter.secret_spellings == ()
    for kind in (IpAdapter, AssertionAdapter, RefererAdapter):
        assert "secret_spellings" not in vars(kind)


async def test_a_plain_text_or_csv_page_echoing_the_credential_is_masked_and_the_rest_kept(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor's plain-text diagnostic page (gzipped, the password cut across two chunks) and
    a CSV export listing the account: the browser shows both as they are, so the credential is
    masked there too; their URLs are left alone (text the proxy does not rewrite) and a range
    asked of such a page gets the whole masked page, not a slice of the vendor's bytes."""
    import gzip

    text = (
        f"account={LIBRARY_USER}\npassword={LIBRARY_PASSWORD}\n"
        f"authorization=Basic {BASIC.decode()}\nsee http://{HOST}/x\n"
    ).encode()

    async def plain(request: web.Request) -> web.StreamResponse:
        packed = gzip.compress(text)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"}
        )
        await resp.prepare(request)
        await resp.write(packed[:20])
        await asyncio.sleep(0.02)
        await resp.write(packed[20:])
        await resp.write_eof()
        return resp

    async def csv(request: web.Request) -> web.StreamResponse:
        whole = f"user,password\r\n{LIBRARY_USER},{LIBRARY_PASSWORD}\r\n".encode()
        headers = {"Content-Type": "text/csv", "Accept-Ranges": "bytes"}
        if request.http_range.stop is not None:  # a range server: the slice asked for
            part = request.http_range
            headers["Content-Range"] = f"bytes {part.start}-{part.stop - 1}/{len(whole)}"
            return web.Response(status=206, body=whole[part], headers=headers)
        return web.Response(body=whole, headers=headers)

    driver, _vendor = await shared_login_proxy(
        "basic",
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        {"/diag.txt": plain, "/export.csv": csv},
    )
    r = await driver.get_vendor(HOST, "/diag.txt")
    body = await r.read()
    assert r.status == 200
    assert body == text.replace(LIBRARY_PASSWORD.encode(), MASK.encode()).replace(
        BASIC, MASK.encode()
    )
    assert "Content-Encoding" not in r.headers and r.headers["Accept-Ranges"] == "none"
    r = await driver.get_vendor(HOST, "/export.csv", headers={"Range": "bytes=0-40"})
    assert r.status == 200, r.status
    assert await r.read() == f"user,password\r\n{LIBRARY_USER},{MASK}\r\n".encode()


def test_plain_text_is_masked_only_for_a_vendor_with_a_credential() -> None:
    """The same text from any other vendor (nothing to mask) is passed on untouched, its
    URLs too."""
    body = f"{LIBRARY_PASSWORD} http://www.other.test/a".encode()
    assert masked_body(LIBRARY_PASSWORD, body, [5], "text/plain") == (
        f"{MASK} http://www.other.test/a".encode()
    )
    hosts = HostMap.build(
        public_scheme="http",
        public_host="proxy.localhost",
        public_port=8080,
        vendor_hosts=[("other", ["www.other.test"])],
    )
    stream = Rewriter(hosts).stream("rv", "text/plain", "utf-8")
    assert stream.feed(body) + stream.finish() == body
