"""Two `python -m proxy serve` instances on one real Redis: sessions written by another code
version, and a page's parallel requests through both (every host noted, every cookie kept).

Built as tests/test_scale_out.py builds its pair: one config directory, one Redis, real slapd,
an aiohttp recording vendor; requests go to each process's own port with the public Host.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.config import load_config
from proxy.redis_store import RedisStore
from proxy.secrets_ import server_secret
from tests.canary import CANARY
from tests.harness import RecordingVendor, free_port, ldap_directory, vendor_toml, write_config
from tests.test_scale_out import ServedProxy, second_config, serve

VENDOR_HOST = "www.shared-db.test"
VENDOR_DOMAIN = "shared-db.test"
FORGET = "/.weston-proxy/forget"


@pytest.fixture
async def vendor(vendor_factory: Any) -> RecordingVendor:
    v: RecordingVendor = await vendor_factory(VENDOR_HOST)
    return v


@pytest.fixture
async def pair(
    tmp_path: Path, running_slapd: Any, redis_url: str, vendor: RecordingVendor
) -> AsyncIterator[tuple[ServedProxy, ServedProxy, Path]]:
    """Proxies A and B on one Redis; the vendor serves its www host and every sibling host."""
    port_a, port_b = free_port(), free_port()
    cfg_a = write_config(
        tmp_path,
        port=port_a,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={
            "shared": vendor_toml("shared", vendor, hosts=[VENDOR_HOST, f"*.{VENDOR_DOMAIN}"])
        },
        session=f'store = "redis"\nredis_url = "{redis_url}"\nidle_timeout_s = 600\n'
        "lifetime_s = 3600",
    )
    cfg_b = second_config(cfg_a, port_b)
    a = await serve(cfg_a)
    b = await serve(cfg_b, public_port=port_a)
    try:
        yield a, b, cfg_a
    finally:
        await a.stop()
        await b.stop()


def store_for(cfg: Path, redis_url: str) -> RedisStore:
    """A RedisStore with the proxies' own sealing key (proxy/services.py build_services)."""
    config = load_config(cfg)
    key = hashlib.sha256(b"store-v1\x00" + server_secret(config)).digest()
    return RedisStore(url=redis_url, key=key)


async def write_raw(store: RedisStore, data: dict[str, Any]) -> None:
    """Seal and store a session dict exactly as given (the shape another code version wrote),
    through the store's own Lua script, as `RedisStore.put` does."""
    redis_key, member = store._session_key(data["id"])
    plaintext = json.dumps(data, separators=(",", ":")).encode()
    blob = store._sealer.seal(data["id"], plaintext, redis_key.encode())
    await store._put(
        keys=[redis_key, store._live, store._born],
        args=[blob, 600_000, member, repr(data["created"])],
    )


def sent_cookies(vendor: RecordingVendor) -> dict[str, str]:
    sent = dict(vendor.requests[-1].headers).get("Cookie", "")
    return dict(part.split("=", 1) for part in sent.split("; ") if part)


async def test_old_shaped_jar_request_on_a_reverts_cookie_b_changed(
    pair: tuple[ServedProxy, ServedProxy, Path], vendor: RecordingVendor, redis_url: str
) -> None:
    """A session stored by the code before today (jar entries without "samesite", no "hosts"):
    a request through A that started before B changed the vendor's cookie `pref`, and whose own
    answer sets another cookie, must not write its stale `pref` back over B's new value.

    `merged_jar` compares the old-shaped entries with SameSite filled in: before, every old
    cookie compared different from `dump_jar`'s, counted as changed by this request and
    overwrote what other instances stored meanwhile (a vendor sign-in rolled back)."""
    a, b, cfg = pair
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        resp = web.Response(text="slow", content_type="text/plain")
        resp.set_cookie("other", "1", path="/")
        return resp

    async def fast(request: web.Request) -> web.StreamResponse:
        resp = web.Response(text="fast", content_type="text/plain")
        resp.set_cookie("pref", "new", path="/")
        return resp

    vendor.routes["/slow"] = slow
    vendor.routes["/fast"] = fast
    assert (await a.driver.login(CANARY.uid, CANARY.password)).status == 303
    sid = a.driver.sid
    assert sid is not None
    b.driver.sid = sid
    # The session as yesterday's code stored it: been to the vendor, one cookie, no SameSite.
    store = store_for(cfg, redis_url)
    try:
        session = await store.get(sid)
        assert session is not None
        old = session.to_dict()
        del old["hosts"]
        old["state"] = {"seen": ["shared"]}
        old["jars"] = {
            "shared": [
                {
                    "version": 0, "name": "pref", "value": "old", "port": None,
                    "port_specified": False, "domain": VENDOR_HOST, "domain_specified": False,
                    "domain_initial_dot": False, "path": "/", "path_specified": True,
                    "secure": False, "expires": None, "discard": False, "comment": None,
                    "comment_url": None,
                }
            ]
        }  # fmt: skip
        await write_raw(store, old)
    finally:
        await store.close()

    slow_reply = asyncio.create_task(a.driver.get_vendor(VENDOR_HOST, "/slow"))
    await asyncio.wait_for(arrived.wait(), 10)
    r = await b.driver.get_vendor(VENDOR_HOST, "/fast")
    assert r.status == 200
    release.set()
    assert (await slow_reply).status == 200
    assert (await b.driver.get_vendor(VENDOR_HOST, "/after")).status == 200
    got = sent_cookies(vendor)
    assert got.get("other") == "1"
    assert got.get("pref") == "new", got


async def test_session_with_a_field_from_a_newer_instance_still_loads(
    pair: tuple[ServedProxy, ServedProxy, Path], vendor: RecordingVendor, redis_url: str
) -> None:
    """A rolling upgrade of a scaled-out proxy runs two code versions on one Redis. A session
    a newer instance wrote, with a field this code does not know, loads here: `from_dict`
    leaves unknown fields out (it was `cls(**d)`, and every request of that patron got the
    "internal" page). This writes a session with one more field and asks B for the vendor."""
    a, b, cfg = pair
    assert (await a.driver.login(CANARY.uid, CANARY.password)).status == 303
    sid = a.driver.sid
    assert sid is not None
    b.driver.sid = sid
    store = store_for(cfg, redis_url)
    try:
        session = await store.get(sid)
        assert session is not None
        newer = session.to_dict()
        newer["storage"] = ["www.shared-db.test"]  # a field a later version adds
        await write_raw(store, newer)
    finally:
        await store.close()
    r = await b.driver.get_vendor(VENDOR_HOST, "/article")
    assert r.status == 200, (r.status, (await r.text())[:300])


PARALLEL = 16


async def test_page_with_many_parallel_requests_through_both_keeps_every_host_and_cookie(
    pair: tuple[ServedProxy, ServedProxy, Path], vendor: RecordingVendor
) -> None:
    """A vendor page loads its images from many sibling hosts at once, half through each
    instance, and every answer renews a load balancer cookie (AWSALB) and sets one of its own.
    Every host must be on the sign-out page (B) and every cookie in the jar.

    With real Redis the writes of two instances interleave. Each request used to write twice
    (the host, then the jar) and a write gave up after 8 lost compare-and-set rounds (log
    "session_update_contended"): 2-4 of 16 hosts were not cleared from the browser at
    sign-out. Now one write per request, up to 24 rounds with a random backoff. The in-memory
    store never interleaves, so only scale-out (or one instance on Redis) shows it."""
    a, b, _ = pair

    async def image(request: web.Request) -> web.StreamResponse:
        n = request.path.rsplit("/", 1)[-1]
        resp = web.Response(body=b"GIF89a", content_type="image/gif")
        resp.set_cookie(f"c{n}", n, path="/")
        resp.set_cookie("AWSALB", f"lb-{n}", path="/")
        return resp

    for n in range(PARALLEL):
        vendor.routes[f"/img/{n}"] = image
    assert (await a.driver.login(CANARY.uid, CANARY.password)).status == 303
    b.driver.sid = a.driver.sid
    assert (await a.driver.get_vendor(VENDOR_HOST, "/")).status == 200
    drivers = (a.driver, b.driver)
    hosts = [f"img{n}.{VENDOR_DOMAIN}" for n in range(PARALLEL)]
    replies = await asyncio.gather(
        *(drivers[n % 2].get_vendor(hosts[n], f"/img/{n}") for n in range(PARALLEL))
    )
    assert [r.status for r in replies] == [200] * PARALLEL
    lost_cookies = []
    for n in range(PARALLEL):  # each host's cookies are its own (no Domain): asked there
        assert (await drivers[(n + 1) % 2].get_vendor(hosts[n], "/after")).status == 200
        if sent_cookies(vendor).get(f"c{n}") != str(n):
            lost_cookies.append(f"c{n}")
    r = await b.driver.own("POST", "/logout")
    assert r.status == 200
    html = await r.text()
    lost_hosts = [h for h in hosts if f"{b.driver.mapped(h)}{FORGET}" not in html]
    contended = (a.output() + b.output()).count("session_update_contended")
    assert (lost_hosts, lost_cookies, contended) == ([], [], 0)
