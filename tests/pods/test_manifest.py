"""Pod manifests: defaults, warnings, and one error per class, each naming its field path."""

from __future__ import annotations

import copy
import json
import uuid
from fractions import Fraction

import pytest

from minirun.config.pod import load_pod, parse_pod
from minirun.errors import ConfigError

BASE = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web"},
    "spec": {
        "initContainers": [{"name": "setup", "image": "busybox", "command": ["true"]}],
        "containers": [
            {"name": "app", "image": "busybox", "command": ["sleep", "3600"]},
            {"name": "side", "image": "busybox",
             "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    },
}


def manifest(**changes) -> dict:
    """BASE with changes: paths joined by __, list indexes as numbers
    (``spec__containers__1__name``); DELETE removes a field."""
    obj = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = obj
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
        if isinstance(target, list):
            target[int(last)] = value
        elif value is DELETE:
            target.pop(last, None)
        else:
            target[last] = value
    return obj


DELETE = object()


def test_defaults_are_the_api_servers():
    pod = parse_pod(manifest())
    assert pod.metadata.namespace == "default"
    assert pod.restart_policy == "Always"
    assert pod.termination_grace_period_seconds == 30
    assert uuid.UUID(pod.uid).version == 4
    assert [c.name for c in pod.all_containers()] == ["setup", "app", "side"]
    assert pod.init_containers[0].init and not pod.containers[0].init
    assert pod.warnings == []


def test_requests_default_to_limits():
    side = parse_pod(manifest()).container("side")
    assert side.resources.requests["cpu"].value == Fraction(1, 2)
    assert side.resources.requests["memory"].value == 64 * 2**20


def test_explicit_requests_are_kept():
    pod = parse_pod(manifest(spec__containers__1__resources={
        "requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}))
    assert pod.container("side").resources.requests["cpu"].value == Fraction(1, 10)


def test_given_uid_is_kept_and_two_pods_get_different_uids():
    assert parse_pod(manifest(metadata={"name": "a", "uid": "abc-1"})).uid == "abc-1"
    assert parse_pod(manifest()).uid != parse_pod(manifest()).uid


def test_unknown_fields_are_warnings():
    obj = manifest()
    obj["spec"]["containers"][0]["livenessProbe"] = {"exec": {"command": ["true"]}}
    obj["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    obj["spec"]["nodeSelector"] = {"a": "b"}
    obj["status"] = {}
    pod = parse_pod(obj)
    assert "spec.containers[0].livenessProbe: unknown field, ignored" in pod.warnings
    assert "spec.nodeSelector: unknown field, ignored" in pod.warnings
    assert any(w.startswith("spec.containers[0].imagePullPolicy: images are local")
               for w in pod.warnings)
    assert any(w.startswith("status:") for w in pod.warnings)
    assert len(pod.warnings) == 4


def test_all_the_fields_of_the_subset():
    obj = manifest(spec__restartPolicy="OnFailure", spec__shareProcessNamespace=True,
                   spec__hostIPC=True, spec__hostname="box",
                   spec__terminationGracePeriodSeconds=5,
                   spec__securityContext={"runAsUser": 1000, "supplementalGroups": [5]})
    obj["metadata"].update(namespace="lab", labels={"app": "web"}, annotations={"a": "b"})
    obj["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/srv/x/",
                                                                "type": "DirectoryOrCreate"}})
    obj["spec"]["containers"][0].update(
        args=["-x"], env=[{"name": "A", "value": "1"}, {"name": "B"}], workingDir="/tmp",
        ports=[{"containerPort": 80, "hostPort": 8080, "name": "http"},
               {"containerPort": 53, "protocol": "UDP"}],
        securityContext={"privileged": True, "runAsUser": 0, "runAsGroup": 0,
                         "capabilities": {"add": ["net_admin", "CAP_SYS_TIME"],
                                          "drop": ["ALL"]}},
        volumeMounts=[{"name": "host", "mountPath": "/host", "readOnly": True}])
    pod = parse_pod(obj)
    assert (pod.restart_policy, pod.share_process_namespace, pod.host_ipc, pod.hostname,
            pod.termination_grace_period_seconds) == ("OnFailure", True, True, "box", 5)
    assert pod.metadata.namespace == "lab" and pod.metadata.labels == {"app": "web"}
    assert pod.security_context.run_as_user == 1000
    app = pod.container("app")
    assert [(e.name, e.value) for e in app.env] == [("A", "1"), ("B", "")]
    assert [(p.container_port, p.host_port, p.protocol) for p in app.ports] == \
        [(80, 8080, "TCP"), (53, None, "UDP")]
    sc = app.security_context
    assert sc.privileged and sc.capabilities_add == ["NET_ADMIN", "SYS_TIME"]
    assert sc.capabilities_drop == ["ALL"]
    assert app.volume_mounts[0].read_only
    assert pod.volume("host").path == "/srv/x" and pod.volume("host").type == "DirectoryOrCreate"


@pytest.mark.parametrize("changes, where", [
    ({"spec__containers__1__resources": {"limits": {"memory": "1GB"}}},
     "spec.containers[1].resources.limits.memory"),
    ({"spec__containers__1__resources": {"limits": {"cpu": "0x10"}}},
     "spec.containers[1].resources.limits.cpu"),
    ({"spec__containers__1__resources": {"requests": {"memory": "1.1.M"}}},
     "spec.containers[1].resources.requests.memory"),
    ({"spec__containers__1__resources": {"limits": {"cpu": "-1"}}},
     "spec.containers[1].resources.limits.cpu"),
    ({"spec__containers__1__resources": {"limits": {"nvidia.com/gpu": "1"}}},
     "spec.containers[1].resources.limits.nvidia.com/gpu"),
    ({"spec__containers__1__resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
     "spec.containers[1].resources.requests.cpu"),
    ({"spec__containers__1__resources": {"requests": {"hugepages-2Mi": "2Mi", "cpu": "1"}}},
     "spec.containers[1].resources.limits.hugepages-2Mi"),
    ({"spec__containers__1__resources": {"limits": {"hugepages-2Mi": "3Mi", "cpu": "1"}}},
     "spec.containers[1].resources.limits.hugepages-2Mi"),
    ({"spec__containers__1__resources": {"limits": {"hugepages-2Mi": "2Mi"}}},
     "spec.containers[1].resources"),
    ({"spec__containers__1__name": "setup"}, "spec.containers[1].name"),
    ({"spec__containers__1__name": "app"}, "spec.containers[1].name"),
    ({"spec__containers__0__name": DELETE}, "spec.containers[0].name"),
    ({"spec__containers__0__image": DELETE}, "spec.containers[0].image"),
    ({"spec__containers__0__image": "  "}, "spec.containers[0].image"),
    ({"spec__containers": []}, "spec.containers"),
    ({"spec__containers": DELETE}, "spec.containers"),
    ({"spec__containers__1__volumeMounts": [{"name": "nope", "mountPath": "/x"}]},
     "spec.containers[1].volumeMounts[0].name"),
    ({"spec__containers__1__volumeMounts": [{"name": "data", "mountPath": "rel"}]},
     "spec.containers[1].volumeMounts[0].mountPath"),
    ({"spec__containers__1__volumeMounts": [{"name": "data", "mountPath": "/x",
                                             "subPath": "a"}]},
     "spec.containers[1].volumeMounts[0].subPath"),
    ({"spec__volumes": [{"name": "c", "configMap": {"name": "x"}}]}, "spec.volumes[0].configMap"),
    ({"spec__volumes": [{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]},
     "spec.volumes[1].name"),
    ({"spec__volumes": [{"name": "h", "hostPath": {"path": "relative"}}]},
     "spec.volumes[0].hostPath.path"),
    ({"spec__volumes": [{"name": "h", "hostPath": {"path": "/x", "type": "Dir"}}]},
     "spec.volumes[0].hostPath.type"),
    ({"spec__restartPolicy": "Sometimes"}, "spec.restartPolicy"),
    ({"spec__terminationGracePeriodSeconds": -1}, "spec.terminationGracePeriodSeconds"),
    ({"spec__hostPID": True, "spec__shareProcessNamespace": True}, "spec.shareProcessNamespace"),
    ({"metadata__name": "Web_1"}, "metadata.name"),
    ({"metadata__name": DELETE}, "metadata.name"),
    ({"metadata": DELETE}, "metadata"),
    ({"metadata__labels": {"tier": 3}}, "metadata.labels.tier"),
    ({"kind": "Deployment"}, "kind"),
    ({"apiVersion": "apps/v1"}, "apiVersion"),
    ({"spec__containers__0__env": [{"name": "A", "valueFrom": {"fieldRef": {}}}]},
     "spec.containers[0].env[0].valueFrom"),
    ({"spec__containers__0__ports": [{"containerPort": 70000}]},
     "spec.containers[0].ports[0].containerPort"),
    ({"spec__containers__0__ports": [{"containerPort": 80, "protocol": "SCTP"}]},
     "spec.containers[0].ports[0].protocol"),
    ({"spec__containers__0__ports": [{"containerPort": 80, "hostPort": 80}],
      "spec__containers__1__ports": [{"containerPort": 81, "hostPort": 80}]},
     "spec.containers[1].ports[0].hostPort"),
    ({"spec__containers__0__securityContext": {"capabilities": {"add": ["FLY"]}}},
     "spec.containers[0].securityContext.capabilities.add[0]"),
    ({"spec__containers__0__securityContext": {"runAsUser": -1}},
     "spec.containers[0].securityContext.runAsUser"),
    ({"spec__containers__0__command": "sleep 1"}, "spec.containers[0].command"),
    ({"spec__containers__0__workingDir": "tmp"}, "spec.containers[0].workingDir"),
    ({"spec__initContainers__0__resources": {"limits": {"memory": "12 Mi"}}},
     "spec.initContainers[0].resources.limits.memory"),
])
def test_each_error_names_its_field(changes, where):
    with pytest.raises(ConfigError) as err:
        parse_pod(manifest(**changes))
    assert err.value.where == where, str(err.value)
    assert "\n" not in str(err.value)


def test_load_yaml_and_json(tmp_path):
    (tmp_path / "pod.json").write_text(json.dumps(manifest()))
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n"
        "  - name: app\n    image: busybox\n    resources:\n      limits:\n        cpu: 1\n")
    assert load_pod(str(tmp_path / "pod.json")).name == "web"
    pod = load_pod(str(tmp_path / "pod.yaml"))
    assert pod.container("app").resources.limits["cpu"].value == 1
    assert pod.source == str(tmp_path / "pod.yaml")


def test_file_errors_are_one_line_naming_the_file(tmp_path):
    path = tmp_path / "pod.yaml"
    path.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n spec: [\n")
    with pytest.raises(ConfigError) as err:
        load_pod(str(path))
    assert err.value.where.startswith(f"{path}:5:")       # line 5 is the bad indent
    assert "invalid YAML" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="no such file"):
        load_pod(str(tmp_path / "missing.yaml"))
    path.write_text(json.dumps(manifest()) + "\n---\n" + json.dumps(manifest()))
    with pytest.raises(ConfigError, match="2 documents"):
        load_pod(str(path))
    path.write_text(json.dumps(manifest(spec__restartPolicy="x")))
    with pytest.raises(ConfigError) as err:
        load_pod(str(path))
    assert err.value.where == f"{path}: spec.restartPolicy"
