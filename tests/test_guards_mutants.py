"""From a mutation sweep (1 December 2026) of the small modules behind big promises: the
client address the sign-in throttle and /metrics believe (proxy/client_ip.py), what a site is
(public_suffix), feature hooks (hook_plug), international host names (idn_hosts), the records
inventory (records) and a patron who stopped reading (patron_reads). Each test names the mutant
it kills."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.client_ip import address_in, client_address, parse_networks

# --------------------------------------------------------------------------- client address

_TRUSTED = parse_networks(["10.0.0.0/8", "127.0.0.1"])


def test_a_garbled_hop_stops_the_chain_and_a_forged_hop_left_of_it_is_not_believed() -> None:
    """kills: proxy/client_ip.py:client_address — `break` → `continue` (on a garbled hop).

    A client behind the balancer sends `X-Forwarded-For: 6.6.6.6, garbage`; the trusted hop
    10.1.2.3 appends itself. Everything left of the garbled hop was written by the client, so
    the throttle counts the last good trusted hop (10.1.2.3), never the forged 6.6.6.6: a patron
    cannot pick the address their failed sign-ins are counted against (nor lock out another's)."""
    for xff in (["6.6.6.6, garbage, 10.1.2.3"], ["6.6.6.6", "garbage", "10.1.2.3"]):
        assert client_address("127.0.0.1", xff, _TRUSTED) == "10.1.2.3"
    assert client_address("127.0.0.1", ["203.0.113.5, , 10.1.2.3"], _TRUSTED) == "10.1.2.3"


def test_an_address_that_cannot_be_read_is_never_in_metrics_from() -> None:
    """kills: proxy/client_ip.py:address_in — `ip is not None and` → `ip is None or`.

    A peer whose address cannot be read (a Unix-socket peer, which aiohttp gives as no address,
    or a garbled value) is not taken for one of `server.metrics_from`: /metrics stays closed to
    it rather than open to anyone the proxy cannot place."""
    nets = parse_networks(["127.0.0.0/8", "10.0.0.0/8"])
    for address in ("", "garbage", "unix:/run/weston.sock", "[not-an-ip]"):
        assert not address_in(address, nets)
    assert address_in("127.0.0.1", nets)


# --------------------------------------------------------------------------- what a site is


def test_two_hosts_named_by_ip_address_are_never_one_site() -> None:
    """kills: proxy/public_suffix.py:registrable_domain — the IP-address branch skipped
    (`ipaddress.ip_address(host…)` never succeeding), which would read `192.168.1.10` and
    `10.0.1.10` by the public suffix list as the same "site" `1.10`.

    A vendor or a page reached by IP address is its own site: a request from one address to
    another is cross-site (Sec-Fetch-Site, the jar's SameSite rule), so a SameSite cookie set
    by one is not sent on the other's behalf."""
    from proxy.public_suffix import registrable_domain, same_site

    assert registrable_domain("192.168.1.10") == "192.168.1.10"
    assert not same_site("192.168.1.10", "10.0.1.10")
    assert not same_site("[::ffff:1.2.3.4]", "[::ffff:9.9.3.4]")
    assert same_site("192.168.1.10", "192.168.1.10")


def test_two_different_public_suffixes_are_not_one_site() -> None:
    """kills: proxy/public_suffix.py:registrable_domain — `or host` → `or ""` (a public suffix
    with no registrable domain read as the empty site).

    Hosts that are public suffixes themselves (`co.uk`, `github.io`) are each their own site,
    never one shared "no site" that would make every such pair same-site."""
    from proxy.public_suffix import registrable_domain, same_site

    assert registrable_domain("co.uk") == "co.uk"
    assert not same_site("co.uk", "ac.uk")
    assert not same_site("github.io", "co.uk")
    assert same_site("www.example.co.uk", "example.co.uk")
    assert not same_site("a.example.co.uk", "example.ac.uk")


# --------------------------------------------------------------------------- feature hooks


def test_plugged_takes_its_hooks_out_again_after_the_block_and_after_a_failure() -> None:
    """kills: proxy/hook_plug.py:plugged — `where.remove(hook)` → `pass`.

    A feature's hooks (the sign-in throttle's gate, usage limits' observer) are in the hook
    lists only while the feature runs: at cleanup, also when a later feature's startup fails,
    they are taken out, and only they (another feature's hook of the same list stays)."""
    from proxy.hook_plug import plugged

    def other() -> None: ...

    def gate() -> None: ...

    def failed() -> None: ...

    gates: list[Any] = [other]
    fails: list[Any] = []
    with plugged((gates, gate), (fails, failed)):
        assert sorted(gates, key=id) == sorted([other, gate], key=id) and fails == [failed]
    assert gates == [other] and fails == []
    with pytest.raises(RuntimeError), plugged((gates, gate), (fails, failed)):
        assert gate in gates
        raise RuntimeError("a later feature failed to start")
    assert gates == [other] and fails == []


# --------------------------------------------------------------------------- records inventory


def _records_config(tmp_path: Any) -> Any:
    from tests.test_records import config

    return config(tmp_path)


class _FakeMetrics:
    """Something at the proxy's listen address answering /metrics with `text` (a stand-in for
    the running memory-store proxy, without any patron)."""

    def __init__(self, addr: tuple[str, int], text: str) -> None:
        import http.server
        import threading

        body = text.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.HTTPServer(addr, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _FakeMetrics:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_records_reads_session_ages_from_the_running_proxy(tmp_path: Any) -> None:
    """kills: proxy/records.py:_running_proxy_metrics — the `weston_proxy_session_ages` samples
    ignored (the ages branch never taken).

    With the memory store, `records` tells staff how old the sessions held right now are, from
    the running proxy's /metrics: three sessions, two under 15 minutes and one of 4 h or more,
    are shown as such, not as all-zero ages beside "3 active"."""
    from proxy.records import inventory, render_text

    cfg = _records_config(tmp_path)
    text = (
        "# TYPE weston_proxy_active_sessions gauge\nweston_proxy_active_sessions 3.0\n"
        "# TYPE weston_proxy_session_ages gauge\n"
        'weston_proxy_session_ages{age="under_15m"} 2.0\n'
        'weston_proxy_session_ages{age="15m_to_1h"} 0.0\n'
        'weston_proxy_session_ages{age="1h_to_4h"} 0.0\n'
        'weston_proxy_session_ages{age="4h_or_more"} 1.0\n'
    )
    with _FakeMetrics(cfg.listen_addr, text):
        inv = inventory(cfg, timeout_s=2.0)
    s = inv["sessions"]
    assert s["active"] == 3 and s["unknown"] is False
    assert s["ages"] == {"under_15m": 2, "15m_to_1h": 0, "1h_to_4h": 0, "4h_or_more": 1}
    assert "under 15 min: 2" in render_text(inv) and "4 h or more: 1" in render_text(inv)


def test_records_without_an_active_session_count_says_the_number_is_unknown(tmp_path: Any) -> None:
    """kills: proxy/records.py:_memory_sessions — `if info["active"] is None:` → `if False:`.

    Something answers /metrics at the proxy's address but gives no `weston_proxy_active_sessions`
    (another program, a proxy of another version): staff are told the number of sessions is
    unknown and that sessions may exist, never an empty or a made-up count."""
    from proxy.records import inventory, render_text

    cfg = _records_config(tmp_path)
    with _FakeMetrics(cfg.listen_addr, "# TYPE other_metric gauge\nother_metric 1.0\n"):
        inv = inventory(cfg, timeout_s=2.0)
    s = inv["sessions"]
    assert s["active"] is None and s["unknown"] is True
    assert "no weston_proxy_active_sessions" in s["source"]
    assert "number unknown, sessions may exist" in render_text(inv)


def test_records_asks_a_proxy_listening_on_every_address_on_loopback() -> None:
    """kills: proxy/records.py:_metrics_host — `"::1" if ":" in host else "127.0.0.1"` →
    `"127.0.0.1"`, and proxy/records.py:_unspecified — `not host or …` dropped.

    A proxy listening on every IPv6 address (`[::]:port`) is asked on ::1, one on every IPv4
    address (`0.0.0.0`, or a listen address with no host) on 127.0.0.1: the address records
    asks from is the one staff must put in `server.metrics_from`, and the one the proxy is on."""
    from types import SimpleNamespace

    from proxy.records import _metrics_host

    def host(listen_host: str) -> str:
        return _metrics_host(SimpleNamespace(listen_addr=(listen_host, 8443)))  # type: ignore[arg-type]

    assert host("::") == "::1"
    assert host("0.0.0.0") == "127.0.0.1"
    assert host("") == "127.0.0.1"
    assert host("192.0.2.10") == "192.0.2.10"


def test_records_says_a_redis_that_timed_out_did_not_answer() -> None:
    """kills: proxy/records.py:_redis_failure — `"timeout"` dropped from the did-not-answer
    reasons (and any other of them).

    A Redis that did not answer (refused, reset, unknown name, timed out) is reported as such;
    "answered with an error" is kept for a Redis that did answer (read-only, out of memory),
    so staff look in the right place."""
    from proxy.errors import StoreUnavailable
    from proxy.records import _redis_failure

    for reason in (
        "connection refused",
        "connection reset",
        "dns",
        "timeout",
        "connection failed",
        "unavailable",
    ):
        assert _redis_failure(StoreUnavailable(reason=reason)) == f"Redis did not answer ({reason})"
    assert "answered with an error" in _redis_failure(StoreUnavailable(reason="read-only"))
    assert "refused the password" in _redis_failure(StoreUnavailable(reason="authentication"))


def test_records_with_an_unreadable_redis_password_file_says_so(tmp_path: Any) -> None:
    """kills: proxy/records.py:_redis_sessions — `SecretError` dropped from the caught errors.

    `records` whose `session.redis_password_file` the proxy refuses when it reads it (made readable
    by others after the config was checked; only reachable so, since check-config refuses it
    too) still gives
    staff the inventory: the sessions' number is unknown and the reason names the password
    file, instead of a traceback and no answer to "what records exist"."""
    from proxy.records import inventory, render_text
    from tests.test_records import config

    secret = tmp_path / "secrets" / "redis-password"
    secret.parent.mkdir()
    secret.write_text("a-password-of-some-length\n")
    secret.chmod(0o600)
    cfg = config(
        tmp_path,
        session='store = "redis"\nredis_url = "redis://127.0.0.1:9/0"\n'
        'redis_password_file = "secrets/redis-password"',
    )
    secret.chmod(0o644)  # changed after the config was read: now the proxy refuses to use it
    inv = inventory(cfg, timeout_s=0.5)
    s = inv["sessions"]
    assert s["active"] is None and s["unknown"] is True
    assert "the Redis password could not be read (session.redis_password_file)" in s["source"]
    assert "number unknown" in render_text(inv)


def test_a_host_spelt_with_a_final_dot_or_in_capitals_is_the_same_site() -> None:
    """kills: proxy/public_suffix.py:registrable_domain — `.rstrip(".")` dropped, and
    `.lower()` dropped.

    `192.0.2.1.` is the address 192.0.2.1 (not the "site" `2.1` the suffix list would make of
    it, shared with every address ending in .2.1), and `CO.UK.`, `2001:DB8::1` are the same
    hosts as `co.uk`, `2001:db8::1`: a spelling never turns a cross-site request into a
    same-site one, nor one site into two."""
    from proxy.public_suffix import registrable_domain, same_site

    assert registrable_domain("192.0.2.1.") == "192.0.2.1"
    assert not same_site("192.0.2.1.", "10.9.2.1")
    assert same_site("CO.UK.", "co.uk") and same_site("WWW.Example.CO.UK.", "example.co.uk")
    assert same_site("2001:DB8::1", "2001:db8::1")


def test_records_calls_a_statistics_file_with_no_rows_empty(tmp_path: Any) -> None:
    """kills: proxy/records.py:render_text — `if st["rows"] else "empty"` → `if True else …`.

    A statistics file that exists but holds no day yet (a new install) is described to staff as
    empty, not as the span "None to None"."""
    from proxy.records import inventory, render_text
    from proxy.stats_store import sqlite_add

    cfg = _records_config(tmp_path)
    sqlite_add(tmp_path / "state" / "stats.sqlite3", {})
    inv = inventory(cfg, timeout_s=0.5)
    assert inv["statistics"]["exists"] and inv["statistics"]["rows"] == 0
    text = render_text(inv)
    assert (
        "bytes, empty)" in text and "None" not in text.split("Statistics file:")[1].split("\n")[0]
    )


# --------------------------------------------------------------------------- international hosts


def _idn_rewriter() -> Any:
    return _rewriter(("one", "www.vendor.test"), ("idn", "xn--bcher-kva.test"))


def _rewriter(*vendor_hosts: tuple[str, str]) -> Any:
    """A rewriter for one host per vendor, on the public host the other rewriter tests use."""
    from proxy.hosts import HostMap
    from proxy.rewrite import Rewriter

    return Rewriter(
        HostMap.build(
            public_scheme="http",
            public_host="proxy.localhost",
            public_port=8080,
            vendor_hosts=[(vendor, [host]) for vendor, host in vendor_hosts],
        )
    )


def test_full_stops_after_an_international_host_stay_the_pages_text() -> None:
    """kills: proxy/idn_hosts.py:read_host — `while count and text[count - 1] in _DOTS` →
    `if …` (only one trailing full stop left out of the name).

    `bücher.test` followed in the page by two percent-encoded fullwidth full stops and a `©`:
    the host is mapped and everything after it is left exactly as the page wrote it; the
    second full stop is not swallowed into the replaced host."""
    rw = _idn_rewriter()
    mapped = b"http://xn----bcher--kva-test.proxy.localhost:8080"
    tail = "%EF%BC%8E%EF%BC%8E\u00a9x/y".encode()
    assert rw.rewrite_bytes("https://bücher.test".encode() + tail) == mapped + tail
    tail = ".%EF%BC%8E\u00a9/x".encode()
    assert rw.rewrite_bytes("https://bücher.test".encode() + tail) == mapped + tail


def test_a_windows_1252_page_spells_an_international_host_with_its_own_letters() -> None:
    """kills: proxy/idn_hosts.py:read_host — `decoded.decode("windows-1252", …)` →
    `decode("latin-1", …)`.

    A vendor page with no charset, in windows-1252 bytes, writes the vendor host `šport.test`
    (xn--port-f6a.test) with the byte 0x9A for `š`, as the browser reads it: the host is
    mapped, so the patron's browser does not go to the vendor's real host. (Latin-1 reads 0x9A
    as a control character, and the host would be left as written.)"""
    rw = _rewriter(("idn", "xn--port-f6a.test"))
    mapped = b"http://xn----port--f6a-test.proxy.localhost:8080/x"
    assert rw.rewrite_bytes(b"https://\x9aport.test/x") == mapped
    assert rw.rewrite_bytes(b'<a href="https://\x9aport.test/x">') == b'<a href="' + mapped + b'">'


def test_a_halfwidth_ideographic_full_stop_between_labels_is_read_as_a_dot() -> None:
    """kills: proxy/idn_hosts.py — `_DOTS` without U+FF61 (halfwidth ideographic full stop).

    `bücher｡test` (U+FF61 between the labels, as Japanese text writes it) is the vendor host
    xn--bcher-kva.test to a browser (UTS #46 maps the character to `.`): the proxy maps it, so
    the patron's browser never goes to the vendor's real host."""
    rw = _idn_rewriter()
    mapped = b"http://xn----bcher--kva-test.proxy.localhost:8080/x"
    assert rw.rewrite_bytes("https://bücher\uff61test/x".encode()) == mapped
    assert rw.rewrite_bytes('<a href="https://bücher\uff61test/x">'.encode()) == (
        b'<a href="' + mapped + b'">'
    )


# --------------------------------------------------------------------------- patron reads


class _ClosingTransport:
    """A patron's transport already closing (the patron left; the response is being let go)."""

    def __init__(self) -> None:
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return 50_000  # still waiting, nobody reads it

    def get_extra_info(self, name: str) -> None:
        return None

    def is_closing(self) -> bool:
        return True

    def abort(self) -> None:
        self.aborted = True


class _NoWrite:
    async def write(self, data: bytes) -> None:
        return None


async def test_the_send_watch_leaves_a_closing_connection_alone() -> None:
    """kills: proxy/patron_reads.py:_Sending.stalled — `transport.is_closing()` dropped.

    A connection that is already closing (the patron went away, or the proxy is closing it)
    is not "a patron that stopped reading": it is neither aborted nor logged as
    `patron_stopped_reading`, so that log line counts only patrons who really stalled."""
    import asyncio

    from proxy.patron_reads import PatronReads

    watch = PatronReads(0.1)
    closing = _ClosingTransport()
    writer = watch.watch(_NoWrite(), closing, "one")  # type: ignore[arg-type]
    await writer.write(b"x" * 60_000)
    await asyncio.sleep(0.4)
    assert not closing.aborted
    writer.done()
    watch.close()


# --------------------------------------------------------------------------- html tags


def test_a_link_in_windows_1252_bytes_to_a_vendor_host_is_mapped() -> None:
    """kills: proxy/html_tags.py:_readings — `if codec == "utf-8" and not raw.isascii():` →
    `if False:` (no windows-1252 reading of non-UTF-8 bytes).

    A vendor page with no charset writes `<a href="http://www.vend\\xbar.test/x">`. The browser
    falls back to windows-1252, reads `vendºr`, which IDNA folds to `vendor`: a click would take
    the patron's browser to the vendor's real host (P3). The link is mapped, with the shield on
    and with it off."""
    rw = _rewriter(("one", "www.vendor.test"))
    want = b'<a href="http://www-vendor-test.proxy.localhost:8080/x">'
    for loads in (False, True):
        assert rw._edit_tag(b'<a href="http://www.vend\xbar.test/x">', loads=loads) == want


def test_a_link_spelt_with_numeric_references_without_semicolons_is_mapped() -> None:
    """kills: proxy/html_tags.py:unescape_attribute — `ref.endswith(";") or ref[1] == "#"` →
    `ref.endswith(";")` (numeric references without `;` left undecoded).

    The HTML tokenizer decodes `&#47`, `&#46`, `&#x2e` without their `;` too, so
    `<a href="http:&#47&#47www.vendor.test/x">` takes a click to the vendor's real host: the
    link is mapped, like every spelling the browser follows (P3)."""
    from proxy.hosts import HostMap
    from proxy.html_tags import unescape_attribute
    from proxy.rewrite import Rewriter

    assert unescape_attribute("http:&#47&#47www&#x2evendor&#46test/x") == (
        "http://www.vendor.test/x"
    )
    rw = Rewriter(
        HostMap.build(
            public_scheme="http",
            public_host="proxy.localhost",
            public_port=8080,
            vendor_hosts=[("one", ["www.vendor.test"])],
        )
    )
    want = b'<a href="http://www-vendor-test.proxy.localhost:8080/x">'
    for spelt in (b"http:&#47&#47www.vendor.test/x", b"http://www&#46vendor.test/x"):
        assert rw._edit_tag(b'<a href="' + spelt + b'">', loads=False) == want


def test_speculation_rules_typed_in_capitals_are_made_inert() -> None:
    """kills: proxy/html_tags.py:_inert_rules — `.lower()` dropped from the type comparison.

    Browsers match a script's type `speculationrules` ASCII case-insensitively, so
    `<script type="SpeculationRules">` prefetches whatever hosts it lists, from the patron's
    address, before any click (P3): it is made inert like the lower-case spelling."""
    rw = _rewriter(("one", "www.vendor.test"))
    for kind in (b"speculationrules", b"SpeculationRules", b" SPECULATIONRULES "):
        tag = b'<script type="' + kind + b'">'
        assert rw._edit_tag(tag, loads=False) == b'<script type="text/plain">', kind
