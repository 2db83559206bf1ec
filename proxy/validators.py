"""What a browser's cache may keep of a vendor's answer, and which validators go back (P4, P5).

Two facts make a vendor's caching headers wrong behind the proxy:

- Every answer on a mapped host belongs to one session: without the session there is no answer
  (a redirect to the sign-in page), and the vendor answered the session's cookie jar, which the
  browser never sees. A shared cache between the patron and the proxy (a library's, an ISP's, a
  school's inspecting proxy) must never keep it for someone else, so `public` and `s-maxage` go
  and `private` is added (`session_cache`).
- The browser's cache outlives sessions (a shared computer, a closed browser), and so does what
  it keeps. What the patron reads or searches is never kept (`private, no-store`:
  proxy/forward.py `_document_cache`); only a page's scripts, styles and fonts are. Even those
  can carry a visitor id in their body, so the browser asks before each use (`no-cache`), and
  what it asks with must not carry one either. An `ETag` or a
  `Last-Modified` date a vendor gave one session comes back to it as `If-None-Match` /
  `If-Modified-Since` in the next, on any host the new session has not navigated to (its first
  navigation clears a host's cache; a vendor's image or script host never sees one). Per-visitor
  validators are a known way to track people without cookies. So the proxy seals every entity
  tag it passes to the browser with a MAC under a key of the session (`seal`), and passes on only
  validators sealed for the session asking (`open_validators`): within a session conditional
  requests work as before; across sessions the vendor is asked unconditionally. A date cannot be
  sealed, so `If-Modified-Since` goes on only beside a tag sealed for the same session (browsers
  send both from one stored answer); an answer with a date and no tag is given a sealed tag of
  the proxy's own for that purpose.

Written by hand: no library seals HTTP validators. Parsing follows RFC 9110 §8.8.3 (entity tags)
and RFC 9111 §5.2 (Cache-Control).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from multidict import CIMultiDict

# An entity tag (RFC 9110 §8.8.3): optional weakness, then a quoted string without quotes.
_TAG = re.compile(r'(W/)?"([^"]*)"')
_TAG_LIST = re.compile(r'\s*(?:(?:W/)?"[^"]*"\s*(?:,\s*|$))*')
_MAC_CHARS = 16  # 8 bytes of MAC in hex: 64 bits
# The tag the proxy gives an answer that has a date and no tag: `Last-Modified` is then passed on
# beside it (as `If-Modified-Since`) and the tag itself is not.
_DATE_ONLY = "!"
# A strong vendor tag the proxy made weak (its body was rewritten): opened strong again.
_PROXY_WEAK = "~"
# A Cache-Control directive: a token, optionally `=token` or `="quoted string"`.
_DIRECTIVE = re.compile(
    r"[\s,]*+([!#$%&'*+\-.^_`|~0-9A-Za-z]++)"
    r"(?:\s*+=\s*+(\"(?:[^\"\\]|\\.)*+\"|[^,\s\"]*+))?\s*+(?:,|$)"
)
# Cache-Control directives dropped: they let a shared cache keep an answer, or the browser use
# it unasked.
_DROPPED = frozenset({"public", "s-maxage", "immutable"})
# No tag sealed for this session matches this (If-Match must then fail, RFC 9110 §13.1.1).
_NO_MATCH = '"weston-proxy-unmatched"'


def session_key(session_id: str) -> bytes:
    """The key a session's validators are sealed under: its id (a 256-bit secret), hashed only
    when longer than BLAKE2's 64-byte key. Keyed BLAKE2 is a PRF, so a tag shows nothing of
    the key, and its personalisation (`_mac`) keeps this use apart from any other."""
    raw = session_id.encode()
    return raw if len(raw) <= 64 else hashlib.sha256(raw).digest()


def _mac(key: bytes, inner: str) -> str:
    # BLAKE2 keyed is a MAC by design (RFC 7693), and cheaper than HMAC on every answer; one
    # call, in C to the hex digits (a Python-level base64 cost as much again).
    return hashlib.blake2b(
        inner.encode("utf-8", "surrogateescape"), key=key, digest_size=8, person=b"weston-etag"
    ).hexdigest()


def seal(key: bytes, etag: str, *, rewritten: bool = False) -> str | None:
    """The entity tag the browser is given for the vendor's `etag`; None for a malformed one
    (the answer then goes without a tag: unsealed, it could carry an identifier across sessions).

    A `rewritten` body is not the vendor's bytes, so a strong tag goes to the browser weak; the
    seal says the weakening was the proxy's (`~`), so the vendor gets its own strong tag back
    (`If-Match` compares strongly: a weak tag would never match, and every save would fail)."""
    etag = etag.strip()
    weak = "W/" if etag.startswith("W/") else ""
    inner = etag[len(weak) + 1 : -1]
    if len(etag) < len(weak) + 2 or etag[len(weak)] != '"' or etag[-1] != '"' or '"' in inner:
        return None
    if rewritten and not weak:
        return f'W/"{_mac(key, inner)}{_PROXY_WEAK}{inner}"'
    return f'{weak}"{_mac(key, inner)}.{inner}"'


def proxy_weak(sealed: str) -> str | None:
    """The weak form `seal(…, rewritten=True)` gives of the tag whose strong seal is `sealed`
    (a vendor's 304 carries no type to say its body is rewritten: the browser holds that form)."""
    if sealed.startswith("W/") or len(sealed) < _MAC_CHARS + 3 or sealed[_MAC_CHARS + 1] != ".":
        return None
    return f"W/{sealed[: _MAC_CHARS + 1]}{_PROXY_WEAK}{sealed[_MAC_CHARS + 2 :]}"


def _open_one(key: bytes, weak: str, inner: str) -> str | None:
    """The vendor's tag inside a sealed one; "" for the proxy's own date-only tag; None when the
    tag was not sealed for this session."""
    mac, sep, rest = inner[:_MAC_CHARS], inner[_MAC_CHARS : _MAC_CHARS + 1], inner[_MAC_CHARS + 1 :]
    if sep == _DATE_ONLY and not rest:
        return "" if hmac.compare_digest(mac, _mac(key, _DATE_ONLY)) else None
    if sep not in (".", _PROXY_WEAK) or not hmac.compare_digest(mac, _mac(key, rest)):
        return None
    return f'"{rest}"' if sep == _PROXY_WEAK else f'{weak}"{rest}"'


def _opened(key: bytes, value: str) -> tuple[list[str], bool]:
    """(the vendor's tags among those in `value` sealed for this session, whether any was)."""
    if _TAG_LIST.fullmatch(value) is None:
        return [], False
    tags: list[str] = []
    any_sealed = False
    for m in _TAG.finditer(value):
        tag = _open_one(key, m.group(1) or "", m.group(2))
        if tag is None:
            continue
        any_sealed = True
        if tag:
            tags.append(tag)
    return tags, any_sealed


def open_validators(headers: CIMultiDict[str], session_id: str) -> None:
    """The browser's conditional headers, as they may reach the vendor for this session.

    Tags sealed for another session, or never sealed, are dropped (`If-Match` then cannot
    match, as it would not have); dates go on only beside a tag sealed for this session, which
    says the browser stored them in it; an `If-Range` that cannot be trusted takes its `Range`
    with it, so the whole answer comes back rather than bytes spliced onto another's."""
    if not (
        "If-None-Match" in headers
        or "If-Modified-Since" in headers
        or "If-Match" in headers
        or "If-Range" in headers
    ):
        return  # most requests
    key = session_key(session_id)
    session_seen = False
    inm = ", ".join(headers.popall("If-None-Match", ()))
    if inm:
        if inm.strip() == "*":
            headers["If-None-Match"] = "*"
        else:
            tags, session_seen = _opened(key, inm)
            if tags:
                headers["If-None-Match"] = ", ".join(tags)
    if not session_seen:
        headers.popall("If-Modified-Since", None)
    if_match = ", ".join(headers.popall("If-Match", ()))
    if if_match:
        tags, _ = _opened(key, if_match)
        headers["If-Match"] = "*" if if_match.strip() == "*" else ", ".join(tags) or _NO_MATCH
    if_range = headers.popall("If-Range", [None])[0]
    if if_range is not None:
        tags, _ = (
            _opened(key, if_range) if if_range.lstrip().startswith(("W/", '"')) else ([], False)
        )
        if len(tags) == 1:
            headers["If-Range"] = tags[0]
        else:  # another session's tag, or a date (which cannot be tied to this session)
            headers.popall("Range", None)


def seal_validators(
    headers: CIMultiDict[str],
    session_id: str,
    *,
    rewritten: bool = False,
    asked: str | None = None,
) -> None:
    """The vendor's validators on an answer, as the browser may keep them (see the module);
    `rewritten`: the body is not the vendor's bytes (`seal`). `asked`, on a 304, is the
    request's If-None-Match: a 304 usually has no type to say its body is rewritten, so when the
    browser asked with the weak form the proxy gave it, the answer carries that same form."""
    etag = headers.popall("ETag", [None])[0]
    if etag is not None:
        sealed = seal(session_key(session_id), etag, rewritten=rewritten)
        if sealed is not None:
            weak = proxy_weak(sealed) if asked else None
            if weak is not None and asked and weak in {t.strip() for t in asked.split(",")}:
                sealed = weak
            headers["ETag"] = sealed
    elif "Last-Modified" in headers:
        headers["ETag"] = f'W/"{_mac(session_key(session_id), _DATE_ONLY)}{_DATE_ONLY}"'


def session_cache(headers: CIMultiDict[str]) -> None:
    """The vendor's Cache-Control, made to hold for an answer that is one session's (see the
    module): never `public` or `s-maxage`, always `private`, and always `no-cache` (never
    `immutable`): the browser asks before each use. A Cache-Control the proxy cannot read
    becomes `no-store, private`.

    `no-cache` because a cached body can carry an identifier as well as a tag can: a vendor
    script cached for a year with a visitor id in it ran, unasked, in the next session on the
    same computer (Chromium's memory cache outlives `Clear-Site-Data`; its disk cache outlives a
    closed browser, and a vendor's script host never sees a navigation that would clear it).
    Asked each time, the browser sends a tag sealed for the session that stored the body: in
    that session the vendor answers 304 (a round trip, no body), in another the tag is dropped
    and the vendor sends the body anew. It also covers a vendor's `Vary: Cookie`, which behind
    the proxy no longer varies (its cookies live in the session jar, not the browser)."""
    if "Cache-Control" not in headers:
        headers["Cache-Control"] = "private, no-cache"  # most scripts, styles and fonts
        return
    value = ", ".join(headers.popall("Cache-Control", ()))
    kept: list[str] = []
    names: set[str] = set()
    pos = 0
    while pos < len(value):
        m = _DIRECTIVE.match(value, pos)
        if m is None:
            # Unreadable: a browser would read what it could of it (a `no-store` among the
            # rest), so nothing of it is trusted and the answer is kept nowhere.
            kept, names = ["no-store"], {"no-store"}
            break
        pos = m.end()
        name = m.group(1).lower()
        if name in _DROPPED or (name in ("private", "no-cache") and m.group(2) is not None):
            # A qualified `private="…"` or `no-cache="…"` names fields only: the answer stays
            # storable, so it is replaced by the bare directive below.
            continue
        kept.append(m.group(1) if m.group(2) is None else f"{m.group(1)}={m.group(2)}")
        names.add(name)
    if "private" not in names:
        kept.append("private")
    if "no-cache" not in names and "no-store" not in names:
        kept.append("no-cache")
    headers["Cache-Control"] = ", ".join(kept)
