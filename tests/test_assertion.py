"""Signing keys, claims and the JWKS."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import jwt

from proxy.assertion import Signer, create_key, ensure_keys, load_keys, pairwise_id, thumbprint


def _signer(tmp_path: Path) -> Signer:
    return Signer(
        ensure_keys(tmp_path / "keys"),
        issuer="https://proxy.lib.org",
        scope="lib.org",
        pairwise_secret=b"s" * 32,
    )


def test_first_key_is_generated_private(tmp_path: Path) -> None:
    keys = ensure_keys(tmp_path / "keys")
    assert len(keys) == 1
    assert stat.S_IMODE(keys[0].path.stat().st_mode) == 0o600
    assert ensure_keys(tmp_path / "keys")[0].kid == keys[0].kid  # not regenerated


def test_kid_is_rfc7638_thumbprint() -> None:
    # RFC 8037 appendix A.3 example: Ed25519 public key and its thumbprint.
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_claims_are_exactly_the_anonymous_set(tmp_path: Path) -> None:
    s = _signer(tmp_path)
    token = s.assertion(
        cache_key="c", audience="ebsco", patron_key="p", vendor_id="ebsco", pseudonymous=False
    )
    key = jwt.PyJWK(s.jwks()["keys"][0]).key
    claims = jwt.decode(
        token, key, algorithms=["EdDSA"], audience="ebsco", issuer="https://proxy.lib.org"
    )
    assert set(claims) == {"iss", "aud", "iat", "exp", "jti", "affiliation"}
    assert claims["affiliation"] == "member@lib.org"
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert jwt.get_unverified_header(token)["kid"] == s.keys[0].kid


def test_assertion_is_cached_per_session_and_vendor(tmp_path: Path) -> None:
    s = _signer(tmp_path)
    a = s.assertion(cache_key="c1", audience="v", patron_key="p", vendor_id="v", pseudonymous=False)
    assert (
        s.assertion(cache_key="c1", audience="v", patron_key="p", vendor_id="v", pseudonymous=False)
        == a
    )
    assert (
        s.assertion(cache_key="c2", audience="v", patron_key="p", vendor_id="v", pseudonymous=False)
        != a
    )
    s.forget("c1")
    assert (
        s.assertion(cache_key="c1", audience="v", patron_key="p", vendor_id="v", pseudonymous=False)
        != a
    )


def test_pairwise_id_differs_per_vendor_and_is_stable() -> None:
    a = pairwise_id(b"k" * 32, "ebsco", "patron1", "lib.org")
    assert a == pairwise_id(b"k" * 32, "ebsco", "patron1", "lib.org")
    assert a != pairwise_id(b"k" * 32, "gale", "patron1", "lib.org")
    assert a != pairwise_id(b"k" * 32, "ebsco", "patron2", "lib.org")
    assert a != pairwise_id(b"j" * 32, "ebsco", "patron1", "lib.org")
    assert a.endswith("@lib.org") and "patron1" not in a


def test_rotation_publishes_at_once_and_signs_later(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    old = ensure_keys(key_dir)[0]
    new = create_key(key_dir, not_before=time.time() + 600)
    s = Signer(load_keys(key_dir), issuer="i", scope="lib.org", pairwise_secret=b"s")
    assert {k["kid"] for k in s.jwks()["keys"]} == {old.kid, new.kid}
    assert s.active_key().kid == old.kid
    assert s.active_key(time.time() + 601).kid == new.kid
    assert json.loads((key_dir / f"{new.kid}.json").read_text())["not_before"] > time.time()


def test_a_cached_assertion_is_not_reused_once_the_release_level_changes(tmp_path: Path) -> None:
    """A contract that ends mid-session stops the pseudonym at once: the cached assertion with
    `sub` is not handed out for the anonymous release that follows."""
    s = Signer(
        ensure_keys(tmp_path / "keys"), issuer="https://p", scope="x.org", pairwise_secret=b"s" * 32
    )
    common = {"cache_key": "c", "audience": "v", "patron_key": "p", "vendor_id": "v"}
    with_sub = s.assertion(**common, pseudonymous=True)
    without = s.assertion(**common, pseudonymous=False)
    assert "sub" in jwt.decode(with_sub, options={"verify_signature": False})
    assert "sub" not in jwt.decode(without, options={"verify_signature": False})
