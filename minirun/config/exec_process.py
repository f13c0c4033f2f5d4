"""The process of ``minirun exec``: from ``--process FILE`` or from flags.

Like runc, an exec'd process starts from the container's own process
(its capabilities, rlimits, environment, user) and the flags change what
they name. ``--process FILE`` replaces it with a full OCI process object.
"""

from __future__ import annotations

import copy
import json

from minirun.config.oci import Process, parse_process
from minirun.errors import ConfigError, MinirunError


def build_process(base: Process, process_file: str | None, args: list[str], *,
                  env: list[str], cwd: str | None, tty: bool, user: str | None,
                  additional_gids: list[int], caps: list[str], no_new_privs: bool) -> Process:
    if process_file:
        return _load_process_file(process_file)
    if not args:
        raise MinirunError("exec: give a command to run, or --process FILE")
    process = copy.deepcopy(base)
    process.args = args
    process.terminal = tty
    process.console_size = None
    for i, item in enumerate(env):
        if "=" not in item:
            raise ConfigError(f"--env[{i}]", f"expected KEY=VALUE, got {item!r}")
    keys = {item.split("=", 1)[0] for item in env}
    process.env = [e for e in process.env if e.split("=", 1)[0] not in keys] + env
    if cwd:
        if not cwd.startswith("/"):
            raise ConfigError("--cwd", "must be an absolute path")
        process.cwd = cwd
    if user:
        uid, _, gid = user.partition(":")
        try:
            process.user.uid = int(uid)
            process.user.gid = int(gid) if gid else process.user.gid
        except ValueError:
            raise ConfigError("--user", f"expected UID[:GID] as numbers, got {user!r}") from None
    if additional_gids:
        process.user.additional_gids = additional_gids
    if caps:
        from minirun.capabilities import CAPABILITIES
        if process.capabilities is None:
            raise ConfigError("--cap", "the container's process has no capability sets to add to")
        for name in caps:
            if name not in CAPABILITIES:
                raise ConfigError("--cap", f"unknown capability {name!r}")
            bit = 1 << CAPABILITIES[name]
            for attr in ("bounding", "effective", "permitted", "inheritable", "ambient"):
                setattr(process.capabilities, attr, getattr(process.capabilities, attr) | bit)
    if no_new_privs:
        process.no_new_privileges = True
    return process


def _load_process_file(path: str) -> Process:
    try:
        with open(path) as fh:
            obj = json.load(fh)
    except OSError as e:
        raise ConfigError(path, e.strerror) from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}", f"invalid JSON: {e.msg}") from None
    if not isinstance(obj, dict):
        raise ConfigError(path, "expected a JSON object (an OCI process)")
    try:
        return parse_process(obj, "process")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.where}", str(e)[len(e.where) + 2:]) from None
