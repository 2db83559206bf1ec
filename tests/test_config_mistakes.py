"""Config mistakes IT staff make, from a review: values that `check-config` accepted (or crashed
on) and that would otherwise only show at run time, or be silently misread. Each test is one
concrete mistake, with what the IT person would see in its docstring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.config import load_config
from proxy.errors import ConfigError
from tests.harness import write_secret
from tests.test_reload import ONE, Served, one, served, signed_in  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent

PROXY = """\
[server]
listen = "127.0.0.1:18080"
public_url = "{public_url}"
{server_extra}

[directory]
{directory}

[keys]
dir = "state/keys"

[vendors]
dir = "vendors"
{extra}
"""

FILE_DIRECTORY = 'kind = "file"\npatrons_file = "patrons.toml"'

VENDOR = """\
id = "ebsco"
title = "EBSCOhost"
origin = "https://search.ebscohost.com"
hosts = ["search.ebscohost.com"]
auth = "assertion"
{extra}
"""


def write(
    root: Path,
    *,
    public_url: str = "https://proxy.westonlibrary.org",
    server_extra: str = "",
    directory: str = FILE_DIRECTORY,
    extra: str = "",
    vendor: str | None = None,
    vendor_extra: str = "",
) -> Path:
    (root / "patrons.toml").write_text("")
    (root / "vendors").mkdir(parents=True, exist_ok=True)
    (root / "vendors" / "ebsco.toml").write_text(
        vendor if vendor is not None else VENDOR.format(extra=vendor_extra)
    )
    cfg = root / "proxy.toml"
    cfg.write_text(
        PROXY.format(
            public_url=public_url, server_extra=server_extra, directory=directory, extra=extra
        )
    )
    return cfg


def check_config(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def problem_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.strip() for line in (r.stdout + r.stderr).splitlines() if ": " in line]


def assert_refused(cfg: Path, file: Path, key: str) -> None:
    r = check_config(cfg)
    out = r.stdout + r.stderr
    assert r.returncode == 1, f"check-config accepted it (exit {r.returncode}):\n{out}"
    assert "Traceback" not in out, f"check-config crashed instead of naming the key:\n{out}"
    assert any(line.startswith(f"{file}: {key}") for line in problem_lines(r)), out


# --- server.public_url spellings that pass check-config and break or leak at run time ---------


@pytest.mark.parametrize(
    "public_url, why",
    [
        (
            "https://proxy.westonlibrary.org.",
            "trailing dot: patrons who follow the library site's links send Host "
            "proxy.westonlibrary.org, which is then neither the proxy's host nor a mapped "
            "host's parent: every page 404s",
        ),
        (
            "https://bücher-weston.example",
            "non-ASCII host: browsers send the xn-- form, the proxy compares with the Unicode "
            "form (and refuses non-ASCII Host headers outright), so nothing is ever served",
        ),
        (
            "https://admin:hunter2@proxy.westonlibrary.org",
            "userinfo: the assertion's iss claim (= public_url) carries the credentials to "
            "every assertion vendor, and every link to /login carries them to the browser",
        ),
        (
            "https://proxy.westonlibrary.org#top",
            "a fragment: links are public_url + path, so sign-in becomes "
            "https://proxy.westonlibrary.org#top/login (the home page, not the form)",
        ),
        (
            "https://proxy.westonlibrary.org?",
            "an empty query: links become https://proxy.westonlibrary.org?/login",
        ),
    ],
    # An IP address stays allowed (config_checks._public_host_problem says why).
    ids=["trailing-dot", "non-ascii", "userinfo", "fragment", "empty-query"],
)
def test_public_url_that_cannot_work_is_refused(tmp_path: Path, public_url: str, why: str) -> None:
    """IT staff typing public_url get "OK" from check-config for a value the proxy then
    misreads (why); the defect shows only when patrons cannot sign in, or in a vendor's logs.
    check-config refuses a path or a query already; these spellings slip through."""
    cfg = write(tmp_path, public_url=public_url)
    assert_refused(cfg, cfg, "server.public_url")


# --- numbers that are not numbers -------------------------------------------------------------


@pytest.mark.parametrize(
    "where, setting, key",
    [
        ("directory", "timeout_s = nan", "directory.timeout_s"),
        ("directory", "timeout_s = inf", "directory.timeout_s"),
        ("server", "shutdown_grace_s = nan", "server.shutdown_grace_s"),
        ("server", "admission_wait_s = inf", "server.admission_wait_s"),
        ("vendor", "timeout_s = nan", "timeout_s"),
        ("stats", "flush_interval_s = nan", "stats.flush_interval_s"),
    ],
    ids=lambda v: v.replace(" ", "").replace("=", "-") if isinstance(v, str) else None,
)
def test_nan_and_inf_are_refused(tmp_path: Path, where: str, setting: str, key: str) -> None:
    """TOML allows `nan` and `inf`. The range checks are written as `x <= 0` / `x < 0`, which
    nan never satisfies, so check-config says OK. At run time directory.timeout_s = nan (or
    inf) reaches ldap3 through math.ceil() and every sign-in fails (ValueError/OverflowError);
    nan timeouts, grace periods and flush intervals make asyncio timers meaningless; an
    infinite admission_wait_s means a patron behind a hung vendor waits forever instead of
    getting the 503 "busy" page. A config mistake should name the file and key instead."""
    kwargs: dict[str, Any] = {}
    if where == "directory":
        kwargs["directory"] = FILE_DIRECTORY + "\n" + setting
    elif where == "server":
        kwargs["server_extra"] = setting
    elif where == "vendor":
        kwargs["vendor_extra"] = setting
    else:
        kwargs["extra"] = f"\n[{where}]\n{setting}\n"
    cfg = write(tmp_path, **kwargs)
    file = tmp_path / "vendors" / "ebsco.toml" if where == "vendor" else cfg
    assert_refused(cfg, file, key)


# --- secret files that are directories --------------------------------------------------------


def _secret_dir(root: Path) -> Path:
    d = root / "state"
    d.mkdir(mode=0o700, exist_ok=True)
    d.chmod(0o700)
    return d


def test_check_config_on_a_server_secret_that_is_a_directory_names_the_key(tmp_path: Path) -> None:
    """`secret_file = "state"` (or the systemd StateDirectory, mode 0700) instead of
    `state/server-secret`: check-config prints a Python traceback (IsADirectoryError from
    check_session's read_text) instead of "proxy.toml: session.secret_file: … is a directory".
    IT staff see a crash, not which line of their file to fix."""
    _secret_dir(tmp_path)
    cfg = write(tmp_path, extra='\n[session]\nsecret_file = "state"\n')
    assert_refused(cfg, cfg, "session.secret_file")


def test_load_config_reports_a_directory_secret_as_a_config_error(tmp_path: Path) -> None:
    """The loader is what `reload` (and `serve`) rely on to turn every mistake into a
    ConfigError they can report and refuse; an IsADirectoryError escapes that `except`, so the
    reload task dies with no outcome and no reason (see the reload test below)."""
    _secret_dir(tmp_path)
    cfg = write(tmp_path, extra='\n[session]\nsecret_file = "state"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert any(p.key == "session.secret_file" for p in exc.value.problems)


async def test_reload_onto_a_directory_secret_is_refused_with_a_reason(served: Served) -> None:  # noqa: F811
    """A running proxy sent SIGHUP after the config's [session] secret_file was pointed at a
    directory: the reload must be refused with a logged reason (at the least that [session]
    needs a restart, or that the secret file is a directory). Today load_config raises
    IsADirectoryError inside the reload task: no `reload_refused` line, no status file, the
    `weston-proxy reload` waiting for an outcome gets none; staff cannot tell why nothing
    happened."""
    _secret_dir(served.cfg.parent)
    text = served.cfg.read_text().replace(
        'store = "memory"', 'store = "memory"\nsecret_file = "state"', 1
    )
    assert 'secret_file = "state"' in text
    served.cfg.write_text(text)
    outcome = await served.hup()
    assert outcome["event"] == "reload_refused"
    r = await served.driver.own("GET", "/healthz")
    assert r.status == 200


def test_bind_password_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    """`bind_password_file = "secrets"` (the folder, 0700, instead of the file in it): the mode
    check passes on the directory, so check-config says OK, and then `serve` refuses to start
    ("directory.bind_password_file: cannot be read") when the directory is first built. The
    brief for check-config is to catch what would otherwise only show at run time."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    secrets.chmod(0o700)
    directory = (
        'kind = "ldap"\nurls = ["ldaps://ldap1.westonlibrary.org"]\n'
        'bind_dn = "cn=proxy,dc=westonlibrary,dc=org"\nbind_password_file = "secrets"\n'
        'base_dn = "ou=patrons,dc=westonlibrary,dc=org"\n'
    )
    cfg = write(tmp_path, directory=directory)
    assert_refused(cfg, cfg, "directory.bind_password_file")


def test_shared_login_secret_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    """Same for a shared-login vendor's password_file pointing at the vendors/secrets folder
    (docs/systemd-and-tls.md creates it 0700): check-config OK, the vendor's login fails on the
    first patron request."""
    d = tmp_path / "vendors" / "secrets"
    d.mkdir(parents=True, mode=0o700)
    d.chmod(0o700)
    write_secret(d / "ebsco-username", "weston")
    vendor = VENDOR.replace('auth = "assertion"', 'auth = "shared-login"').format(
        extra='[shared_login]\nmethod = "basic"\nusername_file = "secrets/ebsco-username"\n'
        'password_file = "secrets"\n'
    )
    cfg = write(tmp_path, vendor=vendor)
    assert_refused(cfg, tmp_path / "vendors" / "ebsco.toml", "shared_login.password_file")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("caf\u00e9-secret\n".encode("latin-1"), "is not UTF-8 text"),
        (b"", "is empty"),
        (b"\n", "is empty"),
    ],
)
@pytest.mark.parametrize("where", ["shared_login", "bind", "redis"])
def test_a_secret_file_that_holds_no_usable_password_is_refused(
    tmp_path: Path, content: bytes, why: str, where: str
) -> None:
    """From a review of the vendor adapters: a password file saved in Latin-1 passed
    check-config and `serve` died at start with a bare UnicodeDecodeError naming neither file
    nor key; an empty one (`touch`, never filled) passed and the proxy signed in with an empty
    password (for LDAP, an anonymous bind). Both are refused, naming the key, by check-config
    and by `serve` alike."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    write_secret(secrets / "p", "placeholder")
    (secrets / "p").write_bytes(content)
    vendor, directory, extra = None, FILE_DIRECTORY, ""
    file, key = tmp_path / "proxy.toml", ""
    if where == "shared_login":
        (tmp_path / "vendors" / "secrets").mkdir(parents=True, mode=0o700)
        write_secret(tmp_path / "vendors" / "secrets" / "u", "weston")
        (secrets / "p").rename(tmp_path / "vendors" / "secrets" / "p")
        vendor = VENDOR.replace('auth = "assertion"', 'auth = "shared-login"').format(
            extra='[shared_login]\nmethod = "basic"\nusername_file = "secrets/u"\n'
            'password_file = "secrets/p"\n'
        )
        file, key = tmp_path / "vendors" / "ebsco.toml", "shared_login.password_file"
    elif where == "bind":
        directory = (
            'kind = "ldap"\nurls = ["ldaps://ldap1.westonlibrary.org"]\n'
            'bind_dn = "cn=proxy,dc=westonlibrary,dc=org"\nbind_password_file = "secrets/p"\n'
            'base_dn = "ou=patrons,dc=westonlibrary,dc=org"\n'
        )
        key = "directory.bind_password_file"
    else:
        extra = (
            '[session]\nstore = "redis"\nredis_url = "redis://127.0.0.1:1/0"\n'
            'redis_password_file = "secrets/p"\n'
        )
        key = "session.redis_password_file"
    cfg = write(tmp_path, directory=directory, vendor=vendor, extra=extra)
    assert_refused(cfg, file if where == "shared_login" else cfg, key)
    checked = check_config(cfg)
    assert why in checked.stdout + checked.stderr
    started = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert started.returncode != 0
    assert "Traceback" not in started.stderr, started.stderr
    assert key in started.stderr and why in started.stderr, started.stderr


# --- hosts ------------------------------------------------------------------------------------


def test_vendor_host_under_the_proxys_own_host_is_refused(tmp_path: Path) -> None:
    """A vendor host inside the proxy's own domain (search.proxy.westonlibrary.org when
    public_url is https://proxy.westonlibrary.org) is accepted. With the wildcard DNS record
    the proxy needs, that name resolves to the proxy itself: the proxy would fetch "the
    vendor" from itself (with the assertion), and the browser would treat it as a mapped host
    with label "search". check-config refuses `*.westonlibrary.org` and the proxy's exact host
    but not a host under it."""
    vendor = VENDOR.replace("search.ebscohost.com", "search.proxy.westonlibrary.org").format(
        extra=""
    )
    cfg = write(tmp_path, vendor=vendor)
    assert_refused(cfg, tmp_path / "vendors" / "ebsco.toml", "hosts")


# --- settings accepted and then ignored -------------------------------------------------------


def test_shared_login_table_on_a_vendor_with_another_auth_is_refused(tmp_path: Path) -> None:
    """A vendor file with a full [shared_login] table but `auth = "assertion"` (left from the
    template, or a copy-paste): check-config says OK and the proxy silently ignores the table:
    the vendor never gets the library's login, patrons see the vendor's own sign-in page, and
    nothing tells IT staff why. A table the chosen adapter does not read should be named."""
    cfg = write(
        tmp_path,
        vendor_extra='[shared_login]\nmethod = "form"\n'
        'login_url = "https://search.ebscohost.com/login"\n'
        'username_env = "HOME"\npassword_env = "HOME"\n',
    )
    assert_refused(cfg, tmp_path / "vendors" / "ebsco.toml", "shared_login")


async def test_reload_that_moves_the_statistics_file_is_not_silently_ignored(
    served: Served,  # noqa: F811
) -> None:
    """IT staff move `[stats] path` (say, to a larger disk) and run `systemctl reload`: the
    reload answers `reloaded`, but the stats feature read `[stats]` once at start (its reload
    hook only refreshes search paths), so the running proxy keeps writing the old file while
    `weston-proxy stats --config` now reads the new, empty one: the monthly report silently
    loses the counts. `[stats]` is not in RESTART_ONLY either. Either refuse the reload
    ("only a restart applies this") or apply it."""
    moved = served.cfg.parent / "state" / "moved-stats.sqlite3"
    served.cfg.write_text(
        served.cfg.read_text() + '\n[stats]\npath = "state/moved-stats.sqlite3"\n'
    )
    outcome = await served.hup()
    if outcome["event"] == "reload_refused":
        assert any("stats" in p for p in outcome["problems"]), outcome
        return
    await signed_in(served)
    assert (await served.driver.get_vendor(ONE, "/counted")).status == 200
    served.proc.terminate()  # the last flush happens at shutdown
    served.proc.wait(15)
    old = served.cfg.parent / "state" / "stats.sqlite3"
    assert moved.exists(), (
        f"reloaded, but the counts went to the old file (exists: {old.exists()}), "
        "not the new [stats] path"
    )
