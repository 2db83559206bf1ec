"""Config loading: frozen dataclasses, every problem reported at once with file and key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import load_config
from proxy.errors import ConfigError

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
