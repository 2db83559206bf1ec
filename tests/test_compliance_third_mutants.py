"""From a third mutation sweep (2 December 2026) of the compliance checks (live checks, saved
pages, the report, the model and settings): each test here was written for a one-line change to
the code that no other test noticed, and fails with it."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import config_checks
from proxy.compliance import (
    CRITICAL,
    FAIL,
    INCOMPLETE,
    PASS,
    PASSED,
    UNKNOWN,
    WARNING,
    Check,
    Report,
    VendorReport,
)
from proxy.config import Config, load_config
from proxy.vendors.assertion import AssertionAdapter
from proxy.vendors.base import Outbound
from tests import test_compliance_mutants
from tests.test_compliance import materialise

config = test_compliance_mutants.config  # the same fixture: the example conf, checks on
_good = test_compliance_mutants._good


def _report(*checks: Check) -> Report:
    return Report(
        dt.datetime(2026, 6, 1, tzinfo=dt.UTC), [VendorReport("v", "Vendor", list(checks))]
    )


# --------------------------------------------------------------------------- the model


def test_an_unknown_warning_leaves_the_vendor_passed() -> None:
    """kills: proxy/compliance_model.py:48 (Check.unresolved) — `self.severity == CRITICAL and`
    dropped.

    Only a critical check that cannot be made makes a vendor incomplete; an unknown warning (a
    page saved without headers, whose cookies cannot be read) is for staff review and must not
    hold the vendor's verdict at INCOMPLETE (the model's documented rule)."""
    report = _report(
        Check("contract.retention", CRITICAL, PASS, "Retention within the limit."),
        Check("page.cookies", WARNING, UNKNOWN, "A page saved without headers."),
    )
    assert report.vendors[0].verdict == PASSED
    assert report.verdict == PASSED
    assert report.to_dict()["passed"] is True


def test_findings_are_listed_once_each_in_order() -> None:
    """kills: proxy/compliance_model.py:63 (Check.of_findings) — `dict.fromkeys(findings)` →
    `findings`.

    A leak the live run sees on every step (the same header on twenty requests) must read once
    in the evidence, in the order first seen, or the one line staff act on drowns in repeats."""
    check = Check.of_findings(
        "live.canary",
        CRITICAL,
        [
            "search: card number in the URL",
            "post: PIN in the body",
            "search: card number in the URL",
        ],
        "A canary reached the vendor.",
        "No canary reached the vendor.",
    )
    assert check.result == FAIL
    assert check.evidence == "search: card number in the URL; post: PIN in the body"


def test_a_clean_check_keeps_the_evidence_of_what_was_compared() -> None:
    """kills: proxy/compliance_model.py:64 (Check.of_findings) — the PASS evidence
    `evidence_if_clean` → `""`.

    A pass must still say what was looked at (how many requests, which canaries), so staff can
    tell a clean run from one that checked nothing."""
    check = Check.of_findings(
        "live.canary", CRITICAL, [], "A canary leaked.", "No canary leaked.", "41 requests checked"
    )
    assert (check.result, check.message, check.evidence) == (
        PASS,
        "No canary leaked.",
        "41 requests checked",
    )


def test_an_incomplete_run_is_not_passed_in_the_json() -> None:
    """kills: proxy/compliance_model.py:93/102 (Report.to_dict) — `"passed": self.passed` (of the
    run, and of a vendor) → `verdict != "failed"`.

    A consumer of the JSON that reads only `passed` must not take a run with an unrecorded
    critical term for a pass: `passed` is true only when the verdict is PASSED."""
    data = _report(
        Check("contract.retention", CRITICAL, UNKNOWN, "Retention is not recorded.")
    ).to_dict()
    assert data["verdict"] == INCOMPLETE
    assert data["passed"] is False
    assert data["vendors"][0]["verdict"] == INCOMPLETE
    assert data["vendors"][0]["passed"] is False


# --------------------------------------------------------------------------- settings


def _settings_config(tmp_path: Path, old: str, new: str) -> Path:
    cfg_path = materialise(tmp_path, ["good"])
    text = cfg_path.read_text()
    assert old in text
    cfg_path.write_text(text.replace(old, new))
    return cfg_path


def test_zero_is_an_accepted_limit(tmp_path: Path) -> None:
    """kills: proxy/compliance_settings.py:68 — `getattr(s, key) < 0` → `<= 0`.

    Zero is a real choice (no warning before a contract ends, no retention allowed at all): only
    a negative number is a mistake, so a config with zeros must load."""
    cfg_path = _settings_config(
        tmp_path, "warn_days_before_expiry = 60", "warn_days_before_expiry = 0"
    )
    config = load_config(cfg_path, extra_checks=config_checks())
    assert config.extra["compliance"]["warn_days_before_expiry"] == 0


def test_a_negative_breach_notice_limit_is_refused_naming_the_key(tmp_path: Path) -> None:
    """kills: proxy/compliance_settings.py:66 — `"max_breach_notice_days"` dropped from the keys
    checked for a negative value.

    A negative limit would fail every contract for a reason nobody could find: check-config must
    name the file and the key."""
    from proxy.errors import ConfigError

    cfg_path = _settings_config(
        tmp_path, "max_breach_notice_days = 30", "max_breach_notice_days = -5"
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg_path, extra_checks=config_checks())
    problems = [p for p in err.value.problems if p.key == "compliance.max_breach_notice_days"]
    assert len(problems) == 1
    assert problems[0].file == str(cfg_path)
    assert "negative" in problems[0].message


# --------------------------------------------------------------------------- the rendered report


def test_an_empty_run_says_no_vendor_was_checked() -> None:
    """kills: proxy/compliance_report.py:24 (_summary) — the `no vendors checked` answer dropped.

    A run that checked nothing (an empty vendors folder, a filter that matched nothing) must not
    read as a clean bill of health for the board."""
    from proxy.compliance_report import render_html, render_text

    report = Report(dt.datetime(2026, 6, 1, tzinfo=dt.UTC), [])
    assert "(no vendors checked)" in render_text(report)
    assert "every critical check passed" not in render_text(report)
    assert "no vendors checked" in render_html(report)


def test_an_incomplete_only_run_does_not_count_failing_vendors() -> None:
    """kills: proxy/compliance_report.py:30 (_summary) — `… fail a critical check"] if failing
    else []` → always that part.

    When no vendor fails, the summary must not open with "0 of 1 vendor(s) fail a critical check":
    it says only what is incomplete."""
    from proxy.compliance_report import render_text

    report = _report(Check("contract.retention", CRITICAL, UNKNOWN, "Retention not recorded."))
    overall = next(x for x in render_text(report).splitlines() if x.startswith("overall:"))
    assert overall.startswith("overall: INCOMPLETE (1 of 1 vendor(s) have a critical check")
    assert "fail a critical check" not in overall


def test_a_long_message_is_wrapped_not_cut() -> None:
    """kills: proxy/compliance_report.py:65 (render_text) — the message's continuation lines
    dropped.

    A finding longer than one line must be read whole in the terminal table; with the mutant
    everything after the first line vanished."""
    from proxy.compliance_report import render_text

    words = [f"word{i:02d}" for i in range(40)]
    report = _report(Check("page.third_party", WARNING, FAIL, " ".join(words)))
    text = render_text(report, width=80)
    assert all(w in text for w in words)


def test_markup_in_findings_is_escaped_in_the_html_report() -> None:
    """kills: proxy/compliance_report.py:119/120 (_vendor_html) — `escape(c.message)` or
    `escape(c.evidence)` → the raw text; and :125 `escape(v.title)` → raw.

    Evidence carries what a vendor chose (a cookie name from its Set-Cookie, a host from its
    page): the HTML report must show it as text, never run it (the report promises no scripts)."""
    from proxy.compliance_report import render_html

    evil = '<script>alert("x")</script>'
    report = Report(
        dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
        [VendorReport("v", f"Vendor {evil}", [Check("page.cookies", WARNING, FAIL, evil, evil)])],
    )
    html = render_html(report)
    assert "<script" not in html
    assert html.count("&lt;script&gt;") == 3


def test_the_html_badge_class_follows_the_verdict() -> None:
    """kills: proxy/compliance_report.py:126 (_vendor_html) — the badge class fixed to `passed`.

    The printed report is read by colour first: a failing vendor's badge must carry the `failed`
    class (red), not the green one."""
    from proxy.compliance_report import render_html

    report = _report(Check("page.trackers", CRITICAL, FAIL, "Tracker on the page."))
    html = render_html(report)
    assert '<span class="badge failed">FAILED</span>' in html
    assert "badge passed" not in html


# --------------------------------------------------------------------------- saved pages


def test_a_page_saved_over_http2_keeps_its_lower_case_set_cookie(tmp_path: Path) -> None:
    """kills: proxy/compliance_pages.py:75 (read_page) — `line.lower().startswith(b"set-cookie:")`
    → `line.startswith(b"Set-Cookie:")`.

    `curl -i` over HTTP/2 (any https vendor today) writes header names in lower case: the
    vendor's lasting cookie must still be listed, not lost so the page reads as setting none."""
    from proxy.compliance_pages import read_page

    saved = tmp_path / "start.http"
    saved.write_bytes(
        b"HTTP/2 200\r\ncontent-type: text/html\r\n"
        b"set-cookie: trk=abc; Max-Age=31536000; Path=/\r\n\r\n<html>hi</html>"
    )
    page = read_page(saved)
    assert page.set_cookies == ("trk=abc; Max-Age=31536000; Path=/",)
    assert page.html == b"<html>hi</html>"


def test_the_final_hop_of_a_redirect_chain_decides_the_body_encoding(tmp_path: Path) -> None:
    """kills: proxy/compliance_pages.py:70 (read_page) — `lines = heads[-1]` → `heads[0]`.

    Saved with `curl -i -L`, the page's own headers are the last block's: a gzip start page
    behind a plain redirect must be decoded and its tracker found, not read as gzip bytes with
    nothing on them."""
    import gzip

    from proxy.compliance_pages import read_page

    html = b'<html><script src="https://www.google-analytics.com/analytics.js"></script></html>'
    saved = tmp_path / "start.http"
    saved.write_bytes(
        b"HTTP/1.1 302 Found\r\nLocation: /home\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n\r\n"
        + gzip.compress(html)
    )
    assert read_page(saved).html == html


def test_a_tracker_entry_does_not_cover_a_host_that_merely_ends_like_it() -> None:
    """kills: proxy/compliance_pages.py:103 (tracker_for) — `host.endswith("." + t)` →
    `host.endswith(t)`.

    A listed domain covers itself and its subdomains; `notgoogle-analytics.com` is someone else,
    and naming it a known tracker would send staff after the wrong company."""
    from proxy.compliance_pages import tracker_for

    listed = ("google-analytics.com",)
    assert tracker_for("ssl.google-analytics.com", listed) == "google-analytics.com"
    assert tracker_for("google-analytics.com", listed) == "google-analytics.com"
    assert tracker_for("notgoogle-analytics.com", listed) is None


def test_linked_data_naming_a_tracker_domain_is_not_reported(config: Config) -> None:
    """kills: proxy/compliance_pages.py:164 (_PageReader.handle_starttag) — `elif kind not in
    _LINKED_DATA:` → `else:`.

    A vendor's schema.org block (`application/ld+json`) names its social profiles as
    identifiers (`sameAs`); the browser never fetches them and no script does in practice. A
    JSON data block a script reads is still searched for listed trackers."""
    from proxy.compliance_pages import page_third_parties

    listed = ("pixel.facebook.com",)
    ld = (
        '<script type="application/ld+json">{"@type": "Library", '
        '"sameAs": "https://pixel.facebook.com/westonresearch"}</script>'
    )
    assert page_third_parties(config, ld.encode(), listed) == []
    data = ld.replace("application/ld+json", "application/json")
    assert page_third_parties(config, data.encode(), listed) == ["pixel.facebook.com"]


def test_prose_after_a_script_is_not_read_as_script(config: Config) -> None:
    """kills: proxy/compliance_pages.py:171 (_PageReader.handle_endtag) — `self._into = None`
    → `pass`.

    Text after `</script>` is page text, not code: a help page quoting an address in prose
    ("we never load 'https://ads.example.net'") loads nothing from it, and reporting it as a
    third party the page refers to sends staff after a host the browser never contacts."""
    from proxy.compliance_pages import page_third_parties

    html = (
        "<p><script>var ready = true;</script> Our privacy notice: this database never "
        "loads 'https://ads.example.net/' or any other advertising host.</p>"
    )
    assert page_third_parties(config, html.encode()) == []
    as_code = "<script>var ad = 'https://ads.example.net/';</script>"
    assert page_third_parties(config, as_code.encode()) == ["ads.example.net"]


def test_third_party_hosts_on_a_shielded_vendor_pass_the_page_check(config: Config) -> None:
    """kills: proxy/compliance_pages.py:257 (check_page) — `FAIL if hosts and not shield` →
    `FAIL if hosts`.

    With the tracker shield on, a third-party font or image on the vendor's page never reaches
    the patron's browser: the check passes and says the shield blocks it. Failing it would
    make every shielded vendor with a web font fail its compliance report."""
    from proxy.compliance_pages import PageSource, check_page

    good = _good(config)
    assert good.third_party != "allow"
    html = b'<link rel="stylesheet" href="https://fonts.example-cdn.net/css?family=Serif">'
    checks = {c.id: c for c in check_page(good, config, PageSource("p.html", html, ()), ())}
    third = checks["page.third_party"]
    assert (third.result, third.severity) == (PASS, WARNING)
    assert "fonts.example-cdn.net: blocked by the tracker shield" in third.evidence
    assert "the shield blocks them" in third.message


# --------------------------------------------------------------------------- the live run


def _live(tmp_path: Path) -> Config:
    from tests.test_compliance_live import write_live_config

    return load_config(write_live_config(tmp_path), extra_checks=config_checks())


class _LandingLeakAdapter(AssertionAdapter):
    """TEST ONLY: sends the patron key in a header, but only on the redirect's landing page."""

    async def authorize(self, out: Outbound) -> None:
        await super().authorize(out)
        if out.url.path.endswith("/landing"):
            out.headers["X-Trace"] = out.session.patron_key


async def test_the_redirect_target_is_visited_and_checked(tmp_path: Path) -> None:
    """kills: proxy/compliance_live.py:218 (VendorRun.visit) — the `redirect target` step never
    taken (`if self.redirect_location.startswith(origin):` → `if False:`).

    The browser follows the vendor's redirect through the proxy; what the proxy sends on that
    request reaches the vendor like any other, so a leak there must fail the canary check."""
    from proxy.compliance_live import LiveChecker

    results = await LiveChecker(_live(tmp_path), adapters={"assertion": _LandingLeakAdapter}).run(
        ["anon"]
    )
    canary = next(c for c in results["anon"] if c.id == "live.canary")
    assert canary.result == FAIL
    assert "redirect target: patron key" in canary.evidence


def test_the_second_patrons_set_cookies_are_handed_to_the_checks(tmp_path: Path) -> None:
    """kills: proxy/compliance_live.py:242 (VendorRun.record) — `set_cookies_seen` of the first
    patron's browser only.

    A vendor cookie that reaches the second patron's browser is as much a leak (a lasting
    identifier outside the proxy's per-session jar) as one reaching the first: both browsers'
    Set-Cookie must reach the cookie check."""
    from types import SimpleNamespace

    from proxy.compliance_live import VendorRun
    from proxy.compliance_live_checks import cookie_check
    from proxy.compliance_stub import VENDOR_COOKIE, CanaryPatron

    live = _live(tmp_path)
    anon = live.vendor("anon")
    assert anon is not None
    patrons = (CanaryPatron.generate(), CanaryPatron.generate())
    recorder: Any = SimpleNamespace(requests=[])
    run = VendorRun(anon, live, None, recorder, patrons, b"s" * 32, {})  # type: ignore[arg-type]
    leaked = f"{VENDOR_COOKIE}=abc123; Path=/; Max-Age=3600"
    run.b.set_cookies_seen.append(leaked)
    visit = run.record()
    assert list(visit.set_cookies_seen) == [leaked]
    check = cookie_check(visit)
    assert check.result == FAIL
    assert "the vendor's Set-Cookie reached the browser" in check.evidence


async def test_the_log_check_reads_what_the_proxy_logged_during_the_run(tmp_path: Path) -> None:
    """kills: proxy/compliance_live.py:126 (LiveChecker.run) — `self.log_stream.seek(logs_before)`
    dropped, so the check reads from the end of the log: nothing, and a pass.

    A patron key written to the proxy's log during the visit must fail live.logs. (The stand-in
    adapter writes to the log stream directly, as a careless log line in the proxy would.)"""
    from proxy.compliance_live import LiveChecker

    logs = io.StringIO()

    class LoggingAdapter(AssertionAdapter):
        async def authorize(self, out: Outbound) -> None:
            await super().authorize(out)
            logs.write(f'{{"event": "forward", "patron": "{out.session.patron_key}"}}\n')

    checker = LiveChecker(_live(tmp_path), adapters={"assertion": LoggingAdapter}, log_stream=logs)
    results = await checker.run(["anon"])
    log = next(c for c in results["anon"] if c.id == "live.logs")
    assert log.result == FAIL
    assert "patron key" in log.evidence


async def test_a_run_that_cannot_complete_is_a_critical_failure(tmp_path: Path) -> None:
    """kills: proxy/compliance_live.py:119 (LiveChecker.run) — the could-not-complete check's
    severity `CRITICAL` → `warning`.

    When the visit breaks off (here: the progress output is a closed pipe, BrokenPipeError, in
    the middle of the visit), nothing was checked: the vendor must fail, never pass."""
    from proxy.compliance_live import LiveChecker

    def progress(text: str) -> None:
        if text == " search":
            raise BrokenPipeError(32, "Broken pipe")

    results = await LiveChecker(_live(tmp_path), progress=progress).run(["anon"])
    (check,) = results["anon"]
    assert (check.id, check.severity, check.result) == ("live.canary", CRITICAL, FAIL)
    assert "BrokenPipeError" in check.evidence
    assert VendorReport("anon", "Anon", results["anon"]).verdict == "failed"


def test_a_page_saved_without_headers_leaves_its_cookies_unknown(
    config: Config, tmp_path: Path
) -> None:
    """kills: proxy/compliance_pages.py:60 (read_page) — plain HTML read with `set_cookies=()`
    (saved with headers, none set) instead of `None` (headers unknown).

    A page saved from the browser's "Save page as" carries no headers: whether the vendor sets a
    lasting cookie cannot be seen, so page.cookies must be UNKNOWN, never a PASS."""
    from proxy.compliance_pages import check_page, read_page

    saved = tmp_path / "start.html"
    saved.write_bytes(b"<!doctype html><html><body>Search our databases</body></html>")
    page = read_page(saved)
    assert page.set_cookies is None
    cookies = next(c for c in check_page(_good(config), config, page, ()) if c.id == "page.cookies")
    assert cookies.result == UNKNOWN
    assert "cannot show its Set-Cookie" in cookies.message
