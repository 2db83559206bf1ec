"""Host mapping both ways (EZproxy proxy-by-hostname) and which vendor owns which host.

Vendor host `H` is served at `L.<public host>` with `L = H.replace("-", "--").replace(".", "-")`.
The mapping is injective: in `L`, a run of hyphens of even length 2k is k literal hyphens, and a
single hyphen (odd run) is a dot followed by the rest. DNS labels cannot start or end with a
hyphen, which keeps the decoding unambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

_HYPHEN_RUN = re.compile(r"-+")
# A hostname as vendors configure it: lowercase labels of letters, digits and hyphens.
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def is_valid_hostname(host: str) -> bool:
    """True for a plain DNS hostname (no port, no trailing dot, lowercase)."""
    return bool(_HOST_RE.match(host))


def socket_scheme(scheme: str) -> str:
    """The WebSocket scheme as secure as an HTTP one: `https` → `wss`, `http` → `ws`."""
    return "wss" if scheme.lower() == "https" else "ws"


def map_label(host: str) -> str:
    """The single DNS label that stands for vendor host `host` under the proxy's host."""
    return host.lower().replace("-", "--").replace(".", "-")


def unmap_label(label: str) -> str | None:
    """The vendor host that `label` stands for, or None when `label` is not a valid mapping."""

    def _run(match: re.Match[str]) -> str:
        n = len(match.group(0))
        return "-" * (n // 2) + ("." if n % 2 else "")

    if not label or label.startswith("-") or label.endswith("-"):
        return None
    host = _HYPHEN_RUN.sub(_run, label.lower())
    if not is_valid_hostname(host) or map_label(host) != label.lower():
        return None
    return host


def host_matches(pattern: str, host: str) -> bool:
    """Whole-label match: `*.x.com` matches any subdomain of x.com (not x.com itself)."""
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern


def _dot_suffixes(host: str) -> list[str]:
    """`a.b.c` → [".b.c", ".c"]: what `*.b.c` and `*.c` need to see (never the whole host,
    as `*.x.com` does not match `x.com` itself, nor `.x.com`)."""
    out = []
    i = host.find(".", 1)
    while i != -1:
        out.append(host[i:])
        i = host.find(".", i + 1)
    return out


@dataclass(frozen=True)
class HostMap:
    """Knows the proxy's public host and every vendor's host patterns, and maps between them.

    `public_host` has no port; `public_port` is the port in `public_url` (None when default).
    """

    public_scheme: str
    public_host: str
    public_port: int | None
    patterns: tuple[tuple[str, str], ...]  # (host pattern, vendor id), exact ones first
    never_proxy: tuple[str, ...] = ()
    _exact: dict[str, str] = field(init=False, repr=False, compare=False)
    _wild: dict[str, str] = field(init=False, repr=False, compare=False)
    _never_exact: set[str] = field(init=False, repr=False, compare=False)
    _never_wild: set[str] = field(init=False, repr=False, compare=False)
    _classify: Callable[[str], tuple[bool, str | None]] = field(
        init=False, repr=False, compare=False
    )

    @classmethod
    def build(
        cls,
        *,
        public_scheme: str,
        public_host: str,
        public_port: int | None,
        vendor_hosts: Iterable[tuple[str, Iterable[str]]],
        never_proxy: Iterable[str] = (),
    ) -> HostMap:
        exact: list[tuple[str, str]] = []
        wild: list[tuple[str, str]] = []
        for vendor_id, hosts in vendor_hosts:
            for pattern in hosts:
                (wild if pattern.startswith("*.") else exact).append((pattern.lower(), vendor_id))
        # Longest wildcard first so the most specific vendor wins.
        wild.sort(key=lambda item: -len(item[0]))
        return cls(
            public_scheme=public_scheme,
            public_host=public_host.lower(),
            public_port=public_port,
            patterns=tuple(exact + wild),
            never_proxy=tuple(p.lower() for p in never_proxy),
        )

    @property
    def public_netloc(self) -> str:
        return (
            self.public_host
            if self.public_port is None
            else f"{self.public_host}:{self.public_port}"
        )

    def __post_init__(self) -> None:
        # Indexes for vendor_for_host, which runs on every request and every rewritten URL: a
        # dict lookup per label instead of a pass over every pattern of every vendor (a library
        # with hundreds of databases has thousands of patterns). Same answers as the patterns
        # in order: exact first (first listed wins), then the most specific wildcard.
        exact: dict[str, str] = {}
        wild: dict[str, str] = {}
        for pattern, vendor_id in self.patterns:
            if pattern.startswith("*."):
                wild.setdefault(pattern[1:], vendor_id)
            else:
                exact.setdefault(pattern, vendor_id)
        never_exact = {p for p in self.never_proxy if not p.startswith("*.")}
        never_wild = {p[1:] for p in self.never_proxy if p.startswith("*.")}
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_wild", wild)
        object.__setattr__(self, "_never_exact", never_exact)
        object.__setattr__(self, "_never_wild", never_wild)
        # Bounded: Host headers come from anyone; an unseen value only costs the computation.
        object.__setattr__(self, "_classify", lru_cache(maxsize=4096)(self._classify_host))

    @property
    def exact_hosts(self) -> tuple[str, ...]:
        """Every host configured without a wildcard (never_proxy not applied)."""
        return tuple(self._exact)

    @property
    def wildcard_suffixes(self) -> tuple[str, ...]:
        """`.x.com` for every `*.x.com` configured (never_proxy not applied)."""
        return tuple(self._wild)

    def vendor_for_host(self, host: str) -> str | None:
        """The id of the vendor that proxies vendor host `host`, or None."""
        host = host.lower()
        suffixes = _dot_suffixes(host)
        if host in self._never_exact or any(s in self._never_wild for s in suffixes):
            return None
        vendor_id = self._exact.get(host)
        if vendor_id is not None:
            return vendor_id
        for suffix in suffixes:  # longest first: the most specific wildcard wins
            vendor_id = self._wild.get(suffix)
            if vendor_id is not None:
                return vendor_id
        return None

    def to_mapped(self, vendor_host: str) -> str:
        """The mapped host (with the public port, if any) for a vendor host."""
        label = map_label(vendor_host)
        mapped = f"{label}.{self.public_host}"
        return mapped if self.public_port is None else f"{mapped}:{self.public_port}"

    def mapped_origin(self, vendor_host: str) -> str:
        return f"{self.public_scheme}://{self.to_mapped(vendor_host)}"

    def split_request_host(self, host_header: str) -> tuple[str, int | None] | None:
        """Split a Host header into (host, port); None if malformed."""
        # Non-ASCII is refused outright, before lower-casing: str.lower() turns look-alikes into
        # ASCII (the Kelvin sign into "k") and str.isdigit() accepts Arabic-Indic digits, none of
        # which a DNS name or port can contain.
        if not host_header.isascii():
            return None
        host_header = host_header.strip().lower()
        if not host_header:
            return None
        if any(c in host_header for c in "/\\@ \t\r\n\x00[]%?#,;"):
            return None
        host, sep, port_text = host_header.rpartition(":")
        if not sep:
            return host_header, None
        if not host or not port_text.isdigit() or len(port_text) > 5:
            return None
        port = int(port_text)
        if not 0 < port < 65536 or port_text != str(port):  # "080" is nobody's spelling
            return None
        return host, port

    def _port_ok(self, port: int | None) -> bool:
        default = 443 if self.public_scheme == "https" else 80
        want = self.public_port or default
        return (port or default) == want

    def is_public_host(self, host_header: str) -> bool:
        return self._classify(host_header)[0]

    def vendor_host_from_request(self, host_header: str) -> str | None:
        """The vendor host a request's Host header stands for, or None if it is not ours."""
        return self._classify(host_header)[1]

    def dotless_netloc(self, host_header: str) -> str | None:
        """The proxy's own netloc, or the mapped one of a vendor host, that `host_header` names
        with a trailing dot (`x.proxy.lib.org.`, `x.proxy.lib.org.:8080`: an absolute DNS name,
        the same host); None for any other Host header, with or without a dot.

        The proxy redirects such a request there rather than serve it: the session cookie is set
        for the public host's domain, and a browser sends it to `x.proxy.lib.org` but not to
        `x.proxy.lib.org.` (nor keeps a cookie that host sets for that domain), so a page served
        on the dotted host would send the signed-in patron to sign in, in a loop."""
        parts = self.split_request_host(host_header)
        if parts is None or not parts[0].endswith(".") or parts[0].endswith(".."):
            return None
        host = parts[0][:-1]
        netloc = host if parts[1] is None else f"{host}:{parts[1]}"
        public, vendor_host = self._classify(netloc)
        if public:
            return self.public_netloc
        return None if vendor_host is None else self.to_mapped(vendor_host)

    def _classify_host(self, host_header: str) -> tuple[bool, str | None]:
        """(the proxy's own host?, the vendor host it maps to) — cached per Host header value in
        `_classify`: every request asks both, and a browser sends the same few values."""
        parts = self.split_request_host(host_header)
        public = parts is not None and parts[0] == self.public_host and self._port_ok(parts[1])
        return public, None if public else self._vendor_host_of(parts)

    def _vendor_host_of(self, parts: tuple[str, int | None] | None) -> str | None:
        if parts is None or not self._port_ok(parts[1]):
            return None
        host = parts[0]
        suffix = "." + self.public_host
        if not host.endswith(suffix):
            return None
        label = host[: -len(suffix)]
        if "." in label:
            return None
        vendor_host = unmap_label(label)
        if vendor_host is None or self.vendor_for_host(vendor_host) is None:
            return None
        return vendor_host
