"""From a second mutation sweep by hand (1 December 2026) of the configuration checks:
proxy/config_checks.py, proxy/config.py, proxy/config_read.py and proxy/ldap_policy.py.

Each test kills one or more hand-made mutants that the suite (including the first sweep's
tests/test_config_mutants.py) let through: a configuration that weakens a patron's privacy and
loaded anyway, a mistake blamed on no key or the wrong key, or a password-policy answer misread.
Unit-level: real TOML files in a temporary folder through `load_config`, as check-config reads
them; synthetic values only (no real patron, account or password).

Note: a few cases also kill mutants the suite already catches (seen after they were written):
check_server `@` in netloc, check_vendor_access privacy_policy_url scheme and pseudonymous-
without-permission, the session secret_file and redis_password_file checks, check_own_addresses
and the duplicate-host check. They are kept as the same behaviour proven in one place.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from proxy.config import Contract, VendorConfig, load_config
from proxy.errors import ConfigError
from proxy.ldap_policy import NO_ANSWER, PASSWORD_POLICY_OID, policy_answer

PROXY = """\
[server]
listen = "127.0.0.1:18080"
public_url = "https://proxy.westonlibrary.org"

[directory]
kind = "file"
patrons_file = "patrons.toml"

[keys]
dir = "state/keys"

[vendors]
dir = "vendors"
"""


def vendor(
    vid: str = "gale",
    host: str = "go.gale.test",
    extra: str = "",
    auth: str = "ip",
    hosts: list[str] | None = None,
    origin: str | None = None,
) -> str:
    listed = ", ".join(f'"{h}"' for h in (hosts or [host]))
    return (
        f'id = "{vid}"\ntitle = "{vid.title()}"\norigin = "{origin or "https://" + host}"\n'
        f'hosts = [{listed}]\nauth = "{auth}"\n' + extra
    )


def _with(**sections: str) -> str:
    """PROXY with lines added to its sections (or new sections): one mistake at a time."""
    text = PROXY
    for name, lines in sections.items():
        if f"[{name}]\n" in text:
            text = text.replace(f"[{name}]\n", f"[{name}]\n{lines}\n", 1)
        else:
            text += f"\n[{name}]\n{lines}\n"
    return text


def _load(tmp_path: Path, vendors: dict[str, str], proxy: str) -> list[tuple[str, str, str]]:
    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors").mkdir(exist_ok=True)
    for name, text in vendors.items():
        (tmp_path / "vendors" / f"{name}.toml").write_text(text)
    (tmp_path / "proxy.toml").write_text(proxy)
    try:
        load_config(tmp_path / "proxy.toml")
    except ConfigError as exc:
        return [(Path(p.file).name, p.key, p.message) for p in exc.problems]
    return []


def problems(
    tmp_path: Path, vendors: dict[str, str] | None = None, proxy: str = PROXY
) -> set[tuple[str, str]]:
    """(file name, key) of every problem check-config reports; empty when the config loads."""
    found = _load(tmp_path, {"gale": vendor()} if vendors is None else vendors, proxy)
    return {(f, k) for f, k, _ in found}


def _secret(path: Path, text: str = "synthetic-library-account\n", mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def test_the_baseline_config_loads(tmp_path: Path) -> None:
    """The base every test below breaks in one place loads clean."""
    assert problems(tmp_path) == set()


# --- proxy/config_checks.py: the proxy's own URL, listen address, limits -----------------------


@pytest.mark.parametrize(
    ("lines", "key"),
    [
        # kills: _is_loopback `.is_loopback` → `.is_private`
        ('public_url = "http://10.0.0.5:8080"', "server.public_url"),
        # kills: check_server `"@" in parts.netloc` → False
        ('public_url = "https://staff:pw@proxy.westonlibrary.org"', "server.public_url"),
        # kills: check_server `"#" in s.public_url` → False
        ('public_url = "https://proxy.westonlibrary.org#top"', "server.public_url"),
        # kills: check_host_port `0 < int(port)` → `0 <= int(port)`
        ('listen = "127.0.0.1:0"', "server.listen"),
        # kills: check_server `0 <= max_in_flight_per_vendor` dropped
        ("max_in_flight_per_vendor = -1", "server.max_in_flight_per_vendor"),
        # kills: config_read._type_ok float `math.isfinite` dropped
        ("upstream_timeout_s = inf", "server.upstream_timeout_s"),
        # kills: config_read._type_ok int `not isinstance(value, bool)` dropped
        ("workers = true", "server.workers"),
    ],
)
def test_server_values_that_weaken_privacy_or_cannot_work_are_refused(
    tmp_path: Path, lines: str, key: str
) -> None:
    """kills: proxy/config_checks.py:_is_loopback — `ipaddress.ip_address(host).is_loopback` →
    `.is_private`; check_server — `"@" in parts.netloc` → False, `"#" in s.public_url` → False,
    `not 0 <= max_in_flight_per_vendor <= max_in_flight` → without `0 <=`; check_host_port —
    `0 < int(port)` → `0 <= int(port)`; proxy/config_read.py:_type_ok — float without
    `math.isfinite`, int without `not isinstance(value, bool)`.

    A proxy at http://10.0.0.5 sends every session cookie in clear over the library's LAN; a
    user:password in public_url would go to every vendor (it is the assertion's iss) and every
    browser; a fragment or port 0 cannot work; a negative per-vendor share or an infinite
    timeout (a hung vendor holds a slot for ever) or `workers = true` must be named by
    check-config on that key, not loaded."""
    k = lines.split(" ", 1)[0]
    if k in ("public_url", "listen"):
        text = "".join(
            lines + "\n" if ln.startswith(k + " ") else ln for ln in PROXY.splitlines(True)
        )
    else:
        text = _with(server=lines)
    assert ("proxy.toml", key) in problems(tmp_path, proxy=text)


def test_a_help_url_with_a_javascript_scheme_and_a_host_is_refused(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_library — `scheme not in ("http", "https")` → also
    letting `javascript` by. The help link is on every page: `javascript://host/%0a…` has a
    host, and clicked it would run in the proxy's own origin, next to the patron's session."""
    text = _with(library='help_url = "javascript://westonlibrary.org/%0aalert(document.cookie)"')
    assert ("proxy.toml", "library.help_url") in problems(tmp_path, proxy=text)


def test_a_negative_key_activation_delay_is_refused(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_logging_and_keys — the `_not_negative(cfg.keys, …)`
    call dropped. A negative delay would make a rotated signing key sign at once, before vendors
    have fetched it: every patron's assertion refused until they do."""
    text = PROXY.replace('dir = "state/keys"\n', 'dir = "state/keys"\nactivate_after_s = -1\n')
    assert ("proxy.toml", "keys.activate_after_s") in problems(tmp_path, proxy=text)


# --- proxy/config_checks.py: directory ---------------------------------------------------------

LDAP = """\
[server]
listen = "127.0.0.1:18080"
public_url = "https://proxy.westonlibrary.org"

[directory]
kind = "ldap"
base_dn = "ou=patrons,dc=westonlibrary,dc=org"
{extra}

[keys]
dir = "state/keys"

[vendors]
dir = "vendors"
"""


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        # kills: check_directory plain-ldap-to-another-machine check → False
        ('urls = ["ldap://ldap.westonlibrary.org"]', "directory.urls[0]"),
        # kills: check_directory `"{username}" not in user_filter` → False
        ('urls = ["ldaps://ldap.westonlibrary.org"]\nuser_filter = "(uid=guest)"',
         "directory.user_filter"),
    ],
)  # fmt: skip
def test_directory_settings_that_leak_pins_or_sign_in_everyone_as_one_are_refused(
    tmp_path: Path, extra: str, key: str
) -> None:
    """kills: proxy/config_checks.py:check_directory — `u.scheme == "ldap" and not
    d.start_tls and not _is_loopback(...)` → False; `"{username}" not in d.user_filter` →
    False. Plain ldap:// to another machine sends every patron's card number and PIN in clear;
    a user filter without {username} finds the same entry whoever signs in."""
    assert ("proxy.toml", key) in problems(tmp_path, proxy=LDAP.format(extra=extra))


# --- proxy/config_checks.py: session -----------------------------------------------------------


def test_a_redis_password_in_an_upper_case_query_parameter_is_refused(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:redis_url_has_password — `k.lower() == "password"` →
    `k == "password"`. redis-py reads `?PASSWORD=` too: the password would sit inline in the
    group-readable proxy.toml and every config backup. Refused, and never repeated."""
    text = _with(session='redis_url = "redis://127.0.0.1:6379/0?PASSWORD=hunter2"')
    found = _load(tmp_path, {"gale": vendor()}, text)
    assert ("proxy.toml", "session.redis_url") in {(f, k) for f, k, _ in found}
    assert not any("hunter2" in m for _, _, m in found)


def test_a_zero_idle_timeout_is_refused(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_session — `s.idle_timeout_s <= 0` → `< 0`. A zero
    idle timeout signs every patron out between two clicks."""
    text = _with(session="idle_timeout_s = 0")
    assert ("proxy.toml", "session.idle_timeout_s") in problems(tmp_path, proxy=text)


def test_a_too_short_server_secret_in_the_environment_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kills: proxy/config_checks.py:check_session — `_check_server_secret(os.environ[...])`
    dropped. The server secret derives every patron's opaque key and pseudonym: a short one
    can be guessed, and every pseudonym linked back. The value is never repeated."""
    monkeypatch.setenv("WESTON_MUTCONFIG2_SECRET", "tooshort")
    text = _with(session='secret_env = "WESTON_MUTCONFIG2_SECRET"')
    found = _load(tmp_path, {"gale": vendor()}, text)
    assert ("proxy.toml", "session.secret_env") in {(f, k) for f, k, _ in found}
    assert not any("tooshort" in m for _, _, m in found)


@pytest.mark.parametrize(
    ("lines", "rel", "key"),
    [
        # kills: check_session `_check_secret_file(p, …, "session.secret_file", …)` dropped
        ("", "state/server-secret", "session.secret_file"),
        # kills: check_session redis_password_file check's problems discarded
        ('redis_password_file = "redis-password"', "redis-password", "session.redis_password_file"),
    ],
)
def test_session_secret_files_readable_by_others_are_refused(
    tmp_path: Path, lines: str, rel: str, key: str
) -> None:
    """kills: proxy/config_checks.py:check_session — the secret_file's `_check_secret_file`
    dropped; the redis_password_file's problems not kept. A server secret or Redis password
    readable by every local account lets any of them link pseudonyms or read every session."""
    _secret(tmp_path / rel, "x" * 64 + "\n", 0o644)
    text = _with(session=lines) if lines else PROXY
    assert ("proxy.toml", key) in problems(tmp_path, proxy=text)


# --- proxy/config_checks.py: one vendor file ---------------------------------------------------

_PSEUDO = "[contract]\npermits_pseudonymous_id = true\nexpires = 2099-12-31\n"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        # kills: check_vendor `release == "pseudonymous" and auth != "assertion"` → False
        (vendor(auth="ip", extra='release = "pseudonymous"\n' + _PSEUDO), "release"),
        # kills: check_vendor `… and not permits_pseudonymous_id` → False
        (vendor(auth="assertion", extra='release = "pseudonymous"\n[contract]\n'
                'expires = 2099-12-31\n'), "release"),
        # kills: check_vendor `… and contract.expires is None` → False
        (vendor(auth="assertion", extra='release = "pseudonymous"\n[contract]\n'
                'permits_pseudonymous_id = true\n'), "contract.expires"),
        # kills: check_vendor_access `"cookie"` out of _RESERVED_HEADERS
        (vendor(auth="assertion", extra='assertion_header = "Cookie"\n'), "assertion_header"),
        # kills: check_vendor_access privacy_policy_url scheme check → False
        (vendor(extra='[contract]\nprivacy_policy_url = "javascript:alert(1)"\n'),
         "contract.privacy_policy_url"),
        # kills: check_vendor `origin.fragment` dropped
        (vendor(origin="https://go.gale.test#top"), "origin"),
        # kills: check_vendor_access eligibility.ldap_filter with kind = file → False
        (vendor(extra='[eligibility]\nldap_filter = "(employeeType=staff)"\n'),
         "eligibility.ldap_filter"),
        # kills: config_read._type_ok date without `not isinstance(value, dt.datetime)`
        (vendor(extra="[contract]\nexpires = 2099-12-31T00:00:00\n"), "contract.expires"),
    ],
)  # fmt: skip
def test_vendor_settings_that_weaken_privacy_are_refused_on_their_key(
    tmp_path: Path, text: str, key: str
) -> None:
    """kills: proxy/config_checks.py:check_vendor — pseudonymous release `auth != "assertion"`
    → False, `not permits_pseudonymous_id` → False, `contract.expires is None` → False,
    `origin.fragment` dropped; check_vendor_access — `cookie` taken out of _RESERVED_HEADERS,
    the privacy_policy_url scheme check → False, the ldap_filter-needs-ldap check → False;
    proxy/config_read.py:_type_ok — a datetime accepted as a date.

    A pseudonym sent without a contract that permits it, without an end date, or through an
    adapter that cannot carry it; an assertion in the Cookie header (the patron's cookies
    travel with it); a javascript: privacy link on /privacy; an eligibility filter the file
    directory can never decide: each must be named by check-config on its key."""
    assert ("gale.toml", key) in problems(tmp_path, {"gale": text})


def test_shared_login_credentials_never_post_to_another_host(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_vendor_access — the form login_url-on-the-vendor's-
    hosts check → False. The library's shared account would be posted to a host that is not
    the vendor's."""
    for name in ("user", "pass"):
        _secret(tmp_path / "vendors" / name)
    text = vendor(
        auth="shared-login",
        extra='[shared_login]\nmethod = "form"\nlogin_url = "https://collector.example.net/login"\n'
        'username_file = "user"\npassword_file = "pass"\n',
    )
    assert ("gale.toml", "shared_login.login_url") in problems(tmp_path, {"gale": text})


def test_a_shared_login_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:_check_secret_file — `readable_by_others(st.st_mode)` →
    False. The library's database account, readable by every local user, is refused."""
    _secret(tmp_path / "vendors" / "user", mode=0o644)
    _secret(tmp_path / "vendors" / "pass")
    text = vendor(
        auth="shared-login",
        extra='[shared_login]\nusername_file = "user"\npassword_file = "pass"\n',
    )
    assert ("gale.toml", "shared_login.username_file") in problems(tmp_path, {"gale": text})


def test_an_origin_password_holding_a_slash_is_refused_and_never_repeated(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_vendor — `"@" in v.origin.partition("://")[2]` →
    `"@" in urlsplit(v.origin).netloc`. A password holding `/` ends urlsplit's netloc before
    the `@`; check-config must still refuse it without printing the password (its output goes
    to terminals and tickets)."""
    text = vendor(origin="https://lib:s3cr3t/x@go.gale.test")
    found = _load(tmp_path, {"gale": text}, PROXY)
    assert ("gale.toml", "origin") in {(f, k) for f, k, _ in found}
    assert not any("s3cr3t" in m for _, _, m in found), found


def test_a_host_mapping_to_exactly_63_characters_loads(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_vendor — `len(map_label(bare)) > MAX_DNS_LABEL` →
    `>=`. A 63-character label is a valid DNS label: the vendor is reachable and must load."""
    host = "a" * (63 - len("-gale-test")) + ".gale.test"
    from proxy.hosts import map_label

    assert len(map_label(host)) == 63
    assert problems(tmp_path, {"gale": vendor(host=host)}) == set()


# --- proxy/config_checks.py: vendors side by side ----------------------------------------------


def test_two_assertion_vendors_on_one_audience_are_refused(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_vendors_together — `audiences.get(v.aud)` → None.
    Either vendor could replay the other's patrons' live assertions at it."""
    found = problems(
        tmp_path,
        {
            "gale": vendor(auth="assertion"),
            "jstor": vendor(
                "jstor", "www.jstor.test", auth="assertion", extra='audience = "gale"\n'
            ),
        },
    )
    assert ("jstor.toml", "audience") in found


def test_two_vendors_claiming_one_host_are_refused_on_hosts(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_vendors_together — `other is not None and other.id
    != v.id` → False. Two files listing one host: the mistake is named on `hosts`, where it is."""
    found = problems(tmp_path, {"gale": vendor(), "jstor": vendor("jstor", "go.gale.test")})
    assert ("jstor.toml", "hosts") in found


def test_a_vendors_origin_served_as_another_vendor_is_refused(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_own_addresses — `served_as is not None and
    served_as != v.id` → False. With `*.gale.test` for gale and an exact go.gale.test for
    another vendor, gale's own origin is served with the other vendor's adapter and
    eligibility: a patron not eligible for gale would reach it."""
    found = problems(
        tmp_path,
        {
            "gale": vendor(hosts=["*.gale.test"], origin="https://go.gale.test"),
            "other": vendor("other", "go.gale.test"),
        },
    )
    assert ("gale.toml", "origin") in found


# --- proxy/config_read.py ----------------------------------------------------------------------


def test_an_inline_secret_is_told_to_move_to_a_file(tmp_path: Path) -> None:
    """kills: proxy/config_read.py:read_table — `_SECRETISH.search(key)` → False. An inline
    `password` is refused with the way out (a _file or _env), not as a mere typo."""
    found = _load(tmp_path, {"gale": vendor()}, _with(directory='bind_password = "x"'))
    assert any(k == "directory.bind_password" and "must not be inline" in m for _, k, m in found), (
        found
    )


def test_a_form_field_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    """kills: proxy/config_read.py:_type_ok — dict values not checked to be strings. A form
    login's extra field of 1 would be posted as whatever the client makes of it."""
    for name in ("user", "pass"):
        _secret(tmp_path / "vendors" / name)
    text = vendor(
        auth="shared-login",
        extra='[shared_login]\nusername_file = "user"\npassword_file = "pass"\n'
        "[shared_login.extra_fields]\nremember = 1\n",
    )
    assert ("gale.toml", "shared_login.extra_fields") in problems(tmp_path, {"gale": text})


# --- proxy/config.py ---------------------------------------------------------------------------


def test_no_pseudonym_without_a_contract_that_permits_it() -> None:
    """kills: proxy/config.py:VendorConfig.releases_pseudonym — `c.permits_pseudonymous_id`
    dropped. A vendor set to pseudonymous under a contract that does not permit it gets the
    anonymous assertion (P: no patron identifier without a contract allowing it)."""
    v = VendorConfig(
        id="gale",
        title="Gale",
        origin="https://go.gale.test",
        hosts=("go.gale.test",),
        auth="assertion",
        release="pseudonymous",
        contract=Contract(permits_pseudonymous_id=False, expires=dt.date(2099, 12, 31)),
    )
    assert v.releases_pseudonym(dt.date(2026, 12, 1)) is False


# --- proxy/ldap_policy.py ----------------------------------------------------------------------


def _answer(value: bytes):  # type: ignore[no-untyped-def]
    return policy_answer({"controls": {PASSWORD_POLICY_OID: {"value": value}}})


def test_a_policy_control_with_trailing_bytes_is_not_read() -> None:
    """kills: proxy/ldap_policy.py:policy_answer — `if rest: return NO_ANSWER` → never. A
    control value with bytes after the response is not what slapd sends: it is not read as
    "your PIN has expired" (the bind's own result decides)."""
    good = bytes.fromhex("3003810100")  # error = passwordExpired
    assert _answer(good).error == 0
    assert _answer(good + b"\x05\x00") == NO_ANSWER


def test_a_negative_time_before_expiry_reads_as_zero() -> None:
    """kills: proxy/ldap_policy.py:policy_answer — `expires = max(0, …)` → `int(…)`. A
    directory that sends a negative timeBeforeExpiration must not show the patron "your PIN
    expires in -1 seconds"."""
    assert _answer(bytes.fromhex("3005a0038001ff")).expires_in_s == 0
