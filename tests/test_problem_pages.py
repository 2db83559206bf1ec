"""Refusals the proxy words itself: an unknown page (404), a wrong method (405) and a body without
its length (411) are message pages with what to do, the staff code of the status sent, and the
headers every own page carries — not aiohttp's bare text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.auth import hash_password
from proxy.web.messages import MESSAGES
from tests.canary import CANARY
from tests.harness import ProxyDriver, RecordingVendor, vendor_toml, write_config

OWN_PAGE = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "Referrer-Policy",
    "X-Content-Type-Options",
    "Cache-Control",
)


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor]:
    """A proxy on a local patrons file, one recording vendor, the canary patron signed in."""
    (tmp_path / "patrons.toml").write_text(
        f'[[patron]]\ncard = "{CANARY.uid}"\nhash = "{hash_password(CANARY.password)}"\n'
    )
    vendor = await vendor_factory("www.vendor-one.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"one": vendor_toml("one", vendor)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    return driver, vendor


def _unescaped(html: str) -> str:
    return html.replace("&#39;", "'").replace("&#34;", '"').replace("&amp;", "&")


@pytest.mark.parametrize("path", ["/no-such-page", "/static/no-such-file.css"])
async def test_an_unknown_page_on_the_own_host_is_the_not_found_page(setup: Any, path: str) -> None:
    driver, _ = setup
    r = await driver.own("GET", path)
    html = _unescaped(await r.text())
    assert r.status == 404 and r.content_type == "text/html"
    m = MESSAGES["not_found"]
    assert m.title in html and m.action in html
    assert f"{driver.public}/menu" in html  # the way on: the menu, which asks to sign in first
    assert "<code>not_found (404)</code>" in html
    assert [h for h in OWN_PAGE if h not in r.headers] == []


async def test_a_wrong_method_on_the_own_host_is_the_405_page_and_keeps_allow(
    setup: Any,
) -> None:
    driver, _ = setup
    r = await driver.own("PUT", "/menu")
    html = _unescaped(await r.text())
    assert r.status == 405 and r.content_type == "text/html"
    assert MESSAGES["method_not_allowed"].title in html
    assert "<code>method_not_allowed (405)</code>" in html
    assert "GET" in r.headers["Allow"]
    assert [h for h in OWN_PAGE if h not in r.headers] == []


async def test_a_body_without_its_length_gets_the_411_page_with_its_own_code(
    setup: Any,
) -> None:
    """The help-desk code on the page names the status the patron got, not 400."""
    driver, vendor = setup

    async def chunks() -> Any:
        yield b"a=1"

    r = await driver.get_vendor(vendor.host, "/post", method="POST", data=chunks())
    html = _unescaped(await r.text())
    assert r.status == 411
    assert MESSAGES["length_required"].title in html
    assert "<code>length_required (411)</code>" in html
    assert vendor.requests == []
