"""From a fresh read of this session's change (8971d78..): defects the day's own fixes
introduced (password spellings the mask missed, userinfo a `/` or `#` hid from the checks, a
vendor's 5xx at login taken for a refusal, sessions from the version before locked out of
databases open to all). Each failed before its fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.auth import LIBRARY_RULE
from tests.canary import CANARY
from tests.harness import ldap_directory
from tests.test_rolling_upgrade import archive_on_redis, stored_as

ARCHIVE_HOST = "www.town-archive.test"
HOST_SL = "www.adapter-review.test"  # tests/test_shared_login_refusals.py HOST


def _as_8971d78_writes(new: dict[str, Any]) -> dict[str, Any]:
    """The session as the code of 8971d78 (this morning, a version README says may be upgraded
    one instance at a time) stores it: `rules` holds the per-database marks only (no
    library-wide `eligible_filter` mark existed), and no copy of them in `state`."""
    old = {k: v for k, v in new.items()}
    old["rules"] = sorted(r for r in new["rules"] if not r.startswith(LIBRARY_RULE + "#"))
    old["state"] = {k: v for k, v in new["state"].items() if k != "_rules"}
    return old


async def test_rolling_upgrade_session_from_8971d78_keeps_databases_open_to_all(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    redis_url: str,
    vendor_factory: Any,
    proxy_factory: Any,
) -> None:
    """README ("Operating it"): upgrading instances one at a time works from 2026-11-30 on; a
    patron signed in at an older instance "may be asked to sign in again at a newer one, for
    databases with an eligibility rule". With `eligible_filter` set (the harness's and the
    production example's LDAP directory), a session signed in at 8971d78 lacks the new
    library-wide mark, so the newer code (`library_rule_holds`) refuses it EVERY database, even
    one open to all, and the menu lists none: every signed-in patron is sent to sign in again,
    and one who signs in at an older replica during the window is sent again and again.

    Expected (as README says): a database open to all stays open to such a session."""
    assert "eligible_filter" in ldap_directory(running_slapd, tmp_path)
    driver, archive, cfg = await archive_on_redis(
        tmp_path, port, running_slapd, redis_url, vendor_factory, proxy_factory, CANARY
    )
    await stored_as(driver, cfg, redis_url, _as_8971d78_writes)

    r = await driver.get_vendor(ARCHIVE_HOST, "/after")
    body = await r.text()
    assert r.status == 200 and "sign in again" not in body.lower(), (r.status, body[:300])
    assert [q.path_qs for q in archive.requests] == ["/before", "/after"]


async def test_a_vendor_outage_at_login_is_not_an_account_refusal_that_holds_off_every_patron(
    tmp_path: Path, port: int, running_slapd: Any, vendor_factory: Any, proxy_factory: Any
) -> None:
    """The shared-login vendor's login URL answers 503 once (a restart, a brief overload: the
    vendor is down, it did not refuse the library's account). `_login` counts every status
    >= 400 as the account refused: the patron is told the library's account was refused, IT
    gets `shared_login_failed` / `account_refused` (and goes to check a password that is
    fine), and for the next 10 minutes no login is tried for ANY patron: the database is shut
    for everyone though the vendor was back a second later.

    Expected: a 5xx from the login URL is the vendor failing (a 502/503/504 page for that
    request, as any vendor failure), not a refusal: the next request, with the vendor back,
    signs in and gets the page."""
    from aiohttp import web

    from tests.test_shared_login_refusals import REFUSED_ROUTES, good_login, shared_login_proxy

    calls = 0

    async def flaky_login(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            await request.post()
            return web.Response(status=503, text="<p>Service Unavailable</p>",
                                content_type="text/html")  # fmt: skip
        return await good_login(request)

    routes = {**REFUSED_ROUTES, "/account/login": flaky_login}
    driver, _vendor = await shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory, routes
    )
    first = await driver.get_vendor(HOST_SL, "/p")
    await first.read()
    assert first.status in (502, 503, 504)
    second = await driver.get_vendor(HOST_SL, "/p")
    body = await second.text()
    assert (second.status, body) == (200, "<p>content</p>"), (second.status, body[:300])
    assert calls == 2


async def test_the_library_password_percent_encoded_by_php_java_or_javascript_is_masked(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    vendor_factory: Any,
    proxy_factory: Any,
    monkeypatch: Any,
) -> None:
    """proxy/vendors/shared_login.py promises the shared account's password is masked
    "percent-encoded" in every body the proxy rewrites. `secret_spellings` only lists Python's
    own `quote`/`quote_plus` spellings, which leave `~` raw and encode `!`. The servers vendors
    run spell it otherwise: PHP's urlencode and Java's URLEncoder write `~` as `%7E`;
    JavaScript's encodeURIComponent leaves `!` raw. A vendor account page with a link holding
    the password (here a password with one `~` and one `!`, as generators make them) reaches
    every patron's browser unmasked.

    Expected: no spelling of the password a web server's standard URL encoder makes reaches
    the browser."""
    from urllib.parse import quote, quote_plus

    from aiohttp import web

    from tests import test_shared_login_refusals as slr

    password = "Library~Shared!Secret 5512"
    monkeypatch.setattr(slr, "LIBRARY_PASSWORD", password)
    php = quote_plus(password).replace("~", "%7E")  # PHP urlencode, Java URLEncoder
    js = quote(password, safe="~!'()*")  # encodeURIComponent
    assert php == "Library%7EShared%21Secret+5512" and js == "Library~Shared!Secret%205512"

    async def account(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=f'<p><a href="/reset?pw={php}">reset</a> <a href="/js?pw={js}">js</a></p>',
            content_type="text/html",
        )

    driver, _vendor = await slr.shared_login_proxy(
        "form", tmp_path, port, running_slapd, vendor_factory, proxy_factory,
        {"/account/login": slr.good_login, "/acct": account},
    )  # fmt: skip
    r = await driver.get_vendor(HOST_SL, "/acct")
    body = await r.text()
    assert r.status == 200
    assert php not in body and js not in body, body


@pytest.mark.parametrize("password", ["Synthetic/Vendor-8812", "Synthetic#Vendor-8812"])
def test_vendor_origin_whose_password_holds_a_slash_or_hash_is_not_echoed(
    tmp_path: Path, password: str
) -> None:
    """eb647f2 refuses a vendor `origin` with `user:password@` "the password never echoed",
    by looking for `@` in urlsplit's netloc. A password holding `/`, `?` or `#` (as generated
    passwords do, pasted unencoded) ends the netloc before the `@`: the `@` check misses it and
    `url_mistake` reports the origin as "not a usable URL", quoting the whole origin with the
    password, on check-config's output (and in `compliance`'s report as evidence): into
    terminals, CI logs and tickets.

    Expected: refused, naming `origin`, the password in no output."""
    from tests.test_design_examples import literal_design_config, run_cli

    cfg = literal_design_config(tmp_path, origin=f"https://libacct:{password}@search.ebscohost.com")
    r = run_cli("check-config", "--config", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "origin" in out, out
    assert "Vendor-8812" not in out, out
    report = run_cli("compliance", "--config", str(cfg), "--format", "json")
    assert "Vendor-8812" not in report.stdout + report.stderr


@pytest.mark.parametrize(
    "redis_url",
    [
        "redis://:Synthetic/Redis-5521@redis.internal.westonlibrary.org:6379/0",
        "redis://proxy:Synthetic#Redis-5521@redis.internal.westonlibrary.org:6379/0",
    ],
)
def test_redis_url_with_a_password_holding_a_slash_or_hash_is_refused(
    tmp_path: Path, redis_url: str
) -> None:
    """b750071: a password in `session.redis_url` is refused ("secrets must not be inline")
    by `config_checks.redis_url_has_password`, which asks urlsplit for `.password`. A password
    holding `/` or `#` ends the netloc before its `@`, so urlsplit sees no password (and the
    hand-read fallback only runs on a ValueError, which `.password` never raises): check-config
    says the configuration is fine (exit 0) with the Redis password inline in proxy.toml, and
    says nothing about a URL that cannot be used either.

    Expected: refused, naming session.redis_url, without the password."""
    from tests.test_design_examples import literal_design_config, run_cli

    cfg = literal_design_config(tmp_path, session=f'store = "redis"\nredis_url = "{redis_url}"')
    r = run_cli("check-config", "--config", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "session.redis_url" in out, out
    assert "Redis-5521" not in out, out
