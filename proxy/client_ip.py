"""The address a request came from, for throttling only: never logged, stored or forwarded raw.

Behind a load balancer every request arrives from the balancer, so its `X-Forwarded-For` is the
only way to tell patrons apart. That header is written by whoever sends the request, so it is
believed only when the peer is one of `server.trusted_proxies`, and then only as far as the
right-most hop that is not itself a trusted proxy: everything to the left of that hop was supplied
by the client and could be anything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# IPv4 addresses as an IPv6 socket shows them (RFC 4291 §2.5.5.2).
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Address-list entries (`trusted_proxies`, `metrics_from`: addresses or CIDR networks);
    ValueError on a malformed one. An IPv4-mapped entry (`::ffff:127.0.0.1`, `::ffff:10.0.0.0/104`,
    as a dual-stack listener shows an IPv4 peer) is taken as the IPv4 address or network it maps,
    since the client's address is compared in its IPv4 form."""
    return tuple(_network(e) for e in entries)


def _network(entry: str) -> Network:
    net = ipaddress.ip_network(entry.strip(), strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED):
        low32 = int(net.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((low32, net.prefixlen - 96))
    return net


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443" as some balancers write it
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:5678"
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def in_networks(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: Sequence[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in nets)


def address_in(address: str, nets: Sequence[Network]) -> bool:
    """Whether `address` (as `client_address` gives it) is in one of `nets`."""
    ip = _address(address)
    return ip is not None and in_networks(ip, nets)


def client_address(
    remote: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str:
    """The patron's address: `remote`, or the right-most untrusted X-Forwarded-For hop when the
    peer is a trusted proxy. `forwarded_for` is every X-Forwarded-For header value, in order."""
    peer = _address(remote or "")
    if peer is None:
        return remote or ""
    if not trusted or not in_networks(peer, trusted):
        return str(peer)
    hops = [h for value in forwarded_for for h in value.split(",")]
    for hop in reversed(hops):
        ip = _address(hop)
        if ip is None:
            # A garbled hop means the chain can't be followed further; the last good
            # trusted hop's own view is the most we can stand behind.
            break
        if not in_networks(ip, trusted):
            return str(ip)
        peer = ip
    return str(peer)
