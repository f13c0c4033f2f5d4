"""IP address management: which address an attachment gets.

A host-local allocator, the same idea as CNI's ``host-local`` plugin: the
leases of a network are a file on this host, read and rewritten under the
network lock (see ``store.py``), and an attachment gets the lowest address of
the subnet that is not the network address, the broadcast address, the
gateway or already leased. Nothing here talks to the kernel: these are the
checks and the arithmetic done before anything is created.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from minirun.errors import ConfigError, MinirunError

# A /30 leaves two usable addresses: the gateway and one attachment.
LONGEST_PREFIX = 30


def parse_subnet(text: str, where: str = "--subnet") -> IPv4Network:
    """``10.88.0.0/24`` -> IPv4Network, with an error a student can act on."""
    try:
        subnet = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(where, f"{text!r} is not an IPv4 network in CIDR notation "
                          "(like 10.88.0.0/24)") from None
    if subnet.version != 4:
        raise ConfigError(where, f"{text}: only IPv4 networks are supported")
    if "/" not in text:
        raise ConfigError(where, f"{text!r} has no prefix length (like {text}/24)")
    if subnet.network_address != ipaddress.ip_interface(text).ip:
        raise ConfigError(where, f"{text} has host bits set: did you mean {subnet}?")
    if subnet.prefixlen > LONGEST_PREFIX:
        raise ConfigError(where, f"{text}: a /{subnet.prefixlen} has no room for a gateway "
                          f"and a container (use /{LONGEST_PREFIX} or shorter)")
    return subnet


def parse_gateway(text: str | None, subnet: IPv4Network,
                  where: str = "--gateway") -> IPv4Address:
    """The bridge's address: ``text`` if given (checked), else the subnet's first host."""
    if text is None:
        return subnet.network_address + 1
    try:
        gateway = ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(where, f"{text!r} is not an IPv4 address") from None
    if gateway not in subnet:
        raise ConfigError(where, f"{gateway} is outside the subnet {subnet}")
    if gateway == subnet.network_address:
        raise ConfigError(where, f"{gateway} is the network address of {subnet}, not a host")
    if gateway == subnet.broadcast_address:
        raise ConfigError(where, f"{gateway} is the broadcast address of {subnet}, not a host")
    return gateway


def find_overlap(subnet: IPv4Network, others: dict[str, IPv4Network]) -> str | None:
    """The description of the first of ``others`` that shares an address with ``subnet``."""
    for description, other in others.items():
        if subnet.overlaps(other):
            return description
    return None


def next_free_address(network_name: str, subnet: IPv4Network, gateway: IPv4Address,
                      leased: set[str]) -> IPv4Interface:
    """The lowest free host address of ``subnet``, with its prefix length."""
    for host in subnet.hosts():
        if host != gateway and str(host) not in leased:
            return IPv4Interface(f"{host}/{subnet.prefixlen}")
    raise MinirunError(f"network {network_name!r}: no free address left in {subnet} "
                       f"({len(leased)} leased, gateway {gateway})")
