"""Check a vendor's saved start page: third-party hosts, known trackers and cookies it would set.

The page is a saved copy (plain HTML, or a whole `curl -i` response whose Set-Cookie headers are
kept), so no vendor is contacted; known trackers come from the shipped list proxy/data/trackers.txt,
and how long each cookie would last is read by proxy.compliance_cookies.
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
from proxy.hosts import is_valid_hostname


@dataclass(frozen=True)
class PageSource:
    """A vendor start page: HTML, plus its Set-Cookie headers when it was saved with them."""

    name: str
    html: bytes
    set_cookies: tuple[str, ...] | None  # None: saved without headers, so cookies are unknown


def read_page(path: Path) -> PageSource:
    """A saved page: plain HTML, or a whole HTTP response (`curl -i`) whose headers are kept."""
    data = path.read_bytes()
    if not data.startswith(b"HTTP/"):
        return PageSource(path.name, data, None)
    head, _, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    cookies = tuple(
        line.split(b":", 1)[1].strip().decode("latin-1")
        for line in head.split(b"\n")[1:]
        if line.lower().startswith(b"set-cookie:")
    )
    return PageSource(path.name, body, cookies)


def load_trackers() -> tuple[str, ...]:
    """The shipped tracker host list (proxy/data/trackers.txt)."""
    text = (resources.files("proxy") / "data" / "trackers.txt").read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return tuple(line for line in lines if line)


def tracker_for(host: str, trackers: Iterable[str]) -> str | None:
    """The tracker list entry that covers `host` (the host itself or a parent domain), if any."""
    return next((t for t in trackers if host == t or host.endswith("." + t)), None)


class _Scripts(HTMLParser):
    """Inline script text, where trackers are usually loaded from rather than from attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._inside = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.texts.append(data)


def _script_texts(html: bytes) -> list[str]:
    parser = _Scripts()
    parser.feed(html.decode("utf-8", "replace"))
    return parser.texts


_URL_IN_SCRIPT = re.compile(r"""["'`](?:https?:)?//([a-z0-9][a-z0-9.-]*\.[a-z]{2,})""", re.I)


def page_third_parties(config: Config, html: bytes) -> list[str]:
    """Hosts outside the proxy that the page would load or link, from markup and inline scripts."""
    from proxy.rewrite import Rewriter

    hosts = set(Rewriter.from_config(config).third_party_hosts(html))
    host_map = config.host_map()
    for text in _script_texts(html):
        for m in _URL_IN_SCRIPT.finditer(text):
            host = m.group(1).lower().rstrip(".")
            ours = host == host_map.public_host or host.endswith("." + host_map.public_host)
            if is_valid_hostname(host) and not ours and host_map.vendor_for_host(host) is None:
                hosts.add(host)
    return sorted(hosts)


def check_page(
    v: VendorConfig, config: Config, page: PageSource, trackers: Iterable[str]
) -> list[Check]:
    """What a vendor start page would load and set in the patron's browser, and what the shield stops."""
    trackers = tuple(trackers)
    shield = v.third_party != "allow"
    fate = "blocked by the tracker shield" if shield else "would load (shield off)"
    hosts = page_third_parties(config, page.html)
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
