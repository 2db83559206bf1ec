"""Sealing stored sessions: authenticated encryption, each session under a key of its own.

A sealed blob is ``version (1 byte) || nonce (12 bytes) || AES-256-GCM ciphertext and tag``. The
caller passes associated data (for the session store: the Redis key), so a value copied under
another key fails to open instead of becoming someone else's session.

Each session's AES key is derived (HKDF-SHA256) from the server secret *and the session id*. The
store files a session under a hash of its id and never holds the id itself; only the patron's
browser does, in its cookie. So a copy of the store does not open with the server secret either:
whoever holds the store and every secret on the proxy still cannot read which databases a patron
used, their vendors' cookies or their patron key (P5, "nothing to surrender"). The proxy opens a
session only while a request presenting its cookie is in hand.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

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


# Version 1 sealed every session under one key derived from the server secret alone, so the
# secret opened a copy of the whole store. Its blobs are not opened any more: a patron signed in
# before the upgrade signs in again.
_VERSION = b"\x02"
_NONCE_BYTES = 12  # 96-bit random nonces: the size GCM is specified for
_TAG_BYTES = 16
_PURPOSE = b"weston-proxy session sealing v2"


class Unsealable(ValueError):
    """A blob could not be opened: wrong key or session id, wrong associated data, an unknown
    version, truncated or tampered."""


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A 256-bit key for one purpose, from a server secret of any length ≥ MIN_SECRET_BYTES."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the sealing secret must be at least {MIN_SECRET_BYTES} bytes")
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose).derive(secret)


class SessionSealer:
    """Encrypts and authenticates each session under a key derived from the secret and its id."""

    def __init__(self, secret: bytes) -> None:
        # Extracted once; each session's key is one HKDF-Expand of it (~5 µs), so nothing per
        # session is kept in memory.
        self._root = derive_key(secret, _PURPOSE)

    def _aead(self, session_id: str) -> AESGCM:
        info = b"session\x00" + session_id.encode()
        return AESGCM(HKDFExpand(algorithm=SHA256(), length=32, info=info).derive(self._root))

    def seal(self, session_id: str, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt `plaintext` for the session `session_id`, binding it to `aad`; a fresh random
        nonce every call."""
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead(session_id).encrypt(nonce, plaintext, aad)

    def open(self, session_id: str, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of a sealed blob; raises Unsealable unless the secret, the session id
        and `aad` all match."""
        header = len(_VERSION) + _NONCE_BYTES
        if len(blob) < header + _TAG_BYTES or blob[:1] != _VERSION:
            raise Unsealable("not a sealed value of a known version")
        nonce = blob[1:header]
        try:
            return self._aead(session_id).decrypt(nonce, blob[header:], aad)
        except InvalidTag:
            raise Unsealable("sealed value does not open with this key") from None


__all__ = [
    "MIN_SECRET_BYTES",
    "MIN_SERVER_SECRET_BYTES",
    "SessionSealer",
    "Unsealable",
    "derive_key",
    "server_secret_problem",
]
