"""Per-database eligibility: decided in the proxy at login, refused without contacting the vendor.

A resident-only database (an LDAP filter, or a group) is refused to the non-resident HERON with the
"isn't included with your card" page and zero vendor requests; /menu lists only what each patron
may use; the vendor that is used learns nothing about the condition.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from proxy.auth import databases_for, hash_password
from proxy.config import Eligibility, VendorConfig, load_config
from proxy.errors import ConfigError
from tests.canary import CANARY, HERON, CanaryPatron
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    ldap_directory,
    vendor_toml,
    write_config,
)

# Neutral names, so a leak of the condition ("resident") cannot hide in the host or title.
RESIDENT_HOST = "www.town-archive.test"
OPEN_HOST = "www.open-to-all.test"
REFUSED = "isn't included with your card"
# Words that would tell a vendor how the library decides who may use it.
CONDITION_WORDS = (b"resident", b"employeetype", b"eligib", b"group")


def _vendors(resident: RecordingVendor, open_: RecordingVendor, condition: str) -> dict[str, str]:
    return {
        "archive": vendor_toml(
            "archive", resident, title="Town Archive", extra=f"\n[eligibility]\n{condition}\n"
        ),
        "open": vendor_toml("open", open_, title="Open Encyclopedia"),
    }


@pytest.fixture(params=["ldap_filter", "groups"])
async def ldap_rig(
    request: Any,
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> tuple[ProxyDriver, RecordingVendor, RecordingVendor]:
    """Real slapd; the resident-only vendor set by an LDAP filter, or by a directory group."""
    resident = await vendor_factory(RESIDENT_HOST)
    open_ = await vendor_factory(OPEN_HOST)
    directory = ldap_directory(running_slapd, tmp_path)
    if request.param == "ldap_filter":
        condition = 'ldap_filter = "(employeeType=resident)"'
    else:
        condition = 'groups = ["resident"]'
        directory += 'group_attribute = "employeeType"\n'
    cfg = write_config(
        tmp_path, port=port, directory=directory, vendors=_vendors(resident, open_, condition)
    )
    return await proxy_factory(cfg), resident, open_


def _patrons_file(path: Path, entries: list[tuple[CanaryPatron, list[str]]]) -> None:
    lines = []
    for p, groups in entries:
        lines.append(
            f'[[patron]]\ncard = "{p.uid}"\nhash = "{hash_password(p.password)}"\n'
            f"groups = {groups!r}\n".replace("'", '"')
        )
    path.write_text("\n".join(lines))


@pytest.fixture
async def file_rig(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor, RecordingVendor]:
    """The embedded file directory, with the resident-only vendor set by `groups`."""
    resident = await vendor_factory(RESIDENT_HOST)
    open_ = await vendor_factory(OPEN_HOST)
    _patrons_file(tmp_path / "patrons.toml", [(CANARY, ["resident"]), (HERON, ["nonresident"])])
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors=_vendors(resident, open_, 'groups = ["resident"]'),
    )
    return await proxy_factory(cfg), resident, open_


async def _refused_without_contact(driver: ProxyDriver, resident: RecordingVendor) -> None:
    r = await driver.login(HERON.uid, HERON.password, url=f"http://{RESIDENT_HOST}/start")
    assert r.status == 303, "a non-resident card still signs in"
    for path in ("/start", "/search?q=anything", "/"):
        r = await driver.get_vendor(RESIDENT_HOST, path)
        html = (await r.text()).replace("&#39;", "'")
        assert r.status == 403
        assert REFUSED in html
        assert "resident" not in html.lower()
    r = await driver.get_vendor(RESIDENT_HOST, "/form", method="POST", data={"q": "x"})
    assert r.status == 403
    assert resident.requests == []


async def test_ldap_resident_only_refused_to_nonresident(ldap_rig: Any) -> None:
    """HERON (employeeType=nonresident) gets 403 and the vendor receives nothing at all."""
    driver, resident, _ = ldap_rig
    await _refused_without_contact(driver, resident)


async def test_file_directory_group_refused_to_nonresident(file_rig: Any) -> None:
    """The file directory's groups decide the same way: 403, zero vendor requests."""
    driver, resident, _ = file_rig
    await _refused_without_contact(driver, resident)


async def test_nonresident_still_reaches_open_database(ldap_rig: Any) -> None:
    driver, _, open_ = ldap_rig
    await driver.login(HERON.uid, HERON.password)
    assert (await driver.get_vendor(OPEN_HOST, "/")).status == 200
    assert len(open_.requests) == 1


async def _menu(driver: ProxyDriver, patron: CanaryPatron) -> str:
    await driver.login(patron.uid, patron.password)
    r = await driver.own("GET", "/menu")
    assert r.status == 200
    html: str = await r.text()
    return html


async def _menus_differ(driver: ProxyDriver) -> None:
    canary_menu = await _menu(driver, CANARY)
    heron_menu = await _menu(driver, HERON)
    resident_link = f'href="http://{driver.mapped(RESIDENT_HOST)}/"'
    open_link = f'href="http://{driver.mapped(OPEN_HOST)}/"'
    assert resident_link in canary_menu and "Town Archive" in canary_menu
    assert open_link in canary_menu
    assert resident_link not in heron_menu and "Town Archive" not in heron_menu
    assert open_link in heron_menu


async def test_menu_differs_between_resident_and_nonresident(ldap_rig: Any) -> None:
    """CANARY (resident) sees both databases; HERON sees only the open one."""
    await _menus_differ(ldap_rig[0])


async def test_file_directory_menu_differs_by_group(file_rig: Any) -> None:
    await _menus_differ(file_rig[0])


async def test_resident_uses_database_and_vendor_learns_no_condition(ldap_rig: Any) -> None:
    """CANARY reaches the resident-only vendor; nothing in what it receives names the condition."""
    driver, resident, _ = ldap_rig
    await driver.login(CANARY.uid, CANARY.password)
    assert (await driver.get_vendor(RESIDENT_HOST, "/start")).status == 200
    assert (await driver.get_vendor(RESIDENT_HOST, "/search?q=deeds")).status == 200
    assert len(resident.requests) == 2
    # Decode the assertion payloads too: a group claim would hide inside the base64.
    import jwt

    seen = resident.all_bytes().lower()
    for req in resident.requests:
        for k, v in req.headers:
            if k.lower() == "x-patron-assertion":
                claims = jwt.decode(v, options={"verify_signature": False})
                assert set(claims) == {"iss", "aud", "iat", "exp", "jti", "affiliation"}
                seen += repr(claims).lower().encode()
    assert [w for w in CONDITION_WORDS if w in seen] == []


# --------------------------------------------------------------------------- units and config


def _vendor(vid: str, eligibility: Eligibility) -> VendorConfig:
    return VendorConfig(
        id=vid, title=vid, origin=f"https://{vid}.test", hosts=(f"{vid}.test",),
        eligibility=eligibility,
    )  # fmt: skip


def test_databases_for_requires_every_condition() -> None:
    """A vendor with both a group and a filter needs both; none at all is open to everyone."""
    vendors = (
        _vendor("open", Eligibility()),
        _vendor("grp", Eligibility(groups=("resident",))),
        _vendor("flt", Eligibility(ldap_filter="(employeeType=resident)")),
        _vendor("both", Eligibility(groups=("staff",), ldap_filter="(employeeType=resident)")),
    )
    assert databases_for(frozenset(), vendors) == {"open"}
    assert databases_for(frozenset({"resident"}), vendors) == {"open", "grp"}
    assert databases_for(frozenset(), vendors, frozenset({"flt", "both"})) == {"open", "flt"}
    assert databases_for(frozenset({"staff"}), vendors, frozenset({"flt", "both"})) == {
        "open",
        "flt",
        "both",
    }


def _config(tmp_path: Path, directory: str, eligibility: str) -> Path:
    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors").mkdir()
    (tmp_path / "vendors" / "v.toml").write_text(
        textwrap.dedent(
            """\
            id = "v"
            title = "V"
            origin = "https://v.test"
            hosts = ["v.test"]
            """
        )
        + f"\n[eligibility]\n{eligibility}\n"
    )
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(
        '[server]\npublic_url = "http://proxy.localhost:8080"\n'
        f"[directory]\n{directory}\n"
        '[session]\nsecret_file = "state/s"\n'
    )
    return cfg


def test_ldap_filter_with_file_directory_is_a_config_error(tmp_path: Path) -> None:
    """The file directory cannot evaluate LDAP filters: refused rather than never matching."""
    cfg = _config(tmp_path, 'kind = "file"\npatrons_file = "patrons.toml"', 'ldap_filter = "(a=b)"')
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "v.toml: eligibility.ldap_filter: needs [directory] kind = ldap" in str(err.value)


def test_groups_with_ldap_need_group_attribute(tmp_path: Path) -> None:
    """Without group_attribute no patron would ever be in a group: refused at config time."""
    directory = 'kind = "ldap"\nurls = ["ldap://127.0.0.1:389"]\nbase_dn = "dc=x"'
    cfg = _config(tmp_path, directory, 'groups = ["resident"]')
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "v.toml: eligibility.groups: needs [directory] group_attribute" in str(err.value)
