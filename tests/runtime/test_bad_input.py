"""Bad input: one clear line on stderr, a non-zero exit, no traceback, nothing left."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def assert_one_clear_line(result, *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_nothing_left(state_root: str) -> None:
    left = os.listdir(state_root) if os.path.exists(state_root) else []
    assert [n for n in left if not n.startswith(".")] == []


def write_config(tmp_path: Path, text: str) -> Path:
    bundle = tmp_path / "bad"
    bundle.mkdir(exist_ok=True)
    (bundle / "config.json").write_text(text)
    return bundle


def test_missing_bundle(minirun, state_root, tmp_path):
    result = minirun("create", "-b", str(tmp_path / "nope"), "x", check=False)
    assert_one_clear_line(result, "bundle directory does not exist")
    assert_nothing_left(state_root)


def test_missing_config(minirun, state_root, tmp_path):
    result = minirun("create", "-b", str(tmp_path), "x", check=False)
    assert_one_clear_line(result, "config.json", "minirun spec")
    assert_nothing_left(state_root)


def test_json_syntax_error_has_line_and_column(minirun, state_root, tmp_path):
    bundle = write_config(tmp_path, '{\n  "process": {\n    "args": ["sh",]\n  }\n}\n')
    result = minirun("create", "-b", str(bundle), "x", check=False)
    assert_one_clear_line(result, "config.json:3:", "invalid JSON")
    assert_nothing_left(state_root)


@pytest.mark.parametrize("change, where", [
    ({"process.args": ["/bin/sh", 5]}, "process.args[1]"),
    ({"process.args": []}, "process.args"),
    ({"process.env": ["NOEQUALS"]}, "process.env[0]"),
    ({"process.user.uid": "root"}, "process.user.uid"),
    ({"process.cwd": "relative"}, "process.cwd"),
    ({"linux.namespaces": [{"type": "time"}]}, "linux.namespaces[0].type"),
    ({"linux.namespaces": [{"type": "pid"}, {"type": "pid"}]}, "linux.namespaces[1].type"),
    ({"mounts": [{"destination": "tmp", "type": "tmpfs"}]}, "mounts[0].destination"),
    ({"mounts": [{"destination": "/x", "type": "tmpfs", "options": ["idmap"]}]},
     "mounts[0].options[0]"),
    ({"process.rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]},
     "process.rlimits[0].type"),
    ({"process.capabilities": {"bounding": ["CAP_FLY"]}}, "process.capabilities.bounding[0]"),
    ({"linux.intelRdt": {"closID": "x"}}, "linux.intelRdt"),
    ({"process.apparmorProfile": "docker-default"}, "process.apparmorProfile"),
    ({"linux.seccomp": {"defaultAction": "SCMP_ACT_NOTIFY",
                        "listenerPath": "/run/x.sock"}}, "linux.seccomp"),
])
def test_wrong_values_name_their_json_path(minirun, make_bundle, state_root, change, where):
    result = minirun("create", "-b", str(make_bundle(**change)), "x", check=False)
    assert_one_clear_line(result, where)
    assert_nothing_left(state_root)


def test_missing_rootfs(minirun, make_bundle, state_root, tmp_path):
    result = minirun("create", "-b", str(make_bundle(rootfs=tmp_path / "no-rootfs")), "x",
                     check=False)
    assert_one_clear_line(result, "root.path", "does not exist")
    assert_nothing_left(state_root)


def test_program_not_found(minirun, make_bundle, state_root):
    result = minirun("create", "-b", str(make_bundle(args=["no-such-program"])), "x",
                     check=False)
    assert_one_clear_line(result, "executable file not found")
    assert_nothing_left(state_root)


@pytest.mark.parametrize("bad_id", ["", "../escape", "a/b", ".hidden", "x" * 300, ".."])
def test_invalid_ids(minirun, make_bundle, state_root, bad_id):
    result = minirun("create", "-b", str(make_bundle()), bad_id, check=False)
    assert_one_clear_line(result, "invalid container ID")
    assert_nothing_left(state_root)


def test_duplicate_id(minirun, make_bundle, state_root):
    bundle = make_bundle(args=["/bin/sleep", "30"])
    minirun("create", "-b", str(bundle), "dup")
    result = minirun("create", "-b", str(bundle), "dup", check=False)
    assert_one_clear_line(result, "already exists")
    assert json.loads(minirun("state", "dup").stdout)["status"] == "created"
    minirun("delete", "dup")
    assert_nothing_left(state_root)


@pytest.mark.parametrize("command", [["start"], ["kill"], ["delete"], ["state"], ["ps"],
                                     ["exec", "--", "MISSING", "true"]])
def test_commands_on_a_missing_container(minirun, command):
    args = [a if a != "MISSING" else "ghost" for a in command]
    if "ghost" not in args:
        args.append("ghost")
    result = minirun(*args, check=False)
    assert_one_clear_line(result, "does not exist")


def test_unknown_flag_is_one_line(minirun):
    assert_one_clear_line(minirun("create", "--frobnicate", "x", check=False), "frobnicate")


def test_systemd_cgroup_refused(minirun):
    assert_one_clear_line(minirun("--systemd-cgroup", "list", check=False), "systemd")
