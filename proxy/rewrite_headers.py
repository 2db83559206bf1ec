"""What response headers call for beyond a URL swap: the charset, Content-Encoding, and the CSP.

`charset_is_bytes_safe` says whether a Content-Type charset lets bodies be rewritten as bytes;
`Transcoded` wraps the byte stages for the charsets that do not.

`decoder_for` undoes gzip, deflate (zlib-wrapped or raw), br and chains of them incrementally,
handing out pieces of at most DECODE_PIECE bytes. Rewritten bodies go out uncompressed; the proxy
does not re-compress (a front server such as nginx can, for patrons on slow links).

Three pure functions on a `HostMap` deal with Content-Security-Policy:
- `rewrite_csp`: vendor host sources in a vendor's CSP become mapped hosts. A wildcard source
  `*.vendor.com` has no exact mapped form (every mapped host is one label under the public host),
  so it becomes `*.<public host>[:port]`, which admits only hosts the proxy serves. The original
  wildcard is kept as well when part of it is not proxied (an exact-only config, never_proxy).
  `report-uri` targets that are not proxied are dropped: reports carry page URLs and would go
  straight from the patron's browser to a third party.
- `shield_csp`: a second, independent policy that limits every fetch to the proxy's own hosts,
  so trackers the vendor embeds from unproxied hosts never load. CSP cannot stop a patron from
  following a link to another site (navigation), only loads.
- `third_party_hosts`: unproxied hosts a page refers to, for the compliance report and stats.
"""

from __future__ import annotations

import codecs
import functools
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import brotli

from proxy.errors import ProxyError
from proxy.hosts import HostMap, is_valid_hostname

try:  # the compiled scans (proxy/_scan.pyx); without them the same answers come slower
    from proxy import _scan
except ImportError:  # a build without a C compiler: the regex paths below and in rewrite.py
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
_ABS_HOST = re.compile(rb"(?:^|[\s,(])(?:https?:)?//([a-z0-9.\-]+)", re.IGNORECASE)
# The host after any `//` in a page: a superset of what _ABS_HOST finds inside _REF values.
_ANY_HOST = re.compile(rb"//([a-z0-9.\-]+)", re.IGNORECASE)


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


def _rewrite_source(host_map: HostMap, token: str) -> list[str]:
    """The sources that replace one CSP source expression (usually just itself)."""
    m = _SOURCE.match(token)
    if token.startswith("'") or m is None or token.endswith(":"):
        return [token]  # keyword, nonce, hash, scheme-source: nothing host-bound
    scheme, host = m.group("scheme"), m.group("host").lower()
    head = f"{host_map.public_scheme}://" if scheme else ""
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
        # rewrite_url maps proxied targets; a target it leaves unchanged is a third party.
        kept = [rewrite_url(s) for s in sources if rewrite_url(s) != s]
        return " ".join([name, *kept]) if kept else None
    out: list[str] = []
    for token in sources:
        for source in _rewrite_source(host_map, token):
            if source not in out:
                out.append(source)
    return " ".join([name, *out])


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
    socket = f"{'wss' if scheme == 'https' else 'ws'}://*.{netloc}"
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
            host = m.group(1).decode("ascii").lower().rstrip(".")
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
        return any(
            third_party(h.decode("ascii").rstrip(".")) for h in compiled_scan.slash_hosts(html)
        )
    pattern = unknown()
    pos = 0
    for _ in range(16):
        m = pattern.search(html, pos)
        if m is None:
            return False
        if third_party(m.group(1).decode("ascii").lower().rstrip(".")):
            return True
        pos = m.end()
    hosts = set(_ANY_HOST.findall(html, pos))
    return any(third_party(h.decode("ascii").lower().rstrip(".")) for h in hosts)


def unknown_host_pattern(host_map: HostMap) -> re.Pattern[bytes]:
    """`_ANY_HOST` with a negative lookahead for hosts that are certainly not third-party.

    Build it once per host map and keep it: it spells every configured host (a library's
    thousands take ~0.1 s to compile), and a HostMap is too large a cache key to hash per page."""
    exact = [h.encode() for h in host_map.exact_hosts if host_map.vendor_for_host(h) is not None]
    known = [_trie(exact)] if exact else []
    if not host_map.never_proxy and host_map.wildcard_suffixes:
        known.append(rb"[a-z0-9.\-]+" + _trie([s.encode() for s in host_map.wildcard_suffixes]))
    known.append(rb"(?:[a-z0-9.\-]*\.)?" + re.escape(host_map.public_host.encode()))
    whole = rb"(?:" + b"|".join(known) + rb")\.*(?![a-z0-9.\-])"
    return re.compile(rb"//(?!" + whole + rb")([a-z0-9.\-]+)", re.IGNORECASE)


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


# ------------------------------------------------------------------------ Content-Encoding

# Largest piece a decoder hands out at once, so a small compressed chunk (a "zip bomb") never
# becomes one huge buffer: the caller rewrites and sends each piece before asking for the next.
DECODE_PIECE = 64 * 1024


class UnsupportedEncoding(ProxyError):
    """The vendor used a Content-Encoding the proxy cannot undo; pass the body through as is."""


class CorruptBody(ProxyError):
    """A compressed or encoded body is malformed or truncated."""


class BodyDecoder(Protocol):
    """Undoes one response's Content-Encoding. Exhaust each iterator before the next call."""

    def feed(self, chunk: bytes) -> Iterator[bytes]: ...
    def finish(self) -> Iterator[bytes]: ...


class _Identity:
    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if chunk:
            yield chunk

    def finish(self) -> Iterator[bytes]:
        yield from ()


class _Zlib:
    """gzip (several members allowed) or deflate, which servers send zlib-wrapped or raw."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._d: zlib._Decompress | None = None
        self._head = b""  # deflate: the first bytes, until the wrapping can be told
        self._done = False

    def _open(self, first: bytes) -> zlib._Decompress:
        if self._kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # RFC 1950 header: method 8 in the low nibble, and the first two bytes a multiple of 31.
        wrapped = first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        data, self._head = self._head + chunk, b""
        while data and not self._done:
            if self._d is None:
                if len(data) < 2:
                    self._head = data
                    return
                self._d = self._open(data)
            d = self._d
            try:
                while True:
                    out = d.decompress(data, DECODE_PIECE)
                    if out:
                        yield out
                    data = d.unconsumed_tail
                    if d.eof or (not data and len(out) < DECODE_PIECE):
                        break
            except zlib.error as exc:
                raise CorruptBody(f"bad {self._kind} data: {exc}") from exc
            if not d.eof:
                return
            # A member ended: gzip may go on with another; zero padding and deflate tails end it.
            data, self._d = d.unused_data, None
            self._done = self._kind != "gzip" or not data.strip(b"\0")

    def finish(self) -> Iterator[bytes]:
        if self._head or (self._d is not None and not self._d.eof):
            raise CorruptBody(f"{self._kind} body is truncated")
        yield from ()


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()
        self._fed = False

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        self._fed = self._fed or bool(chunk)
        try:
            out = self._d.process(chunk, output_buffer_limit=DECODE_PIECE)
            # A full output buffer can leave more pending; drain it with empty input until dry.
            while out:
                yield out
                if self._d.is_finished():
                    return
                out = self._d.process(b"", output_buffer_limit=DECODE_PIECE)
        except brotli.error as exc:
            raise CorruptBody(f"bad br data: {exc}") from exc

    def finish(self) -> Iterator[bytes]:
        if self._fed and not self._d.is_finished():
            raise CorruptBody("br body is truncated")
        yield from ()


class _Chain:
    """Several codings (`Content-Encoding: gzip, br`), the last applied undone first."""

    def __init__(self, decoders: list[BodyDecoder]) -> None:
        self._decoders = decoders

    def _push(self, i: int, pieces: Iterator[bytes]) -> Iterator[bytes]:
        if i == len(self._decoders):
            yield from pieces
            return
        for piece in pieces:
            yield from self._push(i + 1, self._decoders[i].feed(piece))

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        return self._push(0, iter((chunk,)))

    def finish(self) -> Iterator[bytes]:
        for i, decoder in enumerate(self._decoders):
            yield from self._push(i + 1, decoder.finish())


def _one_decoder(coding: str) -> BodyDecoder:
    if coding in ("gzip", "x-gzip"):
        return _Zlib("gzip")
    if coding == "deflate":
        return _Zlib("deflate")
    if coding == "br":
        return _Brotli()
    raise UnsupportedEncoding(f"unsupported Content-Encoding {coding!r}")


def decoder_for(content_encoding: str | None) -> BodyDecoder:
    """An incremental decoder for a Content-Encoding value (gzip, deflate, br, identity, chains).

    Raises UnsupportedEncoding for anything else: the caller then sends the body untouched. The
    upstream request should offer only `gzip, deflate, br` so this stays rare.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    decoders = [_one_decoder(c) for c in reversed(codings) if c and c != "identity"]
    if not decoders:
        return _Identity()
    return decoders[0] if len(decoders) == 1 else _Chain(decoders)


# ------------------------------------------------------------------------ charsets


@functools.lru_cache(maxsize=256)  # asked per response; decoding 256 bytes costs ~10 µs
def charset_is_bytes_safe(charset: str | None) -> bool:
    """True when ASCII bytes in the body always mean ASCII characters, so bytes can be rewritten.

    That holds for UTF-8 and single-byte charsets. Multi-byte charsets whose trailing bytes can be
    ASCII (Shift_JIS, Big5, GBK), stateful ones (ISO-2022, UTF-7) and UTF-16/32 are transcoded.
    An unknown label is assumed to be an ASCII superset, as browsers treat one.
    """
    if not charset:
        return True
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return True
    if name.startswith(("iso2022", "utf-7", "hz")):
        return False
    try:
        text = bytes(range(256)).decode(name, "replace")
    except (UnicodeError, LookupError, TypeError):
        return False
    return len(text) == 256 and text[:128] == bytes(range(128)).decode("ascii")


class Stage(Protocol):
    """One step of body rewriting: bytes in, bytes out, the same for any chunking."""

    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


class Transcoded:
    """Runs byte stages on UTF-8 for a charset that is not ASCII-safe, then encodes back."""

    def __init__(self, charset: str, stages: list[Stage]) -> None:
        name = codecs.lookup(charset).name
        # UTF-16/32 encoders cannot write surrogateescape'd bytes back; lone surrogates pass.
        errors = "surrogatepass" if name.startswith(("utf-16", "utf-32")) else "surrogateescape"
        self._in = codecs.getincrementaldecoder(name)(errors)
        self._mid = codecs.getincrementaldecoder("utf-8")("surrogatepass")
        self._out = codecs.getincrementalencoder(name)(errors)
        self._stages = stages

    def _through(self, text: str, final: bool) -> bytes:
        data = text.encode("utf-8", "surrogatepass")
        for stage in self._stages:
            data = stage.feed(data) + (stage.finish() if final else b"")
        return self._out.encode(self._mid.decode(data, final), final)

    def feed(self, chunk: bytes) -> bytes:
        try:
            return self._through(self._in.decode(chunk), False)
        except UnicodeDecodeError as exc:
            raise CorruptBody(f"body is not valid {exc.encoding}") from exc

    def finish(self) -> bytes:
        try:
            text, tail = self._in.decode(b"", True), b""
        except UnicodeDecodeError:
            # A truncated last character (odd UTF-16 byte): keep its raw bytes at the very end.
            text, tail = "", self._in.getstate()[0]
        return self._through(text, True) + tail
