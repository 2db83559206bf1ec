"""`referer`: the vendor authorises a secret referring URL, sent only on its start URL."""

from __future__ import annotations

from yarl import URL

from proxy.vendors.base import Outbound, VendorAdapter
from proxy.web.messages import DISCLOSURES


def _same_page(a: URL, b: URL) -> bool:
    """Same scheme, host, port, path (a trailing slash aside) and query; the fragment never travels."""
    return (
        a.scheme == b.scheme
        and (a.host or "").lower() == (b.host or "").lower()
        and a.port == b.port
        and (a.raw_path.rstrip("/") or "/") == (b.raw_path.rstrip("/") or "/")
        and a.raw_query_string == b.raw_query_string
    )


class RefererAdapter(VendorAdapter):
    kind = "referer"

    async def authorize(self, out: Outbound) -> None:
        # Only where the vendor checks it: the authorised URL is the library's secret, and on any
        # other page the patron's own Referer (already cut to the vendor's origin) stands.
        if _same_page(out.url, URL(self.vendor.start)):
            out.headers["Referer"] = self.vendor.referer

    def disclosure(self) -> str:
        return DISCLOSURES["referer"]
