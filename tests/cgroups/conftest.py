"""Fixtures for the cgroup tests: cgroups made through minirun's API, processes put in
them, and a check at the end that every cgroup directory the tests made is gone.

The tests' cgroups go under a root of this run's own (``minirun-test-<pid>``) rather
than the shared ``minirun`` one, so that concurrent runs never meet, and that root
gets the highest CPU weight: neighbours at the default weight then cannot take the
CPU time a quota allows, and the measurements stay those of the limit alone.
"""

from __future__ import annotations

import itertools
import os
import signal

import pytest
from cgroup_helpers import PREFIX, TEST_ROOT, reap

from minirun.cgroups import Cgroup, detect_layout
from minirun.config.resources import parse_resources

_names = itertools.count()


def _roots() -> list[str]:
    """This run's cgroup root in every hierarchy minirun manages."""
    return [os.path.join(h.own_dir, TEST_ROOT) for h in detect_layout().managed()]


def _own_v2_subtree_control() -> str | None:
    h = next((h for h in detect_layout().hierarchies if h.version == 2), None)
    return None if h is None else os.path.join(h.own_dir, "cgroup.subtree_control")


def _ours() -> list[str]:
    """Test cgroups still present, in this run's root or in the default one."""
    roots = [*_roots(), *(os.path.join(h.own_dir, "minirun") for h in detect_layout().managed())]
    return sorted(os.path.join(root, name) for root in roots if os.path.isdir(root)
                  for name in os.listdir(root) if name.startswith(PREFIX))


def _prepare_root() -> None:
    """Make the run's root (a throwaway container creates it with controllers enabled)
    and give it the highest CPU weight (cgroup v1 cpu.shares, v2 cpu.weight)."""
    probe = Cgroup.for_container(None, f"{PREFIX}probe", root=TEST_ROOT)
    probe.create(None)
    probe.destroy()
    cpu = detect_layout().for_role("cpu")
    if cpu is not None:
        name, value = ("cpu.shares", "262144") if cpu.version == 1 else ("cpu.weight", "10000")
        with open(os.path.join(cpu.own_dir, TEST_ROOT, name), "w") as fh:
            fh.write(value)


@pytest.fixture(scope="session", autouse=True)
def cgroups_left_behind():
    """After the run: no test cgroup remains; the run's root and the v2 controllers it
    enabled are taken back (the latter best effort: another run may be using them)."""
    control = _own_v2_subtree_control()
    enabled_before = set(open(control).read().split()) if control else set()
    _prepare_root()
    yield
    left = _ours()
    for name in sorted({os.path.basename(path) for path in left}):
        for root in (TEST_ROOT, None):
            Cgroup.for_container(None, name, root=root).destroy()
    for root in _roots():
        if os.path.isdir(root):
            os.rmdir(root)
    if control:
        for controller in set(open(control).read().split()) - enabled_before:
            try:
                with open(control, "w") as fh:
                    fh.write(f"-{controller}")
            except OSError:
                pass          # still used by cgroups below
    assert not left, f"cgroup directories left behind: {left}"


@pytest.fixture
def make_cgroup():
    """``make_cgroup({"memory": {"limit": ...}})``: a created Cgroup; at the end of the
    test its processes are killed and reaped and its directories must all be gone."""
    made: list[Cgroup] = []

    def make(resources: dict | None = None) -> Cgroup:
        cg = Cgroup.for_container(None, f"{PREFIX}{next(_names)}", root=TEST_ROOT)
        cg.create(parse_resources(resources))
        made.append(cg)
        return cg

    yield make
    for cg in made:
        cg.kill_all(signal.SIGKILL)
        reap()
        cg.destroy()
        left = [d.path for d in cg.dirs if os.path.exists(d.path)]
        assert not left, f"destroy() left {left}"
