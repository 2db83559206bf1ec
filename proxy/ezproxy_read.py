"""Read an EZproxy config.txt into directive lines, with IncludeFile expanded in place.

Comments and blank lines are dropped; each directive is lower-cased with its abbreviation expanded
(`T` is Title, `HJ` HostJavascript …) and keeps its file and line number, so every warning the
import gives can name the line it is about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_ABBREVIATIONS = {
    "t": "title", "u": "url", "h": "host", "hj": "hostjavascript", "d": "domain",
    "dj": "domainjavascript", "n": "name",
}  # fmt: skip


@dataclass(frozen=True)
class Message:
    """One warning or note, with the config line (file:line) it is about."""

    where: str
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


@dataclass(frozen=True)
class Line:
    """One directive of config.txt and where it is."""

    file: str
    number: int
    directive: str  # lowercase, abbreviation expanded
    word: str  # the directive as written
    value: str  # stripped
    raw: str  # the text after the directive, spaces kept (Find/Replace)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.number}"


def _decode(data: bytes) -> str:
    """Line by line: a config.txt edited over the years mixes UTF-8 lines with Windows ones, and
    one cp1252 comment must not garble the UTF-8 titles around it."""
    out = []
    for piece in data.split(b"\n"):
        try:
            out.append(piece.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(piece.decode("cp1252", errors="replace"))  # often a Windows file
    return "\n".join(out)


def split_lines(text: str, name: str, warnings: list[Message]) -> list[Line]:
    """Directive lines of one file; a line that cannot be read is reported in `warnings`."""
    out = []
    # EZproxy on Windows stops at a DOS end-of-file mark (Ctrl-Z), as C text-mode reads do.
    text, eof, rest = text.partition("\x1a")
    # Newline only (CRLF, LF or CR), as EZproxy reads: str.splitlines would also break at
    # U+2028, U+0085 or a form feed inside a title and put every later line number out.
    lines = re.split(r"\r\n|\r|\n", text)
    if eof and rest.strip():
        where = f"{name}:{len(lines)}"
        warnings.append(Message(where, "text after a DOS end-of-file mark (Ctrl-Z) ignored"))
    for number, line in enumerate(lines, start=1):
        line = line.removeprefix("\ufeff")  # a BOM starts each of several files pasted together
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        # Any Unicode whitespace ends the directive: stanzas pasted from web pages carry U+00A0.
        m = re.match(r"(\S+)(?:\s(.*))?$", line.lstrip(), flags=re.S)
        if m is None:
            warnings.append(Message(f"{name}:{number}", "line could not be read; skipped"))
            continue
        word = m.group(1).lower()
        raw = (m.group(2) or "").rstrip("\r\n")
        directive = _ABBREVIATIONS.get(word, word)
        out.append(Line(name, number, directive, m.group(1), raw.strip(), raw))
    return out


def read_lines(
    path: Path, root: Path, stack: tuple[Path, ...], warnings: list[Message]
) -> list[Line]:
    """Lines of `path` with IncludeFile expanded in place (EZproxy resolves them from its own
    folder, which is the main config's folder; the including file's folder is tried next)."""
    try:
        name = str(path.relative_to(root))
    except ValueError:
        name = str(path)
    lines = []
    for ln in split_lines(_decode(path.read_bytes()), name, warnings):
        if ln.directive != "includefile":
            lines.append(ln)
            continue
        rel = Path(ln.value.replace("\\", "/"))  # a config.txt from EZproxy on Windows
        candidates = [rel] if rel.is_absolute() else [root / rel, path.parent / rel]
        target = next((c.resolve() for c in candidates if c.is_file()), None)
        if target is None:
            warnings.append(Message(ln.where, f"IncludeFile {ln.value}: no such file; skipped"))
        elif target in stack:
            warnings.append(Message(ln.where, f"IncludeFile {ln.value}: include cycle; skipped"))
        else:
            try:
                lines.extend(read_lines(target, root, (*stack, target), warnings))
            except OSError as exc:
                warnings.append(Message(ln.where, f"IncludeFile {ln.value}: {exc.strerror}"))
    return lines
