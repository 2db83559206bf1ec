"""A sign-in post answered with the store page cannot be replayed once the store is back (from a
review of the day's new refusals and limits under outage, reload and scale-out).

Real slapd, real Redis (stopped and started as an outage), the real app over loopback HTTP,
synthetic canary patrons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.app import SERVICES
from proxy.web.messages import MESSAGES
from proxy.web.pages import CSRF_COOKIE
from tests.canary import CANARY
from tests.harness import ProxyDriver, ldap_directory, vendor_toml, write_config

WWW = "www.vendor-one.test"


@pytest.fixture
async def redis_driver(
    tmp_path: Path,
    port: int,
    running_slapd: Any,
    redis_url: str,
    redis_server: Any,
    vendor_factory: Any,
    proxy_factory: Any,
) -> Any:
    """A proxy on the real slapd and the real Redis; Redis is running again afterwards."""
    one = await vendor_factory(WWW)
    cfg = write_config(
        tmp_path,
        port=port,
        directory=ldap_directory(running_slapd, tmp_path),
        vendors={"one": vendor_toml("one", one)},
        session=f'store = "redis"\nredis_url = "{redis_url}"',
    )
    driver: ProxyDriver = await proxy_factory(cfg)
    yield driver
    redis_server.start()


async def _post_sign_in(driver: ProxyDriver, data: dict[str, str]) -> Any:
    """POST /login with exactly these fields, as a browser re-sends a post from its history
    (Back and Reload): the same body, and the cookies the browser holds now."""
    return await driver.client.post(
        "/login", data=data, headers={"Host": driver.public}, allow_redirects=False
    )


async def _assert_post_not_replayable(
    driver: ProxyDriver, redis_server: Any, data: dict[str, str]
) -> None:
    redis_server.start()
    again = await _post_sign_in(driver, data)
    made = again.cookies.get(driver.config.server.cookie_name)
    assert again.status != 303 and made is None, (
        f"the sign-in post answered with the store page, re-sent from the browser's history "
        f"once the store was back, signed in ({again.status} to {again.headers.get('Location')}):"
        " at a shared computer the next person's Back and Reload opens the last patron's session"
    )
    # As after a directory outage (tests/test_patron_journey.py): the stale-form page.
    assert again.status == MESSAGES["csrf"].status
    assert MESSAGES["csrf"].title in await again.text()


async def test_a_sign_in_answered_with_the_store_page_cannot_be_replayed_from_history(
    redis_driver: ProxyDriver, redis_server: Any
) -> None:
    """Redis down when a patron signs in: the sign-in gate's counter cannot be read, and the
    patron gets the store page (503, Retry-After). The card and PIN posted may be right. For a
    directory outage and for the refusals of the gate and of the per-card bound the sign-in
    token is renewed (pages.py `_token`, RENEW_TOKEN: "Replayed from the browser's history
    (Back and Reload at a shared computer), such a post ... is refused before its card number is
    looked at"); a store outage, answered by the `dispatch` middleware's StoreUnavailable
    handler, keeps the old token. At a shared computer the patron told "briefly unavailable,
    try again in a few minutes" may walk away; once Redis is back the next person's Reload
    re-sends the same post (without JavaScript `again.js` cannot replace the entry; Reload of
    the 503 page itself re-sends it in any browser) and is signed in as the previous patron,
    into their databases. It should be refused as a stale form, as after a directory outage."""
    driver = redis_driver
    csrf, _ = await driver.login_form()
    data = {"username": CANARY.uid, "password": CANARY.password, "url": "", "csrf": csrf}
    redis_server.stop()
    r = await _post_sign_in(driver, data)
    assert r.status == 503 and "Retry-After" in r.headers
    await _assert_post_not_replayable(driver, redis_server, data)


async def test_a_store_failure_after_the_directory_accepted_the_pin_leaves_no_replayable_post(
    redis_driver: ProxyDriver, redis_server: Any
) -> None:
    """The store fails during `admit` (the per-card bound's count), after the directory accepted
    the PIN: the patron rightly gets the store page (503 with Retry-After, no session cookie).
    But the sign-in token is not renewed (as it is for the bound's own 429 refusal, which sets
    RENEW_TOKEN), so the post that held a right card and PIN stays valid: re-sent from the
    browser's history after Redis is back, it signs the next person in as this patron."""
    driver = redis_driver
    svc = driver.client.server.app[SERVICES]
    directory = svc.directory
    real = directory.authenticate

    async def authenticate_then_store_goes(username: str, password: str) -> Any:
        patron = await real(username, password)
        redis_server.stop()  # Redis goes away between the directory's answer and `admit`
        return patron

    directory.authenticate = authenticate_then_store_goes  # type: ignore[method-assign]
    csrf, _ = await driver.login_form()
    data = {"username": CANARY.uid, "password": CANARY.password, "url": "", "csrf": csrf}
    r = await _post_sign_in(driver, data)
    directory.authenticate = real  # type: ignore[method-assign]
    assert r.status == 503 and "Retry-After" in r.headers
    assert r.cookies.get(driver.config.server.cookie_name) is None
    await _assert_post_not_replayable(driver, redis_server, data)


async def test_a_store_outage_on_another_page_leaves_an_open_sign_in_form_working(
    redis_driver: ProxyDriver, redis_server: Any
) -> None:
    """kills: proxy/web/pages.py:renew_sign_in_token — `if request.get(SIGN_IN_POST)` → `if True`.

    Only a sign-in post answered with the store page renews the sign-in token. The store page
    on any other request (the menu, a database page) is answered by the same `dispatch`
    handler; renewing the token there too would make every sign-in form the browser has open
    (a second tab, the page the patron left to come back to) stale, so the patron's next
    sign-in after a brief Redis outage would be refused as an old form for no reason."""
    driver = redis_driver
    assert (await driver.login(CANARY.uid, CANARY.password)).status == 303
    csrf, _ = await driver.login_form()  # a sign-in form open in another tab
    redis_server.stop()
    r = await driver.own("GET", "/menu")
    assert r.status == 503 and "Retry-After" in r.headers
    assert CSRF_COOKIE not in r.cookies, "the store page on the menu renewed the sign-in token"
    redis_server.start()
    data = {"username": CANARY.uid, "password": CANARY.password, "url": "", "csrf": csrf}
    again = await _post_sign_in(driver, data)
    assert again.status == 303, f"the form opened before the outage was refused ({again.status})"
