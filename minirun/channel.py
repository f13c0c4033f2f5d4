"""The parent <-> init conversation: a socketpair(2) carrying one JSON object a line.

The parent (``minirun create``) and the container's init need to take
turns: the parent writes the ID maps and joins the cgroup, the init mounts
the rootfs, the parent runs the createRuntime hooks, the init pivots and
reports ready, or reports the error that stopped it. Both ends are
close-on-exec, so the program in the container never sees the socket.
"""

from __future__ import annotations

import json
import socket

from minirun.errors import MinirunError


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return cls(a), cls(b)

    def send(self, kind: str, **fields: object) -> None:
        self.sock.sendall(json.dumps({"kind": kind, **fields}).encode() + b"\n")

    def receive(self) -> dict:
        """The next message; an empty dict if the other end is gone."""
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return {}
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def expect(self, kind: str) -> dict:
        """Wait for ``kind``; an ``error`` message from the other side is raised here."""
        msg = self.receive()
        if msg.get("kind") == "error":
            raise MinirunError(msg["message"])
        if msg.get("kind") != kind:
            raise MinirunError(f"container init exited before it was {kind}")
        return msg

    def close(self) -> None:
        self.sock.close()
