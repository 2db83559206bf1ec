"""The session cookie: read from the Cookie header as aiohttp reads one; never taken when the
browser sends two different ones (cookie tossing by a page on one of the proxy's subdomains);
the sign-in form refused when a browser says it was posted from another origin.

The browser attacks themselves are in tests/test_session_cookie_tossing.py (Chromium); here the
same rules over plain HTTP, against the real proxy and slapd.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import make_mocked_request

from proxy.app import SERVICES
from proxy.web.session_cookie import ids_in
from tests.canary import CANARY, WREN
from tests.harness import ProxyDriver, one_vendor_proxy

NAME = "weston_session"
HOST = "www.vendor-one.test"


def aiohttp_reads(header: str) -> str | None:
    return make_mocked_request("GET", "/", headers={"Cookie": header}).cookies.get(NAME)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "weston_session=abc",
        "a=1; weston_session=abc; b=2",
        "xweston_session=no; weston_sessionx=no",
        "a=1;weston_session=tight;b=2",
        "  weston_session = spaced ; c=3",
        'weston_session="quoted\\"value"',
        "weston_session=a=b",
        "weston_session=same; weston_session=same",
    ],
)
def test_one_value_reads_as_aiohttp_reads_it(header: str) -> None:
    assert ids_in(header, NAME) == ([aiohttp_reads(header)] if aiohttp_reads(header) else [])


def test_agrees_with_aiohttp_on_generated_headers_with_one_value() -> None:
    rng = random.Random(7)
    names = ["a", "b", "weston_csrf", "xweston_session", "weston_sessio"]
    for _ in range(2000):
        parts = []
        for _ in range(rng.randint(0, 5)):
            value = "".join(rng.choice("abcXYZ019-_") for _ in range(rng.randint(1, 12)))
            parts.append(f"{rng.choice(names)}={value}")
        parts.insert(rng.randint(0, len(parts)), f"{NAME}={rng.choice(['s1', 's-2_X'])}")
        header = rng.choice(["; ", ";"]).join(parts)
        assert ids_in(header, NAME) == [aiohttp_reads(header)], header


def test_two_different_values_are_both_named() -> None:
    assert ids_in("weston_session=first; a=1; weston_session=second", NAME) == [
        "first",
        "second",
    ]


async def _two_sessions(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, Any, str, str]:
    driver, vendor = await one_vendor_proxy(
        tmp_path, port, slapd, vendor_factory, proxy_factory, HOST
    )
    assert (await driver.login(WREN.uid, WREN.password)).status == 303
    other = driver.session_id()
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    mine = driver.session_id()
    assert other and mine and other != mine
    return driver, vendor, mine, other


def _deletions(r: Any) -> list[str]:
    return [c for c in r.headers.getall("Set-Cookie", []) if c.startswith(f"{NAME}=;")]


async def test_two_session_cookies_get_no_session_and_every_copy_deleted(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    driver, vendor, mine, other = await _two_sessions(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    r = await driver.get_vendor(
        HOST, "/a/b", sid="", headers={"Cookie": f"{NAME}={other}; {NAME}={mine}"}
    )
    assert r.status == 400
    assert "Please sign in again" in await r.text()
    assert vendor.requests == []
    svc = driver.client.app[SERVICES]
    assert await svc.sessions.load(mine) is None and await svc.sessions.load(other) is None
    deleted = _deletions(r)
    for path in ("/", "/a", "/a/", "/a/b"):  # every cookie path that path-matches /a/b
        assert any(c.endswith(f"; Path={path}") and "Domain" not in c for c in deleted), path
        assert any(f"; Domain=proxy.localhost; Path={path}" in c for c in deleted), path
    assert all("Max-Age=0" in c for c in deleted)
    metrics = await (await driver.own("GET", "/metrics")).text()
    assert 'weston_proxy_denials_total{reason="session_conflict"} 1.0' in metrics


async def test_sign_out_with_two_session_cookies_ends_both(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    driver, _, mine, other = await _two_sessions(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    r = await driver.own("POST", "/logout", headers={"Cookie": f"{NAME}={mine}; {NAME}={other}"})
    assert r.status == 200 and "You are signed out" in await r.text()
    svc = driver.client.app[SERVICES]
    assert await svc.sessions.load(mine) is None and await svc.sessions.load(other) is None
    assert any("; Domain=proxy.localhost; Path=/" in c for c in _deletions(r))


async def test_signing_in_with_two_session_cookies_deletes_them_before_the_new_one(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Over a raw socket: an HTTP client library would fold the two cookies into one."""
    driver, _, mine, other = await _two_sessions(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    csrf, _ = await driver.login_form()
    body = urlencode({"username": CANARY.uid, "password": CANARY.password, "csrf": csrf})
    reader, writer = await asyncio.open_connection("127.0.0.1", driver.port)
    writer.write(
        (
            f"POST /login HTTP/1.1\r\nHost: {driver.public}\r\nConnection: close\r\n"
            f"Cookie: {NAME}={mine}; weston_csrf={csrf}; {NAME}={other}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
    )
    head = (await reader.read()).split(b"\r\n\r\n", 1)[0].decode()
    writer.close()
    assert head.startswith("HTTP/1.1 303")
    cookies = [
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")
        if line.lower().startswith("set-cookie:") and f"{NAME}=" in line
    ]
    svc = driver.client.app[SERVICES]
    assert await svc.sessions.load(mine) is None and await svc.sessions.load(other) is None
    assert any(c.startswith(f"{NAME}=;") and "Domain=proxy.localhost; Path=/" in c for c in cookies)
    new = cookies[-1].split(";", 1)[0].split("=", 1)[1]
    assert new and new not in (mine, other), "the new cookie must come last"
    assert await svc.sessions.load(new) is not None


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"Sec-Fetch-Site": "same-site"}, True),  # a vendor page on a subdomain
        ({"Sec-Fetch-Site": "cross-site"}, True),
        ({"Origin": "http://www-vendor--one-test.proxy.localhost:{port}"}, True),
        ({"Origin": "https://elsewhere.test"}, True),
        ({"Origin": "null"}, True),  # no fetch metadata: a no-referrer page elsewhere
        ({"Sec-Fetch-Site": "same-origin", "Origin": "null"}, False),  # an older branding copy
        ({"Sec-Fetch-Site": "none"}, False),
        ({"Origin": "http://proxy.localhost:{port}"}, False),
        ({}, False),  # a client that says nothing: the CSRF token decides
    ],
)
async def test_sign_in_form_posted_from_another_origin_is_refused(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    headers: dict[str, str],
    refused: bool,
) -> None:
    driver, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, HOST
    )
    csrf, _ = await driver.login_form()
    sent = {k: v.format(port=port) for k, v in headers.items()}
    r = await driver.client.post(
        "/login",
        data={"username": CANARY.uid, "password": CANARY.password, "url": "", "csrf": csrf},
        headers={"Host": driver.public, **sent},
        allow_redirects=False,
    )
    if refused:
        assert r.status == 403
        assert "This form did not come from the library" in await r.text()
        assert NAME not in r.cookies
    else:
        assert r.status == 303 and NAME in r.cookies


async def test_the_sign_in_page_lets_its_form_send_its_origin(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A no-referrer page posts `Origin: null`: the sign-in page is same-origin instead (which
    still sends no Referer to any other host), header and meta tag alike."""
    driver, _ = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, HOST
    )
    r = await driver.client.get("/login", headers={"Host": driver.public})
    assert r.headers["Referrer-Policy"] == "same-origin"
    assert '<meta name="referrer" content="same-origin">' in await r.text()
    menu = await driver.client.get("/privacy", headers={"Host": driver.public})
    assert menu.headers["Referrer-Policy"] == "no-referrer"
    assert '<meta name="referrer" content="no-referrer">' in await menu.text()


def test_deletion_paths_are_every_cookie_path_that_matches_the_raw_path() -> None:
    from proxy.web.session_cookie import _paths

    assert _paths("/a//b%20c?x=1") == ["/", "/a", "/a/", "/a//", "/a//b%20c"]
    assert _paths("/") == ["/"]
    assert _paths("/r%C3%A9sultats/") == ["/", "/r%C3%A9sultats", "/r%C3%A9sultats/"]
