"""`check-config` cross-vendor checks: each problem names its file and key, and exits 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROXY = """\
[server]
listen = "127.0.0.1:18080"
public_url = "https://proxy.westonlibrary.org"

[directory]
kind = "file"
patrons_file = "patrons.toml"

[keys]
dir = "state/keys"

[vendors]
dir = "vendors"
"""


def vendor(vid: str, origin_host: str, hosts: list[str], extra: str = "", auth: str = "ip") -> str:
    listed = ", ".join(f'"{h}"' for h in hosts)
    return (
        f'id = "{vid}"\ntitle = "{vid.title()}"\norigin = "https://{origin_host}"\n'
        f'hosts = [{listed}]\nauth = "{auth}"\n' + extra
    )


def check(tmp_path: Path, vendors: dict[str, str]) -> tuple[int, list[str]]:
    """Run `check-config` on proxy.toml plus `vendors`; return the exit status and problem lines."""
    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors").mkdir()
    for vid, text in vendors.items():
        (tmp_path / "vendors" / f"{vid}.toml").write_text(text)
    (tmp_path / "proxy.toml").write_text(PROXY)
    r = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", "--config", str(tmp_path / "proxy.toml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return r.returncode, [line.strip() for line in r.stdout.splitlines()[1:]]


def test_a_clean_pair_of_vendors_passes(tmp_path: Path) -> None:
    """The baseline the other tests break: two vendors with their own hosts are fine."""
    code, problems = check(
        tmp_path,
        {
            "gale": vendor("gale", "go.gale.test", ["go.gale.test", "*.gale.test"]),
            "jstor": vendor("jstor", "www.jstor.test", ["www.jstor.test"]),
        },
    )
    assert (code, problems) == (0, [])


def test_two_vendors_claiming_one_host(tmp_path: Path) -> None:
    """The second file to claim a host is named, with key `hosts` and the first file."""
    code, problems = check(
        tmp_path,
        {
            "gale": vendor("gale", "go.gale.test", ["go.gale.test", "*.shared-cdn.test"]),
            "jstor": vendor("jstor", "www.jstor.test", ["www.jstor.test", "*.shared-cdn.test"]),
        },
    )
    jstor, gale = tmp_path / "vendors" / "jstor.toml", tmp_path / "vendors" / "gale.toml"
    assert code == 1
    assert problems == [f"{jstor}: hosts: '*.shared-cdn.test' is also claimed by {gale}"]


def test_wildcard_over_a_public_suffix(tmp_path: Path) -> None:
    """A wildcard over a public suffix (*.co.uk) would proxy half the web: refused."""
    code, problems = check(
        tmp_path,
        {"bl": vendor("bl", "www.bl-journals.co.uk", ["www.bl-journals.co.uk", "*.co.uk"])},
    )
    path = tmp_path / "vendors" / "bl.toml"
    assert code == 1
    assert problems == [f"{path}: hosts: '*.co.uk' would proxy a whole public suffix"]


def test_wildcard_on_a_bare_top_level_domain(tmp_path: Path) -> None:
    code, problems = check(tmp_path, {"x": vendor("x", "www.x.com", ["www.x.com", "*.com"])})
    assert code == 1
    assert problems == [
        f"{tmp_path / 'vendors' / 'x.toml'}: hosts: '*.com' would proxy a whole public suffix"
    ]


def test_wildcard_covering_the_proxys_own_host(tmp_path: Path) -> None:
    """*.westonlibrary.org would hand the proxy's own host (and its cookie) to a vendor."""
    code, problems = check(
        tmp_path,
        {
            "catalog": vendor(
                "catalog", "www.westonlibrary.org", ["www.westonlibrary.org", "*.westonlibrary.org"]
            )
        },
    )
    path = tmp_path / "vendors" / "catalog.toml"
    assert code == 1
    assert problems == [
        f"{path}: hosts: '*.westonlibrary.org' covers the proxy's own host proxy.westonlibrary.org"
    ]


def test_vendor_claiming_the_proxys_host_exactly(tmp_path: Path) -> None:
    code, problems = check(
        tmp_path,
        {"self": vendor("self", "proxy.westonlibrary.org", ["proxy.westonlibrary.org"])},
    )
    assert code == 1
    assert any(
        ": hosts: 'proxy.westonlibrary.org' covers the proxy's own host" in p for p in problems
    )


def test_every_cross_vendor_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Three different mistakes in three files: all three lines, one run, exit 1."""
    code, problems = check(
        tmp_path,
        {
            "a": vendor("a", "www.a.test", ["www.a.test", "*.common.test"]),
            "b": vendor("b", "www.b.test", ["www.b.test", "*.common.test"]),
            "c": vendor("c", "www.c.com", ["www.c.com", "*.com"]),
            "d": vendor(
                "d", "lib.westonlibrary.org", ["lib.westonlibrary.org", "*.westonlibrary.org"]
            ),
        },
    )
    assert code == 1
    assert len(problems) == 3
    assert {p.split(": ")[0].rsplit("/", 1)[1] for p in problems} == {"b.toml", "c.toml", "d.toml"}


def test_shipped_production_example_passes_check_config(tmp_path: Path) -> None:
    """conf/examples (LDAP, Redis, four vendor files) is valid once its secret files exist."""
    import os
    import shutil

    shutil.copytree(ROOT / "conf" / "examples", tmp_path / "ex")
    for name in ("ldap-bind-password", "redis-password"):
        secret = tmp_path / "ex" / "secrets" / name
        secret.parent.mkdir(exist_ok=True)
        secret.write_text("synthetic\n")
        os.chmod(secret, 0o600)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy",
            "check-config",
            "--config",
            str(tmp_path / "ex" / "production.toml"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout
    assert "OK (4 vendor(s))" in r.stdout


def test_example_vendor_files_have_https_origins_and_no_connect_to() -> None:
    """Examples are meant to be copied: real-shaped origins, no test-only connect_to."""
    from proxy.config import load_vendor

    files = sorted((ROOT / "conf" / "examples" / "vendors").glob("*.toml"))
    assert len(files) == 4
    for f in files:
        v = load_vendor(f, [])
        assert v is not None and v.origin.startswith("https://") and not v.connect_to
        assert v.contract.privacy_policy_url and v.contract.expires is not None


def test_a_host_whose_urls_name_xml_namespaces_is_refused(tmp_path: Path) -> None:
    """www.w3.org in a vendor's hosts (or a wildcard over it) would rewrite
    `http://www.w3.org/2000/svg` in every SVG and script: the vendor's icons stop rendering."""
    for n, (hosts, named) in enumerate(
        [
            (["www.vendor.test", "www.w3.org"], "'www.w3.org' covers www.w3.org"),
            (["www.vendor.test", "*.w3.org"], "'*.w3.org' covers www.w3.org"),
        ]
    ):
        root = tmp_path / str(n)
        root.mkdir()
        code, problems = check(root, {"v": vendor("v", "www.vendor.test", hosts)})
        assert code == 1
        [problem] = problems
        assert problem.startswith(f"{root / 'vendors' / 'v.toml'}: hosts[1]: {named}")
        assert "XML namespaces" in problem
