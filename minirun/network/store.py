"""Where networks live on disk: ``ROOT/.networks/NAME/``.

Each network is a directory holding two JSON files:

- ``network.json``: what ``network create`` was asked for (subnet, gateway,
  bridge, NAT);
- ``leases.json``: the IPAM leases, one per attachment, keyed by address.

Files are replaced atomically (write a temp file, rename(2) it over the old) so a
reader sees the old or the new version, never half of one. Every change
happens under one flock(2) on ``ROOT/.networks/.lock``: a network create, an
attach and a remove in three processes at once are serialized, which is what
keeps two concurrent attaches from leasing the same address.

Container IDs never start with a dot, so ``.networks`` cannot clash with one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from minirun.errors import ConfigError

NETWORKS_DIR = ".networks"
LOCK_FILE = ".lock"
NETWORK_FILE = "network.json"
LEASES_FILE = "leases.json"
# Set when minirun switched net.ipv4.ip_forward on; holds the value to put back.
IP_FORWARD_FILE = "ip_forward.before"

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def validate_name(name: str) -> str:
    """Network names become directory names: letters, digits, ``_ . -``, no leading dot."""
    if not NAME_PATTERN.match(name) or ".." in name:
        raise ConfigError("network name", f"{name!r} is not valid: use up to 63 letters, "
                          "digits and _ . - (not first)")
    return name


def networks_dir(root: str) -> str:
    return os.path.join(root, NETWORKS_DIR)


def network_dir(root: str, name: str) -> str:
    return os.path.join(root, NETWORKS_DIR, name)


def network_names(root: str) -> list[str]:
    """Every network with a network.json, sorted."""
    base = networks_dir(root)
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith(".")
                  and os.path.isfile(os.path.join(base, n, NETWORK_FILE)))


@contextmanager
def locked(root: str) -> Iterator[None]:
    """Hold flock(2) LOCK_EX on ``ROOT/.networks/.lock`` for the body of the ``with``.

    flock locks belong to the open file description, and closing the file
    drops the lock, so a process that dies mid-change never leaves it held.
    The lock is not re-entrant: code inside the ``with`` must not take it again.
    """
    base = networks_dir(root)
    os.makedirs(base, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(base, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_json(path: str, default: object = None) -> object:
    """The parsed file, or ``default`` if it does not exist."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default
    except ValueError as e:
        raise ConfigError(path, f"corrupt network state ({e})") from None


def write_json(path: str, data: object) -> None:
    """Replace ``path`` atomically: temp file in the same directory, then rename(2).

    No fsync(2): this state describes bridges and veths that a reboot destroys
    anyway, so surviving a power cut buys nothing, and fsync on a disk costs
    milliseconds per attach.
    """
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(to_json_lines(data))
    os.rename(tmp, path)


def to_json_lines(data: object) -> str:
    """A dict as one key per line: easy to read, and fast (json's C encoder needs no indent)."""
    if not isinstance(data, dict) or not data:
        return json.dumps(data) + "\n"
    lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in data.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"
