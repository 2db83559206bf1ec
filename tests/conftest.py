"""Shared fixtures: real slapd and Redis (plugins), recording vendors, and a proxy under test."""

from __future__ import annotations

import io
import time
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ProxyDriver, RecordingVendor, free_port, start_proxy

pytest_plugins = ["tests.fixtures_ldap", "tests.fixtures_redis"]

# A test is far shorter than this on any machine; the sign-in throttle's clock keeps at least this
# much of its window ahead of it.
THROTTLE_WINDOW_MARGIN_S = 120.0


@pytest.fixture(autouse=True)
def throttle_clock_clear_of_window_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sign-in throttle's windows keep clock time (:00, :15 …, proxy/throttle.py): a test that
    counts failed sign-ins in the proxy's process and runs across a window's end (once every
    15 minutes of wall clock) sees the count start again, and its 429 turns into a 401. The
    throttle reads a clock that runs with the wall clock, moved (only when its first reading is
    within THROTTLE_WINDOW_MARGIN_S of a window's end) to just after that end."""
    import proxy.throttle as throttle

    window = throttle.ThrottleSection().card_window_s
    assert throttle.ThrottleSection().address_window_s == window
    offset: list[float] = []

    def now() -> float:
        real = time.time()
        if not offset:
            left = window - real % window
            offset.append(left + 1.0 if left < THROTTLE_WINDOW_MARGIN_S else 0.0)
        return real + offset[0]

    clock = types.SimpleNamespace(time=now, monotonic=time.monotonic)
    monkeypatch.setattr(throttle, "time", clock)


@pytest.fixture
async def vendor_factory() -> AsyncIterator[Callable[[str], Any]]:
    """Start recording vendors by host name; all closed at the end of the test."""
    started: list[RecordingVendor] = []

    async def make(host: str) -> RecordingVendor:
        v = RecordingVendor(host=host)
        await v.start()
        started.append(v)
        return v

    yield make
    for v in started:
        await v.close()


@pytest.fixture
def log_stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
async def proxy_factory(log_stream: io.StringIO) -> AsyncIterator[Callable[[Path], Any]]:
    """Start proxies from config files; all closed at the end of the test."""
    clients: list[Any] = []

    async def make(config_path: Path) -> ProxyDriver:
        client, driver = await start_proxy(config_path, log_stream)
        clients.append(client)
        return driver

    yield make
    for c in clients:
        await c.close()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def watch(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> Any:
    """Serve a vendor page through the proxy to a signed-in Chromium and return the paths its
    browser asked of the vendor's real host directly (`test_navigation_leaks.direct_requests`,
    whose options it takes)."""
    from tests.test_navigation_leaks import direct_requests

    async def serve(body: str | bytes, **options: Any) -> list[str]:
        return await direct_requests(
            tmp_path, port, running_slapd, vendor_factory, proxy_factory, body, **options
        )

    return serve
