"""Vendor pages a browser renders although their headers say little: a charset label nobody
knows, or one of MIME Sniffing's "unknown" types. Each is rewritten and shielded like any page.

Real parts only: slapd, a raw-socket vendor on 127.0.0.1, the proxy through tests/harness.py,
headless Chromium to show what the browser makes of the page.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.canary import CANARY
from tests.harness import ProxyDriver, ldap_directory, vendor_toml, write_config
from tests.test_vendor_content import chromium

WWW = "www.vendor-one.test"


@pytest.fixture
async def raw_vendor(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> AsyncIterator[tuple[ProxyDriver, dict[str, bytes]]]:
    """A vendor answering every request with the exact bytes in `answer["raw"]`, behind a
    running proxy with the canary patron signed in."""
    answer: dict[str, bytes] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline() not in (b"\r\n", b""):
            pass
        writer.write(answer["raw"])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    raw_port = server.sockets[0].getsockname()[1]
    answer["port"] = str(raw_port).encode()
    stand_in = await vendor_factory(WWW)
    toml = vendor_toml("one", stand_in, hosts=[WWW, "*.vendor-one.test"]).replace(
        f"127.0.0.1:{stand_in.port}", f"127.0.0.1:{raw_port}"
    )
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": toml},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    yield driver, answer
    server.close()
    await server.wait_closed()


PAGE = (
    b"<!DOCTYPE html><html><head><title>Results</title></head>"
    b'<body><a href="http://www.vendor-one.test/article/1">Article</a></body></html>'
)


def _answer(content_type: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        content_type,
        len(body),
        body,
    )


async def test_html_with_unknown_charset_label_has_its_vendor_links_mapped(
    raw_vendor: Any,
) -> None:
    """A vendor page labelled with a charset no codec knows (PHP/MySQL sites really send
    `charset=utf8mb4`) is rendered by Chromium as an ordinary page (it ignores the label), so
    its links are mapped as in any ASCII-compatible page. For a while the proxy left such a
    body unrewritten (`charsets.charset_codec` gave None): a click took the patron's browser
    to the vendor outside the proxy (P3)."""
    driver, answer = raw_vendor
    answer["raw"] = _answer(b"text/html; charset=utf8mb4", PAGE)
    r = await driver.get_vendor(WWW, "/results")
    assert r.status == 200
    body = await r.read()
    shown: dict[str, Any] = {}
    async with chromium(driver) as (pg, _errors):
        await pg.goto(f"http://{driver.mapped(WWW)}/results")
        shown["type"] = await pg.evaluate("() => document.contentType")
        shown["link"] = await pg.evaluate("() => document.querySelector('a').hostname")
    assert shown["type"] == "text/html"  # the browser shows it as a page
    assert b"http://www.vendor-one.test/" not in body
    assert shown["link"] == driver.mapped(WWW).split(":")[0]


@pytest.mark.parametrize("content_type", [b"unknown/unknown", b"application/unknown", b"*/*"])
async def test_html_with_unknown_mime_type_is_shielded_and_rewritten(
    raw_vendor: Any, content_type: bytes
) -> None:
    """Browsers sniff a body typed `unknown/unknown`, `application/unknown` or `*/*` as if it
    had no type, and Chromium renders such an HTML body as a page (checked here straight
    against the vendor). The proxy sniffs it too: the page gets the tracker shield and its
    links are mapped. Before, only a missing Content-Type was sniffed, and such a page went
    out unshielded with its links leading off the proxy."""
    driver, answer = raw_vendor
    answer["raw"] = _answer(content_type, PAGE)
    shown: dict[str, Any] = {}
    async with chromium(driver) as (pg, _errors):
        await pg.goto(f"http://127.0.0.1:{answer['port'].decode()}/direct")
        shown["direct"] = await pg.evaluate("() => document.contentType")
        resp = await pg.goto(f"http://{driver.mapped(WWW)}/results")
        assert resp is not None
        shown["csp"] = (await resp.all_headers()).get("content-security-policy")
        shown["link"] = await pg.evaluate("() => document.querySelector('a').hostname")
    assert shown["direct"] == "text/html"  # the browser renders it as HTML
    assert shown["csp"], "no tracker shield on a page the browser renders"
    assert shown["link"] == driver.mapped(WWW).split(":")[0]
