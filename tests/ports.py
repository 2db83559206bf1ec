"""Free loopback ports for test servers that must know their port before they start.

A port from bind(0) comes from the kernel's ephemeral range, so once released the kernel may hand
it straight to the next bind(0) or outgoing connection — another test server would then take the
proxy's port. Ports are drawn below the ephemeral range instead, where the kernel never assigns
on its own.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nothing listens on now and the kernel will not assign by itself."""
    high = _ephemeral_low()
    low = max(1025, high - 12000)
    for _ in range(200):
        port = random.randrange(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")
