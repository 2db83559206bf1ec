"""From a fresh read of the PIN warnings and the browser-cache rule (6c99a70..1c276ae): each test
failed on the code it was written against.

The PIN warning's menu (proxy/web/pages.py `_redirect_to_notice`, `menu`) put the whole
starting point, every character escaped, into the menu's address (a long deep link then passed
the request line the proxy accepts: 414), and took the place of the notice saying why a
starting point was not opened; "in about less than an hour"; and results a page fetch()es that a
vendor labels `text/javascript` were kept on disk (proxy/forward.py `_kept` now asks the request's
destination too). Real slapd ppolicy fixture of tests/test_pin_warnings.py, the real proxy, a
recording vendor, Chromium with a profile on disk."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from proxy.web.messages import MESSAGES, shown
from proxy.web.pages import NOTICE_COOKIE
from proxy.web.session_cookie import CSRF_COOKIE
from tests.canary import CANARY
from tests.test_pin_warnings import (  # noqa: F401  (fixtures)
    CONTACT,
    SOON,
    _menu,
    warn_slapd,
    warned,
)

pytestmark = [
    pytest.mark.ldap,
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]


def _deep_link(length: int) -> str:
    """A database's search address of about `length` characters, as a catalogue's advanced
    search with many fields writes it: well under the 8190-byte request line."""
    base = "http://one.example.com/results?"
    fields = []
    i = 0
    while len(base) + len("&".join(fields)) < length:
        fields.append(f"f{i}=v")
        i += 1
    return base + "&".join(fields)


async def _post_login(driver: Any, http: Any, card: str, pin: str, url: str) -> Any:
    """POST /login with `url` in the form (as the sign-in page's hidden field carries it), on a
    client that, like a browser, takes a Location longer than 8 KiB."""
    csrf, _ = await driver.login_form()
    r = await http.post(
        f"http://127.0.0.1:{driver.port}/login",
        data={"username": card, "password": pin, "url": url, "csrf": csrf},
        headers={"Host": driver.public, "Cookie": f"{CSRF_COOKIE}={csrf}"},
        allow_redirects=False,
    )
    await r.read()
    return r


async def test_a_long_deep_link_with_a_pin_warning_still_reaches_the_menu(
    warned: Any,  # noqa: F811
) -> None:
    """A deep link of ~6000 characters (a catalogue's advanced search) opens for a plain patron:
    303 straight to the database. The same link signed into with a PIN that expires soon is
    sent to `/menu?url=<the link, percent-encoded whole>`: every `=`, `&`, `/`, `:` becomes
    three characters, the Location (~9500 bytes) is longer than the request line the proxy
    itself accepts (8190), and the browser following it gets the proxy's 414 page ("Your
    browser sent more than this service accepts") instead of the menu: no PIN notice, no link
    on, no menu, though the patron is signed in. The menu must answer 200 with the notice and
    the link on."""
    driver, _ = warned
    start = _deep_link(6000)
    name = driver.config.server.cookie_name
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(
        max_line_size=1 << 17, max_field_size=1 << 17, cookie_jar=jar
    ) as http:
        plain = await _post_login(driver, http, CANARY.uid, CANARY.password, start)
        assert plain.status == 303
        assert plain.headers["Location"].startswith(f"http://{driver.mapped('one.example.com')}/")
        r = await _post_login(driver, http, *SOON, start)
        assert r.status == 303
        sid = r.cookies[name].value
        notice = r.cookies[NOTICE_COOKIE].value
        path = r.headers["Location"].split(driver.public, 1)[1]
        menu = await http.get(
            URL(f"http://127.0.0.1:{driver.port}{path}", encoded=True),  # as the browser sends it
            headers={"Host": driver.public, "Cookie": f"{name}={sid}; {NOTICE_COOKIE}={notice}"},
            allow_redirects=False,
        )
        page = html.unescape(await menu.text())
    assert menu.status == 200, (menu.status, page[:300])
    said = shown("pin_expiring", {"expires_in_s": 3.5 * 86400, **CONTACT})
    assert said.text in page
    assert "Continue to the page you asked for" in page


async def test_a_link_to_elsewhere_with_a_pin_warning_still_says_why_it_was_not_opened(
    warned: Any,  # noqa: F811
) -> None:
    """A sign-in from a link to an address that is none of the library's databases lands on the
    menu, which says so ("This address isn't set up at the library") rather than leave the
    patron looking for the page they asked for. With a PIN warning the notice cookie holds the
    PIN notice instead and the menu shows only that: no link on (safe_target refuses the
    address) and no word of why the page asked for was not opened. Both must be said."""
    driver, _ = warned
    start = "http://elsewhere.example.org/article/42"
    plain = await driver.login(CANARY.uid, CANARY.password, url=start)
    assert plain.status == 303 and plain.cookies[NOTICE_COOKIE].value == "not_configured"
    r = await driver.login(*SOON, url=start)
    assert r.status == 303 and driver.sid
    _, page = await _menu(driver, r)
    assert shown("pin_expiring", {"expires_in_s": 3.5 * 86400, **CONTACT}).text in page
    assert MESSAGES["not_configured"].text in page


def test_the_last_hour_of_a_pin_is_worded_as_english() -> None:
    """`pin_expiring` says "stops working in about {expires_in}", and `until` words the last
    hour (and 0, a PIN that expires at this very sign-in) as "less than an hour": the patron
    reads "Your PIN stops working in about less than an hour"."""
    for seconds in (0, 1800, 3599):
        text = shown("pin_expiring", {"expires_in_s": seconds, **CONTACT}).text
        assert "about less than" not in text, text


@pytest.mark.browser
async def test_search_results_labelled_as_a_script_are_not_left_on_disk(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Many older database APIs send their JSON search results as `text/javascript` (or
    `application/x-javascript`). A results page fetches them with fetch() (Sec-Fetch-Dest:
    empty: data, not a script the page runs; the proxy itself tells the two apart and does not
    rewrite it as a script). `_kept` judges by the type alone, so the results go out
    `private, no-cache` and Chromium keeps them on disk under their URL: the patron's search
    term and the records found stay in the shared computer's cache after the browser is closed,
    which README.md and docs/records-and-retention.md now say cannot happen ("JSON or XML
    results with the search in their address ... private, no-store")."""
    from tests.test_public_computers import SEARCH, search_left_on_disk
    from tests.test_session_cookie_tossing import GOOD, _stack

    driver, _evil, good = await _stack(tmp_path, port, running_slapd, vendor_factory, proxy_factory)
    kept = await search_left_on_disk(driver, good, tmp_path / "profile", "text/javascript")
    assert kept == {"results": [], "search term": []}, (
        f"the last patron's search and its results are kept in the browser's cache: {kept}"
    )
    # And as the proxy says it: what a fetch() gets is no script a page loads.
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    r = await driver.get_vendor(
        GOOD,
        f"/api/search?q={SEARCH}",
        headers={"Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors"},
    )
    await r.read()
    assert r.headers["Cache-Control"] == "private, no-store"


async def test_a_deep_link_at_the_request_lines_edge_goes_straight_on_and_one_past_it_is_explained(
    warned: Any,  # noqa: F811
) -> None:
    """The edges of the fix: a starting point that fits a request line by itself but not inside
    the menu's address goes straight to the database, as a plain sign-in does (the PIN notice
    is then not shown: the page asked for matters more); one too long to open at all gets the
    menu with both the PIN notice and "This link is too long to open"."""
    from proxy.limits_http import http_limits

    driver, _ = warned
    max_line = http_limits(driver.config).max_request_line
    mapped = f"http://{driver.mapped('one.example.com')}/"
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(
        max_line_size=1 << 17, max_field_size=1 << 17, cookie_jar=jar
    ) as http:
        edge = _deep_link(max_line - 40)
        r = await _post_login(driver, http, *SOON, edge)
        assert r.status == 303
        assert r.headers["Location"].startswith(mapped)
        assert NOTICE_COOKIE not in r.cookies
        too_long = _deep_link(2 * max_line)
        r = await _post_login(driver, http, *SOON, too_long)
        assert r.status == 303 and r.headers["Location"].endswith("/menu")
        name = driver.config.server.cookie_name
        cookie = f"{name}={r.cookies[name].value}; {NOTICE_COOKIE}={r.cookies[NOTICE_COOKIE].value}"
        menu = await http.get(
            f"http://127.0.0.1:{driver.port}/menu",
            headers={"Host": driver.public, "Cookie": cookie},
        )
        page = html.unescape(await menu.text())
    assert menu.status == 200
    assert shown("pin_expiring", {"expires_in_s": 3.5 * 86400, **CONTACT}).text in page
    assert MESSAGES["link_too_long"].title in page
    assert "Continue to the page you asked for" not in page
