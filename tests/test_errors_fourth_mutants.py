"""From a fourth mutation sweep (2 December 2026) of errors: proxy/redis_health.py,
proxy/errors.py and proxy/compliance_stub.py. 28 of 50 mutants survived the suite (7 of 16 in
redis_health, 9 of 16 in errors, 12 of 18 in compliance_stub); 7 of those are equivalent and 8
are left without a test. Each test here kills one or more of the other 13: it failed with its
mutant and passes without; its docstring names the mutant and the behaviour it proves."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web
from redis.exceptions import AuthenticationWrongNumberOfArgsError

from proxy.compliance_stub import Browser, CanaryPatron, live_vendor
from proxy.config import Eligibility, Limits, VendorConfig
from proxy.errors import StoreUnavailable, VendorUnavailable, failure_kind, network_failure
from proxy.redis_health import failure_reason
from proxy.redis_store import RedisStore, _store_errors
from tests import test_store_mutants
from tests.fixtures_ldap import make_tls_files
from tests.test_shared_login_refusals import HOST, REFUSED_ROUTES, shared_login_proxy
from tests.test_store_mutants import SECRET
from tests.test_vendor_failures import _log_events

store = test_store_mutants.store  # the same fixture: a RedisStore on the suite's real Redis


# ------------------------------------------------------------------ proxy/redis_health.py


def test_auth_sent_to_a_redis_without_acl_users_is_named_authentication() -> None:
    """kills: proxy/redis_health.py:failure_reason — `isinstance(exc, AuthenticationError |
    AuthenticationWrongNumberOfArgsError)` → `isinstance(exc, AuthenticationError)`.

    A redis_url with a user name, pointed at a Redis that has no ACL users (before 6.0, or an
    AUTH that takes one argument), is refused with "wrong number of arguments for 'auth'". It
    is a password problem: IT staff must read "authentication" on /readyz and in the log, not
    a vague "error reply" that sends them looking at the proxy's own commands."""
    refused = AuthenticationWrongNumberOfArgsError("wrong number of arguments for 'auth' command")
    assert failure_reason(refused) == "authentication"


async def test_an_empty_error_reply_from_redis_is_store_unavailable_not_a_crash(
    store: RedisStore,
) -> None:
    """kills: proxy/redis_health.py:failure_reason — `words[0] if words else ""` → `words[0]`.

    Redis can answer with an empty error (a script's `redis.error_reply('')`, a module): the
    store must still fail closed with a reason staff can read ("error reply"), not raise an
    IndexError out of the error handler (an internal error instead of the store-down page)."""
    with pytest.raises(StoreUnavailable) as caught, _store_errors():
        await store._redis.eval("return redis.error_reply('')", 0)
    assert caught.value.reason == "error reply"


async def test_an_os_error_below_the_client_is_a_failed_connection_for_it_staff(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kills: proxy/redis_health.py:failure_reason — `isinstance(exc, RedisConnectionError |
    OSError)` → `isinstance(exc, RedisConnectionError)`.

    An OSError redis-py does not wrap (out of file descriptors, a socket call refused by the
    system) means the proxy could not talk to Redis: the reason is "connection failed", which
    sends staff to the host and the network, not the bare "error" kept for what is unknown."""

    async def broken(*_: object, **__: object) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(store._redis, "get", broken)
    with pytest.raises(StoreUnavailable) as caught:
        await store.get("x" * 43)
    assert caught.value.reason == "connection failed"


async def test_a_server_that_hangs_up_on_the_store_is_a_failed_connection() -> None:
    """kills: proxy/redis_health.py:failure_reason — `return "connection failed"` →
    `return "error"`.

    A redis_url pointing at something that accepts and hangs up (a wrong port, a proxy in
    front of Redis that lost it) gives redis-py's "connection closed by server" with no socket
    error under it. IT staff must read "connection failed" (check the address and what listens
    there), not a bare "error"."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    listening = server.sockets[0].getsockname()[1]
    backend = RedisStore(url=f"redis://127.0.0.1:{listening}/0", key=SECRET)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await backend.get("x" * 43)
    finally:
        await backend.close()
        server.close()
        await server.wait_closed()
    assert caught.value.reason == "connection failed"


# ------------------------------------------------------------------ proxy/errors.py


async def _handshake_failure(tmp_path: Path, tls_server: bool) -> ssl.SSLError:
    """What a real TLS handshake from the default (system-trust) client context raises against
    a loopback server: one with a certificate of a throwaway CA, or one speaking plain text."""
    server_tls: ssl.SSLContext | None = None
    if tls_server:
        _, cert_file, key_file, _ = make_tls_files(tmp_path, ("www.tlsfail.test",))
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert_file, key_file)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not tls_server:
            await reader.read(100)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_tls)
    listening = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ssl.SSLError) as caught:
            await asyncio.open_connection(
                "127.0.0.1",
                listening,
                ssl=ssl.create_default_context(),
                server_hostname="www.tlsfail.test",
            )
    finally:
        server.close()
    return caught.value


async def test_a_certificate_reason_rebuilt_from_its_text_is_openssls_words_exactly(
    tmp_path: Path,
) -> None:
    """kills: proxy/errors.py:network_failure — `reason = text.group(1).strip(" ,-")` →
    `reason = text.group(1)`.

    ldap3 rebuilds the certificate error it met from its text, losing `verify_message`; the
    reason is then read from "certificate verify failed: <reason> (_ssl.c:…)". IT staff (the
    log, `ldap_server_failed`) must see OpenSSL's words exactly as for a vendor ("unable to get
    local issuer certificate"), not with the space before "(" left on: a reason that differs
    by a trailing space splits one failure into two in log searches and alerts."""
    met = await _handshake_failure(tmp_path, tls_server=True)
    assert isinstance(met, ssl.SSLCertVerificationError) and met.verify_message
    rebuilt = type(met)(str(met))  # as ldap3 raises it
    assert network_failure([rebuilt]) == ("tls_certificate", met.verify_message)


async def test_tls_spoken_to_a_plain_text_port_is_named_with_openssls_reason(
    tmp_path: Path,
) -> None:
    """kills: proxy/errors.py:network_failure — `return "tls", str(getattr(tls, "reason", "")
    or "")` → `return "tls", ""`.

    A vendor configured as https:// whose port speaks plain HTTP (or a TLS version the proxy
    refuses) fails the handshake. The log's reason carries OpenSSL's fixed word for it
    ("WRONG_VERSION_NUMBER"): IT staff can tell a wrong port from a certificate problem."""
    met = await _handshake_failure(tmp_path, tls_server=False)
    assert not isinstance(met, ssl.SSLCertVerificationError) and met.reason
    failure = VendorUnavailable("v")
    failure.__cause__ = met
    assert failure_kind(failure) == ("tls", met.reason)


async def test_a_shared_login_answered_500_is_logged_and_counted_with_its_status(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: Any,
) -> None:
    """kills: proxy/errors.py:failure_kind — `return "login_status", str(exc.status)` →
    `return "login_status", ""`.

    A shared-login vendor whose login URL answers 500 gives the patron the vendor-failure page.
    IT staff see why in the `vendor_failed` log line (error "login_status", reason "500": the
    vendor's login broke, not the library's account) and in
    weston_proxy_vendor_failures_total{kind="login_status"}."""

    async def login(request: web.Request) -> web.StreamResponse:
        await request.post()
        return web.Response(status=500, text="<p>Internal error</p>", content_type="text/html")

    routes = {**REFUSED_ROUTES, "/account/login": login}
    driver, _ = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, routes
    )
    r = await driver.get_vendor(HOST, "/p")
    await r.read()
    assert r.status == 502
    failed = [e for e in _log_events(log_stream) if e.get("event") == "vendor_failed"]
    assert [(e.get("vendor"), e.get("error"), e.get("reason")) for e in failed] == [
        ("rv", "login_status", "500")
    ]
    text = await (await driver.own("GET", "/metrics")).text()
    assert 'weston_proxy_vendor_failures_total{kind="login_status",vendor="rv"} 1.0' in text


# ------------------------------------------------------------------ proxy/compliance_stub.py


def _restricted_vendor(**kw: Any) -> VendorConfig:
    return VendorConfig(
        id="one",
        title="One",
        origin="https://www.vendor-one.test",
        hosts=("www.vendor-one.test",),
        start_url="https://www.vendor-one.test/start",
        **kw,
    )


def test_the_live_check_signs_in_the_canary_to_a_database_kept_to_one_group(
    tmp_path: Path,
) -> None:
    """kills: proxy/compliance_stub.py:live_vendor — `eligibility=Eligibility()` →
    `eligibility=v.eligibility`.

    A database the library keeps to one patron group (staff, graduate students) is checked
    like every other: the run's generated canary patron is in no group, so the live vendor
    drops the rule. Kept, the canary's sign-in is refused and the database's transmission
    checks never run."""
    v = _restricted_vendor(eligibility=Eligibility(groups=("staff",), ldap_filter="(ou=staff)"))
    assert live_vendor(v, 9, tmp_path).eligibility == Eligibility()


def test_the_live_check_is_not_stopped_by_the_databases_own_limits(tmp_path: Path) -> None:
    """kills: proxy/compliance_stub.py:live_vendor — `limits=Limits()` → `limits=v.limits`.

    A database with per-session limits (a few requests a minute, no uploads) is still checked
    end to end: the scripted visit (sign-in, search, form post, redirect, revisit) would
    otherwise be cut off with 429 or a refused form body before it proved anything."""
    v = _restricted_vendor(limits=Limits(requests_per_minute=3, max_upload_bytes=0))
    assert live_vendor(v, 9, tmp_path).limits == Limits()


def _browser() -> Browser:
    config: Any = SimpleNamespace(server=SimpleNamespace(cookie_name="weston_session"))
    return Browser(http=cast(Any, None), config=config, patron=CanaryPatron.generate())


def test_the_scripted_browser_claims_a_forwarded_address_the_proxy_must_strip() -> None:
    """kills: proxy/compliance_stub.py:Browser._headers — the `X-Forwarded-For` header dropped.

    The live run proves the proxy never passes on where a patron connects from: the scripted
    browser claims an address in X-Forwarded-For (as one behind a proxy would), and the header
    check fails if it reaches the vendor. Not sent, that check passes without proving it."""
    b = _browser()
    assert b._headers("www.vendor-one.test")["X-Forwarded-For"] == b.patron.ip


def test_the_scripted_browser_sends_the_page_it_came_from_as_referer() -> None:
    """kills: proxy/compliance_stub.py:Browser._headers — `h["Referer"] = self.referer` →
    `pass`.

    A patron's browser names the page it came from (a proxied URL with the search in it); the
    live header check proves the proxy cuts it to an origin before the vendor sees it. A
    scripted browser that never sends one lets a proxy that forwards full Referers pass."""
    b = _browser()
    b.referer = "https://www-vendor-one-test.proxy.example/search?q=canary"
    assert b._headers("www.vendor-one.test")["Referer"] == b.referer
