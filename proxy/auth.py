"""Patron authentication: the `Directory` protocol, the LDAP and file directories, eligibility.

Nothing that identifies a patron leaves this module. A successful login yields a `Patron` holding
only an opaque key (an HMAC of a stable directory attribute under the server secret) and the set of
database ids the patron may use; the card number, PIN, DN, name and e-mail stay here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import unicodedata
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import argon2

try:  # ldap3 prepares a PIN for an LDAP bind with this; the file directory prepares the same way
    from ldap3.core.exceptions import LDAPSASLPrepError
    from ldap3.protocol.sasl.sasl import sasl_prep as _sasl_prep
except ImportError:  # pragma: no cover - ldap3 is a dependency; kept for a trimmed install
    _sasl_prep = None
    LDAPSASLPrepError = ValueError

from proxy.config import Config, DirectoryConfig, VendorConfig
from proxy.errors import BadCredentials, ConfigError, DirectoryUnavailable, NotEligible
from proxy.patrons_file import FilePatron, read_patrons_file

MAX_USERNAME = 64
MAX_PASSWORD = 256


def prepare_pin(password: str) -> str:
    """The PIN as an LDAP bind sends it: SASLprep (RFC 4013), ldap3's own when importable.

    A PIN reaches the proxy composed (NFC) or decomposed (NFD) as the patron's keyboard, OS or
    password manager writes it; the LDAP directory takes both as one PIN because ldap3 prepares
    it, so the file directory prepares the same way for hashing and verifying. A PIN SASLprep
    refuses (a prohibited character) is kept as typed: the file directory never refused those.
    """
    if _sasl_prep is None:  # pragma: no cover - no ldap3: its normalisation step alone
        return unicodedata.normalize("NFKC", password)
    try:
        return str(_sasl_prep(password))
    except LDAPSASLPrepError:
        return password


@dataclass(frozen=True)
class Patron:
    """What the proxy knows about a logged-in patron: an opaque key and their databases."""

    key: str  # hex HMAC; never the card number or any directory value
    databases: frozenset[str]  # vendor ids this patron may use
    # `decided_under` of every conditional database at sign-in (eligible or not)
    rules: frozenset[str] = frozenset()
    # What the directory's password policy warned of at this sign-in (proxy.ldap_policy): the
    # sign-ins an expired PIN has left, or the seconds before the PIN expires. Shown to the
    # patron once, on the way in; never stored or logged.
    pin_grace_left: int | None = None
    pin_expires_in_s: int | None = None


class Directory(Protocol):
    """Authenticates patrons. Raises BadCredentials, NotEligible or DirectoryUnavailable."""

    async def authenticate(self, username: str, password: str) -> Patron: ...

    async def ping(self) -> None:
        """Raise DirectoryUnavailable when the directory cannot answer."""

    async def close(self) -> None: ...


def patron_key(secret: bytes, namespace: str, stable_value: str) -> str:
    """Opaque patron key: HMAC-SHA256 of a stable directory value under the server secret."""
    return hmac.new(
        secret, f"patron:{namespace}:{stable_value}".encode(), hashlib.sha256
    ).hexdigest()


def group_value(value: str) -> str:
    """A group value as the directory compares it (caseIgnoreMatch with RFC 4518 string
    preparation): Unicode-normalised (NFKC, which also makes a no-break space a space), case
    folded, leading and trailing spaces dropped and runs of inner spaces taken as one. So an
    ILS export's "resident " or "Senior  Citizen" meets the rule `groups = ["resident"]` or
    `["senior citizen"]` as the same rule written as an `ldap_filter` does. Cheap: a few
    values per sign-in. (RFC 4518's other mappings, such as dropping zero-width characters,
    are left out: no group name is written with them.)"""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def databases_for(
    groups: frozenset[str],
    vendors: tuple[VendorConfig, ...],
    matched_filters: frozenset[str] = frozenset(),
) -> frozenset[str]:
    """Vendor ids whose eligibility the patron meets.

    Every condition a vendor sets must hold: one of its `groups` (when listed) and its
    `ldap_filter` (when set, `matched_filters` holds the ids of vendors whose filter matched the
    patron's entry). A vendor with no condition is open to every patron. Decided here, at login,
    so the vendor never learns the condition or the patron's groups.
    """
    allowed: set[str] = set()
    # Group values compare as the directory compares them (employeeType, ou and the like match
    # without regard to case or insignificant spaces), as an ldap_filter on the same attribute
    # does: `group_value`.
    folded = {group_value(g) for g in groups}
    for v in vendors:
        e = v.eligibility
        in_group = not e.groups or any(group_value(g) in folded for g in e.groups)
        filter_ok = not e.ldap_filter or v.id in matched_filters
        if in_group and filter_ok:
            allowed.add(v.id)
    return frozenset(allowed)


def rules_source(directory: DirectoryConfig) -> str:
    """What a database's groups are read from: a reload that changes it changes every rule."""
    return f"ldap:{directory.group_attribute}" if directory.kind == "ldap" else directory.kind


def decided_under(vendor: VendorConfig, source: str) -> str:
    """The mark a session records for each conditional database it was decided on at sign-in
    (eligible or not): `id#tag` of the database's rule, groups taken as `databases_for` compares
    them (`group_value`), so respelling a group in case or spaces alone changes no rule. A reload that changes that rule (or `rules_source`) makes
    a mark the session lacks: that database waits for the patron to sign in again
    (`may_use`); the others are untouched."""
    e = vendor.eligibility
    rule = repr((source, sorted({group_value(g) for g in e.groups}), e.ldap_filter.strip()))
    return f"{vendor.id}#{hashlib.sha256(rule.encode()).hexdigest()[:12]}"


def rule_marks(vendors: tuple[VendorConfig, ...], source: str) -> dict[str, str]:
    """`decided_under` of every conditional database, by vendor id."""
    return {v.id: decided_under(v, source) for v in vendors if not open_to_all(v)}


# The key of the library-wide rule's mark among `eligibility_marks` (no vendor id is "*"), and
# of the mark a session that recorded none is held to (Services.library_mark_at_start).
LIBRARY_RULE = "*"
UNMARKED_LIBRARY_RULE = "*unmarked"


def eligibility_marks(config: Config) -> dict[str, str]:
    """The marks of the rules in force (`rule_marks` for the configured directory): what a
    sign-in records, and what sessions are checked against. With an LDAP `eligible_filter`
    (who may use remote access at all), its mark is among them under LIBRARY_RULE."""
    marks = rule_marks(config.vendors, rules_source(config.directory))
    d = config.directory
    if d.kind == "ldap":
        # Recorded with no filter too, so that setting one later is a change (OPEN_LIBRARY_MARK).
        marks[LIBRARY_RULE] = _library_mark(d.eligible_filter)
    return marks


def _library_mark(eligible_filter: str) -> str:
    rule = repr(("eligible_filter", eligible_filter.strip()))
    return f"{LIBRARY_RULE}#{hashlib.sha256(rule.encode()).hexdigest()[:12]}"


# The library-wide mark with no `eligible_filter`: every patron the directory knows may sign in.
OPEN_LIBRARY_MARK = _library_mark("")


def library_rule_holds(rules: frozenset[str], marks: dict[str, str]) -> bool:
    """Whether a session whose sign-in recorded `rules` was let in under the library-wide
    rule in force (`eligible_filter`, marked in `marks` under LIBRARY_RULE). A reload that
    sets or changes that rule makes every session signed in before it wait for a new sign-in
    for every database: it was never checked against the new rule, and the patron's entry is
    not kept to check it now (P5). Removing the rule lets everyone go on. A session that
    recorded no library-wide mark at all was signed in by a version before it was recorded (a
    rolling upgrade): it keeps what its sign-in allowed while the rule in force is the one this
    process started with (UNMARKED_LIBRARY_RULE: an upgrade changes the code, not the config),
    and waits for a new sign-in once a reload changes it."""
    mark = marks.get(LIBRARY_RULE)
    if mark is None or mark == OPEN_LIBRARY_MARK or mark in rules:
        return True
    if any(r.startswith(LIBRARY_RULE + "#") for r in rules):
        return False
    return marks.get(UNMARKED_LIBRARY_RULE) == mark


def open_to_all(vendor: VendorConfig) -> bool:
    """A vendor with no eligibility condition: every signed-in patron may use it."""
    return not vendor.eligibility.groups and not vendor.eligibility.ldap_filter


def may_use(
    databases: frozenset[str], rules: frozenset[str], vendor: VendorConfig, mark: str
) -> bool:
    """Whether a session whose sign-in allowed `databases`, decided under the rules `rules`
    marks, may use `vendor` now, whose rule in force is marked `mark` (`decided_under`).

    Conditional databases were decided at sign-in (the patron's groups are not kept), so each
    holds only while its rule is the one of the sign-in: after a reload that changed it, the
    patron signs in again to be decided under the new one (`rules_changed`). A database open
    to all is allowed even when a reload added it after the sign-in, so patrons see a new
    database without signing in again.
    """
    return open_to_all(vendor) or (vendor.id in databases and mark in rules)


def rules_changed(rules: frozenset[str], vendor: VendorConfig, mark: str) -> bool:
    """Whether `vendor` is refused only because its rule changed since the sign-in."""
    return not open_to_all(vendor) and mark not in rules


def check_credentials_shape(username: str, password: str) -> None:
    """Refuse input no directory should see: empty PIN (unauthenticated bind), control chars, huge."""
    if not username or not password:
        raise BadCredentials
    if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        raise BadCredentials
    if any(ord(c) < 32 or ord(c) == 127 for c in username + password):
        raise BadCredentials


# --------------------------------------------------------------------------- file directory


class FileDirectory:
    """Patrons from a local TOML file (card number, argon2/bcrypt hash, optional expiry and groups).

    The embedded default for the demo, and for small sites or staff test accounts.
    Hash checks run in a thread so the event loop never waits on argon2.
    """

    def __init__(
        self, path: Path, *, secret: bytes, vendors: tuple[VendorConfig, ...], workers: int = 2
    ) -> None:
        self._patrons = self._load(path)
        self._secret = secret
        self._vendors = vendors
        self._rules = frozenset(rule_marks(vendors, "file").values())
        self._hasher = argon2.PasswordHasher()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="file-directory")
        # Verified against for unknown cards, so an unknown card costs the same time as a known one.
        self._dummy_hash = self._hasher.hash("not-a-real-pin")

    @staticmethod
    def _load(path: Path) -> Mapping[str, FilePatron]:
        patrons, problems = read_patrons_file(path)
        if problems:
            raise ConfigError(problems)
        return patrons

    def _verify(self, hashed: str, password: str) -> bool:
        prepared = prepare_pin(password)
        if self._verify_one(hashed, prepared):
            return True
        # A hash made before PINs were prepared holds the PIN as it was typed then: it still
        # verifies, so no patron is locked out by the upgrade.
        return prepared != password and self._verify_one(hashed, password)

    def _verify_one(self, hashed: str, password: str) -> bool:
        if hashed.startswith("$2"):
            import bcrypt  # optional: only sites that bring bcrypt hashes need it

            return bool(bcrypt.checkpw(password.encode(), hashed.encode()))
        try:
            return bool(self._hasher.verify(hashed, password))
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False

    async def authenticate(self, username: str, password: str) -> Patron:
        check_credentials_shape(username, password)
        entry = self._patrons.get(username.strip())
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(
            self._pool, self._verify, entry.hash if entry else self._dummy_hash, password
        )
        if entry is None or not ok:
            raise BadCredentials
        if entry.blocked or (entry.expires is not None and entry.expires < dt.date.today()):
            raise NotEligible
        return Patron(
            key=patron_key(self._secret, "file", entry.card),
            databases=databases_for(entry.groups, self._vendors),
            rules=self._rules,
        )

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._pool.shutdown(wait=False)


def hash_password(password: str) -> str:
    """An argon2id hash for the patrons file (`weston-proxy hash-password`) of the PIN as
    `prepare_pin` prepares it, so either Unicode form the patron types verifies."""
    return argon2.PasswordHasher().hash(prepare_pin(password))


def make_directory(config: Config, *, secret: bytes) -> Directory:
    """Build the configured directory; raises ValueError on an unknown kind."""
    d = config.directory
    if d.kind == "file":
        return FileDirectory(config.resolve(d.patrons_file), secret=secret, vendors=config.vendors)
    if d.kind == "ldap":
        from proxy.ldap_directory import LdapDirectory

        return LdapDirectory(config, secret=secret)
    raise ValueError(f"unknown directory kind {d.kind!r}")


__all__ = [
    "LIBRARY_RULE",
    "UNMARKED_LIBRARY_RULE",
    "BadCredentials",
    "Directory",
    "DirectoryUnavailable",
    "FileDirectory",
    "NotEligible",
    "Patron",
    "databases_for",
    "decided_under",
    "eligibility_marks",
    "group_value",
    "hash_password",
    "library_rule_holds",
    "make_directory",
    "patron_key",
    "prepare_pin",
    "rule_marks",
    "rules_changed",
    "rules_source",
]
