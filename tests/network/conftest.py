"""Fixtures for the network tests: every test runs in a network namespace of its own.

``sandbox`` (in tests/conftest.py) moves the test process into a new network namespace (unshare(2)
with CLONE_NEWNET) before the test and back (setns(2)) after it. Everything
minirun makes during the test (bridges, veths, addresses, routes, nftables
rules, net.ipv4.ip_forward) is made in that namespace, and the kernel throws
it all away when the namespace's last reference goes: the machine's own
namespace is never touched. Child processes started by a test (the "pods",
the ``minirun`` CLI) inherit the sandbox.

A "pod" is a small Python process that unshares a network namespace of its
own and waits; its ``/proc/PID/ns/net`` is what gets attached.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.network.nethelpers import MINIRUN, Pod


@pytest.fixture
def root(tmp_path: Path, sandbox: str) -> str:
    """A state root of the test's own (and, through ``sandbox``, a namespace of its own)."""
    return str(tmp_path / "state")


@pytest.fixture
def make_pod(sandbox: str) -> Iterator:
    """Start processes that each hold a new network namespace; all stopped after the test."""
    pods: list[Pod] = []

    def make() -> Pod:
        process = subprocess.Popen([sys.executable, "-c", Pod.HOLDER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        pod = Pod(process)
        pods.append(pod)
        assert process.stdout.readline().strip() == "ready"
        return pod

    yield make
    for pod in pods:
        pod.stop()


@pytest.fixture
def minirun(root: str):
    """Run the real ``minirun`` command (it inherits the sandbox namespace)."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([MINIRUN, "--root", root, *args], capture_output=True,
                                text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"minirun {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr.strip()}")
        return result

    return run
