"""Admission control: how many proxied requests one process works on at once, in all and per vendor.

A process works on at most `server.max_in_flight` proxied requests; more wait their turn (without
a cap, an overloaded event loop answers the session store late and fails closed with 503s). Each
vendor also has its own share of those slots (`max_in_flight` in its file, else
`server.max_in_flight_per_vendor`, else three quarters of `server.max_in_flight`, rounded up but
one short of the whole when there is more than one slot), taken before a
slot of the whole: a vendor that hangs keeps only its own share busy until its timeout, and every
other database goes on answering (a bulkhead). No request waits longer than
`server.admission_wait_s` for its slots; past that the patron gets a 503 page saying the database
(or the whole service) is busy, with Retry-After, instead of a browser spinning for minutes.

Slots are asyncio semaphores (FIFO, so waiting requests are served in the order they came).
"""

from __future__ import annotations

import asyncio

from proxy.config import ServerConfig, VendorConfig
from proxy.errors import Busy


def vendor_share(server: ServerConfig, vendor: VendorConfig) -> int:
    """How many proxied requests for `vendor` one process works on at once."""
    share = vendor.max_in_flight or server.max_in_flight_per_vendor
    if share:
        return share
    whole = server.max_in_flight
    # Three quarters, rounded up, but never the whole while there is more than one slot: a hung
    # vendor must leave the others a slot (with one slot there is nothing to leave).
    return max(1, min(whole - whole // 4, whole - 1))


class Admission:
    """The process's slots: one semaphore for all proxied requests, one per vendor share."""

    def __init__(self, max_in_flight: int) -> None:
        self._max = max_in_flight
        self.whole = asyncio.Semaphore(max_in_flight)
        # Per vendor id, for /metrics: requests holding both slots, and requests waiting for one.
        self.in_flight: dict[str, int] = {}
        self.waiting: dict[str, int] = {}
        # Keyed by (vendor id, share): a reload that changes a share starts a new semaphore;
        # requests holding the old one release it as they end.
        self._shares: dict[tuple[str, int], asyncio.Semaphore] = {}

    def resize(self, max_in_flight: int) -> None:
        """A new cap for the whole (a reload): new requests take the new semaphore; requests
        holding or awaiting the old one finish on it, so the two may briefly add up."""
        if max_in_flight != self._max:
            self._max = max_in_flight
            self.whole = asyncio.Semaphore(max_in_flight)

    def share(self, vendor_id: str, size: int) -> asyncio.Semaphore:
        key = (vendor_id, size)
        sem = self._shares.get(key)
        if sem is None:
            sem = self._shares[key] = asyncio.Semaphore(size)
        return sem

    def slot(self, vendor_id: str, share: int, wait_s: float) -> _Slot:
        """`async with` it: a slot of the vendor's share, then one of the whole, for the block.

        Entering raises Busy when either is not free within `wait_s` (both waits share that
        deadline); leaving gives back exactly what was taken.
        """
        return _Slot(self, self.share(vendor_id, share), vendor_id, wait_s)


class _Slot:
    # A class, not @asynccontextmanager: it runs on every proxied request, and a generator-based
    # context manager costs several times as much to enter and leave.
    __slots__ = ("_admission", "_own", "_vendor_id", "_wait_s", "_whole")

    def __init__(
        self, admission: Admission, own: asyncio.Semaphore, vendor_id: str, wait_s: float
    ) -> None:
        self._admission = admission
        self._own = own
        self._vendor_id = vendor_id
        self._wait_s = wait_s

    async def __aenter__(self) -> None:
        # A free slot with nobody queued before us is taken without a timer (the usual case).
        own, whole, vendor_id = self._own, self._admission.whole, self._vendor_id
        self._whole = whole  # given back to this one even if a reload replaces it meanwhile
        deadline = None
        if own.locked():
            deadline = asyncio.get_running_loop().time() + self._wait_s
            await self._wait(own, deadline, whole=False)
        else:
            await own.acquire()
        try:
            if whole.locked():
                if deadline is None:
                    deadline = asyncio.get_running_loop().time() + self._wait_s
                await self._wait(whole, deadline, whole=True)
            else:
                await whole.acquire()
        except BaseException:
            own.release()
            raise
        in_flight = self._admission.in_flight
        in_flight[vendor_id] = in_flight.get(vendor_id, 0) + 1

    async def __aexit__(self, *exc_info: object) -> None:
        self._admission.in_flight[self._vendor_id] -= 1
        self._whole.release()
        self._own.release()

    async def _wait(self, sem: asyncio.Semaphore, deadline: float, *, whole: bool) -> None:
        waiting = self._admission.waiting
        waiting[self._vendor_id] = waiting.get(self._vendor_id, 0) + 1
        try:
            async with asyncio.timeout_at(deadline):
                await sem.acquire()
        except TimeoutError:
            raise Busy(self._vendor_id, whole=whole) from None
        finally:
            waiting[self._vendor_id] -= 1
