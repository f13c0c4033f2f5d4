"""The runc-style lifecycle through the real command line: create, start, state,
kill, delete, run, exec, ps, list, spec, features, hooks, pid files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minirun.state import process_state


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def state_of(minirun, cid: str) -> dict:
    result = minirun("state", cid)
    assert result.stderr == ""
    return json.loads(result.stdout)


def test_create_waits_for_start_then_runs(minirun, make_bundle, tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    bundle = make_bundle(
        args=["/bin/sh", "-c", "echo ran > /shared/marker; sleep 30"],
        mounts=_busybox_mounts() + [{"destination": "/shared", "type": "bind",
                                     "source": str(shared), "options": ["rbind", "rw"]}])
    pid_file = tmp_path / "init.pid"
    minirun("create", "--bundle", str(bundle), "--pid-file", str(pid_file), "c1")
    st = state_of(minirun, "c1")
    assert st["status"] == "created"
    assert st["id"] == "c1" and st["bundle"] == str(bundle)
    assert st["ociVersion"] and st["created"].endswith("Z")
    raw = pid_file.read_text()
    assert raw.isdigit() and int(raw) == st["pid"]          # digits only, no newline
    time.sleep(0.3)
    assert not (shared / "marker").exists(), "the program ran before start"

    minirun("start", "c1")
    wait_for(lambda: (shared / "marker").exists(), what="the program to run after start")
    assert state_of(minirun, "c1")["status"] == "running"

    minirun("kill", "c1", "KILL")
    wait_for(lambda: state_of(minirun, "c1")["status"] == "stopped", what="stopped")
    assert state_of(minirun, "c1")["pid"] == 0
    minirun("delete", "c1")
    gone = minirun("state", "c1", check=False)
    assert gone.returncode != 0 and "does not exist" in gone.stderr


def _busybox_mounts() -> list:
    config = Path(__file__).resolve().parents[2] / "bundles" / "busybox" / "config.json"
    return json.loads(config.read_text())["mounts"]


def test_run_returns_exit_code_and_cleans_up(minirun, make_bundle, state_root):
    assert minirun("run", "-b", str(make_bundle(args=["/bin/sh", "-c", "exit 3"])), "r1",
                   check=False).returncode == 3
    assert not os.path.exists(os.path.join(state_root, "r1"))
    # PID 1 cannot be SIGKILLed from inside its namespace: kill it from outside
    proc = subprocess.Popen([sys.executable, "-m", "minirun", "--root", state_root, "run", "-b",
                             str(make_bundle(args=["/bin/sleep", "30"])), "r2"])
    wait_for(lambda: os.path.exists(os.path.join(state_root, "r2", "state.json"))
             and not os.path.exists(os.path.join(state_root, "r2", "exec.fifo")),
             what="r2 to start")
    minirun("kill", "r2", "KILL")
    assert proc.wait(timeout=20) == 128 + 9
    assert not os.path.exists(os.path.join(state_root, "r2"))


def test_run_prints_pid_one(minirun, make_bundle):
    result = minirun("run", "-b", str(make_bundle()), "demo")
    assert "PID: 1" in result.stdout
    assert "hostname: minirun" in result.stdout


def test_kill_accepts_names_and_numbers(minirun, make_bundle):
    # PID 1 ignores signals it has no handler for, so the shell traps TERM
    bundle = make_bundle(args=["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"])
    for sig in ("TERM", "SIGKILL", "15"):
        cid = f"k{sig}"
        minirun("run", "-d", "-b", str(bundle), cid)
        assert state_of(minirun, cid)["status"] == "running"
        minirun("kill", cid, sig)
        wait_for(lambda c=cid: state_of(minirun, c)["status"] == "stopped", what="stopped")
        minirun("delete", cid)


def test_kill_stopped_and_bad_signal(minirun, make_bundle):
    minirun("run", "-d", "-b", str(make_bundle(args=["/bin/true"])), "done")
    wait_for(lambda: state_of(minirun, "done")["status"] == "stopped", what="stopped")
    result = minirun("kill", "done", "TERM", check=False)
    assert result.returncode != 0 and "container not running" in result.stderr
    minirun("run", "-d", "-b", str(make_bundle(args=["/bin/sleep", "30"])), "alive")
    bad = minirun("kill", "alive", "SIGNOPE", check=False)
    assert bad.returncode != 0 and "invalid signal" in bad.stderr
    minirun("delete", "--force", "alive")
    minirun("delete", "done")


def test_delete_refuses_running_unless_forced(minirun, make_bundle):
    minirun("run", "-d", "-b", str(make_bundle(args=["/bin/sleep", "30"])), "busy")
    result = minirun("delete", "busy", check=False)
    assert result.returncode != 0 and "not stopped" in result.stderr
    pid = state_of(minirun, "busy")["pid"]
    minirun("delete", "--force", "busy")
    assert process_state(pid) in (None, "Z")
    assert minirun("delete", "--force", "busy").returncode == 0   # idempotent, as runc


def test_start_twice_is_refused(minirun, make_bundle):
    minirun("run", "-d", "-b", str(make_bundle(args=["/bin/sleep", "30"])), "twice")
    result = minirun("start", "twice", check=False)
    assert result.returncode != 0 and "already running" in result.stderr
    minirun("delete", "-f", "twice")


def test_exec_joins_the_container(minirun, make_bundle):
    minirun("run", "-d", "-b", str(make_bundle(args=["/bin/sleep", "30"], hostname="inside")),
            "ex")
    result = minirun("exec", "ex", "/bin/sh", "-c", "hostname; echo $$; ps -o pid,args")
    lines = result.stdout.split()
    assert lines[0] == "inside"
    assert "sleep" in result.stdout                      # sees the init: same PID namespace
    code = minirun("exec", "-e", "X=41", "ex", "/bin/sh", "-c", "exit $((X+1))", check=False)
    assert code.returncode == 42
    pids = json.loads(minirun("ps", "--format", "json", "ex").stdout)
    assert state_of(minirun, "ex")["pid"] in pids
    table = minirun("ps", "ex").stdout
    assert "PID" in table and "sleep" in table
    minirun("delete", "-f", "ex")


def test_list_formats(minirun, make_bundle):
    minirun("run", "-d", "-b", str(make_bundle(args=["/bin/sleep", "30"])), "l1")
    assert minirun("list", "-q").stdout.split() == ["l1"]
    listed = json.loads(minirun("list", "--format", "json").stdout)
    assert [c["id"] for c in listed] == ["l1"] and listed[0]["status"] == "running"
    table = minirun("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"] and "running" in table[1]
    minirun("delete", "-f", "l1")


def test_hooks_get_state_on_stdin(minirun, make_bundle, tmp_path: Path):
    out = tmp_path / "hooks"
    out.mkdir()
    hook = lambda name: {"path": "/bin/sh",   # noqa: E731
                         "args": ["sh", "-c", f"cat > {out}/{name}.json"]}
    bundle = make_bundle(args=["/bin/true"],
                         hooks={"prestart": [hook("prestart")],
                                "createRuntime": [hook("createRuntime")],
                                "poststart": [hook("poststart")],
                                "poststop": [hook("poststop")]})
    minirun("run", "-b", str(bundle), "hooked")
    for name, status in (("prestart", "creating"), ("createRuntime", "creating"),
                         ("poststart", "running"), ("poststop", "stopped")):
        state = json.loads((out / f"{name}.json").read_text())
        assert state["id"] == "hooked" and state["status"] == status, name
        assert state["bundle"] == str(bundle)


def test_failing_hook_fails_create_and_leaves_nothing(minirun, make_bundle, state_root):
    bundle = make_bundle(hooks={"createRuntime": [{"path": "/bin/false"}]})
    result = minirun("create", "-b", str(bundle), "badhook", check=False)
    assert result.returncode != 0 and "hooks.createRuntime[0]" in result.stderr
    assert not os.path.exists(os.path.join(state_root, "badhook"))


def test_spec_writes_a_runnable_config(minirun, tmp_path: Path):
    minirun("spec", "--bundle", str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["process"]["args"] == ["sh"] and config["root"]["path"] == "rootfs"
    again = minirun("spec", "--bundle", str(tmp_path), check=False)
    assert again.returncode != 0 and "exists" in again.stderr


def test_features_and_version(minirun):
    features = json.loads(minirun("features").stdout)
    assert "pid" in features["linux"]["namespaces"]
    assert "CAP_SYS_ADMIN" in features["linux"]["capabilities"]
    assert "minirun version" in minirun("--version").stdout


def test_log_file_json(minirun, tmp_path: Path):
    log = tmp_path / "log.json"
    result = minirun("--log", str(log), "--log-format", "json", "start", "nosuch", check=False)
    assert result.returncode != 0
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "does not exist" in entry["msg"] and entry["time"]


def test_terminal_over_console_socket(minirun, make_bundle, tmp_path: Path):
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    bundle = make_bundle(args=["/bin/sh", "-c", "tty; echo hello-from-pty"],
                         **{"process.terminal": True})
    proc = subprocess.Popen([sys.executable, "-m", "minirun", "--root", str(tmp_path / "state"),
                             "create", "-b", str(bundle), "--console-socket", path, "tty1"])
    conn, _ = listener.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    assert proc.wait(timeout=30) == 0
    master = fds[0]
    minirun("start", "tty1")
    output = b""
    while b"hello-from-pty" not in output:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert b"/dev/pts/0" in output and b"hello-from-pty" in output
    os.close(master)
    conn.close()
    listener.close()
    minirun("delete", "-f", "tty1")


def test_signals_forwarded_in_foreground(make_bundle, state_root):
    bundle = make_bundle(args=["/bin/sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.1; done"])
    proc = subprocess.Popen([sys.executable, "-m", "minirun", "--root", state_root, "run", "-b",
                             str(bundle), "fwd"])
    wait_for(lambda: os.path.exists(os.path.join(state_root, "fwd", "state.json"))
             and not os.path.exists(os.path.join(state_root, "fwd", "exec.fifo")),
             what="the container to start")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 7


@pytest.mark.parametrize("pivot", [True, False], ids=["pivot_root", "no-pivot"])
def test_no_pivot_fallback(minirun, make_bundle, pivot):
    args = ["run", "-b", str(make_bundle(args=["/bin/cat", "/etc/passwd"])), "np"]
    if not pivot:
        args.insert(1, "--no-pivot")
    assert "root:" in minirun(*args).stdout


def test_delete_force_after_minirun_crashed_mid_create(make_bundle, state_root, minirun):
    """SIGKILL `minirun create` while its createRuntime hook runs; delete --force cleans up."""
    from tests.conftest import minirun_cgroup_dirs

    bundle = make_bundle(args=["/bin/sleep", "30"],
                         hooks={"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"]}]})
    proc = subprocess.Popen([sys.executable, "-m", "minirun", "--root", state_root, "create",
                             "-b", str(bundle), "crashed"])
    state_file = os.path.join(state_root, "crashed", "state.json")
    wait_for(lambda: os.path.exists(state_file) and any(
        d.endswith("/crashed") for d in minirun_cgroup_dirs()), what="the cgroups")
    time.sleep(0.5)                              # the hook is running now
    proc.kill()
    proc.wait()
    assert json.loads(minirun("state", "crashed").stdout)["status"] == "stopped"
    minirun("delete", "--force", "crashed")
    assert not os.path.exists(os.path.join(state_root, "crashed"))
    assert not [d for d in minirun_cgroup_dirs() if d.endswith("/crashed")]
