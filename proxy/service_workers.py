"""Service-worker scripts on a vendor's mapped hosts, refused by the proxy itself.

A service worker outlives the page and the session: it answers the browser's requests for its
host (navigations too) from whatever it builds or caches, so the proxy is never asked. Its own
responses carry no tracker shield (P3: a page it makes loads from third parties straight from
the patron's address), and a cache-first worker shows the last patron's pages to the next person
after the session has expired or the browser was closed, before the session gate or the
`Clear-Site-Data` of a dead session or a session's first page can run (P4, P5). No header the
proxy could add to the vendor's script closes that, so none registers: a request for a
service-worker script is answered here, with no session and without contacting the vendor.

The answer is 404. The Service Worker spec's Update algorithm rejects a registration (and an
update) whose script response is not an OK status, so `navigator.serviceWorker.register()`
fails and the vendor's page goes on without offline support. A worker a browser profile already
holds from before (a proxy without this refusal) is not removed by it: Chromium keeps a
registration whose update check is answered 404 or 403, and it goes on controlling its pages
(checked by hand in Chromium 156); the `Clear-Site-Data` of a session's first page on the host,
when a navigation reaches the proxy, is what removes it.

Dedicated and shared workers stay allowed: they die with their pages, intercept no requests,
and run under the shield their scripts carry (`proxy.forward`).
"""

from __future__ import annotations

from aiohttp import web

_REFUSED_STATUS = 404
_BODY = "Service workers are not available through the library's proxy.\n"


def is_service_worker_script(request: web.Request) -> bool:
    """Whether the browser asks for a service worker's script (to register or update it):
    Chromium and Firefox send `Service-Worker: script` on registration and on every update
    check, and Fetch Metadata's destination is `serviceworker` for the same requests."""
    headers = request.headers
    return (
        headers.get("Service-Worker", "").strip().lower() == "script"
        or headers.get("Sec-Fetch-Dest", "").strip().lower() == "serviceworker"
    )


def refuse_service_worker() -> web.Response:
    """The proxy's own answer to a service-worker script request: 404, never cached, not a
    script a browser could run."""
    return web.Response(
        status=_REFUSED_STATUS,
        text=_BODY,
        content_type="text/plain",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )
