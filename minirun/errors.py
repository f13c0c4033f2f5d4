"""The errors a user sees: each prints as one line on stderr, never a traceback."""

from __future__ import annotations


class MinirunError(Exception):
    """Something the user can act on: bad input, a missing container, a refused request."""


class ConfigError(MinirunError):
    """A value in config.json or a Pod manifest is wrong; ``where`` is its file or JSON path."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


class NotFoundError(MinirunError):
    """Words match runc's, because clients such as containerd look for them."""

    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id!r} does not exist")


class NotRunningError(MinirunError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id!r}: container not running")
