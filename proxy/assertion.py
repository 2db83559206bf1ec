"""Signing keys, the "valid patron" assertion's claims, and the JWKS that publishes the keys.

Keys are Ed25519 (EdDSA) in PEM files in the key directory, one per key, mode 0600. A key becomes
the signing key once its activation time has passed (rotation publishes a new key in the JWKS at
once and signs with it only later, so vendors' key caches catch up first). `kid` is the RFC 7638
JWK thumbprint.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import hmac
import json
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from proxy.secrets_ import readable_by_others

ASSERTION_LIFETIME_S = 300
# Re-sign when less than this is left, so a vendor never receives an assertion about to expire.
REFRESH_MARGIN_S = 60
_CACHE_MAX = 50_000
# How often signing a new assertion also drops the expired ones (at most ASSERTION_LIFETIME_S
# after a session's last request, plus this).
CACHE_SWEEP_S = 60
# How long vendors may keep the JWKS (its Cache-Control). A key this process has just published
# is not yet in a vendor's copy: see Signer.active_key.
JWKS_MAX_AGE_S = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, no whitespace."""
    required = {k: jwk[k] for k in ("crv", "kty", "x")}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":")).encode()
    return _b64url(hashlib.sha256(canonical).digest())


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey
    not_before: float  # signing starts at this time (epoch seconds)
    path: Path
    # The delay `keys rotate` gave it (not_before - created), 0 for keys written without their
    # creation time: how long it must have been published before it signs (at most the JWKS's
    # max-age). A delay of 0 is the operator saying "sign with it at once".
    delay_s: float = 0.0

    @property
    def jwk(self) -> dict[str, str]:
        return {
            **public_jwk(self.private.public_key()),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }


def _write_atomically(path: Path, data: bytes) -> None:
    """`data` at `path`, mode 0600: written under a temporary name, synced, then renamed, so a
    reader finds the whole file or none."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_key(key_dir: Path, *, not_before: float) -> SigningKey:
    """Generate a key into `key_dir` (0600), active from `not_before`.

    The activation time is written before the key: a process loading the directory meanwhile
    (a reload, a worker starting) sees either no new key or the key with its time, never a key
    without one (which would count as active at once, before vendors have its public half)."""
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    kid = thumbprint(public_jwk(private.public_key()))
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = key_dir / f"{kid}.pem"
    created = time.time()
    meta = {"not_before": not_before, "created": created}
    _write_atomically(key_dir / f"{kid}.json", json.dumps(meta).encode())
    _write_atomically(path, pem)
    delay = max(0.0, not_before - created)
    return SigningKey(kid=kid, private=private, not_before=not_before, path=path, delay_s=delay)


def load_keys(key_dir: Path) -> list[SigningKey]:
    """Every key in the directory, oldest activation first.

    ValueError for a key file group or others can read: whoever reads it can sign "valid Weston
    patron" (the same rule as every secret file, proxy.secrets_). A key whose activation file is
    missing is skipped: it is being written, or was restored without its partner."""
    keys: list[SigningKey] = []
    if not key_dir.is_dir():
        return keys
    for pem in sorted(key_dir.glob("*.pem")):
        if readable_by_others(pem.stat().st_mode):
            raise ValueError(f"{pem}: readable by group or others; chmod 600 it")
        meta_path = pem.with_suffix(".json")
        if not meta_path.exists():
            continue
        try:
            private = serialization.load_pem_private_key(pem.read_bytes(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # A truncated or mangled file (a bad restore): name it, never a traceback.
            raise ValueError(f"{pem}: not a readable private key ({type(exc).__name__})") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{pem}: not an Ed25519 key")
        try:
            meta = json.loads(meta_path.read_text())
            not_before = float(meta.get("not_before", 0.0))
            created = float(meta.get("created", not_before))
            if not (math.isfinite(not_before) and math.isfinite(created)):
                raise ValueError("not_before and created must be finite numbers")
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(
                f'{meta_path}: not a key activation file ({{"not_before": <unix time>}}): {exc}'
            ) from None
        kid = thumbprint(public_jwk(private.public_key()))
        keys.append(SigningKey(kid, private, not_before, pem, max(0.0, not_before - created)))
    keys.sort(key=lambda k: (k.not_before, k.kid))
    return keys


def ensure_keys(key_dir: Path) -> list[SigningKey]:
    """Load the keys, generating a first one (active at once) when there is none.

    Under an exclusive lock on `key_dir/.lock`, so instances starting together on one empty
    (shared) directory make one key between them, not one each."""
    keys = load_keys(key_dir)
    if keys:
        return keys
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(key_dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        keys = load_keys(key_dir)  # made by whoever held the lock before
        if not keys:
            keys = [create_key(key_dir, not_before=0.0)]
    finally:
        os.close(fd)  # closing releases the lock
    return keys


def pairwise_id(secret: bytes, vendor_id: str, patron_key: str, scope: str) -> str:
    """Stable per (patron, vendor), different per vendor, underivable without the secret.

    base32(HMAC-SHA256(secret, vendor id ‖ opaque patron key)) @ scope, as SAML pairwise-id.
    The secret is derived from the server secret (`[session] secret_file`), and the patron key
    from it too: rotating the server secret gives every patron a new `sub` at every
    pseudonymous vendor, which then sees returning patrons as new users (their saved searches
    and folders stay under the old id). See docs/release-levels.md before rotating.
    """
    mac = hmac.new(
        secret, f"pairwise:{vendor_id}\x00{patron_key}".encode(), hashlib.sha256
    ).digest()
    return base64.b32encode(mac).decode().rstrip("=").lower() + "@" + scope


class Signer:
    """Signs assertions with the active key and caches them per session and vendor."""

    def __init__(
        self,
        keys: list[SigningKey],
        *,
        issuer: str,
        scope: str,
        pairwise_secret: bytes,
        previous: Signer | None = None,
    ) -> None:
        """`previous`: the signer this one replaces on a reload, whose publishing it continues."""
        if not keys:
            raise ValueError("no signing keys")
        self.keys = keys
        self.issuer = issuer
        self.scope = scope
        self._pairwise_secret = pairwise_secret
        self._cache: dict[tuple[str, str, bool], tuple[str, float]] = {}
        now = time.time()
        self._swept = now
        # When this process first published each key (a reload keeps the earlier time).
        self._published = {k.kid: now for k in keys}
        # Keys that signed here, with when they last did; and the public halves of keys gone
        # from the directory whose assertions are still valid, published until they expire.
        self._last_signed: dict[str, float] = {}
        self._kept: dict[str, tuple[dict[str, str], float]] = {}
        if previous is not None:
            self._carry_over(previous, now)

    def _carry_over(self, previous: Signer, now: float) -> None:
        for kid in self._published:
            self._published[kid] = previous._published.get(kid, now)
        current = {k.kid for k in self.keys}
        old_jwks = {k.kid: k.jwk for k in previous.keys}
        for kid, (jwk, until) in previous._kept.items():
            if kid not in current and until > now:
                self._kept[kid] = (jwk, until)
        for kid, at in previous._last_signed.items():
            until = at + ASSERTION_LIFETIME_S
            if kid in current:
                self._last_signed[kid] = at
            elif kid in old_jwks and until > now:
                # `keys retire` went before this reload, and this process signed with the key
                # after the successor's time (it was reloaded late): a vendor must still be able
                # to verify those assertions until they expire.
                self._kept[kid] = (old_jwks[kid], until)

    def active_key(self, now: float | None = None) -> SigningKey:
        """The newest key whose time has come and that vendors' JWKS copies hold by now.

        A key signs once its activation time has passed *and* this process has published it
        for its rotation delay (at most the JWKS max-age): a proxy reloaded (or started) after
        a new key's activation time would otherwise sign with a key vendors' cached JWKS lack.
        Until then, the oldest key whose time has come signs (published all along)."""
        now = time.time() if now is None else now
        eligible = [k for k in self.keys if k.not_before <= now]
        if not eligible:
            # Before any key is active (only after a bad clock), the oldest rather than fail.
            return self.keys[0]
        for k in reversed(eligible):
            if self._published[k.kid] + min(k.delay_s, JWKS_MAX_AGE_S) <= now:
                return k
        return eligible[0]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        now = time.time()
        kept = [jwk for jwk, until in self._kept.values() if until > now]
        return {"keys": [k.jwk for k in self.keys] + kept}

    def claims(
        self, *, audience: str, patron_key: str, vendor_id: str, pseudonymous: bool, now: int
    ) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
            "jti": secrets.token_urlsafe(16),
            "affiliation": f"member@{self.scope}",
        }
        if pseudonymous:
            claims["sub"] = pairwise_id(self._pairwise_secret, vendor_id, patron_key, self.scope)
        return claims

    def sign(self, claims: dict[str, Any]) -> str:
        # The clock, not `iat`: iat is whole seconds, and flooring it could pick the old key for up
        # to a second after the new one became active.
        now = time.time()
        key = self.active_key(now)
        self._last_signed[key.kid] = now
        return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})

    def assertion(
        self, *, cache_key: str, audience: str, patron_key: str, vendor_id: str, pseudonymous: bool
    ) -> str:
        """A signed assertion for this session and vendor, reused until shortly before it expires."""
        now = time.time()
        hit = self._cache.get((cache_key, vendor_id, pseudonymous))
        # Reused while it has time left and was not made "in the future": after the clock is
        # stepped back (NTP correcting a fast boot), its iat would make vendors refuse it.
        if hit is not None and REFRESH_MARGIN_S < hit[1] - now <= ASSERTION_LIFETIME_S:
            return hit[0]
        claims = self.claims(
            audience=audience,
            patron_key=patron_key,
            vendor_id=vendor_id,
            pseudonymous=pseudonymous,
            now=int(now),
        )
        token = self.sign(claims)
        if len(self._cache) >= _CACHE_MAX or now - self._swept >= CACHE_SWEEP_S:
            self.sweep(now)
        # Keyed by the release level too: a contract that ends mid-session stops the pseudonym
        # at once, not when the cached assertion runs out.
        self._cache[(cache_key, vendor_id, pseudonymous)] = (token, float(claims["exp"]))
        return token

    def sweep(self, now: float | None = None) -> None:
        """Drop the assertions no longer reused. Sessions that ended by timeout (no `forget`),
        or in another instance, leave theirs behind: the cache says which session used which
        vendor, and that must not outlive them (docs/records-and-retention.md). Run by signing
        and every CACHE_SWEEP_S by `sweep_assertions`, so a quiet proxy forgets too."""
        now = time.time() if now is None else now
        self._cache = {k: v for k, v in self._cache.items() if v[1] - now > REFRESH_MARGIN_S}
        self._swept = now

    def forget(self, cache_key: str) -> None:
        """Drop cached assertions of an ended session."""
        for k in [k for k in self._cache if k[0] == cache_key]:
            del self._cache[k]


async def sweep_assertions(signer: Callable[[], Signer]) -> None:
    """Sweep the current signer's cache every CACHE_SWEEP_S, for ever (a background task)."""
    while True:
        await asyncio.sleep(CACHE_SWEEP_S)
        signer().sweep()
