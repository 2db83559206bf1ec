"""Convert an OCLC EZproxy config.txt into one vendor TOML file per database stanza.

Hand-written: config.txt is a line-oriented format with no maintained Python parser, and what
matters here is not parsing but the privacy decisions made while translating each directive.

Decisions (see OCLC's config.txt directive pages):
- Position-dependent scopes run across stanzas: `Group` until the next `Group`; `Referer code`
  until a bare `Referer`; `AddUserHeader name` until a bare `AddUserHeader`; the `Option Cookie`
  family until another one; `Option X-Forwarded-For` until `Option NoX-Forwarded-For`.
- `Group Default` is every patron, so it imposes no eligibility rule.
- Anything that would hand the vendor patron identity (`AddUserHeader`, `EncryptVar`,
  `AllowVars`, `EBLSecret`, `Option X-Forwarded-For`, `^u`-style substitutions) is refused; a
  starting URL that itself carries such a substitution makes the whole stanza unusable.
- Find/Replace pairs apply to HTML and JavaScript, as in EZproxy; a Replace that uses EZproxy
  substitutions (`^H`, `^P host^` …) has no literal equivalent and is left out with a warning.
- Library-wide credentials (`FormVariable`) and URL credentials are never copied: the vendor file
  names secret files instead.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import tomli_w

from proxy.config import covers_public_suffix, load_vendor
from proxy.errors import Problem, ProxyError
from proxy.hosts import host_matches, is_valid_hostname

PATRON_DATA = "would send patron data to the vendor"
JS_TYPES = ("text/html", "application/javascript", "text/javascript", "application/x-javascript")
_ABBREVIATIONS = {
    "t": "title", "u": "url", "h": "host", "hj": "hostjavascript", "d": "domain",
    "dj": "domainjavascript", "n": "name",
}  # fmt: skip
_IDENTITY_DIRECTIVES = {"encryptvar", "allowvars", "eblsecret"}
_NOT_CONVERTED = {
    "formselect", "formsubmit", "httpheader", "httpmethod", "proxyhostnameedit", "cookie",
    "cookiefilter", "anonymousurl", "autologinip", "description", "metafind", "addcookie",
}  # fmt: skip
# ^u is the patron's username, ^i (and ^0-^9, UsrVar values) further patron attributes; ^{…} is
# an expression that can read anything about the patron, so it is treated the same way.
_IDENTITY_CARET = re.compile(r"\^(?:[uUiI0-9]|\{)")
_EZPROXY_CARET = re.compile(r"\^[A-Za-z{]")
_PASSWORD_FIELD = re.compile(r"pass|pwd|pin$", re.I)
_USERNAME_FIELD = re.compile(r"user|login|account|acct|email|card|barcode|id$", re.I)
_SECRET_FIELD = re.compile(r"secret|token|key|sig|hash|code|session|auth(?!type)", re.I)


class EzproxyImportError(ProxyError):
    """config.txt could not be read at all."""


@dataclass(frozen=True)
class Message:
    """One warning or note, with the config line (file:line) it is about."""

    where: str
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


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


@dataclass(frozen=True)
class ImportResult:
    source: str
    stanzas: tuple[StanzaResult, ...]
    warnings: tuple[Message, ...] = ()  # not tied to one stanza (IncludeFile, global NeverProxy)

    def with_status(self, status: str) -> list[StanzaResult]:
        return [s for s in self.stanzas if s.status == status]


@dataclass(frozen=True)
class _Line:
    file: str
    number: int
    directive: str  # lowercase, abbreviation expanded
    word: str  # the directive as written
    value: str  # stripped
    raw: str  # the text after the directive, spaces kept (Find/Replace)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.number}"


# --------------------------------------------------------------------------- reading lines


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # config.txt is often a Windows file


def _split(text: str, name: str) -> list[_Line]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = re.match(r"(\S+)(?:[ \t](.*))?$", line.lstrip())
        assert m is not None  # a non-empty stripped line always has a first word
        word = m.group(1).lower()
        raw = (m.group(2) or "").rstrip("\r\n")
        directive = _ABBREVIATIONS.get(word, word)
        out.append(_Line(name, number, directive, m.group(1), raw.strip(), raw))
    return out


def _read(path: Path, root: Path, stack: tuple[Path, ...], warnings: list[Message]) -> list[_Line]:
    """Lines of `path` with IncludeFile expanded in place (EZproxy resolves them from its own
    folder, which is the main config's folder; the including file's folder is tried next)."""
    try:
        name = str(path.relative_to(root))
    except ValueError:
        name = str(path)
    lines = []
    for ln in _split(_decode(path.read_bytes()), name):
        if ln.directive != "includefile":
            lines.append(ln)
            continue
        rel = Path(ln.value)
        candidates = [rel] if rel.is_absolute() else [root / rel, path.parent / rel]
        target = next((c.resolve() for c in candidates if c.is_file()), None)
        if target is None:
            warnings.append(Message(ln.where, f"IncludeFile {ln.value}: no such file; skipped"))
        elif target in stack:
            warnings.append(Message(ln.where, f"IncludeFile {ln.value}: include cycle; skipped"))
        else:
            try:
                lines.extend(_read(target, root, (*stack, target), warnings))
            except OSError as exc:
                warnings.append(Message(ln.where, f"IncludeFile {ln.value}: {exc.strerror}"))
    return lines


# --------------------------------------------------------------------------- one stanza


@dataclass
class _Draft:
    title_line: _Line
    title: str
    groups: tuple[str, ...]
    referer: _Line | None
    last: int
    url: _Line | None = None
    form: str = ""  # -Form= method, empty for an ordinary URL
    hosts: list[tuple[_Line, str, bool]] = field(default_factory=list)  # (line, pattern, js)
    never_proxy: list[tuple[_Line, str]] = field(default_factory=list)
    finds: list[_Line] = field(default_factory=list)
    rewrite: list[tuple[_Line, _Line]] = field(default_factory=list)
    form_vars: list[_Line] = field(default_factory=list)
    warnings: list[Message] = field(default_factory=list)
    notes: list[Message] = field(default_factory=list)

    def warn(self, ln: _Line, text: str) -> None:
        self.warnings.append(Message(ln.where, text))

    def note(self, ln: _Line, text: str) -> None:
        self.notes.append(Message(ln.where, text))


def _host_of(value: str) -> str:
    """The bare host of a Host/Domain value, which may carry a scheme and a port."""
    v = value.split()[-1] if value.split() else ""
    v = re.sub(r"^[a-z]+://", "", v, flags=re.I).split("/")[0]
    return v.rsplit(":", 1)[0].strip(".").lower() if ":" in v else v.strip(".").lower()


def _add_stanza_line(d: _Draft, ln: _Line) -> None:
    """Apply one directive that belongs to the open stanza."""
    k = ln.directive
    d.last = ln.number if ln.file == d.title_line.file else d.last
    if k == "url":
        if d.url is not None:
            d.warn(ln, "a second URL line; only the first is the starting point, host added")
            d.hosts.append((ln, _host_of(ln.value.split()[-1]) if ln.value else "", False))
            return
        d.url = ln
    elif k in ("host", "hostjavascript"):
        d.hosts.append((ln, _host_of(ln.value), k == "hostjavascript"))
    elif k in ("domain", "domainjavascript"):
        dom = _host_of(ln.value)
        d.hosts += [(ln, dom, k == "domainjavascript"), (ln, "*." + dom, k == "domainjavascript")]
    elif k == "neverproxy":
        d.never_proxy.append((ln, _host_of(ln.value) if "*" not in ln.value else ln.value.lower()))
    elif k == "find":
        d.finds.append(ln)
    elif k == "replace":
        if not d.finds:
            d.warn(ln, "Replace without a Find before it; left out")
        else:
            d.rewrite.append((d.finds.pop(), ln))
    elif k == "formvariable":
        d.form_vars.append(ln)
    elif k in _IDENTITY_DIRECTIVES:
        d.warn(ln, f"{ln.word} refused: it {PATRON_DATA}")
    elif k == "option":
        d.note(ln, f"Option {ln.value} has no equivalent here; ignored")
    elif k in _NOT_CONVERTED:
        d.note(ln, f"{ln.word} has no equivalent here; ignored")  # values may be secrets


def _parse_url(d: _Draft) -> tuple[str, str] | str:
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
    if len(rest) > 1 and not d.form:
        d.warn(d.url, "URL label form (sent patrons past EZproxy unproxied); now proxied")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"URL {url!r} is not an http(s) URL"
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
    netloc = parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
    origin = f"{parts.scheme.lower()}://{netloc}"
    start = urlunsplit((parts.scheme.lower(), netloc, parts.path, "&".join(kept), ""))
    d.hosts.insert(0, (d.url, parts.hostname.lower(), False))
    return origin, start


def _is_account(name: str) -> bool:
    return bool(_USERNAME_FIELD.search(name))


def _shared_login(d: _Draft, vendor_id: str, login_url: str) -> dict[str, Any]:
    """[shared_login] from FormVariable lines; credential values stay out of the file."""
    assert d.url is not None
    if d.form not in ("post", ""):
        d.warn(d.url, f"-Form={d.form} login is converted as a POSTed form; test it")
    anchor = d.form_vars[0] if d.form_vars else d.url
    if not d.form:
        d.warn(anchor, "FormVariable without URL -Form=; treated as a form login")
    table: dict[str, Any] = {"method": "form", "login_url": login_url}
    extra: dict[str, str] = {}
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
            extra[name] = value
    if "username_field" not in table or "password_field" not in table:
        d.warn(anchor, "could not tell the account and password fields apart; review")
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


def _clean_hosts(d: _Draft, claimed: dict[str, str]) -> list[str]:
    """Valid, unique host patterns not already given to an earlier vendor."""
    hosts: list[str] = []
    for ln, pattern, _ in d.hosts:
        bare = pattern[2:] if pattern.startswith("*.") else pattern
        if not is_valid_hostname(bare):
            d.warn(ln, f"{ln.word} {ln.value!r} is not a hostname; left out")
        elif covers_public_suffix(pattern) or covers_public_suffix("*." + bare):
            if pattern.startswith("*."):
                d.warn(ln, f"{ln.word} {bare} would proxy a whole public suffix; left out")
        elif pattern in claimed:
            d.warn(ln, f"{pattern} is already proxied by {claimed[pattern]}; left out here")
        elif pattern not in hosts:
            hosts.append(pattern)
    return hosts


def _finish(
    d: _Draft, vendor_id: str, claimed: dict[str, str], server: dict[str, str]
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
        return result(
            "skipped", None, f"its host {origin_host} is already proxied by another vendor"
        )
    vendor: dict[str, Any] = {"id": vendor_id, "title": d.title, "origin": origin}
    if not d.form:
        vendor["start_url"] = start
    vendor["hosts"] = hosts
    never = []
    for ln, pattern in d.never_proxy:
        bare = pattern[2:] if pattern.startswith("*.") else pattern
        if is_valid_hostname(bare):
            never.append(pattern)
        else:
            d.warn(ln, f"NeverProxy {ln.value!r} is not a host or *.domain pattern; left out")
    if never:
        vendor["never_proxy"] = never
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
    for find in d.finds:
        d.warn(find, "Find without a Replace after it; left out")
    if rules:
        vendor["rewrite"] = rules
    if vendor["auth"] == "shared-login":
        vendor["shared_login"] = _shared_login(d, vendor_id, d.url.value.split()[-1])
    for p in hosts:
        claimed[p] = vendor_id
    return result("converted-with-warnings" if d.warnings else "converted", vendor)


# --------------------------------------------------------------------------- the whole file


def _slug(title: str) -> str:
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:56].rstrip("-") or "database"


@dataclass
class _Scope:
    """Position-dependent settings that run on across stanzas."""

    groups: tuple[str, ...] = ()
    referer: _Line | None = None
    user_header: _Line | None = None
    cookie: _Line | None = None
    xff: _Line | None = None


def _scope_line(ln: _Line, scope: _Scope, open_draft: _Draft | None) -> bool:
    """Update the running scope; True when `ln` was a scope directive.

    `open_draft` is the stanza `ln` sits inside (None when the next directive is a Title): an
    Option there applies to that stanza too, where one just before a Title is for the next."""
    k, v = ln.directive, ln.value
    opt = v.lower().replace(" ", "") if k == "option" else ""
    if k == "group":
        names = tuple(g for g in v.split("+") if g)
        scope.groups = () if any(g.lower() == "default" for g in names) else names
    elif k == "referer":
        scope.referer = ln if v else None
    elif k == "adduserheader":
        scope.user_header = ln if v else None
    elif opt in ("cookie", "domaincookieonly", "nocookie", "cookiepassthrough"):
        scope.cookie = None if opt == "cookie" else ln  # Option Cookie is EZproxy's default
    elif opt in ("x-forwarded-for", "nox-forwarded-for"):
        scope.xff = ln if opt == "x-forwarded-for" else None
    else:
        return False
    if open_draft is not None and k not in ("group", "referer"):
        _apply_scope(open_draft, scope)  # an Option inside a stanza applies to it as well
    return True


def _apply_scope(d: _Draft, scope: _Scope) -> None:
    seen = {m.where for m in d.warnings + d.notes}
    if scope.user_header is not None and scope.user_header.where not in seen:
        d.warn(scope.user_header, f"AddUserHeader refused: it {PATRON_DATA}")
    if scope.xff is not None and scope.xff.where not in seen:
        d.warn(scope.xff, f"Option X-Forwarded-For refused: it {PATRON_DATA} (their IP address)")
    c = scope.cookie
    if c is not None and c.where not in seen:
        if c.value.lower().replace(" ", "") == "cookiepassthrough":
            d.warn(c, "Option CookiePassThrough refused: vendor cookies stay in the proxy's "
                   "per-session jar")  # fmt: skip
        else:
            d.note(
                c, f"Option {c.value}: vendor cookies always live in the proxy's per-session jar"
            )


def _inside(lines: list[_Line], i: int) -> bool:
    """True when a stanza directive, not a Title, comes next after the scope lines from `i`."""
    for ln in lines[i + 1 :]:
        if ln.directive in ("group", "referer", "adduserheader", "option"):
            continue
        return ln.directive != "title"
    return False


def convert(source: str | Path) -> ImportResult:
    """Convert config.txt text (str) or a config.txt file (Path) into per-stanza results."""
    warnings: list[Message] = []
    if isinstance(source, Path):
        try:
            root = source.resolve()
            lines = _read(root, root.parent, (root,), warnings)
        except OSError as exc:
            raise EzproxyImportError(f"{source}: cannot be read: {exc.strerror}") from None
        name = str(source)
    else:
        lines, name = _split(source, "config.txt"), "config.txt"
        for ln in lines:
            if ln.directive == "includefile":
                warnings.append(
                    Message(ln.where, "IncludeFile needs the config as a file; skipped")
                )
    scope, server = _Scope(), {}
    drafts: list[_Draft] = []
    global_never: list[_Line] = []
    for i, ln in enumerate(lines):
        open_draft = drafts[-1] if drafts else None
        if ln.directive == "title":
            title = re.sub(r"^(-\w+\s+)+", "", ln.value).strip()
            d = _Draft(ln, title, scope.groups, scope.referer, ln.number)
            if title != ln.value:
                d.note(ln, "Title options (e.g. -Hide) have no equivalent; the title is kept")
            _apply_scope(d, scope)
            drafts.append(d)
        elif _scope_line(ln, scope, open_draft if _inside(lines, i) else None):
            pass
        elif open_draft is None:
            if ln.directive in ("name", "loginport"):
                server[ln.directive] = ln.value.split()[0] if ln.value else ""
            elif ln.directive == "neverproxy":
                global_never.append(ln)
        else:
            _add_stanza_line(open_draft, ln)
    ids: set[str] = set()
    claimed: dict[str, str] = {}
    stanzas = []
    for d in drafts:
        base = vendor_id = _slug(d.title)
        n = 1
        while vendor_id in ids:
            n += 1
            vendor_id = f"{base}-{n}"
        ids.add(vendor_id)
        stanzas.append(_finish(d, vendor_id, claimed, server))
    stanzas = _attach_global_never_proxy(stanzas, global_never, warnings)
    return ImportResult(name, tuple(stanzas), tuple(warnings))


def _attach_global_never_proxy(
    stanzas: list[StanzaResult], lines: list[_Line], warnings: list[Message]
) -> list[StanzaResult]:
    """NeverProxy outside a stanza goes to every vendor whose hosts it falls under."""
    for ln in lines:
        pattern = _host_of(ln.value) if "*" not in ln.value else ln.value.lower()
        owners = [
            s for s in stanzas
            if s.vendor and any(host_matches(p, pattern.removeprefix("*.")) for p in s.vendor["hosts"])
        ]  # fmt: skip
        if not owners:
            warnings.append(
                Message(ln.where, f"NeverProxy {ln.value}: no imported vendor covers it")
            )
        for s in owners:
            assert s.vendor is not None
            s.vendor.setdefault("never_proxy", []).append(pattern)
    return stanzas


# --------------------------------------------------------------------------- writing and the CLI


def render(stanza: StanzaResult, *, today: dt.date) -> str:
    """The vendor file text: review comments (tomli_w writes no comments), then the TOML."""
    assert stanza.vendor is not None
    head = [
        f"# imported from EZproxy {stanza.source} lines {stanza.first_line}\N{EN DASH}{stanza.last_line} "
        f"on {today.isoformat()}; review [contract] before going live"
    ]
    head += [f"# warning: {m}" for m in stanza.warnings]
    head += [f"# note: {m}" for m in stanza.notes]
    head = [" ".join(h.split()) for h in head]  # one physical line per comment
    return "\n".join(head) + "\n\n" + tomli_w.dumps(stanza.vendor)


def summary(result: ImportResult) -> str:
    ok = result.with_status("converted")
    warned = result.with_status("converted-with-warnings")
    skipped = result.with_status("skipped")
    out = [
        f"EZproxy import of {result.source}: {len(result.stanzas)} stanzas",
        f"  converted: {len(ok)}",
        f"  converted with warnings: {len(warned)}",
        f"  skipped: {len(skipped)}",
    ]
    if warned or result.warnings:
        out.append("Warnings:")
        out += [f"  {m}" for m in result.warnings]
        out += [f"  {m} [{s.vendor_id}]" for s in result.stanzas for m in s.warnings if s.vendor]
    if skipped:
        out.append("Skipped:")
        out += [
            f"  {s.source}:{s.first_line}-{s.last_line} {s.title!r}: {s.skip_reason}"
            for s in skipped
        ]
    notes = [f"  {m} [{s.vendor_id}]" for s in result.stanzas for m in s.notes if s.vendor]
    if notes:
        out += ["Notes:", *notes]
    return "\n".join(out) + "\n"


def run_import(config_txt: Path, out_dir: Path, *, stdout: TextIO, force: bool = False) -> int:
    """`weston-proxy import-ezproxy CONFIG_TXT --out DIR [--force]`; returns the exit status."""
    try:
        result = convert(Path(config_txt))
    except EzproxyImportError as exc:
        print(f"error: {exc}", file=stdout)
        return 1
    if not result.stanzas:
        print(f"error: {config_txt}: no database stanza (no Title line) found", file=stdout)
        return 1
    stdout.write(summary(result))
    todo = [s for s in result.stanzas if s.vendor is not None]
    if not todo:
        print("error: no stanza could be converted; nothing written", file=stdout)
        return 1
    existing = [out_dir / s.filename for s in todo if (out_dir / s.filename).exists()]
    if existing and not force:
        print(
            f"error: {len(existing)} file(s) already exist in {out_dir}; nothing written "
            "(use --force to overwrite): " + ", ".join(p.name for p in existing),
            file=stdout,
        )
        return 1
    today = dt.date.today()
    problems: list[Problem] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for s in todo:
            path = out_dir / s.filename
            with open(path, "w" if force else "x", encoding="utf-8") as fh:
                fh.write(render(s, today=today))
            if s.vendor is not None and s.vendor.get("auth") == "referer":
                path.chmod(0o600)  # the referer code is a shared secret
            load_vendor(path, problems)  # self-check: what we wrote must load
    except OSError as exc:
        print(f"error: cannot write to {out_dir}: {exc}", file=stdout)
        return 1
    print(f"wrote {len(todo)} vendor file(s) to {out_dir}", file=stdout)
    for p in problems:
        print(f"problem: {p}", file=stdout)
    return 1 if problems else 0
