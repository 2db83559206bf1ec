"""`[compliance]` of proxy.toml: the library's terms every vendor is checked against.

Declared once (`ComplianceSettings`, each option with its default and meaning), checked by
`check-config` through `check_compliance_settings` (a CONFIG_CHECKS entry, reached through
proxy.compliance), and read with defaults filled in by `compliance_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config import Config, doc, read_table
from proxy.errors import Problem

CLAUSES = (
    "no_sale_of_data",
    "breach_notice_days",
    "law_enforcement_notice",
    "subprocessors_bound",
    "deletion_at_termination",
)
# Words that name a patron attribute in templates, whatever the directory calls them.
PATRON_WORDS = (
    "uid", "user", "username", "userid", "login", "mail", "email", "cn", "sn", "givenname",
    "name", "displayname", "barcode", "card", "cardnumber", "pin", "password", "phone",
    "telephonenumber", "mobile", "address", "postaladdress", "street", "employeenumber",
    "employeetype", "patron", "patronid", "dn", "ip", "clientip", "remote_addr", "remoteaddr",
    "group", "groups", "memberof", "entryuuid", "birthdate", "dob",
)  # fmt: skip


@dataclass(frozen=True)
class ComplianceSettings:
    """`[compliance]` in proxy.toml: the library's terms every vendor is checked against."""

    max_retention_days: int = doc("longest usage-data retention a contract may allow", 90)
    max_months_since_review: int = doc("a contract must have been reviewed within this", 12)
    warn_days_before_expiry: int = doc("warn this many days before a contract ends", 60)
    max_breach_notice_days: int = doc("longest breach notice period a contract may allow", 30)
    required_clauses: tuple[str, ...] = doc("contract clauses the library requires", CLAUSES)
    patron_attributes: tuple[str, ...] = doc(
        "further directory attribute names that must never appear in vendor settings", ()
    )


def _section(config: Config, problems: list[Problem]) -> ComplianceSettings | None:
    return read_table(
        ComplianceSettings,
        config.extra.get("compliance", {}),
        str(config.path),
        "compliance.",
        problems,
    )


def check_compliance_settings(config: Config, problems: list[Problem]) -> None:
    """Append a Problem for every wrong key or value of `[compliance]` (a CONFIG_CHECKS entry)."""
    s = _section(config, problems)
    if s is None:
        return
    file = str(config.path)
    for key in (
        "max_retention_days",
        "max_months_since_review",
        "warn_days_before_expiry",
        "max_breach_notice_days",
    ):
        if getattr(s, key) < 0:
            problems.append(Problem(file, f"compliance.{key}", "must not be negative"))
    for i, clause in enumerate(s.required_clauses):
        if clause not in CLAUSES:
            problems.append(
                Problem(
                    file,
                    f"compliance.required_clauses[{i}]",
                    f"unknown clause {clause!r}; valid choices: {', '.join(CLAUSES)}",
                )
            )


def compliance_settings(config: Config) -> ComplianceSettings:
    """The `[compliance]` settings with defaults filled in (the loader has already checked them)."""
    return _section(config, []) or ComplianceSettings()
