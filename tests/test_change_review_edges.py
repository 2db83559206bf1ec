"""A fresh read of one day's change (62d1607..): what it broke, and what it left half done.

From a review of the change as its maintainer: an import summary still printing a password that
holds / ? #, a charset lost when a page had two Content-Type headers of one type, a garbled
multipart sign-in post and a corrupt compressed upload answered 500, and a script rewritten only
for <script> requests served from cache to one unrewritten. Every test failed before its fix.

Real slapd, a signed-in synthetic canary patron, the real proxy, loopback vendors that answer with
exact bytes, and headless Chromium where what the browser does decides.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.ezproxy import run_import
from tests.canary import CANARY
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    ldap_directory,
    one_vendor_proxy,
    vendor_toml,
    write_config,
)
from tests.test_vendor_body_edges import WWW, _answer, chromium, raw_vendor, setup  # noqa: F401

HOST = "www.review-db.test"


# ------------------------------------------------------------------ import-ezproxy summary


@pytest.mark.parametrize("password", ["S3/cretPw", "S3c#retPw", "S3c?retPw"])
def test_a_skipped_stanza_never_prints_any_of_a_url_password(tmp_path: Path, password: str) -> None:
    """`_shown` (ezproxy_stanza) was added so a stanza skipped for a URL that does not parse no
    longer prints the URL's password. A password holding `/`, `#` or `?` (common in generated
    passwords) makes urlsplit cut the authority early, so the userinfo regex no longer matches:
    the summary printed `https://acct:S3/cretPw@db.example.com/login` whole, or
    `https://acct:S3c`, and the ValueError's own text (`... integer value as 'S3c'`), printed
    after it, quotes the start of the password too. The summary must carry no part of it."""
    cfg = tmp_path / "config.txt"
    cfg.write_text(
        "Title Good\nURL https://good.example.org/\nHost good.example.org\n"
        f"Title Shared\nURL https://acct:{password}@db.example.com/login\n"
    )
    buf = io.StringIO()
    run_import(cfg, tmp_path / "out", stdout=buf)
    text = buf.getvalue()
    assert "Shared" in text
    assert password[:3] not in text, text
    assert "acct" not in text, text


# ------------------------------------------------------------- two Content-Type headers


async def test_charset_of_an_earlier_content_type_of_the_same_type_is_kept(
    raw_vendor: Any,  # noqa: F811
) -> None:
    """Chromium reads every Content-Type header; a later one of the same type without a charset
    keeps the earlier one's charset (HttpUtil::ParseContentType), so `text/html; charset=utf-8`
    then a front server's `text/html` is a UTF-8 page (checked here straight against the
    vendor). The change (`forward.Upstream._relay`, `vendor_http.browser_content_type`) now sends
    the browser only the last value, `text/html`, with no charset: a page with no
    `<meta charset>` is then shown as windows-1252, every accented title garbled (`CafÃ©`)."""
    driver, answer = raw_vendor
    page = (
        "<!DOCTYPE html><html><head><title>Caf\u00e9</title></head>"
        '<body><p id="t">Caf\u00e9 cr\u00e8me</p>'
        '<a href="http://www.vendor-one.test/article/1">Article</a></body></html>'
    ).encode()
    answer["raw"] = _answer(
        b"Content-Type: text/html; charset=utf-8\r\nContent-Type: text/html\r\n", page
    )
    shown: dict[str, Any] = {}
    async with chromium(driver) as pg:
        await pg.goto(f"http://127.0.0.1:{answer['port'].decode()}/direct")
        shown["direct"] = await pg.evaluate("() => document.characterSet")
        resp = await pg.goto(f"http://{driver.mapped(WWW)}/results")
        assert resp is not None
        shown["proxied"] = await pg.evaluate("() => document.characterSet")
        shown["text"] = await pg.evaluate("() => document.getElementById('t').textContent")
    assert shown["direct"] == "UTF-8"
    assert shown["proxied"] == "UTF-8"
    assert shown["text"] == "Caf\u00e9 cr\u00e8me"


# ------------------------------------------------------------------- sign-in post parse errors


async def test_sign_in_post_with_a_garbled_multipart_part_header_is_a_bad_request(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
) -> None:
    """The change made an unreadable sign-in post a 400 by catching ValueError and LookupError
    around `request.post()` (web/pages.py login_submit). A multipart body one of whose parts has
    a header line with no colon makes aiohttp raise `http_exceptions.InvalidHeader`, which is
    neither (a BadHttpMessage): it still escapes login_submit, the patron gets the 500
    "internal" page and IT staff an `internal_error` at level error for a client's mistake."""
    d, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, "www.review-db.test"
    )
    csrf, _ = await d.login_form()
    body = (
        b'--xx\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n'
        + csrf.encode()
        + b"\r\n--xx\r\nno colon in this header line\r\n\r\nabc\r\n--xx--\r\n"
    )
    r = await d.client.post(
        "/login",
        data=body,
        headers={"Host": d.public, "Content-Type": "multipart/form-data; boundary=xx"},
        allow_redirects=False,
    )
    await r.text()
    logged = log_stream.getvalue()
    assert r.status == 400, r.status
    events = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert not [e for e in events if e.get("event") == "internal_error"], events


# ------------------------------------------------------------------- compressed uploads


@pytest.fixture
async def one_vendor(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor]:
    vendor = await vendor_factory(HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    return driver, vendor


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
async def test_a_corrupt_compressed_upload_is_a_bad_request(
    one_vendor: Any, log_stream: io.StringIO, coding: str
) -> None:
    """Compressed uploads are now read whole, decoded by aiohttp's server
    (forward._read_bounded). A body that says `Content-Encoding: gzip` but is not is the
    client's mistake: it should be a 400 and reach no vendor, not a 500 "internal" page with an
    `internal_error` logged for IT staff."""
    driver, vendor = one_vendor
    r = await driver.get_vendor(
        HOST,
        "/collect",
        method="POST",
        data=b"this is not gzip data at all" * 10,
        headers={"Content-Type": "application/json", "Content-Encoding": coding},
    )
    await r.read()
    assert [x for x in vendor.requests if x.method == "POST"] == []
    assert r.status == 400, r.status
    logged = log_stream.getvalue()
    events = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert not [e for e in events if e.get("event") == "internal_error"], events


# ------------------------------------------------------------- scripts by Sec-Fetch-Dest


async def test_a_bundle_rewritten_only_for_script_requests_is_not_run_from_cache_unrewritten(
    setup: Any,  # noqa: F811
) -> None:
    """The change rewrites a body of a non-script type (S3's `binary/octet-stream`) only when
    the request says `Sec-Fetch-Dest: script` (forward._runs_as_script), so one URL now has two
    answers, but neither says `Vary: Sec-Fetch-Dest`, and the vendor's own Cache-Control goes
    on. A page that first fetch()es its bundle (a loader, a service worker precaching it) gets
    the unrewritten bytes into the HTTP cache; the `<script src>` that follows is served from
    that cache and runs the vendor's real URLs: its calls leave the proxy (P3)."""
    driver, vendor = setup
    js = b"window.apiBase = 'https://www.vendor-one.test/api/v2';\n"

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<!doctype html><html><head><title>x</title></head><body>results<script>"
            "fetch('/bundle.js').then(r => r.text()).then(() => {"
            " const s = document.createElement('script'); s.src = '/bundle.js';"
            " s.onload = () => { document.title = 'ran'; }; document.body.appendChild(s); });"
            "</script></body></html>",
            content_type="text/html",
        )

    async def bundle(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=js,
            headers={"Content-Type": "binary/octet-stream", "Cache-Control": "max-age=3600"},
        )

    vendor.routes["/results"] = page
    vendor.routes["/bundle.js"] = bundle
    async with chromium(driver) as pg:
        await pg.goto(f"http://{driver.mapped(WWW)}/results")
        await pg.wait_for_function("() => document.title === 'ran'", timeout=10_000)
        api = await pg.evaluate("() => window.apiBase || null")
    assert api is not None, "Chromium did not run the script"
    assert WWW not in api, api
    assert driver.mapped(WWW).split(":")[0] in api


def test_a_password_with_a_slash_that_parses_as_a_port_is_not_taken_for_the_host(
    tmp_path: Path,
) -> None:
    """`https://acct:1234/5@db.example.com/` parses: host `acct`, port 1234, and the rest of
    the password in the path. Such a stanza is skipped, naming no part of it; an @ in a path
    (no account before it) is an ordinary URL."""
    cfg = tmp_path / "config.txt"
    cfg.write_text(
        "Title Good\nURL https://good.example.org/people/@weston\nHost good.example.org\n"
        "Title Numeric\nURL https://acct:1234/5678@db.example.com/login\n"
    )
    out = io.StringIO()
    run_import(cfg, tmp_path / "out", stdout=out)
    text = out.getvalue()
    assert "Numeric" in text and "an @ outside its host" in text, text
    for part in ("acct", "1234", "5678"):
        assert part not in text, text
    written = "".join(p.read_text() for p in (tmp_path / "out").glob("*.toml"))
    assert "5678" not in written and "people/@weston" in written
