"""OCI lifecycle hooks (runtime-spec config.md "POSIX-platform Hooks").

Each hook is a program run with the container's state JSON on its stdin.
Where it runs depends on the phase: prestart, createRuntime, poststart and
poststop run in the runtime's namespaces (called from ``container.py``);
createContainer and startContainer run inside the container (called from
``init.py``). A failing hook before the program starts fails the create;
a failing poststart or poststop hook is only reported, as the spec says.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time

from minirun.errors import MinirunError


def run_hooks(hooks: list, phase: str, state: dict) -> None:
    """Run every hook of one phase in order; raise on the first failure."""
    if not hooks:
        return
    payload = json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        status = _run_one(hook, payload)
        if status != 0:
            raise MinirunError(f"hooks.{phase}[{i}] ({hook.path}) failed: {status}")


def _run_one(hook, payload: bytes) -> str | int:
    """fork + execve the hook with its own args and env, feed stdin, wait (with timeout)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            # a hook must not outlive the minirun that runs it (a crash, a kill -9)
            from minirun import libc
            libc.prctl(libc.lib.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
            os.dup2(read_end, 0)
            os.execve(hook.path, hook.args or [hook.path], dict(_env(hook.env)))
        except BaseException as e:   # noqa: BLE001 - report anything, then leave the child
            os.write(2, f"minirun: hook {hook.path}: {e}\n".encode())
        finally:
            os._exit(127)
    os.close(read_end)
    try:
        os.write(write_end, payload)
    except BrokenPipeError:
        pass   # a hook need not read its stdin
    os.close(write_end)
    deadline = time.monotonic() + hook.timeout if hook.timeout else None
    pidfd = os.pidfd_open(pid)
    try:
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([pidfd], [], [], timeout)
            if ready:
                break
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return f"timed out after {hook.timeout} s"
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else f"killed by signal {-code}"


def _env(pairs: list[str]):
    for pair in pairs:
        key, _, value = pair.partition("=")
        yield key, value
