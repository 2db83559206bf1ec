"""Pytest plugin: a real OpenLDAP slapd on loopback, seeded with the synthetic patrons.

`slapd` (session scope) runs Debian's /usr/sbin/slapd from a generated slapd.conf with an mdb
database in a temp dir, plain LDAP and LDAPS (a throwaway CA) on free 127.0.0.1 ports, loaded
from conf/ldap/patrons.ldif. `dead_ldap_url` is a port where nothing listens; `blackhole_ldap_url`
accepts TCP connections and never answers.

The seed LDIF is generated from tests/canary.py by `render_patrons_ldif()`; regenerate it with
`python -m tests.fixtures_ldap > conf/ldap/patrons.ldif`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ldap3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests import ports
from tests.canary import CANARY, EXPIRED, HERON, WREN, CanaryPatron

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

BASE_DN = "dc=westonlibrary,dc=org"
PATRONS_BASE = f"ou=patrons,{BASE_DN}"
BIND_DN = f"cn=proxy,{BASE_DN}"
# Synthetic service-account password of the test/demo directory (hashed in the seed LDIF).
BIND_PASSWORD = "proxy-demo-bind-secret-7f3c"
ELIGIBLE_FILTER = "(!(description=expired))"
RESIDENT_FILTER = "(employeeType=resident)"
GENERIC_COUNT = 100
GENERIC_UID_BASE = 29999001000000

SEED_LDIF = Path(__file__).resolve().parent.parent / "conf" / "ldap" / "patrons.ldif"
READY_TIMEOUT_S = 15.0


def generic_uid(i: int) -> str:
    """Card number of the i-th generic benchmark patron (0 <= i < GENERIC_COUNT)."""
    return str(GENERIC_UID_BASE + i)


def generic_password(i: int) -> str:
    return f"Pin-{i}-demo"


def ssha(password: str, seed: str) -> str:
    """{SSHA} hash with a salt derived from `seed`, so the seed LDIF regenerates byte for byte.

    A deterministic salt is fine for a synthetic demo directory and nowhere else.
    """
    salt = hashlib.sha256(f"weston-demo-salt:{seed}".encode()).digest()[:8]
    digest = hashlib.sha1(password.encode() + salt).digest()  # SSHA is SHA-1 by definition
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _patron_entry(
    uid: str,
    password: str,
    given: str,
    surname: str,
    mail: str,
    phone: str,
    address: str,
    kinds: list[str],
    description: str = "",
) -> str:
    street = address.split(",")[0]
    lines = [
        f"dn: uid={uid},{PATRONS_BASE}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {given} {surname}",
        f"sn: {surname}",
        f"givenName: {given}",
        f"mail: {mail}",
        f"telephoneNumber: {phone}",
        f"street: {street}",
        f"postalAddress: {address}",
        *(f"employeeType: {k}" for k in kinds),
        *([f"description: {description}"] if description else []),
        f"userPassword: {ssha(password, uid)}",
    ]
    return "\n".join(lines) + "\n"


def _canary_entry(p: CanaryPatron) -> str:
    return _patron_entry(
        p.uid,
        p.password,
        p.given_name,
        p.surname,
        p.email,
        p.phone,
        p.address,
        ["resident" if p.resident else "nonresident"],
        "expired" if p is EXPIRED else "",
    )


LDIF_HEADER = f"""\
# Synthetic patrons of the Weston demo/test directory. Every value is invented.
# GENERATED from tests/canary.py by
#   python -m tests.fixtures_ldap > conf/ldap/patrons.ldif
# Edit the generator, not this file (a test checks that they agree).
#
# Base:            {BASE_DN}
# Patrons:         {PATRONS_BASE} (inetOrgPerson, uid = card number)
# Service account: {BIND_DN}
#                  demo password "{BIND_PASSWORD}", stored hashed
# Eligibility:     employeeType: resident | nonresident; an expired card has description: expired
#   [directory] eligible_filter = "{ELIGIBLE_FILTER}"
#   resident-only vendor: [eligibility] ldap_filter = "{RESIDENT_FILTER}"
#   [directory] group_attribute = "employeeType" gives groups "resident" / "nonresident"
# Benchmark:       uid {GENERIC_UID_BASE} + i, password "Pin-<i>-demo", 0 <= i < {GENERIC_COUNT}
# Access the directory must grant: the service account reads ou=patrons (never userPassword);
# anonymous may only "auth" against userPassword (see the ACL in tests/fixtures_ldap.py).
"""


def render_patrons_ldif() -> str:
    """The seed LDIF: base, ou=patrons, service account, the canaries and generic patrons."""
    parts = [
        LDIF_HEADER,
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\n"
        "o: Weston Public Library\ndc: westonlibrary\n",
        f"dn: {PATRONS_BASE}\nobjectClass: organizationalUnit\nou: patrons\n",
        f"dn: {BIND_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        "cn: proxy\ndescription: Weston patron proxy service account (search only)\n"
        f"userPassword: {ssha(BIND_PASSWORD, BIND_DN)}\n",
    ]
    parts += [_canary_entry(p) for p in (CANARY, WREN, HERON, EXPIRED)]
    for i in range(GENERIC_COUNT):
        uid = generic_uid(i)
        parts.append(
            _patron_entry(
                uid,
                generic_password(i),
                f"Patron{i}",
                "Synthetic",
                f"patron{i}@example.invalid",
                f"+1-203-555-{i % 10000:04d}",
                f"{i} Example Street, Weston CT 06883",
                ["resident"],
            )
        )
    return "\n".join(parts)


# --------------------------------------------------------------------------- certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_tls_files(workdir: Path, dns_names: tuple[str, ...] = ()) -> tuple[Path, Path, Path, Path]:
    """A throwaway CA, a 127.0.0.1/localhost server cert it signs (also for `dns_names`), and an
    unrelated CA.

    Returns (ca_file, cert_file, key_file, untrusted_ca_file).
    """
    ca_key, ca_cert = _make_ca("Weston test LDAP CA")
    _, other_cert = _make_ca("Some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    *(x509.DNSName(n) for n in dns_names),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = (
        workdir / "ca.pem",
        workdir / "server.pem",
        workdir / "server.key",
    )
    other_file = workdir / "untrusted-ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    other_file.write_bytes(other_cert.public_bytes(pem))
    cert_file.write_bytes(cert.public_bytes(pem))
    _write_key(key, key_file)
    return ca_file, cert_file, key_file, other_file


# --------------------------------------------------------------------------- slapd


def free_port() -> int:
    """A loopback port nothing listens on (drawn below the kernel's ephemeral range)."""
    return ports.free_port()


def _slapd_conf(workdir: Path, tls: tuple[Path, Path, Path, Path]) -> str:
    ca_file, cert_file, key_file, _ = tls
    schemas = "\n".join(
        f"include {SCHEMA_DIR / name}"
        for name in ("core.schema", "cosine.schema", "inetorgperson.schema")
    )
    # ACL: the service account reads patrons but never userPassword; a patron's password is
    # only usable to bind ("auth"); the root DSE is public so a ping can read it.
    return f"""\
{schemas}
modulepath {MODULE_DIR}
moduleload back_mdb
pidfile {workdir / "slapd.pid"}
TLSCACertificateFile {ca_file}
TLSCertificateFile {cert_file}
TLSCertificateKeyFile {key_file}

access to dn.base="" by * read
access to attrs=userPassword
    by anonymous auth
    by * none
access to dn.subtree="{PATRONS_BASE}"
    by dn.exact="{BIND_DN}" read
    by * none
access to * by dn.exact="{BIND_DN}" read by * none

database mdb
maxsize 67108864
suffix "{BASE_DN}"
rootdn "cn=admin,{BASE_DN}"
directory {workdir / "db"}
index uid eq
"""


@dataclass
class Slapd:
    """A running slapd: connection facts for tests, and stop/start for outage tests."""

    workdir: Path
    port: int
    ldaps_port: int
    ca_file: Path
    untrusted_ca_file: Path
    base_dn: str = BASE_DN
    patrons_base: str = PATRONS_BASE
    bind_dn: str = BIND_DN
    bind_password: str = BIND_PASSWORD
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def conf(self) -> Path:
        return self.workdir / "slapd.conf"

    @property
    def log(self) -> Path:
        return self.workdir / "slapd.log"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start slapd on the same ports and data; returns once the service account can bind."""
        if self.is_running():
            return
        listen = f"{self.url}/ {self.ldaps_url}/"
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [SLAPD, "-f", str(self.conf), "-h", listen, "-d", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def stop(self) -> None:
        """Stop slapd (SIGTERM, then SIGKILL); the data stays for start()."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                pytest.fail(f"slapd exited with {self._proc.returncode}:\n{self._log_tail()}")
            if self._can_bind():
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"slapd did not accept a bind within {READY_TIMEOUT_S}s:\n{self._log_tail()}")

    def _can_bind(self) -> bool:
        server = ldap3.Server(self.url, connect_timeout=1, get_info=ldap3.NONE)
        conn = ldap3.Connection(
            server, self.bind_dn, self.bind_password, receive_timeout=1, raise_exceptions=False
        )
        try:
            return bool(conn.bind())
        except ldap3.core.exceptions.LDAPException:
            return False
        finally:
            conn.unbind()

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no slapd log)"


def start_slapd(workdir: Path, ldif: Path = SEED_LDIF) -> Slapd:
    """Configure, load and start a slapd in `workdir`; fails the test run if slapd is missing."""
    for tool in (SLAPD, SLAPADD):
        if not os.access(tool, os.X_OK):
            pytest.fail(
                f"{tool} is not installed; the LDAP tests need a real OpenLDAP server "
                "(Debian: apt-get install slapd ldap-utils)",
                pytrace=False,
            )
    tls = make_tls_files(workdir)
    (workdir / "db").mkdir()
    conf = workdir / "slapd.conf"
    conf.write_text(_slapd_conf(workdir, tls))
    loaded = subprocess.run(
        [SLAPADD, "-f", str(conf), "-l", str(ldif)], capture_output=True, text=True, check=False
    )
    if loaded.returncode != 0:
        pytest.fail(f"slapadd could not load {ldif}:\n{loaded.stderr[-4000:]}", pytrace=False)
    server = Slapd(
        workdir=workdir,
        port=free_port(),
        ldaps_port=free_port(),
        ca_file=tls[0],
        untrusted_ca_file=tls[3],
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A real slapd with the seed patrons, shared by the session; killed at the end."""
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_slapd(slapd: Slapd) -> Iterator[Slapd]:
    """The session slapd, restarted first if an earlier test stopped it and left it down."""
    slapd.start()
    yield slapd
    slapd.start()


@pytest.fixture
def dead_ldap_url() -> str:
    """An ldap:// URL on a loopback port where nothing listens (connection refused)."""
    return f"ldap://127.0.0.1:{free_port()}"


@pytest.fixture
def blackhole_ldap_url() -> Iterator[str]:
    """An ldap:// URL whose server completes the TCP handshake and then never says a word."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # the kernel accepts into the backlog; nobody ever calls accept()
    try:
        yield f"ldap://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def write_bind_password(tmp_path: Path, password: str = BIND_PASSWORD) -> Path:
    """Write the service account password to a 0600 file (config refuses readable secrets)."""
    path = tmp_path / "ldap-bind-password"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    path.chmod(0o600)
    return path


if __name__ == "__main__":
    print(render_patrons_ldif(), end="")
