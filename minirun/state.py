"""Container state on disk: ``--root/ID/`` holds what later minirun calls need.

One directory per container, made with mkdir(2) (atomic: a second create of
the same ID fails). ``state.json`` is replaced atomically (write a temp
file, then rename(2)), and every change happens under flock(2) on the
directory, so two minirun calls on one container never see half a file.

The live status is never stored: it is read from the kernel each time
(is the PID alive, is it still the same process, is the exec FIFO there,
is the cgroup frozen), the way ``runc state`` does it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field

from minirun import OCI_VERSION
from minirun.errors import MinirunError, NotFoundError

ID_PATTERN = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$")
MAX_ID_LENGTH = 200
EXEC_FIFO = "exec.fifo"


def validate_id(container_id: str) -> str:
    """IDs become directory names: no ``/``, no ``..``, no leading dot, bounded length."""
    if not container_id:
        raise MinirunError("invalid container ID: it is empty")
    if len(container_id) > MAX_ID_LENGTH:
        raise MinirunError(f"invalid container ID: longer than {MAX_ID_LENGTH} characters")
    if not ID_PATTERN.match(container_id) or ".." in container_id:
        raise MinirunError(f"invalid container ID {container_id!r}: use letters, digits and "
                           "_ + - . (not first)")
    return container_id


@dataclass
class Record:
    """What ``create`` learned and later calls need; stored as state.json."""
    id: str
    pid: int
    pid_start: int                     # /proc/PID/stat field 22: guards against PID reuse
    bundle: str
    rootfs: str
    created: str                       # RFC 3339
    owner: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    cgroup: dict | None = None         # minirun.cgroups.Cgroup.to_dict()
    namespaces: dict[str, str] = field(default_factory=dict)  # type -> /proc/PID/ns path
    network: str | None = None         # the minirun network this container is attached to


class StateDir:
    """The directory ``ROOT/ID``: record, exec FIFO, lock."""

    def __init__(self, root: str, container_id: str) -> None:
        self.root = root
        self.id = validate_id(container_id)
        self.path = os.path.join(root, container_id)
        self._lock_fd = -1

    @classmethod
    def make(cls, root: str, container_id: str) -> StateDir:
        """mkdir(2) the directory; it already existing means the ID is taken."""
        sd = cls(root, container_id)
        os.makedirs(root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(sd.path, 0o711)
        except FileExistsError:
            raise MinirunError(f"container with id {container_id!r} already exists") from None
        return sd

    @classmethod
    def open(cls, root: str, container_id: str) -> StateDir:
        sd = cls(root, container_id)
        if not os.path.isfile(os.path.join(sd.path, "state.json")):
            raise NotFoundError(container_id)
        return sd

    @property
    def fifo(self) -> str:
        return os.path.join(self.path, EXEC_FIFO)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def __enter__(self) -> StateDir:
        self._lock_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._lock_fd)   # closing drops the flock
        self._lock_fd = -1

    def load(self) -> Record:
        try:
            with open(self.file("state.json")) as fh:
                return Record(**json.load(fh))
        except FileNotFoundError:
            raise NotFoundError(self.id) from None
        except (ValueError, TypeError) as e:
            raise MinirunError(f"{self.file('state.json')}: corrupt state ({e}); "
                               f"`minirun delete --force {self.id}` removes it") from None

    def save(self, record: Record) -> None:
        write_atomic(self.file("state.json"), json.dumps(asdict(record)))

    def remove(self) -> None:
        import shutil
        shutil.rmtree(self.path, ignore_errors=True)


def write_atomic(path: str, text: str) -> None:
    """Write a file so readers see the old or the new one, never half (rename(2))."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.rename(tmp, path)


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith(".")
                  and os.path.isfile(os.path.join(root, n, "state.json")))


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


# --- the process behind a record -----------------------------------------------

def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat (proc(5)) after the command name, or None if the process is gone.

    The name may hold spaces and parentheses, so split after the last ')':
    field 3 (the state) comes first, field 22 (the start time) is index 19.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2:].split()


def process_start_time(pid: int) -> int | None:
    """Clock ticks since boot at which the process started: with the PID, its identity."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def process_state(pid: int) -> str | None:
    """The one-letter state (R, S, Z, ...), or None if gone."""
    fields = _stat_fields(pid)
    return None if fields is None else fields[0].decode()


def is_alive(record: Record) -> bool:
    """Alive means: the PID exists, is the same process, and is not a zombie."""
    fields = _stat_fields(record.pid) if record.pid > 0 else None
    return fields is not None and int(fields[19]) == record.pid_start and \
        fields[0] not in (b"Z", b"X")


def oci_state(record: Record, status: str) -> dict:
    """The state object of runtime-spec runtime.md, plus runc's extra fields."""
    return {
        "ociVersion": OCI_VERSION,
        "id": record.id,
        "status": status,
        "pid": record.pid if status != "stopped" else 0,
        "bundle": record.bundle,
        "rootfs": record.rootfs,
        "created": record.created,
        "owner": record.owner,
        "annotations": record.annotations,
    }
