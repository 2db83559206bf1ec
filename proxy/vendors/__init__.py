"""Vendor adapters, one module per kind, built by `make_adapter` (which refuses unknown kinds)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.config import VendorConfig
from proxy.vendors.base import Outbound, VendorAdapter

if TYPE_CHECKING:
    from proxy.forward import Upstream


def adapter_classes() -> dict[str, type[VendorAdapter]]:
    from proxy.vendors.assertion import AssertionAdapter
    from proxy.vendors.ip import IpAdapter
    from proxy.vendors.referer import RefererAdapter
    from proxy.vendors.shared_login import SharedLoginAdapter

    return {c.kind: c for c in (IpAdapter, AssertionAdapter, SharedLoginAdapter, RefererAdapter)}


def make_adapter(vendor: VendorConfig, upstream: Upstream) -> VendorAdapter:
    classes = adapter_classes()
    try:
        cls = classes[vendor.auth]
    except KeyError:
        raise ValueError(
            f"unknown adapter {vendor.auth!r}; valid choices: {', '.join(classes)}"
        ) from None
    return cls(vendor, upstream)


__all__ = ["Outbound", "VendorAdapter", "make_adapter"]
