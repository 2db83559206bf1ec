"""Usage limits without identity (EZproxy's UsageLimit, done privately): a session that requests or
downloads more than a vendor's `[limits]` allow is suspended before the vendor cuts off the library.

Per session and vendor: requests per minute (counted in the gate, before forwarding), full-text
downloads per hour (`is_full_text`: a document type answered to any method but HEAD, as a 200 or
as a 206 range from byte 0, so a document fetched in ranges counts once; counted when the
vendor's answer starts, before the patron gets any of it, so
downloads fetched in parallel are held to the limit too) and bytes per hour (counted after each
response). Counters live in the session store
(`incr`), so all instances share them; each is named by an HMAC of the session id and the vendor
id under a key derived from the server secret, so the store shows neither the session nor the
vendor (not even to someone holding the secret: the store holds only hashes of session ids), and
each expires when its clock-aligned window ends.

Observers see an `Observation` but not the session. The gate, which runs in the same asyncio task
as the forwarder and its observers, leaves the session and the counter name in a context variable
for this request; the observer picks them up there. Nothing session-shaped goes into Observation.
An observer may not wait, so it hands the counting to a task; the next gate of the same session on
this instance waits for that task first, so a patron cannot slip a request in before the count.

The store adds one at a time, so bytes are counted in units of 1/256 of `bytes_per_hour` with
unbiased random rounding of each response's remainder: the total is right on average at 256
store calls per hour at most.

Over a limit: `session.suspended` is set and saved, later requests get the "suspended" page (429)
with the library's contact details, the vendor is sent nothing more, and the suspension is counted
once per session in aggregate (the `weston_proxy_suspensions{vendor}` metric and the `denied` hook
for statistics). Nothing that names the patron or the session is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import hmac
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from proxy.config import Limits, VendorConfig
from proxy.errors import StoreUnavailable
from proxy.forward import Observation
from proxy.forward import content_range as parse_content_range
from proxy.hook_plug import plugged
from proxy.logs import get_logger
from proxy.sessions import Session
from proxy.stats import download_metric, saved_by_browser
from proxy.tasks import stop
from proxy.throttle import Window

if TYPE_CHECKING:
    from proxy.services import Services

BYTE_UNITS = 256  # bytes_per_hour is counted in this many units
# How long shutdown waits for counts still being written before it stops them.
CLOSE_WAIT_S = 2.0
REASON_REQUESTS = "requests_per_minute"
REASON_DOWNLOADS = "downloads_per_hour"
REASON_BYTES = "bytes_per_hour"
log = get_logger("proxy.usage_limits")


@dataclass(frozen=True)
class Tracked:
    """What the gate leaves for this request's observer."""

    session: Session
    vendor_id: str
    counter: str


def is_full_text(
    method: str,
    status: int,
    content_type: str,
    content_range: str | None = None,
    saved: bool = True,
) -> bool:
    """A full-text download: a document type in answer to any method but HEAD (a vendor's
    "Download PDF" form posts), as a 200, or as a 206 that `first_range` counts: the whole
    document as one range (`Range: bytes=0-`), the first of the ranges a viewer fetches it in,
    or a range holding more than half of it (`bytes=1-`). A viewer's parts count once, by the
    first; a download resumed before its middle counts again (the price of counting `bytes=1-`
    without a record of what each session fetched). Audio, video and untyped binary bodies
    count only when the browser itself `saved` them (`stats.saved_by_browser`): what a page's
    player or script fetches (segments, seeks, DRM licences) is left to `bytes_per_hour`."""
    if method == "HEAD" or status not in (200, 206):
        return False
    if status == 206 and not first_range(content_range):
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/octet-stream":
        return saved
    return download_metric(content_type, saved) is not None


def first_range(content_range: str | None) -> bool:
    """Whether a 206's Content-Range counts as the document: a range from byte 0
    (`bytes 0-1023/50000`, or of an unknown length, `bytes 0-1023/*`), or one holding more than
    half of a document of known length (`bytes=1-` is the whole document but its first byte).
    A document fetched in three or more ranges, none from byte 0, is left to `bytes_per_hour`:
    telling its ranges apart from other documents' would need a record of what was fetched."""
    span = parse_content_range(content_range)
    if span is None:
        return False
    first, last, total = span
    return first == 0 or (total is not None and 2 * (last - first + 1) > total)


def limited(limits: Limits) -> bool:
    return bool(limits.requests_per_minute or limits.downloads_per_hour or limits.bytes_per_hour)


class UsageLimits:
    """The gate, the observer and the counting tasks; one per app, plugged into `svc.hooks`."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._key = hashlib.sha256(b"usage-limits-v1\x00" + svc.secret).digest()
        self._current: contextvars.ContextVar[Tracked | None] = contextvars.ContextVar(
            "usage_limits_current", default=None
        )
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._rng = random.Random()

    def counter(self, session: Session, vendor_id: str) -> str:
        """The store name of one session's counters at one vendor. Keyed by the session id
        itself, which the store never holds: whoever has the store's session keys and the
        secret still cannot tell which session's counter (and so which databases) a name is."""
        msg = session.id.encode() + b"\x00" + vendor_id.encode()
        return "usage:" + hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    # ----------------------------------------------------------------------- before forwarding

    async def gate(
        self, request: web.Request, session: Session, vendor: VendorConfig
    ) -> web.StreamResponse | None:
        if session.suspended:
            return self.refusal(request)
        if not limited(vendor.limits):
            return None
        name = self.counter(session, vendor.id)
        pending = self._pending.get(name)
        if pending is not None:
            # The previous response's count must land before this request is judged.
            await asyncio.shield(pending)
            fresh = await self.svc.sessions.load(session.id)
            if fresh is not None and fresh.suspended:
                return self.refusal(request)
        rpm = vendor.limits.requests_per_minute
        if rpm:
            now = time.time()
            w = Window.at(now, 60)
            n = await self.svc.sessions.store.incr(f"{name}:rpm:{w.index}", w.ends - now + 1)
            if n > rpm:
                await self.suspend(session, vendor.id, REASON_REQUESTS)
                return self.refusal(request)
        self._current.set(Tracked(session, vendor.id, name))
        return None

    def refusal(self, request: web.Request) -> web.Response:
        """The "suspended" page with how to reach the library; the same for every reason. A
        problem page like the others (proxy.web.pages.message_page): its headers (no Referer
        from a vendor host to the library's help page), and the code help-desk staff ask for."""
        from proxy.web.messages import UI
        from proxy.web.pages import message_page

        library = self.svc.config.library
        # Sign-out cannot be asked from a page on a vendor host (proxy.web.pages.logout refuses
        # it there): the link leads to the proxy's own page with the button.
        links = [{"href": "/logout?confirm", "text": UI["sign_out"]}]
        if library.help_url:
            links.insert(0, {"href": library.help_url, "text": UI["help"]})
        resp = message_page(request, "suspended", links=links, contact=library.contact)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def check_head(
        self,
        request: web.Request,
        vendor: VendorConfig,
        status: int,
        content_type: str,
        head: Mapping[str, str],
    ) -> web.StreamResponse | None:
        """Count a full-text download when the vendor's answer starts, before the patron gets
        any of it: downloads fetched at once are each counted before any is sent, so parallel
        ones are held to `downloads_per_hour` (the vendor has answered them; the patron gets
        none past the limit). The download that reaches the limit is delivered, and the
        session is suspended with it."""
        tracked = self._current.get()
        limit = vendor.limits.downloads_per_hour
        if (
            tracked is None
            or tracked.vendor_id != vendor.id
            or not limit
            or not is_full_text(
                request.method,
                status,
                content_type,
                head.get("Content-Range"),
                saved_by_browser(
                    request.headers.get("Sec-Fetch-Mode"), head.get("Content-Disposition")
                ),
            )
        ):
            return None
        now = time.time()
        w = Window.at(now, 3600)
        # A store outage raises: the patron gets the store page (fail closed).
        n = await self.svc.sessions.store.incr(f"{tracked.counter}:dl:{w.index}", w.ends - now + 1)
        if n >= limit:
            await self.suspend(tracked.session, vendor.id, REASON_DOWNLOADS)
        return self.refusal(request) if n > limit else None

    async def suspend(self, session: Session, vendor_id: str, reason: str) -> None:
        if session.suspended:
            return
        session.suspended = reason
        # Marked on the session as stored now, not by saving this request's copy over it.
        if not await self.svc.sessions.suspend(session.id, reason):
            return
        self.svc.metrics.suspensions.labels(vendor_id).inc()
        for hook in self.svc.hooks.denied:
            hook(vendor_id, "suspended")
        log.info("session_suspended", reason=reason)

    # ----------------------------------------------------------------------- after the response

    def observe(self, o: Observation) -> None:
        tracked = self._current.get()
        if tracked is None or tracked.vendor_id != o.vendor_id:
            return
        self._current.set(None)
        vendor = self.svc.vendors.get(o.vendor_id)
        if vendor is None:
            return
        lim = vendor.limits
        units = self.byte_units(o.bytes, lim.bytes_per_hour) if lim.bytes_per_hour else 0
        if not units:
            return
        previous = self._pending.get(tracked.counter)
        task = asyncio.create_task(self._account(tracked, units, previous))
        self._pending[tracked.counter] = task
        task.add_done_callback(lambda t: self._forget(tracked.counter, t))

    async def close(self) -> None:
        """Let the counts still being written land (a few store increments each; the store
        closes only after the features), for at most CLOSE_WAIT_S, then stop what is left."""
        pending = list(self._pending.values())
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_WAIT_S)
        for task in pending:
            try:
                await stop(task)
            except Exception as exc:  # a store outage is handled inside; anything else is news
                log.error("usage_count_failed", exc_type=type(exc).__name__)

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._pending.get(name) is task:
            del self._pending[name]

    def byte_units(self, sent: int, bytes_per_hour: int) -> int:
        """`sent` bytes in units of bytes_per_hour / BYTE_UNITS, the remainder rounded at random
        in proportion (so the expected count is exact)."""
        unit = max(1, bytes_per_hour // BYTE_UNITS)
        whole, rest = divmod(sent, unit)
        if rest and self._rng.random() < rest / unit:
            whole += 1
        return min(whole, BYTE_UNITS + 1)  # past the limit, more counting changes nothing

    async def _account(
        self, tracked: Tracked, units: int, previous: asyncio.Task[None] | None
    ) -> None:
        """Bytes sent, counted after the response (downloads are counted at its start)."""
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        store = self.svc.sessions.store
        now = time.time()
        w = Window.at(now, 3600)
        ttl = w.ends - now + 1
        try:
            for _ in range(units):
                if await store.incr(f"{tracked.counter}:bytes:{w.index}", ttl) >= BYTE_UNITS:
                    await self.suspend(tracked.session, tracked.vendor_id, REASON_BYTES)
                    break
        except StoreUnavailable as exc:
            # The next gate meets the same outage and refuses with the store page (fail closed).
            log.warning("store_unavailable", dependency="store", reason=exc.reason)


async def feature(app: web.Application, svc: Services) -> AsyncIterator[None]:
    """Plug usage limits into the proxying flow (cleanup_ctx style)."""
    limits = UsageLimits(svc)
    try:
        with plugged(
            (svc.hooks.gates, limits.gate),
            (svc.hooks.head_gates, limits.check_head),
            (svc.hooks.observers, limits.observe),
        ):
            yield
    finally:
        await limits.close()
