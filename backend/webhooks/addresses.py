"""Where a webhook may be sent: the SSRF guard.

A receiver's URL names a host; what is connected to is an address. In production (TRUCKROLL_WEBHOOK_ALLOW_PRIVATE
off) every address the host resolves to must be public, and the delivery connects to the address that was checked
(never resolving the name a second time, so DNS cannot answer differently between the check and the connect).
Hosts are read as the system resolver would read them, so that `2130706433`, `0177.0.0.1`, `0x7f.1` or `127.1`
are the loopback they are and not a name that "does not resolve".
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class Refused(ValueError):
    """The URL may not be sent to; the message says why (it ends up in the 422 or the delivery log)."""


def literal(host: str) -> IPAddress | None:
    """The address a host spelled as one stands for (IPv6 with or without brackets and zone; IPv4 in any form
    inet_aton accepts: dotted, decimal, octal, hex, shortened), or None for a name."""
    host = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and routes to: IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or address in _NAT64_LOCAL:
        return ipaddress.IPv4Address(address.packed[-4:])
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d, deprecated "IPv4-compatible"
        return ipaddress.IPv4Address(int(address))
    return None


def why_not_public(address: IPAddress) -> str | None:
    """None for an address on the public internet, else what it is (loopback, private, link-local …)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_v4(address)
        if inner is not None:
            reason = why_not_public(inner)
            return f"{reason} (in {address})" if reason else None
    for reason, test in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("not globally routable", not address.is_global),
    ):
        if test:
            return reason
    return None


@dataclass(frozen=True)
class Target:
    """A URL with the one address it is to be reached at."""

    url: httpx.URL
    host: str
    address: IPAddress


def check_url(url: str, *, allow_private: bool) -> httpx.URL:
    """The URL parsed, refused when it is not one a webhook may be registered with (scheme, host, credentials)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise Refused(f"not a URL ({exc})") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in schemes:
        raise Refused("must be https://" + (" or http://" if allow_private else ""))
    if not parsed.host:
        raise Refused("has no host")
    if parsed.userinfo:
        raise Refused("must not carry a user name or password")
    return parsed


async def resolve(url: str, *, allow_private: bool) -> Target:
    """The URL checked, and the address to connect to. Refused when any address the host resolves to is not public
    (unless private addresses are allowed), or when it resolves to nothing."""
    parsed = check_url(url, allow_private=allow_private)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    address = literal(parsed.host)
    if address is not None:
        addresses = [address]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refused(f"{parsed.host} does not resolve ({exc})") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
        if not addresses:
            raise Refused(f"{parsed.host} does not resolve")
    if not allow_private:
        for candidate in addresses:
            if reason := why_not_public(candidate):
                raise Refused(f"{parsed.host} resolves to {candidate}, which is {reason}")
    return Target(url=parsed, host=parsed.host, address=addresses[0])
