"""The vendor adapter interface: how one vendor learns "this is a valid patron", and nothing more."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from multidict import CIMultiDict
from yarl import URL

from proxy.config import VendorConfig
from proxy.sessions import Session

if TYPE_CHECKING:
    from proxy.forward import Upstream


@dataclass
class Outbound:
    """A request about to leave for a vendor; adapters may add to `headers` and nothing else."""

    vendor: VendorConfig
    session: Session
    method: str
    url: URL
    headers: CIMultiDict[str]
    session_changed: bool = field(default=False)
    renewed: bool = field(default=False)  # the adapter already re-established its session once


class VendorAdapter(ABC):
    """One way of telling a vendor a request comes from a valid patron."""

    kind: ClassVar[str]
    # The library's own credential as a vendor page could spell it (`proxy.secret_mask`): what
    # the forwarder masks in responses. Only a shared-login adapter holds one.
    secret_spellings: tuple[str, ...] = ()

    def __init__(self, vendor: VendorConfig, upstream: Upstream) -> None:
        self.vendor = vendor
        self.upstream = upstream

    @abstractmethod
    async def authorize(self, out: Outbound) -> None:
        """Add what this vendor needs to `out` (a header, a jar cookie); never patron data."""

    def expiry_peek_bytes(self) -> int:
        """How much of a text response `vendor_session_expired` needs to see (0: status only)."""
        return 0

    async def vendor_session_expired(self, out: Outbound, status: int, body_start: bytes) -> bool:
        """True when the response means the vendor-side session ended and a retry may help.

        `body_start` holds up to `expiry_peek_bytes()` decoded bytes of a text response's body.
        """
        return False

    async def renew(self, out: Outbound) -> None:
        """Re-establish the vendor-side session after `vendor_session_expired` said so."""
        return None

    @abstractmethod
    def disclosure(self) -> str:
        """What this vendor receives, in plain words for patrons (the /privacy page)."""
