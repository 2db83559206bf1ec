"""Property tests: redirect validation and Host parsing against generated URLs and Host headers.

The properties are what a phisher would need to break: a redirect the proxy issues always lands on
a mapped vendor host of this proxy, the host it lands on is the one the input named, and a Host
header is accepted only when it spells a mapped host (and port) exactly.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.hosts import HostMap, is_valid_hostname, map_label
from proxy.redirects import safe_target

HOSTS = HostMap.build(
    public_scheme="https",
    public_host="proxy.lib.org",
    public_port=None,
    vendor_hosts=[
        ("one", ["www.vendor-one.com", "*.vendor-one.com"]),
        ("two", ["search.db-two.org"]),
    ],
    never_proxy=["ads.vendor-one.com"],
)
VENDOR_HOSTS = ("www.vendor-one.com", "search.db-two.org", "a.b.vendor-one.com")

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
LABEL = st.text(alphabet=ALNUM + "-", min_size=1, max_size=10).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)
HOSTNAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join).filter(is_valid_hostname)
OUR_HOST = st.one_of(
    st.sampled_from(VENDOR_HOSTS),
    st.lists(LABEL, min_size=1, max_size=2).map(lambda ls: ".".join([*ls, "vendor-one.com"])),
).filter(lambda h: is_valid_hostname(h) and HOSTS.vendor_for_host(h) is not None)
# Characters that URL tricks are made of, plus a few ordinary ones.
TRICKY = st.text(
    alphabet="/\\@:%#?.&=;,[]\t\n\r\x00 -_~abcxyzABC019\u3002\uff0e\u0430\u2028",
    max_size=30,
)
SCHEME = st.sampled_from(
    ["http://", "https://", "HTTP://", "//", "", "javascript:", "http:/", "http:\\\\", "ftp://"]
)


def _landing_host(target: str) -> str | None:
    """The vendor host a redirect target sends the browser to (via the proxy), or None."""
    parts = urlsplit(target)
    return HOSTS.vendor_host_from_request(parts.netloc)


@settings(max_examples=300, deadline=None)
@given(scheme=SCHEME, before=TRICKY, host=st.one_of(OUR_HOST, HOSTNAME), after=TRICKY)
@example(scheme="http://", before="", host="www.vendor-one.com", after="@evil.com/")
@example(scheme="http://", before="evil.com\\@", host="www.vendor-one.com", after="")
@example(scheme="http://", before="evil.com#@", host="www.vendor-one.com", after="")
def test_every_redirect_lands_on_a_mapped_vendor_host(
    scheme: str, before: str, host: str, after: str
) -> None:
    """Whatever the input, the target is None or an https URL on a mapped vendor host."""
    target = safe_target(scheme + before + host + after, HOSTS)
    if target is None:
        return
    parts = urlsplit(target)
    assert parts.scheme == "https"
    landing = _landing_host(target)
    assert landing is not None and HOSTS.vendor_for_host(landing) is not None
    assert parts.netloc == HOSTS.to_mapped(landing)
    assert not any(c in target for c in "\\\t\r\n\x00 @") and target.isascii()


@settings(max_examples=400, deadline=None)
@given(scheme=SCHEME, before=TRICKY, host=st.one_of(OUR_HOST, HOSTNAME), after=TRICKY)
def test_the_landing_host_is_the_one_the_input_named(
    scheme: str, before: str, host: str, after: str
) -> None:
    """No parser disagreement turns one named host into another: the input's own host (as any
    URL parser reads it, once the characters parsers disagree on are refused) is where it lands."""
    url = scheme + before + host + after
    target = safe_target(url, HOSTS)
    if target is None:
        return
    named = (urlsplit(url).hostname or "").lower()
    landing = _landing_host(target)
    assert landing is not None
    assert named in (landing, HOSTS.to_mapped(landing).split(":")[0])


@settings(max_examples=300, deadline=None)
@given(host=OUR_HOST, path=st.text(alphabet=ALNUM + "/._~-%=&?", max_size=40))
def test_vendor_urls_are_accepted_and_keep_their_path(host: str, path: str) -> None:
    """The control property: every real starting point is accepted and keeps path and query."""
    target = safe_target(f"https://{host}/{path}", HOSTS)
    assert target is not None
    assert _landing_host(target) == host
    original = urlsplit(f"https://{host}/{path}")
    got = urlsplit(target)
    assert (got.path, got.query) == (original.path, original.query)


@settings(max_examples=300, deadline=None)
@given(host=HOSTNAME.filter(lambda h: HOSTS.vendor_for_host(h) is None))
def test_unconfigured_hosts_are_refused_in_every_form(host: str) -> None:
    for form in (f"https://{host}/", f"//{host}/", f"https://{map_label(host)}.proxy.lib.org/"):
        assert safe_target(form, HOSTS) is None, form


@settings(max_examples=300, deadline=None)
@given(header=st.text(alphabet=ALNUM + ".-:[]@/\\ %\u212a\u0660\t", max_size=60))
def test_host_header_is_ours_only_when_spelled_exactly(header: str) -> None:
    """A Host header maps to a vendor only if it is exactly `<label>.proxy.lib.org[:443]`."""
    vendor = HOSTS.vendor_host_from_request(header)
    if vendor is None:
        return
    assert HOSTS.vendor_for_host(vendor) is not None
    spelled = header.strip().lower()
    assert spelled in (
        f"{map_label(vendor)}.proxy.lib.org",
        f"{map_label(vendor)}.proxy.lib.org:443",
    )


@settings(max_examples=300, deadline=None)
@given(host=OUR_HOST, port=st.integers(min_value=0, max_value=70000))
def test_only_the_public_port_is_accepted(host: str, port: int) -> None:
    mapped = f"{map_label(host)}.proxy.lib.org"
    got = HOSTS.vendor_host_from_request(f"{mapped}:{port}")
    assert (got is not None) == (port == 443)


# Path, query and fragment text a deep link may hold: non-ASCII letters (encoded as a browser
# does), spaces, and the characters host tricks are made of (`//evil`, `@`, `\`, `#`, `?`).
TAIL = st.text(
    alphabet='/\\@:%#?.&=;~ "<>`abcxyz019\u00e9\u00fa\u3002\uff0e\u0430\u2028\U0001f600',
    max_size=30,
)


@settings(max_examples=400, deadline=None)
@given(host=OUR_HOST, sep=st.sampled_from(["/", "?", "#", "/#", "//"]), tail=TAIL)
@example(host="www.vendor-one.com", sep="//", tail="evil.test/@x#//evil.test")
@example(host="www.vendor-one.com", sep="/", tail="caf\u00e9#/\\evil.test")
@example(host="www.vendor-one.com", sep="#", tail="//evil.test@x")
@example(host="www.vendor-one.com", sep="?", tail="q=\u00e9&u=//evil.test/@x")
def test_a_deep_links_path_and_fragment_never_move_the_landing_host(
    host: str, sep: str, tail: str
) -> None:
    """Whatever a path, query or fragment holds (non-ASCII letters now encoded rather than
    refused, `//evil`, `@`, `\\`), a target safe_target returns lands on the mapped host the
    input named, is ASCII, and holds nothing a browser would read as a new host or strip."""
    target = safe_target(f"https://{host}{sep}{tail}", HOSTS)
    if target is None:
        assert "\\" in tail, "only a backslash refuses an address on a configured host"
        return
    parts = urlsplit(target)
    assert parts.netloc == HOSTS.to_mapped(host)
    assert _landing_host(target) == host
    assert target.isascii()
    assert not any(c in target for c in '\\\t\r\n\x00 "<>`')


@settings(max_examples=300, deadline=None)
@given(host=OUR_HOST, tail=TAIL)
def test_every_target_lands_on_a_mapped_vendor_host(host: str, tail: str) -> None:
    """The same, with the tail glued on anywhere after the scheme (into the host too): a
    target, if any, is on the mapped form of a configured vendor host, and nowhere else."""
    for url in (f"https://{host}{tail}", f"https://{tail}{host}/", f"https://{host}/{tail}"):
        target = safe_target(url, HOSTS)
        if target is None:
            continue
        landing = _landing_host(target)
        assert landing is not None and HOSTS.vendor_for_host(landing) is not None, url
        assert urlsplit(target).netloc == HOSTS.to_mapped(landing), url


@pytest.mark.parametrize(
    "url",
    [
        "https://www.vendor-\u03bfne.com/",  # Greek omicron
        "https://www.vendor-one.com\u3002evil.test/",
        "https://www\uff0evendor-one\uff0ecom/",
        "https://www.vendor-one.com%2f@evil.test/",
        "https://www.vendor-one.com%2e/",
        "https://evil.test@www.vendor-one.com/",
        "https://www.vendor-one.com\\@evil.test/",
        "https://www.vendor-one.com/x\\y",
        "https://www.vendor-one.com\t/",
        "https://www.vendor-one.com /",
        "https://www.vendor-one.com/\x00",
        " https://www.vendor-one.com/",
        "javascript://www.vendor-one.com/%0aalert(1)",
        "//www.vendor-one.com/",
        "https:\\\\www.vendor-one.com/",
    ],
)
def test_the_host_is_checked_as_strictly_as_ever(url: str) -> None:
    """Encoding what a browser encodes is for the path, query and fragment only: raw non-ASCII,
    `%`, `@`, `\\`, space or a control character in the host is refused (homographs, parser
    disagreements), and so is `\\` anywhere (browsers read it as `/`)."""
    assert safe_target(url, HOSTS) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.vendor-one.com/search?q=caf\u00e9", "/search?q=caf%C3%A9"),
        ("https://www.vendor-one.com/b\u00fasqueda?q=a b", "/b%C3%BAsqueda?q=a%20b"),
        ("https://www.vendor-one.com/s?q=\U0001f600", "/s?q=%F0%9F%98%80"),
        ('https://www.vendor-one.com/s?q="<x>"', "/s?q=%22%3Cx%3E%22"),
        ("https://www.vendor-one.com/d%3B1?t=a%2Fb&k=%7E&p=100%", "/d%3B1?t=a%2Fb&k=%7E&p=100%"),
        ("https://www.vendor-one.com/app/#/article/42?tab=full", "/app/#/article/42?tab=full"),
        ("https://www.vendor-one.com#/home", "/#/home"),
        ("https://www.vendor-one.com/a#caf\u00e9 x", "/a#caf%C3%A9%20x"),
        ("https://www.vendor-one.com/?&db=a9h", "/?&db=a9h"),
    ],
)
def test_path_query_and_fragment_are_encoded_as_a_browser_would(url: str, expected: str) -> None:
    """Non-ASCII as UTF-8 escapes, space and quotes escaped; the link's own escapes (a lone `%`
    too) and its fragment kept as written."""
    assert safe_target(url, HOSTS) == "https://www-vendor--one-com.proxy.lib.org" + expected


def test_an_address_a_browser_could_not_ask_for_on_one_request_line_is_refused() -> None:
    """Nothing is cut: an address whose request line (`GET <path?query> HTTP/1.1`) would pass
    the server's limit is refused whole, and one exactly at the limit is taken."""
    room = 8190 - len("GET /? HTTP/1.1")
    fits = "https://www.vendor-one.com/?" + "a" * room
    assert safe_target(fits, HOSTS) is not None
    assert safe_target(fits + "a", HOSTS) is None
    assert safe_target(fits + "#" + "f" * 100, HOSTS) is not None  # the fragment stays home
    # Encoding counts: one `é` becomes six characters on the line.
    assert safe_target(fits[:-1] + "\u00e9", HOSTS) is None
    assert safe_target(fits, HOSTS, max_line=1024) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://\u212a.vendor-one.com/",  # KELVIN SIGN, which str.lower() makes an ASCII "k"
        "https://www.vendor-one.\u212aom/",
        "https://WWW.VENDOR-ONE.COM\u0130/",  # dotted capital I: lower() gives "i" + U+0307
        "https://www-vendor-one-com.proxy.lib.org\u212a/",
    ],
)
def test_a_host_that_is_ascii_only_once_lower_cased_is_refused(url: str) -> None:
    """From a mutation sweep of redirects: the host was lower-cased before its ASCII check, so
    a starting point spelt with the Kelvin sign (U+212A), which `str.lower()` turns into `k`,
    was accepted as the ASCII host, against the promise "ASCII only": a raw non-ASCII host is
    a homograph trick and is refused however it lower-cases (as `HostMap.split_request_host`
    does for the Host header)."""
    assert safe_target(url, HOSTS) is None
