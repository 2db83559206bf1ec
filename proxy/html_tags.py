"""The headers a page carries inside its HTML (`integrity` on scripts and style sheets,
`<meta http-equiv="Content-Security-Policy">` and `"refresh"`), and its links spelt so that the
URL scan would not see them.

`edit_tag` makes one tag fit the rewritten page: Subresource Integrity hashes are dropped where
the proxy may change the resource's bytes, a meta CSP has its host sources mapped as the header's
are (`rewrite_headers.rewrite_csp`), a meta refresh its URL as the header's; and a link, form,
frame or base URL that a browser would follow to a vendor's real host, but that the rewriter's
URL scan does not map (`http:\\\\host`, `/\\host`, a tab in the host, `%77ww`, a fullwidth
letter, `&#x2F;&#x2F;`, user information …; `proxy.navigation` reads them as the browser does),
is replaced by the mapped URL. `HtmlTagStage` runs it on every such tag of a streamed body, the
same for any chunking.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from proxy import rewrite_headers
from proxy.hosts import HostMap
from proxy.rewrite_headers import rewrite_csp

# The tags whose attributes act on what the proxy changes: `integrity` on script and link (SRI),
# `<meta http-equiv="Content-Security-Policy">` and `"refresh"`, and the URLs of the tags that
# navigate or set where links go (NAVIGATION_TAGS). A tag runs from `<` to the first `>`, at most
# MAX_TAG bytes between its name and that `>` (a longer one is left as it is). A `>` inside a
# quoted value ends the tag early here, unlike in a browser: attributes after it are not seen.
MAX_TAG = 8192
# Tags whose URL takes the patron's browser somewhere (a click, a form, a frame) or decides where
# relative links go (`base`), and those URL attributes (`xlink:href` is SVG's `<a>`). With the
# tracker shield on, its `form-action`, `frame-src` and `base-uri` already stop forms, frames and
# base URLs that leave for a vendor host; a link's click nothing stops, and with
# `third_party = "allow"` there is no shield.
NAVIGATION_TAGS = frozenset(
    {b"a", b"area", b"base", b"button", b"form", b"frame", b"iframe", b"input"}
)
NAVIGATION_ATTRIBUTES = (b"href", b"xlink:href", b"src", b"action", b"formaction")
_NAMES = b"script|link|meta|" + b"|".join(sorted(NAVIGATION_TAGS))
_TAG = re.compile(rb"<(?i:%s)(?=[\t\n\f\r />])[^<>]{0,%d}>" % (_NAMES, MAX_TAG))
_NAME = re.compile(rb"<([a-z]+)")
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
    ~30 bytes and the regex tries each), else by the regex. The compiled pass leaves out the
    navigation tags whose URLs it can tell the URL scan maps (most of a page's links), which
    `edit_tag` would leave as they are."""
    scan = rewrite_headers.compiled_scan  # read per call: tests switch it off
    if scan is not None:
        return scan.tag_spans(data, MAX_TAG)
    return [m.span() for m in _TAG.finditer(data)]


def _attributes(tag: bytes, name_end: int) -> dict[bytes, re.Match[bytes]]:
    """A tag's attributes by lower-case name; the first of a repeated name wins, as in HTML."""
    attrs: dict[bytes, re.Match[bytes]] = {}
    for m in _ATTR.finditer(tag, name_end, len(tag) - 1):
        attrs.setdefault(m.group(1).lower(), m)
    return attrs


def _raw(m: re.Match[bytes]) -> str:
    """An attribute's value as written: unquoted, character references kept."""
    raw = m.group(2) or b""
    if raw[:1] in (b'"', b"'"):
        raw = raw[1:-1]
    return raw.decode("utf-8", "surrogateescape")


def _value(m: re.Match[bytes]) -> str:
    """An attribute's value as the browser reads it: unquoted and with entities decoded."""
    return html.unescape(_raw(m))


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
) -> bytes:
    """One tag (a `_TAG` match) as the proxy sends it on.

    - `integrity` is dropped where the element loads through the proxy. Subresource Integrity
      pins the exact bytes, and the proxy rewrites vendor URLs in scripts and style sheets, so a
      pinned hash no longer matches and the browser refuses the resource. The hash cannot be
      recomputed: the page is sent before the resource is fetched. What SRI guards against (a
      CDN serving other bytes) is covered by the proxy's own verified TLS fetch from the vendor.
      Third-party resources, which the proxy never touches, keep their `integrity`.
    - `<meta http-equiv="Content-Security-Policy" content=…>` has its host sources mapped as the
      header's are (`rewrite_csp`): the page now loads from mapped hosts, which the vendor's
      policy would otherwise refuse.
    - `<meta http-equiv="refresh" content=…>` has its URL mapped as the browser will read it,
      character references decoded (`rewrite_refresh`, as for the header): a refresh is a
      navigation, which no Content-Security-Policy stops.
    - A navigation tag's URL (`NAVIGATION_ATTRIBUTES`) that would still take the browser to a
      vendor host after the URL scan has mapped it (`navigable` maps it, read as the browser
      reads it) is replaced by the mapped URL; see `_edit_links`.
    """
    low = tag.lower()
    name = _NAME.match(low)
    if name is not None and name.group(1) in NAVIGATION_TAGS:
        if navigable is None:
            return tag
        return _edit_links(tag, name.end(), rewrite_url, navigable)
    if b"integrity" not in low and b"http-equiv" not in low:
        return tag
    name_end = 5 if low.startswith(b"<meta") or low.startswith(b"<link") else 7
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
    url = attrs.get(b"src" if name_end == 7 else b"href")
    if integrity is None or url is None or not _loads_through_proxy(host_map, _value(url)):
        return tag
    start = integrity.start()
    while start > name_end and tag[start - 1] in b"\t\n\f\r ":
        start -= 1
    return tag[:start] + tag[integrity.end() :]


def _edit_links(
    tag: bytes, name_end: int, rewrite_url: Callable[[str], str], navigable: Callable[[str], str]
) -> bytes:
    """A navigation tag with each URL attribute that the URL scan leaves bound for a vendor host
    replaced by the mapped URL.

    The URL scan runs after this stage and maps the usual spellings; a value is changed here
    only when the scan's output (`rewrite_url`), read as the browser reads it, would still leave
    for a vendor host. Then `navigable` gives the mapped URL for the value as the browser reads
    it (character references decoded, then `proxy.navigation`'s reading)."""
    attrs = _attributes(tag, name_end)
    edits: list[tuple[int, int, bytes]] = []
    for attr in NAVIGATION_ATTRIBUTES:
        m = attrs.get(attr)
        if m is None or m.group(2) is None:
            continue
        url = _value(m)
        mapped = navigable(url)
        if mapped == url:
            continue  # not bound for a vendor host
        scanned = html.unescape(rewrite_url(_raw(m)))
        if navigable(scanned) == scanned:
            continue  # the URL scan maps it
        edits.append((m.start(2), m.end(2), _quoted(mapped, m)))
    for start, end, value in sorted(edits, reverse=True):
        tag = tag[:start] + value + tag[end:]
    return tag


def _quoted(value: str, m: re.Match[bytes]) -> bytes:
    """`value` as an attribute value in the quotes `m`'s value had (double for none)."""
    quote = "'" if m.group(2)[:1] == b"'" else '"'
    escaped = value.replace("&", "&amp;").replace(quote, f"&#{ord(quote)};")
    return (quote + escaped + quote).encode("utf-8", "surrogateescape")


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
