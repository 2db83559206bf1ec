"""From a further mutation sweep (2 December 2026) of keys: each test kills one mutant that the
rest of the suite let through (9 of 29 survived, 3 of them equivalent: 6 of 21 in
proxy/assertion.py, 1 of 5 in proxy/secrets_.py and proxy/crypto.py, 2 of 3 in
proxy/vendors/referer.py; each test here failed with its mutant and passes without). Its
docstring names the mutant and the behaviour it proves."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from yarl import URL

import proxy.assertion as assertion
from proxy.secrets_ import SecretError, read_secret_file
from proxy.vendors.referer import _same_page
from tests import test_keys_mutants
from tests.test_keys_mutants import _kid, _retire, _sign, _signer

clock = test_keys_mutants.clock  # the same fixture: time.time held still, moved by hand


def _verifies(token: str, jwks: dict[str, list[dict[str, str]]]) -> bool:
    """Whether a vendor holding `jwks` accepts `token` (PyJWT, as a vendor would)."""
    keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}
    key = keys.get(_kid(token))
    if key is None:
        return False
    jwt.decode(token, key.key, algorithms=["EdDSA"], audience="v", options={"verify_exp": False})
    return True


def test_an_assertion_close_to_expiry_is_not_sent_again(tmp_path: Path, clock: list[float]) -> None:
    """kills: proxy/assertion.py:Signer.assertion — `REFRESH_MARGIN_S < hit[1] - now` →
    `0 < hit[1] - now`.

    A cached assertion is reused only while it has more than a minute left: a vendor that
    receives one about to expire would turn the patron away mid-page."""
    key_dir = tmp_path / "keys"
    assertion.ensure_keys(key_dir)
    s = _signer(key_dir)
    first = _sign(s)
    clock[0] += 60
    assert _sign(s) == first  # plenty of time left: reused
    clock[0] = jwt.decode(first, options={"verify_signature": False})["exp"] - 30
    fresh = _sign(s)
    assert fresh != first
    assert jwt.decode(fresh, options={"verify_signature": False})["exp"] - clock[0] > 60


def test_a_sweep_drops_assertions_that_will_not_be_reused(
    tmp_path: Path, clock: list[float]
) -> None:
    """kills: proxy/assertion.py:Signer.sweep — `v[1] - now > REFRESH_MARGIN_S` →
    `v[1] - now > 0`.

    An assertion with less than a minute left is never sent again, so the sweep forgets it at
    once: the cache (which session used which vendor) holds nothing it does not need."""
    key_dir = tmp_path / "keys"
    assertion.ensure_keys(key_dir)
    s = _signer(key_dir)
    token = _sign(s)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    s.sweep(exp - 30)
    assert s._cache == {}


def test_a_retired_key_put_back_is_published_once(tmp_path: Path, clock: list[float]) -> None:
    """kills: proxy/assertion.py:Signer._carry_over — `kid not in current and until > now` →
    `until > now`.

    A key retired and then restored to the directory (a retirement undone) is in the JWKS once,
    not twice: a JWKS with two entries of one `kid` is refused by strict vendor libraries."""
    key_dir = tmp_path / "keys"
    old = assertion.ensure_keys(key_dir)[0]
    pem = old.path.read_bytes()
    meta = old.path.with_suffix(".json").read_bytes()
    first = _signer(key_dir)
    token = _sign(first)
    assertion.create_key(key_dir, not_before=clock[0])
    _retire(old)
    clock[0] += 5
    second = _signer(key_dir, previous=first)
    assert old.kid in {k["kid"] for k in second.jwks()["keys"]}
    old.path.with_suffix(".json").write_bytes(meta)
    old.path.write_bytes(pem)
    old.path.chmod(0o600)
    clock[0] += 5
    third = _signer(key_dir, previous=second)
    kids = [k["kid"] for k in third.jwks()["keys"]]
    assert sorted(kids) == sorted(set(kids))
    assert old.kid in kids
    assert _verifies(token, third.jwks())


def test_a_secret_file_holding_only_a_line_end_is_refused(tmp_path: Path) -> None:
    """kills: proxy/secrets_.py:secret_text_problem — `if not text.rstrip("\\r\\n")` →
    `if not text`.

    A password file made with `echo > file` holds a newline and nothing else: it is refused
    with a clear message, never used as an empty password (an anonymous LDAP bind)."""
    f = tmp_path / "bind_password"
    f.write_text("\n")
    f.chmod(0o600)
    with pytest.raises(SecretError, match="is empty"):
        read_secret_file(f)


@pytest.mark.parametrize(
    "other",
    ["https://db.example/start?site=2", "https://db.example:8443/start?site=1"],
    ids=["another query", "another port"],
)
def test_the_secret_referer_goes_only_to_the_start_url_itself(other: str) -> None:
    """kills: proxy/vendors/referer.py:_same_page — `and a.raw_query_string ==
    b.raw_query_string` dropped, and `and a.port == b.port` dropped.

    The authorised referring URL is the library's secret: it is sent on the vendor's start URL
    only, not on a page of the same path with another query or on another port of the host."""
    start = URL("https://db.example/start?site=1")
    assert _same_page(URL("https://db.example/start/?site=1"), start)
    assert not _same_page(URL(other), start)


# Checked and found fine (no test kept):
# - proxy/assertion.py:load_keys — `max(0.0, not_before - created)` → `not_before - created`: a
#   negative delay differs from 0 only while the clock reads earlier than the signer's start
#   (published ≤ now otherwise), and then only which already-published, active key signs.
# - proxy/assertion.py:Signer.active_key — `k.not_before <= now` → `<`: differs only when the
#   float clock equals the activation time exactly.
# - proxy/assertion.py:Signer.active_key — `... + min(k.delay_s, JWKS_MAX_AGE_S) <= now` → `<`:
#   the same, for the end of a key's publishing delay.
