"""The request-header allowlist and Referer/Origin mapping."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from proxy.hosts import HostMap
from proxy.privacy import no_password_prompt, outbound_headers, response_headers

HM = HostMap.build(
    public_scheme="https",
    public_host="proxy.lib.org",
    public_port=None,
    vendor_hosts=[("v", ["www.v.com"])],
)


def test_only_allowlisted_headers_leave() -> None:
    incoming = CIMultiDict(
        {
            "Accept": "text/html",
            "User-Agent": "UA",
            "X-Forwarded-For": "1.2.3.4",
            "x_forwarded_for": "1.2.3.4",
            "X-FORWARDED-HOST": "h",
            "Forwarded": "for=1.2.3.4",
            "X-Real-IP": "1.2.3.4",
            "True-Client-IP": "1.2.3.4",
            "Via": "1.1 x",
            "Cookie": "weston_session=abc",
            "Authorization": "Basic x",
            "X-Patron-Assertion": "forged",
            "Sec-CH-UA": "x",
            "DNT": "1",
            "Accept-Encoding": "zstd, br, gzip;q=0.5, compress",
        }
    )
    out = outbound_headers(incoming, hosts=HM, vendor_origins={"v": "https://www.v.com"})
    assert dict(out) == {"Accept": "text/html", "User-Agent": "UA", "Accept-Encoding": "br, gzip"}


def test_referer_cut_to_vendor_origin_and_origin_mapped_back() -> None:
    incoming = CIMultiDict(
        {
            "Referer": "https://www-v-com.proxy.lib.org/private/page?q=secret",
            "Origin": "https://www-v-com.proxy.lib.org",
        }
    )
    out = outbound_headers(incoming, hosts=HM, vendor_origins={"v": "https://www.v.com"})
    assert out["Referer"] == "https://www.v.com/"
    assert out["Origin"] == "https://www.v.com"


def test_foreign_referer_is_dropped() -> None:
    out = outbound_headers(
        CIMultiDict({"Referer": "https://mail.example/inbox?u=me"}), hosts=HM, vendor_origins={}
    )
    assert "Referer" not in out


def test_response_drops_hop_by_hop_and_cookies() -> None:
    out = response_headers(
        [
            ("Content-Type", "text/html"),
            ("Connection", "close, X-Secret"),
            ("X-Secret", "1"),
            ("Set-Cookie", "a=b"),
            ("Transfer-Encoding", "chunked"),
            ("Alt-Svc", 'h3=":443"'),
        ]
    )
    assert list(out.keys()) == ["Content-Type"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        # A browser prompt for a name and password on a vendor host: the patron's card and PIN
        # would be typed into it (P2). With none left, the 401 names the form challenge.
        (['Basic realm="Vendor"'], ["Form"]),
        (['Digest realm="V", nonce="x"', "NTLM", "Negotiate"], ["Form"]),
        (['Basic realm="V", Bearer realm="api"'], ["Form"]),  # one value with a prompting scheme
        # A token client's challenge prompts nobody: it stays for the vendor's script to read.
        (
            ['Bearer realm="api", error="invalid_token"'],
            ['Bearer realm="api", error="invalid_token"'],
        ),
        (["Bearer", 'Basic realm="V"'], ["Bearer"]),
        (['Basically realm="V"'], ['Basically realm="V"']),  # not the Basic scheme
        ([], ["Form"]),  # a 401 names a challenge (RFC 9110 15.5.2)
    ],
)
def test_a_vendor_401_never_asks_the_browser_for_a_password(
    sent: list[str], kept: list[str]
) -> None:
    headers = CIMultiDict([("Content-Type", "text/html")] + [("WWW-Authenticate", c) for c in sent])
    no_password_prompt(headers)
    assert headers.getall("WWW-Authenticate") == kept
