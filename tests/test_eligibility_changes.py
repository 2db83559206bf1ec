"""Who may use which database when the library changes its rules, and the file directory's values.

From a review of per-database eligibility and release levels: a reload that tightened a rule did
not apply to patrons already signed in (for up to a session's lifetime); a patrons file value of
the wrong kind crashed each sign-in or silently split into letters; `groups` compared directory
values with regard to case where an ldap_filter does not. Every test failed before its fix.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.auth import FileDirectory, hash_password
from proxy.errors import ConfigError
from tests.canary import CANARY, HERON, WREN
from tests.harness import RecordingVendor, ldap_directory, vendor_toml, write_config

ARCHIVE_HOST = "www.town-archive.test"
REFUSED = "isn't included with your card"


async def archive_by_group(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    groups: str,
    patron: Any = CANARY,
) -> tuple[Any, RecordingVendor, Path]:
    """A proxy whose "Town Archive" admits `groups` (a TOML list) read from employeeType, with
    `patron` signed in: (driver, the archive vendor, its config file)."""
    archive: RecordingVendor = await vendor_factory(ARCHIVE_HOST)
    directory = ldap_directory(slapd, tmp_path) + 'group_attribute = "employeeType"\n'
    extra = f"\n[eligibility]\ngroups = {groups}\n"
    cfg = write_config(
        tmp_path,
        port=port,
        directory=directory,
        vendors={"archive": vendor_toml("archive", archive, title="Town Archive", extra=extra)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(patron.uid, patron.password)).status == 303
    return driver, archive, cfg


async def reload(driver: Any) -> None:
    from proxy.reload import Reloader
    from proxy.services import SERVICES

    outcome = await Reloader(driver.client.app[SERVICES]).reload()
    assert outcome.ok, outcome.problems


async def test_reload_that_restricts_a_database_applies_to_sessions_signed_in_before(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The library learns a database's licence covers residents only, adds
    `[eligibility] ldap_filter = "(employeeType=resident)"` to its file and reloads. The
    non-resident HERON, signed in before the reload, keeps reaching it (menu link and typed
    mapped host): at sign-in the database was open to all, so its id went into the session's
    `databases`, and `may_use` trusts that set for ever after. The vendor keeps receiving
    requests from a patron the library's own rule now excludes, for up to `lifetime_s`."""
    from proxy.reload import Reloader
    from proxy.services import SERVICES

    archive: RecordingVendor = await vendor_factory(ARCHIVE_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"archive": vendor_toml("archive", archive, title="Town Archive")},
    )
    driver = await proxy_factory(cfg)
    r = await driver.login(HERON.uid, HERON.password)
    assert r.status == 303
    assert (await driver.get_vendor(ARCHIVE_HOST, "/before")).status == 200

    vfile = cfg.parent / "vendors" / "archive.toml"
    vfile.write_text(
        vfile.read_text() + '\n[eligibility]\nldap_filter = "(employeeType=resident)"\n'
    )
    outcome = await Reloader(driver.client.app[SERVICES]).reload()
    assert outcome.ok, outcome.problems

    menu = await (await driver.own("GET", "/menu")).text()
    assert "Town Archive" not in menu, "the menu still offers the now resident-only database"
    after = await driver.get_vendor(ARCHIVE_HOST, "/after")
    assert after.status in (302, 403), after.status
    assert [q.path_qs for q in archive.requests] == ["/before"], (
        "the vendor was reached after the reload by a patron its eligibility rule excludes"
    )


async def test_reload_that_changes_a_condition_applies_to_sessions_signed_in_before(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A resident-only database becomes staff-only (a group no canary patron is in) and the
    proxy reloads. CANARY (resident), signed in before, still reaches it: the condition is
    never checked again, only the vendor id remembered from sign-in."""
    driver, archive, cfg = await archive_by_group(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, '["resident"]'
    )
    assert (await driver.get_vendor(ARCHIVE_HOST, "/before")).status == 200

    vfile = cfg.parent / "vendors" / "archive.toml"
    vfile.write_text(vfile.read_text().replace('groups = ["resident"]', 'groups = ["staff"]'))
    await reload(driver)

    after = await driver.get_vendor(ARCHIVE_HOST, "/after")
    assert after.status in (302, 403), after.status
    assert [q.path_qs for q in archive.requests] == ["/before"]


def _refused_by_directory_and_check_config(
    path: Path, key: str
) -> subprocess.CompletedProcess[str]:
    """The patrons file at `path` refused naming `key` by the file directory; then check-config
    run on a configuration that uses it (its outcome, for the caller to read)."""
    with pytest.raises(ConfigError, match=re.escape(key)):
        FileDirectory(path, secret=b"s" * 32, vendors=())
    root = path.parent
    (root / "proxy.toml").write_text(
        f'[directory]\nkind = "file"\npatrons_file = "{path.name}"\n[vendors]\ndir = "vendors"\n'
    )
    (root / "vendors").mkdir()
    return subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", "--config", str(root / "proxy.toml")],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("expires = 2020-01-31T00:00:00", "patron[0].expires"),  # a datetime, as ILS exports write
        ('expires = "2020-01-31"', "patron[0].expires"),  # quoted: text
        ('groups = "resident"', "patron[0].groups"),  # one group without the list brackets
    ],
)
def test_a_patrons_file_value_of_the_wrong_kind_is_refused_naming_its_key(
    tmp_path: Path, line: str, key: str
) -> None:
    """An expiry written as a datetime or as text was loaded without complaint, and every
    sign-in with that card raised TypeError (a 500 instead of the expired-card page); groups
    written as one string became groups of single letters, and the resident was refused with
    no word anywhere. The file is now refused where it is read, naming the key, by the
    directory and by check-config."""
    path = tmp_path / "patrons.toml"
    path.write_text(
        f'[[patron]]\ncard = "{CANARY.uid}"\nhash = "{hash_password(CANARY.password)}"\n{line}\n'
    )
    checked = _refused_by_directory_and_check_config(path, key)
    assert checked.returncode != 0 and key in checked.stdout + checked.stderr, checked


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        # IT staff block a card with `block = true`: the card went on working, no word anywhere.
        (
            '[[patron]]\ncard = "{card}"\nhash = "{hash}"\nblock = true\n',
            "patron[0].block",
            "did you mean 'blocked'?",
        ),
        # `[[patrons]]`: a directory with no patrons in it, every sign-in refused as a wrong PIN.
        ('[[patrons]]\ncard = "{card}"\nhash = "{hash}"\n', "patrons", "did you mean 'patron'?"),
        # Cards listed as a plain array: a traceback (AttributeError) from check-config and serve.
        ('patron = ["{card}"]\n', "patron[0]", "must be a [[patron]] table"),
    ],
)
def test_a_patrons_file_key_that_is_not_one_is_refused_naming_it(
    tmp_path: Path, text: str, key: str, hint: str
) -> None:
    """The patrons file is checked as the main configuration is: an unknown key, at the top or
    in a `[[patron]]` table, is refused with its key and the likely intended one, and an entry
    that is not a table is named, not a traceback."""
    path = tmp_path / "patrons.toml"
    path.write_text(text.format(card=CANARY.uid, hash=hash_password(CANARY.password)))
    checked = _refused_by_directory_and_check_config(path, key)
    said = checked.stdout + checked.stderr
    assert checked.returncode == 1, said
    assert f"{path}: {key}: " in said and hint in said, said
    assert "Traceback" not in said


@pytest.fixture
def slapd_with_capitalised_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A slapd whose WREN entry spells its patron type `Resident` (employeeType is a
    caseIgnoreMatch attribute: to the directory, `Resident` and `resident` are one value)."""
    from tests.fixtures_ldap import render_patrons_ldif, start_slapd

    work = tmp_path_factory.mktemp("slapd-case")
    ldif = render_patrons_ldif()
    wren_dn = f"uid={WREN.uid},"
    start = ldif.index(wren_dn)
    end = ldif.index("\n\n", start)
    ldif = (
        ldif[:start]
        + ldif[start:end].replace("employeeType: resident", "employeeType: Resident")
        + ldif[end:]
    )
    path = work / "patrons.ldif"
    path.write_text(ldif)
    server = start_slapd(_fresh(work), path)
    try:
        yield server
    finally:
        server.stop()


def _fresh(work: Path) -> Path:
    d = work / "srv"
    d.mkdir()
    return d


async def test_group_condition_matches_directory_values_as_the_directory_does(
    tmp_path: Path,
    port: int,
    slapd_with_capitalised_group: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """WREN's entry says `employeeType: Resident`. The directory itself treats that as the value
    `resident` (the same rule written as `ldap_filter = "(employeeType=resident)"` lets WREN
    in), but `groups = ["resident"]` compares the strings exactly, so an eligible resident is
    refused the database and does not see it on the menu."""
    driver, archive, _ = await archive_by_group(
        tmp_path,
        port,
        slapd_with_capitalised_group,
        vendor_factory,
        proxy_factory,
        '["resident"]',
        WREN,
    )
    r = await driver.get_vendor(ARCHIVE_HOST, "/start")
    assert r.status == 200, "an eligible resident was refused"
    assert len(archive.requests) == 1


async def test_after_a_rule_change_signing_in_again_decides_under_the_new_rule(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """What the patron meets: the refused page and the menu say the library changed the rules
    and offer "Sign in again"; signed in again, a resident reaches the now resident-only
    database and a non-resident gets the ordinary "isn't included" page. A database open to
    all stays open through the change, without signing in again."""
    from proxy.reload import Reloader
    from proxy.services import SERVICES

    archive: RecordingVendor = await vendor_factory(ARCHIVE_HOST)
    other: RecordingVendor = await vendor_factory("www.open-db.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "archive": vendor_toml("archive", archive, title="Town Archive"),
            "open": vendor_toml("open", other, title="Open Database"),
        },
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert (await driver.get_vendor(ARCHIVE_HOST, "/before")).status == 200
    vfile = cfg.parent / "vendors" / "archive.toml"
    vfile.write_text(
        vfile.read_text() + '\n[eligibility]\nldap_filter = "(employeeType=resident)"\n'
    )
    outcome = await Reloader(driver.client.app[SERVICES]).reload()
    assert outcome.ok, outcome.problems
    refused = await driver.get_vendor(ARCHIVE_HOST, "/after")
    assert refused.status == 403
    page = await refused.text()
    assert "Sign in again" in page and "changed who may use this database" in page
    menu = await (await driver.own("GET", "/menu")).text()
    assert "Some databases need you to sign in again" in menu
    assert "Open Database" in menu and "Town Archive" not in menu
    assert (await driver.get_vendor("www.open-db.test", "/")).status == 200  # open: unaffected
    # Signed in again, the resident is decided under the new rule, and let in.
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert (await driver.get_vendor(ARCHIVE_HOST, "/again")).status == 200
    menu = await (await driver.own("GET", "/menu")).text()
    assert "Some databases need you to sign in again" not in menu and "Town Archive" in menu
    # A non-resident signing in now is refused as any patron the rule leaves out.
    assert (await driver.login(HERON.uid, HERON.password)).status == 303
    no = await driver.get_vendor(ARCHIVE_HOST, "/heron")
    assert no.status == 403 and "included with your card" in await no.text()
    assert "Sign in again" not in await no.text()
    assert [q.path_qs for q in archive.requests] == ["/before", "/again"]


async def test_a_reload_that_narrows_remote_access_applies_to_sessions_signed_in_before(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The library limits remote access itself to residents (`directory.eligible_filter`) and
    reloads. HERON, a non-resident signed in before, kept reaching every database for the rest
    of the session's lifetime: only per-database rules were marked. Now every session signed in
    before waits for a new sign-in, which decides under the new rule; a reload that leaves the
    rule as it was changes nothing for anyone."""
    from proxy.reload import Reloader
    from proxy.services import SERVICES

    archive: RecordingVendor = await vendor_factory(ARCHIVE_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"archive": vendor_toml("archive", archive, title="Town Archive")},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(HERON.uid, HERON.password)).status == 303
    assert (await driver.get_vendor(ARCHIVE_HOST, "/before")).status == 200

    # A reload with the same rule (another file touched): nothing changes for the session.
    outcome = await Reloader(driver.client.app[SERVICES]).reload()
    assert outcome.ok, outcome.problems
    assert (await driver.get_vendor(ARCHIVE_HOST, "/same")).status == 200

    text = cfg.read_text()
    old = 'eligible_filter = "(!(description=expired))"'
    assert old in text
    cfg.write_text(
        text.replace(old, 'eligible_filter = "(&(!(description=expired))(employeeType=resident))"')
    )
    outcome = await Reloader(driver.client.app[SERVICES]).reload()
    assert outcome.ok, outcome.problems

    after = await driver.get_vendor(ARCHIVE_HOST, "/after")
    assert after.status == 403
    assert "Sign in again" in await after.text()
    menu = await (await driver.own("GET", "/menu")).text()
    assert "Some databases need you to sign in again" in menu and "Town Archive" not in menu
    assert [q.path_qs for q in archive.requests] == ["/before", "/same"]

    # Signed in again under the new rule: the non-resident is refused remote access,
    # a resident is let in.
    assert (await driver.login(HERON.uid, HERON.password)).status != 303
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert (await driver.get_vendor(ARCHIVE_HOST, "/resident")).status == 200
    assert [q.path_qs for q in archive.requests] == ["/before", "/same", "/resident"]


async def test_a_filter_set_where_there_was_none_applies_and_removing_it_lets_everyone_on(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Sessions signed in with no `eligible_filter` record that too: setting one by a reload
    sends them to sign in again (the non-resident is then refused); removing it again lets a
    session signed in under the filter go on without signing in again."""
    from proxy.reload import Reloader
    from proxy.services import SERVICES

    archive: RecordingVendor = await vendor_factory(ARCHIVE_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path).replace(
            'eligible_filter = "(!(description=expired))"\n', ""
        ),
        vendors={"archive": vendor_toml("archive", archive, title="Town Archive")},
    )
    assert "eligible_filter" not in cfg.read_text()
    driver = await proxy_factory(cfg)
    assert (await driver.login(HERON.uid, HERON.password)).status == 303
    assert (await driver.get_vendor(ARCHIVE_HOST, "/open")).status == 200

    text = cfg.read_text()
    cfg.write_text(
        text.replace("timeout_s =", 'eligible_filter = "(employeeType=resident)"\ntimeout_s =', 1)
    )
    outcome = await Reloader(driver.client.app[SERVICES]).reload()
    assert outcome.ok, outcome.problems
    assert (await driver.get_vendor(ARCHIVE_HOST, "/filtered")).status == 403
    assert (await driver.login(HERON.uid, HERON.password)).status != 303  # now refused
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert (await driver.get_vendor(ARCHIVE_HOST, "/resident")).status == 200

    cfg.write_text(text)  # the filter removed again
    outcome = await Reloader(driver.client.app[SERVICES]).reload()
    assert outcome.ok, outcome.problems
    assert (await driver.get_vendor(ARCHIVE_HOST, "/unfiltered")).status == 200
    assert [q.path_qs for q in archive.requests] == ["/open", "/resident", "/unfiltered"]
