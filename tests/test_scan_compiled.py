"""The compiled scans (proxy/_scan.pyx) answer exactly what the regexes answer.

`rewrite` must give the bytes of the reference (`url_pattern(HOST)` substituted over the text)
and of the pure-Python paths; `slash_hosts` must be the third-party regex's distinct hosts. The
input is untrusted vendor bytes, so besides generated URL text the scans also get random bytes of
every value and text cut at every byte of a URL.
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy import html_tags, rewrite_headers
from proxy.auth import hash_password
from proxy.hosts import HostMap
from proxy.rewrite import Rewriter
from proxy.rewrite_headers import _ANY_HOST
from tests.canary import CANARY
from tests.harness import free_port, vendor_toml, write_config
from tests.test_rewrite_equivalence import URLS, generated, reference

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


def check(rw: Rewriter, data: bytes) -> bytes:
    """`rewrite` against the reference and the Python paths, and `slash_hosts` against its regex."""
    assert scan is not None
    got = scan.rewrite(data, rw._replace_url)
    assert got == reference(rw, data), data
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rewrite_headers, "compiled_scan", None)
        assert rw.rewrite_bytes(data) == got, data
    assert scan.slash_hosts(data) == {h.lower() for h in _ANY_HOST.findall(data)}, data
    return got


def test_rewrite_matches_the_reference_on_generated_text(rw: Rewriter) -> None:
    """Every URL spelling (plain, JSON- and unicode-escaped, percent- and double-encoded, any
    case, with ports) next to every token; also long texts, where the Python path cuts pieces."""
    rng = random.Random(41)
    changed = 0
    for i in range(20_000):
        data = generated(rng, rng.randint(1, 30) if i % 50 else rng.randint(300, 1500))
        changed += check(rw, data) != data
    assert changed > 5000  # URLs were really rewritten, not only left alone


URL_BYTES = b"hHtTpPsS:/\\%3aA25fF.-_wW0123456789 \"'<>@?#uU"


def test_random_bytes_of_every_value(rw: Rewriter) -> None:
    rng = random.Random(47)
    for _ in range(20_000):
        n = rng.randint(0, 60)
        if rng.random() < 0.5:
            data = bytes(rng.randrange(256) for _ in range(n))
        else:  # mostly bytes URLs are made of, so matches start and fail everywhere
            data = bytes(rng.choice(URL_BYTES) for _ in range(n))
        check(rw, data)


def test_text_cut_at_every_byte_of_a_url(rw: Rewriter) -> None:
    """The scans read around a match (lookbehind, lookahead, port digits): text that ends, or
    starts, in the middle of any URL spelling must neither read past its ends nor differ."""
    extra = [
        "//http",
        "https://http.wild.test",
        "//a.wild.test:123456",
        "HTTPS%3a%2F%2fx.wild.test%3A8",
        # lookalikes of the escaped and double-encoded separators
        "https:\\.\\.www.vendor.test",
        "https%25xa%2F%2Fwww.vendor.test",
        "https%3A%25xf%25xfwww.vendor.test",
        "\\.\\.www.vendor.test",
        # and of the unicode escape
        "https:\\u002F\\/www.vendor.test",
        "https:\\u002F\\u002Ewww.vendor.test",
        "https:\\u02F\\u02Fwww.vendor.test",
        "\\u002F\\u002F\\u002Fwww.vendor.test",
        "\\u002F/www.vendor.test",
        "\\\\u002F\\\\u002Fwww.vendor.test",
        "\\U002F\\u002fa.wild.test:8443",
        # WebSocket schemes and lookalikes (a word before the scheme, `//` before it)
        "//wss",
        "//wss://www.vendor.test",
        "wss://ws.wild.test",
        "WS%3a%2F%2fx.wild.test%3A8",
        "news://www.vendor.test",
        "aws:\\/\\/www.vendor.test",
        "wsss://www.vendor.test",
        "w\\u002F\\u002Fwww.vendor.test",
    ]
    for url in [*URLS, *extra]:
        raw = url.encode()
        for i in range(len(raw) + 1):
            for data in (raw[:i], raw[i:], b"a" + raw[:i], raw[i:] + b"_", b'"' + raw[:i]):
                check(rw, data)


def test_every_url_spelling_with_one_byte_changed(rw: Rewriter) -> None:
    """Near misses: each URL spelling with one byte replaced by another separator, letter or
    digit (`//` with one slash gone, a broken colon or slash spelling, a host cut by `_` …)
    must be matched, or not, exactly as the reference does."""
    for url in URLS:
        raw = url.encode()
        for i in range(len(raw)):
            for b in b"x/\\%:.5aA_Uws":
                check(rw, b" " + raw[:i] + bytes([b]) + raw[i + 1 :] + b"/p")


def test_the_compiled_pre_check_never_builds_the_regex_of_every_host(rw: Rewriter) -> None:
    """With the compiled scans, the third-party pre-check needs no `unknown_host_pattern` (it
    spells every configured host: ~0.1 s for a library's thousands); the regex path builds it
    once, when it first needs it."""
    page = b'<img src="https://tracker.example/p.gif"><a href="https://www.vendor.test/">'
    fresh = Rewriter(rw.host_map)
    assert fresh.third_party_hosts(page) == {"tracker.example"}
    assert fresh._unknown is None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rewrite_headers, "compiled_scan", None)
        assert fresh.third_party_hosts(page) == {"tracker.example"}
        built = fresh._unknown
        assert built is not None
        assert fresh.third_party_hosts(page) == {"tracker.example"}
        assert fresh._unknown is built


def test_more_distinct_urls_than_the_recent_cache_holds(rw: Rewriter) -> None:
    """The scan keeps the last eight match texts; twenty hosts in turn must each get their own
    replacement, never a neighbour's."""
    hosts = [f"h{i}.wild.test" for i in range(20)] + ["www.vendor.test", "evil.org"]
    rng = random.Random(53)
    parts = [f'<a href="https://{rng.choice(hosts)}/p">' for _ in range(2000)]
    data = "".join(parts).encode()
    out = check(rw, data).decode()
    for host in hosts[:20]:
        assert f"https://{host.replace('.', '-')}.proxy.example.org/p" in out
    assert "https://evil.org/p" in out


def test_an_error_in_replace_is_raised_not_swallowed() -> None:
    assert scan is not None

    def boom(_: bytes) -> bytes:
        raise RuntimeError("replace failed")

    with pytest.raises(RuntimeError, match="replace failed"):
        scan.rewrite(b"see https://www.vendor.test/ now", boom)


def test_a_replacement_that_is_not_bytes_is_refused() -> None:
    assert scan is not None
    for wrong in (None, "text", 3):
        with pytest.raises(TypeError):
            scan.rewrite(b"see https://www.vendor.test/ now", lambda _, w=wrong: w)  # type: ignore[misc]


def test_only_bytes_are_accepted() -> None:
    assert scan is not None
    replace: Callable[[bytes], bytes] = bytes
    with pytest.raises(TypeError):
        scan.rewrite(bytearray(b"https://x.test"), replace)  # type: ignore[arg-type]
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


def test_a_machine_without_a_c_compiler_still_gets_a_package(tmp_path: Path) -> None:
    """setup.py marks the extension optional: with no working compiler the build still succeeds
    (without the .so), and the proxy then imports, runs the regex paths and warns (test above)."""
    repo = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"
    shutil.copytree(repo / "proxy", src / "proxy", ignore=shutil.ignore_patterns("*.so", "*.c"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(repo / name, src / name)
    no_cc = {**os.environ, "CC": "/bin/false"}
    built = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=src,
        env=no_cc,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    assert "building optional extension" in built.stderr.lower() or "failed" in built.stderr
    assert not list((src / "proxy").glob("_scan*.so"))
    # This checkout's editable install would find its own built module for `proxy._scan`.
    probe = (
        "import sys; sys.meta_path = [f for f in sys.meta_path if 'Editable' not in repr(f)]; "
        "from proxy import rewrite_headers as r; print(r.compiled_scan is None, r.__file__)"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe], cwd=src, capture_output=True, text=True, timeout=60
    )
    assert ran.stdout.split() == ["True", str(src / "proxy" / "rewrite_headers.py")], ran.stderr


TAG_TOKENS = [
    "<", ">", "<script", "<SCRIPT", "<link", "<Meta", "<scrip", "<links", " ", "\t", "/", "=",
    '"', "'", "integrity", "src", "x", "\r", "\n", "\f", "<meta>", "<script/", "a" * 40,
    "<a", "<AREA", "<iframe", "<form", " href=", "http:\\\\", "//", "www.vendor.test",
    "&#47;", "%77", "@", "<img", "<Video", " srcset=", " ping=", " poster=", ",", " 2x",
]  # fmt: skip


def _same_tags(data: bytes, max_len: int) -> None:
    """The compiled `tag_spans` against `html_tags.every_tag`, with load tags and without: the
    same pending tag and resume point, the same script, link and meta tags, and only navigation (and load) tags
    that `every_tag` finds too."""
    assert scan is not None
    for loads in (False, True):
        spans, pending, resume = scan.tag_spans(data, max_len, loads)
        every, every_pending, every_resume = html_tags.every_tag(data, max_len, loads)
        assert (pending, resume) == (every_pending, every_resume), data
        assert set(spans) <= set(every), data
        links = html_tags.NAVIGATION_TAGS | (html_tags.LOAD_TAGS if loads else frozenset())
        for start, end in every:
            name = re.match(rb"<([a-z]+)", data[start:end].lower())
            assert name is not None
            if name.group(1) not in links:
                assert (start, end) in spans, data


def test_tag_spans_find_the_tags_every_tag_does() -> None:
    """`tag_spans` and the pure-Python `every_tag` (the HTML tag stage's two paths) read tags
    alike, on generated text and on random bytes."""
    rng = random.Random(11)
    for _ in range(3000):
        data = "".join(rng.choice(TAG_TOKENS) for _ in range(rng.randrange(40))).encode()
        for max_len in (html_tags.MAX_TAG, 3, 0):
            _same_tags(data, max_len)
    for _ in range(20):
        _same_tags(bytes(rng.randrange(256) for _ in range(2000)), 50)
