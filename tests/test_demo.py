"""The README's demo command works, run in a throwaway network namespace (DEMO_NETNS=1)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_demo_runs_the_whole_lab():
    env = dict(os.environ, DEMO_NETNS="1")
    result = subprocess.run([str(REPO / "scripts" / "demo")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "PID: 1" in out and "hostname: minirun" in out
    # nginx answers twice: as a pod (192.168.200.2) and as a bundle in a named netns (.3)
    assert out.count("<title>Welcome to nginx!</title>") == 2
    assert out.count("/usr/sbin/nginx") >= 2   # /proc/1/exe inside each nginx
    assert "done: no pod, container" in out
