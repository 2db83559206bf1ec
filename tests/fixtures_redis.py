"""Pytest plugin: a real redis-server on a free loopback port, for the shared session store tests.

The server keeps nothing on disk (no RDB, no AOF) and can be stopped and started again on the same
port, so tests can watch the proxy through a store outage.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests import ports

REDIS_SERVER = "/usr/bin/redis-server"
_START_TIMEOUT_S = 10.0


def _free_port() -> int:
    """A loopback port nothing listens on (drawn below the kernel's ephemeral range)."""
    return ports.free_port()


class RedisServer:
    """One redis-server process; stop() and start() keep the port so clients can reconnect."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self) -> redis.Redis:
        """A plain synchronous client, for looking at what Redis really holds."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> None:
        if self.running:
            return
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", str(self.workdir),
                "--loglevel", "warning",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_for_ping()

    def _wait_for_ping(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        client = self.client()
        try:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    output = self._process.stdout.read().decode() if self._process.stdout else ""
                    pytest.fail(f"redis-server exited at start on port {self.port}:\n{output}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        pytest.fail(f"redis-server did not answer PING on port {self.port} in {_START_TIMEOUT_S}s")

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the whole test run, killed at the end."""
    binary = REDIS_SERVER if Path(REDIS_SERVER).exists() else shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed (Debian: apt-get install redis-server); "
            "the Redis session store tests need a real server"
        )
    server = RedisServer(binary, _free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The running server's URL, emptied (FLUSHALL) before the test; restarted if a test stopped it."""
    redis_server.start()
    client = redis_server.client()
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url
