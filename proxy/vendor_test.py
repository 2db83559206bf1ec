"""`weston-proxy vendors test ID`: fetch a vendor's starting point through the real pipeline.

The proxy's own middleware, session gate, adapter, privacy policy and rewriter run in this process
on a loopback port, with a synthetic session made for this one test: no patron, no directory, a
throwaway store. The report says what staff need to finish a vendor file: the status, every
redirect, which hosts the page links to through the proxy (rewritten), and which hosts it links to
that the proxy does not map (patrons following those leave the proxy, usually an EZproxy `Domain`
line that is missing).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy.app import dispatch
from proxy.assertion import Signer, SigningKey, load_keys, public_jwk, thumbprint
from proxy.auth import eligibility_marks
from proxy.config import Config, VendorConfig
from proxy.errors import BadCredentials
from proxy.forward import Upstream
from proxy.hosts import HostMap, host_matches, unmap_label
from proxy.metrics import Metrics
from proxy.services import SERVICES, Services, template_env
from proxy.sessions import MemoryStore, Sessions

MAX_REDIRECTS = 10
MAX_BODY = 2 * 1024 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Absolute or scheme-relative URLs, also with JavaScript-escaped slashes (https:\/\/host).
_HOST_IN_PAGE = re.compile(
    rb"(?:https?:)?(?:\\?/){2}((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,63})\b", re.I
)


class NoDirectory:
    """The test's directory: nobody can sign in, because no patron takes part."""

    async def authenticate(self, username: str, password: str) -> Any:
        raise BadCredentials

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class Hop:
    status: int
    url: str  # the vendor URL asked for (mapped back from the proxy's host)


@dataclass
class Report:
    vendor: str
    start_url: str
    status: int | None = None
    chain: list[Hop] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)  # vendor hosts linked through the proxy
    not_configured: list[str] = field(default_factory=list)  # hosts linked that are not mapped
    not_rewritten: list[str] = field(default_factory=list)  # mapped hosts left as they were
    never_proxied: list[str] = field(default_factory=list)  # hosts the vendor file excludes
    stopped: str = ""  # why the redirect chain ended early
    signing_key: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400 and not self.stopped

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _throwaway_key() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    return SigningKey(thumbprint(public_jwk(private.public_key())), private, 0.0, Path("-"))


def classify_hosts(body: bytes, hosts: HostMap, vendor: VendorConfig, report: Report) -> None:
    """Sort the hosts a (rewritten) page links to into rewritten / not configured / excluded."""
    found = {m.group(1).decode("ascii").lower().rstrip(".") for m in _HOST_IN_PAGE.finditer(body)}
    suffix = "." + hosts.public_host
    rewritten, missing, untouched, never = set(), set(), set(), set()
    for h in found:
        if h == hosts.public_host:
            continue
        if h.endswith(suffix):
            vendor_host = unmap_label(h[: -len(suffix)])
            if vendor_host is not None:
                rewritten.add(vendor_host)
            continue
        if any(host_matches(p, h) for p in vendor.never_proxy):
            never.add(h)
        elif hosts.vendor_for_host(h) is not None:
            untouched.add(h)
        else:
            missing.add(h)
    report.rewritten = sorted(rewritten)
    report.not_configured = sorted(missing)
    report.not_rewritten = sorted(untouched)
    report.never_proxied = sorted(never)


async def run_vendor_test(config: Config, vendor: VendorConfig) -> Report:
    """Fetch `vendor.start` through an in-process proxy and report what happened."""
    hosts = config.host_map()
    keys = load_keys(config.resolve(config.keys.dir)) or [_throwaway_key()]
    secret = secrets.token_bytes(32)  # pseudonyms made here belong to no patron
    signer = Signer(
        keys,
        issuer=config.server.public_url.rstrip("/"),
        scope=config.library.scope,
        pairwise_secret=secret,
    )
    sessions = Sessions(MemoryStore(), idle_timeout_s=600, lifetime_s=600)
    # Decided under the rules in force, as a sign-in now would be (auth.decided_under).
    marks = eligibility_marks(config)
    session = await sessions.start(
        patron_key="vendors-test-" + secrets.token_hex(8),
        databases=frozenset({vendor.id}),
        rules=frozenset(marks.values()),
    )
    from proxy.rewrite import Rewriter

    upstream = Upstream(
        config, hosts=hosts, signer=signer, sessions=sessions, rewriter=Rewriter.from_config(config)
    )
    await upstream.start()
    app = web.Application(middlewares=[dispatch])
    app[SERVICES] = Services(
        config=config,
        hosts=hosts,
        sessions=sessions,
        directory=NoDirectory(),
        signer=signer,
        upstream=upstream,
        templates=template_env(config),
        metrics=Metrics(),
        secret=secret,
    )
    runner = web.AppRunner(app, access_log=None)
    report = Report(vendor=vendor.id, start_url=vendor.start, signing_key=signer.active_key().kid)
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
        async with aiohttp.ClientSession(auto_decompress=True) as client:
            await _walk(client, port, config, hosts, vendor, session.id, report)
    finally:
        await runner.cleanup()
        await upstream.close()
    return report


async def _walk(
    client: aiohttp.ClientSession,
    port: int,
    config: Config,
    hosts: HostMap,
    vendor: VendorConfig,
    session_id: str,
    report: Report,
) -> None:
    url = vendor.start
    cookie = f"{config.server.cookie_name}={session_id}"
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        vendor_host = (parts.hostname or "").lower()
        if hosts.vendor_for_host(vendor_host) is None:
            report.stopped = f"redirected to {vendor_host}, which no vendor file maps"
            if vendor_host not in report.not_configured:
                report.not_configured.append(vendor_host)
            return
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        mapped = hosts.to_mapped(vendor_host)
        async with client.get(
            f"http://127.0.0.1:{port}{path}",
            headers={"Host": mapped, "Cookie": cookie},
            allow_redirects=False,
        ) as resp:
            report.chain.append(Hop(resp.status, url))
            report.status = resp.status
            location = resp.headers.get("Location")
            if resp.status in REDIRECTS and location:
                here = f"{hosts.public_scheme}://{mapped}{path}"
                following = _vendor_url(urljoin(here, location), config, hosts)
                if following is None:
                    report.stopped = "redirected to the proxy's own pages (session refused)"
                    return
                url = following
                continue
            body = await resp.content.read(MAX_BODY)
            classify_hosts(body, hosts, vendor, report)
            return
    report.stopped = f"more than {MAX_REDIRECTS} redirects"


def _vendor_url(location: str, config: Config, hosts: HostMap) -> str | None:
    """The vendor URL a Location on the proxy stands for; an unmapped one is returned as is."""
    parts = urlsplit(location)
    host = (parts.hostname or "").lower()
    if host == hosts.public_host:
        return None
    suffix = "." + hosts.public_host
    if host.endswith(suffix):
        vendor_host = unmap_label(host[: -len(suffix)])
        owner = config.vendor(hosts.vendor_for_host(vendor_host or "") or "")
        if vendor_host is not None and owner is not None:
            rest = parts.path + (f"?{parts.query}" if parts.query else "")
            return f"{owner.origin_parts[0]}://{vendor_host}{rest or '/'}"
    return location


def print_report(report: Report, out: TextIO, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(report.to_json(), indent=2), file=out)
        return
    print(f"vendor {report.vendor}: {'OK' if report.ok else 'PROBLEM'}", file=out)
    print(f"  starting point: {report.start_url}", file=out)
    print(f"  signing key:    {report.signing_key}", file=out)
    for i, hop in enumerate(report.chain):
        print(f"  {'fetch' if i == 0 else 'redirect'} {hop.status} {hop.url}", file=out)
    if report.stopped:
        print(f"  stopped: {report.stopped}", file=out)
    rows = (
        ("rewritten (through the proxy)", report.rewritten),
        ("NOT CONFIGURED (links leave the proxy)", report.not_configured),
        ("mapped but not rewritten", report.not_rewritten),
        ("never proxied (never_proxy)", report.never_proxied),
    )
    for label, items in rows:
        if items:
            print(f"  {label}:", file=out)
            for h in items:
                print(f"    {h}", file=out)
