"""Pods on this machine, through the real command line, in a network namespace of the
test's own: init containers, restarts with back-off, OOMKilled, the pause holding the
namespaces, grace periods, bad manifests, and the static-pod kubelet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from minirun.state import process_state


@pytest.fixture
def pods(sandbox, state_root, tmp_path, monkeypatch):
    """Write manifests and run ``minirun`` (its pods live in the test's namespace)."""
    monkeypatch.setenv("MINIRUN_BACKOFF_SECONDS", "1")

    class Pods:
        root = state_root

        def manifest(self, text: str, name: str = "pod.yaml") -> Path:
            path = tmp_path / name
            path.write_text(textwrap.dedent(text))
            return path

        def run(self, *args: str, check: bool = True, timeout: float = 60):
            result = subprocess.run([sys.executable, "-m", "minirun", "--root", state_root,
                                     *args], capture_output=True, text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
            if check and result.returncode != 0:
                raise AssertionError(f"{' '.join(args)}: {result.stderr.strip()}")
            return result

        def start(self, path: Path, name: str) -> None:
            """`pod create` then `pod start`: the sandbox, then a supervisor in the background."""
            self.run("pod", "create", str(path))
            self.run("pod", "start", name)

        def inspect(self, name: str) -> dict:
            return json.loads(self.run("pod", "inspect", "-o", "json", name).stdout)

        def wait(self, name: str, predicate, timeout: float = 30, what: str = ""):
            deadline = time.monotonic() + timeout
            while True:
                status = self.inspect(name)
                if predicate(status):
                    return status
                assert time.monotonic() < deadline, f"timed out waiting for {what}: {status}"
                time.sleep(0.1)

    p = Pods()
    yield p
    names = os.listdir(Path(state_root) / ".pods") if (Path(state_root) / ".pods").exists() \
        else []
    for name in names:
        p.run("pod", "rm", "--grace-period", "0", name, check=False)
    assert not names, f"pods left behind: {names}"


def app(status: dict, name: str) -> dict:
    return next(c for c in status["status"]["containerStatuses"] if c["name"] == name)


def test_pod_run_with_init_container_and_shared_volume(pods):
    path = pods.manifest("""
        apiVersion: v1
        kind: Pod
        metadata: {name: hello}
        spec:
          restartPolicy: Never
          initContainers:
          - name: setup
            image: busybox
            command: ["sh", "-c", "echo made-by-init > /work/note"]
            volumeMounts: [{name: work, mountPath: /work}]
          containers:
          - name: main
            image: busybox
            command: ["sh", "-c", "cat /work/note; hostname; echo $$$$"]   # $$ escapes $
            volumeMounts: [{name: work, mountPath: /work}]
          volumes: [{name: work, emptyDir: {}}]
        """)
    result = pods.run("pod", "run", str(path))
    assert "[main] made-by-init" in result.stdout
    assert "[main] hello" in result.stdout          # the pause's UTS namespace, named by the pod
    assert "[main] 1" in result.stdout              # its own PID namespace: PID 1
    assert "Succeeded" in result.stderr
    assert not (Path(pods.root) / ".pods" / "hello").exists()


def test_restart_always_backs_off_and_keeps_ip_and_hostname(pods):
    path = pods.manifest("""
        apiVersion: v1
        kind: Pod
        metadata: {name: crashy}
        spec:
          containers:
          - name: app
            image: busybox
            command: ["sh", "-c", "hostname; ip -4 -o addr show eth0; sleep 0.2; exit 3"]
        """)
    pods.start(path, "crashy")
    status = pods.wait("crashy", lambda s: app(s, "app")["restartCount"] >= 3, timeout=40,
                       what="three restarts")
    last = app(status, "app")["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"
    log = pods.run("pod", "logs", "crashy").stdout
    hostnames = [line for line in log.splitlines() if line == "crashy"]
    addresses = {line.split()[3] for line in log.splitlines() if "inet " in line}
    assert len(hostnames) >= 3 and len(addresses) == 1      # same name, same IP each time
    assert addresses == {status["status"]["podIP"] + "/24"}
    # between two runs it waits out its back-off, which kubectl shows as CrashLoopBackOff
    waiting = pods.wait("crashy", lambda s: app(s, "app")["state"].get("waiting"),
                        what="the back-off")
    assert app(waiting, "app")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert "CrashLoopBackOff" in pods.run("pod", "ls").stdout
    pods.run("pod", "rm", "--grace-period", "0", "crashy")


def test_backoff_doubles(pods):
    """Start times of a crashing container: the gaps grow 1 s, 2 s, 4 s."""
    path = pods.manifest("""
        apiVersion: v1
        kind: Pod
        metadata: {name: backoff}
        spec:
          containers:
          - name: app
            image: busybox
            command: ["sh", "-c", "cut -d ' ' -f1 /proc/uptime; exit 1"]
        """)
    pods.start(path, "backoff")
    deadline = time.monotonic() + 40
    while len(starts := pods.run("pod", "logs", "backoff").stdout.split()) < 4:
        assert time.monotonic() < deadline, starts
        time.sleep(0.2)
    starts = [float(x) for x in starts[:4]]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert 0.8 <= gaps[0] <= 2.0 and 1.8 <= gaps[1] <= 3.5 and 3.6 <= gaps[2] <= 6.0, gaps
    pods.run("pod", "rm", "--grace-period", "0", "backoff")


def test_oom_killed_reason(pods):
    path = pods.manifest("""
        apiVersion: v1
        kind: Pod
        metadata: {name: hungry}
        spec:
          restartPolicy: Never
          containers:
          - name: eater
            image: busybox
            command: ["awk", "BEGIN { s = \\"x\\"; while (length(s) < 134217728) s = s s }"]
            resources:
              limits: {memory: 32Mi, cpu: 500m}
        """)
    pods.start(path, "hungry")
    status = pods.wait("hungry", lambda s: app(s, "eater")["state"].get("terminated"),
                       what="the OOM kill")
    terminated = app(status, "eater")["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled" and terminated["exitCode"] == 137
    assert status["status"]["phase"] == "Failed"
    assert "OOMKilled" in pods.run("pod", "ls").stdout
    pods.run("pod", "rm", "hungry")


def test_killing_the_pause_ends_the_pod(pods):
    path = pods.manifest("""
        apiVersion: v1
        kind: Pod
        metadata: {name: holder}
        spec:
          containers:
          - {name: app, image: busybox, command: ["sleep", "300"]}
        """)
    pods.start(path, "holder")
    status = pods.wait("holder", lambda s: app(s, "app")["state"].get("running"),
                       what="running")
    app_pid = app(status, "app")["hostPID"]
    os.kill(status["minirun"]["sandbox"]["pid"], signal.SIGKILL)
    status = pods.wait("holder", lambda s: s["status"]["phase"] == "Failed",
                       what="the pod to end")
    assert process_state(app_pid) in (None, "Z")
    pods.run("pod", "rm", "holder")


def test_delete_waits_the_grace_period_then_kills(pods):
    path = pods.manifest("""
        apiVersion: v1
        kind: Pod
        metadata: {name: graceful}
        spec:
          terminationGracePeriodSeconds: 2
          containers:
          - name: polite
            image: busybox
            command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
          - name: stubborn
            image: busybox
            command: ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]
        """)
    pods.start(path, "graceful")
    pods.wait("graceful", lambda s: all(c["state"].get("running")
                                        for c in s["status"]["containerStatuses"]),
              what="both running")
    log_dir = Path(pods.root) / ".pods" / "graceful" / "logs"
    start = time.monotonic()
    pods.run("pod", "rm", "graceful")
    took = time.monotonic() - start
    assert 1.8 <= took <= 8, f"rm took {took:.1f} s for a 2 s grace period"
    assert not log_dir.exists()


def test_bad_manifests_leave_nothing(pods, tmp_path):
    cases = {
        "spec.containers[0].resources.limits.memory": """
            apiVersion: v1
            kind: Pod
            metadata: {name: bad}
            spec:
              containers:
              - {name: a, image: busybox, resources: {limits: {memory: 1GB}}}
            """,
        "spec.containers[1].name": """
            apiVersion: v1
            kind: Pod
            metadata: {name: bad}
            spec:
              containers:
              - {name: a, image: busybox}
              - {name: a, image: busybox}
            """,
        "metadata.name": """
            apiVersion: v1
            kind: Pod
            metadata: {labels: {app: x}}
            spec:
              containers: [{name: a, image: busybox}]
            """,
        "no-such-image": """
            apiVersion: v1
            kind: Pod
            metadata: {name: bad}
            spec:
              containers: [{name: a, image: no-such-image}]
            """,
    }
    for needle, text in cases.items():
        result = pods.run("pod", "create", str(pods.manifest(text, "bad.yaml")), check=False)
        assert result.returncode != 0 and needle in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert not list((Path(pods.root) / ".pods").glob("*")) if (
            Path(pods.root) / ".pods").exists() else True


def test_inspect_shows_what_a_student_can_read(pods):
    path = pods.manifest("""
        apiVersion: v1
        kind: Pod
        metadata: {name: readable}
        spec:
          containers:
          - name: app
            image: busybox
            command: ["sleep", "300"]
            resources:
              requests: {cpu: 250m, memory: 64Mi}
        """)
    pods.start(path, "readable")
    status = pods.wait("readable", lambda s: app(s, "app")["state"].get("running"),
                       what="running")
    c = app(status, "app")
    assert status["status"]["qosClass"] == "Burstable"
    assert c["cgroup"] and (Path(c["cgroup"], "memory.limit_in_bytes").exists()
                            or Path(c["cgroup"], "memory.max").exists())
    assert str(c["hostPID"]) in Path(c["cgroup"], "cgroup.procs").read_text().split()
    assert int(Path(f"/proc/{c['hostPID']}/oom_score_adj").read_text()) == c["oomScoreAdj"]
    as_yaml = yaml.safe_load(pods.run("pod", "inspect", "readable").stdout)
    assert as_yaml["status"]["podIP"] == status["status"]["podIP"]
    out = pods.run("pod", "exec", "readable", "--", "cat", "/proc/1/cmdline").stdout
    assert out.startswith("sleep")
    pods.run("pod", "rm", "--grace-period", "0", "readable")


def test_static_pod_kubelet(pods, tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    log = tmp_path / "kubelet.log"
    kubelet = subprocess.Popen([sys.executable, "-m", "minirun", "--root", pods.root, "kubelet",
                                "--manifests", str(manifests)], stderr=open(log, "w"))
    try:
        def names() -> list[str]:
            return [line.split()[0] for line in pods.run("pod", "ls").stdout.splitlines()[1:]]

        def wait_names(expected: list[str]) -> None:
            deadline = time.monotonic() + 30
            while names() != expected:
                assert time.monotonic() < deadline, (names(), log.read_text())
                time.sleep(0.2)

        spec = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "static"},
                "spec": {"terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "app", "image": "busybox",
                                         "command": ["sleep", "300"]}]}}
        (manifests / "static.yaml").write_text(yaml.safe_dump(spec))
        wait_names(["static"])
        first_uid = pods.inspect("static")["metadata"]["uid"]
        spec["spec"]["containers"][0]["command"] = ["sleep", "301"]
        (manifests / "static.yaml").write_text(yaml.safe_dump(spec))
        def recreated() -> bool:
            result = pods.run("pod", "inspect", "-o", "json", "static", check=False)
            return result.returncode == 0 and json.loads(result.stdout)["metadata"]["uid"] \
                != first_uid

        deadline = time.monotonic() + 30
        while not recreated():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        (manifests / "static.yaml").unlink()
        wait_names([])
        (manifests / "again.yaml").write_text(yaml.safe_dump(
            {**spec, "metadata": {"name": "again"}}))
        wait_names(["again"])
    finally:
        kubelet.send_signal(signal.SIGTERM)
        assert kubelet.wait(timeout=60) == 0, log.read_text()
    assert pods.run("pod", "ls").stdout.splitlines()[1:] == []     # SIGTERM cleaned up


THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.fixture
def thp_restored():
    """Whatever the test does to transparent huge pages, the machine gets its setting back."""
    if not THP.exists():
        pytest.skip("this kernel has no transparent huge pages")
    before = THP.read_text().split("[")[1].split("]")[0]
    yield before
    THP.write_text(before)


def test_privileged_init_container_writes_sys(pods, thp_restored):
    """The lab's trick: an init container with the host's /sys sets THP to never."""
    wanted = "never" if thp_restored != "never" else "madvise"
    path = pods.manifest(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: thp}}
        spec:
          restartPolicy: Never
          initContainers:
          - name: disable-thp
            image: busybox
            command: ["sh", "-c", "echo {wanted} > $(THP_FILE)"]
            env: [{{name: THP_FILE, value: /host-sys/kernel/mm/transparent_hugepage/enabled}}]
            securityContext: {{privileged: true}}
            volumeMounts: [{{name: sys, mountPath: /host-sys}}]
          containers:
          - name: app
            image: busybox
            command: ["cat", "/sys/kernel/mm/transparent_hugepage/enabled"]
          volumes:
          - name: sys
            hostPath: {{path: /sys}}
        """)
    result = pods.run("pod", "run", str(path))
    assert f"[{wanted}]" in THP.read_text()
    assert "[app] " in result.stdout and f"[{wanted}]" in result.stdout


def test_shared_pid_namespace_has_the_pause_as_pid_one(pods):
    path = pods.manifest("""
        apiVersion: v1
        kind: Pod
        metadata: {name: shared}
        spec:
          shareProcessNamespace: true
          restartPolicy: Never
          containers:
          - {name: a, image: busybox, command: ["sh", "-c", "sleep 0.5; ps -o pid,args"]}
          - {name: b, image: busybox, command: ["sleep", "1"]}
        """)
    start = time.monotonic()
    out = pods.run("pod", "run", str(path)).stdout
    assert "[a]     1 /pause" in out                 # the holder is init of the shared namespace
    assert "sleep 1" in out                          # and b's process is visible to a
    assert time.monotonic() - start < 20             # tearing down does not wait on a zombie
