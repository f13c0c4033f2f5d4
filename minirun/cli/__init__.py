"""The ``minirun`` command line: parses arguments and prints results, nothing more.

Every subcommand lives in a module of this package and is imported only when
it is called, so ``minirun state`` does not pay for pyroute2 or PyYAML. The
work itself is done by the library modules one level up.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from minirun import __version__, log

# command name -> "module:function"; modules are imported on first use.
COMMANDS = {
    "spec": "minirun.cli.runtime:spec",
    "create": "minirun.cli.runtime:create",
    "start": "minirun.cli.runtime:start",
    "run": "minirun.cli.runtime:run",
    "state": "minirun.cli.runtime:state",
    "list": "minirun.cli.runtime:list_",
    "kill": "minirun.cli.runtime:kill",
    "delete": "minirun.cli.runtime:delete",
    "exec": "minirun.cli.runtime:exec_",
    "ps": "minirun.cli.runtime:ps",
    "features": "minirun.cli.runtime:features",
    # cgroups (issue 3)
    "pause": "minirun.cli.cgroups:pause",
    "resume": "minirun.cli.cgroups:resume",
    "update": "minirun.cli.cgroups:update",
    "events": "minirun.cli.cgroups:events",
    # networks (issue 5)
    "network": "minirun.cli.network:network",
    "netns": "minirun.cli.network:netns",
    # pods and the node (issue 4)
    "pod": "minirun.cli.pod:pod",
    "node": "minirun.cli.pod:node",
    "kubelet": "minirun.cli.pod:kubelet",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="minirun",
                      message="minirun version %(version)s\nspec: 1.0.2")
@click.option("--root", default="/run/minirun", show_default=True,
              help="Directory for container state.")
@click.option("--log", "log_file", default=None, help="Write log lines to this file.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              help="Log line format (json: runc's {level,msg,time}).")
@click.option("--debug", is_flag=True, help="Log debug messages too.")
@click.option("--systemd-cgroup", is_flag=True, help="Not supported: refused.")
@click.option("--cgroup-root", default=None, envvar="MINIRUN_CGROUP_ROOT",
              help="cgroup root for containers (default: own cgroup + minirun/).")
@click.pass_context
def main_group(ctx: click.Context, root: str, log_file: str | None, log_format: str,
               debug: bool, systemd_cgroup: bool, cgroup_root: str | None) -> None:
    """minirun: a runc-style container runtime for teaching."""
    log.configure(log_file, log_format, debug)
    if systemd_cgroup:
        raise click.UsageError("--systemd-cgroup is not supported: minirun writes cgroup "
                               "files itself and never asks systemd")
    ctx.obj = {"root": root, "cgroup_root": cgroup_root}


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turn every expected error into one line on stderr."""
    _exit(_run(argv))


def _run(argv: list[str] | None) -> int:
    from minirun.errors import MinirunError

    try:
        main_group.main(args=argv, prog_name="minirun", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.Abort:
        return 130
    except click.UsageError as e:
        where = f"{e.ctx.command_path}: " if e.ctx else ""
        log.error(f"{where}{e.format_message()}")
        return 2
    except click.ClickException as e:
        log.error(e.format_message())
        return e.exit_code
    except (MinirunError, OSError) as e:
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def _exit(code: int) -> None:
    """Flush and leave with _exit(2): tearing the interpreter down costs ~10 ms a call,
    and there is nothing left to clean up (every file is closed, no thread runs)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)
