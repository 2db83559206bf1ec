"""A referer vendor's file holds a shared secret: the staff report says when others can read it.

From a review of the docs; the test failed before the fix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_referer_vendor_file_others_can_read_is_named_by_the_staff_report(tmp_path: Path) -> None:
    """docs/vendor-setup.md: a `referer` vendor's URL "is a shared secret, so keep the vendor
    file chmod 600". Nothing told IT staff when it was not. check-config does not refuse it
    (vendor files are usually 0644: a proxy that runs today would stop); the compliance report
    now names the file (a warning, exit 2)."""
    for name in ("proxy.toml", "patrons.toml"):
        shutil.copy2(REPO / "conf" / name, tmp_path / name)
    vendors = tmp_path / "vendors"
    vendors.mkdir()
    shutil.copy2(REPO / "conf" / "vendors" / "demo.toml", vendors / "demo.toml")
    legacy = vendors / "legacy.toml"
    legacy.write_text(
        'id = "legacy"\n'
        'title = "Legacy Database"\n'
        'origin = "https://legacy.example.com"\n'
        'hosts = ["legacy.example.com"]\n'
        'auth = "referer"\n'
        'referer = "https://www.westonlibrary.org/databases/legacy-7Q2x-secret"\n'
        "[contract]\n"
        'privacy_policy_url = "https://legacy.example.com/privacy"\n'
        "reviewed = 2026-06-01\n"
        "expires = 2027-06-30\n"
        "retention_days = 30\n"
    )
    legacy.chmod(0o600)
    ok = _run_cli("check-config", "--config", str(tmp_path / "proxy.toml"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr  # the file itself is right
    report = _run_cli("compliance", "--config", str(tmp_path / "proxy.toml"), cwd=tmp_path)
    assert "config.referer_secret_private" in report.stdout, report.stdout
    assert "chmod 600" not in report.stdout
    legacy.chmod(0o644)
    done = _run_cli("check-config", "--config", str(tmp_path / "proxy.toml"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = _run_cli("compliance", "--config", str(tmp_path / "proxy.toml"), cwd=tmp_path)
    assert "legacy.toml holds the referer URL" in report.stdout, report.stdout
    assert "chmod 600" in report.stdout
