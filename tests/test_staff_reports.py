"""The compliance report and the usage statistics as library staff use them, from a review.

Each test was a defect a staff member checking vendors against the library's privacy terms, or
reporting usage to the library board, ran into: a future confirmation date taken as a pass, an
INCOMPLETE summary pointing at the wrong thing, a stable per-patron value the live run did not
see (now `live.unlinkable`), and a CSV file a spreadsheet could not open.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.compliance import PASS
from proxy.compliance_live import LiveChecker
from proxy.config import Config
from proxy.stats_report import build_report, render_csv
from proxy.stats_store import Row
from proxy.vendors.assertion import AssertionAdapter
from proxy.vendors.base import Outbound
from tests.test_compliance import _shared_vendor_files
from tests.test_compliance_live import by_id
from tests.test_compliance_live import live_config as live_config

# --------------------------------------------------------------------------- compliance


def test_shared_account_history_confirmed_in_the_future_is_not_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in `history_off_checked` (2062 for 2026) is a date nobody can have checked on.
    The report shows the shared account as PASS ("confirmed off", "-4xx months ago") for the next
    36 years and exits 0, so the yearly re-confirmation the docs promise never comes due: one
    patron's search history at the vendor stays visible to the next and the nightly cron is
    silent. A date after today should be unknown (exit 3) or refused by check-config."""
    future = (dt.date.today() + dt.timedelta(days=365 * 36)).isoformat()
    cfg = _shared_vendor_files(tmp_path, future)
    code = main(["compliance", "--config", str(cfg)])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "shared_account.history" in x)
    assert code != 0 and not line.lstrip().startswith("pass"), (code, line)


def test_incomplete_summary_does_not_blame_the_contract_entry_for_a_shared_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shared-login vendor whose contract entry is complete, but whose history confirmation is
    stale, is INCOMPLETE. The overall line (text and HTML) tells staff "a required term is not
    recorded in the contract entry", so they go through the [contract] table, find nothing
    missing, and do not re-check the vendor's admin, which is what is actually due."""
    stale = (dt.date.today() - dt.timedelta(days=800)).isoformat()
    cfg = _shared_vendor_files(tmp_path, stale)
    assert main(["compliance", "--config", str(cfg)]) == 3
    overall = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("overall:"))
    assert "not recorded in the contract entry" not in overall, overall


class StablePseudonymInUrlAdapter(AssertionAdapter):
    """TEST ONLY: an anonymous-release vendor is sent a stable per-patron id in the query
    string, keyed so it matches none of the detector's encodings (not md5/sha of a canary)."""

    async def authorize(self, out: Outbound) -> None:
        await super().authorize(out)
        tag = hmac.new(b"vendor-side", out.session.patron_key.encode(), hashlib.sha256)
        out.url = out.url.update_query(visitor=tag.hexdigest()[:20])


async def test_live_run_passes_an_anonymous_vendor_that_gets_a_stable_patron_id(
    live_config: Config,
) -> None:
    """P4: by default a vendor cannot link two visits of one patron. The live run signs in two
    canary patrons and revisits with the first, so it has what it needs to see that patron 1's
    requests all carry one value patron 2's never do. Today every live check passes: staff see
    the anonymous vendor reported compliant while it receives a stable pseudonym it has no
    contract for (the same as an unpermitted `sub`)."""
    results = await LiveChecker(
        live_config, adapters={"assertion": StablePseudonymInUrlAdapter}
    ).run(["anon"])
    checks = by_id(results, "anon")
    assert any(c.result != PASS for c in checks.values()), {
        k: (c.result, c.evidence) for k, c in checks.items()
    }


# --------------------------------------------------------------------------- statistics


def test_stats_csv_is_one_table_a_spreadsheet_can_open() -> None:
    """`stats --format csv > usage.csv` is what staff hand to the board's spreadsheet. The file
    starts with unquoted "# ..." note lines, one of which has a comma in it ("from 1 to 9, or a
    larger count"), so a CSV reader (Excel, LibreOffice, csv.DictReader) takes the first note as
    the header row and splits the suppression note over two columns; the real header
    (vendor, period, ...) is a data row further down. Every record of a CSV file should have the
    header's fields (RFC 4180 §2.4), the header first."""
    today = dt.date(2026, 6, 10)
    rows = [
        Row(dt.date(2026, 6, 1), "ebsco", "sessions_started", 40),
        Row(dt.date(2026, 6, 1), "ebsco", "requests", 400),
        Row(dt.date(2026, 6, 1), "gale", "sessions_started", 3),
        Row(dt.date(2026, 6, 1), "gale", "requests", 30),
    ]
    report = build_report(
        rows, period="day", date_from=dt.date(2026, 6, 1), date_to=dt.date(2026, 6, 1),
        min_cell=10, today=today,
    )  # fmt: skip
    records = list(csv.reader(io.StringIO(render_csv(report))))
    assert records[0][:2] == ["vendor", "period"], records[0]
    widths = {len(r) for r in records}
    assert widths == {len(records[0])}, widths
