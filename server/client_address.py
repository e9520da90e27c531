"""The real client address of a request, through the reverse proxies we trust.

Behind a proxy every connection comes from the proxy itself, so rate limits and evidence
keyed on the socket's peer would treat the whole clinic as one client. Proxies append
the address they received the request from to `X-Forwarded-For`; only the entries our
own proxies wrote can be believed, so the header is read from the right and the first
entry that is not one of `IOP_TRUSTED_PROXIES` is the client. A client that sends its
own `X-Forwarded-For` only adds entries to the left of those, which are never reached.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from server.appkeys import SETTINGS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
UNKNOWN = "unknown"
MAX_LENGTH = 64  # the width of every column that stores an address


def client_address(request: web.Request) -> str:
    """The address of the client that made this request, for rate limits and evidence."""
    return resolve(
        request.remote,
        request.headers.getall("X-Forwarded-For", []),
        request.app[SETTINGS].trusted_proxies,
    )


def resolve(peer: str | None, forwarded_for: Iterable[str], trusted: tuple[Network, ...]) -> str:
    """The client behind `peer`, given the `X-Forwarded-For` headers it sent, in order."""
    current = _parse(peer)
    if current is None:
        return (peer or UNKNOWN)[:MAX_LENGTH]
    if not _trusted(current, trusted):
        return str(current)
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            # Our own proxy wrote something that is not an address: the proxy is the
            # last hop we can vouch for.
            break
        current = address
        if not _trusted(current, trusted):
            break
    return str(current)


def _parse(raw: str | None) -> Address | None:
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        # Dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d; one client, one key.
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped
        address = ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
    return address


def _trusted(address: Address, trusted: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)
