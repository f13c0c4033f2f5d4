"""Helpers shared by the network tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from minirun import libc
from minirun.libc import lib

MINIRUN = str(Path(sys.executable).with_name("minirun"))
OWN_NETNS = "/proc/thread-self/ns/net"


@contextmanager
def entered(netns_path: str) -> Iterator[None]:
    """Run the body inside another network namespace; sockets made there stay there."""
    own = os.open(OWN_NETNS, os.O_RDONLY)
    target = os.open(netns_path, os.O_RDONLY)
    try:
        libc.setns(target, lib.CLONE_NEWNET, netns_path)
        try:
            yield
        finally:
            libc.setns(own, lib.CLONE_NEWNET, "back")
    finally:
        os.close(target)
        os.close(own)


@dataclass
class Pod:
    """A process that holds a network namespace of its own until its stdin closes."""
    process: subprocess.Popen

    HOLDER: ClassVar[str] = (
        "import sys\n"
        "from minirun import libc\n"
        "from minirun.libc import lib\n"
        "libc.unshare(lib.CLONE_NEWNET)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def netns(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=10)

    def links(self) -> dict[str, list[str]]:
        """Interface name -> IPv4 addresses, read inside the pod with `ip -j addr`."""
        out = subprocess.run(["nsenter", f"--net={self.netns}", "ip", "-j", "-4", "addr"],
                             capture_output=True, text=True, check=True).stdout
        return {i["ifname"]: [a["local"] for a in i.get("addr_info", [])]
                for i in json.loads(out)}


def link_names() -> set[str]:
    """The interfaces of the namespace the test is in."""
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


def ruleset() -> str:
    """What nft(8) sees in this namespace (empty when minirun's table is gone)."""
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                          check=True).stdout


def leases(root: str, network: str) -> dict:
    path = Path(root, ".networks", network, "leases.json")
    return json.loads(path.read_text()) if path.exists() else {}
