"""The README's first commands on a fresh Debian machine, whose own python3 takes no pip installs.

From a review of the docs: `scripts/setup` ran `python3 -m pip install`, which Debian's python3
(EXTERNALLY-MANAGED, PEP 668) refuses, so `scripts/demo` and `scripts/test` failed before anything
ran. The test failed before the fix.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_readme_first_command_sets_up_with_debians_own_python3(tmp_path: Path) -> None:
    """README: `scripts/demo` sets up and runs the proxy, and scripts/setup says it "installs
    what the proxy and its tests need on a fresh Debian machine". On Debian 12 `python3` is
    /usr/bin/python3, which is marked EXTERNALLY-MANAGED (PEP 668): the script's
    `python3 -m pip install -q -e .` stops with "externally-managed-environment", so the
    README's first command fails before the proxy ever starts (and so does `scripts/test`)."""
    debian_python = Path("/usr/bin/python3")
    managed = list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED"))
    if not debian_python.exists() or not managed:
        pytest.skip("not a Debian python3 marked EXTERNALLY-MANAGED")
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".git", "artifacts")
    shutil.copytree(REPO / "scripts", src / "scripts")
    shutil.copytree(REPO / "proxy", src / "proxy", ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    # A fresh machine's PATH: Debian's python3; apt-get and sudo only record what was asked.
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python3").symlink_to(debian_python)
    for tool in ("apt-get", "sudo"):
        shim = shims / tool
        shim.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{tmp_path}/asked"\nexit 0\n')
        shim.chmod(0o755)
    env = {"PATH": f"{shims}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    done = subprocess.run(
        ["bash", str(src / "scripts" / "setup")],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert "externally-managed-environment" not in output, output[-2000:]
    assert "No module named pip" not in output, output[-2000:]
    assert done.returncode == 0, output[-2000:]
    # scripts/python (what scripts/demo and scripts/test run) is the project's .venv, with the
    # proxy and its dependencies importable.
    ran = subprocess.run(
        ["bash", str(src / "scripts" / "python"), "-c", "import sys, proxy.cli; print(sys.prefix)"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == str(src / ".venv"), ran.stdout
