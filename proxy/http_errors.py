"""The answer to a request aiohttp's parser refused, before any handler of the proxy runs.

aiohttp answers such a request itself (`RequestHandler.handle_error`), and its answer quotes the
parser's message, which holds the start of the offending line: for a Cookie header over
`max_header_size`, the browser's cookies, the HttpOnly session cookie first. A vendor's script
on a mapped host can make its own `fetch()` oversized (a few large cookies written with
`document.cookie` on the proxy's parent domain) and read that same-origin answer: the patron's
session id in a vendor's hands (P1). The same cookies then make every page of the proxy fail
for as long as they live, so the patron can neither use nor end the session on a shared
computer (P7).

aiohttp offers no setting or hook for this answer (parse errors never reach middlewares or the
application), so `install` wraps that one method, once, for every server in the process: a
refused request gets a fixed page naming no byte of the request. A line over its limit is 431
(a header) or 414 (the request line, or any line with aiohttp's Python parser, which cannot tell
them apart); its page carries a small script that repairs what a browser can repair itself: when
the cookies a script can see on this host are what is too long (a vendor's cookie bomb), it
deletes them (on this host and the proxy's own domains above it, for this page's path, its
parents and itself as a directory) and loads the page again. The proxy's HttpOnly session cookie is not among them (the
patron stays signed in), nor are cookies on the library's other sites' domains; no
`Clear-Site-Data: "cookies"`, which would clear the whole registrable domain, and would let any
vendor script that sends one long header sign the patron out. Every other refusal is 400, as a
fixed page. A handler's 500 or 504 is left to aiohttp, which answers it without any message.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from proxy.logs import get_logger
from proxy.privacy import OWN_PAGE_HEADERS

log = get_logger("proxy.http")

TOO_LONG = (
    "Your browser sent more than this service accepts",
    "The address you followed, or what websites have stored in your browser for this service, "
    "is larger than it accepts. If this page does not go away by itself, go back and try the "
    "link again, or close the browser and open it again.",
)
UNREADABLE = (
    "This request could not be read",
    "Your browser sent a request this service could not read. Go back and try again.",
)
REPAIRED = "Cookies a website had stored for this service were too large and have been removed."

# The repair (see the module docstring). Hand-written because it runs on a page the proxy could
# not serve otherwise: nothing else (no file, no library) can be loaded by that browser here
# while its cookies are too long. Acts only when the cookies it can see are near the limit.
_REPAIR = """(function () {
  var limit = LIMIT, pub = PUBLIC;
  if (document.cookie.length + 256 < limit) return;
  var domains = [""], d = location.hostname;
  while (d === pub || d.slice(-pub.length - 1) === "." + pub) {
    domains.push(d);
    if (d === pub) break;
    d = d.slice(d.indexOf(".") + 1);
  }
  var paths = ["/"], parts = location.pathname.split("/"), at = "";
  for (var i = 1; i < parts.length; i++) {
    if (!parts[i]) continue;
    at += "/" + parts[i];
    paths.push(at, at + "/");
  }
  document.cookie.split(";").forEach(function (c) {
    // A part without "=" is a nameless cookie (all of it is value): one nameless cookie
    // deletes it, whatever its value.
    var eq = c.indexOf("="), set = eq < 0 ? "x" : c.slice(0, eq).trim() + "=";
    domains.forEach(function (dm) {
      paths.forEach(function (p) {
        // Secure where it can be: a __Secure- or __Host- cookie is deleted only so.
        document.cookie = set + "; Max-Age=0; Path=" + p + (dm ? "; Domain=" + dm : "") +
          (window.isSecureContext ? "; Secure" : "");
      });
    });
  });
  if (document.cookie.length + 256 < limit) {
    document.getElementById("repaired").hidden = false;
    location.replace(location.href);
  }
})();"""


class _Pages:
    """The two fixed pages with their headers, built once by `install`."""

    def __init__(self, public_url: str = "/", max_header: int = 8190) -> None:
        sign_in = public_url.rstrip("/") + "/login"
        public = public_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].lower()
        script = _REPAIR.replace("LIMIT", str(max_header)).replace("PUBLIC", json.dumps(public))
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        link = f'<p><a href="{html.escape(sign_in)}">Sign in</a></p>'
        self.too_long = _page(
            TOO_LONG, f'<p id="repaired" hidden>{REPAIRED}</p>{link}<script>{script}</script>'
        )
        self.unreadable = _page(UNREADABLE, link)
        headers = dict(OWN_PAGE_HEADERS)
        headers["Content-Type"] = "text/html; charset=utf-8"
        self.headers = headers
        csp = OWN_PAGE_HEADERS["Content-Security-Policy"].replace(
            "script-src 'self'", f"script-src 'sha256-{digest}'"
        )
        self.too_long_headers = {**headers, "Content-Security-Policy": csp}


def _page(words: tuple[str, str], extra: str) -> bytes:
    title, text = words
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head><body><main><h1>{title}</h1><p>{text}</p>{extra}"
        "</main></body></html>\n"
    ).encode()


_pages = _Pages()


def page(status: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the proxy's answer to a refused request of `status`."""
    if status in (414, 431):
        return _pages.too_long, _pages.too_long_headers
    return _pages.unreadable, _pages.headers


def status_for(status: int, exc: BaseException | None) -> int:
    """aiohttp's status for a refused request, made precise where the parser says why: a line
    over its limit is 431 when llhttp's binding was reading a header (`cb_on_header_field`,
    `cb_on_header_value` on the traceback), 414 otherwise (the request line; and every line
    with the Python parser, which measures lines before it knows what they are: the page is
    the same)."""
    if not isinstance(exc, LineTooLong):
        return status
    tb = exc.__traceback__
    while tb is not None:
        if "header" in tb.tb_frame.f_code.co_name:
            return 431
        tb = tb.tb_next
    return 414


def install(public_url: str, max_header: int) -> None:
    """Make every aiohttp server in this process answer refused requests with `page` (its link
    to the sign-in page at `public_url`; its repair acting near `max_header` bytes of cookies).
    The method is wrapped once; the pages follow the last call."""
    global _pages
    _pages = _Pages(public_url, max_header)
    handler: Any = web_protocol.RequestHandler
    if getattr(handler.handle_error, "_weston", False):
        return
    original = handler.handle_error

    def handle_error(
        self: web_protocol.RequestHandler,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):  # a handler's 500 or 504: aiohttp's own
            response: web.StreamResponse = original(self, request, status, exc, message)
            return response
        # Not aiohttp's logging of it either: its traceback quotes the same line.
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already")  # as aiohttp does
        status = status_for(status, exc)
        log.info("request_refused", status=status, error=type(exc).__name__ if exc else None)
        body, headers = page(status)
        resp = web.Response(status=status, body=body, headers=headers)
        resp.force_close()
        return resp

    handle_error._weston = True  # type: ignore[attr-defined]
    handler.handle_error = handle_error
