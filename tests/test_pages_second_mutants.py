"""From a second mutation sweep by hand (1 December 2026) of the patron's pages: proxy/web/pages.py,
proxy/web/messages.py, proxy/navigation.py and proxy/web/branding.py. Tests for behaviours that
could break without any other test noticing; each docstring names the mutant it kills.
Unit-level: each behaviour is local to one function. No personal data (synthetic values only).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

PUBLIC = "proxy.westonlibrary.org"


def _config(scheme: str = "https", port: int | None = None) -> Any:
    return SimpleNamespace(public=(scheme, PUBLIC, port))


def _post(headers: dict[str, str]) -> web.Request:
    return make_mocked_request("POST", "/login", headers=headers)


def test_a_post_from_a_no_referrer_page_without_fetch_metadata_is_refused() -> None:
    """kills: proxy/web/pages.py:_posted_from_elsewhere — `if origin == "null": return site is
    None` → `return False`.

    A vendor page (same site as the proxy) can write its own sign-in token cookie and post card
    and PIN to /login with `Referrer-Policy: no-referrer`, which makes the browser send
    `Origin: null`. In a browser without fetch metadata (Safari before 16.4) that is all the
    proxy sees: it must refuse the post, or the vendor page signs the patron in as someone the
    vendor chose (login CSRF). With `Sec-Fetch-Site: same-origin` beside it, `null` is the
    proxy's own (branding) form and is taken."""
    from proxy.web.pages import _posted_from_elsewhere

    assert _posted_from_elsewhere(_post({"Origin": "null"}), _config()) is True
    assert _posted_from_elsewhere(_post({"Origin": " NULL "}), _config()) is True
    assert (
        _posted_from_elsewhere(
            _post({"Origin": "null", "Sec-Fetch-Site": "same-origin"}), _config()
        )
        is False
    )


def test_a_post_whose_origin_is_a_vendor_host_is_refused() -> None:
    """kills: proxy/web/pages.py:_posted_from_elsewhere — `return origin != _own_origin(config)`
    → `return False`.

    A browser without fetch metadata still sends Origin. A sign-in or sign-out form posted from
    a mapped vendor host (`https://www-vendor-com.proxy...`, same site) or any other site must be
    refused; only the proxy's own origin, in any case, is taken."""
    from proxy.web.pages import _posted_from_elsewhere

    for other in (
        f"https://www-vendor-one-test.{PUBLIC}",
        "https://evil.example",
        f"http://{PUBLIC}",
    ):
        assert _posted_from_elsewhere(_post({"Origin": other}), _config()) is True, other
    assert (
        _posted_from_elsewhere(_post({"Origin": f"HTTPS://{PUBLIC.upper()}"}), _config()) is False
    )
    assert _posted_from_elsewhere(_post({}), _config()) is False  # a script: the token decides


def test_the_own_origin_leaves_out_the_default_port_and_keeps_any_other() -> None:
    """kills: proxy/web/pages.py:_own_origin — `port and port != default` → `port`.

    Browsers write Origin without the scheme's default port. A proxy configured as
    `https://proxy...:443` must still take its own sign-in form's posts (`Origin:
    https://proxy...`): with the port kept, every patron's sign-in is refused as "from another
    page". A non-default port stays part of the origin."""
    from proxy.web.pages import _own_origin, _posted_from_elsewhere

    assert _own_origin(_config("https", 443)) == f"https://{PUBLIC}"
    assert _own_origin(_config("http", 80)) == f"http://{PUBLIC}"
    assert _own_origin(_config("https", 8443)) == f"https://{PUBLIC}:8443"
    own = _post({"Origin": f"https://{PUBLIC}", "Sec-Fetch-Site": "same-origin"})
    assert _posted_from_elsewhere(own, _config("https", 443)) is False


def _logout_get(headers: dict[str, str]) -> web.Request:
    return make_mocked_request("GET", "/logout", headers=headers)


def test_a_link_from_a_vendor_host_does_not_sign_the_patron_out() -> None:
    """kills: proxy/web/pages.py:_patrons_own_sign_out — `referer != public and not
    referer.endswith("." + public)` → `referer != public`.

    A vendor page's script can start a top-level navigation to /logout on the patron's first
    click anywhere on it (`Sec-Fetch-Site: same-site`, `Sec-Fetch-User: ?1`). Its Referer names
    the vendor's mapped host, a subdomain of the proxy's: that is not the patron's own sign-out
    (they get the button). A link on the library's own web site (another host) is."""
    from proxy.web.pages import _patrons_own_sign_out

    nav = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"}
    vendor = _logout_get({**nav, "Referer": f"https://www-vendor-one-test.{PUBLIC}/article"})
    assert _patrons_own_sign_out(vendor, _config()) is False
    library = _logout_get(
        {**nav, "Sec-Fetch-Site": "cross-site", "Referer": "https://www.westonlibrary.org/"}
    )
    assert _patrons_own_sign_out(library, _config()) is True


def test_an_image_or_frame_on_another_site_does_not_sign_the_patron_out() -> None:
    """kills: proxy/web/pages.py:_patrons_own_sign_out — `Sec-Fetch-Dest != "document" or
    Sec-Fetch-User != "?1"` → `Sec-Fetch-User != "?1"`.

    An `<iframe src=/logout>` on a page somewhere else, loaded while the patron interacts with
    it, must not end the patron's session: only a document navigation the patron started
    counts, even with another site's Referer."""
    from proxy.web.pages import _patrons_own_sign_out

    frame = _logout_get(
        {
            "Sec-Fetch-Site": "cross-site",
            "Sec-Fetch-Dest": "iframe",
            "Sec-Fetch-User": "?1",
            "Referer": "https://www.westonlibrary.org/",
        }
    )
    assert _patrons_own_sign_out(frame, _config()) is False


def _static_request(tmp_path: Path, name: str) -> web.Request:
    from proxy.services import SERVICES

    app = web.Application()
    app[SERVICES] = SimpleNamespace(config=SimpleNamespace(resolve=lambda _p: tmp_path))
    return make_mocked_request("GET", f"/static/{name}", match_info={"name": name}, app=app)


async def test_a_hidden_file_in_the_branding_folder_is_never_served(tmp_path: Path) -> None:
    """kills: proxy/web/pages.py:static_file — `"/" in name or name.startswith(".")` →
    `"/" in name`.

    The library's branding folder (conf/web/static) may hold dot-files nobody meant to publish
    (an editor's `.htpasswd`, `.env`, `.DS_Store`). /static/ serves the logo and style sheet to
    everyone, unauthenticated: a hidden file is 404, while an ordinary branding file is served."""
    from proxy.web.pages import static_file

    (tmp_path / ".env").write_text("SYNTHETIC_SECRET=not-real\n")
    (tmp_path / "theme.css").write_text("body{}\n")
    with pytest.raises(web.HTTPNotFound):
        await static_file(_static_request(tmp_path, ".env"))
    served = await static_file(_static_request(tmp_path, "theme.css"))
    assert isinstance(served, web.FileResponse)


def test_a_redirect_spelt_with_an_upper_case_scheme_names_the_vendor_host() -> None:
    """kills: proxy/navigation.py:leaves_for — `m.group(1).lower() not in _SPECIAL` →
    `m.group(1) not in _SPECIAL`.

    Browsers read the scheme in any case: a vendor's `Location: HTTPS://www.vendor.com/x` sends
    the patron's browser to the vendor from the patron's own address unless the proxy finds
    the host and maps it (P3). `Wss:` likewise; `MAILTO:` leaves for no web host."""
    from proxy.navigation import to_vendor_host

    assert to_vendor_host("HTTPS://One.Example.com/x") == ("one.example.com", "/x")
    assert to_vendor_host("Wss://one.example.com/socket") == ("one.example.com", "/socket")
    assert to_vendor_host("MAILTO:someone@one.example.com") is None


def test_the_host_is_the_part_after_the_last_at_sign() -> None:
    """kills: proxy/navigation.py:leaves_for — `authority.rpartition("@")[2]` →
    `authority.partition("@")[2]`.

    `https://x@y@www.vendor.com/` connects to www.vendor.com (WHATWG URL takes the last `@`
    as the end of the user information). Read up to the first `@`, the host would be
    `y@www.vendor.com`, no configured vendor host: the redirect would go unmapped and the
    browser straight to the vendor."""
    from proxy.navigation import to_vendor_host

    assert to_vendor_host("https://a@b@One.Example.com/p") == ("one.example.com", "/p")
    assert to_vendor_host("//user:pw@one.example.com/p") == ("one.example.com", "/p")


def test_spaces_controls_tabs_and_newlines_around_and_inside_a_url_are_dropped() -> None:
    """kills: proxy/navigation.py — `_STRIP` `range(0x21)` → `range(0x20)` (a leading space
    kept); `_TAB_NEWLINE` without `\\t` (a tab inside kept).

    A browser trims C0 controls and spaces at both ends of a URL and drops tabs and newlines
    anywhere in it. ` https://www.vendor.com/` or `ht<TAB>tps://…` in a Location or Refresh is
    the vendor's host to the browser, and must be to the proxy too."""
    from proxy.navigation import to_vendor_host

    assert to_vendor_host(" \x01https://one.example.com/a ") == ("one.example.com", "/a")
    assert to_vendor_host("ht\ttps://one.exa\nmple.com/a") == ("one.example.com", "/a")


def test_a_backslash_in_the_query_is_kept_as_the_browser_keeps_it() -> None:
    """kills: proxy/navigation.py:_slashes — `rest[:cut].replace("\\\\", "/") + rest[cut:]` →
    `rest.replace("\\\\", "/")`.

    Backslashes are slashes in an http(s) URL's host and path only; a search for `C:\\data` in
    the query is the patron's search, sent on as typed, not rewritten to `C:/data`."""
    from proxy.navigation import to_vendor_host

    assert to_vendor_host("https:\\\\one.example.com\\p?q=C:\\data#x\\y") == (
        "one.example.com",
        "/p?q=C:\\data#x\\y",
    )


def test_a_refresh_spelt_with_upper_case_url_finds_the_address() -> None:
    """kills: proxy/navigation.py:refresh_url — `re.IGNORECASE | re.DOTALL` → `re.DOTALL`.

    `Refresh: 0; URL=https://www.vendor.com/` is how many vendors write it; the address found
    must be the URL itself (mapped by the proxy), not `URL=https://…`, which the proxy would
    not see as leaving for the vendor while the browser goes there."""
    from proxy.navigation import refresh_url

    value = "0; URL='https://one.example.com/x'"
    span = refresh_url(value)
    assert span is not None
    assert value[span[0] : span[1]] == "https://one.example.com/x"


def test_a_host_is_looked_up_as_browsers_map_it_non_transitionally() -> None:
    """kills: proxy/navigation.py:_idna — `transitional=False` → `True` (in `idna.encode`).

    Browsers (WHATWG URL) map `ß` non-transitionally: `faß.example` is `xn--fa-hia.example`,
    a different host than `fass.example`. Compared the transitional way, a page's link to the
    configured host `xn--fa-hia.example` would not be found, and go unmapped."""
    from proxy.navigation import lookup_host

    assert lookup_host("Faß.Example.") == "xn--fa-hia.example"


def _branding(tmp_path: Path) -> tuple[Any, Path]:
    override = tmp_path / "web" / "templates"
    override.mkdir(parents=True)
    config = SimpleNamespace(
        resolve=lambda p: tmp_path / p,
        library=SimpleNamespace(name="Weston Library", contact="the help desk"),
    )
    return config, override


def test_a_branding_template_not_in_utf8_is_named_by_its_override_path(tmp_path: Path) -> None:
    """kills: proxy/web/branding.py:_template_file — `str(override) if override.is_file() else
    name` → `name`.

    IT staff read check-config's problem list to fix the file: a branding override saved in
    Windows-1252 is named by its full path in conf/web/templates (the built-in template of the
    same name is fine and is not the one to edit)."""
    from proxy.web.branding import check_templates

    config, override = _branding(tmp_path)
    (override / "brand.html").write_bytes("<b>Biblioth\u00e8que</b>\n".encode("cp1252"))
    problems: list[Any] = []
    check_templates(config, problems)
    assert [(p.file, p.key) for p in problems] == [(str(override / "brand.html"), "(file)")]


def test_a_branding_template_that_cannot_be_read_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """kills: proxy/web/branding.py:check_templates — the `except OSError` branch removed (as
    the sweep found it; since the fix below, the dangling link is caught by the
    `except jinja2.TemplateNotFound` branch before it, and this kills both removed).

    A dangling link in conf/web/templates (a branding file moved away) must be reported as a
    problem with that file, named by its path in the override folder, so check-config and a
    reload refuse it with a message, rather than stop with a traceback."""
    from proxy.web.branding import check_templates

    config, override = _branding(tmp_path)
    (override / "gone.html").symlink_to(tmp_path / "moved-away.html")
    problems: list[Any] = []
    check_templates(config, problems)
    assert [(p.file, p.key) for p in problems] == [(str(override / "gone.html"), "(file)")]
    assert problems[0].message.startswith("cannot be read")


def test_a_session_length_is_said_exactly_never_rounded() -> None:
    """kills: proxy/web/messages.py:duration — `s >= 60 and s % 60 == 0` → `s >= 60`;
    `s >= 3600 and s % 3600 == 0` → `s >= 3600`.

    The menu and the "session ended" notice tell the patron how long a session is kept. A
    session of 90 seconds said to last "1 minute", or one of 90 minutes said to last "1 hour",
    is a false statement about how long the library keeps it (the privacy notice's promise)."""
    from proxy.web.messages import duration

    assert duration(90) == "90 seconds"
    assert duration(5400) == "90 minutes"
    assert duration(60) == "1 minute"
    assert duration(7200) == "2 hours"
    assert duration(59.2) == "1 minute"  # rounded up, never down
    assert duration(44.5) == "45 seconds"


def test_time_until_a_pin_expires_is_rounded_down_at_each_boundary() -> None:
    """kills: proxy/web/messages.py:until — `s < 2 * 86400` → `s <= 2 * 86400`;
    `s >= 3600` → `s > 3600`; `s >= 86400` → `s > 86400`.

    "Your PIN expires in …" never says more than is left, and says what is left: exactly two
    days left reads "2 days", exactly one hour "1 hour", exactly one day "1 day"."""
    from proxy.web.messages import until

    assert until(2 * 86400) == "2 days"
    assert until(2 * 86400 - 1) == "1 day"
    assert until(86400) == "1 day"
    assert until(86399) == "23 hours"
    assert until(3600) == "1 hour"
    assert until(3599) == "less than an hour"
    assert until(-5) == "less than an hour"


def test_a_worded_blank_without_its_number_falls_back_to_the_default() -> None:
    """kills: proxy/web/messages.py:_Blanks.__missing__ — `if source in self:` → `if True:`.

    The "too many attempts" page says "try again in {retry_in}". A caller that does not know the
    number must still get a page ("a few minutes"), never a KeyError turning the patron's
    error page into a bare 500."""
    from proxy.web.messages import MESSAGES, fill, shown

    assert fill("in {retry_in}", {}) == "in a few minutes"
    assert fill("in {retry_in}", {"retry_minutes": 1}) == "in 1 minute"
    m = shown("too_many_attempts", {})
    assert m.status == 429 == MESSAGES["too_many_attempts"].status
    assert "a few minutes" in m.action


def test_each_sign_in_refusal_has_the_status_a_browser_and_a_monitor_read_it_by() -> None:
    """kills: proxy/web/messages.py:MESSAGES — the status of `too_many_attempts` (429),
    `too_many_sign_ins` (429), `foreign_form` (403), `csrf` (400), `bad_credentials` (401),
    `directory_unavailable` (503), `sign_in_busy` (503), `no_card`/`no_pin` (400/401 as
    documented) changed.

    Too many tries is 429 (the client is told to slow down, and the app adds Retry-After); a
    form from another page 403 (refused, not a mistake to correct); a stale sign-in token 400;
    a wrong card or PIN 401 (the sign-in challenge); a directory outage 503 (the proxy, not
    the patron's card, with Retry-After)."""
    from proxy.web.messages import MESSAGES

    expected = {
        "too_many_attempts": 429,
        "too_many_sign_ins": 429,
        "foreign_form": 403,
        "csrf": 400,
        "bad_credentials": 401,
        "directory_unavailable": 503,
        "sign_in_busy": 503,
        "store_unavailable": 503,
        "not_eligible": 403,
    }
    assert {k: MESSAGES[k].status for k in expected} == expected


def test_a_dangling_branding_template_says_why_it_cannot_be_read(tmp_path: Path) -> None:
    """A defect this sweep found (fixed 1 December 2026): proxy/web/branding.py:check_templates
    said `f"cannot be read: {exc.strerror}"` for an error with no strerror (jinja2's
    TemplateNotFound, an OSError subclass, raised for a dangling link in conf/web/templates):
    "cannot be read: None", and named the template but not the override file.

    IT staff fixing check-config's complaint need to be told what is wrong with the file (it
    is missing, or where the link points to is gone), not the word "None"."""
    from proxy.web.branding import check_templates

    config, override = _branding(tmp_path)
    (override / "gone.html").symlink_to(tmp_path / "moved-away.html")
    problems: list[Any] = []
    check_templates(config, problems)
    assert len(problems) == 1
    assert "None" not in problems[0].message, problems[0].message
    assert "not there" in problems[0].message
    assert problems[0].file == str(override / "gone.html")
