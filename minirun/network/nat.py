"""NAT with nftables: outbound masquerade and port forwarding (nft(8), netfilter).

All of minirun's rules live in one table of its own, ``ip minirun``, with
three base chains of type ``nat``:

    table ip minirun {
        chain prerouting  { type nat hook prerouting  priority dstnat; }   # -100
        chain output      { type nat hook output      priority -100; }
        chain postrouting { type nat hook postrouting priority srcnat; }   # 100
    }

A network made with ``--nat`` adds, in postrouting::

    ip saddr 10.88.0.0/24 ip daddr != 10.88.0.0/24 masquerade

and each port forward adds, in prerouting (packets from other hosts) and in
output (connections made on this host, which never pass prerouting)::

    fib daddr type local tcp dport 8080 dnat to 10.88.0.2:80

Every rule carries a comment (``minirun net=NAME owner=ID tcp/8080``) by which
minirun finds it again to delete it; the table goes when its last rule goes.

The rules are sent as nf_tables netlink messages (NFT_MSG_NEWTABLE,
NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE) built with pyroute2, the same messages
``nft`` sends after compiling its text. A rule is not text for the kernel:
it is a list of *expressions* run on registers, which is what the helpers
below spell out. ``nft list table ip minirun`` turns them back into text.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from minirun.network.rtnl import netlink_call

TABLE = "minirun"
NFPROTO_IPV4 = 2
# chain name -> (hook, priority); dstnat is -100 and srcnat 100 in nft(8)'s words.
CHAINS = {
    "prerouting": ("prerouting", -100),
    "output": ("output", -100),
    "postrouting": ("postrouting", 100),
}
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"

# nf_tables registers, payload bases and operators (include/uapi/linux/netfilter/nf_tables.h)
REG_1, REG_2 = 1, 2
NETWORK_HEADER, TRANSPORT_HEADER = 1, 2
CMP_EQ, CMP_NEQ = 0, 1
META_L4PROTO = 16
FIB_F_DADDR = 1 << 1
RTN_LOCAL = 2           # rtnetlink(7) route type: an address of this host
NAT_DNAT = 1
PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


@dataclass
class Rule:
    """One of minirun's rules as read back from the kernel."""
    chain: str
    handle: int
    comment: str

    def tags(self) -> set[str]:
        return set(self.comment.split())


def open_nftables():
    """An NETLINK_NETFILTER socket speaking nf_tables for the ``ip`` family."""
    from pyroute2.nftables.main import NFTables

    return NFTables(nfgen_family=NFPROTO_IPV4)


# --- expressions: the kernel's view of a rule ------------------------------------

def _expr(name: str, **data: object) -> dict:
    attrs = [(f"NFTA_{name.upper()}_{key.upper()}", value) for key, value in data.items()]
    return {"attrs": [("NFTA_EXPR_NAME", name), ("NFTA_EXPR_DATA", {"attrs": attrs})]}


def _data(raw: bytes) -> dict:
    return {"attrs": [("NFTA_DATA_VALUE", raw)]}


def _ip_field_in(offset: int, subnet: IPv4Network, op: int) -> list[dict]:
    """``ip saddr|daddr [!=] SUBNET``: load 4 bytes of the IP header, mask, compare."""
    return [
        _expr("payload", dreg=REG_1, base=NETWORK_HEADER, offset=offset, len=4),
        _expr("bitwise", sreg=REG_1, dreg=REG_1, len=4,
              mask=_data(subnet.netmask.packed), xor=_data(bytes(4))),
        _expr("cmp", sreg=REG_1, op=op, data=_data(subnet.network_address.packed)),
    ]


def _saddr_in(subnet: IPv4Network) -> list[dict]:
    return _ip_field_in(12, subnet, CMP_EQ)         # source address: bytes 12-15


def _daddr_not_in(subnet: IPv4Network) -> list[dict]:
    return _ip_field_in(16, subnet, CMP_NEQ)        # destination address: bytes 16-19


def _daddr_is_local() -> list[dict]:
    """``fib daddr type local``: the destination is one of this host's own addresses."""
    # pyroute2 0.9 declares NFTA_FIB_RESULT as a set of flag names, but the
    # kernel reads a number: NFT_FIB_RESULT_ADDRTYPE is 3, the bits of the
    # first two names. The decoded rule reads "fib daddr type", as it should.
    addrtype = frozenset({"NFT_FIB_RESULT_UNSPEC", "NFT_FIB_RESULT_OIF"})
    return [
        _expr("fib", dreg=REG_1, result=addrtype, flags=FIB_F_DADDR),
        _expr("cmp", sreg=REG_1, op=CMP_EQ, data=_data(struct.pack("=I", RTN_LOCAL))),
    ]


def _dport_is(protocol: str, port: int) -> list[dict]:
    """``tcp dport PORT``: the layer 4 protocol, then 2 bytes at offset 2 of its header."""
    return [
        _expr("meta", dreg=REG_1, key=META_L4PROTO),
        _expr("cmp", sreg=REG_1, op=CMP_EQ, data=_data(bytes([PROTOCOLS[protocol]]))),
        _expr("payload", dreg=REG_1, base=TRANSPORT_HEADER, offset=2, len=2),
        _expr("cmp", sreg=REG_1, op=CMP_EQ, data=_data(struct.pack("!H", port))),
    ]


def _dnat_to(address: IPv4Address, port: int) -> list[dict]:
    """``dnat to ADDRESS:PORT``: put both in registers, then the nat expression reads them."""
    return [
        _expr("immediate", dreg=REG_1, data=_data(address.packed)),
        _expr("immediate", dreg=REG_2, data=_data(struct.pack("!H", port))),
        _expr("nat", type=NAT_DNAT, family=NFPROTO_IPV4, reg_addr_min=REG_1,
              reg_proto_min=REG_2),
    ]


def _masquerade() -> list[dict]:
    return [_expr("masq")]


# --- the table and its rules -----------------------------------------------------

def ensure_table(nft) -> None:
    """NFT_MSG_NEWTABLE and NFT_MSG_NEWCHAIN without NLM_F_EXCL: no error if they exist."""
    with netlink_call("NFT_MSG_NEWTABLE", f"ip {TABLE}"):
        nft.table("add", name=TABLE)
    for chain, (hook, priority) in CHAINS.items():
        with netlink_call("NFT_MSG_NEWCHAIN", f"ip {TABLE} {chain}, type nat hook {hook}"):
            nft.chain("add", table=TABLE, name=chain, hook=hook, type="nat", priority=priority)


def _add_rule(nft, chain: str, expressions: list[dict], comment: str) -> None:
    with netlink_call("NFT_MSG_NEWRULE", f"ip {TABLE} {chain} comment {comment!r}"):
        nft.rule("add", table=TABLE, chain=chain, expressions=[expressions], userdata=comment)


def masquerade_comment(network: str) -> str:
    return f"minirun net={network} masquerade"


def forward_comment(network: str, owner: str, protocol: str, host_port: int) -> str:
    return f"minirun net={network} owner={owner} {protocol}/{host_port}"


def add_masquerade(nft, network: str, subnet: IPv4Network) -> None:
    """Packets from the subnet to anywhere else leave with the outgoing interface's address."""
    ensure_table(nft)
    _add_rule(nft, "postrouting", _saddr_in(subnet) + _daddr_not_in(subnet) + _masquerade(),
              masquerade_comment(network))


def add_port_forward(nft, network: str, owner: str, protocol: str, host_port: int,
                     address: IPv4Address, container_port: int) -> None:
    """DNAT ``HOST:host_port`` to ``address:container_port`` in prerouting and output."""
    ensure_table(nft)
    rule = _daddr_is_local() + _dport_is(protocol, host_port) + _dnat_to(address, container_port)
    comment = forward_comment(network, owner, protocol, host_port)
    for chain in ("prerouting", "output"):
        _add_rule(nft, chain, rule, comment)


def rules(nft) -> Iterator[Rule]:
    """Every rule of minirun's table (NFT_MSG_GETRULE dump)."""
    with netlink_call("NFT_MSG_GETRULE", f"ip {TABLE}"):
        dumped = nft.get_rules()
    for msg in dumped:
        if msg.get_attr("NFTA_RULE_TABLE") == TABLE:
            yield Rule(msg.get_attr("NFTA_RULE_CHAIN"), msg.get_attr("NFTA_RULE_HANDLE"),
                       msg.get_attr("NFTA_RULE_USERDATA") or "")


def delete_rules(nft, *tags: str) -> int:
    """NFT_MSG_DELRULE for every rule whose comment has all ``tags``; how many went."""
    wanted = set(tags)
    doomed = [rule for rule in rules(nft) if wanted <= rule.tags()]
    for rule in doomed:
        with netlink_call("NFT_MSG_DELRULE", f"ip {TABLE} {rule.chain} handle {rule.handle}"):
            nft.rule("del", table=TABLE, chain=rule.chain, handle=rule.handle)
    return len(doomed)


def remove_table_if_empty(nft) -> bool:
    """NFT_MSG_DELTABLE (its chains go with it) once no rule is left; True if removed."""
    if not any(t.get_attr("NFTA_TABLE_NAME") == TABLE for t in nft.get_tables()):
        return False
    if any(True for _ in rules(nft)):
        return False
    with netlink_call("NFT_MSG_DELTABLE", f"ip {TABLE}"):
        nft.table("del", name=TABLE)
    return True


# --- what NAT needs besides rules -------------------------------------------------

def read_ip_forward() -> str:
    """net.ipv4.ip_forward of this network namespace: ``0`` or ``1``."""
    with open(IP_FORWARD) as fh:
        return fh.read().strip()


def write_ip_forward(value: str) -> None:
    """Without forwarding the host drops packets that are not for itself: NAT needs it."""
    with open(IP_FORWARD, "w") as fh:
        fh.write(value)


def host_port_in_use(protocol: str, port: int) -> bool:
    """True if some socket of this namespace already has the port (bind(2) says EADDRINUSE).

    SO_REUSEADDR lets the test bind past connections in TIME_WAIT, so only
    a real listener (or a bound UDP socket) counts as "in use".
    """
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
            raise
    return False
