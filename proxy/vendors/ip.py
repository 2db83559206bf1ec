"""`ip`: the vendor authorises the proxy's address; nothing is added to the request."""

from __future__ import annotations

from proxy.vendors.base import Outbound, VendorAdapter


class IpAdapter(VendorAdapter):
    kind = "ip"

    async def authorize(self, out: Outbound) -> None:
        return None

    def disclosure(self) -> str:
        return (
            "Only that the request comes through your library's proxy. Nothing about you is sent: "
            "the vendor recognises the library's address, not yours."
        )
