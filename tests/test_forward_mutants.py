"""From a second mutation sweep by hand (1 December 2026) of proxy/forward.py (what reaches a vendor and what the
browser keeps: P1, P2, P4). Each test names the mutant it kills, a small change the rest of the
suite let through; each failed with its mutant applied and passes on the code as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxy.services import SERVICES
from proxy.sessions import CLEARED, MAX_NOTED_HOSTS
from tests.canary import CANARY
from tests.harness import one_vendor_proxy

WWW = "www.vendor-one.test"
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}


async def _signed_in(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[Any, Any, Any]:
    driver, vendor = await one_vendor_proxy(
        tmp_path, port, slapd, vendor_factory, proxy_factory, WWW
    )
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    sessions = driver.client.server.app[SERVICES].sessions
    return driver, vendor, sessions


async def test_the_sessions_list_of_cleared_hosts_stays_within_its_bound(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:Upstream.forward — `len(cleared) < MAX_NOTED_HOSTS` →
    `len(cleared) <= MAX_NOTED_HOSTS`.

    The hosts whose first page a session has cleared are kept in the session record, which is
    bounded (MAX_NOTED_HOSTS) like its list of hosts: a session that has opened that many
    hosts already does not grow its record on the next one (a script opening endless mapped
    hosts cannot make one session's record, written on each request, grow without end)."""
    driver, _vendor, sessions = await _signed_in(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    sid = driver.session_id()
    for i in range(MAX_NOTED_HOSTS):
        s = await sessions.load(sid)
        await sessions.save_vendor(s, "one", [], None, cleared=f"www.db-{i:03d}.test")
    s = await sessions.load(sid)
    assert len(s.state[CLEARED]) == MAX_NOTED_HOSTS and WWW not in s.state[CLEARED]
    page = await driver.get_vendor(WWW, "/", headers=NAVIGATE)
    assert page.status == 200
    stored = await sessions.load(sid)
    assert stored is not None and len(stored.state[CLEARED]) == MAX_NOTED_HOSTS


def test_without_fetch_metadata_only_a_get_for_html_is_taken_for_a_page() -> None:
    """kills: proxy/forward.py:_navigation — `request.method == "GET" and "text/html" in
    Accept` → `… or …`.

    An older browser sends no Sec-Fetch-Mode: a page load is then a GET that accepts HTML. An
    image (a GET for `image/*`) or a form post is no page: it must not be the request that
    clears the host's storage (Clear-Site-Data would wipe what the page's scripts just stored)
    nor delete the page's script cookies."""
    from aiohttp.test_utils import make_mocked_request

    from proxy.forward import _navigation

    page = make_mocked_request("GET", "/", headers={"Accept": "text/html,*/*;q=0.8"})
    image = make_mocked_request("GET", "/logo.png", headers={"Accept": "image/avif,image/*"})
    post = make_mocked_request("POST", "/search", headers={"Accept": "text/html"})
    assert _navigation(page)
    assert not _navigation(image)
    assert not _navigation(post)
    framed = make_mocked_request(
        "GET", "/", headers={"Sec-Fetch-Mode": "no-cors", "Accept": "text/html"}
    )
    assert not _navigation(framed)


def _site(**initiator: Any) -> str:
    from proxy.forward import Upstream
    from proxy.hosts import HostMap
    from proxy.privacy import Initiator

    upstream = Upstream.__new__(Upstream)  # `_site` reads the host map only
    upstream.hosts = HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=None,
        vendor_hosts=[("v", ["www.v.com", "*.v.com"]), ("w", ["www.w.org"])],
    )
    return upstream._site(Initiator(**initiator), "www.v.com")


def test_a_request_the_patron_started_themselves_is_same_site_whatever_its_referer() -> None:
    """kills: proxy/forward.py:Upstream._site — `fetch_site in ("same-origin", "none")` →
    `fetch_site in ("same-origin",)`.

    `Sec-Fetch-Site: none` is the browser's own word (a page cannot set it) that the patron
    started this request (typed address, bookmark, reload): the vendor's SameSite cookies go on
    it, its Strict ones included, even when a Referer names another site (a reload keeps the
    one of the page's first load)."""
    from proxy.forward import SAME

    assert (
        _site(
            fetch_site="none",
            referer="https://mail.example/inbox",
            fetch_mode="navigate",
            fetch_dest="document",
        )
        == SAME
    )


async def _broken_download(
    tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[bytes, bool, list[Any]]:
    """A vendor that sends part of a file (chunked, no length) and drops the connection: what
    the patron received, whether their read ended in an error, and the proxy's observations."""
    import asyncio

    from aiohttp import ClientPayloadError, web

    driver, vendor, _sessions = await _signed_in(
        tmp_path, port, slapd, vendor_factory, proxy_factory
    )

    async def broken(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return resp

    vendor.routes["/broken.bin"] = broken
    upstream = driver.client.server.app[SERVICES].upstream
    seen: list[Any] = []
    counted = upstream.observe
    upstream.observe = lambda o: (seen.append(o), counted and counted(o))
    r = await driver.get_vendor(WWW, "/broken.bin")
    got, failed = b"", False
    try:
        got = await r.read()
    except ClientPayloadError:
        failed = True
    for _ in range(50):
        if any(o.path == "/broken.bin" for o in seen):
            break
        await asyncio.sleep(0.05)
    return got, failed, [o for o in seen if o.path == "/broken.bin"]


async def test_a_download_the_vendor_broke_off_never_looks_complete_to_the_patron(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:Upstream._relay — `request.transport.close()` removed from the
    broken-relay branch.

    A vendor drops the connection in the middle of a file it sent without a length: the
    patron's connection is broken off too, so the browser reports a failed download. Ended
    cleanly instead, the patron would keep a truncated PDF or e-book that looks whole."""
    got, failed, _seen = await _broken_download(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    assert failed, f"a truncated download of {len(got)} bytes ended as if complete"


async def test_a_download_the_vendor_broke_off_is_counted_as_a_failure(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:Upstream._relay — `status = 502` removed from the broken-relay
    branch.

    A vendor that drops the connection in the middle of a file has failed the patron though
    its status line said 200: the observation the metrics and the library's statistics get
    for it says 502 (a failed request), not a 200 delivered, so IT staff see the failure."""
    _got, _failed, seen = await _broken_download(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    assert len(seen) == 1 and seen[0].status == 502 and seen[0].bytes <= 1000


async def test_a_failing_statistics_counter_neither_breaks_a_page_nor_logs_a_traceback(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: Any,
) -> None:
    """kills: proxy/forward.py:Upstream._observe — `except Exception` → `except ValueError`.

    The statistics hook runs after the patron's page is sent; whatever it raises (a bug, a
    full disk) is logged once as `observer_failed` for IT staff, with the vendor and the kind
    of error only: no traceback (which could carry a request's details) and the page stays
    the patron's."""
    driver, _vendor, _sessions = await _signed_in(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    upstream = driver.client.server.app[SERVICES].upstream

    def failing(_observation: Any) -> None:
        raise RuntimeError("counter store gone")

    upstream.observe = failing
    page = await driver.get_vendor(WWW, "/", headers=NAVIGATE)
    assert page.status == 200 and "vendor www.vendor-one.test" in await page.text()
    logged = log_stream.getvalue()
    assert "observer_failed" in logged and "RuntimeError" in logged
    assert "Traceback" not in logged and "counter store gone" not in logged


async def test_a_pages_overlapping_first_requests_count_one_session_start_at_the_vendor(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:Upstream.forward — `first_at_vendor = first_at_vendor and
    "seen" in added` removed.

    A database's first page loads its images and scripts at once; each request finds the
    session not yet seen at the vendor, but the statistics count the session as started there
    once (only the request whose write records it): otherwise a page of ten pieces would count
    as ten patrons' visits in the library's usage figures."""
    import asyncio

    from tests.harness import SlowRoute

    driver, vendor, _sessions = await _signed_in(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    vendor.routes["/piece"] = SlowRoute(0.4)
    upstream = driver.client.server.app[SERVICES].upstream
    seen: list[Any] = []
    counted = upstream.observe
    upstream.observe = lambda o: (seen.append(o), counted and counted(o))
    answers = await asyncio.gather(
        *(driver.get_vendor(WWW, "/piece", headers={"Sec-Fetch-Mode": "no-cors"}) for _ in range(4))
    )
    assert [a.status for a in answers] == [200] * 4
    for a in answers:
        await a.read()
    pieces = [o for o in seen if o.path == "/piece"]
    assert len(pieces) == 4
    assert sum(o.first_at_vendor for o in pieces) == 1


async def test_a_sessions_first_page_on_a_host_deletes_the_script_cookies_left_there(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:Upstream._relay — `host_too=forget` → `host_too=False` (and,
    for the image, `cookies is not None and _navigation(request)` → `cookies is not None`).

    A vendor script on an earlier session wrote an ID cookie on the database's mapped host
    (the last patron at a public PC, or the same patron's last session): the new session's
    first page there deletes it on the host itself, before the page's scripts can read it, so
    the vendor cannot link the two sessions (P4). The proxy's own session cookie is kept, and
    an image request never deletes what the page's scripts keep."""
    driver, _vendor, _sessions = await _signed_in(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory
    )
    left = {"Cookie": "vendor_uid=synthetic-id-123"}
    image = await driver.get_vendor(WWW, "/logo.png", headers={"Sec-Fetch-Mode": "no-cors", **left})
    assert image.status == 200
    assert not any("vendor_uid" in c for c in image.headers.getall("Set-Cookie", []))
    first = await driver.get_vendor(WWW, "/", headers={**NAVIGATE, **left})
    assert first.status == 200 and "Clear-Site-Data" in first.headers
    deletions = first.headers.getall("Set-Cookie", [])
    host_only = [c for c in deletions if c.startswith("vendor_uid=;") and "Domain=" not in c]
    assert host_only and "Max-Age=0" in host_only[0]
    name = driver.config.server.cookie_name
    assert not any(c.startswith(f"{name}=") for c in deletions)
    assert "synthetic-id-123" not in " ".join(deletions)


async def test_a_vendors_own_timeout_cuts_a_slow_answer_short(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:Upstream.send — `read_timeout=vendor.timeout_s or
    s.upstream_timeout_s` → `read_timeout=s.upstream_timeout_s`.

    IT staff give a vendor known to hang its own, shorter timeout (`timeout_s`): a patron
    waits that long, not the server's 30 s default, before the proxy's error page (an error
    status, no traceback, no vendor body)."""
    import time

    from tests.harness import SlowRoute, ldap_directory, vendor_toml, write_config

    vendor = await vendor_factory(WWW)
    vendor.routes["/slow"] = SlowRoute(8.0)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, extra="timeout_s = 1\n")},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    started = time.monotonic()
    r = await driver.get_vendor(WWW, "/slow", headers=NAVIGATE)
    text = await r.text()
    assert time.monotonic() - started < 6
    assert r.status >= 500 and "Traceback" not in text
