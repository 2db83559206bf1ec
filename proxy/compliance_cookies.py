"""How long the cookies a vendor page sets would last: Set-Cookie headers and script writes.

Scripts rarely write a cookie as one literal: `"visitor=" + id + "; max-age=31536000"`,
`` `a=${id}; expires=${d}` ``, `name + "=" + value + expires`. A `document.cookie` write is read to
the end of its statement (`;`, `,` or a closing bracket outside strings, or the end of a line that
does not go on with `+`); its string literals give the name and the attributes, and each computed
part stands in as an unknown. A lifetime that may sit in a computed part cannot be read, and is
reported as such, never as a session cookie. A computed part counts as only the name or a value
(so no lifetime can hide in it) when it stands alone between a literal `=` and a literal `;` or the
end, before a literal `=` at the start, or is `encodeURIComponent(…)`/`escape(…)`, whose output has
no `;`. A write to any object's `cookie` property counts (`document` is often passed to a
snippet under another name). The js-cookie (`Cookies.set`, and `Cookies.withAttributes({…})`
whose defaults every cookie it sets takes), jQuery (`$.cookie`) and Cookie Store
(`cookieStore.set`) calls are read too.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from dataclasses import dataclass

SESSION, LASTING, DELETED, UNREADABLE = "session", "lasting", "deleted", "unreadable"


@dataclass(frozen=True)
class Lifetime:
    """What a cookie write does to the patron's browser (`kind`), in words staff can check."""

    kind: str
    words: str


@dataclass(frozen=True)
class ScriptCookie:
    name: str  # "(computed)" when the script works it out
    lifetime: Lifetime


_SESSION = Lifetime(SESSION, "session")
_UNREADABLE = Lifetime(UNREADABLE, "lifetime worked out by the script: needs review")
_TEXT, _CODE = "text", "code"
_COMPUTED = "\x00"  # stands for a computed part in a cookie string
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ENCODED = re.compile(r"(?:window\s*\.\s*)?(?:encodeURIComponent|escape)\s*\(")
# A write to any object's `cookie` property: snippets hand `document` to a function under another
# name (`(function (d) { d.cookie = … })(document)`). A script's own `cookie` property is read
# the same way, and at worst left for review; a missed write would pass a lasting cookie.
_COOKIE_WRITE = re.compile(r"""(?:\.\s*cookie\b|\[\s*(["'])cookie\1\s*\])\s*=(?![=>])""")
_LIBRARY_CALL = re.compile(
    r"(?<![\w$])(?:(?P<days>Cookies\s*\.\s*set|(?:\$|jQuery)\s*\.\s*cookie)"
    r"|(?P<store>cookieStore\s*\.\s*set)"
    r"|(?P<defaults>Cookies\s*\.\s*with(?:Attributes|Converter)))\s*\("
)
# js-cookie 3: `Cookies.withAttributes({…})` gives an API whose every cookie has those attributes.
_CHAINED_SET = re.compile(r"\s*\.\s*set\s*\(")
_GOES_ON = re.compile(r"\s*\+")  # a statement goes on over a newline before or after a `+`
_LONGEST = 1000  # characters read of one cookie write; a longer one is not read to its end
_OPTION = re.compile(
    r"""(?<![\w$-])["']?(?P<key>expires|max-age)["']?\s*:\s*(?P<value>[^,}]*)""", re.I
)


def _duration(seconds: int) -> Lifetime:
    if seconds <= 0:
        return Lifetime(DELETED, "deletes the cookie")
    return Lifetime(LASTING, f"{seconds // 86400} days" if seconds >= 86400 else f"{seconds} s")


def _until(date: str) -> Lifetime:
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return Lifetime(LASTING, f"until {date}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when <= dt.datetime.now(dt.UTC):
        return Lifetime(DELETED, "deletes the cookie")
    return Lifetime(LASTING, f"until {date}")


def cookie_lifetime(cookie: str) -> Lifetime:
    """The lifetime of a cookie string (`name=value; Max-Age=…`), Max-Age before Expires as in
    browsers; computed attribute values (from a script) still make the cookie lasting."""
    max_age = expires = None
    for attribute in cookie.split(";")[1:]:
        key, _, value = attribute.partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "max-age" and (_COMPUTED in value or re.fullmatch(r"-?\d+", value)):
            max_age = value
        elif key == "expires" and value:
            expires = value
    if max_age is not None:
        if _COMPUTED in max_age:
            return Lifetime(LASTING, "max-age worked out by the script")
        return _duration(int(max_age))
    if expires is not None:
        if _COMPUTED in expires:
            return Lifetime(LASTING, "expiry date worked out by the script")
        return _until(expires)
    return _SESSION


# ------------------------------------------------------------------------ reading script source


def _string_end(text: str, i: int) -> int:
    """Index past the '…' or "…" literal opening at text[i]; an unclosed one ends at the line."""
    j = i + 1
    while j < len(text) and text[j] != "\n":
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == text[i]:
            return j + 1
        j += 1
    return min(j, len(text))


def _literal(text: str, i: int, end: int) -> str:
    closed = end - i >= 2 and text[end - 1] == text[i]
    return text[i + 1 : end - 1 if closed else end]


def _comment_end(text: str, j: int) -> int | None:
    """If a comment starts at text[j], the index past it (a line comment stops at its newline)."""
    if text.startswith("//", j):
        n = text.find("\n", j)
        return len(text) if n < 0 else n
    if text.startswith("/*", j):
        n = text.find("*/", j + 2)
        return len(text) if n < 0 else n + 2
    return None


def _code_end(text: str, j: int, *, in_template: bool = False) -> int:
    """Index of the bracket that closes the code starting at text[j] (or the end of the text);
    with `in_template`, text[j] is inside a template literal and the index past its closing
    backquote. Nesting is kept on a stack, not in recursion, so no script can exhaust it."""
    stack = ["`"] if in_template else []
    while j < len(text):
        c = text[j]
        if stack and stack[-1] == "`":
            if c == "\\":
                j += 1
            elif c == "`":
                stack.pop()
                if not stack:
                    return j + 1
            elif text.startswith("${", j):
                stack.append("{")
                j += 1
            j += 1
            continue
        skipped = _string_end(text, j) if c in "'\"" else _comment_end(text, j)
        if skipped is not None:
            j = skipped
            continue
        if c in "([{`":
            stack.append(c)
        elif c in ")]}":
            if not stack:
                return j
            stack.pop()
        j += 1
    return len(text)


def _skip(text: str, j: int) -> int | None:
    """If a string, template literal or comment starts at text[j], the index past it."""
    if text[j] == "`":
        return _code_end(text, j + 1, in_template=True)
    return _string_end(text, j) if text[j] in "'\"" else _comment_end(text, j)


def _template(text: str, i: int) -> list[tuple[str, str]]:
    """The literal text and `${…}` parts of the template literal opening at text[i]."""
    parts: list[tuple[str, str]] = []
    j = start = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
        elif text[j] == "`":
            break
        elif text.startswith("${", j):
            parts.append((_TEXT, text[start:j]))
            end = _code_end(text, j + 2)
            parts.append((_CODE, text[j + 2 : end].strip()))
            j = start = end + 1
        else:
            j += 1
    parts.append((_TEXT, text[start:j]))
    return parts


def _split_top(code: str, separator: str) -> list[str]:
    """`code` split at `separator` outside strings, comments and brackets."""
    parts, depth, start, j = [], 0, 0, 0
    while j < len(code):
        skipped = _skip(code, j)
        if skipped is not None:
            j = skipped
            continue
        if code[j] in "([{":
            depth += 1
        elif code[j] in ")]}":
            depth -= 1
        elif code[j] == separator and depth == 0:
            parts.append(code[start:j])
            start = j + 1
        j += 1
    return [*parts, code[start:]]


def _statement(text: str, *, cut: bool) -> list[tuple[str, str]]:
    """The expression at the start of `text` to the end of its statement, as literal text and
    computed parts in order (split at the top-level `+`); `cut`: `text` stops short of the
    script's end, so a statement that runs to its end is not read whole."""
    pieces: list[tuple[str, str]] = []
    depth, start, j, after_plus = 0, 0, 0, True

    def flush(end: int) -> None:
        code = text[start:end].strip()
        if code:
            pieces.append((_CODE, code))

    while j < len(text):
        c = text[j]
        skipped = _skip(text, j)
        if skipped is not None and depth == 0:
            flush(j)
            if c in "'\"":
                pieces.append((_TEXT, _literal(text, j, skipped)))
            elif c == "`":
                pieces.extend(_template(text, j))
            after_plus = after_plus and c == "/"  # a comment is not a term
            j = start = skipped
            continue
        if skipped is not None:
            j = skipped
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif depth == 0 and (
            c in ";," or (c == "\n" and not after_plus and not _GOES_ON.match(text, j))
        ):
            break
        elif depth == 0 and c == "+":
            flush(j)
            start = j + 1
            after_plus = True
            j += 1
            continue
        if not c.isspace():
            after_plus = False
        j += 1
    flush(j)
    if cut and j >= len(text):
        pieces.append((_CODE, "…"))
    return pieces


# ------------------------------------------------------------------------ cookie writes


def _merged(pieces: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Adjacent literal text joined; a number literal is literal text."""
    out: list[tuple[str, str]] = []
    for kind, value in pieces:
        if kind == _CODE and _NUMBER.fullmatch(value):
            kind = _TEXT
        if kind == _TEXT:
            value = value.replace(_COMPUTED, "")
            if out and out[-1][0] == _TEXT:
                out[-1] = (_TEXT, out[-1][1] + value)
                continue
        out.append((kind, value))
    return out


def _may_hold_attributes(pieces: list[tuple[str, str]], k: int) -> bool:
    """Whether the computed part pieces[k] could carry cookie attributes (a lifetime)."""
    before = pieces[k - 1][1] if k > 0 and pieces[k - 1][0] == _TEXT else None
    after = pieces[k + 1][1] if k + 1 < len(pieces) and pieces[k + 1][0] == _TEXT else None
    last = k + 1 == len(pieces)
    is_name = k == 0 and after is not None and after.lstrip().startswith("=")
    is_value = (
        before is not None
        and before.rstrip().endswith("=")
        and (last or (after is not None and after.lstrip().startswith(";")))
    )
    encoded = _ENCODED.match(pieces[k][1])
    whole = encoded is not None and _code_end(pieces[k][1], encoded.end()) == len(pieces[k][1]) - 1
    return not (is_name or is_value or whole)


def _name(value: str) -> str:
    if _COMPUTED in value:
        return "(computed)"
    return value.strip() or "(unnamed)"


def _document_cookie(pieces: list[tuple[str, str]]) -> ScriptCookie:
    pieces = _merged(pieces)
    cookie = "".join(_COMPUTED if kind == _CODE else value for kind, value in pieces)
    pair = cookie.split(";", 1)[0]
    name = _name(pair.partition("=")[0]) if "=" in pair else _name(pair)
    lifetime = cookie_lifetime(cookie)
    opaque = any(
        kind == _CODE and _may_hold_attributes(pieces, k) for k, (kind, _) in enumerate(pieces)
    )
    return ScriptCookie(name, _UNREADABLE if lifetime.kind == SESSION and opaque else lifetime)


def _options_lifetime(options: str, *, days: bool) -> Lifetime:
    """The lifetime an options object gives; js-cookie and jQuery count a numeric expires in days."""
    options = options.strip()
    if not (options.startswith("{") and options.endswith("}")) or "..." in options:
        return _UNREADABLE
    m = _OPTION.search(options)
    if m is None:
        return _SESSION
    key, value = m["key"].lower(), m["value"].strip()
    if value in ("", "null", "undefined"):
        return _SESSION
    if _NUMBER.fullmatch(value) and (days or key == "max-age"):
        return _duration(round(float(value) * (86400 if key == "expires" else 1)))
    return Lifetime(LASTING, f"{key} set by the script")


def _call_args(text: str, start: int) -> tuple[list[str], int]:
    """The arguments of the call whose `(` ends just before text[start], and where it closes."""
    after = text[start : start + _LONGEST]
    end = _code_end(after, 0)
    args = [a.strip() for a in _split_top(after[:end], ",")]
    return [a for a in args if a], start + end + 1


def _with_defaults(text: str, m: re.Match[str]) -> ScriptCookie | None:
    """js-cookie 3's `Cookies.withAttributes({…})` (or `withConverter`), and the `.set(…)`
    chained on it: the defaults give the lifetime unless the call gives its own. Unchained, the
    API it returns sets lasting cookies wherever it is used, so lasting defaults are reported."""
    args, closed = _call_args(text, m.end())
    defaults = (
        _options_lifetime(args[0], days=True)
        if args and "withAttributes" in m.group(0)
        else _SESSION
    )
    chained = _CHAINED_SET.match(text, closed)
    if chained is None:
        return None if defaults.kind == SESSION else ScriptCookie("(computed)", defaults)
    set_args, _ = _call_args(text, chained.end())
    if len(set_args) < 2:
        return None  # a read
    literal = re.fullmatch(r"""(["'])(.*)\1""", set_args[0], re.S)
    name = literal[2] if literal else "(computed)"
    if set_args[1] == "null":
        return ScriptCookie(name, Lifetime(DELETED, "deletes the cookie"))
    own = _options_lifetime(set_args[2], days=True) if len(set_args) > 2 else _SESSION
    return ScriptCookie(name, own if own.kind != SESSION else defaults)


def _library_call(text: str, m: re.Match[str]) -> ScriptCookie | None:
    """The cookie the library call `m` writes, or None for a read."""
    if m["defaults"]:
        return _with_defaults(text, m)
    args, _ = _call_args(text, m.end())
    first = args[0] if args else ""
    literal = re.fullmatch(r"""(["'])(.*)\1""", first, re.S)
    name = literal[2] if literal else "(computed)"
    if m["store"]:
        if len(args) == 1:
            option = re.search(r"""(?<![\w$])["']?name["']?\s*:\s*(["'])(.*?)\1""", first)
            return ScriptCookie(
                option[2] if option else "(computed)", _options_lifetime(first, days=False)
            )
        return ScriptCookie(name, _SESSION) if len(args) >= 2 else None
    if len(args) < 2:
        return None  # a read, not a write
    if args[1] == "null":
        return ScriptCookie(name, Lifetime(DELETED, "deletes the cookie"))
    return ScriptCookie(name, _options_lifetime(args[2], days=True) if len(args) > 2 else _SESSION)


def script_cookies(script: str) -> list[ScriptCookie]:
    """Every cookie a script writes, in source order."""
    found: list[tuple[int, ScriptCookie]] = []
    for m in _COOKIE_WRITE.finditer(script):
        cut = len(script) > m.end() + _LONGEST
        pieces = _statement(script[m.end() : m.end() + _LONGEST], cut=cut)
        found.append((m.start(), _document_cookie(pieces)))
    for m in _LIBRARY_CALL.finditer(script):
        call = _library_call(script, m)
        if call is not None:
            found.append((m.start(), call))
    return [cookie for _, cookie in sorted(found, key=lambda f: f[0])]
