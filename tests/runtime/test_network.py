"""Containers on minirun networks, inside a network namespace the test makes (``sandbox``):
the annotation way, the lab's named-netns way, and nginx answering over HTTP."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NGINX_ROOTFS = REPO / "bundles" / "nginx" / "rootfs"


def nginx_bundle(tmp_path: Path, name: str, **changes) -> Path:
    if not (NGINX_ROOTFS / "usr" / "sbin" / "nginx").exists():
        pytest.fail("bundles/nginx/rootfs is missing: run scripts/build-bundles nginx")
    config = json.loads((REPO / "bundles" / "nginx" / "config.json").read_text())
    config["root"]["path"] = str(NGINX_ROOTFS)
    for key, value in changes.items():
        config[key] = value
    bundle = tmp_path / name
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def http_get(url: str, timeout: float = 10.0) -> str:
    """GET with retries while nginx starts up (inside the test's own namespace)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def links() -> list[str]:
    """This thread's network namespace (sysfs would show the one it was mounted in)."""
    lines = Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


def test_annotation_attaches_a_container(sandbox, minirun, make_bundle, state_root):
    bundle = make_bundle(
        args=["/bin/sh", "-c", "ip -4 -o addr show eth0; ip route; "
              "wget -q -T 2 -O /dev/null http://192.168.200.1:1/ 2>&1; ping -c1 -W2 "
              "192.168.200.1 >/dev/null && echo gateway-reachable"],
        annotations={"org.minirun.network": "default"},
        **{"process.capabilities": {k: ["CAP_NET_RAW"] for k in
                                    ("bounding", "effective", "permitted")}})
    before = links()
    out = minirun("run", "-b", str(bundle), "netc").stdout
    assert "inet 192.168.200.2/24" in out
    assert "default via 192.168.200.1" in out
    assert "gateway-reachable" in out
    # the veth is gone with the container; the bridge stays until the network is removed
    assert [link for link in links() if link.startswith("mr")] == []
    minirun("network", "rm", "default")
    assert links() == [link for link in before if link != "minirun0"]


def test_nginx_answers_at_its_address(sandbox, minirun, tmp_path, state_root):
    bundle = nginx_bundle(tmp_path, "nginx", annotations={"org.minirun.network": "default"})
    minirun("run", "-d", "-b", str(bundle), "web")
    try:
        assert "Welcome to nginx!" in http_get("http://192.168.200.2/")
        exe = minirun("exec", "web", "/bin/readlink", "/proc/1/exe").stdout.strip()
        assert exe == "/usr/sbin/nginx"                 # nginx's master is PID 1
    finally:
        minirun("delete", "--force", "web")
        minirun("network", "rm", "default")


def test_lab_way_named_netns(sandbox, minirun, tmp_path, state_root):
    """The shell-script lab, with minirun commands: netns add, attach, a bundle joining it."""
    name = f"minirun-test-{os.getpid()}"
    path = minirun("netns", "add", name).stdout.strip()
    try:
        assert path == f"/run/netns/{name}"
        minirun("network", "attach", "default", "--netns", path, "--id", "lab")
        namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
        namespaces.append({"type": "network", "path": path})
        bundle = nginx_bundle(tmp_path, "lab", linux={
            **json.loads((REPO / "bundles" / "nginx" / "config.json").read_text())["linux"],
            "namespaces": namespaces})
        minirun("run", "-d", "-b", str(bundle), "labweb")
        try:
            assert "Welcome to nginx!" in http_get("http://192.168.200.2/")
        finally:
            minirun("delete", "--force", "labweb")
        minirun("network", "detach", "default", "--id", "lab")
        minirun("network", "rm", "default")
    finally:
        minirun("netns", "rm", name, check=False)
    assert name not in minirun("netns", "ls").stdout.split()
    assert not os.path.exists(path)


def test_annotation_needs_a_new_network_namespace(minirun, make_bundle, state_root):
    bundle = make_bundle(annotations={"org.minirun.network": "default"},
                         **{"linux.namespaces": [{"type": t} for t in ("pid", "mount", "uts")]})
    result = minirun("create", "-b", str(bundle), "nonet", check=False)
    assert result.returncode != 0
    assert "org.minirun.network" in result.stderr and "new network namespace" in result.stderr
    assert os.listdir(state_root) == [] or os.listdir(state_root) == [".networks"]
