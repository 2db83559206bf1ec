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
refused request gets a fixed page naming no byte of the request. A header too large is 431
with `Clear-Site-Data: "cookies"`: the browser drops the cookies of the proxy's site (the
session cookie too: the patron signs in again, and can), so the next request gets through.
A request line too long is 414. Every other refusal stays 400, as a fixed page. A handler's
500 or 504 is left to aiohttp, which answers it without any message.
"""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from proxy.logs import get_logger
from proxy.privacy import OWN_PAGE_HEADERS

log = get_logger("proxy.http")

# Fixed pages: nothing from the request, so nothing of it can be read back.
_PAGES = {
    431: (
        "Your browser sent more than this service accepts",
        "Your browser was holding too many cookies for this site, so it could not be served. "
        "They have now been cleared: sign in again to continue.",
    ),
    414: (
        "This address is too long",
        "The address you followed is longer than this service accepts. Go back and try the "
        "link again from the library's website.",
    ),
    400: (
        "This request could not be read",
        "Your browser sent a request this service could not read. Go back and try again.",
    ),
}
_WHOLE_SITE_COOKIES = '"cookies"'
# Where the page's sign-in link goes: the proxy's own sign-in page, set by `install` (the page
# may be answered on a vendor's mapped host, where a bare /login would be the vendor's).
_sign_in = "/login"


def page(status: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the proxy's answer to a refused request of `status`."""
    title, text = _PAGES.get(status, _PAGES[400])
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head><body><main><h1>{title}</h1><p>{text}</p>"
        f'<p><a href="{html.escape(_sign_in)}">Sign in</a></p></main></body></html>\n'
    ).encode()
    headers = dict(OWN_PAGE_HEADERS)
    headers["Content-Type"] = "text/html; charset=utf-8"
    if status == 431:
        headers["Clear-Site-Data"] = _WHOLE_SITE_COOKIES
    return body, headers


def status_for(status: int, exc: BaseException | None) -> int:
    """aiohttp's status for a refused request, made precise where the parser says why: a line
    over its limit is 431 when it was a header (the parser's callback or function reading
    headers is on the traceback: `cb_on_header_value` in llhttp's binding, `parse_headers` in
    the Python parser), 414 otherwise (the request line)."""
    if not isinstance(exc, LineTooLong):
        return status
    tb = exc.__traceback__
    while tb is not None:
        if "header" in tb.tb_frame.f_code.co_name:
            return 431
        tb = tb.tb_next
    return 414


def install(public_url: str) -> None:
    """Make every aiohttp server in this process answer refused requests with `page` (its link
    to the sign-in page at `public_url`). The method is wrapped once."""
    global _sign_in
    _sign_in = public_url.rstrip("/") + "/login"
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
