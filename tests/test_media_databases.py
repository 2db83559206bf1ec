"""From a review of video, audio and e-book databases through the proxy: players' playlists,
segments, licence requests, ranges and downloads.

A player's requests carry the fetch metadata a browser gives them (hls.js and a DRM licence:
`Sec-Fetch-Mode: cors`; a <video> or <audio> element: `no-cors`), as the headless Chromium
test's do; `downloads_per_hour` counts audio, video and untyped binary bodies only when the
browser itself keeps or shows them (a link followed, `Content-Disposition: attachment`, or no
fetch metadata at all, as download tools send). The review's tests failed on the code they were
written against; then the edges of the fix.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from tests.browser_support import launch
from tests.canary import CANARY
from tests.harness import ldap_directory, sign_in_through_form, vendor_toml, write_config

VENDOR_HOST = "www.vendor-one.test"
# What Chromium sends for a script's fetch()/XHR (hls.js, a DRM licence) and for a media element.
SCRIPT_FETCH = {
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Dest": "empty",
    "Sec-Fetch-Site": "same-origin",
}
MEDIA_ELEMENT = {
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Dest": "video",
    "Sec-Fetch-Site": "same-origin",
}


async def _signed_in(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    routes: dict[str, Any],
    limits: str = "",
) -> tuple[Any, Any]:
    vendor = await vendor_factory(VENDOR_HOST)
    vendor.routes.update(routes)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, extra=limits)},
    )
    driver = await proxy_factory(cfg)
    await driver.login(CANARY.uid, CANARY.password)
    return driver, vendor


# --------------------------------------------------------------------------- usage limits


async def _segment(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"\x47" * 18_800, content_type="video/mp2t")


async def test_hls_segments_of_one_video_are_not_each_a_download(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A Kanopy-like film played over HLS is a playlist and a few hundred 6-second MPEG-TS
    segments, each fetched whole (a 200, video/mp2t). is_full_text counts every `video/` 200 as a
    full-text download, so with `downloads_per_hour = 10` (plenty for PDFs) the patron is
    suspended one minute into the film. The docs describe a download as a full-text document
    (PDF, EPUB …) fetched whole or by its first range; the parts of one streamed video are not
    each one."""
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n" + "".join(
        f"#EXTINF:6.0,\nseg{i}.ts\n" for i in range(30)
    )

    async def m3u8(request: web.Request) -> web.StreamResponse:
        return web.Response(text=playlist, content_type="application/vnd.apple.mpegurl")

    routes: dict[str, Any] = {"/film/index.m3u8": m3u8}
    routes.update({f"/film/seg{i}.ts": _segment for i in range(30)})
    driver, _ = await _signed_in(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        routes,
        "\n[limits]\ndownloads_per_hour = 10\n",
    )
    r = await driver.get_vendor(VENDOR_HOST, "/film/index.m3u8")
    await r.read()
    statuses = []
    for i in range(30):
        r = await driver.get_vendor(VENDOR_HOST, f"/film/seg{i}.ts", headers=SCRIPT_FETCH)
        await r.read()
        statuses.append(r.status)
    assert statuses == [200] * 30


async def test_an_audiobook_of_40_chapter_files_is_not_cut_off_by_downloads_per_hour(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A hoopla-like audiobook player streams a book as 40 chapter MP3s (audio/mpeg, each a 200
    or a range from byte 0). Each one counts as a full-text download, so `downloads_per_hour =
    20` stops the book at chapter 20 with the "suspended" page, for listening to one title."""

    async def chapter(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"ID3" + b"\xff\xfb" * 4000, content_type="audio/mpeg")

    routes = {f"/book/ch{i:02d}.mp3": chapter for i in range(40)}
    driver, _ = await _signed_in(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        routes,
        "\n[limits]\ndownloads_per_hour = 20\n",
    )
    statuses = []
    for i in range(40):
        r = await driver.get_vendor(
            VENDOR_HOST,
            f"/book/ch{i:02d}.mp3",
            headers={**MEDIA_ELEMENT, "Sec-Fetch-Dest": "audio"},
        )
        await r.read()
        statuses.append(r.status)
    assert statuses == [200] * 40


async def test_eme_license_requests_are_not_downloads(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """EME: the player POSTs a binary license challenge and gets a binary license back
    (application/octet-stream). is_full_text counts any octet-stream answer to a POST as a
    full-text download, so license renewals (players ask again every few minutes, and once per
    key with key rotation) use up `downloads_per_hour` and suspend a patron who downloaded
    nothing. The license must also go through byte for byte."""
    challenge = bytes(range(256)) * 8
    license_ = b"\x08\x02" + bytes(reversed(range(256))) * 4

    async def lic(request: web.Request) -> web.StreamResponse:
        assert await request.read() == challenge
        return web.Response(body=license_, content_type="application/octet-stream")

    driver, vendor = await _signed_in(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        {"/drm/license": lic},
        "\n[limits]\ndownloads_per_hour = 3\n",
    )
    got = []
    for _ in range(6):
        r = await driver.get_vendor(
            VENDOR_HOST,
            "/drm/license",
            method="POST",
            data=challenge,
            headers={"Content-Type": "application/octet-stream", **SCRIPT_FETCH},
        )
        got.append((r.status, await r.read() == license_))
    assert got == [(200, True)] * 6
    assert all(rec.body == challenge for rec in vendor.requests if rec.path_qs == "/drm/license")


# --------------------------------------------------------------------------- playlists


@pytest.mark.parametrize("ctype", ["text/plain", "application/octet-stream", "binary/octet-stream"])
async def test_an_hls_playlist_a_cdn_serves_untyped_is_still_rewritten(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    ctype: str,
) -> None:
    """CDNs and S3 buckets commonly serve `.m3u8` as text/plain or (binary|application)/
    octet-stream; hls.js, video.js and Safari play it whatever the type. The proxy rewrites HLS
    only under the mpegurl types, so the segment and key URLs stay on the vendor's host: the
    page's shield policy blocks them (the film does not play), and a player without the shield
    (a native app, Safari's own HLS fetches once the page is left) takes them from the patron's
    address. A body that starts `#EXTM3U` is an HLS playlist whatever its label."""
    playlist = (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n"
        f'#EXT-X-KEY:METHOD=AES-128,URI="http://{VENDOR_HOST}/keys/k1"\n'
        f'#EXT-X-MAP:URI="http://{VENDOR_HOST}/film/init.mp4"\n'
        f"#EXTINF:6.0,\nhttp://{VENDOR_HOST}/film/seg0.m4s\n#EXT-X-ENDLIST\n"
    )

    async def m3u8(request: web.Request) -> web.StreamResponse:
        return web.Response(body=playlist.encode(), headers={"Content-Type": ctype})

    driver, _ = await _signed_in(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, {"/film/index.m3u8": m3u8}
    )
    r = await driver.get_vendor(VENDOR_HOST, "/film/index.m3u8")
    body = (await r.read()).decode()
    assert r.status == 200
    assert f"http://{VENDOR_HOST}/" not in body
    mapped = driver.mapped(VENDOR_HOST)
    assert body.count(f"http://{mapped}/") == 3


FILM_SIZE = 4_000_000


async def _film(request: web.Request) -> web.StreamResponse:
    """An MP4 served as a static file server serves it: `bytes=a-` / `bytes=a-b` as a 206."""
    body = bytes(i % 251 for i in range(FILM_SIZE))
    spec = request.headers.get("Range", "")
    if not spec.startswith("bytes="):
        return web.Response(body=body, content_type="video/mp4", headers={"Accept-Ranges": "bytes"})
    first, _, last = spec.removeprefix("bytes=").partition("-")
    a, b = int(first), min(int(last or FILM_SIZE - 1), FILM_SIZE - 1)
    return web.Response(
        status=206,
        body=body[a : b + 1],
        content_type="video/mp4",
        headers={"Content-Range": f"bytes {a}-{b}/{FILM_SIZE}", "Accept-Ranges": "bytes"},
    )


async def test_seeking_in_one_film_is_not_a_download_per_seek(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Chromium plays an MP4 <video> with `Range: bytes=0-` and answers every seek with an
    open-ended `Range: bytes=N-`. A range from before the middle "holds more than half the
    document", so first_range counts each seek in the first half of a film as one more full-text
    download: with `downloads_per_hour = 5` a patron who jumps back and forth six times in one
    film gets the "suspended" page instead of the video. One film watched is not six
    downloads."""
    driver, _ = await _signed_in(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        {"/film.mp4": _film},
        "\n[limits]\ndownloads_per_hour = 5\n",
    )
    statuses = []
    for pct in (0, 5, 10, 15, 20, 25, 30, 35):
        start = FILM_SIZE * pct // 100
        r = await driver.get_vendor(
            VENDOR_HOST, "/film.mp4", headers={"Range": f"bytes={start}-", **MEDIA_ELEMENT}
        )
        await r.content.read(65536)  # the player reads a little, then seeks again
        r.close()
        statuses.append(r.status)
    assert statuses == [206] * 8


async def test_a_thumbnail_track_with_absolute_urls_is_rewritten(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """Players (JW Player, video.js thumbnails) show seek-bar previews from a WebVTT track
    (`text/vtt`) whose cues are image URLs, absolute on the vendor's CDN. The proxy passes
    text/vtt untouched, so the previews point at the vendor's host: the page's shield policy
    blocks every one (no previews when seeking), and any client without the shield fetches them
    from the patron's address. The track's URLs on the vendor's hosts should be mapped, as in a
    playlist."""
    vtt = (
        "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\n"
        f"http://{VENDOR_HOST}/strips/film-120.jpg#xywh=0,0,120,68\n\n"
        "00:00:05.000 --> 00:00:10.000\n"
        f"http://{VENDOR_HOST}/strips/film-120.jpg#xywh=120,0,120,68\n"
    )

    async def track(request: web.Request) -> web.StreamResponse:
        return web.Response(text=vtt, content_type="text/vtt")

    driver, _ = await _signed_in(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, {"/thumbs.vtt": track}
    )
    r = await driver.get_vendor(VENDOR_HOST, "/thumbs.vtt")
    body = await r.text()
    assert r.status == 200
    assert f"http://{VENDOR_HOST}/" not in body
    assert body.count(f"http://{driver.mapped(VENDOR_HOST)}/strips/") == 2


# --------------------------------------------------------------------------- in the browser

RATE = 48000
SECONDS = 200


def _wav() -> bytes:
    data = bytes(range(256)) * (RATE * 4 * SECONDS // 256)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 2, RATE, RATE * 4, 4, 16)
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


WAV = _wav()
PLAYER = """<!doctype html><title>loading</title><audio id=a preload=metadata src="/book.wav"></audio>
<script>
const a = document.getElementById('a');
const log = [];
a.addEventListener('error', () => { document.title = 'error ' + (a.error && a.error.code); });
a.addEventListener('loadedmetadata', async () => {
  for (const f of [0.1, 0.2, 0.3, 0.4, 0.45, 0.48]) {
    a.currentTime = a.duration * f;
    await new Promise((ok) => { a.addEventListener('seeked', ok, {once: true}); a.addEventListener('error', ok, {once: true}); });
    if (a.error) return;
    log.push(f);
  }
  document.title = 'seeked ' + log.length;
});
</script>"""


@pytest.mark.browser
async def test_seeking_in_an_audiobook_in_chromium_is_not_cut_off(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The same in headless Chromium: an <audio> player on the vendor's page (a 200-second
    audiobook chapter, WAV, served by a vendor that honours Range) seeks to 10 %, 20 %, 30 %,
    40 %, 45 % and 48 %. Chromium asks each seek as `bytes=N-`; each counts as one more
    download, and with `downloads_per_hour = 5` the sixth seek gets the 429 "suspended" page:
    the element fails with MEDIA_ERR_NETWORK and the patron cannot listen any further."""
    vendor = await vendor_factory(VENDOR_HOST)

    async def player(r):
        return web.Response(text=PLAYER, content_type="text/html")

    async def wav(request):
        spec = request.headers.get("Range", "")
        n = len(WAV)
        if spec.startswith("bytes="):
            first, _, last = spec.removeprefix("bytes=").partition("-")
            a, b = int(first), min(int(last or n - 1), n - 1)
            resp = web.StreamResponse(
                status=206,
                headers={
                    "Content-Type": "audio/wav",
                    "Accept-Ranges": "bytes",
                    "Content-Range": f"bytes {a}-{b}/{n}",
                },
            )
        else:
            a, b = 0, n - 1
            resp = web.StreamResponse(
                headers={"Content-Type": "audio/wav", "Accept-Ranges": "bytes"}
            )
        resp.content_length = b - a + 1
        await resp.prepare(request)
        try:
            for i in range(a, b + 1, 65536):
                await resp.write(WAV[i : min(i + 65536, b + 1)])
                await asyncio.sleep(0.02)
        except Exception:
            pass
        return resp

    vendor.routes.update({"/player": player, "/book.wav": wav})
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor, extra="\n[limits]\ndownloads_per_hour = 5\n")},
    )
    driver = await proxy_factory(cfg)
    own = f"http://{driver.public}"
    statuses = []
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await (await browser.new_context()).new_page()
            page.on(
                "response",
                lambda r: statuses.append(
                    (r.url.rsplit("/", 1)[-1], r.status, r.request.headers.get("range"))
                ),
            )
            await sign_in_through_form(page, own)
            await page.goto(f"http://{driver.mapped(VENDOR_HOST)}/player")
            await page.wait_for_function(
                "document.title.startsWith('seeked') || document.title.startsWith('error')",
                timeout=30000,
            )
            title = await page.title()
        finally:
            await browser.close()
    assert title == "seeked 6"
    assert [s for s in statuses if s[0] == "book.wav" and s[1] not in (200, 206)] == []


# --------------------------------------------------------------------------- edges of the fix


@pytest.mark.parametrize(
    ("headers", "disposition", "counted"),
    [
        ({}, None, True),  # a download tool: no fetch metadata
        ({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, None, True),  # a link
        (SCRIPT_FETCH, "attachment; filename=ch01.mp3", True),  # a script saving it
        (SCRIPT_FETCH, None, False),  # a player's script
        ({**MEDIA_ELEMENT, "Sec-Fetch-Dest": "audio"}, "inline", False),  # an <audio>
    ],
    ids=["tool", "link", "attachment", "script", "element"],
)
async def test_what_still_counts_as_a_download(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    headers: dict[str, str],
    disposition: str | None,
    counted: bool,
) -> None:
    """An MP3 the browser saves or shows itself is a download, as before (the limits are against
    bulk downloading, which tools do without fetch metadata); one a page's player plays is not.
    `downloads_per_hour = 2`: the third counted one is refused."""

    async def mp3(request: web.Request) -> web.StreamResponse:
        extra = {"Content-Disposition": disposition} if disposition else {}
        return web.Response(body=b"ID3" + b"\xff" * 500, content_type="audio/mpeg", headers=extra)

    driver, _ = await _signed_in(
        tmp_path,
        port,
        running_slapd,
        vendor_factory,
        proxy_factory,
        {"/a.mp3": mp3},
        "\n[limits]\ndownloads_per_hour = 2\n",
    )
    statuses = []
    for _ in range(3):
        r = await driver.get_vendor(VENDOR_HOST, "/a.mp3", headers=headers)
        await r.read()
        statuses.append(r.status)
    assert statuses == ([200, 200, 429] if counted else [200, 200, 200])


def test_a_pdf_counts_whoever_fetches_it_and_octet_stream_only_when_saved() -> None:
    """A PDF fetched by a viewer's script is still a full text (documents count as before);
    binary answers to a player or a licence request are not, until the browser saves them."""
    from proxy.usage_limits import is_full_text

    assert is_full_text("GET", 200, "application/pdf", None, saved=False)
    assert not is_full_text("POST", 200, "application/octet-stream", None, saved=False)
    assert is_full_text("POST", 200, "application/octet-stream", None, saved=True)
    assert not is_full_text("GET", 200, "video/mp2t", None, saved=False)
    assert is_full_text("GET", 200, "video/mp4", None, saved=True)


def test_a_films_segments_are_not_counted_as_downloads_in_the_statistics() -> None:
    """The daily statistics (downloads_other) count a film's segments no more than the limits
    do; a film a patron saves still counts."""
    from proxy.forward import Observation
    from proxy.stats import DOWNLOADS_OTHER, download_metric, saved_by_browser
    from proxy.usage_stats import UsageCounter

    assert download_metric("video/mp2t", saved=False) is None
    assert download_metric("video/mp4", saved=True) == DOWNLOADS_OTHER
    assert not saved_by_browser("cors", "inline") and saved_by_browser("cors", "Attachment")
    assert saved_by_browser(None, None) and saved_by_browser("navigate", None)

    class Recorder:
        def __init__(self) -> None:
            self.seen: list[tuple[str, int]] = []

        def count_many(self, vendor_id: str, counts: list[tuple[str, int]]) -> None:
            self.seen += counts

        def unique(self, *args: Any) -> None:
            pass

    rec = Recorder()
    stats = UsageCounter(rec, {}, secret=b"s" * 32)  # type: ignore[arg-type]
    for saved in (False, True):
        stats.observe(
            Observation("one", "GET", 200, 100, 0.01, "video/mp2t", "/s.ts", False, saved=saved)
        )
    assert [n for m, n in rec.seen if m == DOWNLOADS_OTHER] == [1]
