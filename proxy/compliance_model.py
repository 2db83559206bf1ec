"""The compliance report model: findings (`Check`) per vendor, and what makes a run fail.

Every check yields a `Check` with a stable id, a severity, a result and the evidence a staff member
can verify. The verdict of a vendor, and of the run (the worst of its vendors), is:

- FAILED when a critical check fails;
- INCOMPLETE when no critical check fails but one is unknown (a term the library requires is not
  recorded in the vendor's contract entry, so it cannot be checked): an unknown is reported for a
  human to look at, never silently counted as a pass;
- PASSED when every critical check passes. Warnings, and unknowns that are not critical, are for
  staff review and do not change the verdict.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

CRITICAL, WARNING, INFO = "critical", "warning", "info"
PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
PASSED, FAILED, INCOMPLETE = "passed", "failed", "incomplete"  # verdicts


def _worst(verdicts: list[str]) -> str:
    if FAILED in verdicts:
        return FAILED
    return INCOMPLETE if INCOMPLETE in verdicts else PASSED


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how much it matters, the outcome and what shows it."""

    id: str
    severity: str
    result: str
    message: str
    evidence: str = ""

    @property
    def blocking(self) -> bool:
        return self.severity == CRITICAL and self.result == FAIL

    @property
    def unresolved(self) -> bool:
        """A critical check that could not be made: no pass, and not yet a failure."""
        return self.severity == CRITICAL and self.result == UNKNOWN

    @classmethod
    def of_findings(
        cls,
        id: str,
        severity: str,
        findings: list[str],
        failed: str,
        passed: str,
        evidence_if_clean: str = "",
    ) -> Check:
        """FAIL with `failed` and the findings (each once, in order) as evidence when there are
        any; else PASS with `passed` and `evidence_if_clean`."""
        if findings:
            return cls(id, severity, FAIL, failed, "; ".join(dict.fromkeys(findings)))
        return cls(id, severity, PASS, passed, evidence_if_clean)


@dataclass
class VendorReport:
    id: str
    title: str
    checks: list[Check] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if any(c.blocking for c in self.checks):
            return FAILED
        return INCOMPLETE if any(c.unresolved for c in self.checks) else PASSED

    @property
    def passed(self) -> bool:
        return self.verdict == PASSED


@dataclass
class Report:
    generated: dt.datetime
    vendors: list[VendorReport] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return _worst([v.verdict for v in self.vendors])

    @property
    def passed(self) -> bool:
        return self.verdict == PASSED

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape; nothing more, so consumers can rely on it."""
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "generated": self.generated.isoformat(timespec="seconds"),
            "vendors": [
                {
                    "id": v.id,
                    "title": v.title,
                    "passed": v.passed,
                    "verdict": v.verdict,
                    "checks": [
                        {
                            "id": c.id,
                            "severity": c.severity,
                            "result": c.result,
                            "message": c.message,
                            "evidence": c.evidence,
                        }
                        for c in v.checks
                    ],
                }
                for v in self.vendors
            ],
        }
