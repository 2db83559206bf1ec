"""Config loading: frozen dataclasses, every problem reported at once with file and key."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import certifi
import pytest

from proxy.cli import config_checks
from proxy.config import load_config
from proxy.errors import ConfigError
from proxy.forward import Upstream
from proxy.logs import LOG_LEVELS, configure_logging

ROOT = Path(__file__).resolve().parent.parent


def _write(root: Path, proxy: str, vendors: dict[str, str]) -> Path:
    (root / "vendors").mkdir(parents=True, exist_ok=True)
    for name, text in vendors.items():
        (root / "vendors" / f"{name}.toml").write_text(text)
    (root / "proxy.toml").write_text(proxy)
    return root / "proxy.toml"


GOOD_VENDOR = """
id = "ebsco"
title = "EBSCOhost"
origin = "https://search.ebscohost.com"
hosts = ["search.ebscohost.com", "*.ebscohost.com"]
auth = "assertion"
"""

BROKEN_PROXY = """
[server]
listen = "nowhere"
public_url = "http://proxy.westonlibrary.org"
workerz = 2

[directory]
kind = "ldap"
urls = ["ldap://ldap.westonlibrary.org"]
bind_dn = "cn=proxy,dc=westonlibrary,dc=org"
bind_password = "hunter2"
base_dn = "ou=patrons,dc=westonlibrary,dc=org"
user_filter = "(uid=*)"

[session]
store = "mongo"

[vendors]
dir = "vendors"
"""

BROKEN_VENDOR = """
id = "bad"
title = "Bad"
origin = "https://www.bad.example"
hosts = ["*.com", "www.bad.example"]
auth = "magic"
release = "pseudonymous"
"""


def test_the_shipped_demo_config_loads() -> None:
    cfg = load_config(ROOT / "conf" / "proxy.toml")
    assert cfg.vendors[0].id == "demo"
    assert cfg.directory.kind == "file"


def test_every_problem_is_reported_with_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, BROKEN_PROXY, {"ebsco": GOOD_VENDOR, "bad": BROKEN_VENDOR})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    found = {(Path(p.file).name, p.key) for p in exc.value.problems}
    expected = {
        ("proxy.toml", "server.listen"),
        ("proxy.toml", "server.public_url"),  # http on a public host
        ("proxy.toml", "server.workerz"),  # typo
        ("proxy.toml", "directory.bind_password"),  # secret inline
        ("proxy.toml", "directory.urls[0]"),  # plain ldap to another machine
        ("proxy.toml", "directory.user_filter"),  # no {username}
        ("proxy.toml", "session.store"),
        ("bad.toml", "hosts"),  # *.com
        ("bad.toml", "auth"),
        ("bad.toml", "release"),
    }
    assert expected <= found, sorted(found)
    text = str(exc.value)
    assert "would proxy a whole public suffix" in text
    assert "valid choices: ip, assertion, shared-login, referer" in text
    assert "did you mean 'workers'" in text
    assert "hunter2" not in text


def test_group_readable_secret_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "bind"
    secret.write_text("pw")
    os.chmod(secret, 0o644)
    proxy = """
[server]
public_url = "http://proxy.localhost:8080"
[directory]
kind = "ldap"
urls = ["ldap://127.0.0.1:389"]
bind_dn = "cn=proxy"
bind_password_file = "bind"
base_dn = "dc=x"
"""
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, proxy, {}))
    assert any(
        p.key == "directory.bind_password_file" and "chmod 600" in p.message
        for p in exc.value.problems
    )


def test_two_vendors_claiming_one_host(tmp_path: Path) -> None:
    other = GOOD_VENDOR.replace('id = "ebsco"', 'id = "ebsco2"')
    proxy = '[server]\npublic_url = "http://proxy.localhost:8080"\n[directory]\nkind = "file"\npatrons_file = "p.toml"\n'
    (tmp_path / "p.toml").write_text("")
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, proxy, {"ebsco": GOOD_VENDOR, "ebsco2": other}))
    assert any("also claimed by" in p.message for p in exc.value.problems)


def test_check_config_cli_exits_1_and_lists_all(tmp_path: Path) -> None:
    path = _write(tmp_path, BROKEN_PROXY, {"bad": BROKEN_VENDOR})
    r = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert (
        "server.listen" in r.stdout and "bad.toml: auth" in r.stdout and "session.store" in r.stdout
    )


def test_check_config_cli_ok_on_demo() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy",
            "check-config",
            "--config",
            str(ROOT / "conf" / "proxy.toml"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------- values a type admits

FILE_DIRECTORY = '[directory]\nkind = "file"\npatrons_file = "p.toml"\n'


def _minimal(root: Path, *, vendor: str = GOOD_VENDOR, server: str = "", extra: str = "") -> Path:
    """proxy.toml on a local patrons file, `server` lines added to [server], one vendor file."""
    (root / "p.toml").write_text("")
    proxy = (
        f'[server]\npublic_url = "http://proxy.localhost:8080"\n{server}\n{FILE_DIRECTORY}{extra}'
    )
    return _write(root, proxy, {"ebsco": vendor})


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def problem_keys(path: Path) -> set[tuple[str, str]]:
    """(file name, key) of every problem check-config would list; empty when it loads."""
    try:
        load_config(path, extra_checks=config_checks())
    except ConfigError as exc:
        return {(Path(p.file).name, p.key) for p in exc.problems}
    return set()


@pytest.mark.parametrize(
    "origin", ["https://search.ebscohost.com:99999", "https://search.ebscohost.com:44x"]
)
def test_a_vendor_origin_with_a_bad_port_is_named_not_a_traceback(
    tmp_path: Path, origin: str
) -> None:
    vendor = GOOD_VENDOR.replace('"https://search.ebscohost.com"', f'"{origin}"')
    r = check_config(_minimal(tmp_path, vendor=vendor))
    assert "Traceback" not in r.stderr, r.stderr[-600:]
    assert r.returncode == 1
    assert "ebsco.toml: origin" in r.stdout and "is not a usable URL" in r.stdout


@pytest.mark.parametrize(
    "url", ["https://proxy.westonlibrary.org:99999", "https://[proxy.westonlibrary.org"]
)
def test_a_public_url_urllib_cannot_read_is_named_not_a_traceback(tmp_path: Path, url: str) -> None:
    path = _minimal(tmp_path)
    path.write_text(path.read_text().replace('"http://proxy.localhost:8080"', f'"{url}"'))
    r = check_config(path)
    assert "Traceback" not in r.stderr, r.stderr[-600:]
    assert r.returncode == 1
    assert "server.public_url" in r.stdout


def test_a_proxy_toml_not_in_utf8_is_named_not_a_traceback(tmp_path: Path) -> None:
    """Saved by Notepad in Windows-1252 ('Café', an en dash): the file is named, with the fix."""
    path = _minimal(tmp_path)
    path.write_bytes(
        path.read_bytes() + '[library]\nname = "Caf\u00e9 \u2013 Weston"\n'.encode("cp1252")
    )
    r = check_config(path)
    assert "Traceback" not in r.stderr, r.stderr[-300:]
    assert r.returncode == 1
    assert f"{path}: (file): cannot be read: not UTF-8 text" in r.stdout
    assert "save it as UTF-8" in r.stdout


def test_an_unknown_logging_level_or_format_is_refused(tmp_path: Path) -> None:
    """check-config said OK and `serve` then died in configure_logging (Unknown level)."""
    path = _minimal(tmp_path, extra='[logging]\nlevel = "verbose"\nformat = "jsn"\n')
    assert problem_keys(path) == {("proxy.toml", "logging.level"), ("proxy.toml", "logging.format")}


@pytest.mark.parametrize("level", [*LOG_LEVELS, "INFO", "Warning"])
def test_every_level_check_config_accepts_is_one_serve_starts_with(
    tmp_path: Path, level: str
) -> None:
    path = _minimal(tmp_path, extra=f'[logging]\nlevel = "{level}"\nformat = "json"\n')
    assert problem_keys(path) == set()
    cfg = load_config(path)
    try:
        configure_logging(cfg.logging.level, cfg.logging.format, stream=io.StringIO())
    finally:
        configure_logging("info", "json", stream=io.StringIO())


def test_a_shield_section_is_refused_and_says_where_the_shield_is_set(tmp_path: Path) -> None:
    """Nothing ever read [shield]: any key and value passed. The shield is per vendor."""
    path = _minimal(tmp_path, extra='[shield]\nenabled = "no"\nallow_hosts = ["t.example"]\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, extra_checks=config_checks())
    (problem,) = exc.value.problems
    assert problem.key == "shield" and "third_party" in problem.message


def test_a_missing_vendor_tls_ca_file_is_refused(tmp_path: Path) -> None:
    path = _minimal(tmp_path, vendor=GOOD_VENDOR + 'tls_ca_file = "certs/vendor-ca.pem"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, extra_checks=config_checks())
    (problem,) = exc.value.problems
    assert (Path(problem.file).name, problem.key) == ("ebsco.toml", "tls_ca_file")
    assert str(tmp_path / "vendors" / "certs" / "vendor-ca.pem") in problem.message


async def test_a_vendor_tls_ca_file_is_relative_to_the_vendor_file(tmp_path: Path) -> None:
    """As every path in the config: not to the directory systemd or Docker starts `serve` in."""
    (tmp_path / "vendors").mkdir()
    (tmp_path / "vendors" / "vendor-ca.pem").write_bytes(Path(certifi.where()).read_bytes())
    cfg = load_config(
        _minimal(tmp_path, vendor=GOOD_VENDOR + 'tls_ca_file = "vendor-ca.pem"\n'),
        extra_checks=config_checks(),
    )
    up = Upstream(
        cfg,
        hosts=cfg.host_map(),
        signer=None,
        sessions=None,
        rewriter=None,
        observe=lambda o: None,  # type: ignore[arg-type]
    )
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        await up.start()
    finally:
        os.chdir(cwd)
        await up.close()


@pytest.mark.parametrize(
    ("where", "key", "bad", "zero_ok"),
    [
        ("server", "upstream_timeout_s", 0, False),
        ("server", "upstream_connect_timeout_s", -1, False),
        ("server", "shutdown_grace_s", -1, True),
        ("server", "listen_backlog", 0, False),
        ("keys", "activate_after_s", -3600, True),
        ("vendor", "timeout_s", -1, True),  # 0 = server.upstream_timeout_s; -1 made every page 504
        ("limits", "requests_per_minute", -1, True),  # -1 suspended every session at once
        ("limits", "downloads_per_hour", -1, True),
        ("limits", "bytes_per_hour", -1, True),
        ("limits", "max_upload_bytes", -1, True),  # 0 = no request bodies
        ("contract", "retention_days", -30, True),
        ("contract", "breach_notice_days", -1, True),
    ],
)
def test_numbers_without_a_meaning_are_refused_and_a_meaningful_zero_is_not(
    tmp_path: Path, where: str, key: str, bad: int, zero_ok: bool
) -> None:
    def config_with(value: int) -> Path:
        line = f"{key} = {value}\n"
        if where == "server":
            return _minimal(tmp_path, server=line)
        if where == "keys":
            return _minimal(tmp_path, extra=f"[keys]\n{line}")
        if where == "vendor":
            return _minimal(tmp_path, vendor=line + GOOD_VENDOR)
        return _minimal(tmp_path, vendor=GOOD_VENDOR + f"[{where}]\n{line}")

    prefix = {"server": "server.", "keys": "keys.", "vendor": ""}.get(where, f"{where}.")
    file = "ebsco.toml" if where in ("vendor", "limits", "contract") else "proxy.toml"
    assert problem_keys(config_with(bad)) == {(file, prefix + key)}
    if zero_ok:
        assert problem_keys(config_with(0)) == set()


def test_reload_can_leave_environment_variables_to_the_running_proxy(tmp_path: Path) -> None:
    """load_config(environment=False), as `weston-proxy reload` runs it, skips only the checks
    that a secret's environment variable is set here."""
    path = _minimal(tmp_path, extra='[session]\nsecret_env = "WESTON_TEST_UNSET_SECRET"\n')
    assert problem_keys(path) == {("proxy.toml", "session.secret_env")}
    load_config(path, extra_checks=config_checks(), environment=False)


@pytest.mark.parametrize(
    "help_url",
    ["javascript:alert(document.cookie)", "data:text/html,<b>help</b>", "/help", "https://"],
)
def test_a_library_help_url_that_is_not_an_http_url_is_refused(
    tmp_path: Path, help_url: str
) -> None:
    """It becomes a link in every page's footer, the sign-in help box and the suspended page:
    refused unless http(s), as a vendor's privacy_policy_url is."""
    path = _minimal(tmp_path, extra=f'[library]\nhelp_url = "{help_url}"\n')
    assert problem_keys(path) == {("proxy.toml", "library.help_url")}


def test_a_library_help_url_on_the_web_is_accepted(tmp_path: Path) -> None:
    path = _minimal(tmp_path, extra='[library]\nhelp_url = "https://www.westonlibrary.org/help"\n')
    assert problem_keys(path) == set()


def test_a_branding_template_that_does_not_compile_is_refused_with_file_and_line(
    tmp_path: Path,
) -> None:
    """check-config (and so serve) compile the templates as a reload does: a syntax error in an
    override is refused here, not shown to every patron as a bare 500."""
    path = _minimal(tmp_path)
    override = tmp_path / "web" / "templates"
    override.mkdir(parents=True)
    (override / "brand.html").write_text('<a href="{{ own }}/menu">{{ library.name }</a>\n')
    r = check_config(path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{override / 'brand.html'}: line 1: template error" in r.stdout


def test_a_branding_template_not_in_utf8_is_refused(tmp_path: Path) -> None:
    path = _minimal(tmp_path)
    override = tmp_path / "web" / "templates"
    override.mkdir(parents=True)
    (override / "brand.html").write_bytes("<b>Biblioth\u00e8que</b>\n".encode("cp1252"))
    assert problem_keys(path) == {("brand.html", "(file)")}


_PROXY_TOML = """\
[server]
public_url = "https://proxy.westonlibrary.org"

[directory]
kind = "file"
patrons_file = "patrons.toml"

[session]
secret_file = "state/server-secret"

[keys]
dir = "state/keys"

[vendors]
dir = "vendors"
"""

_JSTOR = """\
id = "jstor"
title = "JSTOR"
origin = "https://www.jstor.org"
hosts = ["www.jstor.org", "*.jstor.org"]
auth = "ip"
"""

# One file, three ordinary mistakes: a misspelt optional key, an adapter in capitals, and a
# host another vendor already claims.
_GALE_WITH_MISTAKES = """\
id = "gale"
title = "Gale OneFile"
descripton = "Newspapers from around the world."
origin = "https://go.gale.com"
hosts = ["go.gale.com", "www.jstor.org"]
auth = "IP"
"""


def test_check_config_lists_every_problem_of_a_vendor_file_at_once(tmp_path: Path) -> None:
    """docs/vendor-setup.md: "Every problem is printed with its file and key". A vendor file
    with a misspelt key gets only that one reported: its invalid `auth` and the host another
    vendor already claims are hidden until the typo is fixed, so IT staff go round
    check-config once per mistake (and a file with a typo never has its hosts checked
    against the other vendors)."""
    (tmp_path / "proxy.toml").write_text(_PROXY_TOML)
    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors").mkdir()
    (tmp_path / "vendors" / "jstor.toml").write_text(_JSTOR)
    (tmp_path / "vendors" / "gale.toml").write_text(_GALE_WITH_MISTAKES)
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "proxy.toml")
    found = {(Path(p.file).name, p.key) for p in exc.value.problems}
    assert ("gale.toml", "descripton") in found
    assert {("gale.toml", "auth"), ("gale.toml", "hosts")} <= found, sorted(found)


def test_check_config_names_a_wrong_origin_beside_a_wrong_hosts_list(tmp_path: Path) -> None:
    """With `hosts` of the wrong type and an `origin` that is not an http(s) URL, both are named
    at once: a wrong `hosts` (left empty) sets off no origin check of its own, so none of the
    origin's problems is taken for a repeat."""
    from proxy.config import load_config
    from proxy.errors import ConfigError

    (tmp_path / "vendors").mkdir()
    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors" / "one.toml").write_text(
        'id = "one"\ntitle = "One"\norigin = "ftp://www.vendor-one.test"\n'
        'hosts = "www.vendor-one.test"\nauth = "ip"\n'
    )
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(
        '[server]\nlisten = "127.0.0.1:18080"\npublic_url = "http://proxy.localhost:18080"\n'
        '[library]\nname = "W"\nscope = "w.org"\n[directory]\nkind = "file"\n'
        '[session]\nstore = "memory"\n[vendors]\ndir = "vendors"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    keys = {p.key for p in caught.value.problems if p.file.endswith("one.toml")}
    assert "hosts" in keys
    assert "origin" in keys, f"only {sorted(keys)} named; the ftp origin is not"
