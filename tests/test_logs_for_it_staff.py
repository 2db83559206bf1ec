"""What the logs say helps IT staff, and their scrubber cuts what a patron could be known by.

From a review of every failure path for patron data in logs and output (none was found): these
are the defects it did find. Every test failed before its fix.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from proxy.logs import Redact
from tests.canary import CANARY, leaks
from tests.harness import (
    ldap_directory,
    one_vendor_proxy,
    vendor_toml,
    write_config,
    write_secret,
)

# ----------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("address", "bare"),
    [("2001:db8::7", "2001:db8::7"), ("fe80::1", "fe80::1"), ("[2001:db8::1]:443", "2001:db8::1")],
)
def test_redact_cuts_compressed_ipv6_client_addresses(address: str, bare: str) -> None:
    """proxy/logs.py promises that a value that looks like an address is cut. The IPv6 pattern
    knew only the full eight-group spelling, so the usual compressed one (`::`), which is how
    every IPv6 client address is written, reached the log whole."""
    out = Redact()(None, "warning", {"event": "x", "reason": f"refused {address} for patron"})
    assert bare not in out["reason"], out["reason"]


def test_redact_cuts_url_encoded_email() -> None:
    """An e-mail address as it appears in any URL or form body (`@` as `%40`) was not cut."""
    encoded = quote(CANARY.email, safe="")
    out = Redact()(None, "warning", {"event": "x", "error": f"bad value {encoded}"})
    assert leaks(json.dumps(out).encode()) == []


# ----------------------------------------------------------------------------- live proxy


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=x-no-such-charset",
        "multipart/form-data",
        "multipart/form-data; boundary=",
    ],
)
async def test_malformed_sign_in_post_is_a_bad_request_not_an_internal_error(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
    content_type: str,
) -> None:
    """A sign-in post whose body cannot be parsed (unknown charset, multipart without a
    boundary) is the client's fault: the patron should get the 400 "bad request" page, and IT
    staff should not see an `internal_error` at level error, which tells them the proxy itself
    broke. `request.post()` raised LookupError/ValueError out of login_submit, and dispatch
    answered 500 "internal" and logged `internal_error`."""
    d, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, "www.review-db.test"
    )
    csrf, _ = await d.login_form()
    body = f"username={CANARY.uid}&password={quote(CANARY.password)}&csrf={csrf}".encode()
    r = await d.client.post(
        "/login",
        data=body,
        headers={"Host": d.public, "Content-Type": content_type},
        allow_redirects=False,
    )
    text = await r.text()
    logged = log_stream.getvalue()
    assert leaks(logged.encode()) == []
    assert r.status == 400, r.status
    assert leaks(text.encode(), ()) == []
    events = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert not [e for e in events if e.get("event") == "internal_error"], events


def _ldaps_directory(slapd: Any, root: Path, url: str, ca_file: Path) -> str:
    write_secret(root / "secrets" / "ldap-bind-password", slapd.bind_password)
    return f"""\
kind = "ldap"
urls = ["{url}"]
bind_dn = "{slapd.bind_dn}"
bind_password_file = "secrets/ldap-bind-password"
base_dn = "{slapd.patrons_base}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
eligible_filter = "(!(description=expired))"
timeout_s = 1.0
ca_file = "{ca_file}"
"""


async def _ldap_failure_lines(
    tmp_path: Path,
    port: int,
    slapd: Any,
    url: str,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
) -> list[dict[str, Any]]:
    v = await vendor_factory("www.review-db.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=_ldaps_directory(slapd, tmp_path, url, slapd.untrusted_ca_file),
        vendors={"one": vendor_toml("one", v)},
    )
    d = await proxy_factory(cfg)
    r = await d.login(CANARY.uid, CANARY.password)
    assert r.status == 503
    logged = log_stream.getvalue()
    assert leaks(logged.encode()) == []
    return [
        json.loads(line)
        for line in logged.splitlines()
        if line.startswith("{") and json.loads(line).get("event") == "ldap_server_failed"
    ]


async def test_ldap_certificate_failure_is_told_apart_from_a_server_that_is_down(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
) -> None:
    """The directory's LDAPS certificate is not signed by the configured ca_file (an expired or
    replaced certificate, a wrong CA file): every sign-in fails with 503, and the only log line was
    IT staff get is `ldap_server_failed error=LDAPSocketOpenError`, word for word what a
    stopped slapd or a closed port gives. Vendor failures say `tls_certificate` with
    OpenSSL's reason (README "Failures"); the directory's should say it was the certificate,
    or IT go looking for a dead server that is up."""
    lines = await _ldap_failure_lines(
        tmp_path,
        port,
        running_slapd,
        running_slapd.ldaps_url,
        vendor_factory,
        proxy_factory,
        log_stream,
    )
    assert lines, "a failed directory server is logged"
    told = " ".join(f"{e.get('error', '')} {e.get('reason', '')}" for e in lines).lower()
    assert "certificate" in told, lines


async def test_a_refused_service_account_bind_is_named_in_the_log(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
) -> None:
    """The service account's password in bind_password_file is wrong (rotated on the directory,
    not in the proxy): every sign-in fails with 503, and the log says only
    `ldap_server_failed error=_ServerFailed`, a private class name shared by "StartTLS refused",
    "the service account bind was refused" and any unexpected result code. The worker has the
    fixed, patron-free text ("the service account bind was refused") and drops it
    (proxy/ldap_directory.py: _Worker._run keeps only `type(exc).__name__`)."""
    v = await vendor_factory("www.review-db.test")
    directory = ldap_directory(running_slapd, tmp_path)
    write_secret(tmp_path / "secrets" / "ldap-bind-password", "not-the-service-password")
    cfg = write_config(
        tmp_path, port=port, directory=directory, vendors={"one": vendor_toml("one", v)}
    )
    d = await proxy_factory(cfg)
    r = await d.login(CANARY.uid, CANARY.password)
    assert r.status == 503
    logged = log_stream.getvalue()
    assert leaks(logged.encode()) == []
    lines = [
        json.loads(line)
        for line in logged.splitlines()
        if line.startswith("{") and json.loads(line).get("event") == "ldap_server_failed"
    ]
    assert lines, "a failed directory server is logged"
    told = " ".join(f"{e.get('error', '')} {e.get('reason', '')}" for e in lines).lower()
    assert "service account" in told or "bind" in told, lines


async def test_vendor_failed_says_which_protocol_failure_it_was(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
) -> None:
    """A vendor that sends a garbled response head, one whose head is too large and one that
    closes the connection before answering are three different calls to the vendor's support.
    The log line `vendor_failed` is meant to say what failed ("protocol" with the error's type,
    proxy/errors.py failure_kind), but all three read `error=protocol
    reason=VendorConnectionError`: the type is the client's own wrapper (proxy/vendor_http.py
    raises VendorConnectionError with no cause), so the reason never tells them apart."""
    d, vendor = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, "www.review-db.test"
    )

    async def garbled(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello")
        request.transport.close()
        return web.Response()

    async def huge_head(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.write(
            b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 200_000 + b"\r\n\r\nhello"
        )
        request.transport.close()
        return web.Response()

    async def slam(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    vendor.routes.update({"/garbled": garbled, "/huge": huge_head, "/slam": slam})
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    told = []
    for path in ("/garbled", "/huge", "/slam"):
        before = len(log_stream.getvalue())
        r = await d.get_vendor("www.review-db.test", f"{path}?q={CANARY.surname}")
        assert r.status == 502
        lines = [
            json.loads(line)
            for line in log_stream.getvalue()[before:].splitlines()
            if line.startswith("{") and json.loads(line).get("event") == "vendor_failed"
        ]
        assert len(lines) == 1, lines
        told.append((lines[0].get("error"), lines[0].get("reason")))
    assert leaks(log_stream.getvalue().encode()) == []
    assert len(set(told)) == 3, told
