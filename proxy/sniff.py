"""Whether a body sent without a Content-Type is a document a browser would run scripts in.

A browser sniffs an untyped body (WHATWG MIME Sniffing) and may render it as HTML or XML; the
proxy must then rewrite and shield it like a typed page. `sniff_document` gives the type the
browser would pick when it is one of those, from at most SNIFF_BYTES leading bytes, and
`sniff_decided` says when enough of the body has arrived to tell.
"""

from __future__ import annotations

import re

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
