"""What IT staff and patrons see when a vendor, a patron's connection or the proxy's own start
fails: the vendor failure logged and counted by kind, a vendor cookie or download name in
Latin-1, a stalled request body, a key directory or secret file that cannot be written.

Real slapd, real aiohttp or raw asyncio vendors on 127.0.0.1, the real proxy through the harness
(or `python -m proxy serve` where start-up itself is the subject).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.errors import VendorError, VendorTimeout, VendorUnavailable, failure_kind
from tests import ports
from tests.canary import CANARY
from tests.fixtures_ldap import make_tls_files
from tests.harness import ProxyDriver, ldap_directory, vendor_toml, write_config

ROOT = Path(__file__).resolve().parent.parent
HOST = "www.outage-db.test"

Reply = Callable[[int, bytes], Awaitable[bytes]]


def _config(
    tmp_path: Path, port: int, slapd: Any, vendors: dict[str, str], *, extra: str = ""
) -> Path:
    return write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors=vendors,
        extra=extra,
    )


def _vendor_file(vendor_id: str, origin: str, host: str, vendor_port: int) -> str:
    return textwrap.dedent(
        f"""\
        id = "{vendor_id}"
        title = "{vendor_id.title()} Journals"
        origin = "{origin}"
        hosts = ["{host}"]
        auth = "ip"
        connect_to = "127.0.0.1:{vendor_port}"
        """
    )


async def _raw_vendor(
    reply: Reply, ssl_context: ssl.SSLContext | None = None
) -> tuple[asyncio.Server, int, list[bytes]]:
    """A loopback vendor that answers each request head with the bytes `reply` gives (keep-alive)."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    return
                seen.append(head)
                writer.write(await reply(len(seen), head))
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ssl_context)
    return server, server.sockets[0].getsockname()[1], seen


async def _signed_in_behind_raw_vendor(
    reply: Reply, tmp_path: Path, port: int, slapd: Any, proxy_factory: Any
) -> tuple[asyncio.Server, ProxyDriver, list[bytes]]:
    """A raw vendor at www.latin-db.test, the proxy in front of it, a patron signed in."""
    server, vendor_port, seen = await _raw_vendor(reply)
    vendor = _vendor_file("latin", "http://www.latin-db.test", "www.latin-db.test", vendor_port)
    driver: ProxyDriver = await proxy_factory(_config(tmp_path, port, slapd, {"latin": vendor}))
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    return server, driver, seen


def _log_events(log_stream: Any) -> list[dict[str, Any]]:
    events = []
    for line in log_stream.getvalue().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") != "library_log":
            events.append(event)
    return events


# --------------------------------------------------------------------------- vendor failures


async def test_vendor_with_an_untrusted_certificate_is_logged_for_it_staff(
    tmp_path: Path, port: int, running_slapd: Any, proxy_factory: Any, log_stream: Any
) -> None:
    """A vendor's TLS certificate does not verify (self-signed, expired, wrong CA). The patron
    gets the 502 page naming the database, and the log says which vendor failed and that its
    certificate was refused, with OpenSSL's reason: IT staff can tell "the vendor's certificate
    is broken" (call the vendor) from "the vendor is down" (wait). Before, nothing was logged."""
    _, cert_file, key_file, _ = make_tls_files(tmp_path, ("www.badcert.test",))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)

    async def reply(n: int, head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    server, vendor_port, seen = await _raw_vendor(reply, server_tls)
    try:
        vendor = _vendor_file(
            "badcert", "https://www.badcert.test", "www.badcert.test", vendor_port
        )
        driver: ProxyDriver = await proxy_factory(
            _config(tmp_path, port, running_slapd, {"badcert": vendor})
        )
        assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
        r = await driver.get_vendor("www.badcert.test", "/")
        body = await r.text()
        assert r.status == 502 and "Badcert Journals" in body
        assert seen == [], "nothing was sent over the unverified connection"
        about_vendor = [e for e in _log_events(log_stream) if "badcert" in json.dumps(e)]
        assert about_vendor, "no log line names the vendor whose connection failed"
        assert any(
            word in json.dumps(about_vendor).lower() for word in ("tls", "ssl", "certificate")
        ), f"the log does not say the vendor's certificate was refused: {about_vendor}"
    finally:
        server.close()


async def test_a_vendor_that_refuses_every_connection_shows_in_the_metrics(
    tmp_path: Path, port: int, running_slapd: Any, proxy_factory: Any
) -> None:
    """A vendor is down (connection refused): /metrics counts each failed request under
    `weston_proxy_vendor_failures_total{vendor, kind="refused"}`. Before, only responses the
    proxy relayed were counted, so a vendor wholly down was invisible to dashboards."""
    dead_port = ports.free_port()  # nothing listens here
    vendor = _vendor_file("gone", "http://www.gone-db.test", "www.gone-db.test", dead_port)
    driver: ProxyDriver = await proxy_factory(
        _config(tmp_path, port, running_slapd, {"gone": vendor})
    )
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    for _ in range(3):
        r = await driver.get_vendor("www.gone-db.test", "/")
        assert r.status == 502
    text = await (await driver.own("GET", "/metrics")).text()
    counted = [
        line
        for line in text.splitlines()
        if 'vendor="gone"' in line
        and not line.startswith("#")
        and "_created" not in line
        and "in_flight" not in line
        and "admission_waiting" not in line
        and float(line.rsplit(" ", 1)[1]) > 0
    ]
    assert counted, "three failed requests to a dead vendor left no trace in /metrics"
    assert 'weston_proxy_vendor_failures_total{kind="refused",vendor="gone"} 3.0' in text


async def test_one_non_ascii_set_cookie_does_not_drop_the_vendors_session_cookie(
    tmp_path: Path, port: int, running_slapd: Any, proxy_factory: Any
) -> None:
    """A vendor answers with its session cookie and, in the same response, another cookie whose
    value holds a Latin-1 byte (a preference or locale cookie). Both are kept and sent back, the
    Latin-1 one byte for byte. Before, `email.message.Message` handed http.cookiejar a `Header`
    object for it, cookiejar's parser failed, and every cookie of the response was dropped: the
    vendor's session was lost on every page."""

    async def reply(n: int, head: bytes) -> bytes:
        if n == 1:
            return (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Set-Cookie: vsession=abc123; Path=/\r\n"
                b"Set-Cookie: vlang=fran\xe7ais; Path=/\r\n"
                b"Content-Length: 2\r\n\r\nok"
            )
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

    server, driver, seen = await _signed_in_behind_raw_vendor(
        reply, tmp_path, port, running_slapd, proxy_factory
    )
    try:
        assert (await driver.get_vendor("www.latin-db.test", "/start")).status == 200
        assert (await driver.get_vendor("www.latin-db.test", "/next")).status == 200
        assert len(seen) == 2
        second = seen[1].decode("latin-1").lower()
        assert "vsession=abc123" in second, (
            "the vendor's session cookie was dropped with the non-ASCII one:\n" + second
        )
        assert b"vlang=fran\xe7ais" in seen[1]
    finally:
        server.close()


async def test_a_latin_1_download_name_reaches_the_patron_whole(
    tmp_path: Path, port: int, running_slapd: Any, proxy_factory: Any
) -> None:
    """A vendor names a download in Latin-1 (`filename="café.pdf"`, byte 0xE9). The patron's
    browser gets the name whole, as UTF-8 (which browsers try first for a file name), not with
    the byte silently dropped (`caf.pdf`, as aiohttp wrote it). UTF-8 names pass unchanged."""

    async def reply(n: int, head: bytes) -> bytes:
        name = b"caf\xe9.pdf" if n == 1 else "naïve.pdf".encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\n"
            b'Content-Disposition: attachment; filename="' + name + b'"\r\n'
            b"Content-Length: 4\r\n\r\n%PDF"
        )

    server, driver, _seen = await _signed_in_behind_raw_vendor(
        reply, tmp_path, port, running_slapd, proxy_factory
    )
    try:
        names = []
        for _ in range(2):
            r = await driver.get_vendor("www.latin-db.test", "/file")
            assert r.status == 200 and await r.read() == b"%PDF"
            raw = dict(r.raw_headers)[b"Content-Disposition"]
            names.append(raw.decode("utf-8"))
        assert names == ['attachment; filename="café.pdf"', 'attachment; filename="naïve.pdf"']
    finally:
        server.close()


# --------------------------------------------------------------------------- slow patrons


@pytest.mark.parametrize(
    ("content_type", "length"),
    [
        ("application/x-www-form-urlencoded", 100),  # read whole, to map URLs back
        ("application/octet-stream", 5_000_000),  # streamed to the vendor as it comes
    ],
)
async def test_a_stalled_form_body_does_not_hold_the_vendors_slot_for_ever(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: Any,
    content_type: str,
    length: int,
) -> None:
    """A signed-in client (a broken mobile connection, or a slowloris) sends a form POST's
    headers with Content-Length and then stops sending the body. The request holds the vendor's
    admission slot while the body is read, so the body may pause at most
    `throttle.http.header_timeout_s` (2 s here) before the request is given up and the slot is
    free again for other patrons. Before, it was read without a time limit: other patrons of
    that vendor got the 503 "busy" page for as long as the socket stayed open, and a few such
    sockets (the vendor's share, 48 by default) shut a database for everyone. The patron's
    stall is not logged or counted as the vendor's failure."""
    vendor = await vendor_factory(HOST)
    cfg = _config(
        tmp_path,
        port,
        running_slapd,
        {"one": vendor_toml("one", vendor, extra="timeout_s = 1\nmax_in_flight = 1\n")},
        extra="\n[throttle.http]\nheader_timeout_s = 2\n",
    )
    cfg.write_text(cfg.read_text().replace("[server]\n", "[server]\nadmission_wait_s = 1\n", 1))
    driver: ProxyDriver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    _reader, writer = await asyncio.open_connection("127.0.0.1", driver.port)
    try:
        cookie = f"{driver.config.server.cookie_name}={driver.session_id()}"
        writer.write(
            (
                f"POST /search HTTP/1.1\r\nHost: {driver.mapped(HOST)}\r\nCookie: {cookie}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
                "q=abc"
            ).encode()
        )
        await writer.drain()
        await asyncio.sleep(0.3)
        started = time.monotonic()
        statuses: list[int] = []
        while time.monotonic() - started < 12:
            r = await driver.get_vendor(HOST, "/other", headers={"Connection": "close"})
            statuses.append(r.status)
            await r.read()
            if r.status == 200:
                break
            await asyncio.sleep(0.5)
        assert statuses[-1] == 200, (
            f"after {time.monotonic() - started:.0f} s another patron still gets {statuses[-1]} "
            f"(the stalled upload holds the vendor's only slot): {statuses}"
        )
        assert not [e for e in _log_events(log_stream) if e.get("event") == "vendor_failed"]
        assert (
            "weston_proxy_vendor_failures_total{"
            not in await (await driver.own("GET", "/metrics")).text()
        )
    finally:
        writer.close()


# --------------------------------------------------------------------------- start-up


def test_an_unusable_key_directory_at_start_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    """At start the signing-key directory cannot be created or written (read-only mount, wrong
    owner, a file where the directory should be; the latter here, as the tests run as root).
    `weston-proxy serve` says so in one line naming the config file and `keys.dir`, before it
    claims to be listening, and exits 2. Before, it printed "listening on … Open …/login" and
    died with a 40-line traceback from aiohttp's start-up."""
    shutil.copy(ROOT / "conf" / "patrons.toml", tmp_path / "patrons.toml")
    cfg = write_config(
        tmp_path,
        port=ports.free_port(),
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={},
    )
    (tmp_path / "blocker").write_text("not a directory\n")
    cfg.write_text(cfg.read_text().replace('dir = "state/keys"', 'dir = "blocker/keys"'))
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"{cfg}: keys.dir: {tmp_path / 'blocker' / 'keys'} cannot be used" in done.stderr
    assert "listening" not in done.stdout


def test_an_unwritable_server_secret_file_at_start_is_a_message_not_a_traceback(
    tmp_path: Path,
) -> None:
    """The server secret is generated on first start; when its file cannot be written, serve
    names the config file and `session.secret_file` in one line and exits 2."""
    shutil.copy(ROOT / "conf" / "patrons.toml", tmp_path / "patrons.toml")
    cfg = write_config(
        tmp_path,
        port=ports.free_port(),
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={},
        session='store = "memory"\nsecret_file = "blocker/secret"',
    )
    (tmp_path / "blocker").write_text("not a directory\n")
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"{cfg}: session.secret_file: {tmp_path / 'blocker' / 'secret'}" in done.stderr


def _chained(*errors: BaseException) -> VendorError:
    """A VendorUnavailable whose cause chain is `errors`, as the vendor client raises them."""
    exc: BaseException | None = None
    for error in reversed(errors):
        error.__cause__ = exc
        exc = error
    failure = VendorUnavailable("v")
    failure.__cause__ = exc
    return failure


def test_failure_kinds_name_what_it_staff_can_act_on() -> None:
    cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cert.verify_message = "certificate has expired"
    wrapped = ConnectionError("cannot connect to www.vendor.test:443")
    assert failure_kind(_chained(wrapped, cert)) == ("tls_certificate", "certificate has expired")
    assert failure_kind(_chained(wrapped, ConnectionRefusedError())) == ("refused", "")
    assert failure_kind(_chained(socket.gaierror(-2, "Name or service not known"))) == ("dns", "")
    assert failure_kind(_chained(ConnectionResetError())) == ("reset", "")
    assert failure_kind(_chained(ValueError("bad URL"))) == ("protocol", "ValueError")
    assert failure_kind(VendorTimeout("v")) == ("timeout", "")
    assert failure_kind(_chained(TimeoutError())) == ("timeout", "")
