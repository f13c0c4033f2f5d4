"""Run a piece of a test in a forked child: privileges dropped or filters loaded there
stay there, and what the child returned (or raised) comes back over a pipe."""

from __future__ import annotations

import errno
import json
import os
import resource
from collections.abc import Callable


def run_in_child(work: Callable[[], object]) -> tuple[int, dict | None]:
    """Fork, run ``work``; return the child's exit code and ``{"value"|"error": ...}``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            # a seccomp kill dumps core like SIGSYS would: not into the test's cwd
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            try:
                result = {"value": work()}
            except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
                result = {"error": f"{type(e).__name__}: {e}"}
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), json.loads(data) if data else None


def in_child(work: Callable[[], object]) -> object:
    """Run ``work`` in a child; return what it returned, or fail with what it raised."""
    code, result = run_in_child(work)
    assert code == 0 and result is not None, (code, result)
    assert "error" not in result, result["error"]
    return result["value"]


def errno_name(call: Callable[[], object]) -> str:
    """``"ok"`` if the call succeeds, else the errno name it failed with."""
    try:
        call()
    except OSError as e:
        return errno.errorcode[e.errno]
    return "ok"
