"""config.json: the one place an OCI bundle's configuration is parsed and validated.

The OCI runtime spec (runtime-spec/config.md) describes every field. The
parser turns the JSON into the dataclasses below, checks every type and
value, and reports problems with their JSON path (``process.args[0]``).
Fields minirun does not implement are refused by name; fields the spec does
not know are ignored, as the spec asks of runtimes.
"""

from __future__ import annotations

import json
import os
import resource
from dataclasses import dataclass, field
from typing import Any

from minirun.config import fields as f
from minirun.config.mounts import Mount, parse_mount, parse_propagation
from minirun.errors import ConfigError

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup")


@dataclass
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    umask: int | None = None


@dataclass
class Rlimit:
    name: str          # RLIMIT_NOFILE
    resource: int      # the number setrlimit(2) wants
    soft: int
    hard: int


@dataclass
class Process:
    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: User = field(default_factory=User)
    terminal: bool = False
    console_size: tuple[int, int] | None = None      # (height, width)
    capabilities: Any = None                         # minirun.capabilities.CapabilitySets
    rlimits: list[Rlimit] = field(default_factory=list)
    no_new_privileges: bool = False
    oom_score_adj: int | None = None


@dataclass
class Namespace:
    type: str
    path: str | None = None     # None: a new namespace; else join this one


@dataclass
class IdMapping:
    container_id: int
    host_id: int
    size: int


@dataclass
class Device:
    path: str
    type: str                   # c, b, u or p
    major: int = 0
    minor: int = 0
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclass
class Hook:
    path: str
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    timeout: int | None = None


HOOK_PHASES = ("prestart", "createRuntime", "createContainer", "startContainer",
               "poststart", "poststop")


@dataclass
class Config:
    bundle: str
    root_path: str
    process: Process
    root_readonly: bool = False
    hostname: str | None = None
    domainname: str | None = None
    mounts: list[Mount] = field(default_factory=list)
    namespaces: list[Namespace] = field(default_factory=list)
    uid_mappings: list[IdMapping] = field(default_factory=list)
    gid_mappings: list[IdMapping] = field(default_factory=list)
    masked_paths: list[str] = field(default_factory=list)
    readonly_paths: list[str] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    sysctl: dict[str, str] = field(default_factory=dict)
    hooks: dict[str, list[Hook]] = field(default_factory=dict)
    rootfs_propagation: int = 0
    cgroups_path: str | None = None
    resources: Any = None        # minirun.config.resources.Resources
    seccomp: Any = None          # minirun.seccomp.SeccompFilter
    annotations: dict[str, str] = field(default_factory=dict)
    oci_version: str = ""
    raw: dict = field(default_factory=dict, repr=False)   # the JSON it came from

    def namespace(self, ns_type: str) -> Namespace | None:
        return next((n for n in self.namespaces if n.type == ns_type), None)


def load_bundle(bundle: str) -> Config:
    """Read and validate ``BUNDLE/config.json``; the root path must exist."""
    bundle = os.path.abspath(bundle)
    if not os.path.isdir(bundle):
        raise ConfigError(bundle, "bundle directory does not exist")
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(path, "no config.json in the bundle (make one with `minirun spec`)") \
            from None
    except OSError as e:
        raise ConfigError(path, e.strerror) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}", f"invalid JSON: {e.msg}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "is not UTF-8 text") from None
    try:
        return parse_config(obj, bundle)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.where}", str(e)[len(e.where) + 2:]) from None


def parse_config(obj: Any, bundle: str) -> Config:
    """Validate a decoded config.json (paths relative to ``bundle``)."""
    f.check_type(obj, dict, "(top level)")
    f.refuse_unsupported(obj, {"solaris": "Solaris", "windows": "Windows", "vm": "VM runtimes",
                               "zos": "z/OS"}, "")
    root = f.field(obj, "root", dict, "", required=True)
    root_path = f.field(root, "path", str, "root", required=True)
    root_path = os.path.normpath(os.path.join(bundle, root_path))
    if not os.path.isdir(root_path):
        raise ConfigError("root.path", f"rootfs {root_path} does not exist")
    linux = f.field(obj, "linux", dict, "", default={})
    cfg = Config(
        bundle=bundle,
        root_path=root_path,
        root_readonly=f.field(root, "readonly", bool, "root", default=False),
        process=parse_process(f.field(obj, "process", dict, "", required=True), "process"),
        hostname=f.field(obj, "hostname", str, ""),
        domainname=f.field(obj, "domainname", str, ""),
        mounts=[parse_mount(m, where) for where, m in f.objects(obj, "mounts", "")],
        annotations=_string_map(obj, "annotations", ""),
        oci_version=f.field(obj, "ociVersion", str, "", default=""),
        raw=obj,
    )
    _parse_hooks(cfg, f.field(obj, "hooks", dict, "", default={}))
    _parse_linux(cfg, linux)
    return cfg


def parse_process(obj: dict, where: str) -> Process:
    """The ``process`` object (also what ``minirun exec --process FILE`` reads)."""
    f.refuse_unsupported(obj, {
        "apparmorProfile": "no AppArmor support", "selinuxLabel": "no SELinux support",
        "ioPriority": "no I/O priorities", "scheduler": "no scheduler policies",
        "execCPUAffinity": "no CPU affinity",
    }, where)
    args = f.str_list(obj, "args", where)
    if not args:
        raise ConfigError(f"{where}.args", "must name a program to run")
    env = f.str_list(obj, "env", where)
    for i, item in enumerate(env):
        if "=" not in item:
            raise ConfigError(f"{where}.env[{i}]", f"expected KEY=VALUE, got {f.describe(item)}")
    cwd = f.field(obj, "cwd", str, where, default="/")
    if not cwd.startswith("/"):
        raise ConfigError(f"{where}.cwd", "must be an absolute path")
    proc = Process(args=args, env=env, cwd=cwd,
                   terminal=f.field(obj, "terminal", bool, where, default=False),
                   no_new_privileges=f.field(obj, "noNewPrivileges", bool, where, default=False),
                   oom_score_adj=f.field(obj, "oomScoreAdj", int, where))
    if proc.oom_score_adj is not None and not -1000 <= proc.oom_score_adj <= 1000:
        raise ConfigError(f"{where}.oomScoreAdj", "must be between -1000 and 1000")
    user = f.field(obj, "user", dict, where, default={})
    uwhere = f"{where}.user"
    f.refuse_unsupported(user, {"username": "Windows only"}, uwhere)
    proc.user = User(uid=_id(user, "uid", uwhere), gid=_id(user, "gid", uwhere),
                     additional_gids=[f.check_type(g, int, f"{uwhere}.additionalGids[{i}]")
                                      for i, g in enumerate(
                                          f.field(user, "additionalGids", list, uwhere,
                                                  default=[]))],
                     umask=f.field(user, "umask", int, uwhere))
    size = f.field(obj, "consoleSize", dict, where)
    if size is not None:
        proc.console_size = (f.field(size, "height", int, f"{where}.consoleSize", default=0),
                             f.field(size, "width", int, f"{where}.consoleSize", default=0))
    if obj.get("capabilities") is not None:
        from minirun.capabilities import parse_capabilities
        proc.capabilities = parse_capabilities(
            f.field(obj, "capabilities", dict, where), f"{where}.capabilities")
    for rwhere, rl in f.objects(obj, "rlimits", where):
        proc.rlimits.append(_parse_rlimit(rl, rwhere))
    return proc


def _id(obj: dict, key: str, where: str) -> int:
    value = f.field(obj, key, int, where, default=0)
    if not 0 <= value < 2**32 - 1:
        raise ConfigError(f"{where}.{key}", f"{value} is not a valid ID")
    return value


def _parse_rlimit(obj: dict, where: str) -> Rlimit:
    name = f.field(obj, "type", str, where, required=True)
    number = getattr(resource, name, None)
    if not name.startswith("RLIMIT_") or number is None:
        raise ConfigError(f"{where}.type", f"unknown rlimit {f.describe(name)}")
    soft = f.field(obj, "soft", int, where, required=True)
    hard = f.field(obj, "hard", int, where, required=True)
    if soft > hard:
        raise ConfigError(where, f"soft limit {soft} is above hard limit {hard}")
    return Rlimit(name, number, soft, hard)


def _string_map(obj: dict, key: str, where: str) -> dict[str, str]:
    path = f"{where}.{key}" if where else key
    values = f.field(obj, key, dict, where, default={})
    return {k: f.check_type(v, str, f"{path}.{k}") for k, v in values.items()}


def _parse_hooks(cfg: Config, hooks: dict) -> None:
    for phase in HOOK_PHASES:
        entries = []
        for where, h in f.objects(hooks, phase, "hooks"):
            path = f.field(h, "path", str, where, required=True)
            if not path.startswith("/"):
                raise ConfigError(f"{where}.path", "must be an absolute path")
            timeout = f.field(h, "timeout", int, where)
            if timeout is not None and timeout <= 0:
                raise ConfigError(f"{where}.timeout", "must be greater than zero")
            entries.append(Hook(path, f.str_list(h, "args", where), f.str_list(h, "env", where),
                                timeout))
        cfg.hooks[phase] = entries


def _parse_linux(cfg: Config, linux: dict) -> None:
    f.refuse_unsupported(linux, {
        "intelRdt": "no Intel RDT", "personality": "no personality(2) domains",
        "mountLabel": "no SELinux support", "timeOffsets": "no time namespaces",
        "memoryPolicy": "no NUMA memory policies", "netDevices": "no network device moves",
    }, "linux")
    seen = set()
    for where, ns in f.objects(linux, "namespaces", "linux"):
        ns_type = f.field(ns, "type", str, where, required=True)
        if ns_type not in NAMESPACE_TYPES:
            raise ConfigError(f"{where}.type", f"unknown namespace type {f.describe(ns_type)} "
                              f"(known: {', '.join(NAMESPACE_TYPES)})")
        if ns_type in seen:
            raise ConfigError(f"{where}.type", f"namespace {ns_type!r} is listed twice")
        seen.add(ns_type)
        path = f.field(ns, "path", str, where)
        if path is not None and not os.path.exists(path):
            raise ConfigError(f"{where}.path", f"namespace file {path} does not exist")
        cfg.namespaces.append(Namespace(ns_type, path or None))
    for key, target in (("uidMappings", cfg.uid_mappings), ("gidMappings", cfg.gid_mappings)):
        for where, m in f.objects(linux, key, "linux"):
            target.append(IdMapping(f.field(m, "containerID", int, where, required=True),
                                    f.field(m, "hostID", int, where, required=True),
                                    f.field(m, "size", int, where, required=True)))
    if (cfg.uid_mappings or cfg.gid_mappings) and not _new_userns(cfg):
        raise ConfigError("linux.uidMappings", "ID mappings need a new user namespace")
    if _new_userns(cfg) and not (cfg.uid_mappings and cfg.gid_mappings):
        raise ConfigError("linux.namespaces", "a new user namespace needs uidMappings and "
                          "gidMappings")
    if cfg.hostname and not _new(cfg, "uts"):
        raise ConfigError("hostname", "setting the hostname needs a new uts namespace")
    cfg.masked_paths = f.str_list(linux, "maskedPaths", "linux")
    cfg.readonly_paths = f.str_list(linux, "readonlyPaths", "linux")
    cfg.sysctl = _string_map(linux, "sysctl", "linux")
    cfg.cgroups_path = f.field(linux, "cgroupsPath", str, "linux")
    propagation = f.field(linux, "rootfsPropagation", str, "linux")
    if propagation:
        cfg.rootfs_propagation = parse_propagation(propagation, "linux.rootfsPropagation")
    for where, d in f.objects(linux, "devices", "linux"):
        cfg.devices.append(_parse_device(d, where))
    from minirun.config.resources import parse_resources
    cfg.resources = parse_resources(f.field(linux, "resources", dict, "linux"),
                                    "linux.resources")
    if linux.get("seccomp") is not None:
        from minirun.seccomp import parse_seccomp
        cfg.seccomp = parse_seccomp(f.field(linux, "seccomp", dict, "linux"), "linux.seccomp")


def _new(cfg: Config, ns_type: str) -> bool:
    ns = cfg.namespace(ns_type)
    return ns is not None and ns.path is None


def _new_userns(cfg: Config) -> bool:
    return _new(cfg, "user")


def _parse_device(obj: dict, where: str) -> Device:
    path = f.field(obj, "path", str, where, required=True)
    if not path.startswith("/dev/"):
        raise ConfigError(f"{where}.path", "must be below /dev")
    dtype = f.field(obj, "type", str, where, required=True)
    if dtype not in ("c", "b", "u", "p"):
        raise ConfigError(f"{where}.type", f"expected c, b, u or p, got {f.describe(dtype)}")
    needs_numbers = dtype != "p"
    return Device(path, dtype,
                  major=f.field(obj, "major", int, where, required=needs_numbers, default=0),
                  minor=f.field(obj, "minor", int, where, required=needs_numbers, default=0),
                  file_mode=f.field(obj, "fileMode", int, where, default=0o666),
                  uid=f.field(obj, "uid", int, where, default=0),
                  gid=f.field(obj, "gid", int, where, default=0))
