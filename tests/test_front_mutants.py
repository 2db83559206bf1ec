"""From a second mutation sweep (2 December 2026) of the application front, WebSockets and the
crypto helpers: each test here was written for a one-line change to the code that no other test
noticed, and fails with it.

Unit-level where the behaviour is one function's own; real slapd and aiohttp vendors on loopback
otherwise. Synthetic data and the canary patron only."""

from __future__ import annotations

import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from proxy.crypto import SessionSealer, server_secret_problem
from proxy.errors import VendorUnavailable
from proxy.websocket import (
    OpenSockets,
    VendorSockets,
    offered_protocols,
    sendable,
    wants_websocket,
)
from tests.canary import CANARY
from tests.fixtures_ldap import make_tls_files
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config
from tests.test_vendor_http import loopback

ASSERTION_HEADER = "X-Patron-Assertion"

# --- proxy/crypto.py --------------------------------------------------------------------------

# A session sealed by this version (v2), built from the documented construction by hand: HKDF
# (SHA-256, no salt, info "weston-proxy session sealing v2") of the secret, HKDF-Expand with
# "session\0" + id, AES-256-GCM, a fixed nonce 00..0b.
_SECRET = b"weston test secret, not a real one: 0123456789"
_SID = "synthetic-session-id-0001"
_AAD = b"weston:s:abc"
_PLAIN = b'{"hosts": ["www.vendor-one.test"]}'
_SEALED_V2 = bytes.fromhex(
    "02000102030405060708090a0baa3e7744927176e2bd3b1af51418736b905f526c2675f470bad4d53853ab"
    "23a92db39f6b7d82951ac8ab6ed7f669a8d2789a"
)


def test_a_session_sealed_by_this_version_still_opens() -> None:
    """kills: proxy/crypto.py:derive_key — `salt=None` → `salt=b"weston"`, and
    proxy/crypto.py:SessionSealer._aead — `length=32` → `length=16` (AES-128).

    Sealing and opening in the same process agree with any derivation, so no other test saw a
    change to it. Sessions live in Redis across restarts and rolling upgrades (instances of two
    builds share the store): a session sealed the documented way by this version must open, or
    every signed-in patron is signed out by an upgrade that changed nothing on purpose."""
    sealer = SessionSealer(_SECRET)
    assert sealer.open(_SID, _SEALED_V2, _AAD) == _PLAIN


def test_an_empty_value_seals_and_opens() -> None:
    """kills: proxy/crypto.py:SessionSealer.open — `len(blob) < header + _TAG_BYTES` → `<=`.

    The shortest sealed value (version, nonce and tag, no ciphertext) is a well-formed one:
    what the sealer sealed, it opens, whatever its length."""
    sealer = SessionSealer(_SECRET)
    blob = sealer.seal(_SID, b"", _AAD)
    assert len(blob) == 1 + 12 + 16
    assert sealer.open(_SID, blob, _AAD) == b""


def test_a_short_server_secret_is_measured_in_bytes() -> None:
    """kills: proxy/crypto.py:server_secret_problem — `n = len(value.encode())` → `len(value)`.

    IT staff are told how long their secret is in the unit the rule is in (bytes): a 10-character
    secret of two-byte characters is 20 bytes, and one of 16 such characters (32 bytes) is long
    enough. Counting characters would report the wrong size and refuse a secret that is fine."""
    problem = server_secret_problem("é" * 10)
    assert problem is not None and "is 20 bytes" in problem, problem
    assert server_secret_problem("é" * 16) is None


# --- proxy/websocket.py -----------------------------------------------------------------------


def _handshake(**headers: str) -> Any:
    return make_mocked_request("GET", "/socket", headers=headers)


def test_the_upgrade_token_is_read_case_insensitively() -> None:
    """kills: proxy/websocket.py:wants_websocket — `h.get("Upgrade", "").strip().lower()` →
    without `.lower()`.

    RFC 6455 §4.2.1 has the server take the Upgrade value "websocket" as ASCII
    case-insensitive: a client or a terminator in front of the proxy that writes `WebSocket`
    still gets a socket, not its handshake forwarded to the vendor as an ordinary page."""
    assert wants_websocket(_handshake(Upgrade="WebSocket", Connection="keep-alive, Upgrade"))
    assert wants_websocket(_handshake(Upgrade=" WEBSOCKET ", Connection="upgrade"))
    assert not wants_websocket(_handshake(Upgrade="h2c", Connection="Upgrade"))


def test_empty_subprotocol_entries_are_not_offered() -> None:
    """kills: proxy/websocket.py:offered_protocols — `if p.strip()` dropped.

    A header with an empty list element (`chat.v2, , json`, or a trailing comma) offers the two
    subprotocols named, not an empty one: a recipient ignores empty list elements and a sender
    must not make them (RFC 9110 §5.6.1), so the vendor's handshake offers tokens only and a
    strict vendor does not refuse a socket the page could open directly."""
    request = _handshake(**{"Sec-WebSocket-Protocol": "chat.v2, , json,"})
    assert offered_protocols(request) == ["chat.v2", "json"]


def test_every_close_code_an_endpoint_may_send_is_passed_on() -> None:
    """kills: proxy/websocket.py:_SENDABLE — `1003` dropped (and `range(1007, 1015)` →
    `range(1008, 1015)`).

    RFC 6455 §7.4.1 lets an endpoint send 1000-1003 and 1007-1014: a vendor closing with 1003
    (it cannot take that kind of data) or 1007 (a message was not valid UTF-8) has the patron's
    page told that very code, which its script reads to decide whether to reconnect or to show
    an error, not a plain "normal closure". Codes that only describe a connection (1005, 1006,
    1015) or are undefined never go on the wire as they are."""
    for code in (1000, 1001, 1002, 1003, *range(1007, 1015)):
        assert sendable(code, abnormal=1011) == code, code
    for code in (999, 1004, 1006, 1015, 1016, 2999):
        assert sendable(code, abnormal=1011) == 1011, code


def test_a_session_whose_sockets_closed_is_not_remembered() -> None:
    """kills: proxy/websocket.py:OpenSockets.release — `if left > 0:` → `if left >= 0:`.

    The count of sockets per session is kept by session id, in memory, only while that session
    has a socket open: once its last socket closes the id is gone from the process (a session id
    is the patron's sign-in; nothing keeps one longer than it is needed), and the map does not
    grow with every session that ever opened a socket."""
    sockets = OpenSockets(16)
    sockets.reserve("one", "session-a")
    sockets.reserve("one", "session-a")
    sockets.release("session-a")
    assert sockets._by_session == {"session-a": 1}
    sockets.release("session-a")
    assert sockets._by_session == {}
    assert len(sockets) == 0


async def _tls_socket_vendor(tmp_path: Path) -> tuple[web.AppRunner, int, Path, list[str]]:
    """A vendor speaking WebSocket over TLS on loopback, its certificate signed by a throwaway
    CA no system store holds. Returns (runner, port, ca_file, paths it answered)."""
    ca_file, cert_file, key_file, _ = make_tls_files(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    answered: list[str] = []

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        answered.append(request.path)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port, ca_file, answered


async def test_a_socket_to_a_vendor_checks_its_certificate(tmp_path: Path) -> None:
    """kills: proxy/websocket.py:VendorSockets.connect — `ssl=ssl_context if ssl_context is not
    None else True` → `... else False`.

    A vendor with no `tls_ca_file` (nearly all: they have public certificates) has its socket's
    certificate verified against the system store, as its pages are: a certificate nobody
    trusts (someone in the path answering for the vendor) ends the handshake as the vendor
    unavailable, and the patron's assertion and vendor cookies in the handshake are never sent
    to it. The same vendor with its CA configured is reached, so the refusal is the check's."""
    runner, port, ca_file, answered = await _tls_socket_vendor(tmp_path)
    sockets = VendorSockets(loopback, OpenSockets(4))
    out = SimpleNamespace(
        url=URL(f"https://localhost:{port}/ws"),
        headers={ASSERTION_HEADER: "synthetic-assertion"},
        vendor=SimpleNamespace(id="one"),
    )
    try:
        with pytest.raises(VendorUnavailable):
            await sockets.connect(out, [], ssl_context=None, timeout_s=10)  # type: ignore[arg-type]
        assert answered == []
        trusted = ssl.create_default_context(cafile=str(ca_file))
        vendor_ws, _ = await sockets.connect(out, [], ssl_context=trusted, timeout_s=10)  # type: ignore[arg-type]
        await vendor_ws.close()
        assert answered == ["/ws"]
    finally:
        await sockets.close()
        await runner.cleanup()


# --- proxy/app.py -----------------------------------------------------------------------------

HOST = "www.vendor-one.test"


@pytest.fixture
async def stack(
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


async def test_only_an_options_request_is_answered_as_a_preflight(stack: Any) -> None:
    """kills: proxy/app.py:dispatch — `request.method == "OPTIONS" and is_preflight(request)` →
    `is_preflight(request)`.

    A CORS preflight is an OPTIONS request (Fetch standard). A signed-in patron's GET or POST
    that happens to carry Origin and Access-Control-Request-Method (a non-browser client, an
    extension) is a request for the vendor: it reaches the vendor and the patron gets its page,
    not an empty 204 from the proxy and a form's POST silently dropped."""
    driver, vendor = stack
    origin = f"http://{driver.mapped(HOST)}"
    asking = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    page = await driver.get_vendor(HOST, "/search?q=maps", headers=asking)
    assert page.status == 200
    assert f"vendor {HOST}" in await page.text()
    sent = await driver.get_vendor(
        HOST, "/search", method="POST", data={"q": "maps"}, headers=asking
    )
    assert sent.status == 200
    assert [r.method for r in vendor.requests if r.path_qs.startswith("/search")] == [
        "GET",
        "POST",
    ]
    # A real preflight is still answered by the proxy, the vendor hearing nothing of it.
    preflight = await driver.get_vendor(HOST, "/api", method="OPTIONS", headers=asking, sid="")
    assert preflight.status == 204
    assert not any(r.path_qs.startswith("/api") for r in vendor.requests)


class _Relay:
    """Stands in for a SocketRelay: whose forwarder it came from, and how it was ended."""

    def __init__(self, sockets: VendorSockets) -> None:
        self.sockets = sockets
        self.ended: list[int] = []

    async def end(self, code: int, reason: bytes) -> None:
        self.ended.append(code)


async def test_closing_an_old_forwarder_ends_only_its_own_sockets() -> None:
    """kills: proxy/websocket.py:VendorSockets.mine — `r.sockets is self` filter dropped
    (`list(self.open.relays)`).

    Every forwarder a reload makes shares the process's open sockets (one cap). When the old
    forwarder is closed after a reload, it ends the sockets opened through it (1001, going
    away), and only those: the sockets patrons opened through the new forwarder since stay
    open, or every reload would cut every live database feature in the process."""
    shared = OpenSockets(8)
    old, new = VendorSockets(loopback, shared), VendorSockets(loopback, shared)
    before, after = _Relay(old), _Relay(new)
    shared.relays.update({before, after})  # type: ignore[arg-type]
    assert old.mine() == [before]
    await old.close()
    assert before.ended == [1001]
    assert after.ended == []
