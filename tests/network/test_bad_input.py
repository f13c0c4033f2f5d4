"""Each bad request gets one clear error and leaves nothing behind: no link, no state, no rule."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from minirun import network
from minirun.errors import ConfigError, MinirunError
from minirun.network import PortForward, nat
from tests.network.nethelpers import leases, link_names, ruleset


@pytest.fixture
def unchanged(root):
    """Snapshot links, rules and networks; the test body must leave them exactly so."""
    def snapshot():
        return link_names(), ruleset(), [n.to_dict() for n in network.list_networks(root)]

    before = snapshot()
    yield
    assert snapshot() == before


@pytest.mark.parametrize("subnet, message", [
    ("banana", "'banana' is not an IPv4 network in CIDR notation"),
    ("10.1.2.0/33", "'10.1.2.0/33' is not an IPv4 network in CIDR notation"),
    ("10.1.2.0", "'10.1.2.0' has no prefix length"),
    ("10.1.2.5/24", "10.1.2.5/24 has host bits set: did you mean 10.1.2.0/24?"),
    ("10.1.2.0/31", "a /31 has no room for a gateway and a container"),
    ("fd00::/64", "only IPv4 networks are supported"),
])
def test_invalid_subnet(root, unchanged, subnet, message):
    with pytest.raises(ConfigError) as error:
        network.create_network(root, "bad", subnet)
    assert str(error.value).startswith("--subnet: ") and message in str(error.value)
    assert "\n" not in str(error.value)
    assert not Path(root, ".networks", "bad").exists()


@pytest.mark.parametrize("gateway, message", [
    ("10.2.0.1", "10.2.0.1 is outside the subnet 10.1.0.0/24"),
    ("10.1.0.0", "10.1.0.0 is the network address of 10.1.0.0/24"),
    ("10.1.0.255", "10.1.0.255 is the broadcast address of 10.1.0.0/24"),
    ("gateway", "'gateway' is not an IPv4 address"),
])
def test_bad_gateway(root, unchanged, gateway, message):
    with pytest.raises(ConfigError, match="^--gateway: " + message):
        network.create_network(root, "bad", "10.1.0.0/24", gateway=gateway)


@pytest.mark.parametrize("bridge", ["a" * 16, "has space", "a/b", "a:b", ".."])
def test_bad_bridge_name(root, unchanged, bridge):
    with pytest.raises(ConfigError, match="^--bridge: interface name"):
        network.create_network(root, "bad", "10.1.0.0/24", bridge=bridge)


def test_bridge_name_longer_than_15_says_so(root, unchanged):
    with pytest.raises(ConfigError, match="is 16 characters long: Linux allows 1 to 15"):
        network.create_network(root, "bad", "10.1.0.0/24", bridge="sixteen-chars-br")


def test_bad_network_name(root, unchanged):
    with pytest.raises(ConfigError, match="^network name: '.hidden' is not valid"):
        network.create_network(root, ".hidden", "10.1.0.0/24")


def test_subnet_overlapping_a_route_of_this_namespace(root):
    subprocess.run(["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"],
                   check=True)
    subprocess.run(["ip", "addr", "add", "10.50.0.1/16", "dev", "uplink0"], check=True)
    subprocess.run(["ip", "link", "set", "uplink0", "up"], check=True)
    links = link_names()
    with pytest.raises(ConfigError, match=r"^--subnet: 10\.50\.3\.0/24 overlaps the route "
                       r"10\.50\.0\.0/16 dev uplink0 in this network namespace$"):
        network.create_network(root, "bad", "10.50.3.0/24")
    assert link_names() == links and network.list_networks(root) == []


def test_subnet_overlapping_another_network(root):
    network.create_network(root, "first", "10.60.0.0/16")
    with pytest.raises(ConfigError, match=r"overlaps network 'first' \(10\.60\.0\.0/16\)"):
        network.create_network(root, "second", "10.60.128.0/24")
    assert [n.name for n in network.list_networks(root)] == ["first"]
    assert link_names() == {"lo", "mr-first"}
    network.remove_network(root, "first")


def test_same_name_or_same_bridge_twice(root):
    network.create_network(root, "first", "10.61.0.0/24", bridge="br-a")
    with pytest.raises(MinirunError, match="network 'first' already exists"):
        network.create_network(root, "first", "10.62.0.0/24")
    with pytest.raises(ConfigError, match="bridge br-a is already used by network 'first'"):
        network.create_network(root, "other", "10.62.0.0/24", bridge="br-a")
    network.remove_network(root, "first")


def test_bridge_name_taken_by_an_interface_not_ours(root):
    subprocess.run(["ip", "link", "add", "taken0", "type", "bridge"], check=True)
    with pytest.raises(ConfigError, match="interface taken0 already exists"):
        network.create_network(root, "bad", "10.63.0.0/24", bridge="taken0")
    assert link_names() == {"lo", "taken0"}
    assert network.list_networks(root) == []


def test_remove_while_attached_is_refused_and_changes_nothing(root, make_pod):
    network.create_network(root, "busy", "10.64.0.0/24")
    network.attach(root, "busy", make_pod().netns, owner="c1")
    links = link_names()
    with pytest.raises(MinirunError, match=r"network 'busy' is still in use by 1 attachment\(s\)"
                       r": c1; detach them first"):
        network.remove_network(root, "busy")
    assert link_names() == links
    assert len(leases(root, "busy")) == 1
    network.detach(root, "busy", owner="c1")
    network.remove_network(root, "busy")


def test_exhausted_subnet(root, make_pod):
    network.create_network(root, "tiny", "10.65.0.0/30")     # gateway .1, one host .2
    network.attach(root, "tiny", make_pod().netns, owner="first")
    links = link_names()
    pod = make_pod()
    with pytest.raises(MinirunError, match=r"network 'tiny': no free address left in "
                       r"10\.65\.0\.0/30 \(1 leased, gateway 10\.65\.0\.1\)"):
        network.attach(root, "tiny", pod.netns, owner="second")
    assert link_names() == links
    assert "eth0" not in pod.links()
    assert [v["owner"] for v in leases(root, "tiny").values()] == ["first"]
    network.detach(root, "tiny", owner="first")
    network.remove_network(root, "tiny")


def test_host_port_in_use(root, make_pod):
    network.create_network(root, "web", "10.66.0.0/24", nat=True)
    rules, links = ruleset(), link_names()
    pod = make_pod()
    with socket.create_server(("127.0.0.1", 8080)):
        with pytest.raises(ConfigError, match=r"^-p 8080:80/tcp: host port 8080/tcp is already "
                           "in use by a socket in this network namespace$"):
            network.attach(root, "web", pod.netns, owner="c1", ports=[PortForward(8080, 80)])
    assert (ruleset(), link_names(), leases(root, "web")) == (rules, links, {})
    assert "eth0" not in pod.links()
    network.remove_network(root, "web")


def test_host_port_already_forwarded(root, make_pod):
    network.create_network(root, "web", "10.67.0.0/24", nat=True)
    network.create_network(root, "web2", "10.68.0.0/24", nat=True)
    network.attach(root, "web", make_pod().netns, owner="c1", ports=[PortForward(8080, 80)])
    rules, links = ruleset(), link_names()
    with pytest.raises(ConfigError, match="host port 8080/tcp is already forwarded to 'c1' on "
                       "network 'web'"):
        network.attach(root, "web2", make_pod().netns, owner="c2",
                       ports=[PortForward(8080, 8080)])
    # the same number over UDP is another port
    network.attach(root, "web2", make_pod().netns, owner="c3",
                   ports=[PortForward(8080, 53, "udp")])
    network.detach(root, "web2", owner="c3")
    assert (ruleset(), link_names(), leases(root, "web2")) == (rules, links, {})
    network.detach(root, "web", owner="c1")
    network.remove_network(root, "web")
    network.remove_network(root, "web2")


def test_port_forward_needs_nat(root, make_pod):
    network.create_network(root, "plain", "10.69.0.0/24")
    with pytest.raises(ConfigError, match="network 'plain' has no NAT"):
        network.attach(root, "plain", make_pod().netns, ports=[PortForward(8080, 80)])
    assert leases(root, "plain") == {} and link_names() == {"lo", "mr-plain"}
    network.remove_network(root, "plain")


@pytest.mark.parametrize("spec", ["8080", "a:b", "0:80", "8080:70000", "8080:80/sctp"])
def test_bad_port_spec(spec):
    with pytest.raises(ConfigError, match="^-p "):
        PortForward.parse(spec)


def test_netns_that_is_not_one(root, make_pod, unchanged):
    pod = make_pod()
    with pytest.raises(MinirunError, match=r"/proc/\d+/ns/uts is not a network namespace"):
        network.attach(root, "default", f"/proc/{pod.pid}/ns/uts")
    with pytest.raises(MinirunError, match="network namespace /nonexistent: No such file"):
        network.attach(root, "default", "/nonexistent")
    with pytest.raises(MinirunError, match="is minirun's own network namespace"):
        network.attach(root, "default", os.getpid())


def test_failed_first_attach_does_not_leave_the_default_network(root, make_pod, unchanged):
    pod = make_pod()
    with pytest.raises(ConfigError, match="network 'default' has no NAT"):
        network.attach(root, "default", pod.netns, ports=[PortForward(8080, 80)])
    assert "minirun0" not in link_names()


def test_second_attach_of_one_owner_or_namespace(root, make_pod):
    network.create_network(root, "lab", "10.70.0.0/24")
    pod = make_pod()
    network.attach(root, "lab", pod.netns, owner="c1")
    links = link_names()
    with pytest.raises(MinirunError, match="'c1' is already attached to network 'lab'"):
        network.attach(root, "lab", make_pod().netns, owner="c1")
    with pytest.raises(MinirunError, match="is already attached to network 'lab' as 10.70.0.2"):
        network.attach(root, "lab", pod.pid, owner="c2")
    assert link_names() == links and len(leases(root, "lab")) == 1
    network.detach(root, "lab", owner="c1")
    network.remove_network(root, "lab")


def test_namespace_that_already_has_eth0(root, make_pod):
    network.create_network(root, "lab", "10.71.0.0/24")
    pod = make_pod()
    subprocess.run(["nsenter", f"--net={pod.netns}", "ip", "link", "add", "eth0", "type",
                    "veth", "peer", "name", "eth1"], check=True)
    links = link_names()
    with pytest.raises(MinirunError, match="already has an interface named eth0"):
        network.attach(root, "lab", pod.netns, owner="c1")
    assert link_names() == links and leases(root, "lab") == {}
    network.remove_network(root, "lab")


def test_failure_after_the_veth_exists_rolls_everything_back(root, make_pod, monkeypatch):
    """A fault injected after the veth pair and the first rule exist: all of it is undone."""
    network.create_network(root, "web", "10.72.0.0/24", nat=True)
    rules, links = ruleset(), link_names()
    real = nat.add_port_forward
    calls = []

    def second_one_fails(*args):
        calls.append(args)
        if len(calls) == 2:
            raise OSError("injected failure")
        real(*args)

    monkeypatch.setattr(nat, "add_port_forward", second_one_fails)
    pod = make_pod()
    with pytest.raises(OSError, match="injected failure"):
        network.attach(root, "web", pod.netns, owner="c1",
                       ports=[PortForward(8081, 80), PortForward(8082, 80)])
    assert len(calls) == 2
    assert (ruleset(), link_names(), leases(root, "web")) == (rules, links, {})
    assert "eth0" not in pod.links()
    network.remove_network(root, "web")


def test_failure_while_creating_a_nat_network_rolls_back(root, monkeypatch):
    Path("/proc/sys/net/ipv4/ip_forward").write_text("0")

    def broken(*args):
        raise OSError("injected failure")

    monkeypatch.setattr(nat, "add_masquerade", broken)
    with pytest.raises(OSError, match="injected failure"):
        network.create_network(root, "web", "10.73.0.0/24", nat=True)
    assert link_names() == {"lo"}
    assert ruleset() == ""
    assert network.list_networks(root) == []
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
