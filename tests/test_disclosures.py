"""From a review of what patrons and privacy staff are told: what the /privacy page, the menu and
the staff compliance report say about each database, against what actually happens.

The first five tests are the reviewer's, each proving a defect the code then had: an unshielded
vendor (`third_party = "allow"`) and a vendor's `never_proxy` hosts described as if the vendor saw
only the library's address, a shared account whose history was never confirmed off described as
"Nothing about you", an idle time-out of 90 s told as "1 minutes", and a compliance report silent
about never_proxy hosts. The rest pin the edges of the fixes."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest

from proxy.auth import hash_password
from tests.canary import CANARY
from tests.harness import ProxyDriver, RecordingVendor, html_page, vendor_toml, write_config

CONTRACT = (
    '\n[contract]\nprivacy_policy_url = "https://{vid}.example/privacy"\n'
    "reviewed = 2026-01-15\nexpires = 2099-01-28\n"
)


async def _proxy(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any, extras: dict[str, str]
) -> tuple[ProxyDriver, dict[str, RecordingVendor]]:
    (tmp_path / "patrons.toml").write_text(
        f'[[patron]]\ncard = "{CANARY.uid}"\nhash = "{hash_password(CANARY.password)}"\n'
    )
    vendors: dict[str, RecordingVendor] = {}
    texts = {}
    for vid, extra in extras.items():
        v = await vendor_factory(f"www.{vid}.test")
        vendors[vid] = v
        hosts = [v.host, f"*.{vid}.test"]
        texts[vid] = vendor_toml(
            vid,
            v,
            auth="ip",
            title=f"{vid.title()} Title",
            hosts=hosts,
            extra=extra + CONTRACT.format(vid=vid),
        )
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors=texts,
    )
    return await proxy_factory(cfg), vendors


async def _row_text(d: ProxyDriver, title: str) -> str:
    r = await d.own("GET", "/privacy")
    assert r.status == 200
    page = await r.text()
    m = re.search(
        rf"<tr><th scope=\"row\">{re.escape(title)}</th>\s*<td[^>]*>(.*?)</td>", page, re.S
    )
    assert m, f"no row for {title}"
    return html.unescape(re.sub(r"<[^>]+>", " ", m.group(1))).strip()


THIRD_PARTY = "cdn.tracker-elsewhere.test"


async def _browser_hits(d: ProxyDriver, third: RecordingVendor, vendor_host: str) -> list[str]:
    """Sign in with Chromium, open `vendor_host`'s page through the proxy, and return the paths
    the browser asked of the third party directly (its name resolved to `third`)."""
    import asyncio
    import contextlib

    from playwright.async_api import Error, async_playwright

    from tests.browser_support import CHROMIUM, CHROMIUM_ARGS
    from tests.harness import sign_in_through_form

    rules = f"--host-resolver-rules=MAP {third.host} 127.0.0.1:{third.port}"
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, rules], headless=True
        )
        try:
            page = await (await browser.new_context()).new_page()
            await sign_in_through_form(page, f"http://{d.public}")
            with contextlib.suppress(Error):
                await page.goto(f"http://{d.mapped(vendor_host)}/", wait_until="load")
            for _ in range(30):
                if third.requests:
                    break
                await asyncio.sleep(0.1)
        finally:
            await browser.close()
    return [r.path_qs for r in third.requests]


THIRD_PARTY_PAGE = (
    "<!doctype html><title>t</title>"
    '<script src="http://cdn.tracker-elsewhere.test/t.js"></script><p>hello</p>'
)

# Words a disclosure would use for "someone other than the database sees you directly".
OTHERS_WORDS = re.compile(r"third[- ]part|other (compan|websites?|sites?|services?)|directly", re.I)


async def test_third_party_allow_vendor_is_not_told_to_patrons(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor with third_party = "allow": its pages go to the patron with no tracker shield, so a
    third-party script the page names is fetched by the patron's own browser, from the patron's
    own address. The /privacy row must say so; today it says the same as for a shielded vendor
    ("Nothing about you is sent: the vendor recognises the library's address, not yours")."""
    d, vendors = await _proxy(
        tmp_path,
        port,
        vendor_factory,
        proxy_factory,
        {
            "shielded": "",
            "openpage": 'third_party = "allow"\nthird_party_reason = "needs its video player"\n',
        },
    )
    vendors["openpage"].routes["/"] = html_page(THIRD_PARTY_PAGE)
    vendors["shielded"].routes["/"] = html_page(THIRD_PARTY_PAGE)
    r = await d.login(CANARY.uid, CANARY.password)
    assert r.status == 303
    # What actually happens: the shielded vendor's page carries a CSP that stops the script;
    # the allowed one's does not, and the script URL is left pointing at the third party.
    shielded = await d.get_vendor("www.shielded.test", "/")
    opened = await d.get_vendor("www.openpage.test", "/")
    assert "script-src" in shielded.headers.get("Content-Security-Policy", "")
    assert "cdn.tracker-elsewhere.test" in await opened.text()
    assert "script-src" not in opened.headers.get("Content-Security-Policy", "")
    # And in a real browser: the patron's Chromium fetches the script from the third party
    # itself (its own connection, so its own address), with no proxy in between.
    tracker = await vendor_factory(THIRD_PARTY)
    assert await _browser_hits(d, tracker, "www.openpage.test") == ["/t.js"]
    # What the patron is told.
    shielded_row = await _row_text(d, "Shielded Title")
    open_row = await _row_text(d, "Openpage Title")
    assert open_row != shielded_row, (
        "the unshielded vendor is described exactly like a shielded one: " + open_row
    )
    assert OTHERS_WORDS.search(open_row), open_row


async def test_never_proxy_host_is_not_told_to_patrons(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor with `never_proxy = ["media.npdb.test"]`: links to that host are left pointing at
    it, so a patron who follows one reaches the vendor's host from their own address (and the
    proxy refuses to serve it). The /privacy row must tell the patron; today it says the vendor
    sees "the library's address, not yours" with no exception."""
    d, vendors = await _proxy(
        tmp_path,
        port,
        vendor_factory,
        proxy_factory,
        {"npdb": 'never_proxy = ["media.npdb.test"]\n'},
    )
    vendors["npdb"].routes["/"] = html_page(
        '<!doctype html><title>n</title><a href="http://media.npdb.test/video/1">watch</a>'
        '<a href="http://other.npdb.test/x">other</a>'
    )
    r = await d.login(CANARY.uid, CANARY.password)
    assert r.status == 303
    page = await (await d.get_vendor("www.npdb.test", "/")).text()
    # What actually happens: the sibling host is mapped, the never_proxy one is left direct.
    assert d.mapped("other.npdb.test").split(":")[0] in page
    assert 'href="http://media.npdb.test/video/1"' in page
    # What the patron is told.
    row = await _row_text(d, "Npdb Title")
    assert "media.npdb.test" in row or OTHERS_WORDS.search(row), row


async def test_shared_login_without_history_check_is_described_as_nothing_about_you(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A shared-login vendor whose account history settings were never confirmed off
    (`history_off_checked` unset: `compliance` holds it INCOMPLETE because "one patron can see of
    another" the searches, saved items and recently viewed the vendor keeps per account). Two
    patrons' requests reach the vendor as the very same account. The /privacy row tells the
    patron "Nothing about you" and says nothing of what the next patron may see."""
    from proxy.compliance import check_all
    from tests.canary import WREN
    from tests.harness import write_secret

    write_secret(tmp_path / "vendors" / "secrets" / "user", "library-account")
    write_secret(tmp_path / "vendors" / "secrets" / "password", "library-password")
    v = await vendor_factory("www.shareddb.test")
    text = vendor_toml(
        "shareddb",
        v,
        auth="shared-login",
        title="Shareddb Title",
        extra='\n[shared_login]\nmethod = "basic"\n'
        'username_file = "secrets/user"\npassword_file = "secrets/password"\n'
        + CONTRACT.format(vid="shareddb"),
    )
    (tmp_path / "patrons.toml").write_text(
        "".join(
            f'[[patron]]\ncard = "{p.uid}"\nhash = "{hash_password(p.password)}"\n'
            for p in (CANARY, WREN)
        )
    )
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"shareddb": text},
    )
    d: ProxyDriver = await proxy_factory(cfg)
    # What actually happens: two patrons, one account.
    auths = []
    for p in (CANARY, WREN):
        d.sid = None
        assert (await d.login(p.uid, p.password)).status == 303
        await d.get_vendor("www.shareddb.test", f"/search?q=canary-{p.uid}")
        auths.append(dict(v.requests[-1].headers).get("Authorization"))
    assert auths[0] is not None and auths[0] == auths[1]
    report = check_all(d.config, d.config.vendors)
    (history,) = [c for c in report.vendors[0].checks if c.id == "shared_account.history"]
    assert history.result != "pass"
    # What the patron is told.
    row = await _row_text(d, "Shareddb Title")
    assert re.search(r"other (patrons|people|users)|next (patron|person|user)", row, re.I), row


async def test_menu_states_the_configured_idle_timeout(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """`session.idle_timeout_s = 90` (accepted by check-config): the menu tells the patron "this
    session ends after 1 minutes without use" (90 // 60); the session actually lives 90 s without
    use. The stated retention must be the configured one."""
    (tmp_path / "patrons.toml").write_text(
        f'[[patron]]\ncard = "{CANARY.uid}"\nhash = "{hash_password(CANARY.password)}"\n'
    )
    v = await vendor_factory("www.idledb.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"idledb": vendor_toml("idledb", v, auth="ip")},
        session='store = "memory"\nidle_timeout_s = 90',
    )
    d: ProxyDriver = await proxy_factory(cfg)
    assert d.config.session.idle_timeout_s == 90
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    menu = await (await d.own("GET", "/menu")).text()
    m = re.search(r'<p class="note" id="expiry-note">(.*?)</p>', menu, re.S)
    assert m, "no expiry note"
    note = html.unescape(m.group(1))
    assert re.search(r"\b90 seconds|\b1\.5 minutes|1½ minutes|a minute and a half", note), note


async def test_compliance_report_is_silent_about_a_never_proxy_host(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The same never_proxy vendor in the staff `compliance` report: no check or evidence names
    the host patrons are sent to directly (their own address, the vendor's own cookies in their
    browser), and the vendor passes as if every host were proxied. Privacy staff reading the
    report cannot learn that this vendor sees some patrons' addresses."""
    from proxy.compliance import check_all
    from proxy.compliance_report import render_json, render_text

    d, _ = await _proxy(
        tmp_path,
        port,
        vendor_factory,
        proxy_factory,
        {"npdb": 'never_proxy = ["media.npdb.test"]\n'},
    )
    report = check_all(d.config, d.config.vendors)
    text = render_text(report, library="Weston Public Library") + render_json(report)
    assert "media.npdb.test" in text, text


# --------------------------------------------------------------------------- edges of the fixes


def _fixture_config(tmp_path: Path) -> Any:
    """The compliance fixture config (its `good` vendor keeps every rule), loaded."""
    from proxy.cli import config_checks
    from proxy.config import load_config
    from tests.test_compliance import materialise

    return load_config(materialise(tmp_path, ["good"]), extra_checks=config_checks())


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "1 second"),
        (45, "45 seconds"),
        (59, "59 seconds"),
        (60, "1 minute"),
        (90, "90 seconds"),
        (120, "2 minutes"),
        (1800, "30 minutes"),
        (3600, "1 hour"),
        (5400, "90 minutes"),
        (7200, "2 hours"),
    ],
)
def test_a_configured_duration_reads_exactly(seconds: int, words: str) -> None:
    """Never rounded to whole minutes: seconds under a minute or when not a whole number of
    minutes, singular for one."""
    from proxy.web.messages import duration

    assert duration(seconds) == words


async def test_menu_time_out_warning_states_its_own_time(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """idle_timeout_s = 90 warns 45 s before the end (half the idle time): the warning says 45
    seconds, not "about 1 minutes"; neither menu note says "1 minutes" or "0 minutes"."""
    (tmp_path / "patrons.toml").write_text(
        f'[[patron]]\ncard = "{CANARY.uid}"\nhash = "{hash_password(CANARY.password)}"\n'
    )
    v = await vendor_factory("www.idledb.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"idledb": vendor_toml("idledb", v, auth="ip")},
        session='store = "memory"\nidle_timeout_s = 90',
    )
    d: ProxyDriver = await proxy_factory(cfg)
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    menu = html.unescape(await (await d.own("GET", "/menu")).text())
    assert 'data-warn-s="45"' in menu
    m = re.search(r'<p id="timeout-text">(.*?)</p>', menu, re.S)
    assert m and "about 45 seconds" in m.group(1), m
    m = re.search(r'<p id="timeout-final" hidden>(.*?)</p>', menu, re.S)
    assert m and "about 45 seconds" in m.group(1), m
    assert not re.search(r"\b[01] minutes", menu)


async def test_menu_default_idle_time_reads_in_minutes(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The default 1800 s still reads "30 minutes", and its warning "about 2 minutes"; the
    default lifetime, which no use extends, reads "8 hours"."""
    (tmp_path / "patrons.toml").write_text(
        f'[[patron]]\ncard = "{CANARY.uid}"\nhash = "{hash_password(CANARY.password)}"\n'
    )
    v = await vendor_factory("www.idledb.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"idledb": vendor_toml("idledb", v, auth="ip")},
    )
    d: ProxyDriver = await proxy_factory(cfg)
    assert d.config.session.idle_timeout_s == 1800
    assert (await d.login(CANARY.uid, CANARY.password)).status == 303
    menu = html.unescape(await (await d.own("GET", "/menu")).text())
    assert (
        "this session ends after 30 minutes without use, and in any case 8 hours after you "
        "signed in, even while you are using a database." in menu
    )
    assert "your session will end in about 2 minutes because" in menu


def _vendor(config: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(config.vendor("good"), **changes)


def test_a_shielded_vendor_row_has_no_caveat(tmp_path: Path) -> None:
    from proxy.web.disclosure import has_direct_parts, vendor_disclosure

    config = _fixture_config(tmp_path)
    v = config.vendor("good")
    assert vendor_disclosure("Sent: X.", v, config) == "Sent: X."
    assert not has_direct_parts(v)


def test_never_proxy_wildcard_is_read_in_words_and_every_host_named(tmp_path: Path) -> None:
    """`*.cdn.x.test` is not read aloud as a name: "any address ending in cdn.x.test"; every
    never_proxy entry appears, in order."""
    from proxy.web.disclosure import vendor_disclosure

    config = _fixture_config(tmp_path)
    v = _vendor(config, never_proxy=("media.good-research.test", "*.cdn.good-research.test"))
    row = vendor_disclosure("Sent: X.", v, config)
    assert row.startswith("Sent: X. But some of its addresses are opened directly")
    assert row.endswith(": media.good-research.test, any address ending in cdn.good-research.test.")
    assert "*" not in row


def test_both_caveats_together(tmp_path: Path) -> None:
    """An unshielded vendor with never_proxy hosts gets both sentences."""
    from proxy.web.disclosure import vendor_disclosure
    from proxy.web.messages import DISCLOSURES

    config = _fixture_config(tmp_path)
    v = _vendor(
        config,
        third_party="allow",
        third_party_reason="video",
        never_proxy=("media.good-research.test",),
    )
    row = vendor_disclosure("Sent: X.", v, config)
    assert DISCLOSURES["third_party"] in row and "media.good-research.test" in row


@pytest.mark.parametrize(
    ("checked_days_ago", "warned"),
    [(None, True), (30, False), (3 * 365, True), (-1, True)],
)
def test_shared_account_warning_follows_the_compliance_check(
    tmp_path: Path, checked_days_ago: int | None, warned: bool
) -> None:
    """The history warning is shown exactly when `shared_account.history` does not pass: not
    recorded, confirmed too long ago, or dated after today; a recent confirmation drops it."""
    import datetime as dt

    from proxy.compliance import PASS, check_shared_account, compliance_settings
    from proxy.config import SharedLogin
    from proxy.web.disclosure import vendor_disclosure

    config = _fixture_config(tmp_path)
    today = dt.date.today()
    checked = None if checked_days_ago is None else today - dt.timedelta(days=checked_days_ago)
    v = _vendor(config, auth="shared-login", shared_login=SharedLogin(history_off_checked=checked))
    check = check_shared_account(v, compliance_settings(config), today)
    assert (check.result != PASS) is warned
    row = vendor_disclosure("Nothing about you.", v, config, today=today)
    assert ("other patrons using the library's account" in row) is warned


async def test_privacy_opening_names_its_exceptions_only_when_there_are_some(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """ "Databases see the library's address, not yours" is followed by the exception sentence
    when a vendor is unshielded or has never_proxy hosts, and not otherwise."""
    from proxy.web.messages import UI

    d, _ = await _proxy(
        tmp_path,
        port,
        vendor_factory,
        proxy_factory,
        {"shielded": ""},
    )
    page = html.unescape(await (await d.own("GET", "/privacy")).text())
    assert "the library's address, not yours" in page
    assert UI["privacy_exceptions"] not in page


async def test_privacy_opening_with_an_exception(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    from proxy.web.messages import UI

    d, _ = await _proxy(
        tmp_path,
        port,
        vendor_factory,
        proxy_factory,
        {"shielded": "", "npdb": 'never_proxy = ["media.npdb.test"]\n'},
    )
    page = html.unescape(await (await d.own("GET", "/privacy")).text())
    m = re.search(r'<p class="lead">(.*?)</p>', page, re.S)
    assert m and UI["privacy_exceptions"] in m.group(1), m


def test_compliance_never_proxy_is_a_warning_in_every_format(tmp_path: Path) -> None:
    """config.never_proxy: a warning that fails, naming every host, in text, JSON and HTML; it
    does not change the vendor's verdict (a deliberate, recorded choice); with no never_proxy
    it passes."""
    import json

    from proxy.compliance import FAIL, PASS, PASSED, WARNING, check_vendor, compliance_settings
    from proxy.compliance_report import render_html, render_json, render_text

    config = _fixture_config(tmp_path)
    import datetime as dt

    today = dt.date.today()
    settings = compliance_settings(config)
    clean = check_vendor(config.vendor("good"), config, settings, today=today)
    (c,) = [c for c in clean.checks if c.id == "config.never_proxy"]
    assert c.result == PASS
    v = _vendor(config, never_proxy=("media.good-research.test", "*.cdn.good-research.test"))
    vr = check_vendor(v, config, settings, today=today)
    (c,) = [c for c in vr.checks if c.id == "config.never_proxy"]
    assert (c.severity, c.result) == (WARNING, FAIL)
    assert vr.verdict == PASSED
    from proxy.compliance import Report

    report = Report(generated=dt.datetime.now(dt.UTC), vendors=[vr])
    for out in (render_text(report), render_html(report)):
        assert "config.never_proxy" in out
        assert "media.good-research.test" in out and "*.cdn.good-research.test" in out
    (j,) = [
        c
        for c in json.loads(render_json(report))["vendors"][0]["checks"]
        if c["id"] == "config.never_proxy"
    ]
    assert j["severity"] == "warning" and j["result"] == "fail"
    assert "media.good-research.test" in j["evidence"]
