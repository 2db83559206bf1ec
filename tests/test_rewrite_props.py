"""Property tests for URL rewriting: host mapping round-trips, chunking never changes output."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from proxy.hosts import HostMap, is_valid_hostname, map_label, unmap_label
from proxy.rewrite import Rewriter

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
LABEL = st.one_of(
    st.sampled_from(ALNUM),
    st.builds(
        lambda a, mid, b: a + mid + b,
        st.sampled_from(ALNUM),
        st.text(alphabet=ALNUM + "-", max_size=12),
        st.sampled_from(ALNUM),
    ),
)
HOSTNAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join).filter(is_valid_hostname)
# Vendor hosts under the configured wildcard `*.vendor-one.com`.
VENDOR_HOST = st.lists(LABEL, min_size=1, max_size=3).map(
    lambda ls: ".".join([*ls, "vendor-one.com"])
)
OTHER_HOST = HOSTNAME.filter(
    lambda h: "vendor-one.com" not in h and not h.endswith("proxy.lib.org")
)
PATH = st.lists(st.text(alphabet="abcXYZ019._~-", max_size=8), max_size=3).map(
    lambda segments: "".join("/" + s for s in segments)
)
# Text between URLs: markup-ish characters, including the ones URLs are made of.
FILLER = st.text(alphabet=" <>=\"'/:.%-\\abhpstwxu02F\n", max_size=20)

FORMS = (
    "https://{h}{p}",
    "http://{h}{p}",
    "//{h}{p}",
    "https%3A%2F%2F{h}{q}",
    "https:\\/\\/{h}{j}",
    "https:\\u002F\\u002F{h}{u}",
    "\\u002F\\u002F{h}{u}",
    "\\/\\/{h}{j}",
    "wss://{h}{p}",
    "ws://{h}{p}",
    "wss%3A%2F%2F{h}{q}",
    "wss:\\/\\/{h}{j}",
    "wss:\\u002F\\u002F{h}{u}",
)


def _spell(form: str, host: str, path: str) -> str:
    """One URL in `form`, its path's slashes spelled as the form spells them."""
    return form.format(
        h=host,
        p=path,
        q=path.replace("/", "%2F"),
        j=path.replace("/", "\\/"),
        u=path.replace("/", "\\u002F"),
    )


def _host_map(port: int | None = None) -> HostMap:
    return HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=port,
        vendor_hosts=[("one", ["*.vendor-one.com", "vendor-one.com"])],
    )


def _rewriter(port: int | None = None) -> Rewriter:
    return Rewriter(_host_map(port), vendor_origins={"one": "https://vendor-one.com"})


@st.composite
def documents(draw: st.DrawFn, forms: tuple[str, ...] = FORMS) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        parts.append(draw(FILLER))
        host = draw(st.one_of(VENDOR_HOST, OTHER_HOST))
        path = draw(PATH)
        parts.append(_spell(draw(st.sampled_from(forms)), host, path))
        parts.append(draw(st.sampled_from(["", " ", '"', "'", ")", "\n"])))
    return "".join(parts)


@given(HOSTNAME)
def test_map_label_round_trips(host: str) -> None:
    assert unmap_label(map_label(host)) == host


@given(VENDOR_HOST)
def test_a_mapped_url_names_its_vendor_host(host: str) -> None:
    hm = _host_map(8443)
    out = _rewriter(8443).rewrite_text(f"https://{host}/x")
    mapped_netloc = out.removeprefix("https://").removesuffix("/x")
    assert hm.vendor_host_from_request(mapped_netloc) == host


@given(OTHER_HOST, PATH)
def test_unconfigured_urls_are_never_rewritten(host: str, path: str) -> None:
    text = f'<a href="https://{host}{path}"> //{host}{path}'
    assert _rewriter().rewrite_text(text) == text


@given(VENDOR_HOST, PATH, st.sampled_from(FORMS), st.sampled_from(['"', "'", " ", "(", "="]))
def test_a_vendor_url_in_every_spelling_is_mapped_and_keeps_it(
    host: str, path: str, form: str, quote: str
) -> None:
    mapped = _host_map().to_mapped(host)
    text = quote + _spell(form, host, path) + quote
    secure = form.replace("http:", "https:").replace("ws:", "wss:")  # the public scheme's
    expected = quote + _spell(secure, mapped, path) + quote
    assert _rewriter().rewrite_text(text) == expected


# Only https, wss and protocol-relative forms round-trip: `http://` comes back as the origin's
# https, `ws://` as its wss. So no filler may put `http:` or `ws:` before a protocol-relative
# form either (hypothesis found `http:` + `//host`).
@given(documents(forms=tuple(f for f in FORMS if not f.startswith(("http:", "ws:")))))
def test_unmap_undoes_rewrite(doc: str) -> None:
    assume("http:" not in doc.lower() and "ws:" not in doc.lower())
    rw = _rewriter()
    assert rw.unmap_url(rw.rewrite_text(doc)) == doc


@given(documents())
def test_no_vendor_url_survives_rewriting(doc: str) -> None:
    out = _rewriter().rewrite_text(doc)
    rewritten_again = _rewriter().rewrite_text(out)
    assert rewritten_again == out  # nothing left that the rewriter would still map


@settings(max_examples=200)
@given(documents(), st.lists(st.integers(0, 400), max_size=12))
def test_random_chunkings_never_change_the_output(doc: str, cuts: list[int]) -> None:
    rw = _rewriter(8443)
    data = doc.encode()
    whole = rw.rewrite_body("one", "text/html", "utf-8", data)
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    sr = rw.stream("one", "text/html", "utf-8")
    assert b"".join(sr.feed(c) for c in chunks) + sr.finish() == whole


@settings(max_examples=100)
@given(
    documents(), st.lists(st.integers(0, 800), max_size=8), st.sampled_from(["utf-16", "utf-16be"])
)
def test_random_chunkings_of_wide_charsets_never_change_the_output(
    doc: str, cuts: list[int], charset: str
) -> None:
    rw = _rewriter()
    data = doc.encode(charset)
    whole = rw.rewrite_body("one", "text/html", charset, data)
    assert whole.decode(charset) == rw.rewrite_text(doc)
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    sr = rw.stream("one", "text/html", charset)
    assert b"".join(sr.feed(c) for c in chunks) + sr.finish() == whole


TAG_PIECES = st.sampled_from(
    [
        "<script ", "<LINK ", "<meta ", "<p>", "<", ">", "/>", ' src="', " href=/", '"', "'",
        " integrity=sha384-x ", ' http-equiv="Content-Security-Policy" ', " content='",
        "script-src www.vendor-one.com *.vendor-one.com 'self'", "https://www.vendor-one.com/a",
        "//evil.org/x", "\ufeff", "\xff",
    ]
)  # fmt: skip


@settings(max_examples=200)
@given(
    st.lists(TAG_PIECES, max_size=30).map("".join),
    st.lists(st.integers(0, 400), max_size=12),
    st.sampled_from(["utf-8", "utf-16-le"]),
)
def test_random_chunkings_of_tags_and_marks_never_change_the_output(
    doc: str, cuts: list[int], codec: str
) -> None:
    """The HTML tag stage (integrity, meta CSP) and the byte-order-mark sniff hold back only what
    they must: any chunking gives the bytes of the whole body."""
    rw = _rewriter(8443)
    data = doc.encode(codec)
    whole = rw.rewrite_body("one", "text/html", None, data)
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    sr = rw.stream("one", "text/html", None)
    assert b"".join(sr.feed(c) for c in chunks) + sr.finish() == whole
