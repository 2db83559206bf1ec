"""The compliance report model: findings (`Check`) per vendor, and what makes a run fail.

Every check yields a `Check` with a stable id, a severity, a result and the evidence a staff member
can verify. Only checks with severity "critical" and result "fail" make a vendor (and the run)
fail; an "unknown" is reported for a human to look at, never silently counted as a pass.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

CRITICAL, WARNING, INFO = "critical", "warning", "info"
PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"


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
    def passed(self) -> bool:
        return not any(c.blocking for c in self.checks)


@dataclass
class Report:
    generated: dt.datetime
    vendors: list[VendorReport] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.vendors)

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape; nothing more, so consumers can rely on it."""
        return {
            "passed": self.passed,
            "generated": self.generated.isoformat(timespec="seconds"),
            "vendors": [
                {
                    "id": v.id,
                    "title": v.title,
                    "passed": v.passed,
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
