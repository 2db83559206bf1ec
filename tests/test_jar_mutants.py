"""From a second mutation sweep by hand (1 December 2026) of the vendor cookie jars and sessions (proxy/jar.py,
proxy/sessions.py, proxy/page_cookies.py): each test kills one mutant the rest of the suite let
through (it failed with its mutant applied and passes without). Its docstring names the mutant
and the behaviour it proves. Unit-level: the jar and the memory store are local behaviour; the
vendors' hosts are synthetic, the patron keys canary-style, nothing leaves the process."""

from __future__ import annotations

import time
from typing import Any

from proxy.jar import (
    MAX_COOKIE_BYTES,
    MAX_JAR_BYTES,
    cookie_header,
    dump_jar,
    load_jar,
    store_set_cookies,
    stored_size,
)
from proxy.sessions import MAX_NOTED_HOSTS, MemoryStore, Session, Sessions, new_session_id

WWW = "www.vendor-one.test"
CDN = "cdn.vendor-one.test"


def _jar_after(url: str, *set_cookies: str) -> list[dict[str, Any]]:
    jar = load_jar([])
    store_set_cookies(jar, url, list(set_cookies))
    return dump_jar(jar)


def test_a_vendor_deleting_its_cookie_with_a_date_before_1970_deletes_it() -> None:
    """kills: proxy/jar.py:_as_browsers_read — `formatdate(max(when, 1), …)` →
    `formatdate(when, …)`. A vendor signing the patron out deletes its session cookie with an
    Expires in the past; a date before 1970 (`Expires=Thu, 01 Jan 1960 …`, a common way to
    write "long ago") must delete it as a browser does, not leave it as a session cookie that the
    proxy keeps replaying to the vendor (cookiejar reads no date before 1970)."""
    url = f"https://{WWW}/"
    jar = load_jar([])
    store_set_cookies(jar, url, ["vsid=S1; Path=/"])
    assert cookie_header(jar, url) == "vsid=S1"
    changed = store_set_cookies(
        jar, url, ["vsid=S1; Expires=Thu, 01 Jan 1960 00:00:00 GMT; Path=/"]
    )
    assert changed
    assert cookie_header(jar, url) is None
    assert dump_jar(jar) == []


def test_a_stored_domain_cookie_without_its_flags_still_reaches_the_vendors_other_hosts() -> None:
    """kills: proxy/jar.py:_cookie — `… else domain[0] == "."` → `… else False` for
    `domain_specified`. A jar entry written by another version (a rolling upgrade) that lacks
    `domain_specified` is a Domain cookie when its domain starts with a dot: the vendor's
    session cookie for `.vendor-one.test` keeps reaching `cdn.vendor-one.test` (or the patron
    is signed out of the database by the upgrade); a host-only one stays on its host."""
    entries = [
        {"name": "vsid", "value": "S1", "domain": ".vendor-one.test", "path": "/"},
        {"name": "pref", "value": "p", "domain": WWW, "path": "/"},
    ]
    jar = load_jar(entries)
    assert cookie_header(jar, f"https://{CDN}/") == "vsid=S1"
    assert sorted((cookie_header(jar, f"https://{WWW}/") or "").split("; ")) == [
        "pref=p",
        "vsid=S1",
    ]


def test_a_cookie_too_big_for_what_is_left_of_the_jar_does_not_cost_older_ones() -> None:
    """kills: proxy/jar.py:dump_jar — `if size + n > MAX_JAR_BYTES: continue` → `break`. Past
    MAX_JAR_BYTES a cookie that does not fit in what is left is dropped, not every cookie older
    than it: the small session cookie the vendor set at sign-in stays when a later flood of
    large cookies fills the jar (a break would sign the patron out of the vendor)."""
    now = time.time()
    big = "v" * 4000
    entries = [
        {"name": f"big{n:02d}", "value": big, "domain": WWW, "path": "/", "set_at": now - n}
        for n in range(20)  # 20 x ~4 KB, newest first: more than MAX_JAR_BYTES
    ]
    entries.append({"name": "vsid", "value": "S1", "domain": WWW, "path": "/", "set_at": now - 100})
    stored = dump_jar(load_jar(entries))
    names = {d["name"] for d in stored}
    assert sum(stored_size(d) for d in stored) <= MAX_JAR_BYTES
    assert "big19" not in names
    assert "vsid" in names


def test_a_cookie_of_exactly_4096_octets_is_kept() -> None:
    """kills: proxy/jar.py:_as_browsers_read — `… > MAX_COOKIE_BYTES` → `>= MAX_COOKIE_BYTES`.
    Browsers keep a cookie whose name and value total 4096 octets (RFC 6265bis 5.6 ignores only
    one *over* it); a vendor's large session token at the limit must be kept and replayed."""
    value = "v" * (MAX_COOKIE_BYTES - len("tok"))
    stored = _jar_after(f"https://{WWW}/", f"tok={value}; Path=/")
    assert [d["name"] for d in stored] == ["tok"]


def test_a_secure_prefixed_cookie_keeps_its_secure_flag_whatever_follows() -> None:
    """kills: proxy/jar.py:_as_browsers_read — `secure = secure or key == "secure"` →
    `secure = key == "secure"`. A `__Secure-` session cookie set over https with Secure before
    its other attributes (`; Secure; Path=/; HttpOnly`, the usual order) is kept: only the
    attribute's presence counts, not whether it came last."""
    stored = _jar_after(f"https://{WWW}/", "__Secure-sid=S1; Secure; Path=/; HttpOnly")
    assert [d["name"] for d in stored] == ["__Secure-sid"]


def test_a_host_only_cookie_is_not_replayed_to_the_hosts_subdomains() -> None:
    """kills: proxy/jar.py:_policy — `strict_ns_domain=_Policy.DomainStrictNonDomain` →
    `strict_ns_domain=0`. A cookie set without Domain is host-only (RFC 6265 5.3 step 6): the
    vendor gets it back on the host that set it, never on a deeper host (a vendor served on a
    wildcard, `*.vendor-one.test`, has `a.www.vendor-one.test` too, which may be another
    customer's or a user-content site), as a browser would never send it there."""
    jar = load_jar([])
    store_set_cookies(jar, f"https://{WWW}/", ["pref=p; Path=/"])
    jar = load_jar(dump_jar(jar))
    assert cookie_header(jar, f"https://{WWW}/") == "pref=p"
    assert cookie_header(jar, f"https://a.{WWW}/") is None
    assert cookie_header(jar, f"https://{CDN}/") is None


def _session(**overrides: Any) -> Session:
    now = time.time()
    fields: dict[str, Any] = {
        "id": new_session_id(),
        "patron_key": "pk-synthetic-mutjar2",
        "databases": frozenset({"one"}),
        "created": now,
        "last_seen": now,
        "csrf": "csrf-synthetic",
    }
    fields.update(overrides)
    return Session(**fields)


async def test_the_hosts_a_session_notes_for_sign_out_are_bounded_and_each_once() -> None:
    """kills: proxy/sessions.py:Sessions.save_vendor — `len(stored.hosts) < MAX_NOTED_HOSTS` →
    `len(stored.hosts) <= MAX_NOTED_HOSTS` (it also fails with `host not in stored.hosts`
    dropped, which test_session_mutants.py already kills). The list of vendor hosts sign-out asks the
    browser to forget is written on every request: it names each host once (a patron's many
    requests to one host do not eat the bound, after which a further database's host is not
    forgotten at sign-out) and never grows past MAX_NOTED_HOSTS (a hostile page cannot grow
    the stored session by sending the browser to endless hosts)."""
    store = MemoryStore()
    sessions = Sessions(store, idle_timeout_s=3600, lifetime_s=7200)
    try:
        session = await sessions.start(patron_key="pk-synthetic-mutjar2", databases=frozenset())
        for _ in range(3):
            await sessions.save_vendor(session, "one", [], WWW)
        stored = await store.get(session.id)
        assert stored is not None and stored.hosts == [WWW]
        for i in range(MAX_NOTED_HOSTS + 5):
            await sessions.save_vendor(session, "one", [], f"www.db-{i:03d}.test")
        stored = await store.get(session.id)
        assert stored is not None and len(stored.hosts) == MAX_NOTED_HOSTS
        assert stored.hosts[0] == WWW
    finally:
        await store.close()


async def test_a_request_does_not_blank_state_another_request_stored() -> None:
    """kills: proxy/sessions.py:Sessions.save_vendor — `if key in session.state:` dropped
    (every state key this request's copy lacks written back as None). A request loaded before
    another stored a non-list state value (an adapter's per-session data) saves its own
    vendor's cookies without erasing that value."""
    store = MemoryStore()
    sessions = Sessions(store, idle_timeout_s=3600, lifetime_s=7200)
    try:
        session = await sessions.start(patron_key="pk-synthetic-mutjar2", databases=frozenset())
        slow = await store.get(session.id)
        other = await store.get(session.id)
        assert slow is not None and other is not None
        other.state["adapter-two"] = {"token": "t-synthetic"}
        await sessions.save_vendor(other, "two", [])
        slow.jars["one"] = [{"name": "vsid", "value": "S1", "domain": WWW, "path": "/"}]
        await sessions.save_vendor(slow, "one", [])
        stored = await store.get(session.id)
        assert stored is not None
        assert stored.state.get("adapter-two") == {"token": "t-synthetic"}
        assert [d["name"] for d in stored.jars["one"]] == ["vsid"]
    finally:
        await store.close()


def test_a_first_page_on_a_host_outside_the_shared_domains_still_clears_its_own_cookies() -> None:
    """kills: proxy/page_cookies.py:shared_cookie_deletions — `if not domains and not
    host_too` → `if not domains`. With no parent domain shared with other vendors (a host not
    under the public host, or one whose parents are the library's other sites), a session's
    first page there must still delete the script cookies an earlier patron's session left on
    that host itself: the new patron starts clean (P4, a shared computer)."""
    from proxy.page_cookies import shared_cookie_deletions

    host = "www-a-test.other.example"
    lines = shared_cookie_deletions(
        "weston_session=s3cret; xid=tracker-value",
        host,
        "proxy.lib.org",
        frozenset({"weston_session"}),
        True,
        host_too=True,
    )
    assert lines == [
        "xid=; Max-Age=0; Path=/; Secure",
        f"xid=; Max-Age=0; Path=/; Secure; Domain={host}",
    ]
    assert shared_cookie_deletions("xid=1", host, "proxy.lib.org", frozenset(), True) == []


def test_a_domain_cookie_naming_the_public_suffix_host_that_set_it_is_kept() -> None:
    """kills: proxy/jar.py:_Policy.set_ok_domain — `domain == host or` dropped. A Domain
    attribute that is a public suffix is refused, except when it names the very host that set
    it (RFC 6265 5.3 step 5): a vendor served from such a host (`github.io` itself) keeps its
    session cookie, and gets it back on that host."""
    jar = load_jar([])
    assert store_set_cookies(jar, "https://github.io/", ["a=1; Domain=github.io; Path=/"])
    assert cookie_header(jar, "https://github.io/") == "a=1"


def test_a_domain_cookie_naming_a_public_suffix_host_stays_on_that_host() -> None:
    """A defect this sweep found (fixed 1 December 2026 in proxy/jar.py:_Policy.set_ok_domain):
    RFC 6265 5.3 step 5 makes a cookie whose Domain is a public suffix, kept because it names
    the very host that set it, *host-only* ("set the domain-attribute to the empty string").
    The jar kept it as a Domain cookie (`.github.io`), so a cookie the host `github.io` set was
    replayed to every other site under the suffix (`lib.github.io`): a host it was not set
    for, and that no browser would send it to. (One vendor's jar only goes to its configured
    hosts, so it mattered for a vendor with hosts on both.) Kept host-only through a dump and
    load of the jar, as the session stores it."""
    jar = load_jar([])
    store_set_cookies(jar, "https://github.io/", ["a=1; Domain=github.io; Path=/"])
    assert cookie_header(jar, "https://github.io/") == "a=1"
    assert cookie_header(jar, "https://lib.github.io/") is None
    stored = load_jar(dump_jar(jar))
    assert cookie_header(stored, "https://github.io/") == "a=1"
    assert cookie_header(stored, "https://lib.github.io/") is None
