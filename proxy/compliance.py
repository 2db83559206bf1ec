"""Check each vendor's contract entry, configuration and saved start page against the library's terms.

The library-wide terms live in `[compliance]` of proxy.toml (`ComplianceSettings`); every check
yields a `Check` with a stable id, a severity, a result and the evidence a staff member can verify.
Page checks read a saved copy of a vendor's start page (no network) and the shipped tracker list.
Transmission checks (`--live`) are in `proxy.compliance_live`, renderers in `proxy.compliance_report`.
Only checks with severity "critical" and result "fail" make a vendor (and the run) fail; an
"unknown" is reported for a human to look at, never silently counted as a pass.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from proxy.config import Config, VendorConfig, doc, read_table
from proxy.errors import Problem
from proxy.hosts import is_valid_hostname

CRITICAL, WARNING, INFO = "critical", "warning", "info"
PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
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


# --------------------------------------------------------------------------- report model


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
    current = v.contract.expires is not None and v.contract.expires >= today
    ok = v.contract.permits_pseudonymous_id and v.auth == "assertion" and current
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
    return re.compile(
        r"\{\{?\s*(?:" + names + r")\s*\}?\}"  # {uid}, {{ mail }}
        r"|\$\{?(?:" + names + r")\b\}?"  # $user, ${mail}
        r"|%(?:" + names + r")%"  # %username%
        r"|\^[uUpP]"  # EZproxy's ^u (user) and ^p substitutions
        r"|[?&;](?:" + names + r")=",  # a patron attribute as a URL parameter
        re.IGNORECASE,
    )


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


def check_configuration(v: VendorConfig, config: Config, s: ComplianceSettings) -> list[Check]:
    out: list[Check] = []
    urls = [("origin", v.origin), ("start_url", v.start)]
    if v.shared_login is not None and v.shared_login.login_url:
        urls.append(("shared_login.login_url", v.shared_login.login_url))
    plain = [f"{k} = {u!r}" for k, u in urls if urlsplit(u).scheme != "https"]
    out.append(
        Check(
            "transport.https",
            CRITICAL,
            FAIL if plain else PASS,
            "Patron traffic to this vendor would travel unencrypted."
            if plain
            else "The vendor is reached over https.",
            "; ".join(plain) or f"origin = {v.origin!r}",
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
        Check(
            "config.patron_data_template",
            CRITICAL,
            FAIL if hits else PASS,
            "A vendor setting refers to patron data; the proxy never fills such templates, and "
            "whoever wrote it expected patron data to reach the vendor."
            if hits
            else "No header, URL or rewrite setting refers to patron data.",
            "; ".join(hits) or f"{len(_vendor_settings_text(v))} setting(s) scanned",
        )
    )
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
    return out


def check_vendor(
    v: VendorConfig, config: Config, settings: ComplianceSettings, *, today: dt.date
) -> VendorReport:
    """Contract and configuration checks of one vendor (no network)."""
    checks = check_contract(v, settings, today) + check_configuration(v, config, settings)
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


# --------------------------------------------------------------------------- vendor page checks


@dataclass(frozen=True)
class PageSource:
    """A vendor start page: HTML, plus its Set-Cookie headers when it was saved with them."""

    name: str
    html: bytes
    set_cookies: tuple[str, ...] | None  # None: saved without headers, so cookies are unknown


def read_page(path: Path) -> PageSource:
    """A saved page: plain HTML, or a whole HTTP response (`curl -i`) whose headers are kept."""
    data = path.read_bytes()
    if not data.startswith(b"HTTP/"):
        return PageSource(path.name, data, None)
    head, _, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    cookies = tuple(
        line.split(b":", 1)[1].strip().decode("latin-1")
        for line in head.split(b"\n")[1:]
        if line.lower().startswith(b"set-cookie:")
    )
    return PageSource(path.name, body, cookies)


def load_trackers() -> tuple[str, ...]:
    """The shipped tracker host list (proxy/data/trackers.txt)."""
    text = (resources.files("proxy") / "data" / "trackers.txt").read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return tuple(line for line in lines if line)


def tracker_for(host: str, trackers: Iterable[str]) -> str | None:
    """The tracker list entry that covers `host` (the host itself or a parent domain), if any."""
    return next((t for t in trackers if host == t or host.endswith("." + t)), None)


class _Scripts(HTMLParser):
    """Inline script text, where trackers are usually loaded from rather than from attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._inside = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.texts.append(data)


_URL_IN_SCRIPT = re.compile(r"""["'`](?:https?:)?//([a-z0-9][a-z0-9.-]*\.[a-z]{2,})""", re.I)
_COOKIE_WRITE = re.compile(r"""document\.cookie\s*=\s*(?:(["'`])(.*?)\1|([^;\n]+))""")


def page_third_parties(config: Config, html: bytes) -> list[str]:
    """Hosts outside the proxy that the page would load or link, from markup and inline scripts."""
    from proxy.rewrite import Rewriter

    hosts = set(Rewriter.from_config(config).third_party_hosts(html))
    host_map = config.host_map()
    parser = _Scripts()
    parser.feed(html.decode("utf-8", "replace"))
    for text in parser.texts:
        for m in _URL_IN_SCRIPT.finditer(text):
            host = m.group(1).lower().rstrip(".")
            ours = host == host_map.public_host or host.endswith("." + host_map.public_host)
            if is_valid_hostname(host) and not ours and host_map.vendor_for_host(host) is None:
                hosts.add(host)
    return sorted(hosts)


def _lifetime(attributes: str) -> str | None:
    """`max-age=…`/`expires=…` of a cookie string, as words; None for a session cookie."""
    m = re.search(r"max-age\s*=\s*(-?\d+)", attributes, re.I)
    if m:
        seconds = int(m.group(1))
        return f"{seconds // 86400} days" if seconds >= 86400 else f"{seconds} s"
    m = re.search(r"expires\s*=\s*([^;]+)", attributes, re.I)
    return f"until {m.group(1).strip()}" if m else None


def _script_cookies(html: bytes) -> list[tuple[str, str | None]]:
    parser = _Scripts()
    parser.feed(html.decode("utf-8", "replace"))
    found = []
    for text in parser.texts:
        for m in _COOKIE_WRITE.finditer(text):
            literal = m.group(2)
            if literal is None:
                found.append(("(computed)", _lifetime(m.group(3))))
            else:
                found.append((literal.split("=", 1)[0].strip() or "(unnamed)", _lifetime(literal)))
    return found


def check_page(
    v: VendorConfig, config: Config, page: PageSource, trackers: Iterable[str]
) -> list[Check]:
    """What a vendor start page would load and set in the patron's browser, and what the shield stops."""
    trackers = tuple(trackers)
    shield = v.third_party != "allow"
    fate = "blocked by the tracker shield" if shield else "would load (shield off)"
    hosts = page_third_parties(config, page.html)
    known = [(h, t) for h in hosts if (t := tracker_for(h, trackers))]
    source = f"page {page.name}"
    checks = [
        Check(
            "page.third_party",
            WARNING,
            FAIL if hosts and not shield else PASS,
            f"The page refers to {len(hosts)} third-party host(s); "
            + ("the shield blocks them." if shield else "they would load in the patron's browser.")
            if hosts
            else "The page loads nothing from third parties.",
            "; ".join(f"{h}: {fate}" for h in hosts) or source,
        ),
        Check(
            "page.trackers",
            CRITICAL,
            FAIL if known and not shield else PASS,
            (
                f"Known tracker(s) on the page: {', '.join(h for h, _ in known)}; "
                + ("blocked by the tracker shield." if shield else "they would load.")
            )
            if known
            else "No known tracker on the page.",
            "; ".join(f"{h} (listed as {t}): {fate}" for h, t in known)
            or f"{source}; {len(trackers)} tracker hosts checked",
        ),
    ]
    script = _script_cookies(page.html)
    persistent = [f"{n} ({life}, set by script)" for n, life in script if life]
    described = [f"{n} ({life or 'session'}, set by script in the browser)" for n, life in script]
    for header in page.set_cookies or ():
        name = header.split("=", 1)[0].strip()
        life = _lifetime(header) or "session"
        described.append(f"{name} ({life}, Set-Cookie: kept in the proxy's session jar)")
    if persistent:
        result, message = FAIL, "The page's scripts store lasting cookies in the patron's browser."
    elif page.set_cookies is None:
        result, message = UNKNOWN, "A page saved without headers cannot show its Set-Cookie."
    else:
        result, message = PASS, "The page sets no lasting cookie in the patron's browser."
    checks.append(Check("page.cookies", WARNING, result, message, "; ".join(described) or source))
    return checks
