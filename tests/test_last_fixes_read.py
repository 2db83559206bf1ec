"""From a fresh read of this stop's last fixes (33855a4, a2f0d6b): a compressed text stream held
back by the peek, a cookie bomb on the page's own path the repair script missed, and a sign-in
the patron abandoned keeping its throttle try. Each failed on the code it was written against."""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.canary import CANARY
from tests.harness import ldap_directory, vendor_toml, write_config
from tests.test_media_databases import SCRIPT_FETCH, VENDOR_HOST, _signed_in

# The signed-in stack with one recording vendor (tests/test_media_databases.py).


# ------------------------------------------------------------------ the peek (forward._relay)


async def test_a_gzipped_text_stream_whose_first_message_is_short_is_not_held_back(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor's progress or chat stream (or a long-poll answer that starts with a short
    acknowledgement) labelled text/plain and compressed, as CDNs compress text/plain: the
    vendor flushes `ok\\n` at once and the next line seconds later. forward `_relay` now peeks
    `_read_decoded(resp, head, 7)`: it waits until the body *decodes* to 7 bytes (before
    33855a4 it waited for 7 coded bytes, which the gzip header alone gave), so the patron gets
    not even the response head until the vendor's next message; a heartbeat stream whose
    messages are short holds the patron's page until the stream ends or times out. Should: the
    response head (and what the vendor has sent) reaches the patron as it did, within a second,
    not after the vendor's next write."""
    release = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"}
        )
        await resp.prepare(request)
        z = zlib.compressobj(6, zlib.DEFLATED, 31)
        await resp.write(z.compress(b"ok\n") + z.flush(zlib.Z_SYNC_FLUSH))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 4)
        await resp.write(z.compress(b"progress 100%\n") + z.flush())
        await resp.write_eof()
        return resp

    driver, _ = await _signed_in(
        tmp_path, port, running_slapd, vendor_factory, proxy_factory, {"/progress": stream}
    )
    t0 = time.monotonic()
    r = await driver.get_vendor(
        VENDOR_HOST, "/progress", headers={"Accept-Encoding": "gzip", **SCRIPT_FETCH}
    )
    waited = time.monotonic() - t0
    release.set()
    body = await r.read()
    assert r.status == 200
    assert b"ok\n" in body and b"progress 100%" in body
    assert waited < 1.5, f"the response head came only after {waited:.1f} s"


# ------------------------------------------------- the too-long request's repair (http_errors)


async def test_a_cookie_bomb_on_the_pages_own_path_is_repaired_in_chromium(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor page at /app/reader writes its cookies without a Path: their default path is
    `/app` (RFC 6265 §5.1.4). When they grow past the limit, the patron's next visit to the
    vendor's `/app` (a link, a bookmark) gets the 431 page, and Chromium sends those cookies to
    /app (path-match: identical). The repair script (proxy/http_errors.py `_REPAIR`) deletes
    for `/` and for each *parent* directory of `location.pathname` (its loop stops before the
    last segment): for `/app` only `/`, so the bomb stays, the page stays a dead end, and the
    patron can reach nothing at /app on that database until they clear their browser. Should:
    the cookies the request carried (all visible to the page) are deleted, the page reloads."""
    from playwright.async_api import async_playwright

    from tests.browser_support import CHROMIUM, CHROMIUM_ARGS

    driver, _ = await _signed_in(tmp_path, port, running_slapd, vendor_factory, proxy_factory, {})
    host = driver.mapped(VENDOR_HOST).rsplit(":", 1)[0]
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context()
            await context.add_cookies(
                [
                    {"name": f"bomb{i}", "value": "b" * 3000, "domain": host, "path": "/app"}
                    for i in range(3)
                ]
            )
            page = await context.new_page()
            answer = await page.goto(f"http://{host}:{port}/app")
            status = answer.status if answer is not None else 0
            await page.wait_for_timeout(800)
            left = {c["name"] for c in await context.cookies()}
        finally:
            await browser.close()
    assert status == 431
    assert not any(n.startswith("bomb") for n in left), f"the bomb is still there: {left}"


# ------------------------------------------------------------------- the throttle's reservation


async def test_a_sign_in_the_patron_abandons_gives_its_try_back(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server cancels a handler whose client went away (`handler_cancellation=True` in
    proxy/cli.py): a patron who presses Stop or closes the tab while "Sign in" is working, or a
    browser that drops the connection. `Throttle.gate` adds the try in Redis and records it in
    `request[HELD]` only once the store's answers are in: cancelled while it awaits them (the
    INCRBY has run), `settle` finds nothing held and the try is never given back. Since
    a2f0d6b a counter full of tries but not of failures makes every later sign-in wait
    `WAIT_S` and answer 503 "Sign-in is busy" until the window ends (15 minutes by default),
    and the wait re-adds the try every 50 ms, so each abandoned *waiting* sign-in has the same
    chance to leak another. Here Redis answers after 0.3 s (a busy or remote Redis); one sign-in
    is abandoned while its reservation is on the way back. Should: no failure and nothing in
    flight, so the card holder's right PIN signs in (303), not a 503."""
    import redis

    from proxy import throttle
    from tests.test_directory_realities import SlowRelay

    monkeypatch.setattr(throttle, "WAIT_S", 1.5)
    redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    relay = SlowRelay(redis_port, 0.3)
    watcher = redis.Redis.from_url(redis_url)
    try:
        vendor = await vendor_factory(VENDOR_HOST)
        cfg = write_config(
            tmp_path,
            port=port,
            directory=ldap_directory(running_slapd, tmp_path),
            vendors={"one": vendor_toml("one", vendor)},
            extra="\n[throttle]\ncard_limit = 1\n",
            session=(
                'store = "redis"\n'
                f'redis_url = "{redis_url.replace(f":{redis_port}", f":{relay.port}")}"'
            ),
        )
        d = await proxy_factory(cfg)
        csrf, _ = await d.login_form()
        abandoned = asyncio.create_task(
            d.client.post(
                "/login",
                data={"username": CANARY.uid, "password": CANARY.password, "url": "", "csrf": csrf},
                headers={"Host": d.public},
                allow_redirects=False,
            )
        )
        # The moment Redis holds the reservation (its answer still on the way): the patron leaves.
        deadline = time.monotonic() + 10
        while not watcher.keys("*throttle:card:*:tries") and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        abandoned.cancel()
        await asyncio.gather(abandoned, return_exceptions=True)
        await asyncio.sleep(2.0)  # whatever the proxy does with the abandoned sign-in is done
        left = {k.decode(): int(watcher.get(k) or 0) for k in watcher.keys("*:tries")}
        r = await d.login(CANARY.uid, CANARY.password)
        body = await r.text()
    finally:
        watcher.close()
        relay.close()
    assert r.status == 303, (r.status, left, body[:200])
