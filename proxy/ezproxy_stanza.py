"""Turn one EZproxy Title stanza into a vendor table, refusing anything that carries patron data.

The decisions are those listed in proxy.ezproxy; here each directive of the stanza is applied to a
`Draft`, and `finish_stanza` checks the starting URL, hosts, login and rewrites and records every
warning and note against the config line it is about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from proxy.config import covers_public_suffix
from proxy.ezproxy_read import Line, Message
from proxy.hosts import host_matches, is_valid_hostname

PATRON_DATA = "would send patron data to the vendor"
JS_TYPES = ("text/html", "application/javascript", "text/javascript", "application/x-javascript")
_IDENTITY_DIRECTIVES = {"encryptvar", "allowvars", "eblsecret"}
# EZproxy makes a token for each user from these and puts it in the URL (^B for Books24x7).
_TOKEN_DIRECTIVES = {"tokenkey", "tokensignaturekey"}
_NOT_CONVERTED = {
    "formselect", "formsubmit", "httpheader", "httpmethod", "proxyhostnameedit", "cookie",
    "cookiefilter", "anonymousurl", "autologinip", "description", "metafind", "addcookie",
}  # fmt: skip
# ^u is the patron's username, ^i (and ^0-^9, UsrVar values) further patron attributes; ^{…} is
# an expression that can read anything about the patron, so it is treated the same way.
_IDENTITY_CARET = re.compile(r"\^(?:[uUiI0-9]|\{)")
# Every other caret substitution (^A, ^B token, ^H host, ^P host^, ^R, ^S …): EZproxy filled it in
# for each request, and nothing here can.
_EZPROXY_CARET = re.compile(r"\^[A-Za-z{]")
# pass, passwd, password, pwd, pw, userpw, pin, pincode, secret, credentials …
_PASSWORD_FIELD = re.compile(r"pass|pw|^pin|pin$|secret|cred", re.I)
_USERNAME_FIELD = re.compile(r"user|login|account|acct|email|card|barcode|id$", re.I)
_SECRET_FIELD = re.compile(r"secret|token|key|sig|hash|code|session|auth(?!type)", re.I)


@dataclass(frozen=True)
class StanzaResult:
    """What became of one Title stanza."""

    title: str
    vendor_id: str
    source: str  # file the Title line is in
    first_line: int
    last_line: int
    status: str  # converted | converted-with-warnings | skipped
    vendor: dict[str, Any] | None  # the vendor table as written, None when skipped
    warnings: tuple[Message, ...] = ()
    notes: tuple[Message, ...] = ()
    skip_reason: str = ""

    @property
    def filename(self) -> str:
        return f"{self.vendor_id}.toml"


@dataclass
class Draft:
    """A stanza being read: its directives sorted by meaning, its warnings and notes so far."""

    title_line: Line
    title: str
    groups: tuple[str, ...]
    referer: Line | None
    last: int
    url: Line | None = None
    form: str = ""  # -Form= method, empty for an ordinary URL
    hosts: list[tuple[Line, str, bool]] = field(default_factory=list)  # (line, pattern, js)
    find: Line | None = None  # the Find waiting for the Replace directly after it
    rewrite: list[tuple[Line, Line]] = field(default_factory=list)
    form_vars: list[Line] = field(default_factory=list)
    warnings: list[Message] = field(default_factory=list)
    notes: list[Message] = field(default_factory=list)

    def warn(self, ln: Line, text: str) -> None:
        self.warnings.append(Message(ln.where, text))

    def note(self, ln: Line, text: str) -> None:
        self.notes.append(Message(ln.where, text))


def host_of(value: str) -> str:
    """The bare host of a Host/Domain value, which may carry a scheme and a port."""
    v = value.split()[-1] if value.split() else ""
    v = re.sub(r"^[a-z]+://", "", v, flags=re.I).split("/")[0]
    return v.rsplit(":", 1)[0].strip(".").lower() if ":" in v else v.strip(".").lower()


def add_stanza_line(d: Draft, ln: Line) -> None:
    """Apply one directive that belongs to the open stanza."""
    k = ln.directive
    d.last = ln.number if ln.file == d.title_line.file else d.last
    if k == "url":
        if d.url is not None:
            d.warn(ln, "a second URL line; only the first is the starting point, host added")
            d.hosts.append((ln, host_of(ln.value.split()[-1]) if ln.value else "", False))
            return
        d.url = ln
    elif k in ("host", "hostjavascript"):
        d.hosts.append((ln, host_of(ln.value), k == "hostjavascript"))
    elif k in ("domain", "domainjavascript"):
        dom = host_of(ln.value)
        d.hosts += [(ln, dom, k == "domainjavascript"), (ln, "*." + dom, k == "domainjavascript")]
    elif k == "find":
        # A Find pairs with the Replace directly after it (OCLC: "always appear paired
        # together, with Find appearing directly before its corresponding Replace"): a Find
        # followed by another Find has no Replace of its own.
        if d.find is not None:
            d.warn(d.find, "Find without a Replace after it; left out")
        d.find = ln
    elif k == "replace":
        if d.find is None:
            d.warn(ln, "Replace without a Find before it; left out")
        else:
            d.rewrite.append((d.find, ln))
            d.find = None
    elif k == "formvariable":
        d.form_vars.append(ln)
    elif k in _IDENTITY_DIRECTIVES:
        d.warn(ln, f"{ln.word} refused: it {PATRON_DATA}")
    elif k == "option":
        d.note(ln, f"Option {ln.value} has no equivalent here; ignored")
    elif k in _TOKEN_DIRECTIVES:
        d.warn(ln, f"{ln.word} not converted: EZproxy's per-user tokens have no equivalent here")
    elif k in _NOT_CONVERTED:
        d.note(ln, f"{ln.word} has no equivalent here; ignored")  # values may be secrets
    elif k != "includefile":  # IncludeFile is reported where lines are read
        d.note(ln, f"{ln.word} not converted; review what it did for this database")


def _parse_url(d: Draft) -> tuple[str, str] | str:
    """(origin, start URL) or the reason the stanza cannot be used."""
    assert d.url is not None
    words = d.url.value.split()
    options = [w for w in words if w.startswith("-")]
    rest = [w for w in words if not w.startswith("-")]
    for o in options:
        if o.lower().startswith("-form="):
            d.form = o.split("=", 1)[1].lower()
    if not rest:
        return "URL line has no URL"
    url = rest[-1]
    if _IDENTITY_CARET.search(url):
        return f"its URL carries a patron substitution (^u, ^i, ^0-9 or ^{{…}}) that {PATRON_DATA}"
    caret = _EZPROXY_CARET.search(url)
    if caret:
        return (
            f"its URL carries the EZproxy substitution {caret.group()} (filled in by EZproxy for "
            "each request), which has no equivalent here"
        )
    if len(rest) > 1 and not d.form:
        d.warn(d.url, "URL label form (sent patrons past EZproxy unproxied); now proxied")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is no number from 0 to 65535, unbalanced [ ]
        # Not the error's text: it quotes the "port", which may be part of a password.
        return (
            f"URL {_shown(url)!r} cannot be used: its port is no number from 0 to 65535, or "
            "its [ ] do not match"
        )
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"URL {_shown(url)!r} is not an http(s) URL"
    at_after_host = "@" in parts.path + parts.query + parts.fragment
    if at_after_host and (parts.username is not None or "." not in parts.hostname.strip("[]")):
        # `acct:12/34@host`: a password holding / ? or # ends the host early (browsers read
        # `acct` as the host, port 12), and the rest of it would be read as the path or query.
        # `acct:pw@rd/x@host` is the same with an @ in the password: a userinfo is found, but
        # the host is the middle of the password. A database is never on a dotless host, and
        # a URL with an account in it has no @ in its path; an @ in an ordinary URL's path is
        # left be.
        return (
            f"URL {_shown(url)!r} cannot be used: an @ outside its host (an account or password "
            "holding /, ? or #?); write those characters percent-encoded"
        )
    if parts.username or parts.password:
        d.warn(d.url, "URL carried credentials; removed (never copied into the vendor file)")
    # Filter the raw k=v pairs so the vendor sees the rest of the query exactly as before.
    pairs = [pair for pair in parts.query.split("&") if pair]
    kept = [
        pair
        for pair in pairs
        if not (_PASSWORD_FIELD.search(k := unquote_plus(pair.split("=")[0])) or _is_account(k))
    ]
    if len(kept) != len(pairs):
        d.warn(d.url, "URL query carried an account or password; removed from start_url")
    netloc = parts.hostname.lower() + (f":{port}" if port else "")
    origin = f"{parts.scheme.lower()}://{netloc}"
    start = urlunsplit((parts.scheme.lower(), netloc, parts.path, "&".join(kept), ""))
    d.hosts.insert(0, (d.url, parts.hostname.lower(), False))
    return origin, start


def _shown(url: str) -> str:
    """`url` as the summary may print it: without the account and password it may carry in its
    userinfo or its query. A URL that did not parse cannot be cleaned field by field, and a
    password may hold / ? # (which end the host early): all up to the last @ goes."""
    scheme, sep, rest = url.partition("//")
    if "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    return re.split(r"[?#]", scheme + sep + rest)[0]


def _is_account(name: str) -> bool:
    return bool(_USERNAME_FIELD.search(name))


def _shared_login(d: Draft, vendor_id: str, login_url: str) -> dict[str, Any]:
    """[shared_login] from FormVariable lines; credential values stay out of the file."""
    assert d.url is not None
    if d.form not in ("post", ""):
        d.warn(d.url, f"-Form={d.form} login is converted as a POSTed form; test it")
    anchor = d.form_vars[0] if d.form_vars else d.url
    if not d.form:
        d.warn(anchor, "FormVariable without URL -Form=; treated as a form login")
    table: dict[str, Any] = {"method": "form", "login_url": login_url}
    extra: dict[str, str] = {}
    extra_lines: dict[str, Line] = {}
    secrets: set[str] = set()
    for ln in d.form_vars:
        name, eq, value = ln.value.partition("=")
        name = name.strip()
        if _IDENTITY_CARET.search(value):
            d.warn(ln, f"FormVariable {name} refused: its substitution {PATRON_DATA}")
        elif _PASSWORD_FIELD.search(name) and "password_field" not in table:
            table["password_field"] = name
            secrets.add(value)
        elif _is_account(name) and "username_field" not in table:
            table["username_field"] = name
            secrets.add(value)
        elif not eq:
            d.warn(ln, f"FormVariable {name} took its value from the starting URL; left out")
        elif _PASSWORD_FIELD.search(name) or _is_account(name) or _SECRET_FIELD.search(name):
            d.warn(ln, f"FormVariable {name} looks like a credential; its value was not copied")
        elif value in secrets:
            d.warn(ln, f"FormVariable {name} repeats a credential; its value was not copied")
        else:
            extra[name], extra_lines[name] = value, ln
    if "username_field" not in table or "password_field" not in table:
        d.warn(anchor, "could not tell the account and password fields apart; review")
        # Any field left may be the account or the password under a name not recognised here,
        # so no value is written in clear: the line says where to find it.
        for name, ln in extra_lines.items():
            d.warn(
                ln,
                f"FormVariable {name}: its value was not copied, as it may be the account or "
                "password; if it is, name the field in username_field or password_field and put "
                "the value in that secret file, otherwise copy it into extra_fields by hand",
            )
        extra = {}
    if extra:
        table["extra_fields"] = extra
    table["username_file"] = f"secrets/{vendor_id}-username"
    table["password_file"] = f"secrets/{vendor_id}-password"
    d.warn(
        anchor,
        f"put the library-wide account in secrets/{vendor_id}-username and its password in "
        f"secrets/{vendor_id}-password (chmod 600) next to the vendor file",
    )
    return table


def _referer_url(code: str, server: dict[str, str]) -> str:
    """The referring URL the vendor registered: EZproxy sends <its own URL>/referer/<code>."""
    if code.lower().startswith(("http://", "https://")):
        return code
    name = server.get("name", "")
    if not name:
        return code
    port = server.get("loginport", "2048")
    return f"http://{name}{'' if port == '80' else ':' + port}/referer/{code}"


def _clean_hosts(d: Draft, claimed: dict[str, str]) -> list[str]:
    """Valid, unique host patterns not already given to an earlier vendor."""
    hosts: list[str] = []
    for ln, pattern, _ in d.hosts:
        bare = pattern[2:] if pattern.startswith("*.") else pattern
        if not is_valid_hostname(bare):
            d.warn(ln, f"{ln.word} {ln.value!r} is not a hostname; left out")
        elif ln.directive in ("domain", "domainjavascript") and covers_public_suffix("*." + bare):
            # Once per line: the Domain's own host and its wildcard are both left out.
            if pattern.startswith("*."):
                d.warn(
                    ln, f"{ln.word} {bare} would proxy a whole public suffix; left out (list the "
                    "exact hosts the vendor uses with Host)",
                )  # fmt: skip
        elif covers_public_suffix(pattern):  # an exact host is fine; check-config accepts it
            d.warn(ln, f"{ln.word} {pattern} would proxy a whole public suffix; left out")
        elif pattern in claimed:
            d.warn(ln, f"{pattern} is already proxied by {claimed[pattern]}; left out here")
        elif pattern not in hosts:
            hosts.append(pattern)
    return hosts


def _why_not_proxied(host: str, claimed: dict[str, str]) -> str:
    """Why a stanza's own starting host is not among the hosts it could be given."""
    if not is_valid_hostname(host):
        return (
            f"its host {host!r} is not a valid hostname (write an international name in its "
            "xn-- form)"
        )
    owner = next((v for p, v in claimed.items() if host_matches(p, host)), None)
    if owner is not None:
        return f"its host {host} is already proxied by {owner}"
    return f"its host {host} could not be given to this vendor (see the warnings)"


def finish_stanza(
    d: Draft, vendor_id: str, claimed: dict[str, str], server: dict[str, str]
) -> StanzaResult:
    def result(status: str, vendor: dict[str, Any] | None, reason: str = "") -> StanzaResult:
        return StanzaResult(
            d.title, vendor_id, d.title_line.file, d.title_line.number, d.last, status, vendor,
            tuple(d.warnings), tuple(d.notes), reason,
        )  # fmt: skip

    if not d.title:
        return result("skipped", None, "Title line without a name")
    if d.url is None:
        return result("skipped", None, "no URL line")
    parsed = _parse_url(d)
    if isinstance(parsed, str):
        return result("skipped", None, parsed)
    origin, start = parsed
    hosts = _clean_hosts(d, claimed)
    origin_host = urlsplit(origin).hostname or ""
    if not any(host_matches(p, origin_host) for p in hosts):
        return result("skipped", None, _why_not_proxied(origin_host, claimed))
    vendor: dict[str, Any] = {"id": vendor_id, "title": d.title, "origin": origin}
    if not d.form:
        vendor["start_url"] = start
    vendor["hosts"] = hosts
    js = [ln for ln, _, is_js in d.hosts if is_js]
    if js:
        numbers = ", ".join(str(n) for n in sorted({ln.number for ln in js}))
        d.note(js[0], "HJ/DJ: EZproxy also rewrote URLs inside this vendor's JavaScript; check "
               f"that the proxy rewrites it too (line(s) {numbers})")  # fmt: skip
    vendor["auth"] = "ip"
    if d.form_vars or d.form:
        if not d.form_vars:
            d.warn(d.url, "URL -Form= without FormVariable lines; review the login")
        vendor["auth"] = "shared-login"
        if d.referer is not None:
            d.warn(d.referer, "Referer ignored: this stanza logs in with FormVariable lines")
    elif d.referer is not None:
        vendor["auth"] = "referer"
        vendor["referer"] = _referer_url(d.referer.value, server)
        d.warn(
            d.referer, "the Referer code is a secret shared with the vendor; keep the file private"
        )
        if vendor["referer"] == d.referer.value:
            d.warn(d.referer, "no Name directive: set referer to the full referring URL")
    if d.groups:
        vendor["eligibility"] = {"groups": list(d.groups)}
    rules = []
    for find, rep in d.rewrite:
        if _IDENTITY_CARET.search(rep.raw):
            d.warn(rep, f"Replace refused: its substitution {PATRON_DATA}")
        elif _EZPROXY_CARET.search(rep.raw):
            d.warn(rep, "Replace uses an EZproxy substitution (^H, ^P host^ …); left out, review")
        elif find.raw:
            rules.append({"find": find.raw, "replace": rep.raw, "types": list(JS_TYPES)})
    if d.find is not None:
        d.warn(d.find, "Find without a Replace after it; left out")
    if rules:
        vendor["rewrite"] = rules
    if vendor["auth"] == "shared-login":
        # The cleaned URL: the raw one may carry the account and password (userinfo, query).
        vendor["shared_login"] = _shared_login(d, vendor_id, start)
    for p in hosts:
        claimed[p] = vendor_id
    return result("converted-with-warnings" if d.warnings else "converted", vendor)
