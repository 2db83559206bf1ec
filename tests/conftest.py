"""Shared fixtures: real slapd and Redis (plugins), recording vendors, and a proxy under test."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ProxyDriver, RecordingVendor, free_port, start_proxy

pytest_plugins = ["tests.fixtures_ldap", "tests.fixtures_redis"]


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
