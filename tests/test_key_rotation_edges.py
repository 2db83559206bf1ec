"""Signing keys on disk, rotation as vendors see it, and the demo vendor's check.

From a review of the signed assertion as a vendor verifying with PyJWT from the JWKS: the claims
and unlinkability held; these are what it found, each failing before its fix: a broken key file
was a traceback; a cached assertion outlived a clock stepped back; a late reload signed with a
key vendors' cached JWKS lacked; a key retired after a late reload left the JWKS while its
assertions were valid; the vendor's-eye view verified with the keys of the proxy's start.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.harness import RecordingVendor, free_port, vendor_toml
from tests.test_keys import fresh_assertion, jwks, kid_of, rotate, verify
from tests.test_reload import (
    CARD,
    ONE,
    PIN,
    ROOT,
    Served,
    file_directory_config,
    run_cli,
    serve,
)


@pytest.fixture
async def setup(
    tmp_path: Path, port: int, vendor_factory: Any
) -> AsyncIterator[tuple[Served, RecordingVendor]]:
    one = await vendor_factory(ONE)
    cfg = file_directory_config(tmp_path, port, {"one": vendor_toml("one", one)})
    async for s in serve(cfg):
        yield s, one


# ------------------------------------------------------------------ key files on disk


@pytest.mark.parametrize("broken", ["key", "activation file"])
def test_a_key_file_with_broken_content_is_one_clear_error_naming_the_file(
    tmp_path: Path, port: int, broken: str
) -> None:
    """A truncated or mangled key (a bad restore, a disk full during a copy) must be reported
    as the file it is, by `check-config` and by `serve`, not as a traceback ending in
    "Unable to load PEM file" / "JSONDecodeError" with no file named; `check-config` must not
    say OK for a configuration that cannot start."""
    from proxy.assertion import ensure_keys, load_keys
    from proxy.config import load_config

    cfg = file_directory_config(tmp_path, port, {})
    config = load_config(cfg)
    key = ensure_keys(config.resolve(config.keys.dir))[0]
    bad = key.path if broken == "key" else key.path.with_suffix(".json")
    bad.write_text("-----BEGIN PRIVATE KEY-----\ntruncated\n" if broken == "key" else '{"not_be')
    bad.chmod(0o600)

    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_keys(key.path.parent)

    checked = run_cli("check-config", "--config", str(cfg))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert bad.name in checked.stdout + checked.stderr

    served = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--config", str(cfg)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    out = served.stdout + served.stderr
    assert served.returncode != 0
    assert bad.name in out
    assert "Traceback" not in out, out[-2000:]


# ------------------------------------------------------------------ clock


def test_an_assertion_cached_before_the_clock_was_stepped_back_is_not_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy that booted with its clock an hour fast (no NTP yet) and is then corrected must
    not go on sending the assertion it cached meanwhile: its `iat` lies an hour in the future and
    its `exp` 65 minutes away, so a vendor verifying with PyJWT refuses it ("not yet valid")
    and the patron is locked out of that database for an hour. A cached assertion is reusable
    only while its `iat` is not in the future and its `exp` at most 300 s away."""
    import proxy.assertion as assertion

    signer = assertion.Signer(
        assertion.ensure_keys(tmp_path / "keys"), issuer="https://p.example", scope="lib.org",
        pairwise_secret=b"s" * 32,
    )  # fmt: skip
    real = time.time()
    ask = dict(cache_key="session", audience="v", patron_key="p", vendor_id="v", pseudonymous=False)
    monkeypatch.setattr(assertion.time, "time", lambda: real + 3600)
    signer.assertion(**ask)  # type: ignore[arg-type]
    monkeypatch.setattr(assertion.time, "time", lambda: real)  # NTP steps the clock back
    token = signer.assertion(**ask)  # type: ignore[arg-type]
    public = signer.keys[0].private.public_key()
    claims = jwt.decode(token, public, algorithms=["EdDSA"], audience="v")  # the vendor's clock
    assert claims["iat"] <= time.time()
    assert claims["exp"] - time.time() <= assertion.ASSERTION_LIFETIME_S


# ------------------------------------------------------------------ rotation


async def test_a_reload_after_the_activation_time_does_not_sign_with_a_key_vendors_never_saw(
    setup: Any,
) -> None:
    """`keys rotate` writes a key that signs from `activate_after_s` on; the proxy publishes it
    only at its next reload. When that reload comes after the activation time (rotation run
    from cron, the reload left for the next maintenance window, an instance restarted later),
    the proxy signs with the new key the moment it first publishes it. A vendor that fetched the
    JWKS a minute earlier may keep it for `max-age=300` and refuses every patron for up to five
    minutes. The new key must be in the JWKS before its first use: for a JWKS max-age after a
    key first appears, assertions are signed with a key already published."""
    s, vendor = setup
    first = await fresh_assertion(s, vendor)
    r = await s.driver.own("GET", "/.well-known/jwks.json")
    assert "max-age=300" in r.headers["Cache-Control"]
    cached_by_vendor: dict[str, Any] = await r.json()  # may be kept 300 s
    new_kid = rotate(s, 600)  # the default delay
    # Stand in for the reload coming after the activation time: the new key's time has passed.
    meta = s.cfg.parent / "state" / "keys" / f"{new_kid}.json"
    now = time.time()
    meta.write_text(json.dumps({"not_before": now - 1, "created": now - 601}))
    assert (await s.hup())["event"] == "reloaded"
    token = await fresh_assertion(s, vendor)
    assert kid_of(first) in {k["kid"] for k in cached_by_vendor["keys"]}
    verify(token, cached_by_vendor)  # LookupError: kid ... is not published


async def test_a_key_retired_after_a_late_reload_stays_published_while_it_may_verify(
    setup: Any,
) -> None:
    """`keys retire` counts five minutes from the successor's activation time, but a running
    proxy signs with the old key until it is reloaded. Reloaded late, the old key signed a
    moment ago; retire (and the reload the docs pair with it) unpublished it while that
    assertion had almost five minutes to run, and the vendor refused the patron. The CLI cannot
    know when a running proxy last signed; the proxy keeps the key published until then."""
    s, vendor = setup
    new_kid = rotate(s, 600)
    # An hour later (the new key's activation long past), still not reloaded:
    meta = s.cfg.parent / "state" / "keys" / f"{new_kid}.json"
    now = time.time()
    meta.write_text(json.dumps({"not_before": now - 3600, "created": now - 4200}))
    just_signed = await fresh_assertion(s, vendor)  # the old key still signs here
    await s.hup()  # the late reload: the new key takes over from now
    r = run_cli("keys", "retire", kid_of(just_signed), "--config", str(s.cfg))
    assert (await s.hup())["event"] == "reloaded"
    published = await jwks(s)
    # `keys retire` cannot know when a running proxy last signed; the proxy does, and keeps
    # the retired key's public half in its JWKS until that key's last assertion has expired.
    assert r.returncode == 0, r.stdout + r.stderr
    assert verify(just_signed, published)["aud"] == "one"


# ------------------------------------------------------------------ the vendor's-eye view


def _demo_config(root: Path, port: int, demo_port: int) -> Path:
    demo = textwrap.dedent(
        f"""\
        id = "demo"
        title = "Demo Database"
        origin = "http://demo.vendor.test"
        hosts = ["demo.vendor.test"]
        auth = "assertion"
        connect_to = "127.0.0.1:{demo_port}"
        """
    )
    cfg = file_directory_config(root, port, {"demo": demo})
    cfg.write_text(cfg.read_text() + f'\n[demo]\nvendor_listen = "127.0.0.1:{demo_port}"\n')
    return cfg


async def test_the_vendors_eye_view_verifies_with_the_keys_published_after_a_reload(
    tmp_path: Path, port: int
) -> None:
    """The bundled demo vendor (IT staff's "vendor's-eye view") verifies with the signer the
    proxy started with, not with what /.well-known/jwks.json publishes: after `keys rotate` and
    a reload, once the new key signs, it says "NOT verified: unknown key id" for assertions any
    real vendor verifies."""
    cfg = _demo_config(tmp_path, port, free_port())
    async for s in serve(cfg):
        new_kid = rotate(s, 0)
        assert (await s.hup())["event"] == "reloaded"
        await asyncio.sleep(0.1)
        r = await s.driver.login(CARD, PIN)
        assert r.status == 303
        page = await s.driver.get_vendor("demo.vendor.test", "/")
        text = await page.text()
        token = re.search(r"<pre>(.*?)</pre>", text, re.S)
        assert token is not None, text
        assert new_kid in {k["kid"] for k in (await jwks(s))["keys"]}
        assert "signature verified against the library&#x27;s published keys" in text, text


def test_a_proxy_started_after_a_keys_time_signs_with_the_older_key_until_vendors_have_it(
    tmp_path: Path,
) -> None:
    """A restart (no earlier signer to continue) cannot know whether a vendor's cached JWKS
    holds a key rotated since the last start: until the new key has been published for its
    delay (the JWKS max-age at most), the older key whose time has come signs. A key rotated
    with no delay signs at once: the operator said so."""
    import proxy.assertion as assertion

    key_dir = tmp_path / "keys"
    first = assertion.ensure_keys(key_dir)[0]
    later = assertion.create_key(key_dir, not_before=time.time() - 20)  # rotated, no delay
    now = time.time()
    late = assertion.create_key(key_dir, not_before=now + 600)
    meta = late.path.with_suffix(".json")
    meta.write_text(json.dumps({"not_before": now - 10, "created": now - 610}))
    signer = assertion.Signer(
        assertion.load_keys(key_dir), issuer="https://p.example", scope="lib.org",
        pairwise_secret=b"s" * 32,
    )  # fmt: skip
    at = time.time()
    assert first.kid != later.kid
    assert signer.active_key(at).kid == later.kid  # delay 0: at once; `late` not yet
    assert signer.active_key(at + assertion.JWKS_MAX_AGE_S + 1).kid == late.kid
    assert {k["kid"] for k in signer.jwks()["keys"]} == {first.kid, later.kid, late.kid}


def test_a_retired_key_leaves_the_jwks_once_its_last_assertion_has_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reload after `keys retire` keeps the retired key's public half only while an
    assertion it signed here may still verify; after that it is gone."""
    import proxy.assertion as assertion

    key_dir = tmp_path / "keys"
    old = assertion.ensure_keys(key_dir)[0]
    real = time.time()
    clock = [real]
    monkeypatch.setattr(assertion.time, "time", lambda: clock[0])
    make = dict(issuer="https://p.example", scope="lib.org", pairwise_secret=b"s" * 32)
    before = assertion.Signer(assertion.load_keys(key_dir), **make)  # type: ignore[arg-type]
    token = before.assertion(
        cache_key="s", audience="v", patron_key="p", vendor_id="v", pseudonymous=False
    )
    assert jwt.get_unverified_header(token)["kid"] == old.kid
    new = assertion.create_key(key_dir, not_before=real)
    old.path.unlink()  # retired
    old.path.with_suffix(".json").unlink()
    clock[0] = real + 10
    reloaded = assertion.Signer(assertion.load_keys(key_dir), previous=before, **make)  # type: ignore[arg-type]
    assert {k["kid"] for k in reloaded.jwks()["keys"]} == {new.kid, old.kid}
    clock[0] = real + assertion.ASSERTION_LIFETIME_S + 1
    assert {k["kid"] for k in reloaded.jwks()["keys"]} == {new.kid}
    again = assertion.Signer(assertion.load_keys(key_dir), previous=reloaded, **make)  # type: ignore[arg-type]
    assert {k["kid"] for k in again.jwks()["keys"]} == {new.kid}


def test_after_a_restart_the_key_vendors_have_held_longest_signs_first(tmp_path: Path) -> None:
    """Started afresh with two keys whose times have passed, both rotated with a delay: which
    one a vendor's cached JWKS holds is unknown, except that the older was published first.
    It signs until the newer has been published for the JWKS max-age."""
    import proxy.assertion as assertion

    key_dir = tmp_path / "keys"
    now = time.time()
    keys = [assertion.create_key(key_dir, not_before=now + 600) for _ in range(2)]
    for key, ago in zip(keys, (1000, 100), strict=True):
        meta = {"not_before": now - ago, "created": now - ago - 600}
        key.path.with_suffix(".json").write_text(json.dumps(meta))
    older, newer = keys
    signer = assertion.Signer(
        assertion.load_keys(key_dir), issuer="https://p.example", scope="lib.org",
        pairwise_secret=b"s" * 32,
    )  # fmt: skip
    at = time.time()
    assert signer.active_key(at).kid == older.kid
    assert signer.active_key(at + assertion.JWKS_MAX_AGE_S + 1).kid == newer.kid
