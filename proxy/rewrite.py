"""Rewrite vendor URLs in response bodies to their host-mapped form, streamed in bounded memory.

One `Rewriter` is built per config; it holds one compiled bytes regex that finds every URL form
vendors write: `https://host`, `http://host`, protocol-relative `//host`, percent-encoded
`https%3A%2F%2Fhost` (and double-encoded `%253A%252F`), JSON-escaped `https:\\/\\/host` and
`\\/\\/host`, and unicode-escaped `https:\\u002F\\u002Fhost` and `\\u002F\\u002Fhost` (JSON and
JavaScript's `/`, which devalue in Nuxt and SvelteKit and serialize-javascript write for every
slash). WebSocket URLs (`wss://host`, `ws://host`) are found in each of those spellings as
`https`/`http` ones are. A found host is rewritten only when `HostMap.vendor_for_host` accepts
it, and the match is whole-host (`www.my-db.com.evil.org` and `notwww.my-db.com` are not
`www.my-db.com`). A bare host without a scheme or `//` is never touched: it is indistinguishable
from text.

Speed (hand-written because no library rewrites URLs with these rules): the body is cut after
bytes no URL contains (quotes, `<`, `>`, spaces), and each piece is rewritten by one compiled
pass (`proxy/_scan.pyx`) that matches every form the scan pattern does. Without the compiled
module, pieces with only plain URLs take two `re.split` passes led by the literals `http` and
`//`, and the text around escaped, percent-encoded or capitalised spots takes the full pattern:
the same output, several times slower. `url_pattern(HOST)` stays the reference: tests compare
every path with it on generated text.

Choices worth knowing:
- An explicit vendor port (`https://host:8443/`) is dropped from the mapped URL: the mapped host
  says which vendor host is meant and the forwarder knows the vendor's origin (and `connect_to`).
- An international vendor host (configured as `xn--…`) is also found as pages write it: where a
  host holds a non-ASCII or percent-encoded byte, the scan takes the run of name bytes
  (`idn_hosts.RUN`, before the ASCII host, in the regex paths and the compiled scan alike) and
  the replacement reads it as a browser does (`idn_hosts.read_host`: UTF-8 or windows-1252, any
  case, NFD, the Unicode full stops, fullwidth letters, Unicode labels under a wildcard, all by
  UTS #46). A config with none scans with the ASCII patterns alone.
- A dot after the host before its path, query, fragment or port (`https://x.com./a`, also
  `%2e` and the Unicode full stops: `TRAILING_DOT`) names the same host and is dropped with it.
- Absolute URLs take the proxy's public scheme (WebSocket ones, `ws://` and `wss://`, its
  WebSocket twin: `wss` for `https`, `ws` for `http`); protocol-relative ones stay so;
  percent-encoded and escaped URLs keep their encoding, each separator spelled as it was.
- Bodies are rewritten as bytes for ASCII-compatible charsets (UTF-8 and single-byte ones). Other
  charsets (UTF-16, Shift_JIS, ISO-2022 …) are decoded and re-encoded incrementally
  (`charsets.Transcoded`). The charset is the one a browser would use: a byte-order mark
  first, then the Content-Type label read as WHATWG labels are (`Windows-31J` is Shift_JIS),
  then in HTML the page's `<meta charset>`; a "replacement" label leaves the body unrewritten.
- In HTML, `integrity` is dropped from scripts and style sheets the proxy serves (it may change
  their bytes) and a `<meta http-equiv="Content-Security-Policy">` is mapped like the header
  (`html_tags.edit_tag`).
- The URL scan leaves entity-encoded URLs (`https:&#x2F;&#x2F;`), URLs with userinfo and the
  other spellings only a browser's lenient reading makes a URL (`http:\\\\host`, `/\\host`,
  `%77ww` …) as they are. Where they navigate (a link, form, frame or base URL in HTML, a
  redirect, a refresh) the tag stage and `rewrite_location` map them (`proxy.navigation`).

What the Content-Type charset calls for is in `charsets`, Content-Encoding in `content_coding`,
the CSP in `rewrite_headers`, `integrity` and meta CSP tags in `html_tags`.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from itertools import islice
from urllib.parse import urlsplit

from proxy import html_tags, rewrite_headers
from proxy.charsets import (
    PRESCAN_BYTES,
    Stage,
    Transcoded,
    bom_codec,
    bom_pending,
    charset_codec,
    codec_is_bytes_safe,
    known_label,
    meta_charset,
)
from proxy.config import Config, RewriteRule
from proxy.hosts import HostMap, socket_scheme, unmap_label
from proxy.html_tags import HtmlTagStage
from proxy.idn_hosts import RUN, RUN_CAP, read_host
from proxy.navigation import refresh_url, to_vendor_host
from proxy.request_bodies import boundary, unmap_multipart
from proxy.secret_mask import MASK, mask_pattern

__all__ = [
    "JAVASCRIPT_TYPES",
    "Rewriter",
    "StreamRewriter",
    "media_type",
    "should_rewrite",
]

# WHATWG MIME Sniffing's JavaScript MIME types, every one of which a browser runs.
JAVASCRIPT_TYPES = frozenset(
    {
        "application/ecmascript",
        "application/javascript",
        "application/x-ecmascript",
        "application/x-javascript",
        "text/ecmascript",
        "text/javascript",
        "text/javascript1.0",
        "text/javascript1.1",
        "text/javascript1.2",
        "text/javascript1.3",
        "text/javascript1.4",
        "text/javascript1.5",
        "text/jscript",
        "text/livescript",
        "text/x-ecmascript",
        "text/x-javascript",
    }
)

_REWRITABLE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "text/css",
        *JAVASCRIPT_TYPES,
        "application/json",
        "text/xml",
        "application/xml",
        # HLS playlists: segment and key URLs, often absolute on the vendor's CDN.
        "application/vnd.apple.mpegurl",
        "application/x-mpegurl",
        "audio/mpegurl",
        "audio/x-mpegurl",
        # WebVTT tracks: a player's seek-bar thumbnails are cues naming images on the vendor's
        # CDN (captions' text is prose; a vendor URL in it is mapped like a page's).
        "text/vtt",
        # Server-sent events (assistants streaming answers with links): every event ends with an
        # empty line, a cut byte (_CUTS), so an event is written out as soon as it has arrived.
        "text/event-stream",
    }
)
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Documents whose tags the tag stage reads (html_tags.edit_tag): HTML, and the XML a browser
# renders as a document, whose links, refreshes and frames navigate as HTML's do.
TAG_TYPES = HTML_TYPES | {"image/svg+xml", "application/xml", "text/xml"}

# Request bodies whose mapped URLs go back to the vendor's (besides `+json` and `+xml` types and the
# fields of multipart forms): forms (urlencoded, and text/plain as `enctype="text/plain"` and
# sendBeacon with a string post them), JSON, XML (SOAP, XML exports) and GraphQL documents.
_UNMAPPED_BODIES = frozenset(
    {
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/json",
        "text/xml",
        "application/xml",
        "application/graphql",
    }
)

# The URL forms, as regex pieces. Hosts are matched generously and judged by HostMap afterwards.
COLON = rb":|%3a|%253a"
# `\u002f` is JSON's and JavaScript's escape of `/`. Like every spelling here it is matched in any
# case (`\U002F` is no escape, but mapping one changes no URL a browser would follow).
SLASH = rb"/|\\/|%2f|%252f|\\u002f"
# A dot belongs to the host only when a label follows it, so "see https://x.com." keeps its period.
# The final lookahead makes the match whole-host: no shorter prefix of a longer name can match.
HOST_END = rb"(?![a-z0-9_\-]|\.[a-z0-9_\-])"
HOST = rb"[a-z0-9](?:[a-z0-9\-]|\.(?=[a-z0-9\-])){0,252}" + HOST_END
# A dot after the host, in any spelling a browser reads as one (`.`, `%2e`, and in UTF-8 the
# ideographic, fullwidth and halfwidth full stops), when a URL delimiter follows: `/`, `?`, `#`,
# `:`, or one of the spellings the scan knows of them (`\\/`, `\\u002f`, `%2f`, `%3f`, `%23`,
# `%3a`, and double-encoded `%252f` …, any case). Not before any other escape (`\\n`, `\\"`,
# `%20`, `%22`): there the dot is a sentence's full stop in a JSON string or a query's text:
# `https://x.com./a` names x.com as an absolute DNS name. It is part of the match and left out
# of the mapped URL (the same host), where it would land after the port: `mapped:8080./a` is no
# URL. Before anything else (`see https://x.com.`) it is a sentence's full stop and stays.
_DOT = rb"(?:\.|%2[eE]|\xe3\x80\x82|\xef\xbc\x8e|\xef\xbd\xa1)"
# Not before `//`: the protocol-relative pass would then see the mapped host's last byte before
# that `//` where the one scan sees the dot (`Rewriter._plain`), and no URL has a host then `//`.
# Spelt case by case: the plain passes (`_abs_plain`, `_rel_plain`) are case-sensitive.
_DELIMITER = rb"[?#:]|/(?!/)|\\(?:/|[uU]002[fF])|%(?:25)?(?:2[fF]|3[fFaA]|23)"
TRAILING_DOT = _DOT + rb"(?=" + _DELIMITER + rb")"
# The same, for re-matching a match's own bytes (`Rewriter._compute_replacement`), which end at
# the dot when no port follows it.
_TRAILING_DOT_MATCHED = _DOT + rb"(?=" + _DELIMITER + rb"|\Z)"
# A port is whole only when no host byte follows it, as a host is (HOST_END): in
# `http://host:80x/` (jQuery's comments have one) `:80` is no port, and taking it for one glued
# the `x` onto the mapped host. Without a port the URL maps with `:80x/` kept after the host.
PORT_END = rb"(?![0-9a-zA-Z_\-])"


# The same hosts as HOST for scanning, spelled so CPython's regex engine runs each label as one
# tight loop (possessive, no backtracking), about 2x faster over a page. Unlike HOST it has no
# 253-byte cap: a longer run still matches here, and `_compute_replacement` re-matches with the
# capped `url_pattern(HOST)`, fails, and leaves the bytes as they were (what HOST's "no match" does).
HOST_SCAN = rb"[a-z0-9][a-z0-9\-]*+(?:\.[a-z0-9\-]++)*+" + HOST_END
_HOST_SCAN_CS = HOST_SCAN.replace(b"a-z0-9", b"a-zA-Z0-9")  # case-sensitive spelling
_PORT = rb"(?:" + TRAILING_DOT + rb")?(?::[0-9]{1,5}" + PORT_END + rb")?"


# The plain forms, each starting with a literal (`http`, `//`) that CPython finds at memchr speed:
# `http://host`, `https://host` (scheme in lower case) and protocol-relative `//host`. The
# lookbehinds are the ones `scan_pattern` applies; `Rewriter._segment` uses these two only when
# a piece holds no other URL form, and `scan_pattern` otherwise.
def _abs_plain(host: bytes) -> bytes:
    return rb"http(?<![a-zA-Z0-9+.\-]http)s?://" + host + _PORT


def _rel_plain(host: bytes) -> bytes:
    return rb"//(?<![\w:/]//)" + host + _PORT


ABS_PLAIN = _abs_plain(_HOST_SCAN_CS)
REL_PLAIN = _rel_plain(_HOST_SCAN_CS)


# REL_PLAIN, or a bare `//` after `ws:` or `ss:` (any case): the mark of a plain `ws://` or
# `wss://` URL, which the two passes do not map. The `//` pass finds the marks for free (it stops
# at every `//` anyway), so text without WebSocket URLs pays no search of its own for them. The
# one lookbehind fails on its first byte after `http:` and `https:` (`p`); what else it lets by
# (`class://`) only costs the redo.
def _or_socket(rel_plain: bytes) -> bytes:
    return rel_plain.replace(b"//", b"//(?:", 1) + rb"|(?<=[wWsS][sS]://))"


REL_PLAIN_OR_SOCKET = _or_socket(REL_PLAIN)
# Bytes that never occur in a URL match nor change one next to them (every lookaround treats them
# like the start or end of the text), so a body can be cut after any of them and each piece
# rewritten on its own.
# `\r` is one so that a server-sent event written with CR line ends is not held back either.
_CUTS = (b'"', b">", b" ", b"\n", b"'", b"<", b"\r")
# A piece whose last cut byte is further back than this is handled by the window logic instead
# of waiting for more (so a long run without one, like base64, is not held whole).
MAX_CUT_WAIT = 4096
_CUT_BYTE = re.compile(rb"[\"'<> \n\r]")
# Spots that are not plain and closer than this share one full-scan piece; text with more than
# one spot per this many bytes takes the full scan whole (Rewriter._segment). A separate piece
# costs about what the full scan of ~200 bytes does.
_SPOT_GAP = 256


def _finds(text: bytes, literal: bytes, limit: int = -1) -> list[int]:
    """Where `literal` occurs in `text`, left to right (at most `limit` places when given)."""
    out: list[int] = []
    at = -1
    # The limit is checked before searching: a search for what is not there reads all of `text`.
    while len(out) != limit and (at := text.find(literal, at + 1)) != -1:
        out.append(at)
    return out


# The plain WebSocket schemes, for `_spots` (in lower-cased text) once the `//` pass has seen one:
# one regex search reads the text about as fast as one `find` and finds both (`wss://` holds no
# `ws:`).
_WS_SCHEME = re.compile(rb"wss?://")
# Percent signs looked at one by one before the percent-encoded forms are searched for instead.
_PERCENT_SCAN = 64
# Backslashes looked at one by one before the escaped forms are searched for instead.
_BACKSLASH_SCAN = 64


def _spots(
    data: bytes, lower: bytes, other_case: bool, limit: int, sockets: bool
) -> list[int] | None:
    """Where `data` holds what the two literal-led passes cannot handle, unsorted; None when that
    is more than `limit` places (the full scan of the whole text is then cheaper).

    Those are a JSON-escaped `\\/`, a unicode-escaped `\\u002f` (any case), a percent-encoded
    `:` (also double-encoded, or `:` before an encoded `/`), `//http`, which the one scan takes as
    a protocol-relative URL to the host "http…", `http` in another case, and, when `sockets`,
    `ws://` or `wss://` (any case: the plain passes know only `http`; every other WebSocket
    spelling has one of the escaped or encoded spots). No cut byte occurs in any of them, so each
    lies whole inside one piece. `bytes.count` and multi-byte `find` read ~1.3 GB/s, a one-byte `find` is memchr: the
    escaped and percent forms are looked for only where their first byte occurs.
    """
    out: list[int] = []
    if b"\\" in data:
        out += _escape_spots(data, lower, limit + 1)
    if b"%" in data:
        out += _percent_spots(data, lower, limit + 1 - len(out))
    if len(out) <= limit:
        out += _finds(lower, b"//http", limit + 1 - len(out))
    if sockets and len(out) <= limit:
        out += [m.start() for m in islice(_WS_SCHEME.finditer(lower), limit + 1 - len(out))]
    if other_case and len(out) <= limit:  # where lower-cased text has `http` and the text does not
        out += [at for at in _finds(lower, b"http") if data[at : at + 4] != b"http"]
    return None if len(out) > limit else out


def _escape_spots(data: bytes, lower: bytes, limit: int) -> list[int]:
    """The escaped spots (`\\/`, `\\u002f`), at most about `limit` of them."""
    out: list[int] = []
    at = data.find(b"\\")
    for _ in range(_BACKSLASH_SCAN):
        if at == -1 or len(out) >= limit:
            return out
        if lower.startswith((b"\\/", b"\\u002f"), at):
            out.append(at)
        at = data.find(b"\\", at + 1)
    # Many backslashes (a script's `\\n`s, regexes): the literal searches read the text once each.
    out = []
    for literal in (b"\\/", b"\\u002f"):
        out += _finds(lower, literal, max(0, limit - len(out)))
    return out


def _percent_spots(data: bytes, lower: bytes, limit: int) -> list[int]:
    """The percent-encoded spots (`%3a`, `%253a`, `:%2`), at most about `limit` of them."""
    out: list[int] = []
    at = data.find(b"%")
    for _ in range(_PERCENT_SCAN):
        if at == -1 or len(out) >= limit:
            return out
        if lower.startswith((b"%3a", b"%253a"), at):
            out.append(at)
        if at and data[at - 1] == 0x3A and lower.startswith(b"%2", at):  # `:%2`
            out.append(at - 1)
        at = data.find(b"%", at + 1)
    # Many percent signs (CSS widths, say): the literal searches read the text once each.
    out = []
    for literal in (b"%3a", b"%253a", b":%2"):
        out += _finds(lower, literal, max(0, limit - len(out)))
    return out


def url_pattern(host: bytes, dot: bytes = TRAILING_DOT) -> bytes:
    """The absolute-or-protocol-relative URL regex around a host sub-pattern (shared with unmap).
    `dot` is the host's trailing dot (`TRAILING_DOT`)."""
    return (
        # Every match starts with h, w, / or \; saying so first lets the scan skip other bytes fast.
        rb"(?=[hw/\\])(?:(?<![a-z0-9+.\-])(?P<scheme>https?|wss?)(?P<colon>" + COLON + rb")"
        rb"(?P<slash>" + SLASH + rb")(?P=slash)(?P<host>" + host + rb")(?:" + dot + rb")?"
        rb"(?:(?P=colon)(?P<port>[0-9]{1,5})" + PORT_END + rb")?"
        # `//host` (or escaped), but not the `//` of another scheme (`ftp://`) or a path (`a//b`).
        rb"|(?<![\w:/])(?P<rel>//|\\/\\/|\\u002f\\u002f)(?P<rhost>" + host + rb")"
        rb"(?:" + dot + rb")?(?::(?P<rport>[0-9]{1,5})" + PORT_END + rb")?)"
    )


def scan_pattern(host: bytes) -> bytes:
    """`url_pattern` respelled to find the same matches (same spans) faster; no groups to read.

    CPython's regex search skips ahead at C speed only when a pattern starts with a plain,
    case-sensitive character set, so the first byte is consumed as `[hH/\\]` outside the
    case-insensitive part and the lookbehinds look back over it (one byte wider). Anything that
    needs the groups re-matches the found bytes with `url_pattern`.
    """
    return (
        rb"[hHwW/\\](?i:(?:(?<=h)(?<![a-z0-9+.\-]h)ttps?|(?<=w)(?<![a-z0-9+.\-]w)ss?)"
        rb"(?P<colon>" + COLON + rb")"
        rb"(?P<slash>"
        + SLASH
        + rb")(?P=slash)"
        + host
        + rb"(?:"
        + TRAILING_DOT
        + rb")?(?:(?P=colon)[0-9]{1,5}"
        + PORT_END
        + rb")?"
        rb"|(?<![\w:/][/\\])(?:(?<=/)/|(?<=\\)(?:/\\/|u002f\\u002f))"
        + host
        + rb"(?:"
        + TRAILING_DOT
        + rb")?(?::[0-9]{1,5}"
        + PORT_END
        + rb")?)"
    )


# How far past its start a URL match can look: scheme, separators, 253-byte host, port, lookahead.
URL_WINDOW = 320
# Bytes before a match start that the lookbehinds read.
URL_CONTEXT = 4


def media_type(content_type: str | None) -> str:
    """`text/html; charset=utf-8` → `text/html`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def should_rewrite(content_type: str | None) -> bool:
    """True for the markup, style, script and data types that carry vendor URLs."""
    mt = media_type(content_type)
    return mt in _REWRITABLE_TYPES or mt.endswith(("+json", "+xml"))


def masks_only(content_type: str | None) -> bool:
    """True for the text types whose URLs are left alone (plain text, CSV, Markdown …) but in
    which a shared-login vendor's page could still show the library's credential: a browser
    shows them as they are, so they are masked (`proxy.secret_mask`) and nothing else."""
    mt = media_type(content_type)
    return mt.startswith("text/") and not should_rewrite(mt)


class RegexStage:
    """`pattern.sub(repl, body)` over a stream, giving the same bytes for any chunking.

    A match starting at position s depends only on bytes [s - context, s + window), so once a
    chunk arrives every match starting before `len - window` is settled and can be written out;
    only the undecided tail (at most window + context bytes) is held back.
    """

    def __init__(
        self,
        pattern: re.Pattern[bytes],
        repl: Callable[[re.Match[bytes]], bytes],
        *,
        window: int,
        context: int,
    ) -> None:
        self._pattern = pattern
        self._repl = repl
        self._window = window
        self._context = context
        self._buf = b""
        self._pos = 0  # where scanning resumes in _buf; bytes before it are lookbehind context

    def feed(self, chunk: bytes) -> bytes:
        return self._window_step(self._buf + chunk)

    def _window_step(self, buf: bytes) -> bytes:
        """Write out every match settled in `buf`; keep the undecided tail (and its context)."""
        cut = len(buf) - self._window
        if cut <= self._pos:
            self._buf = buf
            return b""
        out, end = self._run(buf, cut)
        keep = max(0, end - self._context)
        self._buf, self._pos = buf[keep:], end - keep
        return out

    def finish(self) -> bytes:
        out, _ = self._run(self._buf, None)
        self._buf, self._pos = b"", 0
        return out

    def _run(self, buf: bytes, cut: int | None) -> tuple[bytes, int]:
        parts: list[bytes] = []
        last = self._pos
        for m in self._pattern.finditer(buf, self._pos):
            if cut is not None and m.start() >= cut:
                break
            parts.append(buf[last : m.start()])
            parts.append(self._repl(m))
            last = m.end()
        end = len(buf) if cut is None else max(last, cut)
        parts.append(buf[last:end])
        return b"".join(parts), end


class UrlStage(RegexStage):
    """The URL stage: cuts the stream after a byte no URL contains and rewrites whole pieces with
    `Rewriter._segment` (C-speed `sub`); falls back to RegexStage's window when no such byte came
    for MAX_CUT_WAIT bytes. Same bytes out as `Rewriter.rewrite_bytes` on the whole body."""

    def __init__(self, rewriter: Rewriter) -> None:
        super().__init__(
            rewriter._scan_re, rewriter._replace, window=rewriter.url_window, context=URL_CONTEXT
        )
        self._segment = rewriter._segment

    def feed(self, chunk: bytes) -> bytes:
        buf = self._buf + chunk
        cut = max(buf.rfind(b) for b in _CUTS) + 1
        if cut > self._pos and cut >= len(buf) - MAX_CUT_WAIT:
            if self._pos == 0:
                out = self._segment(buf[:cut])
            else:  # bytes before _pos are lookbehind context from a window step
                out, _ = self._run(buf, cut)
            self._buf, self._pos = buf[cut:], 0
            return out
        if len(buf) - self._pos <= MAX_CUT_WAIT:
            self._buf = buf
            return b""
        return self._window_step(buf)

    def finish(self) -> bytes:
        if self._pos != 0:
            return super().finish()
        out = self._segment(self._buf)
        self._buf = b""
        return out


class StreamRewriter:
    """Rewrites one response body: `feed` each chunk, then `finish` once; concatenate the outputs.

    The stages are built once the body's encoding is known: a byte-order mark at its start
    decides it over the Content-Type charset, as in browsers (WHATWG Encoding, "decode"), so up to
    three first bytes wait until they can be told from a mark. A "replacement" charset (no codec,
    `charsets.charset_codec`) leaves the body as it is: browsers show such a body as one
    replacement character. With `prescan` (HTML) and no label a browser knows in the header,
    the page's own `<meta charset>` in its first PRESCAN_BYTES decides, as in browsers
    (`charsets.meta_charset`), so those bytes wait until they have arrived; without any, the
    body is rewritten as ASCII-compatible bytes.
    """

    def __init__(
        self,
        build: Callable[[str], list[Stage]] | None = None,
        charset: str | None = None,
        *,
        prescan: bool = False,
    ) -> None:
        self._build = build  # None once the stages are built
        self._charset = charset
        self._prescan = prescan and not known_label(charset)
        self._head = b""
        self._stages: list[Stage] = []

    def _start(self, head: bytes) -> None:
        assert self._build is not None
        codec = bom_codec(head)
        if codec is None and self._prescan:
            codec = meta_charset(head)
        if codec is None:
            codec = charset_codec(self._charset)
        if codec is not None:
            stages = self._build(codec)
            self._stages = stages if codec_is_bytes_safe(codec) else [Transcoded(codec, stages)]
        self._build = None

    def feed(self, chunk: bytes) -> bytes:
        if self._build is not None:
            chunk = self._head + chunk
            if bom_pending(chunk) or (self._prescan and len(chunk) < PRESCAN_BYTES):
                self._head = chunk
                return b""
            self._head = b""
            self._start(chunk)
        for stage in self._stages:
            chunk = stage.feed(chunk)
        return chunk

    def finish(self) -> bytes:
        data = b""
        if self._build is not None:
            data, self._head = self._head, b""
            self._start(data)
        for stage in self._stages:
            data = stage.feed(data) + stage.finish()
        return data


def _rule_matches_type(rule: RewriteRule, mt: str) -> bool:
    return any(t == mt or (t.endswith("/*") and mt.startswith(t[:-1])) for t in rule.types)


class _Unmapper:
    """Request side: mapped-host URLs back to vendor URLs.

    The scheme is the vendor origin's (https when the vendor has no configured origin; for a
    `ws://` or `wss://` URL its WebSocket twin), and the
    origin's explicit port is restored for the origin host itself, so the vendor sees the URL it
    would have seen without the proxy.
    """

    def __init__(self, host_map: HostMap, vendor_origins: Mapping[str, str]) -> None:
        public = re.escape(host_map.public_host.encode("ascii"))
        host = rb"[a-z0-9][a-z0-9\-]{0,252}\." + public + HOST_END
        self._re = re.compile(url_pattern(host), re.IGNORECASE)
        self._host_map = host_map
        self._origins = {vid: urlsplit(origin) for vid, origin in vendor_origins.items()}
        self._suffix_len = len(host_map.public_host) + 1

    def _replace(self, m: re.Match[bytes]) -> bytes:
        hm = self._host_map
        absolute = m.group("scheme") is not None
        scheme = (m.group("scheme") or hm.public_scheme.encode("ascii")).lower()
        port_text = m.group("port") if absolute else m.group("rport")
        port = int(port_text) if port_text else (443 if scheme in (b"https", b"wss") else 80)
        if port != (hm.public_port or (443 if hm.public_scheme == "https" else 80)):
            return m.group(0)  # another server on the public host name, not the proxy
        mapped = (m.group("host") if absolute else m.group("rhost")).decode("ascii").lower()
        vendor_host = unmap_label(mapped[: -self._suffix_len])
        vendor = None if vendor_host is None else hm.vendor_for_host(vendor_host)
        if vendor_host is None or vendor is None:
            return m.group(0)
        origin = self._origins.get(vendor)
        colon = m.group("colon") if absolute else b":"
        netloc = vendor_host.encode("ascii")
        if origin is not None and origin.hostname == vendor_host and origin.port:
            netloc += colon + str(origin.port).encode("ascii")
        if not absolute:
            return m.group("rel") + netloc
        vendor_scheme = origin.scheme if origin is not None else "https"
        if scheme.startswith(b"ws"):  # a WebSocket URL: the origin's scheme's WebSocket twin
            vendor_scheme = socket_scheme(vendor_scheme)
        return vendor_scheme.encode("ascii") + m.string[m.start("colon") : m.start("host")] + netloc

    def unmap_bytes(self, data: bytes) -> bytes:
        return self._re.sub(self._replace, data)

    def unmap_text(self, value: str) -> str:
        raw = value.encode("utf-8", "surrogateescape")
        return self.unmap_bytes(raw).decode("utf-8", "surrogateescape")


class Rewriter:
    """URL rewriting for one config: bodies (streamed), headers, and the request-side reverse."""

    def __init__(
        self,
        host_map: HostMap,
        rules_by_vendor: Mapping[str, tuple[RewriteRule, ...]] | None = None,
        *,
        vendor_origins: Mapping[str, str] | None = None,
        unshielded: frozenset[str] = frozenset(),
    ) -> None:
        self.host_map = host_map
        # Vendors whose pages have no tracker shield (`third_party = "allow"`): their pages' load
        # tags are read for lenient spellings too (`html_tags.LOAD_TAGS`), as no policy stops them.
        self._unshielded = unshielded
        self._rules = dict(rules_by_vendor or {})
        # The configured international (xn--) host patterns: with any, a host holding a
        # non-ASCII or percent-encoded byte is read whole (`proxy.idn_hosts`) before the ASCII
        # host is tried; with none (most configs) every pattern is the ASCII one.
        self.idn = tuple(p for p, _ in host_map.patterns if "xn--" in p)
        self.url_host = HOST  # the host in `url_pattern`
        scan_host = HOST_SCAN
        plain_host = _HOST_SCAN_CS  # the plain passes' host is case-sensitive, but for the run
        if self.idn:
            self.url_host = rb"(?:" + RUN + rb"|" + HOST + rb")"
            scan_host = rb"(?:" + RUN + rb"|" + HOST_SCAN + rb")"
            plain_host = rb"(?:(?i:" + RUN + rb")|" + _HOST_SCAN_CS + rb")"
        self._url_re = re.compile(url_pattern(self.url_host, _TRAILING_DOT_MATCHED), re.IGNORECASE)
        self._scan_re = re.compile(scan_pattern(scan_host))
        # The split forms (`_sub`): each pattern wrapped in one group that is the whole match.
        self._scan_split = re.compile(rb"(" + scan_pattern(scan_host) + rb")")
        self._abs_plain = re.compile(rb"(" + _abs_plain(plain_host) + rb")")
        self._rel_plain = re.compile(rb"(" + _or_socket(_rel_plain(plain_host)) + rb")")
        # How far past its start a match can look: an international host's run reaches further.
        self.url_window = URL_WINDOW + (RUN_CAP + 70 if self.idn else 0)
        self._public_scheme = host_map.public_scheme.encode("ascii")
        self._public_socket_scheme = socket_scheme(host_map.public_scheme).encode("ascii")
        self._public_port = (
            b"" if host_map.public_port is None else str(host_map.public_port).encode("ascii")
        )
        # Per instance and bounded: the same few vendor hosts recur on every page.
        # A match ends at the host or port, so its replacement depends on the matched bytes
        # alone: cache by them (per instance, bounded; hosts recur on every page, paths do not).
        self._replace_url = lru_cache(maxsize=8192)(self._compute_replacement)
        self._rule_stage_parts = lru_cache(maxsize=256)(self._compile_rules)
        self._mask_parts = lru_cache(maxsize=64)(mask_pattern)
        self._unmapper = _Unmapper(host_map, vendor_origins or {})
        # Per config, built once: the shield's policy and the verdicts on hosts pages name.
        self._shield = {
            allow: rewrite_headers.shield_csp(host_map, allow) for allow in (False, True)
        }
        self._is_third_party = lru_cache(maxsize=4096)(
            partial(rewrite_headers.is_third_party, host_map)
        )
        self._unknown: re.Pattern[bytes] | None = None

    @classmethod
    def from_config(cls, config: Config) -> Rewriter:
        return cls(
            config.host_map(),
            {v.id: v.rewrite for v in config.vendors if v.rewrite},
            vendor_origins={v.id: v.origin for v in config.vendors},
            unshielded=frozenset(v.id for v in config.vendors if v.third_party == "allow"),
        )

    # ----------------------------------------------------------------------------- body URLs

    def _mapped_host(self, host: bytes) -> tuple[bytes, int] | None:
        """The mapped host for a matched host, and where in it the host's name ends (before
        the end only for an international run that a character no name has cuts short)."""
        end = len(host)
        name: str | None = host.decode("ascii").lower() if host.isascii() else None
        if name is not None and b"%" not in host:
            if self.host_map.vendor_for_host(name) is None:
                return None
        else:  # an international host's run (`idn_hosts.RUN`): the host the browser reads
            end, name = read_host(host, 0, self._is_vendor)
            if name is None:
                return None
        return self.host_map.to_mapped(name).split(":")[0].encode("ascii"), end

    def _is_vendor(self, host: str) -> bool:
        return self.host_map.vendor_for_host(host) is not None

    def _replace(self, m: re.Match[bytes]) -> bytes:
        return self._replace_url(m.group(0))

    def _compute_replacement(self, matched: bytes) -> bytes:
        m = self._url_re.fullmatch(matched)
        if m is None:  # cannot happen: a match of the pattern matches it again
            return matched
        absolute = m.group("scheme") is not None
        group = "host" if absolute else "rhost"
        found = self._mapped_host(m.group(group))
        if found is None:
            return matched
        mapped, name_end = found
        # A run cut short by a character no name has: the rest stays as written.
        rest = matched[m.start(group) + name_end :] if name_end < len(m.group(group)) else b""
        if absolute:
            # Colon and slashes as written (`\\u002F\\u002f` stays so); the port takes the colon's.
            colon = m.group("colon")
            scheme = self._public_socket_scheme if matched[0] in b"wW" else self._public_scheme
            head = scheme + matched[m.start("colon") : m.start("host")]
        else:
            colon, head = b":", m.group("rel")
        port = colon + self._public_port if self._public_port else b""
        return head + mapped + port + rest

    def rewrite_bytes(self, data: bytes) -> bytes:
        """Every configured vendor URL in `data` mapped (ASCII-compatible bytes, one shot)."""
        return self._segment(data)

    def _segment(self, data: bytes) -> bytes:
        """`scan_pattern` substituted over `data`: in one compiled pass when `proxy/_scan.pyx`
        is built, otherwise with regexes, fast where the text allows it.

        Without the compiled pass, text with only plain URL forms (lower-case `http`, no escaped
        or percent-encoded separators) takes two literal-led passes, about 4x faster than the one
        regex scan on a results page. The two forms' matches cannot overlap (but for `//http…`, which counts as not
        plain) and a rewritten URL ends as the original did (host or port character), so neither
        pass sees the other's output differently from the one scan. The spots that are not plain
        (a JSON config in the page head, say, or `HTTP` in capitals) are found with literal
        searches; the text around each, from the cut byte before it to the cut byte after it,
        takes the full scan, and spots closer than _SPOT_GAP share one piece. A plain `ws://` or
        `wss://` is not searched for up front (most pages have none): the `//` pass marks it, and
        the text is then done again with those among the spots. Tests compare the result with
        the one scan on generated text.
        """
        scan = rewrite_headers.compiled_scan
        if scan is not None:  # the one scan, compiled: every form in one pass
            return scan.rewrite(data, self._replace_url, self.idn or None)
        out = self._regex_segment(data, sockets=False)
        if out is None:  # the `//` pass met a plain `ws://` or `wss://`: spots too, from the start
            out = self._regex_segment(data, sockets=True)
            assert out is not None  # every plain WebSocket URL was in a spot's piece
        return out

    def _regex_segment(self, data: bytes, *, sockets: bool) -> bytes | None:
        """`_segment` without the compiled pass; None when a piece left to the plain passes holds
        a plain WebSocket URL and `sockets` (look for them as spots) is off."""
        lower = data.lower()
        other_case = data.count(b"http") != lower.count(b"http")
        spots = _spots(data, lower, other_case, len(data) // _SPOT_GAP, sockets)
        if spots is None:
            return self._sub(self._scan_split, data)  # dense: the spots would share one piece
        if not spots:
            return self._plain(data, sockets)
        spots.sort()
        parts: list[bytes] = []
        pos = 0  # data[:pos] is done
        i = 0
        while i < len(spots):
            start = max(pos, max(data.rfind(c, pos, spots[i]) for c in _CUTS) + 1)
            while True:  # the piece runs to the cut byte after its last spot
                cut = _CUT_BYTE.search(data, spots[i])
                end = len(data) if cut is None else cut.end()
                i += 1
                while i < len(spots) and spots[i] < end:
                    i += 1
                if i == len(spots) or spots[i] - end >= _SPOT_GAP:
                    break
            if start > pos:
                plain = self._plain(data[pos:start], sockets)
                if plain is None:
                    return None
                parts.append(plain)
            parts.append(self._sub(self._scan_split, data[start:end]))
            pos = end
        if pos < len(data):
            plain = self._plain(data[pos:], sockets)
            if plain is None:
                return None
            parts.append(plain)
        return b"".join(parts)

    def _plain(self, data: bytes, sockets: bool) -> bytes | None:
        """The two literal-led passes, for text with no spot that is not plain; None when the `//`
        pass marks a plain `ws://` or `wss://` and `sockets` is off (they were not spots)."""
        parts = self._rel_plain.split(self._sub(self._abs_plain, data))
        if len(parts) == 1:
            return parts[0]
        # A match of the `//` pass always has a host, but for the mark of a WebSocket URL.
        if not sockets and b"//" in parts[1::2]:
            return None
        parts[1::2] = map(self._replace_url, parts[1::2])
        return b"".join(parts)

    def _sub(self, pattern: re.Pattern[bytes], data: bytes) -> bytes:
        """`pattern.sub(self._replace, data)` for a pattern whose first group is the whole match,
        about 2.5x faster: `split` finds the matches in C and `map` runs the cached replacement
        without a Python frame per URL (`sub` builds a match object and calls Python for each).
        """
        parts = pattern.split(data)
        if len(parts) == 1:
            return data
        stride = pattern.groups + 1  # split returns the text, then every group of each match
        if stride == 2:
            parts[1::2] = map(self._replace_url, parts[1::2])
            return b"".join(parts)
        out: list[bytes] = [b""] * (2 * (len(parts) // stride) + 1)
        out[0::2] = parts[0::stride]
        out[1::2] = map(self._replace_url, parts[1::stride])
        return b"".join(out)

    def rewrite_text(self, value: str) -> str:
        """Every configured vendor URL in a string mapped; other text unchanged."""
        raw = value.encode("utf-8", "surrogateescape")
        return self.rewrite_bytes(raw).decode("utf-8", "surrogateescape")

    def _url_stage(self) -> UrlStage:
        return UrlStage(self)

    # ----------------------------------------------------------------------------- [[rewrite]]

    def _compile_rules(
        self, vendor_id: str, mt: str, encoding: str
    ) -> tuple[re.Pattern[bytes], dict[bytes, bytes], int] | None:
        table: dict[bytes, bytes] = {}
        for rule in self._rules.get(vendor_id, ()):
            if not rule.find or not _rule_matches_type(rule, mt):
                continue
            try:
                find = rule.find.encode(encoding)
                replace = rule.replace.encode(encoding, "xmlcharrefreplace")
            except UnicodeEncodeError:
                continue  # the rule's text cannot occur in a body of this charset
            table.setdefault(find, replace)  # first rule for a text wins, as listed
        if not table:
            return None
        # Longest first, so a rule whose text contains another's wins where both match.
        finds = sorted(table, key=len, reverse=True)
        pattern = re.compile(b"|".join(re.escape(f) for f in finds))
        return pattern, table, len(finds[0])

    def _rule_stage(self, vendor_id: str, mt: str, encoding: str) -> RegexStage | None:
        parts = self._rule_stage_parts(vendor_id, mt, encoding)
        if parts is None:
            return None
        pattern, table, longest = parts
        return RegexStage(pattern, lambda m: table[m.group(0)], window=longest, context=0)

    # ----------------------------------------------------------------------------- streams

    def stream(
        self,
        vendor_id: str,
        content_type: str | None,
        charset: str | None,
        *,
        masked: tuple[str, ...] = (),
    ) -> StreamRewriter:
        """A rewriter for one body; passes bytes through untouched when the type is not rewritten.

        Vendor `[[rewrite]]` rules see the vendor's own text first, so their replacements may name
        vendor URLs and still get mapped. `masked` (the library's credential as a shared-login
        vendor's page could spell it, `proxy.secret_mask`) is replaced by a mask last, in what
        goes to the browser.
        """
        mt = media_type(content_type)
        if not should_rewrite(mt):
            if masked and masks_only(mt):
                return StreamRewriter(partial(self._mask_stages, masked), charset)
            return StreamRewriter()
        return StreamRewriter(
            partial(self._stages, vendor_id, mt, masked=masked), charset, prescan=mt == "text/html"
        )

    def _stages(
        self, vendor_id: str, mt: str, codec: str, *, masked: tuple[str, ...] = ()
    ) -> list[Stage]:
        """The stages for a body of type `mt` in `codec`: the vendor's rules, then (HTML and XML
        documents) the tags that name what the proxy changes (`html_tags.edit_tag`), then the
        URLs, then the mask over the library's credential (`masked`)."""
        # Transcoded bodies reach the stages as UTF-8.
        encoding = codecs.lookup(codec if codec_is_bytes_safe(codec) else "utf-8").name
        stages: list[Stage] = []
        rules = self._rule_stage(vendor_id, mt, encoding)
        if rules is not None:
            stages.append(rules)
        if mt in TAG_TYPES:
            loads = vendor_id in self._unshielded
            edit = partial(self._edit_tag, encoding=encoding, loads=loads)
            stages.append(HtmlTagStage(edit, loads))
        stages.append(self._url_stage())
        return stages + self._mask_stages(masked, codec)

    def _mask_stages(self, masked: tuple[str, ...], codec: str) -> list[Stage]:
        """The stage masking the library's credential (`masked`) in a body in `codec`, if any."""
        if not masked:
            return []
        encoding = codecs.lookup(codec if codec_is_bytes_safe(codec) else "utf-8").name
        parts = self._mask_parts(masked, encoding)
        if parts is None:
            return []
        pattern, longest = parts
        mask = MASK.encode("ascii")
        return [RegexStage(pattern, lambda _: mask, window=longest, context=0)]

    def _edit_tag(self, tag: bytes, encoding: str = "utf-8", loads: bool = False) -> bytes:
        return html_tags.edit_tag(
            self.host_map,
            self.rewrite_text,
            tag,
            self.rewrite_refresh,
            self._navigable,
            encoding,
            loads,
        )

    def rewrite_body(
        self, vendor_id: str, content_type: str | None, charset: str | None, data: bytes
    ) -> bytes:
        """One-shot form of `stream`, for tests and small bodies."""
        sr = self.stream(vendor_id, content_type, charset)
        return sr.feed(data) + sr.finish()

    # ----------------------------------------------------------------------------- headers

    def rewrite_location(self, value: str) -> str:
        """Location / Content-Location: absolute vendor URLs (and URLs in their query) mapped,
        and then any other spelling a browser would still follow to a vendor host."""
        return self._navigable(self.rewrite_text(value))

    def rewrite_refresh(self, value: str) -> str:
        """Refresh (the header, and `<meta http-equiv="refresh">`): `5; url=https://host/…`,
        its URL mapped however a browser would read it."""
        value = self.rewrite_text(value)
        span = refresh_url(value)
        if span is None:
            return value
        start, end = span
        return value[:start] + self._navigable(value[start:end]) + value[end:]

    def _navigable(self, url: str) -> str:
        """`url`, or the mapped URL when a browser navigating to it would leave for a vendor
        host in a spelling the rewriter does not map (`proxy.navigation`): a redirect must not
        take the patron to the vendor from their own address."""
        leaving = to_vendor_host(url)
        if leaving is None or self.host_map.vendor_for_host(leaving[0]) is None:
            return url
        host, rest = leaving
        return self.host_map.mapped_origin(host) + rest

    def rewrite_link(self, value: str) -> str:
        """Link (RFC 8288): every `<url>` of a comma-separated list."""
        return self.rewrite_text(value)

    def rewrite_acao(self, value: str) -> str:
        """Access-Control-Allow-Origin: a vendor origin becomes its mapped origin; `*` stays."""
        return self.rewrite_text(value)

    def rewrite_csp(self, value: str) -> str:
        """Content-Security-Policy: vendor host sources mapped; see `rewrite_headers.rewrite_csp`."""
        return rewrite_headers.rewrite_csp(self.host_map, self.rewrite_text, value)

    def shield_csp(self, vendor_id: str, allow_third_party: bool) -> str | None:
        """The tracker-shield policy for a proxied HTML page, or None when the shield is off."""
        del vendor_id  # the same policy serves every vendor today; kept for per-vendor extras
        return self._shield[allow_third_party]

    def third_party_hosts(self, html: bytes) -> set[str]:
        """Hosts of unproxied absolute URLs that a page loads or links (for reports and stats)."""
        return rewrite_headers.third_party_hosts(html, self._is_third_party, self._unknown_host)

    def _unknown_host(self) -> re.Pattern[bytes]:
        # Built when the regex pre-check first needs it (no compiled scans), not at start-up:
        # check-config, the CLI and the compiled path never do.
        if self._unknown is None:
            self._unknown = rewrite_headers.unknown_host_pattern(self.host_map)
        return self._unknown

    # ----------------------------------------------------------------------------- request side

    def unmap_url(self, value: str) -> str:
        """Every mapped-host URL in `value` (plain, percent- or form-encoded, escaped) back to the
        vendor's, each separator spelled as it was."""
        return self._unmapper.unmap_text(value)

    @staticmethod
    def unmaps_body(content_type: str | None) -> bool:
        """Whether `unmap_body` changes a request body of this type: forms (urlencoded and the
        fields of multipart ones), text/plain, JSON, XML and GraphQL. The forwarder reads such
        bodies whole."""
        mt = media_type(content_type)
        if mt == "multipart/form-data":
            return boundary(content_type or "") is not None
        return mt in _UNMAPPED_BODIES or mt.endswith(("+json", "+xml"))

    def unmap_body(self, data: bytes, content_type: str | None) -> bytes:
        """Mapped URLs in a form, text, JSON, XML or GraphQL request body mapped back (a
        multipart form's fields, never its files); other bodies unchanged."""
        if not self.unmaps_body(content_type):
            return data
        if media_type(content_type) == "multipart/form-data":
            separator = boundary(content_type or "")
            assert separator is not None  # unmaps_body checked it
            return unmap_multipart(data, separator, self._unmapper.unmap_bytes)
        return self._unmapper.unmap_bytes(data)
