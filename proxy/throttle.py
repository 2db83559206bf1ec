"""Login throttling: failed sign-ins limited per card number and per client address (for IPv6,
per /64: the block one client holds), and successful ones (new sessions) per card number.

Counters live in the session store (`SessionStore.incr`), so every proxy instance sharing a Redis
enforces one limit. A counter is named by an HMAC of the card number or address under a key that
changes every UTC day (derived from the server secret and the date), never by the value itself,
and it expires when its window ends: the store holds nothing that names a card or an address, and
yesterday's names cannot be recomputed without the secret.

Windows are fixed and aligned to the clock (a 900 s window is :00-:15, :15-:30 …), so every
instance agrees on them without talking, a throttled patron is told exactly when to come back,
and a window that divides the day never straddles the daily key change. The price is the usual
one of fixed windows: up to twice the limit across one boundary.

Each counter holds the card's (or address's) failures plus the attempts in flight: the gate
reserves, adding one with the store's atomic add before the directory is asked. When that takes
the count past the limit it gives the one back and reads the failures alone (a twin counter):
at the limit, the sign-in is refused; below it, others' attempts in flight fill the counter and
this one waits for them (`Throttle.gate`). A wrong card number or PIN
(`bad_credentials`) keeps its reservation: it is the failure. Every other end of an attempt gives
it back (`settle`): a success, an ineligible card, a directory outage (none is a guess), a refusal
by another counter or by `admit`, an error. So parallel guesses are held to the limit exactly, on
one instance or many sharing a Redis, and sequential ones see what they always did: `limit`
failures, then 429 until the window ends; a success neither counts nor resets the count.

Successful sign-ins are bounded too, per card only (`card_sign_in_limit` per card window): each
one makes a new session that lives `idle_timeout_s`, so without a bound one card and PIN (a
script, or a phished PIN) fills the store, and a full Redis turns every patron away. The count is
taken after the directory accepted the PIN and before the session is made (`admit`), with the
store's atomic add, so it is exact across instances and parallel requests, and a stranger typing
the card number with a wrong PIN learns nothing of how often the card is used. Not per address:
the PCs of a library branch share one address. Past the bound the sign-in is refused (429) and
the patron's sessions already open go on working; ending the oldest session instead would need
a list of each card's sessions in the store (a record of the patron) and would silently sign out
a patron on the next PC sharing a card.

A reservation the store could not give back (it went down mid-sign-in) stays counted until its
window ends: the limit errs towards refusing, never towards more guesses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import math
import time
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from proxy.client_ip import Network, client_address, parse_networks
from proxy.config import Config, doc, read_table
from proxy.errors import ConfigError, Problem
from proxy.hook_plug import plugged
from proxy.limits_http import HttpLimits, check_http_limits
from proxy.logs import get_logger
from proxy.sessions import SessionStore

if TYPE_CHECKING:
    from proxy.services import Services

DAY_S = 86400
log = get_logger("proxy.throttle")


@dataclass(frozen=True)
class ThrottleSection:
    """The `[throttle]` table of proxy.toml, declared once with defaults and meanings."""

    enabled: bool = doc("limit failed sign-ins per card number and per client address", True)
    card_limit: int = doc("failed sign-ins allowed per card number per window", 5)
    card_window_s: int = doc("length of a card window in seconds (must divide a day)", 900)
    address_limit: int = doc(
        "failed sign-ins allowed per client address (an IPv6 client's /64) per window", 20
    )
    address_window_s: int = doc("length of an address window in seconds (must divide a day)", 900)
    card_sign_in_limit: int = doc(
        "successful sign-ins (new sessions) allowed per card number per card window; 0 = no limit",
        300,
    )
    # A frozen dataclass is immutable, so one shared default instance is safe.
    http: HttpLimits = doc("HTTP server limits ([throttle.http])", HttpLimits())  # noqa: RUF009


def _section(config: Config, problems: list[Problem]) -> ThrottleSection | None:
    return read_table(
        ThrottleSection, config.extra.get("throttle", {}), str(config.path), "throttle.", problems
    )


def check_throttle(config: Config, problems: list[Problem]) -> None:
    """Append a Problem for every wrong key or value of `[throttle]` and `server.trusted_proxies`."""
    file = str(config.path)
    section = _section(config, problems)
    if section is not None:
        for name in ("card_limit", "address_limit"):
            if getattr(section, name) < 1:
                problems.append(Problem(file, f"throttle.{name}", "must be at least 1"))
        if section.card_sign_in_limit < 0:
            problems.append(
                Problem(file, "throttle.card_sign_in_limit", "must be 0 (no limit) or more")
            )
        for name in ("card_window_s", "address_window_s"):
            window = getattr(section, name)
            if not 60 <= window <= DAY_S or DAY_S % window:
                problems.append(
                    Problem(
                        file,
                        f"throttle.{name}",
                        "must be between 60 and 86400 and divide a day (e.g. 300, 900, 3600)",
                    )
                )
        check_http_limits(section.http, file, problems)
    try:
        parse_networks(config.server.trusted_proxies)
    except ValueError as exc:
        problems.append(Problem(file, "server.trusted_proxies", str(exc)))


def throttle_settings(config: Config) -> ThrottleSection:
    """The `[throttle]` settings; ConfigError if check_throttle finds a problem (fail closed)."""
    problems: list[Problem] = []
    check_throttle(config, problems)
    section = _section(config, problems)
    if problems or section is None:
        raise ConfigError(problems)
    return section


# --------------------------------------------------------------------------- counter names


def day_key(secret: bytes, day: dt.date) -> bytes:
    """The HMAC key for one UTC day; unrelated to every other day's without the secret."""
    return hmac.new(secret, b"throttle-v1\x00" + day.isoformat().encode(), hashlib.sha256).digest()


def counter_name(key: bytes, kind: str, value: str) -> str:
    """What the store files a counter under: an HMAC, never the card number or address."""
    digest = hmac.new(key, kind.encode() + b"\x00" + value.encode(), hashlib.sha256).hexdigest()
    return f"throttle:{kind}:{digest}"


def normal_card(username: str) -> str:
    """The card number as the directory compares it (case- and space-insensitively, and with
    Unicode compatibility forms folded, NFKC, as LDAP's string preparation does: a fullwidth
    two, U+FF12, is a 2), so spelling variants of one card share one counter."""
    return " ".join(unicodedata.normalize("NFKC", username).split()).casefold()


def address_bucket(address: str) -> str:
    """What the address limit counts: an IPv4 address, or an IPv6 address's /64. One IPv6
    client holds a whole /64 (RFC 4291 interface identifiers; SLAAC privacy addresses change
    on their own), so counting single addresses would give it 2^64 counters."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class Window:
    """One aligned window: its index (part of the counter name) and when it ends (epoch s)."""

    index: int
    ends: float

    @classmethod
    def at(cls, now: float, length_s: int) -> Window:
        index = int(now // length_s)
        return cls(index, (index + 1) * length_s)


# The (counter, window) tries the gate reserved for this sign-in and not yet given back.
HELD = web.RequestKey("throttle_held", list[tuple[str, Window]])
# Each counter's two numbers in the store: failures plus attempts in flight, and failures.
TRIES, FAILS = ":tries", ":fails"
# How long a sign-in waits for others in flight to be answered when they fill its counter, how
# often it looks again, and when the patron is told to come back if they still have not been.
WAIT_S = 5.0
WAIT_STEP_S = 0.05
WAIT_RETRY_S = 10.0


class Throttle:
    """The login gate and failure counter; one per app, plugged into `svc.hooks`."""

    def __init__(
        self,
        store: SessionStore,
        secret: bytes,
        settings: ThrottleSection,
        trusted: tuple[Network, ...],
    ) -> None:
        self.store = store
        self.secret = secret
        self.settings = settings
        self.trusted = trusted

    def _counters(
        self, request: web.Request, username: str, now: float
    ) -> list[tuple[str, int, Window]]:
        """(counter name, limit, window) for the card (if any) and the client address."""
        s = self.settings
        address = client_address(
            request.remote, request.headers.getall("X-Forwarded-For", []), self.trusted
        )
        out: list[tuple[str, int, Window]] = []
        card = normal_card(username)
        if card:
            name, w = self._counter("card", card, s.card_window_s, now)
            out.append((name, s.card_limit, w))
        name, w = self._counter("addr", address_bucket(address), s.address_window_s, now)
        out.append((name, s.address_limit, w))
        return out

    def _counter(self, kind: str, value: str, window_s: int, now: float) -> tuple[str, Window]:
        """The store name of `kind`'s counter for `value` in the window holding `now` (an HMAC
        under the day's key: no card number or address in the store), and that window."""
        key = day_key(self.secret, dt.datetime.fromtimestamp(now, dt.UTC).date())
        w = Window.at(now, window_s)
        return f"{counter_name(key, kind, value)}:{w.index}", w

    async def gate(self, request: web.Request, username: str) -> web.StreamResponse | None:
        """Reserve one try on the card's and the address's counters before the directory is
        asked. When that takes either past its limit, the try is given back and the count of
        failures alone decides: at the limit, 429 (the same answer whether or not the card
        exists); below it, the attempts in flight are what fill the counter (a branch library's
        patrons behind one address signing in at opening time; a patron's two tabs), so this
        one waits for them to be answered and tries again, for at most WAIT_S (then 503,
        `sign_in_busy`). No more than `limit` attempts are ever in flight or failed at once, so
        parallel guesses are held to the limit exactly, and right PINs are never refused for
        others' attempts."""
        if not self.settings.enabled:
            return None
        now = time.time()
        counters = self._counters(request, username, now)
        held = [(n, w) for n, _, w in counters]
        waited_until = time.monotonic() + WAIT_S
        while True:
            # Held before the store is asked, and the adds shielded: a patron who closes the tab
            # cancels this handler mid-add, and its `finally` must give back every add the store
            # makes (an add counted and never given back would fill the counter for the window).
            request[HELD] = list(held)
            counts = await asyncio.shield(
                asyncio.gather(
                    *(self.store.incr(n + TRIES, w.ends - now + 1) for n, w in held),
                    return_exceptions=True,
                )
            )
            request[HELD] = [h for h, c in zip(held, counts, strict=True) if isinstance(c, int)]
            for c in counts:
                if isinstance(c, BaseException):
                    raise c  # the store is down (a 503); `settle` gives back what was taken
            full = [
                (n, limit, w)
                for (n, limit, w), c in zip(counters, counts, strict=True)
                if isinstance(c, int) and c > limit
            ]
            if not full:
                return None
            await self.settle(request)
            failures = await asyncio.gather(
                *(self.store.incr(n + FAILS, w.ends - now + 1, by=0) for n, _, w in full)
            )
            over = [w for (_, limit, w), f in zip(full, failures, strict=True) if f >= limit]
            if over:
                return _refusal(request, "too_many_attempts", max(w.ends for w in over) - now)
            if time.monotonic() >= waited_until:
                return _refusal(request, "sign_in_busy", WAIT_RETRY_S)
            await asyncio.sleep(WAIT_STEP_S)
            now = time.time()

    async def admit(self, request: web.Request, username: str) -> web.StreamResponse | None:
        """Refuse (429) a sign-in the directory accepted when its card has already made
        `card_sign_in_limit` sessions this window. Counted here, after the PIN was checked, so
        the refusal tells only the card's holder that the card is in heavy use."""
        limit = self.settings.card_sign_in_limit
        card = normal_card(username)
        if limit < 1 or not card:
            return None
        now = time.time()
        name, w = self._counter("signin", card, self.settings.card_window_s, now)
        if await self.store.incr(name, w.ends - now + 1) <= limit:
            return None
        return _refusal(request, "too_many_sign_ins", w.ends - now)

    async def failed(self, request: web.Request, username: str, outcome: str) -> None:
        """A wrong card number or PIN keeps the try the gate reserved: it is the failure, and
        is counted as one too (what the gate reads when the counter is full). Outages and
        ineligible cards are not guesses; `settle` gives theirs back."""
        if outcome != "bad_credentials":
            return
        held: list[tuple[str, Window]] = request.pop(HELD, [])
        now = time.time()
        await asyncio.gather(*(self.store.incr(n + FAILS, w.ends - now + 1) for n, w in held))

    async def settle(self, request: web.Request) -> None:
        """Give back the tries this sign-in reserved and did not spend on a wrong PIN (called
        once the sign-in is answered, however it ended). A store that fails here leaves them
        counted to the window's end (refusing more, never fewer)."""
        held: list[tuple[str, Window]] = request.pop(HELD, [])
        if not held:
            return
        now = time.time()
        results = await asyncio.gather(
            *(self.store.incr(n + TRIES, max(1.0, w.ends - now + 1), by=-1) for n, w in held),
            return_exceptions=True,
        )
        if any(isinstance(r, BaseException) for r in results):
            log.warning("throttle_not_given_back", dependency="store")

    async def reloaded(self, config: Config) -> None:
        """A reload may change limits, windows or the trusted proxies (already validated)."""
        self.settings = throttle_settings(config)
        self.trusted = parse_networks(config.server.trusted_proxies)


def _refusal(request: web.Request, kind: str, retry_s: float) -> web.StreamResponse:
    """The 429 page for `kind`, saying when to come back (Retry-After, and in minutes)."""
    from proxy.services import SERVICES
    from proxy.web.messages import UI
    from proxy.web.pages import login_link, message_page

    seconds = max(1, math.ceil(retry_s))
    svc = request.app[SERVICES]
    svc.metrics.logins.labels("throttled").inc()
    log.info("login", outcome="throttled", reason=kind)
    resp = message_page(
        request,
        kind,
        retry_minutes=max(1, math.ceil(seconds / 60)),
        links=[{"href": login_link(request), "text": UI["sign_in"]}],
    )
    resp.headers["Retry-After"] = str(seconds)
    return resp


async def feature(app: web.Application, svc: Services) -> AsyncIterator[None]:
    """Plug the throttle into the login flow (cleanup_ctx style)."""
    throttle = Throttle(
        svc.sessions.store,
        hashlib.sha256(b"throttle-secret-v1\x00" + svc.secret).digest(),
        throttle_settings(svc.config),
        parse_networks(svc.config.server.trusted_proxies),
    )
    with plugged(
        (svc.hooks.login_gates, throttle.gate),
        (svc.hooks.login_failed, throttle.failed),
        (svc.hooks.login_settled, throttle.settle),
        (svc.hooks.login_admits, throttle.admit),
        (svc.hooks.reloaded, throttle.reloaded),
    ):
        yield
