"""What a response's Content-Security-Policy calls for, and which hosts a page refers to.

Three pure functions on a `HostMap` deal with Content-Security-Policy:
- `rewrite_csp`: vendor host sources in a vendor's CSP become mapped hosts (a `ws:`/`wss:`
  source takes the public scheme's WebSocket twin, any other scheme the public one). A wildcard
  source `*.vendor.com` has no exact mapped form (every mapped host is one label under the public
  host), so it becomes `*.<public host>[:port]`, which admits only hosts the proxy serves. The
  original wildcard is kept as well when part of it is not proxied (an exact-only config,
  never_proxy).
  `report-uri` targets that are not proxied are dropped: reports carry page URLs and would go
  straight from the patron's browser to a third party.
- `shield_csp`: a second, independent policy that limits every fetch to the proxy's own hosts,
  so trackers the vendor embeds from unproxied hosts never load. CSP cannot stop a patron from
  following a link to another site (navigation), only loads.
- `third_party_hosts`: unproxied hosts a page refers to, for the compliance report and stats.

`compiled_scan` is the compiled scans module (proxy/_scan.pyx) or None; the rewriter's modules
read it from here at call time, so one switch (tests set it to None) picks the Python paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from proxy.hosts import HostMap, is_valid_hostname, socket_scheme
from proxy.navigation import page_host, to_vendor_host

try:  # the compiled scans (proxy/_scan.pyx); without them the same answers come slower
    from proxy import _scan
except ImportError:  # no C compiler at build: regex paths here, in rewrite.py and html_tags.py
    _scan = None  # type: ignore[assignment]
# The one place the rewriter's modules read it from (tests set it to None for the Python paths).
compiled_scan = _scan

_SOURCE = re.compile(
    r"^(?:(?P<scheme>[a-z][a-z0-9+.\-]*)://)?(?P<host>\*\.[a-z0-9.\-]+|[a-z0-9.\-]+)"
    r"(?::(?P<port>[0-9]+|\*))?(?P<path>/.*)?$",
    re.IGNORECASE,
)
# Attribute values and url() arguments that can load or link another origin.
_REF = re.compile(
    rb"""(?:\b(?:src|href|action|formaction|poster|data|background|srcset)\s*=\s*"""
    rb"""(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))|url\(\s*["']?\s*([^)"'\s]+)""",
    re.IGNORECASE,
)
# A host's bytes include every non-ASCII byte, so an international name (`trück.example`, the
# vendor's own `bücher.test`) is found whole and read as one (`navigation.page_host`), not cut at
# its first non-ASCII letter.
_ABS_HOST = re.compile(rb"(?:^|[\s,(])(?:https?:)?//([a-z0-9.\-\x80-\xff]+)", re.IGNORECASE)
# The host after any `//` in a page: a superset of what _ABS_HOST finds inside _REF values.
_ANY_HOST = re.compile(rb"//([a-z0-9.\-\x80-\xff]+)", re.IGNORECASE)


def _port_suffix(host_map: HostMap) -> str:
    return "" if host_map.public_port is None else f":{host_map.public_port}"


def _under(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def _wildcard_coverage(host_map: HostMap, domain: str) -> tuple[bool, bool]:
    """(does `*.domain` cover some proxied host, is every host it covers proxied)."""
    touches = full = False
    for pattern, _vendor in host_map.patterns:
        if pattern.startswith("*."):
            base = pattern[2:]
            touches = touches or _under(base, domain) or _under(domain, base)
            full = full or _under(domain, base)
        elif pattern.endswith("." + domain):
            touches = True
    never = (n[2:] if n.startswith("*.") else n for n in host_map.never_proxy)
    if any(_under(n, domain) or _under(domain, n) for n in never):
        full = False
    return touches, full


def _mapped_scheme(host_map: HostMap, scheme: str) -> str:
    """A mapped source's scheme: the public one, or its WebSocket twin for `ws`/`wss` sources."""
    if scheme.lower() in ("ws", "wss"):
        return socket_scheme(host_map.public_scheme)
    return host_map.public_scheme


def _rewrite_source(host_map: HostMap, token: str) -> list[str]:
    """The sources that replace one CSP source expression (usually just itself)."""
    m = _SOURCE.match(token)
    if token.startswith("'") or m is None or token.endswith(":"):
        return [token]  # keyword, nonce, hash, scheme-source: nothing host-bound
    scheme, host = m.group("scheme"), m.group("host").lower()
    head = f"{_mapped_scheme(host_map, scheme)}://" if scheme else ""
    port = _port_suffix(host_map)
    if host.startswith("*."):
        touches, full = _wildcard_coverage(host_map, host[2:])
        if not touches:
            return [token]
        mapped = f"{head}*.{host_map.public_host}{port}"
        return [mapped] if full else [token, mapped]
    if host_map.vendor_for_host(host) is None:
        return [token]
    return [f"{head}{host_map.to_mapped(host).split(':')[0]}{port}{m.group('path') or ''}"]


def _rewrite_directive(
    host_map: HostMap, rewrite_url: Callable[[str], str], directive: str
) -> str | None:
    tokens = directive.split()
    if not tokens:
        return None
    name, sources = tokens[0], tokens[1:]
    if name.lower() == "report-uri":
        # A report carries the page's whole URL (a patron's search in it): only targets on a
        # vendor's own hosts (mapped, so reports go through the proxy) or relative to the page
        # are kept. The target's own host decides: a third party's URL that merely carries a
        # vendor URL in its query is still a third party.
        kept = [t for t in (_report_target(host_map, rewrite_url, s) for s in sources) if t]
        return " ".join([name, *kept]) if kept else None
    out: list[str] = []
    for token in sources:
        for source in _rewrite_source(host_map, token):
            if source not in out:
                out.append(source)
    return " ".join([name, *out])


_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def _report_target(host_map: HostMap, rewrite_url: Callable[[str], str], url: str) -> str | None:
    """A report-uri target as the proxied page may keep it, or None (a third party's), read as
    the browser reads it (`navigation.to_vendor_host`: `\\\\tracker/x` names a host): a path
    stays on the page's own (mapped) host; an absolute target is kept only on a vendor's host,
    mapped, so reports go through the proxy."""
    found = to_vendor_host(url)
    if found is None:
        # The page's own host, or a scheme no report is sent to.
        return url if _URL_SCHEME.match(url.strip()) is None else None
    if host_map.vendor_for_host(found[0]) is None:
        return None
    mapped = rewrite_url(url)
    return mapped if mapped != url else None  # a spelling the URL scan does not map: not kept


def rewrite_csp(host_map: HostMap, rewrite_url: Callable[[str], str], value: str) -> str:
    """A vendor's Content-Security-Policy value with its vendor host sources mapped.

    `rewrite_url` maps absolute URLs (the Rewriter's `rewrite_text`); it is used for report-uri.
    Several policies in one value (comma-separated) are each rewritten.
    """
    policies = []
    for policy in value.split(","):
        directives = (_rewrite_directive(host_map, rewrite_url, d) for d in policy.split(";"))
        policies.append("; ".join(d for d in directives if d))
    return ", ".join(policies)


def shield_csp(host_map: HostMap, allow_third_party: bool) -> str | None:
    """A policy that lets a proxied page load only from the proxy's hosts; None when allowed.

    Every mapped host is a subdomain of the public host, so `*.<public host>` names them all
    without listing vendors; 'self' is the page's own mapped host. Inline and eval'd scripts
    stay allowed because vendor pages depend on them, and they cannot reach a third party.
    """
    if allow_third_party:
        return None
    netloc = host_map.public_netloc
    scheme = host_map.public_scheme
    ours = f"'self' {scheme}://*.{netloc} {scheme}://{netloc}"
    socket = f"{socket_scheme(scheme)}://*.{netloc}"
    directives = {
        "default-src": f"{ours} data: blob:",
        "script-src": f"{ours} 'unsafe-inline' 'unsafe-eval' data: blob:",
        "style-src": f"{ours} 'unsafe-inline' data: blob:",
        "img-src": f"{ours} data: blob:",
        "font-src": f"{ours} data: blob:",
        "connect-src": f"{ours} {socket} data: blob:",
        "frame-src": f"{ours} data: blob:",
        "media-src": f"{ours} data: blob:",
        "worker-src": f"{ours} data: blob:",
        "manifest-src": ours,
        "object-src": ours,
        "form-action": ours,
        "base-uri": ours,
    }
    return "; ".join(f"{name} {sources}" for name, sources in directives.items())


def is_third_party(host_map: HostMap, host: str) -> bool:
    """Whether a (lower-case) host is a valid name that is neither proxied nor the proxy's own."""
    ours = host == host_map.public_host or host.endswith("." + host_map.public_host)
    return is_valid_hostname(host) and not ours and host_map.vendor_for_host(host) is None


def third_party_hosts(
    html: bytes,
    third_party: Callable[[str], bool],
    unknown: Callable[[], re.Pattern[bytes]],
) -> set[str]:
    """Hosts of absolute and protocol-relative URLs in src/href/action/srcset/… and url() that
    are neither proxied nor the proxy's own. `third_party` is `is_third_party` for the host map,
    cached by the caller (the same hosts recur on every page); `unknown` gives
    `unknown_host_pattern(host_map)`, built once by the caller and only when the regex path needs
    it (it spells every configured host)."""
    # Every host the attribute scan can report follows a `//` somewhere in the page, and the
    # literal `//` search runs at memchr speed while the attribute scan tries every byte: when
    # no `//host` is third-party (most vendor pages), the answer is already known to be empty.
    if not _any_third_party(unknown, html, third_party):
        return set()
    found: set[str] = set()
    for ref in _REF.finditer(html):
        value = next(g for g in ref.groups() if g is not None)
        for m in _ABS_HOST.finditer(value.strip()):
            host = page_host(m.group(1))
            if third_party(host):
                found.add(host)
    return found


def _any_third_party(
    unknown: Callable[[], re.Pattern[bytes]], html: bytes, third_party: Callable[[str], bool]
) -> bool:
    """Whether any `//host` in `html` (as `_ANY_HOST` finds them) is third-party.

    The compiled scan collects the distinct hosts in one pass. Without it, the pattern `unknown`
    gives (`unknown_host_pattern`) skips, inside the regex engine, the hosts it knows are not third-party
    (configured exact hosts, wildcard subdomains when nothing is never_proxy, the proxy's own),
    so a vendor page costs one C-speed search instead of a list and a set of every `//host`.
    The hosts it does stop at are judged by `third_party`; after a few that are not, the rest of
    the page is judged the plain way (a page full of hosts the regex cannot vouch for).
    """
    if compiled_scan is not None:  # every distinct `//host`, in one compiled pass
        return any(third_party(page_host(h)) for h in compiled_scan.slash_hosts(html))
    pattern = unknown()
    pos = 0
    for _ in range(16):
        m = pattern.search(html, pos)
        if m is None:
            return False
        if third_party(page_host(m.group(1))):
            return True
        pos = m.end()
    hosts = set(_ANY_HOST.findall(html, pos))
    return any(third_party(page_host(h)) for h in hosts)


def unknown_host_pattern(host_map: HostMap) -> re.Pattern[bytes]:
    """`_ANY_HOST` with a negative lookahead for hosts that are certainly not third-party.

    Build it once per host map and keep it: it spells every configured host (a library's
    thousands take ~0.1 s to compile), and a HostMap is too large a cache key to hash per page."""
    exact = [h.encode() for h in host_map.exact_hosts if host_map.vendor_for_host(h) is not None]
    known = [_trie(exact)] if exact else []
    if not host_map.never_proxy and host_map.wildcard_suffixes:
        known.append(rb"[a-z0-9.\-]+" + _trie([s.encode() for s in host_map.wildcard_suffixes]))
    known.append(rb"(?:[a-z0-9.\-]*\.)?" + re.escape(host_map.public_host.encode()))
    whole = rb"(?:" + b"|".join(known) + rb")\.*(?![a-z0-9.\-\x80-\xff])"
    return re.compile(rb"//(?!" + whole + rb")([a-z0-9.\-\x80-\xff]+)", re.IGNORECASE)


def _trie(words: list[bytes]) -> bytes:
    """An alternation of literal words spelled as a trie, so the engine reads each byte once
    instead of trying every word in turn (`re` has no multi-literal search; a library with
    hundreds of databases has thousands of hosts)."""
    root: dict[int, Any] = {}
    for word in words:
        node = root
        for byte in word:
            node = node.setdefault(byte, {})
        node[-1] = {}  # a word ends here

    def spell(node: dict[int, Any]) -> bytes:
        alts = [re.escape(bytes([b])) + spell(child) for b, child in sorted(node.items()) if b >= 0]
        if not alts:
            return b""
        body = alts[0] if len(alts) == 1 else b"(?:" + b"|".join(alts) + b")"
        return b"(?:" + body + b")?" if -1 in node else body

    return spell(root)
