# cython: language_level=3, boundscheck=True, wraparound=False, cdivision=True
"""Compiled scans for the body rewriter (see `proxy.rewrite`).

Why compiled, and hand-written: every proxied HTML, CSS, JavaScript and JSON page goes through
these loops, a results page holds one URL every ~90 bytes, and CPython's regex engine spends
~100-200 ns of C per match plus a list entry per piece (measured: ~5 ms of a 1 MB page in the two
plain regex passes, ~4 ms more in the literal counts that choose them, and JSON full of escaped
URLs took the slow full pattern whole). No library rewrites URLs with the rewriter's rules, so
`rewrite` follows `proxy.rewrite.scan_pattern` byte for byte and `slash_hosts` the third-party
pre-check's `_ANY_HOST`; the tests compare them with those regexes on generated text. The
pure-Python paths stay, and are used when this module is not built.

Memory safety: the input is untrusted vendor bytes. Every read is either through `_at`, which
returns 0 (a byte no rule accepts) outside the buffer, or right after a check of its index
(`_skip`'s eight-byte step, a match's own bytes); the output is built by `_Out`, which checks
its room before every copy, and the match spans are freed on every exit. The tests feed random
bytes of every value and text cut at every byte of a URL.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy

# Byte classes, as the rewriter's patterns spell them.
cdef unsigned char HOSTCH[256]  # [a-zA-Z0-9-]
cdef unsigned char ALNUM[256]  # [a-zA-Z0-9]
cdef unsigned char ABS_BEFORE[256]  # [a-zA-Z0-9+.-]: no absolute URL starts after these
cdef unsigned char REL_BEFORE[256]  # [a-zA-Z0-9_:/]: no protocol-relative URL starts after these
cdef unsigned char FULL_STOP[256]  # bytes where any URL form can start: h H w W / \
cdef unsigned char SLASH_HOST[256]  # [a-zA-Z0-9.-\x80-\xff]: the third-party count's host bytes
cdef unsigned char SLASH[256]  # /
cdef unsigned char PORT_STOP[256]  # [a-zA-Z0-9_-]: no port ends before these (PORT_END)
cdef unsigned char PATH_STOP[256]  # ? # \\ & C0 DEL: where `_plain_url`'s first look stops
cdef unsigned char HOST_STOP[256]  # / % @ non-ASCII: where `_plain_url`'s host look stops
cdef unsigned char DOT_START[256]  # . % \xe3 \xef: the first bytes of TRAILING_DOT's spellings

cdef int _c
for _c in range(256):
    ALNUM[_c] = (48 <= _c <= 57) or (65 <= _c <= 90) or (97 <= _c <= 122)
    HOSTCH[_c] = ALNUM[_c] or _c == 45
    ABS_BEFORE[_c] = ALNUM[_c] or _c in (43, 46, 45)
    REL_BEFORE[_c] = ALNUM[_c] or _c in (95, 58, 47)
    FULL_STOP[_c] = _c in (104, 72, 119, 87, 47, 92)
    SLASH_HOST[_c] = HOSTCH[_c] or _c == 46 or _c >= 128
    SLASH[_c] = _c == 47
    PORT_STOP[_c] = HOSTCH[_c] or _c == 95
    PATH_STOP[_c] = _c in (63, 35, 92, 38) or _c < 32 or _c == 127
    HOST_STOP[_c] = _c in (47, 37, 64) or _c >= 128
    DOT_START[_c] = _c in (46, 37, 0xE3, 0xEF)


cdef inline unsigned char _at(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """p[i], or 0 outside [0, n): lookarounds at the ends see "nothing", as the regexes do."""
    if 0 <= i < n:
        return p[i]
    return 0


cdef inline unsigned char _low(unsigned char c) noexcept:
    return c + 32 if 65 <= c <= 90 else c


cdef Py_ssize_t _host_end(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """HOST_SCAN (case-sensitive spelling) at i: where the host ends, or -1 for no match.

    `[a-zA-Z0-9][a-zA-Z0-9-]*+(?:\\.[a-zA-Z0-9-]++)*+(?![a-zA-Z0-9_-]|\\.[a-zA-Z0-9_-])`.
    """
    if not ALNUM[_at(p, n, i)]:
        return -1
    i += 1
    while HOSTCH[_at(p, n, i)]:
        i += 1
    while _at(p, n, i) == 46 and HOSTCH[_at(p, n, i + 1)]:
        i += 2
        while HOSTCH[_at(p, n, i)]:
            i += 1
    # The possessive runs took every host byte; what can still fail the lookahead is `_`, or a
    # dot before `_`.
    if _at(p, n, i) == 95 or (_at(p, n, i) == 46 and _at(p, n, i + 1) == 95):
        return -1
    return i


cdef inline int _hex(unsigned char c) noexcept:
    """The value of a hex digit (any case), or -1."""
    if 48 <= c <= 57:
        return c - 48
    c = _low(c)
    if 97 <= c <= 102:
        return c - 87
    return -1


cdef inline bint _unicode_dot_at(const unsigned char* p, Py_ssize_t n, Py_ssize_t t) noexcept:
    """A UTF-8 ideographic, fullwidth or halfwidth full stop at t."""
    cdef unsigned char c = _at(p, n, t)
    if c == 0xE3:
        return _at(p, n, t + 1) == 0x80 and _at(p, n, t + 2) == 0x82
    if c == 0xEF:
        return (_at(p, n, t + 1) == 0xBC and _at(p, n, t + 2) == 0x8E) or (
            _at(p, n, t + 1) == 0xBD and _at(p, n, t + 2) == 0xA1
        )
    return False


cdef Py_ssize_t _non_ascii_len(const unsigned char* p, Py_ssize_t n, Py_ssize_t t) noexcept:
    """`idn_hosts._NON_ASCII` at t: its length (1 raw, 3 percent-encoded), or 0. A byte from 0x80
    up, or `%80`-`%FF`, but not a Unicode full stop nor `\\xe2\\x80`, `\\xe3\\x80` (the
    General and CJK Punctuation blocks), raw or percent-encoded."""
    cdef unsigned char c = _at(p, n, t)
    cdef int hi, lo, v
    if c >= 0x80:
        if (c == 0xE2 or c == 0xE3) and _at(p, n, t + 1) == 0x80:
            return 0
        return 0 if _unicode_dot_at(p, n, t) else 1
    if c != 37:
        return 0
    hi = _hex(_at(p, n, t + 1))
    lo = _hex(_at(p, n, t + 2))
    if hi < 8 or lo < 0:
        return 0
    v = hi * 16 + lo
    if (
        (v == 0xE2 or v == 0xE3)
        and _at(p, n, t + 3) == 37
        and _at(p, n, t + 4) == 56
        and _at(p, n, t + 5) == 48
    ):
        return 0
    return 3


cdef inline Py_ssize_t _name_byte_len(const unsigned char* p, Py_ssize_t n, Py_ssize_t t) noexcept:
    """`idn_hosts._NAME_BYTE` at t: [a-zA-Z0-9_-] or `_non_ascii_len`; its length, or 0."""
    if PORT_STOP[_at(p, n, t)]:
        return 1
    return _non_ascii_len(p, n, t)


cdef Py_ssize_t _run_end(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """`idn_hosts.RUN` at i: where an international host's run of name bytes ends, or -1."""
    cdef Py_ssize_t k = i, e = i, d, length
    # The lookahead: a non-ASCII name byte (or a Unicode full stop before a name byte) where the
    # ASCII name bytes and dots run out.
    while PORT_STOP[_at(p, n, k)] or _at(p, n, k) == 46:
        k += 1
    if _non_ascii_len(p, n, k) == 0 and not (
        _unicode_dot_at(p, n, k) and _name_byte_len(p, n, k + 3) > 0
    ):
        return -1
    length = _name_byte_len(p, n, e)
    if length == 0:
        return -1
    while length:
        e += length
        length = _name_byte_len(p, n, e)
    while True:
        if _at(p, n, e) == 46:
            d = 1
        elif _unicode_dot_at(p, n, e):
            d = 3
        else:
            break
        length = _name_byte_len(p, n, e + d)
        if length == 0:
            break
        e += d
        while length:
            e += length
            length = _name_byte_len(p, n, e)
    if _at(p, n, e - 1) >= 0x80 and _at(p, n, e) == 47 and _at(p, n, e + 1) == 47:
        return -1
    return e


cdef inline Py_ssize_t _any_host_end(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """The host at i, for a config with international hosts: an international host's run
    (`_run_end`) first, then the ASCII host. The run is looked for only where the ASCII host
    stops at a byte from 0x80 up, `%`, `.` or `_`, or cannot start: elsewhere its lookahead
    fails, so an ASCII host costs one byte test more."""
    cdef Py_ssize_t end = _host_end(p, n, i), found
    cdef unsigned char c
    if end >= 0:
        c = _at(p, n, end)
        if c < 0x80 and c != 37 and c != 46 and c != 95:
            return end
    found = _run_end(p, n, i)
    return found if found >= 0 else end


cdef inline Py_ssize_t _dot_end(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """`(?:TRAILING_DOT)?` at i (`proxy.rewrite`): a trailing dot on the host (`.`, `%2e` any
    case, or the UTF-8 ideographic, fullwidth or halfwidth full stop) taken only when a URL
    delimiter follows it (`_delimiter_at`). Where it ends."""
    cdef Py_ssize_t k
    cdef unsigned char c = _at(p, n, i)
    if not DOT_START[c]:  # almost every URL: one look-up (it runs for each)
        return i
    if c == 46:
        k = 1
    elif c == 37 and _at(p, n, i + 1) == 50 and _low(_at(p, n, i + 2)) == 101:
        k = 3
    elif c == 0xE3 and _at(p, n, i + 1) == 0x80 and _at(p, n, i + 2) == 0x82:
        k = 3
    elif c == 0xEF and (
        (_at(p, n, i + 1) == 0xBC and _at(p, n, i + 2) == 0x8E)
        or (_at(p, n, i + 1) == 0xBD and _at(p, n, i + 2) == 0xA1)
    ):
        k = 3
    else:
        return i
    return i + k if _delimiter_at(p, n, i + k) else i


cdef inline bint _delimiter_at(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """`proxy.rewrite._DELIMITER` at i: `? # :`, `/` not before `/`, `\\/`, `\\u002f`, and
    `%2f %3f %23 %3a` once or twice encoded (any case). No other escape: before `\\n` or `%20`
    the dot is a sentence's full stop."""
    cdef unsigned char c = _at(p, n, i), d, e
    if c == 63 or c == 35 or c == 58:
        return True
    if c == 47:
        return _at(p, n, i + 1) != 47
    if c == 92:
        return _at(p, n, i + 1) == 47 or _is_u002f(p, n, i + 1)
    if c != 37:
        return False
    i += 1
    if _at(p, n, i) == 50 and _at(p, n, i + 1) == 53:  # `%25`: encoded twice
        i += 2
    d = _at(p, n, i)
    e = _low(_at(p, n, i + 1))
    return (d == 50 and (e == 102 or e == 51)) or (d == 51 and (e == 102 or e == 97))


cdef Py_ssize_t _port_end(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """`(?::[0-9]{1,5}(?![0-9a-zA-Z_-]))?` at i: taken only when 1 to 5 digits follow the
    colon, and no host byte follows them."""
    cdef Py_ssize_t j
    if _at(p, n, i) != 58:
        return i
    j = i + 1
    while j - i <= 6 and 48 <= _at(p, n, j) <= 57:
        j += 1
    if 2 <= j - i <= 6 and not PORT_STOP[_at(p, n, j)]:
        return j
    return i


cdef inline Py_ssize_t _colon_len(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """COLON at i (`:`, `%3a`, `%253a`, any case): its length, or 0."""
    cdef unsigned char c = _at(p, n, i)
    if c == 58:
        return 1
    if c == 37:
        if _at(p, n, i + 1) == 51 and _low(_at(p, n, i + 2)) == 97:
            return 3
        if (
            _at(p, n, i + 1) == 50
            and _at(p, n, i + 2) == 53
            and _at(p, n, i + 3) == 51
            and _low(_at(p, n, i + 4)) == 97
        ):
            return 5
    return 0


cdef inline bint _is_u002f(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """`u002f` (any case) at i: the unicode escape of `/` after its backslash."""
    return (
        _low(_at(p, n, i)) == 117
        and _at(p, n, i + 1) == 48
        and _at(p, n, i + 2) == 48
        and _at(p, n, i + 3) == 50
        and _low(_at(p, n, i + 4)) == 102
    )


cdef inline Py_ssize_t _slash_len(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """SLASH at i (`/`, `\\/`, `%2f`, `%252f`, `\\u002f`, any case): its length, or 0."""
    cdef unsigned char c = _at(p, n, i)
    if c == 47:
        return 1
    if c == 92:
        if _at(p, n, i + 1) == 47:
            return 2
        return 6 if _is_u002f(p, n, i + 1) else 0
    if c == 37 and _at(p, n, i + 1) == 50:
        if _low(_at(p, n, i + 2)) == 102:
            return 3
        if _at(p, n, i + 2) == 53 and _at(p, n, i + 3) == 50 and _low(_at(p, n, i + 4)) == 102:
            return 5
    return 0


cdef inline bint _same_spelling(
    const unsigned char* p, Py_ssize_t n, Py_ssize_t a, Py_ssize_t b, Py_ssize_t length
) noexcept:
    """A backreference under IGNORECASE: p[b:b+length] is p[a:a+length] in any case."""
    cdef Py_ssize_t k
    for k in range(length):
        if _low(_at(p, n, a + k)) != _low(_at(p, n, b + k)):
            return False
    return True


cdef Py_ssize_t _full_match(
    const unsigned char* p, Py_ssize_t n, Py_ssize_t i, bint idn
) noexcept:
    """End of the `scan_pattern(HOST_SCAN)` match starting at i, or -1.

    Absolute: `http` or `ws` (any case) not after [a-zA-Z0-9+.-], `s`?, a COLON, a SLASH twice in
    the same spelling, the host (`_any_host_end`: with `idn`, an international host's run
    first) and its trailing dot if any (`_dot_end`), then the same COLON and 1-5 digits if they
    follow. Protocol-relative: `//`, `\\/\\/` or `\\u002f\\u002f` (any case) not after
    [a-zA-Z0-9_:/], the host and its trailing dot if any, then `:` and 1-5 digits if they follow.
    The alternatives of each group differ in their first two bytes, so the first that fits is the
    only one: no backtracking to mirror."""
    cdef Py_ssize_t j, colon_at, colon_len, slash_len, end, digits
    cdef unsigned char c = p[i]
    if c == 104 or c == 72 or c == 119 or c == 87:
        if i > 0 and ABS_BEFORE[p[i - 1]]:
            return -1
        if c == 119 or c == 87:  # `ws`
            if _low(_at(p, n, i + 1)) != 115:
                return -1
            j = i + 2
        elif (
            _low(_at(p, n, i + 1)) == 116
            and _low(_at(p, n, i + 2)) == 116
            and _low(_at(p, n, i + 3)) == 112
        ):
            j = i + 4
        else:
            return -1
        if _low(_at(p, n, j)) == 115:
            j += 1
        colon_len = _colon_len(p, n, j)
        if colon_len == 0:
            return -1
        colon_at = j
        j += colon_len
        slash_len = _slash_len(p, n, j)
        if slash_len == 0 or not _same_spelling(p, n, j, j + slash_len, slash_len):
            return -1
        if not idn:  # most configs: the ASCII host alone, as fast as ever
            end = _host_end(p, n, j + 2 * slash_len)
        else:
            end = _any_host_end(p, n, j + 2 * slash_len)
        if end < 0:
            return -1
        end = _dot_end(p, n, end)
        if _same_spelling(p, n, colon_at, end, colon_len):  # the port, in the same spelling
            j = end + colon_len
            digits = 0
            while digits <= 5 and 48 <= _at(p, n, j + digits) <= 57:
                digits += 1
            if 1 <= digits <= 5 and not PORT_STOP[_at(p, n, j + digits)]:
                return j + digits
        return end
    if i > 0 and REL_BEFORE[p[i - 1]]:
        return -1
    if c == 47:
        if _at(p, n, i + 1) != 47:
            return -1
        j = i + 2
    elif _at(p, n, i + 1) == 47:  # `\\/\\/`
        if not (_at(p, n, i + 2) == 92 and _at(p, n, i + 3) == 47):
            return -1
        j = i + 4
    else:  # `\\u002f\\u002f`
        if not (_is_u002f(p, n, i + 1) and _at(p, n, i + 6) == 92 and _is_u002f(p, n, i + 7)):
            return -1
        j = i + 12
    end = _any_host_end(p, n, j) if idn else _host_end(p, n, j)
    if end < 0:
        return -1
    return _port_end(p, n, _dot_end(p, n, end))


cdef class _Out:
    """An output buffer of known final size: the input with some spans replaced."""

    cdef bytes buf
    cdef char* w
    cdef Py_ssize_t room

    def __cinit__(self, Py_ssize_t size):
        self.buf = PyBytes_FromStringAndSize(NULL, size)
        self.w = PyBytes_AS_STRING(self.buf)
        self.room = size

    cdef int put(self, const char* src, Py_ssize_t length) except -1:
        if length < 0 or length > self.room:
            raise AssertionError("rewrite output overflow")
        memcpy(self.w, src, length)
        self.w += length
        self.room -= length
        return 0


cdef inline Py_ssize_t _skip(
    const unsigned char* table, const unsigned char* p, Py_ssize_t n, Py_ssize_t i
) noexcept:
    """The first i' >= i with table[p[i']] set, or n. Eight bytes a step while none is set."""
    while i + 8 <= n and not (
        table[p[i]] | table[p[i + 1]] | table[p[i + 2]] | table[p[i + 3]]
        | table[p[i + 4]] | table[p[i + 5]] | table[p[i + 6]] | table[p[i + 7]]
    ):
        i += 8
    while i < n and not table[p[i]]:
        i += 1
    return i


def rewrite(bytes data, object replace, tuple idn=None):
    """`scan_pattern(HOST_SCAN)` substituted over `data` (every URL form the rewriter knows):
    each match replaced by `replace(match)`, which is called once per distinct match text among
    the last eight, so pass the rewriter's cached replacement. `idn` is the rewriter's
    configured international hosts (`Rewriter.idn`): with any, a host holding a non-ASCII or
    percent-encoded byte is taken as `idn_hosts.RUN` takes it. Same bytes as
    `Rewriter._segment`'s regex paths."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    # Where each replaced match starts and ends (pairs), grown as needed; freed on every exit.
    cdef Py_ssize_t* spans = NULL
    cdef Py_ssize_t spans_room = 0
    try:
        return _rewrite_into(data, p, n, replace, bool(idn), &spans, &spans_room)
    finally:
        free(spans)


cdef object _rewrite_into(
    bytes data,
    const unsigned char* p,
    Py_ssize_t n,
    object replace,
    bint idn,
    Py_ssize_t** spans_at,
    Py_ssize_t* spans_room,
):
    cdef Py_ssize_t i = 0, end, grow = 0, k, slot = 0, last = 0
    cdef list repls = []
    cdef Py_ssize_t* grown
    # The last few match texts and their replacements: a page repeats a few hosts many times.
    cdef list keys = [None] * 8, values = [None] * 8
    cdef bytes key, value
    cdef object cand
    cdef bint hit
    while True:
        i = _skip(FULL_STOP, p, n, i)
        if i >= n:
            break
        if (p[i] | 32) == 119 and (_at(p, n, i + 1) | 32) != 115:
            # A `w` not before `s` (most of a text's w's) starts no URL: passed without a call.
            i += 1
            continue
        end = _full_match(p, n, i, idn)
        if end < 0:
            i += 1
            continue
        hit = False
        for k in range(8):
            cand = keys[k]
            if (
                cand is not None
                and PyBytes_GET_SIZE(cand) == end - i
                and memcmp(PyBytes_AS_STRING(cand), p + i, end - i) == 0
            ):
                value = <bytes>values[k]
                hit = True
                break
        if not hit:
            key = PyBytes_FromStringAndSize(<const char*>p + i, end - i)
            value = replace(key)  # Cython checks it is bytes, but lets None through
            if value is None:
                raise TypeError("replace returned None")
            keys[slot], values[slot] = key, value
            slot = (slot + 1) % 8
        if not (
            PyBytes_GET_SIZE(value) == end - i
            and memcmp(PyBytes_AS_STRING(value), p + i, end - i) == 0
        ):
            k = len(repls)
            if 2 * k + 2 > spans_room[0]:
                grown = <Py_ssize_t*>realloc(spans_at[0], (2 * k + 64) * 2 * sizeof(Py_ssize_t))
                if grown == NULL:
                    raise MemoryError()
                spans_at[0] = grown
                spans_room[0] = (2 * k + 64) * 2
            spans_at[0][2 * k] = i
            spans_at[0][2 * k + 1] = end
            repls.append(value)
            grow += PyBytes_GET_SIZE(value) - (end - i)
        i = end
    if not repls:
        return data
    out = _Out(n + grow)
    for k in range(len(repls)):
        i = spans_at[0][2 * k]
        out.put(<const char*>p + last, i - last)
        value = <bytes>repls[k]
        out.put(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
        last = spans_at[0][2 * k + 1]
    out.put(<const char*>p + last, n - last)
    if out.room != 0:
        raise AssertionError("rewrite output underflow")
    return out.buf


def slash_hosts(bytes data):
    """The distinct hosts after every `//`, lower-cased: `set(_ANY_HOST.findall(data))` of
    `proxy.rewrite_headers`, lower-cased (`//([a-z0-9.\\-\\x80-\\xff]+)`, any case)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t i = 0, j, k, slot = 0
    # The last eight distinct hosts seen: a page names a few hosts many times, in turn.
    cdef list recent = [b""] * 8
    cdef bytes host
    cdef bint seen
    found = set()
    while True:
        i = _skip(SLASH, p, n, i)
        if i >= n:
            break
        if _at(p, n, i + 1) == 47 and SLASH_HOST[_at(p, n, i + 2)]:
            j = i + 2
            while SLASH_HOST[_at(p, n, j)]:
                j += 1
            seen = False
            for k in range(8):
                host = <bytes>recent[k]
                if PyBytes_GET_SIZE(host) == j - i - 2 and _same_lower(
                    PyBytes_AS_STRING(host), <const char*>p + i + 2, j - i - 2
                ):
                    seen = True
                    break
            if not seen:
                host = PyBytes_FromStringAndSize(<const char*>p + i + 2, j - i - 2).lower()
                found.add(host)
                recent[slot] = host
                slot = (slot + 1) % 8
            i = j
        else:
            i += 1
    return found


cdef inline bint _same_lower(const char* lowered, const char* b, Py_ssize_t length) noexcept:
    cdef Py_ssize_t j
    for j in range(length):
        if <unsigned char>lowered[j] != _low(<unsigned char>b[j]):
            return False
    return True


cdef inline bint _tag_name(const unsigned char* p, Py_ssize_t n, Py_ssize_t i, const char* name, Py_ssize_t length) noexcept:
    """`name` (lower case) at i in any case."""
    cdef Py_ssize_t k
    for k in range(length):
        if _low(_at(p, n, i + k)) != <unsigned char>name[k]:
            return False
    return True


cdef inline bint _space(unsigned char c) noexcept:
    """The HTML tokenizer's whitespace: tab, LF, FF, CR, space."""
    return c == 9 or c == 10 or c == 12 or c == 13 or c == 32


cdef Py_ssize_t _tag_kind(const unsigned char* p, Py_ssize_t n, Py_ssize_t i, bint loads) noexcept:
    """The tag whose `<` is at i: its name's length, negative for a navigation tag
    (`html_tags.NAVIGATION_TAGS`) and, with `loads`, a load tag (`html_tags.LOAD_TAGS`); 0 for
    none that `tag_spans` looks at. A frame (`html_tags.FRAME_TAGS`) is a navigation tag only
    with `loads`: without, the shield is on and every frame's `src` is read for a third party. The name is any case and followed by a tab, LF, FF, CR,
    space, `/` or `>`."""
    cdef Py_ssize_t length = 0
    cdef bint navigation = True
    cdef unsigned char c = _low(_at(p, n, i + 1))
    if c == 115:  # script, source
        if _tag_name(p, n, i + 1, b"script", 6):
            length, navigation = 6, False
        elif loads and _tag_name(p, n, i + 1, b"source", 6):
            length = 6
    elif c == 108 and _tag_name(p, n, i + 1, b"link", 4):
        length, navigation = 4, False
    elif c == 109 and _tag_name(p, n, i + 1, b"meta", 4):
        length, navigation = 4, False
    elif c == 97:  # a, area, audio
        if _tag_name(p, n, i + 1, b"area", 4):
            length = 4
        elif loads and _tag_name(p, n, i + 1, b"audio", 5):
            length = 5
        else:
            length = 1
    elif c == 98:  # base, button
        if _tag_name(p, n, i + 1, b"base", 4):
            length = 4
        elif _tag_name(p, n, i + 1, b"button", 6):
            length = 6
    elif c == 102:  # form, frame
        if _tag_name(p, n, i + 1, b"form", 4):
            length = 4
        elif _tag_name(p, n, i + 1, b"frame", 5):
            length, navigation = 5, loads
    elif c == 105:  # iframe, input, img
        if _tag_name(p, n, i + 1, b"iframe", 6):
            length, navigation = 6, loads
        elif _tag_name(p, n, i + 1, b"input", 5):
            length = 5
        elif loads and _tag_name(p, n, i + 1, b"img", 3):
            length = 3
    elif loads:
        if c == 118 and _tag_name(p, n, i + 1, b"video", 5):
            length = 5
        elif c == 116 and _tag_name(p, n, i + 1, b"track", 5):
            length = 5
        elif c == 101 and _tag_name(p, n, i + 1, b"embed", 5):
            length = 5
        elif c == 111 and _tag_name(p, n, i + 1, b"object", 6):
            length = 6
    if length == 0:
        return 0
    c = _at(p, n, i + 1 + length)
    if not (_space(c) or c == 47 or c == 62):
        return 0
    return -length if navigation else length


cdef bint _plain_url(const unsigned char* p, Py_ssize_t s, Py_ssize_t e) noexcept:
    """Whether the attribute value p[s:e] (unquoted, still HTML-encoded) is a URL whose host the
    rewriter's URL scan reads as a browser does: every link `html_tags.edit_tag` might change
    is not plain. Before the first `?` or `#` (nothing after them changes the host) there is no
    character reference, backslash or control byte; and the URL is relative (its host is the
    page's), or `//` or a special scheme's `scheme://` is followed by a host with no `%`, `@`,
    non-ASCII byte or further slash (`proxy.navigation` reads those other spellings)."""
    cdef Py_ssize_t q, t, a
    cdef unsigned char c
    while s < e and p[s] <= 32:  # a browser strips leading C0 controls and spaces
        s += 1
    q = s
    while q < e and not PATH_STOP[p[q]]:
        q += 1
    if q < e and p[q] != 63 and p[q] != 35:
        return False  # a backslash, `&` or control byte before any `?` or `#`
    if q - s >= 2 and p[s] == 47 and p[s + 1] == 47:
        a = s + 2
    else:
        t = s
        if t < q and ALNUM[p[t]] and p[t] > 57:  # a scheme starts with a letter
            t += 1
            while t < q and (ALNUM[p[t]] or p[t] == 43 or p[t] == 45 or p[t] == 46):
                t += 1
        if t == s or t >= q or p[t] != 58:
            return True  # no scheme: a path, on the page's own host
        if not (
            (t - s == 4 and _tag_name(p, e, s, b"http", 4))
            or (t - s == 5 and _tag_name(p, e, s, b"https", 5))
            or (t - s == 2 and _tag_name(p, e, s, b"ws", 2))
            or (t - s == 3 and _tag_name(p, e, s, b"wss", 3))
        ):
            return True  # not a special scheme: never an http(s) vendor host
        if t + 2 >= q or p[t + 1] != 47 or p[t + 2] != 47:
            return False  # `http:/host`, `http:host`
        a = t + 3
    if a < q and p[a] == 47:
        return False  # `///host`: a browser skips the extra slashes
    while a < q and not HOST_STOP[p[a]]:
        a += 1
    return a >= q or p[a] == 47  # not `%`, `@` or non-ASCII in the host


cdef inline int _url_attribute(const unsigned char* p, Py_ssize_t s, Py_ssize_t e, bint loads) noexcept:
    """What the attribute name p[s:e] holds: 1 for one URL (`html_tags.NAVIGATION_ATTRIBUTES`,
    and with `loads` `LOAD_ATTRIBUTES`), 2 for a list of URLs (with `loads`, `LIST_ATTRIBUTES`),
    0 for anything else."""
    cdef Py_ssize_t length = e - s
    if length == 4:
        if _tag_name(p, e, s, b"href", 4):
            return 1
        if loads and (_tag_name(p, e, s, b"data", 4) or _tag_name(p, e, s, b"ping", 4)):
            return 2 if _low(p[s]) == 112 else 1
        return 0
    if length == 3:
        return _tag_name(p, e, s, b"src", 3)
    if length == 6:
        if _tag_name(p, e, s, b"action", 6):
            return 1
        if loads and _tag_name(p, e, s, b"poster", 6):
            return 1
        if loads and _tag_name(p, e, s, b"srcset", 6):
            return 2
        return 0
    if length == 10:
        return _tag_name(p, e, s, b"formaction", 10) or _tag_name(p, e, s, b"xlink:href", 10)
    return 0


cdef bint _plain_list(const unsigned char* p, Py_ssize_t s, Py_ssize_t e) noexcept:
    """`_plain_url` for every piece of p[s:e] between whitespace and commas (a `srcset`'s URLs
    and descriptors, a `ping`'s URLs). A URL cut at a comma inside it only has more pieces to
    look at."""
    cdef Py_ssize_t t
    while s < e:
        while s < e and (p[s] <= 32 or p[s] == 44):
            s += 1
        t = s
        while t < e and p[t] > 32 and p[t] != 44:
            t += 1
        if t > s and not _plain_url(p, s, t):
            return False
        s = t
    return True


cdef Py_ssize_t _walk(
    const unsigned char* p,
    Py_ssize_t n,
    Py_ssize_t i,
    Py_ssize_t limit,
    bint links,
    bint loads,
    bint* odd,
) noexcept:
    """Read a tag's attributes from i (just after its name) as the HTML tokenizer does, to the
    `>` that ends the tag: one outside a quoted value (`title="a > b"` holds one that does not).
    Returns that `>`'s index; -1 when there is none before `limit` (too long: not read); -2 when
    the data ends first (unfinished). With `links`, sets *odd when a URL attribute
    (`_url_attribute`, with `loads`) has a value that is not `_plain_url` (`_plain_list`).
    Mirrored by `html_tags._walk`."""
    cdef Py_ssize_t stop = n if n < limit else limit
    cdef Py_ssize_t ns, ne, vs, ve
    cdef int holds
    cdef unsigned char c
    cdef const void* found
    while i < stop:
        c = p[i]
        if c == 62:
            return i
        if _space(c) or c == 47:
            i += 1
            continue
        ns = i
        i += 1  # the first byte of a name may be `=`
        while i < stop and not (_space(p[i]) or p[i] == 47 or p[i] == 61 or p[i] == 62):
            i += 1
        ne = i
        while i < stop and _space(p[i]):
            i += 1
        if i >= stop or p[i] != 61:
            continue  # no value
        i += 1
        while i < stop and _space(p[i]):
            i += 1
        if i >= stop:
            break
        c = p[i]
        if c == 34 or c == 39:
            vs = i + 1
            found = memchr(p + vs, c, stop - vs) if vs < stop else NULL
            if found == NULL:
                break
            ve = <const unsigned char*>found - p
            i = ve + 1
        elif c == 62:
            return i  # `name=>`: no value, and the tag ends
        else:
            vs = i
            while i < stop and not (_space(p[i]) or p[i] == 62):
                i += 1
            ve = i
        if links and not odd[0]:
            holds = _url_attribute(p, ns, ne, loads)
            if (holds == 1 and not _plain_url(p, vs, ve)) or (
                holds == 2 and not _plain_list(p, vs, ve)
            ):
                odd[0] = True
    return -2 if n < limit else -1


def tag_spans(bytes data, Py_ssize_t max_len, bint loads=False):
    """`html_tags.tag_spans`, compiled. A tag is `<` and a tag name (any case)
    before a tab, LF, FF, CR, space, `/` or `>`, then its attributes (`_walk`) and the `>` that
    ends it, at most `max_len` bytes after the name. Every script, link and meta tag is a span,
    and without `loads` every frame and iframe; a navigation tag (`a`, `area`, `base`, `button`, `form`, `frame`, `iframe`, `input`) only when
    a URL attribute's value is not `_plain_url` (most links are, and are left to the URL scan);
    with `loads`, load tags too (`img`, `source`, `video`, `audio`, `track`, `embed`, `object`)
    and their URL attributes. `pending` is where a tag starts that the data ends inside of
    (nothing after it is looked at), or -1; `resume` where the scan stopped (after the last tag
    it read or skipped as too long: no tag starts inside those); a frame too long to read, when
    not `loads`, is the span of its `<` and name. (spans, pending, resume)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t i = 0, j, k, kind, resume = 0
    cdef const void* found
    cdef bint odd
    spans = []
    while i < n:
        found = memchr(p + i, 60, n - i)  # `<`
        if found == NULL:
            break
        i = <const unsigned char*>found - p
        kind = _tag_kind(p, n, i, loads)
        if kind == 0:
            i += 1
            continue
        j = i + 1 + (kind if kind > 0 else -kind)
        odd = False
        k = _walk(p, n, j, j + max_len + 1, kind < 0, loads, &odd)
        if k == -2:
            return spans, i, i
        if k == -1:
            # Too long to read (an unclosed quote, say): for the browser, what follows to the
            # limit is inside this tag, so no tag starts there. Looking again at every `<`
            # inside it would read up to max_len bytes for each (a page of `<a x='` took seconds).
            # A frame's `<` and name alone are a span without `loads` (the shield on): its `src`
            # was not read, and `html_tags.edit_tag` blanks it.
            if not loads and (
                _tag_name(p, n, i + 1, b"iframe", 6) or _tag_name(p, n, i + 1, b"frame", 5)
            ):
                spans.append((i, j))
            i = resume = j + max_len + 1
            continue
        if kind > 0 or odd:
            spans.append((i, k + 1))
        i = resume = k + 1
    return spans, -1, resume
