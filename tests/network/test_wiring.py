"""A namespace attached to a network gets eth0, an address, a default route, and traffic flows."""

from __future__ import annotations

import socket
import subprocess

import pytest

from minirun import network
from minirun.errors import MinirunError
from tests.network.nethelpers import entered, leases, link_names


def tcp_roundtrip(server_netns: str | None, server_ip: str, client_netns: str | None) -> bytes:
    """Listen in one namespace, connect from another, send a line each way; the reply."""
    def make(netns, func):
        if netns is None:
            return func()
        with entered(netns):
            return func()

    server = make(server_netns, lambda: socket.create_server((server_ip, 0)))
    with server:
        port = server.getsockname()[1]
        client = make(client_netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        with client:
            client.settimeout(5)
            client.connect((server_ip, port))      # the kernel completes the handshake
            conn, peer = server.accept()
            with conn:
                client.sendall(b"ping\n")
                assert conn.recv(5) == b"ping\n"
                conn.sendall(f"pong from {server_ip} to {peer[0]}\n".encode())
                return client.recv(100)


def test_two_namespaces_talk_tcp_over_the_bridge(root, make_pod):
    network.create_network(root, "lab", "10.71.0.0/24")
    a, b = make_pod(), make_pod()
    at_a = network.attach(root, "lab", a.netns, owner="pod-a")
    at_b = network.attach(root, "lab", b.netns, owner="pod-b")
    assert (at_a.ip, at_b.ip) == ("10.71.0.2", "10.71.0.3")

    reply = tcp_roundtrip(a.netns, at_a.ip, b.netns)
    assert reply == b"pong from 10.71.0.2 to 10.71.0.3\n"

    network.detach(root, "lab", owner="pod-a")
    network.detach(root, "lab", owner="pod-b")
    network.remove_network(root, "lab")


def test_attached_namespace_reaches_the_gateway(root, make_pod):
    net = network.create_network(root, "lab", "10.72.0.0/24", gateway="10.72.0.254")
    pod = make_pod()
    att = network.attach(root, "lab", pod.pid, owner="pod")
    assert att.gateway == net.gateway == "10.72.0.254"
    # the server is on the bridge's address in the test's (the "host's") namespace
    reply = tcp_roundtrip(None, net.gateway, pod.netns)
    assert reply == f"pong from 10.72.0.254 to {att.ip}\n".encode()
    # and the other way round: the host reaches the container at its address
    assert tcp_roundtrip(pod.netns, att.ip, None) == f"pong from {att.ip} to 10.72.0.254\n".encode()
    network.detach(root, "lab", owner="pod")
    network.remove_network(root, "lab")


def test_inside_the_namespace_eth0_lo_and_default_route(root, make_pod):
    network.create_network(root, "lab", "10.73.0.0/24")
    pod = make_pod()
    att = network.attach(root, "lab", pod.netns, owner="pod")
    links = pod.links()
    assert links["eth0"] == [att.ip]
    assert links["lo"] == ["127.0.0.1"]
    routes = subprocess.run(["nsenter", f"--net={pod.netns}", "ip", "route"],
                            capture_output=True, text=True, check=True).stdout
    assert "default via 10.73.0.1 dev eth0" in routes
    up = subprocess.run(["nsenter", f"--net={pod.netns}", "ip", "-br", "link"],
                        capture_output=True, text=True, check=True).stdout
    assert all(",UP" in line or "<UP" in line for line in up.splitlines()), up
    network.detach(root, "lab", owner="pod")
    network.remove_network(root, "lab")


def test_host_end_is_on_the_bridge_and_traceable_to_its_owner(root, make_pod):
    network.create_network(root, "lab", "10.74.0.0/24", bridge="labbr0")
    att = network.attach(root, "lab", make_pod().netns, owner="my-container-1")
    assert len(att.host_ifname) <= 15
    show = subprocess.run(["ip", "-d", "link", "show", att.host_ifname], capture_output=True,
                          text=True, check=True).stdout
    assert "master labbr0" in show
    assert "alias minirun lab my-container-1" in show
    assert leases(root, "lab")[att.ip]["host_ifname"] == att.host_ifname
    network.detach(root, "lab", owner="my-container-1")
    network.remove_network(root, "lab")


def test_default_network_is_the_labs_bridge_made_on_first_use(root, make_pod):
    assert network.list_networks(root) == []
    att = network.attach(root, network.DEFAULT_NETWORK, make_pod().netns, owner="nginx")
    assert (att.ip, att.gateway, att.prefixlen) == ("192.168.200.2", "192.168.200.1", 24)
    addr = subprocess.run(["ip", "-4", "-br", "addr", "show", "minirun0"], capture_output=True,
                          text=True, check=True).stdout
    assert "192.168.200.1/24" in addr
    assert [n.name for n in network.list_networks(root)] == ["default"]
    network.detach(root, "default", owner="nginx")
    network.remove_network(root, "default")
    assert "minirun0" not in link_names()


def test_detach_by_netns_path_removes_veth_and_lease(root, make_pod):
    network.create_network(root, "lab", "10.75.0.0/24")
    pod = make_pod()
    att = network.attach(root, "lab", pod.netns)       # no owner: the path is the owner
    assert att.owner == pod.netns
    assert att.host_ifname in link_names()
    network.detach(root, "lab", netns=pod.netns)
    assert att.host_ifname not in link_names()
    assert "eth0" not in pod.links()                    # the peer went with the host end
    assert leases(root, "lab") == {}
    network.remove_network(root, "lab")
    assert link_names() == {"lo"}


def test_detach_after_the_namespace_died_releases_the_lease(root, make_pod):
    network.create_network(root, "lab", "10.76.0.0/24")
    pod = make_pod()
    att = network.attach(root, "lab", pod.netns, owner="gone")
    pod.stop()      # last process of the namespace: the kernel deletes eth0 and the pair
    network.detach(root, "lab", owner="gone")
    assert att.host_ifname not in link_names()
    assert leases(root, "lab") == {}
    # the address is free again
    again = network.attach(root, "lab", make_pod().netns, owner="next")
    assert again.ip == att.ip
    network.detach(root, "lab", owner="next")
    network.remove_network(root, "lab")


def test_detach_of_unknown_owner_is_an_error(root):
    network.create_network(root, "lab", "10.77.0.0/24")
    with pytest.raises(MinirunError, match="'nobody' is not attached to network 'lab'"):
        network.detach(root, "lab", owner="nobody")
    network.remove_network(root, "lab")
