"""How fast is minirun next to runc? Both measured here, in the same run.

    .venv/bin/python bench/runtime_bench.py [--runs 20] [--containers 100]

1. ``minirun run`` of the busybox bundle's /bin/true against ``runc run`` of
   the same bundle and the bare interpreter (``python -c pass``).
   Target: minirun at most 1.5x runc.
2. N containers in a row through the Python API (create, start, wait,
   delete: namespaces, pivot_root and cgroups included) against N ``runc run``.
   Target: at most 0.25x runc's total.
3. What the cgroups (every controller) add to one container: creating and
   removing them through the API. Target: at most 2 ms.

It prints figures and ratios, and asserts nothing: timings are not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = str(REPO / ".venv" / "bin" / "python")
MINIRUN = str(REPO / ".venv" / "bin" / "minirun")


def make_bundle(workdir: Path) -> Path:
    config = json.loads((REPO / "bundles" / "busybox" / "config.json").read_text())
    config["process"]["args"] = ["/bin/true"]
    config["root"]["path"] = str(REPO / "bundles" / "busybox" / "rootfs")
    bundle = workdir / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def time_command(argv_for, runs: int, env: dict) -> list[float]:
    """Wall time of each of ``runs`` runs of the command ``argv_for(i)``, in ms."""
    times = []
    for i in range(runs):
        start = time.perf_counter()
        subprocess.run(argv_for(i), check=True, env=env, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - start) * 1000)
    return times


def cli_benchmark(bundle: Path, workdir: Path, runs: int, env: dict) -> None:
    state, runc_state = workdir / "minirun-state", workdir / "runc-state"
    results = {
        "python -c pass": time_command(lambda i: [PYTHON, "-c", "pass"], runs, env),
        "minirun run": time_command(lambda i: [MINIRUN, "--root", str(state), "run", "-b",
                                               str(bundle), f"bench-{i}"], runs, env),
        "runc run": time_command(lambda i: ["runc", "--root", str(runc_state), "run", "-b",
                                            str(bundle), f"bench-{i}"], runs, env),
    }
    print(f"1. one container running /bin/true, median of {runs} runs")
    for name, times in results.items():
        print(f"   {name:16s} {statistics.median(times):7.1f} ms")
    ratio = statistics.median(results["minirun run"]) / statistics.median(results["runc run"])
    print(f"   minirun / runc   {ratio:7.2f}x   (target <= 1.5x)")


def api_benchmark(bundle: Path, workdir: Path, count: int, env: dict) -> None:
    from minirun import container

    root = str(workdir / "api-state")
    start = time.perf_counter()
    for i in range(count):
        c = container.create(root, f"api-{i}", str(bundle))
        container.start(root, c.record.id)
        os.waitpid(c.record.pid, 0)
        container.delete(root, c.record.id)
    api_ms = (time.perf_counter() - start) * 1000
    runc_state = workdir / "runc-state2"
    start = time.perf_counter()
    for i in range(count):
        subprocess.run(["runc", "--root", str(runc_state), "run", "-b", str(bundle),
                        f"loop-{i}"], check=True, env=env, stdout=subprocess.DEVNULL)
    runc_ms = (time.perf_counter() - start) * 1000
    print(f"2. {count} containers in a row")
    print(f"   minirun API      {api_ms:7.0f} ms  ({api_ms / count:.1f} ms each)")
    print(f"   runc run         {runc_ms:7.0f} ms  ({runc_ms / count:.1f} ms each)")
    print(f"   minirun / runc   {api_ms / runc_ms:7.2f}x   (target <= 0.25x)")


def cgroup_benchmark(count: int) -> None:
    from minirun.cgroups import Cgroup
    from minirun.config.resources import parse_resources

    resources = parse_resources({"cpu": {"quota": 50000, "period": 100000, "shares": 512},
                                 "memory": {"limit": 256 << 20}, "pids": {"limit": 100}},
                                "linux.resources")
    start = time.perf_counter()
    for i in range(count):
        cg = Cgroup.for_container(None, f"bench-cg-{i}")
        cg.create(resources)
        cg.destroy()
    each = (time.perf_counter() - start) * 1000 / count
    print(f"3. cgroups for one container (all controllers, cpu+memory+pids limits): "
          f"{each:.2f} ms to create and remove   (target <= 2 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--containers", type=int, default=100)
    args = parser.parse_args()
    if shutil.which("runc") is None:
        sys.exit("runc is not installed: apt-get install runc")
    # measure what users get: compiled bytecode, written once here
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(REPO / "minirun")], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="minirun-bench-") as tmp:
        workdir = Path(tmp)
        bundle = make_bundle(workdir)
        cli_benchmark(bundle, workdir, args.runs, env)
        api_benchmark(bundle, workdir, args.containers, env)
        cgroup_benchmark(args.containers)


if __name__ == "__main__":
    main()
