"""The documented deployment keeps its word: records, key rotation, logs of the terminator and the
compose services. From a review of the docs; every test failed before its fix."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


async def test_records_does_not_say_no_proxy_runs_when_metrics_from_refuses_it(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """docs/records-and-retention.md: with the memory store, `records` asks the running proxy's
    /metrics on the listen address; conf/examples/production.toml invites narrowing
    `server.metrics_from` to the monitoring system. With it narrowed (here to 10.0.0.0/8), the
    running proxy refused `records` (404, as /metrics answers outside metrics_from), and the
    report for a records request said "no running proxy answered ... when no proxy runs, no
    session exists" while a patron was signed in: staff answering a subpoena were told, in
    effect, that nothing was held. It now says a proxy refused, why, that the count is unknown,
    and exits 1."""
    from tests.harness import vendor_toml, write_config

    vendor = await vendor_factory("db.vendor.test")
    shutil.copy2(REPO / "conf" / "patrons.toml", tmp_path / "patrons.toml")
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"one": vendor_toml("one", vendor)},
    )
    text = cfg.read_text()
    cfg.write_text(text.replace("[library]", 'metrics_from = ["10.0.0.0/8"]\n\n[library]', 1))
    driver = await proxy_factory(cfg)
    r = await driver.login("29999000000001", "weston-demo-1")
    assert r.status == 303  # one patron is signed in right now
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "records",
        "--config",
        str(cfg),
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), timeout=60)
    out = out_b.decode() + err_b.decode()
    assert "no running proxy answered" not in out, out
    assert "no session exists" not in out, out
    assert "refused /metrics" in out and "server.metrics_from" in out, out
    assert "unknown" in out, out
    assert proc.returncode == 1, out
