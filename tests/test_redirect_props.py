"""Property tests: redirect validation and Host parsing against generated URLs and Host headers.

The properties are what a phisher would need to break: a redirect the proxy issues always lands on
a mapped vendor host of this proxy, the host it lands on is the one the input named, and a Host
header is accepted only when it spells a mapped host (and port) exactly.
"""

from __future__ import annotations

from urllib.parse import urlsplit

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
