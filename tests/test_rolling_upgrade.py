"""From a review of upgrading the proxy in place (sessions, statistics, keys, config across
versions).

A rolling upgrade runs two code versions on one Redis. README ("Operating it") promises that
upgrading instances one at a time works for versions from 2026-11-30 on. The old state here is
written literally, in the exact shape the older code writes it (`Session.to_dict` of commit
9637f7b, 2026-11-30 12:09: no "rules" field; that code's `from_dict` leaves out fields it does
not know, and every write it makes during a request is the whole `to_dict`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy.config import load_config
from proxy.redis_store import RedisStore
from proxy.secrets_ import server_secret
from tests.canary import CANARY, CanaryPatron
from tests.harness import ProxyDriver, RecordingVendor, ldap_directory, vendor_toml, write_config

ARCHIVE_HOST = "www.town-archive.test"


def _store_for(cfg: Path, redis_url: str) -> RedisStore:
    """A RedisStore with the proxy's own sealing key (proxy/services.py build_services)."""
    config = load_config(cfg)
    key = hashlib.sha256(b"store-v1\x00" + server_secret(config)).digest()
    return RedisStore(url=redis_url, key=key)


async def _write_raw(store: RedisStore, data: dict[str, Any]) -> None:
    """Seal and store a session dict exactly as given, through the store's own script."""
    redis_key, member = store._session_key(data["id"])
    plaintext = json.dumps(data, separators=(",", ":")).encode()
    blob = store._sealer.seal(data["id"], plaintext, redis_key.encode())
    await store._put(
        keys=[redis_key, store._live, store._born],
        args=[blob, 600_000, member, repr(data["created"])],
    )


async def archive_on_redis(
    tmp_path: Path,
    port: int,
    slapd: Any,
    redis_url: str,
    vendor_factory: Any,
    proxy_factory: Any,
    patron: CanaryPatron,
    *,
    directory_extra: str = "",
    vendor_extra: str = "",
) -> tuple[ProxyDriver, RecordingVendor, Path]:
    """A proxy on Redis with the "Town Archive" vendor, `patron` signed in and the archive's
    `/before` fetched: (driver, the archive, the config file)."""
    archive: RecordingVendor = await vendor_factory(ARCHIVE_HOST)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(slapd, tmp_path) + directory_extra,
        vendors={
            "archive": vendor_toml("archive", archive, title="Town Archive", extra=vendor_extra)
        },
        session=f'store = "redis"\nredis_url = "{redis_url}"\nidle_timeout_s = 600\n'
        "lifetime_s = 3600",
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    assert (await driver.login(patron.uid, patron.password)).status == 303
    assert (await driver.get_vendor(ARCHIVE_HOST, "/before")).status == 200
    return driver, archive, cfg


async def stored_as(
    driver: ProxyDriver,
    cfg: Path,
    redis_url: str,
    older: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """The signed-in session stored again as an older version writes it (`older` of its dict)."""
    assert driver.sid is not None
    store = _store_for(cfg, redis_url)
    try:
        session = await store.get(driver.sid)
        assert session is not None and session.rules, "this code records the marks"
        await _write_raw(store, older(session.to_dict()))
    finally:
        await store.close()


def _as_old_instance_writes(new: dict[str, Any]) -> dict[str, Any]:
    """What an instance of 9637f7b stores after it served one request of this session (its
    `touch`/`_amend` read the session with `from_dict`, which drops unknown fields, and write
    back the whole `to_dict`): every field it knows, in its order, and nothing else."""
    known = (
        "id", "patron_key", "databases", "created", "last_seen", "csrf", "jars", "state",
        "suspended", "hosts",
    )  # fmt: skip
    return {k: new[k] for k in known}


async def test_rolling_upgrade_old_instance_touch_does_not_force_a_sign_in_again(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    redis_url: str,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """Two replicas behind one nginx during a documented rolling upgrade: one still runs the
    code of 2026-11-30 12:09 (before sessions recorded their eligibility marks, 217636f), one
    runs this code. CANARY (a resident) signs in at the new one and uses the resident-only
    "Town Archive"; nginx sends her next request to the old replica, which serves it and
    writes the session back without the field it does not know ("rules"); her following
    request, at the new replica, gets "the rules changed, sign in again" though no rule
    changed. Every request that lands on the old replica strips the field again, so for the
    whole upgrade window a patron of a conditional database is sent to sign in over and over.

    Expected: no rule changed, so the request at the new replica reaches the archive (the
    marks must survive an older instance's write, e.g. kept where it preserves them)."""
    driver, archive, cfg = await archive_on_redis(
        tmp_path,
        port,
        running_slapd,
        redis_url,
        vendor_factory,
        proxy_factory,
        CANARY,
        directory_extra='group_attribute = "employeeType"\n',
        vendor_extra='\n[eligibility]\ngroups = ["resident"]\n',
    )
    await stored_as(driver, cfg, redis_url, _as_old_instance_writes)

    r = await driver.get_vendor(ARCHIVE_HOST, "/after")
    body = await r.text()
    assert "sign in again" not in body.lower(), body[:400]
    assert [q.path_qs for q in archive.requests] == ["/before", "/after"]
