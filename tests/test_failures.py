"""Failure behaviour: directory, store and vendor outages give clear pages, fast, and heal by themselves.

Real slapd (stopped and restarted), real redis-server (stopped and restarted), real aiohttp vendors
that misbehave on purpose. Nothing here is mocked.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.app import SERVICES
from proxy.sessions import storage_key
from proxy.web.forget import PARTS
from proxy.web.messages import MESSAGES
from tests.canary import CANARY, leaks
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

VENDOR_HOST = "www.fragile-db.test"
TITLE = "Fragile Journals Online"
LDAP_TIMEOUT_S = 1.0
VENDOR_TIMEOUT_S = 1
BIG = 200_000


async def _half_then_abort(request: web.Request) -> web.StreamResponse:
    """Promise BIG bytes, send a few, then drop the connection."""
    ctype = request.query.get("type", "application/octet-stream")
    resp = web.StreamResponse(headers={"Content-Type": ctype})
    resp.content_length = BIG
    await resp.prepare(request)
    await resp.write(b"<p>" + b"x" * 1000)
    assert request.transport is not None
    request.transport.abort()
    return resp


async def _close_before_headers(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


async def _stall(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(VENDOR_TIMEOUT_S + 3)
    return web.Response(text="too late")


@pytest.fixture
async def vendor(vendor_factory: Any) -> RecordingVendor:
    v: RecordingVendor = await vendor_factory(VENDOR_HOST)
    v.routes.update({"/half": _half_then_abort, "/slam": _close_before_headers, "/stall": _stall})
    return v


def _config(
    tmp_path: Path, port: int, slapd: Any, vendor: RecordingVendor, *, session: str, **ldap: Any
) -> Path:
    return write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path, timeout_s=LDAP_TIMEOUT_S, **ldap),
        vendors={
            "fragile": vendor_toml(
                "fragile", vendor, title=TITLE, extra=f"timeout_s = {VENDOR_TIMEOUT_S}\n"
            )
        },
        session=session,
    )


@pytest.fixture
async def proxy(
    tmp_path: Path, port: int, running_slapd: Any, vendor: RecordingVendor, proxy_factory: Any
) -> ProxyDriver:
    """A proxy on the real slapd with the memory store."""
    driver: ProxyDriver = await proxy_factory(
        _config(tmp_path, port, running_slapd, vendor, session='store = "memory"')
    )
    return driver


@pytest.fixture
async def redis_proxy(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    redis_url: str,
    redis_server: Any,
    vendor: RecordingVendor,
    proxy_factory: Any,
) -> AsyncIterator[ProxyDriver]:
    """A proxy on the real slapd and the real Redis; Redis is running again afterwards."""
    session = f'store = "redis"\nredis_url = "{redis_url}"'
    yield await proxy_factory(_config(tmp_path, port, running_slapd, vendor, session=session))
    redis_server.start()


# --------------------------------------------------------------------------- directory


async def test_logins_fail_fast_with_503_while_the_directory_is_down(
    proxy: ProxyDriver, running_slapd: Any
) -> None:
    """slapd killed: the patron sees "login service unavailable" within timeout_s + 1 s."""
    running_slapd.stop()
    started = time.monotonic()
    r = await proxy.login(CANARY.uid, CANARY.password)
    elapsed = time.monotonic() - started
    assert r.status == 503
    assert "login service is unavailable" in await r.text()
    assert r.headers["Retry-After"]
    assert elapsed < LDAP_TIMEOUT_S + 1
    assert proxy.config.server.cookie_name not in r.cookies


async def test_login_fails_fast_on_a_server_that_never_answers(
    tmp_path: Path, port: int, slapd: Any, blackhole_ldap_url: str, vendor: Any, proxy_factory: Any
) -> None:
    """A server that accepts TCP and then says nothing still gives the 503 within timeout_s + 1 s."""
    cfg = _config(
        tmp_path, port, slapd, vendor, session='store = "memory"', urls=[blackhole_ldap_url]
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    started = time.monotonic()
    r = await driver.login(CANARY.uid, CANARY.password)
    assert r.status == 503
    assert time.monotonic() - started < LDAP_TIMEOUT_S + 1


async def test_existing_sessions_keep_browsing_while_the_directory_is_down(
    proxy: ProxyDriver, running_slapd: Any, vendor: RecordingVendor
) -> None:
    """Sessions do not need the directory: a signed-in patron keeps reading."""
    assert (await proxy.login(CANARY.uid, CANARY.password)).status == 303
    running_slapd.stop()
    r = await proxy.get_vendor(VENDOR_HOST, "/still-reading")
    assert r.status == 200
    assert vendor.requests[-1].path_qs == "/still-reading"


async def test_logins_recover_by_themselves_when_the_directory_returns(
    proxy: ProxyDriver, running_slapd: Any
) -> None:
    """No restart of the proxy: the next login after slapd is back succeeds."""
    running_slapd.stop()
    assert (await proxy.login(CANARY.uid, CANARY.password)).status == 503
    running_slapd.start()
    r = await proxy.login(CANARY.uid, CANARY.password)
    assert r.status == 303


async def test_circuit_breaker_stops_hammering_a_dead_server(
    tmp_path: Path, port: int, running_slapd: Any, vendor: Any, proxy_factory: Any
) -> None:
    """With a dead first server, several logins try it once, then only after retry_after_s."""
    attempts = 0

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        writer.transport.abort()

    dead = await asyncio.start_server(refuse, "127.0.0.1", 0)
    dead_url = f"ldap://127.0.0.1:{dead.sockets[0].getsockname()[1]}"
    try:
        cfg = _config(
            tmp_path,
            port,
            running_slapd,
            vendor,
            session='store = "memory"',
            urls=[dead_url, running_slapd.url],
        )
        cfg.write_text(cfg.read_text().replace("timeout_s = ", "retry_after_s = 2\ntimeout_s = "))
        driver: ProxyDriver = await proxy_factory(cfg)
        assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
        # The first login (and a readiness ping racing it) may each try the dead server once;
        # after that it is skipped for retry_after_s, however many logins come.
        tried = attempts
        assert tried >= 1
        started = asyncio.get_running_loop().time()
        for _ in range(4):
            assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
        elapsed = asyncio.get_running_loop().time() - started
        assert attempts <= tried + int(elapsed / 2)
        await asyncio.sleep(2.2)
        before = attempts
        assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
        assert attempts >= before + 1  # tried again after the pause, so recovery would be noticed
    finally:
        dead.close()
        await dead.wait_closed()


async def test_readyz_names_the_directory_when_it_is_down(
    proxy: ProxyDriver, running_slapd: Any
) -> None:
    """/readyz reports each dependency by name, 200 when all answer, 503 naming the failing one."""
    r = await proxy.own("GET", "/readyz")
    assert r.status == 200
    assert await r.json() == {"directory": "ok", "store": "ok"}
    running_slapd.stop()
    r = await proxy.own("GET", "/readyz")
    body = await r.json()
    assert r.status == 503
    assert body["directory"] == "unavailable" and body["store"] == "ok"
    assert body["failing"] == "directory"


# --------------------------------------------------------------------------- store


async def test_store_down_gives_503_and_nothing_reaches_the_vendor(
    redis_proxy: ProxyDriver, redis_server: Any, vendor: RecordingVendor
) -> None:
    """Redis stopped: signed-in and new patrons get the store page; the vendor sees nothing."""
    assert (await redis_proxy.login(CANARY.uid, CANARY.password)).status == 303
    assert (await redis_proxy.get_vendor(VENDOR_HOST, "/before")).status == 200
    seen = len(vendor.requests)
    redis_server.stop()
    started = time.monotonic()
    r = await redis_proxy.get_vendor(VENDOR_HOST, "/during")
    assert r.status == 503
    assert "cannot check your sign-in" in await r.text()
    assert time.monotonic() - started < 3
    r = await redis_proxy.login(CANARY.uid, CANARY.password)
    assert r.status == 503  # no session can be made, so none is pretended
    r = await redis_proxy.get_vendor(VENDOR_HOST, "/forged", sid="not-a-session")
    assert r.status == 503
    assert len(vendor.requests) == seen


async def test_readyz_names_the_store_when_redis_is_down(
    redis_proxy: ProxyDriver, redis_server: Any
) -> None:
    redis_server.stop()
    r = await redis_proxy.own("GET", "/readyz")
    body = await r.json()
    assert r.status == 503
    assert body["store"] == "unavailable" and body["failing"] == "store"


async def test_service_resumes_by_itself_when_redis_returns(
    redis_proxy: ProxyDriver, redis_server: Any, vendor: RecordingVendor
) -> None:
    """Redis back (empty: it keeps nothing on disk): the old session is gone, so the patron is
    sent to sign in (fail closed), signs in and browses — without restarting the proxy."""
    assert (await redis_proxy.login(CANARY.uid, CANARY.password)).status == 303
    redis_server.stop()
    assert (await redis_proxy.get_vendor(VENDOR_HOST, "/during")).status == 503
    redis_server.start()
    assert (await redis_proxy.own("GET", "/readyz")).status == 200
    r = await redis_proxy.get_vendor(VENDOR_HOST, "/after")
    assert r.status == 302 and "/login?url=" in r.headers["Location"]
    assert (await redis_proxy.login(CANARY.uid, CANARY.password)).status == 303
    assert (await redis_proxy.get_vendor(VENDOR_HOST, "/after")).status == 200


async def test_sign_out_while_redis_is_down_still_drops_the_cookie_and_says_so(
    redis_proxy: ProxyDriver, redis_server: Any
) -> None:
    """The store cannot delete the session: the browser's cookie goes all the same (on a shared
    computer it would sign the next person in once the store is back), the cached assertions are
    forgotten, and the page says sign-out could not be confirmed and to close the browser."""
    assert (await redis_proxy.login(CANARY.uid, CANARY.password)).status == 303
    assert (await redis_proxy.get_vendor(VENDOR_HOST, "/before")).status == 200
    svc = redis_proxy.client.server.app[SERVICES]
    key = storage_key(redis_proxy.session_id())
    assert [k for k in svc.signer._cache if k[0] == key], "an assertion was signed and cached"
    redis_server.stop()
    r = await redis_proxy.own("POST", "/logout")
    html = (await r.text()).replace("&#39;", "'")
    assert r.status == 503 and r.headers["Retry-After"] == "60"
    assert MESSAGES["logout_unconfirmed"].title in html and "close the browser" in html.lower()
    assert "<code>logout_unconfirmed (503)</code>" in html
    # The session's hosts cannot be read: every configured host's storage is asked to go, and
    # the page's CSP lets those images load.
    mapped = redis_proxy.mapped(VENDOR_HOST)
    assert html.count(f'src="http://{mapped}/.weston-proxy/forget?part=') == PARTS
    assert f"http://*.proxy.localhost:{redis_proxy.port}" in re.search(
        r"img-src [^;]*", r.headers["Content-Security-Policy"]
    ).group(0)  # type: ignore[union-attr]
    cleared = r.cookies[redis_proxy.config.server.cookie_name]
    assert cleared.value == "" and cleared["max-age"] == "0"
    assert [k for k in svc.signer._cache if k[0] == key] == []


async def test_sign_out_while_redis_is_down_drops_every_copy_of_the_cookie(
    redis_proxy: ProxyDriver, redis_server: Any
) -> None:
    """From a mutation sweep of the patron's pages (the store-outage branch of sign-out with
    `several=False`). A vendor script on a mapped host wrote a second session cookie for the
    proxy's domain on the path `/logout`, beside the patron's. The store is down, so sign-out
    cannot end the sessions; the browser must then drop both cookies, or at a shared computer
    the one left names a session for the next person once the store is back. The answer
    deletes the cookie on every path the request could carry it, host-only and for the
    proxy's domain, not only the one the proxy set."""
    assert (await redis_proxy.login(CANARY.uid, CANARY.password)).status == 303
    name = redis_proxy.config.server.cookie_name
    tossed = "t" * 43
    redis_server.stop()
    r = await redis_proxy.own(
        "POST", "/logout", headers={"Cookie": f"{name}={redis_proxy.sid}; {name}={tossed}"}
    )
    assert r.status == 503
    deletions = set()
    for header in r.headers.getall("Set-Cookie"):
        if header.startswith(f"{name}=;"):
            attrs = [a.strip().lower() for a in header.split(";")[1:]]
            deletions.add(tuple(sorted(a for a in attrs if a.startswith(("domain=", "path=")))))
    public = redis_proxy.public.rsplit(":", 1)[0]
    assert ("path=/",) in deletions, deletions  # host-only, the page's own host
    assert (f"domain={public}", "path=/logout") in deletions, deletions  # the tossed copy
    assert (f"domain={public}", "path=/") in deletions, deletions  # the proxy's own


async def test_session_time_answers_json_503_while_redis_is_down(
    redis_proxy: ProxyDriver, redis_server: Any
) -> None:
    """The menu's time-out warning reads /session as JSON: a store outage is a JSON 503 with
    Retry-After, not the 401 that means the session has ended."""
    assert (await redis_proxy.login(CANARY.uid, CANARY.password)).status == 303
    redis_server.stop()
    for method in ("GET", "POST"):
        r = await redis_proxy.own(method, "/session", headers={"X-CSRF-Token": "x"})
        assert r.status == 503 and r.headers["Retry-After"] == "60", method
        assert await r.json() == {"error": "store_unavailable"}


async def test_store_failing_while_a_vendor_answers_lets_the_vendor_connection_go(
    redis_proxy: ProxyDriver, redis_server: Any, vendor: RecordingVendor
) -> None:
    """A vendor answer that sets a cookie makes the forwarder read the session again; Redis
    stops just then. The patron gets the store page, and the vendor connection is closed rather
    than held busy for ever (one leaked per such request would exhaust a worker)."""

    async def cookie_then_outage(request: web.Request) -> web.StreamResponse:
        redis_server.stop()
        resp = web.Response(text="with a cookie")
        resp.set_cookie("vsess", "v1")
        return resp

    vendor.routes["/cookie"] = cookie_then_outage
    assert (await redis_proxy.login(CANARY.uid, CANARY.password)).status == 303
    r = await redis_proxy.get_vendor(VENDOR_HOST, "/cookie")
    assert r.status == 503
    assert "cannot check your sign-in" in await r.text()
    client = redis_proxy.client.server.app[SERVICES].upstream.client
    await asyncio.sleep(0.1)
    assert client._busy == set()


# --------------------------------------------------------------------------- vendor


@pytest.mark.parametrize("ctype", ["application/octet-stream", "text/html"])
async def test_vendor_closing_mid_response_cuts_the_patron_response(
    proxy: ProxyDriver, ctype: str
) -> None:
    """A half body is never passed off as a whole one: the patron's connection breaks.

    Binary responses keep the vendor's Content-Length; rewritten HTML is chunked and lacks the
    final chunk. Either way the client knows the body is incomplete.
    """
    await proxy.login(CANARY.uid, CANARY.password)
    r = await proxy.get_vendor(VENDOR_HOST, "/half", params={"type": ctype})
    assert r.status == 200  # the headers had already gone out
    with pytest.raises(aiohttp.ClientPayloadError):
        await r.read()


async def test_proxy_stays_healthy_after_a_vendor_drops_a_response(proxy: ProxyDriver) -> None:
    await proxy.login(CANARY.uid, CANARY.password)
    r = await proxy.get_vendor(VENDOR_HOST, "/half")
    with pytest.raises(aiohttp.ClientPayloadError):
        await r.read()
    assert (await proxy.own("GET", "/healthz")).status == 200
    r = await proxy.get_vendor(VENDOR_HOST, "/fine")
    assert r.status == 200
    assert "vendor" in await r.text()


async def test_vendor_closing_before_headers_gives_502_naming_the_database(
    proxy: ProxyDriver,
) -> None:
    """The page names the database, never the patron."""
    await proxy.login(CANARY.uid, CANARY.password)
    r = await proxy.get_vendor(VENDOR_HOST, "/slam")
    body = await r.read()
    assert r.status == 502
    assert TITLE.encode() in body
    assert not leaks(body)


async def test_stalled_vendor_gives_504_within_its_timeout(proxy: ProxyDriver) -> None:
    """`timeout_s = 1` in the vendor file: 504 after about a second, not a hung patron."""
    await proxy.login(CANARY.uid, CANARY.password)
    started = time.monotonic()
    r = await proxy.get_vendor(VENDOR_HOST, "/stall")
    elapsed = time.monotonic() - started
    body = await r.read()
    assert r.status == 504
    assert TITLE.encode() in body and not leaks(body)
    assert elapsed < VENDOR_TIMEOUT_S + 1


async def test_failed_post_is_not_retried(proxy: ProxyDriver, vendor: RecordingVendor) -> None:
    """A POST the vendor drops reaches it exactly once, even over a reused pooled connection."""
    await proxy.login(CANARY.uid, CANARY.password)
    assert (await proxy.get_vendor(VENDOR_HOST, "/warm")).status == 200  # pool a connection
    r = await proxy.get_vendor(VENDOR_HOST, "/slam", method="POST", data={"order": "1"})
    assert r.status == 502
    posts = [q for q in vendor.requests if q.method == "POST"]
    assert len(posts) == 1
