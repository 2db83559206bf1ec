"""Transmission checks: run the real proxy in-process and report what a vendor would receive.

`LiveChecker` builds the app from the library's config with three substitutions that make it safe to
run anywhere: every vendor origin is a `Recorder` on 127.0.0.1 (so no vendor is contacted), the
directory is a temporary file with generated canary patrons (never the library's directory), and
keys, secret and sessions live in a temporary folder. It then signs in, browses, searches, posts,
follows a redirect and round-trips a cookie as a browser would, and checks every byte the recorder
received with `CanaryDetector` (raw, URL-encoded, base64 at any alignment, md5/sha1/sha256 hex).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import aiohttp
import argon2
from aiohttp import web

from proxy.app import SERVICES, create_app
from proxy.auth import patron_key
from proxy.compliance import CRITICAL, FAIL, PASS, WARNING, Check
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
from proxy.privacy import REQUEST_ALLOWLIST
from proxy.vendors.base import VendorAdapter

PREFIX = "/weston-compliance"
VENDOR_COOKIE = "wc_visit"
# Headers the upstream client or the privacy module add on purpose, beside the browser allowlist.
TRANSPORT_HEADERS = frozenset(
    {"host", "accept-encoding", "referer", "origin", "cookie", "connection", "transfer-encoding"}
)
STEP_TIMEOUT_S = 30.0
Progress = Callable[[str], None]


# --------------------------------------------------------------------------- canary detector


@dataclass(frozen=True)
class Canary:
    label: str  # what the value is, in staff's words ("card number", "proxy session id")
    value: str


@dataclass(frozen=True)
class Leak:
    label: str
    encoding: str
    where: str = ""

    def __str__(self) -> str:
        return f"{self.label} ({self.encoding})" + (f" in {self.where}" if self.where else "")


def _b64_fragments(raw: bytes) -> list[bytes]:
    """Base64 text of `raw` at each of the three byte alignments it can have inside a longer value.

    Only the characters fully determined by `raw` are kept, so the fragment is found whatever
    bytes surround the secret (a card number inside a JSON claim set, say).
    """
    out = []
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + raw)
        start, end = (shift * 8 + 5) // 6, ((shift + len(raw)) * 8) // 6
        out.append(enc[start:end])
    return out


def canary_forms(value: str) -> list[tuple[str, bytes]]:
    """(encoding name, bytes) for every form in which `value` could leave the proxy."""
    raw = value.encode()
    forms = [("raw", raw), ("url-encoded", quote(value, safe="").encode())]
    forms.append(("form-encoded", quote_plus(value).encode()))
    forms.append(("hex", raw.hex().encode()))
    for frag in _b64_fragments(raw):
        forms.append(("base64", frag))
        forms.append(("base64url", frag.replace(b"+", b"-").replace(b"/", b"_")))
    for algo in ("md5", "sha1", "sha256"):
        forms.append((f"{algo} hex", hashlib.new(algo, raw).hexdigest().encode()))
        forms.append((f"{algo} hex", hashlib.new(algo, raw.lower()).hexdigest().encode()))
    unique: dict[bytes, str] = {}
    for name, form in forms:
        if len(form) >= 4:
            unique.setdefault(form, name)
    return [(name, form) for form, name in unique.items()]


class CanaryDetector:
    """Finds canary values in outbound bytes, in any of the forms of `canary_forms`."""

    def __init__(self, canaries: Iterable[Canary]) -> None:
        self._forms: list[tuple[str, str, bytes, bool]] = []
        for c in canaries:
            for encoding, form in canary_forms(c.value):
                exact = encoding.startswith("base64")  # base64 is case-sensitive; others are not
                self._forms.append((c.label, encoding, form if exact else form.lower(), exact))

    def find(self, data: bytes, where: str = "") -> list[Leak]:
        lowered = data.lower()
        found: dict[tuple[str, str], Leak] = {}
        for label, encoding, form, exact in self._forms:
            if form in (data if exact else lowered):
                found.setdefault((label, encoding), Leak(label, encoding, where))
        return list(found.values())


# --------------------------------------------------------------------------- recording vendor


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


# --------------------------------------------------------------------------- the synthetic patron


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


def _patrons_file(path: Path, patrons: Iterable[CanaryPatron]) -> None:
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
        # Statistics and throttling would count or slow synthetic traffic; the shield stays.
        extra={k: v for k, v in config.extra.items() if k in ("shield", "compliance")},
        vendors=tuple(live_vendor(v, port, work) for v in config.vendors),
    )


def adapter_headers(v: VendorConfig) -> frozenset[str]:
    """Request headers this vendor's adapter kind is documented to add."""
    return frozenset(
        {
            "assertion": {v.assertion_header.lower()},
            "referer": {"referer"},
            "shared-login": {"authorization"},
        }.get(v.auth, set())
    )


# --------------------------------------------------------------------------- a scripted browser


@dataclass
class Step:
    name: str
    first: int  # index of the first recorded request made during this step
    last: int = 0
    allowed: frozenset[str] = frozenset()  # canary labels that legitimately travel in this step
    patron: int = 0  # which of the two canary patrons made it


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


# --------------------------------------------------------------------------- the live run


class LiveRunError(Exception):
    """The scripted visit could not be completed (sign-in refused, proxy error page …)."""


def _mapped(config: Config, url: str) -> str:
    parts = urlsplit(url)
    rest = parts.path or "/"
    return (
        config.host_map().mapped_origin(parts.hostname or "")
        + rest
        + ("?" + parts.query if parts.query else "")
    )


class LiveChecker:
    """Runs the scripted visit against every selected vendor and turns what was sent into checks.

    `adapters` replaces the adapter class for an auth kind after the app starts (how the tests
    plug in a deliberately leaky adapter without touching the shipped registry).
    """

    def __init__(
        self,
        config: Config,
        *,
        adapters: Mapping[str, type[VendorAdapter]] | None = None,
        progress: Progress | None = None,
        log_stream: io.StringIO | None = None,
    ) -> None:
        self.config = config
        self.adapters = dict(adapters or {})
        self.progress = progress
        self.log_stream = log_stream

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress(text)

    async def run(self, vendor_ids: Iterable[str]) -> dict[str, list[Check]]:
        ids = list(vendor_ids)
        results: dict[str, list[Check]] = {}
        with tempfile.TemporaryDirectory(prefix="weston-compliance-") as tmp:
            work = Path(tmp)
            patrons = (CanaryPatron.generate(), CanaryPatron.generate())
            await asyncio.to_thread(_patrons_file, work / "patrons.toml", patrons)
            recorder = Recorder()
            await recorder.start()
            cfg = live_config(self.config, recorder.port, work)
            runner = web.AppRunner(create_app(cfg), access_log=None)
            try:
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                svc = runner.app[SERVICES]
                for vendor in cfg.vendors:
                    cls = self.adapters.get(vendor.auth)
                    if cls is not None:
                        svc.upstream.adapters[vendor.id] = cls(vendor, svc.upstream)
                base = f"http://127.0.0.1:{runner.addresses[0][1]}"
                async with aiohttp.ClientSession(
                    base_url=base,
                    cookie_jar=aiohttp.DummyCookieJar(),
                    # A step that hangs is reported as a failed check, not a frozen run.
                    timeout=aiohttp.ClientTimeout(total=STEP_TIMEOUT_S),
                ) as http:
                    public = cfg.host_map().public_netloc
                    r = await http.get("/.well-known/jwks.json", headers={"Host": public})
                    jwks = await r.json()
                    for i, vid in enumerate(ids, 1):
                        live = cfg.vendor(vid)
                        if live is None:
                            continue
                        self._say(f"[{i}/{len(ids)}] {vid}:")
                        run = VendorRun(live, cfg, http, recorder, patrons, svc.secret, jwks)
                        logs_before = self.log_stream.tell() if self.log_stream else 0
                        try:
                            await run.visit(self._say)
                            results[vid] = run.checks()
                        except (LiveRunError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                            results[vid] = [
                                Check(
                                    "live.canary",
                                    CRITICAL,
                                    FAIL,
                                    "The transmission check could not be completed.",
                                    f"{type(exc).__name__}: {exc}",
                                )
                            ]
                        if self.log_stream is not None:
                            self.log_stream.seek(logs_before)
                            results[vid].append(run.log_check(self.log_stream.read().encode()))
                        self._say(" done\n")
            finally:
                await runner.cleanup()
                await recorder.close()
        return results


class VendorRun:
    """The scripted visit for one vendor and the checks drawn from what the recorder received."""

    def __init__(
        self,
        vendor: VendorConfig,
        config: Config,
        http: aiohttp.ClientSession,
        recorder: Recorder,
        patrons: tuple[CanaryPatron, CanaryPatron],
        secret: bytes,
        jwks: dict[str, Any],
    ) -> None:
        self.v, self.config, self.recorder, self.jwks = vendor, config, recorder, jwks
        self.a = Browser(http, config, patrons[0])
        self.b = Browser(http, config, patrons[1])
        self.steps: list[Step] = []
        self.term = "canarysearch" + secrets.token_hex(5)
        self.note = "canarynote" + secrets.token_hex(5)
        self.redirect_location = ""
        self.canaries = [
            Canary(label, value)
            for p in patrons
            for label, value in (
                ("card number", p.card),
                ("PIN", p.pin),
                ("patron IP address", p.ip),
                ("patron key", patron_key(secret, "file", p.card)),
            )
        ] + [Canary("search term", self.term), Canary("form text", self.note)]

    async def _step(
        self, name: str, action: Any, allowed: Iterable[str] = (), *, patron: int = 0
    ) -> Any:
        step = Step(name, len(self.recorder.requests), allowed=frozenset(allowed), patron=patron)
        result = await action
        step.last = len(self.recorder.requests)
        self.steps.append(step)
        return result

    async def visit(self, say: Progress) -> None:
        v, cfg = self.v, self.config
        start = _mapped(cfg, v.start)
        origin = _mapped(cfg, v.origin + "/").rstrip("/")
        for n, browser, who in ((0, self.a, "patron"), (1, self.b, "second patron")):
            say(f" {who} sign-in")
            r = await self._step(f"{who} sign-in", browser.login(v.start), patron=n)
            if r.status != 303 or not browser.sid:
                raise LiveRunError(f"sign-in with the canary {who} was refused ({r.status})")
            self.canaries.append(Canary("proxy session id", browser.sid))
            say(" start")
            await self._step(f"{who} start URL", browser.visit(start), patron=n)
            if browser is self.b:
                break
            say(" search")
            await self._step(
                "search",
                self.a.visit(f"{origin}{PREFIX}/search?q={quote(self.term)}"),
                ["search term"],
            )
            say(" post")
            form = {"note": self.note, "return": start}
            await self._step(
                "form post", self.a.visit(f"{origin}{PREFIX}/form", "POST", form), ["form text"]
            )
            say(" redirect")
            r = await self._step("redirect", self.a.visit(f"{origin}{PREFIX}/redirect"))
            self.redirect_location = r.headers.get("Location", "")
            if self.redirect_location.startswith(origin):
                await self._step("redirect target", self.a.visit(self.redirect_location))
        say(" cookies")
        await self._step("patron revisit", self.a.visit(start))

    def _sent(self, patron: int | None = None) -> list[tuple[Step, Sent]]:
        return [
            (s, self.recorder.requests[i])
            for s in self.steps
            if patron is None or s.patron == patron
            for i in range(s.first, s.last)
        ]

    def checks(self) -> list[Check]:
        return [
            self._canary_check(),
            self._header_check(),
            self._assertion_check(),
            self._cookie_check(),
            self._redirect_check(),
        ]

    def _canary_check(self) -> Check:
        found: list[str] = []
        for step, sent in self._sent():
            det = CanaryDetector(c for c in self.canaries if c.label not in step.allowed)
            parts = [("the URL", sent.path_qs.encode()), ("the body", sent.body)]
            parts += [(f"header {k}", f"{k}: {val}".encode()) for k, val in sent.headers]
            for where, data in parts:
                found += [f"{step.name}: {leak}" for leak in det.find(data, where)]
        n = len(self._sent())
        carried = any(
            self.term in sent.path_qs for step, sent in self._sent() if step.name == "search"
        )
        if not found and not carried:
            # Nothing leaked, but nothing arrived either: the run proves nothing.
            return Check(
                "live.canary",
                CRITICAL,
                FAIL,
                "The scripted search never reached the stand-in vendor.",
                f"{n} outbound request(s) recorded",
            )
        return Check(
            "live.canary",
            CRITICAL,
            FAIL if found else PASS,
            "Patron data reached the vendor." if found else "No canary value reached the vendor.",
            "; ".join(dict.fromkeys(found)) or f"{n} outbound request(s) scanned in every encoding",
        )

    def _header_check(self) -> Check:
        allowed = REQUEST_ALLOWLIST | TRANSPORT_HEADERS | adapter_headers(self.v)
        bad: list[str] = []
        for step, sent in self._sent():
            for k, val in sent.headers:
                if k.lower() not in allowed:
                    bad.append(f"{step.name}: {k}")
                elif (
                    k.lower() in ("referer", "origin")
                    and val != self.v.referer
                    and not re.fullmatch(r"https?://[^/?#]+/?", val)
                ):
                    bad.append(f"{step.name}: {k} carries a path ({val[:80]})")
        return Check(
            "live.header_allowlist",
            CRITICAL,
            FAIL if bad else PASS,
            "A header outside the allowlist reached the vendor."
            if bad
            else "Only allowlisted headers and the adapter's own reached the vendor.",
            "; ".join(dict.fromkeys(bad))
            or "adapter adds: " + (", ".join(sorted(adapter_headers(self.v))) or "nothing"),
        )

    def _assertion_check(self) -> Check:
        v = self.v
        name = v.assertion_header.lower()
        tokens = [
            (step.patron, val)
            for step, sent in self._sent()
            for k, val in sent.headers
            if k.lower() == name
        ]
        if v.auth != "assertion":
            jwt_like = [
                f"{step.name}: {k}"
                for step, sent in self._sent()
                for k, val in sent.headers
                if _JWT.search(val)
            ]
            return Check(
                "live.assertion_claims",
                CRITICAL,
                FAIL if jwt_like else PASS,
                "A signed token reached a vendor that should receive none."
                if jwt_like
                else f"No assertion is sent (auth = {v.auth}).",
                "; ".join(jwt_like),
            )
        if not tokens:
            return Check(
                "live.assertion_claims", CRITICAL, FAIL, "No assertion reached the vendor."
            )
        problems: list[str] = []
        subs: dict[int, set[str]] = {0: set(), 1: set()}
        for patron, token in tokens:
            claims, errors = verify_assertion(
                token,
                self.jwks,
                issuer=self.config.server.public_url.rstrip("/"),
                audience=v.aud,
                scope=self.config.library.scope,
                pseudonymous=v.release == "pseudonymous",
            )
            problems += errors
            if "sub" in claims:
                subs[patron].add(str(claims["sub"]))
        if v.release == "pseudonymous" and (subs[0] & subs[1] or len(subs[0]) > 1):
            problems.append("the pairwise id is not one per patron")
        allowed = sorted(ASSERTION_CLAIMS | ({"sub"} if v.release == "pseudonymous" else set()))
        return Check(
            "live.assertion_claims",
            CRITICAL,
            FAIL if problems else PASS,
            "The assertion does not verify or carries claims its release level does not allow."
            if problems
            else f"Every assertion verifies against the JWKS and carries only {v.release} claims.",
            "; ".join(dict.fromkeys(problems))
            or f"{len(tokens)} assertion(s); claims: {', '.join(allowed)}",
        )

    def _cookie_check(self) -> Check:
        issued = {
            n: {sent.issued_cookie for _, sent in self._sent(n) if sent.issued_cookie}
            for n in (0, 1)
        }
        problems: list[str] = []
        returned = False
        for step, sent in self._sent():
            for k, val in sent.headers:
                if k.lower() != "cookie":
                    continue
                for pair in val.split(";"):
                    cname, _, cvalue = pair.strip().partition("=")
                    if cname != VENDOR_COOKIE:
                        problems.append(f"{step.name}: browser cookie {cname!r} reached the vendor")
                    elif cvalue in issued[1 - step.patron]:
                        problems.append(f"{step.name}: the other patron's vendor cookie was sent")
                    elif cvalue in issued[step.patron]:
                        returned = True
        leaked = [
            c for b in (self.a, self.b) for c in b.set_cookies_seen if c.startswith(VENDOR_COOKIE)
        ]
        if leaked:
            problems.append("the vendor's Set-Cookie reached the browser")
        if not returned:
            problems.append("the vendor's cookie did not come back on the patron's next request")
        return Check(
            "live.cookie_isolation",
            CRITICAL,
            FAIL if problems else PASS,
            "Vendor cookies are not kept to one patron session."
            if problems
            else "Vendor cookies stay in the proxy, per patron session, and come back to the vendor.",
            "; ".join(dict.fromkeys(problems))
            or f"{len(issued[0]) + len(issued[1])} vendor cookie(s) issued across two sessions",
        )

    def _redirect_check(self) -> Check:
        origin = _mapped(self.config, self.v.origin + "/").rstrip("/")
        ok = self.redirect_location == f"{origin}{PREFIX}/landing"
        return Check(
            "live.redirect",
            WARNING,
            PASS if ok else FAIL,
            "Vendor redirects stay on the proxy."
            if ok
            else "A vendor redirect would take the patron off the proxy.",
            f"Location seen by the browser: {self.redirect_location or '(none)'}",
        )

    def log_check(self, logs: bytes) -> Check:
        leaks = CanaryDetector(self.canaries).find(logs)
        return Check(
            "live.logs",
            CRITICAL,
            FAIL if leaks else PASS,
            "The proxy's log names the patron or what they did."
            if leaks
            else "The proxy's log carries no patron, search or form value.",
            "; ".join(str(x) for x in leaks) or f"{len(logs)} bytes of log scanned",
        )


ASSERTION_CLAIMS = frozenset({"iss", "aud", "iat", "exp", "jti", "affiliation"})
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def verify_assertion(
    token: str,
    jwks: dict[str, Any],
    *,
    issuer: str,
    audience: str,
    scope: str,
    pseudonymous: bool,
) -> tuple[dict[str, Any], list[str]]:
    """Verify one assertion as a vendor would; (claims, problems)."""
    import jwt

    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = next(k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid)
        claims: dict[str, Any] = jwt.decode(
            token, key.key, algorithms=["EdDSA", "ES256"], audience=audience, issuer=issuer
        )
    except (jwt.PyJWTError, StopIteration) as exc:
        return {}, [f"does not verify against the JWKS: {type(exc).__name__}"]
    allowed = ASSERTION_CLAIMS | ({"sub"} if pseudonymous else set())
    problems = [f"claim {c!r} not allowed" for c in sorted(set(claims) - allowed)]
    problems += [f"claim {c!r} missing" for c in sorted(allowed - set(claims))]
    if claims.get("affiliation") != f"member@{scope}":
        problems.append(f"affiliation is {claims.get('affiliation')!r}")
    if int(claims.get("exp", 0)) - int(claims.get("iat", 0)) > 300:
        problems.append("lifetime longer than 300 s")
    return claims, problems
