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
import html
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

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


# The WHATWG Encoding Standard's labels (https://encoding.spec.whatwg.org/#names-and-labels),
# each encoding with the Python codec that decodes it as browsers do. Written out here because
# Python's codec registry lacks many of these labels (`windows-31j`, `x-sjis`, `x-gbk`,
# `unicode-1-1-utf-8` …) and names several encodings by a stricter table than browsers use
# (`shift_jis` without the Windows extensions browsers decode). The `webencodings` package holds
# the same labels, but it is not a dependency of the proxy and its codecs are Python's same-name
# ones, so the browser-compatible choice of codec would still be ours to write.
_WHATWG_LABELS = {
    "utf-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    "cp866": "866 cp866 csibm866 ibm866",
    "iso8859_2": "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 "
    "iso_8859-2:1987 l2 latin2",
    "iso8859_3": "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 "
    "iso_8859-3:1988 l3 latin3",
    "iso8859_4": "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 "
    "iso_8859-4:1988 l4 latin4",
    "iso8859_5": "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 "
    "iso_8859-5 iso_8859-5:1988",
    "iso8859_6": "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 "
    "iso-8859-6-e iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987",
    "iso8859_7": "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 "
    "iso8859-7 iso88597 iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    # ISO-8859-8-I differs from ISO-8859-8 only in text direction, not in bytes.
    "iso8859_8": "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 "
    "iso8859-8 iso88598 iso_8859-8 iso_8859-8:1988 visual csiso88598i iso-8859-8-i logical",
    "iso8859_10": "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    "iso8859_13": "iso-8859-13 iso8859-13 iso885913",
    "iso8859_14": "iso-8859-14 iso8859-14 iso885914",
    "iso8859_15": "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    "iso8859_16": "iso-8859-16",
    "koi8_r": "cskoi8r koi koi8 koi8-r koi8_r",
    "koi8_u": "koi8-ru koi8-u",
    "mac_roman": "csmacintosh mac macintosh x-mac-roman",
    "cp874": "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    "cp1250": "cp1250 windows-1250 x-cp1250",
    "cp1251": "cp1251 windows-1251 x-cp1251",
    "cp1252": "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 "
    "iso8859-1 iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 x-cp1252",
    "cp1253": "cp1253 windows-1253 x-cp1253",
    "cp1254": "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 "
    "iso_8859-9:1989 l5 latin5 windows-1254 x-cp1254",
    "cp1255": "cp1255 windows-1255 x-cp1255",
    "cp1256": "cp1256 windows-1256 x-cp1256",
    "cp1257": "cp1257 windows-1257 x-cp1257",
    "cp1258": "cp1258 windows-1258 x-cp1258",
    "mac_cyrillic": "x-mac-cyrillic x-mac-ukrainian",
    # WHATWG's GBK decoder is its gb18030 decoder; its Big5 is Big5-HKSCS; its Shift_JIS and
    # EUC-KR are Microsoft's code pages 932 and 949.
    "gb18030": "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk "
    "gb18030",
    "big5hkscs": "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    "euc_jp": "cseucpkdfmtjapanese euc-jp x-euc-jp",
    "iso2022_jp": "csiso2022jp iso-2022-jp",
    "cp932": "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    "cp949": "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 "
    "ksc5601 ksc_5601 windows-949",
    "utf_16_be": "unicodefffe utf-16be",
    "utf_16_le": "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le",
    # x-user-defined: ASCII, and 0x80-0xFF to private-use characters; a one-byte charset.
    "latin_1": "x-user-defined",
}
_CODEC_BY_LABEL = {
    label: codec for codec, labels in _WHATWG_LABELS.items() for label in labels.split()
}
# Labels of WHATWG's "replacement" encoding: a browser shows such a body as one U+FFFD, so
# there is nothing to rewrite (and Python's codecs for them would decode what browsers do not).
_REPLACEMENT_LABELS = frozenset(
    ("csiso2022kr", "hz-gb-2312", "iso-2022-cn", "iso-2022-cn-ext", "iso-2022-kr", "replacement")
)
# The byte-order marks, which decide a body's encoding over any label (WHATWG "decode").
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xfe\xff", "utf_16_be"), (b"\xff\xfe", "utf_16_le"))


def bom_pending(head: bytes) -> bool:
    """Whether the first bytes of a body are too few to tell whether a byte-order mark begins it."""
    return len(head) < 3 and any(bom.startswith(head) for bom, _codec in _BOMS)


def bom_codec(head: bytes) -> str | None:
    """The codec a byte-order mark at the start of a body calls for, or None."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    return None


@functools.lru_cache(maxsize=256)
def charset_codec(charset: str | None) -> str | None:
    """The Python codec for a Content-Type charset label, or None when there is none to use.

    A WHATWG label gets the codec browsers decode it with. A label only Python knows (`utf-32`,
    `shift_jisx0213`) gets Python's codec: the vendor said so, and it is the best guess there is.
    No label means UTF-8 (an ASCII superset, like every default a browser picks). An unknown
    label, or one of the "replacement" encoding's, gives None: the body's characters cannot be
    told from its bytes.
    """
    if not charset:
        return "utf-8"
    label = charset.strip("\t\n\f\r ").lower()
    if label in _REPLACEMENT_LABELS:
        return None
    codec = _CODEC_BY_LABEL.get(label)
    if codec is not None:
        return codec
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


@functools.lru_cache(maxsize=256)  # asked per response; decoding 256 bytes costs ~10 µs
def charset_is_bytes_safe(charset: str | None) -> bool:
    """True when ASCII bytes in the body always mean ASCII characters, so bytes can be rewritten.

    That holds for UTF-8 and single-byte charsets. Multi-byte charsets whose trailing bytes can be
    ASCII (Shift_JIS, Big5, GBK), stateful ones (ISO-2022, UTF-7) and UTF-16/32 are transcoded.
    A label without a codec (`charset_codec`) is not bytes-safe: a browser ignores a label it does
    not know and decodes by other means, perhaps as Shift_JIS.
    """
    name = charset_codec(charset)
    if name is None:
        return False
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

    def __init__(self, codec: str, stages: list[Stage]) -> None:
        name = codecs.lookup(codec).name
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


# ------------------------------------------------------------------------ headers inside HTML

# The tags whose attributes act on what the proxy changes: `integrity` on script and link (SRI)
# and `<meta http-equiv="Content-Security-Policy">`. A tag runs from `<` to the first `>`, at most
# MAX_TAG bytes between its name and that `>` (a longer one is left as it is). A `>` inside a
# quoted value ends the tag early here, unlike in a browser: attributes after it are not seen.
MAX_TAG = 8192
_TAG = re.compile(rb"<(?i:script|link|meta)(?=[\t\n\f\r />])[^<>]{0,%d}>" % MAX_TAG)
# The longest `_TAG` match: a piece ending further than this past its last `<` ends no tag.
_TAG_REACH = len(b"<script") + MAX_TAG + 1
# One attribute as the HTML tokenizer reads it: a name, then `=` and a value (quoted or not).
_ATTR = re.compile(
    rb"""([^\t\n\f\r />][^\t\n\f\r />=]*)"""
    rb"""(?:[\t\n\f\r ]*=[\t\n\f\r ]*("[^"]*"|'[^']*'|[^\t\n\f\r >]+))?"""
)
_SPACE = "\t\n\f\r "


def tag_spans(data: bytes) -> list[tuple[int, int]]:
    """Where `_TAG` matches in `data`: in one compiled pass when built (a page has a `<` every
    ~30 bytes and the regex tries each), else by the regex."""
    if compiled_scan is not None:
        return compiled_scan.tag_spans(data, MAX_TAG)
    return [m.span() for m in _TAG.finditer(data)]


def _attributes(tag: bytes, name_end: int) -> dict[bytes, re.Match[bytes]]:
    """A tag's attributes by lower-case name; the first of a repeated name wins, as in HTML."""
    attrs: dict[bytes, re.Match[bytes]] = {}
    for m in _ATTR.finditer(tag, name_end, len(tag) - 1):
        attrs.setdefault(m.group(1).lower(), m)
    return attrs


def _value(m: re.Match[bytes]) -> str:
    """An attribute's value as the browser reads it: unquoted and with entities decoded."""
    raw = m.group(2) or b""
    if raw[:1] in (b'"', b"'"):
        raw = raw[1:-1]
    return html.unescape(raw.decode("utf-8", "surrogateescape"))


def _loads_through_proxy(host_map: HostMap, url: str) -> bool:
    """Whether a script's or style sheet's URL is fetched through the proxy (and so may come back
    rewritten): a relative URL (the page's own, proxied host) or one on a proxied vendor host."""
    url = url.strip(_SPACE)
    if url.startswith("//"):
        url = "http:" + url
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.scheme:
        return True
    if parts.scheme.lower() not in ("http", "https"):
        return False  # data:, blob: … never reach the proxy
    return host_map.vendor_for_host((parts.hostname or "").rstrip(".")) is not None


def edit_tag(host_map: HostMap, rewrite_url: Callable[[str], str], tag: bytes) -> bytes:
    """One script, link or meta tag (a `_TAG` match) as the proxy sends it on.

    - `integrity` is dropped where the element loads through the proxy. Subresource Integrity
      pins the exact bytes, and the proxy rewrites vendor URLs in scripts and style sheets, so a
      pinned hash no longer matches and the browser refuses the resource. The hash cannot be
      recomputed: the page is sent before the resource is fetched. What SRI guards against (a
      CDN serving other bytes) is covered by the proxy's own verified TLS fetch from the vendor.
      Third-party resources, which the proxy never touches, keep their `integrity`.
    - `<meta http-equiv="Content-Security-Policy" content=…>` has its host sources mapped as the
      header's are (`rewrite_csp`): the page now loads from mapped hosts, which the vendor's
      policy would otherwise refuse.
    """
    low = tag.lower()
    if b"integrity" not in low and b"http-equiv" not in low:
        return tag
    name_end = 5 if low.startswith(b"<meta") or low.startswith(b"<link") else 7
    attrs = _attributes(tag, name_end)
    if low.startswith(b"<meta"):
        equiv, content = attrs.get(b"http-equiv"), attrs.get(b"content")
        if equiv is None or content is None or content.group(2) is None:
            return tag
        if _value(equiv).strip(_SPACE).lower() != "content-security-policy":
            return tag
        policy = _value(content)
        mapped = rewrite_csp(host_map, rewrite_url, policy)
        if mapped == policy:
            return tag
        quote = "'" if content.group(2)[:1] == b"'" else '"'
        escaped = mapped.replace("&", "&amp;").replace(quote, f"&#{ord(quote)};")
        value = (quote + escaped + quote).encode("utf-8", "surrogateescape")
        return tag[: content.start(2)] + value + tag[content.end(2) :]
    integrity = attrs.get(b"integrity")
    url = attrs.get(b"src" if name_end == 7 else b"href")
    if integrity is None or url is None or not _loads_through_proxy(host_map, _value(url)):
        return tag
    start = integrity.start()
    while start > name_end and tag[start - 1] in b"\t\n\f\r ":
        start -= 1
    return tag[:start] + tag[integrity.end() :]


class HtmlTagStage:
    """`edit_tag` on every script, link and meta tag of an HTML body, streamed: a tag is held
    back only while it is unfinished (a `<` with no `>` after it yet, at most _TAG_REACH bytes),
    so the output is the same for any chunking and a finished tag is never delayed."""

    def __init__(self, edit: Callable[[bytes], bytes]) -> None:
        self._edit = edit
        self._buf = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._buf + chunk
        lt = data.rfind(b"<")
        if lt != -1 and len(data) - lt <= _TAG_REACH and data.find(b">", lt) == -1:
            # Every tag before `lt` ends by it (no tag holds a `<`); the one at `lt` is unfinished.
            self._buf = data[lt:]
            return self._run(data[:lt])
        self._buf = b""
        return self._run(data)

    def finish(self) -> bytes:
        data, self._buf = self._buf, b""
        return self._run(data)

    def _run(self, data: bytes) -> bytes:
        spans = tag_spans(data)
        if not spans:
            return data
        parts: list[bytes] = []
        last = 0
        for start, end in spans:
            tag = data[start:end]
            edited = self._edit(tag)
            if edited is not tag:
                parts += (data[last:start], edited)
                last = end
        if not parts:
            return data
        parts.append(data[last:])
        return b"".join(parts)


# ------------------------------------------------------------------------ no Content-Type

# How much of an untyped body a browser looks at (WHATWG MIME Sniffing, "resource header").
SNIFF_BYTES = 1445
# The patterns of WHATWG MIME Sniffing's "rules for identifying an unknown MIME type" that give a
# type a browser renders as a document with scripts (the "scriptable" ones): HTML and XML, after
# leading whitespace, each HTML pattern ending in a space or `>`. Written here because the rules
# are a short table and no Python library follows the browser's (libmagic's rules differ, and a
# type other than the one the browser picks would undo the point).
_SNIFF = re.compile(
    rb"[\t\n\f\r ]*(?:(?P<html>(?i:<!doctype html|<html|<head|<script|<iframe|<h1|<div|<font"
    rb"|<table|<a|<style|<title|<b|<body|<br|<p|<!--)[ >])|(?P<xml><\?xml))"
)
_SNIFF_LONGEST = len(b"<!doctype html ")


def sniff_document(head: bytes) -> str | None:
    """The type a browser gives an untyped body that starts with `head` when that type is a
    document the proxy rewrites and shields (`text/html`, `text/xml`); None for any other."""
    m = _SNIFF.match(head[:SNIFF_BYTES])
    if m is None:
        return None
    return "text/html" if m.group("html") else "text/xml"


def sniff_decided(head: bytes) -> bool:
    """Whether no more bytes can change `sniff_document(head)` (a shorter head may be all the
    body there is: ask at its end too)."""
    body = head.lstrip(b"\t\n\f\r ")
    return len(head) >= SNIFF_BYTES or len(body) >= _SNIFF_LONGEST
