"""Live transmission checks: the real proxy pipeline, in-process, against a loopback stand-in.

The real adapters must pass every live check; deliberately leaky adapters, defined only here and
plugged in through `LiveChecker(adapters=...)`, must make the matching check fail and name what
leaked. A Python audit hook watches every socket the run opens: only loopback is ever contacted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from proxy.canary_detector import Canary, CanaryDetector
from proxy.cli import config_checks
from proxy.compliance import FAIL, PASS
from proxy.compliance_live import LiveChecker
from proxy.config import Config, load_config
from proxy.sessions import storage_key
from proxy.vendors.assertion import AssertionAdapter
from proxy.vendors.base import Outbound, VendorAdapter
from proxy.vendors.ip import IpAdapter

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
LIVE_IDS = {
    "live.canary",
    "live.header_allowlist",
    "live.assertion_claims",
    "live.cookie_isolation",
    "live.redirect",
    "live.unlinkable",
}
CONTRACT = """
[contract]
privacy_policy_url = "https://www.example.test/privacy"
reviewed = 2026-01-01
expires = 2099-01-01
retention_days = 30
permits_pseudonymous_id = true
no_sale_of_data = true
breach_notice_days = 3
law_enforcement_notice = true
subprocessors_bound = true
deletion_at_termination = true
"""
VENDORS = {
    "anon": 'auth = "assertion"\n',
    "pseudo": 'auth = "assertion"\nrelease = "pseudonymous"\n',
    "ipdb": 'auth = "ip"\n',
    "refdb": 'auth = "referer"\nreferer = "https://www.westonlibrary.test/databases"\n',
    "basicdb": textwrap.dedent(
        """\
        auth = "shared-login"
        [shared_login]
        method = "basic"
        username_file = "../secrets/account"
        password_file = "../secrets/password"
        """
    ),
    "formdb": textwrap.dedent(
        """\
        auth = "shared-login"
        start_url = "https://search.formdb.test/home?src=library"
        [shared_login]
        method = "form"
        login_url = "https://search.formdb.test/login"
        username_file = "../secrets/account"
        password_file = "../secrets/password"
        """
    ),
}


def write_live_config(root: Path, vendors: dict[str, str] = VENDORS) -> Path:
    """A production-shaped config: https vendors, and an LDAP directory that does not exist."""
    (root / "vendors").mkdir(parents=True)
    (root / "secrets").mkdir()
    for name in ("account", "password"):
        path = root / "secrets" / name
        path.write_text("library-shared-account\n")
        path.chmod(0o600)
    for vid, extra in vendors.items():
        body = textwrap.dedent(
            f"""\
            id = "{vid}"
            title = "{vid.title()} Database"
            origin = "https://search.{vid}.test"
            hosts = ["search.{vid}.test", "*.{vid}.test"]
            """
        )
        contract, _, rest = extra.partition("[shared_login]")
        text = body + contract + CONTRACT + ("[shared_login]" + rest if rest else "")
        vfile = root / "vendors" / f"{vid}.toml"
        vfile.write_text(text)
        if 'auth = "referer"' in extra:
            vfile.chmod(0o600)  # its referer URL is a shared secret: check-config wants 0600
    cfg = root / "proxy.toml"
    cfg.write_text(
        textwrap.dedent(
            """\
            [server]
            public_url = "https://proxy.westonlibrary.test"
            [directory]
            kind = "ldap"
            urls = ["ldaps://ldap.westonlibrary.test"]
            base_dn = "ou=patrons,dc=westonlibrary,dc=test"
            [vendors]
            dir = "vendors"
            """
        )
    )
    return cfg


@pytest.fixture
def live_config(tmp_path: Path) -> Config:
    return load_config(write_live_config(tmp_path), extra_checks=config_checks())


@pytest.fixture
def sockets() -> Iterator[list[tuple[str, Any]]]:
    """Every socket connect and name lookup made during the test, via a Python audit hook."""
    seen: list[tuple[str, Any]] = []
    active = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not active[0]:
            return
        if event == "socket.connect":
            address = args[1]
            seen.append(("connect", address[0] if isinstance(address, tuple) else address))
        elif event == "socket.getaddrinfo":
            seen.append(("lookup", args[0]))

    sys.addaudithook(hook)  # audit hooks cannot be removed; this one goes quiet after the test
    yield seen
    active[0] = False


def by_id(results: dict[str, list[Any]], vendor_id: str) -> dict[str, Any]:
    return {c.id: c for c in results[vendor_id]}


async def checks_with(
    config: Config, vendor_id: str, auth: str, adapter: type[VendorAdapter]
) -> dict[str, Any]:
    """The live checks of one vendor, with `adapter` in place of the shipped one for `auth`."""
    results = await LiveChecker(config, adapters={auth: adapter}).run([vendor_id])
    return by_id(results, vendor_id)


# --------------------------------------------------------------------------- the real adapters


async def test_real_adapters_pass_every_transmission_check(
    live_config: Config, sockets: list[tuple[str, Any]]
) -> None:
    """Every shipped adapter kind passes every live check, and only loopback is contacted."""
    progress: list[str] = []
    results = await LiveChecker(live_config, progress=progress.append).run(VENDORS)
    for vendor_id in VENDORS:
        checks = by_id(results, vendor_id)
        assert set(checks) == LIVE_IDS, vendor_id
        assert {c.result for c in checks.values()} == {PASS}, (vendor_id, checks)
    assert by_id(results, "pseudo")["live.assertion_claims"].evidence.endswith(
        "claims: affiliation, aud, exp, iat, iss, jti, sub"
    )
    assert sockets, "the audit hook saw the run"
    assert {host for _, host in sockets} <= LOOPBACK, sockets
    assert "[1/6] anon:" in "".join(progress)


async def test_the_library_directory_is_never_asked(live_config: Config) -> None:
    """The live run signs in canaries from its own temporary directory, not the library's LDAP."""
    results = await LiveChecker(live_config).run(["ipdb"])
    assert by_id(results, "ipdb")["live.canary"].result == PASS
    assert live_config.directory.kind == "ldap"  # and ldap.westonlibrary.test does not exist


async def test_live_run_leaves_the_library_state_alone(tmp_path: Path) -> None:
    """Keys, server secret, pid file and statistics of the run live in a temporary folder."""
    cfg_path = write_live_config(tmp_path, {"ipdb": VENDORS["ipdb"]})
    pid_file = tmp_path / "run" / "proxy.pid"  # the production proxy's, at an absolute path
    pid_file.parent.mkdir()
    pid_file.write_text("4242\n")
    absolute = f'[server]\npid_file = "{pid_file}"'
    cfg_path.write_text(cfg_path.read_text().replace("[server]", absolute))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    config = load_config(cfg_path, extra_checks=config_checks())
    await LiveChecker(config).run(["ipdb"])
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert pid_file.read_text() == "4242\n"


async def test_a_vendor_that_is_down_is_a_failure_not_a_pass(live_config: Config) -> None:
    """If the stand-in never receives the scripted search, the canary check cannot pass."""

    class Nowhere(IpAdapter):
        async def authorize(self, out: Outbound) -> None:
            out.url = out.url.with_path("/elsewhere")  # the search never arrives

    canary = (await checks_with(live_config, "ipdb", "ip", Nowhere))["live.canary"]
    assert canary.result == FAIL
    assert "never reached" in canary.message


# --------------------------------------------------------------------------- leaky test adapters


class SessionInUrlAdapter(AssertionAdapter):
    """TEST ONLY: leaks an md5 of the proxy session id in the query string."""

    async def authorize(self, out: Outbound) -> None:
        await super().authorize(out)
        out.url = out.url.update_query(v=hashlib.md5(out.session.id.encode()).hexdigest())


class PatronKeyHeaderAdapter(AssertionAdapter):
    """TEST ONLY: sends the patron's stable key, base64-encoded, in an extra header."""

    async def authorize(self, out: Outbound) -> None:
        await super().authorize(out)
        out.headers["X-Trace"] = base64.b64encode(out.session.patron_key.encode()).decode()


class ChattyAssertionAdapter(AssertionAdapter):
    """TEST ONLY: signs a valid assertion that carries one claim too many."""

    async def authorize(self, out: Outbound) -> None:
        signer = self.upstream.signer
        claims = signer.claims(
            audience=self.vendor.aud,
            patron_key=out.session.patron_key,
            vendor_id=self.vendor.id,
            pseudonymous=False,
            now=int(__import__("time").time()),
        )
        claims["groups"] = ["resident"]
        out.headers[self.vendor.assertion_header] = signer.sign(claims)


class StickyCookieAdapter(IpAdapter):
    """TEST ONLY: replays the first session's vendor cookies to every later session."""

    first: tuple[str, str] | None = None

    async def authorize(self, out: Outbound) -> None:
        jar = out.session.jars.get(self.vendor.id, [])
        if self.first is None and jar:
            self.first = (storage_key(out.session.id), jar[0]["name"] + "=" + jar[0]["value"])
        elif self.first is not None and self.first[0] != storage_key(out.session.id) and not jar:
            out.headers["Cookie"] = self.first[1]


async def test_leaky_adapter_fails_the_canary_check_naming_the_canary(
    live_config: Config,
) -> None:
    """An md5 of the session id in the URL is found, named and located."""
    checks = await checks_with(live_config, "anon", "assertion", SessionInUrlAdapter)
    canary = checks["live.canary"]
    assert canary.result == FAIL
    assert "proxy session id (md5 hex) in the URL" in canary.evidence
    assert checks["live.header_allowlist"].result == PASS


async def test_extra_header_fails_canary_and_allowlist_checks(live_config: Config) -> None:
    checks = await checks_with(live_config, "anon", "assertion", PatronKeyHeaderAdapter)
    assert checks["live.canary"].result == FAIL
    assert "patron key (base64) in header X-Trace" in checks["live.canary"].evidence
    assert checks["live.header_allowlist"].result == FAIL
    assert "X-Trace" in checks["live.header_allowlist"].evidence


async def test_assertion_with_an_extra_claim_fails_the_claims_check(
    live_config: Config,
) -> None:
    checks = await checks_with(live_config, "anon", "assertion", ChattyAssertionAdapter)
    claims = checks["live.assertion_claims"]
    assert claims.result == FAIL
    assert "claim 'groups' not allowed" in claims.evidence


async def test_cookie_replayed_to_another_patron_fails_isolation(live_config: Config) -> None:
    checks = await checks_with(live_config, "ipdb", "ip", StickyCookieAdapter)
    isolation = checks["live.cookie_isolation"]
    assert isolation.result == FAIL
    assert "the other patron's vendor cookie was sent" in isolation.evidence


# --------------------------------------------------------------------------- the canary detector

SECRET = "29990001234567"


@pytest.mark.parametrize(
    "carrier",
    [
        SECRET.encode(),
        b"/search?q=" + quote(f"card {SECRET}").encode(),
        b"x" + base64.b64encode(json.dumps({"card": SECRET}).encode()),
        base64.urlsafe_b64encode(b"ab" + SECRET.encode() + b"z"),
        hashlib.md5(SECRET.encode()).hexdigest().upper().encode(),
        b"id=" + hashlib.sha1(SECRET.encode()).hexdigest().encode(),
        hashlib.sha256(SECRET.encode()).hexdigest().encode(),
        SECRET.encode().hex().encode(),
    ],
)
def test_detector_finds_every_encoding(carrier: bytes) -> None:
    """Raw, URL-encoded, base64 at any alignment, hex and digests are all found."""
    leaks = CanaryDetector([Canary("card number", SECRET)]).find(b"prefix " + carrier)
    assert [leak.label for leak in leaks] == ["card number"]


def test_detector_is_quiet_on_unrelated_bytes() -> None:
    detector = CanaryDetector([Canary("card number", SECRET)])
    noise = os.urandom(4096) + b"29990001234568 https://search.example.test/?q=1234567"
    assert detector.find(noise) == []


# --------------------------------------------------------------------------- the CLI


def test_cli_live_json_on_stdout_and_progress_on_stderr(tmp_path: Path) -> None:
    cfg = write_live_config(tmp_path, {"anon": VENDORS["anon"]})
    args = ["compliance", "--config", str(cfg), "--live", "--format", "json"]
    r = subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    ids = {c["id"]: c["result"] for c in report["vendors"][0]["checks"]}
    assert all(ids[i] == "pass" for i in LIVE_IDS | {"live.logs"})
    assert ids["page.third_party"] == "unknown"
    assert "[1/1] anon:" in r.stderr and "done" in r.stderr


# --------------------------------------------------------------------------- a leaky proxy
# The live checks judge what the stand-in vendor received and what the stub browser saw; a
# check passes vacuously if the stub browser never offers the proxy the thing to leak. Each
# test below breaks one of the proxy's own filters (not an adapter) and expects the check to
# catch it: so the stub must really send the library's cookie and a Referer with a path, and
# must really record the Set-Cookie headers it is shown.


def _leaky_outbound(names: tuple[str, ...]) -> Any:
    """`outbound_headers` that also passes the browser's `names` headers on as they came."""
    import proxy.forward

    real = proxy.forward.outbound_headers

    def leaky(incoming: Any, **kw: Any) -> Any:
        out = real(incoming, **kw)
        for name in names:
            if name in incoming:
                out[name] = incoming[name]
        return out

    return leaky


async def test_a_proxy_that_forwards_the_browsers_cookies_fails_the_cookie_check(
    live_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The browser's own cookies on a mapped host (the proxy's session cookie, the library
    site's preferences) passed on to the vendor: `live.cookie_isolation` fails naming them."""
    import proxy.forward

    monkeypatch.setattr(proxy.forward, "outbound_headers", _leaky_outbound(("Cookie",)))
    real = proxy.forward.Upstream.authorized

    async def authorized(self: Any, out: Outbound) -> str | None:
        browsers = out.headers.get("Cookie")  # `authorized` drops it before adding the jar's
        site = await real(self, out)
        if browsers:
            jars = out.headers.get("Cookie")
            out.headers["Cookie"] = browsers + (f"; {jars}" if jars else "")
        return site

    monkeypatch.setattr(proxy.forward.Upstream, "authorized", authorized)
    checks = await checks_with(live_config, "ipdb", "ip", IpAdapter)
    isolation = checks["live.cookie_isolation"]
    assert isolation.result == FAIL, isolation
    assert "browser cookie 'weston_pref' reached the vendor" in isolation.evidence


async def test_a_proxy_that_forwards_the_browsers_referer_fails_the_header_check(
    live_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patron's last page as the browser's Referer names it (path and query: the search)
    passed on to the vendor: `live.header_allowlist` fails, saying it carries a path."""
    import proxy.forward

    monkeypatch.setattr(proxy.forward, "outbound_headers", _leaky_outbound(("Referer",)))
    checks = await checks_with(live_config, "ipdb", "ip", IpAdapter)
    allowlist = checks["live.header_allowlist"]
    assert allowlist.result == FAIL, allowlist
    assert "Referer carries a path" in allowlist.evidence


async def test_a_proxy_that_shows_the_vendors_set_cookie_fails_the_cookie_check(
    live_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vendor's Set-Cookie handed to the browser (it would then hold the vendor's tracking
    cookie under the library's name): `live.cookie_isolation` fails saying so."""
    import proxy.forward

    real = proxy.forward.response_headers

    def leaky(upstream: Any) -> Any:
        pairs = list(upstream)
        out = real(pairs)
        for name, value in pairs:
            if name.lower() == "set-cookie":
                out.add(name, value)
        return out

    monkeypatch.setattr(proxy.forward, "response_headers", leaky)
    checks = await checks_with(live_config, "ipdb", "ip", IpAdapter)
    isolation = checks["live.cookie_isolation"]
    assert isolation.result == FAIL, isolation
    assert "the vendor's Set-Cookie reached the browser" in isolation.evidence
