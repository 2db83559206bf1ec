"""The Public Suffix List, read once per process (publicsuffixlist bundles it): what a site is.

Host claims in vendor files (`config_checks.covers_public_suffix`), the vendor cookie jar's
SameSite rule (`jar.same_site`) and the session cookie's parent domains
(`web/session_cookie.py`) all ask it.
"""

from __future__ import annotations

import functools
import ipaddress

from publicsuffixlist import PublicSuffixList


@functools.lru_cache(maxsize=1)
def suffix_list() -> PublicSuffixList:
    return PublicSuffixList()  # reads the bundled list (~0.1 s), on first use only


@functools.lru_cache(maxsize=4096)
def registrable_domain(host: str) -> str:
    """The site a host belongs to: its registrable domain (eTLD+1), an IP address itself, a
    public suffix itself. Cached: asked per cross-site request, about a patron's few hosts."""
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return suffix_list().privatesuffix(host) or host
    return host


def same_site(host: str, other: str) -> bool:
    return registrable_domain(host) == registrable_domain(other)


__all__ = ["registrable_domain", "same_site", "suffix_list"]
