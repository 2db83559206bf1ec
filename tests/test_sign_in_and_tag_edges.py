"""Sign-in starting points, two open sign-in tabs, and the tag stage on XML and on unbalanced
quotes: from a review of the change that brought the tag stage's second reading of links and
the sign-in changes (a078a0a..). Each test was a defect in that change when written.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import quote

import argon2
import pytest

from proxy import html_tags
from proxy.web.pages import NOTICE_COOKIE
from tests.harness import ProxyDriver, vendor_toml, write_config
from tests.test_navigation_leaks import _rewriter

CARD = "29999000000001"
PIN = "4321"
VENDOR_HOST = "www.vendor-one.test"


def _rewrite(page: bytes, content_type: str, *, chunk: int | None = None) -> bytes:
    stream = _rewriter().stream("one", content_type, "utf-8")
    if chunk is None:
        return stream.feed(page) + stream.finish()
    out = b"".join(stream.feed(page[i : i + chunk]) for i in range(0, len(page), chunk))
    return out + stream.finish()


# --------------------------------------------------------------------------- tag stage on XML


@pytest.mark.parametrize("content_type", ["image/svg+xml", "application/xhtml+xml"])
def test_a_mapped_link_in_an_xml_document_stays_well_formed(content_type: str) -> None:
    """XML documents (SVG, XHTML) now get the tag stage, but `html_tags._quoted` writes the
    mapped URL back escaping only `&` and the quote: a `&lt;` in the link's query comes out as a
    raw `<` inside the attribute value, which is not well-formed XML. The browser then shows an
    XML parse error instead of the vendor's image or page (the whole SVG or XHTML document is
    lost for the patron, not only the link)."""
    doc = (
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
        b'<a xlink:href="https:\\\\www.vendor.test/s?q=&lt;b&gt;"><text>t</text></a></svg>'
        if content_type == "image/svg+xml"
        else b'<html xmlns="http://www.w3.org/1999/xhtml"><body>'
        b'<a href="https:\\\\www.vendor.test/s?q=&lt;b&gt;">t</a></body></html>'
    )
    ET.fromstring(doc)  # well-formed as the vendor sent it
    out = _rewrite(doc, content_type)
    assert b"www.vendor.test" not in out  # the link is mapped ...
    ET.fromstring(out)  # ... and the document must still parse


# --------------------------------------------------------------------------- tag stage cost


def test_an_unclosed_quote_is_read_once_not_once_per_tag_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page of `<a x='` (an unbalanced quote on every tag, no `>`): each tag's attributes are
    read up to MAX_TAG (8 KiB) looking for the `>` that ends it. Restarting one byte later and
    reading the next 8 KiB again, for every `<a`, cost O(size x 8 KiB) (~1.3 s for 1.2 MB
    compiled, ~200 s in Python) on the event loop. For a browser what follows an unread tag up
    to that limit is inside it, so the scan goes on after it: counted here on the Python path
    (test_scan_compiled holds the compiled one to the same spans)."""
    walks = 0
    real = html_tags._walk

    def counting(data: bytes, i: int, limit: int) -> int:
        nonlocal walks
        walks += 1
        return real(data, i, limit)

    monkeypatch.setattr(html_tags, "_walk", counting)
    page = b"<a x='" * 100_000
    spans, pending, _ = html_tags.every_tag(page, html_tags.MAX_TAG)
    assert spans == [] and pending != -1  # the last tag is unfinished: held back, not read
    assert walks <= len(page) // html_tags.MAX_TAG + 2, walks


# --------------------------------------------------------------------------- sign-in


async def _proxy(tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any) -> ProxyDriver:
    vendor = await vendor_factory(VENDOR_HOST)
    hashed = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PIN)
    (tmp_path / "patrons.toml").write_text(
        f'[[patron]]\ncard = "{CARD}"\nhash = "{hashed}"\ngroups = ["resident"]\n'
    )
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"one": vendor_toml("one", vendor)},
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    return driver


async def _post(driver: ProxyDriver, card: str, pin: str, csrf: str, url: str = "") -> Any:
    return await driver.client.post(
        "/login",
        data={"username": card, "password": pin, "url": url, "csrf": csrf},
        headers={"Host": driver.public},
        allow_redirects=False,
    )


async def test_a_second_open_sign_in_tab_still_signs_in_after_a_failed_try_in_the_first(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A patron opens two database links from the library's website (two tabs, two sign-in
    forms, one browser). A mistyped PIN in the first tab now renews the sign-in token cookie
    (`pages._token`), so the second tab's form, with the right card and PIN, is refused as a
    "form expired" (400 csrf) instead of signing in: the patron must start over, and before this
    change it worked."""
    driver = await _proxy(tmp_path, port, vendor_factory, proxy_factory)
    token_a, _ = await driver.login_form()
    token_b, _ = await driver.login_form()
    assert token_a == token_b  # one browser, one sign-in token
    failed = await _post(driver, CARD, "wrong", token_a)
    assert failed.status == 401
    second = await _post(driver, CARD, PIN, token_b)
    assert second.status == 303, f"the second tab's sign-in was refused ({second.status})"


@pytest.mark.parametrize(
    "target",
    [
        f"http://{VENDOR_HOST}/search?q=climate change",
        f"http://{VENDOR_HOST}/search?q=caf\u00e9",
    ],
    ids=["space", "non-ascii"],
)
async def test_a_link_to_a_configured_database_is_not_called_a_stranger(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any, target: str
) -> None:
    """A library website link `login?qurl=<encoded URL>` (EZproxy's encoded form, now read)
    whose URL holds a space or a non-ASCII letter decodes to an address `safe_target` will not
    hand out, so the patron lands on the menu; `_elsewhere` then looks only at whether the host
    is the proxy's, and sets the `weston_notice` cookie: the menu tells the patron that this
    database, which the library does have, "is not one of the library's databases"."""
    driver = await _proxy(tmp_path, port, vendor_factory, proxy_factory)
    r = await driver.client.get(
        "/login?qurl=" + quote(target, safe=""), headers={"Host": driver.public}
    )
    html = await r.text()
    csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    url = html.split('name="url" value="', 1)[1].split('"', 1)[0]
    signed_in = await _post(driver, CARD, PIN, csrf, url=url.replace("&amp;", "&"))
    assert signed_in.status == 303
    assert NOTICE_COOKIE not in signed_in.cookies, (
        f"{VENDOR_HOST} is configured, yet the menu will say it is not one of the library's "
        f"databases (landed on {signed_in.headers['Location']})"
    )


def _form_fields(html: str) -> tuple[str, str]:
    """The sign-in form's csrf and url fields, as the browser posts them."""
    csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    url = html.split('name="url" value="', 1)[1].split('"', 1)[0]
    return csrf, url.replace("&amp;", "&")


TARGET = f"http://{VENDOR_HOST}/search?q=cats&page=2"


@pytest.mark.parametrize(
    "query",
    [
        "url=" + quote(TARGET, safe=""),
        "url=" + quote(TARGET, safe="") + "&lang=en",
    ],
    ids=["encoded-url", "encoded-url-then-other-parameter"],
)
async def test_an_encoded_url_link_lands_on_its_page(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any, query: str
) -> None:
    """`login?url=<encoded URL>`, the form every link builder (and this proxy's own
    `login_link`, used by the throttle and "form expired" pages) writes, worked before this
    change. aiohttp hands `raw_query_string` over with `%3A` and `%2F` already decoded, so
    `starting_point` sees `url=http://...` "unencoded" and takes the rest of the query as it
    is: the target's own query stays percent-encoded inside its path
    (`/search%3Fq%3Dcats%26page%3D2`, a page the vendor does not have) and any parameter after
    it (`&lang=en`) is glued onto the address. The patron signs in and lands on the vendor's
    "not found" page (or the wrong search)."""
    driver = await _proxy(tmp_path, port, vendor_factory, proxy_factory)
    r = await driver.client.get("/login?" + query, headers={"Host": driver.public})
    csrf, url = _form_fields(await r.text())
    signed_in = await _post(driver, CARD, PIN, csrf, url=url)
    assert signed_in.status == 303
    expected = f"http://{driver.mapped(VENDOR_HOST)}/search?q=cats&page=2"
    assert signed_in.headers["Location"] == expected, f"the form kept url={url!r}"


async def test_the_proxys_own_sign_in_link_keeps_the_starting_point(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The "Sign in" link on a page that answers a sign-in post (`login_link`: the "form
    expired" page here, the throttle page too) writes the starting point as `url=<quoted>`;
    `starting_point` does not read it back as it was: after a stale form the patron follows
    the page's own link and loses the database address's query."""
    driver = await _proxy(tmp_path, port, vendor_factory, proxy_factory)
    await driver.login_form()
    expired = await _post(driver, CARD, PIN, "not-the-token", url=TARGET)
    assert expired.status == 400
    page = await expired.text()
    assert "/login?url=" in page, "the page links to the sign-in form with its starting point"
    link = "/login?url=" + page.split("/login?url=", 1)[1].split('"', 1)[0].replace("&amp;", "&")
    r = await driver.client.get(link, headers={"Host": driver.public})
    _, url = _form_fields(await r.text())
    assert url == TARGET
