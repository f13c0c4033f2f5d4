"""Networks: what ``minirun network create / rm / ls / inspect`` do, step by step.

A network is a bridge with the gateway address, a subnet handed out by IPAM,
optionally NAT, and one veth pair per attached network namespace (those are
``attachments.py``). Each public function takes the network lock
(``store.locked``), checks everything it can before touching the kernel, then
makes kernel objects one by one while recording how to undo each (an
``ExitStack`` of undo steps). If a step fails, the undo steps run in reverse
order and the error goes up: nothing is left half-made.

pyroute2 is imported only by the functions that talk to the kernel, so
``network ls`` and ``network inspect`` stay cheap.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_network

from minirun import log
from minirun.errors import ConfigError, MinirunError
from minirun.network import ipam, store

# The classic lab's network: `ip addr add 192.168.200.1/24 dev minirun0`.
DEFAULT_NETWORK = "default"
DEFAULT_BRIDGE = "minirun0"
DEFAULT_SUBNET = "192.168.200.0/24"
DEFAULT_GATEWAY = "192.168.200.1"

OWNER_MAX_LENGTH = 128      # the owner goes into nft rule comments (at most 255 bytes)


@dataclass
class PortForward:
    """``-p 8080:80/tcp``: connections to port 8080 of the host go to port 80 of the container."""
    host_port: int
    container_port: int
    protocol: str = "tcp"

    @classmethod
    def parse(cls, spec: str) -> PortForward:
        """``HOSTPORT:CONTAINERPORT[/tcp|/udp]``."""
        ports, _, protocol = spec.partition("/")
        host, sep, container = ports.partition(":")
        if not sep or not host.isdigit() or not container.isdigit():
            raise ConfigError(f"-p {spec}", "expected HOSTPORT:CONTAINERPORT[/tcp|/udp]")
        return cls(int(host), int(container), protocol or "tcp").validate()

    def validate(self) -> PortForward:
        for what, port in (("host", self.host_port), ("container", self.container_port)):
            if not 1 <= port <= 65535:
                raise ConfigError(f"-p {self}", f"{what} port {port} is not in 1-65535")
        if self.protocol not in ("tcp", "udp"):
            raise ConfigError(f"-p {self}", f"protocol {self.protocol!r} is not tcp or udp")
        return self

    def __str__(self) -> str:
        return f"{self.host_port}:{self.container_port}/{self.protocol}"


@dataclass
class Attachment:
    """One network namespace wired to a network: its lease and its veth pair."""
    network: str
    owner: str                  # container or pod ID, or the namespace path if none given
    ip: str
    prefixlen: int
    gateway: str
    host_ifname: str            # the bridge-side end of the veth pair
    ifname: str                 # the end inside the namespace, "eth0"
    netns: str                  # the namespace file it was attached by
    netns_inode: int
    ports: list[PortForward] = field(default_factory=list)

    def to_dict(self) -> dict:
        # asdict() deep-copies recursively; this is the same result, several times faster
        return {**vars(self), "ports": [vars(p).copy() for p in self.ports]}

    @classmethod
    def from_dict(cls, data: dict) -> Attachment:
        ports = [PortForward(**p) for p in data.pop("ports", [])]
        return cls(**data, ports=ports)


@dataclass
class Network:
    name: str
    subnet: str
    gateway: str
    bridge: str
    nat: bool = False
    created: str = ""
    attachments: list[Attachment] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**vars(self), "attachments": [a.to_dict() for a in self.attachments]}


# --- state on disk ------------------------------------------------------------------

def load_network(root: str, name: str) -> Network:
    store.validate_name(name)
    directory = store.network_dir(root, name)
    config = store.read_json(os.path.join(directory, store.NETWORK_FILE))
    if config is None:
        raise MinirunError(f"network {name!r} does not exist")
    leases = store.read_json(os.path.join(directory, store.LEASES_FILE), {})
    network = Network(**config)
    network.attachments = [Attachment.from_dict(dict(lease)) for lease in leases.values()]
    return network


def _save_config(root: str, network: Network) -> None:
    config = network.to_dict()
    del config["attachments"]
    store.write_json(os.path.join(store.network_dir(root, network.name), store.NETWORK_FILE),
                     config)


def save_leases(root: str, network: Network) -> None:
    leases = {a.ip: a.to_dict() for a in network.attachments}
    store.write_json(os.path.join(store.network_dir(root, network.name), store.LEASES_FILE),
                     leases)


def all_networks(root: str) -> list[Network]:
    return [load_network(root, name) for name in store.network_names(root)]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def undo_quietly(what: str, func, *args) -> None:
    """An undo step: a failure is reported but must not hide the error being rolled back."""
    try:
        func(*args)
    except Exception as e:
        log.warning(f"undo: {what}: {e}")


# --- networks ----------------------------------------------------------------------

def default_bridge_name(name: str) -> str:
    """``mr-NAME`` if that fits in 15 characters, else ``mr-`` and a hash of the name."""
    if name == DEFAULT_NETWORK:
        return DEFAULT_BRIDGE
    candidate = f"mr-{name}"
    if len(candidate) <= 15:
        return candidate
    import hashlib

    return "mr-" + hashlib.sha256(name.encode()).hexdigest()[:12]


def create_network(root: str, name: str, subnet: str, gateway: str | None = None,
                   bridge: str | None = None, nat: bool = False) -> Network:
    """Check the request, make the bridge (and NAT rules), then record the network."""
    from minirun.network.bridge import validate_ifname

    store.validate_name(name)
    parsed_subnet = ipam.parse_subnet(subnet)
    parsed_gateway = ipam.parse_gateway(gateway, parsed_subnet)
    bridge = validate_ifname(bridge or default_bridge_name(name))
    with store.locked(root):
        return _create(root, name, parsed_subnet, parsed_gateway, bridge, nat)


def ensure_default_network(root: str) -> Network:
    """The default network (bridge minirun0, 192.168.200.1/24), made on first use."""
    with store.locked(root):
        return ensure_default_locked(root)


def ensure_default_locked(root: str) -> Network:
    """ensure_default_network() for a caller that holds the lock."""
    if DEFAULT_NETWORK in store.network_names(root):
        return load_network(root, DEFAULT_NETWORK)
    return _create(root, DEFAULT_NETWORK, ip_network(DEFAULT_SUBNET),
                   IPv4Address(DEFAULT_GATEWAY), DEFAULT_BRIDGE, nat=False)


def _create(root: str, name: str, subnet: IPv4Network, gateway: IPv4Address, bridge_name: str,
            nat: bool) -> Network:
    from minirun.network import bridge, netns, rtnl

    others = all_networks(root)
    if any(n.name == name for n in others):
        raise MinirunError(f"network {name!r} already exists")
    for other in others:
        if other.bridge == bridge_name:
            raise ConfigError("--bridge", f"bridge {bridge_name} is already used by network "
                              f"{other.name!r}")
    overlap = ipam.find_overlap(subnet, {f"network {o.name!r} ({o.subnet})":
                                         ip_network(o.subnet) for o in others})
    if overlap:
        raise ConfigError("--subnet", f"{subnet} overlaps {overlap}")

    ipr = netns.rtnl_socket()
    try:
        routes = {f"the route {dst} dev {dev} in this network namespace": ip_network(dst)
                  for dst, dev in rtnl.ipv4_routes(ipr)}
        overlap = ipam.find_overlap(subnet, routes)
        if overlap:
            raise ConfigError("--subnet", f"{subnet} overlaps {overlap}")
        if rtnl.link_index(ipr, bridge_name) is not None:
            raise ConfigError("--bridge", f"interface {bridge_name} already exists in this "
                              "network namespace")
        network = Network(name, str(subnet), str(gateway), bridge_name, nat, _now())
        with ExitStack() as undo:
            directory = store.network_dir(root, name)
            os.mkdir(directory, 0o700)
            undo.callback(shutil.rmtree, directory, True)
            _save_config(root, network)
            save_leases(root, network)
            bridge.create_bridge(ipr, bridge_name, gateway, subnet)
            undo.callback(undo_quietly, f"delete bridge {bridge_name}",
                          bridge.delete_bridge, ipr, bridge_name)
            if nat:
                _enable_nat(root, network, undo)
            undo.pop_all()
    finally:
        ipr.close()
    return network


def _enable_nat(root: str, network: Network, undo: ExitStack) -> None:
    """Masquerade the subnet and switch IP forwarding on (remembering it was off)."""
    from minirun.network import nat

    undo.callback(undo_quietly, f"remove NAT rules of {network.name}", drop_nat_rules,
                  f"net={network.name}")
    nft = nat.open_nftables()
    try:
        nat.add_masquerade(nft, network.name, IPv4Network(network.subnet))
    finally:
        nft.close()
    before = nat.read_ip_forward()
    if before != "1":
        with open(os.path.join(store.networks_dir(root), store.IP_FORWARD_FILE), "w") as fh:
            fh.write(before)
        nat.write_ip_forward("1")
        undo.callback(undo_quietly, "restore net.ipv4.ip_forward", _release_ip_forward, root,
                      network.name)


def drop_nat_rules(*tags: str) -> None:
    """Delete the rules carrying ``tags``; the table too if that emptied it."""
    from minirun.network import nat

    nft = nat.open_nftables()
    try:
        nat.delete_rules(nft, *tags)
        nat.remove_table_if_empty(nft)
    finally:
        nft.close()


def _release_ip_forward(root: str, leaving: str) -> None:
    """Put net.ipv4.ip_forward back once no NAT network but ``leaving`` is left."""
    from minirun.network import nat

    if any(n.nat for n in all_networks(root) if n.name != leaving):
        return
    path = os.path.join(store.networks_dir(root), store.IP_FORWARD_FILE)
    try:
        with open(path) as fh:
            before = fh.read().strip()
    except FileNotFoundError:
        return      # it was on before minirun came: leave it on
    nat.write_ip_forward(before)
    os.unlink(path)


def remove_network(root: str, name: str) -> None:
    """Refuse while attachments remain; else NAT rules, bridge, state, in that order."""
    with store.locked(root):
        remove_locked(root, name)


def remove_locked(root: str, name: str) -> None:
    """remove_network() for a caller that holds the lock."""
    from minirun.network import bridge, netns

    network = load_network(root, name)
    if network.attachments:
        owners = ", ".join(a.owner for a in network.attachments)
        raise MinirunError(f"network {name!r} is still in use by {len(network.attachments)} "
                           f"attachment(s): {owners}; detach them first")
    if network.nat:
        drop_nat_rules(f"net={name}")
        _release_ip_forward(root, leaving=name)
    ipr = netns.rtnl_socket()
    try:
        bridge.delete_bridge(ipr, network.bridge)
    finally:
        ipr.close()
    shutil.rmtree(store.network_dir(root, name))


def get_network(root: str, name: str) -> Network:
    if not os.path.isdir(store.networks_dir(root)):
        raise MinirunError(f"network {name!r} does not exist")
    with store.locked(root):
        return load_network(root, name)


def list_networks(root: str) -> list[Network]:
    if not os.path.isdir(store.networks_dir(root)):
        return []       # nothing made yet: do not make the directory just to look
    with store.locked(root):
        return all_networks(root)
