"""The records inventory: counts and kinds of what the proxy holds, never contents (real Redis)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from proxy.assertion import create_key
from proxy.config import Config, load_config
from proxy.records import inventory, render_json, render_text
from proxy.redis_store import RedisStore
from proxy.sessions import Session
from proxy.stats import sqlite_add
from tests.canary import CANARY, leaks
from tests.harness import free_port, write_config

FILE_DIRECTORY = 'kind = "file"\npatrons_file = "patrons.toml"\n'


def config(tmp_path: Path, *, session: str = 'store = "memory"') -> Config:
    (tmp_path / "patrons.toml").write_text("")
    cfg = write_config(
        tmp_path,
        port=free_port(),
        directory=FILE_DIRECTORY,
        vendors={},
        session=session + "\nidle_timeout_s = 1200\nlifetime_s = 14400\n",
    )
    return load_config(cfg)


def test_memory_store_without_a_running_proxy_says_no_session_exists(tmp_path: Path) -> None:
    """Nothing listens: the count is unknown and the output says sessions only live in a process."""
    inv = inventory(config(tmp_path), timeout_s=0.5)
    assert inv["sessions"]["active"] is None
    assert "when no proxy runs, no session exists" in inv["sessions"]["source"]
    assert inv["sessions"]["unknown"] is False
    assert "memory of the running proxy process only" in render_text(inv)


def test_memory_store_with_something_silent_at_the_address_says_the_count_is_unknown(
    tmp_path: Path,
) -> None:
    """Something listens but never answers /metrics (a hung proxy): that is not "no proxy", so
    the report says sessions may exist and how many is unknown."""
    import socket

    cfg = config(tmp_path)
    with socket.create_server(cfg.listen_addr):  # accepts into its backlog, says nothing
        inv = inventory(cfg, timeout_s=0.5)
    s = inv["sessions"]
    assert s["active"] is None and s["unknown"] is True
    assert "no session exists" not in s["source"]
    assert "unknown" in s["source"]
    assert "number unknown" in render_text(inv)


def test_retention_comes_from_the_session_settings(tmp_path: Path) -> None:
    """Idle timeout and lifetime are printed as configured."""
    text = render_text(inventory(config(tmp_path), timeout_s=0.5))
    assert "idle timeout 1200 s, lifetime at most 14400 s" in text


def test_statistics_file_is_described_by_span_not_contents(tmp_path: Path) -> None:
    """The stats file shows its first and last day and size; no vendor or metric names."""
    cfg = config(tmp_path)
    sqlite_add(
        tmp_path / "state" / "stats.sqlite3",
        {("2026-01-05", "ebsco", "requests"): 40, ("2026-02-11", "gale", "searches"): 7},
    )
    inv = inventory(cfg, timeout_s=0.5)
    assert inv["statistics"]["first_day"] == "2026-01-05"
    assert inv["statistics"]["last_day"] == "2026-02-11"
    text = render_text(inv)
    assert "2026-01-05 to 2026-02-11" in text
    # The report names files under tmp_path, whose name has digits of its own ("pytest-340").
    text = text.replace(str(tmp_path), "<tmp>")
    assert "ebsco" not in text and "gale" not in text and "40" not in text.split("bytes")[1]


def test_signing_keys_are_counted(tmp_path: Path) -> None:
    """Two keys in the key directory read as two."""
    cfg = config(tmp_path)
    for _ in range(2):
        create_key(tmp_path / "state" / "keys", not_before=time.time())
    assert inventory(cfg, timeout_s=0.5)["signing_keys"]["count"] == 2


def test_logs_are_named_as_stdout_for_the_journal(tmp_path: Path) -> None:
    """Log destination is stdout, with the configured level and format."""
    lg = inventory(config(tmp_path), timeout_s=0.5)["logs"]
    assert lg["destination"].startswith("stdout")
    assert lg["level"] == "info"


def test_json_and_text_carry_the_same_counts(tmp_path: Path) -> None:
    """render_json round-trips the inventory."""
    inv = inventory(config(tmp_path), timeout_s=0.5)
    assert json.loads(render_json(inv)) == inv


async def test_redis_sessions_are_counted_from_the_index_without_opening_them(
    tmp_path: Path, redis_url: str
) -> None:
    """Three live sealed sessions of the canary: three active, bucketed by age; the output has
    no canary value, no session id, no storage key."""
    cfg = config(tmp_path, session=f'store = "redis"\nredis_url = "{redis_url}"')
    store = RedisStore(url=redis_url, key=b"k" * 32)
    now = time.time()
    ids = []
    try:
        for i, age in enumerate((60, 1800, 7200)):
            s = Session(
                id=f"session-{i}-{CANARY.uid}",
                patron_key=CANARY.uid,
                databases=frozenset({"one"}),
                created=now - age,
                last_seen=now,
                csrf="c",
                jars={"one": [{"name": "sid", "value": CANARY.email}]},
            )
            ids.append(s.id)
            await store.put(s, 600)
    finally:
        await store.close()
    inv = await asyncio.to_thread(inventory, cfg)  # the CLI's own loop, as a command runs it
    s = inv["sessions"]
    assert s["active"] == 3
    assert s["ages"] == {"under_15m": 1, "15m_to_1h": 1, "1h_to_4h": 1, "4h_or_more": 0}
    assert "3 sessions" in " ".join(f"{n} {k}" for k, n in s["key_kinds"].items())
    out = (render_text(inv) + render_json(inv)).encode()
    assert leaks(out) == []
    assert not any(i.encode() in out for i in ids)
