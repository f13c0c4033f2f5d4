"""``image: busybox``: find the root filesystem a pod's container runs from.

minirun pulls nothing. An image is a directory on this machine:

    NAME/rootfs/        the files the container sees as /
    NAME/config.json    optional: an OCI runtime config whose ``process`` gives the
                        default command, environment and working directory

which is exactly an OCI bundle, so the repository's ``bundles/busybox`` and
``bundles/nginx`` are images as they stand. The search path, first match wins:

1. the directories in $MINIRUN_IMAGES (colon-separated), if set;
2. the repository's ``bundles/``;
3. ``/var/lib/minirun/images``, where ``import_image`` puts what it imports.

A reference is reduced to its last path component without tag or digest, so
``busybox``, ``busybox:latest`` and ``docker.io/library/busybox:1.36`` all
name ``busybox`` (one local copy, whatever tag the manifest asks for).
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field

from minirun.errors import MinirunError

IMAGES_DIR = "/var/lib/minirun/images"
REPO_BUNDLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "bundles")
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*")
# Mounts every pod container gets anyway (bundle.py); a bundle's other tmpfs
# mounts are the places its program writes to, and come with the image.
STANDARD_MOUNTS = {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                   "/sys/fs/cgroup"}


@dataclass
class Image:
    """A local image: its root filesystem and the defaults of its process."""
    name: str
    rootfs: str                        # absolute path
    default_args: list[str] = field(default_factory=list)   # the image's Cmd
    default_env: list[str] = field(default_factory=list)    # "KEY=value"
    default_cwd: str = "/"
    uid: int = 0                       # the image's default user
    gid: int = 0
    tmpfs: list[str] = field(default_factory=list)          # e.g. nginx's /run
    source: str = ""                   # the directory it was found in


def image_name(reference: str) -> str:
    """``docker.io/library/busybox:1.36`` -> ``busybox``: the last path component,
    without ``:tag`` or ``@digest``."""
    name = reference.strip().split("@", 1)[0].rsplit("/", 1)[-1]
    name = name.split(":", 1)[0]
    if not NAME.fullmatch(name):
        raise MinirunError(f"image {reference!r}: {name!r} is not an image name (lower-case "
                           "letters, digits, and . _ - between them)")
    return name


def search_path(extra: list[str] | None = None) -> list[str]:
    """Where images are looked for, in order: ``extra``, $MINIRUN_IMAGES, bundles/, IMAGES_DIR."""
    env = [p for p in os.environ.get("MINIRUN_IMAGES", "").split(":") if p]
    return [*(extra or []), *env, REPO_BUNDLES, IMAGES_DIR]


def resolve_image(reference: str, path: list[str] | None = None) -> Image:
    """The image a manifest's ``image:`` names, or an error listing where it looked.

    ``path`` replaces the whole search path (tests use it); None means search_path().
    """
    name = image_name(reference)
    places = path if path is not None else search_path()
    for base in places:
        directory = os.path.join(base, name)
        if os.path.isdir(directory) and (os.path.isdir(os.path.join(directory, "rootfs"))
                                         or os.path.isfile(os.path.join(directory,
                                                                        "config.json"))):
            return load_image(name, directory)
    looked = ", ".join(os.path.join(p, name) for p in places)
    raise MinirunError(f"image {reference!r} not found: no {name}/rootfs in {looked} "
                       "(docs/pods.md, \"Adding an image\", says how to add one)")


def load_image(name: str, directory: str) -> Image:
    """Read ``directory/config.json`` (if any) for the defaults; the rootfs must exist."""
    directory = os.path.abspath(directory)
    config_path = os.path.join(directory, "config.json")
    config: dict = {}
    if os.path.exists(config_path):
        try:
            with open(config_path) as fh:
                config = json.load(fh)
        except (OSError, ValueError) as e:
            raise MinirunError(f"image {name}: cannot read {config_path}: {e}") from None
        if not isinstance(config, dict):
            raise MinirunError(f"image {name}: {config_path} is not a JSON object")
    root = config.get("root") if isinstance(config.get("root"), dict) else {}
    rootfs = os.path.normpath(os.path.join(directory, str(root.get("path", "rootfs"))))
    if not os.path.isdir(rootfs):
        raise MinirunError(f"image {name}: its root filesystem {rootfs} does not exist "
                           "(for the repository's bundles: scripts/build-bundles)")
    process = config.get("process") if isinstance(config.get("process"), dict) else {}
    user = process.get("user") if isinstance(process.get("user"), dict) else {}
    tmpfs = [m["destination"] for m in config.get("mounts", []) if isinstance(m, dict)
             and m.get("type") == "tmpfs" and m.get("destination") not in STANDARD_MOUNTS]
    return Image(name=name, rootfs=rootfs,
                 default_args=_strings(process.get("args")),
                 default_env=_strings(process.get("env")) or [DEFAULT_PATH_ENV],
                 default_cwd=str(process.get("cwd") or "/"),
                 uid=int(user.get("uid", 0)), gid=int(user.get("gid", 0)),
                 tmpfs=tmpfs, source=directory)


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


# --- importing ----------------------------------------------------------------------------

def import_image(name: str, source: str, images_dir: str = IMAGES_DIR, *,
                 args: list[str] | None = None, env: list[str] | None = None,
                 cwd: str = "/") -> Image:
    """Unpack a ``docker export`` tarball, or copy a root filesystem directory, once,
    into ``images_dir/NAME/rootfs``; write a config.json with the default process.

    An image that exists already is an error: remove its directory to replace it.
    OCI image layouts (``skopeo copy ... oci:DIR``) and ``docker save`` archives
    hold layers, not a root filesystem, and are refused with a hint.
    """
    import shutil

    name = image_name(name)
    source = os.path.abspath(source)
    target = os.path.join(images_dir, name)
    if os.path.exists(target):
        raise MinirunError(f"image {name} exists already in {target}; remove that directory "
                           "to import it again")
    if not os.path.exists(source):
        raise MinirunError(f"cannot import {source}: no such file or directory")
    os.makedirs(images_dir, exist_ok=True)
    partial = os.path.join(images_dir, f".{name}.importing.{os.getpid()}")
    try:
        os.makedirs(partial)
        rootfs = os.path.join(partial, "rootfs")
        if os.path.isdir(source):
            _refuse_layout(source, os.listdir(source))
            shutil.copytree(source, rootfs, symlinks=True)
        else:
            _unpack_rootfs_tar(source, rootfs)
        config = {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                  "process": {"args": list(args or []), "env": list(env or [DEFAULT_PATH_ENV]),
                              "cwd": cwd}}
        with open(os.path.join(partial, "config.json"), "w") as fh:
            json.dump(config, fh, indent=1)
        os.rename(partial, target)     # an image appears whole or not at all
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return load_image(name, target)


def _refuse_layout(source: str, names: list[str]) -> None:
    if "oci-layout" in names or "index.json" in names:
        raise MinirunError(f"{source} is an OCI image layout (layers, not a root filesystem): "
                           "not supported by minirun; unpack it first (umoci unpack), or "
                           "import a `docker export` tarball")
    if "manifest.json" in names and "rootfs" not in names and "bin" not in names:
        raise MinirunError(f"{source} is a `docker save` archive (layers): import a "
                           "`docker export` of a container instead")


def _unpack_rootfs_tar(path: str, rootfs: str) -> None:
    """Extract a root filesystem tarball (any compression tarfile reads) as root would.

    Member names must stay inside the tree, and no member may be written through
    a symlink the archive made earlier (``bin -> /``, then ``bin/x``): that is how
    a crafted tarball writes outside it. Owners are kept by number, not by the
    host's user names, and setuid bits are kept: it is a root filesystem.
    """
    import tarfile

    try:
        archive = tarfile.open(path)
    except (tarfile.TarError, OSError) as e:
        raise MinirunError(f"cannot import {path}: not a tar archive ({e})") from None
    with archive:
        members = archive.getmembers()
        _refuse_layout(path, [m.name.strip("./") for m in members])
        os.makedirs(rootfs)
        for member in members:
            name = os.path.normpath(member.name.lstrip("/"))
            if name == ".":
                continue
            if name.startswith("..") or (member.islnk() and (
                    member.linkname.startswith("/") or ".." in member.linkname.split("/"))):
                raise MinirunError(f"cannot import {path}: member {member.name!r} points "
                                   "outside the root filesystem")
            _refuse_symlinked_parent(rootfs, name, path)
            member.name = name
            if member.islnk():
                member.linkname = os.path.normpath(member.linkname.lstrip("/"))
            archive.extract(member, rootfs, numeric_owner=True, filter="fully_trusted")


def _refuse_symlinked_parent(rootfs: str, name: str, archive: str) -> None:
    current = rootfs
    for part in name.split("/")[:-1]:
        current = os.path.join(current, part)
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                raise MinirunError(f"cannot import {archive}: {name!r} would be written "
                                   f"through the symlink {part!r}")
        except FileNotFoundError:
            return
