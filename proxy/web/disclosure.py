"""What the /privacy page says one vendor receives: the adapter's sentence, then every caveat the
vendor's configuration makes true (its pages load other companies' parts from the patron's
browser; some of its hosts are reached directly; its shared account may keep history)."""

from __future__ import annotations

import datetime as dt

from proxy.compliance import PASS, check_shared_account, compliance_settings
from proxy.config import Config, VendorConfig
from proxy.web.messages import DISCLOSURES


def _host_words(pattern: str) -> str:
    """A never_proxy pattern as a patron (or a screen reader) reads it: `*.x.com` is not a name."""
    if pattern.startswith("*."):
        return DISCLOSURES["never_proxy_any"].format(domain=pattern[2:])
    return pattern


def vendor_disclosure(
    adapter_text: str, v: VendorConfig, config: Config, *, today: dt.date | None = None
) -> str:
    """`adapter_text` (the adapter's `disclosure()`) with the caveats that hold for `v`."""
    parts = [adapter_text]
    if v.third_party == "allow":
        parts.append(DISCLOSURES["third_party"])
    if v.never_proxy:
        hosts = ", ".join(_host_words(p) for p in v.never_proxy)
        parts.append(DISCLOSURES["never_proxy"].format(hosts=hosts))
    if v.permissions:
        asked = ", ".join(DISCLOSURES.get(f"feature_{f}", f) for f in v.permissions)
        parts.append(DISCLOSURES["permissions"].format(features=asked))
    if v.auth == "shared-login":
        # The same judgement as the staff report's shared_account.history check (confirmed off,
        # and not longer ago than the review period): patrons are told what staff are told.
        day = today or dt.date.today()
        if check_shared_account(v, compliance_settings(config), day).result != PASS:
            parts.append(DISCLOSURES["shared_history"])
    return " ".join(parts)


def has_direct_parts(v: VendorConfig) -> bool:
    """Whether some of `v` is reached from the patron's own address (the page's opening sentence
    "databases see the library's address, not yours" needs its exception)."""
    return v.third_party == "allow" or bool(v.never_proxy)
