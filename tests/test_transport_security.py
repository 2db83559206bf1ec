"""From a review of TLS toward the directory, the vendors and Redis (real slapd, TLS vendors on
loopback): what IT staff are told when a directory certificate names another host, SNI toward
the directory, and CA files that hold no certificate. Every test here failed on the code it was
written against."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import json
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxy.cli import config_checks
from proxy.config import load_config
from proxy.errors import ConfigError
from proxy.ldap_directory import _service_password, _Settings, _Worker
from tests.canary import CANARY, leaks
from tests.harness import vendor_toml, write_config, write_secret

pytestmark = [
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]


# ----------------------------------------------------------------------------- certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pki(
    workdir: Path, names: tuple[str, ...], *, expired: bool = False
) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signs for `names` (expired on request).
    Returns (ca_file, cert_file, key_file)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Review TLS CA"))
        .issuer_name(_name("Review TLS CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = (
        (now - dt.timedelta(days=10), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(minutes=5), now + dt.timedelta(days=2))
    )
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    workdir.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = workdir / "ca.pem", workdir / "cert.pem", workdir / "key.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(cert.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


def _events(log_stream: io.StringIO) -> list[dict[str, Any]]:
    out = []
    for line in log_stream.getvalue().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


# ----------------------------------------------------------------------------- directory


def _tls_directory(slapd: Any, root: Path, url: str, *, start_tls: bool) -> str:
    write_secret(root / "secrets" / "ldap-bind-password", slapd.bind_password)
    return f"""\
kind = "ldap"
urls = ["{url}"]
bind_dn = "{slapd.bind_dn}"
bind_password_file = "secrets/ldap-bind-password"
base_dn = "{slapd.patrons_base}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
eligible_filter = "(!(description=expired))"
timeout_s = 1.0
start_tls = {"true" if start_tls else "false"}
ca_file = "{slapd.ca_file}"
"""


@pytest.mark.ldap
@pytest.mark.parametrize("start_tls", [False, True], ids=["ldaps", "starttls"])
async def test_a_directory_certificate_for_another_host_is_named_in_the_log(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
    start_tls: bool,
) -> None:
    """The directory's certificate is signed by the configured ca_file but is for another name
    (the URL names `vm`, which resolves to 127.0.0.1 here; the certificate is for localhost and
    127.0.0.1 only: a server renamed, or a URL pointing at a load balancer). Sign-in is refused
    (503), as it must be; but the only log line IT staff get is
    `ldap_server_failed error=LDAPSocketOpenError reason=""` (StartTLS: LDAPStartTLSError),
    the very words a stopped server gives, because ldap3 raises its own LDAPCertificateError for
    the name check, which `_why` does not recognise. An untrusted CA is logged as
    `tls_certificate: self-signed certificate in certificate chain`, and a vendor's wrong-name
    certificate as `tls_certificate` with OpenSSL's reason (README "Failures"); the directory's
    wrong name should be told as a certificate problem too."""
    slapd = running_slapd
    url = f"ldap://vm:{slapd.port}" if start_tls else f"ldaps://vm:{slapd.ldaps_port}"
    v = await vendor_factory("www.review-db.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=_tls_directory(slapd, tmp_path, url, start_tls=start_tls),
        vendors={"one": vendor_toml("one", v)},
    )
    d = await proxy_factory(cfg)
    r = await d.login(CANARY.uid, CANARY.password)
    assert r.status == 503, "a wrong-name certificate must not be trusted"
    logged = log_stream.getvalue()
    assert leaks(logged.encode()) == []
    lines = [e for e in _events(log_stream) if e.get("event") == "ldap_server_failed"]
    assert lines, "the failed directory server is logged"
    told = " ".join(f"{e.get('error', '')} {e.get('reason', '')}" for e in lines).lower()
    assert "certificate" in told or "hostname" in told, lines


def test_ldaps_sends_the_directory_host_name_sni(tmp_path: Path) -> None:
    """RFC 6066/8446 clients send the server's name (SNI) in the TLS handshake; a directory
    behind a TLS front that serves several names (a load balancer, a hosted LDAP service) picks
    its certificate by it, and without it presents a default one that fails the name check:
    every sign-in 503. The proxy's own vendor client sends it; the directory client (ldap3's Tls
    built without `sni=`) sends none."""
    ca_file, cert_file, key_file = _pki(tmp_path / "pki", ("localhost", "127.0.0.1"))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    seen: list[str | None] = []
    server_ctx.sni_callback = lambda _s, name, _c: seen.append(name)  # type: ignore[assignment,misc,return-value]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(10)
    tls_port = listener.getsockname()[1]

    def serve_one() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            tls = server_ctx.wrap_socket(conn, server_side=True)
            tls.settimeout(2)
            tls.recv(100)
            tls.close()
        except (OSError, ssl.SSLError):
            conn.close()

    t = threading.Thread(target=serve_one, daemon=True)
    t.start()
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    write_secret(cfg_dir / "secrets" / "pw", "x")
    (cfg_dir / "vendors").mkdir()
    (cfg_dir / "proxy.toml").write_text(
        f"""\
[directory]
kind = "ldap"
urls = ["ldaps://localhost:{tls_port}"]
bind_dn = "cn=proxy,dc=example,dc=org"
bind_password_file = "secrets/pw"
base_dn = "ou=patrons,dc=example,dc=org"
timeout_s = 1
ca_file = "{ca_file}"

[vendors]
dir = "vendors"
"""
    )
    config = load_config(cfg_dir / "proxy.toml")
    worker = _Worker(_Settings(config.directory, _service_password(config), str(ca_file), ()))
    worker.run("ping", [f"ldaps://localhost:{tls_port}"], "", "")
    t.join(5)
    listener.close()
    assert seen, "the directory client never made a TLS handshake"
    assert seen == ["localhost"], f"SNI sent to the directory: {seen}"


# ----------------------------------------------------------------------------- check-config


def _config_with_cas(root: Path, *, directory_ca: str, vendor_ca: str) -> Path:
    """A configuration that is fine but for the CA files it names."""
    write_secret(root / "secrets" / "pw", "service-password")
    (root / "vendors").mkdir(parents=True, exist_ok=True)
    (root / "vendors" / "v.toml").write_text(
        f"""\
id = "v"
title = "V Journals"
origin = "https://www.v-db.test"
hosts = ["www.v-db.test"]
auth = "ip"
{f'tls_ca_file = "{vendor_ca}"' if vendor_ca else ""}
"""
    )
    cfg = root / "proxy.toml"
    cfg.write_text(
        f"""\
[server]
listen = "127.0.0.1:18555"
public_url = "http://proxy.localhost:18555"

[library]
name = "Weston Public Library"
scope = "westonlibrary.org"

[directory]
kind = "ldap"
urls = ["ldaps://ldap1.westonlibrary.org"]
bind_dn = "cn=proxy,dc=westonlibrary,dc=org"
bind_password_file = "secrets/pw"
base_dn = "ou=patrons,dc=westonlibrary,dc=org"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
{f'ca_file = "{directory_ca}"' if directory_ca else ""}

[session]
store = "memory"

[keys]
dir = "state/keys"

[vendors]
dir = "vendors"
"""
    )
    return cfg


# What an administrator may well put where a CA bundle belongs: an empty file a copy left behind,
# a placeholder text, a private key, or the CA certificate in DER form (what many CA download
# pages give; both the directory's and the vendors' bundles must be PEM).
_NOT_A_BUNDLE = {
    "empty": b"",
    "text": b"paste the CA certificate here\n",
    "private_key": ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ),
}


def _crl_only() -> bytes:
    """A PEM certificate revocation list and nothing else: `ssl` loads it without complaint (it
    takes CRLs from a CA file too), so only the proxy's own count of certificates refuses it."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Weston test CA")]))
        .last_update(now)
        .next_update(now + dt.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM)


def _not_a_bundle(kind: str, tmp_path: Path) -> bytes:
    if kind == "crl_only":
        return _crl_only()
    if kind == "der":
        ca_file, _, _ = _pki(tmp_path / "der-pki", ("ldap1.westonlibrary.org",))
        ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
        return ca.public_bytes(serialization.Encoding.DER)
    return _NOT_A_BUNDLE[kind]


_KINDS = [*_NOT_A_BUNDLE, "der", "crl_only"]


@pytest.mark.parametrize("content", _KINDS, ids=_KINDS)
def test_check_config_refuses_a_vendor_tls_ca_file_that_holds_no_certificate(
    tmp_path: Path, content: str
) -> None:
    """A vendor's `tls_ca_file` exists but holds no CA certificate. `check-config` says OK
    (it only asks whether the file exists), systemd's ExecStartPre passes, and then `serve`
    dies at start-up with a Python traceback (`ssl.SSLError: [X509:
    NO_CERTIFICATE_OR_CRL_FOUND]` out of `Upstream.start`): every database and sign-in is down,
    and IT staff get a stack instead of the file and key at fault. check-config promises to
    list every problem with its file and key."""
    (tmp_path / "vendors").mkdir()
    (tmp_path / "vendors" / "vendor-ca.pem").write_bytes(_not_a_bundle(content, tmp_path))
    cfg = _config_with_cas(tmp_path, directory_ca="", vendor_ca="vendor-ca.pem")
    with pytest.raises(ConfigError) as caught:
        load_config(cfg, extra_checks=config_checks())
    keys = [(Path(p.file).name, p.key) for p in caught.value.problems]
    assert ("v.toml", "tls_ca_file") in keys, keys


@pytest.mark.parametrize("content", _KINDS, ids=_KINDS)
def test_check_config_refuses_a_directory_ca_file_that_holds_no_certificate(
    tmp_path: Path, content: str
) -> None:
    """`directory.ca_file` exists but holds no CA certificate. `check-config` says OK and the
    proxy starts, then every connection to the directory fails inside ldap3 (the CA bundle is
    only read there, per connection) and every patron's sign-in gets 503 "login service
    unavailable", for a mistake check-config could have named before the start."""
    (tmp_path / "ldap-ca.pem").write_bytes(_not_a_bundle(content, tmp_path))
    cfg = _config_with_cas(tmp_path, directory_ca="ldap-ca.pem", vendor_ca="")
    with pytest.raises(ConfigError) as caught:
        load_config(cfg, extra_checks=config_checks())
    keys = [p.key for p in caught.value.problems]
    assert "directory.ca_file" in keys, keys
