"""docker-compose.yml, the Dockerfile and conf/compose/ stay in step with the code (Docker not run)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli import build_parser, cmd_serve, config_checks
from proxy.config import load_config

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
CONF = REPO / "conf" / "compose"
CONFIG_IN_CONTAINER = "/etc/weston/proxy.toml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def proxy_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: s
        for name, s in compose["services"].items()
        if s.get("command", [None])[0] == "weston-proxy"
    }


def test_compose_has_two_proxy_replicas_ldap_redis_nginx_and_the_demo_vendor(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    proxies = proxy_services(compose)
    assert len(proxies) >= 2
    assert all(s["build"] == "." for s in proxies.values())
    assert "openldap" in services["ldap"]["image"]
    assert services["redis"]["image"].startswith("redis:")
    assert services["nginx"]["image"].startswith("nginx:")
    assert services["demo-vendor"]["command"][:3] == ["python", "-m", "proxy.demo_vendor"]


def test_every_mounted_host_path_exists(compose: dict[str, Any]) -> None:
    """Bind mounts name files in the repository; nothing points at a path that is not there."""
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source}"


def test_secret_files_are_documented_and_kept_out_of_the_image(compose: dict[str, Any]) -> None:
    """Secrets are made by the operator (README says how), never committed or built in."""
    readme = (CONF / "README.md").read_text()
    for secret in compose["secrets"].values():
        path = Path(secret["file"])
        assert path.parts[:3] == ("conf", "compose", "secrets")
        made = (f"> {path.name}", f"-out {path.name}", f"-keyout {path.name}")
        assert any(m in readme for m in made), path.name
    assert "secrets" not in (REPO / "Dockerfile").read_text().split("COPY", 1)[1]


def test_proxy_command_uses_real_cli_flags(compose: dict[str, Any]) -> None:
    """The replicas' command, and the image's CMD, parse with the proxy's own argument parser."""
    dockerfile_cmd = json.loads(
        re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.M).group(1)  # type: ignore[union-attr]
    )
    for command in [s["command"] for s in proxy_services(compose).values()] + [dockerfile_cmd]:
        args = build_parser().parse_args(command[1:])
        assert args.func is cmd_serve
        assert args.config == CONFIG_IN_CONTAINER


def test_replicas_mount_the_compose_config_and_share_the_key_volume(
    compose: dict[str, Any],
) -> None:
    for service in proxy_services(compose).values():
        volumes = service["volumes"]
        assert f"./conf/compose/proxy.toml:{CONFIG_IN_CONTAINER}:ro" in volumes
        assert "weston-keys:/var/lib/weston/keys" in volumes
    assert compose["services"]["keys-init"]["volumes"] == ["weston-keys:/var/lib/weston/keys"]


def _stand_in_config(tmp_path: Path) -> Path:
    """conf/compose/proxy.toml with its vendors and stand-ins for the container's secret files."""
    shutil.copy(CONF / "proxy.toml", tmp_path / "proxy.toml")
    shutil.copytree(CONF / "vendors", tmp_path / "vendors")
    (tmp_path / "secrets").mkdir()
    for name in ("ldap-bind-password", "redis-password", "server-secret"):
        path = tmp_path / "secrets" / name
        path.write_text("stand-in " * 8 + "\n")  # a server secret takes at least 32 bytes
        os.chmod(path, 0o600)
    # check-config loads the CA file as the directory connection will: a real (throwaway) CA.
    (tmp_path / "secrets" / "ldap-ca.pem").write_bytes(_throwaway_ca_pem())
    return tmp_path / "proxy.toml"


def _throwaway_ca_pem() -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in directory CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_compose_proxy_config_loads(tmp_path: Path) -> None:
    """Apart from secrets that exist only in the container, the mounted config passes check-config."""
    config = load_config(_stand_in_config(tmp_path), extra_checks=config_checks())
    assert config.session.store == "redis"
    assert config.server.listen == "0.0.0.0:8080"
    assert [v.id for v in config.vendors] == ["demo"]


def test_config_secret_targets_match_the_compose_secrets(compose: dict[str, Any]) -> None:
    """Every secret file the config names is mounted where the config looks for it."""
    text = (CONF / "proxy.toml").read_text()
    wanted = {"/etc/weston/" + p for p in re.findall(r'_file = "(secrets/[^"]+)"', text)}
    for service in proxy_services(compose).values():
        targets = {s["target"] for s in service["secrets"]}
        assert wanted <= targets, wanted - targets


def test_demo_vendor_address_matches_connect_to(compose: dict[str, Any]) -> None:
    vendor = (CONF / "vendors" / "demo.toml").read_text()
    address = compose["services"]["demo-vendor"]["networks"]["weston"]["ipv4_address"]
    port = compose["services"]["demo-vendor"]["command"][4].rpartition(":")[2]
    assert f'connect_to = "{address}:{port}"' in vendor


def test_nginx_upstreams_are_the_proxy_replicas(compose: dict[str, Any]) -> None:
    conf = (CONF / "nginx.conf").read_text()
    upstreams = set(re.findall(r"^\s*server (\S+):8080", conf, re.M))
    assert upstreams == set(proxy_services(compose))


def test_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    """Debian's nginx accepts the file (upstream names point at loopback: no Docker DNS here)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx is not installed (Debian: apt-get install nginx)")
    conf = re.sub(r"server proxy-\d+:", "server 127.0.0.1:", (CONF / "nginx.conf").read_text())
    (tmp_path / "nginx.conf").write_text(conf)
    (tmp_path / "logs").mkdir()
    done = subprocess.run(
        [nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def test_nginx_adds_no_forwarding_headers_and_keeps_no_access_log() -> None:
    conf = (CONF / "nginx.conf").read_text()
    assert "access_log off;" in conf
    assert "proxy_set_header Host $http_host;" in conf
    for header in ("X-Forwarded-For", "X-Real-IP", "Forwarded"):
        assert f'proxy_set_header {header} "";' in conf
    assert "non_idempotent" not in conf.split("proxy_next_upstream", 1)[1].split(";", 1)[0]


def test_every_service_rotates_its_logs(compose: dict[str, Any]) -> None:
    """docs/records-and-retention.md asks for a log driver with rotation: Docker's default
    json-file driver without options keeps every line as long as the container exists."""
    for name, service in compose["services"].items():
        logging = service.get("logging") or {}
        assert logging.get("driver") in ("local", "json-file"), name
        options = logging.get("options") or {}
        assert "max-size" in options and "max-file" in options, name
        assert all(isinstance(v, str) for v in options.values()), name  # Docker wants strings


def test_nginx_writes_no_error_log_of_requests() -> None:
    """Request error lines name the client, the vendor host and the request line (P5): the
    http block sends them nowhere; only nginx's own start-up problems reach stderr."""
    conf = (CONF / "nginx.conf").read_text()
    http = conf.split("http {", 1)[1]
    assert re.search(r"^\s*error_log /dev/null;", http, re.M)
    assert http.count("error_log") == 1


def test_dockerfile_builds_from_python_311_slim_as_a_non_root_user() -> None:
    """Two stages: the full image (it has a C compiler) builds the wheels, the compiled scans
    among them, and the slim image that runs installs those wheels and runs as `weston`."""
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, re.M)
    assert stages == [("python:3.11", "build"), ("python:3.11-slim", "")]
    build, runtime = text.split("FROM python:3.11-slim", 1)
    for copied in re.findall(r"^COPY ([^-\n].*) \S+$", build, re.M):
        for name in copied.split():
            assert (REPO / name).exists(), name  # what the build stage copies is in the repo
    assert "pip wheel" in build and "proxy/_scan." in build  # fails the build without the .so
    assert "COPY --from=build /wheels /wheels" in runtime
    assert "pip install /wheels/*.whl" in runtime
    users = re.findall(r"^USER (\S+)$", runtime, re.M)
    assert users and users[-1] not in ("root", "0")
    # A checkout's own build of the scans (this machine's Python and libc) stays out of the image.
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {"proxy/*.so", "proxy/_scan.c", "build", "conf/compose/secrets"} <= set(ignored)


def test_nginx_keeps_metrics_off_the_public_side(tmp_path: Path) -> None:
    """Debian's nginx with the compose file, its replicas replaced by a port nothing answers on:
    /metrics is refused by nginx itself (404), while other paths go on to the replicas (502)."""
    import http.client
    import time

    from tests.harness import free_port

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    listen, dead = free_port(), free_port()
    conf = re.sub(
        r"server proxy-\d+:8080", f"server 127.0.0.1:{dead}", (CONF / "nginx.conf").read_text()
    )
    conf = conf.replace("listen 8080", f"listen 127.0.0.1:{listen}")
    conf = conf.replace("pid /tmp/nginx.pid;", "pid nginx.pid;")
    (tmp_path / "nginx.conf").write_text(conf)
    (tmp_path / "logs").mkdir()
    args = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"]
    server = subprocess.Popen([*args, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:

        def status(path: str) -> int:
            for _ in range(100):
                try:
                    c = http.client.HTTPConnection("127.0.0.1", listen, timeout=5)
                    c.request("GET", path, headers={"Host": f"proxy.localhost:{listen}"})
                    return c.getresponse().status
                except ConnectionRefusedError:
                    time.sleep(0.05)
            raise AssertionError("nginx did not start")

        assert status("/metrics") == 404
        assert status("/menu") == 502  # passed on to the (absent) replicas
    finally:
        server.terminate()
        server.wait(10)


def test_the_directory_does_not_log_each_sign_in(compose: dict[str, Any]) -> None:
    """The bitnami image runs slapd at level 256 ("stats") unless told otherwise: one line per
    operation, so every sign-in's BIND with the patron's DN (their card number) lands in the
    container log (P5). Only the "none" category (critical messages) is kept."""
    level = int(compose["services"]["ldap"]["environment"]["LDAP_LOGLEVEL"])
    stats, stats2, trace, packets, args, conns, ber, filters, acl = (
        256,
        512,
        1,
        2,
        4,
        8,
        16,
        32,
        128,
    )
    for bit in (stats, stats2, trace, packets, args, conns, ber, filters, acl):
        assert not level & bit, bit
