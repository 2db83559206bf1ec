"""Transmission checks: run the real proxy in-process and report what a vendor would receive.

`LiveChecker` builds the app from the library's config with three substitutions that make it safe to
run anywhere (proxy.compliance_stub): every vendor origin is a `Recorder` on 127.0.0.1 (so no
vendor is contacted), the directory is a temporary file with generated canary patrons (never the
library's directory), and keys, secret and sessions live in a temporary folder. It then signs in,
browses, searches, posts, follows a redirect and round-trips a cookie as a browser would, and
judges every byte the recorder received (proxy.compliance_live_checks) with `CanaryDetector`
(proxy.canary_detector: raw, URL-encoded, base64 at any alignment, md5/sha1/sha256 hex).
"""

from __future__ import annotations

import asyncio
import io
import secrets
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from proxy.app import SERVICES, create_app
from proxy.auth import patron_key
from proxy.canary_detector import Canary
from proxy.compliance import CRITICAL, FAIL, Check
from proxy.compliance_live_checks import Step, Visit, live_checks, log_check
from proxy.compliance_stub import (
    PREFIX,
    Browser,
    CanaryPatron,
    Recorder,
    live_config,
    mapped_url,
    write_patrons_file,
)
from proxy.config import Config, VendorConfig
from proxy.vendors.base import VendorAdapter

STEP_TIMEOUT_S = 30.0
Progress = Callable[[str], None]


class LiveRunError(Exception):
    """The scripted visit could not be completed (sign-in refused, proxy error page …)."""


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
            await asyncio.to_thread(write_patrons_file, work / "patrons.toml", patrons)
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
                            results[vid] = live_checks(run.record())
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
                            results[vid].append(
                                log_check(run.canaries, self.log_stream.read().encode())
                            )
                        self._say(" done\n")
            finally:
                await runner.cleanup()
                await recorder.close()
        return results


class VendorRun:
    """The scripted visit for one vendor; `record()` hands what it left behind to the checks."""

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
        self.http, self.patrons = http, patrons
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
        self,
        name: str,
        action: Any,
        allowed: Iterable[str] = (),
        *,
        patron: int = 0,
        session: int | None = None,
    ) -> Any:
        step = Step(
            name,
            len(self.recorder.requests),
            allowed=frozenset(allowed),
            patron=patron,
            session=patron if session is None else session,
        )
        result = await action
        step.last = len(self.recorder.requests)
        self.steps.append(step)
        return result

    async def visit(self, say: Progress) -> None:
        v, cfg = self.v, self.config
        start = mapped_url(cfg, v.start)
        origin = mapped_url(cfg, v.origin + "/").rstrip("/")
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
        # The first patron again, in a new session (a new browser): whatever reaches the vendor
        # in both of their sessions and never in the other patron's follows them (P4).
        say(" again")
        again = Browser(self.http, cfg, self.patrons[0])
        r = await self._step("patron sign-in again", again.login(v.start), session=2)
        if r.status != 303 or not again.sid:
            raise LiveRunError(f"the canary patron's second sign-in was refused ({r.status})")
        self.canaries.append(Canary("proxy session id", again.sid))
        await self._step("patron start URL again", again.visit(start), session=2)

    def record(self) -> Visit:
        """What the visit left behind, for the checks."""
        return Visit(
            vendor=self.v,
            config=self.config,
            requests=self.recorder.requests,
            steps=self.steps,
            canaries=self.canaries,
            term=self.term,
            redirect_location=self.redirect_location,
            set_cookies_seen=self.a.set_cookies_seen + self.b.set_cookies_seen,
            jwks=self.jwks,
        )
