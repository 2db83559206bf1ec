"""The body rewriter on text taken from real npm bundles (JavaScript, CSS, HTML, JSON).

From a review that ran the rewriter over ~28,000 real files (550 MB) from npm packages. Each
test is a short snippet cut from a real file (package and file named in a comment) on which the
first version changed something that is not a vendor URL mapped as the rules in `proxy.rewrite`
say (fixed). Both scan paths are checked: the compiled one (proxy/_scan.pyx) and the pure-Python
one. The checks that passed on the real files are listed in the comment block at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from proxy import rewrite_headers
from proxy.hosts import HostMap
from proxy.rewrite import Rewriter


@pytest.fixture(params=["compiled", "python"])
def scan_path(request: pytest.FixtureRequest) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "python":
            mp.setattr(rewrite_headers, "compiled_scan", None)
        else:
            assert rewrite_headers.compiled_scan is not None, "proxy/_scan.pyx is not built"
        yield request.param


def _rewriter() -> Rewriter:
    hm = HostMap.build(
        public_scheme="https",
        public_host="proxy.lib.org",
        public_port=None,
        vendor_hosts=[("ex", ["example.com", "*.example.com"])],
    )
    return Rewriter(hm, vendor_origins={"ex": "https://example.com"})


# jquery 4 (npm `jquery`), src/ajax.js (also dist/jquery.js, dist-module/jquery.module.js):
#     // Support: IE <=8 - 11+
#     // Anchor's host property isn't correctly set when s.url is relative
#     // e.g. http://example.com:80x/
JQUERY_AJAX = b"\t\t\t// e.g. http://example.com:80x/\n\t\t\ttry {\n"


def test_a_port_followed_by_a_letter_is_not_dropped_into_the_mapped_host(scan_path: str) -> None:
    """`http://example.com:80x/` has no valid port (`80x`). The rewriter takes `:80` as the
    port (PORT_END is only `(?![0-9])`), drops it as explicit vendor ports are dropped, and the
    `x` that followed the port now follows the mapped host: `https://example-com.proxy.lib.orgx/`,
    another host name (one `unmap_url` does not recognise either, so the round trip is lost).
    A port is whole only when no host byte follows it, as a host is whole (HOST_END): the text
    should be left as it is, or mapped with `:80x` kept after the mapped host."""
    rw = _rewriter()
    out = rw.rewrite_bytes(JQUERY_AJAX)
    assert not re.search(rb"proxy\.lib\.org[a-z0-9_\-]", out), out


def test_the_glued_port_through_the_streamed_body(scan_path: str) -> None:
    """The same snippet as a served script, through `Rewriter.stream` (what patrons get)."""
    rw = _rewriter()
    out = rw.rewrite_body("ex", "application/javascript", "utf-8", JQUERY_AJAX)
    assert b"proxy.lib.orgx" not in out, out


# ---------------------------------------------------------------------------------------------
# Checks that PASSED on the real files (kept out of the tests above).
#
# Files: every .js/.mjs/.cjs/.css/.html/.htm/.json/.svg/.xml (7,107 files, 164 MB) and every
# .map/.ts/.mts/.scss/.less/.md/.txt (4,191 files, 90 MB) of socket.io-client (+ engine.io-client,
# socket.io-parser, ws), sockjs-client, @microsoft/signalr, pusher-js, jquery, react-dom,
# @angular/core, bootstrap, pdfjs-dist, video.js (+ @videojs/*, m3u8-parser, mpd-parser, mux.js),
# hls.js, mathjax (+ @mathjax/*), katex, highlight.js, moment, lodash, d3 (all d3-*), leaflet,
# tinymce and their dependencies; then firebase, @supabase/supabase-js, ably, phoenix,
# @rails/actioncable, swagger-ui-dist, @googlemaps/js-api-loader, mapbox-gl, @sentry/browser,
# plotly.js-dist-min, @fortawesome/fontawesome-free, graphql-ws and dependencies (16,879 files
# incl. .map, 296 MB).
# Config: cdn.jsdelivr.net, unpkg.com, cdnjs.cloudflare.com, fonts.googleapis.com,
# *.googleapis.com (never_proxy *.storage.googleapis.com), github.com, www.w3.org, js.pusher.com,
# ws.pusherapp.com, *.pusher.com, localhost, example.com, *.example.com, *.firebaseio.com,
# *.supabase.co, *.ably.io, api.mapbox.com, *.mapbox.com, *.sentry.io, ... and two absent hosts;
# public https://proxy.lib.org and http://proxy.lib.org:8080.
#  (1) compiled scan == Python paths == `url_pattern(HOST)` reference, every file, both configs.
#  (2) `Rewriter.stream` in random chunk sizes (1 B .. 64 KB mixed), fixed 64 KB / 4097 / 511 B,
#      and 1-byte chunks over a 12 KB window around the first URL: same bytes as one piece, on
#      both paths (HTML through the tag stage too: katex's `integrity` dropped, nothing else).
#  (3) a config of hosts absent from the text: output byte-identical to input, both paths.
#  (4) every change is a URL of a configured host (comments, strings, SVG/XML, CSS url(),
#      percent-encoded data: URIs, pusher's ws:// and wss:// test URLs with ports); no change in
#      regex literals (`/^(https?|wss?):\/\//`, engine.io's parseuri), `git+https://`,
#      `news:`-like words, `-//W3C//DTD`, source map comments, e-mails, base64 `integrity`.
#      (Namespace names such as `http://www.w3.org/2000/svg` in `createElementNS` and SVG data
#      URIs are rewritten when www.w3.org is configured, as the rules say: a config hazard.)
#  (5) `unmap_url` of every changed URL gives the original back, but for the documented losses
#      (explicit vendor port dropped, `http`→origin scheme, host case); whole-body `unmap_body`
#      (JSON and form) equals the per-URL unmapping — except the `:80x` case tested above.
# ---------------------------------------------------------------------------------------------
