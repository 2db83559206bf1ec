"""From a second mutation sweep (2 December 2026) of the records inventory, service workers,
tasks, launch and the demo vendor: each test here was written for a one-line change to the code
that no other test noticed, and fails with it."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from proxy.config import Config, load_config
from proxy.records import inventory, render_text
from tests.harness import free_port, write_config

FILE_DIRECTORY = 'kind = "file"\npatrons_file = "patrons.toml"\n'

# --------------------------------------------------------------------------- records inventory


def _config(tmp_path: Path, *, listen_host: str = "127.0.0.1", session: str = "") -> Config:
    """A memory-store proxy's config (or `session` instead), listening on `listen_host`."""
    (tmp_path / "patrons.toml").write_text("")
    port = free_port()
    path = write_config(
        tmp_path,
        port=port,
        directory=FILE_DIRECTORY,
        vendors={},
        session=(session or 'store = "memory"') + "\nidle_timeout_s = 1200\nlifetime_s = 14400\n",
    )
    if listen_host != "127.0.0.1":
        text = path.read_text().replace(
            f'listen = "127.0.0.1:{port}"', f'listen = "{listen_host}:{port}"'
        )
        path.write_text(text)
    return load_config(path)


_ACTIVE_TWO = "# TYPE weston_proxy_active_sessions gauge\nweston_proxy_active_sessions 2.0\n"


class _Answer:
    """Something at the proxy's listen address that answers every GET through `respond`
    (status, body), or closes the connection at once when `respond` is None; the Host header
    of each request is kept in `hosts`."""

    def __init__(
        self, addr: tuple[str, int], respond: Callable[[], tuple[int, str]] | None
    ) -> None:
        hosts: list[str] = []
        self.hosts = hosts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hosts.append(self.headers.get("Host", ""))
                if respond is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, text = respond()
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET

        class Server(http.server.HTTPServer):
            address_family = family

        self.server = Server(addr, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Answer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_records_asks_a_proxy_listening_on_a_host_name_at_that_name() -> None:
    """kills: proxy/records.py:60 (_unspecified) — `return False` → `return True` for a host
    that is not an address.

    A proxy listening on a name (`proxy.internal:8443`) listens on that name's address only:
    records asks it there; only an unspecified address (every address) is reached on loopback,
    where nothing else may be listening."""
    from proxy.records import _metrics_host

    def host(listen_host: str) -> str:
        return _metrics_host(SimpleNamespace(listen_addr=(listen_host, 8443)))  # type: ignore[arg-type]

    assert host("proxy.internal") == "proxy.internal"
    assert host("localhost") == "localhost"


def test_records_asks_metrics_with_the_proxy_s_own_host(tmp_path: Path) -> None:
    """kills: proxy/records.py:76 — the `Host` header of the public URL dropped.

    The proxy answers /metrics only on its own host name (any other Host is a vendor's host
    or none): records asks with the host of `server.public_url`, else a running proxy would
    not give its count."""
    cfg = _config(tmp_path)
    with _Answer(cfg.listen_addr, lambda: (200, _ACTIVE_TWO)) as answer:
        s = inventory(cfg, timeout_s=3.0)["sessions"]
    assert s["active"] == 2
    assert answer.hosts == [f"proxy.localhost:{cfg.listen_addr[1]}"]


def test_records_keeps_only_the_age_buckets_it_knows(tmp_path: Path) -> None:
    """kills: proxy/records.py:86 — `and sample.labels.get("age") in ages` dropped.

    A proxy of another version with another age label (`ancient`) does not add a key of its
    own to the inventory: the ages staff get are the four documented buckets."""
    cfg = _config(tmp_path)
    text = (
        _ACTIVE_TWO + "# TYPE weston_proxy_session_ages gauge\n"
        'weston_proxy_session_ages{age="under_15m"} 1.0\n'
        'weston_proxy_session_ages{age="ancient"} 1.0\n'
    )
    with _Answer(cfg.listen_addr, lambda: (200, text)):
        s = inventory(cfg, timeout_s=3.0)["sessions"]
    assert s["ages"] == {"under_15m": 1, "15m_to_1h": 0, "1h_to_4h": 0, "4h_or_more": 0}


def test_records_does_not_call_a_proxy_that_closed_the_connection_absent(tmp_path: Path) -> None:
    """kills: proxy/records.py:120 — `ConnectionRefusedError` widened to `ConnectionError`.

    Something accepted the connection at the proxy's address and closed it without an answer
    (a proxy restarting, a worker that died): that is not "nothing listens". Staff are told
    the number is unknown and sessions may exist, never that no session exists."""
    cfg = _config(tmp_path)
    with _Answer(cfg.listen_addr, None):
        inv = inventory(cfg, timeout_s=3.0)
    s = inv["sessions"]
    assert s["active"] is None and s["unknown"] is True, s
    assert "no session exists" not in s["source"]
    assert "number unknown, sessions may exist" in render_text(inv)


def test_records_with_something_else_answering_metrics_says_the_count_is_unknown(
    tmp_path: Path,
) -> None:
    """kills: proxy/records.py:117 — `ValueError` dropped from the caught errors.

    Another program at the proxy's address answers /metrics with a page that is not metrics:
    records still gives staff the inventory (count unknown, sessions may exist) rather than a
    traceback and no answer to "what records exist"."""
    cfg = _config(tmp_path)
    with _Answer(cfg.listen_addr, lambda: (200, "<html><body>a router's page</body></html>")):
        inv = inventory(cfg, timeout_s=3.0)
    s = inv["sessions"]
    assert s["active"] is None and s["unknown"] is True
    assert "nothing gave a count" in s["source"] and "ValueError" in s["source"]


def test_records_names_the_first_and_last_statistics_day_in_redis(
    tmp_path: Path, redis_url: str
) -> None:
    """kills: proxy/records.py:185 — `.removeprefix(REDIS_PREFIX)` dropped; :197 — `days[0]`
    → `days[-1]` for the first day.

    With store = redis the statistics live in Redis hashes, one per day: staff are told the
    span as days (2026-01-05 to 2026-02-11), not as Redis key names, and the first day is the
    earliest one, whatever order SCAN gives the keys in."""
    import redis

    cfg = _config(tmp_path, session=f'store = "redis"\nredis_url = "{redis_url}"')
    client = redis.Redis.from_url(redis_url)
    try:
        for day in ("2026-02-11", "2026-01-05", "2026-01-20"):
            client.hset(f"weston:stats:{day}", "db0|requests", 3)
    finally:
        client.close()
    inv = inventory(cfg, timeout_s=3.0)
    rs = inv["sessions"]["statistics"]
    assert (rs["days"], rs["first_day"], rs["last_day"]) == (3, "2026-01-05", "2026-02-11")
    assert "Statistics in Redis: 3 day(s), 2026-01-05 to 2026-02-11;" in render_text(inv)


def test_records_gives_no_redis_note_for_a_memory_store(tmp_path: Path) -> None:
    """kills: proxy/records.py:268 — `if s.store == "redis":` → `if True:`.

    With the memory store the statistics are in the SQLite file: the inventory must not tell
    staff the proxies count into Redis, which they would then go looking in."""
    stats = inventory(_config(tmp_path), timeout_s=0.5)["statistics"]
    assert "note" not in stats


def test_records_text_shows_redis_key_kinds_warnings_and_statistics_days(tmp_path: Path) -> None:
    """kills: proxy/records.py:317 — the `redis keys` line not written; :335 — the
    `Statistics in Redis` line not written; :336 — `if rs["days"] else "empty"` → always the
    span.

    The text staff hand over names each kind of Redis key with its number (and each Redis
    setting that weakens the proxy's promises), and the span of statistics days in Redis
    ("empty" when none, never "None to None")."""
    inv = inventory(_config(tmp_path), timeout_s=0.5)
    s = inv["sessions"]
    s["key_kinds"] = {"sessions (sealed)": 3, "rate counters": 0}
    s["settings_warnings"] = ["writes its data to disk (appendonly)"]
    s["statistics"] = {
        "where": "Redis hashes weston:stats:<day> at the session store",
        "days": 2,
        "first_day": "2026-01-05",
        "last_day": "2026-02-11",
    }
    text = render_text(inv)
    assert "  redis keys: 3 sessions (sealed)\n" in text
    assert "  redis keys: 0 rate counters\n" in text
    assert "  warning: this Redis writes its data to disk (appendonly)\n" in text
    assert "Statistics in Redis: 2 day(s), 2026-01-05 to 2026-02-11;" in text
    s["statistics"].update(days=0, first_day=None, last_day=None)
    text = render_text(inv)
    assert "Statistics in Redis: 0 day(s), empty;" in text and "None to None" not in text


def test_records_text_says_unknown_not_none_for_a_count_it_has_not(tmp_path: Path) -> None:
    """kills: proxy/records.py:render_text — the `s["active"] is None` branch dropped.

    No proxy listens (memory store): the count line says no session is held, as the "counted
    from" line explains, never "None active", a Python word staff cannot hand to anyone (the
    first wording, "unknown active", contradicted the line under it)."""
    inv = inventory(_config(tmp_path), timeout_s=0.5)
    assert inv["sessions"]["active"] is None
    line = next(ln for ln in render_text(inv).splitlines() if ln.startswith("Sessions:"))
    assert line.startswith("Sessions: none held (no proxy runs);") and "None" not in line
    assert "  age since login: no session" in render_text(inv).splitlines()


# --------------------------------------------------------------------------- feature hooks


def test_plugged_takes_out_its_own_hook_not_one_added_after_it() -> None:
    """kills: proxy/hook_plug.py:24 — `where.remove(hook)` → `where.pop()`.

    While a feature runs, another feature (started after it) adds its own hook to the same
    list. When the first one's block ends, its hook is taken out and the later feature's stays
    in: a sign-in gate of a feature still running is never dropped for one that stopped."""
    from proxy.hook_plug import plugged

    def mine() -> None: ...

    def later() -> None: ...

    gates: list[Any] = []
    with plugged((gates, mine)):
        gates.append(later)  # a feature plugged in after this one, still running
    assert gates == [later]


# --------------------------------------------------------------------------- service workers


def test_a_service_worker_script_request_is_known_in_any_case_of_fetch_metadata() -> None:
    """kills: proxy/service_workers.py:39 — `.lower()` dropped from the `Sec-Fetch-Dest` test.

    A registration or update check that says it only by Fetch Metadata, spelt `ServiceWorker`
    (a browser, extension or middlebox that rewrites headers), is still refused: a worker
    that registers outlives the session and answers the next person's requests without the
    proxy."""
    from aiohttp.test_utils import make_mocked_request

    from proxy.service_workers import is_service_worker_script

    for value in ("serviceworker", "ServiceWorker", "SERVICEWORKER"):
        request = make_mocked_request("GET", "/sw.js", headers={"Sec-Fetch-Dest": value})
        assert is_service_worker_script(request), value
    for value in ("worker", "sharedworker", "script", ""):
        request = make_mocked_request("GET", "/sw.js", headers={"Sec-Fetch-Dest": value})
        assert not is_service_worker_script(request), value


# --------------------------------------------------------------------------- demo vendor


def _signing_key(kid: str) -> tuple[Any, dict[str, Any]]:
    """An Ed25519 key and its public JWK under `kid` (synthetic, made for the test)."""
    import json

    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    return key, {**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"}


def _token(key: Any, kid: str, audience: str = "demo") -> str:
    import jwt

    claims = {"aud": audience, "sub": "pseudonym-7f3a", "scope": "westonlibrary.org"}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


async def _demo_get(
    path: str, headers: dict[str, str], *, origin: str = "http://demo.vendor.test", jwks: Any = None
) -> tuple[int, str, Any]:
    from aiohttp.test_utils import TestClient, TestServer

    from proxy.demo_vendor import create_demo_vendor_app

    app = create_demo_vendor_app(origin=origin, audience="demo", jwks=lambda: jwks or {"keys": []})
    async with TestClient(TestServer(app)) as client:
        r = await client.get(path, headers=headers)
        return r.status, await r.text(), r.cookies


async def test_demo_vendor_verifies_an_assertion_by_its_key_id_and_audience() -> None:
    """kills: proxy/demo_vendor.py:34 — `k.get("kid") == header.get("kid")` → `!=`; and :35 —
    the audience not checked.

    The vendor's-eye view tells IT staff whether the assertion verifies against the library's
    published keys: signed by the published key for this vendor's audience, it does; signed by
    a key that is not published, or for another vendor's audience, it does not."""
    key, jwk = _signing_key("k1")
    other, _ = _signing_key("k2")
    jwks = {"keys": [jwk]}
    header = "X-Patron-Assertion"
    _, text, _ = await _demo_get("/", {header: _token(key, "k1")}, jwks=jwks)
    assert "signature verified against the library&#x27;s published keys" in text
    _, text, _ = await _demo_get("/", {header: _token(other, "k2")}, jwks=jwks)
    assert "NOT verified: unknown key id" in text
    _, text, _ = await _demo_get("/", {header: _token(key, "k1", audience="ebsco")}, jwks=jwks)
    assert "NOT verified: InvalidAudienceError" in text


async def test_demo_vendor_shows_an_unverified_assertion_s_contents_too() -> None:
    """kills: proxy/demo_vendor.py:65 — `claims or jwt.decode(…unverified…)` → `claims`.

    An assertion that does not verify (a key not yet published after a rotation) is still
    shown as received, so staff can see what the vendor was sent, marked NOT verified."""
    key, _ = _signing_key("k9")
    _, text, _ = await _demo_get("/", {"X-Patron-Assertion": _token(key, "k9")})
    assert "NOT verified: unknown key id" in text
    assert "pseudonym-7f3a" in text and "westonlibrary.org" in text


async def test_demo_vendor_says_a_header_that_is_not_a_jwt_is_not_one() -> None:
    """kills: proxy/demo_vendor.py:66 — `except jwt.PyJWTError` narrowed (to KeyError).

    A garbled assertion header gives the page, marked NOT verified and "not a JWT", never a
    500 error that leaves staff nothing to look at."""
    status, text, _ = await _demo_get("/", {"X-Patron-Assertion": "not-a-token"})
    assert status == 200
    assert "NOT verified: DecodeError" in text and "the assertion header is not a JWT" in text


async def test_demo_vendor_escapes_what_it_received() -> None:
    """kills: proxy/demo_vendor.py:58 — `html.escape(v)` dropped for header values; :93 —
    `html.escape(q)` dropped for the search.

    The page shows received headers and searches as text: markup in them (from a vendor page's
    script or a crafted link) never runs in the demo's page on the proxy's host."""
    attack = "<script>alert(1)</script>"
    _, text, _ = await _demo_get("/", {"X-Probe": attack})
    assert attack not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    _, text, _ = await _demo_get("/search?q=%3Cscript%3Ealert(1)%3C/script%3E", {})
    assert attack not in text and "Result 1 for &lt;script&gt;alert(1)&lt;/script&gt;" in text


async def test_demo_vendor_links_from_an_origin_written_with_a_final_slash() -> None:
    """kills: proxy/demo_vendor.py:116 — `origin.rstrip("/")` dropped.

    `--origin http://demo.vendor.test/` gives links like http://demo.vendor.test/search, not
    `…test//search`, which the proxy's link rewriting and the vendor's routes would treat as
    another path."""
    _, text, _ = await _demo_get("/", {}, origin="http://demo.vendor.test/")
    assert "action='http://demo.vendor.test/search'" in text
    assert "href='http://demo.vendor.test/article/1.pdf'" in text and "test//" not in text


async def test_demo_vendor_sets_its_own_session_cookie() -> None:
    """kills: proxy/demo_vendor.py:85 — the `demo_vendor_session` cookie not set.

    The demo exists to show the proxy's cookie jar at work: its page sets a cookie, which the
    proxy keeps in the session's jar and sends back (seen on the next view)."""
    _, _, cookies = await _demo_get("/", {})
    assert cookies["demo_vendor_session"].value == "abc123"
    assert cookies["demo_vendor_session"]["httponly"]


# --------------------------------------------------------------------------- launch

_MASK_PROBE = """
import signal, sys
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # whatever started the test
import proxy.cli
from proxy.launch import main
proxy.cli.main = lambda argv: print(signal.SIGHUP in signal.pthread_sigmask(signal.SIG_BLOCK, []))
main(sys.argv[1:])
"""


def test_only_serve_starts_with_the_reload_signal_blocked() -> None:
    """kills: proxy/launch.py:18 — `if args[:1] == ["serve"]:` → `if True:`.

    `serve` starts with SIGHUP blocked until its reload handler is in place; every other
    command (`records`, `stats`, `keys rotate`, run by staff in a terminal or by cron) keeps the
    default, so a hang-up ends it as it ends any command, and what it runs does not inherit a
    blocked SIGHUP (a signal mask survives exec)."""
    import subprocess
    import sys

    def blocked(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", _MASK_PROBE, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout.strip()

    assert blocked("serve", "--config", "proxy.toml") == "True"
    assert blocked("records", "--config", "proxy.toml") == "False"
    assert blocked("check-config", "--config", "serve") == "False"
