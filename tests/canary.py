"""Synthetic canary patrons. Every value is invented; tests assert these bytes never leave the proxy.

Never put real personal data here.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from urllib.parse import quote, quote_plus


@dataclass(frozen=True)
class CanaryPatron:
    uid: str  # the library card number (barcode) patrons type
    password: str
    given_name: str
    surname: str
    email: str
    phone: str
    address: str
    resident: bool = True

    @property
    def cn(self) -> str:
        return f"{self.given_name} {self.surname}"

    def secrets(self) -> list[str]:
        """Every identifying value, as the raw strings that must never leak."""
        return [
            self.uid,
            self.password,
            self.given_name,
            self.surname,
            self.cn,
            self.email,
            self.phone,
            self.address,
        ]

    def forms(self) -> list[bytes]:
        """Each secret in the encodings a leak could take: raw, URL-encoded, base64, hex digests."""
        out: set[bytes] = set()
        for s in self.secrets():
            raw = s.encode()
            out.add(raw)
            out.add(quote(s, safe="").encode())
            out.add(quote_plus(s).encode())
            out.add(base64.b64encode(raw).rstrip(b"="))
            out.add(base64.urlsafe_b64encode(raw).rstrip(b"="))
            for algo in ("md5", "sha1", "sha256"):
                out.add(hashlib.new(algo, raw).hexdigest().encode())
                out.add(hashlib.new(algo, raw.lower()).hexdigest().encode())
        return sorted(out)


CANARY = CanaryPatron(
    uid="29999000424242",
    password="Canary-PIN-7731",
    given_name="Zebulon",
    surname="Canaryfeather",
    email="zebulon.canaryfeather@canary.invalid",
    phone="+1-203-555-0199",
    address="17 Canary Lane, Weston CT 06883",
)

# A second patron, for isolation checks (jars, pairwise ids).
WREN = CanaryPatron(
    uid="29999000515151",
    password="Wren-PIN-2286",
    given_name="Wilhelmina",
    surname="Wrenwhistle",
    email="wilhelmina.wrenwhistle@canary.invalid",
    phone="+1-203-555-0142",
    address="4 Wren Court, Weston CT 06883",
)

# Non-resident: valid card, not eligible for resident-only databases.
HERON = CanaryPatron(
    uid="29999000636363",
    password="Heron-PIN-9054",
    given_name="Horatio",
    surname="Heronsgate",
    email="horatio.heronsgate@canary.invalid",
    phone="+1-203-555-0177",
    address="88 Heron Road, Wilton CT 06897",
    resident=False,
)

# Expired card: right PIN, not eligible for remote access.
EXPIRED = CanaryPatron(
    uid="29999000747474",
    password="Lapsed-PIN-4410",
    given_name="Ermintrude",
    surname="Expiredale",
    email="ermintrude.expiredale@canary.invalid",
    phone="+1-203-555-0111",
    address="3 Lapse Street, Weston CT 06883",
)

ALL = (CANARY, WREN, HERON, EXPIRED)


def leaks(data: bytes, patrons: tuple[CanaryPatron, ...] = ALL) -> list[str]:
    """Which canary forms appear in `data` (empty list = clean)."""
    lowered = data.lower()
    found = []
    for p in patrons:
        for form in p.forms():
            if form.lower() in lowered:
                found.append(form.decode(errors="replace"))
    return found
