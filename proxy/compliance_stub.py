"""Stand-ins a live compliance run uses so that nothing real is contacted or asked.

A `Recorder` answers for every vendor origin on 127.0.0.1 and keeps each request exactly as
received; `CanaryPatron`s are generated for one run and live only in a temporary patrons file;
`live_config` is the library's config with the directory, state and vendor origins replaced by
those; a `Browser` is one patron's scripted browser, sending what a real one would (spoofed
forwarding headers, a Referer, a cookie of the library's own) so the proxy has to strip it.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import argon2
from aiohttp import web

from proxy.config import (
    Config,
    DemoConfig,
    DirectoryConfig,
    Eligibility,
    KeysConfig,
    Limits,
    SessionConfig,
    VendorConfig,
)
from proxy.hosts import host_matches

PREFIX = "/weston-compliance"  # path under which the scripted visit's own requests go
VENDOR_COOKIE = "wc_visit"


@dataclass(frozen=True)
class Sent:
    """One request exactly as a vendor received it."""

    host: str
    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    issued_cookie: str = ""  # the vendor cookie value set in the response to this request


@dataclass
class Recorder:
    """Stands in for every vendor origin on 127.0.0.1; records each request it receives."""

    requests: list[Sent] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        host = request.host.rpartition(":")[0] if request.host.count(":") == 1 else request.host
        origin = f"http://{request.host}"
        redirect = request.path == f"{PREFIX}/redirect"
        cookie = "" if redirect else secrets.token_urlsafe(12)
        self.requests.append(
            Sent(
                host, request.method, request.path_qs, tuple(request.headers.items()), body, cookie
            )
        )
        if redirect:
            raise web.HTTPFound(f"{origin}{PREFIX}/landing")
        resp = web.Response(
            text=f"<!doctype html><title>stand-in</title><a href='{origin}/next'>next</a>",
            content_type="text/html",
        )
        resp.set_cookie(VENDOR_COOKIE, cookie, path="/", max_age=3600)
        return resp

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass(frozen=True)
class CanaryPatron:
    """A generated patron: card and PIN exist only in the temporary directory of one run."""

    card: str
    pin: str
    ip: str  # the address the "browser" claims in forwarding headers

    @classmethod
    def generate(cls) -> CanaryPatron:
        card = "2999" + "".join(secrets.choice("0123456789") for _ in range(10))
        ip = f"198.51.100.{secrets.randbelow(200) + 20}"  # RFC 5737 documentation range
        return cls(card=card, pin="Canary-" + secrets.token_hex(6), ip=ip)


def write_patrons_file(path: Path, patrons: Iterable[CanaryPatron]) -> None:
    # Cheap argon2 parameters: these hashes guard throwaway canaries for a few seconds.
    hasher = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    lines = [f'[[patron]]\ncard = "{p.card}"\nhash = "{hasher.hash(p.pin)}"\n' for p in patrons]
    path.write_text("\n".join(lines), encoding="utf-8")


def live_vendor(v: VendorConfig, port: int, work: Path) -> VendorConfig:
    """The vendor as the live run sees it: plain http to the recorder, synthetic shared account."""

    def to_http(url: str) -> str:
        parts = urlsplit(url)
        if not parts.hostname or not any(host_matches(h, parts.hostname) for h in v.hosts):
            return url
        rest = parts.path + ("?" + parts.query if parts.query else "")
        return f"http://{parts.hostname}{rest or '/'}"

    shared = v.shared_login
    if shared is not None:
        user = work / f"{v.id}-user"
        password = work / f"{v.id}-password"
        for p, text in ((user, "library-account"), (password, secrets.token_hex(8))):
            p.write_text(text, encoding="utf-8")
            p.chmod(0o600)
        shared = dataclasses.replace(
            shared,
            login_url=to_http(shared.login_url) if shared.login_url else "",
            username_file=str(user),
            password_file=str(password),
            username_env="",
            password_env="",
        )
    return dataclasses.replace(
        v,
        origin=f"http://{v.origin_host}",
        start_url=to_http(v.start),
        connect_to=f"127.0.0.1:{port}",
        tls_verify=True,
        tls_ca_file="",
        eligibility=Eligibility(),
        limits=Limits(),
        shared_login=shared,
    )


def live_config(config: Config, port: int, work: Path) -> Config:
    """The library's config with the directory, state and every vendor origin replaced."""
    return dataclasses.replace(
        config,
        path=work / "proxy.toml",
        # The running proxy's pid file must not be overwritten by this in-process copy.
        server=dataclasses.replace(config.server, pid_file=str(work / "proxy.pid")),
        directory=DirectoryConfig(kind="file", patrons_file=str(work / "patrons.toml")),
        session=SessionConfig(store="memory", secret_file=str(work / "server-secret")),
        keys=KeysConfig(dir=str(work / "keys"), activate_after_s=0),
        demo=DemoConfig(),
        # Statistics and throttling would count or slow synthetic traffic: no [stats], and a
        # [throttle] that bounds nothing (its defaults bound the canary card's sign-ins, two per
        # vendor: a library of more than 150 databases had the rest refused with 429). The
        # tracker shield is per vendor (third_party), so it stays with each vendor.
        extra={
            **{k: v for k, v in config.extra.items() if k == "compliance"},
            "throttle": {"enabled": False, "card_sign_in_limit": 0},
        },
        vendors=tuple(live_vendor(v, port, work) for v in config.vendors),
    )


@dataclass
class Browser:
    """One patron's browser: the proxy session cookie, spoofed forwarding headers, a Referer."""

    http: aiohttp.ClientSession
    config: Config
    patron: CanaryPatron
    sid: str = ""
    referer: str = ""
    set_cookies_seen: list[str] = field(default_factory=list)

    def _headers(self, host: str) -> dict[str, str]:
        name = self.config.server.cookie_name
        h = {
            "Host": host,
            "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) weston-compliance",
            "Accept": "text/html,*/*;q=0.8",
            "Accept-Language": "en-US,en;q=0.9",
            "Accept-Encoding": "gzip, br, zstd",
            "X-Forwarded-For": self.patron.ip,
            "Forwarded": f"for={self.patron.ip}",
            "X-Real-IP": self.patron.ip,
            "Sec-CH-UA-Platform": '"Linux"',
            "DNT": "1",
        }
        if self.sid:
            h["Cookie"] = f"{name}={self.sid}; weston_pref=large-print"
        if self.referer:
            h["Referer"] = self.referer
        return h

    async def login(self, start: str) -> aiohttp.ClientResponse:
        public = self.config.host_map().public_netloc
        r = await self.http.get("/login", params={"url": start}, headers=self._headers(public))
        m = re.search(r'name="csrf" value="([^"]*)"', await r.text())
        token = r.cookies.get("weston_csrf")
        form = {
            "username": self.patron.card,
            "password": self.patron.pin,
            "url": start,
            "csrf": m.group(1) if m else "",
        }
        headers = self._headers(public)
        headers["Cookie"] = f"weston_csrf={token.value if token else ''}"
        r = await self.http.post("/login", data=form, headers=headers, allow_redirects=False)
        morsel = r.cookies.get(self.config.server.cookie_name)
        self.sid = morsel.value if morsel else ""
        return r

    async def visit(
        self, url: str, method: str = "GET", data: Any = None
    ) -> aiohttp.ClientResponse:
        """Request a host-mapped URL the way the patron's browser would."""
        parts = urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        headers = self._headers(parts.netloc)
        if method == "POST":
            headers["Origin"] = f"{parts.scheme}://{parts.netloc}"
        r = await self.http.request(
            method, path or "/", headers=headers, data=data, allow_redirects=False
        )
        await r.read()
        self.set_cookies_seen += r.headers.getall("Set-Cookie", [])
        self.referer = url
        return r


def mapped_url(config: Config, url: str) -> str:
    """`url` at its vendor as the patron's browser reaches it: through the proxy's mapped host."""
    parts = urlsplit(url)
    rest = parts.path or "/"
    return (
        config.host_map().mapped_origin(parts.hostname or "")
        + rest
        + ("?" + parts.query if parts.query else "")
    )
