"""Render a compliance `Report` as a terminal table, the documented JSON, or a printable HTML page.

The HTML is one self-contained file (inline CSS, no scripts, no external assets) so staff can
e-mail it, print it for a board packet, or open it on a machine without network access.
"""

from __future__ import annotations

import json
import textwrap
from html import escape

from proxy.compliance import FAIL, FAILED, INCOMPLETE, PASS, Check, Report, VendorReport

FORMATS = ("text", "json", "html")


def _verdict(verdict: str) -> str:
    return verdict.upper()  # PASSED, FAILED or INCOMPLETE


def _summary(report: Report) -> str:
    if not report.vendors:
        return "no vendors checked"
    n = len(report.vendors)
    failing = sum(v.verdict == FAILED for v in report.vendors)
    incomplete = sum(v.verdict == INCOMPLETE for v in report.vendors)
    if not failing and not incomplete:
        return f"every critical check passed for {n} vendor(s)"
    parts = [f"{failing} of {n} vendor(s) fail a critical check"] if failing else []
    if incomplete:
        parts.append(
            f"{incomplete} of {n} vendor(s) have a critical check unknown: something the library "
            "requires is not recorded, or not confirmed recently enough (see each vendor's "
            "UNKNOWN checks)"
        )
    return "; ".join(parts)


def _counts(checks: list[Check]) -> str:
    n = {r: sum(1 for c in checks if c.result == r) for r in (PASS, FAIL, "unknown")}
    return f"{n[PASS]} pass, {n[FAIL]} fail, {n['unknown']} unknown"


def render_text(report: Report, *, library: str = "", width: int = 100) -> str:
    """A readable table per vendor; evidence on an indented line under each check."""
    title = f"{library} — vendor compliance report" if library else "Vendor compliance report"
    lines = [
        title,
        f"generated {report.generated.isoformat(timespec='seconds')}",
        f"overall: {_verdict(report.verdict)} ({_summary(report)})",
        "",
    ]
    for v in report.vendors:
        id_width = max((len(c.id) for c in v.checks), default=10)
        lines.append(f"{v.id} — {v.title}: {_verdict(v.verdict)} ({_counts(v.checks)})")
        lines.append(f"  {'RESULT':<8}{'SEVERITY':<10}{'CHECK':<{id_width + 2}}MESSAGE")
        for c in v.checks:
            mark = c.result.upper() if c.result != PASS else "pass"
            head = f"  {mark:<8}{c.severity:<10}{c.id:<{id_width + 2}}"
            message = textwrap.wrap(
                c.message, max(30, width - len(head)), break_on_hyphens=False
            ) or [""]
            lines.append(head + message[0])
            lines += [" " * len(head) + more for more in message[1:]]
            if c.evidence:
                lines += textwrap.wrap(
                    c.evidence,
                    max(30, width - 4),
                    initial_indent="      evidence: ",
                    subsequent_indent="                ",
                    break_on_hyphens=False,
                    break_long_words=False,
                )
        lines.append("")
    return "\n".join(lines)


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


_CSS = """
body { font: 11pt/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b;
       margin: 2rem auto; max-width: 62rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .4rem; border-bottom: 2px solid #ccc; }
.meta { color: #555; margin: 0 0 1rem; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: .3rem; font-weight: 600;
         font-size: .85em; }
.passed { background: #dff3e4; color: #14532d; }
.failed { background: #fde2e1; color: #7f1d1d; }
.incomplete { background: #fef3c7; color: #78350f; }
table { border-collapse: collapse; width: 100%; margin: .3rem 0 1rem; }
th, td { text-align: left; vertical-align: top; padding: .3rem .45rem;
         border-bottom: 1px solid #e3e3e3; }
th { font-size: .85em; color: #444; background: #f5f5f5; }
td.id { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .9em;
        white-space: nowrap; }
.evidence { color: #555; font-size: .88em; overflow-wrap: anywhere; }
tr.fail td.result { color: #991b1b; font-weight: 700; }
tr.unknown td.result { color: #92400e; font-weight: 700; }
tr.pass td.result { color: #166534; }
tr.fail.critical { background: #fff5f5; }
@media print {
  body { margin: 0; max-width: none; font-size: 9.5pt; }
  h2 { break-after: avoid; }
  tr { break-inside: avoid; }
  .badge, tr.fail.critical { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _vendor_html(v: VendorReport) -> str:
    rows = "\n".join(
        f'<tr class="{escape(c.result)} {escape(c.severity)}">'
        f'<td class="result">{escape(c.result)}</td><td>{escape(c.severity)}</td>'
        f'<td class="id">{escape(c.id)}</td>'
        f"<td>{escape(c.message)}"
        + (f'<div class="evidence">{escape(c.evidence)}</div>' if c.evidence else "")
        + "</td></tr>"
        for c in v.checks
    )
    return (
        f'<section id="vendor-{escape(v.id)}"><h2>{escape(v.title)} <small>({escape(v.id)})</small> '
        f'<span class="badge {v.verdict}">{_verdict(v.verdict)}</span></h2>'
        f'<p class="meta">{escape(_counts(v.checks))}</p>'
        "<table><thead><tr><th>Result</th><th>Severity</th><th>Check</th>"
        f"<th>Finding and evidence</th></tr></thead><tbody>\n{rows}\n</tbody></table></section>"
    )


def render_html(report: Report, *, library: str = "") -> str:
    title = f"{library} — vendor compliance report" if library else "Vendor compliance report"
    vendors = "\n".join(_vendor_html(v) for v in report.vendors)
    generated = report.generated.isoformat(timespec="seconds")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">Generated {escape(generated)} by <code>weston-proxy compliance</code>.</p>
<p>Overall: <span class="badge {report.verdict}" id="overall">{_verdict(report.verdict)}</span>
 — {escape(_summary(report))}. A vendor fails when any <em>critical</em> check fails; it is
 incomplete when none fails but a critical check is unknown, because something the library
 requires is not recorded (a term of the contract entry) or not confirmed recently enough (a
 shared account's history settings): record or confirm it, then run the report again. Warnings
 and other unknowns are for staff review.</p>
{vendors}
</body>
</html>
"""


def render(report: Report, fmt: str, *, library: str = "") -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "html":
        return render_html(report, library=library)
    return render_text(report, library=library)
