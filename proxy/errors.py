"""The proxy's exception tree: each error names what happened, so handlers can pick the page.

ProxyError
├── ConfigError               config files are wrong (carries every problem, each with file and key)
├── AuthError                 a login did not produce a session
│   ├── BadCredentials        wrong card number or PIN (never says which)
│   ├── NotEligible           the card is valid but may not use remote access
│   ├── PinExpired            the PIN was right but the directory says it has expired
│   ├── PinMustChange         the PIN was right but the directory allows nothing until it is changed
│   └── DirectoryUnavailable  the library's directory could not be asked
├── StoreUnavailable          the session store could not be reached
├── SessionConflict           the browser sent two different session cookies (cookie tossing)
├── Busy                      no admission slot came free in time (503; proxy/admission.py)
└── VendorError               a vendor could not be reached (`vendor_failures` turns what the
    │                         client raises into these)
    ├── VendorUnavailable     connection refused, reset or closed mid-response (502)
    │   └── VendorLoginFailed a shared-login vendor's login URL answered 5xx (502)
    ├── VendorTimeout         the vendor did not answer in time (504)
    └── VendorAccountRefused  the vendor refused the library-wide account (shared-login, 503)
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


class ProxyError(Exception):
    """Base class of every error the proxy raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One config mistake: where it is and what is wrong."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


@dataclass(frozen=True)
class EnvironmentProblem(Problem):
    """An environment variable a secret comes from is not set where the check ran.

    `weston-proxy reload` runs in the operator's shell, not in the service's environment
    (systemd Environment=, compose env), so it leaves this check to the running proxy."""


class ConfigError(ProxyError):
    """The configuration is invalid; `problems` lists every mistake found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class AuthError(ProxyError):
    """A login attempt did not succeed."""


class BadCredentials(AuthError):
    """Card number or PIN wrong, or the card is unknown: deliberately indistinguishable."""


class NotEligible(AuthError):
    """The card is known and the PIN right, but the card may not use remote access now."""


class PinExpired(AuthError):
    """The card number and PIN are right, but the directory's password policy says the PIN has
    expired (no grace logins left): the library must reset it. Said only after a right PIN."""


class PinMustChange(AuthError):
    """The card number and PIN are right, but the directory's password policy allows the entry
    nothing but a PIN change (a PIN staff reset, `changeAfterReset`): no session until then."""


class DirectoryUnavailable(AuthError):
    """The directory did not answer (down, timed out, refused the service account)."""


class StoreUnavailable(ProxyError):
    """The session store did not answer, or answered with a refusal; the proxy must not serve
    without a session check.

    `reason` is a short kind for IT staff ("authentication", "connection refused", "timeout",
    "read-only", "out of memory" …): never a key, a value, a session or a patron."""

    def __init__(self, message: str = "session store unavailable", *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or "unavailable"


class SessionConflict(ProxyError):
    """The browser sent the session cookie twice with different values (a page on one of the
    proxy's subdomains added one: proxy/web/session_cookie.py); `ids` has each."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__("conflicting session cookies")
        self.ids = ids


class VendorError(ProxyError):
    """A vendor could not be reached or failed mid-response."""


class VendorUnavailable(VendorError):
    """Connection refused, reset, TLS failure or closed mid-response."""


class VendorTimeout(VendorError):
    """The vendor did not answer within the configured timeout."""


class VendorLoginFailed(VendorUnavailable):
    """A shared-login vendor's login URL answered with a server error (5xx): the vendor failed
    for a moment, which is not a refusal of the library's account (VendorAccountRefused)."""

    def __init__(self, vendor_id: str, *, status: int) -> None:
        super().__init__(vendor_id)
        self.status = status


class VendorAccountRefused(VendorError):
    """The vendor refused the library-wide account of a shared-login vendor (its login failed
    just now, or one did within the hold-off); `str(exc)` is the vendor id, `retry_after_s` how
    long until the proxy tries the account again."""

    def __init__(self, vendor_id: str, *, retry_after_s: int) -> None:
        super().__init__(vendor_id)
        self.retry_after_s = retry_after_s


@contextlib.contextmanager
def vendor_failures(vendor_id: str) -> Iterator[None]:
    """What talking to a vendor can raise, as the patron's error pages know it: a timeout is
    VendorTimeout, a refused, reset or garbled exchange (an OSError, or a URL the client cannot
    use) VendorUnavailable, each naming the vendor."""
    try:
        yield
    except TimeoutError as exc:
        raise VendorTimeout(vendor_id) from exc
    except (OSError, ValueError) as exc:
        raise VendorUnavailable(vendor_id) from exc


# What `failure_kind` can say (the label values of weston_proxy_vendor_failures_total).
FAILURE_KINDS = (
    "timeout",
    "dns",
    "refused",
    "reset",
    "tls_certificate",
    "tls",
    "protocol",
    "account_refused",
    "login_status",
)


# OpenSSL's reason in the text of an exception rebuilt from its message (ldap3 rebuilds what it
# met as `type(e)(str(e))`, losing `verify_message`): letters, spaces and commas only, so a host
# name the message may quote is left out.
_CERT_REASON = re.compile(r"certificate verify failed: ([A-Za-z ,-]+)")


def network_failure(met: Sequence[BaseException]) -> tuple[str, str] | None:
    """What a failed connection met, as (kind, detail), for any server the proxy talks to (a
    vendor's `failure_kind`, a directory server's `ldap_directory._why`); None when nothing in
    `met` is a network failure. Kinds "timeout", "tls_certificate" (with OpenSSL's reason),
    "tls" (with its reason), "dns", "refused", "reset": exception types and OpenSSL's fixed
    texts only, never a message that could quote a URL or a DN."""

    def first(kind: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
        return next((c for c in met if isinstance(c, kind)), None)

    if first(TimeoutError):
        return "timeout", ""
    if (cert := first(ssl.SSLCertVerificationError)) is not None:
        reason = str(getattr(cert, "verify_message", "") or "")
        if not reason and (text := _CERT_REASON.search(str(cert))) is not None:
            reason = text.group(1).strip(" ,-")
        return "tls_certificate", reason
    if (tls := first(ssl.SSLError)) is not None:
        return "tls", str(getattr(tls, "reason", "") or "")
    if first(socket.gaierror):
        return "dns", ""
    if first(ConnectionRefusedError):
        return "refused", ""
    if first((ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset", ""
    return None


def failure_kind(exc: VendorError) -> tuple[str, str]:
    """What went wrong talking to a vendor, for IT staff (a metric label and a log detail).

    Kinds: "timeout", "dns", "refused", "reset", "tls_certificate" (with OpenSSL's reason:
    "self-signed certificate", "certificate has expired" ...), "tls", and "protocol" for a
    garbled or cut answer (with the client's word for it, else the error's type). Only exception types and OpenSSL's fixed
    texts are used, never a message that could quote a URL."""
    chain: list[BaseException] = []
    cause = exc.__cause__
    while cause is not None and len(chain) < 8:  # the client chains what it met (`from`)
        chain.append(cause)
        cause = cause.__cause__

    if isinstance(exc, VendorTimeout):
        return "timeout", ""
    if isinstance(exc, VendorAccountRefused):
        return "account_refused", ""
    if isinstance(exc, VendorLoginFailed):
        return "login_status", str(exc.status)
    found = network_failure(chain)
    if found is not None:
        return found
    if not chain:
        return "protocol", ""
    # The proxy's own client says which way the exchange broke, in a fixed word.
    whys = (getattr(c, "why", None) for c in chain)
    why = next((w for w in whys if isinstance(w, str) and w), "")
    return "protocol", why or type(chain[-1]).__name__


class Busy(ProxyError):
    """No admission slot came free within `server.admission_wait_s`; `str(exc)` is the vendor id."""

    def __init__(self, vendor_id: str, *, whole: bool) -> None:
        super().__init__(vendor_id)
        # True when the process's own cap was the one full, not the vendor's share.
        self.whole = whole
