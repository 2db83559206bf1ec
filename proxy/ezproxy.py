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
- `NeverProxy` is not part of a stanza, wherever it stands: each one goes to the vendors whose own
  hosts it falls under (check-config refuses a never_proxy entry outside them). Without a `*` it
  covers the host and every subdomain, so `h` becomes `h` and `*.h`; a pattern that only partly
  falls under a vendor's hosts becomes the vendor hosts it covers.

This module is the whole-file pass (scopes that run across stanzas, vendor ids, every
NeverProxy) and the `import-ezproxy` command; lines are read by proxy.ezproxy_read, each stanza is
converted by proxy.ezproxy_stanza, and a vendor file's text and the summary come from
proxy.ezproxy_write.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from proxy.config import Config, VendorConfig, check_vendor, check_vendors_together, load_vendor
from proxy.errors import Problem, ProxyError
from proxy.ezproxy_read import Line, Message, read_lines, split_lines
from proxy.ezproxy_stanza import (
    PATRON_DATA,
    Draft,
    StanzaResult,
    add_stanza_line,
    finish_stanza,
    host_of,
)
from proxy.ezproxy_write import render, summary
from proxy.hosts import host_matches, is_valid_hostname

__all__ = [
    "PATRON_DATA",
    "EzproxyImportError",
    "ImportResult",
    "Message",
    "StanzaResult",
    "convert",
    "render",
    "run_import",
    "summary",
]


class EzproxyImportError(ProxyError):
    """config.txt could not be read at all."""


@dataclass(frozen=True)
class ImportResult:
    source: str
    stanzas: tuple[StanzaResult, ...]
    warnings: tuple[Message, ...] = ()  # not tied to one stanza (IncludeFile, global NeverProxy)

    def with_status(self, status: str) -> list[StanzaResult]:
        return [s for s in self.stanzas if s.status == status]


def _slug(title: str) -> str:
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:56].rstrip("-") or "database"


@dataclass
class _Scope:
    """Position-dependent settings that run on across stanzas."""

    groups: tuple[str, ...] = ()
    referer: Line | None = None
    user_header: Line | None = None
    cookie: Line | None = None
    xff: Line | None = None


def _scope_line(ln: Line, scope: _Scope, open_draft: Draft | None) -> bool:
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


def _apply_scope(d: Draft, scope: _Scope) -> None:
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


def _inside(lines: list[Line], i: int) -> bool:
    """True when a stanza directive, not a Title, comes next after the scope lines from `i`."""
    for ln in lines[i + 1 :]:
        if ln.directive in ("group", "referer", "adduserheader", "option", "neverproxy"):
            continue
        return ln.directive != "title"
    return False


def convert(source: str | Path) -> ImportResult:
    """Convert config.txt text (str) or a config.txt file (Path) into per-stanza results."""
    warnings: list[Message] = []
    if isinstance(source, Path):
        try:
            root = source.resolve()
            lines = read_lines(root, root.parent, (root,), warnings)
        except OSError as exc:
            raise EzproxyImportError(f"{source}: cannot be read: {exc.strerror}") from None
        name = str(source)
    else:
        lines, name = split_lines(source, "config.txt", warnings), "config.txt"
        for ln in lines:
            if ln.directive == "includefile":
                warnings.append(
                    Message(ln.where, "IncludeFile needs the config as a file; skipped")
                )
    scope, server = _Scope(), {}
    drafts: list[Draft] = []
    never_proxy: list[Line] = []
    for i, ln in enumerate(lines):
        open_draft = drafts[-1] if drafts else None
        if ln.directive == "neverproxy":
            never_proxy.append(ln)  # position-independent in EZproxy, even inside a stanza
        elif ln.directive == "title":
            title = re.sub(r"^(-\w+\s+)+", "", ln.value).strip()
            d = Draft(ln, title, scope.groups, scope.referer, ln.number)
            if title != ln.value:
                d.note(ln, "Title options (e.g. -Hide) have no equivalent; the title is kept")
            _apply_scope(d, scope)
            drafts.append(d)
        elif _scope_line(ln, scope, open_draft if _inside(lines, i) else None):
            pass
        elif open_draft is None:
            if ln.directive in ("name", "loginport"):
                server[ln.directive] = ln.value.split()[0] if ln.value else ""
            elif ln.directive != "includefile":  # IncludeFile is reported where lines are read
                # Server-wide settings (AutoLoginIP, ExcludeIP, AnonymousURL, HTTPHeader …)
                # have no vendor file to go to; their values may be secrets, so not printed.
                what = f"Option {ln.value}" if ln.directive == "option" else ln.word
                warnings.append(
                    Message(ln.where, f"{what} (before the first Title) not converted; review")
                )
        else:
            add_stanza_line(open_draft, ln)
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
        stanzas.append(finish_stanza(d, vendor_id, claimed, server))
    for ln in never_proxy:
        _attach_never_proxy(stanzas, ln, warnings)
    return ImportResult(name, tuple(stanzas), tuple(warnings))


def _never_proxy_patterns(ln: Line, warnings: list[Message]) -> list[str]:
    """The never_proxy entries one NeverProxy line stands for; none (reported) when its pattern
    has no equivalent here."""
    words = ln.value.split()
    if len(words) != 1 or words[0].startswith("-"):
        warnings.append(Message(ln.where, f"NeverProxy {ln.value!r}: not converted, review"))
        return []
    value = words[0].lower()
    if "*" not in value and "?" not in value:
        host = host_of(value)
        if is_valid_hostname(host):
            return [host, "*." + host]  # EZproxy: the host and every host ending in .host
    elif value.startswith("*.") and is_valid_hostname(value[2:]):
        return [value]
    warnings.append(
        Message(
            ln.where,
            f"NeverProxy {ln.value}: not a host or *.domain pattern (EZproxy's other wildcards "
            "have no equivalent); left out, review",
        )
    )
    return []


def _owned(pattern: str, hosts: list[str]) -> bool:
    """check-config's test that a never_proxy entry is under the vendor's own hosts."""
    sample = "a" + pattern[1:] if pattern.startswith("*.") else pattern
    return any(host_matches(p, sample) for p in hosts)


def _covered(pattern: str, host: str) -> bool:
    """True when every host that vendor host pattern `host` stands for falls under `pattern`."""
    if host.startswith("*."):
        return pattern.startswith("*.") and host_matches(pattern, "a" + host[1:])
    return host_matches(pattern, host)


def _attach_never_proxy(stanzas: list[StanzaResult], ln: Line, warnings: list[Message]) -> None:
    """A NeverProxy line goes to every vendor whose hosts it falls under. Where it is wider than
    a vendor's hosts (`jstor.example` over exact `www.jstor.example`), the vendor hosts it covers
    are written instead, as check-config refuses an entry outside the vendor's own hosts."""
    patterns = _never_proxy_patterns(ln, warnings)
    attached = False
    for k, s in enumerate(stanzas):
        vendor = s.vendor
        if vendor is None:
            continue
        hosts: list[str] = vendor["hosts"]
        entries = [p for p in patterns if _owned(p, hosts)]
        wider = [h for p in patterns if p not in entries for h in hosts if _covered(p, h)]
        texts = []
        if wider:
            texts.append(f"covers {', '.join(wider)} of this vendor: never proxied, as in EZproxy")
        start_host = urlsplit(vendor.get("start_url") or vendor["origin"]).hostname or ""
        if any(host_matches(p, start_host) for p in entries + wider):
            # The menu link would take patrons to the vendor directly, outside the proxy (and
            # an IP-authenticated vendor would refuse them).
            texts.append(
                f"covers this vendor's starting point {start_host}: its menu link goes to the "
                "vendor outside the proxy (the stanza was not in use through EZproxy either); "
                "remove the NeverProxy or the vendor"
            )
        if texts:
            text = f"NeverProxy {ln.value} {'; it '.join(texts)}; review"
            warned = (*s.warnings, Message(ln.where, text))
            stanzas[k] = replace(s, warnings=warned, status="converted-with-warnings")
        written: list[str] = vendor.get("never_proxy", [])
        new = [p for p in dict.fromkeys(entries + wider) if p not in written]
        if new:
            vendor["never_proxy"] = written + new
        attached = attached or bool(entries or wider)
    if patterns and not attached:
        warnings.append(
            Message(ln.where, f"NeverProxy {ln.value}: no imported vendor's hosts cover it")
        )


def _vendor_problems(out_dir: Path, vendors: list[VendorConfig]) -> list[Problem]:
    """… and pass check-config's vendor checks, except that the shared-login secret files the
    summary asks for do not exist yet. check-config reads the whole directory, so the vendor
    files already there are checked together with the new ones (two claiming one host …)."""
    problems: list[Problem] = []
    written = {Path(v.file).name for v in vendors}
    others: list[VendorConfig] = []
    for path in sorted(out_dir.glob("*.toml")):
        if path.name not in written:
            v = load_vendor(path, problems)  # one check-config cannot load refuses it too
            others += [v] if v is not None else []
    # Earlier files first: a clash is then named on the file just written.
    cfg = Config(path=out_dir.parent / "proxy.toml", vendors=(*others, *vendors))
    for v in vendors:
        check_vendor(v, cfg, problems)
    check_vendors_together(cfg, problems)
    waiting = {"shared_login.username_file", "shared_login.password_file"}
    return [p for p in problems if not (p.key in waiting and "does not exist" in p.message)]


def run_import(config_txt: Path, out_dir: Path, *, stdout: TextIO, force: bool = False) -> int:
    """`weston-proxy import-ezproxy CONFIG_TXT --out DIR [--force]`; returns the exit status."""
    try:
        result = convert(Path(config_txt))
    except EzproxyImportError as exc:
        print(f"error: {exc}", file=stdout)
        return 1
    if not result.stanzas:
        for m in result.warnings:  # a missing IncludeFile is the usual reason
            print(f"warning: {m}", file=stdout)
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
    loaded: list[VendorConfig] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for s in todo:
            path = out_dir / s.filename
            with open(path, "w" if force else "x", encoding="utf-8") as fh:
                fh.write(render(s, today=today))
            if s.vendor is not None and s.vendor.get("auth") == "referer":
                path.chmod(0o600)  # the referer code is a shared secret
            v = load_vendor(path, problems)  # self-check: what we wrote must load …
            if v is not None:
                loaded.append(v)
    except OSError as exc:
        print(f"error: cannot write to {out_dir}: {exc}", file=stdout)
        return 1
    print(f"wrote {len(todo)} vendor file(s) to {out_dir}", file=stdout)
    problems += _vendor_problems(out_dir, loaded)
    for p in problems:
        print(f"problem: {p}", file=stdout)
    return 1 if problems else 0
