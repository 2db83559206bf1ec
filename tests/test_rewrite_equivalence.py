"""The fast rewriting paths give exactly the bytes of the reference URL pattern.

`Rewriter.rewrite_bytes` and the streamed URL stage use a possessive host pattern, two literal-led
passes for plain URLs, and cuts between pieces; the reference is one `url_pattern(HOST)` substitution
over the whole text. Generated text mixes every URL spelling, case, lookalike and boundary byte.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator

import pytest

from proxy import rewrite_headers
from proxy.hosts import HostMap, is_valid_hostname
from proxy.html_tags import HtmlTagStage
from proxy.rewrite import HOST, MAX_CUT_WAIT, Rewriter, url_pattern
from proxy.rewrite_headers import _ANY_HOST, _any_third_party, unknown_host_pattern

TOKENS = [
    "https", "http", "HTTP", "Https", "hTTp", "s", "h", "ttp", ":", "//", "/", "\\/", "\\",
    "%3A", "%3a", "%2F", "%2f", "%253A", "%253a", "%252F", "%252f", "%2",
    "www.vendor.test", "WWW.Vendor.TEST", "cdn.vendor.test", "a.wild.test", "B.WILD.test",
    "wild.test", "vendor.test", "evil.org", "www.vendor.test.evil.org", "notwww.vendor.test",
    "secret.wild.test", "a.deep.wild.test", "deep.wild.test", "a-b.wild.test", "a..wild.test",
    ".", "-", "_", "+", "8443", ":99", ":080", "0", '"', "<", ">", " ", "\n", "'", "=", "?", "#",
    "x", "abc", "<a href=\"", "\">", "\\u002F", "\\u002f", "\\U002F", "\\u002", "u002F", "\\u002E",
    "\\u", "\\\\u002F",
    # WebSocket schemes, their pieces and lookalikes (`news:`, `aws:`: a word before the scheme)
    "wss", "ws", "WSS", "Ws", "w", "news", "aws", "wss:", "ws:", "//wss",
]  # fmt: skip


@pytest.fixture(scope="module", params=["compiled", "python"])
def scan_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs on the compiled scans (proxy/_scan.pyx) and on the pure-Python
    passes a build without a C compiler uses."""
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "python":
            mp.setattr(rewrite_headers, "compiled_scan", None)
        else:
            assert rewrite_headers.compiled_scan is not None, "proxy/_scan.pyx is not built"
        yield request.param


@pytest.fixture(scope="module", params=["configured", "with never_proxy"])
def rw(request: pytest.FixtureRequest, scan_path: str) -> Rewriter:
    """Vendor hosts exact and wildcard; the second also keeps some of them out with never_proxy
    (the plain passes stop at configured hosts, and never_proxy is judged per match)."""
    hm = HostMap.build(
        public_scheme="http",
        public_host="proxy.localhost",
        public_port=8080,
        vendor_hosts=[("v", ["www.vendor.test", "cdn.vendor.test", "*.wild.test"])],
        never_proxy=(
            ["cdn.vendor.test", "secret.wild.test", "*.deep.wild.test"]
            if request.param == "with never_proxy"
            else []
        ),
    )
    return Rewriter(hm)


def reference(rw: Rewriter, data: bytes) -> bytes:
    pattern = re.compile(url_pattern(HOST), re.IGNORECASE)
    return pattern.sub(lambda m: rw._replace_url(m.group(0)), data)


# Whole URLs in every spelling, so that generated text puts each next to every neighbour.
URLS = [
    f"{scheme}{colon}{slash}{slash}{host}{port}"
    for scheme in ("https", "http", "HTTP", "wss", "ws", "WsS")
    for colon, slash in (
        (":", "/"),
        (":", "\\/"),
        ("%3A", "%2F"),
        ("%253a", "%252f"),
        (":", "%2F"),
        (":", "\\u002F"),
        (":", "\\u002f"),
    )
    for host in (
        "www.vendor.test",
        "Cdn.Vendor.test",
        "x.wild.test",
        "evil.org",
        "s.deep.wild.test",
    )
    for port in ("", ":8443")
] + [
    f"{rel}{host}"
    for rel in ("//", "\\/\\/", "\\u002F\\u002F", "\\u002f\\u002F")
    for host in ("www.vendor.test", "a.wild.test")
]


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
        fast_path_used += b"\\" not in data and b"%" not in data and b"HTTP" not in data.upper()
    assert fast_path_used > 1000  # the literal-led passes were really exercised


def test_long_text_cut_around_escaped_urls_and_capitals_matches_the_reference(
    rw: Rewriter,
) -> None:
    """Long text with every spelling (escaped, percent-encoded, `HTTP` in any case): the pieces
    cut around those spots, or the whole text when they are dense, give the reference's bytes."""
    rng = random.Random(3)
    for _ in range(300):
        data = generated(rng, rng.randint(300, 1500))
        assert len(data) > 2048
        assert rw.rewrite_bytes(data) == reference(rw, data)


PLAIN_URLS = [
    u for u in URLS if "%" not in u and "\\" not in u and "HTTP" not in u and "ws" not in u.lower()
]
PLAIN_TOKENS = [
    t
    for t in TOKENS
    if t.lower() not in {"http", "https"}
    and "%" not in t
    and "\\" not in t
    and "ws" not in t.lower()
]


def plain_parts(rng: random.Random) -> list[str]:
    """300 to 3,000 plain URLs and tokens: text the two literal-led passes handle alone."""
    return [
        rng.choice(PLAIN_URLS) if rng.random() < 0.3 else rng.choice(PLAIN_TOKENS)
        for _ in range(rng.randint(300, 3000))
    ]


SPOTS = [
    "wss://www.vendor.test",
    "ws://a.wild.test:8443",
    "WSS://cdn.vendor.test",
    "//wss://www.vendor.test",
    "news://www.vendor.test",
    "wss:\\/\\/a.wild.test",
    "ws%3A%2F%2Fcdn.vendor.test",
    "https:\\/\\/www.vendor.test",
    "https%3A%2F%2Fcdn.vendor.test",
    "%253a",
    "\\/",
    "//https",
    "https:\\u002F\\u002Fwww.vendor.test",
    "\\u002f\\u002Fa.wild.test",
    "\\U002F",
]


def test_long_plain_text_with_sparse_escaped_urls_matches_the_reference(rw: Rewriter) -> None:
    """Mostly plain text with a few spots that are not: each spot's piece takes the full scan,
    the rest the two literal-led passes (spots closer than _SPOT_GAP share a piece)."""
    rng = random.Random(17)
    for _ in range(300):
        parts = plain_parts(rng)
        for _ in range(rng.randint(1, 6)):
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(SPOTS))
        data = "".join(parts).encode()
        assert data.count(b"http") == data.lower().count(b"http")  # the spot path, not halving
        assert rw.rewrite_bytes(data) == reference(rw, data), data


def test_long_plain_text_with_sparse_capital_http_matches_the_reference(rw: Rewriter) -> None:
    """`HTTP`, `Https`… are spots too (the literal-led passes read only lower-case `http`):
    found where the lower-cased text has `http` and the text does not, each cut out for the
    full scan, escaped spots among them."""
    rng = random.Random(23)
    capitals = [
        "HTTPS://www.vendor.test",
        "Http://cdn.vendor.test:8443",
        "hTTp",
        "//HTTPS://x.wild.test",
    ]
    for _ in range(300):
        parts = plain_parts(rng)
        for _ in range(rng.randint(1, 6)):
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(capitals + SPOTS))
        data = "".join(parts).encode()
        assert rw.rewrite_bytes(data) == reference(rw, data), data


def test_plain_text_with_percent_signs_and_sparse_encoded_urls_matches_the_reference(
    rw: Rewriter,
) -> None:
    """Percent signs that encode nothing (`width:50%`, `100%2`) among sparse encoded URLs: with
    few of them each is looked at, with many (past _PERCENT_SCAN) the encoded forms are searched
    for instead; both must find every spot the one scan handles differently."""
    rng = random.Random(29)
    percent = ["width:50%", "100%", "%2", ":%", "%25", "50%3", "a%3Ab", "x:%2Fy", "%253Az"]
    encoded = [
        "https%3A%2F%2Fcdn.vendor.test",
        "http:%2F%2Fwww.vendor.test",
        "//cdn.vendor.test%3a8",
    ]
    for _ in range(300):
        parts = plain_parts(rng)
        for _ in range(rng.choice([1, 5, 40, 200])):
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(percent))
        for _ in range(rng.randint(0, 4)):
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(encoded))
        data = "".join(parts).encode()
        assert rw.rewrite_bytes(data) == reference(rw, data), data


def test_plain_text_with_backslashes_and_sparse_escaped_urls_matches_the_reference(
    rw: Rewriter,
) -> None:
    """Backslashes that escape no slash (a script's `\\n`, `\\d`, `\\u00e9`) among sparse escaped
    URLs: with few of them each is looked at, with many (past _BACKSLASH_SCAN) the escaped forms
    are searched for instead; both must find every spot the one scan handles differently."""
    rng = random.Random(31)
    backslashes = ["\\n", "\\d+", "\\\\", "\\u00e9", "\\u002", "\\u002E", "a\\", "\\U002F"]
    escaped = [
        "https:\\u002F\\u002Fcdn.vendor.test",
        "http:\\u002f\\u002fwww.vendor.test",
        "\\u002F\\u002Fa.wild.test",
        "https:\\/\\/www.vendor.test",
        "\\/\\/a.wild.test",
    ]
    for _ in range(300):
        parts = plain_parts(rng)
        for _ in range(rng.choice([1, 5, 40, 200])):
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(backslashes))
        for _ in range(rng.randint(0, 4)):
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(escaped))
        data = "".join(parts).encode()
        assert rw.rewrite_bytes(data) == reference(rw, data), data


def _tags_edited(rw: Rewriter, data: bytes) -> bytes:
    """`data` after the HTML tag stage alone, in one piece (links read as a browser reads them,
    `html_tags.edit_tag`): the generated `<a href="…` runs hold spellings it maps."""
    stage = HtmlTagStage(rw._edit_tag)
    return stage.feed(data) + stage.finish()


def test_streamed_pieces_match_the_reference(rw: Rewriter) -> None:
    """An HTML body fed in pieces of any size: the tag stage's one-piece output, then the URL
    reference."""
    rng = random.Random(11)
    edited = 0
    for _ in range(1500):
        data = generated(rng, rng.randint(20, 200))
        tags_edited = _tags_edited(rw, data)
        edited += tags_edited != data
        sr = rw.stream("v", "text/html", "utf-8")
        out, i = [], 0
        while i < len(data):
            step = rng.choice([1, 2, 7, 64, 300, 5000])
            out.append(sr.feed(data[i : i + step]))
            i += step
        out.append(sr.finish())
        assert b"".join(out) == reference(rw, tags_edited), data
    assert edited, "some generated links are read as a browser reads them"


def test_long_text_without_cut_bytes_uses_the_window_and_stays_exact(rw: Rewriter) -> None:
    """No byte to cut after for more than MAX_CUT_WAIT: the window logic takes over (bounded
    memory), then cuts resume; the output is still the reference's."""
    rng = random.Random(5)
    pieces = [b"https://www.vendor.test/", b"x", b"//cdn.vendor.test", b"%2F", b"aa"]
    pieces += [b"=\\u002F\\u002Fa.wild.test", b"https:\\u002F\\u002Fwww.vendor.test\\u002F"]
    body = b"".join(rng.choice(pieces) for _ in range(MAX_CUT_WAIT))
    data = b'<a href="' + body + b'">' + body + b" https://www.vendor.test/end"
    sr = rw.stream("v", "text/html", "utf-8")
    out = [sr.feed(data[i : i + 1000]) for i in range(0, len(data), 1000)]
    out.append(sr.finish())
    assert b"".join(out) == reference(rw, data)


# Unicode-escaped URLs of hosts every `rw` maps, and where they lie: after a cut byte, or inside a
# run with none for longer than MAX_CUT_WAIT (the stream's window then holds back the tail).
ESCAPED_URLS = [
    b"https:\\u002F\\u002Fwww.vendor.test\\u002Fp",
    b"http:\\u002f\\u002Fa.wild.test:8443\\u002fp",
    b"\\u002F\\u002Fwww.vendor.test:1\\u002F",
    b"wss:\\u002F\\u002Fwww.vendor.test\\u002Flive",
]
LEADS = {"after a cut byte": b'x"', "in a long run": b"x" * (MAX_CUT_WAIT + 100) + b"="}


@pytest.mark.parametrize("lead", LEADS)
def test_a_split_at_every_byte_of_an_escaped_url_keeps_it_whole(rw: Rewriter, lead: str) -> None:
    """A chunk boundary anywhere in `\\u002F\\u002Fhost` (inside an escape, between the two) must
    not stop the URL from being mapped: two chunks split at each byte, and one byte at a time."""
    for url in ESCAPED_URLS:
        data = LEADS[lead] + url + b'" tail'
        whole = reference(rw, data)
        assert b"vendor.test" not in whole and b"wild.test" not in whole  # really mapped
        assert rw.rewrite_bytes(data) == whole
        for i in range(len(LEADS[lead]) - 1, len(data) + 1):
            sr = rw.stream("v", "application/json", "utf-8")
            assert sr.feed(data[:i]) + sr.feed(data[i:]) + sr.finish() == whole, (url, i)
        sr = rw.stream("v", "application/json", "utf-8")
        out = [sr.feed(data[: len(LEADS[lead])])]
        out += [sr.feed(data[i : i + 1]) for i in range(len(LEADS[lead]), len(data))]
        assert b"".join(out) + sr.finish() == whole, url


# --------------------------------------------------------------------------- third-party hosts

HOST_TOKENS = [
    "www.vendor.test", "WWW.Vendor.TEST", "cdn.vendor.test", "vendor.test", "a.wild.test",
    "x.y.wild.test", "wild.test", ".wild.test", "b.wild.test.", "out.wild.test", "w.never.test",
    "proxy.localhost", "www-vendor-test.proxy.localhost", "proxy.localhost.", "x.proxy.localhost.evil",
    "tracker.example", "Tracker.Example.", "cdn.vendor.test.evil.org", "www.vendor.testing",
    "-bad.org", "a..b.org", "under_score.org", "1.2.3.4", "x", "",
]  # fmt: skip


def _third_party_of(hm: HostMap) -> Callable[[str], bool]:
    def third_party(host: str) -> bool:
        ours = host == hm.public_host or host.endswith("." + hm.public_host)
        return is_valid_hostname(host) and not ours and hm.vendor_for_host(host) is None

    return third_party


@pytest.mark.parametrize("never_proxy", [(), ("out.wild.test", "*.never.test")])
def test_third_party_precheck_matches_every_host_judged_one_by_one(
    never_proxy: tuple[str, ...], scan_path: str
) -> None:
    """`_any_third_party` collects the distinct hosts in one compiled pass, or skips known hosts
    inside the regex; the reference judges every `//host` of the page. Same answer on generated
    pages, with and without never_proxy."""
    hm = HostMap.build(
        public_scheme="http",
        public_host="proxy.localhost",
        public_port=8080,
        vendor_hosts=[
            ("v", ["www.vendor.test", "cdn.vendor.test", "*.wild.test"]),
            ("n", ["*.never.test"]),
        ],
        never_proxy=never_proxy,
    )
    third_party = _third_party_of(hm)
    unknown = unknown_host_pattern(hm)
    rng = random.Random(29)
    seen = {True: 0, False: 0}
    for _ in range(3000):
        page = "".join(
            rng.choice(["//", "https://", "http://", "///", " ", '"', "/", "a"])
            + rng.choice(HOST_TOKENS)
            + rng.choice(["", "/p", ":8443", ".", "_", "-", '"', " "])
            for _ in range(rng.randint(1, 12 if rng.random() < 0.8 else 40))
        ).encode()
        expected = any(
            third_party(h.decode().lower().rstrip(".")) for h in set(_ANY_HOST.findall(page))
        )
        assert _any_third_party(lambda: unknown, page, third_party) == expected, page
        seen[expected] += 1
    assert min(seen.values()) > 300  # both answers were really exercised
