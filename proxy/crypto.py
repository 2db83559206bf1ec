"""Sealing stored values: authenticated encryption so a copy of the store is opaque without the key.

A sealed blob is ``version (1 byte) || nonce (12 bytes) || AES-256-GCM ciphertext and tag``. The
caller passes associated data (for the session store: the Redis key), so a value copied under
another key fails to open instead of becoming someone else's session.

The AES key is derived from the configured secret with HKDF-SHA256 and a purpose label, so any
secret of reasonable length works and the same server secret can serve other purposes without the
derived keys being related.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Below this a secret is guessable offline from a copy of the store; HKDF cannot add entropy.
MIN_SECRET_BYTES = 16
# The server secret keys every opaque patron key and pairwise `sub`: one short enough to guess
# would let a vendor compute a patron's `sub` from the card number. The generated one is 64 hex
# characters.
MIN_SERVER_SECRET_BYTES = 32


def server_secret_problem(value: str) -> str | None:
    """Why `value` cannot be the server secret, or None."""
    n = len(value.encode())
    if n < MIN_SERVER_SECRET_BYTES:
        return (
            f"the server secret is {n} bytes; it must be at least {MIN_SERVER_SECRET_BYTES} "
            "(e.g. `openssl rand -hex 32`)"
        )
    return None


_VERSION = b"\x01"
_NONCE_BYTES = 12  # 96-bit random nonces: the size GCM is specified for
_PURPOSE = b"weston-proxy session store sealing v1"


class Unsealable(ValueError):
    """A blob could not be opened: wrong key, wrong associated data, truncated or tampered."""


def derive_key(secret: bytes, purpose: bytes = _PURPOSE) -> bytes:
    """A 256-bit key for one purpose, from a server secret of any length ≥ MIN_SECRET_BYTES."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the sealing secret must be at least {MIN_SECRET_BYTES} bytes")
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose).derive(secret)


class Sealer:
    """Encrypts and authenticates values with a key derived from `key`."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(derive_key(key))

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt `plaintext`, binding it to `aad`; a fresh random nonce every call."""
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of a sealed blob; raises Unsealable unless key and `aad` both match."""
        header = len(_VERSION) + _NONCE_BYTES
        if len(blob) < header + 16 or blob[:1] != _VERSION:
            raise Unsealable("not a sealed value of a known version")
        nonce = blob[1:header]
        try:
            return self._aead.decrypt(nonce, blob[header:], aad)
        except InvalidTag:
            raise Unsealable("sealed value does not open with this key") from None


__all__ = [
    "MIN_SECRET_BYTES",
    "MIN_SERVER_SECRET_BYTES",
    "Sealer",
    "Unsealable",
    "derive_key",
    "server_secret_problem",
]
