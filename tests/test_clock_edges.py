"""Sessions across a wall-clock step, and vendor cookie dates read as browsers read them (from a
review of everything that depends on time: clocks, periods, windows). The time arithmetic is
spelled out in each test."""

from __future__ import annotations

import types

import pytest

import proxy.sessions as sessions_mod
from proxy.jar import cookie_header, dump_jar, load_jar, store_set_cookies
from proxy.sessions import MemoryStore, Sessions


class _Clocks:
    """A wall clock (time.time) and a monotonic clock that the test moves by hand. NTP may step
    the wall clock; the monotonic clock never goes back."""

    def __init__(self, wall: float, mono: float) -> None:
        self.wall = wall
        self.mono = mono

    def advance(self, s: float) -> None:
        self.wall += s
        self.mono += s

    def module(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(time=lambda: self.wall, monotonic=lambda: self.mono)


async def test_session_in_steady_use_survives_a_wall_clock_step_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A patron reading steadily (one request a minute) must not be signed out because NTP
    stepped the server's wall clock back.

    idle_timeout_s = 1800, lifetime_s = 28800. Sign-in at wall W = 1_796_000_000, monotonic
    M = 10_000. The patron makes a request every 60 s. Just after the request at t = 300 s the wall
    clock is stepped back by one hour (at t = 360 the wall reads W + 360 - 3600 = W - 3240). The patron goes on with a request a
    minute until t = 2400 s (40 min after sign-in, 35 min after the step), never idle for more
    than 60 s, far below 1800 s, and far below the 8 h lifetime.

    Today: `Sessions.touch` writes only when `now - last_seen >= 15 s` by the wall clock. After
    the step `now - last_seen` is negative (last_seen = W + 300 > now) until the wall clock
    has caught up an hour later, so no request is recorded; the memory store expires the item
    by the monotonic clock at M + 300 + 1800 = M + 2100, and the request at t = 2100 finds no
    session: the patron is signed out in the middle of using it."""
    clocks = _Clocks(wall=1_796_000_000.0, mono=10_000.0)
    monkeypatch.setattr(sessions_mod, "time", clocks.module())
    store = MemoryStore()
    sessions = Sessions(store, idle_timeout_s=1800, lifetime_s=28800)
    session = await sessions.start(patron_key="p-canary", databases=frozenset({"one"}))

    async def request() -> bool:
        loaded = await sessions.load(session.id)
        if loaded is None:
            return False
        await sessions.touch(loaded)
        return True

    for t in range(60, 2401, 60):
        clocks.advance(60)
        if t == 360:
            clocks.wall -= 3600  # NTP steps the wall clock back an hour (between t=300 and 360)
        assert await request(), f"signed out at t = {t} s while requesting every 60 s"


# A vendor deletes its sign-in cookie by setting it again with an Expires date in the past. RFC 6265
# 5.1.1 says how a user agent reads the date, and browsers do exactly that: a two-digit year 70 to
# 99 is 1970 to 1999 (step 3), the zone token is ignored (only the date and time tokens count), and
# the tokens may come in any order (JavaScript's Date.toString() spelling). Each of these is
# 1 January 1970, 56 years before 30 November 2026: a browser deletes the cookie.
#
# http.cookiejar reads a two-digit year as the year within 50 years of the current one
# (2026 - 50 .. 2026 + 50: "70" is 2070, Expires 3155760001 = 2070-01-01), and a date with any zone
# but GMT/UTC, or in another token order, as no date at all (a session cookie). So the proxy keeps
# the "deleted" cookie and goes on sending it to the vendor for the rest of the patron's session.
DELETIONS_BROWSERS_HONOUR = [
    "SID=deleted; Expires=Thu, 01-Jan-70 00:00:01 GMT; Path=/",
    "SID=deleted; Expires=Thu, 01 Jan 1970 00:00:00 EST; Path=/",
    "SID=deleted; Expires=Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time); Path=/",
]


@pytest.mark.parametrize("deletion", DELETIONS_BROWSERS_HONOUR)
def test_vendor_cookie_deleted_with_a_past_expires_is_gone(deletion: str) -> None:
    url = "https://search.vendor-one.test/account/logout"
    jar = load_jar([])
    store_set_cookies(jar, url, ["SID=patron-session-at-vendor; Path=/"])
    assert cookie_header(jar, "https://search.vendor-one.test/") == "SID=patron-session-at-vendor"
    store_set_cookies(jar, url, [deletion])
    stored = dump_jar(jar)
    assert stored == [], f"kept after {deletion!r}: {stored}"
    assert cookie_header(load_jar(stored), "https://search.vendor-one.test/") is None
