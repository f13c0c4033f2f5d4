"""NAT: masquerade rule, IP forwarding, and port forwards that really carry traffic."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from minirun import network
from minirun.network import PortForward
from tests.network.nethelpers import entered, leases, link_names, ruleset

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def test_nat_network_masquerades_its_subnet_and_turns_forwarding_on(root):
    IP_FORWARD.write_text("0")      # the sandbox's own value, whatever the host has
    network.create_network(root, "out", "10.81.0.0/24", nat=True)
    rules = ruleset()
    assert "table ip minirun" in rules
    assert "ip saddr 10.81.0.0/24 ip daddr != 10.81.0.0/24 masquerade" in rules
    assert IP_FORWARD.read_text().strip() == "1"
    network.remove_network(root, "out")
    assert ruleset() == ""
    assert IP_FORWARD.read_text().strip() == "0"


def test_forwarding_stays_on_until_the_last_nat_network_goes(root):
    IP_FORWARD.write_text("0")
    network.create_network(root, "one", "10.82.1.0/24", nat=True)
    network.create_network(root, "two", "10.82.2.0/24", nat=True)
    network.create_network(root, "plain", "10.82.3.0/24")
    assert "10.82.3.0" not in ruleset()
    network.remove_network(root, "one")
    assert IP_FORWARD.read_text().strip() == "1"
    assert "10.82.1.0" not in ruleset() and "10.82.2.0/24" in ruleset()
    network.remove_network(root, "two")
    assert IP_FORWARD.read_text().strip() == "0"
    network.remove_network(root, "plain")
    assert ruleset() == ""


def test_forwarding_that_was_already_on_is_left_on(root):
    IP_FORWARD.write_text("1")
    network.create_network(root, "out", "10.83.0.0/24", nat=True)
    network.remove_network(root, "out")
    assert IP_FORWARD.read_text().strip() == "1"


def test_tcp_port_forward_reaches_the_server_in_the_namespace(root, make_pod):
    net = network.create_network(root, "web", "10.84.0.0/24", nat=True)
    pod = make_pod()
    with entered(pod.netns):
        server = socket.create_server(("0.0.0.0", 80))
    with server:
        att = network.attach(root, "web", pod.netns, owner="nginx",
                             ports=[PortForward(8080, 80)])
        assert "tcp dport 8080 dnat to 10.84.0.2:80" in ruleset()
        # From the test's namespace (the "host") to one of its own addresses, port 8080:
        # the output chain rewrites the destination to the container's port 80.
        with socket.create_connection((net.gateway, 8080), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                assert conn.getsockname() == (att.ip, 80)
                conn.sendall(b"hello through DNAT\n")
                assert client.recv(100) == b"hello through DNAT\n"

        network.detach(root, "web", owner="nginx")
        assert "dnat" not in ruleset()
        with pytest.raises(OSError) as refused:
            socket.create_connection((net.gateway, 8080), timeout=5)
        assert refused.value.errno == errno.ECONNREFUSED
    network.remove_network(root, "web")
    assert ruleset() == ""


def test_udp_port_forward_reaches_the_namespace(root, make_pod):
    net = network.create_network(root, "dns", "10.85.0.0/24", nat=True)
    pod = make_pod()
    with entered(pod.netns):
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("0.0.0.0", 53))
    with server:
        server.settimeout(5)
        att = network.attach(root, "dns", pod.netns, owner="dns",
                             ports=[PortForward.parse("5353:53/udp")])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"query", (net.gateway, 5353))
            data, peer = server.recvfrom(100)
        assert data == b"query" and peer[0] == net.gateway
        assert att.ports == [PortForward(5353, 53, "udp")]
    network.detach(root, "dns", owner="dns")
    network.remove_network(root, "dns")


def test_port_forward_added_and_removed_after_attach(root, make_pod):
    network.create_network(root, "web", "10.86.0.0/24", nat=True)
    pod = make_pod()
    network.attach(root, "web", pod.netns, owner="c1")
    network.add_port_forward(root, "web", "c1", PortForward(9090, 90))
    assert "tcp dport 9090 dnat to 10.86.0.2:90" in ruleset()
    assert leases(root, "web")["10.86.0.2"]["ports"] == [
        {"host_port": 9090, "container_port": 90, "protocol": "tcp"}]
    network.remove_port_forward(root, "web", "c1", 9090)
    assert "dnat" not in ruleset()
    assert leases(root, "web")["10.86.0.2"]["ports"] == []
    network.detach(root, "web", owner="c1")
    network.remove_network(root, "web")


def test_after_detach_and_rm_nothing_remains(root, make_pod):
    IP_FORWARD.write_text("0")
    links_before = link_names()
    network.create_network(root, "web", "10.87.0.0/24", nat=True)
    pods = [make_pod() for _ in range(3)]
    for i, pod in enumerate(pods):
        network.attach(root, "web", pod.netns, owner=f"c{i}", ports=[PortForward(8000 + i, 80)])
    assert len(leases(root, "web")) == 3
    assert ruleset().count("dnat to") == 6          # prerouting and output, per forward
    for i in range(3):
        network.detach(root, "web", owner=f"c{i}")
    network.remove_network(root, "web")
    assert link_names() == links_before
    assert all("eth0" not in pod.links() for pod in pods)
    assert ruleset() == ""
    assert IP_FORWARD.read_text().strip() == "0"
    assert not Path(root, ".networks", "web").exists()
