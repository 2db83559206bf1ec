"""`vendors list` (text and JSON) and `vendors test ID` against a recording vendor."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.config import load_config
from proxy.vendor_test import run_vendor_test
from tests.harness import RecordingVendor, vendor_toml
from tests.test_reload import file_directory_config, run_cli

ONE = "www.vendor-one.test"
LANDING = """<html><head><script src="https://cdn.vendor-two.test/lib.js"></script>
<link rel="stylesheet" href="https://fonts.elsewhere.test/f.css"></head>
<body><a href="http://www.vendor-one.test/article/1">article</a>
<a href="https://help.vendor-one.test/faq">help</a>
<script>var api = "https:\\/\\/api.elsewhere.test\\/v1";</script></body></html>"""


def two_toml() -> str:
    return (
        'id = "two"\ntitle = "Two Database"\norigin = "https://www.vendor-two.test"\n'
        'hosts = ["www.vendor-two.test", "cdn.vendor-two.test"]\nauth = "ip"\n'
        'connect_to = "127.0.0.1:9"\n\n[contract]\nexpires = 2027-06-30\n'
    )


@pytest.fixture
async def vendor_one(vendor_factory: Any) -> RecordingVendor:
    v: RecordingVendor = await vendor_factory(ONE)

    async def start(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://{ONE}/home?from=start")

    async def home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/landing")

    async def landing(request: web.Request) -> web.StreamResponse:
        return web.Response(text=LANDING, content_type="text/html")

    v.routes.update({"/": start, "/home": home, "/landing": landing})
    return v


@pytest.fixture
def cfg(tmp_path: Path, port: int, vendor_one: RecordingVendor) -> Path:
    one = vendor_toml(
        "one",
        vendor_one,
        hosts=[ONE, "*.vendor-one.test"],
        extra='never_proxy = ["help.vendor-one.test"]\n',
    )
    return file_directory_config(tmp_path, port, {"one": one, "two": two_toml()})


async def test_vendors_test_reports_redirect_chain(cfg: Path) -> None:
    """Every hop is listed with its status and the vendor URL it asked for."""
    config = load_config(cfg)
    report = await run_vendor_test(config, config.vendors[0])
    assert [(h.status, h.url) for h in report.chain] == [
        (302, f"http://{ONE}/"),
        (302, f"http://{ONE}/home?from=start"),
        (200, f"http://{ONE}/landing"),
    ]
    assert report.status == 200 and report.ok


async def test_vendors_test_sorts_hosts_in_the_page(cfg: Path) -> None:
    """Hosts the page links to: rewritten through the proxy, not configured, never proxied."""
    config = load_config(cfg)
    report = await run_vendor_test(config, config.vendors[0])
    assert report.rewritten == ["cdn.vendor-two.test", ONE]
    assert report.not_configured == ["api.elsewhere.test", "fonts.elsewhere.test"]
    assert report.never_proxied == ["help.vendor-one.test"]
    assert report.not_rewritten == []


async def test_vendors_test_goes_through_the_adapter_without_a_patron(
    cfg: Path, vendor_one: RecordingVendor
) -> None:
    """The vendor gets the adapter's assertion (no `sub`) and never the proxy's cookie."""
    import jwt

    config = load_config(cfg)
    await run_vendor_test(config, config.vendors[0])
    first = dict(vendor_one.requests[0].headers)
    claims = jwt.decode(first["X-Patron-Assertion"], options={"verify_signature": False})
    assert set(claims) == {"iss", "aud", "iat", "exp", "jti", "affiliation"}
    assert config.server.cookie_name not in first.get("Cookie", "")


async def test_vendors_test_stops_at_a_redirect_to_an_unmapped_host(
    cfg: Path, vendor_one: RecordingVendor
) -> None:
    """A redirect that leaves the configured hosts ends the chain and fails the test."""

    async def away(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("https://sso.elsewhere.test/login")

    vendor_one.routes["/"] = away
    config = load_config(cfg)
    report = await run_vendor_test(config, config.vendors[0])
    assert not report.ok
    assert "sso.elsewhere.test" in report.stopped
    assert report.not_configured == ["sso.elsewhere.test"]


async def test_vendors_test_command_text_and_exit_status(cfg: Path) -> None:
    """The command prints the chain and the unconfigured hosts, exit 0 when the page loads."""
    r = await asyncio.to_thread(run_cli, "vendors", "test", "one", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "vendor one: OK" in r.stdout
    assert f"redirect 200 http://{ONE}/landing" in r.stdout
    assert "NOT CONFIGURED" in r.stdout and "fonts.elsewhere.test" in r.stdout


async def test_vendors_test_command_json(cfg: Path) -> None:
    r = await asyncio.to_thread(
        run_cli, "vendors", "test", "one", "--config", str(cfg), "--format", "json"
    )
    data = json.loads(r.stdout)
    assert data["ok"] is True and data["status"] == 200
    assert len(data["chain"]) == 3


def test_vendors_test_unknown_id(cfg: Path) -> None:
    r = run_cli("vendors", "test", "nope", "--config", str(cfg))
    assert r.returncode == 2
    assert "no vendor 'nope'" in r.stderr and "one, two" in r.stderr


def test_vendors_list_text(cfg: Path) -> None:
    """One line per vendor (id, title, adapter, release, contract expiry) and its hosts."""
    r = run_cli("vendors", "list", "--config", str(cfg))
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["one", "One", "Database", "assertion", "anonymous", "-"]
    assert lines[1].split() == ["hosts:", f"{ONE},", "*.vendor-one.test"]
    assert lines[2].split()[-3:] == ["ip", "anonymous", "2027-06-30"]


def test_config_given_before_the_action_is_read(cfg: Path) -> None:
    """`vendors --config PATH list` (and `keys --config=PATH list`): the option written before
    the action, as many tools allow, works as it does after it. argparse alone said
    "invalid choice: '<the path>'", naming the config file as if it were the action."""
    after = run_cli("vendors", "list", "--config", str(cfg))
    before = run_cli("vendors", "--config", str(cfg), "list")
    assert (before.returncode, before.stdout) == (0, after.stdout), before.stderr
    keys = run_cli("keys", f"--config={cfg}", "list")
    assert keys.returncode == 0 and keys.stdout == run_cli("keys", "list", f"--config={cfg}").stdout
    wrong = run_cli("vendors", "--config", str(cfg), "lsit")
    assert wrong.returncode == 2 and "invalid choice: 'lsit'" in wrong.stderr


def test_vendors_list_json(cfg: Path) -> None:
    r = run_cli("vendors", "list", "--config", str(cfg), "--format", "json")
    rows = json.loads(r.stdout)
    assert rows[1] == {
        "id": "two",
        "title": "Two Database",
        "hosts": ["www.vendor-two.test", "cdn.vendor-two.test"],
        "auth": "ip",
        "release": "anonymous",
        "contract_expires": "2027-06-30",
    }
