"""runc's cgroup commands: pause, resume, update, events.

Each loads the container, checks its status, and calls minirun.cgroups; the
flags are runc's so that a runc client can drive minirun.
"""

from __future__ import annotations

import json
import os
import sys

import click

from minirun.errors import MinirunError


def _load(ctx: click.Context, container_id: str, allowed: tuple[str, ...], verb: str):
    """The container and its cgroup, if its status allows ``verb``."""
    from minirun import container

    c = container.load(ctx.obj["root"], container_id)
    if c.status not in allowed:
        raise MinirunError(f"container {container_id!r} is {c.status}: cannot {verb} it "
                           f"(it must be {' or '.join(allowed)})")
    cgroup = c.cgroup()
    if cgroup is None:
        raise MinirunError(f"container {container_id!r} has no cgroup")
    return c, cgroup


@click.command()
@click.argument("container_id")
@click.pass_context
def pause(ctx: click.Context, container_id: str) -> None:
    """Freeze every process of the container (the cgroup freezer)."""
    c, cgroup = _load(ctx, container_id, ("running",), "pause")
    with c.state_dir:
        cgroup.freeze()


@click.command()
@click.argument("container_id")
@click.pass_context
def resume(ctx: click.Context, container_id: str) -> None:
    """Thaw a paused container."""
    c, cgroup = _load(ctx, container_id, ("paused",), "resume")
    with c.state_dir:
        cgroup.thaw()


# runc's update flags -> (OCI object, field). Sizes take k/m/g suffixes; -1 means no limit.
UPDATE_FLAGS = {
    "cpu_share": ("cpu", "shares"), "cpu_quota": ("cpu", "quota"),
    "cpu_period": ("cpu", "period"), "cpuset_cpus": ("cpu", "cpus"),
    "cpuset_mems": ("cpu", "mems"), "memory": ("memory", "limit"),
    "memory_reservation": ("memory", "reservation"), "memory_swap": ("memory", "swap"),
    "pids_limit": ("pids", "limit"), "blkio_weight": ("blockIO", "weight"),
}
SIZE_FLAGS = ("memory", "memory_reservation", "memory_swap")


def _size(text: str, flag: str) -> int:
    """"512m" -> 536870912, as runc's --memory reads it; "-1" stays -1."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    number, scale = text.lower().rstrip("b"), 1
    if number and number[-1] in units:
        number, scale = number[:-1], units[number[-1]]
    try:
        value = int(number)
    except ValueError:
        raise MinirunError(f"--{flag.replace('_', '-')}: {text!r} is not a size like 512m or "
                           "1g") from None
    return value if value == -1 else value * scale


@click.command()
@click.option("--resources", "-r", "resources_file", default=None,
              help="OCI linux.resources JSON to apply ('-': standard input).")
@click.option("--cpu-share", type=int, help="CPU shares (relative weight).")
@click.option("--cpu-quota", type=int, help="CFS quota in microseconds per period (-1: none).")
@click.option("--cpu-period", type=int, help="CFS period in microseconds.")
@click.option("--cpuset-cpus", help="CPUs to use, e.g. 0-1,3.")
@click.option("--cpuset-mems", help="Memory nodes to use.")
@click.option("--memory", help="Memory limit, e.g. 512m (-1: none).")
@click.option("--memory-reservation", help="Memory soft limit.")
@click.option("--memory-swap", help="Memory plus swap limit (-1: none).")
@click.option("--pids-limit", type=int, help="Maximum number of processes (-1: none).")
@click.option("--blkio-weight", type=int, help="Block I/O weight, 10..1000.")
@click.argument("container_id")
@click.pass_context
def update(ctx: click.Context, resources_file: str | None, container_id: str,
           **flags: object) -> None:
    """Change a container's cgroup limits while it runs."""
    obj: dict = {}
    where = "update"
    if resources_file is not None:
        where = "stdin" if resources_file == "-" else resources_file
        try:
            text = sys.stdin.read() if resources_file == "-" else open(resources_file).read()
            obj = json.loads(text)
        except OSError as e:
            raise MinirunError(f"{resources_file}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise MinirunError(f"{where}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise MinirunError(f"{where}: expected a JSON object (OCI linux.resources)")
    for flag, value in flags.items():          # flags win over the file, as in runc
        if value is None:
            continue
        section, key = UPDATE_FLAGS[flag]
        obj.setdefault(section, {})[key] = _size(value, flag) if flag in SIZE_FLAGS else value
    if not obj:
        raise click.UsageError("nothing to update: give --resources or a limit flag")
    from minirun import container

    container.update(ctx.obj["root"], container_id, obj, where)


@click.command()
@click.option("--stats", is_flag=True, help="Print the statistics once and exit.")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds between statistics events.")
@click.argument("container_id")
@click.pass_context
def events(ctx: click.Context, stats: bool, interval: float, container_id: str) -> None:
    """Stream the container's events as JSON lines: stats, OOM kills, its exit."""
    c, cgroup = _load(ctx, container_id, ("created", "running", "paused"), "watch")
    if stats:
        _emit("stats", container_id, cgroup.stats())
        return
    _watch(c, cgroup, container_id, interval)


def _emit(kind: str, container_id: str, data: dict | None = None) -> None:
    event = {"type": kind, "id": container_id}
    if data is not None:
        event["data"] = data
    click.echo(json.dumps(event))


def _watch(c, cgroup, container_id: str, interval: float) -> None:
    """Wait on a pidfd of the init (readable when it exits, pidfd_open(2)) and look at
    the OOM count in between: the kernel counts OOM kills, minirun reports increases."""
    import select
    import time

    from minirun import libc

    try:
        pidfd = libc.pidfd_open(c.record.pid)
    except ProcessLookupError:
        _emit("exit", container_id)
        return
    ooms = cgroup.oom_kill_count()
    next_stats = time.monotonic() + interval
    try:
        while True:
            exited = select.select([pidfd], [], [], 0.1)[0]
            count = cgroup.oom_kill_count()
            for _ in range(count - ooms):
                _emit("oom", container_id)
            ooms = count
            if exited:
                _emit("exit", container_id)
                return
            if time.monotonic() >= next_stats:
                _emit("stats", container_id, cgroup.stats())
                next_stats += interval
    finally:
        os.close(pidfd)
