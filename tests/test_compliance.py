"""Compliance checks: contract and configuration rules, vendor pages, report formats and the CLI.

The vendor fixtures in tests/data/compliance/vendors are templates: `materialise` copies them into a
temporary folder with @RECENT@, @FUTURE@, @PAST@, @SOON@ and @OLD@ turned into dates relative to
today, so they never go stale. `good` keeps every rule; every other fixture breaks the rule(s)
named in BROKEN.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from proxy.cli import config_checks, main
from proxy.compliance import (
    CRITICAL,
    FAIL,
    FAILED,
    INCOMPLETE,
    PASS,
    PASSED,
    UNKNOWN,
    Check,
    PageSource,
    Report,
    check_all,
    check_page,
    load_trackers,
    read_page,
)
from proxy.compliance_report import render_html, render_text
from proxy.config import Config, RewriteRule, SharedLogin, load_config
from proxy.errors import ConfigError
from proxy.rewrite import Rewriter

FIXTURES = Path(__file__).parent / "data" / "compliance"
ROOT = Path(__file__).resolve().parent.parent

# fixture vendor -> the check ids it fails (severity decides the exit status)
BROKEN: dict[str, set[str]] = {
    "expired": {"contract.expired"},
    "expiring": {"contract.expiring"},
    "stale": {"contract.review_overdue"},
    "nopolicy": {"contract.privacy_policy"},
    "hoarder": {"contract.retention"},
    "seller": {"clause.no_sale_of_data"},
    "slowbreach": {"clause.breach_notice_days"},
    "silent": {"clause.law_enforcement_notice"},
    "unbound": {"clause.subprocessors_bound"},
    "keeper": {"clause.deletion_at_termination"},
    "plain": {"transport.https"},
    "noverify": {"transport.tls_verify"},
    "templated": {"config.patron_data_template"},
    "unshielded": {"shield.disabled_without_reason"},
    # The loader refuses pseudonymous release without permission, so the way it goes wrong in a
    # loadable config is a permission under a contract that has ended.
    "pseudo": {"contract.expired", "release.permitted"},
}
WARNING_ONLY = {"expiring", "stale", "nopolicy"}


def materialise(root: Path, vendors: Iterable[str] | None = None) -> Path:
    """Copy the fixture config into `root`, with the chosen vendor templates dated from today."""
    today = dt.date.today()
    dates = {
        "@RECENT@": today - dt.timedelta(days=30),
        "@FUTURE@": today + dt.timedelta(days=365),
        "@PAST@": today - dt.timedelta(days=10),
        "@SOON@": today + dt.timedelta(days=10),
        "@OLD@": today - dt.timedelta(days=3 * 365),
    }
    (root / "vendors").mkdir(parents=True)
    shutil.copy(FIXTURES / "proxy.toml", root / "proxy.toml")
    shutil.copy(FIXTURES / "patrons.toml", root / "patrons.toml")
    wanted = set(vendors) if vendors is not None else None
    for template in sorted((FIXTURES / "vendors").glob("*.toml")):
        if wanted is not None and template.stem not in wanted:
            continue
        text = template.read_text(encoding="utf-8")
        for token, day in dates.items():
            text = text.replace(token, day.isoformat())
        (root / "vendors" / template.name).write_text(text, encoding="utf-8")
    return root / "proxy.toml"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(materialise(tmp_path), extra_checks=config_checks())


def failing(report: Report, vendor_id: str) -> set[str]:
    vendor = next(v for v in report.vendors if v.id == vendor_id)
    return {c.id for c in vendor.checks if c.result == FAIL}


def check_of(report: Report, vendor_id: str, check_id: str) -> Any:
    vendor = next(v for v in report.vendors if v.id == vendor_id)
    return next(c for c in vendor.checks if c.id == check_id)


# --------------------------------------------------------------------------- contract and config


def test_compliant_vendor_passes_every_check(config: Config) -> None:
    """The `good` fixture keeps every rule: nothing fails, nothing is unknown."""
    report = check_all(config, [config.vendor("good")])  # type: ignore[list-item]
    assert report.passed
    assert {c.result for c in report.vendors[0].checks} == {PASS}


@pytest.mark.parametrize(("vendor_id", "expected"), sorted(BROKEN.items()))
def test_each_broken_rule_is_reported_by_its_id(
    config: Config, vendor_id: str, expected: set[str]
) -> None:
    """A fixture that breaks one rule fails exactly that rule's check id."""
    report = check_all(config, config.vendors)
    assert failing(report, vendor_id) == expected


@pytest.mark.parametrize(
    ("connect_to", "result"),
    [
        ("127.0.0.1:8081", PASS),
        ("[::1]:8081", PASS),
        ("localhost:8081", FAIL),  # a name: the hosts file may send it anywhere
        ("192.0.2.10:80", FAIL),
        ("", FAIL),
    ],
)
def test_a_plain_http_vendor_reached_on_this_machine_passes_the_https_check(
    config: Config, connect_to: str, result: str
) -> None:
    """The bundled demo vendor is `http://` at `connect_to = "127.0.0.1:8081"`: its traffic
    never leaves the machine, so the compliance run on the embedded defaults does not report
    a critical "would travel unencrypted" that is not true. The same vendor at a network
    address, at a name (even `localhost`), or resolved by its host still fails; the evidence
    keeps the plain URLs either way."""
    plain = config.vendor("plain")
    assert plain is not None and plain.origin.startswith("http://")
    vendor = dataclasses.replace(plain, connect_to=connect_to)
    report = check_all(config, [vendor])
    check = check_of(report, "plain", "transport.https")
    assert check.result == result
    assert "origin = 'http://search.plain-db.test'" in check.evidence
    if result == PASS:
        assert f"connect_to = {connect_to!r} (loopback" in check.evidence


@pytest.mark.parametrize(("vendor_id", "expected"), sorted(BROKEN.items()))
def test_exit_status_follows_the_severity_of_the_broken_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], vendor_id: str, expected: set[str]
) -> None:
    """Exit 1 when a critical check fails, 0 when only warnings fail."""
    cfg = materialise(tmp_path, ["good", vendor_id])
    code = main(["compliance", "--config", str(cfg), "--vendor", vendor_id])
    out = capsys.readouterr().out
    assert code == (0 if vendor_id in WARNING_ONLY else 1)
    for check_id in expected:
        assert check_id in out


def test_release_pseudonymous_without_permission_fails(config: Config) -> None:
    """Even if a vendor entry skipped the loader, a pseudonym without permission is critical."""
    good = config.vendor("good")
    assert good is not None
    bad = dataclasses.replace(good, release="pseudonymous")
    check = check_of(check_all(config, [bad]), "good", "release.permitted")
    assert (check.severity, check.result) == (CRITICAL, FAIL)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"referer": "https://db.good-research.test/entry?card=^u"}, "referer"),
        ({"start_url": "https://search.good-research.test/?mail=x"}, "start_url"),
        ({"rewrite": (RewriteRule(find="a", replace="user=$user"),)}, "rewrite[0].replace"),
        ({"rewrite": (RewriteRule(find="a", replace="{{ mail }}"),)}, "rewrite[0].replace"),
        (
            {
                "shared_login": SharedLogin(
                    method="form",
                    login_url="https://search.good-research.test/login",
                    extra_fields={"who": "%barcode%"},
                )
            },
            "shared_login.extra_fields.who",
        ),
        ({"rewrite": (RewriteRule(find="a", replace="{entryuuid}"),)}, "rewrite[0].replace"),
    ],
)
def test_patron_data_templates_are_found_in_any_vendor_setting(
    config: Config, change: dict[str, Any], where: str
) -> None:
    """Templates like {uid}, $user, %barcode%, ^u or ?mail= fail config.patron_data_template."""
    good = config.vendor("good")
    assert good is not None
    check = check_of(
        check_all(config, [dataclasses.replace(good, **change)]),
        "good",
        "config.patron_data_template",
    )
    assert check.result == FAIL
    assert where in check.evidence


def test_ordinary_rewrite_rules_are_not_mistaken_for_templates(config: Config) -> None:
    """Script braces and unrelated placeholders in a rewrite rule do not count as patron data."""
    good = config.vendor("good")
    assert good is not None
    rule = RewriteRule(find="x", replace="function(){return {width: 3}} $(document) 100%")
    report = check_all(config, [dataclasses.replace(good, rewrite=(rule,))])
    assert check_of(report, "good", "config.patron_data_template").result == PASS


@pytest.mark.parametrize(
    "template",
    [
        "{{ patron.mail }}",
        "{user.barcode}",
        "{{user.cardnumber}}",
        "${user.barcode}",
        "%user.barcode%",
        "$session.mail",
        '{{ patron["mail"] }}',
        "{{ patron.mail | urlencode }}",
        "{{ patron.id }}",
    ],
)
def test_patron_attributes_on_an_object_path_are_templates(config: Config, template: str) -> None:
    """{{ patron.mail }}, {user.barcode}: a patron attribute reached through an object (or an
    object that is the patron) fails config.patron_data_template, the whole template as evidence."""
    good = config.vendor("good")
    assert good is not None
    rule = RewriteRule("<form ", f"<input type=hidden name=patron value={template}><form ")
    report = check_all(config, [dataclasses.replace(good, rewrite=(rule,))])
    check = check_of(report, "good", "config.patron_data_template")
    assert check.result == FAIL
    assert f"rewrite[0].replace: {template!r}" in check.evidence


def test_object_paths_that_name_no_patron_attribute_are_not_templates(config: Config) -> None:
    """Script and template paths to other things ({{ page.title }}, userAgent) are not patron data."""
    good = config.vendor("good")
    assert good is not None
    rule = RewriteRule("x", "{vendor.title} ${navigator.userAgent} {{ page.title }} ${a || b}")
    report = check_all(config, [dataclasses.replace(good, rewrite=(rule,))])
    assert check_of(report, "good", "config.patron_data_template").result == PASS


def test_an_unrecorded_clause_is_unknown_not_passed(config: Config) -> None:
    """A required clause missing from the contract entry is reported as unknown."""
    good = config.vendor("good")
    assert good is not None
    bare = dataclasses.replace(
        good, contract=dataclasses.replace(good.contract, subprocessors_bound=None)
    )
    check = check_of(check_all(config, [bare]), "good", "clause.subprocessors_bound")
    assert check.result == UNKNOWN


def test_an_unrecorded_critical_term_makes_the_vendor_incomplete_and_a_failure_still_wins(
    config: Config,
) -> None:
    """Unrecorded retention is neither a pass nor a failure: INCOMPLETE, so the run is not passed;
    a vendor that also fails a critical check is FAILED, and the run is as bad as its worst."""
    good, seller = config.vendor("good"), config.vendor("seller")
    assert good is not None and seller is not None
    bare = dataclasses.replace(
        good, contract=dataclasses.replace(good.contract, retention_days=None)
    )
    report = check_all(config, [bare])
    assert (report.vendors[0].verdict, report.verdict, report.passed) == (
        INCOMPLETE, INCOMPLETE, False,
    )  # fmt: skip
    hoarding = dataclasses.replace(
        seller, contract=dataclasses.replace(seller.contract, retention_days=None)
    )
    assert check_all(config, [hoarding]).verdict == FAILED
    assert check_all(config, [bare, seller]).verdict == FAILED
    assert check_all(config, [good, bare]).verdict == INCOMPLETE
    assert check_all(config, [good]).verdict == PASSED


def test_clauses_the_library_does_not_require_are_informational(tmp_path: Path) -> None:
    """With required_clauses = [] a false clause is reported, but it is not a failure."""
    cfg_path = materialise(tmp_path, ["seller"])
    text = cfg_path.read_text().replace("required_clauses = [", "required_clauses = [] #")
    cfg_path.write_text(text)
    config = load_config(cfg_path, extra_checks=config_checks())
    check = check_of(check_all(config, config.vendors), "seller", "clause.no_sale_of_data")
    assert (check.severity, check.result) == ("info", PASS)


def test_wrong_compliance_settings_are_all_reported(tmp_path: Path) -> None:
    """[compliance] mistakes come back together, each with its key."""
    cfg_path = materialise(tmp_path, ["good"])
    text = cfg_path.read_text()
    text = text.replace("max_retention_days = 90", "max_retention_days = -1\nmax_retention = 3")
    text = text.replace('"deletion_at_termination"]', '"deletion_at_termination", "free_lunch"]')
    cfg_path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(cfg_path, extra_checks=config_checks())
    keys = {p.key for p in err.value.problems}
    assert {
        "compliance.max_retention_days",
        "compliance.max_retention",
        "compliance.required_clauses[5]",
    } <= keys


# --------------------------------------------------------------------------- vendor pages


def test_saved_page_tracker_is_reported_and_blocked_by_the_shield(config: Config) -> None:
    """Google Analytics and Tag Manager on a saved page are named, and shown as blocked."""
    good = config.vendor("good")
    assert good is not None
    page = read_page(FIXTURES / "pages" / "tracker.html")
    checks = {c.id: c for c in check_page(good, config, page, load_trackers())}
    trackers = checks["page.trackers"]
    assert trackers.result == PASS
    assert "www.google-analytics.com (listed as google-analytics.com)" in trackers.evidence
    assert "www.googletagmanager.com" in trackers.evidence
    assert "blocked by the tracker shield" in trackers.evidence
    assert "fonts.googleapis.com" in checks["page.third_party"].evidence
    # The vendor's own hosts are proxied, not third parties.
    assert "good-research.test" not in checks["page.third_party"].evidence


def test_shield_policy_leaves_no_way_to_a_tracker_host(config: Config) -> None:
    """The CSP the proxy adds to a shielded vendor page names only the proxy's own hosts."""
    good = config.vendor("good")
    assert good is not None
    csp = Rewriter.from_config(config).shield_csp(good.id, False)
    assert csp is not None
    sources = {s for d in csp.split(";") for s in d.split()[1:]}
    assert all(
        s.startswith("'") or s in ("data:", "blob:") or "proxy.westonlibrary.test" in s
        for s in sources
    )


def test_tracker_on_an_unshielded_vendor_fails(config: Config) -> None:
    """With the shield off (even for a recorded reason), a known tracker would load: critical."""
    good = config.vendor("good")
    assert good is not None
    open_vendor = dataclasses.replace(good, third_party="allow", third_party_reason="maps widget")
    page = read_page(FIXTURES / "pages" / "tracker.html")
    checks = {c.id: c for c in check_page(open_vendor, config, page, load_trackers())}
    assert (checks["page.trackers"].severity, checks["page.trackers"].result) == (CRITICAL, FAIL)
    assert "would load" in checks["page.trackers"].evidence


def test_script_cookies_are_listed_with_their_lifetime(config: Config) -> None:
    """A document.cookie write with max-age is a lasting browser cookie."""
    good = config.vendor("good")
    assert good is not None
    page = read_page(FIXTURES / "pages" / "tracker.html")
    cookies = next(c for c in check_page(good, config, page, ()) if c.id == "page.cookies")
    assert cookies.result == FAIL
    assert "vendor_layout (365 days, set by script" in cookies.evidence


def test_saved_response_headers_give_set_cookie_lifetimes(config: Config) -> None:
    """A page saved with `curl -i` lists its Set-Cookie headers with lifetimes."""
    good = config.vendor("good")
    assert good is not None
    page = read_page(FIXTURES / "pages" / "response.http")
    assert page.set_cookies is not None and len(page.set_cookies) == 2
    cookies = next(c for c in check_page(good, config, page, ()) if c.id == "page.cookies")
    assert cookies.result == PASS
    assert "JSESSIONID (session" in cookies.evidence
    assert "visitor_id (730 days" in cookies.evidence


def test_a_page_without_headers_has_unknown_cookies(config: Config) -> None:
    good = config.vendor("good")
    assert good is not None
    page = PageSource("bare.html", b"<html><body>hello</body></html>", None)
    cookies = next(c for c in check_page(good, config, page, ()) if c.id == "page.cookies")
    assert cookies.result == UNKNOWN


def page_cookies(config: Config, script: str) -> Check:
    """page.cookies of a start page saved with its headers (no Set-Cookie) that runs `script`."""
    good = config.vendor("good")
    assert good is not None
    html = f"<html><head><script>var id = 'x';\n{script}\n</script></head></html>"
    page = PageSource("start.http", html.encode(), ())
    return next(c for c in check_page(good, config, page, ()) if c.id == "page.cookies")


# The usual ways a script writes a lasting cookie, and what the evidence says about each.
LASTING_SCRIPT_COOKIES = {
    "computed value": (
        'document.cookie = "visitor=" + id + "; max-age=31536000; path=/";',
        "visitor (365 days, set by script",
    ),
    "expiry appended": (
        "document.cookie = 'visitor=' + id + '; expires=' + d.toUTCString();",
        "visitor (expiry date worked out by the script, set by script",
    ),
    "all computed": (
        'document.cookie = name + "=" + value + ";expires=" + date.toUTCString() + ";path=/";',
        "(computed) (expiry date worked out by the script, set by script",
    ),
    "template literal": (
        "document.cookie = `visitor=${id}; max-age=${60 * 60 * 24 * 365}`;",
        "visitor (max-age worked out by the script, set by script",
    ),
    "over two lines": (
        'document.cookie = "visitor=" + id +\n    "; max-age=" + 31536000;',
        "visitor (365 days, set by script",
    ),
    "js-cookie": ("Cookies.set('visitor', id, { expires: 365 });", "visitor (365 days, set by"),
    "Cookie Store": (
        "cookieStore.set({ name: 'visitor', value: id, expires: Date.now() + 864e5 });",
        "visitor (expires set by the script, set by script",
    ),
}


@pytest.mark.parametrize("idiom", sorted(LASTING_SCRIPT_COOKIES))
def test_a_script_cookie_with_a_lifetime_anywhere_in_its_statement_fails(
    config: Config, idiom: str
) -> None:
    """max-age/expires after a computed part, or computed itself, still makes a lasting cookie."""
    script, evidence = LASTING_SCRIPT_COOKIES[idiom]
    cookies = page_cookies(config, script)
    assert cookies.result == FAIL
    assert evidence in cookies.evidence


@pytest.mark.parametrize(
    "script",
    [
        "document.cookie = cookie;",
        'document.cookie = name + "=" + value + expires + "; path=/";',
        "Cookies.set('visitor', id, options);",
    ],
)
def test_a_script_cookie_whose_lifetime_is_computed_needs_review(
    config: Config, script: str
) -> None:
    """A lifetime that may sit in a computed part is unknown, never taken for a session cookie."""
    cookies = page_cookies(config, script)
    assert cookies.result == UNKNOWN
    assert "read the script" in cookies.message
    assert "lifetime worked out by the script: needs review" in cookies.evidence


@pytest.mark.parametrize(
    "script",
    [
        'document.cookie = "lang=en; path=/";',
        'document.cookie = "lang=" + lang + "; path=/; SameSite=Lax";',
        "document.cookie = `lang=${encodeURIComponent(lang)}; path=/`;",
        'document.cookie = "old=; max-age=0; path=/";',
        "document.cookie = name + '=; expires=Thu, 01 Jan 1970 00:00:01 GMT; path=/';",
        'document.cookie = "lang=en"; var note = "; max-age=31536000";',
        'if (document.cookie == "") { Cookies.get("lang"); $.cookie("lang"); }',
    ],
)
def test_session_cookies_deletions_and_reads_pass(config: Config, script: str) -> None:
    """A session cookie, a cookie being deleted, a later statement or a read is no lasting cookie."""
    assert page_cookies(config, script).result == PASS


def test_tracker_list_is_dated_and_says_how_to_refresh() -> None:
    text = (ROOT / "proxy" / "data" / "trackers.txt").read_text()
    header = text.split("\n\n", 1)[0]
    assert "Dated:" in header and "How to refresh" in header
    assert {"google-analytics.com", "doubleclick.net", "nr-data.net"} <= set(load_trackers())


# --------------------------------------------------------------------------- report formats

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["passed", "verdict", "generated", "vendors"],
    "properties": {
        "passed": {"type": "boolean"},
        "verdict": {"enum": ["passed", "failed", "incomplete"]},
        "generated": {"type": "string", "format": "date-time"},
        "vendors": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "title", "passed", "verdict", "checks"],
                "properties": {
                    "id": {"type": "string"},
                    "title": {"type": "string"},
                    "passed": {"type": "boolean"},
                    "verdict": {"enum": ["passed", "failed", "incomplete"]},
                    "checks": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["id", "severity", "result", "message", "evidence"],
                            "properties": {
                                "id": {"type": "string", "pattern": r"^[a-z_]+\.[a-z_]+$"},
                                "severity": {"enum": ["critical", "warning", "info"]},
                                "result": {"enum": ["pass", "fail", "unknown"]},
                                "message": {"type": "string", "minLength": 1},
                                "evidence": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_json_output_has_the_documented_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--format json` validates against the documented shape, and says which vendors failed."""
    cfg = materialise(tmp_path)
    page = f"good={FIXTURES / 'pages' / 'tracker.html'}"
    assert main(["compliance", "--config", str(cfg), "--format", "json", "--page", page]) == 1
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, SCHEMA, format_checker=jsonschema.FormatChecker())
    dt.datetime.fromisoformat(data["generated"])
    verdicts = {v["id"]: v["passed"] for v in data["vendors"]}
    assert verdicts["good"] and not verdicts["seller"] and verdicts["expiring"]
    assert data["passed"] is False


def test_text_output_is_a_table_with_every_check_id(config: Config) -> None:
    report = check_all(config, [config.vendor("hoarder")])  # type: ignore[list-item]
    text = render_text(report, library="Weston Public Library")
    assert "overall: FAILED" in text
    assert "RESULT  SEVERITY" in text
    row = next(line for line in text.splitlines() if "contract.retention" in line)
    assert row.split()[:3] == ["FAIL", "critical", "contract.retention"]
    assert "evidence: contract.retention_days = 400" in text


async def test_html_report_is_self_contained_and_opens_in_chromium(
    config: Config, tmp_path: Path
) -> None:
    """The HTML report loads with no console errors and no request beyond the file itself."""
    from playwright.async_api import async_playwright

    report = check_all(config, config.vendors)
    report.vendors[0].checks[0] = dataclasses.replace(
        report.vendors[0].checks[0], evidence="<script>alert(1)</script> & 'quotes'"
    )
    html = render_html(report, library="Weston Public Library")
    assert "<script" not in html.lower()
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    errors: list[str] = []
    requests: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            headless=True,
        )
        try:
            page = await browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(path.as_uri())
            assert await page.text_content("#overall") == "FAILED"
            assert await page.locator("section").count() == len(report.vendors)
            evidence = await page.locator(".evidence").first.text_content()
            assert evidence == "<script>alert(1)</script> & 'quotes'"
            pdf = await page.pdf()
            assert pdf.startswith(b"%PDF")
        finally:
            await browser.close()
    assert errors == []
    assert requests == [path.as_uri()]


# --------------------------------------------------------------------------- the CLI as staff run it


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "compliance", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_cli_exit_0_for_a_compliant_vendor(tmp_path: Path) -> None:
    r = run_cli("--config", str(materialise(tmp_path, ["good"])))
    assert r.returncode == 0, r.stderr
    assert "overall: PASSED" in r.stdout


def test_cli_exit_1_and_html_file_when_a_critical_check_fails(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    cfg = materialise(tmp_path / "conf", ["good", "seller"])
    r = run_cli("--config", str(cfg), "--format", "html", "--out", str(out))
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    assert "clause.no_sale_of_data" in out.read_text()


def _bare_contract_config(root: Path, contract: str) -> Path:
    """The fixture config with one vendor, "bare", whose [contract] holds only `contract`."""
    (root / "vendors").mkdir(parents=True)
    shutil.copy(FIXTURES / "proxy.toml", root / "proxy.toml")
    shutil.copy(FIXTURES / "patrons.toml", root / "patrons.toml")
    (root / "vendors" / "bare.toml").write_text(
        textwrap.dedent(
            """\
            id = "bare"
            title = "Bare Contract Databases"
            origin = "https://search.bare.test"
            hosts = ["search.bare.test"]
            auth = "assertion"

            [contract]
            """
        )
        + textwrap.dedent(contract)
    )
    return root / "proxy.toml"


def test_compliance_exit_status_is_not_0_when_critical_terms_are_unrecorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A vendor whose contract entry records only its dates and policy (the usual state of a
    vendor just converted with import-ezproxy) has the critical retention check and all five
    required clauses "unknown": the run is not "passed" and exits non-zero, so a nightly cron job
    that alerts on a non-zero exit tells staff. (An unknown is never silently counted as a pass.)"""
    expires = (dt.date.today() + dt.timedelta(days=365)).isoformat()
    reviewed = (dt.date.today() - dt.timedelta(days=30)).isoformat()
    cfg = _bare_contract_config(
        tmp_path,
        f"""\
        privacy_policy_url = "https://www.bare.test/privacy"
        reviewed = {reviewed}
        expires = {expires}
        """,
    )
    code = main(["compliance", "--config", str(cfg), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    unknown_critical = [
        c["id"]
        for c in doc["vendors"][0]["checks"]
        if c["severity"] == "critical" and c["result"] == "unknown"
    ]
    assert "contract.retention" in unknown_critical
    assert len(unknown_critical) == 6
    assert (code, doc["passed"]) != (0, True), (
        f"exit {code}, passed={doc['passed']} with critical checks unknown: {unknown_critical}"
    )


def test_cli_exit_3_and_incomplete_in_every_format_when_a_critical_term_is_unrecorded(
    tmp_path: Path,
) -> None:
    """Exit 3 (not 1: nothing failed) and INCOMPLETE on the overall line of text, JSON and HTML,
    naming the unrecorded term as the reason."""
    cfg = materialise(tmp_path / "conf", ["good"])
    vendor = cfg.parent / "vendors" / "good.toml"
    vendor.write_text(vendor.read_text().replace("retention_days = 30\n", ""))
    text = run_cli("--config", str(cfg))
    assert text.returncode == 3, text.stderr
    assert "overall: INCOMPLETE" in text.stdout and "not recorded" in text.stdout
    assert "good — Good Research Databases: INCOMPLETE" in text.stdout
    as_json = run_cli("--config", str(cfg), "--format", "json")
    assert as_json.returncode == 3
    doc = json.loads(as_json.stdout)
    assert (doc["passed"], doc["verdict"], doc["vendors"][0]["verdict"]) == (
        False, INCOMPLETE, INCOMPLETE,
    )  # fmt: skip
    out = tmp_path / "report.html"
    as_html = run_cli("--config", str(cfg), "--format", "html", "--out", str(out))
    assert as_html.returncode == 3
    assert '<span class="badge incomplete" id="overall">INCOMPLETE</span>' in out.read_text()


def test_cli_exit_1_when_a_critical_check_fails_and_another_is_unrecorded(tmp_path: Path) -> None:
    cfg = materialise(tmp_path / "conf", ["good", "seller"])
    vendor = cfg.parent / "vendors" / "good.toml"
    vendor.write_text(vendor.read_text().replace("retention_days = 30\n", ""))
    r = run_cli("--config", str(cfg))
    assert r.returncode == 1, r.stderr
    assert "overall: FAILED (1 of 2 vendor(s) fail a critical check; 1 of 2" in r.stdout


def test_cli_help_describes_every_exit_status() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "proxy", "compliance", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode == 0
    help_text = " ".join(r.stdout.split("exit status:")[1].split())
    for status in ("0 every critical", "1 a critical check failed", "3 no critical", "2 usage"):
        assert status in help_text


@pytest.mark.parametrize(
    "args",
    [
        ["--vendor", "nosuchvendor"],
        ["--page", "good"],
        ["--page", "good=/nonexistent/page.html"],
        ["--page", "nosuchvendor=README.md"],
        ["--format", "pdf"],
    ],
)
def test_cli_exit_2_on_usage_errors(tmp_path: Path, args: list[str]) -> None:
    r = run_cli("--config", str(materialise(tmp_path, ["good"])), *args)
    assert r.returncode == 2
    assert r.stderr


def test_cli_exit_2_on_a_config_error(tmp_path: Path) -> None:
    cfg = materialise(tmp_path, ["good"])
    cfg.write_text(cfg.read_text().replace("max_months_since_review = 12", "max_months = 12"))
    r = run_cli("--config", str(cfg))
    assert r.returncode == 2
    assert "compliance.max_months" in r.stderr


# --------------------------------------------------------------------------- shared accounts


def _shared(config: Config, checked: dt.date | None) -> Any:
    good = config.vendor("good")
    assert good is not None
    account = SharedLogin(method="basic", history_off_checked=checked)
    return dataclasses.replace(good, auth="shared-login", shared_login=account)


def test_a_shared_account_without_history_confirmed_off_is_incomplete(config: Config) -> None:
    """One account for every patron: the vendor's per-account history would show one patron's
    searches to the next, so the run cannot pass until staff record that it is off."""
    report = check_all(config, [_shared(config, None)])
    check = check_of(report, "good", "shared_account.history")
    assert (check.severity, check.result) == (CRITICAL, UNKNOWN)
    assert "history_off_checked = not set" in check.evidence
    assert report.verdict == INCOMPLETE


def test_a_shared_account_confirmed_recently_passes(config: Config) -> None:
    checked = dt.date.today() - dt.timedelta(days=40)
    report = check_all(config, [_shared(config, checked)])
    check = check_of(report, "good", "shared_account.history")
    assert (check.severity, check.result) == (CRITICAL, PASS)
    assert checked.isoformat() in check.evidence
    assert report.passed


def test_a_shared_account_confirmed_too_long_ago_must_be_confirmed_again(config: Config) -> None:
    """A platform update can turn history back on: a confirmation older than the review period
    (max_months_since_review, 12 by default) no longer counts."""
    checked = dt.date.today() - dt.timedelta(days=400)
    report = check_all(config, [_shared(config, checked)])
    check = check_of(report, "good", "shared_account.history")
    assert (check.severity, check.result) == (CRITICAL, UNKNOWN)
    months = int(check.evidence.split("(")[1].split(" months ago")[0])
    assert months >= 12
    assert report.verdict == INCOMPLETE


def test_a_vendor_without_a_shared_account_needs_no_confirmation(config: Config) -> None:
    good = config.vendor("good")
    assert good is not None
    check = check_of(check_all(config, [good]), "good", "shared_account.history")
    assert check.result == PASS
    assert check.severity != CRITICAL


def _shared_vendor_files(root: Path, checked: str) -> Path:
    cfg = materialise(root, ["good"])
    secrets = root / "vendors" / "secrets"
    secrets.mkdir()
    for name, value in (("u", "library-account"), ("p", "synthetic-password")):
        (secrets / name).write_text(value)
        (secrets / name).chmod(0o600)
    text = (root / "vendors" / "good.toml").read_text()
    text = text.replace('auth = "assertion"', 'auth = "shared-login"')
    text = text.replace(
        "[contract]",
        '[shared_login]\nmethod = "basic"\nusername_file = "secrets/u"\n'
        f'password_file = "secrets/p"\nhistory_off_checked = {checked}\n\n[contract]',
    )
    (root / "vendors" / "good.toml").write_text(text)
    return cfg


def test_the_confirmation_is_read_from_the_vendor_file_and_the_cli_exits_3_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recent = (dt.date.today() - dt.timedelta(days=10)).isoformat()
    cfg = _shared_vendor_files(tmp_path / "recent", recent)
    assert main(["compliance", "--config", str(cfg)]) == 0
    assert f"history_off_checked = {recent}" in capsys.readouterr().out
    stale = (dt.date.today() - dt.timedelta(days=800)).isoformat()
    cfg = _shared_vendor_files(tmp_path / "stale", stale)
    assert main(["compliance", "--config", str(cfg)]) == 3
    assert "shared_account.history" in capsys.readouterr().out


def test_a_confirmation_that_is_not_a_date_names_the_file_and_key(tmp_path: Path) -> None:
    cfg = _shared_vendor_files(tmp_path, '"last spring"')
    with pytest.raises(ConfigError) as exc:
        load_config(cfg, extra_checks=config_checks())
    assert "good.toml" in str(exc.value)
    assert "shared_login.history_off_checked" in str(exc.value)
