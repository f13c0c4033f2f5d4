"""The pause holder in Python: the process that keeps a pod's namespaces alive.

A namespace lives as long as some process is in it. The runtime starts this
process first, in the pod's new network, IPC and UTS namespaces (and PID
namespace with ``shareProcessNamespace``), and each container joins them with
setns(2); containers may then crash and restart while the pod keeps its IP and
hostname. All the holder does:

- SIGTERM, SIGINT: exit with status 0 (the pod is being stopped);
- SIGCHLD: wait(2) for every child that has exited;
- anything else: sleep in pause(2).

The handlers matter because of how the kernel treats PID 1 of a PID namespace
(pid_namespaces(7)): a signal whose action is the default is dropped, even
SIGTERM sent from the host (only SIGKILL and SIGSTOP from an ancestor namespace
get through); and orphans anywhere in the namespace are reparented to PID 1,
which must reap them or they stay zombies.

This is the same program as ``pause.c``, line for line; read them side by
side. Pods run the C one: this interpreter needs about 9 MiB of memory to
sleep, the static C binary under 1 MiB.

Run it: ``python -m minirun.pause.pause`` (``-v`` prints the version).
"""

from __future__ import annotations

import os
import signal
import sys

from minirun import __version__

HELD_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def exit_on_signal(signum: int, frame: object) -> None:
    """SIGTERM, SIGINT: the pod is being stopped; exit 0 like Kubernetes' pause."""
    sys.exit(0)


def reap_children(signum: int, frame: object) -> None:
    """SIGCHLD: waitpid(2) every child that has exited, so none stays a zombie.

    Standard signals are not queued: ten children exiting at once may give one
    SIGCHLD. So loop until WNOHANG says no more have exited.
    """
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # ECHILD: no children left at all
            return
        if pid == 0:  # children exist, but all are still running
            return


def main(argv: list[str]) -> int:
    if argv in (["-v"], ["--version"]):
        print(f"minirun-pause {__version__} (python)")
        return 0
    if argv:
        print("usage: python -m minirun.pause.pause [-v]", file=sys.stderr)
        return 2

    # sigaction(2) underneath. Python runs these handlers in the main thread
    # when signal.pause() below returns.
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGINT, exit_on_signal)
    signal.signal(signal.SIGCHLD, reap_children)

    # The signal mask survives execve(2): if whoever started us had these
    # signals blocked, the handlers above would never run. Unblock them.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)

    # Children may have exited before the SIGCHLD handler existed (their
    # SIGCHLD was dropped then), and the process that exec'd us may have left
    # children behind. Reap those once by hand.
    reap_children(signal.SIGCHLD, None)

    if os.getpid() != 1:
        print("minirun-pause: warning: not PID 1 of a PID namespace, "
              "orphaned processes will not be reparented to this holder", file=sys.stderr)

    while True:
        signal.pause()  # returns after each handler has run


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
