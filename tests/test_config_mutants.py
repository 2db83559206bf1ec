"""From a mutation sweep of configuration loading, check-config refusals and reload (26 of 58
mutants survived the suite; no defect was found).

Each test here kills one hand-made mutant of proxy/config.py, proxy/config_checks.py or
proxy/reload.py that no earlier test noticed: a config mistake that would have loaded silently,
been blamed on the wrong key, or a reload that would have answered "reloaded" for a setting only a
restart applies. Unit-level: real TOML files in a temporary folder through `load_config`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from proxy.config import load_config
from proxy.errors import ConfigError

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
) -> str:
    listed = ", ".join(f'"{h}"' for h in (hosts or [host]))
    return (
        f'id = "{vid}"\ntitle = "{vid.title()}"\norigin = "https://{host}"\n'
        f'hosts = [{listed}]\nauth = "{auth}"\n' + extra
    )


def write(tmp_path: Path, vendors: dict[str, str], proxy: str = PROXY) -> Path:
    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors").mkdir(exist_ok=True)
    for name, text in vendors.items():
        (tmp_path / "vendors" / f"{name}.toml").write_text(text)
    (tmp_path / "proxy.toml").write_text(proxy)
    return tmp_path / "proxy.toml"


def problems(tmp_path: Path, vendors: dict[str, str], proxy: str = PROXY) -> set[tuple[str, str]]:
    """(file name, key) of every problem check-config reports; empty when the config loads."""
    try:
        load_config(write(tmp_path, vendors, proxy))
    except ConfigError as exc:
        return {(Path(p.file).name, p.key) for p in exc.problems}
    return set()


def test_the_baseline_config_loads(tmp_path: Path) -> None:
    """The base every test below breaks in one place loads clean."""
    assert problems(tmp_path, {"gale": vendor()}) == set()


def _with(**sections: str) -> str:
    """PROXY with lines added to its sections (or new sections) — one mistake at a time."""
    text = PROXY
    for name, lines in sections.items():
        if f"[{name}]\n" in text:
            text = text.replace(f"[{name}]\n", f"[{name}]\n{lines}\n", 1)
        else:
            text += f"\n[{name}]\n{lines}\n"
    return text


# --- proxy/config.py ---------------------------------------------------------------------------


def test_a_vendor_file_whose_id_is_not_its_file_name_is_refused_on_id(tmp_path: Path) -> None:
    """kills: proxy/config.py:load_vendor — the `path.stem != data["id"]` check → `if False`.
    IT staff who copy gale.toml to jstor.toml and forget the id get told so, on that file's `id`,
    instead of two files silently sharing one vendor id (statistics and reload name files by id)."""
    found = problems(tmp_path, {"jstor": vendor("gale")})
    assert ("jstor.toml", "id") in found


def test_a_top_level_value_with_a_section_name_is_an_unknown_section(tmp_path: Path) -> None:
    """kills: proxy/config.py:load_config — `key in EXTRA_SECTIONS and isinstance(value, dict)` →
    without the isinstance. `stats = 1` (not a table) must be refused on key `stats`, not kept as
    a section no checker reads."""
    found = problems(tmp_path, {"gale": vendor()}, "stats = 1\n" + PROXY)
    assert ("proxy.toml", "stats") in found


# --- proxy/config_checks.py: server ------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "key"),
    [
        ('listen = "127.0.0.1:65536"', "server.listen"),  # kills `< 65536` → `<= 65536`
        ('public_url = "https://proxy.westonlibrary.org:0"', "server.public_url"),  # port 0
        ('public_url = "https://proxy.westonlibrary.org/?"', "server.public_url"),  # empty query
        ("workers = 0", "server.workers"),
        ("listen_backlog = 0", "server.listen_backlog"),
        ("admission_wait_s = 0", "server.admission_wait_s"),
        ("upstream_timeout_s = 0", "server.upstream_timeout_s"),
        ("max_in_flight = 0", "server.max_in_flight"),
        ("max_in_flight = 8\nmax_in_flight_per_vendor = 9", "server.max_in_flight_per_vendor"),
    ],
)
def test_server_values_that_cannot_work_are_refused_on_their_key(
    tmp_path: Path, lines: str, key: str
) -> None:
    """kills: proxy/config_checks.py:check_host_port `0 < port < 65536` → `<= 65536`;
    url_mistake `port == 0` → False; check_server `or "?" in public_url` dropped, `< 1` → `< 0`
    (workers, listen_backlog, max_in_flight), `> 0` → `>= 0` (timeouts), `per_vendor <=
    max_in_flight` dropped. A listen port the kernel refuses, a proxy URL no browser can use,
    zero workers or a zero timeout (every request a 504) must fail check-config, on that key."""
    server_lines = lines
    text = _with(server=server_lines)
    if "public_url" in lines:
        text = text.replace('public_url = "https://proxy.westonlibrary.org"\n', "", 1)
    if "listen =" in lines:
        text = text.replace('listen = "127.0.0.1:18080"\n', "", 1)
    assert key in {k for _, k in problems(tmp_path, {"gale": vendor()}, text)}


def test_a_proxy_on_a_dot_localhost_name_may_use_http(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:_is_loopback — `host.endswith(".localhost")` dropped.
    `http://proxy.localhost:8080` (the built-in default, a first try on one machine) never
    leaves the machine, so plain http is allowed there; it must not be refused as "must be https"."""
    text = PROXY.replace("https://proxy.westonlibrary.org", "http://proxy.localhost:8080")
    assert problems(tmp_path, {"gale": vendor()}, text) == set()


# --- proxy/config_checks.py: directory ---------------------------------------------------------

LDAP = """\
[server]
listen = "127.0.0.1:18080"
public_url = "https://proxy.westonlibrary.org"

[directory]
kind = "ldap"
urls = ["ldap://127.0.0.1:3389"]
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
        ('bind_dn = "cn=proxy,dc=westonlibrary,dc=org"', "directory.bind_password_file"),
        ('user_filter = "(&(objectClass=inetOrgPerson)(uid={username})"', "directory.user_filter"),
        ('eligible_filter = "(memberOf=cn=adults"', "directory.eligible_filter"),
        ("timeout_s = 0", "directory.timeout_s"),
        ("pool_size = 0", "directory.pool_size"),
    ],
)
def test_directory_mistakes_are_refused_on_their_key(tmp_path: Path, extra: str, key: str) -> None:
    """kills: proxy/config_checks.py:check_directory — bind_dn without a password check → False;
    the balanced-parentheses part of the filter check dropped; `timeout_s <= 0` → `< 0`;
    `pool_size < 1` → `< 0`. A service account with no password (every sign-in fails at the
    directory), an unbalanced filter (every search an LDAP error) or a zero timeout must be named
    by check-config, not met by the first patron."""
    found = problems(tmp_path, {"gale": vendor()}, LDAP.format(extra=extra))
    assert ("proxy.toml", key) in found


# --- proxy/config_checks.py: session -----------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "key"),
    [
        ('store = "memory"', "session.store"),  # with workers = 2 below
        ("idle_timeout_s = 7200\nlifetime_s = 3600", "session.idle_timeout_s"),
        ('redis_url = "redis://127.0.0.1:6379/0?password=hunter2"', "session.redis_url"),
    ],
)
def test_session_mistakes_are_refused_on_their_key(tmp_path: Path, lines: str, key: str) -> None:
    """kills: proxy/config_checks.py:check_session — `workers > 1 and store == "memory"` → False
    (each worker its own sessions: patrons signed out at random); `idle_timeout_s > lifetime_s`
    → False; redis_url_has_password's `password=` query reading → False (a Redis password inline
    in the group-readable proxy.toml). Each is refused on its key."""
    text = _with(session=lines)
    if key == "session.store":
        text = _with(session=lines, server="workers = 2")
    found = problems(tmp_path, {"gale": vendor()}, text)
    assert ("proxy.toml", key) in found
    assert not any("hunter2" in k for _, k in found)


# --- proxy/config_checks.py: one vendor file ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "key"),
    [
        ("Gale", vendor("Gale"), "id"),
        ("gale", vendor(hosts=["www.gale.test"]), "origin"),
        ("gale", vendor(extra='referer = "https://www.westonlibrary.org/"\n'), "referer"),
        ("gale", vendor(extra='assertion_header = "X Patron"\n'), "assertion_header"),
        ("gale", vendor(extra='third_party = "allwo"\n'), "third_party"),
        ("gale", vendor(extra="max_in_flight = 65\n"), "max_in_flight"),
        ("gale", vendor(extra='never_proxy = ["cdn.other.test"]\n'), "never_proxy[0]"),
        ("gale", vendor(hosts=["go.gale.test", "*.amazonaws.com"]), "hosts"),
        ("gale", vendor(host="go.gale.test:0", hosts=["go.gale.test"]), "origin"),
        ("gale", vendor(host="go.gale.test/?x=1", hosts=["go.gale.test"]), "origin"),
    ],
)
def test_vendor_file_mistakes_are_refused_on_their_key(
    tmp_path: Path, name: str, text: str, key: str
) -> None:
    """kills: proxy/config_checks.py:check_vendor — the id pattern → False; origin host not in
    hosts → False; check_vendor_access's `referer` read by another adapter → False; the
    assertion_header pattern → False; third_party not block/allow → False; `max_in_flight <=
    server.max_in_flight` dropped; never_proxy outside the vendor's hosts → False;
    covers_public_suffix's `_SHARED_HOSTING` dropped (a wildcard over everyone's S3 buckets);
    url_mistake's port 0; the origin's `query` check dropped. Each would let a vendor file that
    cannot work as written (or that proxies other people's sites) load silently."""
    found = problems(tmp_path, {name: text})
    assert (f"{name}.toml", key) in found, sorted(found)


def test_a_vendor_host_under_the_proxys_own_host_is_refused(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_vendors_together — `h.endswith("." + public_host)` →
    False. With host mapping's wildcard DNS, such a host reaches the proxy itself: it would
    fetch "the vendor", assertion and all, from itself."""
    text = vendor(hosts=["go.gale.test", "go-gale-test.proxy.westonlibrary.org"])
    assert ("gale.toml", "hosts") in problems(tmp_path, {"gale": text})


# --- proxy/reload.py -------------------------------------------------------------------------


def _restart_keys(tmp_path: Path, change) -> list[str]:  # type: ignore[no-untyped-def]
    from proxy.reload import restart_only_changes

    old = load_config(write(tmp_path, {"gale": vendor()}))
    new = change(old)
    return [p.key for p in restart_only_changes(old, new)]


def _server(**kw: object):  # type: ignore[no-untyped-def]
    return lambda c: dataclasses.replace(c, server=dataclasses.replace(c.server, **kw))


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (_server(cookie_name="other_session"), "server.cookie_name"),
        (_server(public_url="https://proxy2.westonlibrary.org"), "server.public_url"),
        (_server(pid_file="run/other.pid"), "server.pid_file"),
        (_server(listen="127.0.0.1:18081"), "server.listen"),
        (_server(workers=2), "server.workers"),
        (
            lambda c: dataclasses.replace(
                c, session=dataclasses.replace(c.session, idle_timeout_s=60)
            ),
            "[session]",
        ),
        (
            lambda c: dataclasses.replace(c, logging=dataclasses.replace(c.logging, level="debug")),
            "[logging]",
        ),
        (
            lambda c: dataclasses.replace(
                c, demo=dataclasses.replace(c.demo, vendor_listen="127.0.0.1:9")
            ),
            "[demo]",
        ),
        (
            lambda c: dataclasses.replace(c, extra={"stats": {"flush_interval_s": 5.0}}),
            "stats.flush_interval_s",
        ),
        (
            lambda c: dataclasses.replace(c, extra={"stats": {"refresh_interval_s": 5.0}}),
            "stats.refresh_interval_s",
        ),
    ],
)
def test_a_reload_that_changes_a_restart_only_setting_is_refused(
    tmp_path: Path,
    change,
    key: str,  # type: ignore[no-untyped-def]
) -> None:
    """kills: proxy/reload.py:RESTART_ONLY / STATS_RESTART_ONLY — any entry removed. A reload
    that changed the cookie patrons hold, the proxy's URL, the pid file, the session store or
    where statistics go must be refused ("only a restart applies this"), not answered
    "reloaded" while the old value silently stays in force."""
    assert key in _restart_keys(tmp_path, change)


def test_the_same_stats_file_spelt_two_ways_is_no_restart_only_change(tmp_path: Path) -> None:
    """kills: proxy/reload.py:restart_only_changes — the `old.resolve(a), new.resolve(b)` of
    stats.path dropped. `state/stats.sqlite3` and `./state/stats.sqlite3` are one file: IT staff
    who tidy the spelling must not have every later reload refused."""
    keys = _restart_keys(
        tmp_path,
        lambda c: dataclasses.replace(c, extra={"stats": {"path": "./state/stats.sqlite3"}}),
    )
    assert keys == []


def test_the_pid_file_of_a_newer_instance_is_left_alone(tmp_path: Path) -> None:
    """kills: proxy/reload.py:forget_pid_file — `read_text().strip() == str(pid)` → True. A
    stopping old process must not delete the pid file a newer instance wrote, or `weston-proxy
    reload` could no longer find the running proxy."""
    from proxy.reload import forget_pid_file, pid_path

    cfg = load_config(write(tmp_path, {"gale": vendor()}))
    p = pid_path(cfg)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("999999\n")
    forget_pid_file(cfg, os.getpid())
    assert p.read_text() == "999999\n"
    p.write_text(f"{os.getpid()}\n")
    forget_pid_file(cfg, os.getpid())
    assert not p.exists()


def test_a_pseudonym_is_released_on_the_contracts_last_day_and_not_after(tmp_path: Path) -> None:
    """kills: proxy/config.py:VendorConfig.releases_pseudonym — `c.expires >= today` →
    `c.expires > today`. A contract that ends on a date still runs on that date: the permitted
    vendor keeps its pseudonym through it (no patron loses saved searches a day early), and from
    the next day on gets only the anonymous assertion."""
    import datetime as dt

    from proxy.config import Contract, VendorConfig

    end = dt.date(2027, 6, 30)
    v = VendorConfig(
        id="gale",
        title="Gale",
        origin="https://go.gale.test",
        hosts=("go.gale.test",),
        auth="assertion",
        release="pseudonymous",
        contract=Contract(permits_pseudonymous_id=True, expires=end),
    )
    assert v.releases_pseudonym(end)
    assert not v.releases_pseudonym(end + dt.timedelta(days=1))


def test_a_form_shared_login_without_its_login_url_is_refused(tmp_path: Path) -> None:
    """kills: proxy/config_checks.py:check_vendor — `sl.method == "form" and not sl.login_url` →
    False. A form login with nowhere to post the library's account would load, and every patron
    would meet the vendor's own sign-in page instead of the database."""
    (tmp_path / "vendors").mkdir()
    for name in ("user", "pass"):
        secret = tmp_path / "vendors" / name
        secret.write_text("synthetic-library-account\n")
        os.chmod(secret, 0o600)
    text = vendor(
        auth="shared-login",
        extra='[shared_login]\nmethod = "form"\nusername_file = "user"\npassword_file = "pass"\n',
    )
    assert ("gale.toml", "shared_login.login_url") in problems(tmp_path, {"gale": text})
