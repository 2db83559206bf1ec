"""Find canary values (a patron's card number, PIN, session id …) in bytes, in any encoding.

A value can leave the proxy raw, URL- or form-encoded, hex, base64 or base64url at any of the three
alignments it can have inside a longer value, or as an md5/sha1/sha256 hex digest (of the value or
its lower-case form); `CanaryDetector` looks for every one of those forms.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus


@dataclass(frozen=True)
class Canary:
    label: str  # what the value is, in staff's words ("card number", "proxy session id")
    value: str


@dataclass(frozen=True)
class Leak:
    label: str
    encoding: str
    where: str = ""

    def __str__(self) -> str:
        return f"{self.label} ({self.encoding})" + (f" in {self.where}" if self.where else "")


def _b64_fragments(raw: bytes) -> list[bytes]:
    """Base64 text of `raw` at each of the three byte alignments it can have inside a longer value.

    Only the characters fully determined by `raw` are kept, so the fragment is found whatever
    bytes surround the secret (a card number inside a JSON claim set, say).
    """
    out = []
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + raw)
        start, end = (shift * 8 + 5) // 6, ((shift + len(raw)) * 8) // 6
        out.append(enc[start:end])
    return out


def canary_forms(value: str) -> list[tuple[str, bytes]]:
    """(encoding name, bytes) for every form in which `value` could leave the proxy."""
    raw = value.encode()
    forms = [("raw", raw), ("url-encoded", quote(value, safe="").encode())]
    forms.append(("form-encoded", quote_plus(value).encode()))
    forms.append(("hex", raw.hex().encode()))
    for frag in _b64_fragments(raw):
        forms.append(("base64", frag))
        forms.append(("base64url", frag.replace(b"+", b"-").replace(b"/", b"_")))
    for algo in ("md5", "sha1", "sha256"):
        forms.append((f"{algo} hex", hashlib.new(algo, raw).hexdigest().encode()))
        forms.append((f"{algo} hex", hashlib.new(algo, raw.lower()).hexdigest().encode()))
    unique: dict[bytes, str] = {}
    for name, form in forms:
        if len(form) >= 4:
            unique.setdefault(form, name)
    return [(name, form) for form, name in unique.items()]


class CanaryDetector:
    """Finds canary values in outbound bytes, in any of the forms of `canary_forms`."""

    def __init__(self, canaries: Iterable[Canary]) -> None:
        self._forms: list[tuple[str, str, bytes, bool]] = []
        for c in canaries:
            for encoding, form in canary_forms(c.value):
                exact = encoding.startswith("base64")  # base64 is case-sensitive; others are not
                self._forms.append((c.label, encoding, form if exact else form.lower(), exact))

    def find(self, data: bytes, where: str = "") -> list[Leak]:
        lowered = data.lower()
        found: dict[tuple[str, str], Leak] = {}
        for label, encoding, form, exact in self._forms:
            if form in (data if exact else lowered):
                found.setdefault((label, encoding), Leak(label, encoding, where))
        return list(found.values())
