"""``minirun pod``, ``minirun node`` and ``minirun kubelet``: Kubernetes pods, locally.

Parsing and printing only: the work is in minirun.pod (lifecycle, supervisor,
qos, node) and minirun.config.pod (the manifest).
"""

from __future__ import annotations

import json
import os
import sys
import time

import click

from minirun.errors import MinirunError


def _root(ctx: click.Context) -> str:
    return ctx.obj["root"]


def _node_options(f):
    f = click.option("--kube-reserved", default="", help="cpu=100m,memory=256Mi,...")(f)
    f = click.option("--system-reserved", default="", help="cpu=100m,memory=256Mi,...")(f)
    f = click.option("--eviction-hard", default=None,
                     help='Eviction thresholds, default "memory.available<100Mi".')(f)
    f = click.option("--fail-swap-on/--no-fail-swap-on", "fail_swap_on", default=True,
                     help="Refuse to run pods while swap is on (the kubelet's default).")(f)
    return f


def _node_config(kube_reserved: str, system_reserved: str, eviction_hard: str | None,
                 fail_swap_on: bool):
    from minirun.pod import node

    config = node.NodeConfig(kube_reserved=node.parse_reserved(kube_reserved, "--kube-reserved"),
                             system_reserved=node.parse_reserved(system_reserved,
                                                                 "--system-reserved"),
                             fail_swap_on=fail_swap_on)
    if eviction_hard is not None:
        config.eviction_hard = node.parse_eviction_hard(eviction_hard)
    return config


def _create_pod(ctx: click.Context, manifest: str, node_flags: dict):
    """Print the manifest's warnings (unknown fields), then admit and create the pod."""
    from minirun import log
    from minirun.config.pod import load_pod
    from minirun.pod import lifecycle

    pod_spec = load_pod(manifest)
    for warning in pod_spec.warnings:
        log.warning(f"{manifest}: {warning}")
    return lifecycle.create_pod(_root(ctx), manifest, cgroup_root=ctx.obj["cgroup_root"],
                                node_config=_node_config(**node_flags), pod=pod_spec)


@click.group()
def pod() -> None:
    """Pods: a pause holder and containers joined to it, with the kubelet's cgroups."""


@pod.command(name="run")
@click.argument("manifest", type=click.Path(dir_okay=False))
@_node_options
@click.pass_context
def run(ctx: click.Context, manifest: str, **node_flags) -> None:
    """Run a pod in the foreground, its output prefixed; Ctrl-C stops and removes it."""
    from minirun.pod.supervisor import Supervisor

    record = _create_pod(ctx, manifest, node_flags)
    click.echo(f"pod {record.name}: IP {record.pod_ip}, QoS {record.qos_class}", err=True)
    supervisor = Supervisor(_root(ctx), ctx.obj["cgroup_root"], follow_logs=True)
    try:
        supervisor.add(record.name)
        supervisor.run(until_done=True)
        phase = supervisor.pods[record.name].record.phase
    finally:
        supervisor.remove(record.name)
    click.echo(f"pod {record.name}: {phase}", err=True)
    sys.exit(0 if phase == "Succeeded" else 1)


@pod.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@_node_options
@click.pass_context
def create(ctx: click.Context, manifest: str, **node_flags) -> None:
    """Admit the pod and start its sandbox (pause); `pod start` starts its containers."""
    click.echo(_create_pod(ctx, manifest, node_flags).name)


@pod.command()
@click.argument("name")
@click.pass_context
def start(ctx: click.Context, name: str) -> None:
    """Start the pod's containers under a supervisor that runs on in the background."""
    import subprocess

    from minirun.pod.store import PodDir

    pd = PodDir(_root(ctx), name)
    if pd.load().supervisor_pid:
        raise MinirunError(f"pod {name!r} is already started")
    argv = [sys.executable, "-m", "minirun", "--root", _root(ctx)]
    if ctx.obj["cgroup_root"]:
        argv += ["--cgroup-root", ctx.obj["cgroup_root"]]
    with open(os.devnull, "r+b") as null:
        subprocess.Popen([*argv, "pod", "supervise", name], stdin=null, stdout=null,
                         stderr=open(pd.file("supervisor.log"), "ab"),
                         start_new_session=True)
    deadline = time.monotonic() + 10
    while not pd.load().supervisor_pid:
        if time.monotonic() > deadline:
            raise MinirunError(f"pod {name!r}: the supervisor did not start "
                               f"(see {pd.file('supervisor.log')})")
        time.sleep(0.02)


@pod.command(hidden=True)
@click.argument("name")
@click.pass_context
def supervise(ctx: click.Context, name: str) -> None:
    """(internal) Supervise one pod until `pod stop` sends SIGTERM."""
    from minirun.pod.supervisor import Supervisor

    supervisor = Supervisor(_root(ctx), ctx.obj["cgroup_root"])
    supervisor.add(name)
    supervisor.run()
    supervisor.stop_all()


@pod.command()
@click.argument("name")
@click.pass_context
def stop(ctx: click.Context, name: str) -> None:
    """SIGTERM the pod's containers, wait terminationGracePeriodSeconds, then SIGKILL."""
    from minirun.pod import lifecycle
    from minirun.pod.store import PodDir

    pd = PodDir(_root(ctx), name)
    record = pd.load()
    if record.supervisor_pid:
        lifecycle.stop_supervisor(record)
        return
    with pd:
        record = pd.load()
        pod_spec = lifecycle.load_pod(record.manifest)
        lifecycle.stop_containers(_root(ctx), record,
                                  pod_spec.termination_grace_period_seconds)
        pd.save(record)


@pod.command(name="rm")
@click.option("--grace-period", type=int, default=None,
              help="Seconds between SIGTERM and SIGKILL (default: the pod's own).")
@click.argument("name")
@click.pass_context
def rm(ctx: click.Context, grace_period: int | None, name: str) -> None:
    """Stop the pod and remove its containers, sandbox, network, cgroups and state."""
    from minirun.pod import lifecycle

    lifecycle.remove_pod(_root(ctx), name, grace_period)


@pod.command(name="ls")
@click.pass_context
def ls(ctx: click.Context) -> None:
    """List pods like `kubectl get pods -o wide`."""
    from minirun.pod.status import pod_names, summary_rows

    rows = [("NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "QOS")]
    rows += summary_rows(_root(ctx), pod_names(_root(ctx)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@pod.command()
@click.option("--output", "-o", type=click.Choice(["yaml", "json"]), default="yaml")
@click.argument("name")
@click.pass_context
def inspect(ctx: click.Context, output: str, name: str) -> None:
    """The pod's status as `kubectl get pod -o yaml`, plus host PIDs and cgroup paths."""
    from minirun.pod.status import pod_status

    status = pod_status(_root(ctx), name)
    if output == "json":
        click.echo(json.dumps(status, indent=2))
    else:
        import yaml
        click.echo(yaml.safe_dump(status, sort_keys=False).rstrip())


@pod.command()
@click.option("--container", "-c", default=None, help="Which container (default: the first).")
@click.argument("name")
@click.pass_context
def logs(ctx: click.Context, container: str | None, name: str) -> None:
    """Print a container's output."""
    from minirun.pod.status import log_file

    with open(log_file(_root(ctx), name, container), "rb") as fh:
        sys.stdout.buffer.write(fh.read())


@pod.command(name="exec", context_settings={"ignore_unknown_options": True,
                                            "allow_interspersed_args": False})
@click.option("--container", "-c", default=None, help="Which container (default: the first).")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, container: str | None, name: str, command: tuple[str, ...]) -> None:
    """Run a command in one of the pod's containers."""
    from minirun import container as runtime
    from minirun.config.exec_process import build_process
    from minirun.exec import exec_in
    from minirun.pod.status import container_runtime_id

    if command and command[0] == "--":
        command = command[1:]
    cid = container_runtime_id(_root(ctx), name, container)
    base = runtime.load(_root(ctx), cid).config().process
    process = build_process(base, None, list(command), env=[], cwd=None, tty=False, user=None,
                            additional_gids=[], caps=[], no_new_privs=False)
    sys.exit(exec_in(_root(ctx), cid, process))


@click.command()
@_node_options
def node(**node_flags) -> None:
    """The node's capacity and allocatable, as the kubelet computes them."""
    from minirun.pod import node as node_math

    config = _node_config(**node_flags)
    cap = node_math.capacity()
    alloc = node_math.allocatable(cap, config)
    rows = [("RESOURCE", "CAPACITY", "ALLOCATABLE"), *node_math.describe(cap, alloc)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if node_math.swap_enabled():
        click.echo("swap is on: pods are refused unless --no-fail-swap-on", err=True)


@click.command()
@click.option("--manifests", required=True, type=click.Path(file_okay=False),
              help="Directory of static Pod manifests (like /etc/kubernetes/manifests).")
@_node_options
@click.pass_context
def kubelet(ctx: click.Context, manifests: str, **node_flags) -> None:
    """Run the pods of a manifest directory; follow it as files come, change and go."""
    from minirun.pod.kubelet import StaticPods

    config = _node_config(**node_flags)
    StaticPods(_root(ctx), manifests, ctx.obj["cgroup_root"], config).run()
