"""Check each vendor's contract entry and configuration against the library's terms.

The terms are `[compliance]` of proxy.toml (proxy.compliance_settings); every check yields a
`Check` (proxy.compliance_model) with a stable id, a severity, a result and the evidence a staff
member can verify. This module is also the one place callers import compliance from: it
re-exports the settings, the report model and the saved-page checks (proxy.compliance_pages).
Transmission checks (`--live`) are in proxy.compliance_live, renderers in proxy.compliance_report.
A critical check that fails makes a vendor (and the run) FAILED; a critical check that is
"unknown" (a required term not recorded) makes it INCOMPLETE, never silently a pass
(proxy.compliance_model).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from proxy.compliance_model import (
    CRITICAL,
    FAIL,
    FAILED,
    INCOMPLETE,
    INFO,
    PASS,
    PASSED,
    UNKNOWN,
    WARNING,
    Check,
    Report,
    VendorReport,
)
from proxy.compliance_pages import (
    PageSource,
    PageUnreadable,
    check_page,
    load_trackers,
    page_third_parties,
    read_page,
    tracker_for,
)
from proxy.compliance_settings import (
    CLAUSES,
    PATRON_WORDS,
    ComplianceSettings,
    check_compliance_settings,
    compliance_settings,
)
from proxy.config import Config, VendorConfig
from proxy.secrets_ import readable_by_others

__all__ = [
    "CLAUSES",
    "CRITICAL",
    "FAIL",
    "FAILED",
    "INCOMPLETE",
    "INFO",
    "PASS",
    "PASSED",
    "PATRON_WORDS",
    "UNKNOWN",
    "WARNING",
    "Check",
    "ComplianceSettings",
    "PageSource",
    "PageUnreadable",
    "Report",
    "VendorReport",
    "check_all",
    "check_compliance_settings",
    "check_configuration",
    "check_contract",
    "check_page",
    "check_shared_account",
    "check_vendor",
    "compliance_settings",
    "load_trackers",
    "page_third_parties",
    "read_page",
    "tracker_for",
]


# --------------------------------------------------------------------------- contract checks


def _months_between(earlier: dt.date, later: dt.date) -> int:
    months = (later.year - earlier.year) * 12 + later.month - earlier.month
    return months - (1 if later.day < earlier.day else 0)


def check_contract(v: VendorConfig, s: ComplianceSettings, today: dt.date) -> list[Check]:
    c = v.contract
    out: list[Check] = []
    if c.expires is None:
        out.append(Check("contract.expired", CRITICAL, FAIL, "No contract end date on file."))
    elif c.expires < today:
        out.append(
            Check(
                "contract.expired",
                CRITICAL,
                FAIL,
                "The contract has expired.",
                f"contract.expires = {c.expires} ({(today - c.expires).days} days ago)",
            )
        )
    else:
        left = (c.expires - today).days
        evidence = f"contract.expires = {c.expires} ({left} days left)"
        out.append(
            Check("contract.expired", CRITICAL, PASS, "A current contract is on file.", evidence)
        )
        soon = left <= s.warn_days_before_expiry
        out.append(
            Check(
                "contract.expiring",
                WARNING,
                FAIL if soon else PASS,
                "The contract ends soon; start the renewal review."
                if soon
                else "The contract does not end within the warning period.",
                f"{evidence}; warn_days_before_expiry = {s.warn_days_before_expiry}",
            )
        )
    if c.reviewed is None:
        out.append(Check("contract.review_overdue", WARNING, FAIL, "No review date on file."))
    elif c.reviewed > today:
        out.append(
            Check(
                "contract.review_overdue",
                WARNING,
                FAIL,
                "The review date on file is after today, so it cannot be when the contract was "
                "reviewed; correct it.",
                f"contract.reviewed = {c.reviewed} (after today, {today})",
            )
        )
    else:
        months = _months_between(c.reviewed, today)
        late = months >= s.max_months_since_review
        out.append(
            Check(
                "contract.review_overdue",
                WARNING,
                FAIL if late else PASS,
                "The contract review is overdue."
                if late
                else "Reviewed within the allowed period.",
                f"contract.reviewed = {c.reviewed} ({months} months ago); "
                f"max_months_since_review = {s.max_months_since_review}",
            )
        )
    policy = urlsplit(c.privacy_policy_url)
    ok = policy.scheme == "https" and bool(policy.hostname)
    out.append(
        Check(
            "contract.privacy_policy",
            WARNING,
            PASS if ok else FAIL,
            "Privacy policy URL on file."
            if ok
            else "No https privacy policy URL on file for this vendor.",
            f"contract.privacy_policy_url = {c.privacy_policy_url!r}",
        )
    )
    limit = f"max_retention_days = {s.max_retention_days}"
    if c.retention_days is None:
        out.append(
            Check(
                "contract.retention",
                CRITICAL,
                UNKNOWN,
                "Data retention is not recorded, so it cannot be checked.",
                limit,
            )
        )
    else:
        over = c.retention_days > s.max_retention_days
        out.append(
            Check(
                "contract.retention",
                CRITICAL,
                FAIL if over else PASS,
                "The vendor keeps usage data longer than the library allows."
                if over
                else "Retention within the library's maximum.",
                f"contract.retention_days = {c.retention_days}; {limit}",
            )
        )
    out.extend(_clause_checks(v, s))
    out.append(_release_check(v, today))
    return out


def _clause_checks(v: VendorConfig, s: ComplianceSettings) -> Iterable[Check]:
    for clause in CLAUSES:
        cid = f"clause.{clause}"
        value = getattr(v.contract, clause)
        evidence = f"contract.{clause} = {'not set' if value is None else repr(value).lower()}"
        if clause not in s.required_clauses:
            yield Check(cid, INFO, PASS, "Not required by the library's terms.", evidence)
        elif value is None:
            yield Check(
                cid,
                CRITICAL,
                UNKNOWN,
                "Required clause not recorded in the contract entry.",
                evidence,
            )
        elif clause == "breach_notice_days":
            late = value > s.max_breach_notice_days
            yield Check(
                cid,
                CRITICAL,
                FAIL if late else PASS,
                "Breach notice period longer than the library allows."
                if late
                else "Breach notice within the library's maximum.",
                f"{evidence}; max_breach_notice_days = {s.max_breach_notice_days}",
            )
        else:
            yield Check(
                cid,
                CRITICAL,
                PASS if value else FAIL,
                "Clause present." if value else "Required clause is declared false.",
                evidence,
            )


def _release_check(v: VendorConfig, today: dt.date) -> Check:
    evidence = (
        f"release = {v.release!r}; auth = {v.auth!r}; "
        f"contract.permits_pseudonymous_id = {str(v.contract.permits_pseudonymous_id).lower()}"
    )
    if v.release == "anonymous":
        return Check("release.permitted", CRITICAL, PASS, "Anonymous release.", evidence)
    # The rule the adapter follows when it signs (VendorConfig.releases_pseudonym).
    current = v.contract.expires is not None and v.contract.expires >= today
    ok = v.auth == "assertion" and v.releases_pseudonym(today)
    return Check(
        "release.permitted",
        CRITICAL,
        PASS if ok else FAIL,
        "Pseudonymous id released under a current contract that permits it."
        if ok
        else "Pseudonymous id released without a current contract that permits it.",
        evidence + ("" if current else "; the contract is not current"),
    )


# --------------------------------------------------------------------------- configuration checks


def _template_pattern(words: Iterable[str]) -> re.Pattern[str]:
    names = "|".join(sorted({re.escape(w.lower()) for w in words if w}, key=len, reverse=True))
    # The attribute may be one step of an object path: {{ patron.mail }}, {user[barcode]},
    # ${patron.id}; a template filter may follow the path: {{ patron.mail | e }}.
    step = r"[\w.\[\]\"']"
    # (Checked ahead, then taken whole, so a long path costs linear time.)
    name = rf"(?={step}*?(?<!\w)(?:{names})\b){step}++"
    filters = r"(?:\s*\|[^{}|][^{}]*)?"
    forms = (
        r"\{\{?\s*" + name + filters + r"\s*\}?\}",  # {uid}, {{ mail }}, {{ patron.mail }}
        r"\$\{\s*" + name + filters + r"\s*\}",  # ${mail}, ${user.barcode}
        r"\$(?=\w)" + name,  # $user, $session.mail
        r"%" + name + r"%",  # %username%, %user.barcode%
        r"\^[uUpP]",  # EZproxy's ^u (user) and ^p substitutions
        r"[?&;](?:" + names + r")=",  # a patron attribute as a URL parameter
    )
    return re.compile("|".join(forms), re.IGNORECASE)


def _vendor_settings_text(v: VendorConfig) -> list[tuple[str, str]]:
    """Every configured value that travels to a vendor: (key, value)."""
    values = [
        ("assertion_header", v.assertion_header),
        ("referer", v.referer),
        ("start_url", v.start_url),
        ("origin", v.origin),
    ]
    values += [(f"rewrite[{i}].replace", r.replace) for i, r in enumerate(v.rewrite)]
    if v.shared_login is not None:
        values.append(("shared_login.login_url", v.shared_login.login_url))
        values += [
            (f"shared_login.extra_fields.{k}", f"{k}={val}")
            for k, val in v.shared_login.extra_fields.items()
        ]
    return [(k, val) for k, val in values if val]


def _loopback_address(host: str) -> bool:
    """An address on the loopback network, written as one. A name (`localhost` too) goes where
    the hosts file or a resolver sends it, which the config cannot show: a critical check that
    passes must not rest on it."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_configuration(v: VendorConfig, config: Config, s: ComplianceSettings) -> list[Check]:
    out: list[Check] = []
    urls = [("origin", v.origin), ("start_url", v.start)]
    if v.shared_login is not None and v.shared_login.login_url:
        urls.append(("shared_login.login_url", v.shared_login.login_url))
    plain = [f"{k} = {u!r}" for k, u in urls if urlsplit(u).scheme != "https"]
    passed, evidence = "The vendor is reached over https.", f"origin = {v.origin!r}"
    if plain and (addr := v.connect_addr) is not None and _loopback_address(addr[0]):
        # Every host of the vendor is reached at `connect_to` (forward.VendorResolver): on this
        # machine, nothing travels a network (the bundled demo vendor). What a forwarder
        # listening there does with it is outside what a config can show, and said so.
        passed = "The vendor is reached on this machine only: patron traffic does not leave it."
        evidence = (
            f"{'; '.join(plain)}; connect_to = {v.connect_to!r} (loopback; a forwarder "
            "listening there must itself use https)"
        )
        plain = []
    out.append(
        Check.of_findings(
            "transport.https",
            CRITICAL,
            plain,
            "Patron traffic to this vendor would travel unencrypted.",
            passed,
            evidence,
        )
    )
    out.append(
        Check(
            "transport.tls_verify",
            CRITICAL,
            PASS if v.tls_verify else FAIL,
            "The vendor's certificate is verified."
            if v.tls_verify
            else "TLS certificate verification is disabled for this vendor.",
            f"tls_verify = {str(v.tls_verify).lower()}",
        )
    )
    d = config.directory
    words = (*PATRON_WORDS, d.key_attribute, d.group_attribute, *s.patron_attributes)
    pattern = _template_pattern(words)
    hits = [
        f"{key}: {m.group(0)!r}"
        for key, value in _vendor_settings_text(v)
        for m in pattern.finditer(value)
    ]
    out.append(
        Check.of_findings(
            "config.patron_data_template",
            CRITICAL,
            hits,
            "A vendor setting refers to patron data; the proxy never fills such templates, and "
            "whoever wrote it expected patron data to reach the vendor.",
            "No header, URL or rewrite setting refers to patron data.",
            f"{len(_vendor_settings_text(v))} setting(s) scanned",
        )
    )
    if v.auth == "referer":
        out.append(_referer_file_check(v))
    unexplained = v.third_party == "allow" and not v.third_party_reason.strip()
    out.append(
        Check(
            "shield.disabled_without_reason",
            CRITICAL,
            FAIL if unexplained else PASS,
            "The tracker shield is off and no reason is recorded."
            if unexplained
            else (
                "The tracker shield is on."
                if v.third_party != "allow"
                else "The tracker shield is off for a recorded reason."
            ),
            f"third_party = {v.third_party!r}"
            + (f"; third_party_reason = {v.third_party_reason!r}" if v.third_party_reason else ""),
        )
    )
    out.append(_never_proxy_check(v))
    out.append(_permissions_check(v))
    return out


def _permissions_check(v: VendorConfig) -> Check:
    """A warning, not critical, as never_proxy: `permissions` is a recorded choice, but a vendor
    page may then ask the patron for their microphone, camera or position under the library's
    name, and the browser keeps a grant past sign-out. Staff weigh it at each review; /privacy
    tells patrons (proxy/permissions.py)."""
    granted = ", ".join(v.permissions)
    return Check(
        "config.permissions",
        WARNING,
        FAIL if v.permissions else PASS,
        "This vendor's pages may ask patrons for these browser features; a patron who allows one "
        "gives it to the vendor, and the browser remembers the answer after sign-out."
        if v.permissions
        else "This vendor's pages cannot ask for the position, camera, microphone or devices.",
        f"permissions = [{granted}]",
    )


def _never_proxy_check(v: VendorConfig) -> Check:
    """A warning, not critical: never_proxy is a deliberate, recorded choice (check-config keeps
    it to the vendor's own hosts), yet a patron sent to those hosts reaches the vendor from their
    own address, with the vendor's own cookies in their browser, so P3 does not hold there.
    Staff should know and weigh it at each review; the /privacy page tells patrons too."""
    hosts = ", ".join(v.never_proxy)
    return Check(
        "config.never_proxy",
        WARNING,
        FAIL if v.never_proxy else PASS,
        "Patrons are sent to these hosts of the vendor directly, not through the proxy, so the "
        "vendor sees their own address there (and can set its own cookies in their browser)."
        if v.never_proxy
        else "Every host of this vendor is reached through the proxy.",
        f"never_proxy = [{hosts}]" if v.never_proxy else "never_proxy = []",
    )


def _referer_file_check(v: VendorConfig) -> Check:
    """A referer vendor's file holds its shared secret (the referring URL). check-config does
    not refuse a vendor file others can read (vendor files are usually 0644, and refusing
    would stop a proxy that runs today); the staff report says so instead."""
    cid, path = "config.referer_secret_private", Path(v.file)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        return Check(
            cid, WARNING, UNKNOWN, "The vendor file could not be read.", f"{v.file}: {exc}"
        )
    loose = readable_by_others(mode)
    return Check(
        cid,
        WARNING,
        FAIL if loose else PASS,
        f"{path.name} holds the referer URL, a shared secret, and other users of this machine "
        "can read it; chmod 600 it."
        if loose
        else "The vendor file holding the referer URL is readable by the proxy's user only.",
        f"{v.file}: mode {mode:o}",
    )


def check_shared_account(v: VendorConfig, s: ComplianceSettings, today: dt.date) -> Check:
    """A shared account is one account for every patron: whatever the vendor keeps per account
    (search history, saved searches and items, recently viewed, alerts) the next patron sees.
    The proxy cannot turn those off; staff confirm in the vendor's admin that they are off, and
    confirm again within the review period (a platform update can turn them back on)."""
    cid = "shared_account.history"
    if v.auth != "shared-login" or v.shared_login is None:
        return Check(cid, INFO, PASS, "Not a shared account.", f"auth = {v.auth!r}")
    checked = v.shared_login.history_off_checked
    if checked is None:
        return Check(
            cid,
            CRITICAL,
            UNKNOWN,
            "Every patron uses this vendor as one library account, so what the vendor keeps per "
            "account (search history, saved items, recently viewed) one patron can see of "
            "another. Not recorded that these are off for the account.",
            "shared_login.history_off_checked = not set",
        )
    if checked > today:
        return Check(
            cid,
            CRITICAL,
            UNKNOWN,
            "The date recorded for confirming the shared account's history settings off is "
            "after today, so it cannot be a date they were checked; correct it.",
            f"shared_login.history_off_checked = {checked} (after today, {today})",
        )
    months = _months_between(checked, today)
    evidence = (
        f"shared_login.history_off_checked = {checked} ({months} months ago); "
        f"max_months_since_review = {s.max_months_since_review}"
    )
    if months >= s.max_months_since_review:
        return Check(
            cid,
            CRITICAL,
            UNKNOWN,
            "The shared account's history, saved items and recently viewed were last confirmed "
            "off too long ago; confirm again in the vendor's admin.",
            evidence,
        )
    return Check(
        cid,
        CRITICAL,
        PASS,
        "The shared account's history, saved items and recently viewed were confirmed off.",
        evidence,
    )


def check_vendor(
    v: VendorConfig, config: Config, settings: ComplianceSettings, *, today: dt.date
) -> VendorReport:
    """Contract and configuration checks of one vendor (no network)."""
    checks = check_contract(v, settings, today) + check_configuration(v, config, settings)
    checks.append(check_shared_account(v, settings, today))
    return VendorReport(id=v.id, title=v.title, checks=checks)


def check_all(
    config: Config, vendors: Iterable[VendorConfig], *, today: dt.date | None = None
) -> Report:
    settings = compliance_settings(config)
    now = dt.datetime.now(dt.UTC)
    day = today or now.date()
    return Report(
        generated=now, vendors=[check_vendor(v, config, settings, today=day) for v in vendors]
    )
