"""Reload without downtime, against a real `python -m proxy serve` process and SIGHUP.

A new vendor file is picked up, a broken change is refused with file and key in the log while
the old vendors keep working, a signed-in patron stays signed in, rotated keys reach the JWKS,
and `weston-proxy reload` finds the process through its pid file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.auth import hash_password
from proxy.config import load_config
from proxy.reload import restart_only_changes
from tests.harness import ProxyDriver, RecordingVendor, SlowRoute, vendor_toml, write_config

ROOT = Path(__file__).resolve().parent.parent
CARD, PIN = "29999000000001", "synthetic-pin-4821"
ONE, TWO = "www.vendor-one.test", "www.vendor-two.test"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], capture_output=True, text=True, cwd=ROOT, env=env
    )


@dataclass
class Served:
    """A proxy running as its own process, with its JSON log in a file."""

    proc: subprocess.Popen[bytes]
    cfg: Path
    log: Path
    driver: ProxyDriver

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == name:
                out.append(rec)
        return out

    async def hup(self) -> dict[str, Any]:
        """SIGHUP the process and return the reload's log record (reloaded or reload_refused)."""
        before = len(self.events("reloaded")) + len(self.events("reload_refused"))
        os.kill(self.proc.pid, signal.SIGHUP)
        for _ in range(150):
            done = self.events("reloaded") + self.events("reload_refused")
            if len(done) > before:
                return sorted(done, key=lambda r: r["timestamp"])[-1]
            await asyncio.sleep(0.1)
        raise AssertionError("no reload outcome logged")

    async def jwks_kids(self) -> list[str]:
        r = await self.driver.own("GET", "/.well-known/jwks.json")
        return [k["kid"] for k in (await r.json())["keys"]]


async def serve(cfg: Path) -> AsyncIterator[Served]:
    """Start `python -m proxy serve` on `cfg` and wait until it answers /healthz."""
    log = cfg.parent / "proxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    config = load_config(cfg)
    session = aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{config.listen_addr[1]}",
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # the CSRF cookie comes from 127.0.0.1
    )
    driver = ProxyDriver(session, config)  # type: ignore[arg-type]
    try:
        for _ in range(100):
            if proc.poll() is not None:
                raise AssertionError("proxy exited:\n" + log.read_text())
            try:
                r = await driver.own("GET", "/healthz")
                if r.status == 200:
                    break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("proxy did not start:\n" + log.read_text())
        yield Served(proc, cfg, log, driver)
    finally:
        await session.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def file_directory_config(
    root: Path, port: int, vendors: dict[str, str], session: str = 'store = "memory"'
) -> Path:
    """A config with a local patrons file holding one synthetic patron."""
    (root / "patrons.toml").write_text(
        f'[[patron]]\ncard = "{CARD}"\nhash = "{hash_password(PIN)}"\n'
    )
    return write_config(
        root,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors=vendors,
        session=session,
        extra='\n[logging]\nformat = "json"\nlevel = "info"\n',
    )


@pytest.fixture
async def one(vendor_factory: Any) -> RecordingVendor:
    vendor: RecordingVendor = await vendor_factory(ONE)
    return vendor


@pytest.fixture
async def served(tmp_path: Path, port: int, one: RecordingVendor) -> AsyncIterator[Served]:
    cfg = file_directory_config(tmp_path, port, {"one": vendor_toml("one", one)})
    async for s in serve(cfg):
        yield s


async def signed_in(s: Served) -> str:
    r = await s.driver.login(CARD, PIN)
    assert r.status == 303, await r.text()
    sid = s.driver.session_id()
    assert sid
    return sid


async def test_sighup_picks_up_a_new_vendor_file(served: Served, vendor_factory: Any) -> None:
    """A vendor file added while running: its mapped host is refused before, proxied after."""
    two: RecordingVendor = await vendor_factory(TWO)
    before = await served.driver.get_vendor(TWO)
    assert before.status == 404
    (served.cfg.parent / "vendors" / "two.toml").write_text(vendor_toml("two", two))
    outcome = await served.hup()
    assert outcome["event"] == "reloaded" and outcome["vendors"] == 2
    await signed_in(served)
    r = await served.driver.get_vendor(TWO, "/after-reload")
    assert r.status == 200
    assert [req.path_qs for req in two.requests] == ["/after-reload"]


async def test_a_database_open_to_all_reaches_patrons_signed_in_before_the_reload(
    served: Served, vendor_factory: Any
) -> None:
    """No second sign-in: the session made before the reload sees and reaches the new database,
    while a new database with a group condition waits for the next sign-in (groups are not kept)."""
    sid = await signed_in(served)
    two: RecordingVendor = await vendor_factory(TWO)
    three: RecordingVendor = await vendor_factory("www.three-db.test")
    vendors = served.cfg.parent / "vendors"
    (vendors / "two.toml").write_text(vendor_toml("two", two))
    (vendors / "three.toml").write_text(
        vendor_toml("three", three, extra='[eligibility]\ngroups = ["staff"]\n')
    )
    outcome = await served.hup()
    assert outcome["event"] == "reloaded", outcome["problems"]
    menu = await (await served.driver.own("GET", "/menu")).text()
    assert "Two Database" in menu
    assert "Three Database" not in menu
    r = await served.driver.get_vendor(TWO, "/after-reload", sid=sid)
    assert r.status == 200
    assert [req.path_qs for req in two.requests] == ["/after-reload"]
    refused = await served.driver.get_vendor("www.three-db.test", "/x", sid=sid)
    assert refused.status == 403
    assert three.requests == []


async def test_broken_change_is_refused_and_old_vendors_keep_working(served: Served) -> None:
    """A vendor file that fails validation: the log names file and key, vendor one still works."""
    await signed_in(served)
    bad = served.cfg.parent / "vendors" / "bad.toml"
    bad.write_text(
        'id = "bad"\ntitle = "Bad"\norigin = "https://bad.example.org"\n'
        'hosts = ["bad.example.org"]\nauth = "carrier-pigeon"\n'
    )
    outcome = await served.hup()
    assert outcome["event"] == "reload_refused"
    assert any(p.startswith(f"{bad}: auth: unknown adapter") for p in outcome["problems"])
    r = await served.driver.get_vendor(ONE, "/still-here")
    assert r.status == 200
    assert (await served.driver.get_vendor("bad.example.org")).status == 404


async def test_refused_reload_applies_none_of_the_change(
    served: Served, vendor_factory: Any
) -> None:
    """A good new vendor next to a broken one is not half-applied: nothing changes."""
    two = await vendor_factory(TWO)
    vendors = served.cfg.parent / "vendors"
    (vendors / "two.toml").write_text(vendor_toml("two", two))
    (vendors / "three.toml").write_text('id = "three"\ntitle = "No origin"\n')
    outcome = await served.hup()
    assert outcome["event"] == "reload_refused"
    assert (await served.driver.get_vendor(TWO)).status == 404


async def test_active_session_survives_reloads(served: Served) -> None:
    """The same session cookie keeps working across two reloads, with no new sign-in."""
    sid = await signed_in(served)
    assert (await served.driver.get_vendor(ONE, "/before")).status == 200
    for _ in range(2):
        assert (await served.hup())["event"] == "reloaded"
    r = await served.driver.get_vendor(ONE, "/after", sid=sid)
    assert r.status == 200
    menu = await served.driver.own("GET", "/menu")
    assert menu.status == 200


async def test_restart_only_setting_is_refused(served: Served) -> None:
    """Changing server.listen cannot apply to a running socket: refused, with the key named."""
    text = served.cfg.read_text()
    host_port = served.driver.config.server.listen
    served.cfg.write_text(text.replace(f'listen = "{host_port}"', 'listen = "127.0.0.1:1"'))
    outcome = await served.hup()
    assert outcome["event"] == "reload_refused"
    assert any(": server.listen: changed" in p for p in outcome["problems"])
    assert (await served.driver.own("GET", "/healthz")).status == 200


async def test_a_new_max_in_flight_applies_after_reload(
    served: Served, one: RecordingVendor, vendor_factory: Any
) -> None:
    """server.max_in_flight is not restart-only, so a reload applies it: after lowering it to 1,
    slow requests to two vendors reach them one after the other (each vendor's own share would
    let one of each in at once)."""
    two: RecordingVendor = await vendor_factory(TWO)
    slow = SlowRoute(0.3)
    one.routes["/slow"] = two.routes["/slow"] = slow
    (served.cfg.parent / "vendors" / "two.toml").write_text(vendor_toml("two", two))
    assert (await served.hup())["event"] == "reloaded"
    await signed_in(served)
    both = [served.driver.get_vendor(host, "/slow") for host in (ONE, TWO)]
    assert [r.status for r in await asyncio.gather(*both)] == [200, 200]
    assert slow.most == 2  # the default cap lets both in at once
    served.cfg.write_text(
        served.cfg.read_text().replace("[server]\n", "[server]\nmax_in_flight = 1\n", 1)
    )
    assert (await served.hup())["event"] == "reloaded"
    slow.most = 0
    both = [served.driver.get_vendor(host, "/slow") for host in (ONE, TWO)]
    assert [r.status for r in await asyncio.gather(*both)] == [200, 200]
    assert slow.most == 1


async def test_rotated_key_is_published_after_reload(served: Served) -> None:
    """`keys rotate` adds a key to the directory; the running JWKS shows it after SIGHUP."""
    before = await served.jwks_kids()
    r = run_cli("keys", "rotate", "--config", str(served.cfg), "--delay", "0")
    assert r.returncode == 0, r.stderr
    assert await served.jwks_kids() == before
    assert (await served.hup())["event"] == "reloaded"
    after = await served.jwks_kids()
    assert len(after) == 2 and before[0] in after


async def test_reload_command_signals_through_the_pid_file(served: Served) -> None:
    """`weston-proxy reload --config` finds the pid, signals it and reports the outcome."""
    pidfile = served.cfg.parent / "state" / "proxy.pid"
    assert pidfile.read_text().strip() == str(served.proc.pid)
    r = await asyncio.to_thread(run_cli, "reload", "--config", str(served.cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reloaded: 1 vendor(s)" in r.stdout
    assert len(served.events("reloaded")) == 1


async def test_reload_command_sends_nothing_for_a_broken_config(served: Served) -> None:
    """A config that does not validate is reported by the command itself; the proxy is not told."""
    (served.cfg.parent / "vendors" / "one.toml").write_text('id = "one"\n')
    r = await asyncio.to_thread(run_cli, "reload", "--config", str(served.cfg))
    assert r.returncode == 1
    assert "one.toml: title" in r.stdout and "nothing was sent" in r.stdout
    await asyncio.sleep(0.3)
    assert served.events("reloaded") == [] and served.events("reload_refused") == []
    assert not (served.cfg.parent / "state" / "proxy.pid.reload.json").exists()


async def test_reload_command_leaves_secret_environment_variables_to_the_running_proxy(
    tmp_path: Path, port: int, one: RecordingVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`session.secret_env` set in the service's environment only (systemd Environment=,
    compose env): the command, run from a shell without it, still signals, and the proxy, which
    has it, reloads."""
    monkeypatch.setenv("WESTON_TEST_SERVICE_SECRET", "s" * 64)
    cfg = file_directory_config(
        tmp_path,
        port,
        {"one": vendor_toml("one", one)},
        session='store = "memory"\nsecret_env = "WESTON_TEST_SERVICE_SECRET"',
    )
    async for s in serve(cfg):
        shell = {k: v for k, v in os.environ.items() if k != "WESTON_TEST_SERVICE_SECRET"}
        r = await asyncio.to_thread(run_cli, "reload", "--config", str(cfg), env=shell)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "reloaded: 1 vendor(s)" in r.stdout
        assert len(s.events("reloaded")) == 1


async def test_a_template_not_in_utf8_refuses_the_reload_with_an_outcome(served: Served) -> None:
    """A branding template saved as Windows-1252 ("Bibliothèque"): the reload is refused with the
    file named, in the log, and the running pages stay. `weston-proxy reload` checks the
    templates as check-config does, so it names the file and sends nothing."""
    templates = served.cfg.parent / "web" / "templates"
    templates.mkdir(parents=True)
    (templates / "brand.html").write_bytes("<b>Biblioth\u00e8que de Weston</b>\n".encode("cp1252"))
    r = await asyncio.to_thread(run_cli, "reload", "--config", str(served.cfg))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "brand.html: (file): not UTF-8" in r.stdout and "nothing was sent" in r.stdout
    refused = await served.hup()  # a SIGHUP sent some other way (systemctl reload)
    assert refused["event"] == "reload_refused"
    assert any("brand.html: (file): not UTF-8" in p for p in refused["problems"])
    assert (await served.driver.own("GET", "/login")).status == 200


@pytest.mark.parametrize(
    ("section", "change"),
    [
        ("server", {"shutdown_grace_s": 60.0}),
        ("server", {"listen_backlog": 16}),
        ("throttle", {"http": {"max_headers": 50}}),
    ],
)
def test_settings_serve_applies_once_need_a_restart(
    tmp_path: Path, port: int, section: str, change: dict[str, Any]
) -> None:
    """What `serve` hands web.run_app once (shutdown grace, listen backlog, [throttle.http]):
    a reload that changes it is refused as restart-only, not reported as reloaded."""
    old = load_config(file_directory_config(tmp_path, port, {}))
    if section == "server":
        new = dataclasses.replace(old, server=dataclasses.replace(old.server, **change))
    else:
        new = dataclasses.replace(old, extra={section: change})
    assert [p.key for p in restart_only_changes(old, new)] == [
        f"server.{next(iter(change))}" if section == "server" else "[throttle.http]"
    ]


def test_reload_command_without_a_running_proxy(tmp_path: Path, port: int) -> None:
    """No pid file: the command says there is no running proxy and exits 1."""
    cfg = file_directory_config(
        tmp_path,
        port,
        {
            "x": 'id = "x"\ntitle = "X"\norigin = "https://x.example.org"\nhosts = ["x.example.org"]\n'
        },
    )
    r = run_cli("reload", "--config", str(cfg))
    assert r.returncode == 1
    assert "no running proxy" in r.stderr


async def test_download_in_progress_finishes_across_a_reload(
    served: Served, one: RecordingVendor
) -> None:
    """A response still streaming when the reload swaps the upstream arrives whole."""

    chunk = b"x" * 4096

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        await resp.prepare(request)
        for _ in range(20):
            await resp.write(chunk)
            await asyncio.sleep(0.1)
        await resp.write_eof()
        return resp

    one.routes["/big.pdf"] = slow
    await signed_in(served)
    r = await served.driver.get_vendor(ONE, "/big.pdf")
    assert r.status == 200
    first = await r.content.readexactly(4096)
    assert (await served.hup())["event"] == "reloaded"
    rest = await r.content.read()
    assert len(first) + len(rest) == 20 * 4096


async def test_a_rebuild_that_fails_after_the_vendor_client_started_closes_it(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A reload refused while its parts are built leaves no vendor connection pool open."""
    from proxy import services
    from proxy.app import SERVICES
    from proxy.forward import Upstream
    from tests.harness import ldap_directory

    vendor = await vendor_factory("www.vendor-one.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    driver = await proxy_factory(cfg)
    svc = driver.client.server.app[SERVICES]
    started: list[Upstream] = []
    closed: list[Upstream] = []
    start, close = Upstream.start, Upstream.close

    async def recording_start(self: Upstream) -> None:
        started.append(self)
        await start(self)

    async def recording_close(self: Upstream) -> None:
        closed.append(self)
        await close(self)

    def broken_directory(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the directory could not be built")

    monkeypatch.setattr(Upstream, "start", recording_start)
    monkeypatch.setattr(Upstream, "close", recording_close)
    monkeypatch.setattr(services, "make_directory", broken_directory)
    with pytest.raises(RuntimeError):
        await services.rebuild_services(svc, svc.config)
    assert len(started) == 1 and closed == started
    assert svc.upstream not in closed  # the running one is untouched
