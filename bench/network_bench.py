"""How long does wiring one pod's network take? minirun's library against `ip` commands.

Run as root:  .venv/bin/python bench/network_bench.py [--pods 100]

Everything happens inside a network namespace this process makes for itself
first (unshare(2) CLONE_NEWNET), so the machine's own namespace is never
touched; the bridges, veths and "pod" namespaces vanish when the process exits.
A pod's namespace is made with unshare(2) and kept alive by an open file
descriptor; ``/proc/PID/fd/N`` names it for ``ip`` and ``nsenter``.

Per pod, every method does the same steps: a veth pair, the host end on the
bridge and up, the other end into the pod's namespace as eth0, its address,
eth0 and lo up, a default route via the gateway. Methods:

- ``minirun attach``: ``minirun.network.attach()``, the steps plus what a
  runtime needs around them: the lock, IPAM, the lease file, rollback;
- ``minirun wiring``: only the netlink steps of ``attach()`` (veth.py);
- ``library, moving``: the same but the peer is made in the host namespace
  and then moved, the way the lab's script does it (shows the kernel's cost);
- ``ip, lab script``: the lab's shell-script way, one ``ip`` process per step
  (``nsenter --net`` standing in for ``ip netns exec``);
- ``ip, peer in place``: ``ip`` again, but creating the peer directly in the
  namespace as eth0, like minirun does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Interface, IPv4Network

from minirun import libc, network
from minirun.libc import lib
from minirun.network import bridge, netns, rtnl, veth

OWN = "/proc/thread-self/ns/net"
SINGLE_RUNS = 5


def make_namespaces(count: int) -> list[netns.NetnsFile]:
    """``count`` new network namespaces, each held by an open fd; we stay where we were."""
    home = os.open(OWN, os.O_RDONLY)
    made = []
    try:
        for _ in range(count):
            libc.unshare(lib.CLONE_NEWNET)
            fd = os.open(OWN, os.O_RDONLY)
            made.append(netns.NetnsFile(f"/proc/{os.getpid()}/fd/{fd}", fd, os.fstat(fd).st_ino))
    finally:
        libc.setns(home, lib.CLONE_NEWNET, "home")
        os.close(home)
    return made


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


class Method:
    name = ""

    def __init__(self, index: int, root: str) -> None:
        self.subnet = IPv4Network(f"10.{100 + index}.0.0/16")
        self.gateway = self.subnet.network_address + 1
        self.bridge = f"bench{index}"
        self.n = index          # keeps interface names of different runs apart
        self.root = root

    def setup(self) -> None:
        with netns.rtnl_socket() as ipr:
            bridge.create_bridge(ipr, self.bridge, self.gateway, self.subnet)

    def address(self, i: int) -> IPv4Interface:
        return IPv4Interface(f"{self.subnet.network_address + 2 + i}/{self.subnet.prefixlen}")

    def wire(self, i: int, ns: netns.NetnsFile) -> None:
        raise NotImplementedError


class MinirunAttach(Method):
    name = "minirun attach"

    def setup(self) -> None:
        network.create_network(self.root, self.bridge, str(self.subnet), bridge=self.bridge)

    def wire(self, i: int, ns: netns.NetnsFile) -> None:
        network.attach(self.root, self.bridge, ns.path, owner=f"pod{i}")


class MinirunWiring(Method):
    name = "minirun wiring"

    def wire(self, i: int, ns: netns.NetnsFile) -> None:
        with netns.rtnl_socket() as ipr, netns.rtnl_socket(ns) as ns_ipr:
            index = rtnl.link_index(ipr, self.bridge)
            veth.create_veth_pair(ipr, f"mw{self.n}-{i}", index, ns)
            veth.configure_inside(ns_ipr, "eth0", self.address(i), self.gateway)


class LibraryMoving(Method):
    name = "library, moving"

    def wire(self, i: int, ns: netns.NetnsFile) -> None:
        with netns.rtnl_socket() as ipr, netns.rtnl_socket(ns) as ns_ipr:
            index = rtnl.link_index(ipr, self.bridge)
            ipr.link("add", ifname=f"lm{self.n}-{i}", kind="veth", peer=f"lp{self.n}-{i}",
                     master=index, state="up")
            # RTM_NEWLINK on the peer with IFLA_NET_NS_FD and IFLA_IFNAME: move and rename
            ipr.link("set", index=rtnl.link_index(ipr, f"lp{self.n}-{i}"), net_ns_fd=ns.fd,
                     ifname="eth0")
            veth.configure_inside(ns_ipr, "eth0", self.address(i), self.gateway)


class IpLabScript(Method):
    name = "ip, lab script"

    def wire(self, i: int, ns: netns.NetnsFile) -> None:
        inside = ["nsenter", f"--net={ns.path}", "ip"]
        run("ip", "link", "add", f"il{self.n}-{i}", "type", "veth",
            "peer", "name", f"ip{self.n}-{i}")
        run("ip", "link", "set", f"il{self.n}-{i}", "master", self.bridge, "up")
        run("ip", "link", "set", f"ip{self.n}-{i}", "netns", ns.path)
        run(*inside, "link", "set", f"ip{self.n}-{i}", "name", "eth0")
        run(*inside, "addr", "add", str(self.address(i)), "dev", "eth0")
        run(*inside, "link", "set", "eth0", "up")
        run(*inside, "link", "set", "lo", "up")
        run(*inside, "route", "add", "default", "via", str(self.gateway))


class IpPeerInPlace(Method):
    name = "ip, peer in place"

    def wire(self, i: int, ns: netns.NetnsFile) -> None:
        inside = ["nsenter", f"--net={ns.path}", "ip"]
        run("ip", "link", "add", f"ii{self.n}-{i}", "master", self.bridge, "up", "type", "veth",
            "peer", "name", "eth0", "netns", ns.path)
        run(*inside, "addr", "add", str(self.address(i)), "dev", "eth0")
        run(*inside, "link", "set", "eth0", "up")
        run(*inside, "link", "set", "lo", "up")
        run(*inside, "route", "add", "default", "via", str(self.gateway))


METHODS = [MinirunAttach, MinirunWiring, LibraryMoving, IpLabScript, IpPeerInPlace]


def check_wired(ns: netns.NetnsFile, expected: IPv4Interface) -> None:
    """The pod really has eth0 with its address (else the timing means nothing)."""
    with netns.rtnl_socket(ns) as ns_ipr:
        addresses = [a.get_attr("IFA_ADDRESS") for a in ns_ipr.get_addr(label="eth0")]
    assert str(expected.ip) in addresses, (ns.path, addresses)


def measure(method: Method, pods: int) -> list[float]:
    method.setup()
    namespaces = make_namespaces(pods)
    times = []
    for i, ns in enumerate(namespaces):
        start = time.perf_counter()
        method.wire(i, ns)
        times.append((time.perf_counter() - start) * 1000)
    check_wired(namespaces[0], method.address(0))
    check_wired(namespaces[-1], method.address(pods - 1))
    for ns in namespaces:
        ns.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100, help="pods on one bridge (default 100)")
    parser.add_argument("--state-dir", default=None,
                        help="where the state root goes (default: $TMPDIR or /tmp); the "
                        "lease file is rewritten per attach, so a tmpfs is faster than a disk")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: it makes network namespaces")
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")

    libc.unshare(lib.CLONE_NEWNET)      # a throwaway namespace for everything below
    run("ip", "link", "set", "lo", "up")
    import pyroute2  # noqa: F401 - imported up front: its ~150 ms are not a pod's cost

    root = tempfile.mkdtemp(prefix="minirun-bench-", dir=args.state_dir)
    single: dict[str, list[float]] = {}     # first pod on a fresh bridge, several bridges
    many: dict[str, list[float]] = {}       # args.pods pods on one bridge
    try:
        for m, cls in enumerate(METHODS):
            for rep in range(SINGLE_RUNS):
                method = cls(m * 10 + rep, root=os.path.join(root, f"{m}-single{rep}"))
                single.setdefault(cls.name, []).extend(measure(method, 1))
            method = cls(m * 10 + SINGLE_RUNS, root=os.path.join(root, f"{m}-many"))
            many[cls.name] = measure(method, args.pods)
    finally:
        shutil.rmtree(root)

    print(f"Wiring one pod's network, ms per pod; Linux {os.uname().release}; "
          f"state in {os.path.dirname(root)}")
    print(f"{'':20} {'1 pod (' + str(SINGLE_RUNS) + ' bridges)':>19}  "
          f"{str(args.pods) + ' pods on one bridge':>40}")
    print(f"{'method':20} {'first':>9} {'median':>9}  {'mean':>7} {'median':>7} {'first10':>7} "
          f"{'last10':>7} {'total s':>7}")
    for cls in METHODS:
        one, lots = single[cls.name], many[cls.name]
        print(f"{cls.name:20} {one[0]:9.2f} {statistics.median(one):9.2f}  "
              f"{statistics.mean(lots):7.2f} {statistics.median(lots):7.2f} "
              f"{statistics.mean(lots[:10]):7.2f} {statistics.mean(lots[-10:]):7.2f} "
              f"{sum(lots) / 1000:7.2f}")
    ours = statistics.mean(many["minirun attach"])
    for other in ("ip, lab script", "ip, peer in place"):
        theirs = statistics.mean(many[other])
        print(f"ratio {other!r} / 'minirun attach' ({args.pods} pods, mean): "
              f"{theirs / ours:.1f}x")

if __name__ == "__main__":
    main()
