"""Patrons' request bodies on the relay path: read whole when mapped URLs in them are mapped back
(forms, JSON, multipart fields), streamed otherwise, within the upload limit (real slapd, a
recording vendor, the real proxy)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.request_bodies import boundary, unmap_multipart
from tests.canary import CANARY
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

HOST = "www.forms-db.test"


async def _proxy(
    tmp_path: Path, port: int, slapd: Any, vendor: RecordingVendor, pf: Any, extra: str = ""
) -> ProxyDriver:
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"forms": vendor_toml("forms", vendor, extra=extra)},
    )
    return await pf(cfg)


async def _raw(driver: ProxyDriver, head: bytes, pieces: list[bytes], pause: float) -> bytes:
    """Send one request over a raw socket, the body in pieces with pauses (as a real network
    delivers a form of some size), and return the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", driver.port)
    writer.write(head)
    await writer.drain()
    for piece in pieces:
        await asyncio.sleep(pause)
        writer.write(piece)
        await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_form_post_arriving_in_several_segments_reaches_the_vendor_whole(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    vendor: RecordingVendor = await vendor_factory(HOST)
    driver = await _proxy(tmp_path, port, running_slapd, vendor, proxy_factory)
    await driver.login(CANARY.uid, CANARY.password)
    sid = driver.session_id()
    body = b"q=" + b"a" * 3000 + b"&page=2&filter=" + b"b" * 3000
    pieces = [body[:1000], body[1000:4000], body[4000:]]
    head = (
        f"POST /search HTTP/1.1\r\nHost: {driver.mapped(HOST)}\r\n"
        f"Cookie: {driver.config.server.cookie_name}={sid}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = await _raw(driver, head, pieces, 0.2)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    posts = [r for r in vendor.requests if r.method == "POST"]
    assert len(posts) == 1
    got = posts[0].body
    assert got == body, f"vendor received {len(got)} of {len(body)} form bytes"


async def test_multipart_upload_streams_whole_and_limit_applies(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    vendor: RecordingVendor = await vendor_factory(HOST)
    driver = await _proxy(
        tmp_path,
        port,
        running_slapd,
        vendor,
        proxy_factory,
        extra="\n[limits]\nmax_upload_bytes = 500000\n",
    )
    await driver.login(CANARY.uid, CANARY.password)
    sid = driver.session_id()
    body = (
        b"--b\r\nContent-Disposition: form-data; name=f; filename=a.bin\r\n\r\n"
        + bytes(range(256)) * 1000
        + b"\r\n--b--\r\n"
    )
    pieces = [body[i : i + 30000] for i in range(0, len(body), 30000)]
    head = (
        f"POST /upload HTTP/1.1\r\nHost: {driver.mapped(HOST)}\r\n"
        f"Cookie: {driver.config.server.cookie_name}={sid}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = await _raw(driver, head, pieces, 0.02)
    assert b"HTTP/1.1 200" in answer, answer[:300]
    posts = [r for r in vendor.requests if r.method == "POST"]
    assert posts[-1].body == body
    big = b"x" * 600000
    r = await driver.get_vendor(
        HOST,
        "/upload",
        method="POST",
        data=big,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status == 413, r.status
    assert len([r for r in vendor.requests if r.method == "POST"]) == 1


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> tuple[ProxyDriver, RecordingVendor]:
    vendor = await vendor_factory(HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    return driver, vendor


async def test_multipart_fields_are_mapped_back_and_files_left_as_sent(setup: Any) -> None:
    """A vendor form with enctype="multipart/form-data" (an upload, a citation import, a saved
    search) posting a return URL: the vendor gets its own URL, while an uploaded file, even one
    that names the proxy's host, reaches it byte for byte."""
    driver, vendor = setup
    mapped = f"http://{driver.mapped(HOST)}/search/results"
    upload = b"%PDF-1.4 " + mapped.encode() + bytes(range(256))
    form = aiohttp.MultipartWriter("form-data")
    for name, value in (("q", "tides"), ("return", mapped)):
        form.append(value).set_content_disposition("form-data", name=name)
    form.append(upload, {"Content-Type": "application/pdf"}).set_content_disposition(
        "form-data", name="file", filename="notes.pdf"
    )
    r = await driver.get_vendor(HOST, "/search", method="POST", data=form)
    assert r.status == 200
    body = vendor.requests[-1].body
    fields, files = body.split(b'filename="notes.pdf"')
    assert driver.mapped(HOST).encode() not in fields
    assert f"\r\n\r\nhttp://{HOST}/search/results\r\n".encode() in fields
    assert upload in files
    assert int(dict(vendor.requests[-1].headers)["Content-Length"]) == len(body)


def test_multipart_unmapping_touches_field_contents_only() -> None:
    body = (
        b"preamble --x mapped\r\n--x\r\nContent-Disposition: form-data; name=a\r\n\r\nmapped\r\n"
        b"--x\r\nContent-Disposition: form-data; name=f; FILENAME=b\r\n\r\nmapped\r\n"
        b"--x--\r\nmapped epilogue"
    )
    out = unmap_multipart(body, b"x", lambda b: b.replace(b"mapped", b"vendor"))
    assert out == body.replace(b"name=a\r\n\r\nmapped", b"name=a\r\n\r\nvendor")
    assert boundary('multipart/form-data; boundary="a;b=c"') == b"a;b=c"
    assert boundary("multipart/form-data") is None
    assert boundary("multipart/form-data; boundary=" + "x" * 71) is None


def test_multipart_unmapping_leaves_a_nested_multipart_part_as_sent() -> None:
    """A field holding a nested multipart (several files of one field, RFC 7578 4.3) names its
    files only in the inner parts' headers: the whole part goes on byte for byte."""
    nested = (
        b"--x\r\nContent-Disposition: form-data; name=files\r\n"
        b"content-type:Multipart/Mixed; boundary=y\r\n\r\n"
        b"--y\r\nContent-Disposition: file; filename=a\r\n\r\nmapped\r\n--y--\r\n"
    )
    body = nested + b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nmapped\r\n--x--\r\n"
    out = unmap_multipart(body, b"x", lambda b: b.replace(b"mapped", b"vendor"))
    assert out == nested + body[len(nested) :].replace(b"mapped", b"vendor")


async def test_a_plus_json_body_is_mapped_back(setup: Any) -> None:
    """`application/vnd.api+json` (JSON:API) is JSON."""
    driver, vendor = setup
    payload = json.dumps({"returnUrl": f"http://{driver.mapped(HOST)}/search/results"})
    r = await driver.get_vendor(
        HOST,
        "/api/save",
        method="POST",
        data=payload,
        headers={"Content-Type": "application/vnd.api+json"},
    )
    await r.read()
    body = vendor.requests[-1].body
    assert b"proxy.localhost" not in body
    assert json.loads(body)["returnUrl"] == f"http://{HOST}/search/results"
