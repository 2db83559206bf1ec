"""The documented deployment keeps its word: records, key rotation, logs of the terminator and the
compose services. From a review of the docs; every test failed before its fix."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


async def test_records_does_not_say_no_proxy_runs_when_metrics_from_refuses_it(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """docs/records-and-retention.md: with the memory store, `records` asks the running proxy's
    /metrics on the listen address; conf/examples/production.toml invites narrowing
    `server.metrics_from` to the monitoring system. With it narrowed (here to 10.0.0.0/8), the
    running proxy refused `records` (404, as /metrics answers outside metrics_from), and the
    report for a records request said "no running proxy answered ... when no proxy runs, no
    session exists" while a patron was signed in: staff answering a subpoena were told, in
    effect, that nothing was held. It now says a proxy refused, why, that the count is unknown,
    and exits 1."""
    from tests.harness import vendor_toml, write_config

    vendor = await vendor_factory("db.vendor.test")
    shutil.copy2(REPO / "conf" / "patrons.toml", tmp_path / "patrons.toml")
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"one": vendor_toml("one", vendor)},
    )
    text = cfg.read_text()
    cfg.write_text(text.replace("[library]", 'metrics_from = ["10.0.0.0/8"]\n\n[library]', 1))
    driver = await proxy_factory(cfg)
    r = await driver.login("29999000000001", "weston-demo-1")
    assert r.status == 303  # one patron is signed in right now
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "records",
        "--config",
        str(cfg),
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), timeout=60)
    out = out_b.decode() + err_b.decode()
    assert "no running proxy answered" not in out, out
    assert "no session exists" not in out, out
    assert "refused /metrics" in out and "server.metrics_from" in out, out
    assert "unknown" in out, out
    assert proc.returncode == 1, out


async def test_keys_rotate_says_published_only_when_the_jwks_lists_the_key(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """README ("a rotated key is published at once") and `keys rotate` itself ("added KID;
    published now, used for signing after 600 s") told IT staff the new key was already in
    /.well-known/jwks.json, e.g. to tell vendors to fetch it. The running proxy publishes it
    only at its next reload or restart (docs/systemd-and-tls.md says so): the JWKS the command
    called "published" did not list the key."""
    from tests.harness import vendor_toml, write_config

    vendor = await vendor_factory("db.vendor.test")
    shutil.copy2(REPO / "conf" / "patrons.toml", tmp_path / "patrons.toml")
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"one": vendor_toml("one", vendor)},
    )
    driver = await proxy_factory(cfg)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "keys",
        "rotate",
        "--config",
        str(cfg),
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err_b.decode()
    said = out_b.decode()
    kid = said.split()[1].rstrip(";")
    jwks = await (await driver.own("GET", "/.well-known/jwks.json")).json()
    listed = [k["kid"] for k in jwks["keys"]]
    if "published now" in said or "published at once" in said:
        assert kid in listed, f"`keys rotate` said {said.strip()!r}; the JWKS lists {listed}"
    assert kid not in listed
    assert "next reload or restart" in said, said
    readme = (REPO / "README.md").read_text()
    assert "published at once" not in readme


def test_compose_proxy_logs_are_rotated_as_the_records_doc_requires() -> None:
    """docs/records-and-retention.md: logs are kept "as long as the host keeps them: set it";
    "In Docker, use the `local` or `json-file` log driver with rotation (`--log-opt
    max-size=10m --log-opt max-file=5`) or `journald`". docker-compose.yml, "the production
    shape", set no `logging` for the proxy replicas: Docker's default json-file driver kept
    every line the proxy ever wrote, without limit, for as long as the container existed."""
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    unbounded = []
    for name, service in compose["services"].items():
        if "serve" not in (service.get("command") or []):
            continue  # the proxy replicas: `weston-proxy serve`
        logging = service.get("logging") or {}
        driver = logging.get("driver", "json-file")
        options = logging.get("options") or {}
        bounded = driver == "journald" or (
            driver in ("local", "json-file") and "max-size" in options and "max-file" in options
        )
        if driver == "local" and not options:
            bounded = True  # the local driver rotates by default (20m x 5)
        if not bounded:
            unbounded.append(name)
    assert not unbounded, f"no log rotation for {unbounded}"


def test_documented_terminator_writes_no_record_of_what_a_patron_asked_for(tmp_path: Path) -> None:
    """docs/systemd-and-tls.md: "`access_log off` matters: the proxy writes no record of who read
    what, and the terminator must not either." The documented server block turns the access log
    off but left the error log as Debian's /etc/nginx/nginx.conf sets it
    (`error_log /var/log/nginx/error.log;`, level error, kept two weeks by logrotate). Whenever
    the proxy did not answer (a `systemctl restart`, a crash, a slow vendor past
    proxy_read_timeout) nginx wrote, per request, the patron's address, the vendor host and
    the full request line with its query: who searched what, where."""
    import ssl
    import urllib.error
    import urllib.request

    from tests.harness import free_port

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists() or shutil.which("openssl") is None:
        pytest.skip("nginx and openssl are needed (Debian: apt-get install nginx openssl)")
    doc = (REPO / "docs" / "systemd-and-tls.md").read_text()
    (block,) = __import__("re").findall(r"```nginx\n(.*?)```", doc, __import__("re").S)
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=proxy.westonlibrary.org",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tls_port, plain_port, dead_port = free_port(), free_port(), free_port()
    block = block.replace("/etc/letsencrypt/live/proxy.westonlibrary.org/fullchain.pem", str(cert))
    block = block.replace("/etc/letsencrypt/live/proxy.westonlibrary.org/privkey.pem", str(key))
    block = block.replace("listen 443 ssl", f"listen 127.0.0.1:{tls_port} ssl")
    block = block.replace("listen 80;", f"listen 127.0.0.1:{plain_port};")
    # The proxy is not answering (being restarted): nothing listens where proxy_pass points.
    block = block.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{dead_port}")
    errors = tmp_path / "error.log"
    # As Debian's /etc/nginx/nginx.conf: error_log at its default level, sites inside http { }.
    conf = (
        f"pid {tmp_path}/nginx.pid;\nerror_log {errors};\nevents {{}}\n"
        f"http {{\naccess_log {tmp_path}/access.log;\n{block}\n}}\n"
    )
    (tmp_path / "nginx.conf").write_text(conf)
    (tmp_path / "logs").mkdir()
    started = subprocess.run(
        [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode == 0, started.stderr
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        req = urllib.request.Request(
            f"https://127.0.0.1:{tls_port}/search?q=canary-patron-search-term",
            headers={"Host": "www-vendor-com.proxy.westonlibrary.org"},
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(req, context=ctx, timeout=10)
        assert answer.value.code == 502
    finally:
        subprocess.run(
            [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-s", "stop"],
            capture_output=True,
            timeout=30,
        )
    written = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log") if p.is_file())
    assert "canary-patron-search-term" not in written, written


def test_compose_load_balancer_writes_no_record_of_what_a_patron_asked_for(
    tmp_path: Path,
) -> None:
    """conf/compose/README.md: "No access log in nginx. It would pair client addresses with
    vendor URLs (P5)." conf/compose/nginx.conf still logged at `error_log stderr warn`, and a
    replica that was down or restarting (compose restarts them; `keys rotate` says "restart
    both") made nginx write, per request, the client address, the vendor host and the full
    request line with the patron's search to the container log (kept by Docker without
    rotation: docker-compose.yml set no logging options)."""
    import http.client
    import re
    import time

    from tests.harness import free_port

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    listen, dead = free_port(), free_port()
    conf = re.sub(
        r"server proxy-\d+:8080",
        f"server 127.0.0.1:{dead}",
        (REPO / "conf" / "compose" / "nginx.conf").read_text(),
    )
    conf = conf.replace("listen 8080", f"listen 127.0.0.1:{listen}")
    conf = conf.replace("pid /tmp/nginx.pid;", "pid nginx.pid;")
    (tmp_path / "nginx.conf").write_text(conf)
    (tmp_path / "logs").mkdir()
    args = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"]
    server = subprocess.Popen([*args, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", listen, timeout=5)
                c.request(
                    "GET",
                    "/search?q=canary-patron-search-term",
                    headers={"Host": f"www-vendor-com.proxy.localhost:{listen}"},
                )
                assert c.getresponse().status == 502  # the replicas are down
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        else:
            raise AssertionError("nginx did not start")
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    written = err.decode(errors="replace") + "".join(
        p.read_text(errors="replace") for p in tmp_path.rglob("*.log") if p.is_file()
    )
    assert "canary-patron-search-term" not in written, written
