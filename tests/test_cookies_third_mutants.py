"""From a further mutation sweep (2 December 2026) of cookies (proxy/jar.py, proxy/page_cookies.py,
proxy/web/session_cookie.py): each test kills one mutant that the rest of the suite let through
(17 of 45 survived, 3 of them equivalent; each test here failed with its mutant and passes without). Its docstring names
the mutant and the behaviour it proves."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from proxy.jar import (
    MAX_ATTRIBUTE_BYTES,
    cookie_header,
    dump_jar,
    load_jar,
    storable_cross_site,
    store_set_cookies,
)
from proxy.web.session_cookie import clear_copies

PUBLIC = "proxy.westonlibrary.org"
MAPPED = f"www-vendor-one-test.{PUBLIC}"
WWW = "www.vendor-one.test"
EXPIRED = "weston_session=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


def _config(port: int | None = None) -> Any:
    return SimpleNamespace(
        server=SimpleNamespace(cookie_name="weston_session"),
        public=("https", PUBLIC, port),
    )


def test_a_conflict_on_a_mapped_host_with_a_port_deletes_that_hosts_own_domain_cookie() -> None:
    """kills: proxy/web/session_cookie.py:clear_copies — `(request.host or "").rsplit(":", 1)[0]
    .lower()` → `(request.host or "").lower()`. On a proxy whose public URL has a port, the
    browser's Host carries it; a copy a vendor script tossed with `Domain=` its mapped host is
    deleted only by a line naming that host without the port, or the patron stays on the "two
    sessions" page on that database."""
    request = make_mocked_request("GET", "/search", headers={"Host": f"{MAPPED}:8443"})
    resp = web.Response()
    clear_copies(resp, request, _config(8443))
    sent = resp.headers.getall("Set-Cookie")
    assert f"{EXPIRED}; Domain={MAPPED}; Path=/search" in sent
    assert f"{EXPIRED}; Domain={PUBLIC}; Path=/" in sent
    assert not [line for line in sent if ":8443" in line]


def test_a_stored_cookie_with_an_empty_domain_is_left_out_not_fatal() -> None:
    """kills: proxy/jar.py:_cookie — `… or not isinstance(domain, str) or not domain` →
    `… or not isinstance(domain, str)`. A jar entry with `"domain": ""` (written by another
    version, or damaged) is left out: the rest of the vendor's jar still loads and is sent, and
    the patron's every request to that vendor does not fail on it."""
    url = f"https://{WWW}/"
    jar = load_jar(
        [
            {"name": "broken", "value": "x", "domain": "", "path": "/"},
            {"name": "vsid", "value": "S1", "domain": WWW, "path": "/"},
        ]
    )
    assert cookie_header(jar, url) == "vsid=S1"
    assert [d["name"] for d in dump_jar(jar)] == ["vsid"]


def test_a_stored_cookie_whose_value_is_not_text_is_left_out() -> None:
    """kills: proxy/jar.py:_cookie — the `value is not None and not isinstance(value, str)`
    check dropped. A damaged jar entry whose value is a number or a list is left out: kept,
    it would go to the vendor as `vsid=[...]` (Python's spelling of the list) and be written
    back on every save, while the rest of the jar still loads and is sent."""
    url = f"https://{WWW}/"
    jar = load_jar(
        [
            {"name": "broken", "value": ["a", "b"], "domain": WWW, "path": "/"},
            {"name": "count", "value": 7, "domain": WWW, "path": "/"},
            {"name": "vsid", "value": "S1", "domain": WWW, "path": "/"},
        ]
    )
    assert cookie_header(jar, url) == "vsid=S1"
    assert [d["name"] for d in dump_jar(jar)] == ["vsid"]


def test_a_stored_cookie_whose_version_is_a_boolean_is_still_sent() -> None:
    """kills: proxy/jar.py:_cookie — `isinstance(given, kind) and not (kind is int and
    isinstance(given, bool))` → `isinstance(given, kind)`. A stored `"version": true` is no
    version number; taken as version 1, cookiejar's default policy never sends the cookie, and
    the vendor's session cookie silently stops reaching the vendor (the patron is signed out of
    the database)."""
    url = f"https://{WWW}/"
    entry = {"name": "vsid", "value": "S1", "domain": WWW, "path": "/"}
    jar = load_jar([{**entry, "version": True}])
    assert cookie_header(jar, url) == "vsid=S1"
    assert dump_jar(jar)[0]["version"] == 0


def test_a_path_of_exactly_the_attribute_limit_is_kept() -> None:
    """kills: proxy/jar.py:_as_browsers_read — `_octets(text) > MAX_ATTRIBUTE_BYTES` →
    `>= MAX_ATTRIBUTE_BYTES`. Browsers ignore an attribute only past 1024 octets (RFC 6265bis
    5.6); a vendor's Path of exactly 1024 octets is kept, so its cookie goes to that path only
    and not to every page of the vendor's host."""
    path = "/" + "p" * (MAX_ATTRIBUTE_BYTES - 1)
    jar = load_jar([])
    assert store_set_cookies(jar, f"https://{WWW}/", [f"deep=1; Path={path}"])
    assert [d["path"] for d in dump_jar(jar)] == [path]
    assert cookie_header(jar, f"https://{WWW}/") is None


def test_a_domain_of_dots_only_is_ignored_and_the_cookie_kept_host_only() -> None:
    """kills: proxy/jar.py:_as_browsers_read — `if not text.strip("."):` → `if not text:`. A
    `Domain=.` names no domain; browsers ignore the attribute and keep the cookie for the host
    that set it (RFC 6265 5.2.3), so the vendor's session cookie set so keeps being sent."""
    jar = load_jar([])
    assert store_set_cookies(jar, f"https://{WWW}/", ["vsid=S1; Domain=.; Path=/"])
    assert cookie_header(jar, f"https://{WWW}/") == "vsid=S1"
    assert cookie_header(jar, "https://cdn.vendor-one.test/") is None


def test_a_secure_prefixed_cookie_from_a_plain_http_vendor_is_refused() -> None:
    """kills: proxy/jar.py:_as_browsers_read — `not (secure and secure_origin)` → `not secure`.
    A `__Secure-` cookie is only ever set from a secure origin (RFC 6265bis 5.7); a vendor host
    reached over plain http (a MITM on that path) cannot plant one, even with `Secure`, for
    the proxy to replay to the vendor's https pages."""
    jar = load_jar([])
    assert not store_set_cookies(jar, f"http://{WWW}/", ["__Secure-sid=evil; Secure; Path=/"])
    assert dump_jar(jar) == []
    assert store_set_cookies(jar, f"https://{WWW}/", ["__Secure-sid=ok; Secure; Path=/"])


def test_a_host_prefixed_cookie_with_a_domain_is_refused() -> None:
    """kills: proxy/jar.py:_as_browsers_read — `(domain or path != "/")` → `path != "/"`. A
    `__Host-` cookie promises it is the host's alone: one naming a Domain is refused as browsers
    refuse it, so it never reaches the vendor's other hosts."""
    jar = load_jar([])
    header = "__Host-sid=1; Secure; Path=/; Domain=vendor-one.test"
    assert not store_set_cookies(jar, f"https://{WWW}/", [header])
    assert cookie_header(jar, "https://cdn.vendor-one.test/") is None
    assert dump_jar(jar) == []


def test_a_cookie_named_samesite_is_no_samesite_attribute() -> None:
    """kills: proxy/jar.py:storable_cross_site — `header.split(";")[1:]` → `[0:]`. A cookie
    called `SameSite` with the value `None` has no SameSite attribute (so it is Lax): another
    vendor's page starting a cross-site request cannot plant it in this vendor's jar."""
    assert storable_cross_site(["SameSite=None; Path=/"]) == []
    assert storable_cross_site(["a=1; Path=/; SameSite=None"]) == ["a=1; Path=/; SameSite=None"]


def test_a_cookie_name_outside_ascii_is_left_alone() -> None:
    """kills: proxy/page_cookies.py:page_cookie_names — `name.isascii() and name.isprintable()
    and …` → `name.isprintable() and …`. A name a Set-Cookie header cannot carry back intact
    (`café`) gets no deletion line: what the browser would read from such a line is not the
    cookie it holds, and the answer carries a header it cannot use."""
    from proxy.page_cookies import page_cookie_names

    assert page_cookie_names("café=1; xid=2") == ["xid"]


def test_a_cookie_name_with_a_control_character_is_left_alone() -> None:
    """kills: proxy/page_cookies.py:page_cookie_names — `name.isascii() and name.isprintable()
    and …` → `name.isascii() and …`. A name with a tab in it cannot be written back in a
    Set-Cookie line as the browser holds it; it gets no deletion line."""
    from proxy.page_cookies import page_cookie_names

    assert page_cookie_names("a\tb=1; xid=2") == ["xid"]


def test_deletions_that_fill_the_header_budget_exactly_are_all_sent() -> None:
    """kills: proxy/page_cookies.py:shared_cookie_deletions — `if cost > budget:` →
    `if cost >= budget:`. The budget is a most: deletions costing exactly HEADER_BUDGET bytes of
    header (with each `Set-Cookie: ` and line end) are all sent, one byte more and the name is
    left for a later page."""
    from proxy.page_cookies import HEADER_BUDGET, shared_cookie_deletions

    host, public = "www-a-test.proxy.lib.org", "proxy.lib.org"
    fixed = len("=; Max-Age=0; Path=/; Secure; Domain=proxy.lib.org") + len("Set-Cookie: \r\n")
    name = "n" * (HEADER_BUDGET - fixed)
    assert shared_cookie_deletions(f"{name}=1", host, public, frozenset(), True) == [
        f"{name}=; Max-Age=0; Path=/; Secure; Domain=proxy.lib.org"
    ]
    assert shared_cookie_deletions(f"{name}n=1", host, public, frozenset(), True) == []


def test_deletions_stay_within_the_header_budget_counting_each_header_line() -> None:
    """kills: proxy/page_cookies.py:shared_cookie_deletions — `len(line) + len("Set-Cookie:
    \\r\\n")` → `len(line)`. (Also kills `budget -= cost` deleted.) A page with many script cookies gets deletions whose header bytes,
    `Set-Cookie: ` and line end included, stay within HEADER_BUDGET, so the answer still fits a
    TLS terminator's 4 KiB header buffer (else the patron gets a 502 instead of the page)."""
    from proxy.page_cookies import HEADER_BUDGET, shared_cookie_deletions

    many = "; ".join(f"tracker{i:03d}=v" for i in range(200))
    lines = shared_cookie_deletions(
        many, "www-a-test.proxy.lib.org", "proxy.lib.org", frozenset(), True
    )
    assert lines
    assert sum(len(f"Set-Cookie: {line}\r\n") for line in lines) <= HEADER_BUDGET


# Checked and found fine (no test kept):
# - proxy/web/session_cookie.py:clear_copies — `if here and here not in domains` → `if here not
#   in domains`: only an empty Host reaches it, and its `Domain=` (empty) line is one a browser
#   reads as the host-only deletion already sent.
# - proxy/web/session_cookie.py:_paths — `raw_path.split("?", 1)[0] or "/"` → without `or "/"`:
#   aiohttp's raw_path is never empty (a request target always has a character).
# - proxy/page_cookies.py:shared_cookie_deletions — `if cost > budget: break` → `continue`: a
#   later, shorter name still fits the same budget; the bound holds and the rest wait either way.
