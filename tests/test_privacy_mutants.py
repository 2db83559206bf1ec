"""From a mutation sweep of what reaches a vendor and what the browser gets back (P1 to P3).

Each test names the mutant it kills: a small change to proxy/privacy.py, proxy/assertion.py,
proxy/hosts.py or proxy/forward.py that no earlier test noticed (19 of 49 mutants survived the
suite; each of these tests failed with its mutant and passes without). The one marked DEFECT
failed on the code of its day, and the fix is in proxy/hosts.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from multidict import CIMultiDict

from proxy.assertion import Signer, ensure_keys
from proxy.hosts import HostMap
from proxy.privacy import outbound_headers, response_headers

HM = HostMap.build(
    public_scheme="https",
    public_host="proxy.lib.org",
    public_port=None,
    vendor_hosts=[("v", ["www.v.com", "*.v.com"])],
)
ORIGINS = {"v": "https://www.v.com"}


def _out(**headers: str) -> CIMultiDict[str]:
    return outbound_headers(CIMultiDict(headers), hosts=HM, vendor_origins=ORIGINS)


def test_an_origin_that_is_no_mapped_host_never_reaches_the_vendor() -> None:
    """kills: proxy/privacy.py:REQUEST_ALLOWLIST — `"origin"` added to the allowlist.

    A page of another site (the patron's webmail, a search engine) or an opaque origin that
    posts to a vendor host: the vendor must not learn which site the patron came from (P3),
    nor the proxy's own host; only a mapped host's Origin goes on, mapped back."""
    for foreign in ("https://mail.example", "null", "https://proxy.lib.org"):
        assert "Origin" not in _out(Origin=foreign), foreign
    assert _out(Origin="https://www-v-com.proxy.lib.org")["Origin"] == "https://www.v.com"


def test_several_ranges_ask_for_the_whole_document_without_conditions() -> None:
    """kills: proxy/privacy.py:outbound_headers — `out.popall("If-Range", None)` removed.

    When the proxy drops a multi-range Range (the whole document is asked for), the If-Range
    that only made sense with it goes too: the vendor gets a plain request for the document."""
    out = _out(Range="bytes=0-0,5-9", **{"If-Range": '"v1"'})
    assert "Range" not in out and "If-Range" not in out
    kept = _out(Range="bytes=0-99", **{"If-Range": '"v1"'})
    assert kept["Range"] == "bytes=0-99" and kept["If-Range"] == '"v1"'


def test_a_sibling_hosts_referer_does_not_take_the_origin_hosts_port() -> None:
    """kills: proxy/privacy.py:map_back_origin — `port = urlsplit(origin).port if
    urlsplit(origin).hostname == vendor_host else None` → `port = urlsplit(origin).port`.

    The origin's port belongs to the origin host only (as proxy.forward.upstream_url reaches
    the others on their default port): a page of the vendor's other host is named to the vendor
    as that host's origin, not as a host:port that exists nowhere."""
    origins = {"v": "https://www.v.com:8443"}
    out = outbound_headers(
        CIMultiDict(
            {
                "Referer": "https://cdn-v-com.proxy.lib.org/x?q=1",
                "Origin": "https://www-v-com.proxy.lib.org",
            }
        ),
        hosts=HM,
        vendor_origins=origins,
    )
    assert out["Referer"] == "https://cdn.v.com/"
    assert out["Origin"] == "https://www.v.com:8443"


def test_every_reporting_and_hop_by_hop_header_is_kept_from_the_browser() -> None:
    """kills: proxy/privacy.py:RESPONSE_DROP — any of `"speculation-rules"`, `"server-timing"`,
    `"expect-ct"`, `"proxy-authenticate"`, `"public-key-pins(-report-only)"`,
    `"x-xss-protection"`, `"clear-site-data"`, `"reporting-endpoints"`, `"report-to"`, `"nel"`,
    `"set-cookie2"` removed.

    A vendor's Speculation-Rules makes the browser prefetch hosts it names from the patron's
    own address before any click (P3); the reporting headers make it post page URLs to the
    vendor's endpoints directly; a vendor's Clear-Site-Data would wipe the library's own site
    data (the proxy sends its own); hop-by-hop ones are the proxy's connection's, not the
    vendor's. None of them reaches the browser, in any case of spelling."""
    dropped = [
        "Speculation-Rules",
        "Server-Timing",
        "Expect-CT",
        "Proxy-Authenticate",
        "Public-Key-Pins",
        "Public-Key-Pins-Report-Only",
        "X-XSS-Protection",
        "Clear-Site-Data",
        "Reporting-Endpoints",
        "Report-To",
        "NEL",
        "Set-Cookie2",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy-Authorization",
    ]
    upstream = [("Content-Type", "text/html")] + [(n, "x") for n in dropped]
    upstream += [(n.upper(), "x") for n in dropped]
    assert list(response_headers(upstream).items()) == [("Content-Type", "text/html")]


def test_no_spelling_of_a_password_challenge_reaches_the_browser() -> None:
    """kills: proxy/privacy.py:_PROMPTING — `kerberos` dropped from the prompting schemes (and
    the `(?i)` flag, or the `(?:^|,)[\\t ]*` start of a later challenge, taken out).

    Any challenge a browser answers with a name-and-password dialog (or the machine's own
    Windows or Kerberos credentials) on a vendor's mapped host is replaced by the sign-in form's:
    a patron would type their card and PIN into it (P2)."""
    from proxy.privacy import no_password_prompt

    for sent in (
        ['Kerberos realm="V"'],
        ['basic realm="V"'],
        ["NEGOTIATE"],
        ['Bearer realm="api",\tntlm'],
        ['Bearer realm="api", DIGEST realm="V"'],
    ):
        headers = CIMultiDict([("WWW-Authenticate", c) for c in sent])
        no_password_prompt(headers)
        assert headers.getall("WWW-Authenticate") == ["Form"], sent


def test_only_a_web_page_of_a_mapped_host_is_named_to_the_vendor() -> None:
    """kills: proxy/privacy.py:map_back_origin — the `parts.scheme not in ("http", "https")`
    refusal removed.

    A Referer or Origin that is no web page (another scheme spelling a mapped host's name) is
    not turned into a vendor origin: it is dropped, as anything the proxy cannot place."""
    for scheme in ("ftp", "ws", "file", "android-app"):
        out = _out(
            Referer=f"{scheme}://www-v-com.proxy.lib.org/p",
            Origin=f"{scheme}://www-v-com.proxy.lib.org",
        )
        assert "Referer" not in out and "Origin" not in out, scheme


def _signer(tmp_path: Path) -> Signer:
    return Signer(
        ensure_keys(tmp_path / "keys"),
        issuer="https://proxy.lib.org",
        scope="lib.org",
        pairwise_secret=b"s" * 32,
    )


def _claims(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


def test_a_vendor_never_gets_an_assertion_about_to_expire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kills: proxy/assertion.py:Signer.assertion — `REFRESH_MARGIN_S < hit[1] - now` →
    `0 < hit[1] - now`.

    A cached assertion is reused only while more than a minute is left of it: one handed out
    with seconds to live would expire on its way, and the patron would be refused mid-page."""
    import proxy.assertion as assertion

    s = _signer(tmp_path)

    def common() -> str:
        return s.assertion(
            cache_key="c", audience="v", patron_key="p", vendor_id="v", pseudonymous=False
        )

    first = common()
    exp = _claims(first)["exp"]
    assert isinstance(exp, int)
    monkeypatch.setattr(time, "time", lambda: exp - assertion.REFRESH_MARGIN_S + 1)
    again = common()
    assert again != first
    assert (
        _claims(again)["exp"]
        == exp - assertion.REFRESH_MARGIN_S + 1 + assertion.ASSERTION_LIFETIME_S
    )


def test_one_sessions_assertion_for_one_vendor_is_never_sent_to_another(tmp_path: Path) -> None:
    """kills: proxy/assertion.py:Signer.assertion — the cache key `(cache_key, vendor_id,
    pseudonymous)` → `(cache_key, "", pseudonymous)` (both the lookup and the store).

    Each vendor gets its own assertion, for its own audience: one vendor's token replayed at
    another would carry the wrong `aud` and the same `jti` at both, which links the visits (P4)."""
    s = _signer(tmp_path)
    a = s.assertion(
        cache_key="c", audience="ebsco", patron_key="p", vendor_id="ebsco", pseudonymous=False
    )
    b = s.assertion(
        cache_key="c", audience="gale", patron_key="p", vendor_id="gale", pseudonymous=False
    )
    assert _claims(a)["aud"] == "ebsco" and _claims(b)["aud"] == "gale"
    assert _claims(a)["jti"] != _claims(b)["jti"]


def test_the_sweep_forgets_an_assertion_as_soon_as_it_would_not_be_reused(tmp_path: Path) -> None:
    """kills: proxy/assertion.py:Signer.sweep — `v[1] - now > REFRESH_MARGIN_S` → `> 0`.

    The cache pairs a session with the vendors it used (P5): an assertion is kept only while it
    may still be handed out again, not until its expiry, a minute longer than needed."""
    import proxy.assertion as assertion

    s = _signer(tmp_path)
    token = s.assertion(
        cache_key="c", audience="v", patron_key="p", vendor_id="v", pseudonymous=False
    )
    exp = _claims(token)["exp"]
    assert isinstance(exp, int)
    s.sweep(exp - assertion.REFRESH_MARGIN_S - 1)
    assert len(s._cache) == 1  # still reusable: kept
    s.sweep(exp - assertion.REFRESH_MARGIN_S)
    assert s._cache == {}


def test_host_headers_from_anyone_take_bounded_memory() -> None:
    """kills: proxy/hosts.py:HostMap.__post_init__ — `lru_cache(maxsize=4096)` →
    `lru_cache(maxsize=None)`.

    Anyone on the internet chooses the Host header of a request: a flood of made-up ones must
    not grow the proxy's memory without end (an outage for every patron, P7); the answers stay
    right for hosts that left the cache."""
    hm = HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=None,
        vendor_hosts=[("v", ["www.v.com"])],
    )
    assert hm.vendor_host_from_request("www-v-com.proxy.lib.org") == "www.v.com"
    for i in range(5000):
        assert hm.vendor_host_from_request(f"x{i}.proxy.lib.org") is None
    assert hm._classify.cache_info().currsize <= 4096  # type: ignore[attr-defined]
    assert hm.vendor_host_from_request("www-v-com.proxy.lib.org") == "www.v.com"


def test_the_origins_port_is_used_for_the_origin_host_only() -> None:
    """kills: proxy/forward.py:upstream_url — `port = origin_port if vendor_host == origin_host
    else None` → `port = origin_port`.

    A vendor whose origin has a port (`https://www.v.com:8443`) serves its other hosts (its CDN,
    its sign-on host) on their default port: a request for a page there goes to that host, not to
    a port of it nobody listens on."""
    from types import SimpleNamespace

    from proxy.forward import upstream_url

    vendor = SimpleNamespace(origin_parts=("https", "www.v.com", 8443))
    assert str(upstream_url(vendor, "www.v.com", "/a?b=1")) == "https://www.v.com:8443/a?b=1"  # type: ignore[arg-type]
    assert str(upstream_url(vendor, "cdn.v.com", "/img.png")) == "https://cdn.v.com/img.png"  # type: ignore[arg-type]


def test_signing_also_forgets_the_expired_assertions_of_other_sessions(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kills: proxy/assertion.py:Signer.assertion — `len(self._cache) >= _CACHE_MAX or now -
    self._swept >= CACHE_SWEEP_S` → `len(self._cache) >= _CACHE_MAX`.

    A session that ended by timeout leaves its cached assertion (which session used which
    vendor) behind: the next signing a sweep interval later drops it, even with no background
    sweep running (P5: nothing kept past its use)."""
    import proxy.assertion as assertion

    s = _signer(tmp_path)
    t0 = 1_900_000_000.0
    monkeypatch.setattr(time, "time", lambda: t0)
    s._swept = t0
    s.assertion(cache_key="gone", audience="v", patron_key="p", vendor_id="v", pseudonymous=False)
    later = t0 + assertion.ASSERTION_LIFETIME_S + assertion.CACHE_SWEEP_S
    monkeypatch.setattr(time, "time", lambda: later)
    s.assertion(cache_key="new", audience="v", patron_key="q", vendor_id="v", pseudonymous=False)
    assert [k[0] for k in s._cache] == ["new"]


def test_a_look_alike_host_header_is_no_vendor_host() -> None:
    """DEFECT, fixed (proxy/hosts.py:HostMap.split_request_host): the header was lower-cased
    *before* the `isascii()` refusal, so the Kelvin sign U+212A, which `str.lower()` turns into ASCII
    `k`, gets through: `www-\u212ab-com.proxy.lib.org` is served as the vendor host
    `www.kb.com`, although the code's own comment says such look-alikes are refused outright.
    (Found while checking the mutant "`not host_header.isascii()` removed", which is
    equivalent for every other character: the hostname and port checks refuse them.)

    A Host header with a look-alike letter names no DNS host: it is refused before anything
    is fetched, not served as the vendor host it resembles (P7). Fix: test `isascii()` on the
    header before `.lower()`."""
    hm = HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=None,
        vendor_hosts=[("kb", ["www.kb.com"])],
    )
    assert hm.vendor_host_from_request("www-kb-com.proxy.lib.org") == "www.kb.com"
    assert hm.split_request_host("www-\u212ab-com.proxy.lib.org") is None
    assert hm.vendor_host_from_request("www-\u212ab-com.proxy.lib.org") is None


def test_the_proxys_own_host_on_another_port_is_not_its_own() -> None:
    """kills: proxy/hosts.py:HostMap._classify_host — `and self._port_ok(parts[1])` dropped
    from the own-host test.

    Only the public URL's host and port are the proxy's own pages: the same name on another
    port (another service on that machine, or a forged Host header) is neither the proxy's
    pages nor a page that counts as the proxy's for the cookie rules."""
    hm = HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=None,
        vendor_hosts=[("v", ["www.v.com"])],
    )
    assert hm.is_public_host("proxy.lib.org") and hm.is_public_host("proxy.lib.org:443")
    assert not hm.is_public_host("proxy.lib.org:8443")
    assert not hm.is_public_host("proxy.lib.org:80")


async def test_an_upload_one_byte_over_the_vendors_limit_never_reaches_it(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:Upstream._request_body — `length > limit` → `length > limit + 1`.

    The library's per-vendor upload limit is exact: a body of `max_upload_bytes` goes on, one
    byte more is refused (413) before any of it is sent, so nothing over the limit ever leaves
    the proxy for the vendor."""
    from tests.canary import CANARY
    from tests.harness import RecordingVendor, ldap_directory, vendor_toml, write_config

    vendor: RecordingVendor = await vendor_factory("www.upload-db.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"up": vendor_toml("up", vendor, extra="\n[limits]\nmax_upload_bytes = 1000\n")},
    )
    driver = await proxy_factory(cfg)
    await driver.login(CANARY.uid, CANARY.password)
    kind = {"Content-Type": "application/octet-stream"}
    r = await driver.get_vendor(
        vendor.host, "/upload", method="POST", data=b"x" * 1001, headers=kind
    )
    assert r.status == 413
    assert not [q for q in vendor.requests if q.method == "POST"]
    r = await driver.get_vendor(
        vendor.host, "/upload", method="POST", data=b"x" * 1000, headers=kind
    )
    assert r.status == 200
    assert [len(q.body) for q in vendor.requests if q.method == "POST"] == [1000]


async def test_a_compressed_form_is_mapped_back_like_any_other(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """kills: proxy/forward.py:Upstream._request_body — on the decoded (Content-Encoding) path,
    `body = rewriter.unmap_body(body, content_type)` removed.

    A vendor script that gzips its form or JSON post (CompressionStream) must not hand the
    vendor the proxy's mapped URLs of the patron's pages: the vendor gets its own URLs back, as
    from an uncompressed post, and never the proxy's host (which names the library)."""
    import gzip

    from tests.canary import CANARY
    from tests.harness import RecordingVendor, ldap_directory, vendor_toml, write_config

    vendor: RecordingVendor = await vendor_factory("www.packed-db.test")
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"packed": vendor_toml("packed", vendor)},
    )
    driver = await proxy_factory(cfg)
    await driver.login(CANARY.uid, CANARY.password)
    mapped = driver.mapped(vendor.host)
    for kind in ("application/json", "application/x-www-form-urlencoded"):
        raw = f'{{"back": "http://{mapped}/results?q=1"}}'.encode()
        r = await driver.get_vendor(
            vendor.host,
            "/save",
            method="POST",
            data=gzip.compress(raw),
            headers={"Content-Type": kind, "Content-Encoding": "gzip"},
        )
        assert r.status == 200, r.status
        got = [x for x in vendor.requests if x.method == "POST"][-1].body
        assert mapped.split(":")[0].encode() not in got, (kind, got)
        assert f"http://{vendor.host}/results?q=1".encode() in got, (kind, got)


def test_an_underscore_spelling_of_an_allowed_header_is_not_allowed() -> None:
    """kills: proxy/privacy.py:outbound_headers — `lname in REQUEST_ALLOWLIST` →
    `lname.replace("_", "-") in REQUEST_ALLOWLIST`.

    The allowlist names exact header names. `Content_Length` or `User_Agent` from a client is
    another header, which servers that fold `_` into `-` (CGI, WSGI, some nginx set-ups) read as
    the real one: forwarded, a second, unframed Content-Length would reach the vendor beside the
    one the proxy writes (a desync), and a user-agent the patron's browser did not send."""
    out = _out(**{"Content_Length": "5", "User_Agent": "tracker-id-123", "accept_language": "x"})
    assert dict(out) == {}
    assert dict(_out(**{"User-Agent": "UA"})) == {"User-Agent": "UA"}
