"""From a second mutation sweep (2 December 2026) of the staff command-line tools: each test here
was written for a one-line change to the code that no other test noticed, and fails with it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from tests.test_reload import file_directory_config
from tests.test_vendors_cli import (
    ONE,
    vendor_one,  # noqa: F401
)

# Fixtures of `vendors test`'s own tests: a recording vendor `one` and a config naming it.
from tests.test_vendors_cli import cfg as vendors_cfg  # noqa: F401


def test_reload_refuses_to_signal_a_recycled_pid_that_is_not_the_proxy(
    tmp_path: Path, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/admin_cli.py:_looks_like_proxy — `return b"proxy" in text` → `return True`.
    A pid file left by a proxy that died names a number the system may have given to another
    program since: `reload` must not send SIGHUP to it (most programs die of it), but say the pid
    file is stale and exit 1."""
    cfg = file_directory_config(tmp_path, port, {})
    other = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if b"sleep" in Path(f"/proc/{other.pid}/cmdline").read_bytes():
                break
            time.sleep(0.05)
        rc = main(["reload", "--config", str(cfg), "--pid", str(other.pid), "--wait", "0.5"])
        err = capsys.readouterr().err
        assert rc == 1
        assert f"process {other.pid} is not a weston-proxy" in err
        time.sleep(0.5)
        assert other.poll() is None, "reload signalled a program that is not the proxy"
    finally:
        other.kill()
        other.wait()


# A stand-in for the running proxy (its command line names weston-proxy): on SIGHUP it writes the
# outcome it is given to the status file, as proxy/reload.py does.
_FAKE_PROXY = """
import json, signal, sys, time
status, outcome = sys.argv[1], json.loads(sys.argv[2])
def hup(signum, frame):
    with open(status + ".tmp", "w") as f:
        json.dump({**outcome, "at": time.time()}, f)
    import os
    os.replace(status + ".tmp", status)
signal.signal(signal.SIGHUP, hup)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def _fake_proxy(cfg: Path, outcome: dict) -> subprocess.Popen[str]:
    import json
    import sys

    from proxy.config import load_config
    from proxy.reload import status_path

    status = status_path(load_config(cfg))
    status.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", _FAKE_PROXY, str(status), json.dumps(outcome), "weston-proxy"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_reload_prints_a_refusal_and_its_problems_and_exits_1(
    tmp_path: Path, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/admin_cli.py:cmd_reload — `result.get("outcome") == "reloaded"` →
    `result.get("outcome")`. When the running proxy refuses the new configuration (a setting
    that needs a restart), `reload` must say it was refused, list the proxy's problems and exit 1:
    not print "reloaded" and exit 0, leaving staff sure a change is live that is not."""
    cfg = file_directory_config(tmp_path, port, {})
    problem = "proxy.toml: server.listen: changes only at a restart"
    proc = _fake_proxy(cfg, {"outcome": "refused", "problems": [problem]})
    try:
        rc = main(["reload", "--config", str(cfg), "--pid", str(proc.pid), "--wait", "10"])
    finally:
        proc.kill()
        proc.wait()
    out = capsys.readouterr().out
    assert rc == 1
    assert "refused; the running configuration is kept:" in out
    assert f"  {problem}" in out
    assert "reloaded:" not in out


def test_reload_signals_the_pid_given_with_pid_when_there_is_no_pid_file(
    tmp_path: Path, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/admin_cli.py:cmd_reload — `args.pid or _read_pid(pidfile)` →
    `_read_pid(pidfile)`. `--pid` is how staff reach a proxy whose pid file is elsewhere (a
    container, a pid file removed by a clean-up job): it must be the process signalled, and its
    outcome reported (vendors and keys), not "no running proxy"."""
    cfg = file_directory_config(tmp_path, port, {})
    outcome = {"outcome": "reloaded", "vendors": 3, "kids": ["kid-a", "kid-b"]}
    proc = _fake_proxy(cfg, outcome)
    try:
        rc = main(["reload", "--config", str(cfg), "--pid", str(proc.pid), "--wait", "10"])
    finally:
        proc.kill()
        proc.wait()
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"sent SIGHUP to {proc.pid}" in captured.out
    assert "reloaded: 3 vendor(s), keys kid-a, kid-b" in captured.out


def test_reload_no_wait_returns_0_at_once_after_the_signal(
    tmp_path: Path, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/admin_cli.py:cmd_reload — `if args.no_wait: return EXIT_OK` removed.
    `--no-wait` is for scripts (ExecReload of a unit that must not block): signal and exit 0
    without waiting for the outcome, even when the proxy writes none in the wait given."""
    import signal
    import sys

    cfg = file_directory_config(tmp_path, port, {})
    sleeper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
            "weston-proxy",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sleeper.stdout is not None and sleeper.stdout.readline().strip() == "ready"
        rc = main(
            [
                "reload",
                "--config",
                str(cfg),
                "--pid",
                str(sleeper.pid),
                "--wait",
                "0.5",
                "--no-wait",
            ]
        )
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
    out = capsys.readouterr().out
    assert rc == 0
    assert f"sent SIGHUP to {sleeper.pid}" in out
    assert "no outcome" not in out


# --------------------------------------------------------------------------- vendors test


def _report_for(cfg: Path, body: bytes) -> tuple[object, object]:
    from proxy.config import load_config
    from proxy.vendor_test import Report, classify_hosts

    config = load_config(cfg)
    hosts = config.host_map()
    vendor = config.vendors[0]
    report = Report(vendor=vendor.id, start_url=vendor.start)
    classify_hosts(body, hosts, vendor, report)
    return report, hosts


def test_a_link_to_the_proxys_own_host_is_not_reported_as_not_configured(
    vendors_cfg: Path,  # noqa: F811
) -> None:
    """kills: proxy/vendor_test.py:classify_hosts — `if h == hosts.public_host: continue`
    removed. A vendor page links to the library's own pages (sign-out, the database list); that
    host is the proxy itself, so it must not be listed under NOT CONFIGURED, which tells staff
    to add a vendor host (they would map the library's own name as a vendor's)."""
    from proxy.config import load_config

    public = load_config(vendors_cfg).host_map().public_host
    body = f'<a href="https://{public}/logout">sign out</a>'.encode()
    report, _ = _report_for(vendors_cfg, body)
    assert public not in report.not_configured  # type: ignore[attr-defined]
    assert report.not_configured == []  # type: ignore[attr-defined]


def test_a_mapped_host_left_in_the_page_is_reported_as_not_rewritten(
    vendors_cfg: Path,  # noqa: F811
) -> None:
    """kills: proxy/vendor_test.py:classify_hosts — `elif hosts.vendor_for_host(h) is not None:`
    → `elif False:`. A host a vendor file maps but that the page still names directly (a link
    the rewriter missed) is a rewriting gap, not a missing `hosts` entry: staff must see it under
    "mapped but not rewritten", or they add a host that is already there and the gap stays."""
    body = b'<a href="https://www.vendor-two.test/page">two</a>'
    report, _ = _report_for(vendors_cfg, body)
    assert report.not_rewritten == ["www.vendor-two.test"]  # type: ignore[attr-defined]
    assert report.not_configured == []  # type: ignore[attr-defined]


async def test_ten_redirects_are_followed_to_the_page(
    vendors_cfg: Path,  # noqa: F811
    vendor_one: Any,  # noqa: F811
) -> None:
    """kills: proxy/vendor_test.py:_walk — `range(MAX_REDIRECTS + 1)` → `range(MAX_REDIRECTS)`.
    The limit is ten redirects (the fetch of the starting point is not one of them): a vendor
    whose sign-on bounces through ten hops (a federated login, a cookie check, a region choice)
    is followed to its page and reported OK, as `more than 10 redirects` says."""
    from aiohttp import web

    from proxy.config import load_config
    from proxy.vendor_test import MAX_REDIRECTS, run_vendor_test

    def hop(n: int) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(f"/r{n}")

        return handler

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html><body>ok</body></html>", content_type="text/html")

    vendor_one.routes["/"] = hop(1)
    for n in range(1, MAX_REDIRECTS):
        vendor_one.routes[f"/r{n}"] = hop(n + 1)
    vendor_one.routes[f"/r{MAX_REDIRECTS}"] = page
    config = load_config(vendors_cfg)
    report = await run_vendor_test(config, config.vendors[0])
    assert report.stopped == ""
    assert len(report.chain) == MAX_REDIRECTS + 1
    assert report.chain[-1].status == 200 and report.chain[-1].url == f"http://{ONE}/r10"
    assert report.ok


async def test_a_redirect_to_the_proxys_own_pages_is_reported_as_a_refused_session(
    vendors_cfg: Path,  # noqa: F811
    vendor_one: Any,  # noqa: F811
) -> None:
    """kills: proxy/vendor_test.py:_vendor_url — `if host == hosts.public_host: return None`
    removed. When the test lands on the proxy's own pages (the gate's sign-in page, as when the
    session is refused, or a vendor sending patrons back to the library), the report must say so,
    not list the library's own host as a vendor host nobody mapped (which would send staff to add
    the proxy's name to a vendor file)."""
    from aiohttp import web

    from proxy.config import load_config
    from proxy.vendor_test import run_vendor_test

    config = load_config(vendors_cfg)
    public = config.host_map().public_host

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"https://{public}/login")

    vendor_one.routes["/"] = elsewhere
    report = await run_vendor_test(config, config.vendors[0])
    assert not report.ok
    assert "session refused" in report.stopped, report
    assert report.not_configured == []


# --------------------------------------------------------------------------- compliance


@pytest.mark.parametrize("spec", ["=start.html", "good="])
def test_a_page_spec_missing_its_id_or_file_is_refused_as_id_equals_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str
) -> None:
    """kills: proxy/compliance_cli.py:_pages — `if not sep or not vendor_id or not file:` →
    `if not sep:`. `--page =start.html` (the id left out) or `--page good=` (a shell variable
    that was empty) must be answered with the form the option takes, exit 2, not with a
    puzzling "no vendor ''" or "  is not a readable file"."""
    from tests.test_compliance import materialise

    cfg = materialise(tmp_path / "cfg", ["good"])
    (tmp_path / "start.html").write_text("<p>start</p>", encoding="utf-8")
    code = main(["compliance", "--config", str(cfg), "--page", spec])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--page must be ID=FILE, not {spec!r}" in err


# --------------------------------------------------------------------------- secrets


def test_the_folder_made_for_a_new_server_secret_is_the_proxys_alone(
    tmp_path: Path, port: int
) -> None:
    """kills: proxy/secrets_.py:_server_secret — `mkdir(..., mode=0o700)` → `mode=0o755`.
    On first start the proxy makes the folder its server secret goes in: other users of the
    machine must not even list it (the secret's name, its age, a key file put there later with
    a careless mode), so it is made for the proxy's user alone."""
    import stat

    from proxy.config import load_config
    from proxy.secrets_ import server_secret

    cfg = file_directory_config(
        tmp_path, port, {}, session='store = "memory"\nsecret_file = "fresh/state/server.secret"'
    )
    config = load_config(cfg)
    path = config.resolve(config.session.secret_file)
    assert not path.parent.exists()
    assert len(server_secret(config)) == 64
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- records


def test_records_with_an_unreadable_statistics_file_says_so_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/stats_cli.py:cmd_records — `if inv["statistics"].get("error"):` →
    `if False:`. The records inventory is what the library answers a records request or an
    audit with: when the statistics file cannot be read (damaged, not SQLite) what it holds is
    unknown, so `records` must say so on stderr and exit 1, not exit 0 as if complete."""
    from proxy.config import load_config
    from proxy.stats import stats_settings
    from tests.test_compliance import materialise

    conf = materialise(tmp_path / "conf")
    path = stats_settings(load_config(conf)).path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an SQLite database, but a damaged copy" * 40)
    status = main(["records", "--config", str(conf)])
    _, err = capsys.readouterr()
    assert status == 1
    assert "statistics file could not be read: unreadable" in err


def test_stats_names_a_config_problem_found_while_reporting_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """kills: proxy/stats_cli.py:cmd_stats — the ConfigError handler's `return EXIT_USAGE` →
    `return 1`. A configuration problem met while reporting (here: the `[stats]` settings the
    report reads) is a usage error like any other config mistake: exit 2 with the file and key
    named, not 1, which scripts read as "the report ran and found trouble"."""
    import proxy.stats_report
    from proxy.errors import ConfigError, Problem
    from tests.test_compliance import materialise

    def refuse(*args: object, **kwargs: object) -> int:
        raise ConfigError([Problem("proxy.toml", "stats.min_cell", "must be at least 5")])

    monkeypatch.setattr(proxy.stats_report, "run_stats", refuse)
    conf = materialise(tmp_path / "conf")
    status = main(["stats", "--config", str(conf)])
    _, err = capsys.readouterr()
    assert status == 2
    assert "proxy.toml: stats.min_cell: must be at least 5" in err


# --------------------------------------------------------------------------- ops


async def test_the_jwks_is_readable_from_any_origin_and_cacheable() -> None:
    """kills: proxy/ops.py:jwks — `resp.headers["Access-Control-Allow-Origin"] = "*"` removed.
    The JWKS holds only public keys; a vendor's single-page app (or its browser-side checker)
    fetches it from the vendor's own origin, so without `*` the browser hides it and the vendor
    cannot verify the proxy's assertions. It is also cacheable for the documented time."""
    from types import SimpleNamespace

    from proxy.assertion import JWKS_MAX_AGE_S
    from proxy.ops import jwks
    from proxy.services import SERVICES

    keys = {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "AAAA"}]}
    svc = SimpleNamespace(signer=SimpleNamespace(jwks=lambda: keys))
    request = SimpleNamespace(app={SERVICES: svc})
    resp = await jwks(request)  # type: ignore[arg-type]
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Cache-Control"] == f"public, max-age={JWKS_MAX_AGE_S}"
