"""Attribute release levels, end to end: what `sub` a vendor receives, and when none at all.

`release = "pseudonymous"` adds a pairwise `sub`: stable for one patron at one vendor across
sessions and restarts, different at every other vendor and for every other patron, and not
derivable from the card number (it changes when only the server secret changes). Anonymous vendors
get no `sub`. Configuring pseudonymous without the contract's permission is a config error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import textwrap
from pathlib import Path
from typing import Any

import jwt
import pytest

from proxy.assertion import pairwise_id
from proxy.config import load_config
from proxy.errors import ConfigError
from tests.canary import CANARY, WREN, CanaryPatron
from tests.harness import (
    ProxyDriver,
    RecordingVendor,
    free_port,
    ldap_directory,
    vendor_toml,
    write_config,
)

PSEUDO = (
    '\nrelease = "pseudonymous"\n\n[contract]\npermits_pseudonymous_id = true\n'
    "expires = 2099-12-31\n"
)
HOSTS = {"alpha": "www.alpha-db.test", "beta": "www.beta-db.test", "gamma": "www.gamma-db.test"}


class Release:
    """Three assertion vendors (alpha and beta pseudonymous, gamma anonymous) behind one proxy."""

    def __init__(self, vendors: dict[str, RecordingVendor], root: Path, slapd: Any) -> None:
        self.vendors = vendors
        self.root = root
        self.slapd = slapd

    def write(self, port: int) -> Path:
        texts = {
            vid: vendor_toml(vid, v, extra="" if vid == "gamma" else PSEUDO)
            for vid, v in self.vendors.items()
        }
        return write_config(
            self.root,
            port=port,
            directory=ldap_directory(self.slapd, self.root),
            vendors=texts,
        )


@pytest.fixture
async def release(tmp_path: Path, running_slapd: Any, vendor_factory: Any) -> Release:
    vendors = {vid: await vendor_factory(host) for vid, host in HOSTS.items()}
    return Release(vendors, tmp_path / "site", running_slapd)


async def claims_of(driver: ProxyDriver, release: Release, patron: CanaryPatron, vid: str) -> Any:
    """Sign `patron` in afresh (a new session), visit vendor `vid`, return the claims it got."""
    r = await driver.login(patron.uid, patron.password)
    assert r.status == 303
    vendor = release.vendors[vid]
    before = len(vendor.requests)
    assert (await driver.get_vendor(HOSTS[vid], "/")).status == 200
    (req,) = vendor.requests[before:]
    (token,) = [v for k, v in req.headers if k.lower() == "x-patron-assertion"]
    return jwt.decode(token, options={"verify_signature": False})


async def test_sub_stable_across_sessions_of_one_patron(
    release: Release, port: int, proxy_factory: Any
) -> None:
    driver = await proxy_factory(release.write(port))
    first = await claims_of(driver, release, CANARY, "alpha")
    sid = driver.session_id()
    second = await claims_of(driver, release, CANARY, "alpha")
    assert driver.session_id() != sid
    assert first["jti"] != second["jti"]
    assert first["sub"] == second["sub"]


async def test_sub_stable_across_restart_with_same_secret(
    release: Release, port: int, proxy_factory: Any
) -> None:
    """A second proxy on the same state directory (same server secret) gives the same sub."""
    one = await proxy_factory(release.write(port))
    before = await claims_of(one, release, CANARY, "alpha")
    two = await proxy_factory(release.write(free_port()))
    after = await claims_of(two, release, CANARY, "alpha")
    assert before["sub"] == after["sub"]


async def test_sub_differs_across_vendors(release: Release, port: int, proxy_factory: Any) -> None:
    driver = await proxy_factory(release.write(port))
    a = await claims_of(driver, release, CANARY, "alpha")
    b = await claims_of(driver, release, CANARY, "beta")
    assert a["sub"] != b["sub"]
    assert a["aud"] == "alpha" and b["aud"] == "beta"


async def test_sub_differs_across_patrons(release: Release, port: int, proxy_factory: Any) -> None:
    driver = await proxy_factory(release.write(port))
    canary = await claims_of(driver, release, CANARY, "alpha")
    wren = await claims_of(driver, release, WREN, "alpha")
    assert canary["sub"] != wren["sub"]


async def test_anonymous_vendor_gets_no_sub(
    release: Release, port: int, proxy_factory: Any
) -> None:
    """The anonymous vendor's claims are exactly DESIGN §3's, even for a patron with a sub elsewhere."""
    driver = await proxy_factory(release.write(port))
    await claims_of(driver, release, CANARY, "alpha")
    claims = await claims_of(driver, release, CANARY, "gamma")
    assert set(claims) == {"iss", "aud", "iat", "exp", "jti", "affiliation"}


def _card_digests(card: str, vendor_id: str) -> set[str]:
    """What a guess at 'the sub is some hash of the card number' would produce."""
    out: set[str] = set()
    inputs = [card, vendor_id + card, card + vendor_id, f"{vendor_id}\x00{card}", card + "@x"]
    for text in inputs:
        for algo in ("md5", "sha1", "sha256", "sha512"):
            digest = hashlib.new(algo, text.encode()).digest()
            out |= {
                digest.hex(),
                base64.b32encode(digest).decode().rstrip("=").lower(),
                base64.urlsafe_b64encode(digest).decode().rstrip("="),
            }
        for key in (b"", vendor_id.encode(), b"westonlibrary.org"):
            mac = hmac.new(key, text.encode(), hashlib.sha256).digest()
            out |= {mac.hex(), base64.b32encode(mac).decode().rstrip("=").lower()}
    return out


async def test_sub_is_not_a_digest_of_the_card_number(
    release: Release, port: int, proxy_factory: Any
) -> None:
    driver = await proxy_factory(release.write(port))
    sub = (await claims_of(driver, release, CANARY, "alpha"))["sub"]
    local, _, scope = sub.partition("@")
    assert scope == "westonlibrary.org"
    assert CANARY.uid not in sub
    assert local not in _card_digests(CANARY.uid, "alpha")
    assert local.lower() not in {d.lower() for d in _card_digests(CANARY.uid, "alpha")}


async def test_sub_changes_when_server_secret_changes(
    release: Release, tmp_path: Path, port: int, proxy_factory: Any
) -> None:
    """Same card, same vendor, another server secret: another sub (the secret is what it hangs on)."""
    one = await proxy_factory(release.write(port))
    before = (await claims_of(one, release, CANARY, "alpha"))["sub"]
    other = Release(release.vendors, tmp_path / "other-site", release.slapd)
    two = await proxy_factory(other.write(free_port()))
    secrets = [(p / "state" / "server-secret").read_bytes() for p in (release.root, other.root)]
    assert secrets[0] != secrets[1]
    after = (await claims_of(two, release, CANARY, "alpha"))["sub"]
    assert before != after


def test_pairwise_id_depends_on_every_input() -> None:
    """Unit: secret, vendor and patron key each change the id; the scope is appended."""
    base = pairwise_id(b"s" * 32, "alpha", "k1", "westonlibrary.org")
    assert base.endswith("@westonlibrary.org")
    assert base == pairwise_id(b"s" * 32, "alpha", "k1", "westonlibrary.org")
    assert base != pairwise_id(b"t" * 32, "alpha", "k1", "westonlibrary.org")
    assert base != pairwise_id(b"s" * 32, "beta", "k1", "westonlibrary.org")
    assert base != pairwise_id(b"s" * 32, "alpha", "k2", "westonlibrary.org")


# --------------------------------------------------------------------------- config


def _one_vendor_config(tmp_path: Path, vendor_text: str) -> Path:
    (tmp_path / "patrons.toml").write_text("")
    (tmp_path / "vendors").mkdir()
    (tmp_path / "vendors" / "v.toml").write_text(
        textwrap.dedent(
            """\
            id = "v"
            title = "V"
            origin = "https://v.test"
            hosts = ["v.test"]
            auth = "assertion"
            """
        )
        + vendor_text
    )
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(
        '[server]\npublic_url = "http://proxy.localhost:8080"\n'
        '[directory]\nkind = "file"\npatrons_file = "patrons.toml"\n'
        '[session]\nsecret_file = "state/s"\n'
    )
    return cfg


def test_pseudonymous_without_contract_permission_is_refused(tmp_path: Path) -> None:
    cfg = _one_vendor_config(tmp_path, 'release = "pseudonymous"\n')
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "v.toml: release: pseudonymous needs contract.permits_pseudonymous_id = true" in str(
        err.value
    )


def test_pseudonymous_with_contract_permission_loads(tmp_path: Path) -> None:
    cfg = _one_vendor_config(tmp_path, PSEUDO)
    assert load_config(cfg).vendors[0].release == "pseudonymous"


def test_unknown_release_level_is_refused(tmp_path: Path) -> None:
    cfg = _one_vendor_config(tmp_path, 'release = "full"\n')
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "v.toml: release: must be one of anonymous, pseudonymous" in str(err.value)
