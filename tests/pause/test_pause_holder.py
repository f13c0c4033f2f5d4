"""The pause holder against the real kernel: PID 1 of a new PID namespace.

Each holder (the native binary and the Python module) is started with
clone(CLONE_NEWPID), so it is PID 1 of a namespace of its own, and the test
checks what Kubernetes' pause promises: it reaps orphaned zombies, exits 0 on
SIGTERM and SIGINT, ignores everything else, and (native) stays under 1 MiB.
Every process started here is SIGKILLed and reaped at teardown; SIGKILL to a
namespace's PID 1 from the parent namespace ends every process inside it.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator

import pytest

import minirun.pause
from minirun import __version__, libc
from minirun.libc import lib
from minirun.pause import native_pause_path, python_pause_command

TIMEOUT = 10.0  # seconds: generous, the machine may be busy with other tests


# --- reading /proc ------------------------------------------------------------

def proc_status(pid: int | str) -> dict[str, str]:
    """/proc/PID/status (proc(5)) as a dict of field -> text."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def caught_signals(pid: int) -> set[int]:
    """The signals with a handler installed: the SigCgt bit mask of /proc/PID/status."""
    mask = int(proc_status(pid)["SigCgt"], 16)
    return {sig for sig in range(1, 65) if mask & (1 << (sig - 1))}


def ns_pids(pid: int | str) -> list[int]:
    """NSpid: the PID in each PID namespace, from the host's down to the process's own."""
    return [int(n) for n in proc_status(pid)["NSpid"].split()]


def processes_in_pid_namespace(holder: int) -> dict[int, str]:
    """host PID -> State of every process whose /proc/PID/ns/pid is the holder's."""
    namespace = os.readlink(f"/proc/{holder}/ns/pid")
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/pid") == namespace:
                found[int(name)] = proc_status(int(name))["State"]
        except (FileNotFoundError, ProcessLookupError):
            pass  # exited while we looked
        except PermissionError:
            pass  # a process of the machine's (PID 1 here) that ptrace rules hide from us
    return found


def zombies_in_pid_namespace(holder: int) -> dict[int, str]:
    return {pid: st for pid, st in processes_in_pid_namespace(holder).items()
            if st.startswith("Z")}


def cmdline(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[:-1]


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# --- starting and stopping processes -------------------------------------------

class Processes:
    """Children of the test; whatever is not reaped by the test is SIGKILLed at teardown."""

    def __init__(self) -> None:
        self.running: set[int] = set()

    def add(self, pid: int) -> int:
        self.running.add(pid)
        return pid

    def wait_exit(self, pid: int, timeout: float = TIMEOUT) -> int | None:
        """waitpid(2) with a deadline: the raw wait status, or None if still running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.running.discard(pid)
                return status
            time.sleep(0.01)
        return None

    def kill_all(self) -> None:
        for pid in self.running:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.running.clear()


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    procs.kill_all()


@pytest.fixture(params=["native", "python"])
def holder_argv(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "python":
        return python_pause_command()
    native = native_pause_path()
    if native is None:
        pytest.fail(f"{minirun.pause.NATIVE_PAUSE} was not built: run pip install -e .")
    return [native]


def fork_child(body: Callable[[], None]) -> int:
    """os.fork(2) running ``body`` in the child, which never returns into pytest."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def start_as_pid1(argv: list[str], processes: Processes, stderr_fd: int | None = None) -> int:
    """clone(CLONE_NEWPID) then execv(argv): PID 1 of a new PID namespace. Returns its host PID."""
    pid = libc.clone(lib.CLONE_NEWPID)
    if pid == 0:
        try:
            if stderr_fd is not None:
                os.dup2(stderr_fd, 2)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    return processes.add(pid)


def wait_ready(pid: int, argv: list[str]) -> None:
    """Until ``pid`` runs ``argv`` and has its SIGTERM, SIGINT and SIGCHLD handlers.

    Before that a SIGTERM to PID 1 would be dropped, not acted on.
    """
    wanted = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}

    def ready() -> bool:
        return cmdline(pid) == [a.encode() for a in argv] and wanted <= caught_signals(pid)

    assert wait_until(ready), f"holder {argv} did not install its signal handlers"


def read_with_timeout(fd: int, timeout: float = TIMEOUT) -> bytes:
    readable, _, _ = select.select([fd], [], [], timeout)
    assert readable, "no answer from the child process in time"
    return os.read(fd, 4096)


def orphan_a_zombie(holder: int, processes: Processes) -> int:
    """Leave an orphan in the holder's PID namespace; return its host PID once it has exited.

    The test forks a joiner that setns(2)es into the namespace, so the joiner's next
    child is inside it. That child forks the orphan and exits at once: the kernel
    reparents the orphan to PID 1 of its namespace, the holder. The orphan tells us
    its host PID once getppid() says so, and exits when we close its pipe.
    """
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    ns_fd = os.open(f"/proc/{holder}/ns/pid", os.O_RDONLY)

    def orphan() -> None:
        os.close(report_r)
        os.close(go_w)
        assert wait_until(lambda: os.getppid() == 1), "never reparented to PID 1"
        host_pid = ns_pids("self")[0]  # /proc is the host's: its PIDs are host PIDs
        os.write(report_w, str(host_pid).encode())
        os.read(go_r, 1)  # EOF once the test has checked our parent

    def middle() -> None:  # first process inside the namespace
        fork_child(orphan)  # ...and exit without waiting for it

    def joiner() -> None:
        libc.setns(ns_fd, lib.CLONE_NEWPID, f"/proc/{holder}/ns/pid")
        child = fork_child(middle)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0

    joiner_pid = processes.add(fork_child(joiner))
    for fd in (ns_fd, report_w, go_r):
        os.close(fd)
    try:
        status = processes.wait_exit(joiner_pid)
        assert status is not None and os.waitstatus_to_exitcode(status) == 0, "joiner failed"
        orphan_pid = int(read_with_timeout(report_r))
        assert int(proc_status(orphan_pid)["PPid"]) == holder, "orphan not reparented"
        assert ns_pids(orphan_pid)[0] == orphan_pid and len(ns_pids(orphan_pid)) == 2
    finally:
        os.close(go_w)  # the orphan exits now
        os.close(report_r)
    return orphan_pid


# --- the tests --------------------------------------------------------------------

def test_holder_is_pid1_of_its_namespace(holder_argv: list[str], processes: Processes) -> None:
    err_r, err_w = os.pipe()
    holder = start_as_pid1(holder_argv, processes, stderr_fd=err_w)
    os.close(err_w)
    try:
        wait_ready(holder, holder_argv)
        assert ns_pids(holder) == [holder, 1]
        os.kill(holder, signal.SIGTERM)
        assert processes.wait_exit(holder) is not None
        assert b"warning" not in os.read(err_r, 4096)
    finally:
        os.close(err_r)


def test_holder_reaps_orphaned_zombie(holder_argv: list[str], processes: Processes) -> None:
    holder = start_as_pid1(holder_argv, processes)
    wait_ready(holder, holder_argv)
    orphan = orphan_a_zombie(holder, processes)
    assert wait_until(lambda: not os.path.exists(f"/proc/{orphan}")), (
        f"orphan {orphan} not reaped: {proc_status(orphan)['State']}")
    assert zombies_in_pid_namespace(holder) == {}
    assert list(processes_in_pid_namespace(holder)) == [holder]


def test_without_a_reaper_the_orphan_stays_a_zombie(processes: Processes) -> None:
    """Control for the test above: with sleep(1) as PID 1 the zombie is there to be seen."""
    sleep = shutil.which("sleep")
    if sleep is None:
        pytest.skip("no sleep(1) on PATH to act as a PID 1 that never reaps")
    argv = [sleep, "1000"]
    holder = start_as_pid1(argv, processes)
    assert wait_until(lambda: cmdline(holder) == [a.encode() for a in argv])
    orphan = orphan_a_zombie(holder, processes)
    assert wait_until(lambda: proc_status(orphan)["State"].startswith("Z"))
    assert list(zombies_in_pid_namespace(holder)) == [orphan]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_holder_exits_0_on_signal(holder_argv: list[str], processes: Processes,
                                  signum: int) -> None:
    holder = start_as_pid1(holder_argv, processes)
    wait_ready(holder, holder_argv)
    os.kill(holder, signum)
    status = processes.wait_exit(holder)
    assert status is not None, f"holder ignored {signal.Signals(signum).name}"
    assert os.waitstatus_to_exitcode(status) == 0


def test_holder_ignores_other_signals(holder_argv: list[str], processes: Processes) -> None:
    """PID 1 drops signals it has no handler for, even from the parent namespace."""
    holder = start_as_pid1(holder_argv, processes)
    wait_ready(holder, holder_argv)
    for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGQUIT):
        os.kill(holder, signum)
    assert processes.wait_exit(holder, timeout=0.5) is None, "holder exited on a signal"
    os.kill(holder, signal.SIGTERM)
    status = processes.wait_exit(holder)
    assert status is not None and os.waitstatus_to_exitcode(status) == 0


def test_holder_prints_version(holder_argv: list[str]) -> None:
    kind = "python" if holder_argv == python_pause_command() else "native"
    done = subprocess.run(holder_argv + ["-v"], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0
    assert done.stdout == f"minirun-pause {__version__} ({kind})\n"
    wrong = subprocess.run(holder_argv + ["--bogus"], capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert wrong.returncode == 2 and "usage" in wrong.stderr


def test_holder_warns_when_not_pid1(holder_argv: list[str]) -> None:
    proc = subprocess.Popen(holder_argv, stderr=subprocess.PIPE)
    try:
        line = read_with_timeout(proc.stderr.fileno()).decode()
        assert re.search(r"warning: not PID 1", line), line
        wait_ready(proc.pid, holder_argv)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def vmrss_kib(pid: int) -> int:
    return int(proc_status(pid)["VmRSS"].split()[0])


def test_native_holder_rss_at_most_1mib(processes: Processes,
                                        record_property: Callable[[str, object], None]) -> None:
    native = native_pause_path()
    if native is None:
        pytest.fail(f"{minirun.pause.NATIVE_PAUSE} was not built: run pip install -e .")
    holder = start_as_pid1([native], processes)
    wait_ready(holder, [native])
    rss = vmrss_kib(holder)
    record_property("native_vmrss_kib", rss)
    print(f"native pause holder VmRSS: {rss} kB")
    assert rss <= 1024, f"native holder VmRSS {rss} kB is over 1 MiB"


def test_native_holder_smaller_than_python(processes: Processes,
                                           record_property: Callable[[str, object], None]) -> None:
    native = native_pause_path()
    if native is None:
        pytest.fail(f"{minirun.pause.NATIVE_PAUSE} was not built: run pip install -e .")
    rss = {}
    for kind, argv in (("native", [native]), ("python", python_pause_command())):
        holder = start_as_pid1(argv, processes)
        wait_ready(holder, argv)
        rss[kind] = vmrss_kib(holder)
        record_property(f"{kind}_vmrss_kib", rss[kind])
    print(f"pause holder VmRSS: native {rss['native']} kB, python {rss['python']} kB")
    assert rss["native"] * 4 < rss["python"], rss


def test_pause_command_prefers_native(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    fake = tmp_path / "minirun-pause"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(minirun.pause, "NATIVE_PAUSE", str(fake))
    assert minirun.pause.pause_command() == [str(fake)]

    monkeypatch.setattr(minirun.pause, "NATIVE_PAUSE", str(tmp_path / "missing"))
    monkeypatch.setattr(minirun.pause, "_warned_fallback", False)
    assert minirun.pause.pause_command() == python_pause_command()
    assert "missing" in capsys.readouterr().err
    assert minirun.pause.pause_command() == python_pause_command()
    assert capsys.readouterr().err == "", "the fallback warning is printed once"
