"""Pod manifests: the subset of the Kubernetes Pod API (core/v1) that minirun runs.

``load_pod("web.yaml")`` reads YAML or JSON (JSON is YAML too) into the
dataclasses below, with the defaults the API server would fill in
(pkg/apis/core/v1/defaults.go): namespace "default", restartPolicy Always,
terminationGracePeriodSeconds 30, a generated uid, and requests copied from
limits where only limits are given.

Then it checks what the API server's validation would refuse
(pkg/apis/core/validation/validation.go), each error naming its field:
``spec.containers[1].resources.limits.memory: "1GB" is not a quantity ...``.
Fields this subset does not know are not errors but warnings, returned in
``Pod.warnings`` for the caller to print, as kubectl prints the API server's
``unknown field`` warnings. Fields that would change what runs if ignored
(``valueFrom``, ``subPath``, other volume types) are refused instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from minirun.config import fields as f
from minirun.config.quantity import Quantity, parse_amount, parse_quantity, to_bytes
from minirun.errors import ConfigError

# Resources a container may ask for; hugepages-<size> are the kernel's page sizes
# named in binary SI (v1helper.HugePageResourceName).
CPU, MEMORY = "cpu", "memory"
HUGEPAGE_SIZES = {"hugepages-2Mi": 2 << 20, "hugepages-1Gi": 1 << 30}
RESOURCE_NAMES = (CPU, MEMORY, *HUGEPAGE_SIZES)
RESTART_POLICIES = ("Always", "OnFailure", "Never")
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                   "CharDevice", "BlockDevice")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_ID = 2**31 - 1          # runAsUser and runAsGroup: validation.ValidateNonnegativeField

# Known fields per object. A field outside these is a warning; "ignored" ones are
# known to Kubernetes and deliberately without effect here (the reason is printed).
IGNORED = {
    "imagePullPolicy": "images are local and never pulled",
    "terminationMessagePath": "no termination messages",
    "terminationMessagePolicy": "no termination messages",
    "status": "the status is what minirun reports, not what it reads",
    "creationTimestamp": "set by the API server",
    "dnsPolicy": "the pod uses the network's resolver setup",
    "schedulerName": "no scheduler: the pod runs on this machine",
    "nodeName": "no scheduler: the pod runs on this machine",
}


@dataclass
class ObjectMeta:
    name: str
    namespace: str = "default"
    uid: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class ResourceRequirements:
    """``resources``: requests (what the pod is promised) and limits (the most it gets)."""
    requests: dict[str, Quantity] = field(default_factory=dict)
    limits: dict[str, Quantity] = field(default_factory=dict)


@dataclass
class EnvVar:
    name: str
    value: str = ""


@dataclass
class ContainerPort:
    container_port: int
    host_port: int | None = None
    protocol: str = "TCP"
    name: str = ""


@dataclass
class SecurityContext:
    """Container ``securityContext``; user fields left None fall back to the pod's."""
    privileged: bool = False
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    capabilities_add: list[str] = field(default_factory=list)    # "NET_ADMIN", "ALL"
    capabilities_drop: list[str] = field(default_factory=list)
    allow_privilege_escalation: bool | None = None
    read_only_root_filesystem: bool = False


@dataclass
class PodSecurityContext:
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    supplemental_groups: list[int] = field(default_factory=list)


@dataclass
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool = False


@dataclass
class Container:
    name: str
    image: str
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: list[EnvVar] = field(default_factory=list)
    working_dir: str = ""
    resources: ResourceRequirements = field(default_factory=ResourceRequirements)
    ports: list[ContainerPort] = field(default_factory=list)
    security_context: SecurityContext = field(default_factory=SecurityContext)
    volume_mounts: list[VolumeMount] = field(default_factory=list)
    init: bool = False           # an initContainers entry
    where: str = ""              # its path in the manifest: spec.containers[0]


@dataclass
class Volume:
    """One of ``emptyDir`` (kind "emptyDir") or ``hostPath`` (kind "hostPath")."""
    name: str
    kind: str
    path: str = ""               # hostPath.path
    type: str = ""               # hostPath.type
    medium: str = ""             # emptyDir.medium: "" (disk) or "Memory" (tmpfs)
    size_limit: int | None = None   # emptyDir.sizeLimit, bytes


@dataclass
class Pod:
    metadata: ObjectMeta
    containers: list[Container]
    init_containers: list[Container] = field(default_factory=list)
    restart_policy: str = "Always"
    share_process_namespace: bool = False
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    hostname: str = ""
    volumes: list[Volume] = field(default_factory=list)
    termination_grace_period_seconds: int = 30
    priority_class_name: str = ""
    security_context: PodSecurityContext = field(default_factory=PodSecurityContext)
    source: str | None = None    # the file it came from
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def uid(self) -> str:
        return self.metadata.uid

    def all_containers(self) -> list[Container]:
        """Init containers first, in the order they run, then the app containers."""
        return [*self.init_containers, *self.containers]

    def container(self, name: str) -> Container:
        for c in self.all_containers():
            if c.name == name:
                return c
        raise KeyError(name)

    def volume(self, name: str) -> Volume:
        for v in self.volumes:
            if v.name == name:
                return v
        raise KeyError(name)


# --- reading the file --------------------------------------------------------------

def load_pod(path: str) -> Pod:
    """Read a Pod manifest (YAML or JSON). Every error is one line naming the file."""
    import yaml

    try:
        with open(path, "rb") as fh:
            text = fh.read().decode()
    except FileNotFoundError:
        raise ConfigError(path, "no such file") from None
    except IsADirectoryError:
        raise ConfigError(path, "is a directory, not a Pod manifest") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "is not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(path, e.strerror or str(e)) from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(where, f"invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(path, f"invalid YAML: {e}") from None
    if len(documents) != 1:
        raise ConfigError(path, f"holds {len(documents)} documents; a manifest is one Pod")
    try:
        return parse_pod(documents[0], os.path.abspath(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.where}", str(e)[len(e.where) + 2:]) from None


def parse_pod(obj: Any, source: str | None = None) -> Pod:
    """Validate a decoded manifest and apply the API server's defaults."""
    warnings: list[str] = []
    f.check_type(obj, dict, "(top level)")
    _note_unknown(obj, {"apiVersion", "kind", "metadata", "spec"}, "", warnings)
    api_version = f.field(obj, "apiVersion", str, "", required=True)
    if api_version != "v1":
        raise ConfigError("apiVersion", f"{f.describe(api_version)}: a Pod is apiVersion v1")
    kind = f.field(obj, "kind", str, "", required=True)
    if kind != "Pod":
        raise ConfigError("kind", f"{f.describe(kind)}: minirun runs Pod manifests only")
    metadata = _parse_metadata(f.field(obj, "metadata", dict, "", required=True), warnings)
    spec = f.field(obj, "spec", dict, "", required=True)
    pod = Pod(metadata=metadata, containers=[], source=source, warnings=warnings)
    _parse_spec(pod, spec, warnings)
    return pod


def _note_unknown(obj: dict, known: set[str], where: str, warnings: list[str]) -> None:
    for key in obj:
        if key in known:
            continue
        path = f"{where}.{key}" if where else key
        reason = IGNORED.get(key, "unknown field")
        warnings.append(f"{path}: {reason}, ignored")


def _dns_label(value: str, where: str, what: str) -> str:
    if len(value) > 63 or not DNS_LABEL.fullmatch(value):
        raise ConfigError(where, f"{f.describe(value)} is not a valid {what}: at most 63 "
                          "lower-case letters, digits and '-', starting and ending with a "
                          "letter or digit (RFC 1123 label)")
    return value


def _string_map(obj: dict, key: str, where: str) -> dict[str, str]:
    path = f"{where}.{key}"
    values = f.field(obj, key, dict, where, default={})
    return {str(k): f.check_type(v, str, f"{path}.{k}") for k, v in values.items()}


def _parse_metadata(obj: dict, warnings: list[str]) -> ObjectMeta:
    import uuid

    where = "metadata"
    _note_unknown(obj, {"name", "namespace", "uid", "labels", "annotations"}, where, warnings)
    name = f.field(obj, "name", str, where, required=True)
    meta = ObjectMeta(
        name=_dns_label(name, f"{where}.name", "pod name"),
        namespace=_dns_label(f.field(obj, "namespace", str, where) or "default",
                             f"{where}.namespace", "namespace"),
        uid=f.field(obj, "uid", str, where) or str(uuid.uuid4()),
        labels=_string_map(obj, "labels", where),
        annotations=_string_map(obj, "annotations", where))
    if "/" in meta.uid or meta.uid in (".", ".."):
        raise ConfigError(f"{where}.uid", "must not contain '/' (it names a cgroup)")
    return meta


SPEC_FIELDS = {"containers", "initContainers", "restartPolicy", "shareProcessNamespace",
               "hostNetwork", "hostPID", "hostIPC", "hostname", "volumes",
               "terminationGracePeriodSeconds", "priorityClassName", "securityContext"}


def _parse_spec(pod: Pod, spec: dict, warnings: list[str]) -> None:
    where = "spec"
    _note_unknown(spec, SPEC_FIELDS, where, warnings)
    pod.restart_policy = f.field(spec, "restartPolicy", str, where) or "Always"
    if pod.restart_policy not in RESTART_POLICIES:
        raise ConfigError(f"{where}.restartPolicy", f"{f.describe(pod.restart_policy)}: "
                          f"expected one of {', '.join(RESTART_POLICIES)}")
    for key, attr in (("shareProcessNamespace", "share_process_namespace"),
                      ("hostNetwork", "host_network"), ("hostPID", "host_pid"),
                      ("hostIPC", "host_ipc")):
        setattr(pod, attr, f.field(spec, key, bool, where, default=False))
    if pod.share_process_namespace and pod.host_pid:
        raise ConfigError(f"{where}.shareProcessNamespace",
                          "cannot be true together with hostPID")
    hostname = f.field(spec, "hostname", str, where) or ""
    pod.hostname = _dns_label(hostname, f"{where}.hostname", "hostname") if hostname else ""
    grace = f.field(spec, "terminationGracePeriodSeconds", int, where, default=30)
    if grace < 0:
        raise ConfigError(f"{where}.terminationGracePeriodSeconds", f"{grace} is negative")
    pod.termination_grace_period_seconds = grace
    pod.priority_class_name = f.field(spec, "priorityClassName", str, where) or ""
    pod.security_context = _parse_pod_security(
        f.field(spec, "securityContext", dict, where, default={}), warnings)
    pod.volumes = _parse_volumes(spec, warnings)
    if not spec.get("containers"):
        raise ConfigError(f"{where}.containers", "is required: a Pod runs at least one container")
    volume_names = {v.name for v in pod.volumes}
    seen: dict[str, str] = {}
    for key, init in (("initContainers", True), ("containers", False)):
        for cwhere, obj in f.objects(spec, key, where):
            c = _parse_container(obj, cwhere, init, volume_names, warnings)
            if c.name in seen:
                raise ConfigError(f"{cwhere}.name", f"{c.name!r} is already the name of "
                                  f"{seen[c.name]}; names must be unique across init and app "
                                  "containers")
            seen[c.name] = cwhere
            (pod.init_containers if init else pod.containers).append(c)
    _check_host_ports(pod)


def _parse_pod_security(obj: dict, warnings: list[str]) -> PodSecurityContext:
    where = "spec.securityContext"
    _note_unknown(obj, {"runAsUser", "runAsGroup", "runAsNonRoot", "supplementalGroups"},
                  where, warnings)
    groups = [f.check_type(g, int, f"{where}.supplementalGroups[{i}]")
              for i, g in enumerate(f.field(obj, "supplementalGroups", list, where, default=[]))]
    for i, g in enumerate(groups):
        _id_range(g, f"{where}.supplementalGroups[{i}]")
    return PodSecurityContext(run_as_user=_id(obj, "runAsUser", where),
                              run_as_group=_id(obj, "runAsGroup", where),
                              run_as_non_root=f.field(obj, "runAsNonRoot", bool, where),
                              supplemental_groups=groups)


def _id(obj: dict, key: str, where: str) -> int | None:
    value = f.field(obj, key, int, where)
    return None if value is None else _id_range(value, f"{where}.{key}")


def _id_range(value: int, where: str) -> int:
    if not 0 <= value <= MAX_ID:
        raise ConfigError(where, f"{value} is outside 0..{MAX_ID}")
    return value


# --- volumes -----------------------------------------------------------------------

def _parse_volumes(spec: dict, warnings: list[str]) -> list[Volume]:
    volumes: list[Volume] = []
    for where, obj in f.objects(spec, "volumes", "spec"):
        name = _dns_label(f.field(obj, "name", str, where, required=True), f"{where}.name",
                          "volume name")
        if any(v.name == name for v in volumes):
            raise ConfigError(f"{where}.name", f"{name!r} is listed twice")
        kinds = [k for k in obj if k != "name"]
        if not kinds:
            raise ConfigError(where, "names no volume source (emptyDir or hostPath)")
        if len(kinds) > 1:
            raise ConfigError(where, f"has {' and '.join(kinds)}: a volume has one source")
        kind = kinds[0]
        source = f.field(obj, kind, dict, where, default={})
        if kind == "emptyDir":
            volumes.append(_parse_empty_dir(name, source, f"{where}.emptyDir", warnings))
        elif kind == "hostPath":
            volumes.append(_parse_host_path(name, source, f"{where}.hostPath", warnings))
        else:
            raise ConfigError(f"{where}.{kind}", "this volume type is not supported by minirun "
                              "(supported: emptyDir, hostPath)")
    return volumes


def _parse_empty_dir(name: str, obj: dict, where: str, warnings: list[str]) -> Volume:
    _note_unknown(obj, {"medium", "sizeLimit"}, where, warnings)
    medium = f.field(obj, "medium", str, where) or ""
    if medium not in ("", "Memory"):
        raise ConfigError(f"{where}.medium", f"{f.describe(medium)}: expected \"\" (disk) or "
                          "Memory (tmpfs)")
    size = None
    if obj.get("sizeLimit") is not None:
        q = parse_quantity(obj["sizeLimit"], f"{where}.sizeLimit")
        if q.value <= 0:
            raise ConfigError(f"{where}.sizeLimit", f"{q} must be greater than zero")
        size = to_bytes(q)
    return Volume(name, "emptyDir", medium=medium, size_limit=size)


def _parse_host_path(name: str, obj: dict, where: str, warnings: list[str]) -> Volume:
    _note_unknown(obj, {"path", "type"}, where, warnings)
    path = f.field(obj, "path", str, where, required=True)
    if not path.startswith("/"):
        raise ConfigError(f"{where}.path", "must be an absolute path")
    if ".." in path.split("/"):
        raise ConfigError(f"{where}.path", "must not contain '..'")
    kind = f.field(obj, "type", str, where) or ""
    if kind not in HOST_PATH_TYPES:
        raise ConfigError(f"{where}.type", f"{f.describe(kind)}: expected one of "
                          f"{', '.join(t for t in HOST_PATH_TYPES if t)}")
    return Volume(name, "hostPath", path=os.path.normpath(path), type=kind)


# --- containers ----------------------------------------------------------------------

CONTAINER_FIELDS = {"name", "image", "command", "args", "env", "workingDir", "resources",
                    "ports", "securityContext", "volumeMounts"}


def _parse_container(obj: dict, where: str, init: bool, volumes: set[str],
                     warnings: list[str]) -> Container:
    _note_unknown(obj, CONTAINER_FIELDS, where, warnings)
    name = _dns_label(f.field(obj, "name", str, where, required=True), f"{where}.name",
                      "container name")
    image = f.field(obj, "image", str, where, required=True).strip()
    if not image:
        raise ConfigError(f"{where}.image", "is required")
    working_dir = f.field(obj, "workingDir", str, where) or ""
    if working_dir and not working_dir.startswith("/"):
        raise ConfigError(f"{where}.workingDir", "must be an absolute path")
    c = Container(name=name, image=image, command=f.str_list(obj, "command", where),
                  args=f.str_list(obj, "args", where), working_dir=working_dir, init=init,
                  where=where)
    c.env = [_parse_env(e, w, warnings) for w, e in f.objects(obj, "env", where)]
    c.resources = _parse_resources(f.field(obj, "resources", dict, where, default={}),
                                   f"{where}.resources", warnings)
    c.ports = [_parse_port(p, w, warnings) for w, p in f.objects(obj, "ports", where)]
    c.security_context = _parse_security(
        f.field(obj, "securityContext", dict, where, default={}), f"{where}.securityContext",
        warnings)
    paths: set[str] = set()
    for w, m in f.objects(obj, "volumeMounts", where):
        mount = _parse_volume_mount(m, w, volumes, warnings)
        if mount.mount_path in paths:
            raise ConfigError(f"{w}.mountPath", f"{mount.mount_path} is mounted twice")
        paths.add(mount.mount_path)
        c.volume_mounts.append(mount)
    return c


def _parse_env(obj: dict, where: str, warnings: list[str]) -> EnvVar:
    _note_unknown(obj, {"name", "value", "valueFrom"}, where, warnings)
    name = f.field(obj, "name", str, where, required=True)
    if not name or "=" in name:
        raise ConfigError(f"{where}.name", f"{f.describe(name)} is not a variable name")
    if obj.get("valueFrom") is not None:
        raise ConfigError(f"{where}.valueFrom", "not supported by minirun (there is no API "
                          "server to read fields, secrets or config maps from); use value")
    return EnvVar(name, f.field(obj, "value", str, where, default=""))


def _parse_port(obj: dict, where: str, warnings: list[str]) -> ContainerPort:
    _note_unknown(obj, {"containerPort", "hostPort", "protocol", "name"}, where, warnings)
    port = ContainerPort(container_port=f.field(obj, "containerPort", int, where, required=True),
                         host_port=f.field(obj, "hostPort", int, where) or None,
                         protocol=f.field(obj, "protocol", str, where) or "TCP",
                         name=f.field(obj, "name", str, where) or "")
    for key, value in (("containerPort", port.container_port), ("hostPort", port.host_port)):
        if value is not None and not 1 <= value <= 65535:
            raise ConfigError(f"{where}.{key}", f"{value} is not a port number (1-65535)")
    if port.protocol not in ("TCP", "UDP"):
        why = "not supported by minirun" if port.protocol == "SCTP" else "unknown protocol"
        raise ConfigError(f"{where}.protocol", f"{f.describe(port.protocol)}: {why} "
                          "(expected TCP or UDP)")
    return port


def _check_host_ports(pod: Pod) -> None:
    """Two containers cannot take the same host port; with hostNetwork the host port
    is the container port (validation.go: AccumulateUniqueHostPorts)."""
    taken: dict[tuple[int, str], str] = {}
    for c in pod.all_containers():
        for i, p in enumerate(c.ports):
            where = f"{c.where}.ports[{i}].hostPort"
            if pod.host_network and p.host_port not in (None, p.container_port):
                raise ConfigError(where, f"{p.host_port} must equal containerPort "
                                  f"{p.container_port} with hostNetwork")
            host = p.host_port or (p.container_port if pod.host_network else None)
            if host is None:
                continue
            if (host, p.protocol) in taken:
                raise ConfigError(where, f"{host}/{p.protocol} is already taken by "
                                  f"{taken[(host, p.protocol)]}")
            taken[(host, p.protocol)] = where


def _parse_security(obj: dict, where: str, warnings: list[str]) -> SecurityContext:
    _note_unknown(obj, {"privileged", "runAsUser", "runAsGroup", "runAsNonRoot",
                        "capabilities", "allowPrivilegeEscalation",
                        "readOnlyRootFilesystem"}, where, warnings)
    sc = SecurityContext(privileged=f.field(obj, "privileged", bool, where, default=False),
                         run_as_user=_id(obj, "runAsUser", where),
                         run_as_group=_id(obj, "runAsGroup", where),
                         run_as_non_root=f.field(obj, "runAsNonRoot", bool, where),
                         allow_privilege_escalation=f.field(obj, "allowPrivilegeEscalation",
                                                            bool, where),
                         read_only_root_filesystem=f.field(obj, "readOnlyRootFilesystem", bool,
                                                           where, default=False))
    if sc.privileged and sc.allow_privilege_escalation is False:
        raise ConfigError(f"{where}.allowPrivilegeEscalation",
                          "cannot be false for a privileged container")
    caps = f.field(obj, "capabilities", dict, where, default={})
    cwhere = f"{where}.capabilities"
    _note_unknown(caps, {"add", "drop"}, cwhere, warnings)
    sc.capabilities_add = _capability_names(caps, "add", cwhere)
    sc.capabilities_drop = _capability_names(caps, "drop", cwhere)
    return sc


def _capability_names(obj: dict, key: str, where: str) -> list[str]:
    """Kubernetes writes capabilities without CAP_ ("NET_ADMIN"); "ALL" means all."""
    from minirun.capabilities import CAPABILITIES

    names = []
    for i, raw in enumerate(f.str_list(obj, key, where)):
        name = raw.upper().removeprefix("CAP_")
        if name != "ALL" and f"CAP_{name}" not in CAPABILITIES:
            raise ConfigError(f"{where}.{key}[{i}]", f"unknown capability {raw!r} (see "
                              "capabilities(7); written without CAP_, e.g. NET_ADMIN)")
        names.append(name)
    return names


def _parse_volume_mount(obj: dict, where: str, volumes: set[str],
                        warnings: list[str]) -> VolumeMount:
    _note_unknown(obj, {"name", "mountPath", "readOnly"}, where, warnings)
    f.refuse_unsupported(obj, {"subPath": "mount the whole volume",
                               "subPathExpr": "mount the whole volume"}, where)
    name = f.field(obj, "name", str, where, required=True)
    if name not in volumes:
        known = ", ".join(sorted(volumes)) or "none"
        raise ConfigError(f"{where}.name", f"{name!r} is not a volume of this pod "
                          f"(spec.volumes has: {known})")
    path = f.field(obj, "mountPath", str, where, required=True)
    if not path.startswith("/"):
        raise ConfigError(f"{where}.mountPath", "must be an absolute path")
    return VolumeMount(name, os.path.normpath(path),
                       f.field(obj, "readOnly", bool, where, default=False))


# --- resources -------------------------------------------------------------------------

def _parse_resources(obj: dict, where: str, warnings: list[str]) -> ResourceRequirements:
    _note_unknown(obj, {"requests", "limits"}, where, warnings)
    res = ResourceRequirements()
    for key in ("limits", "requests"):
        values = f.field(obj, key, dict, where, default={})
        target = getattr(res, key)
        for name, raw in values.items():
            path = f"{where}.{key}.{name}"
            if name not in RESOURCE_NAMES:
                raise ConfigError(path, f"unknown resource {name!r} (known: "
                                  f"{', '.join(RESOURCE_NAMES)})")
            q = parse_amount(raw, path)
            if name in HUGEPAGE_SIZES and q.value % HUGEPAGE_SIZES[name]:
                raise ConfigError(path, f"{q} is not a whole number of "
                                  f"{name.removeprefix('hugepages-')} pages")
            target[name] = q
    for name, q in res.requests.items():
        limit = res.limits.get(name)
        path = f"{where}.requests.{name}"
        if name in HUGEPAGE_SIZES:
            # huge pages cannot be overcommitted: request == limit (IsOvercommitAllowed)
            if limit is None:
                raise ConfigError(f"{where}.limits.{name}", "is required: huge pages cannot "
                                  "be overcommitted, so the limit must equal the request")
            if q.value != limit.value:
                raise ConfigError(path, f"{q} must be equal to the {name} limit of {limit}")
        elif limit is not None and q.value > limit.value:
            raise ConfigError(path, f"{q} must be less than or equal to the {name} limit "
                              f"of {limit}")
    # the API server's defaulting (SetDefaults_Container): a limit alone is also the request
    for name, q in res.limits.items():
        res.requests.setdefault(name, q)
    if any(n in HUGEPAGE_SIZES for n in res.requests) and not (
            {CPU, MEMORY} & (res.requests.keys() | res.limits.keys())):
        raise ConfigError(where, "huge pages require a cpu or memory request or limit too")
    return res
