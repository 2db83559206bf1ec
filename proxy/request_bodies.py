"""Mapped URLs in a multipart/form-data request body mapped back, field by field.

A vendor form with `enctype="multipart/form-data"` (an upload, a citation import, a saved search)
may post a return URL like any other form, and the vendor must get its own URL, never the proxy's.
Written by hand, in bytes: a parser that builds the parts and writes them out again (the
standard library's email package, aiohttp's MultipartReader/Writer) does not promise the same
bytes back, and an uploaded file must reach the vendor exactly as the patron sent it. The
format makes splitting safe: the boundary is chosen so it occurs nowhere in the content
(RFC 2046 5.1.1).
"""

from __future__ import annotations

import email.message
import functools
from collections.abc import Callable


@functools.lru_cache(maxsize=64)
def boundary(content_type: str) -> bytes | None:
    """The boundary parameter of a multipart Content-Type (read by Python's email parser:
    quoted strings, escapes), or None when there is none usable."""
    message = email.message.Message()
    message["Content-Type"] = content_type
    value = message.get_boundary()
    if not value or len(value) > 70 or not value.isascii():  # RFC 2046: 1 to 70 characters
        return None
    return value.encode("ascii")


def _passes_whole(head: bytes) -> bool:
    """Whether a part goes on byte for byte: a file (its Content-Disposition names one), or a
    nested multipart (RFC 7578 4.3's several files of one field as multipart/mixed), whose
    own parts name the files in headers the outer part's do not show."""
    lowered = head.lower()
    if b"filename" in lowered:
        return True
    for line in lowered.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip() == b"content-type" and value.strip().startswith(b"multipart/"):
            return True
    return False


def unmap_multipart(body: bytes, boundary: bytes, unmap: Callable[[bytes], bytes]) -> bytes:
    """`body` with `unmap` applied to the content of every part that is a plain field (not a
    file, not a nested multipart); everything else, those parts and the framing, byte for byte
    as it was."""
    delimiter = b"--" + boundary
    pieces = body.split(delimiter)
    # pieces[0] is the preamble; each later piece starts with the delimiter's line end (or
    # "--" for the closing one), then the part's headers, a blank line and its content.
    for i in range(1, len(pieces)):
        head, blank, content = pieces[i].partition(b"\r\n\r\n")
        if blank and not _passes_whole(head):
            pieces[i] = head + blank + unmap(content)
    return delimiter.join(pieces)
