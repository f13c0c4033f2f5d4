"""The parent <-> init conversation: two pipes carrying one JSON object a line.

The parent (``minirun create``) and the container's init need to take
turns: the parent writes the ID maps and joins the cgroup, the init mounts
the rootfs, the parent runs the createRuntime hooks, the init pivots and
reports ready, or reports the error that stopped it. pipe(2) ends are
close-on-exec, so the program in the container never sees them.
"""

from __future__ import annotations

import json
import os

from minirun.errors import MinirunError


class Channel:
    """One side of the conversation: a pipe to read from and a pipe to write to."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = b""

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        """The parent's end and the child's end; each closes the other's after fork."""
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        return cls(to_parent_r, to_child_w), cls(to_child_r, to_parent_w)

    def send(self, kind: str, **fields: object) -> None:
        data = json.dumps({"kind": kind, **fields}).encode() + b"\n"
        while data:
            data = data[os.write(self.write_fd, data):]

    def receive(self) -> dict:
        """The next message; an empty dict if the other end is gone."""
        while b"\n" not in self._buffer:
            chunk = os.read(self.read_fd, 65536)
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
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self.write_fd = -1
