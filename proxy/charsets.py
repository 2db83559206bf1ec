"""Which charset a body is in, as a browser would read it, and rewriting bodies whose bytes lie.

`charset_codec` reads a Content-Type charset label as WHATWG labels are read (`Windows-31J` is
Shift_JIS), `bom_codec` finds a byte-order mark, which decides over any label, and
`meta_charset` finds an HTML page's own `<meta charset>` as browsers do when the header names
none. `codec_is_bytes_safe` says whether a charset lets bodies be rewritten as bytes (ASCII bytes
always meaning ASCII characters); `Transcoded` wraps the byte stages for the charsets that do not,
decoding and re-encoding incrementally.
"""

from __future__ import annotations

import codecs
import functools
from typing import Protocol

from proxy.content_coding import CorruptBody

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

    A WHATWG label gets the codec browsers decode it with. No label means UTF-8 (an ASCII
    superset, like every default a browser picks), and so does any other label, one only
    Python knows (`utf-7`, `utf-32`) as much as one nobody knows (`utf8mb4`, which PHP and
    MySQL sites send): a browser ignores it and renders the page with its default, so its links
    must be mapped as in any ASCII-compatible page, or a click would leave the proxy (and
    Python's codec would fail on a page the browser shows). Only a "replacement" label gives
    None: browsers show such a body as one replacement character, with nothing to follow.
    """
    if not charset:
        return "utf-8"
    label = charset.strip("\t\n\f\r ").lower()
    if label in _REPLACEMENT_LABELS:
        return None
    return _CODEC_BY_LABEL.get(label, "utf-8")


def known_label(charset: str | None) -> bool:
    """Whether a browser takes `charset` for an encoding label (WHATWG), so that it decides."""
    if not charset:
        return False
    label = charset.strip("\t\n\f\r ").lower()
    return label in _CODEC_BY_LABEL or label in _REPLACEMENT_LABELS


def charset_is_bytes_safe(charset: str | None) -> bool:
    """`codec_is_bytes_safe` for a charset label; False for a "replacement" label (no codec)."""
    name = charset_codec(charset)
    return name is not None and codec_is_bytes_safe(name)


@functools.lru_cache(maxsize=256)  # asked per response; decoding 256 bytes costs ~10 µs
def codec_is_bytes_safe(name: str) -> bool:
    """True when ASCII bytes in a body in Python codec `name` always mean ASCII characters, so
    bytes can be rewritten.

    That holds for UTF-8 and single-byte charsets. Multi-byte charsets whose trailing bytes can be
    ASCII (Shift_JIS, Big5, GBK), stateful ones (ISO-2022) and UTF-16 are transcoded.
    """
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


# ------------------------------------------------------------------ <meta charset> prescan

# How much of an HTML body a browser searches for its `<meta charset>` (WHATWG HTML, "prescan a
# byte stream to determine its encoding").
PRESCAN_BYTES = 1024
_SPACES = b"\t\n\f\r "


class _End(Exception):
    """The prescanned bytes ended inside a construct: the prescan finds nothing."""


def meta_charset(head: bytes) -> str | None:
    """The codec an HTML page's first PRESCAN_BYTES declare (`<meta charset=...>` or `<meta
    http-equiv=Content-Type content="...; charset=...">`), as a browser finds it; None for none.

    WHATWG HTML's prescan, written out because the standard library has none and the packages
    that have one (`webencodings`, `html5lib`) are not dependencies of the proxy; it is short
    and its details decide what a browser does: comments are skipped, a `charset` attribute
    needs no pragma, a `content` one needs `http-equiv="content-type"` beside it, and a label
    must be a WHATWG one. A "replacement" label is passed over (the page is then rewritten, the
    safe side, where the browser shows one replacement character).
    """
    data = head[:PRESCAN_BYTES]
    try:
        return _prescan(data)
    except _End:
        return None


def _prescan(data: bytes) -> str | None:
    n, pos = len(data), 0
    while pos < n:
        if data.startswith(b"<!--", pos):
            end = data.find(b"-->", pos + 2)
            if end < 0:
                return None
            pos = end + 3
            continue
        if data[pos : pos + 5].lower() == b"<meta" and data[pos + 5 : pos + 6] in (
            *(bytes((c,)) for c in _SPACES),
            b"/",
        ):
            codec, pos = _meta(data, pos + 5)
            if codec is not None:
                return codec
        elif data[pos : pos + 1] == b"<" and (
            data[pos + 1 : pos + 2].isalpha()
            or (data[pos + 1 : pos + 2] == b"/" and data[pos + 2 : pos + 3].isalpha())
        ):
            while pos < n and data[pos] not in _SPACES and data[pos] != 0x3E:
                pos += 1
            while (attribute := _attribute(data, pos)) is not None:
                pos = attribute[2]
            pos = _after_attributes(data, pos)
        elif data.startswith((b"<!", b"</", b"<?"), pos):
            pos = data.find(b">", pos)
            if pos < 0:
                return None
        pos += 1
    return None


def _after_attributes(data: bytes, pos: int) -> int:
    while pos < len(data) and data[pos] in _SPACES + b"/":
        pos += 1
    return pos


def _meta(data: bytes, pos: int) -> tuple[str | None, int]:
    seen: set[bytes] = set()
    got_pragma, need_pragma, label = False, None, None
    while (attribute := _attribute(data, pos)) is not None:
        name, value, pos = attribute
        if name in seen:
            continue
        seen.add(name)
        if name == b"http-equiv":
            got_pragma = got_pragma or value == b"content-type"
        elif name == b"content" and label is None:
            found = _charset_in_content(value)
            if found is not None:
                label, need_pragma = found, True
        elif name == b"charset":
            label, need_pragma = value, False
    pos = _after_attributes(data, pos)
    if need_pragma is None or (need_pragma and not got_pragma) or label is None:
        return None, pos
    codec = _CODEC_BY_LABEL.get(label.decode("latin-1").strip("\t\n\f\r "))
    if codec in ("utf_16_be", "utf_16_le"):
        codec = "utf-8"  # a page that can read its own meta tag as ASCII is no UTF-16
    elif codec == "latin_1":
        codec = "cp1252"  # x-user-defined in a meta tag means windows-1252
    return codec, pos


def _attribute(data: bytes, pos: int) -> tuple[bytes, bytes, int] | None:
    """WHATWG "get an attribute": (name, value, position after it) lower-cased, or None at `>`."""
    n = len(data)
    pos = _after_attributes(data, pos)
    if pos >= n:
        raise _End
    if data[pos] == 0x3E:
        return None
    name = bytearray()
    while True:
        if pos >= n:
            raise _End
        c = data[pos]
        if c == 0x3D and name:
            pos += 1
            break
        if c in _SPACES:
            while pos < n and data[pos] in _SPACES:
                pos += 1
            if pos >= n:
                raise _End
            if data[pos] != 0x3D:
                return bytes(name), b"", pos
            pos += 1
            break
        if c in b"/>":
            return bytes(name), b"", pos
        name.append(c | 0x20 if 0x41 <= c <= 0x5A else c)
        pos += 1
    while pos < n and data[pos] in _SPACES:
        pos += 1
    if pos >= n:
        raise _End
    c = data[pos]
    if c in b"\"'":
        end = data.find(bytes((c,)), pos + 1)
        if end < 0:
            raise _End
        return bytes(name), data[pos + 1 : end].lower(), end + 1
    if c == 0x3E:
        return bytes(name), b"", pos
    end = pos
    while end < n and data[end] not in _SPACES and data[end] != 0x3E:
        end += 1
    if end >= n:
        raise _End
    return bytes(name), data[pos:end].lower(), end


def _charset_in_content(value: bytes) -> bytes | None:
    """WHATWG "extract a character encoding from a meta element" (value lower-cased)."""
    pos = 0
    while True:
        found = value.find(b"charset", pos)
        if found < 0:
            return None
        pos = found + 7
        while pos < len(value) and value[pos] in _SPACES:
            pos += 1
        if value[pos : pos + 1] == b"=":
            pos += 1
            break
    while pos < len(value) and value[pos] in _SPACES:
        pos += 1
    if pos >= len(value):
        return None
    if value[pos] in b"\"'":
        end = value.find(value[pos : pos + 1], pos + 1)
        return None if end < 0 else value[pos + 1 : end]
    end = pos
    while end < len(value) and value[end] not in _SPACES and value[end] != 0x3B:
        end += 1
    return value[pos:end]
