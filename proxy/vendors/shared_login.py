"""`shared-login`: the vendor only offers named accounts, so the library holds one library-wide
account and the proxy signs in with it on the patron's behalf.

Every patron looks like the same library account to the vendor. The credential comes from secret
files (or environment variables), is sent only to the vendor's login URL (form) or as HTTP Basic,
and never reaches the patron's browser. The vendor's resulting cookies live in the session jar.

A vendor page that echoes the credential (an account page with the password filled in, a page
listing the request's headers) has it masked on the way out (`secret_spellings`, applied by
proxy/forward.py and proxy/rewrite.py): in every response header value and the reason phrase, and
in every body the proxy rewrites (HTML, CSS, JavaScript, JSON, XML, event streams:
`proxy.rewrite.should_rewrite`), as the password raw, percent-encoded, HTML-escaped and
JSON-escaped, and as the HTTP Basic token. NOT masked: bodies the proxy passes through untouched
(PDFs, images, downloads, text/plain, CSV, an untyped body that is not a document: any type it
does not rewrite), the frames of a WebSocket, and spellings outside that list (a password in a
charset that cannot write it, as numeric character references; base64 of the password alone; a
case-changed copy).

A refused login (`_login` not ok) never lets the patron's request go on without the account (the
vendor would answer with its own sign-in form, which a patron fills with their card and PIN):
it raises VendorAccountRefused, which the patron sees as the proxy's own page. The account is
library-wide, so a refusal holds off every further login to this vendor for REFUSAL_HOLD_OFF_S,
whatever the session: vendors lock an account that keeps failing to sign in, locking out every
patron. A login that works, or a reload (a new adapter), ends the hold-off.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from multidict import CIMultiDict
from yarl import URL

from proxy.config import SharedLogin, VendorConfig
from proxy.errors import VendorAccountRefused, VendorLoginFailed, vendor_failures
from proxy.jar import dump_jar, load_jar, store_set_cookies
from proxy.logs import get_logger
from proxy.secret_mask import secret_spellings
from proxy.secrets_ import SecretError, read_secret_file
from proxy.sessions import storage_key
from proxy.vendors.base import Outbound, VendorAdapter
from proxy.web.messages import DISCLOSURES

if TYPE_CHECKING:
    from proxy.forward import Upstream

_STATE_KEY = "shared_login"
# Vendors' "please sign in" pages are small; the phrase is expected near the top.
EXPIRY_PEEK_BYTES = 32 * 1024
# How much of the vendor's answer to a login is searched for `success_text`.
LOGIN_PAGE_BYTES = 256 * 1024
# How long a finished login's cookies serve requests that went out without them (the requests of
# one page arrive within seconds).
LOGIN_REUSE_S = 10.0
# How long after the vendor refuses the library's account no login to it is tried, from this
# process, for any session. Account lockout policies commonly count failures over 15 to 30
# minutes and lock after 3 to 5: one attempt per 10 minutes stays under them even with a few
# proxy replicas each holding off on its own. A refusal is rarely transient (a locked account,
# a changed password or login form), and a reload ends the hold-off once IT has fixed the cause.
REFUSAL_HOLD_OFF_S = 600.0
log = get_logger("proxy.vendors.shared_login")


class _Login:
    """One form login under way (or just finished) for one session."""

    def __init__(
        self, task: asyncio.Future[tuple[list[dict[str, Any]], bool]], before: list[dict[str, Any]]
    ) -> None:
        self.task = task
        self.before = before  # the jar it started from

    def serves(self, jar: list[dict[str, Any]]) -> bool:
        """Whether a request whose jar is `jar` should take this login's cookies: while it runs,
        or when it worked and the request went without the cookies it brought (its copy of the
        session was read before the login's result was saved). A request that had them and was
        still turned away needs a login of its own."""
        if not self.task.done():
            return True
        if self.task.cancelled() or self.task.exception() is not None:
            return False
        jar_after, ok = self.task.result()
        brought = [cookie for cookie in jar_after if cookie not in self.before]
        return ok and any(cookie not in jar for cookie in brought)


class SharedLoginAdapter(VendorAdapter):
    kind = "shared-login"

    def __init__(self, vendor: VendorConfig, upstream: Upstream) -> None:
        super().__init__(vendor, upstream)
        # Logins per session (by storage key), kept LOGIN_REUSE_S after they end so requests
        # that went out without their cookies can take them; then dropped.
        self._logins: dict[str, _Login] = {}
        # Read once when the adapter is built (start-up and every reload), not per request: file
        # reads would block the event loop on the hot path. A changed secret applies on reload.
        self._user, self._password = self._credential()
        token = base64.b64encode(f"{self._user}:{self._password}".encode()).decode()
        self._basic = f"Basic {token}"
        self.secret_spellings = secret_spellings(self._password, token)
        # time.monotonic() before which no login is tried: the vendor refused the account.
        # Per vendor (this adapter), not per session: the account is the library's.
        self._refused_until = 0.0

    @property
    def settings(self) -> SharedLogin:
        assert self.vendor.shared_login is not None  # config validation guarantees it
        return self.vendor.shared_login

    def _credential(self) -> tuple[str, str]:
        """The library-wide account from its secret files or environment variables."""
        sl = self.settings
        base = Path(self.vendor.file).parent

        def one(file: str, env: str) -> str:
            if env:
                value = os.environ.get(env)
                if value is None:
                    raise SecretError(f"environment variable {env} is not set")
                return value
            p = Path(file)
            return read_secret_file(p if p.is_absolute() else base / p)

        return one(sl.username_file, sl.username_env), one(sl.password_file, sl.password_env)

    async def authorize(self, out: Outbound) -> None:
        sl = self.settings
        if sl.method == "basic":
            out.headers["Authorization"] = self._basic
            return
        done = out.session.state.get(_STATE_KEY, [])
        # One login attempt per patron request: a vendor refusing the account must not be
        # hammered with the library's credential.
        if self.vendor.id not in done and not out.renewed:
            await self.renew(out)

    async def renew(self, out: Outbound) -> None:
        """Form login with the library-wide account; the vendor's cookies land in the session jar.

        One login per session at a time: the requests of a page arrive together, and each would
        otherwise post the library's credential (a vendor may lock an account that signs in ten
        times a second). A request that needs a login while one is under way, or that went to
        the vendor without the cookies of one that just worked, takes that login's cookies
        instead of signing in again (`_Login.serves`).
        """
        if self.settings.method != "form":
            return
        out.renewed = True
        key = storage_key(out.session.id)  # never the session id itself
        login = self._logins.get(key)
        if login is None or not login.serves(out.session.jars.get(self.vendor.id, [])):
            self._check_hold_off()
            jar = list(out.session.jars.get(self.vendor.id, []))
            login = _Login(asyncio.ensure_future(self._login(jar)), jar)
            self._logins[key] = login
            # Dropped LOGIN_REUSE_S after it ends: the cookies it holds are the session's, and
            # they must not outlive it by more than that. (Its error reaches every waiter
            # through the shield below.)
            login.task.add_done_callback(
                lambda _: asyncio.get_running_loop().call_later(
                    LOGIN_REUSE_S, self._drop, key, login
                )
            )
        # Shielded: a patron who leaves mid-login does not cancel it for the others waiting.
        jar_after, ok = await asyncio.shield(login.task)
        out.session.jars[self.vendor.id] = jar_after
        done = [d for d in out.session.state.get(_STATE_KEY, []) if d != self.vendor.id]
        if ok:
            done.append(self.vendor.id)
        out.session.state[_STATE_KEY] = done
        out.session_changed = True
        if not ok:
            # Sending the request on without the account would relay the vendor's own sign-in
            # form to the patron.
            raise self._refusal()

    def _check_hold_off(self) -> None:
        """Raise VendorAccountRefused while the vendor's refusal of the account holds off logins."""
        if self._refused_until > time.monotonic():
            raise self._refusal()

    def _refusal(self) -> VendorAccountRefused:
        """The refusal, with the hold-off's remaining whole seconds (at least 1) to retry after."""
        left = math.ceil(self._refused_until - time.monotonic())
        return VendorAccountRefused(self.vendor.id, retry_after_s=max(1, left))

    def _drop(self, key: str, login: _Login) -> None:
        if self._logins.get(key) is login:
            del self._logins[key]

    async def _login(self, jar_before: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        """Post the login form; the jar with the vendor's new cookies, and whether it worked.

        The login request is the proxy's own: none of the patron's headers go with it.
        """
        sl = self.settings
        fields = dict(sl.extra_fields)
        fields[sl.username_field] = self._user
        fields[sl.password_field] = self._password
        login_url = URL(sl.login_url)
        jar = load_jar(jar_before)
        headers: CIMultiDict[str] = CIMultiDict(
            {"Content-Type": "application/x-www-form-urlencoded"}
        )
        resp = await self.upstream.send(
            self.vendor, "POST", login_url, headers, urlencode(fields).encode()
        )
        try:
            with vendor_failures(self.vendor.id):
                body = await resp.content.read_up_to(LOGIN_PAGE_BYTES)
            if resp.status >= 500:
                # The vendor failing for a moment (a restart, an overload), not a refusal of the
                # account: this request fails as any vendor failure does, and no hold-off starts.
                raise VendorLoginFailed(self.vendor.id, status=resp.status)
            store_set_cookies(jar, str(login_url), resp.headers.getall("Set-Cookie", []))
            ok = resp.status < 400 and (not sl.success_text or sl.success_text.encode() in body)
        finally:
            resp.release()
        if ok:
            self._refused_until = 0.0
        else:
            self._refused_until = time.monotonic() + REFUSAL_HOLD_OFF_S
            log.warning("shared_login_failed", vendor=self.vendor.id, status=resp.status)
        return dump_jar(jar), ok

    def expiry_peek_bytes(self) -> int:
        sl = self.settings
        return EXPIRY_PEEK_BYTES if sl.method == "form" and sl.expired_text else 0

    async def vendor_session_expired(self, out: Outbound, status: int, body_start: bytes) -> bool:
        sl = self.settings
        if sl.method != "form" or out.renewed:
            return False
        return status in sl.expired_status or bool(
            sl.expired_text and sl.expired_text.encode() in body_start
        )

    def disclosure(self) -> str:
        return DISCLOSURES["shared-login"]
