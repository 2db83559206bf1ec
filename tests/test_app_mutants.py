"""From a mutation sweep (1 December 2026) of proxy/app.py (dispatch and its failure pages), proxy/vendors/base.py
and proxy/compliance_cli.py: behaviours that could break without any other test noticing. Each
test failed with the mutant it names and passes without. Synthetic canary patrons only; real
slapd, recording aiohttp vendors on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.app import SERVICES
from proxy.cli import main
from proxy.errors import StoreUnavailable, VendorAccountRefused
from proxy.web.messages import MESSAGES, UI
from tests.canary import CANARY
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config
from tests.test_compliance import materialise

VENDOR_HOST = "www.mutapp-db.test"
TITLE = "Mutapp Journals Online"


@pytest.fixture
async def vendor(vendor_factory: Any) -> RecordingVendor:
    v: RecordingVendor = await vendor_factory(VENDOR_HOST)
    return v


@pytest.fixture
async def proxy(
    tmp_path: Path, port: int, running_slapd: Any, vendor: RecordingVendor, proxy_factory: Any
) -> ProxyDriver:
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"mutapp": vendor_toml("mutapp", vendor, title=TITLE)},
        session='store = "memory"',
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    return driver


def _svc(proxy: ProxyDriver) -> Any:
    return proxy.client.app[SERVICES]


# --------------------------------------------------------------------------- compliance CLI


def test_compliance_report_that_cannot_be_written_exits_2_not_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/compliance_cli.py:cmd_compliance — `return EXIT_USAGE` after the --out
    write fails → `return EXIT_OK`. A cron job writing the privacy staff's report to a file it
    cannot write (here: a folder) must hear of it: exit 2 naming the file, not 0 with no
    report anywhere."""
    cfg = materialise(tmp_path / "cfg", ["good"])
    out = tmp_path / "reports"
    out.mkdir()
    assert main(["compliance", "--config", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out}" in err
    written = tmp_path / "report.txt"
    assert main(["compliance", "--config", str(cfg), "--out", str(written)]) == 0
    assert "good" in written.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- dispatch's pages


async def test_store_outage_offers_try_again_for_a_page_but_not_for_a_form_post(
    proxy: ProxyDriver, vendor: RecordingVendor
) -> None:
    """kills: proxy/app.py:_try_again — `request.method not in ("GET", "HEAD")` →
    `request.method in ("GET", "HEAD")`. While the session store is down, a patron who opened
    a database page gets the 503 "briefly unavailable" page with a "Try again" link back to the
    very address on the database's mapped host; a patron whose form POST failed gets no such
    link (following it would GET the form's target, not resend the form). Nothing reaches the
    vendor either way."""
    assert (await proxy.login(CANARY.uid, CANARY.password)).status == 303
    svc = _svc(proxy)

    async def down(*_: Any, **__: Any) -> Any:
        raise StoreUnavailable(reason="connection refused")

    svc.sessions.load = down
    seen = len(vendor.requests)
    r = await proxy.get_vendor(VENDOR_HOST, "/search?q=owls")
    html = await r.text()
    assert r.status == 503
    assert MESSAGES["store_unavailable"].title in html
    here = f"{svc.hosts.mapped_origin(VENDOR_HOST)}/search?q=owls"
    assert UI["try_again"] in html
    assert f'href="{here}"' in html or f'href="{here.replace("&", "&amp;")}"' in html
    r = await proxy.get_vendor(VENDOR_HOST, "/search", method="POST", data=b"q=owls")
    html = await r.text()
    assert r.status == 503
    assert MESSAGES["store_unavailable"].title in html
    assert UI["try_again"] not in html
    assert len(vendor.requests) == seen


def test_compliance_page_for_a_vendor_left_out_of_the_run_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/compliance_cli.py:cmd_compliance — `_pages(args.page, {v.id for v in
    vendors}, …)` → `_pages(args.page, ids, …)`. A saved start page given for a vendor that
    `--vendor` left out of this run would be read by nobody: the staff member is told (exit 2,
    naming it) instead of getting a PASSED report that silently checked no page."""
    cfg = materialise(tmp_path / "cfg", ["good", "expired"])
    page = tmp_path / "start.html"
    page.write_text("<!doctype html><title>start</title><p>hello</p>", encoding="utf-8")
    code = main(
        ["compliance", "--config", str(cfg), "--vendor", "good", "--page", f"expired={page}"]
    )
    assert code == 2
    assert "no vendor 'expired' in this run" in capsys.readouterr().err


def test_compliance_without_live_or_page_adds_no_page_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/compliance_cli.py:cmd_compliance — `elif args.live:` → `else:`. An offline
    run with no saved page reports the contract and configuration checks only: no "pass --page"
    placeholder check appears in the privacy staff's report unless a live run was asked for."""
    import json

    cfg = materialise(tmp_path / "cfg", ["good"])
    assert main(["compliance", "--config", str(cfg), "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert "page.third_party" not in out
    assert "--page ID=FILE" not in out
    json.loads(out)


# --------------------------------------------------------------------------- default adapter


async def test_a_streamed_text_answer_reaches_the_patron_as_it_arrives(
    proxy: ProxyDriver, vendor: RecordingVendor
) -> None:
    """kills: proxy/vendors/base.py:VendorAdapter.expiry_peek_bytes — `return 0` →
    `return 4096`. An adapter that does not look for an expired vendor session (every one but
    shared login) lets a text answer through from its first byte: a database's streamed
    answer (an AI assistant's `text/event-stream`, a progress page) shows its first event at
    once, instead of the patron staring at nothing until 4 KiB have piled up or the stream
    ends."""
    assert (await proxy.login(CANARY.uid, CANARY.password)).status == 303
    release = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"event: answer\ndata: first\n\n")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 30)
        await resp.write(b"event: done\ndata: {}\n\n")
        await resp.write_eof()
        return resp

    vendor.routes["/assistant/stream"] = stream
    loop = asyncio.get_running_loop()
    started = loop.time()
    r = await proxy.get_vendor(VENDOR_HOST, "/assistant/stream")
    try:
        assert r.status == 200
        first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 15)
        assert b"data: first" in first
        # The vendor holds the rest back for 30 s (or until this test is done with it): the
        # first event came well before.
        assert loop.time() - started < 15
    finally:
        release.set()
        await r.read()


async def test_a_refused_library_account_page_says_when_to_come_back(
    proxy: ProxyDriver, vendor: RecordingVendor
) -> None:
    """kills: proxy/app.py:dispatch — `refused.headers["Retry-After"] = str(exc.retry_after_s)`
    → removed. While a vendor refuses the library's shared account, the patron's 503 page
    carries Retry-After with the seconds until the proxy tries the account again, so browsers,
    link checkers and the library's monitoring back off instead of hammering a refused account;
    the page names the database and nothing reaches the vendor."""
    assert (await proxy.login(CANARY.uid, CANARY.password)).status == 303
    svc = _svc(proxy)

    async def refused(*_: Any, **__: Any) -> Any:
        raise VendorAccountRefused("mutapp", retry_after_s=117)

    svc.upstream.forward = refused
    seen = len(vendor.requests)
    r = await proxy.get_vendor(VENDOR_HOST, "/article")
    html = unescape(await r.text())
    assert r.status == 503
    assert MESSAGES["vendor_account_refused"].title in html
    assert TITLE in html
    assert r.headers.get("Retry-After") == "117"
    assert len(vendor.requests) == seen


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "LOCK"])
async def test_a_method_no_vendor_takes_is_refused_before_the_vendor_sees_it(
    proxy: ProxyDriver, vendor: RecordingVendor, method: str
) -> None:
    """kills: proxy/app.py:proxy_request — `if request.method not in VENDOR_METHODS:` →
    `if False:`. A signed-in browser (or a script in a vendor page) sending TRACE, WebDAV
    PROPFIND or LOCK on a database's mapped host gets the proxy's 405 page listing the methods
    it forwards; the vendor receives nothing (TRACE would echo back the request as the vendor
    received it)."""
    assert (await proxy.login(CANARY.uid, CANARY.password)).status == 303
    seen = len(vendor.requests)
    r = await proxy.get_vendor(VENDOR_HOST, "/article", method=method)
    html = unescape(await r.text())
    assert r.status == 405
    assert MESSAGES["method_not_allowed"].title in html
    allowed = {m.strip() for m in r.headers["Allow"].split(",")}
    assert allowed == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
    assert len(vendor.requests) == seen


async def test_an_unexpected_failure_is_the_patrons_500_page_and_logged_without_detail(
    proxy: ProxyDriver, vendor: RecordingVendor, log_stream: Any
) -> None:
    """kills: proxy/app.py:dispatch — `except Exception as exc:` → `except ZeroDivisionError
    as exc:`. A bug met while answering (here the forwarder raising something unforeseen)
    gives the patron the library's own "Something went wrong" page, not aiohttp's bare
    "Server got itself in trouble"; IT gets one `internal_error` line naming the exception
    type, never its message (which could hold an address or a card number)."""
    assert (await proxy.login(CANARY.uid, CANARY.password)).status == 303
    svc = _svc(proxy)

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError(f"unforeseen for card {CANARY.uid}")

    svc.upstream.forward = broken
    r = await proxy.get_vendor(VENDOR_HOST, "/article")
    html = unescape(await r.text())
    assert r.status == 500
    assert MESSAGES["internal"].title in html
    assert "Server got itself in trouble" not in html
    logged = log_stream.getvalue()
    assert '"internal_error"' in logged and "RuntimeError" in logged
    assert CANARY.uid not in logged


async def test_two_session_cookies_while_the_store_is_down_still_get_the_conflict_page(
    proxy: ProxyDriver, vendor: RecordingVendor
) -> None:
    """kills: proxy/app.py:dispatch — `contextlib.suppress(StoreUnavailable)` around
    `end_sessions` → `contextlib.suppress(ZeroDivisionError)`. A browser carrying two session
    cookies (one planted by a page of the same site) gets no session: even when the store
    cannot end the sessions just now, the patron gets the "sign in again" page (400) and every
    copy of the cookie is deleted, not a bare 500 leaving both cookies in place; the vendor
    sees nothing."""
    name = proxy.config.server.cookie_name
    assert (await proxy.login(CANARY.uid, CANARY.password)).status == 303
    first = proxy.session_id()
    assert (await proxy.login(CANARY.uid, CANARY.password)).status == 303
    second = proxy.session_id()
    assert first and second and first != second
    svc = _svc(proxy)

    async def down(*_: Any, **__: Any) -> Any:
        raise StoreUnavailable(reason="connection refused")

    svc.sessions.end = down
    r = await proxy.get_vendor(
        VENDOR_HOST, "/a", sid="", headers={"Cookie": f"{name}={first}; {name}={second}"}
    )
    assert r.status == MESSAGES["session_conflict"].status
    assert "Please sign in again" in await r.text()
    deleted = [v for v in r.headers.getall("Set-Cookie", []) if v.startswith(f"{name}=")]
    assert deleted and all("Max-Age=0" in c for c in deleted)
    assert vendor.requests == []


async def test_own_pages_keep_the_headers_they_set_themselves(proxy: ProxyDriver) -> None:
    """kills: proxy/app.py:dispatch — `if name not in resp.headers:` → `if True:` (the
    own-page defaults overwrite what a page set). The sign-in page keeps `Referrer-Policy:
    same-origin` (its form must send its real Origin to be accepted) and a CSP whose
    form-action lets the answer's redirect go to the databases' mapped hosts; the public keys
    stay cacheable for vendors; every other own-page default still applies."""
    r = await proxy.own("GET", "/login")
    assert r.status == 200
    assert r.headers["Referrer-Policy"] == "same-origin"
    csp = r.headers["Content-Security-Policy"]
    assert "form-action 'self' " in csp and "form-action 'self';" not in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"
    r = await proxy.own("GET", "/.well-known/jwks.json")
    assert r.status == 200
    assert r.headers["Cache-Control"].startswith("public, max-age=")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
