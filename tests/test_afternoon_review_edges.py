"""A fresh read of the afternoon's change: eligibility marks, the tracker shield's new parts,
and the import's @ check.

From a review of the change as its maintainer: "Sign in again" looped back to the refused page;
a changed group_attribute, a case-only edit of a group name, or a retired database touched the
wrong sessions; `vendors test` was refused its own database; a cached script reached a worker
unshielded; a character reference hid speculation rules; a backslashed report-uri reached a
third party; an @ check both let a password through and refused ordinary URLs. Every test failed
before its fix.
"""

from __future__ import annotations

import html as html_lib
import io
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from proxy.ezproxy import run_import
from tests.canary import CANARY
from tests.harness import RecordingVendor, ldap_directory, vendor_toml, write_config
from tests.test_browser_egress import (  # noqa: F401  (browse and recorder: the fixtures)
    JS,
    LEFT,
    TRACKER,
    T,
    _page,
    browse,
    recorder,
)
from tests.test_eligibility_changes import archive_by_group, reload

ARCHIVE_HOST = "www.town-archive.test"
ATLAS_HOST = "www.county-atlas.test"


def _sign_in_again_href(page: str) -> str:
    m = re.search(r'<a[^>]+href="([^"]+)"[^>]*>\s*Sign in again', page)
    assert m, "the page offers a Sign in again link"
    return html_lib.unescape(m.group(1))


async def test_sign_in_again_link_reaches_the_sign_in_form_not_a_redirect_loop(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """After a reload that changed a rule, the refused page and the menu offer "Sign in
    again", linking to GET /login(?url=…). But the patron still holds a (valid) session, and
    GET /login with a session answers 303 straight on to `url` (or /menu): the vendor link comes
    back to the same "rules changed" page and the menu link back to the menu. The patron who
    follows the page's own advice never sees a sign-in form (only signing out first works)."""
    archive: RecordingVendor = await vendor_factory(ARCHIVE_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"archive": vendor_toml("archive", archive, title="Town Archive")},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    vfile = cfg.parent / "vendors" / "archive.toml"
    vfile.write_text(
        vfile.read_text() + '\n[eligibility]\nldap_filter = "(employeeType=resident)"\n'
    )
    await reload(driver)

    refused = await driver.get_vendor(ARCHIVE_HOST, "/after")
    assert refused.status == 403
    href = _sign_in_again_href(await refused.text())
    parts = urlsplit(href)
    follow = await driver.own("GET", parts.path + ("?" + parts.query if parts.query else ""))
    assert follow.status == 200 and 'name="password"' in await follow.text(), (
        f"'Sign in again' on the refused page answered {follow.status} "
        f"{follow.headers.get('Location')!r}, not a sign-in form"
    )

    menu = await (await driver.own("GET", "/menu")).text()
    # The notice's link (the menu also has a hidden one for a session that has timed out).
    notice = menu[menu.index('id="menu-notice"') :]
    parts = urlsplit(_sign_in_again_href(notice))
    follow = await driver.own("GET", parts.path + ("?" + parts.query if parts.query else ""))
    assert follow.status == 200 and 'name="password"' in await follow.text(), (
        f"'Sign in again' on the menu answered {follow.status} "
        f"{follow.headers.get('Location')!r}, not a sign-in form"
    )


async def test_a_case_only_edit_of_a_group_name_keeps_patrons_signed_in_to_it(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Groups now compare without regard to case (`databases_for`), so `groups = ["Resident"]`
    and `groups = ["resident"]` admit exactly the same patrons. But `eligibility_tag` hashes the
    names as written: a reload after tidying the capital signs every patron out of every
    conditional database, though nothing about who may use what changed."""
    driver, archive, cfg = await archive_by_group(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, '["Resident"]'
    )
    assert (await driver.get_vendor(ARCHIVE_HOST, "/before")).status == 200
    vfile = cfg.parent / "vendors" / "archive.toml"
    vfile.write_text(vfile.read_text().replace('groups = ["Resident"]', 'groups = ["resident"]'))
    await reload(driver)
    after = await driver.get_vendor(ARCHIVE_HOST, "/after")
    assert after.status == 200, f"a case-only edit refused a resident ({after.status})"
    assert [q.path_qs for q in archive.requests] == ["/before", "/after"]


async def test_retiring_one_conditional_database_keeps_patrons_in_the_others(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Two resident-only databases. The library's licence for one ends and its file is removed
    (or the database is made open to all); the other's rule is untouched. The single
    whole-config tag changes, and every signed-in resident is refused the untouched database
    until they sign in again: a routine reload interrupts every patron of every conditional
    database."""
    archive: RecordingVendor = await vendor_factory(ARCHIVE_HOST)
    atlas: RecordingVendor = await vendor_factory(ATLAS_HOST)
    rule = '\n[eligibility]\nldap_filter = "(employeeType=resident)"\n'
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "archive": vendor_toml("archive", archive, title="Town Archive", extra=rule),
            "atlas": vendor_toml("atlas", atlas, title="County Atlas", extra=rule),
        },
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert (await driver.get_vendor(ARCHIVE_HOST, "/before")).status == 200
    (cfg.parent / "vendors" / "atlas.toml").unlink()
    await reload(driver)
    after = await driver.get_vendor(ARCHIVE_HOST, "/after")
    assert after.status == 200, (
        f"removing another database refused a resident the unchanged one ({after.status})"
    )
    assert [q.path_qs for q in archive.requests] == ["/before", "/after"]


async def test_changing_the_group_attribute_applies_to_sessions_signed_in_before(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """`groups = ["resident"]` means "the value resident in `directory.group_attribute`". The
    library moves its groups to another attribute (here `description`, which no canary entry
    carries, so nobody is a resident any more) and reloads. `eligibility_tag` covers only the
    vendors' groups and filters, not the attribute they are read from, so the tag is unchanged
    and CANARY, decided under the old attribute, keeps reaching the database the new rules
    refuse: the fail-open the change set out to close (a reload that changes who may use a
    database applies to patrons already signed in)."""
    driver, archive, cfg = await archive_by_group(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, '["resident"]'
    )
    assert (await driver.get_vendor(ARCHIVE_HOST, "/before")).status == 200
    text = cfg.read_text()
    assert 'group_attribute = "employeeType"' in text
    cfg.write_text(
        text.replace('group_attribute = "employeeType"', 'group_attribute = "description"')
    )
    await reload(driver)
    after = await driver.get_vendor(ARCHIVE_HOST, "/after")
    assert after.status in (302, 403), after.status
    assert [q.path_qs for q in archive.requests] == ["/before"], (
        "the vendor was reached after a reload under which the patron is not eligible"
    )


# --------------------------------------------------------------------------------------------
# Egress in a real browser (the harness of tests/test_browser_egress.py).
# --------------------------------------------------------------------------------------------


@pytest.mark.browser
async def test_a_worker_script_the_page_loaded_first_as_a_script_still_gets_the_shield(
    browse: Any,  # noqa: F811
) -> None:
    """The shield CSP goes on a worker script's response only when the request says
    `Sec-Fetch-Dest: worker`; the same URL fetched as a `<script>` gets no CSP, and the
    response carries no `Vary: Sec-Fetch-Dest` (added only for octet-stream/text/plain). A
    vendor's cacheable bundle (Cache-Control: max-age, as bundles are) that the page loads as a
    script and then starts as a worker comes out of the browser's HTTP cache without the
    shield, and the worker fetches a third party from the patron's address (P3)."""
    script = (
        "if (typeof WorkerGlobalScope !== 'undefined') "
        f"fetch('{T}/from-cached-worker').catch(() => 0);"
    )
    seen = await browse(
        _page(
            '<script src="/w.js"></script>'
            "<script>addEventListener('load', () => new Worker('/w.js'))</script>"
        ),
        routes={"/w.js": (script, JS, {"Cache-Control": "public, max-age=3600"})},
    )
    assert seen == [], LEFT.format(seen)


@pytest.mark.browser
@pytest.mark.parametrize(
    "kind",
    ["speculation&#114;ules", "speculation&#x72;ules", "&#115;peculationrules"],
    ids=["decimal_ref", "hex_ref", "leading_ref"],
)
async def test_inline_speculation_rules_with_a_character_reference_in_the_type_are_inert(
    kind: str,
    browse: Any,  # noqa: F811
) -> None:
    """`edit_tag` looks for the bytes `speculationrules` before it reads the type attribute,
    so `type="speculation&#114;ules"` (which the HTML parser decodes to `speculationrules`)
    is left as it is, and Chromium prefetches the third party from the patron's address (P3)."""
    rules = '{"prefetch": [{"source": "list", "urls": ["https://' + TRACKER + '/next"]}]}'
    seen = await browse(
        _page(f'<script type="{kind}">{rules}</script>'),
    )
    assert seen == [], LEFT.format(seen)


@pytest.mark.browser
@pytest.mark.parametrize(
    "target",
    [f"\\\\{TRACKER}/csp", f"/\\{TRACKER}/csp", f"\\/{TRACKER}/csp"],
    ids=["backslashes", "slash_backslash", "backslash_slash"],
)
async def test_a_report_uri_that_a_browser_reads_as_a_third_party_is_dropped(
    target: str,
    browse: Any,  # noqa: F811
) -> None:
    """`_report_target` keeps any target without scheme and netloc as "a path: the page's own
    host". Python's urlsplit sees `\\\\tracker.example/csp` as a path; a browser's URL parser
    reads `\\` as `/` in an http(s) URL, so the target is `//tracker.example/csp`, a third
    party: every violation posts the page's full URL (the patron's search) to it, from the
    patron's address (P1, P3). Before this change such a target was dropped."""
    seen = await browse(
        _page('<img src="/cover.gif" alt="">'),
        headers={"Content-Security-Policy": f"img-src 'none'; report-uri {target}"},
    )
    assert seen == [], LEFT.format(seen)


# --------------------------------------------------------------------------------------------
# import-ezproxy: the '@' check (ezproxy_stanza._parse_url) and `_shown`.
# --------------------------------------------------------------------------------------------


def test_a_password_with_a_question_mark_that_parses_as_a_port_is_not_written(
    tmp_path: Path,
) -> None:
    """The new '@' check looks for an @ only before the first `?`, so
    `https://acct:1234?5678@db.example.com/login` (a password `1234?5678`, as the `/` case the
    check was written for) passes it: urlsplit reads host `acct`, port 1234. The stanza is
    converted with `origin = "https://acct:1234"` and `acct` among its hosts: the account and the
    start of its password are written into the vendor file, and patrons are sent to a host
    named after the account."""
    cfg = tmp_path / "config.txt"
    cfg.write_text(
        "Title Good\nURL https://good.example.org/\nHost good.example.org\n"
        "Title Numeric\nURL https://acct:1234?5678@db.example.com/login\nHost db.example.com\n"
    )
    out = io.StringIO()
    run_import(cfg, tmp_path / "out", stdout=out)
    text = out.getvalue()
    written = "".join(p.read_text() for p in (tmp_path / "out").glob("*.toml"))
    for part in ("acct", "1234", "5678"):
        assert part not in written, written
        assert part not in text, text
    assert "Numeric" in text and "an @ outside its host" in text, text


@pytest.mark.parametrize(
    "url",
    [
        "https://good.example.org:8443/people/@weston",  # a port
        "https://good.example.org/wiki/Special:Search/@weston",  # a colon in the path
    ],
)
def test_an_at_in_the_path_of_an_ordinary_url_is_not_refused(tmp_path: Path, url: str) -> None:
    """The check refuses a URL when the text before its last @ holds a `:` and urlsplit found
    no account. The `:` of a port, or one in the path, counts: an ordinary URL with an @ in
    its path (tests/test_change_review_edges.py holds `people/@weston` to be one) is skipped as
    "an @ outside its host", and the summary names it as `https://weston`, a URL the config
    never had."""
    cfg = tmp_path / "config.txt"
    cfg.write_text(f"Title Good\nURL {url}\nHost good.example.org\n")
    out = io.StringIO()
    run_import(cfg, tmp_path / "out", stdout=out)
    text = out.getvalue()
    assert "an @ outside its host" not in text, text
    written = "".join(p.read_text() for p in (tmp_path / "out").glob("*.toml"))
    assert "@weston" in written, text


# --------------------------------------------------------------------------------------------
# `vendors test ID` (proxy/vendor_test.py) starts its own session with no rules tag.
# --------------------------------------------------------------------------------------------


async def test_vendors_test_reaches_a_database_with_an_eligibility_rule(
    tmp_path: Path, port: int, vendor_factory: Any
) -> None:
    """`run_vendor_test` starts a session with `databases={vendor.id}` and no `rules`; the
    in-process proxy it builds checks it against `Services.eligibility`, a non-empty tag, so a
    database with an `[eligibility]` rule is refused with the "sign in again" page (403):
    `weston-proxy vendors test ID` reports every resident-only database as failing, and never
    fetches its start URL, since the change."""
    from proxy.config import load_config
    from proxy.vendor_test import run_vendor_test
    from tests.test_reload import file_directory_config

    vendor: RecordingVendor = await vendor_factory("www.vendor-one.test")

    async def start(request: Any) -> Any:
        from aiohttp import web

        return web.Response(text="<p>home</p>", content_type="text/html")

    vendor.routes["/"] = start
    one = vendor_toml("one", vendor, extra='\n[eligibility]\ngroups = ["resident"]\n')
    cfg = file_directory_config(tmp_path, port, {"one": one})
    config = load_config(cfg)
    report = await run_vendor_test(config, config.vendors[0])
    assert report.ok and report.status == 200, report.to_json()
    assert vendor.requests, "the vendor's start URL was never fetched"
