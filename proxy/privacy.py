"""What may leave the proxy: the request-header allowlist, Referer/Origin mapping, response headers.

This is the one place that decides what a vendor receives from the patron's browser. It is an
allowlist: a header not named here never reaches a vendor, whatever its spelling, so forwarding
headers (X-Forwarded-For, X_Forwarded_For, Forwarded, X-Real-IP, True-Client-IP, Via), client hints,
Authorization, cookies and any client-sent assertion are dropped without being listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.hosts import HostMap

# Methods a patron's request to a vendor may have. Not TRACE (or TRACK): a vendor that echoes it
# (Apache's default) would hand the patron the request as it left the proxy, with what the
# adapter added (the shared account's password, the jar's cookies, the referer secret, the
# assertion). Nor CONNECT or WebDAV's: no database needs them.
VENDOR_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Request headers a vendor may receive as the browser sent them. User-Agent and Accept-Language
# among them: vendor sites choose their layout and language by them, and they are what every
# browser of that make and language sends (the session's own identifiers are never sent).
REQUEST_ALLOWLIST = frozenset(
    {
        "accept",
        "accept-language",
        "user-agent",
        "content-type",
        "content-length",
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "cache-control",
        "pragma",
    }
)
# Content codings the proxy can decode for rewriting; the browser's Accept-Encoding is narrowed to these.
DECODABLE_ENCODINGS = ("gzip", "deflate", "br")

# Response headers never passed to the browser. Hop-by-hop per RFC 9110 §7.6.1, plus those the
# proxy owns: vendor cookies go to the session jar, and Alt-Svc would point the browser at the
# vendor directly. The reporting headers (Reporting API, NEL, Expect-CT, HPKP and XSS-filter
# reports) make the browser post page URLs straight to endpoints the vendor names, bypassing
# the proxy; without them CSP `report-to` groups resolve to nothing.
RESPONSE_DROP = frozenset(
    {
        "reporting-endpoints",
        "expect-ct",
        "public-key-pins-report-only",
        "x-xss-protection",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "set-cookie",
        "set-cookie2",
        "alt-svc",
        "public-key-pins",
        "report-to",
        "nel",
        "server-timing",
        "clear-site-data",
        # A rule set the browser fetches, and whose prefetches and prerenders open connections to
        # any host it lists, from the patron's address, before any click (P3).
        "speculation-rules",
    }
)


# What the browser is asked to forget of a vendor host (`Clear-Site-Data`): at sign-out
# (proxy/web/forget.py) and on a session's first page there (proxy/forward.py). Not "cookies":
# browsers clear those for the whole registrable domain, which is the library's (lib.org for
# proxy.lib.org: its catalogue's sign-in too), not the vendor host's.
FORGET_WHAT = '"cache", "storage"'


def _accept_encoding(value: str) -> str | None:
    wanted = []
    for part in value.split(","):
        coding = part.split(";", 1)[0].strip().lower()
        if coding in DECODABLE_ENCODINGS and coding not in wanted:
            wanted.append(coding)
    return ", ".join(wanted) or None


def map_back_origin(value: str, hosts: HostMap, vendor_origins: Mapping[str, str]) -> str | None:
    """The vendor origin a mapped Referer/Origin stands for, or None when it is not a mapped host."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    vendor_host = hosts.vendor_host_from_request(parts.netloc)
    if vendor_host is None:
        return None
    vendor_id = hosts.vendor_for_host(vendor_host)
    origin = vendor_origins.get(vendor_id or "", "")
    scheme = urlsplit(origin).scheme or "https"
    port = urlsplit(origin).port if urlsplit(origin).hostname == vendor_host else None
    return f"{scheme}://{vendor_host}" + (f":{port}" if port else "")


@dataclass(frozen=True, slots=True)
class Initiator:
    """Where the browser said a request came from, as it sent it: Origin, Referer and the fetch
    metadata (`Sec-Fetch-Site`, `-Mode`, `-Dest`, which a page cannot set). The jar decides from
    it which SameSite cookies go on the request; none of it is sent to the vendor as it is."""

    origin: str | None = None
    referer: str | None = None
    fetch_site: str | None = None
    fetch_mode: str | None = None
    fetch_dest: str | None = None

    @property
    def top_level(self) -> bool:
        """A top-level navigation (not a frame, fetch or sub-resource); without fetch metadata
        (older browsers) any request counts as one."""
        return self.fetch_mode in (None, "navigate") and self.fetch_dest in (None, "document")


class OutboundHeaders(CIMultiDict[str]):
    """The headers a vendor receives, with the request's `Initiator` beside them (not a header:
    nothing puts it on the wire)."""

    initiator: Initiator | None = None


def initiator_host(value: str, hosts: HostMap) -> tuple[bool, str | None]:
    """Where a page named by an Origin or Referer is in the vendors' world: (True, None) for the
    proxy's own pages; (False, vendor host) for a mapped host; (False, host) for any other
    site; (False, None) for an opaque origin ("null") or anything that names no host."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False, None
    if parts.scheme not in ("http", "https") or not host:
        return False, None
    if hosts.is_public_host(parts.netloc):
        return True, None
    return False, hosts.vendor_host_from_request(parts.netloc) or host


def outbound_headers(
    incoming: CIMultiDictProxy[str] | CIMultiDict[str],
    *,
    hosts: HostMap,
    vendor_origins: Mapping[str, str],
) -> OutboundHeaders:
    """The request headers a vendor receives: the allowlist, with Referer/Origin mapped back."""
    out = OutboundHeaders()
    out.initiator = Initiator(
        origin=incoming.get("Origin"),
        referer=incoming.get("Referer"),
        fetch_site=incoming.get("Sec-Fetch-Site"),
        fetch_mode=incoming.get("Sec-Fetch-Mode"),
        fetch_dest=incoming.get("Sec-Fetch-Dest"),
    )
    for name, value in incoming.items():
        lname = name.lower()
        if lname in REQUEST_ALLOWLIST:
            out.add(name, value)
    ranges = out.getall("Range", ())
    if len(ranges) > 1 or (ranges and "," in ranges[0]):
        # Several ranges come back as multipart/byteranges: a document in that wrapping is not
        # counted by the usage limits (`bytes=0-,0-0` would be a whole PDF uncounted), and the
        # rewriter cannot read it. The whole answer is asked for (RFC 9110 §14.2 lets a server
        # ignore Range); browsers' viewers ask for one range at a time.
        out.popall("Range")
        out.popall("If-Range", None)
    if "Accept-Encoding" in incoming:
        ae = _accept_encoding(incoming["Accept-Encoding"])
        if ae:
            out["Accept-Encoding"] = ae
    referer = incoming.get("Referer")
    if referer:
        origin = map_back_origin(referer, hosts, vendor_origins)
        if origin:
            out["Referer"] = origin + "/"
    origin_hdr = incoming.get("Origin")
    if origin_hdr:
        origin = map_back_origin(origin_hdr, hosts, vendor_origins)
        if origin:
            out["Origin"] = origin
    return out


def response_headers(upstream: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    """Vendor response headers the browser may see (before URL rewriting)."""
    out: CIMultiDict[str] = CIMultiDict()
    pairs = list(upstream)
    connection_named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    for name, value in pairs:
        lname = name.lower()
        if lname in RESPONSE_DROP or lname in connection_named:
            continue
        if not value.isascii():
            value = _as_sent(value)
        out.add(name, value)
    return out


def _as_sent(value: str) -> str:
    """A vendor header value with bytes that are not UTF-8 (kept by the client as surrogate
    escapes), as Latin-1 text. aiohttp writes header values as UTF-8 and drops such escapes:
    `filename="café.pdf"` in Latin-1 reached the patron as `caf.pdf`. Sent as UTF-8 text it
    is read right by browsers, which try UTF-8 first for a download's file name."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("latin-1")
    return value


# A 401 must name a challenge (RFC 9110, 15.5.2); the patron's is the sign-in form, no scheme a
# browser answers with a password dialog. A vendor's 401 carries it too when its own challenges
# were all of that kind (`no_password_prompt`).
FORM_CHALLENGE = "Form"
# Challenge schemes a browser answers by asking the user for a name and password (or by sending
# the machine's own Windows or Kerberos credentials), at the start of a challenge in the list.
_PROMPTING = re.compile(r"(?i)(?:^|,)[\t ]*(?:basic|digest|ntlm|negotiate|kerberos)(?![\w-])")


def no_password_prompt(headers: CIMultiDict[str]) -> None:
    """A vendor's 401 without the challenges that make the browser ask for a user name and
    password on the vendor's mapped host, which a patron fills with their card and PIN (P2);
    what the browser then sends (Authorization) never reaches the vendor anyway. Others (a
    `Bearer` challenge an API client reads to renew its token) stay; with none left the 401
    names FORM_CHALLENGE."""
    challenges = headers.getall("WWW-Authenticate", [])
    kept = [c for c in challenges if not _PROMPTING.search(c)]
    if len(kept) == len(challenges) and kept:
        return
    headers.popall("WWW-Authenticate", None)
    for challenge in kept or [FORM_CHALLENGE]:
        headers.add("WWW-Authenticate", challenge)


OWN_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Permissions-Policy": "interest-cohort=(), browsing-topics=()",
    # The proxy's own pages and every mapped host are one site, so a tab's `window.name` (which
    # a vendor's script can set) would survive the menu, sign-out and the next patron's sign-in:
    # an identifier linking sessions (P4). A page with this policy opens in a new browsing
    # context group, which starts with no name. The proxy's pages use no opener or popup.
    "Cross-Origin-Opener-Policy": "same-origin",
}
