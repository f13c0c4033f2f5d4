"""The container's init: the code that runs in the cloned child until execve(2).

``container.py`` orchestrates from outside; this module is what happens
inside, in the order runc's ``runc init`` does it:

    join namespaces -> wait for the parent (ID maps, cgroup) -> mounts ->
    parent runs createRuntime hooks -> createContainer hooks -> pivot_root ->
    hostname, sysctl, read-only and masked paths -> console -> ready ->
    wait on the exec FIFO (``minirun start``) -> startContainer hooks ->
    rlimits, user, capabilities, no_new_privs, seccomp -> execve

Anything that goes wrong before "ready" travels back to the parent as one
error message, so ``minirun create`` can print it and clean up.
``exec_process`` is the shorter path ``minirun exec`` takes into a
container that already exists.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from minirun import libc, namespaces, rootfs
from minirun.channel import Channel
from minirun.config.oci import Config, Process
from minirun.libc import lib

if TYPE_CHECKING:
    import socket


@dataclass
class InitPlan:
    """Everything the child needs, prepared by the parent before clone(2)."""
    config: Config
    channel: Channel
    joins: list = field(default_factory=list)          # namespaces.NamespaceFile to setns
    fifo_fd: int = -1                                   # O_PATH fd of the exec FIFO
    console: socket.socket | None = None
    no_pivot: bool = False
    preserve_fds: int = 0
    stdio: tuple[int, int, int] | None = None           # fds to become 0, 1, 2 (pod logs)
    state: dict = field(default_factory=dict)           # OCI state for in-container hooks


def run_init(plan: InitPlan) -> NoReturn:
    """Entry point in the child. Never returns: it execs or exits."""
    try:
        if plan.stdio is not None:
            for target, fd in enumerate(plan.stdio):
                os.dup2(fd, target)
        _setup_container(plan)
        _wait_for_start(plan)
        if plan.config.hooks.get("startContainer"):
            from minirun.hooks import run_hooks
            run_hooks(plan.config.hooks["startContainer"], "startContainer", plan.state)
        finish_and_exec(plan.config.process, plan.config, plan.preserve_fds)
    except BaseException as e:  # noqa: BLE001 - the child must never unwind into the caller
        _report(plan.channel, e)
    os._exit(1)


def _report(channel: Channel, error: BaseException) -> None:
    if os.environ.get("MINIRUN_DEBUG_INIT"):   # a developer's aid: where did the init fail?
        import traceback
        traceback.print_exception(error)
    try:
        channel.send("error", message=str(error) or type(error).__name__)
    except OSError:
        os.write(2, f"minirun init: {error}\n".encode())


def _setup_container(plan: InitPlan) -> None:
    cfg = plan.config
    # die with the parent while it still needs us; cleared before "ready"
    libc.prctl(lib.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    for ns in plan.joins:
        namespaces.join_namespace(ns)
    plan.channel.expect("mapped")   # uid/gid maps written (the cgroup comes meanwhile)
    user_ns = cfg.namespace("user")
    if user_ns is not None and user_ns.path is None:
        # root inside the new user namespace (the ID maps are written by now)
        libc.setresgid(0)
        libc.setresuid(0)
    if cfg.process.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write(str(cfg.process.oom_score_adj))

    rootfs.isolate_mounts(cfg.rootfs_propagation)
    rootfs.mount_rootfs(cfg.root_path)
    for m in cfg.mounts:
        rootfs.mount_entry(cfg.root_path, cfg.bundle, m)
    has_dev = any(m.destination == "/dev" for m in cfg.mounts)
    in_userns = cfg.namespace("user") is not None
    rootfs.create_devices(cfg.root_path, cfg.devices, default_devices=has_dev, bind=in_userns)

    plan.channel.send("mounted")
    # prestart + createRuntime hooks ran in the parent, which sends the state
    plan.state = plan.channel.expect("hooks-done").get("state", {})
    if cfg.hooks.get("createContainer"):
        from minirun.hooks import run_hooks
        run_hooks(cfg.hooks["createContainer"], "createContainer", plan.state)

    if plan.no_pivot:
        rootfs.chroot_into(cfg.root_path)
    else:
        rootfs.pivot_into(cfg.root_path)
    rootfs.set_root_propagation(cfg.rootfs_propagation)

    if cfg.hostname is not None:
        libc.sethostname(cfg.hostname)
    if cfg.domainname is not None:
        libc.setdomainname(cfg.domainname)
    for key, value in cfg.sysctl.items():
        write_sysctl(key, value)
    rootfs.make_readonly(cfg.readonly_paths)
    rootfs.mask_paths(cfg.masked_paths)
    if cfg.root_readonly:
        rootfs.remount_root_readonly()
    if cfg.process.terminal:
        from minirun.terminal import setup_console
        setup_console(plan.console, cfg.process.console_size)
    os.chdir(cfg.process.cwd)
    resolve_program(cfg.process)   # "executable file not found" belongs to create
    libc.prctl(lib.PR_SET_PDEATHSIG, 0, "PR_SET_PDEATHSIG")
    plan.channel.send("ready")
    plan.channel.close()


def _wait_for_start(plan: InitPlan) -> None:
    """Block in open(2) of the exec FIFO until ``minirun start`` opens it to read.

    The FIFO lives in the state directory, outside the new root: we kept an
    O_PATH descriptor from before pivot_root and reopen it through /proc.
    """
    fd = os.open(f"/proc/self/fd/{plan.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(plan.fifo_fd)


def write_sysctl(key: str, value: str) -> None:
    """linux.sysctl: net.ipv4.ip_forward -> /proc/sys/net/ipv4/ip_forward (sysctl(8))."""
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as e:
        raise libc.syscall_error("write", f"{path}, sysctl {key}", e.errno) from None


def resolve_program(process: Process) -> str:
    """Find ``args[0]`` the way execvp(3) would, on the container's PATH."""
    program = process.args[0]
    if "/" in program:
        if not os.access(program, os.X_OK):
            raise libc.syscall_error("exec", program, 2 if not os.path.exists(program) else 13)
        return program
    path = next((e[5:] for e in process.env if e.startswith("PATH=")), "/usr/bin:/bin")
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise OSError(2, f'exec: "{program}": executable file not found in $PATH')


def finish_and_exec(process: Process, cfg: Config, preserve_fds: int) -> NoReturn:
    """The last steps, shared by create and exec: limits, identity, privileges, execve."""
    import resource

    for rl in process.rlimits:
        try:
            resource.setrlimit(rl.resource, (rl.soft, rl.hard))
        except (OSError, ValueError) as e:
            raise OSError(getattr(e, "errno", 1),
                          f"setrlimit({rl.name}, {rl.soft}, {rl.hard}): {e}") from None
    # Loading a filter needs no_new_privs or CAP_SYS_ADMIN: without no_new_privs it
    # must happen now, while we are still root (and the filter must then allow the
    # calls below); with it, as late as possible, as runc does.
    early_seccomp = cfg.seccomp is not None and not process.no_new_privileges
    if early_seccomp:
        _load_seccomp(cfg)
    caps = process.capabilities
    if caps is not None:
        from minirun import capabilities
        capabilities.drop_bounding_set(caps.bounding)
        capabilities.keep_capabilities_across_setuid()
    user = process.user
    libc.setgroups(user.additional_gids)
    libc.setresgid(user.gid)
    libc.setresuid(user.uid)
    if user.umask is not None:
        os.umask(user.umask)
    if caps is not None:
        capabilities.apply_capabilities(caps)
    if process.no_new_privileges:
        libc.prctl(lib.PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
    program = resolve_program(process)
    env = dict(e.split("=", 1) for e in process.env)
    env.setdefault("HOME", _home_of(user.uid))
    for fd in range(3, 3 + preserve_fds):
        os.set_inheritable(fd, True)
    libc.close_range_cloexec(3 + preserve_fds)   # nothing of minirun's leaks into the program
    if cfg.seccomp is not None and not early_seccomp:
        _load_seccomp(cfg)
    os.execve(program, process.args, env)
    raise AssertionError("unreachable")


def _load_seccomp(cfg: Config) -> None:
    from minirun.seccomp import load_seccomp
    load_seccomp(cfg.seccomp)


def _home_of(uid: int) -> str:
    """HOME from the container's /etc/passwd, as runc sets it when the config does not."""
    try:
        with open("/etc/passwd") as fh:
            for line in fh:
                parts = line.split(":")
                if len(parts) > 5 and parts[2] == str(uid):
                    return parts[5]
    except OSError:
        pass
    return "/"


def exec_process(process: Process, cfg: Config, joins: list, channel: Channel,
                 console: socket.socket | None, preserve_fds: int) -> NoReturn:
    """``minirun exec``: join a running container's namespaces, then run one program."""
    try:
        for ns in joins:
            namespaces.join_namespace(ns)
        channel.expect("mapped")   # the parent put us in the container's cgroup
        if cfg.process.oom_score_adj is not None:
            with open("/proc/self/oom_score_adj", "w") as fh:
                fh.write(str(cfg.process.oom_score_adj))
        if process.terminal:
            from minirun.terminal import setup_console
            setup_console(console, process.console_size)
        os.chdir(process.cwd)
        resolve_program(process)
        channel.send("ready")
        channel.close()
        finish_and_exec(process, cfg, preserve_fds)
    except BaseException as e:  # noqa: BLE001
        _report(channel, e)
    os._exit(1)
