"""From a mutation sweep (1 December 2026) of the statistics report and the live compliance
checks: small-cell suppression by people (a cell or total made by min_cell - 1 sessions), a zero
used as a complement, whole-period rules at a month's last day and a --to that cuts a month, the
last day of a Redis range, the hourly binding of the shared distinct-session sets, and live
findings (a redirect off the proxy, a Referer carrying a path, a vendor Set-Cookie reaching the
browser) that no test made fail."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import redis

from proxy.cli import config_checks
from proxy.compliance import FAIL, PASS, WARNING
from proxy.compliance_live_checks import (
    Step,
    Visit,
    cookie_check,
    header_check,
    linkable_check,
    redirect_check,
)
from proxy.compliance_stub import PREFIX, VENDOR_COOKIE, Sent, mapped_url
from proxy.config import Config, VendorConfig, load_config
from proxy.stats import LOGINS_SUCCESS, REQUESTS, SESSIONS_STARTED, UNIQUE_SESSIONS
from proxy.stats_report import ALL_VENDORS, TOTAL, Report, build_report, render_json
from proxy.stats_store import REDIS_SEEN_PREFIX, RedisStatsStore, Row, _in_range, redis_rows_sync
from proxy.stats_suppression import protect_line
from tests.test_compliance import materialise

MIN = 10
JUNE = dt.date(2026, 6, 10)


def _rows(day: dt.date, **per_vendor: tuple[int, int]) -> list[Row]:
    """vendor=(requests, sessions started) on `day`, and as many sign-ins as sessions."""
    out = [Row(day, "", LOGINS_SUCCESS, sum(s for _, s in per_vendor.values()))]
    for vendor, (requests, sessions) in per_vendor.items():
        out += [Row(day, vendor, REQUESTS, requests), Row(day, vendor, SESSIONS_STARTED, sessions)]
    return out


def _month_report(rows: list[Row], **kw: object) -> Report:
    args: dict[str, object] = {
        "period": "month",
        "date_from": None,
        "date_to": None,
        "min_cell": MIN,
        "today": dt.date(2026, 8, 1),
    }
    args.update(kw)
    return build_report(rows, **args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- suppression


def test_a_zero_is_never_hidden_as_the_complement_of_a_small_cell() -> None:
    """kills: proxy/stats_suppression.py:protect_line — `value > 0` → `value >= 0` in `shown`.

    A vendor with no use this month (0) beside one with 3 uses: hiding the 0 as the complement
    would leave the 3 next to a hidden 0 that readers know is at least 1, so the two hidden cells
    add up to a published difference (23 - 20 = 3) that pins the small count. The complement must
    be the smallest published non-zero count."""
    assert protect_line([0, 3, 20, 23], MIN) == {1, 2}


def test_a_large_count_made_by_min_cell_minus_one_sessions_is_hidden() -> None:
    """kills: proxy/stats_report.py:_publish — `n < min_cell` → `n < min_cell - 1` (people).

    Nine patrons' sessions (min_cell 10) made 500 requests at one database: the count is large
    but it is nine people's, so the month's cell is hidden, as is its complement."""
    rows = _rows(JUNE, alpha=(500, MIN - 1), beta=(800, 60))
    report = _month_report(rows)
    assert report.cell(REQUESTS, "alpha", "2026-06").suppressed
    assert report.cell(REQUESTS, "beta", "2026-06").suppressed
    assert report.cell(REQUESTS, "alpha", TOTAL).suppressed


def test_an_all_vendors_total_made_by_min_cell_minus_one_sessions_is_hidden() -> None:
    """kills: proxy/stats_report.py:_publish — `behind_total < min_cell` → `< min_cell - 1`.

    Two databases, 4 and 5 sessions (9 patrons in all, min_cell 10), each 300 requests: both
    vendor cells are hidden, and the month's all-vendors total (600) is still nine people's
    requests, so it must be hidden too, not published as a sum over hidden cells."""
    rows = _rows(JUNE, alpha=(300, 4), beta=(300, 5))
    report = _month_report(rows)
    assert report.cell(REQUESTS, ALL_VENDORS, "2026-06").suppressed
    assert report.cell(REQUESTS, ALL_VENDORS, TOTAL).suppressed


# --------------------------------------------------------------------------- whole periods


def test_a_month_whose_last_day_is_today_is_still_running_and_left_out() -> None:
    """kills: proxy/stats_report.py:_periods — `last >= today` → `last > today`.

    Run on June 30 (UTC), June is still running: its counts will grow before midnight, and a later
    report of June would differ from this one (subtraction). It is left out and said so."""
    rows = _rows(dt.date(2026, 5, 10), alpha=(500, 50)) + _rows(JUNE, alpha=(500, 50))
    report = _month_report(rows, today=dt.date(2026, 6, 30))
    assert report.periods == ("2026-05",)
    assert any("2026-06 is left out" in n for n in report.notes)


def test_a_month_cut_by_to_is_left_out_not_published_as_a_whole_month() -> None:
    """kills: proxy/stats_report.py:_periods — `... or (date_to and last > date_to)` dropped.

    `--to 2026-06-15` cuts June: half a month published as June would differ from the whole June
    published later. Only whole months are shown, and the note says why June is missing."""
    rows = _rows(dt.date(2026, 5, 10), alpha=(500, 50)) + _rows(JUNE, alpha=(500, 50))
    report = _month_report(rows, date_to=dt.date(2026, 6, 15))
    assert report.periods == ("2026-05",)
    assert any("--from/--to cut it" in n for n in report.notes)


def test_a_day_report_to_today_says_today_is_left_out() -> None:
    """kills: proxy/stats_report.py:_periods — `date_to >= today` → `date_to > today`.

    Staff asking for days up to today get the days up to yesterday, and the header must say
    that today was left out (not silently a day short)."""
    today = dt.date(2026, 6, 12)
    report = build_report(
        _rows(JUNE, alpha=(500, 50)),
        period="day",
        date_from=JUNE,
        date_to=today,
        min_cell=MIN,
        today=today,
    )
    assert report.periods == ("2026-06-10", "2026-06-11")
    assert any("2026-06-12 (today, UTC) is left out" in n for n in report.notes)


# --------------------------------------------------------------------------- Redis store


def test_a_redis_range_includes_its_last_day(redis_url: str) -> None:
    """kills: proxy/stats_store.py:_in_range — `day <= date_to` → `day < date_to`.

    `stats --to 2026-06-30` with counts in Redis must read June 30's hash: without it, June would
    be published short of its last day's use."""
    assert _in_range("weston:stats:2026-06-30", None, dt.date(2026, 6, 30))
    assert _in_range("weston:stats:2026-06-01", dt.date(2026, 6, 1), None)
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset("weston:stats:2026-06-30", "alpha|requests", 7)
    finally:
        client.close()
    rows = redis_rows_sync(redis_url, None, dt.date(2026, 6, 30))
    assert rows == [Row(dt.date(2026, 6, 30), "alpha", "requests", 7)]


async def test_a_sessions_digest_differs_from_hour_to_hour_in_shared_redis(redis_url: str) -> None:
    """kills: proxy/stats_store.py:RedisStatsStore.add — `_digest(f"{hour}|{t}")` →
    `_digest(f"{t}")`.

    The hourly sets of distinct sessions sit in Redis for two hours: if one session's member were
    the same in every hour's set, anyone reading Redis could follow one patron's session from
    hour to hour and vendor to vendor (P5). Each hour's member must be bound to that hour."""
    store = RedisStatsStore(redis_url, seen_key=b"k" * 32)
    try:
        await store.add(
            {},
            {
                ("2026-06-10T09", "alpha", UNIQUE_SESSIONS): ["tok-one-session"],
                ("2026-06-10T10", "alpha", UNIQUE_SESSIONS): ["tok-one-session"],
            },
        )
    finally:
        await store.close()
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{REDIS_SEEN_PREFIX}*"))
        assert len(keys) == 2
        a, b = (client.smembers(k) for k in keys)
    finally:
        client.close()
    assert len(a) == len(b) == 1
    assert not a & b
    assert b"tok-one-session" not in a | b


# --------------------------------------------------------------------------- live checks


def _config(tmp_path: Path) -> Config:
    return load_config(materialise(tmp_path / "conf"), extra_checks=config_checks())


def _vendor(config: Config) -> VendorConfig:
    good = config.vendor("good")
    assert good is not None
    return good


def _visit(config: Config, requests: list[Sent], **kw: object) -> Visit:
    args: dict[str, object] = {
        "vendor": _vendor(config),
        "config": config,
        "requests": requests,
        "steps": [Step("search", 0, len(requests))],
        "canaries": [],
        "term": "",
        "redirect_location": "",
        "set_cookies_seen": [],
        "jwks": {},
    }
    args.update(kw)
    return Visit(**args)  # type: ignore[arg-type]


def test_a_vendor_redirect_off_the_proxy_is_a_failure_in_the_report(tmp_path: Path) -> None:
    """kills: proxy/compliance_live_checks.py:redirect_check — `PASS if ok else FAIL` → `PASS`.

    A vendor's redirect whose Location reaches the browser unmapped takes the patron off the
    proxy (straight to the vendor, with their IP); the live run must report it (a warning-level
    failure), and pass only the mapped Location."""
    config = _config(tmp_path)
    vendor = _vendor(config)
    off = redirect_check(_visit(config, [], redirect_location=vendor.origin + "/landing"))
    assert (off.severity, off.result) == (WARNING, FAIL)
    mapped = mapped_url(config, vendor.origin + "/").rstrip("/") + f"{PREFIX}/landing"
    assert redirect_check(_visit(config, [], redirect_location=mapped)).result == PASS


def test_a_referer_carrying_a_path_fails_the_header_check(tmp_path: Path) -> None:
    """kills: proxy/compliance_live_checks.py:header_check — origin regex `[^/?#]+` → `[^?#]+`.

    A Referer cut to the vendor's origin is fine; one that still carries the page path (what the
    patron was reading) must fail the live header check (P3)."""
    config = _config(tmp_path)
    origin = _vendor(config).origin

    def check(referer: str) -> str:
        sent = Sent("h", "GET", "/", (("Referer", referer),), b"")
        return header_check(_visit(config, [sent])).result

    assert check(origin + "/") == PASS
    assert check(origin + "/articles/depression-and-anxiety") == FAIL


def test_a_vendor_set_cookie_reaching_the_browser_fails_cookie_isolation(tmp_path: Path) -> None:
    """kills: proxy/compliance_live_checks.py:cookie_check — `if leaked:` → `if False:`.

    The vendor's cookie came back to the vendor from the proxy's jar (fine), but its Set-Cookie
    also reached the patron's browser: the vendor could then track the browser across sessions,
    so the critical cookie check must fail and say why."""
    config = _config(tmp_path)
    issued = Sent("h", "GET", "/", (), b"", issued_cookie="v1")
    back = Sent("h", "GET", "/next", (("Cookie", f"{VENDOR_COOKIE}=v1"),), b"")
    clean = cookie_check(_visit(config, [issued, back]))
    assert clean.result == PASS, clean.evidence
    leaky = cookie_check(
        _visit(config, [issued, back], set_cookies_seen=[f"{VENDOR_COOKIE}=v1; Path=/"])
    )
    assert leaky.result == FAIL
    assert "Set-Cookie reached the browser" in leaky.evidence


# --------------------------------------------------------------------------- stats CLI


def test_stats_with_from_after_to_is_refused_with_a_usage_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kills: proxy/stats_cli.py:cmd_stats — the `--from is after --to` refusal dropped.

    Staff who swap the two dates must get an error and exit 2, not an empty report and exit 0
    that a script would file as "no use this period"."""
    from proxy.cli import EXIT_USAGE, main

    conf = materialise(tmp_path / "conf")
    status = main(["stats", "--config", str(conf), "--from", "2026-06-30", "--to", "2026-06-01"])
    out, err = capsys.readouterr()
    assert status == EXIT_USAGE
    assert "--from is after --to" in err
    assert out == ""


# --------------------------------------------------------------------------- saved-page cookies


def test_a_cookie_lasting_an_hour_is_lasting_not_a_deletion() -> None:
    """kills: proxy/compliance_cookies.py:_duration — `seconds <= 0` → a larger bound.

    `max-age=3600` keeps the cookie in the patron's browser for an hour after they leave (a
    lasting cookie the report must name); only `max-age=0` or less deletes it."""
    from proxy.compliance_cookies import DELETED, LASTING, cookie_lifetime

    assert cookie_lifetime("vid=abc123; Max-Age=3600; Path=/").kind == LASTING
    assert cookie_lifetime("vid=abc123; Max-Age=86400").kind == LASTING
    assert cookie_lifetime("vid=; Max-Age=0").kind == DELETED


def test_a_cookie_expiring_next_year_is_lasting_not_a_deletion() -> None:
    """kills: proxy/compliance_cookies.py:_until — `when <= now` → `when <= now + 10 years`.

    An `expires` date in the future keeps the cookie; only a date already past deletes it."""
    import email.utils

    from proxy.compliance_cookies import DELETED, LASTING, cookie_lifetime

    now = dt.datetime.now(dt.UTC)
    soon = email.utils.format_datetime(now + dt.timedelta(days=365), usegmt=True)
    past = email.utils.format_datetime(now - dt.timedelta(days=1), usegmt=True)
    assert cookie_lifetime(f"vid=abc123; expires={soon}; path=/").kind == LASTING
    assert cookie_lifetime(f"vid=; expires={past}").kind == DELETED


def test_a_vendor_cookie_that_never_comes_back_fails_cookie_isolation(tmp_path: Path) -> None:
    """kills: proxy/compliance_live_checks.py:cookie_check — `if not returned:` → `if False:`.

    A run in which the vendor's cookie never came back from the proxy's jar proves nothing about
    isolation (and the patron's vendor session would break at every page): the check must fail
    and say so, not pass because nothing was seen."""
    config = _config(tmp_path)
    issued = Sent("h", "GET", "/", (), b"", issued_cookie="v1")
    again = Sent("h", "GET", "/next", (), b"")
    check = cookie_check(_visit(config, [issued, again]))
    assert check.result == FAIL
    assert "did not come back" in check.evidence


def test_an_unlinkability_run_without_the_second_session_fails(tmp_path: Path) -> None:
    """kills: proxy/compliance_live_checks.py:linkable_check — `if not by_session[2]:` → `if False:`.

    Unlinkability (P4) is proven by comparing two sessions of one patron: when the second never
    reached the vendor there is nothing to compare, and the critical check must fail rather than
    pass on an empty intersection."""
    config = _config(tmp_path)
    assert not _vendor(config).releases_pseudonym(dt.date.today())
    a = Sent("h", "GET", "/?q=x", (("X-Session", "abcdef1234567890"),), b"")
    b = Sent("h", "GET", "/?q=y", (("X-Session", "0987654321fedcba"),), b"")
    steps = [Step("first", 0, 1, patron=0, session=0), Step("other", 1, 2, patron=1, session=1)]
    check = linkable_check(_visit(config, [a, b], steps=steps))
    assert check.result == FAIL
    assert "second session never reached" in check.message


def test_a_vendor_used_only_today_is_not_named_in_the_report() -> None:
    """kills: proxy/stats_report.py:build_report — `if label in wanted and r.count:` →
    `if r.count:`.

    One patron used a rarely used database today (still running, left out). The report must not
    list that database at all: a row of zeros for it over the published days tells a reader that
    someone used it outside them, today, when very few did."""
    today = dt.date(2026, 6, 12)
    rows = [
        *_rows(JUNE, alpha=(500, 50)),
        Row(today, "rare", REQUESTS, 1),
        Row(today, "rare", SESSIONS_STARTED, 1),
    ]
    report = build_report(
        rows, period="day", date_from=None, date_to=None, min_cell=MIN, today=today
    )
    assert report.vendors == ("", "alpha")
    assert "rare" not in render_json(report)
