"""From a mutation sweep (1 December 2026) of the signing keys: loading them, which key signs,
the JWKS and how long a retired key stays published.

Each test names the mutant it kills: a one-line change to proxy/assertion.py (one to
proxy/crypto.py) that the suite of its day did not notice. Each fails with its mutant applied
and passes on the code as it is. Unit-level: the behaviour is the Signer's and load_keys's own,
and a vendor verifying from the JWKS sees exactly what `Signer.jwks()` returns."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import proxy.assertion as assertion
from proxy.crypto import SessionSealer, Unsealable

MAKE = dict(issuer="https://proxy.lib.org", scope="lib.org", pairwise_secret=b"s" * 32)


def _signer(key_dir: Path, previous: assertion.Signer | None = None) -> assertion.Signer:
    return assertion.Signer(assertion.load_keys(key_dir), previous=previous, **MAKE)  # type: ignore[arg-type]


def _sign(s: assertion.Signer, session: str = "s") -> str:
    return s.assertion(
        cache_key=session, audience="v", patron_key="p", vendor_id="v", pseudonymous=False
    )


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _published(s: assertion.Signer) -> set[str]:
    return {k["kid"] for k in s.jwks()["keys"]}


def _set_meta(key: assertion.SigningKey, meta: dict[str, float]) -> None:
    key.path.with_suffix(".json").write_text(json.dumps(meta))


def _retire(key: assertion.SigningKey) -> None:
    """What `keys retire` does on disk."""
    key.path.unlink()
    key.path.with_suffix(".json").unlink()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [time.time()]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


def test_the_jwks_publishes_only_public_halves(tmp_path: Path) -> None:
    """kills: proxy/assertion.py:SigningKey.jwk — adding the private half, `"d": <raw private
    bytes>`, to the published JWK.

    Whoever read /.well-known/jwks.json could then sign "valid Weston patron" for every vendor.
    No earlier test looked: PyJWT verifies with a JWK holding `d` just as well (it takes the
    public half of the private key), so every signature check still passed."""
    key_dir = tmp_path / "keys"
    assertion.ensure_keys(key_dir)
    assertion.create_key(key_dir, not_before=time.time() + 600)
    published = _signer(key_dir).jwks()["keys"]
    assert len(published) == 2
    for jwk in published:
        assert set(jwk) == {"crv", "kty", "x", "kid", "alg", "use"}, jwk
        assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["use"] == "sig"


def test_a_key_retired_then_reloaded_twice_stays_published_while_its_assertions_live(
    tmp_path: Path, clock: list[float]
) -> None:
    """kills: proxy/assertion.py:Signer._carry_over — the loop carrying the previous signer's
    kept public halves (`previous._kept.items()`) → `{}.items()`.

    A key retired (after a late reload) is kept in the JWKS until its last assertion expires;
    a second reload in the meantime (any config change) must not drop it, or vendors refuse
    patrons holding valid assertions signed by it."""
    key_dir = tmp_path / "keys"
    old = assertion.ensure_keys(key_dir)[0]
    before = _signer(key_dir)
    token = _sign(before)
    assert _kid(token) == old.kid
    new = assertion.create_key(key_dir, not_before=clock[0])
    _retire(old)
    clock[0] += 10
    first = _signer(key_dir, previous=before)
    assert _published(first) == {new.kid, old.kid}
    clock[0] += 10
    second = _signer(key_dir, previous=first)
    assert _published(second) == {new.kid, old.kid}
    clock[0] = before._last_signed[old.kid] + assertion.ASSERTION_LIFETIME_S + 1
    assert _published(second) == {new.kid}


def test_with_every_key_in_the_future_the_oldest_signs(tmp_path: Path) -> None:
    """kills: proxy/assertion.py:Signer.active_key — the no-key-is-active fallback
    `self.keys[0]` → `self.keys[-1]`.

    After a bad clock (a machine booted in the past), the key vendors have held longest signs,
    not the one just rotated in that their cached JWKS may lack."""
    key_dir = tmp_path / "keys"
    now = time.time()
    first = assertion.create_key(key_dir, not_before=now + 600)
    assertion.create_key(key_dir, not_before=now + 1200)
    assert _signer(key_dir).active_key(now).kid == first.kid


def test_a_key_whose_activation_file_has_no_time_counts_as_active_since_ever(
    tmp_path: Path,
) -> None:
    """kills: proxy/assertion.py:load_keys — `meta.get("not_before", 0.0)` →
    `meta.get("not_before", time.time())`.

    An activation file without `not_before` (written by hand) is the oldest key, not a key that
    becomes the newest at every reload and so takes signing back from the key rotated in
    since."""
    key_dir = tmp_path / "keys"
    legacy = assertion.ensure_keys(key_dir)[0]
    _set_meta(legacy, {})
    now = time.time()
    rotated = assertion.create_key(key_dir, not_before=now)
    _set_meta(rotated, {"not_before": now - 100, "created": now - 100})  # no delay
    s = _signer(key_dir)
    assert [k.kid for k in s.keys] == [legacy.kid, rotated.kid]
    assert s.active_key().kid == rotated.kid


def test_a_key_written_without_its_creation_time_signs_once_its_time_has_come(
    tmp_path: Path,
) -> None:
    """kills: proxy/assertion.py:load_keys — `meta.get("created", not_before)` →
    `meta.get("created", 0.0)`.

    A key whose activation file has only `not_before` (written by hand or by an older
    version) has no rotation delay: it signs once its time has passed, as documented ("0 for
    keys written without their creation time"), not five minutes later."""
    key_dir = tmp_path / "keys"
    assertion.ensure_keys(key_dir)
    now = time.time()
    hand = assertion.create_key(key_dir, not_before=now)
    _set_meta(hand, {"not_before": now - 10})
    s = _signer(key_dir)
    assert s.keys[-1].delay_s == 0.0
    assert s.active_key().kid == hand.kid


def test_a_reload_does_not_restart_the_wait_of_a_key_vendors_already_have(
    tmp_path: Path, clock: list[float]
) -> None:
    """kills: proxy/assertion.py:Signer._carry_over — `previous._published.get(kid, now)` →
    `now`.

    A key this process has published for longer than its delay signs once its time has come,
    also after a reload: the reload must not count it as published only now (the old key would
    then sign on for another JWKS max-age, and `keys retire` timed by the rotation would find
    its assertions still being made)."""
    key_dir = tmp_path / "keys"
    old = assertion.ensure_keys(key_dir)[0]
    t0 = clock[0]
    new = assertion.create_key(key_dir, not_before=t0 + 600)
    first = _signer(key_dir)
    assert first.active_key().kid == old.kid
    clock[0] = t0 + 700
    assert first.active_key().kid == new.kid
    reloaded = _signer(key_dir, previous=first)
    assert reloaded.active_key().kid == new.kid


def test_a_key_that_is_not_ed25519_is_refused_naming_the_file(tmp_path: Path) -> None:
    """kills: proxy/assertion.py:load_keys — `if not isinstance(private, Ed25519PrivateKey)`
    → `if False`.

    A P-256 key dropped into the key directory (copied from another service) is reported as
    the file it is and what is wrong with it, not as an error about raw encodings."""
    key_dir = tmp_path / "keys"
    assertion.ensure_keys(key_dir)
    other = key_dir / "zz-other.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    other.chmod(0o600)
    other.with_suffix(".json").write_text(json.dumps({"not_before": 0}))
    with pytest.raises(ValueError) as caught:
        assertion.load_keys(key_dir)
    assert str(other) in str(caught.value)
    assert "Ed25519" in str(caught.value)


def test_a_freshly_made_key_carries_its_rotation_delay(tmp_path: Path) -> None:
    """kills: proxy/assertion.py:create_key — `delay = max(0.0, not_before - created)` →
    `delay = 0.0`.

    The key `create_key` returns says how long it must be published before it signs, the same
    as the key loaded back from its files: a signer built from it must not sign with it the
    moment its time has come, before vendors' cached JWKS hold it."""
    key_dir = tmp_path / "keys"
    made = assertion.create_key(key_dir, not_before=time.time() + 600)
    loaded = assertion.load_keys(key_dir)[0]
    assert made.delay_s == pytest.approx(loaded.delay_s, abs=0.01)
    assert made.delay_s == pytest.approx(600, abs=5)


@pytest.mark.parametrize(
    "meta",
    ['{"not_before": Infinity}', '{"not_before": NaN}', '{"not_before": 0, "created": -Infinity}'],
)
def test_an_activation_time_that_is_no_number_is_refused_naming_the_file(
    tmp_path: Path, meta: str
) -> None:
    """kills: proxy/assertion.py:load_keys — `if not (math.isfinite(not_before) and
    math.isfinite(created))` → `if False`.

    Python's JSON reader takes `Infinity` and `NaN`: an activation file holding one (a bad
    restore, a hand edit) would make a key that never signs yet is published for ever, or one
    that sorts anywhere among the keys and so decides which key signs. It is reported as the
    file it is instead, so `check-config` and `serve` stop on it."""
    key_dir = tmp_path / "keys"
    key = assertion.ensure_keys(key_dir)[0]
    meta_path = key.path.with_suffix(".json")
    meta_path.write_text(meta)
    with pytest.raises(ValueError) as caught:
        assertion.load_keys(key_dir)
    assert str(meta_path) in str(caught.value)


def test_after_a_reload_that_retires_a_key_no_cached_assertion_of_it_is_sent(
    tmp_path: Path,
) -> None:
    """kills: proxy/assertion.py:Signer._carry_over — the new signer taking over the previous
    one's assertion cache (`self._cache = previous._cache`).

    A key retired (`keys retire --force`, say after it leaked) and a reload: the next request
    of a patron whose session already used the vendor carries an assertion signed by the key
    now in force, not the cached one signed by the retired key for up to four more minutes."""
    key_dir = tmp_path / "keys"
    old = assertion.ensure_keys(key_dir)[0]
    before = _signer(key_dir)
    assert _kid(_sign(before, "patron")) == old.kid
    new = assertion.create_key(key_dir, not_before=time.time() - 1)
    _set_meta(new, {"not_before": time.time() - 1, "created": time.time() - 1})  # no delay
    _retire(old)
    after = _signer(key_dir, previous=before)
    assert _kid(_sign(after, "patron")) == new.kid


def test_a_sealed_session_of_another_version_is_not_opened() -> None:
    """kills: proxy/crypto.py:SessionSealer.open — `... or blob[:1] != _VERSION` dropped.

    The version byte is outside the authenticated ciphertext: without the check, a stored
    session whose version byte was altered (or a future format sharing this layout) would be
    opened as version 2 instead of being refused, and the patron's sign-in kept on a blob the
    proxy does not know how to read."""
    sealer = SessionSealer(b"k" * 32)
    blob = sealer.seal("session-id", b"patron state", b"aad")
    assert sealer.open("session-id", blob, b"aad") == b"patron state"
    for version in (b"\x01", b"\x03"):
        with pytest.raises(Unsealable):
            sealer.open("session-id", version + blob[1:], b"aad")


def test_a_rotated_key_never_signs_before_its_activation_time(
    tmp_path: Path, clock: list[float]
) -> None:
    """kills: proxy/assertion.py:Signer.active_key — `eligible = [k for k in self.keys if
    k.not_before <= now]` → `eligible = list(self.keys)`.

    A key rotated in with a delay longer than the JWKS max-age (`keys rotate --delay 600`) is
    published at once but signs only from its activation time: having been published for the
    max-age is not enough. IT staff chose the time (vendors told in advance, a key ceremony);
    until then the old key signs."""
    key_dir = tmp_path / "keys"
    old = assertion.ensure_keys(key_dir)[0]
    t0 = clock[0]
    new = assertion.create_key(key_dir, not_before=t0 + 600)
    s = _signer(key_dir)
    assert _published(s) == {old.kid, new.kid}
    clock[0] = t0 + assertion.JWKS_MAX_AGE_S + 1
    assert s.active_key().kid == old.kid
    assert _kid(_sign(s, "a")) == old.kid
    clock[0] = t0 + 601
    assert s.active_key().kid == new.kid
    assert _kid(_sign(s, "b")) == new.kid
