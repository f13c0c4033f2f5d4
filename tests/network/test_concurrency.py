"""Concurrent attaches from separate processes never lease the same address."""

from __future__ import annotations

import json
import subprocess
import time

from minirun import network
from tests.network.nethelpers import MINIRUN, leases, link_names

PODS = 20


def test_twenty_concurrent_attaches_get_twenty_distinct_addresses(root, make_pod):
    """On the default network, which the first of them has to make: one bridge, 20 leases."""
    pods = [make_pod() for _ in range(PODS)]
    # All twenty `minirun network attach` processes start before any has finished.
    started = time.monotonic()
    running = [subprocess.Popen([MINIRUN, "--root", root, "network", "attach", "default",
                                 "--netns", str(pod.pid), "--id", f"pod{i}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i, pod in enumerate(pods)]
    results = [p.communicate(timeout=120) for p in running]
    elapsed = time.monotonic() - started
    failed = [(p.returncode, err) for p, (_, err) in zip(running, results, strict=True)
              if p.returncode != 0]
    assert not failed
    print(f"{PODS} concurrent `minirun network attach`: {elapsed:.2f} s")

    printed = [json.loads(out)["ip"] for out, _ in results]
    assert len(set(printed)) == PODS
    assert all(ip.startswith("192.168.200.") for ip in printed)
    assert [n.name for n in network.list_networks(root)] == ["default"]
    assert set(leases(root, "default")) == set(printed)
    # what the kernel holds matches: each namespace has its own address on eth0
    inside = [pod.links()["eth0"][0] for pod in pods]
    assert inside == printed
    hosts = {json.loads(out)["host_ifname"] for out, _ in results}
    assert len(hosts) == PODS and hosts <= link_names()

    for i in range(PODS):
        network.detach(root, "default", owner=f"pod{i}")
    network.remove_network(root, "default")
    assert link_names() == {"lo"}
