"""The compiled scans (proxy/_scan.pyx) answer exactly what the pure-Python paths answer.

`segment` must return the spots `rewrite._spots` finds (sorted), None where it says None, and
otherwise the two literal-led regex passes' output; `slash_hosts` must be the third-party
regex's distinct hosts. The input is untrusted vendor bytes, so besides generated URL text the
scans also get random bytes of every value and text cut at every byte of a URL.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy import rewrite_headers
from proxy.auth import hash_password
from proxy.hosts import HostMap
from proxy.rewrite import Rewriter, _spots
from proxy.rewrite_headers import _ANY_HOST
from tests.canary import CANARY
from tests.harness import free_port, vendor_toml, write_config
from tests.test_rewrite_equivalence import PLAIN_TOKENS, PLAIN_URLS, URLS, generated

scan = rewrite_headers.compiled_scan


def test_the_compiled_scans_are_built() -> None:
    """scripts/setup builds them; without a C compiler the proxy would run several times slower
    on rewritten pages and every other test here would test the Python path twice."""
    assert scan is not None, "proxy/_scan.pyx was not compiled (is a C compiler installed?)"
    assert scan.__file__ is not None and scan.__file__.endswith(".so")
    source = Path(scan.__file__).with_name("_scan.pyx")
    if source.exists():  # an editable install: rebuilt since the source last changed?
        assert Path(scan.__file__).stat().st_mtime >= source.stat().st_mtime, (
            "proxy/_scan.pyx changed after it was built: run scripts/setup"
        )


@pytest.fixture(scope="module")
def rw() -> Rewriter:
    hm = HostMap.build(
        public_scheme="https",
        public_host="proxy.example.org",
        public_port=None,
        vendor_hosts=[("v", ["www.vendor.test", "cdn.vendor.test", "*.wild.test"])],
        never_proxy=["s.deep.wild.test"],
    )
    return Rewriter(hm)


def python_plain(rw: Rewriter, data: bytes) -> bytes:
    return rw._sub(rw._rel_plain, rw._sub(rw._abs_plain, data))


def check(rw: Rewriter, data: bytes, limit: int) -> str:
    """Compare `segment` with the Python answer for `data`; say which answer it was."""
    assert scan is not None
    lower = data.lower()
    expected = _spots(data, lower, data.count(b"http") != lower.count(b"http"), limit)
    got = scan.segment(data, rw._replace_url, limit)
    if expected is None:
        assert got is None, data
        return "dense"
    if expected:
        assert got == sorted(expected), data
        return "spots"
    assert got == python_plain(rw, data), data
    assert scan.plain(data, rw._replace_url) == got
    return "plain"


def test_segment_matches_the_python_spots_and_passes_on_generated_text(rw: Rewriter) -> None:
    rng = random.Random(41)
    seen = {"dense": 0, "spots": 0, "plain": 0}
    for _ in range(20_000):
        data = generated(rng, rng.randint(1, 30))
        limit = rng.choice([0, 1, 2, 5, len(data) // 256, 10**6])
        seen[check(rw, data, limit)] += 1
    assert min(seen.values()) > 500, seen  # each answer was really exercised


def test_plain_matches_the_python_passes_on_spot_free_text(rw: Rewriter) -> None:
    """`plain` (what `_segment` runs between the spots' pieces) gives the two passes' bytes on
    text without spots (plain URLs and tokens; the few that still make a spot are skipped)."""
    assert scan is not None
    rng = random.Random(43)
    checked = 0
    for _ in range(20_000):
        n = rng.randint(1, 40) if rng.random() < 0.9 else 2000
        data = "".join(
            rng.choice(PLAIN_URLS) if rng.random() < 0.3 else rng.choice(PLAIN_TOKENS)
            for _ in range(n)
        ).encode()
        if _spots(data, data.lower(), data.count(b"http") != data.lower().count(b"http"), 10**6):
            continue
        assert scan.plain(data, rw._replace_url) == python_plain(rw, data), data
        checked += 1
    assert checked > 15_000


URL_BYTES = b"hHtTpPsS:/\\%3aA25fF.-_w0123456789 \"'<>@?#"


def test_random_bytes_of_every_value(rw: Rewriter) -> None:
    rng = random.Random(47)
    for _ in range(20_000):
        n = rng.randint(0, 60)
        if rng.random() < 0.5:
            data = bytes(rng.randrange(256) for _ in range(n))
        else:  # mostly bytes URLs are made of, so matches start and fail everywhere
            data = bytes(rng.choice(URL_BYTES) for _ in range(n))
        check(rw, data, rng.choice([0, 3, 10**6]))
        assert scan is not None
        assert scan.slash_hosts(data) == {h.lower() for h in _ANY_HOST.findall(data)}


def test_text_cut_at_every_byte_of_a_url(rw: Rewriter) -> None:
    """The scans read around a match (lookbehind, lookahead, port digits): text that ends, or
    starts, in the middle of any URL spelling must neither read past its ends nor differ."""
    for url in [*URLS, "//http", "https://http.wild.test", "//a.wild.test:123456", "x:%2"]:
        raw = url.encode()
        for i in range(len(raw) + 1):
            for data in (raw[:i], raw[i:], b"a" + raw[:i], raw[i:] + b"_", b'"' + raw[:i]):
                for limit in (0, 10**6):
                    check(rw, data, limit)
                    assert scan is not None
                    assert scan.slash_hosts(data) == {h.lower() for h in _ANY_HOST.findall(data)}


def test_more_distinct_urls_than_the_recent_cache_holds(rw: Rewriter) -> None:
    """The scan keeps the last eight match texts; twenty hosts in turn must each get their own
    replacement, never a neighbour's."""
    hosts = [f"h{i}.wild.test" for i in range(20)] + ["www.vendor.test", "evil.org"]
    rng = random.Random(53)
    parts = [f'<a href="https://{rng.choice(hosts)}/p">' for _ in range(2000)]
    data = "".join(parts).encode()
    assert check(rw, data, 10**6) == "plain"
    out = rw.rewrite_bytes(data).decode()
    for host in hosts[:20]:
        assert f"https://{host.replace('.', '-')}.proxy.example.org/p" in out
    assert "https://evil.org/p" in out


def test_an_error_in_replace_is_raised_not_swallowed() -> None:
    assert scan is not None

    def boom(_: bytes) -> bytes:
        raise RuntimeError("replace failed")

    with pytest.raises(RuntimeError, match="replace failed"):
        scan.plain(b"see https://www.vendor.test/ now", boom)


def test_a_replacement_that_is_not_bytes_is_refused() -> None:
    assert scan is not None
    for wrong in (None, "text", 3):
        with pytest.raises(TypeError):
            scan.plain(b"see https://www.vendor.test/ now", lambda _, w=wrong: w)  # type: ignore[misc]


def test_only_bytes_are_accepted() -> None:
    assert scan is not None
    replace: Callable[[bytes], bytes] = bytes
    with pytest.raises(TypeError):
        scan.plain(bytearray(b"https://x.test"), replace)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scan.slash_hosts("//x.test")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- through the proxy


async def test_a_proxy_without_the_compiled_scans_warns_and_rewrites_the_same_page(
    tmp_path: Path,
    vendor_factory: Any,
    proxy_factory: Any,
    log_stream: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same vendor page through the proxy with the compiled scans and without them (a build
    with no C compiler): the same bytes reach the patron; only the second start-up warns, and
    says what to install."""
    from bench.bench import vendor_page

    page = vendor_page(200 * 1024).replace(b"vendor-bench.test", b"vendor.test")
    page = page.replace(b"</main>", b'<img src="https://tracker.example/p.gif"></main>')
    vendor = await vendor_factory("www.vendor.test")

    async def serve_page(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html")

    vendor.routes["/page"] = serve_page
    (tmp_path / "patrons.toml").write_text(
        f'[[patron]]\ncard = "{CANARY.uid}"\nhash = "{hash_password(CANARY.password)}"\n'
    )
    vendors = {"v": vendor_toml("v", vendor, hosts=["www.vendor.test", "cdn.vendor.test"])}
    directory = 'kind = "file"\npatrons_file = "patrons.toml"\n'
    bodies = []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(rewrite_headers, "compiled_scan", None)
        start = len(log_stream.getvalue())
        proxy_port = free_port()
        cfg = write_config(tmp_path, port=proxy_port, directory=directory, vendors=vendors)
        driver = await proxy_factory(cfg)
        log = log_stream.getvalue()[start:]
        assert ('"rewriter_not_compiled"' in log) is not compiled
        assert f'"compiled_rewriter": {"true" if compiled else "false"}' in log
        assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
        r = await driver.get_vendor("www.vendor.test", "/page")
        assert r.status == 200
        # The two proxies listen on two ports, which their mapped URLs carry.
        body = await r.read()
        for colon in (":", "%3A"):
            body = body.replace(f"{colon}{proxy_port}".encode(), f"{colon}PORT".encode())
        bodies.append(body)
    assert bodies[0] == bodies[1]
    assert b"vendor.test/" not in bodies[0]
    mapped_www = driver.mapped("www.vendor.test").replace(f":{proxy_port}", ":PORT")
    assert bodies[0].count(mapped_www.encode()) > 1000
    assert b'"https://tracker.example/p.gif"' in bodies[0]  # third-party: left alone
    assert "gcc" in log  # the warning says what to install
