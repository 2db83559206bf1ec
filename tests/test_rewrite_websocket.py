"""WebSocket URLs (`ws://`, `wss://`) of vendor hosts are mapped as `http://`/`https://` ones are.

A vendor script's `new WebSocket("wss://www.vendor-one.test/live")` or a JSON config's
`"socket":"wss:\\/\\/rt.vendor.com\\/ws"` left pointing at the vendor is blocked by the tracker
shield, so the page's live feature fails. Every spelling the rewriter knows for http(s) is checked
on the compiled scan, on the pure-Python passes and against the reference pattern; then the
request side (mapped back), the CSP header, and a vendor script through a running proxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy import rewrite_headers
from proxy.auth import hash_password
from proxy.hosts import HostMap
from proxy.rewrite import HOST, Rewriter, url_pattern
from tests.canary import CANARY
from tests.harness import free_port, vendor_toml, write_config

WWW = "www.vendor-one.test"
RT = "rt.vendor.com"
M_WWW = "www-vendor--one-test.proxy.lib.org"
M_RT = "rt-vendor-com.proxy.lib.org"


@pytest.fixture(params=["compiled", "python"])
def scan_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test runs on the compiled scan (proxy/_scan.pyx) and on the pure-Python passes."""
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "python":
            mp.setattr(rewrite_headers, "compiled_scan", None)
        else:
            assert rewrite_headers.compiled_scan is not None, "proxy/_scan.pyx is not built"
        yield request.param


def _host_map(scheme: str = "https", port: int | None = None) -> HostMap:
    return HostMap.build(
        public_scheme=scheme,
        public_host="proxy.lib.org",
        public_port=port,
        vendor_hosts=[("one", [WWW, "*.vendor-one.test"]), ("rt", [RT])],
        never_proxy=["static.vendor-one.test"],
    )


def _rewriter(scheme: str = "https", port: int | None = None) -> Rewriter:
    return Rewriter(
        _host_map(scheme, port),
        vendor_origins={"one": f"https://{WWW}", "rt": f"http://{RT}:8081"},
    )


def _reference(rw: Rewriter, data: bytes) -> bytes:
    pattern = re.compile(url_pattern(HOST), re.IGNORECASE)
    return pattern.sub(lambda m: rw._replace_url(m.group(0)), data)


def _rewrite(rw: Rewriter, text: str) -> str:
    """`rewrite_text`, checked against the reference pattern on the same bytes."""
    out = rw.rewrite_text(text)
    assert out.encode() == _reference(rw, text.encode()), text
    return out


# Each spelling the rewriter knows for http(s), with `wss`/`ws`: (vendor text, mapped text) for a
# proxy at https://proxy.lib.org.
SPELLINGS = {
    "plain wss": (f'new WebSocket("wss://{WWW}/live")', f'new WebSocket("wss://{M_WWW}/live")'),
    "plain ws": (f"new WebSocket('ws://{RT}/ws')", f"new WebSocket('wss://{M_RT}/ws')"),
    "capitals": (f"WSS://{RT}/a Ws://{WWW}/b", f"wss://{M_RT}/a wss://{M_WWW}/b"),
    "vendor port dropped": (f"wss://{RT}:8081/ws", f"wss://{M_RT}/ws"),
    "json-escaped": (
        f'{{"socket":"wss:\\/\\/{RT}\\/ws"}}',
        f'{{"socket":"wss:\\/\\/{M_RT}\\/ws"}}',
    ),
    "unicode-escaped": (
        f'{{"socket":"ws:\\u002F\\u002f{WWW}\\u002Flive"}}',
        f'{{"socket":"wss:\\u002F\\u002f{M_WWW}\\u002Flive"}}',
    ),
    "percent-encoded": (f"?s=wss%3A%2F%2F{RT}%2Fws", f"?s=wss%3A%2F%2F{M_RT}%2Fws"),
    "percent-encoded slashes only": (f"?s=ws:%2f%2f{WWW}", f"?s=wss:%2f%2f{M_WWW}"),
    "double-encoded": (f"?s=WSS%253A%252F%252F{RT}", f"?s=wss%253A%252F%252F{M_RT}"),
    "encoded port kept in its spelling": (
        f"?s=wss%3A%2F%2F{RT}%3A8081%2Fws",
        f"?s=wss%3A%2F%2F{M_RT}%2Fws",
    ),
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_each_spelling_of_a_websocket_url_is_mapped(scan_path: str, spelling: str) -> None:
    text, expected = SPELLINGS[spelling]
    assert _rewrite(_rewriter(), text) == expected


def test_behind_plain_http_the_mapped_socket_is_ws_with_the_public_port(scan_path: str) -> None:
    rw = _rewriter("http", 8080)
    text = f'a("wss://{RT}/x") b("ws://{WWW}:1/y") c("wss%3A%2F%2F{RT}") d("WSS:\\/\\/{RT}")'
    assert _rewrite(rw, text) == (
        f'a("ws://{M_RT.replace("lib.org", "lib.org:8080")}/x") '
        f'b("ws://{M_WWW.replace("lib.org", "lib.org:8080")}/y") '
        f'c("ws%3A%2F%2F{M_RT}%3A8080") d("ws:\\/\\/{M_RT}:8080")'
    )


@pytest.mark.parametrize(
    "text",
    [
        f"news://{WWW}/x",  # `ws` inside a word is no scheme
        f"aws://{RT}/x",
        f"x.wss://{RT}",
        f"wss-{RT}",
        f"wss:/{RT}",  # one slash
        "wss://evil.org/live",  # not configured
        f"wss://{WWW}.evil.org/live",
        "wss://static.vendor-one.test/live",  # never_proxy
        f"wsss://{WWW}/x",
        f"w\\u002F\\u002F{WWW}",
    ],
)
def test_websocket_lookalikes_and_other_hosts_are_left_alone(scan_path: str, text: str) -> None:
    """The same lookbehind as for http: not after [a-zA-Z0-9+.-]; unconfigured hosts untouched.
    (`w\\u002F\\u002Fhost` is a protocol-relative URL glued to a word: left alone as for http.)"""
    assert _rewrite(_rewriter(), text) == text


def test_a_lone_websocket_url_in_long_plain_text_is_mapped(scan_path: str) -> None:
    """Without the compiled scan, plain text takes the literal-led `http` and `//` passes; a
    `wss://` or `ws://` far from any other spot must still be found (it is a spot of its own)."""
    rw = _rewriter()
    filler = "".join(
        f'<a href="https://{WWW}/r/{i}">r{i}</a> news //x.test/a\n' for i in range(300)
    )
    for url, mapped in ((f"wss://{RT}/ws", f"wss://{M_RT}/ws"), (f"WS://{WWW}", f"wss://{M_WWW}")):
        text = filler + f'<script>new WebSocket("{url}")</script>' + filler
        out = _rewrite(rw, text)
        assert f'new WebSocket("{mapped}")' in out
        assert out.count(M_WWW) >= 600


def test_a_scheme_ending_in_ss_is_no_websocket_url(scan_path: str) -> None:
    """`class://host` looks like the end of `wss://` to the Python path's `//` pass: the text is
    done again with WebSocket spots, and comes out as the reference says (only the https URL)."""
    text = f"class://{WWW}/x Xss://{RT} https://{WWW}/y"
    assert _rewrite(_rewriter(), text) == f"class://{WWW}/x Xss://{RT} https://{M_WWW}/y"


def test_a_split_at_every_byte_of_a_websocket_url_gives_the_whole_result(scan_path: str) -> None:
    rw = _rewriter(port=8443)
    for body, content_type in (
        (f'var s = new WebSocket("wss://{WWW}/live");', "application/javascript"),
        (
            f'{{"socket":"ws:\\u002F\\u002F{RT}\\u002Fws","b":"wss:\\/\\/{RT}:9\\/"}}',
            "application/json",
        ),
        (f'<div data-ws="WSS%3A%2F%2F{WWW}%2Flive">', "text/html"),
    ):
        data = body.encode()
        whole = rw.rewrite_body("one", content_type, "utf-8", data)
        assert WWW.encode() not in whole and RT.encode() not in whole  # really mapped
        for i in range(len(data) + 1):
            sr = rw.stream("one", content_type, "utf-8")
            assert sr.feed(data[:i]) + sr.feed(data[i:]) + sr.finish() == whole, (body, i)
        sr = rw.stream("one", content_type, "utf-8")
        out = b"".join(sr.feed(data[i : i + 1]) for i in range(len(data)))
        assert out + sr.finish() == whole, body


# ----------------------------------------------------------------------------- request side


def test_unmap_restores_the_vendor_socket_url_with_the_origins_scheme() -> None:
    """`wss://<mapped>` goes back to the vendor host with its origin's WebSocket scheme (`wss` for
    an https origin, `ws` for an http one, whose explicit port comes back too)."""
    rw = _rewriter()
    query = f"a=wss://{M_WWW}/live&b=wss%3A%2F%2F{M_RT}%2Fws&c=WSS:\\/\\/{M_WWW}"
    assert rw.unmap_url(query) == (
        f"a=wss://{WWW}/live&b=ws%3A%2F%2F{RT}%3A8081%2Fws&c=wss:\\/\\/{WWW}"
    )


def test_unmap_follows_the_port_rule_of_http() -> None:
    """`ws://` means port 80, `wss://` 443: a socket URL on another port than the proxy's is
    another server's and stays as it is."""
    rw = _rewriter()  # the proxy is https on 443
    for text in (f"ws://{M_WWW}/x", f"wss://{M_WWW}:8443/x"):
        assert rw.unmap_url(text) == text
    assert rw.unmap_url(f"wss://{M_WWW}:443/x") == f"wss://{WWW}/x"
    behind_http = _rewriter("http", 8080)
    assert behind_http.unmap_url(f"ws://{M_RT}:8080/ws") == f"ws://{RT}:8081/ws"
    assert behind_http.unmap_url(f"ws://{M_RT}/ws") == f"ws://{M_RT}/ws"


def test_unmap_body_maps_socket_urls_in_forms_and_json_back() -> None:
    rw = _rewriter()
    form = f"socket=wss%3A%2F%2F{M_WWW}%2Flive&x=1".encode()
    assert rw.unmap_body(form, "application/x-www-form-urlencoded") == (
        f"socket=wss%3A%2F%2F{WWW}%2Flive&x=1".encode()
    )
    body = f'{{"socket":"wss:\\/\\/{M_RT}\\/ws"}}'.encode()
    assert (
        rw.unmap_body(body, "application/json")
        == f'{{"socket":"ws:\\/\\/{RT}:8081\\/ws"}}'.encode()
    )


def test_a_round_trip_gives_back_the_vendors_socket_url(scan_path: str) -> None:
    rw = _rewriter()
    text = (
        f'{{"a":"wss://{WWW}/live","b":"wss:\\u002F\\u002F{WWW}\\u002Fx","c":"wss%3A%2F%2F{WWW}"}}'
    )
    mapped = rw.rewrite_text(text)
    assert WWW not in mapped
    assert rw.unmap_url(mapped) == text


# ----------------------------------------------------------------------------- headers


def test_csp_socket_sources_take_the_public_websocket_scheme() -> None:
    rw = _rewriter()
    csp = f"default-src 'self'; connect-src 'self' wss://{RT} ws://{WWW}/live https://{RT}"
    assert rw.rewrite_csp(csp) == (
        f"default-src 'self'; connect-src 'self' wss://{M_RT} wss://{M_WWW}/live https://{M_RT}"
    )
    assert rw.rewrite_csp("connect-src wss://*.vendor-one.test") == (
        "connect-src wss://*.vendor-one.test wss://*.proxy.lib.org"  # partly never_proxy
    )
    behind_http = _rewriter("http", 8080)
    assert behind_http.rewrite_csp(f"connect-src WSS://{RT}") == (f"connect-src ws://{M_RT}:8080")


def test_a_meta_csp_in_a_page_maps_its_socket_sources(scan_path: str) -> None:
    rw = _rewriter()
    page = f'<meta http-equiv="Content-Security-Policy" content="connect-src wss://{RT}">'
    out = rw.rewrite_body("one", "text/html", "utf-8", page.encode())
    assert (
        out
        == f'<meta http-equiv="Content-Security-Policy" content="connect-src wss://{M_RT}">'.encode()
    )


def test_location_and_link_headers_map_socket_urls() -> None:
    rw = _rewriter()
    location = f"https://{WWW}/connect?socket=wss%3A%2F%2F{RT}%2Fws"
    assert rw.rewrite_location(location) == (
        f"https://{M_WWW}/connect?socket=wss%3A%2F%2F{M_RT}%2Fws"
    )
    assert (
        rw.rewrite_link(f"<wss://{RT}/ws>; rel=preconnect") == f"<wss://{M_RT}/ws>; rel=preconnect"
    )


# ----------------------------------------------------------------------------- through the proxy


async def test_a_vendor_scripts_socket_urls_arrive_mapped_through_the_proxy(
    tmp_path: Path, vendor_factory: Any, proxy_factory: Any
) -> None:
    """A vendor script opening `wss://` and `ws://` sockets on its own hosts, its JSON config
    and its CSP header: the patron's browser gets the mapped hosts with `ws` (the test proxy's
    public URL is http), so the sockets go through the proxy's WebSocket relay; a socket URL the
    page sends back in a query reaches the vendor as its own."""
    vendor = await vendor_factory(WWW)
    script = (
        f'const live = new WebSocket("wss://{WWW}/live");\n'
        f"const feed = new WebSocket('ws://{RT}/feed');\n"
        f'const other = new WebSocket("wss://evil.example/x");\n'
    )
    config = f'{{"socket":"wss:\\/\\/{RT}\\/ws","u":"wss:\\u002F\\u002F{WWW}\\u002Fu"}}'

    async def serve_script(_: web.Request) -> web.Response:
        return web.Response(text=script, content_type="application/javascript")

    async def serve_config(_: web.Request) -> web.Response:
        return web.Response(
            text=config,
            content_type="application/json",
            headers={"Content-Security-Policy": f"connect-src 'self' wss://{RT}"},
        )

    vendor.routes["/app.js"] = serve_script
    vendor.routes["/config.json"] = serve_config
    (tmp_path / "patrons.toml").write_text(
        f'[[patron]]\ncard = "{CANARY.uid}"\nhash = "{hash_password(CANARY.password)}"\n'
    )
    proxy_port = free_port()
    cfg = write_config(
        tmp_path,
        port=proxy_port,
        directory='kind = "file"\npatrons_file = "patrons.toml"\n',
        vendors={"v": vendor_toml("v", vendor, hosts=[WWW, RT])},
    )
    driver = await proxy_factory(cfg)
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303

    r = await driver.get_vendor(WWW, "/app.js")
    assert r.status == 200
    body = await r.text()
    assert f'new WebSocket("ws://{driver.mapped(WWW)}/live")' in body
    assert f"new WebSocket('ws://{driver.mapped(RT)}/feed')" in body
    assert 'new WebSocket("wss://evil.example/x")' in body
    assert "vendor-one.test/" not in body and "vendor.com/" not in body

    r = await driver.get_vendor(WWW, "/config.json")
    assert r.status == 200
    mapped_rt, mapped_www = driver.mapped(RT), driver.mapped(WWW)
    assert await r.text() == (
        f'{{"socket":"ws:\\/\\/{mapped_rt}\\/ws","u":"ws:\\u002F\\u002F{mapped_www}\\u002Fu"}}'
    )
    assert f"connect-src 'self' ws://{mapped_rt}" in r.headers["Content-Security-Policy"]

    r = await driver.get_vendor(WWW, f"/search?socket=ws://{mapped_rt}/feed")
    assert r.status == 200
    assert vendor.requests[-1].path_qs == f"/search?socket=ws://{RT}/feed"
