"""Undo a response's Content-Encoding, incrementally and in bounded pieces.

`decoder_for` undoes gzip, deflate (zlib-wrapped or raw), br and chains of them incrementally,
handing out pieces of at most DECODE_PIECE bytes (about that, for br), so the rewriter can work on a
compressed body as it streams; `decode_prefix` decodes only the start of a body (what the sniffer or
an adapter's peek reads), stopping the decoder there. Rewritten bodies go out uncompressed; the
proxy does not re-compress (a front server such as nginx can, for patrons on slow links).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli

from proxy.errors import ProxyError

# Largest piece a decoder hands out at once, so a small compressed chunk (a "zip bomb") never
# becomes one huge buffer: the caller rewrites and sends each piece before asking for the next.
DECODE_PIECE = 64 * 1024


class UnsupportedEncoding(ProxyError):
    """The vendor used a Content-Encoding browsers undo and the proxy cannot (zstd, a shared
    dictionary): a body that must be rewritten cannot be, and is refused."""

    why = "unsupported_content_encoding"  # for IT staff (errors.failure_kind)


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


_GZIP_MAGIC = b"\x1f\x8b"


class _Zlib:
    """gzip (several members allowed) or deflate, which servers send zlib-wrapped or raw."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._d: zlib._Decompress | None = None
        self._head = b""  # the first bytes of a member, until its kind can be told
        self._members = 0  # members decoded whole
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
                if self._members and data[:2] != _GZIP_MAGIC:
                    # After a whole member, only another member is read on: what else follows
                    # (a stray newline after PHP's `?>`, zero padding) is ignored, as browsers
                    # ignore it (Chromium's GzipSourceStream, "ignoring extra bytes").
                    self._done = True
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
            # A member ended: gzip may go on with another (in this chunk or the next one, so
            # the output is the same for any chunking); a deflate stream's tail is ignored.
            data, self._d = d.unused_data, None
            self._members += 1
            self._done = self._kind != "gzip"

    def finish(self) -> Iterator[bytes]:
        # One byte left after a whole member is a stray byte, not a truncated member.
        if (self._head and not self._members) or (self._d is not None and not self._d.eof):
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


# Codings browsers undo that the proxy cannot (Chromium decodes zstd and the shared-dictionary
# `dcb`/`dcz`); the upstream Accept-Encoding offers none of them (privacy.DECODABLE_ENCODINGS).
BROWSER_ONLY_CODINGS = frozenset({"zstd", "dcb", "dcz"})


def _one_decoder(coding: str) -> BodyDecoder | None:
    if coding in ("gzip", "x-gzip"):
        return _Zlib("gzip")
    if coding == "deflate":
        return _Zlib("deflate")
    if coding == "br":
        return _Brotli()
    if coding in BROWSER_ONLY_CODINGS:
        raise UnsupportedEncoding(f"unsupported Content-Encoding {coding!r}")
    # Not a coding at all (`identity`, `utf-8`, `none`, `binary`, `8bit`: misconfigured
    # servers send these) or one no browser knows: Chromium ignores it and reads the bytes as
    # they are (URLRequestHttpJob::SetUpSourceStream), so the proxy reads them so too.
    return None


def decoder_for(content_encoding: str | None) -> BodyDecoder:
    """An incremental decoder for a Content-Encoding value (gzip, deflate, br, chains of them;
    codings browsers do not know are read as identity, as Chromium reads them).

    Raises UnsupportedEncoding for a coding browsers undo and the proxy cannot
    (BROWSER_ONLY_CODINGS): the caller then passes a body it does not rewrite untouched, and
    refuses one it would have to rewrite. The upstream request offers only `gzip, deflate, br`,
    so this stays rare.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    decoders = [d for c in reversed(codings) if c and (d := _one_decoder(c)) is not None]
    if not decoders:
        return _Identity()
    return decoders[0] if len(decoders) == 1 else _Chain(decoders)


def decode_prefix(content_encoding: str | None, data: bytes, limit: int) -> bytes:
    """At most `limit` bytes of `data` decoded, the decoder stopped once they are out: a few
    hundred coded bytes can stand for gigabytes (809 bytes of br are 512 MB of zeros), so the
    work and memory are those of `limit` and one more piece, whatever `data` expands to.

    Raises as `decoder_for` and the decoders do (UnsupportedEncoding, CorruptBody)."""
    pieces: list[bytes] = []
    size = 0
    for piece in decoder_for(content_encoding).feed(data):
        pieces.append(piece)
        size += len(piece)
        if size >= limit:
            break  # the generator is closed with what it had not decoded
    return b"".join(pieces)[:limit]
