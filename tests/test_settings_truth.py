"""The docs tell IT staff the truth about the settings and behaviours added on 30 November
(from a review): each test follows what README.md / docs/*.md / conf/ say to set up, runs it, and
checks the outcome they promise.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.hosts import map_label
from tests.harness import free_port, vendor_toml, write_config
from tests.test_docs_truth import _self_signed, fenced

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PUBLIC = "proxy.westonlibrary.org"


async def _tls_get(port: int, host: str, target: str) -> bytes:
    """GET over TLS to the terminator with exactly the Host header a browser sends."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return data


async def _wait_listening(port: int, proc: subprocess.Popen[str]) -> None:
    for _ in range(100):
        if proc.poll() is not None:
            raise AssertionError(f"nginx stopped: {proc.stderr.read() if proc.stderr else ''}")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError("nginx did not listen")


async def test_trailing_dot_hosts_are_redirected_behind_the_documented_nginx_terminator(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """docs/vendor-setup.md ("Trailing dots"): a request for a mapped host, or the proxy's own,
    with a trailing dot (`www-jstor-org.proxy.westonlibrary.org.`) is redirected (308) to the
    same URL without it, because the browser does not send the session cookie to the dotted host
    (a page served there asks the patron to sign in again, in a loop).

    Behind the TLS terminator docs/systemd-and-tls.md tells IT staff to install, that never
    happens: its `proxy_set_header Host $host;` hands the proxy nginx's `$host`, from which nginx
    has already stripped the trailing dot (and the port). The proxy sees the dotless host and
    serves the page on the dotted one. (conf/compose/nginx.conf passes `$http_host`, the Host as
    the browser sent it, and is not affected.)"""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")

    vendor = await vendor_factory("www.jstor.test")
    (tmp_path / "patrons.toml").write_text((REPO / "conf" / "patrons.toml").read_text())
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"jstor": vendor_toml("jstor", vendor)},
    )
    # As production: the public URL is the terminator's (https, port 443).
    cfg.write_text(
        cfg.read_text().replace(f'"http://proxy.localhost:{port}"', f'"https://{PUBLIC}"')
    )
    await proxy_factory(cfg)

    (block,) = fenced(DOCS / "systemd-and-tls.md", "nginx")
    cert, key = _self_signed(tmp_path)
    tls_port, plain_port = free_port(), free_port()
    block = block.replace(f"/etc/letsencrypt/live/{PUBLIC}/fullchain.pem", str(cert))
    block = block.replace(f"/etc/letsencrypt/live/{PUBLIC}/privkey.pem", str(key))
    block = re.sub(r"listen 443 ssl", f"listen 127.0.0.1:{tls_port} ssl", block)
    block = re.sub(r"listen 80;", f"listen 127.0.0.1:{plain_port};", block)
    block = block.replace(
        "proxy_pass http://127.0.0.1:8080;", f"proxy_pass http://127.0.0.1:{port};"
    )
    assert f"127.0.0.1:{tls_port}" in block and f"127.0.0.1:{port};" in block
    conf = (
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\ndaemon off;\nevents {{}}\n"
        f"http {{\n{block}\n}}\n"
    )
    (tmp_path / "nginx.conf").write_text(conf)
    (tmp_path / "logs").mkdir()
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await _wait_listening(tls_port, proc)
        before = len(vendor.requests)
        answer = await _tls_get(tls_port, f"{PUBLIC}.", "/menu?x=1")
        status = answer.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 308"), (
            f"the proxy's own host with a trailing dot, through the documented terminator: "
            f"{status!r}, not a 308 to https://{PUBLIC}/menu?x=1"
        )
        mapped = f"{map_label(vendor.host)}.{PUBLIC}"
        answer = await _tls_get(tls_port, f"{mapped}.", "/a?b=1")
        status = answer.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 308"), (
            f"a mapped host with a trailing dot, through the documented terminator: {status!r}"
        )
        assert f"\r\nLocation: https://{mapped}/a?b=1\r\n".encode() in answer
        assert len(vendor.requests) == before
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _embedded_config(tmp_path: Path) -> Path:
    """The shipped embedded default (conf/proxy.toml, its patrons file and demo vendor), copied."""
    root = tmp_path / "conf"
    shutil.copytree(REPO / "conf", root, ignore=shutil.ignore_patterns("state"))
    return root / "proxy.toml"


def test_check_config_refuses_a_keys_dir_that_serve_cannot_make(tmp_path: Path) -> None:
    """README: `check-config` reports every config problem with file and key, exit 1 if any;
    today's change (40ddb1d) made it name a `keys.dir` that serve cannot use. A `keys.dir` that
    is a symlink whose target does not exist yet (keys on a volume that is not mounted, or a
    `/var/lib/...` directory not made yet) passes `check-config` ("OK", exit 0), while `serve`
    stops at once with `keys.dir: ... cannot be used: File exists` (Path.mkdir on the dangling
    link). IT staff who checked the config get a proxy that does not start."""
    cfg = _embedded_config(tmp_path)
    state = cfg.parent / "state"
    state.mkdir(exist_ok=True)
    (state / "keys").symlink_to(tmp_path / "volume-not-mounted" / "keys")
    # What serve does with keys.dir before it starts (proxy.assertion.ensure_keys): it cannot.
    from proxy.assertion import ensure_keys

    with pytest.raises(OSError):
        ensure_keys(state / "keys")

    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "keys.dir" in done.stdout + done.stderr, (
        f"check-config passed a keys.dir serve refuses: rc={done.returncode} {done.stdout!r}"
    )


def test_compose_proxy_can_write_the_pid_file_that_reload_signals() -> None:
    """README: `reload --config PATH` re-reads the running proxy's config; docs/systemd-and-tls.md:
    it signals the pid in `server.pid_file` and reads the outcome the proxy writes next to it.
    conf/compose/proxy.toml leaves `pid_file` at its default, `state/proxy.pid`, relative to the
    config's folder: /etc/weston/state/proxy.pid in the container (docker-compose.yml mounts the
    config at /etc/weston/proxy.toml). The image (Dockerfile) makes /etc/weston as root and runs
    the proxy as `weston`, which owns only /var/lib/weston: the proxy cannot write its pid file
    (only a `pid_file_unwritten` warning), so `docker compose exec proxy-1 weston-proxy reload
    --config /etc/weston/proxy.toml` finds no running proxy and reloads nothing."""
    import tomllib

    import yaml

    from proxy.config import ServerConfig

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["x-proxy"]["volumes"]
    (config_mount,) = [m for m in mounts if m.split(":")[1].endswith("/proxy.toml")]
    config_dir = Path(config_mount.split(":")[1]).parent  # /etc/weston
    toml = tomllib.loads((REPO / "conf" / "compose" / "proxy.toml").read_text())
    pid_file = Path(toml.get("server", {}).get("pid_file", ServerConfig().pid_file))
    pid_path = pid_file if pid_file.is_absolute() else config_dir / pid_file

    dockerfile = (REPO / "Dockerfile").read_text()
    owned = [Path(p) for p in re.findall(r"chown -R weston:weston (\S+)", dockerfile)]
    # Named volumes mounted writable are initialised from the image's (weston-owned) folder.
    volumes = [
        Path(m.split(":")[1])
        for m in mounts
        if not m.startswith((".", "/")) and not m.endswith(":ro")
    ]
    writable = [d for d in (*owned, *volumes) if d.is_absolute()]
    assert any(pid_path.is_relative_to(d) for d in writable), (
        f"the proxy (uid weston) writes its pid file to {pid_path}, but it may write only under "
        f"{[str(d) for d in writable]}"
    )


@pytest.mark.parametrize(
    "public_url", ["https://proxy.westonlibrary.org%2e", "https://proxy.westonlibrary.org%2E"]
)
def test_check_config_refuses_a_public_url_with_a_percent_encoded_trailing_dot(
    tmp_path: Path, public_url: str
) -> None:
    """docs/systemd-and-tls.md: `check-config` refuses a `server.public_url` with a trailing dot
    (browsers send the host without it), and docs/vendor-setup.md counts `%2e` as a spelling of
    that dot (a browser's URL parser decodes it: `proxy.westonlibrary.org%2e` is
    `proxy.westonlibrary.org.`). `check-config` passes it ("OK", exit 0), and the proxy then
    serves nothing: its own host is `proxy.westonlibrary.org%2e`, which no Host header can name
    (proxy.hosts.HostMap.split_request_host refuses any Host holding `%`), so every patron
    request is answered as for an unknown host."""
    cfg = _embedded_config(tmp_path)
    text = cfg.read_text()
    cfg.write_text(re.sub(r'(?m)^public_url = "[^"]*"', f'public_url = "{public_url}"', text))
    assert public_url in cfg.read_text()
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "server.public_url" in done.stdout + done.stderr, (
        f"check-config passed public_url {public_url}: rc={done.returncode} {done.stdout!r}"
    )
