"""From a review of the public contract used literally, as an outside acceptance suite would:
DESIGN.md §3's own example `conf/proxy.toml` and `conf/vendors/ebsco.toml` word for word, changing
only the line under test, with the CLI driven as `python -m proxy` (the same as the `weston-proxy`
console script). Every test here failed on the code it was written against.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness import free_port, write_secret

ROOT = Path(__file__).resolve().parent.parent


def label(h: str) -> str:
    """DESIGN §3's host mapping, literally."""
    return h.replace("-", "--").replace(".", "-")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=120,
    )


def literal_design_config(
    root: Path, *, session: str = 'store = "memory"', origin: str = "https://search.ebscohost.com"
) -> Path:
    """DESIGN.md §3's two example files, word for word apart from the line under test."""
    conf = root / "conf"
    (conf / "vendors").mkdir(parents=True, exist_ok=True)
    write_secret(conf / "secrets" / "ldap-bind-password", "synthetic-bind-secret")
    (conf / "proxy.toml").write_text(
        textwrap.dedent(f"""\
        [server]
        listen = "127.0.0.1:8080"
        public_url = "https://proxy.westonlibrary.org"

        [library]
        name = "Weston Public Library"
        scope = "westonlibrary.org"

        [directory]
        kind = "ldap"
        urls = ["ldaps://ldap1.westonlibrary.org", "ldaps://ldap2.westonlibrary.org"]   # tried in order
        bind_dn = "cn=proxy,dc=westonlibrary,dc=org"
        bind_password_file = "secrets/ldap-bind-password"
        base_dn = "ou=patrons,dc=westonlibrary,dc=org"
        user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
        timeout_s = 3

        [session]
        {session}

        [vendors]
        dir = "vendors"                # one TOML file per vendor
        """)
    )
    (conf / "vendors" / "ebsco.toml").write_text(
        textwrap.dedent(f"""\
        id = "ebsco"
        title = "EBSCOhost Research Databases"
        origin = "{origin}"
        hosts = ["search.ebscohost.com", "*.ebscohost.com"]   # what is proxied (EZproxy Host/Domain lines)
        auth = "assertion"             # ip | assertion | shared-login | referer
        release = "anonymous"          # anonymous | pseudonymous (needs contract.permits_pseudonymous_id = true)
        connect_to = "10.0.0.5:443"    # optional: where to connect instead of resolving the host (split DNS, tests)

        [contract]
        privacy_policy_url = "https://www.ebsco.com/legal/privacy"
        reviewed = 2026-06-01
        expires = 2027-06-30
        retention_days = 30
        """)
    )
    return conf / "proxy.toml"


@pytest.mark.parametrize(
    "redis_url",
    [
        "redis://:Synthetic-Redis-Pw-5521@redis.internal.westonlibrary.org:6379/0",
        "redis://proxy:Synthetic-Redis-Pw-5521@redis.internal.westonlibrary.org:6379/0",
        "rediss://redis.internal.westonlibrary.org:6380/0?password=Synthetic-Redis-Pw-5521",
    ],
)
def test_redis_password_inline_in_redis_url_is_refused(tmp_path: Path, redis_url: str) -> None:
    """DESIGN §3: "Secrets come from files or environment variables, never inline." The
    directory's `bind_password = "..."` is refused for exactly that reason ("secrets must not
    be inline"), and there is a `session.redis_password_file`; yet the Redis password written
    into `redis_url` (the one key DESIGN names for Redis) is accepted as OK, so the store's
    password sits in proxy.toml (often world-readable, in version control)."""
    cfg = literal_design_config(tmp_path, session=f'store = "redis"\nredis_url = "{redis_url}"')
    r = run_cli("check-config", "--config", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "session.redis_url" in out, out
    assert "Synthetic-Redis-Pw-5521" not in out, out


def test_vendor_origin_with_credentials_is_refused(tmp_path: Path) -> None:
    """A vendor `origin` carrying `user:password@` is accepted by check-config, although the
    proxy never uses those credentials (nothing reaches the vendor: the config does not do what
    it says) and `compliance` then prints the password in its report as evidence. Secrets are
    never inline (DESIGN §3): it must be refused, naming the key, without echoing the
    password."""
    cfg = literal_design_config(
        tmp_path, origin="https://libacct:Synthetic-Vendor-Pw-8812@search.ebscohost.com"
    )
    r = run_cli("check-config", "--config", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "origin" in out, out
    assert "Synthetic-Vendor-Pw-8812" not in out, out
    report = run_cli("compliance", "--config", str(cfg), "--format", "json")
    assert "Synthetic-Vendor-Pw-8812" not in report.stdout + report.stderr


@pytest.mark.parametrize(
    "origin",
    ["https://search.ebscohost.com/login.aspx", "https://search.ebscohost.com/ehost/search?db=a9h"],
)
def test_vendor_origin_with_a_path_is_refused(tmp_path: Path, origin: str) -> None:
    """`origin` (DESIGN §3: `origin = "https://search.ebscohost.com"`) is an origin. Staff
    migrating from EZproxy readily put the stanza's `URL https://search.ebscohost.com/login.aspx`
    there; check-config says OK, yet the path is silently dropped for requests and the menu's
    link becomes `origin + "/"`: `…/login.aspx/` (or `…?db=a9h/`, a different query), a page the
    vendor does not have. check-config refuses the same mistake in `server.public_url` ("must
    not have a path or query"); it must refuse it here too, naming the key."""
    cfg = literal_design_config(tmp_path, origin=origin)
    r = run_cli("check-config", "--config", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "ebsco.toml: origin:" in out, out


def test_serve_on_a_port_already_in_use_says_so_without_a_traceback(tmp_path: Path) -> None:
    """`serve --config` (DESIGN §3) when `server.listen`'s port is taken (another instance still
    running, a second `systemctl start`): it prints "listening on 127.0.0.1:PORT", "Open …/login"
    and logs `started`, then dies with a Python traceback (OSError from asyncio's
    create_server). IT staff get a false "listening" line and a stack dump instead of the clear
    message P7 promises for a bad configuration."""
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        cfg = literal_design_config(tmp_path)
        cfg.write_text(cfg.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
        r = run_cli("serve", "--config", str(cfg))
    finally:
        busy.close()
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "Traceback" not in out, out
    assert f"127.0.0.1:{port}" in out, out
    assert "listening on" not in out, out


def test_vendor_host_whose_mapped_label_is_longer_than_a_dns_label_is_refused(
    tmp_path: Path,
) -> None:
    """Host mapping (DESIGN §3) serves vendor host H at `L.<public host>`, L one DNS label. A
    DNS label is at most 63 octets (RFC 1035 2.3.4): for a longer L no resolver can look the
    name up and no certificate can name it, so the vendor host can never be reached through the
    proxy (EZproxy needs ProxyHostnameEdit for the same reason). check-config says OK for such
    a host and the rewriter sends patrons to the unreachable name; check-config must refuse it,
    naming the key."""
    host = "research-collection.digital-archives-westonlibrary.vendor-example.com"
    assert len(label(host)) > 63
    cfg = literal_design_config(tmp_path)
    vfile = cfg.parent / "vendors" / "ebsco.toml"
    vfile.write_text(
        vfile.read_text().replace(
            'hosts = ["search.ebscohost.com", "*.ebscohost.com"]',
            f'hosts = ["search.ebscohost.com", "*.ebscohost.com", "{host}"]',
        )
    )
    r = run_cli("check-config", "--config", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "ebsco.toml: hosts[2]:" in out, out


async def test_pages_do_not_invent_a_help_phone_number_the_library_never_configured(
    tmp_path: Path,
) -> None:
    """DESIGN §3's example `[library]` has `name` and `scope` only. Served as it is, the sign-in
    page, every problem page ("This address isn't set up at the library", directory down, …)
    and every footer tell patrons to "Ask at the circulation desk or call (203) 555-0100." —
    a demo placeholder (555-01xx numbers are reserved for fiction) built into
    `LibraryConfig.contact`'s default. A patron who needs help at the moment something fails is
    sent to a number that does not exist. Without a configured contact, either check-config
    asks for one or the pages show none; never an invented one."""
    from aiohttp.test_utils import TestClient, TestServer

    from proxy.app import create_app
    from proxy.config import load_config

    cfg = literal_design_config(tmp_path)
    r = run_cli("check-config", "--config", str(cfg))
    if r.returncode == 1 and "library.contact" in r.stdout + r.stderr:
        return  # refusing the example until a real contact is set is a fix too
    cfg.write_text(cfg.read_text().replace('"127.0.0.1:8080"', f'"127.0.0.1:{free_port()}"'))
    app = create_app(load_config(cfg))
    client: TestClient = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        pages = []
        for host, path in (
            ("proxy.westonlibrary.org", "/login"),
            ("not-a-database.proxy.westonlibrary.org", "/"),
        ):
            resp = await client.get(path, headers={"Host": host}, allow_redirects=False)
            pages.append((host + path, resp.status, await resp.text()))
    finally:
        await client.close()
    for where, status, html in pages:
        assert status in (200, 404), (where, status)
        assert "555-0100" not in html, where
