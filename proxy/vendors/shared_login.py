"""`shared-login`: the vendor only offers named accounts, so the library holds one library-wide
account and the proxy signs in with it on the patron's behalf.

Every patron looks like the same library account to the vendor. The credential comes from secret
files (or environment variables), is sent only to the vendor's login URL (form) or as HTTP Basic,
and never reaches the patron's browser. The vendor's resulting cookies live in the session jar.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from multidict import CIMultiDict
from yarl import URL

from proxy.config import SharedLogin, VendorConfig
from proxy.jar import dump_jar, load_jar, store_set_cookies
from proxy.logs import get_logger
from proxy.secrets_ import SecretError, read_secret_file
from proxy.vendors.base import Outbound, VendorAdapter

if TYPE_CHECKING:
    from proxy.forward import Upstream

_STATE_KEY = "shared_login"
# Vendors' "please sign in" pages are small; the phrase is expected near the top.
EXPIRY_PEEK_BYTES = 32 * 1024
log = get_logger("proxy.vendors.shared_login")


class SharedLoginAdapter(VendorAdapter):
    kind = "shared-login"

    def __init__(self, vendor: VendorConfig, upstream: Upstream) -> None:
        super().__init__(vendor, upstream)
        # Read once when the adapter is built (start-up and every reload), not per request: file
        # reads would block the event loop on the hot path. A changed secret applies on reload.
        self._user, self._password = self._credential()
        token = base64.b64encode(f"{self._user}:{self._password}".encode()).decode()
        self._basic = f"Basic {token}"

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

        The login request is the proxy's own: none of the patron's headers go with it.
        """
        sl = self.settings
        if sl.method != "form":
            return
        out.renewed = True
        user, password = self._user, self._password
        fields = dict(sl.extra_fields)
        fields[sl.username_field] = user
        fields[sl.password_field] = password
        login_url = URL(sl.login_url)
        jar = load_jar(out.session.jars.get(self.vendor.id, []))
        headers: CIMultiDict[str] = CIMultiDict(
            {"Content-Type": "application/x-www-form-urlencoded"}
        )
        resp = await self.upstream.send(
            self.vendor, "POST", login_url, headers, urlencode(fields).encode()
        )
        try:
            body = await resp.content.read(256 * 1024)
            store_set_cookies(jar, str(login_url), resp.headers.getall("Set-Cookie", []))
            ok = resp.status < 400 and (not sl.success_text or sl.success_text.encode() in body)
        finally:
            resp.release()
        out.session.jars[self.vendor.id] = dump_jar(jar)
        done = [d for d in out.session.state.get(_STATE_KEY, []) if d != self.vendor.id]
        if ok:
            done.append(self.vendor.id)
        else:
            log.warning("shared_login_failed", vendor=self.vendor.id, status=resp.status)
        out.session.state[_STATE_KEY] = done
        out.session_changed = True

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
        return (
            "Nothing about you. The library signs in with one shared library account, so the vendor "
            "sees every patron as the same library user."
        )
