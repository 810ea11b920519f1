"""Which addresses a user-supplied URL may reach: only globally routable ones, unless
allowed. Checked at submit (literal hosts) and again at connect time (resolved)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# An explicit list: Python 3.11's is_global misses some of these (192.0.0.8, NAT64, 6to4).
BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001:db8::/32",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)


def parse_host_ip(host: str) -> IPAddress | None:
    """The address a URL host names literally, including legacy IPv4 spellings
    (`2130706433`, `0x7f.1`, `127.1`) that resolvers accept; None for a DNS name."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def parse_allow_list(raw: str) -> tuple[set[str], list[IPNetwork]]:
    """AIJOBS_WEBHOOK_ALLOW_HOSTS: host names and IPs/CIDRs, comma-separated."""
    hosts: set[str] = set()
    nets: list[IPNetwork] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item.lower())
    return hosts, nets


def is_blocked(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in allowed):
        return False
    return any(address in net for net in BLOCKED) or not address.is_global


def literal_target_refused(host: str, allow_raw: str) -> bool:
    """At submit: a host that is literally private (or `localhost`) and not allowed."""
    names, nets = parse_allow_list(allow_raw)
    lowered = host.lower().rstrip(".")
    if lowered in names:
        return False
    if lowered == "localhost" or lowered.endswith(".localhost"):
        return True
    address = parse_host_ip(host)
    return address is not None and is_blocked(address, nets)


class TargetRefused(Exception):
    """The webhook target is (or resolves to) an address we must not reach."""


def resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def vetted_addresses(host: str, port: int, allow_raw: str) -> list[IPAddress]:
    """At connect time: resolve the host and refuse it if any address is blocked and not
    allowed (one bad answer means the name is not trustworthy). The caller connects to
    these very addresses, so a second, rebinding lookup never happens.
    Raises TargetRefused, or OSError when the name does not resolve."""
    names, nets = parse_allow_list(allow_raw)
    lowered = host.lower().rstrip(".")
    literal = parse_host_ip(host)
    addresses = [literal] if literal is not None else resolve(lowered, port)
    if lowered in names:
        return addresses
    refused = [str(address) for address in addresses if is_blocked(address, nets)]
    if refused:
        raise TargetRefused(
            f"{host} resolves to a private, loopback or reserved address ({', '.join(refused)})"
        )
    return addresses
