"""The bundled demo vendor: a tiny database site that shows, as a page, exactly what it received.

IT staff use it as the "vendor's-eye view": every header, cookie and query parameter that reached
the vendor, and the decoded assertion with its verification result. Its links are absolute URLs on
its own host, so it also shows the proxy's link rewriting and cookie jar at work.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

import jwt
from aiohttp import web

DEMO_HOST = "demo.vendor.test"
JwksSource = Callable[[], dict[str, Any]]
JWKS: web.AppKey[JwksSource] = web.AppKey("jwks")
HEADER: web.AppKey[str] = web.AppKey("assertion_header", str)
ORIGIN = web.AppKey("origin", str)
AUDIENCE = web.AppKey("audience", str)
# A minimal valid PDF, for showing full-text downloads.
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
    b"3 0 obj<</Type/Page/MediaBox[0 0 200 200]/Parent 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


def _verify(token: str, jwks: dict[str, Any], audience: str) -> tuple[dict[str, Any], str]:
    try:
        header = jwt.get_unverified_header(token)
        key = next(k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid"))
        claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["EdDSA"], audience=audience)
        return claims, "signature verified against the library's published keys"
    except StopIteration:
        return {}, "NOT verified: unknown key id"
    except jwt.PyJWTError as exc:
        return {}, f"NOT verified: {type(exc).__name__}"


def _page(title: str, body: str) -> web.Response:
    doc = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2rem .5rem;text-align:left;"
        "vertical-align:top;word-break:break-all}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return web.Response(text=doc, content_type="text/html")


async def eye_view(request: web.Request) -> web.StreamResponse:
    origin = request.app[ORIGIN]
    rows = "".join(
        f"<tr><th scope='row'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in request.headers.items()
    )
    token = request.headers.get(request.app[HEADER], "")
    if token:
        claims, verdict = _verify(token, request.app[JWKS](), request.app[AUDIENCE])
        try:
            shown = claims or jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            shown = {"error": "the assertion header is not a JWT"}
        assertion = (
            f"<p>{html.escape(verdict)}</p><pre>{html.escape(json.dumps(shown, indent=2))}</pre>"
        )
    else:
        assertion = (
            "<p>No assertion was received (an IP-authenticated vendor gets nothing at all).</p>"
        )
    body = (
        "<p>This page is the demo database. It shows exactly what your library's proxy sent to it.</p>"
        f"<h2>Request</h2><p><code>{html.escape(request.method)} {html.escape(request.path_qs)}</code></p>"
        f"<h2>Headers received</h2><table>{rows}</table>"
        f"<h2>Assertion</h2>{assertion}"
        "<h2>Try it</h2>"
        f"<form action='{origin}/search' method='get'><label>Search <input name='q'></label> <button>Search</button></form>"
        f"<p><a href='{origin}/article/1.pdf'>Download a full-text PDF</a> · <a href='{origin}/'>Reload this view</a></p>"
    )
    resp = _page("Demo database — vendor's-eye view", body)
    resp.set_cookie("demo_vendor_session", "abc123", path="/", httponly=True)
    return resp


async def search(request: web.Request) -> web.StreamResponse:
    origin = request.app[ORIGIN]
    q = request.query.get("q", "")
    items = "".join(
        f"<li><a href='{origin}/article/{i}.pdf'>Result {i} for {html.escape(q)}</a></li>"
        for i in (1, 2, 3)
    )
    return _page(
        "Search results",
        f"<ul>{items}</ul><p><a href='{origin}/'>Back to the vendor's-eye view</a></p>",
    )


async def article(request: web.Request) -> web.StreamResponse:
    return web.Response(body=PDF, content_type="application/pdf")


def create_demo_vendor_app(
    *,
    origin: str,
    audience: str,
    jwks: Callable[[], dict[str, Any]],
    header: str = "X-Patron-Assertion",
) -> web.Application:
    app = web.Application()
    app[JWKS] = jwks
    app[HEADER] = header
    app[ORIGIN] = origin.rstrip("/")
    app[AUDIENCE] = audience
    app.router.add_get("/", eye_view)
    app.router.add_get("/search", search)
    app.router.add_get("/article/{n}.pdf", article)
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the demo vendor on its own (docker-compose), verifying assertions with the proxy's JWKS.

    A real vendor knows only the library's public JWKS URL, so this fetches it over HTTP (and again
    every minute, to follow key rotation) instead of reading the proxy's key directory.
    """
    import argparse
    import asyncio
    from collections.abc import AsyncIterator

    import aiohttp

    from proxy.tasks import stop

    p = argparse.ArgumentParser(prog="python -m proxy.demo_vendor")
    p.add_argument("--listen", default="0.0.0.0:8081")
    p.add_argument("--origin", default=f"http://{DEMO_HOST}")
    p.add_argument("--audience", default="demo")
    p.add_argument("--jwks-url", required=True, help="the proxy's /.well-known/jwks.json")
    p.add_argument("--jwks-host", default="", help="Host header for the JWKS request")
    args = p.parse_args(argv)
    latest: dict[str, Any] = {"keys": []}

    async def refresh(app: web.Application) -> AsyncIterator[None]:
        headers = {"Host": args.jwks_host} if args.jwks_host else {}

        async def loop() -> None:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                while True:
                    try:
                        async with http.get(args.jwks_url, headers=headers) as r:
                            if r.status == 200:
                                latest.update(await r.json())
                    except (aiohttp.ClientError, TimeoutError, ValueError):
                        pass  # the proxy may start after us; the page says "NOT verified"
                    await asyncio.sleep(60 if latest["keys"] else 2)

        task = asyncio.create_task(loop())
        yield
        await stop(task)

    app = create_demo_vendor_app(origin=args.origin, audience=args.audience, jwks=lambda: latest)
    app.cleanup_ctx.append(refresh)
    host, _, port = args.listen.rpartition(":")
    web.run_app(app, host=host, port=int(port), access_log=None, print=None)


if __name__ == "__main__":
    main()
