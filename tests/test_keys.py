"""Signing key rotation: `keys rotate`, `keys retire`, and what a vendor verifying from JWKS sees.

A vendor verifies each assertion with the key the JWKS publishes under the token's `kid`. Rotation
must never leave a valid assertion without its key, and retiring must wait for the last one.
"""

from __future__ import annotations

import asyncio
import json
import os
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
    # The proxy counts the delay from when *it* published the key (the reload above), which on a
    # loaded machine can be seconds after `keys rotate` wrote `not_before`: poll, with a deadline.
    deadline = time.monotonic() + 15
    token = await fresh_assertion(s, vendor)
    while kid_of(token) != new_kid and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
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


async def test_retired_key_stops_signing_after_reload(setup: Any) -> None:
    """Retire + reload: the old key signs no more. It stays published only while an
    assertion it signed in this process may still verify (that it then leaves is
    test_key_rotation_edges.test_a_retired_key_leaves_the_jwks_once_its_last_assertion_has_expired)."""
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
    assert [k["kid"] for k in published["keys"]] == [new_kid, kid_of(old_token)]
    assert verify(old_token, published)["aud"] == "one"  # signed here a moment ago
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


# ------------------------------------------------------------------ key files on disk


def test_a_process_loading_during_a_rotation_never_signs_with_the_new_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`keys rotate` writes the activation time, then the key, each whole (a temporary name
    renamed): a process loading the directory at either moment (a reload, a worker starting)
    sees the old key signing, never the new one without its time (it counted as active since
    1970, and signed before vendors had its public half)."""
    import proxy.assertion as assertion

    key_dir = tmp_path / "keys"
    old = assertion.ensure_keys(key_dir)[0]  # active since 0
    seen: list[list[assertion.SigningKey]] = []
    replace = os.replace

    def loading_meanwhile(src: Any, dst: Any) -> None:
        seen.append(assertion.load_keys(key_dir))  # before the rename
        replace(src, dst)
        seen.append(assertion.load_keys(key_dir))  # after it

    monkeypatch.setattr(assertion.os, "replace", loading_meanwhile)
    new = assertion.create_key(key_dir, not_before=time.time() + 600)
    monkeypatch.setattr(assertion.os, "replace", replace)
    assert len(seen) == 4
    for keys in seen:
        signer = assertion.Signer(keys, issuer="https://p", scope="lib.org", pairwise_secret=b"s")
        assert signer.active_key().kid == old.kid
        assert all(k.not_before > 0 for k in keys if k.kid == new.kid)
    assert [k.kid for k in seen[-1]] == [old.kid, new.kid]
    assert not list(key_dir.glob(".*.tmp"))


def test_a_key_without_its_activation_file_is_not_loaded(tmp_path: Path) -> None:
    from proxy.assertion import create_key, ensure_keys, load_keys

    key_dir = tmp_path / "keys"
    first = ensure_keys(key_dir)[0]
    half = create_key(key_dir, not_before=0.0)
    (key_dir / f"{half.kid}.json").unlink()
    assert [k.kid for k in load_keys(key_dir)] == [first.kid]


def test_instances_starting_together_on_an_empty_key_directory_make_one_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both look, find nothing, and then take turns: the second finds the first's key."""
    import threading

    import proxy.assertion as assertion

    key_dir = tmp_path / "keys"
    both_looked = threading.Barrier(2)
    first_look = threading.local()
    load = assertion.load_keys

    def looking_together(d: Path) -> list[assertion.SigningKey]:
        keys = load(d)
        if not getattr(first_look, "done", False):
            first_look.done = True
            both_looked.wait(timeout=5)
        return keys

    monkeypatch.setattr(assertion, "load_keys", looking_together)
    kids: list[list[str]] = []
    threads = [
        threading.Thread(
            target=lambda: kids.append([k.kid for k in assertion.ensure_keys(key_dir)])
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kids) == 2 and kids[0] == kids[1] and len(kids[0]) == 1
    assert len(list(key_dir.glob("*.pem"))) == 1


def test_a_signing_key_readable_by_others_is_refused(tmp_path: Path, port: int) -> None:
    """Whoever reads the key can sign "valid Weston patron": the rule of every secret file."""
    from proxy.assertion import ensure_keys, load_keys
    from proxy.cli import config_checks
    from proxy.config import load_config
    from proxy.errors import ConfigError

    cfg = file_directory_config(tmp_path, port, {})
    key = ensure_keys(load_config(cfg).resolve(load_config(cfg).keys.dir))[0]
    key.path.chmod(0o640)
    with pytest.raises(ValueError, match="readable by group or others"):
        load_keys(key.path.parent)
    with pytest.raises(ConfigError, match=r"keys\.dir: .*readable by group or others"):
        load_config(cfg, extra_checks=config_checks())


def test_expired_assertions_leave_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Most sessions end by timeout, with no `forget`: their assertions (which session used
    which vendor, and when) go once expired, at the next signing after a sweep interval."""
    import proxy.assertion as assertion

    signer = assertion.Signer(
        assertion.ensure_keys(tmp_path / "keys"), issuer="https://p", scope="lib.org",
        pairwise_secret=b"s" * 32,
    )  # fmt: skip
    t0 = time.time()
    signer.assertion(
        cache_key="ended", audience="v", patron_key="p", vendor_id="v", pseudonymous=True
    )
    later = t0 + assertion.ASSERTION_LIFETIME_S + assertion.CACHE_SWEEP_S
    monkeypatch.setattr(assertion.time, "time", lambda: later)
    signer.assertion(
        cache_key="other", audience="v", patron_key="q", vendor_id="v", pseudonymous=True
    )
    assert [k for k, _ in signer._cache.items()] == [("other", "v", True)]


@pytest.mark.parametrize("secret", ["7", "x" * 31])
def test_a_server_secret_short_enough_to_guess_is_refused(
    tmp_path: Path, port: int, secret: str
) -> None:
    """It keys every pairwise `sub`: a vendor that knows the card-number format could compute a
    patron's `sub` from the card number with a guessed secret. At least 32 bytes, whatever the
    store (only Redis sealing checked a length before)."""
    from proxy.cli import config_checks
    from proxy.config import load_config
    from proxy.errors import ConfigError
    from proxy.secrets_ import SecretError, server_secret
    from tests.harness import write_secret

    cfg = file_directory_config(tmp_path, port, {})
    path = tmp_path / "state" / "server-secret"
    write_secret(path, "x" * 32)  # the shortest accepted
    config = load_config(cfg, extra_checks=config_checks())
    assert config.resolve(config.session.secret_file) == path
    write_secret(path, secret)
    with pytest.raises(ConfigError, match=r"session\.secret_file: the server secret is \d+ bytes"):
        load_config(cfg, extra_checks=config_checks())
    with pytest.raises(SecretError, match="at least 32"):
        server_secret(config)
