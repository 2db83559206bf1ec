"""From a review of a library with hundreds of databases (vendor files at the scale EZproxy
configs have): another vendor's never_proxy taking a vendor's host, the live compliance run's
sign-ins throttled past 150 vendors, accented titles filed after Z. Each failed before its fix.

Synthetic vendors only (host names under real-looking parent domains, no real patrons); the
proxy and the compliance command run for real, on loopback.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

from proxy.auth import hash_password
from proxy.config import load_config
from proxy.errors import ConfigError
from tests.harness import free_port, start_proxy

ROOT = Path(__file__).resolve().parent.parent
CARD, PIN = "29999000000417", "synthetic-pin-7730"
PARENTS = ("ebscohost.com", "proquest.com", "gale.com", "jstor.org", "springer.com")


def library(root: Path, vendors: list[dict[str, Any]], *, port: int | None = None) -> Path:
    """proxy.toml with a patrons file (one synthetic card) and one TOML file per vendor."""
    (root / "vendors").mkdir(parents=True, exist_ok=True)
    for v in vendors:
        v.setdefault("title", v["id"])
        v.setdefault("auth", "ip")
        (root / "vendors" / f"{v['id']}.toml").write_text(tomli_w.dumps(v))
    (root / "patrons.toml").write_text(
        f'[[patron]]\ncard = "{CARD}"\nhash = "{hash_password(PIN)}"\n'
    )
    port = port or free_port()
    cfg = root / "proxy.toml"
    cfg.write_text(
        f"""[server]
listen = "127.0.0.1:{port}"
public_url = "http://proxy.localhost:{port}"

[library]
name = "Weston Public Library"
scope = "westonlibrary.org"

[directory]
kind = "file"
patrons_file = "patrons.toml"

[session]
secret_file = "state/server-secret"

[keys]
dir = "state/keys"

[vendors]
dir = "vendors"
"""
    )
    return cfg


def many_vendors(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        parent = PARENTS[i % len(PARENTS)]
        host = f"product{i:03d}.{parent}"
        out.append(
            {
                "id": f"db{i:03d}",
                "title": f"Database {i:03d}",
                "origin": f"https://{host}",
                "hosts": [host, f"*.db{i:03d}-assets.{parent}"],
                "contract": {
                    "privacy_policy_url": f"https://www.{parent}/privacy",
                    "reviewed": dt.date.today() - dt.timedelta(days=30),
                    "expires": dt.date.today() + dt.timedelta(days=300),
                    "retention_days": 30,
                },
            }
        )
    return out


# ------------------------------------------------------------------ two vendor files, one host


def test_a_vendors_never_proxy_does_not_silently_take_another_vendors_own_host(
    tmp_path: Path,
) -> None:
    """Gale Academic OneFile (`*.gale.com`, never proxying `go.gale.com`) and Gale In Context
    (its own file, `go.gale.com`): check-config says OK, yet every vendor's `never_proxy` is
    applied to the whole host map, so `go.gale.com` is served as no vendor at all: the second
    database's own start page is never proxied (its menu link and mapped host are dead).

    Either the host stays the vendor's that lists it, or check-config refuses the pair, naming
    both files (as it does for two files listing one host)."""
    cfg_path = library(
        tmp_path,
        [
            {
                "id": "galeacademic",
                "title": "Gale Academic OneFile",
                "origin": "https://www.gale.com",
                "hosts": ["www.gale.com", "*.gale.com"],
                "never_proxy": ["go.gale.com"],
            },
            {
                "id": "galeincontext",
                "title": "Gale In Context",
                "origin": "https://go.gale.com",
                "hosts": ["go.gale.com"],
            },
        ],
    )
    try:
        cfg = load_config(cfg_path)
    except ConfigError as exc:
        text = "\n".join(str(p) for p in exc.problems)
        assert "galeacademic.toml" in text and "galeincontext.toml" in text, text
        return
    served_as = cfg.host_map().vendor_for_host("go.gale.com")
    assert served_as == "galeincontext", (
        "check-config accepted the library, but Gale In Context's own origin go.gale.com is "
        f"served as {served_as!r}"
    )


# ------------------------------------------------------------------ compliance over many vendors


def test_live_compliance_over_160_vendors_is_not_refused_by_the_proxys_own_sign_in_limit(
    tmp_path: Path,
) -> None:
    """`compliance --live` signs its canary patron in for every vendor on an in-process copy of
    the proxy. That copy keeps the default per-card limit on sign-ins (300 per window), so
    from the 151st vendor on every sign-in is refused (429) and each of those vendors gets a
    critical `live.canary` failure: "The transmission check could not be completed." The
    report then fails vendors that leak nothing, for a reason that is the tool's own."""
    cfg = library(tmp_path, many_vendors(160))
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy",
            "compliance",
            "--config",
            str(cfg),
            "--live",
            "--format",
            "json",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.is_file(), proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert len(report["vendors"]) == 160
    refused = [
        v["id"]
        for v in report["vendors"]
        for c in v["checks"]
        if c["id"] == "live.canary" and "refused" in (c.get("evidence") or "")
    ]
    assert refused == [], (
        f"{len(refused)} of 160 vendors failed live.canary because the live run's own canary "
        f"sign-in was refused, first {refused[:3]}: "
        + next(
            c["evidence"]
            for v in report["vendors"]
            for c in v["checks"]
            if v["id"] == refused[0] and c["id"] == "live.canary"
        )
    )


# ------------------------------------------------------------------ the menu's letter groups


async def test_menu_files_an_accented_title_under_its_letter_not_after_z(tmp_path: Path) -> None:
    """With hundreds of databases patrons go by the A-Z index. "Érudit" (a real journal
    platform, here synthetic) gets a letter group of its own, "É", placed after "Z" in the
    index and in the list (titles sort by code point), so a patron who picks "E" does not find
    it. Library A-Z lists file an accented initial under its base letter."""
    vendors = many_vendors(40)
    vendors[7]["title"] = "Érudit"
    vendors[8]["title"] = "Encyclopedia of Life"
    vendors[9]["title"] = "Zoological Record"
    cfg = library(tmp_path, vendors)
    client, drv = await start_proxy(cfg)
    try:
        r = await drv.login(CARD, PIN)
        assert r.status == 303
        r = await drv.own("GET", "/menu")
        assert r.status == 200
        html = await r.text()
    finally:
        await client.close()
    index = re.findall(r'<li[^>]*data-letter="([^"]+)"', html)
    assert "É" not in index, f"A-Z index: {' '.join(index)}"
    sections = re.findall(r'<section[^>]*data-letter="([^"]+)".*?</section>', html, flags=re.DOTALL)
    bodies = dict(
        zip(
            sections,
            re.findall(r"<section[^>]*>(.*?)</section>", html, flags=re.DOTALL),
            strict=True,
        )
    )
    assert "Érudit" in bodies.get("E", ""), f"groups: {sections}"
