"""runc's commands: spec, create, start, run, state, list, kill, delete, exec, ps, features.

Flags match runc's so that a runc client (containerd's shim) can drive
minirun. Each command parses, calls ``minirun.container``, prints.
"""

from __future__ import annotations

import json
import os
import sys

import click

from minirun.errors import MinirunError

bundle_option = click.option("--bundle", "-b", default=".", show_default=True,
                             help="Path to the bundle (config.json and rootfs).")
pid_file_option = click.option("--pid-file", default=None, help="Write the init's host PID here.")
console_option = click.option("--console-socket", default=None,
                              help="Unix socket that receives the pty master (SCM_RIGHTS).")
preserve_option = click.option("--preserve-fds", default=0, type=click.IntRange(0),
                               help="Pass this many extra fds (3, 4, ...) to the process.")
no_pivot_option = click.option("--no-pivot", is_flag=True,
                               help="Use MS_MOVE + chroot instead of pivot_root (ramdisk roots).")
no_keyring_option = click.option("--no-new-keyring", is_flag=True,
                                 help="Accepted for runc compatibility: minirun never makes "
                                      "a session keyring.")


def _root(ctx: click.Context) -> str:
    return ctx.obj["root"]


@click.command()
@bundle_option
@click.option("--rootless", is_flag=True, help="Not supported: refused.")
def spec(bundle: str, rootless: bool) -> None:
    """Write a default config.json into the bundle directory (like `runc spec`)."""
    from minirun.config.default_spec import default_spec

    if rootless:
        raise MinirunError("spec --rootless is not supported")
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise MinirunError(f"{path} exists: remove it first")
    with open(path, "w") as fh:
        json.dump(default_spec(), fh, indent="\t")
        fh.write("\n")


@click.command()
@bundle_option
@pid_file_option
@console_option
@preserve_option
@no_pivot_option
@no_keyring_option
@click.argument("container_id")
@click.pass_context
def create(ctx: click.Context, bundle: str, pid_file: str | None, console_socket: str | None,
           preserve_fds: int, no_pivot: bool, no_new_keyring: bool, container_id: str) -> None:
    """Create a container; its program waits for `minirun start`."""
    from minirun import container

    container.create(_root(ctx), container_id, bundle, pid_file=pid_file,
                     console_socket=console_socket, no_pivot=no_pivot,
                     preserve_fds=preserve_fds, cgroup_root=ctx.obj["cgroup_root"])


@click.command()
@click.argument("container_id")
@click.pass_context
def start(ctx: click.Context, container_id: str) -> None:
    """Start a created container: its program runs now."""
    from minirun import container

    container.start(_root(ctx), container_id)


@click.command()
@bundle_option
@pid_file_option
@console_option
@preserve_option
@no_pivot_option
@no_keyring_option
@click.option("--detach", "-d", is_flag=True, help="Do not wait for the container.")
@click.argument("container_id")
@click.pass_context
def run(ctx: click.Context, bundle: str, pid_file: str | None, console_socket: str | None,
        preserve_fds: int, no_pivot: bool, no_new_keyring: bool, detach: bool,
        container_id: str) -> None:
    """Create and start a container; in the foreground, exit with its exit code."""
    from minirun.run import run as run_container

    code = run_container(_root(ctx), container_id, bundle, detach=detach, pid_file=pid_file,
                         console_socket=console_socket, no_pivot=no_pivot,
                         preserve_fds=preserve_fds, cgroup_root=ctx.obj["cgroup_root"])
    sys.exit(code)


@click.command()
@click.argument("container_id")
@click.pass_context
def state(ctx: click.Context, container_id: str) -> None:
    """Print the container's OCI state as JSON."""
    from minirun import container

    click.echo(json.dumps(container.load(_root(ctx), container_id).oci_state(), indent=2))


@click.command(name="list")
@click.option("--quiet", "-q", is_flag=True, help="Only the IDs.")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def list_(ctx: click.Context, quiet: bool, fmt: str) -> None:
    """List the containers under --root."""
    from minirun import container

    found = container.list_containers(_root(ctx))
    if quiet:
        for c in found:
            click.echo(c.record.id)
    elif fmt == "json":
        click.echo(json.dumps([c.oci_state() for c in found]))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(c.record.id, str(c.oci_state()["pid"]), c.status, c.record.bundle,
                  c.record.created, c.record.owner or "root") for c in found]
        _print_table(rows)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


@click.command()
@click.option("--all", "-a", "all_processes", is_flag=True,
              help="Signal every process in the container's cgroup.")
@click.argument("container_id")
@click.argument("signal_name", default="SIGTERM")
@click.pass_context
def kill(ctx: click.Context, all_processes: bool, container_id: str, signal_name: str) -> None:
    """Send a signal (TERM, SIGTERM or 15) to the container."""
    from minirun import container
    from minirun.signals import parse_signal

    container.kill(_root(ctx), container_id, parse_signal(signal_name), all_processes)


@click.command()
@click.option("--force", "-f", is_flag=True, help="Kill a running container first.")
@click.argument("container_id")
@click.pass_context
def delete(ctx: click.Context, force: bool, container_id: str) -> None:
    """Delete a stopped container: its cgroups and state."""
    from minirun import container

    container.delete(_root(ctx), container_id, force=force)


@click.command(name="exec", context_settings={"ignore_unknown_options": True,
                                              "allow_interspersed_args": False})
@click.option("--process", "-p", "process_file", default=None,
              help="A JSON file with an OCI process object.")
@click.option("--detach", "-d", is_flag=True)
@pid_file_option
@console_option
@preserve_option
@click.option("--env", "-e", multiple=True, help="KEY=VALUE to add to the environment.")
@click.option("--cwd", default=None, help="Working directory inside the container.")
@click.option("--tty", "-t", is_flag=True, help="Allocate a pty (needs --console-socket).")
@click.option("--user", "-u", default=None, help="UID[:GID] to run as.")
@click.option("--additional-gids", "-g", multiple=True, type=int)
@click.option("--cap", "-c", multiple=True, help="Add a capability (CAP_NET_ADMIN).")
@click.option("--no-new-privs", is_flag=True)
@click.argument("container_id")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, process_file: str | None, detach: bool, pid_file: str | None,
          console_socket: str | None, preserve_fds: int, env: tuple[str, ...], cwd: str | None,
          tty: bool, user: str | None, additional_gids: tuple[int, ...], cap: tuple[str, ...],
          no_new_privs: bool, container_id: str, args: tuple[str, ...]) -> None:
    """Run a new process in a running container."""
    from minirun import container
    from minirun.config.exec_process import build_process
    from minirun.exec import exec_in

    root = _root(ctx)
    c = container.load(root, container_id)
    process = build_process(c.config().process, process_file, list(args), env=list(env),
                            cwd=cwd, tty=tty, user=user, additional_gids=list(additional_gids),
                            caps=list(cap), no_new_privs=no_new_privs)
    code = exec_in(root, container_id, process, detach=detach, pid_file=pid_file,
                             console_socket=console_socket, preserve_fds=preserve_fds)
    sys.exit(code)


@click.command()
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("container_id")
@click.pass_context
def ps(ctx: click.Context, fmt: str, container_id: str) -> None:
    """List the processes in the container (host PIDs)."""
    from minirun import container

    pids = container.processes(_root(ctx), container_id)
    if fmt == "json":
        click.echo(json.dumps(pids))
        return
    rows = [("PID", "PPID", "STAT", "CMD")]
    for pid in pids:
        info = _proc_info(pid)
        if info:
            rows.append(info)
    _print_table(rows)


def _proc_info(pid: int) -> tuple[str, str, str, str] | None:
    """PID, PPID, state and command line from /proc (proc(5))."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ").strip().decode(errors="replace")
    except OSError:
        return None
    comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
    fields = stat[stat.rindex(b")") + 2:].split()
    return str(pid), fields[1].decode(), fields[0].decode(), cmdline or f"[{comm}]"


@click.command()
def features() -> None:
    """Print what this minirun supports, as JSON (like `runc features`)."""
    from minirun.features import features as describe

    click.echo(json.dumps(describe(), indent=2))
