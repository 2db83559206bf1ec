"""From a mutation sweep by hand of sessions, cookie jars and sign-out: each test kills one mutant
that the rest of the suite let through (16 of 55 survived it; each test here failed with its
mutant and passes without). Its docstring names the mutant and the behaviour it proves. The
time-based ones leave a margin of seconds for a loaded machine (an idle timeout of 3 s, uses
ten times as often)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from proxy.errors import StoreUnavailable
from proxy.services import SERVICES
from proxy.sessions import MemoryStore, Session, Sessions, copy_session, new_session_id
from proxy.web.forget import FORGET_PATH
from tests.canary import CANARY
from tests.harness import ldap_directory, one_vendor_proxy, vendor_toml, write_config

WWW = "www.vendor-one.test"
DEEP = "web.b.vendor-one.test"  # served by the wildcard "*.vendor-one.test"


def _session(**overrides: Any) -> Session:
    now = time.time()
    fields: dict[str, Any] = {
        "id": new_session_id(),
        "patron_key": "pk-synthetic-review",
        "databases": frozenset({"one"}),
        "created": now,
        "last_seen": now,
        "csrf": "csrf-synthetic",
    }
    fields.update(overrides)
    return Session(**fields)


async def test_the_store_forgets_a_session_at_its_absolute_lifetime_not_its_idle_timeout() -> None:
    """kills: proxy/sessions.py:Sessions._ttl — `min(idle, created + lifetime - now)` →
    `idle`. A session's stored record must die by itself when the session's fixed lifetime
    ends (P5: destroyed at expiry, even if no request ever comes to find it dead), not linger
    until an idle timeout that may be hours longer. The store (what a subpoena or a dump would
    find, and what the records inventory counts) holds nothing past the lifetime."""
    store = MemoryStore()
    sessions = Sessions(store, idle_timeout_s=600, lifetime_s=1)
    try:
        session = await sessions.start(patron_key="pk-synthetic-review", databases=frozenset())
        assert await store.count() == 1
        await asyncio.sleep(1.3)
        assert await store.get(session.id) is None
        assert await store.count() == 0
        assert await store.ages() == []
    finally:
        await store.close()


async def test_a_sessions_host_list_is_not_shared_between_copies() -> None:
    """kills: proxy/sessions.py:copy_session — `hosts=list(session.hosts)` →
    `hosts=session.hosts`. The list of vendor hosts sign-out clears must be the stored one: a
    request's copy noting a host without saving it (or a handler changing what `get` handed
    out) must not change what the store holds, and a saved snapshot must not follow the
    request's later changes (Redis keeps snapshots; the memory store must behave alike)."""
    store = MemoryStore()
    try:
        session = _session(hosts=["www.vendor-one.test"])
        await store.put(session, 30)
        session.hosts.append("www.unsaved.test")
        got = await store.get(session.id)
        assert got is not None and got.hosts == ["www.vendor-one.test"]
        got.hosts.append("www.changed-by-a-handler.test")
        again = await store.get(session.id)
        assert again is not None and again.hosts == ["www.vendor-one.test"]
        copy = copy_session(again)
        copy.hosts.clear()
        assert again.hosts == ["www.vendor-one.test"]
    finally:
        await store.close()


async def test_a_saved_cookie_jar_does_not_follow_the_requests_later_changes() -> None:
    """kills: proxy/sessions.py:_clone — `{k: _clone(v) for …}` → `dict(value)` (a shallow
    copy). A vendor cookie a request changed in its own copy of the session counts only once
    saved: the stored jar (what the next request of this patron sends to the vendor) and the
    adapter state must not change through a copy's nested lists and dicts."""
    store = MemoryStore()
    try:
        cookie = {"name": "vs", "value": "v1", "domain": "www.vendor-one.test", "path": "/"}
        session = _session(jars={"one": [cookie]}, state={"one": {"jti": "j-1"}})
        await store.put(session, 30)
        session.jars["one"][0]["value"] = "unsaved"
        session.state["one"]["jti"] = "unsaved"
        got = await store.get(session.id)
        assert got is not None
        assert got.jars["one"][0]["value"] == "v1"
        assert got.state["one"]["jti"] == "j-1"
        got.jars["one"].append(dict(cookie, name="other"))
        again = await store.get(session.id)
        assert again is not None and [c["name"] for c in again.jars["one"]] == ["vs"]
    finally:
        await store.close()


async def test_a_replace_with_no_life_left_reports_the_session_ended() -> None:
    """kills: proxy/sessions.py:MemoryStore.replace — `"stored" if ttl_s > 0 else "ended"` →
    `"stored"`. A write with no time left removes the session (P5) and must say so ("ended",
    the protocol's word), as the Redis store does, rather than claim it was stored."""
    store = MemoryStore()
    try:
        session = _session()
        await store.put(session, 30)
        got = await store.get_versioned(session.id)
        assert got is not None
        assert await store.replace(got[0], 0, got[1]) == "ended"
        assert await store.get(session.id) is None
    finally:
        await store.close()


async def test_a_host_first_reached_by_an_image_still_gets_its_first_page_cleared(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/sessions.py:Sessions.start — `state={CLEARED: []}` → `state={}` (a new
    session then looks begun by an older version, whose rule clears a host only on the request
    that first notes it). A patron at a shared computer signs in; a menu or vendor page loads an
    image from a database's host before the patron opens that database. The first *page* the
    patron opens there must still carry Clear-Site-Data, so the last patron's storage on that
    host (recent searches) is gone; later pages keep what this session stores."""
    driver, _vendor = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, WWW
    )
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    image = await driver.get_vendor(WWW, "/", headers={"Sec-Fetch-Mode": "no-cors"})
    assert image.status == 200 and "Clear-Site-Data" not in image.headers
    navigate = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    first = await driver.get_vendor(WWW, "/", headers=navigate)
    assert first.status == 200
    assert first.headers.get("Clear-Site-Data") == '"cache", "storage"'
    again = await driver.get_vendor(WWW, "/", headers=navigate)
    assert "Clear-Site-Data" not in again.headers


async def test_a_long_download_keeps_a_session_with_a_short_idle_timeout_alive() -> None:
    """kills: proxy/sessions.py:Sessions.touch_every_s — `min(TOUCH_EVERY_S, idle / 10)` →
    `TOUCH_EVERY_S`. A relay (a long PDF or video download) marks the session in use every
    `touch_every_s` (proxy/forward.py); on a library that set a short idle timeout, that
    interval must stay well inside it, or the patron is signed out in the middle of a download
    they are still receiving."""
    store = MemoryStore()
    sessions = Sessions(store, idle_timeout_s=3.0, lifetime_s=3600)
    try:
        session = await sessions.start(patron_key="pk-synthetic-review", databases=frozenset())
        assert sessions.touch_every_s <= 0.3
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:  # the relay's loop: a use every `touch_every_s`
            await asyncio.sleep(min(sessions.touch_every_s, 4.5))
            await sessions.in_use(session)
        assert await sessions.load(session.id) is not None
    finally:
        await store.close()


class _DownStore(MemoryStore):
    """A memory store that has stopped answering (Redis restarting mid-download)."""

    async def get_versioned(self, session_id: str) -> Any:
        raise StoreUnavailable(reason="connection refused")


async def test_a_store_outage_during_a_download_does_not_break_the_bytes_on_their_way() -> None:
    """kills: proxy/sessions.py:Sessions.in_use — `suppress(StoreUnavailable)` →
    `suppress(KeyError)`. Marking a running download as a use must not raise when the store
    is down at that moment: the patron keeps receiving the file; the next request meets the
    store (and its fail-closed page) as every request does."""
    store = _DownStore()
    sessions = Sessions(store, idle_timeout_s=600, lifetime_s=3600)
    try:
        session = _session(last_seen=time.time() - 60)
        await sessions.in_use(session)  # no exception
        session.last_seen = time.time() - 60
        try:
            await sessions.touch(session)
        except StoreUnavailable:
            pass
        else:
            raise AssertionError("touch itself reports the outage")
    finally:
        await store.close()


async def test_a_patron_browsing_steadily_is_not_signed_out_by_a_short_idle_timeout() -> None:
    """kills: proxy/sessions.py:Sessions.touch — `since >= min(min_interval_s, idle / 10)` →
    `since >= min_interval_s`. Each request records its use at most every 15 s, but never less
    often than ten times per idle timeout: a library that sets a short idle timeout (a public
    PC) must not see a patron who keeps clicking signed out after one timeout."""
    store = MemoryStore()
    sessions = Sessions(store, idle_timeout_s=3.0, lifetime_s=3600)
    try:
        started = await sessions.start(patron_key="pk-synthetic-review", databases=frozenset())
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:  # a request every 0.3 s
            await asyncio.sleep(0.3)
            session = await sessions.load(started.id)
            assert session is not None, "signed out while in use"
            await sessions.touch(session)
    finally:
        await store.close()


async def test_a_host_cleared_by_two_overlapping_first_pages_is_noted_once() -> None:
    """kills: proxy/sessions.py:Sessions.save_vendor — `cleared not in done` dropped. Two tabs
    opening a database at once (each with a copy of the session loaded before the other's
    write) both clear its host; the list of cleared hosts must name it once. Duplicates would
    eat into its MAX_NOTED_HOSTS bound, after which the first page of a further database is
    no longer cleared (the last patron's storage on it stays for the next person)."""
    from proxy.sessions import CLEARED

    store = MemoryStore()
    sessions = Sessions(store, idle_timeout_s=600, lifetime_s=3600)
    try:
        started = await sessions.start(patron_key="pk-synthetic-review", databases=frozenset())
        tab_a = await sessions.load(started.id)
        tab_b = await sessions.load(started.id)
        assert tab_a is not None and tab_b is not None
        await sessions.save_vendor(tab_a, "one", [], WWW, cleared=WWW)
        await sessions.save_vendor(tab_b, "one", [], WWW, cleared=WWW)
        stored = await sessions.load(started.id)
        assert stored is not None and stored.state[CLEARED] == [WWW]
        assert stored.hosts == [WWW]
    finally:
        await store.close()


async def _forget_stack(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> Any:
    vendor = await vendor_factory(WWW)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[WWW, "*.vendor-one.test"])},
        session='store = "memory"',
    )
    return await proxy_factory(cfg), vendor


async def test_an_expired_forget_address_clears_nothing(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/web/forget.py:_valid — `int(expires_text) < time.time()` dropped. A forget
    address works for TOKEN_S only: one left in a page, a history entry or a log from an
    earlier session cannot be replayed later to wipe a database's storage mid-session."""
    from proxy.web.forget import _key, _mac

    driver, _vendor = await _forget_stack(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    svc = driver.client.app[SERVICES]
    mapped = driver.mapped(WWW).rsplit(":", 1)[0].lower()
    past = int(time.time()) - 5
    token = f"{past}.{_mac(_key(svc), mapped, past)}"
    r = await driver.get_vendor(WWW, f"{FORGET_PATH}?part=0&t={token}", sid="")
    assert r.status == 403 and "Clear-Site-Data" not in r.headers
    future = int(time.time()) + 60
    token = f"{future}.{_mac(_key(svc), mapped, future)}"
    r = await driver.get_vendor(WWW, f"{FORGET_PATH}?part=0&t={token}", sid="")
    assert r.status == 204 and "Clear-Site-Data" in r.headers


async def test_signing_out_while_the_store_is_down_still_drops_the_sessions_assertions(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/web/pages.py:logout — the `svc.signer.forget(storage_key(sid))` loop before
    the store is read, dropped (`end_sessions` forgets too, but is never reached when the store
    fails). The patron presses "Sign out" while Redis is down: the page says the sign-out could
    not be confirmed, and the signed assertions cached in memory for that session (what a
    vendor was told about this visit) must still be gone (P5), not wait for their expiry."""
    from proxy.sessions import storage_key

    driver, _vendor = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, WWW
    )
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    assert (await driver.get_vendor(WWW, "/")).status == 200
    svc = driver.client.app[SERVICES]
    key = storage_key(driver.session_id())
    assert any(k[0] == key for k in svc.signer._cache)  # an assertion was signed and cached

    async def down(*_a: Any, **_k: Any) -> Any:
        raise StoreUnavailable(reason="connection refused")

    svc.sessions.store.get = down  # type: ignore[method-assign]
    svc.sessions.store.get_versioned = down  # type: ignore[method-assign]
    svc.sessions.store.delete = down  # type: ignore[method-assign]
    r = await driver.own(
        "POST",
        "/logout",
        headers={
            "Cookie": f"{driver.config.server.cookie_name}={driver.session_id()}",
            "Sec-Fetch-Site": "same-origin",
            "Origin": f"http://{driver.public}",
        },
    )
    assert r.status == 503
    assert not any(k[0] == key for k in svc.signer._cache)


def test_the_session_cookie_is_secure_on_an_https_proxy() -> None:
    """kills: proxy/web/pages.py:_set_session_cookie — `secure=_cookie_secure(config)` →
    `secure=False`. On a production proxy (https public_url) the patron's session cookie must
    carry Secure, so a browser never sends it over plain http (a café Wi-Fi attacker would take
    over the session and the patron's databases), with HttpOnly (no vendor script reads it),
    SameSite=Lax, Path=/ and the proxy's host as Domain (every mapped host gets it)."""
    from types import SimpleNamespace

    from aiohttp import web

    from proxy.web.pages import _set_session_cookie

    config = SimpleNamespace(
        server=SimpleNamespace(cookie_name="weston_session"),
        public=("https", "proxy.westonlibrary.org"),
    )
    resp = web.Response()
    _set_session_cookie(resp, config, "synthetic-session-id")  # type: ignore[arg-type]
    morsel = resp.cookies["weston_session"]
    assert morsel["secure"] is True
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    assert morsel["domain"] == "proxy.westonlibrary.org"


def test_a_requests_untouched_cookie_does_not_undo_what_another_request_set_meanwhile() -> None:
    """kills: proxy/jar.py:merged_jar — `was.get(key) != d and cookie is not None` →
    `cookie is not None` (every cookie of this request's copy written back). A page's
    parallel requests each bring back the vendor's cookies; when one of them renews the vendor
    session cookie (a sign-in, a rotated token) and a slower one that never touched it saves
    later, the renewed value must stay: writing back the stale copy signs the patron out of
    the database, or puts them back in a session the vendor has ended."""
    from proxy.jar import dump_jar, load_jar, merged_jar, store_set_cookies

    def dumped(*set_cookies: str, start: list[dict[str, Any]] | None = None) -> Any:
        jar = load_jar(start or [])
        store_set_cookies(jar, f"http://{WWW}/", list(set_cookies))
        return dump_jar(jar)

    before = dumped("vsid=old; Path=/")
    latest = dumped("vsid=renewed; Path=/", start=before)  # the other request's save
    ours = dumped("pref=wide; Path=/", start=before)  # this request set only another cookie
    merged = {c.name: c.value for c in merged_jar(latest, before, ours)}
    assert merged == {"vsid": "renewed", "pref": "wide"}


def test_a_secure_prefixed_cookie_from_a_plain_http_answer_is_ignored() -> None:
    """kills: proxy/jar.py:_as_browsers_read — `not (secure and secure_origin)` →
    `not secure`. A `__Secure-` (or `__Host-`) cookie is kept only when set over https, as a
    browser keeps it (RFC 6265bis 4.1.3): the prefix promises the vendor that no plain-http
    answer (one a network attacker between the proxy and an http vendor host could forge)
    planted it. The same cookie over https is kept."""
    from proxy.jar import load_jar, store_set_cookies

    for name in ("__Secure-vsid", "__Host-vsid"):
        jar = load_jar([])
        store_set_cookies(jar, f"http://{WWW}/", [f"{name}=planted; Secure; Path=/"])
        assert [c.name for c in jar] == []
        jar = load_jar([])
        store_set_cookies(jar, f"https://{WWW}/", [f"{name}=real; Secure; Path=/"])
        assert [c.name for c in jar] == [name]


def test_a_host_prefixed_cookie_with_a_narrower_path_is_ignored() -> None:
    """kills: proxy/jar.py:_as_browsers_read — `domain or path != "/"` → `domain`. A
    `__Host-` cookie must have Path=/ (RFC 6265bis 4.1.3.2): a browser ignores one set for a
    narrower path, and so must the jar, or a vendor page under one path could plant a
    `__Host-` session cookie the vendor trusts as set by its own host for all of it."""
    from proxy.jar import load_jar, store_set_cookies

    jar = load_jar([])
    store_set_cookies(jar, f"https://{WWW}/app/x", ["__Host-vsid=1; Secure; Path=/app"])
    assert [c.name for c in jar] == []
    store_set_cookies(jar, f"https://{WWW}/app/x", ["__Host-vsid=2; Secure; Path=/"])
    assert [(c.name, c.path) for c in jar] == [("__Host-vsid", "/")]


def test_an_attribute_over_1024_octets_is_ignored_not_obeyed() -> None:
    """kills: proxy/jar.py:_as_browsers_read — `_octets(text) > MAX_ATTRIBUTE_BYTES` dropped.
    A browser ignores an attribute whose value is over 1024 octets (RFC 6265bis 5.6): the
    cookie keeps its default path, so the vendor gets it back on its pages as a browser would
    send it (and the jar does not store a kilobyte-long Path per cookie)."""
    from proxy.jar import load_jar, store_set_cookies

    jar = load_jar([])
    store_set_cookies(jar, f"https://{WWW}/", ["a=1; Path=/" + "p" * 1100])
    assert [(c.name, c.path) for c in jar] == [("a", "/")]
