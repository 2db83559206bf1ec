"""From a review of the abuse defences: the sign-in throttle's and /metrics' client address
(IPv4-mapped entries in address lists), usage limits (full texts sent as a range, or in answer to
a POST) and admission (a vendor's default share is never every slot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.admission import vendor_share
from proxy.client_ip import address_in, client_address, parse_networks
from proxy.config import ServerConfig, VendorConfig
from proxy.usage_limits import is_full_text
from tests.canary import CANARY, WREN
from tests.harness import ldap_directory, vendor_toml, write_config
from tests.test_throttle import VENDOR_HOST, _config, _stuff

# --------------------------------------------------------------------------- sign-in throttle


async def test_ipv4_mapped_trusted_proxy_is_believed(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """`trusted_proxies = ["::ffff:127.0.0.1"]` (how a dual-stack listener sees the IPv4
    terminator) is accepted by check-config but never matches: client_address turns the peer into
    plain IPv4 127.0.0.1 and compares it with an IPv6 network. X-Forwarded-For is ignored, every
    patron is one address, and one address's failures lock every patron out of sign-in."""
    vendor = await vendor_factory(VENDOR_HOST)
    cfg = _config(
        tmp_path,
        port,
        running_slapd,
        vendor,
        throttle="\n[throttle]\naddress_limit = 3\n",
        trusted='trusted_proxies = ["::ffff:127.0.0.1"]',
    )
    driver = await proxy_factory(cfg)
    for i in range(3):
        assert await _stuff(driver, f"2999900000000{i}", "203.0.113.1") == 401
    assert await _stuff(driver, WREN.uid, "198.51.100.2", WREN.password) == 303


@pytest.mark.parametrize(
    ("entry", "same_as"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1/32"),
        ("::ffff:127.0.0.1/128", "127.0.0.1/32"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        (" ::FFFF:192.168.1.7/120 ", "192.168.1.0/24"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
    ],
)
def test_an_ipv4_mapped_entry_is_its_ipv4_form(entry: str, same_as: str) -> None:
    """An address list entry in IPv4-mapped form means the IPv4 address or network it maps."""
    assert [str(n) for n in parse_networks([entry])] == [same_as]


@pytest.mark.parametrize("entry", ["::1", "2001:db8::/32", "fc00::/7", "::/0", "::/64"])
def test_ipv6_entries_that_are_not_mapped_stay_ipv6(entry: str) -> None:
    """Only entries inside ::ffff:0:0/96 are folded; an IPv6 network wider than it (`::/0`)
    still means IPv6 peers, as before."""
    (net,) = parse_networks([entry])
    assert net.version == 6
    assert not address_in("127.0.0.1", (net,))


def test_a_mapped_trusted_proxy_lets_its_forwarded_for_through() -> None:
    """The peer as a dual-stack socket reports it, or plain: either matches a mapped entry."""
    trusted = parse_networks(["::ffff:127.0.0.0/104"])
    for peer in ("127.0.0.1", "::ffff:127.0.0.1"):
        assert client_address(peer, ["203.0.113.7"], trusted) == "203.0.113.7"
    assert client_address("198.51.100.1", ["203.0.113.7"], trusted) == "198.51.100.1"


@pytest.mark.parametrize(
    ("metrics_from", "client", "readable"),
    [
        ('["::ffff:198.51.100.0/120"]', "198.51.100.20", True),
        ('["::ffff:198.51.100.0/120"]', "::ffff:198.51.100.20", True),
        ('["::ffff:198.51.100.0/120"]', "198.51.101.20", False),
    ],
)
async def test_a_mapped_metrics_from_entry_lets_its_ipv4_clients_read(
    tmp_path: Path,
    port: int,
    vendor_factory: Any,
    proxy_factory: Any,
    metrics_from: str,
    client: str,
    readable: bool,
) -> None:
    """metrics_from is parsed like trusted_proxies: a mapped network admits its IPv4 clients."""
    vendor = await vendor_factory(VENDOR_HOST)
    (tmp_path / "patrons.toml").write_text("")
    cfg = write_config(
        tmp_path,
        port=port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"one": vendor_toml("one", vendor)},
    )
    server = f'trusted_proxies = ["::ffff:127.0.0.1"]\nmetrics_from = {metrics_from}\n'
    cfg.write_text(cfg.read_text().replace("[server]\n", f"[server]\n{server}", 1))
    driver = await proxy_factory(cfg)
    r = await driver.own("GET", "/metrics", headers={"X-Forwarded-For": client})
    body = await r.text()
    assert (r.status == 200 and "weston_proxy_requests_total" in body) is readable
    assert r.status in (200, 404)


def test_address_lists_that_loaded_before_still_load(tmp_path: Path) -> None:
    """Folding mapped entries refuses nothing that was accepted: plain, mapped and IPv6 entries
    (even ones that cover the mapped range) all still load."""
    from proxy.config import load_config

    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors").mkdir()
    cfg = tmp_path / "proxy.toml"
    entries = '["127.0.0.1", "::ffff:127.0.0.1", "::ffff:0:0/96", "::/0", "fc00::/7", "::1"]'
    cfg.write_text(
        '[server]\npublic_url = "http://proxy.localhost:8080"\n'
        f"trusted_proxies = {entries}\nmetrics_from = {entries}\n"
        '[directory]\nkind = "file"\npatrons_file = "patrons.toml"\n'
    )
    config = load_config(cfg)
    assert len(parse_networks(config.server.trusted_proxies)) == 6


# --------------------------------------------------------------------------- usage limits


@pytest.mark.parametrize(
    ("method", "status", "content_range", "expected"),
    [
        ("GET", 206, "bytes 0-49999/50000", True),  # the whole document as one range
        ("GET", 206, "bytes 0-1023/50000", True),  # the first of many parts
        ("GET", 206, "bytes 0-1023/*", True),  # length unknown to the vendor
        ("GET", 206, "bytes 1024-2047/50000", False),  # a later part: the document counted once
        ("GET", 206, "bytes 1-49999/50000", True),  # all but the first byte (`bytes=1-`)
        ("GET", 206, "bytes 24999-49999/50000", True),  # more than half of it
        ("GET", 206, "bytes 25000-49999/50000", False),  # half: a viewer's second of two parts
        ("GET", 206, "bytes 1-49999/*", False),  # from elsewhere, of an unknown length
        ("GET", 206, "bytes 9-1/50000", False),
        ("GET", 206, "bytes 00-1023/50000", False),  # not how a range from 0 is written
        ("GET", 206, "bytes */50000", False),
        ("GET", 206, None, False),  # no Content-Range (a multipart/byteranges answer has none)
        ("GET", 206, "items 0-3/4", False),
        ("POST", 200, None, True),
        ("PUT", 200, None, True),
        ("POST", 206, "bytes 0-99/100", True),
        ("HEAD", 200, None, False),
        ("HEAD", 206, "bytes 0-99/100", False),
        ("POST", 404, None, False),
    ],
)
def test_which_answers_count_as_a_full_text_download(
    method: str, status: int, content_range: str | None, expected: bool
) -> None:
    assert is_full_text(method, status, "application/pdf", content_range) is expected


def test_a_post_answered_with_a_page_is_not_a_download() -> None:
    assert not is_full_text("POST", 200, "text/html; charset=utf-8")


PDF_SIZE = 50_000


async def _pdf_with_ranges(request: web.Request) -> web.StreamResponse:
    """A vendor that honours Range like any static file server: one `bytes=a-` / `bytes=a-b`
    range as a 206 (`bytes=0-` is the whole file), no Range the whole file as a 200."""
    body = b"%PDF-1.7\n" + b"x" * (PDF_SIZE - 9)
    spec = request.headers.get("Range", "")
    if not spec.startswith("bytes="):
        return web.Response(body=body, content_type="application/pdf")
    first, _, last = spec.removeprefix("bytes=").partition("-")
    a, b = int(first), min(int(last or PDF_SIZE - 1), PDF_SIZE - 1)
    return web.Response(
        status=206,
        body=body[a : b + 1],
        content_type="application/pdf",
        headers={"Content-Range": f"bytes {a}-{b}/{PDF_SIZE}"},
    )


async def _limited(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    route: str,
    handler: Any,
    downloads: int = 2,
) -> tuple[Any, Any]:
    """A signed-in patron and a recording vendor serving `handler` at `route`, whose file sets
    `downloads_per_hour`."""
    vendor = await vendor_factory(VENDOR_HOST)
    vendor.routes[route] = handler
    limits = f"\n[limits]\ndownloads_per_hour = {downloads}\n"
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, extra=limits)},
    )
    driver = await proxy_factory(cfg)
    await driver.login(CANARY.uid, CANARY.password)
    return driver, vendor


async def test_whole_document_sent_as_a_206_counts_as_a_download(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A bulk downloader adds `Range: bytes=0-` (curl -r 0-) and gets every full text as a 206
    carrying the whole document; is_full_text counts only 200s, so downloads_per_hour never
    triggers and the licensed database can be drained. A 206 that carries the whole document
    (Content-Range bytes 0-(N-1)/N) is a full-text download."""
    driver, _vendor = await _limited(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, "/paper.pdf", _pdf_with_ranges
    )
    statuses = []
    for i in range(4):
        r = await driver.get_vendor(VENDOR_HOST, f"/paper.pdf?n={i}", headers={"Range": "bytes=0-"})
        await r.read()
        statuses.append(r.status)
    assert statuses == [206, 206, 429, 429]


async def _pdf_in_byteranges(request: web.Request) -> web.StreamResponse:
    """A vendor that answers several ranges as multipart/byteranges (RFC 9110 §14.6)."""
    pdf = b"%PDF-1.7\n" + b"x" * 5000
    if "," not in request.headers.get("Range", ""):
        return web.Response(body=pdf, content_type="application/pdf")
    part = (
        b"--SEP\r\nContent-Type: application/pdf\r\n"
        + f"Content-Range: bytes 0-{len(pdf) - 1}/{len(pdf)}\r\n\r\n".encode()
        + pdf
        + b"\r\n--SEP--\r\n"
    )
    return web.Response(
        status=206, body=part, headers={"Content-Type": "multipart/byteranges; boundary=SEP"}
    )


async def test_a_document_asked_for_in_several_ranges_at_once_is_counted(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """`Range: bytes=0-,0-0` brings the whole PDF back wrapped in multipart/byteranges, a type
    no download count knows: the proxy asks for the whole document instead (a 200, counted)."""
    driver, vendor = await _limited(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        "/paper.pdf",
        _pdf_in_byteranges,
    )
    statuses = []
    for i in range(4):
        r = await driver.get_vendor(
            VENDOR_HOST, f"/paper.pdf?n={i}", headers={"Range": "bytes=0-,0-0"}
        )
        await r.read()
        statuses.append(r.status)
    assert statuses == [200, 200, 429, 429]
    sent = [dict((k.lower(), v) for k, v in r.headers) for r in vendor.requests]
    assert sent and all("range" not in h for h in sent)


async def _pdf_for_any_method(request: web.Request) -> web.StreamResponse:
    """A vendor's "Download PDF" button that posts a form (document id in the body) and gets the
    full text back as a 200."""
    await request.read()
    return web.Response(body=b"%PDF-1.7\n" + b"x" * 5000, content_type="application/pdf")


async def test_full_text_answered_to_a_post_counts_as_a_download(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """is_full_text counts only GETs: a full text delivered as the 200 answer to a POST (vendors'
    download/export forms; or any script that POSTs the PDF's URL) is never counted, so
    downloads_per_hour does not stop a session downloading full texts in a loop."""
    driver, vendor = await _limited(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        "/download",
        _pdf_for_any_method,
    )
    statuses = []
    for i in range(4):
        r = await driver.get_vendor(
            VENDOR_HOST,
            "/download",
            method="POST",
            data={"doc": str(i)},
            headers={"Origin": f"http://{driver.mapped(VENDOR_HOST)}"},
        )
        body = await r.read()
        assert r.status != 200 or body.startswith(b"%PDF"), "the vendor's PDF reached the patron"
        statuses.append(r.status)
    assert statuses == [200, 200, 429, 429]
    assert sum(1 for q in vendor.requests if q.path_qs == "/download") == 2


# --------------------------------------------------------------------------- admission


@pytest.mark.parametrize("whole", [2, 3])
def test_default_vendor_share_leaves_other_vendors_a_slot(whole: int) -> None:
    """README/docs: a vendor's default share is three quarters of `server.max_in_flight`, "so a
    vendor that hangs keeps only its own share busy" and the others go on answering. vendor_share
    rounds up (max - max // 4), so with max_in_flight 2 or 3 the share is the whole: one hung
    vendor holds every slot and every other database answers "busy" (503)."""
    server = ServerConfig(max_in_flight=whole)
    vendor = VendorConfig(id="one", title="One", origin="https://x.test", hosts=("x.test",))
    assert vendor_share(server, vendor) < whole


@pytest.mark.parametrize(("whole", "share"), [(1, 1), (2, 1), (3, 2), (4, 3), (5, 4), (64, 48)])
def test_default_vendor_share_is_three_quarters_rounded_up_short_of_the_whole(
    whole: int, share: int
) -> None:
    """With one slot the share is that slot (there is nothing to leave the others); from four
    up the share is what it always was."""
    server = ServerConfig(max_in_flight=whole)
    vendor = VendorConfig(id="one", title="One", origin="https://x.test", hosts=("x.test",))
    assert vendor_share(server, vendor) == share


PART = 10_000


async def test_a_document_fetched_in_many_ranges_counts_once(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A document is counted by its first part (the range from byte 0), not once per part: two
    documents in five parts each are two downloads of three, the third document's first part is
    the third (delivered, and the session suspended), and nothing more is sent."""
    driver, _vendor = await _limited(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        "/paper.pdf",
        _pdf_with_ranges,
        downloads=3,
    )
    statuses = []
    for doc in ("a", "b", "c"):
        for start in range(0, PDF_SIZE, PART):
            r = await driver.get_vendor(
                VENDOR_HOST,
                f"/paper.pdf?doc={doc}",
                headers={"Range": f"bytes={start}-{start + PART - 1}"},
            )
            await r.read()
            statuses.append(r.status)
    assert statuses == [206] * 11 + [429] * 4


async def test_whole_document_but_its_first_byte_counts_as_a_download(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """From a fresh read of the fix: a 206 counted only from byte 0 left `Range: bytes=1-`
    (curl -r 1-) uncounted, every PDF but its first byte (always `%` of `%PDF-`): a range
    holding more than half the document counts too."""
    driver, _vendor = await _limited(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, "/paper.pdf", _pdf_with_ranges
    )
    statuses = []
    for i in range(4):
        r = await driver.get_vendor(VENDOR_HOST, f"/paper.pdf?n={i}", headers={"Range": "bytes=1-"})
        body = await r.read()
        if r.status == 206:
            assert len(body) == PDF_SIZE - 1
        statuses.append(r.status)
    assert statuses == [206, 206, 429, 429]
