"""`assertion`: one signed JWT header saying "valid patron of this library" (and, where the contract
permits it, a pairwise pseudonym unique to this vendor)."""

from __future__ import annotations

import datetime as dt

from proxy.sessions import storage_key
from proxy.vendors.base import Outbound, VendorAdapter
from proxy.web.messages import DISCLOSURES


class AssertionAdapter(VendorAdapter):
    kind = "assertion"

    async def authorize(self, out: Outbound) -> None:
        signer = self.upstream.signer
        token = signer.assertion(
            cache_key=storage_key(out.session.id),
            audience=self.vendor.aud,
            patron_key=out.session.patron_key,
            vendor_id=self.vendor.id,
            # Asked per request: a contract that ends while the proxy runs stops the pseudonym
            # that day.
            pseudonymous=self.vendor.releases_pseudonym(dt.date.today()),
        )
        # Any client-sent copy was already dropped by the header allowlist; set, never add.
        out.headers[self.vendor.assertion_header] = token

    def disclosure(self) -> str:
        if self.vendor.releases_pseudonym(dt.date.today()):
            return DISCLOSURES["assertion_pseudonymous"]
        return DISCLOSURES["assertion"]
