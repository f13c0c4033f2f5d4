"""The ``minirun network`` command line: the lab's steps, and one-line errors."""

from __future__ import annotations

import json
import socket

import pytest

from tests.network.nethelpers import entered, link_names, ruleset


def test_the_lab_with_minirun_commands(minirun, make_pod):
    """Make a network, wire a namespace to it, talk to it, undo it all."""
    assert minirun("network", "create", "lab", "--subnet", "10.95.0.0/24", "--nat",
                   "--bridge", "labbr").stdout == "lab\n"
    pod = make_pod()
    with entered(pod.netns):
        server = socket.create_server(("0.0.0.0", 80))
    with server:
        att = json.loads(minirun("network", "attach", "lab", "--netns", pod.netns,
                                 "--id", "web", "-p", "8080:80").stdout)
        assert att["ip"] == "10.95.0.2" and att["ports"][0]["host_port"] == 8080
        with socket.create_connection(("10.95.0.2", 80), timeout=5):
            server.accept()[0].close()
        with socket.create_connection(("10.95.0.1", 8080), timeout=5):
            server.accept()[0].close()

    table = minirun("network", "ls").stdout.splitlines()
    assert table[0].split() == ["NAME", "SUBNET", "GATEWAY", "BRIDGE", "NAT", "ATTACHED"]
    assert table[1].split() == ["lab", "10.95.0.0/24", "10.95.0.1", "labbr", "yes", "1"]
    assert minirun("network", "ls", "-q").stdout == "lab\n"
    shown = json.loads(minirun("network", "inspect", "lab").stdout)
    assert [a["owner"] for a in shown["attachments"]] == ["web"]

    minirun("network", "detach", "lab", "--netns", pod.netns)
    minirun("network", "rm", "lab")
    assert minirun("network", "ls", "-q").stdout == ""
    assert link_names() == {"lo"} and ruleset() == ""


@pytest.mark.parametrize("args, message", [
    (["create", "x", "--subnet", "10.0.0.0/33"], "--subnet: '10.0.0.0/33' is not an IPv4"),
    (["create", "x", "--subnet", "10.0.0.0/24", "--gateway", "10.0.1.1"],
     "--gateway: 10.0.1.1 is outside the subnet 10.0.0.0/24"),
    (["create", "x", "--subnet", "10.0.0.0/24", "--bridge", "a-very-long-bridge"],
     "--bridge: interface name 'a-very-long-bridge' is 18 characters long"),
    (["inspect", "nothing"], "network 'nothing' does not exist"),
    (["rm", "nothing"], "network 'nothing' does not exist"),
    (["attach", "default", "--netns", "/nonexistent"],
     "network namespace /nonexistent: No such file or directory"),
    (["attach", "default", "--netns", "/nonexistent", "-p", "80"],
     "-p 80: expected HOSTPORT:CONTAINERPORT"),
])
def test_errors_are_one_line(minirun, args, message):
    result = minirun("network", *args, check=False)
    assert result.returncode == 1
    assert result.stderr == f"minirun: {message}" + result.stderr.split(message, 1)[1]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert link_names() == {"lo"}


def test_detach_needs_exactly_one_of_netns_and_id(minirun):
    result = minirun("network", "detach", "default", check=False)
    assert result.returncode == 2
    assert "give exactly one of --netns and --id" in result.stderr
