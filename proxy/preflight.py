"""CORS preflights on a vendor's mapped hosts, answered by the proxy itself.

A vendor page on one of its hosts calling another of its hosts (www → api) with a request that is
not "simple" (a JSON POST, a PUT, a custom header) makes the browser ask first with an OPTIONS
preflight, and a preflight never carries cookies. It cannot pass the session gate, whose
redirect to /login the browser refuses for a preflight: every such call failed. So the proxy
answers it without a session and without forwarding it: nothing is fetched from a vendor and
nothing counts as use of one. It allows only what the vendor's own hosts ask of each other (the
page's mapped origin is a host of the same vendor); the real request that follows carries the
session cookie and passes the gate like any other, so the answer opens nothing by itself.

Any other preflight (another vendor's origin, the proxy's own pages, an unknown site) gets an
answer with no CORS headers, which the browser takes as a refusal.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp import web

from proxy.hosts import HostMap
from proxy.privacy import VENDOR_METHODS

# How long the browser may keep the answer (seconds); it is the same for every patron.
MAX_AGE = "600"
# Header names as the browser lists them: tokens (RFC 9110 5.6.2) separated by commas.
_HEADER_LIST = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z, ]*")


def is_preflight(request: web.Request) -> bool:
    """An OPTIONS request a browser sends to ask before a cross-origin call (Fetch, CORS)."""
    return "Origin" in request.headers and "Access-Control-Request-Method" in request.headers


def answer_preflight(request: web.Request, hosts: HostMap, vendor_host: str) -> web.Response:
    """204, with the CORS headers allowing the call when the page's origin is a mapped host of
    the same vendor as `vendor_host`, without them otherwise."""
    resp = web.Response(status=204, headers={"Vary": "Origin", "Cache-Control": "no-store"})
    origin = request.headers["Origin"]
    if not _same_vendor(origin, hosts, vendor_host):
        return resp
    resp.headers["Access-Control-Allow-Origin"] = origin
    resp.headers["Access-Control-Allow-Credentials"] = "true"
    method = request.headers["Access-Control-Request-Method"]
    if method in VENDOR_METHODS:
        resp.headers["Access-Control-Allow-Methods"] = method
    asked = request.headers.get("Access-Control-Request-Headers", "")
    if asked and _HEADER_LIST.fullmatch(asked):
        resp.headers["Access-Control-Allow-Headers"] = asked
    resp.headers["Access-Control-Max-Age"] = MAX_AGE
    return resp


def _same_vendor(origin: str, hosts: HostMap, vendor_host: str) -> bool:
    """Whether `origin` is exactly the mapped origin of a host of `vendor_host`'s vendor."""
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    origin_host = hosts.vendor_host_from_request(netloc) if netloc else None
    if origin_host is None or hosts.mapped_origin(origin_host) != origin.lower():
        return False
    return hosts.vendor_for_host(origin_host) == hosts.vendor_for_host(vendor_host)
