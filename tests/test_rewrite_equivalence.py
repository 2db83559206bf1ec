"""The fast rewriting paths give exactly the bytes of the reference URL pattern.

`Rewriter.rewrite_bytes` and the streamed URL stage use a possessive host pattern, two literal-led
passes for plain URLs, and cuts between pieces; the reference is one `url_pattern(HOST)` substitution
over the whole text. Generated text mixes every URL spelling, case, lookalike and boundary byte.
"""

from __future__ import annotations

import random
import re

import pytest

from proxy.hosts import HostMap
from proxy.rewrite import HOST, MAX_CUT_WAIT, Rewriter, url_pattern

TOKENS = [
    "https", "http", "HTTP", "Https", "hTTp", "s", "h", "ttp", ":", "//", "/", "\\/", "\\",
    "%3A", "%3a", "%2F", "%2f", "%253A", "%253a", "%252F", "%252f", "%2",
    "www.vendor.test", "WWW.Vendor.TEST", "cdn.vendor.test", "a.wild.test", "B.WILD.test",
    "wild.test", "vendor.test", "evil.org", "www.vendor.test.evil.org", "notwww.vendor.test",
    ".", "-", "_", "+", "8443", ":99", ":080", "0", '"', "<", ">", " ", "\n", "'", "=", "?", "#",
    "x", "abc", "<a href=\"", "\">", "\\u002F",
]  # fmt: skip


@pytest.fixture(scope="module")
def rw() -> Rewriter:
    hm = HostMap.build(
        public_scheme="http",
        public_host="proxy.localhost",
        public_port=8080,
        vendor_hosts=[("v", ["www.vendor.test", "cdn.vendor.test", "*.wild.test"])],
    )
    return Rewriter(hm)


def reference(rw: Rewriter, data: bytes) -> bytes:
    pattern = re.compile(url_pattern(HOST), re.IGNORECASE)
    return pattern.sub(lambda m: rw._replace_url(m.group(0)), data)


# Whole URLs in every spelling, so that generated text puts each next to every neighbour.
URLS = [
    f"{scheme}{colon}{slash}{slash}{host}{port}"
    for scheme in ("https", "http", "HTTP")
    for colon, slash in ((":", "/"), (":", "\\/"), ("%3A", "%2F"), ("%253a", "%252f"), (":", "%2F"))
    for host in ("www.vendor.test", "Cdn.Vendor.test", "x.wild.test", "evil.org")
    for port in ("", ":8443")
] + [f"{rel}{host}" for rel in ("//", "\\/\\/") for host in ("www.vendor.test", "a.wild.test")]


def generated(rng: random.Random, n: int) -> bytes:
    parts = [rng.choice(URLS) if rng.random() < 0.3 else rng.choice(TOKENS) for _ in range(n)]
    if rng.random() < 0.05:
        parts.insert(rng.randrange(len(parts) + 1), "a" * rng.choice([250, 253, 254, 400]))
    return "".join(parts).encode()


def test_one_shot_matches_the_reference_on_generated_text(rw: Rewriter) -> None:
    rng = random.Random(2026)
    fast_path_used = 0
    for _ in range(20_000):
        data = generated(rng, rng.randint(1, 14))
        assert rw.rewrite_bytes(data) == reference(rw, data), data
        fast_path_used += b"\\/" not in data and b"%" not in data and b"HTTP" not in data.upper()
    assert fast_path_used > 1000  # the literal-led passes were really exercised


def test_long_text_halved_around_escaped_urls_matches_the_reference(rw: Rewriter) -> None:
    """Pieces that need the full scan are halved at cut bytes; every way of halving is exact."""
    rng = random.Random(3)
    for _ in range(300):
        data = generated(rng, rng.randint(300, 1500))
        assert len(data) > 2048
        assert rw.rewrite_bytes(data) == reference(rw, data)


PLAIN_URLS = [u for u in URLS if "%" not in u and "\\" not in u and "HTTP" not in u]
PLAIN_TOKENS = [
    t for t in TOKENS if t.lower() not in {"http", "https", "\\/", "\\"} and "%" not in t
]
SPOTS = ["https:\\/\\/www.vendor.test", "https%3A%2F%2Fcdn.vendor.test", "%253a", "\\/", "//https"]


def test_long_plain_text_with_sparse_escaped_urls_matches_the_reference(rw: Rewriter) -> None:
    """Mostly plain text with a few spots that are not: each spot's piece takes the full scan,
    the rest the two literal-led passes (spots closer than _SPOT_GAP share a piece)."""
    rng = random.Random(17)
    for _ in range(300):
        parts = [
            rng.choice(PLAIN_URLS) if rng.random() < 0.3 else rng.choice(PLAIN_TOKENS)
            for _ in range(rng.randint(300, 3000))
        ]
        for _ in range(rng.randint(1, 6)):
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(SPOTS))
        data = "".join(parts).encode()
        assert data.count(b"http") == data.lower().count(b"http")  # the spot path, not halving
        assert rw.rewrite_bytes(data) == reference(rw, data), data


def test_streamed_pieces_match_the_reference(rw: Rewriter) -> None:
    rng = random.Random(11)
    for _ in range(1500):
        data = generated(rng, rng.randint(20, 200))
        sr = rw.stream("v", "text/html", "utf-8")
        out, i = [], 0
        while i < len(data):
            step = rng.choice([1, 2, 7, 64, 300, 5000])
            out.append(sr.feed(data[i : i + step]))
            i += step
        out.append(sr.finish())
        assert b"".join(out) == reference(rw, data), data


def test_long_text_without_cut_bytes_uses_the_window_and_stays_exact(rw: Rewriter) -> None:
    """No byte to cut after for more than MAX_CUT_WAIT: the window logic takes over (bounded
    memory), then cuts resume; the output is still the reference's."""
    rng = random.Random(5)
    body = b"".join(
        rng.choice([b"https://www.vendor.test/", b"x", b"//cdn.vendor.test", b"%2F", b"aa"])
        for _ in range(MAX_CUT_WAIT)
    )
    data = b'<a href="' + body + b'">' + body + b" https://www.vendor.test/end"
    sr = rw.stream("v", "text/html", "utf-8")
    out = [sr.feed(data[i : i + 1000]) for i in range(0, len(data), 1000)]
    out.append(sr.finish())
    assert b"".join(out) == reference(rw, data)
