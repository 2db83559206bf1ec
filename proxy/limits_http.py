"""HTTP server limits for the proxy's listening socket, in one place for `serve` and the tests.

aiohttp's parser (llhttp) already refuses what a request smuggler needs — Content-Length together
with Transfer-Encoding, two Content-Length headers, obs-fold continuation lines, bad chunk sizes,
bare LF line ends — with 400 and a closed connection (tests/test_smuggling.py shows each case over
a raw socket). What it needs from us are the sizes and the time it may spend on one request:

- `max_request_line` bounds the URL (request line), `max_header_size` each header line, and
  `max_headers` how many there are; anything over is refused before a handler runs, with the
  proxy's fixed page (`proxy.http_errors`: 414 or 431, whose script repairs a cookie bomb, or
  400).
- `header_timeout_s` is aiohttp's keep-alive timer, which runs from the moment a connection opens
  (and again after each response) until a request's headers are complete: a client that trickles
  its headers is cut off when it fires, as is an idle keep-alive connection. A request body
  forwarded to a vendor may pause no longer between pieces (proxy/forward.py): the request
  holds its admission slots meanwhile.
- `send_timeout_s` is the other direction: how long a patron may read nothing of a response the
  proxy is waiting to send (nginx's `send_timeout`; proxy/patron_reads.py). The response holds its
  admission slot and the vendor's connection while it waits, so a patron that stops reading is cut
  off; one that reads, however slowly, is not. Longer than `header_timeout_s` by default (60 s): a
  browser may stop reading a while on its own (a media element with enough buffered, a download
  waiting for its save dialog).

The values live in `[throttle.http]` of proxy.toml, checked with the rest of `[throttle]`.

One limit is the proxy's own: a vendor's `limits.max_upload_bytes` can only be checked up front
when the body has a Content-Length. Browsers always send one (a streamed request body needs
HTTP/2), so a body without it — chunked — is refused with 411 before anything is forwarded, rather
than streamed to the vendor uncounted. A body with a Content-Encoding is decoded by aiohttp's
server before it is read, so its Content-Length says nothing of what the vendor would get: such a
body is read whole and counted decoded (proxy/forward.py, `_read_bounded`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from proxy.config import Config, VendorConfig, doc, read_table
from proxy.errors import Problem
from proxy.sessions import Session

if TYPE_CHECKING:
    from proxy.services import Services


@dataclass(frozen=True)
class HttpLimits:
    """The `[throttle.http]` table: what one client may make the server hold."""

    max_request_line: int = doc("longest request line (method, URL, version) in bytes", 8190)
    max_header_size: int = doc("longest single header line in bytes", 8190)
    max_headers: int = doc("most header lines in one request", 100)
    header_timeout_s: float = doc(
        "seconds a connection may take to send a request's headers (also the idle keep-alive,"
        " and the longest pause in a request body forwarded to a vendor)",
        15.0,
    )
    send_timeout_s: float = doc(
        "seconds a patron may read nothing of a response waiting to be sent before the"
        " connection is cut (a pause, not the whole download: a slow link that reads goes on)",
        60.0,
    )


def http_limits(config: Config) -> HttpLimits:
    """The configured limits, defaults for anything unset or wrong (check_throttle reports those)."""
    section = config.extra.get("throttle", {})
    table = section.get("http", {}) if isinstance(section, dict) else {}
    limits = read_table(HttpLimits, table, str(config.path), "throttle.http.", [])
    return limits if limits is not None else HttpLimits()


def check_http_limits(limits: HttpLimits, file: str, problems: list[Problem]) -> None:
    """Values that would switch a limit off or make ordinary browsers fail."""
    # Below these a normal browser request (long vendor URLs, a dozen cookies) would be refused.
    floors = {"max_request_line": 1024, "max_header_size": 1024, "max_headers": 16}
    for name, floor in floors.items():
        if getattr(limits, name) < floor:
            problems.append(Problem(file, f"throttle.http.{name}", f"must be at least {floor}"))
    if not 1.0 <= limits.header_timeout_s <= 300.0:
        problems.append(
            Problem(file, "throttle.http.header_timeout_s", "must be between 1 and 300 seconds")
        )
    if not 1.0 <= limits.send_timeout_s <= 600.0:
        problems.append(
            Problem(file, "throttle.http.send_timeout_s", "must be between 1 and 600 seconds")
        )


def server_limits(config: Config) -> dict[str, Any]:
    """Keyword arguments for `web.run_app` and `aiohttp.test_utils.TestServer` alike."""
    limits = http_limits(config)
    return {
        "max_line_size": limits.max_request_line,
        "max_field_size": limits.max_header_size,
        "max_headers": limits.max_headers,
        "keepalive_timeout": limits.header_timeout_s,
        # How long an unread request body (after a refusal) is drained before the connection
        # closes; aiohttp's 10 s default would let a trickling client hold the slot that long.
        "lingering_time": 2.0,
    }


async def require_length(
    request: web.Request, session: Session, vendor: VendorConfig
) -> web.StreamResponse | None:
    """Refuse a request body without Content-Length (411): its size could not be checked."""
    if request.body_exists and request.content_length is None:
        from proxy.web.pages import message_page

        resp = message_page(request, "length_required")
        # The unread body must not be taken for the next request on this connection.
        resp.force_close()
        return resp
    return None


async def feature(app: web.Application, svc: Services) -> AsyncIterator[None]:
    """Plug the upload-framing gate in first, before any gate counts the request."""
    svc.hooks.gates.insert(0, require_length)
    try:
        yield
    finally:
        svc.hooks.gates.remove(require_length)
