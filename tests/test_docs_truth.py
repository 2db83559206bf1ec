"""What the documentation tells IT staff to do works, and the shipped examples are right.

Each test follows one instruction from docs/*.md or conf/ as IT staff would, and checks that the
result works. Docker and systemd are not run; nginx and openssl are (Debian packages).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.client_ip import client_address, parse_networks
from proxy.throttle import ThrottleSection, address_bucket

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
COMPOSE_README = REPO / "conf" / "compose" / "README.md"


def fenced(path: Path, lang: str) -> list[str]:
    """The fenced ```lang blocks of a Markdown file, in order."""
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=proxy.westonlibrary.org",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


# --------------------------------------------------------------------------- TLS terminator


def test_systemd_doc_nginx_terminator_passes_nginx_t_on_debian(tmp_path: Path) -> None:
    """IT staff on Debian 12 paste the TLS terminator from docs/systemd-and-tls.md into
    /etc/nginx/sites-available and run `nginx -t`: Debian's nginx (1.22) stops with
    `unknown directive "http2"` (`http2 on;` exists only from nginx 1.25.1), so nginx will not
    start and the proxy is unreachable."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    (block,) = fenced(DOCS / "systemd-and-tls.md", "nginx")
    cert, key = _self_signed(tmp_path)
    block = block.replace("/etc/letsencrypt/live/proxy.westonlibrary.org/fullchain.pem", str(cert))
    block = block.replace("/etc/letsencrypt/live/proxy.westonlibrary.org/privkey.pem", str(key))
    # Debian's /etc/nginx/nginx.conf includes sites-enabled/* inside its http { } block.
    conf = f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n{block}\n}}\n"
    (tmp_path / "nginx.conf").write_text(conf)
    (tmp_path / "logs").mkdir()
    done = subprocess.run(
        [nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def test_documented_terminator_setup_tells_patrons_apart_for_sign_in_throttling() -> None:
    """docs/systemd-and-tls.md puts nginx on the same host and says not to add X-Forwarded-For
    "unless you use throttling", and conf/examples/production.toml trusts no proxy. But sign-in
    throttling is on by default ([throttle] enabled, address_limit = 20 per 15 min), so behind
    the documented terminator every patron is the one address 127.0.0.1: twenty mistyped PINs
    anywhere in the library (or one person trying twenty made-up cards) lock every patron out of
    sign-in until the window ends."""
    (block,) = fenced(DOCS / "systemd-and-tls.md", "nginx")
    forwards = re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$(\w+)", block)
    production = tomllib.loads((REPO / "conf/examples/production.toml").read_text())
    trusted = parse_networks(production.get("server", {}).get("trusted_proxies", []))
    throttle = production.get("throttle", {})
    assert ThrottleSection().enabled and throttle.get("enabled", True)  # on, as shipped

    def bucket(patron_ip: str) -> str:
        # What nginx sends the proxy (on 127.0.0.1:8080) for a patron at patron_ip.
        xff = (
            [patron_ip]
            if forwards and forwards.group(1) in ("remote_addr", "proxy_add_x_forwarded_for")
            else []
        )
        return address_bucket(client_address("127.0.0.1", xff, trusted))

    assert bucket("203.0.113.7") != bucket("198.51.100.9"), (
        "two patrons behind the documented terminator share one sign-in throttle counter"
    )


# --------------------------------------------------------------------------- docker-compose


def _service_uids(compose: dict[str, Any]) -> dict[str, int | None]:
    """The uid each service runs as: the proxy image's fixed uid (Dockerfile), bitnami's 1001 as
    conf/compose/README.md says, and root (None: reads anything) for the others."""
    dockerfile = (REPO / "Dockerfile").read_text()
    proxy_uid = int(re.search(r"--uid (\d+)", dockerfile).group(1))  # type: ignore[union-attr]
    readme = COMPOSE_README.read_text()
    bitnami = re.search(r"bitnami/openldap runs as uid (\d+)", readme)
    uids: dict[str, int | None] = {}
    for name, service in compose["services"].items():
        if service.get("build") == ".":
            uids[name] = proxy_uid
        elif "bitnami/" in service.get("image", "") and bitnami:
            uids[name] = int(bitnami.group(1))
        else:
            uids[name] = None
    return uids


def test_compose_readme_secret_recipe_leaves_every_secret_readable_by_its_container(
    tmp_path: Path,
) -> None:
    """IT staff run the secrets recipe in conf/compose/README.md as written, then
    `docker compose up`. Compose (without swarm) bind-mounts secret files with their host owner
    and mode, and the recipe makes every file 0600 but gives only some of them to the uids that
    read them: ldap-cert.pem (read by OpenLDAP, uid 1001) and ldap-ca.pem (read by OpenLDAP and
    by every proxy replica, uid 10001) stay 0600 and owned by the operator. OpenLDAP cannot read
    its certificate, and the proxy cannot read the CA it verifies the directory with: no patron
    can sign in."""
    if os.geteuid() != 0:
        pytest.skip("the recipe's chown needs root (it runs them with sudo)")
    if shutil.which("openssl") is None or shutil.which("bash") is None:
        pytest.skip("openssl and bash are needed to run the recipe")
    (recipe,) = fenced(COMPOSE_README, "sh")
    recipe = recipe.replace("sudo ", "")
    (tmp_path / "conf" / "compose").mkdir(parents=True)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", recipe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    uids = _service_uids(compose)
    unreadable = []
    for name, service in compose["services"].items():
        uid = uids[name]
        if uid is None:
            continue
        for entry in service.get("secrets", []):
            source = entry if isinstance(entry, str) else entry["source"]
            path = tmp_path / compose["secrets"][source]["file"]
            st = path.stat()
            readable = (st.st_uid == uid and st.st_mode & stat.S_IRUSR) or (
                st.st_mode & stat.S_IROTH
            )
            if not readable:
                unreadable.append(f"{name} (uid {uid}) cannot read {path.name}")
    assert not unreadable, unreadable


# --------------------------------------------------------------------------- systemd install


def _install_steps() -> str:
    """The shell block of docs/systemd-and-tls.md that installs the service."""
    (steps,) = [b for b in fenced(DOCS / "systemd-and-tls.md", "sh") if "useradd" in b]
    return steps


def test_systemd_install_steps_create_the_directories_the_example_config_names() -> None:
    """The install steps copy conf/examples/production.toml to /etc/weston-proxy, whose relative
    `vendors.dir` and secret files resolve under /etc/weston-proxy: the steps must create the
    vendors and secrets directories, or the first start fails in check-config."""
    steps = _install_steps()
    production = tomllib.loads((REPO / "conf/examples/production.toml").read_text())
    wanted = {production["vendors"]["dir"]}
    wanted |= {
        str(Path(value).parent)
        for section in production.values()
        for key, value in section.items()
        if key.endswith("_file") and isinstance(value, str) and not value.startswith("/")
    }
    created = set(re.findall(r"/etc/weston-proxy/([\w./-]+)", " ".join(
        line for line in steps.splitlines() if line.startswith(("install -d", "mkdir"))
    )))  # fmt: skip
    missing = sorted(d for d in wanted if d not in created)
    assert not missing, f"the install steps never create /etc/weston-proxy/{missing}"


def test_systemd_doc_has_secrets_and_keys_owned_by_the_service_user() -> None:
    """The proxy refuses a secret or key file readable by group or others, so the service user
    can read one only if it owns it: the secrets directory belongs to weston-proxy, and every
    `keys` command in the doc runs as weston-proxy (a key rotated as root is a root-owned 0600
    file the service cannot read)."""
    steps = _install_steps()
    assert re.search(r"install -d -o weston-proxy .*-m 07\d0 /etc/weston-proxy/secrets", steps)
    assert "chown weston-proxy" in steps
    doc = (DOCS / "systemd-and-tls.md").read_text()
    keys = [ln for ln in doc.splitlines() if re.search(r"weston-proxy keys \w+", ln)]
    assert keys
    assert all("sudo -u weston-proxy weston-proxy keys" in ln for ln in keys), keys
