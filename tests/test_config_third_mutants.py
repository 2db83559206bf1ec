"""From a further mutation sweep (2 December 2026) of config (proxy/config_checks.py,
proxy/hosts.py, proxy/idn_hosts.py): each test kills one mutant that the rest of the suite let
through (18 of 36 survived, 5 of them equivalent; each test here failed with its mutant and
passes without). Its docstring names the mutant and the behaviour it proves."""

from __future__ import annotations

from pathlib import Path

from proxy.config import load_config
from proxy.errors import ConfigError
from proxy.hosts import HostMap
from proxy.idn_hosts import RUN_CAP, read_host
from proxy.navigation import lookup_host

PROXY = """\
[server]
listen = "127.0.0.1:18080"
public_url = "https://proxy.westonlibrary.org"
{server}
[directory]
{directory}
[session]
{session}
[keys]
dir = "state/keys"

[vendors]
dir = "vendors"
"""
FILE_DIRECTORY = 'kind = "file"\npatrons_file = "patrons.toml"\n'
GALE = 'id = "gale"\ntitle = "Gale"\norigin = "https://go.gale.test"\nhosts = ["go.gale.test"]\n'


def problems(
    tmp_path: Path,
    *,
    server: str = "",
    directory: str = FILE_DIRECTORY,
    session: str = "",
    vendors: dict[str, str] | None = None,
) -> set[tuple[str, str]]:
    """(file name, key) of every problem check-config reports; empty when the config loads."""
    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors").mkdir(exist_ok=True)
    for name, text in (vendors or {"gale": GALE + 'auth = "ip"\n'}).items():
        (tmp_path / "vendors" / f"{name}.toml").write_text(text)
    (tmp_path / "proxy.toml").write_text(
        PROXY.format(server=server, directory=directory, session=session)
    )
    try:
        load_config(tmp_path / "proxy.toml")
    except ConfigError as exc:
        return {(Path(p.file).name, p.key) for p in exc.problems}
    return set()


def test_a_cookie_name_of_64_characters_loads_and_65_is_refused(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_server — `[A-Za-z0-9_]{1,64}` → `{1,63}`. The
    documented bound is 64 characters: a session cookie name of exactly 64 loads, one more is
    named as the mistake in server.cookie_name."""
    assert problems(tmp_path, server=f'cookie_name = "{"w" * 64}"') == set()
    assert problems(tmp_path, server=f'cookie_name = "{"w" * 65}"') == {
        ("proxy.toml", "server.cookie_name")
    }


def test_plain_ldap_to_another_machine_loads_with_start_tls(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_directory — `u.scheme == "ldap" and not d.start_tls
    and not _is_loopback(…)` → without `not d.start_tls`. `ldap://` to the library's directory
    server with `start_tls = true` encrypts the PINs and loads; without StartTLS it is refused."""
    ldap = 'kind = "ldap"\nurls = ["ldap://ldap.westonlibrary.org"]\nbase_dn = "dc=weston"\n'
    assert problems(tmp_path, directory=ldap + "start_tls = true\n") == set()
    assert problems(tmp_path, directory=ldap) == {("proxy.toml", "directory.urls[0]")}


def test_an_idle_timeout_equal_to_the_lifetime_loads(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_session — `s.idle_timeout_s > s.lifetime_s` →
    `>=`. A library that signs patrons out only at the session's end sets both to the same
    value; that config loads, and an idle timeout over the lifetime is refused."""
    assert problems(tmp_path, session="idle_timeout_s = 3600\nlifetime_s = 3600") == set()
    assert problems(tmp_path, session="idle_timeout_s = 3601\nlifetime_s = 3600") == {
        ("proxy.toml", "session.idle_timeout_s")
    }


def test_a_vendor_limit_equal_to_the_servers_loads(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_vendor — `not 0 <= v.max_in_flight <=
    cfg.server.max_in_flight` → `… < cfg.server.max_in_flight`. A vendor file may let its
    database use all of the server's slots; one over is named in that vendor file."""
    ip = GALE + 'auth = "ip"\n'
    server = "max_in_flight = 8"
    assert problems(tmp_path, server=server, vendors={"gale": ip + "max_in_flight = 8\n"}) == set()
    assert problems(tmp_path, server=server, vendors={"gale": ip + "max_in_flight = 9\n"}) == {
        ("gale.toml", "max_in_flight")
    }


def test_a_host_listed_twice_in_one_vendor_file_loads(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_vendors_together — `other is not None and other.id
    != v.id` → `other is not None`. A vendor file that names one of its hosts twice (as an
    EZproxy stanza's HJ and H lines often do) claims it from no one else and loads; a second
    vendor claiming it is still refused."""
    twice = GALE.replace('["go.gale.test"]', '["go.gale.test", "go.gale.test"]') + 'auth = "ip"\n'
    assert problems(tmp_path, vendors={"gale": twice}) == set()
    other = 'id = "cengage"\ntitle = "Cengage"\norigin = "https://go.gale.test"\n'
    other += 'hosts = ["go.gale.test"]\nauth = "ip"\n'
    assert ("gale.toml", "hosts") in problems(tmp_path, vendors={"gale": twice, "cengage": other})


def test_a_redis_url_with_a_user_name_and_an_empty_password_loads(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:redis_url_has_password — `if colon and password` → `if
    colon`. `redis://weston:@host` names a user and no password (the password is in
    redis_password_file): nothing secret is inline, so it loads; `weston:pw@` is refused."""
    url = "redis://weston:{}@127.0.0.1:6379/0"
    assert problems(tmp_path, session=f'store = "redis"\nredis_url = "{url.format("")}"') == set()
    inline = f'store = "redis"\nredis_url = "{url.format("synthetic")}"'
    assert problems(tmp_path, session=inline) == {("proxy.toml", "session.redis_url")}


def test_a_never_proxy_entry_in_capitals_under_the_vendors_hosts_loads(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_vendor — `host_matches(p, sample.lower())` →
    `host_matches(p, sample)`. Host names are case-blind and the host map lower-cases
    never_proxy, so `Static.Gale.test` (as an EZproxy file may spell it) under `*.gale.test`
    loads; an entry under another domain is still named."""
    gale = GALE.replace('["go.gale.test"]', '["go.gale.test", "*.gale.test"]') + 'auth = "ip"\n'
    capitals = gale + 'never_proxy = ["Static.Gale.test", "*.CDN.Gale.test"]\n'
    assert problems(tmp_path, vendors={"gale": capitals}) == set()
    elsewhere = gale + 'never_proxy = ["Static.Gale.test", "static.other.test"]\n'
    assert problems(tmp_path, vendors={"gale": elsewhere}) == {("gale.toml", "never_proxy[1]")}


def _host_map(port: int | None = 8443) -> HostMap:
    return HostMap.build(
        public_scheme="https",
        public_host="proxy.westonlibrary.org",
        public_port=port,
        vendor_hosts=[("gale", ["go.gale.test", "kb.gale.test"])],
    )


def test_a_port_spelled_with_a_leading_zero_is_neither_ours_nor_a_vendors() -> None:
    """kills: proxy/hosts.py:HostMap.split_request_host — `… or port_text != str(port)` →
    without it. `:08443` is no browser's spelling of the proxy's port: such a Host header is
    neither the proxy's own host nor a mapped vendor host, so no page is served under it."""
    hosts = _host_map(8443)
    mapped = "go-gale-test.proxy.westonlibrary.org"
    assert hosts.is_public_host("proxy.westonlibrary.org:8443")
    assert hosts.vendor_host_from_request(f"{mapped}:8443") == "go.gale.test"
    assert hosts.split_request_host("proxy.westonlibrary.org:08443") is None
    assert not hosts.is_public_host("proxy.westonlibrary.org:08443")
    assert hosts.vendor_host_from_request(f"{mapped}:08443") is None


def test_a_host_header_with_a_kelvin_sign_is_no_vendor_host() -> None:
    """kills: proxy/hosts.py:HostMap.split_request_host — `if not host_header.isascii(): return
    None` → deleted. `str.lower()` turns the Kelvin sign (U+212A) into `k`: without the ASCII
    test, a look-alike Host header that no DNS name can be is served as the vendor host
    `kb.gale.test`; it must be no host of the proxy's at all."""
    hosts = _host_map(None)
    assert hosts.vendor_host_from_request("kb-gale-test.proxy.westonlibrary.org") == "kb.gale.test"
    look_alike = "\u212ab-gale-test.proxy.westonlibrary.org"
    assert hosts.split_request_host(look_alike) is None
    assert hosts.vendor_host_from_request(look_alike) is None


def _percent(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode())


def test_an_international_host_written_in_exactly_run_cap_bytes_is_read() -> None:
    """kills: proxy/idn_hosts.py:read_host — `len(run) > RUN_CAP` → `len(run) >= RUN_CAP`.
    RUN_CAP is the longest run that still names a host: a vendor host written percent-encoded
    in exactly that many bytes is read (and so mapped); one byte more is not a host."""
    labels = ["\u66f8" * 10] * 10 + ["\u66f8" * 12]
    written = (".".join(_percent(label) for label in labels) + "a.test").encode()
    assert len(written) == RUN_CAP
    host = lookup_host(".".join(labels) + "a.test")
    assert read_host(written + b"/app.js", 0, lambda h: h == host) == (RUN_CAP, host)
    longer = written[: -len(b".test")] + b"a.test"
    assert read_host(longer + b"/app.js", 0, lambda h: True) == (0, None)


def test_an_international_host_over_253_characters_names_no_vendor() -> None:
    """kills: proxy/idn_hosts.py:read_host — `len(host) > 253` → `len(host) > 254`. A name
    that UTS #46 maps to more than DNS's 253 characters (a fullwidth `\uff41` first, read as
    `a`) is no host, even under a vendor's wildcard (`*.gale.test`): it is left alone, not
    mapped to a name no resolver or certificate could serve; 253 is still read."""

    def under_wildcard(host: str) -> bool:
        return host.endswith(".gale.test")

    head = "\uff41" + ".".join(["a" * 60] * 3)[1:]
    for pad, named in ((60, True), (61, False)):
        text = f"{head}.{'a' * pad}.gale.test"
        host = lookup_host(text)
        assert len(host) == 253 + (not named)
        end, found = read_host(text.encode() + b"/app.js", 0, under_wildcard)
        assert end == len(text.encode())
        assert found == (host if named else None)


def test_an_international_host_followed_by_two_full_stops_is_still_read() -> None:
    """kills: proxy/idn_hosts.py:read_host — `while count and text[count - 1] in _DOTS` → `if
    …`. Prose ends a URL with a full stop, and an ideographic one may follow: `bücher.test。.`
    still names the vendor host, ending before both stops (the trailing-dot rule has them), so
    the page's link is mapped instead of sending the patron to the vendor directly."""
    data = "bücher.test\u3002. next".encode()
    end, host = read_host(data, 0, lambda h: h == "xn--bcher-kva.test")
    assert (end, host) == (len("bücher.test".encode()), "xn--bcher-kva.test")


def test_a_host_in_windows_1252_bytes_is_read_as_windows_1252() -> None:
    """kills: proxy/idn_hosts.py:read_host — `decoded.decode("windows-1252", "replace")` →
    `decoded.decode("latin-1", "replace")`. Byte 0x9A is `š` in the windows-1252 pages many
    vendors still serve (a C1 control in Latin-1): `šport.test` in those bytes names the
    vendor's xn-- host, as a browser reads it, so its link is mapped."""
    host = lookup_host("šport.test")
    assert host.startswith("xn--")
    assert read_host(b"\x9aport.test/a.js", 0, lambda h: h == host) == (10, host)


# Checked and found fine (no test kept):
# - proxy/hosts.py:unmap_label — `or label.endswith("-")` dropped: a label ending in hyphens
#   decodes to a host ending in `.` or `-`, which is_valid_hostname refuses anyway.
# - proxy/hosts.py:HostMap.split_request_host — `0 < port < 65536` → `<= 65536`: a port 65536
#   never equals the public port (or 443/80), so no Host header with it is ours or a vendor's.
# - proxy/hosts.py:HostMap.split_request_host — `%` dropped from the refused characters: a host
#   holding `%` is never the public host, unmap_label refuses it, and a port with it is no number.
# - proxy/hosts.py:HostMap.dotless_netloc — `or parts[0].endswith("..")` dropped: with one dot
#   cut the host still ends in `.`, which _classify never takes as ours or a vendor's.
# - proxy/hosts.py:HostMap._vendor_host_of — `if "." in label: return None` deleted: unmap_label's
#   round trip (`map_label(host) != label`) refuses any label holding a dot.
# - proxy/config_checks.py:check_server — `max_in_flight_per_vendor <= max_in_flight` → `<`:
#   killed by tests/test_admission.py (a test here was dropped as redundant).
# - proxy/config_checks.py:check_vendor_access — `e.groups and cfg.directory.kind == "ldap" and
#   …` → without the kind test: killed by tests/test_eligibility.py (its file-directory fixture).
