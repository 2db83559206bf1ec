"""Test harness: recording vendors, temporary configs and a driven proxy (real HTTP, real slapd)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.config import Config, load_config
from proxy.hosts import map_label
from tests import ports


def free_port() -> int:
    """A loopback port nothing listens on (drawn below the kernel's ephemeral range)."""
    return ports.free_port()


@dataclass
class Recorded:
    method: str
    path_qs: str
    headers: list[tuple[str, str]]
    body: bytes
    host: str

    def raw(self) -> bytes:
        head = f"{self.method} {self.path_qs}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in self.headers
        )
        return head.encode() + b"\r\n" + self.body


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RecordingVendor:
    """An aiohttp server standing in for a vendor; records every request it receives."""

    host: str  # the vendor host name it plays (e.g. www.vendor-one.test)
    requests: list[Recorded] = field(default_factory=list)
    routes: dict[str, Handler] = field(default_factory=dict)
    connections: int = 0
    server: TestServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port

    @property
    def origin(self) -> str:
        return f"http://{self.host}"

    def all_bytes(self) -> bytes:
        return b"\n".join(r.raw() for r in self.requests)

    async def start(self) -> None:
        async def record(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            self.requests.append(
                Recorded(
                    request.method,
                    request.path_qs,
                    list(request.headers.items()),
                    body,
                    request.host,
                )
            )
            handler = self.routes.get(request.path)
            if handler is not None:
                return await handler(request)
            return web.Response(
                text=f"<html><body><h1>vendor {self.host}</h1><a href='http://{self.host}/next'>next</a></body></html>",
                content_type="text/html",
            )

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)

        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


class SlowRoute:
    """A vendor route that answers after `delay_s`, counting the requests it holds at once."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.now = 0
        self.most = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.now -= 1
        return web.Response(body=b"ok", content_type="application/octet-stream")


def vendor_toml(
    vendor_id: str,
    vendor: RecordingVendor,
    *,
    auth: str = "assertion",
    title: str | None = None,
    extra: str = "",
    hosts: list[str] | None = None,
) -> str:
    hosts_list = hosts or [vendor.host]
    return textwrap.dedent(
        f"""\
        id = "{vendor_id}"
        title = "{title or vendor_id.title() + " Database"}"
        origin = "{vendor.origin}"
        hosts = [{", ".join(f'"{h}"' for h in hosts_list)}]
        auth = "{auth}"
        connect_to = "127.0.0.1:{vendor.port}"
        """
    ) + textwrap.dedent(extra)


def write_secret(path: Path, value: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return path


def write_config(
    root: Path,
    *,
    port: int,
    directory: str,
    vendors: dict[str, str],
    session: str = 'store = "memory"',
    extra: str = "",
) -> Path:
    (root / "vendors").mkdir(parents=True, exist_ok=True)
    for vid, text in vendors.items():
        vfile = root / "vendors" / f"{vid}.toml"
        vfile.write_text(text)
        if 'auth = "referer"' in text:
            vfile.chmod(0o600)  # its referer URL is a shared secret (compliance warns unless 0600)
    cfg = root / "proxy.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""\
            [server]
            listen = "127.0.0.1:{port}"
            public_url = "http://proxy.localhost:{port}"

            [library]
            name = "Weston Public Library"
            scope = "westonlibrary.org"

            [directory]
            """
        )
        + textwrap.dedent(directory)
        + "\n[session]\n"
        + textwrap.dedent(session)
        + '\n\n[keys]\ndir = "state/keys"\n\n[vendors]\ndir = "vendors"\n'
        + textwrap.dedent(extra)
    )
    return cfg


def ldap_directory(
    slapd: Any, root: Path, *, urls: list[str] | None = None, timeout_s: float = 2.0
) -> str:
    write_secret(root / "secrets" / "ldap-bind-password", slapd.bind_password)
    url_list = ", ".join(f'"{u}"' for u in (urls or [slapd.url]))
    return f"""\
kind = "ldap"
urls = [{url_list}]
bind_dn = "{slapd.bind_dn}"
bind_password_file = "secrets/ldap-bind-password"
base_dn = "{slapd.patrons_base}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
eligible_filter = "(!(description=expired))"
timeout_s = {timeout_s}
"""


CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')


class ProxyDriver:
    """Drives a running proxy over real HTTP, setting Host headers the way a browser would."""

    def __init__(self, client: TestClient[Any, Any], config: Config) -> None:
        self.client = client
        self.config = config
        self.port = config.listen_addr[1]
        self.public = f"proxy.localhost:{self.port}"
        self.sid: str | None = None

    def mapped(self, vendor_host: str) -> str:
        return f"{map_label(vendor_host)}.proxy.localhost:{self.port}"

    async def login_form(self, url: str = "") -> tuple[str, str]:
        """GET /login; returns (csrf token from the form, page html)."""
        params = {"url": url} if url else {}
        r = await self.client.get("/login", params=params, headers={"Host": self.public})
        html = await r.text()
        m = CSRF_RE.search(html)
        assert m, "login form has a CSRF field"
        return m.group(1), html

    async def login(
        self, card: str, pin: str, url: str = "", *, cookies: dict[str, str] | None = None
    ) -> Any:
        csrf, _ = await self.login_form(url)
        data = {"username": card, "password": pin, "url": url, "csrf": csrf}
        r = await self.client.post(
            "/login",
            data=data,
            headers={"Host": self.public},
            allow_redirects=False,
            cookies=cookies,
        )
        morsel = r.cookies.get(self.config.server.cookie_name)
        if morsel is not None:
            self.sid = morsel.value
        return r

    def session_id(self) -> str | None:
        """The session id of the last successful login (the browser's cookie)."""
        return self.sid

    async def logins_at_once(self, attempts: list[tuple[str, str]]) -> list[int]:
        """POST /login for every (card, PIN) of `attempts` at the same time, with one sign-in
        form's token (as a page's many tabs, or a script, would): each answer's status."""
        csrf, _ = await self.login_form()

        async def one(card: str, pin: str) -> int:
            r = await self.client.post(
                "/login",
                data={"username": card, "password": pin, "url": "", "csrf": csrf},
                headers={"Host": self.public},
                allow_redirects=False,
            )
            await r.read()
            return r.status

        return list(await asyncio.gather(*(one(c, p) for c, p in attempts)))

    async def get_vendor(
        self, vendor_host: str, path: str = "/", *, sid: str | None = None, **kw: Any
    ) -> Any:
        headers = dict(kw.pop("headers", {}))
        headers["Host"] = self.mapped(vendor_host)
        sid = sid if sid is not None else self.session_id()
        if sid:
            headers["Cookie"] = f"{self.config.server.cookie_name}={sid}" + (
                "; " + headers.pop("Cookie") if "Cookie" in headers else ""
            )
        return await self.client.request(
            kw.pop("method", "GET"), path, headers=headers, allow_redirects=False, **kw
        )

    async def own(self, method: str, path: str, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        headers["Host"] = self.public
        if self.sid and "Cookie" not in headers:
            headers["Cookie"] = f"{self.config.server.cookie_name}={self.sid}"
        return await self.client.request(method, path, headers=headers, allow_redirects=False, **kw)


async def start_proxy(
    config_path: Path,
    log_stream: io.StringIO | None = None,
    *,
    stats_clock: Callable[[], Any] | None = None,
) -> tuple[TestClient[Any, Any], ProxyDriver]:
    """Start a proxy from `config_path`; `stats_clock` (a UTC datetime source) dates its usage
    counts instead of the wall clock, for tests that read a day's report back."""
    from proxy.cli import config_checks
    from proxy.logs import configure_logging
    from proxy.usage_stats import CLOCK

    config = load_config(config_path, extra_checks=config_checks())
    configure_logging("debug", "json", stream=log_stream or io.StringIO())
    app = create_app(config)
    if stats_clock is not None:
        app[CLOCK] = stats_clock
    from proxy.limits_http import server_limits

    server = TestServer(app, host="127.0.0.1", port=config.listen_addr[1])
    # TestServer takes server options in start_server(), not in its constructor.
    await server.start_server(**server_limits(config))
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    return client, ProxyDriver(client, config)


async def one_vendor_proxy(
    tmp_path: Path,
    port: int,
    slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    host: str,
    *,
    edit: Callable[[str], str] | None = None,
) -> tuple[ProxyDriver, RecordingVendor]:
    """The common end-to-end set-up: real slapd, one recording assertion vendor (id "one"), a
    running proxy; `edit` rewrites the main config's text before the proxy reads it."""
    vendor: RecordingVendor = await vendor_factory(host)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path),
        vendors={"one": vendor_toml("one", vendor)},
    )
    if edit is not None:
        cfg.write_text(edit(cfg.read_text()))
    driver: ProxyDriver = await proxy_factory(cfg)
    return driver, vendor


async def sign_in_through_form(
    page: Any, own: str, card: str | None = None, pin: str | None = None
) -> None:
    """Through the real sign-in form at `own` (the proxy's origin), as a patron would (the
    canary patron unless `card` and `pin` are given); returns once the menu is shown."""
    from tests.canary import CANARY

    await page.goto(f"{own}/login")
    await page.fill("input[name=username]", card or CANARY.uid)
    await page.fill("input[name=password]", pin or CANARY.password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{own}/menu")


# A vendor page that keeps a "recent search" in local storage, and one that shows it: what a
# database's page leaves in the browser on a shared computer.
STORE_PAGE = """<!doctype html><title>search</title><p id="out">saving</p>
<script>
localStorage.setItem("recent", "canary-search-" + location.hostname);
document.getElementById("out").textContent = "saved";
</script>"""

RECALL_PAGE = """<!doctype html><title>recall</title><p id="out"></p>
<script>
document.getElementById("out").textContent = String(localStorage.getItem("recent"));
</script>"""


def html_page(text: str) -> Handler:
    """A vendor route answering `text` as an HTML page."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text=text, content_type="text/html")

    return handler
