"""`ip`: the vendor authorises the proxy's address; nothing is added to the request."""

from __future__ import annotations

from proxy.vendors.base import Outbound, VendorAdapter
from proxy.web.messages import DISCLOSURES


class IpAdapter(VendorAdapter):
    kind = "ip"

    async def authorize(self, out: Outbound) -> None:
        return None

    def disclosure(self) -> str:
        return DISCLOSURES["ip"]
