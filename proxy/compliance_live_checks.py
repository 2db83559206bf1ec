"""Judge what one vendor's scripted visit sent: canaries, headers, assertion, cookies, redirect, log.

A `Visit` is what the visit left behind (its steps, every request the stand-in vendor received,
what the browsers were shown); each check reads only that, so it can be reasoned about without
running anything. Canaries are found with `proxy.canary_detector` in every encoding.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.canary_detector import Canary, CanaryDetector
from proxy.compliance import CRITICAL, FAIL, PASS, WARNING, Check
from proxy.compliance_stub import PREFIX, VENDOR_COOKIE, Sent, mapped_url
from proxy.config import Config, VendorConfig
from proxy.privacy import REQUEST_ALLOWLIST

# Headers the upstream client or the privacy module add on purpose, beside the browser allowlist.
TRANSPORT_HEADERS = frozenset(
    {"host", "accept-encoding", "referer", "origin", "cookie", "connection", "transfer-encoding"}
)


def adapter_headers(v: VendorConfig) -> frozenset[str]:
    """Request headers this vendor's adapter kind is documented to add."""
    return frozenset(
        {
            "assertion": {v.assertion_header.lower()},
            "referer": {"referer"},
            "shared-login": {"authorization"},
        }.get(v.auth, set())
    )


@dataclass
class Step:
    name: str
    first: int  # index of the first recorded request made during this step
    last: int = 0
    allowed: frozenset[str] = frozenset()  # canary labels that legitimately travel in this step
    patron: int = 0  # which of the two canary patrons made it
    session: int = 0  # which sign-in: 0 and 2 the first patron's two, 1 the second patron's


@dataclass(frozen=True)
class Visit:
    """What one vendor's scripted visit left behind, as the checks read it."""

    vendor: VendorConfig
    config: Config
    requests: Sequence[Sent]  # every request the stand-in vendor received, in order
    steps: Sequence[Step]
    canaries: Sequence[Canary]
    term: str  # the search term the visit searched for
    redirect_location: str  # Location the browser saw for the vendor's redirect
    set_cookies_seen: Sequence[str]  # every Set-Cookie either patron's browser received
    jwks: dict[str, Any]

    def sent(self, patron: int | None = None) -> list[tuple[Step, Sent]]:
        return [
            (s, self.requests[i])
            for s in self.steps
            if patron is None or s.patron == patron
            for i in range(s.first, s.last)
        ]


def live_checks(visit: Visit) -> list[Check]:
    """The checks of one visit in report order (the log check reads the proxy's log instead)."""
    return [
        canary_check(visit),
        header_check(visit),
        assertion_check(visit),
        cookie_check(visit),
        redirect_check(visit),
        linkable_check(visit),
    ]


def canary_check(visit: Visit) -> Check:
    found: list[str] = []
    for step, sent in visit.sent():
        det = CanaryDetector(c for c in visit.canaries if c.label not in step.allowed)
        parts = [("the URL", sent.path_qs.encode()), ("the body", sent.body)]
        parts += [(f"header {k}", f"{k}: {val}".encode()) for k, val in sent.headers]
        for where, data in parts:
            found += [f"{step.name}: {leak}" for leak in det.find(data, where)]
    n = len(visit.sent())
    carried = any(
        visit.term in sent.path_qs for step, sent in visit.sent() if step.name == "search"
    )
    if not found and not carried:
        # Nothing leaked, but nothing arrived either: the run proves nothing.
        return Check(
            "live.canary",
            CRITICAL,
            FAIL,
            "The scripted search never reached the stand-in vendor.",
            f"{n} outbound request(s) recorded",
        )
    return Check.of_findings(
        "live.canary",
        CRITICAL,
        found,
        "Patron data reached the vendor.",
        "No canary value reached the vendor.",
        f"{n} outbound request(s) scanned in every encoding",
    )


def header_check(visit: Visit) -> Check:
    allowed = REQUEST_ALLOWLIST | TRANSPORT_HEADERS | adapter_headers(visit.vendor)
    bad: list[str] = []
    for step, sent in visit.sent():
        for k, val in sent.headers:
            if k.lower() not in allowed:
                bad.append(f"{step.name}: {k}")
            elif (
                k.lower() in ("referer", "origin")
                and val != visit.vendor.referer
                and not re.fullmatch(r"https?://[^/?#]+/?", val)
            ):
                bad.append(f"{step.name}: {k} carries a path ({val[:80]})")
    return Check.of_findings(
        "live.header_allowlist",
        CRITICAL,
        bad,
        "A header outside the allowlist reached the vendor.",
        "Only allowlisted headers and the adapter's own reached the vendor.",
        "adapter adds: " + (", ".join(sorted(adapter_headers(visit.vendor))) or "nothing"),
    )


def assertion_check(visit: Visit) -> Check:
    v = visit.vendor
    name = v.assertion_header.lower()
    tokens = [
        (step.patron, step.session, val)
        for step, sent in visit.sent()
        for k, val in sent.headers
        if k.lower() == name
    ]
    if v.auth != "assertion":
        jwt_like = [
            f"{step.name}: {k}"
            for step, sent in visit.sent()
            for k, val in sent.headers
            if _JWT.search(val)
        ]
        return Check.of_findings(
            "live.assertion_claims",
            CRITICAL,
            jwt_like,
            "A signed token reached a vendor that should receive none.",
            f"No assertion is sent (auth = {v.auth}).",
        )
    if not tokens:
        return Check("live.assertion_claims", CRITICAL, FAIL, "No assertion reached the vendor.")
    problems: list[str] = []
    pseudonymous = v.releases_pseudonym(dt.date.today())
    subs: dict[int, set[str]] = {0: set(), 1: set()}
    # A jti names one assertion: two assertions (or one token sent in two sessions) sharing one
    # is a replay or a patron identifier in the jti's shape.
    by_jti: dict[str, set[tuple[int, str]]] = {}
    for patron, session, token in tokens:
        claims, errors = verify_assertion(
            token,
            visit.jwks,
            issuer=visit.config.server.public_url.rstrip("/"),
            audience=v.aud,
            scope=visit.config.library.scope,
            pseudonymous=pseudonymous,
        )
        problems += errors
        if "sub" in claims:
            subs[patron].add(str(claims["sub"]))
        if "jti" in claims:
            by_jti.setdefault(str(claims["jti"]), set()).add((session, token))
    for jti, uses in sorted(by_jti.items()):
        signed, sessions = {t for _, t in uses}, {s for s, _ in uses}
        if len(signed) > 1 or len(sessions) > 1:
            problems.append(
                f"jti {jti[:8]}… repeats ({len(signed)} assertion(s) in {len(sessions)} "
                "session(s)); each assertion needs its own"
            )
    if pseudonymous and (subs[0] & subs[1] or len(subs[0]) > 1):
        problems.append("the pairwise id is not one per patron")
    allowed = sorted(ASSERTION_CLAIMS | ({"sub"} if pseudonymous else set()))
    return Check.of_findings(
        "live.assertion_claims",
        CRITICAL,
        problems,
        "The assertion does not verify or carries claims its release level does not allow.",
        f"Every assertion verifies against the JWKS and carries only {v.release} claims.",
        f"{len(tokens)} assertion(s); claims: {', '.join(allowed)}",
    )


def cookie_check(visit: Visit) -> Check:
    issued = {
        n: {sent.issued_cookie for _, sent in visit.sent(n) if sent.issued_cookie} for n in (0, 1)
    }
    problems: list[str] = []
    returned = False
    for step, sent in visit.sent():
        for k, val in sent.headers:
            if k.lower() != "cookie":
                continue
            for pair in val.split(";"):
                cname, _, cvalue = pair.strip().partition("=")
                if cname != VENDOR_COOKIE:
                    problems.append(f"{step.name}: browser cookie {cname!r} reached the vendor")
                elif cvalue in issued[1 - step.patron]:
                    problems.append(f"{step.name}: the other patron's vendor cookie was sent")
                elif cvalue in issued[step.patron]:
                    returned = True
    leaked = [c for c in visit.set_cookies_seen if c.startswith(VENDOR_COOKIE)]
    if leaked:
        problems.append("the vendor's Set-Cookie reached the browser")
    if not returned:
        problems.append("the vendor's cookie did not come back on the patron's next request")
    return Check.of_findings(
        "live.cookie_isolation",
        CRITICAL,
        problems,
        "Vendor cookies are not kept to one patron session.",
        "Vendor cookies stay in the proxy, per patron session, and come back to the vendor.",
        f"{len(issued[0]) + len(issued[1])} vendor cookie(s) issued across two sessions",
    )


def redirect_check(visit: Visit) -> Check:
    origin = mapped_url(visit.config, visit.vendor.origin + "/").rstrip("/")
    ok = visit.redirect_location == f"{origin}{PREFIX}/landing"
    return Check(
        "live.redirect",
        WARNING,
        PASS if ok else FAIL,
        "Vendor redirects stay on the proxy."
        if ok
        else "A vendor redirect would take the patron off the proxy.",
        f"Location seen by the browser: {visit.redirect_location or '(none)'}",
    )


# A value that could identify: a run of 8 or more token bytes (hex, base64url, a number).
_TOKEN = re.compile(rb"[A-Za-z0-9_\-]{8,}")


# Claims the contract makes the same for every patron (iss, aud, affiliation) or that are
# clock readings every patron signed in that second shares (iat, exp): not a thread.
_SHARED_CLAIMS = frozenset({"iss", "aud", "affiliation", "iat", "exp"})


def _claim_values(data: bytes) -> set[bytes]:
    """`claim=value` for every claim of every JWT in `data`, decoded without verifying: a
    per-patron value inside a token (a keyed-hash `jti`) never shows in the token as a whole,
    which differs on every signing."""
    found: set[bytes] = set()
    for m in _JWT.finditer(data.decode("latin-1")):
        payload = m.group(0).split(".")[1]
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, binascii.Error):
            continue
        if not isinstance(claims, dict):
            continue
        for name, value in claims.items():
            if name not in _SHARED_CLAIMS:
                text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                found.add(f"{name}={text}".encode("utf-8", "surrogateescape"))
    return found


def _tokens(sent: Sent) -> set[bytes]:
    parts = [sent.path_qs.encode(), sent.body]
    parts += [val.encode("utf-8", "surrogateescape") for k, val in sent.headers if k != "host"]
    return {t for part in parts for t in _TOKEN.findall(part)} | {
        c for part in parts for c in _claim_values(part)
    }


def linkable_check(visit: Visit) -> Check:
    """P4: unless the contract permits a pseudonym, nothing the vendor receives may follow a
    patron from one session to the next. The visit signs the first patron in twice; a value sent
    in both of their sessions and never in the other patron's is such a thread, whatever its
    encoding (a keyed hash of the patron, say, which the canary search cannot recognise)."""
    cid = "live.unlinkable"
    if visit.vendor.releases_pseudonym(dt.date.today()):
        return Check(
            cid,
            CRITICAL,
            PASS,
            "The contract permits a pseudonym (`sub`), which follows a patron by design.",
            "release = pseudonymous, within the contract",
        )
    by_session: dict[int, set[bytes]] = {0: set(), 1: set(), 2: set()}
    for step, sent in visit.sent():
        by_session.setdefault(step.session, set()).update(_tokens(sent))
    if not by_session[2]:
        return Check(
            cid,
            CRITICAL,
            FAIL,
            "The patron's second session never reached the stand-in vendor.",
            f"{len(visit.sent())} outbound request(s) recorded",
        )
    threads = sorted((by_session[0] & by_session[2]) - by_session[1])
    return Check.of_findings(
        cid,
        CRITICAL,
        [
            f"{t[:12].decode('ascii', 'replace')}… in both of one patron's sessions only"
            for t in threads
        ],
        "A value that follows one patron from session to session reached the vendor.",
        "Nothing sent to the vendor follows a patron from one session to the next.",
        f"{sum(map(len, by_session.values()))} values compared across two sessions of one "
        "patron and one of another",
    )


def log_check(canaries: Iterable[Canary], logs: bytes) -> Check:
    leaks = CanaryDetector(canaries).find(logs)
    return Check.of_findings(
        "live.logs",
        CRITICAL,
        [str(x) for x in leaks],
        "The proxy's log names the patron or what they did.",
        "The proxy's log carries no patron, search or form value.",
        f"{len(logs)} bytes of log scanned",
    )


ASSERTION_CLAIMS = frozenset({"iss", "aud", "iat", "exp", "jti", "affiliation"})
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def verify_assertion(
    token: str,
    jwks: dict[str, Any],
    *,
    issuer: str,
    audience: str,
    scope: str,
    pseudonymous: bool,
) -> tuple[dict[str, Any], list[str]]:
    """Verify one assertion as a vendor would; (claims, problems)."""
    import jwt

    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = next(k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid)
        claims: dict[str, Any] = jwt.decode(
            token, key.key, algorithms=["EdDSA", "ES256"], audience=audience, issuer=issuer
        )
    except (jwt.PyJWTError, StopIteration) as exc:
        return {}, [f"does not verify against the JWKS: {type(exc).__name__}"]
    allowed = ASSERTION_CLAIMS | ({"sub"} if pseudonymous else set())
    problems = [f"claim {c!r} not allowed" for c in sorted(set(claims) - allowed)]
    problems += [f"claim {c!r} missing" for c in sorted(allowed - set(claims))]
    if claims.get("affiliation") != f"member@{scope}":
        problems.append(f"affiliation is {claims.get('affiliation')!r}")
    if int(claims.get("exp", 0)) - int(claims.get("iat", 0)) > 300:
        problems.append("lifetime longer than 300 s")
    return claims, problems
