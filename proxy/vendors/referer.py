"""`referer`: the vendor authorises a secret referring URL, sent only on its start URL."""

from __future__ import annotations

from proxy.vendors.base import Outbound, VendorAdapter


class RefererAdapter(VendorAdapter):
    kind = "referer"

    async def authorize(self, out: Outbound) -> None:
        # Sent only where the vendor checks it; elsewhere the patron's own (already cut) Referer stands.
        if str(out.url) == self.vendor.start or str(out.url).rstrip(
            "/"
        ) == self.vendor.start.rstrip("/"):
            out.headers["Referer"] = self.vendor.referer

    def disclosure(self) -> str:
        return (
            "Only a link address agreed with the library that shows the visit comes from the "
            "library; nothing about you is sent."
        )
