"""Local images: names to root filesystems, the search path, and importing once."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from minirun.errors import MinirunError
from minirun.pod import images

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"


def need(bundle: str) -> None:
    if not (BUNDLES / bundle / "rootfs").is_dir():
        pytest.skip(f"bundles/{bundle}/rootfs is not built (scripts/build-bundles {bundle})")


def small_tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o4755)
    (root / "bin" / "sh").symlink_to("/bin/tool")
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return root


@pytest.mark.parametrize("reference", ["busybox", "busybox:latest", "docker.io/library/busybox",
                                       "docker.io/library/busybox:1.36", "localhost:5000/busybox:1",
                                       "busybox@sha256:" + "a" * 64])
def test_references_name_the_repository_bundle(reference):
    need("busybox")
    image = images.resolve_image(reference, [str(BUNDLES)])
    config = json.loads((BUNDLES / "busybox" / "config.json").read_text())
    assert image.name == "busybox"
    assert image.rootfs == str(BUNDLES / "busybox" / "rootfs")
    assert image.default_args == config["process"]["args"]
    assert image.default_env == config["process"]["env"]
    assert image.default_cwd == config["process"]["cwd"]


def test_default_search_path_has_the_repository_bundles(monkeypatch):
    monkeypatch.delenv("MINIRUN_IMAGES", raising=False)
    assert images.search_path() == [str(BUNDLES), images.IMAGES_DIR]


def test_minirun_images_comes_first(tmp_path, monkeypatch):
    small_tree(tmp_path / "imgs" / "busybox" / "rootfs")
    monkeypatch.setenv("MINIRUN_IMAGES", f"{tmp_path / 'nothing'}:{tmp_path / 'imgs'}")
    image = images.resolve_image("busybox")
    assert image.rootfs == str(tmp_path / "imgs" / "busybox" / "rootfs")
    assert image.default_args == [] and image.default_env == [images.DEFAULT_PATH_ENV]


def test_unknown_image_lists_where_it_looked(tmp_path):
    with pytest.raises(MinirunError) as err:
        images.resolve_image("docker.io/library/redis:7", [str(tmp_path / "a"),
                                                           str(tmp_path / "b")])
    message = str(err.value)
    assert "redis" in message and str(tmp_path / "a" / "redis") in message
    assert str(tmp_path / "b" / "redis") in message and "\n" not in message


@pytest.mark.parametrize("reference", ["Busy Box", "UPPER", "a/", ":latest", "a..b"])
def test_bad_names(reference):
    with pytest.raises(MinirunError, match="not an image name"):
        images.image_name(reference)


def test_a_bundle_without_its_rootfs_says_how_to_build_it(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "config.json").write_text(json.dumps({"root": {"path": "rootfs"}}))
    with pytest.raises(MinirunError, match="build-bundles"):
        images.resolve_image("web", [str(tmp_path)])


def test_nginx_brings_its_tmpfs_mounts():
    need("nginx")
    image = images.resolve_image("nginx", [str(BUNDLES)])
    config = json.loads((BUNDLES / "nginx" / "config.json").read_text())
    expected = [m["destination"] for m in config["mounts"] if m["type"] == "tmpfs"
                and m["destination"] not in ("/dev", "/dev/shm")]
    assert image.tmpfs == expected and "/run" in expected


def test_import_a_rootfs_directory_once(tmp_path):
    tree = small_tree(tmp_path / "tree")
    image = images.import_image("tiny", str(tree), str(tmp_path / "images"),
                                args=["/bin/sh"], cwd="/etc")
    rootfs = Path(image.rootfs)
    assert rootfs == tmp_path / "images" / "tiny" / "rootfs"
    assert os.readlink(rootfs / "bin" / "sh") == "/bin/tool"
    assert (image.default_args, image.default_cwd) == (["/bin/sh"], "/etc")
    assert images.resolve_image("tiny:v1", [str(tmp_path / "images")]).rootfs == str(rootfs)
    with pytest.raises(MinirunError, match="exists already"):
        images.import_image("tiny", str(tree), str(tmp_path / "images"))


def test_import_a_docker_export_tarball(tmp_path):
    tree = small_tree(tmp_path / "tree")
    os.link(tree / "bin" / "tool", tree / "bin" / "tool2")
    archive = tmp_path / "export.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for entry in sorted(tree.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(tree)), recursive=False)
    image = images.import_image("tiny", str(archive), str(tmp_path / "images"))
    rootfs = Path(image.rootfs)
    mode = os.lstat(rootfs / "bin" / "tool").st_mode
    assert mode & stat.S_ISUID, "a root filesystem keeps its setuid bits"
    assert os.readlink(rootfs / "bin" / "sh") == "/bin/tool"
    assert os.stat(rootfs / "bin" / "tool2").st_ino == os.stat(rootfs / "bin" / "tool").st_ino
    assert not list((tmp_path / "images").glob(".tiny.importing*"))


def _tar_with(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w") as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize("members, message", [
    ([_member("../evil")], "outside"),
    # link -> the test directory (rootfs, .bad.importing, images), then link/evil
    ([_member("link", tarfile.SYMTYPE, "../../.."), _member("link/evil")], "through the symlink"),
    ([_member("hard", tarfile.LNKTYPE, "../../etc/passwd")], "outside"),
    ([_member("oci-layout"), _member("index.json")], "OCI image layout"),
    ([_member("manifest.json"), _member("abc/layer.tar")], "docker save"),
])
def test_refused_tarballs_leave_nothing(tmp_path, members, message):
    archive = _tar_with(tmp_path / "bad.tar", *members)
    with pytest.raises(MinirunError, match=message):
        images.import_image("bad", str(archive), str(tmp_path / "images"))
    assert os.listdir(tmp_path / "images") == []
    assert not (tmp_path / "evil").exists()


def test_oci_layout_directory_is_refused(tmp_path):
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    with pytest.raises(MinirunError, match="OCI image layout"):
        images.import_image("x", str(layout), str(tmp_path / "images"))


def test_not_a_tarball(tmp_path):
    (tmp_path / "junk").write_text("hello")
    with pytest.raises(MinirunError, match="not a tar archive"):
        images.import_image("x", str(tmp_path / "junk"), str(tmp_path / "images"))
