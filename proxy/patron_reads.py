"""How long a patron may leave a response unread: the send side of `throttle.http`.

aiohttp's write waits for the patron's socket with no time limit, and the request holds its
admission slot and the vendor's connection meanwhile, so the forwarder (proxy/forward.py) sends
each response through a writer that `PatronReads` watches.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import socket
import termios

from aiohttp import web

from proxy.logs import get_logger

log = get_logger("proxy.patron_reads")


class PatronReads:
    """Cuts the connection of a patron that has read nothing of a response waiting to be sent
    for `idle_s` (`throttle.http.send_timeout_s`).

    aiohttp's write waits for the patron's socket with no time limit, and the request holds its
    admission slot and the vendor's connection meanwhile: a patron that stops reading (a closed
    laptop lid, a script) would hold them for as long as it liked. As nginx's `send_timeout`,
    the bound is on a pause, not on the whole body: a slow link that goes on reading, however
    slowly, is never cut. One timer for all responses, every half `idle_s` while any is being
    sent (a timer per response cost more than the rest of this per response), so a patron is
    cut after reading nothing for between `idle_s` and 1.5 times it, and the log says
    `patron_stopped_reading` (the vendor and the bytes sent, nothing of the patron). The request
    then ends as for a patron that left (the server cancels the handler): the vendor's response
    is let go and the admission slot freed."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._sending: set[_Sending] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(
        self, response: web.StreamResponse, transport: asyncio.Transport | None, vendor_id: str
    ) -> _Sending:
        """The response's writer, watched until its `done()`."""
        sending = _Sending(self, response, transport, vendor_id)
        if transport is not None:
            self._sending.add(sending)
            if self._timer is None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self.idle_s / 2, self._sweep)
        return sending

    def forget(self, sending: _Sending) -> None:
        self._sending.discard(sending)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        for sending in list(self._sending):
            # One response's failure must not stop the watch for the others, so each is tried
            # on its own. One that fails cannot be measured: it is no longer watched (never cut
            # on a guess), and it is logged once, not at every sweep.
            try:
                if sending.stalled(now, self.idle_s):
                    self._sending.discard(sending)
                    sending.cut()
            except Exception as exc:
                self._sending.discard(sending)
                log.error("patron_reads_failed", error=type(exc).__name__)
        self._timer = None
        if self._sending:
            self._timer = asyncio.get_running_loop().call_later(self.idle_s / 2, self._sweep)


class _Sending:
    """One response on its way to the patron, for `PatronReads` to watch."""

    def __init__(
        self,
        watch: PatronReads,
        response: web.StreamResponse,
        transport: asyncio.Transport | None,
        vendor_id: str,
    ) -> None:
        self._watch = watch
        self._response = response
        self._transport = transport
        self._vendor_id = vendor_id
        self._queued = 0  # body bytes handed to the transport
        self._delivered = 0  # of those, what had left its buffer at the last sweep
        self._moved_at: float | None = None  # when the last sweep saw the patron keep up

    async def write(self, data: bytes) -> int:
        if data:
            self._queued += len(data)
            await self._response.write(data)
        return len(data)

    def done(self) -> None:
        self._watch.forget(self)

    def stalled(self, now: float, idle_s: float) -> bool:
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        unsent = _kernel_unsent(transport)
        if unsent is None:
            return False  # what the patron read cannot be told: never cut
        waiting = transport.get_write_buffer_size() + unsent
        # Chunk framing makes this a few bytes short; it only grows when the patron reads.
        delivered = self._queued - waiting
        if self._moved_at is None or not waiting or delivered > self._delivered:
            self._moved_at = now
        self._delivered = max(delivered, self._delivered)
        return now - self._moved_at >= idle_s

    def cut(self) -> None:
        assert self._transport is not None
        log.warning("patron_stopped_reading", vendor=self._vendor_id, bytes=self._queued)
        self._transport.abort()  # close() would wait for the patron to read what is buffered


def _kernel_unsent(transport: asyncio.Transport) -> int | None:
    """Bytes the kernel holds in the socket's send queue, not yet acknowledged by the patron
    (Linux TIOCOUTQ, i.e. SIOCOUTQ); 0 for a transport without a socket (nothing between it and
    the reader); None when the platform cannot say.

    The send queue sits between the transport's buffer and the patron, and grows to megabytes
    (tcp_wmem autotuning); the socket is reported writable only once a third of it has drained,
    so a patron reading steadily moves nothing out of the transport's buffer for seconds at a
    time. Counting the queue too measures what the patron has really taken."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        return None
    queued = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, queued, True)
    except (OSError, ValueError):
        return None
    return int(queued[0])
