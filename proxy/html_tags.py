"""The headers a page carries inside its HTML (`integrity` on scripts and style sheets,
`<meta http-equiv="Content-Security-Policy">` and `"refresh"`), and its links spelt so that the
URL scan would not see them.

`edit_tag` makes one tag fit the rewritten page: Subresource Integrity hashes are dropped where
the proxy may change the resource's bytes, a meta CSP has its host sources mapped as the header's
are (`rewrite_headers.rewrite_csp`), a meta refresh its URL as the header's; and a link, form,
frame or base URL that a browser would follow to a vendor's real host, but that the rewriter's
URL scan does not map (`http:\\\\host`, `/\\host`, a tab in the host, `%77ww`, a fullwidth
letter, `&#x2F;&#x2F;`, user information …; `proxy.navigation` reads them as the browser does),
is replaced by the mapped URL. With the tracker shield on, a frame whose `src` names a third
party (a video player's `<iframe>`) is given `about:blank` instead: the shield's `frame-src` stops
the frame, but only after Chromium has connected to the third party from the patron's address.
`HtmlTagStage` runs it on every such tag of a streamed body, the same for any chunking.
"""

from __future__ import annotations

import html
import html.entities
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from proxy import rewrite_headers
from proxy.hosts import HostMap
from proxy.navigation import leaves_for
from proxy.rewrite_headers import rewrite_csp

# The tags whose attributes act on what the proxy changes: `integrity` on script and link (SRI),
# `<meta http-equiv="Content-Security-Policy">` and `"refresh"`, and the URLs of the tags that
# navigate or set where links go (NAVIGATION_TAGS). A tag runs from `<` to the `>` that ends it as
# the HTML tokenizer reads it (not one inside a quoted value), at most MAX_TAG bytes between its
# name and that `>` (a longer one is left as it is).
MAX_TAG = 8192
# Tags whose URL takes the patron's browser somewhere (a click, a form, a frame) or decides where
# relative links go (`base`), and those URL attributes (`xlink:href` is SVG's `<a>`). With the
# tracker shield on, its `form-action`, `frame-src` and `base-uri` already stop forms, frames and
# base URLs that leave for a vendor host; a link's click nothing stops, and with
# `third_party = "allow"` there is no shield.
NAVIGATION_TAGS = frozenset(
    {b"a", b"area", b"base", b"button", b"form", b"frame", b"iframe", b"input"}
)
# Frames, whose `src` loads as the page loads. The shield's `frame-src` refuses a third-party
# frame, but Chromium has by then opened a connection (TCP, and the TLS ClientHello naming the
# host) from the patron's address (P3): with the shield on, such a `src` becomes FRAME_BLANK.
# The compiled pre-scan (`_scan.tag_spans`) then passes every frame tag on, whatever its URL:
# pages hold few, so ordinary pages pay nothing measurable.
FRAME_TAGS = frozenset({b"frame", b"iframe"})
FRAME_BLANK = "about:blank"
NAVIGATION_ATTRIBUTES = (b"href", b"xlink:href", b"src", b"action", b"formaction")
# With the shield off (`third_party = "allow"`) nothing stops a page loading from a vendor's real
# host either: then the tags that load (an image, a video, a frame's object) and the attributes
# that name what they load are read the same way, and `ping`, which a click sends.
LOAD_TAGS = frozenset({b"img", b"source", b"video", b"audio", b"track", b"embed", b"object"})
LOAD_ATTRIBUTES = (b"poster", b"data")
# Attributes that hold several URLs: `srcset` (URLs with descriptors, comma-separated) and
# `ping` (space-separated).
LIST_ATTRIBUTES = (b"srcset", b"ping")
_NAMES = b"script|link|meta|" + b"|".join(sorted(NAVIGATION_TAGS))
# Where a tag can start: `<`, a name (any case), then what ends a tag name.
_TAG_START = re.compile(rb"<(?i:%s)(?=[\t\n\f\r />])" % _NAMES)
_TAG_START_LOADS = re.compile(
    rb"<(?i:%s|%s)(?=[\t\n\f\r />])" % (_NAMES, b"|".join(sorted(LOAD_TAGS)))
)
_NAME = re.compile(rb"<([a-z]+)")
# How far past its `<` a tag can end: a piece ending further than this past its last `<` (with
# no `>` after it) ends no tag there.
_TAG_REACH = len(b"<script") + MAX_TAG + 1
# One attribute as the HTML tokenizer reads it: a name, then `=` and a value (quoted or not).
_ATTR = re.compile(
    rb"""([^\t\n\f\r />][^\t\n\f\r />=]*)"""
    rb"""(?:[\t\n\f\r ]*=[\t\n\f\r ]*("[^"]*"|'[^']*'|[^\t\n\f\r >]+))?"""
)
_SPACE = "\t\n\f\r "


def tag_spans(data: bytes, loads: bool = False) -> tuple[list[tuple[int, int]], int, int]:
    """The tags in `data` that `edit_tag` looks at, where a tag starts that `data` ends inside
    of (-1 for none; nothing after it is looked at), and where the scan stopped (after the last
    tag it read or skipped as too long; no tag starts inside those):
    `([(start, end), …], pending, resume)`.

    In one compiled pass when built (a page has a `<` every ~30 bytes and ~150 links); it leaves
    out the navigation tags whose URLs it can tell the URL scan maps (most of a page's links),
    which `edit_tag` would leave as they are, but not frame tags when `loads` is off (FRAME_TAGS).
    Otherwise every tag, found with `_TAG_START` and `_walk`. With `loads`, the load tags
    (LOAD_TAGS) too."""
    scan = rewrite_headers.compiled_scan  # read per call: tests switch it off
    if scan is not None:
        return scan.tag_spans(data, MAX_TAG, loads)
    return every_tag(data, MAX_TAG, loads)


def every_tag(
    data: bytes, max_len: int, loads: bool = False
) -> tuple[list[tuple[int, int]], int, int]:
    """`tag_spans` without the compiled pass (and so with every navigation and load tag), for
    tags of at most `max_len` bytes after the name."""
    spans: list[tuple[int, int]] = []
    at = 0
    start = _TAG_START_LOADS if loads else _TAG_START
    while (m := start.search(data, at)) is not None:
        end = _walk(data, m.end(), m.end() + max_len + 1)
        if end == -2:
            return spans, m.start(), m.start()
        if end == -1:
            if not loads and m.group(0)[1:].lower() in FRAME_TAGS:
                spans.append((m.start(), m.end()))  # its name alone (`_third_party_frame`)
            at = m.end() + max_len + 1  # inside this unread tag, for a browser (`_scan.tag_spans`)
            continue
        spans.append((m.start(), end + 1))
        at = end + 1
    return spans, -1, at


# After a tag's name: whitespace and `/` between attributes; an attribute's name (its first byte
# may be `=`) and the whitespace after it; an unquoted value.
_GAP = re.compile(rb"[\t\n\f\r /]*")
_ATTR_NAME = re.compile(rb"[^\t\n\f\r />][^\t\n\f\r />=]*[\t\n\f\r ]*")
_SPACES = re.compile(rb"[\t\n\f\r ]*")
_UNQUOTED = re.compile(rb"[^\t\n\f\r >]*")


def _end(pattern: re.Pattern[bytes], data: bytes, i: int, stop: int) -> int:
    """Where `pattern` (which matches the empty string too) ends, matched at i."""
    m = pattern.match(data, i, stop)
    assert m is not None
    return m.end()


def _walk(data: bytes, i: int, limit: int) -> int:
    """Where the tag whose name ends at i ends: the index of its `>`, read as the HTML tokenizer
    reads attributes (a `>` in a quoted value does not end it); -1 when there is none before
    `limit` (too long: not read), -2 when `data` ends first (unfinished). `_scan._walk`, in
    Python."""
    stop = min(len(data), limit)
    while True:
        i = _end(_GAP, data, i, stop)
        if i >= stop:
            break
        if data[i] == 0x3E:  # `>`
            return i
        i = _end(_ATTR_NAME, data, i, stop)
        if i >= stop or data[i] != 0x3D:  # no `=`: no value
            continue
        i = _end(_SPACES, data, i + 1, stop)
        if i >= stop:
            break
        quote = data[i]
        if quote in b"\"'":
            close = data.find(bytes([quote]), i + 1, stop)
            if close == -1:
                break
            i = close + 1
        elif quote == 0x3E:
            return i  # `name=>`: no value, and the tag ends
        else:
            i = _end(_UNQUOTED, data, i, stop)
    return -2 if len(data) < limit else -1


def _attributes(tag: bytes, name_end: int) -> dict[bytes, re.Match[bytes]]:
    """A tag's attributes by lower-case name; the first of a repeated name wins, as in HTML."""
    attrs: dict[bytes, re.Match[bytes]] = {}
    for m in _ATTR.finditer(tag, name_end, len(tag) - 1):
        attrs.setdefault(m.group(1).lower(), m)
    return attrs


def _raw_bytes(m: re.Match[bytes]) -> bytes:
    """An attribute's value as written: unquoted, character references kept."""
    raw = m.group(2) or b""
    return raw[1:-1] if raw[:1] in (b'"', b"'") else raw


def _raw(m: re.Match[bytes]) -> str:
    return _raw_bytes(m).decode("utf-8", "surrogateescape")


def _value(m: re.Match[bytes]) -> str:
    """An attribute's value as the browser reads it: unquoted and with entities decoded."""
    return unescape_attribute(_raw(m))


# A character reference as the tokenizer starts one: numeric, or a name (its `;` optional).
_REF = re.compile(r"&(?:#[xX][0-9a-fA-F]*;?|#[0-9]*;?|[A-Za-z][A-Za-z0-9]*;?)")


def unescape_attribute(value: str) -> str:
    """Character references decoded as the HTML tokenizer decodes them in an attribute value:
    as `html.unescape` does, but a named reference without its `;` that is followed by a
    letter, digit or `=` stays as written (`?a=1&section=2` keeps `&section`, where
    `html.unescape` makes `§ion`)."""

    def one(m: re.Match[str]) -> str:
        ref = m.group()
        if ref.endswith(";") or ref[1] == "#":
            return html.unescape(ref)
        name = ref[1:]
        for k in range(len(name), 0, -1):  # the longest legacy name (one without `;`) first
            decoded = html.entities.html5.get(name[:k])
            if decoded is None:
                continue
            following = name[k] if k < len(name) else value[m.end() : m.end() + 1]
            if following.isascii() and (following.isalnum() or following == "="):
                return ref
            return decoded + name[k:]
        return ref

    return _REF.sub(one, value) if "&" in value else value


def _readings(raw: bytes, codec: str) -> list[tuple[str, str]]:
    """The texts a browser may read an attribute's bytes as, each with its codec: the page's
    codec; and for a page taken as UTF-8 whose bytes are not UTF-8, windows-1252 too, what
    browsers fall back to for a page with no charset (`http://www.vend\xbar.test` is then
    `vendºr`, which IDNA folds to `vendor`)."""
    readings = [(raw.decode(codec, "surrogateescape"), codec)]
    if codec == "utf-8" and not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            readings.append((raw.decode("cp1252", "surrogateescape"), "cp1252"))
    return readings


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


def edit_tag(
    host_map: HostMap,
    rewrite_url: Callable[[str], str],
    tag: bytes,
    rewrite_refresh: Callable[[str], str] | None = None,
    navigable: Callable[[str], str] | None = None,
    encoding: str = "utf-8",
    loads: bool = False,
) -> bytes:
    """One tag (a `tag_spans` span) of a page in `encoding` as the proxy sends it on; `loads`
    when the vendor's pages have no shield (LOAD_TAGS).

    - `integrity` is dropped where the element loads through the proxy. Subresource Integrity
      pins the exact bytes, and the proxy rewrites vendor URLs in scripts and style sheets, so a
      pinned hash no longer matches and the browser refuses the resource. The hash cannot be
      recomputed: the page is sent before the resource is fetched. What SRI guards against (a
      CDN serving other bytes) is covered by the proxy's own verified TLS fetch from the vendor.
      Third-party resources, which the proxy never touches, keep their `integrity`.
    - `<meta http-equiv="Content-Security-Policy" content=…>` has its host sources mapped as the
      header's are (`rewrite_csp`): the page now loads from mapped hosts, which the vendor's
      policy would otherwise refuse.
    - `<script type="speculationrules">` is made inert (`_inert_rules`).
    - `<meta http-equiv="refresh" content=…>` has its URL mapped as the browser will read it,
      character references decoded (`rewrite_refresh`, as for the header): a refresh is a
      navigation, which no Content-Security-Policy stops.
    - Without `loads` (the shield on), a frame's `src` that a browser would open on a host that is
      neither a vendor's nor the proxy's own becomes `about:blank` (`_third_party_frame`).
    - A navigation tag's URL (`NAVIGATION_ATTRIBUTES`) that would still take the browser to a
      vendor host after the URL scan has mapped it (`navigable` maps it, read as the browser
      reads it) is replaced by the mapped URL; with `loads`, a load tag's too, and the URLs of
      LOAD_ATTRIBUTES and LIST_ATTRIBUTES; see `_edit_links`.
    """
    low = tag.lower()
    name = _NAME.match(low)
    if name is not None and not loads and name.group(1) in FRAME_TAGS:
        tag = _third_party_frame(host_map, tag, name.end(), encoding)
    if name is not None and (
        name.group(1) in NAVIGATION_TAGS or (loads and name.group(1) in LOAD_TAGS)
    ):
        if navigable is None:
            return tag
        return _edit_links(tag, name.end(), rewrite_url, navigable, encoding, loads)
    if (
        name is not None
        and name.group(1) == b"script"
        and (b"speculationrules" in low or (b"&" in low and b"type" in low))
    ):
        # Read as the browser reads the value (`speculation&#114;ules` is speculationrules too);
        # only a tag that could say it is parsed: pages hold many plain <script> tags.
        tag = _inert_rules(tag, name.end())
        low = tag.lower()
    if name is None or (b"integrity" not in low and b"http-equiv" not in low):
        return tag
    name_end = name.end()
    attrs = _attributes(tag, name_end)
    if low.startswith(b"<meta"):
        equiv, content = attrs.get(b"http-equiv"), attrs.get(b"content")
        if equiv is None or content is None or content.group(2) is None:
            return tag
        kind = _value(equiv).strip(_SPACE).lower()
        policy = _value(content)
        if kind == "content-security-policy":
            mapped = rewrite_csp(host_map, rewrite_url, policy)
        elif kind == "refresh" and rewrite_refresh is not None:
            mapped = rewrite_refresh(policy)
        else:
            return tag
        if mapped == policy:
            return tag
        return tag[: content.start(2)] + _quoted(mapped, content) + tag[content.end(2) :]
    integrity = attrs.get(b"integrity")
    url = attrs.get(b"src" if name.group(1) == b"script" else b"href")
    if integrity is None or url is None or not _loads_through_proxy(host_map, _value(url)):
        return tag
    start = integrity.start()
    while start > name_end and tag[start - 1] in b"\t\n\f\r ":
        start -= 1
    return tag[:start] + tag[integrity.end() :]


def _third_party_frame(host_map: HostMap, tag: bytes, name_end: int, encoding: str) -> bytes:
    """A frame tag with its `src` made FRAME_BLANK when a browser would open it (read as
    `proxy.navigation` reads it, in each of `_readings`) on a host that is neither a vendor's
    nor the proxy's own (a mapped host is a subdomain of the public host); as it is otherwise.
    Relative URLs and other schemes (`data:`, `about:`, `javascript:`) connect nowhere new.
    A `srcdoc` document holding such a frame (at any depth) is emptied: its frames connect as
    the page's do.

    A frame tag too long to read (over MAX_TAG: `tag_spans` gives its `<` and name alone) is
    given `src="about:blank" srcdoc=""` first: the tokenizer keeps the first of two attributes
    of one name, so the tag's own `src` and `srcdoc`, unread, are ignored (a `srcdoc` wins over
    any `src`, and one holding a third-party frame connects as the page's do). P3 over a rare
    vendor frame: a legitimate one that long shows blank too."""
    if not tag.endswith(b">"):
        return tag + b' src="' + FRAME_BLANK.encode("ascii") + b'" srcdoc=""'
    attrs = _attributes(tag, name_end)
    srcdoc = attrs.get(b"srcdoc")
    if srcdoc is not None and srcdoc.group(2) is not None and _frames_leave(host_map, srcdoc):
        tag = tag[: srcdoc.start(2)] + _quoted("", srcdoc) + tag[srcdoc.end(2) :]
        attrs = _attributes(tag, name_end)
    src = attrs.get(b"src")
    if src is None or src.group(2) is None:
        return tag
    ours = host_map.public_host
    for text, _ in _readings(_raw_bytes(src), encoding):
        found = leaves_for(unescape_attribute(text))
        if found is None:
            continue
        host = found[0]
        if host == ours or host.endswith("." + ours) or host_map.vendor_for_host(host):
            continue
        return tag[: src.start(2)] + _quoted(FRAME_BLANK, src) + tag[src.end(2) :]
    return tag


_FRAME_IN_DOCUMENT = re.compile(rb"<(?i:i?frame)(?=[\t\n\f\r />])")


def _frames_leave(host_map: HostMap, srcdoc: re.Match[bytes]) -> bool:
    """Whether the document in a `srcdoc` value holds a frame `_third_party_frame` would blank
    (a frame's own srcdoc too, read the same way). Each frame tag is read to its end as the
    tokenizer reads it (`_walk`: a `>` inside a quoted value does not end it); one the
    document ends inside of is read to the document's end."""
    document = unescape_attribute(_value(srcdoc)).encode("utf-8", "surrogateescape")
    at = 0
    while (m := _FRAME_IN_DOCUMENT.search(document, at)) is not None:
        end = _walk(document, m.end(), len(document) + 1)
        frame = document[m.start() : end + 1 if end >= 0 else len(document)]
        name = _NAME.match(frame.lower())
        if name is not None and _third_party_frame(host_map, frame, name.end(), "utf-8") != frame:
            return True
        at = m.end()
    return False


def _inert_rules(tag: bytes, name_end: int) -> bytes:
    """A `<script type="speculationrules">` made inert (`type="text/plain"`). Its prefetches and
    prerenders open connections to whatever hosts it lists, third parties too, from the
    patron's address and before any click; no Content-Security-Policy that lets a page's
    inline scripts run stops them (P3). The vendor's pages lose only their preloading."""
    kind = _attributes(tag, name_end).get(b"type")
    if kind is None or _value(kind).strip(_SPACE).lower() != "speculationrules":
        return tag
    return tag[: kind.start()] + b'type="text/plain"' + tag[kind.end() :]


def _edit_links(
    tag: bytes,
    name_end: int,
    rewrite_url: Callable[[str], str],
    navigable: Callable[[str], str],
    encoding: str,
    loads: bool = False,
) -> bytes:
    """A navigation (or load) tag with each URL attribute that the URL scan leaves bound for a
    vendor host replaced by the mapped URL.

    The URL scan runs after this stage and maps the usual spellings; a URL is changed here
    only when the scan's output (`rewrite_url`), read as the browser reads it, would still leave
    for a vendor host. Then `navigable` gives the mapped URL for the value as the browser reads
    it (in the page's `encoding`, `_readings`; character references decoded; then
    `proxy.navigation`'s reading)."""
    attrs = _attributes(tag, name_end)
    singles = NAVIGATION_ATTRIBUTES + (LOAD_ATTRIBUTES if loads else ())
    edits: list[tuple[int, int, bytes]] = []
    for attr in singles + (LIST_ATTRIBUTES if loads else ()):
        m = attrs.get(attr)
        if m is None or m.group(2) is None:
            continue
        for text, codec in _readings(_raw_bytes(m), encoding):
            if attr in singles:
                mapped = _leaving(text, rewrite_url, navigable)
            else:
                mapped = _leaving_list(attr, text, rewrite_url, navigable)
            if mapped is not None:
                edits.append((m.start(2), m.end(2), _quoted(mapped, m, codec)))
                break
    for start, end, value in sorted(edits, reverse=True):
        tag = tag[:start] + value + tag[end:]
    return tag


def _leaving(
    text: str, rewrite_url: Callable[[str], str], navigable: Callable[[str], str]
) -> str | None:
    """The mapped URL for one URL as written (`text`, character references kept) that a browser
    would follow to a vendor host and that the URL scan does not map; None for any other."""
    url = unescape_attribute(text)
    mapped = navigable(url)
    if mapped == url:
        return None  # not bound for a vendor host
    scanned = unescape_attribute(rewrite_url(text))
    if navigable(scanned) == scanned:
        return None  # the URL scan maps it
    return mapped


def _list_urls(attr: bytes, value: str) -> list[tuple[int, int]]:
    """Where the URLs of a list attribute's (decoded) value are: a `ping`'s are its
    whitespace-separated pieces; a `srcset`'s are read as HTML's "parse a srcset attribute"
    reads them (a candidate's URL runs to whitespace, less trailing commas; its descriptors run
    to a comma outside parentheses), so `a.png 2x,http://b/` holds two URLs."""
    if attr == b"ping":
        return [m.span() for m in re.finditer(r"[^\t\n\f\r ]+", value)]
    spans: list[tuple[int, int]] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in "\t\n\f\r ,":
            i += 1
        if i >= n:
            return spans
        j = i
        while j < n and value[j] not in "\t\n\f\r ":
            j += 1
        end = j
        while end > i and value[end - 1] == ",":
            end -= 1
        spans.append((i, end))
        if end < j:  # the URL ended with a comma: no descriptors
            i = j
            continue
        depth = 0
        while j < n and (value[j] != "," or depth):
            depth += {"(": 1, ")": -1 if depth else 0}.get(value[j], 0)
            j += 1
        i = j + 1


def _leaving_list(
    attr: bytes, text: str, rewrite_url: Callable[[str], str], navigable: Callable[[str], str]
) -> str | None:
    """A list attribute's value as written (`text`) decoded, with each URL in it that a browser
    would follow to a vendor host, and that the URL scan does not map, replaced by the mapped
    URL; None when there is none. The scan's verdict on each URL comes from scanning the whole
    value as written (mapping hosts adds no separator, so its URLs line up with the value's)."""
    value = unescape_attribute(text)
    scanned = unescape_attribute(rewrite_url(text))
    spans, scanned_spans = _list_urls(attr, value), _list_urls(attr, scanned)
    lined_up = len(spans) == len(scanned_spans)
    out: list[str] = []
    last = 0
    for k, (start, end) in enumerate(spans):
        url = value[start:end]
        mapped = navigable(url)
        if mapped == url:
            continue  # not bound for a vendor host
        if lined_up:
            after = scanned[scanned_spans[k][0] : scanned_spans[k][1]]
            if navigable(after) == after:
                continue  # the URL scan maps it
        out += (value[last:start], mapped)
        last = end
    return "".join(out) + value[last:] if out else None


def _quoted(value: str, m: re.Match[bytes], codec: str = "utf-8") -> bytes:
    """`value` as an attribute value in the quotes `m`'s value had (double for none), in
    `codec`; a character it cannot spell becomes a character reference."""
    quote = "'" if m.group(2)[:1] == b"'" else '"'
    # `<` and `>` too: in XML (XHTML, SVG) a raw `<` in an attribute is not well-formed.
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = quote + escaped.replace(quote, f"&#{ord(quote)};") + quote
    try:
        return text.encode(codec, "surrogateescape")
    except UnicodeEncodeError:
        return b"".join(_spelt(c, codec) for c in text)


def _spelt(char: str, codec: str) -> bytes:
    try:
        return char.encode(codec, "surrogateescape")
    except UnicodeEncodeError:
        return f"&#{ord(char)};".encode("ascii")


class HtmlTagStage:
    """`edit_tag` on every tag of an HTML body that `tag_spans` finds, streamed: a tag is held
    back only while it is unfinished (the data ends inside it, at most _TAG_REACH bytes after
    its `<`; or a last `<` with no `>` after it, which may begin a tag name), so the output is
    the same for any chunking and a finished tag is never delayed."""

    def __init__(self, edit: Callable[[bytes], bytes], loads: bool = False) -> None:
        self._edit = edit
        self._loads = loads  # also the load tags (`tag_spans`)
        self._buf = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._buf + chunk
        spans, hold, resume = tag_spans(data, self._loads)
        if hold == -1:
            hold = len(data)
        # A last `<` with no `>` after it may begin a tag name the next chunk completes; not one
        # inside a tag already read or skipped (before `resume`), which starts no tag.
        lt = data.rfind(b"<", min(resume, hold), hold)
        if lt != -1 and len(data) - lt <= _TAG_REACH and data.find(b">", lt) == -1:
            # No tag holds that `<` (it would have a `>` after it): every tag ends before it.
            hold = lt
        self._buf = data[hold:]
        if hold < len(data):
            spans = [span for span in spans if span[1] <= hold]
            data = data[:hold]
        return self._run(data, spans)

    def finish(self) -> bytes:
        data, self._buf = self._buf, b""
        spans, _, _ = tag_spans(data, self._loads)  # a tag unfinished at the end is no tag
        return self._run(data, spans)

    def _run(self, data: bytes, spans: list[tuple[int, int]]) -> bytes:
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
