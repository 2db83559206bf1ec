"""From a mutation sweep by hand, second pass (1 December 2026), of the compliance checks: the
live transmission checks (proxy/compliance_live_checks.py), the cookie lifetimes read from a saved
page's scripts (proxy/compliance_cookies.py), the saved-page check (proxy/compliance_pages.py) and
the rendered report (proxy/compliance_report.py). Each test names the mutant it kills; each proves
that a vendor behaviour the privacy staff must see as a failure (or as needing review) is not
reported as a pass. Synthetic values only; nothing leaves the process."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy.canary_detector import Canary
from proxy.cli import config_checks
from proxy.compliance import CRITICAL, FAIL, PASS, UNKNOWN, WARNING, Check, Report, VendorReport
from proxy.compliance_cookies import (
    DELETED,
    LASTING,
    UNREADABLE,
    cookie_lifetime,
    script_cookies,
)
from proxy.compliance_live_checks import (
    Step,
    Visit,
    assertion_check,
    canary_check,
    cookie_check,
    header_check,
    linkable_check,
)
from proxy.compliance_pages import PageSource, check_page, page_third_parties, read_page
from proxy.compliance_report import render_html, render_text
from proxy.compliance_stub import VENDOR_COOKIE, Sent
from proxy.config import Config, VendorConfig, load_config
from tests.test_compliance import materialise


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(materialise(tmp_path / "conf"), extra_checks=config_checks())


def _good(config: Config) -> VendorConfig:
    good = config.vendor("good")
    assert good is not None
    return good


def _visit(config: Config, requests: list[Sent], **kw: Any) -> Visit:
    args: dict[str, Any] = {
        "vendor": _good(config),
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
    return Visit(**args)


# --------------------------------------------------------------------------- signed assertions

_KEY = Ed25519PrivateKey.generate()
_JWKS = {
    "keys": [{**json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(_KEY.public_key())), "kid": "k1"}]
}


def _claims(config: Config, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": config.server.public_url.rstrip("/"),
        "aud": _good(config).aud,
        "iat": now,
        "exp": now + 60,
        "jti": base64.urlsafe_b64encode(time.time_ns().to_bytes(16, "big")).decode(),
        "affiliation": f"member@{config.library.scope}",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, _KEY, algorithm="EdDSA", headers={"kid": "k1"})


def _assertion_visit(config: Config, tokens: list[tuple[int, str]]) -> Visit:
    """One request per (session, token), each in its own step of the first patron."""
    name = _good(config).assertion_header
    requests = [Sent("h", "GET", "/", ((name, tok),), b"") for _, tok in tokens]
    steps = [Step(f"s{i}", i, i + 1, patron=0, session=s) for i, (s, _) in enumerate(tokens)]
    return _visit(config, requests, steps=steps, jwks=_JWKS)


def test_a_well_formed_assertion_passes(config: Config) -> None:
    """The baseline every assertion test below departs from: one fresh, short-lived assertion
    with exactly the anonymous claims verifies and passes."""
    check = assertion_check(_assertion_visit(config, [(0, _sign(_claims(config)))]))
    assert check.result == PASS, check.evidence


def test_an_assertion_vendor_that_received_no_assertion_fails(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:assertion_check — `No assertion` Check `FAIL` →
    `PASS`.

    A run in which the assertion vendor never received an assertion proves nothing about what the
    assertion carries: the critical check must fail, not pass on nothing."""
    requests = [Sent("h", "GET", "/", (), b"")]
    check = assertion_check(_visit(config, requests, jwks=_JWKS))
    assert (check.severity, check.result) == (CRITICAL, FAIL)


def test_a_signed_token_sent_to_an_ip_vendor_fails(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:assertion_check — `if _JWT.search(val)` → `if False`.

    A vendor admitted by IP should receive no token at all: a JWT in any header (here a custom
    one) hands it a signed statement about the patron, so the critical check fails."""
    ipdb = dataclasses.replace(_good(config), auth="ip")
    requests = [Sent("h", "GET", "/", (("X-Auth", _sign(_claims(config))),), b"")]
    check = assertion_check(_visit(config, requests, vendor=ipdb))
    assert check.result == FAIL
    assert "X-Auth" in check.evidence


def test_one_assertion_replayed_in_two_sessions_fails(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:assertion_check — `len(signed) > 1 or
    len(sessions) > 1` → `len(signed) > 1`.

    The very same signed assertion sent in the patron's first and second sessions is a value
    that links the two sessions (a replay): the check must fail."""
    token = _sign(_claims(config))
    check = assertion_check(_assertion_visit(config, [(0, token), (2, token)]))
    assert check.result == FAIL
    assert "repeats" in check.evidence


def test_two_assertions_sharing_one_jti_fail(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:assertion_check — `len(signed) > 1 or
    len(sessions) > 1` → `len(sessions) > 1`.

    Two different assertions in one session with the same `jti`: the jti is not per assertion,
    so it may be a patron identifier in the jti's shape; the check must fail."""
    a = _sign(_claims(config, jti="samejti-1234567890", iat=int(time.time()) - 1))
    b = _sign(_claims(config, jti="samejti-1234567890"))
    assert a != b
    check = assertion_check(_assertion_visit(config, [(0, a), (0, b)]))
    assert check.result == FAIL
    assert "repeats" in check.evidence


def test_an_assertion_with_the_wrong_affiliation_fails(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:verify_assertion — the affiliation test dropped.

    The affiliation must be the library's `member@scope` and nothing more specific (a patron
    type such as `staff@…`, or another library's scope, tells the vendor about the patron)."""
    token = _sign(_claims(config, affiliation=f"staff@{config.library.scope}"))
    check = assertion_check(_assertion_visit(config, [(0, token)]))
    assert check.result == FAIL
    assert "affiliation" in check.evidence


def test_an_assertion_valid_for_ten_minutes_fails(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:verify_assertion — `> 300` → `> 3000`.

    An assertion that stays valid for ten minutes can be replayed by whoever sees it long after
    the patron's request; the contract is at most 300 s (and exactly 300 s is within it)."""
    now = int(time.time())
    ok = _sign(_claims(config, iat=now, exp=now + 300))
    assert assertion_check(_assertion_visit(config, [(0, ok)])).result == PASS
    token = _sign(_claims(config, iat=now, exp=now + 600))
    check = assertion_check(_assertion_visit(config, [(0, token)]))
    assert check.result == FAIL
    assert "lifetime" in check.evidence


def test_an_assertion_missing_a_required_claim_fails(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:verify_assertion — the `claim … missing` findings
    dropped.

    An assertion without a `jti` cannot be told from a replay; one without its documented claims
    is not the assertion the contract describes: the check fails and names the claim."""
    token = _sign(_claims(config, jti=None))
    check = assertion_check(_assertion_visit(config, [(0, token)]))
    assert check.result == FAIL
    assert "'jti' missing" in check.evidence


def _pseudonymous(config: Config) -> VendorConfig:
    good = _good(config)
    contract = dataclasses.replace(good.contract, permits_pseudonymous_id=True)
    pseudo = dataclasses.replace(good, release="pseudonymous", contract=contract)
    assert pseudo.releases_pseudonym(dt.date.today())
    return pseudo


def _pseudo_visit(config: Config, tokens: list[tuple[int, int, str]]) -> Visit:
    """One request per (patron, session, token)."""
    pseudo = _pseudonymous(config)
    name = pseudo.assertion_header
    requests = [Sent("h", "GET", "/", ((name, tok),), b"") for _, _, tok in tokens]
    steps = [Step(f"s{i}", i, i + 1, patron=p, session=s) for i, (p, s, _) in enumerate(tokens)]
    return _visit(config, requests, steps=steps, jwks=_JWKS, vendor=pseudo)


def test_a_pairwise_id_that_changes_between_a_patrons_sessions_fails(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:assertion_check — `subs[0] & subs[1] or
    len(subs[0]) > 1` → `subs[0] & subs[1]`.

    The pseudonymous release promises one stable pairwise `sub` per patron; two different ones
    for the same patron mean the proxy derives it from something other than the patron (the
    session, the clock), and the contract's terms are not what the vendor receives."""
    tokens = [
        (0, 0, _sign(_claims(config, sub="pairwise-one-aaaa"))),
        (1, 1, _sign(_claims(config, sub="pairwise-two-bbbb"))),
        (0, 2, _sign(_claims(config, sub="pairwise-three-cc"))),
    ]
    check = assertion_check(_pseudo_visit(config, tokens))
    assert check.result == FAIL
    assert "pairwise id is not one per patron" in check.evidence


def test_two_patrons_sharing_one_pairwise_id_fails(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:assertion_check — `subs[0] & subs[1] or
    len(subs[0]) > 1` → `len(subs[0]) > 1`.

    Two patrons sent under one `sub` merge their vendor histories (one patron's saved searches
    shown to the other): the critical check must fail."""
    tokens = [
        (0, 0, _sign(_claims(config, sub="pairwise-same-xyz"))),
        (1, 1, _sign(_claims(config, sub="pairwise-same-xyz"))),
    ]
    check = assertion_check(_pseudo_visit(config, tokens))
    assert check.result == FAIL
    assert "pairwise id is not one per patron" in check.evidence


def test_a_pseudonymous_assertion_with_one_sub_per_patron_passes(config: Config) -> None:
    """The baseline for the two tests above: one stable `sub` per patron, different between
    patrons, passes."""
    tokens = [
        (0, 0, _sign(_claims(config, sub="pairwise-one-aaaa"))),
        (1, 1, _sign(_claims(config, sub="pairwise-two-bbbb"))),
        (0, 2, _sign(_claims(config, sub="pairwise-one-aaaa"))),
    ]
    check = assertion_check(_pseudo_visit(config, tokens))
    assert check.result == PASS, check.evidence


# --------------------------------------------------------------------------- canaries, headers


def test_a_canary_in_a_request_header_fails_the_canary_check(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:canary_check — request headers left out of the scan.

    An adapter that puts the patron's card number in a custom header hands it to the vendor just
    as surely as one that puts it in the URL: the critical canary check must fail."""
    card = "29999000123457"
    term = "canarysearchabc"
    sent = Sent("h", "GET", f"/search?q={term}", (("X-Patron", card),), b"")
    visit = _visit(config, [sent], canaries=[Canary("card number", card)], term=term)
    check = canary_check(visit)
    assert check.result == FAIL
    assert "card number" in check.evidence


def test_an_origin_header_carrying_a_path_fails(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:header_check — `("referer", "origin")` →
    `("referer",)`.

    An Origin header that carries the page the patron was on (a malformed one an adapter built
    from the page URL) tells the vendor what they were reading: the header check fails."""
    origin = _good(config).origin

    def check(value: str) -> str:
        return header_check(
            _visit(config, [Sent("h", "POST", "/", (("Origin", value),), b"")])
        ).result

    assert check(origin) == PASS
    assert check(origin + "/articles/depression-and-anxiety") == FAIL


def test_the_configured_referer_of_a_referer_vendor_passes(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:header_check — `val != visit.vendor.referer`
    dropped.

    A referer-authenticated vendor is sent exactly the library's configured Referer (a page on
    the library's site, with a path): that is the adapter's documented value, not a leak, and
    the critical header check must not fail every such vendor."""
    refdb = dataclasses.replace(
        _good(config), auth="referer", referer="https://www.westonlibrary.test/databases"
    )
    sent = Sent("h", "GET", "/", (("Referer", refdb.referer),), b"")
    assert header_check(_visit(config, [sent], vendor=refdb)).result == PASS
    leak = Sent("h", "GET", "/", (("Referer", refdb.referer + "/health"),), b"")
    assert header_check(_visit(config, [leak], vendor=refdb)).result == FAIL


# --------------------------------------------------------------------------- cookie isolation


def test_the_other_patrons_vendor_cookie_fails_cookie_isolation(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:cookie_check — `elif cvalue in issued[1 -
    step.patron]:` → `elif False:`.

    The vendor's cookie issued in the second patron's session sent on the first patron's request
    merges two patrons' vendor sessions (one sees the other's saved searches): a failure."""
    reqs = [
        Sent("h", "GET", "/", (), b"", issued_cookie="vA"),
        Sent("h", "GET", "/", (), b"", issued_cookie="vB"),
        Sent("h", "GET", "/n", (("Cookie", f"{VENDOR_COOKIE}=vA"),), b""),
        Sent("h", "GET", "/n", (("Cookie", f"{VENDOR_COOKIE}=vB"),), b""),
    ]
    steps = [
        Step("a", 0, 1, patron=0),
        Step("b", 1, 2, patron=1, session=1),
        Step("a again", 2, 4, patron=0),
    ]
    check = cookie_check(_visit(config, reqs, steps=steps))
    assert check.result == FAIL
    assert "other patron's vendor cookie" in check.evidence


def test_a_browser_cookie_reaching_the_vendor_fails_cookie_isolation(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:cookie_check — the `browser cookie … reached the
    vendor` finding dropped.

    The patron's browser cookie (the proxy's own session cookie, say) forwarded to the vendor is
    a value that identifies the patron's session: the check fails and names it."""
    reqs = [
        Sent("h", "GET", "/", (), b"", issued_cookie="v1"),
        Sent("h", "GET", "/n", (("Cookie", f"{VENDOR_COOKIE}=v1; weston_sid=abc"),), b""),
    ]
    check = cookie_check(_visit(config, reqs))
    assert check.result == FAIL
    assert "weston_sid" in check.evidence


# --------------------------------------------------------------------------- unlinkability


def _unsigned(claims: dict[str, Any]) -> str:
    def part(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'EdDSA', 'kid': 'k1'})}.{part(claims)}.c2lnbmF0dXJl"


def _three_sessions(config: Config, values: tuple[str, str, str], header: str) -> Visit:
    reqs = [Sent("h", "GET", "/", ((header, v),), b"") for v in values]
    steps = [
        Step("first", 0, 1, patron=0, session=0),
        Step("other", 1, 2, patron=1, session=1),
        Step("again", 2, 3, patron=0, session=2),
    ]
    return _visit(config, reqs, steps=steps)


def test_a_keyed_hash_jti_in_both_sessions_of_one_patron_fails_unlinkability(
    config: Config,
) -> None:
    """kills: proxy/compliance_live_checks.py:_tokens — the decoded claim values
    (`_claim_values`) left out; and :_claim_values — `jti` treated as a shared claim.

    Each assertion is signed afresh, so the token as a whole differs every time; but a `jti`
    that is a keyed hash of the patron is the same in both of their sessions and never in the
    other patron's: it follows them (P4), and the critical check must fail."""
    assert not _good(config).releases_pseudonym(dt.date.today())
    thread = "Zk3a9Qp2Lx7Vt1Rm"
    visit = _three_sessions(
        config,
        (
            _unsigned({"jti": thread, "iat": 1000}),
            _unsigned({"jti": "Other0patron00jti", "iat": 2000}),
            _unsigned({"jti": thread, "iat": 3000}),
        ),
        "Authorization",
    )
    check = linkable_check(visit)
    assert check.result == FAIL, check.evidence


def test_a_value_in_both_sessions_of_one_patron_only_fails_unlinkability(config: Config) -> None:
    """kills: proxy/compliance_live_checks.py:linkable_check — `(s0 & s2) - s1` → `s0 & s2 & s1`.

    A value sent in both of one patron's sessions and never in the other patron's is a thread
    through that patron's visits; a value every patron's requests carry is not."""
    visit = _three_sessions(
        config,
        ("shared00value patron0thread", "shared00value", "shared00value patron0thread"),
        "X-V",
    )
    check = linkable_check(visit)
    assert check.result == FAIL
    assert "patron0threa" in check.evidence
    assert "shared00valu" not in check.evidence


# --------------------------------------------------------------------------- cookie lifetimes


def test_max_age_wins_over_a_past_expires() -> None:
    """kills: proxy/compliance_cookies.py:cookie_lifetime — Max-Age read only when there is no
    Expires.

    Browsers take Max-Age over Expires: a cookie with a year's Max-Age and an Expires in the past
    lasts a year in the patron's browser; reading the Expires would call it a deletion."""
    life = cookie_lifetime("vid=abc; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=31536000")
    assert life.kind == LASTING
    gone = cookie_lifetime("vid=; Expires=Fri, 01 Jan 2100 00:00:00 GMT; Max-Age=0")
    assert gone.kind == DELETED


def test_a_max_age_worked_out_by_the_script_is_lasting() -> None:
    """kills: proxy/compliance_cookies.py:cookie_lifetime — computed max-age → session.

    `"vid=1; max-age=" + secondsPerYear`: the script gives the cookie a lifetime, however it
    works it out; it must be reported lasting, never as a session cookie."""
    (cookie,) = script_cookies('document.cookie = "vid=1; max-age=" + secondsPerYear;')
    assert cookie.lifetime.kind == LASTING


def test_a_computed_part_not_closed_by_a_semicolon_needs_review() -> None:
    """kills: proxy/compliance_cookies.py:_may_hold_attributes — `(last or after starts with
    ";")` → `True`.

    `"prefs=" + theme + "&lang=en"`: the computed part is not cut off by a `;` or the end, so it
    may carry `; max-age=…` itself: the lifetime needs review, not a session pass."""
    (cookie,) = script_cookies('document.cookie = "prefs=" + theme + "&lang=en";')
    assert cookie.lifetime.kind == UNREADABLE


def test_spread_options_in_a_js_cookie_call_need_review() -> None:
    """kills: proxy/compliance_cookies.py:_options_lifetime — `or "..." in options` dropped.

    `Cookies.set("vid", id, {...defaults})` takes its lifetime from an object the page builds
    elsewhere: it cannot be read here, so it is left for review, not passed as a session cookie."""
    (cookie,) = script_cookies('Cookies.set("vid", id, { ...defaults });')
    assert cookie.lifetime.kind == UNREADABLE


def test_lasting_with_attributes_defaults_carry_to_the_chained_set() -> None:
    """kills: proxy/compliance_cookies.py:_with_defaults — `own if own.kind != SESSION else
    defaults` → `own`.

    `Cookies.withAttributes({ expires: 365 }).set("vid", id)` stores a cookie for a year: the
    defaults give the lifetime when the call gives none."""
    (cookie,) = script_cookies('Cookies.withAttributes({ expires: 365 }).set("vid", id);')
    assert (cookie.name, cookie.lifetime.kind) == ("vid", LASTING)
    assert cookie.lifetime.words == "365 days"


def test_an_unchained_with_attributes_with_a_lifetime_is_reported() -> None:
    """kills: proxy/compliance_cookies.py:_with_defaults — unchained lasting defaults → None.

    `const api = Cookies.withAttributes({ expires: 365 })`: every cookie `api.set` writes, later
    and anywhere, lasts a year; the page must be reported as setting a lasting cookie."""
    (cookie,) = script_cookies("const api = Cookies.withAttributes({ expires: 365 });")
    assert cookie.lifetime.kind == LASTING


def test_cookie_store_set_with_an_options_object_is_read() -> None:
    """kills: proxy/compliance_cookies.py:_library_call — `if len(args) == 1:` → `if False:`.

    `cookieStore.set({ name, value, expires })` is the Cookie Store API's form with a lifetime;
    it must be read as a lasting cookie named by its `name` option, not skipped as a read."""
    cookies = script_cookies(
        'cookieStore.set({ name: "vid", value: id, expires: Date.now() + 31536e6 });'
    )
    assert [(c.name, c.lifetime.kind) for c in cookies] == [("vid", LASTING)]


def test_a_cookie_write_too_long_to_read_to_its_end_needs_review() -> None:
    """kills: proxy/compliance_cookies.py:script_cookies — `cut = len(script) > …` → `False`.

    A write whose statement runs past what is read (here a long comment before the lifetime)
    may set its lifetime in the part not read: it needs review, not a session pass."""
    script = 'document.cookie = "vid=abc" /*' + "x" * 1200 + '*/ + "; max-age=31536000";'
    (cookie,) = script_cookies(script)
    assert cookie.lifetime.kind == UNREADABLE


def test_a_cookie_write_going_on_over_a_newline_before_a_plus_is_read_whole() -> None:
    """kills: proxy/compliance_cookies.py:_statement — `not _GOES_ON.match(text, j)` dropped.

    A statement broken before its `+` goes on: `"vid=" + id\\n + "; max-age=31536000"` is one
    write of a lasting cookie, not a session cookie ending at the line."""
    (cookie,) = script_cookies('document.cookie = "vid=" + id\n    + "; max-age=31536000";')
    assert cookie.lifetime.kind == LASTING


def test_a_bracketed_cookie_write_is_read() -> None:
    """kills: proxy/compliance_cookies.py:_COOKIE_WRITE — the `["cookie"]` alternative dropped.

    `document["cookie"] = …` writes the cookie as surely as `document.cookie = …`."""
    (cookie,) = script_cookies("document['cookie'] = 'vid=1; max-age=31536000';")
    assert (cookie.name, cookie.lifetime.kind) == ("vid", LASTING)


def test_js_cookie_expires_counts_in_days() -> None:
    """kills: proxy/compliance_cookies.py:_options_lifetime — `86400 if key == "expires" else 1`
    → `1`.

    js-cookie's `expires: 365` is a year, and staff read the words: "365 days", not "365 s"."""
    (cookie,) = script_cookies('Cookies.set("vid", id, { expires: 365 });')
    assert cookie.lifetime.words == "365 days"


# --------------------------------------------------------------------------- saved pages


def _page_cookies(config: Config, html: str) -> Check:
    page = PageSource("start.html", html.encode(), ())
    return next(c for c in check_page(_good(config), config, page, ()) if c.id == "page.cookies")


def test_a_module_script_setting_a_lasting_cookie_fails(config: Config) -> None:
    """kills: proxy/compliance_pages.py:_RUN_TYPES — `"module"` dropped.

    `<script type="module">` runs in the browser like any script: the lasting cookie it stores
    must fail the page's cookie check."""
    html = '<script type="module">document.cookie = "vid=1; max-age=31536000";</script>'
    assert _page_cookies(config, html).result == FAIL


def test_a_javascript_url_setting_a_lasting_cookie_fails(config: Config) -> None:
    """kills: proxy/compliance_pages.py:_PageReader.handle_starttag — `javascript:` URLs not read
    as scripts.

    A link whose `href` is `javascript:…` runs that script when the patron clicks it."""
    html = "<a href=\"javascript:document.cookie='vid=1; max-age=31536000'\">Go</a>"
    assert _page_cookies(config, html).result == FAIL


def test_a_host_ending_in_the_proxy_name_is_a_third_party(config: Config) -> None:
    """kills: proxy/compliance_pages.py:page_third_parties — `endswith("." + public_host)` →
    `endswith(public_host)`.

    A host that merely ends in the proxy's name (`evilproxy.westonlibrary.test` beside
    `proxy.westonlibrary.test`) is someone else's: it must be listed as a third party."""
    public = config.host_map().public_host
    evil = "evil" + public
    html = f'<script>var beacon = "https://{evil}/p.js";</script>'
    hosts = page_third_parties(config, html.encode())
    assert evil in hosts


def test_speculation_rules_hosts_are_third_parties(config: Config) -> None:
    """kills: proxy/compliance_pages.py:_LOADING_DATA — `"speculationrules"` dropped.

    Speculation rules make the browser prefetch or prerender the pages they name: a third-party
    host there is loaded from the patron's browser, tracker list or not."""
    rules = '{"prefetch": [{"source": "list", "urls": ["https://prefetch.example.net/next"]}]}'
    html = f'<script type="speculationrules">{rules}</script>'
    assert "prefetch.example.net" in page_third_parties(config, html.encode())


def test_a_set_cookie_on_a_redirect_hop_is_listed(config: Config, tmp_path: Path) -> None:
    """kills: proxy/compliance_pages.py:read_page — cookies read from the last hop only.

    `curl -i -L` saves every hop: the Set-Cookie on the redirect is a cookie the browser keeps,
    and the page check must list it for staff."""
    saved = tmp_path / "start.http"
    saved.write_bytes(
        b"HTTP/1.1 302 Found\r\nLocation: /home\r\nSet-Cookie: trk=abc; Max-Age=31536000\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>hi</html>"
    )
    page = read_page(saved)
    assert page.set_cookies == ("trk=abc; Max-Age=31536000",)
    assert b"<html>hi" in page.html


# --------------------------------------------------------------------------- the rendered report


def _report(*checks: Check) -> Report:
    return Report(
        dt.datetime(2026, 6, 1, tzinfo=dt.UTC), [VendorReport("v", "Vendor", list(checks))]
    )


def test_an_incomplete_report_does_not_say_every_critical_check_passed() -> None:
    """kills: proxy/compliance_report.py:_summary — `not failing and not incomplete` →
    `not failing`.

    A vendor with a critical check unknown (a contract term not recorded) is incomplete: the
    summary must say so, never that every critical check passed."""
    report = _report(Check("contract.retention", CRITICAL, UNKNOWN, "Retention not recorded."))
    text = render_text(report)
    assert "every critical check passed" not in text
    assert "critical check unknown" in text


def test_the_text_report_counts_unknown_checks() -> None:
    """kills: proxy/compliance_report.py:_counts — the `unknown` count key changed.

    Staff read the per-vendor counts: an unknown check must be counted as one."""
    report = _report(
        Check("a", WARNING, UNKNOWN, "Needs review."), Check("b", WARNING, PASS, "Fine.")
    )
    assert "(1 pass, 0 fail, 1 unknown)" in render_text(report)


def test_the_text_and_html_reports_carry_the_evidence() -> None:
    """kills: proxy/compliance_report.py:render_text — `if c.evidence:` → `if False:`; and
    :_vendor_html — the evidence div dropped.

    The evidence (which host, which cookie) is what staff act on; both formats must carry it."""
    report = _report(Check("page.trackers", CRITICAL, FAIL, "Tracker.", "tracker.example.net"))
    assert "evidence: tracker.example.net" in render_text(report)
    assert '<div class="evidence">tracker.example.net</div>' in render_html(report)


def test_a_failed_check_is_marked_fail_in_the_text_report() -> None:
    """kills: proxy/compliance_report.py:render_text — `mark` always `pass`.

    A failed check must read FAIL in the table, not pass."""
    report = _report(Check("page.trackers", CRITICAL, FAIL, "Tracker on the page."))
    line = next(x for x in render_text(report).splitlines() if "page.trackers" in x)
    assert line.split()[0] == "FAIL"


# --------------------------------------------------------------------------- the live run


async def test_a_session_id_leak_is_found_in_every_session_of_the_live_run(tmp_path: Path) -> None:
    """kills: proxy/compliance_live.py:VendorRun.visit — the first sign-in's `proxy session id`
    canary dropped; and the second sign-in's (`again.sid`) dropped.

    An adapter that hands the vendor (a hash of) the proxy session id lets it follow the patron
    through the session: the canary check must find it in the first patron's search and in
    their second session alike, so each session's id must be a canary."""
    from proxy.compliance_live import LiveChecker
    from tests.test_compliance_live import SessionInUrlAdapter, write_live_config

    live = load_config(write_live_config(tmp_path), extra_checks=config_checks())
    results = await LiveChecker(live, adapters={"assertion": SessionInUrlAdapter}).run(["anon"])
    canary = next(c for c in results["anon"] if c.id == "live.canary")
    assert canary.result == FAIL
    assert "search: proxy session id" in canary.evidence
    assert "patron start URL again: proxy session id" in canary.evidence
