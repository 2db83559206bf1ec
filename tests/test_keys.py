"""Signing key rotation: `keys rotate`, `keys retire`, and what a vendor verifying from JWKS sees.

A vendor verifies each assertion with the key the JWKS publishes under the token's `kid`. Rotation
must never leave a valid assertion without its key, and retiring must wait for the last one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.harness import RecordingVendor, vendor_toml
from tests.test_reload import ONE, Served, file_directory_config, run_cli, serve, signed_in


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, vendor_factory: Any
) -> AsyncIterator[tuple[Served, RecordingVendor]]:
    one = await vendor_factory(ONE)
    cfg = file_directory_config(tmp_path, port, {"one": vendor_toml("one", one)})
    async for s in serve(cfg):
        yield s, one


async def jwks(s: Served) -> dict[str, Any]:
    r = await s.driver.own("GET", "/.well-known/jwks.json")
    data: dict[str, Any] = await r.json()
    return data


def verify(token: str, published: dict[str, Any]) -> dict[str, Any]:
    """What a vendor does: pick the JWKS key named by `kid` and check the signature."""
    kid = jwt.get_unverified_header(token)["kid"]
    match = [k for k in published["keys"] if k["kid"] == kid]
    if not match:
        raise LookupError(f"kid {kid} is not published")
    claims: dict[str, Any] = jwt.decode(
        token, jwt.PyJWK(match[0]).key, algorithms=["EdDSA"], audience="one"
    )
    return claims


async def fresh_assertion(s: Served, vendor: RecordingVendor) -> str:
    """Sign in anew (assertions are cached per session) and return what the vendor received."""
    await signed_in(s)
    r = await s.driver.get_vendor(ONE, "/article")
    assert r.status == 200
    return dict(vendor.requests[-1].headers)["X-Patron-Assertion"]


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def rotate(s: Served, delay: int) -> str:
    """Run `keys rotate` and return the new kid."""
    r = run_cli("keys", "rotate", "--config", str(s.cfg), "--delay", str(delay))
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[1].rstrip(";")


async def test_old_assertion_still_verifies_after_rotation(setup: Any) -> None:
    """After rotate + reload, an assertion signed with the old key verifies from the JWKS."""
    s, vendor = setup
    old_token = await fresh_assertion(s, vendor)
    new_kid = rotate(s, 0)
    assert (await s.hup())["event"] == "reloaded"
    published = await jwks(s)
    assert {k["kid"] for k in published["keys"]} == {kid_of(old_token), new_kid}
    assert verify(old_token, published)["aud"] == "one"


async def test_new_assertions_use_the_new_key_only_after_the_delay(setup: Any) -> None:
    """A rotated key is published at once but signs only once its delay has passed."""
    s, vendor = setup
    old_kid = kid_of(await fresh_assertion(s, vendor))
    # Long enough for a slow machine to get through the first half before the key activates.
    new_kid = rotate(s, 20)
    meta = s.cfg.parent / "state" / "keys" / f"{new_kid}.json"
    activates = float(json.loads(meta.read_text())["not_before"])
    assert (await s.hup())["event"] == "reloaded"
    assert new_kid in {k["kid"] for k in (await jwks(s))["keys"]}
    assert kid_of(await fresh_assertion(s, vendor)) == old_kid
    assert time.time() < activates, "machine too slow for this test's delay"
    await asyncio.sleep(activates - time.time() + 0.2)
    token = await fresh_assertion(s, vendor)
    assert kid_of(token) == new_kid
    assert verify(token, await jwks(s))["affiliation"] == "member@westonlibrary.org"


async def test_retire_refuses_while_old_assertions_may_be_valid(setup: Any) -> None:
    """Right after the new key took over, the old key's assertions live on: retire says no."""
    s, vendor = setup
    old_kid = kid_of(await fresh_assertion(s, vendor))
    rotate(s, 0)
    r = run_cli("keys", "retire", old_kid, "--config", str(s.cfg))
    assert r.returncode == 1
    assert "may still be valid" in r.stderr
    assert (await s.hup())["event"] == "reloaded"
    assert old_kid in {k["kid"] for k in (await jwks(s))["keys"]}


async def test_retire_refuses_the_signing_key(setup: Any) -> None:
    """The key that signs now cannot be retired; rotate first."""
    s, _ = setup
    (only,) = [k["kid"] for k in (await jwks(s))["keys"]]
    r = run_cli("keys", "retire", only, "--config", str(s.cfg))
    assert r.returncode == 1
    assert "currently signs" in r.stderr


async def test_retired_key_leaves_the_jwks_after_reload(setup: Any) -> None:
    """Once the old key's last assertion has expired, retire + reload unpublish it."""
    s, vendor = setup
    old_token = await fresh_assertion(s, vendor)
    new_kid = rotate(s, 0)
    # Stand in for five minutes passing: the new key took over 301 s ago.
    meta = s.cfg.parent / "state" / "keys" / f"{new_kid}.json"
    meta.write_text(json.dumps({"not_before": time.time() - 301}))
    r = run_cli("keys", "retire", kid_of(old_token), "--config", str(s.cfg))
    assert r.returncode == 0, r.stderr
    assert (await s.hup())["event"] == "reloaded"
    published = await jwks(s)
    assert [k["kid"] for k in published["keys"]] == [new_kid]
    with pytest.raises(LookupError):
        verify(old_token, published)
    assert kid_of(await fresh_assertion(s, vendor)) == new_kid


def test_keys_list_shows_when_a_rotated_key_starts_signing(tmp_path: Path, port: int) -> None:
    """`keys list` marks the signing-eligible key and the one waiting for its delay."""
    cfg = file_directory_config(tmp_path, port, {})
    first = run_cli("keys", "rotate", "--config", str(cfg), "--delay", "0")
    assert first.returncode == 0
    later = run_cli("keys", "rotate", "--config", str(cfg), "--delay", "3600")
    r = run_cli("keys", "list", "--config", str(cfg))
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("signing-eligible")
    assert lines[1].startswith(later.stdout.split()[1].rstrip(";"))
    assert "published, signs from" in lines[1]


@pytest.mark.parametrize("where", ["kid first", "kid last"])
def test_retire_takes_a_kid_that_starts_with_a_dash(tmp_path: Path, port: int, where: str) -> None:
    """One thumbprint in 64 starts with "-"; `keys retire <kid>` must still read it as the kid
    (argparse alone says "the following arguments are required: kid" and exits 2)."""
    cfg = file_directory_config(tmp_path, port, {})
    assert run_cli("keys", "rotate", "--config", str(cfg), "--delay", "0").returncode == 0
    kid = "-" + "A" * 42  # the shape of a thumbprint, but no such key
    args = [kid, "--config", str(cfg)] if where == "kid first" else ["--config", str(cfg), kid]
    r = run_cli("keys", "retire", *args)
    assert r.returncode == 1, r.stderr
    assert f"no key {kid} in" in r.stderr
