"""What caches may keep of a vendor's answers, and which validators go back to it (from a review
of HTTP caching semantics between patron, proxy and vendor; proxy/validators.py).

Every answer on a mapped host depends on the patron's proxy session: the session gate decides
whether there is an answer at all, and the session's vendor cookie jar (which the browser never
sees) decides what the vendor answers. A cache between the patron and the proxy (a library's or
an ISP's shared cache, a TLS-inspecting school proxy) and the browser's own cache only know the
request the browser sent, so the proxy must not let a vendor's caching headers claim more than
holds for the proxy's answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from proxy.validators import (
    open_validators,
    proxy_weak,
    seal,
    seal_validators,
    session_cache,
    session_key,
)
from tests.canary import CANARY
from tests.harness import one_vendor_proxy

VENDOR_HOST = "www.cache-vendor.test"


def directives(value: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (value or "").split(","):
        name, _, arg = part.strip().partition("=")
        if name:
            out[name.strip().lower()] = arg.strip().strip('"')
    return out


def vary_names(headers: Any) -> set[str]:
    return {
        v.strip().lower() for f in headers.getall("Vary", []) for v in f.split(",") if v.strip()
    }


def shared_cache_may_give_it_to_another(headers: Any) -> bool:
    """Whether RFC 9111 lets a shared cache store this answer and hand it to a request that
    carries another (or no) session cookie."""
    cc = directives(headers.get("Cache-Control"))
    if "private" in cc or "no-store" in cc:
        return False
    return "cookie" not in vary_names(headers) and "*" not in vary_names(headers)


async def signed_in(tmp_path: Path, port: int, slapd: Any, vendor_factory: Any, proxy_factory: Any):
    driver, vendor = await one_vendor_proxy(
        tmp_path, port, slapd, vendor_factory, proxy_factory, VENDOR_HOST
    )
    r = await driver.login(CANARY.uid, CANARY.password)
    assert r.status == 303 and driver.sid
    return driver, vendor


@pytest.mark.parametrize(
    ("ctype", "body", "status"),
    [
        # A search API's results: what the patron searched for, and rewritten by the proxy.
        ("application/json", b'{"results": ["canary-search-history"]}', 200),
        # A page scan of a licensed e-book: only for signed-in patrons.
        ("image/png", b"\x89PNG\r\n\x1a\nlicensed-page-scan", 200),
        # A 304 replaces the stored answer's Cache-Control (RFC 9111 section 4.3.4): `public`
        # on it makes a stored private answer shareable again.
        (None, b"", 304),
    ],
)
async def test_vendor_public_or_s_maxage_does_not_let_a_shared_cache_serve_the_sessions_answer(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    ctype: str | None,
    body: bytes,
    status: int,
) -> None:
    driver, vendor = await signed_in(tmp_path, port, running_slapd, vendor_factory, proxy_factory)

    async def personal(request: web.Request) -> web.StreamResponse:
        # The vendor personalises by its own cookie (which goes to the session jar) and lets
        # CDNs keep the answer, as it may on its own host where every visitor has its own cookie.
        headers = {
            "Cache-Control": "public, max-age=600, s-maxage=600",
            "Set-Cookie": "vsid=canary-vendor-session; Path=/",
            "ETag": '"r1"',
        }
        if ctype:
            headers["Content-Type"] = ctype
        if status == 304:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers)

    vendor.routes["/api/search"] = personal
    r = await driver.get_vendor(
        VENDOR_HOST,
        "/api/search?q=canary",
        headers={"If-None-Match": 'W/"r1"'} if status == 304 else {},
    )
    await r.read()
    assert r.status == status
    # The proxy's answer exists only for this session (without the cookie: 302 to /login), yet
    # it goes out `public, s-maxage=600` with nothing in Vary for the session cookie: a shared
    # cache in front of the proxy gives it to the next patron, or to anyone without a session.
    assert not shared_cache_may_give_it_to_another(r.headers), dict(r.headers)
    r = await driver.get_vendor(VENDOR_HOST, "/api/search?q=canary", sid="")
    assert r.status == 302  # what a request without the session gets from the proxy itself


async def test_browser_shows_the_vendors_old_answer_after_the_vendor_cookie_changed(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The Vary: Cookie case in Chromium: a vendor page asks "who is signed in to my personal
    account?", the patron signs in to it, the page asks again and is shown the cached "nobody"
    (on the vendor's own site the new cookie changes the cache key and the browser asks again)."""
    from playwright.async_api import async_playwright

    from tests.browser_support import launch
    from tests.harness import html_page, sign_in_through_form

    driver, vendor = await one_vendor_proxy(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, VENDOR_HOST
    )

    async def me(request: web.Request) -> web.StreamResponse:
        who = "personal-account" if "vuser=" in request.headers.get("Cookie", "") else "nobody"
        return web.json_response(
            {"signed_in_as": who},
            headers={"Cache-Control": "private, max-age=600", "Vary": "Cookie"},
        )

    async def vendor_sign_in(request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True}, headers={"Set-Cookie": "vuser=canary; Path=/"})

    vendor.routes["/api/me"] = me
    vendor.routes["/api/signin"] = vendor_sign_in
    vendor.routes["/page"] = html_page("<!doctype html><title>account</title><p>account</p>")

    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await (await browser.new_context()).new_page()
            await sign_in_through_form(page, f"http://{driver.public}")
            await page.goto(f"http://{driver.mapped(VENDOR_HOST)}/page")
            seen = await page.evaluate(
                """async () => {
                    const who = async () => (await (await fetch('/api/me')).json()).signed_in_as;
                    const before = await who();
                    await fetch('/api/signin', {method: 'POST'});
                    const after = await who();
                    return [before, after];
                }"""
            )
        finally:
            await browser.close()
    assert seen[0] == "nobody"
    assert seen == ["nobody", "personal-account"], (
        "the browser reused the vendor's answer from before the vendor's cookie changed; "
        f"/api/me reached the vendor {sum(r.path_qs == '/api/me' for r in vendor.requests)} time(s)"
    )


async def test_a_sub_resource_hosts_cached_validator_does_not_link_two_sessions(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """P4: every session must start clean on every host (docs/records-and-retention.md: "a
    vendor script cannot link two sessions by an identifier it left in local storage or the
    cache"). A session's first navigation to a host clears that host's cache, but a host the
    vendor only loads images or scripts from (its CDN host) never sees a navigation: what the
    browser cached there in Monday's session goes back to the vendor in Tuesday's as
    `If-None-Match` (an ETag tracker), after the browser was closed in between (as patrons on
    shared computers are told to do), which took the session cookie with it."""
    from playwright.async_api import async_playwright

    from tests.browser_support import launch
    from tests.harness import (
        html_page,
        ldap_directory,
        sign_in_through_form,
        vendor_toml,
        write_config,
    )

    vendor = await vendor_factory(VENDOR_HOST)
    cdn = "cdn.cache-vendor.test"
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, hosts=[VENDOR_HOST, cdn])},
    )
    driver = await proxy_factory(cfg)
    handed_out: list[str] = []

    async def pixel(request: web.Request) -> web.StreamResponse:
        tag = f'"visitor-{len(handed_out) + 1}"'
        if request.headers.get("If-None-Match") in handed_out:
            return web.Response(status=304, headers={"ETag": request.headers["If-None-Match"]})
        handed_out.append(tag)
        return web.Response(
            body=b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
            headers={"Content-Type": "image/gif", "ETag": tag, "Cache-Control": "no-cache"},
        )

    page_html = (
        "<!doctype html><title>results</title><p>results</p>"
        f"<img id=px src='http://{cdn}/pixel.gif'>"
    )
    vendor.routes["/results"] = html_page(page_html)
    vendor.routes["/pixel.gif"] = pixel

    async with async_playwright() as p:
        browser = await launch(p)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            own = f"http://{driver.public}"
            results = f"http://{driver.mapped(VENDOR_HOST)}/results"
            # Monday's session.
            await sign_in_through_form(page, own)
            await page.goto(results)
            await page.wait_for_function("document.getElementById('px').complete")
            # The browser is closed: its session cookies go, its HTTP cache stays.
            await context.clear_cookies()
            # Tuesday's session.
            await sign_in_through_form(page, own)
            await page.goto(results)
            await page.wait_for_function("document.getElementById('px').complete")
        finally:
            await browser.close()
    pixel_requests = [r for r in vendor.requests if r.path_qs == "/pixel.gif"]
    assert len(pixel_requests) == 2, [r.path_qs for r in vendor.requests]
    tuesday = dict((k.lower(), v) for k, v in pixel_requests[1].headers)
    assert tuesday.get("if-none-match") not in handed_out, (
        f"the vendor got Monday's ETag back in Tuesday's session: {tuesday.get('if-none-match')}"
    )


# ------------------------------------------------------------------ the rules, unit by unit


def _cc(value: str | None, vary: str = "") -> str:
    headers: CIMultiDict[str] = CIMultiDict()
    if value is not None:
        headers["Cache-Control"] = value
    if vary:
        headers["Vary"] = vary
    session_cache(headers)
    return headers["Cache-Control"]


@pytest.mark.parametrize(
    ("vendor_says", "vary", "sent"),
    [
        (None, "", "private, no-cache"),
        ("public, max-age=600, s-maxage=600", "", "max-age=600, private, no-cache"),
        ("max-age=31536000, immutable", "", "max-age=31536000, private, no-cache"),
        ("max-age = 60 ,no-transform,", "", "max-age=60, no-transform, private, no-cache"),
        # Qualified: only the named fields are private; the answer itself stays shareable.
        ('private="Set-Cookie, X", max-age=5', "", "max-age=5, private, no-cache"),
        ('no-cache="Set-Cookie", max-age=5', "Cookie", "max-age=5, private, no-cache"),
        ("no-store", "Accept, cookie", "no-store, private"),
        ("private, max-age=60", "Accept-Encoding", "private, max-age=60, no-cache"),
        # Unreadable (an unclosed quote, a member without its comma): nothing of it is trusted,
        # and it is never more cacheable than the browser would have read it.
        ('max-age=60, foo="', "", "no-store, private"),
        ("no-store, no-cache, pre-check=0 post-check=0", "", "no-store, private"),
    ],
)
def test_cache_control_is_made_the_sessions(vendor_says: str | None, vary: str, sent: str) -> None:
    assert _cc(vendor_says, vary) == sent


def sealed(session_id: str, tag: str) -> str | None:
    return seal(session_key(session_id), tag)


def _asked(headers: dict[str, str], session_id: str) -> dict[str, str]:
    h: CIMultiDict[str] = CIMultiDict(headers)
    open_validators(h, session_id)
    return dict(h)


def test_a_tag_sealed_for_the_session_goes_back_as_the_vendors_own() -> None:
    mine, theirs = "session-one", "session-two"
    strong, weak = sealed(mine, '"v1"'), sealed(mine, 'W/"v1"')
    assert strong is not None and weak is not None and weak == "W/" + strong
    assert "v1" in strong and strong != '"v1"'
    assert mine not in strong  # the key never shows in what the browser (or a script) sees
    other = sealed(theirs, '"v2"')
    assert _asked({"If-None-Match": f"{weak}, {other}"}, mine) == {"If-None-Match": 'W/"v1"'}
    # Another session's tag, or the vendor's own unsealed, is not passed on; nor the date.
    for tag in (sealed(theirs, '"v1"'), '"v1"', 'W/"v1"'):
        assert (
            _asked(
                {"If-None-Match": str(tag), "If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"},
                mine,
            )
            == {}
        )
    assert _asked({"If-None-Match": "*"}, mine) == {"If-None-Match": "*"}
    assert sealed(mine, "unquoted-tag") is None


def test_if_match_and_if_range_from_another_session_cannot_match() -> None:
    mine, theirs = "session-one", "session-two"
    assert _asked({"If-Match": str(sealed(mine, '"v1"'))}, mine) == {"If-Match": '"v1"'}
    # A precondition the browser's tag cannot meet fails at the vendor (412), as it would have.
    assert _asked({"If-Match": str(sealed(theirs, '"v1"'))}, mine) == {
        "If-Match": '"weston-proxy-unmatched"'
    }
    assert _asked({"If-Match": "*"}, mine) == {"If-Match": "*"}
    ranged = {"Range": "bytes=100-"}
    assert _asked({**ranged, "If-Range": str(sealed(mine, '"v1"'))}, mine) == {
        **ranged,
        "If-Range": '"v1"',
    }
    # Another session's tag, or a date: the whole answer is asked for, never bytes of it.
    assert _asked({**ranged, "If-Range": str(sealed(theirs, '"v1"'))}, mine) == {}
    assert _asked({**ranged, "If-Range": "Wed, 21 Oct 2015 07:28:00 GMT"}, mine) == {}


def test_a_date_goes_back_only_beside_a_tag_of_the_same_session() -> None:
    """An answer with a date and no tag is given a tag of the proxy's own: the browser sends it
    with the date, and the date alone reaches the vendor."""
    mine, theirs = "session-one", "session-two"
    date = "Mon, 01 Jan 2024 00:00:00 GMT"
    answer: CIMultiDict[str] = CIMultiDict({"Last-Modified": date})
    seal_validators(answer, mine)
    given = answer["ETag"]
    assert given.startswith('W/"')
    assert _asked({"If-None-Match": given, "If-Modified-Since": date}, mine) == {
        "If-Modified-Since": date
    }
    other: CIMultiDict[str] = CIMultiDict({"Last-Modified": date})
    seal_validators(other, theirs)
    assert _asked({"If-None-Match": other["ETag"], "If-Modified-Since": date}, mine) == {}
    assert _asked({"If-Modified-Since": date}, mine) == {}


async def test_a_date_given_in_one_session_reaches_the_vendor_only_in_it(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Through the proxy: a per-visitor `Last-Modified` (a cookie-less tracker) is revalidated
    within the session that was given it, and never arrives from another session."""
    driver, vendor = await signed_in(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    date = "Mon, 01 Jan 2024 00:00:07 GMT"  # "visitor 7"

    async def cover(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-Modified-Since") == date:
            return web.Response(status=304, headers={"Last-Modified": date})
        return web.Response(
            body=b"GIF89a-cover", headers={"Content-Type": "image/gif", "Last-Modified": date}
        )

    vendor.routes["/cover.gif"] = cover
    first = await driver.get_vendor(VENDOR_HOST, "/cover.gif")
    assert first.status == 200 and first.headers["Last-Modified"] == date
    tag = first.headers["ETag"]
    again = await driver.get_vendor(
        VENDOR_HOST, "/cover.gif", headers={"If-None-Match": tag, "If-Modified-Since": date}
    )
    assert again.status == 304
    sent = {k.lower(): v for k, v in vendor.requests[-1].headers}
    assert sent.get("if-modified-since") == date and "if-none-match" not in sent
    # The next session (the browser's cache kept the date and the tag).
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    later = await driver.get_vendor(
        VENDOR_HOST, "/cover.gif", headers={"If-None-Match": tag, "If-Modified-Since": date}
    )
    assert later.status == 200
    sent = {k.lower(): v for k, v in vendor.requests[-1].headers}
    assert "if-modified-since" not in sent and "if-none-match" not in sent


def test_a_tag_the_proxy_made_weak_goes_back_strong() -> None:
    """A rewritten body's strong tag reaches the browser weak; the vendor gets its own strong tag
    back (If-Match compares strongly), and a 304 answers with the browser's weak form."""
    mine = "session-one"
    key = session_key(mine)
    given = seal(key, '"item-v1"', rewritten=True)
    assert given is not None and given.startswith('W/"') and "item-v1" in given
    assert _asked({"If-Match": given}, mine) == {"If-Match": '"item-v1"'}
    assert _asked({"If-None-Match": given}, mine) == {"If-None-Match": '"item-v1"'}
    # A vendor's own weak tag stays weak; a 304's strong seal finds the browser's weak form.
    assert _asked({"If-None-Match": str(seal(key, 'W/"v2"', rewritten=True))}, mine) == {
        "If-None-Match": 'W/"v2"'
    }
    assert proxy_weak(str(seal(key, '"item-v1"'))) == given
    assert proxy_weak(given) is None
