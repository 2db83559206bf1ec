"""Check a vendor's saved start page: third-party hosts, known trackers and cookies it would set.

The page is a saved copy (plain HTML, or a whole `curl -i` response whose Set-Cookie headers are
kept and whose gzip/deflate/br body is decoded), so no vendor is contacted; known trackers come
from the shipped list proxy/data/trackers.txt, and how long each cookie would last is read by
proxy.compliance_cookies.

The page is read as the browser reads it, with its own broader reading than the rewriter's per-page
count of blocked hosts (`Rewriter.third_party_hosts`, on the proxy's hot path, which it adds to):
character references decoded, every loading attribute (`ping`, `imagesrcset`, `data-src` …),
`<style>` and `style` text (`url()` and `@import "…"`), scripts with escaped slashes (`\\/`)
unescaped, event handler attributes and `javascript:` URLs as scripts, and scripts told from data
blocks by their type. Where a page spells a load the reading cannot follow, a listed tracker's host
still counts wherever a script or data block names it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

from proxy.compliance_cookies import LASTING, UNREADABLE, cookie_lifetime, script_cookies
from proxy.compliance_model import CRITICAL, FAIL, PASS, UNKNOWN, WARNING, Check
from proxy.config import Config, VendorConfig
from proxy.content_coding import CorruptBody, UnsupportedEncoding, decoder_for
from proxy.errors import ProxyError
from proxy.hosts import is_valid_hostname
from proxy.navigation import HOST_CHAR, lookup_host
from proxy.rewrite import JAVASCRIPT_TYPES


class PageUnreadable(ProxyError):
    """A saved page whose body cannot be read (an encoding that cannot be undone)."""


@dataclass(frozen=True)
class PageSource:
    """A vendor start page: HTML, plus its Set-Cookie headers when it was saved with them."""

    name: str
    html: bytes
    set_cookies: tuple[str, ...] | None  # None: saved without headers, so cookies are unknown


_HEAD_END = re.compile(rb"\r?\n\r?\n")


def read_page(path: Path) -> PageSource:
    """A saved page: plain HTML, or a whole HTTP response (`curl -i`) whose headers are kept.

    A response saved with the browser's Accept-Encoding (devtools' "copy as cURL") has a
    compressed body: it is decoded as the browser would. One that cannot be decoded raises
    PageUnreadable, never reads as a page with nothing on it."""
    data = path.read_bytes()
    if not data.startswith(b"HTTP/"):
        return PageSource(path.name, data, None)
    # `curl -i -L` saves every response of a redirect chain (and a proxy's CONNECT answer)
    # before the page: the page's own headers are the last block's, and the cookies of every
    # hop are ones the browser would keep.
    heads: list[list[bytes]] = []
    body = data
    while body.startswith(b"HTTP/"):
        end = _HEAD_END.search(body)
        head, body = (body, b"") if end is None else (body[: end.start()], body[end.end() :])
        heads.append(head.replace(b"\r\n", b"\n").split(b"\n")[1:])
    lines = heads[-1]
    cookies = tuple(
        line.split(b":", 1)[1].strip().decode("latin-1")
        for hop in heads
        for line in hop
        if line.lower().startswith(b"set-cookie:")
    )
    codings = ", ".join(
        line.split(b":", 1)[1].strip().decode("latin-1")
        for line in lines
        if line.lower().startswith(b"content-encoding:")
    )
    if codings:
        try:
            decoder = decoder_for(codings)
            body = b"".join([*decoder.feed(body), *decoder.finish()])
        except (UnsupportedEncoding, CorruptBody) as exc:
            raise PageUnreadable(
                f"{path.name}: its body is {codings}-encoded and cannot be decoded ({exc}); "
                "save it again without Accept-Encoding (curl -i URL)"
            ) from exc
    return PageSource(path.name, body, cookies)


def load_trackers() -> tuple[str, ...]:
    """The shipped tracker host list (proxy/data/trackers.txt)."""
    text = (resources.files("proxy") / "data" / "trackers.txt").read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return tuple(line for line in lines if line)


def tracker_for(host: str, trackers: Iterable[str]) -> str | None:
    """The tracker list entry that covers `host` (the host itself or a parent domain), if any."""
    return next((t for t in trackers if host == t or host.endswith("." + t)), None)


# Script types the browser runs (HTML's JavaScript MIME type essences, plus `module`); any other
# type is a data block the browser never runs.
_RUN_TYPES = JAVASCRIPT_TYPES | {"", "module"}
# Data blocks whose URLs the browser itself fetches: an import map names the modules scripts
# import, speculation rules the pages it prefetches or prerenders.
_LOADING_DATA = frozenset({"importmap", "speculationrules"})
# Linked data: its URLs are identifiers (schema.org's vocabulary, `sameAs` profiles), never
# fetched by the browser or, in practice, by the page's scripts.
_LINKED_DATA = frozenset({"application/ld+json"})
# Attributes whose URL the browser loads, follows or posts to (`ping` on every click). A name
# such as `data-src` (lazy loaders) counts too: the page's script copies it into `src`.
_URL_ATTRIBUTE = re.compile(
    r"(?:^|[-:])(?:src|href|action|formaction|poster|data|background|srcset|imagesrcset|ping"
    r"|manifest|codebase|archive|lowsrc|dynsrc)$"
)


@dataclass
class _Page:
    """What the browser would run or load, read from a page's markup."""

    scripts: list[str]  # script the browser runs: <script>, on* handlers, javascript: URLs
    loading_data: list[str]  # import maps, speculation rules: data whose URLs are fetched
    data: list[str]  # other data blocks (application/json, text/template …) scripts may read
    styles: list[str]  # <style> text and style attributes
    urls: list[str]  # URL attribute values


class _PageReader(HTMLParser):
    """A page read as the browser reads it: character references decoded, scripts told apart
    from data blocks by their type, event handler attributes read as the scripts they are."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = _Page([], [], [], [], [])
        self._into: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._into = None
        for name, value in attrs:
            if value is None:
                continue
            if name.startswith("on"):
                self.page.scripts.append(value)
            elif name == "style":
                self.page.styles.append(value)
            elif _URL_ATTRIBUTE.search(name):
                self.page.urls.append(value)
                if value.strip().lower().startswith("javascript:"):
                    self.page.scripts.append(value.strip()[len("javascript:") :])
        if tag == "style":
            self._into = self.page.styles
        elif tag == "script":
            kind = (dict(attrs).get("type") or "").split(";")[0].strip().lower()
            if kind in _RUN_TYPES:
                self._into = self.page.scripts
            elif kind in _LOADING_DATA:
                self._into = self.page.loading_data
            elif kind not in _LINKED_DATA:
                self._into = self.page.data

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self._into = None

    def handle_endtag(self, tag: str) -> None:
        self._into = None

    def handle_data(self, data: str) -> None:
        if self._into is not None:
            self._into.append(data)


def _read(html: bytes) -> _Page:
    reader = _PageReader()
    reader.feed(html.decode("utf-8", "replace"))
    reader.close()
    return reader.page


def _script_texts(html: bytes) -> list[str]:
    """The script the browser would run: <script> elements and event handler attributes."""
    return _read(html).scripts


# JSON and JavaScript may escape `/` (`https:\/\/host`, json_encode's default, or `\u002F`).
_ESCAPED_SLASH = re.compile(r"\\(?:/|u002[fF]|x2[fF])")
# Host names in any script (`trück.example` whole, not `tr`): a letter or digit, then letters,
# digits, combining marks, `-` and dots (`navigation.HOST_CHAR`), compared as `lookup_host`.
_NAME = r"[^\W_]" + HOST_CHAR + r"*\.[^\W\d_]{2,}"
_URL_IN_SCRIPT = re.compile(r"""["'`]\s*(?:https?:)?//(""" + _NAME + ")", re.I)
# A string that starts with a host, or a host fragment: `'.google-analytics.com/ga.js'`, which a
# snippet appends to `'https://ssl'` or `'http://www'`. Reported only for a listed tracker.
_HOST_IN_STRING = re.compile(
    r"""["'`]\s*(?:(?:https?:)?//|\.)?(""" + _NAME + r""")(?=[/"'`:?#]|$)""", re.I
)
_URL_IN_ATTRIBUTE = re.compile(r"(?:^|[\s,])(?:https?:)?//(" + HOST_CHAR + "+)", re.I)
# url(…) in any quoting, and any CSS string that is an absolute URL (`@import "https://…"`,
# `image-set("https://…" 1x)`).
_URL_IN_STYLE = re.compile(r"""(?:url\(\s*["']?|["'])\s*(?:https?:)?//(""" + HOST_CHAR + "+)", re.I)


def page_third_parties(config: Config, html: bytes, trackers: Iterable[str] = ()) -> list[str]:
    """Hosts outside the proxy that the page would load or link: from markup, styles, inline
    scripts and the data blocks the browser fetches from (import maps, speculation rules). From
    other data blocks (JSON a script may read, templates it may render), and from host fragments
    a script pieces together, only hosts on the tracker list are reported."""
    from proxy.rewrite import Rewriter

    trackers = tuple(trackers)
    hosts = set(Rewriter.from_config(config).third_party_hosts(html))
    host_map = config.host_map()
    page = _read(html)

    def add(found: Iterable[str], *, listed_only: bool = False) -> None:
        for raw in found:
            host = lookup_host(raw)
            ours = host == host_map.public_host or host.endswith("." + host_map.public_host)
            if not is_valid_hostname(host) or ours or host_map.vendor_for_host(host) is not None:
                continue
            if not listed_only or tracker_for(host, trackers):
                hosts.add(host)

    for value in page.urls:
        add(m.group(1) for m in _URL_IN_ATTRIBUTE.finditer(value.strip()))
    for text in page.styles:
        add(m.group(1) for m in _URL_IN_STYLE.finditer(_ESCAPED_SLASH.sub("/", text)))
    for text in page.scripts + page.loading_data:
        text = _ESCAPED_SLASH.sub("/", text)
        add(m.group(1) for m in _URL_IN_SCRIPT.finditer(text))
        add((m.group(1) for m in _HOST_IN_STRING.finditer(text)), listed_only=True)
    for text in page.data:
        text = _ESCAPED_SLASH.sub("/", text)
        add((m.group(1) for m in _HOST_IN_STRING.finditer(text)), listed_only=True)
    return sorted(hosts)


def check_page(
    v: VendorConfig, config: Config, page: PageSource, trackers: Iterable[str]
) -> list[Check]:
    """What a vendor start page would load and set in the patron's browser, and what the shield stops."""
    trackers = tuple(trackers)
    shield = v.third_party != "allow"
    fate = "blocked by the tracker shield" if shield else "would load (shield off)"
    hosts = page_third_parties(config, page.html, trackers)
    known = [(h, t) for h in hosts if (t := tracker_for(h, trackers))]
    source = f"page {page.name}"
    checks = [
        Check(
            "page.third_party",
            WARNING,
            FAIL if hosts and not shield else PASS,
            f"The page refers to {len(hosts)} third-party host(s); "
            + ("the shield blocks them." if shield else "they would load in the patron's browser.")
            if hosts
            else "The page loads nothing from third parties.",
            "; ".join(f"{h}: {fate}" for h in hosts) or source,
        ),
        Check(
            "page.trackers",
            CRITICAL,
            FAIL if known and not shield else PASS,
            (
                f"Known tracker(s) on the page: {', '.join(h for h, _ in known)}; "
                + ("blocked by the tracker shield." if shield else "they would load.")
            )
            if known
            else "No known tracker on the page.",
            "; ".join(f"{h} (listed as {t}): {fate}" for h, t in known)
            or f"{source}; {len(trackers)} tracker hosts checked",
        ),
    ]
    script = [c for text in _script_texts(page.html) for c in script_cookies(text)]
    kinds = {c.lifetime.kind for c in script}
    described = [f"{c.name} ({c.lifetime.words}, set by script in the browser)" for c in script]
    for header in page.set_cookies or ():
        name = header.split("=", 1)[0].strip()
        life = cookie_lifetime(header).words
        described.append(f"{name} ({life}, Set-Cookie: kept in the proxy's session jar)")
    headerless = "A page saved without headers cannot show its Set-Cookie."
    if LASTING in kinds:
        result, message = FAIL, "The page's scripts store lasting cookies in the patron's browser."
    elif UNREADABLE in kinds:
        result = UNKNOWN
        message = (
            "A script on the page sets a cookie whose lifetime it works out as the page runs; "
            "read the script to see whether the cookie outlasts the visit."
            + (f" {headerless}" if page.set_cookies is None else "")
        )
    elif page.set_cookies is None:
        result, message = UNKNOWN, headerless
    else:
        result, message = PASS, "The page sets no lasting cookie in the patron's browser."
    checks.append(Check("page.cookies", WARNING, result, message, "; ".join(described) or source))
    return checks
