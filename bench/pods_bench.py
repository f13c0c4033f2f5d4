"""100 pods on this machine: how long to start them all, what each costs in memory,
how long to delete them all, and proof that nothing is left.

    .venv/bin/python bench/pods_bench.py [--pods 100]

Each pod is a pause holder plus one sleeping busybox container, on the default
network. Everything runs inside a network namespace made for the run (the
machine's own is not touched) with a throwaway state root and cgroup root.
One supervisor serves every pod, as `minirun kubelet` does. Targets: all
started in at most 10 s, all deleted in at most 5 s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {{name: bench-{i}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: sleeper
    image: busybox
    command: ["sleep", "3600"]
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def remove_cgroup_root(name: str) -> None:
    """The run's own cgroup root and the kubelet's QoS levels in it, now empty."""
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(base) == name:
            for level in ("kubepods/besteffort", "kubepods/burstable", "kubepods", ""):
                try:
                    os.rmdir(os.path.join(base, level))
                except OSError:
                    pass
            dirs.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100)
    args = parser.parse_args()
    os.environ["MINIRUN_CGROUP_ROOT"] = f"minirun-bench-{os.getpid()}"

    from minirun import libc
    from minirun.pod import lifecycle
    from minirun.pod.supervisor import Supervisor

    libc.unshare(libc.lib.CLONE_NEWNET)       # a private network stack for the run
    os.system("ip link set lo up")
    with tempfile.TemporaryDirectory(prefix="minirun-pods-") as tmp:
        root = os.path.join(tmp, "state")
        manifests = []
        for i in range(args.pods):
            path = os.path.join(tmp, f"pod{i}.yaml")
            Path(path).write_text(MANIFEST.format(i=i))
            manifests.append(path)
        supervisor = Supervisor(root)

        start = time.perf_counter()
        for path in manifests:
            record = lifecycle.create_pod(root, path)
            supervisor.add(record.name)
        while not all(m.record.status("sleeper").state == "running"
                      for m in supervisor.pods.values()):
            supervisor.step(timeout=0.05)
        started = time.perf_counter() - start

        pauses = [m.record.sandbox_pid for m in supervisor.pods.values()]
        pause_rss = sum(rss_kib(p) for p in pauses) / len(pauses)
        supervisor_rss = rss_kib(os.getpid())

        start = time.perf_counter()
        for name in list(supervisor.pods):
            supervisor.remove(name, grace=0)
        deleted = time.perf_counter() - start

        left_pods = os.listdir(os.path.join(root, ".pods"))
        left_containers = [n for n in os.listdir(root) if not n.startswith(".")]
        left_links = [n for n in os.listdir("/sys/class/net") if n.startswith("mr")]
        cgroup_root = os.environ["MINIRUN_CGROUP_ROOT"]
        left_cgroups = [os.path.join(b, d) for b, ds, _ in os.walk("/sys/fs/cgroup")
                        for d in ds if d.startswith("pod") and cgroup_root in b]
        remove_cgroup_root(cgroup_root)

    print(f"{args.pods} pods (pause + one sleeping busybox each)")
    print(f"  started all in      {started:6.2f} s   ({started / args.pods * 1000:.0f} ms a pod; "
          f"target <= 10 s)")
    print(f"  deleted all in      {deleted:6.2f} s   ({deleted / args.pods * 1000:.0f} ms a pod; "
          f"target <= 5 s)")
    print(f"  RSS per pod         {pause_rss:6.0f} KiB (its pause holder), plus one shared "
          f"supervisor of {supervisor_rss / 1024:.0f} MiB for all pods")
    print(f"  left behind         pods {left_pods}, containers {left_containers}, "
          f"veths {left_links}, pod cgroups {left_cgroups}")


if __name__ == "__main__":
    main()
