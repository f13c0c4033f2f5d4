"""Log lines the way runc writes them.

Errors always go to stderr as one line. With ``--log FILE`` they also go to
that file, as text or (``--log-format json``) as ``{"level","msg","time"}``
objects, one a line: containerd's shim reads that file to report why runc
failed, so the words matter.
"""

from __future__ import annotations

import json
import sys
import time

_file: str | None = None
_format = "text"
_debug = False


def configure(log_file: str | None, log_format: str, debug: bool) -> None:
    global _file, _format, _debug
    _file, _format, _debug = log_file, log_format, debug


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _write(level: str, msg: str) -> None:
    if not _file:
        return
    if _format == "json":
        line = json.dumps({"level": level, "msg": msg, "time": _now()})
    else:
        line = f'time="{_now()}" level={level} msg="{msg}"'
    try:
        with open(_file, "a") as f:
            f.write(line + "\n")
    except OSError as e:
        print(f"minirun: cannot write log file {_file}: {e.strerror}", file=sys.stderr)


def error(msg: str) -> None:
    """One line on stderr, and the log file if one was given."""
    print(f"minirun: {msg}", file=sys.stderr)
    _write("error", msg)


def warning(msg: str) -> None:
    print(f"minirun: warning: {msg}", file=sys.stderr)
    _write("warning", msg)


def debug(msg: str) -> None:
    if _debug:
        print(f"minirun: debug: {msg}", file=sys.stderr)
        _write("debug", msg)


def info(msg: str) -> None:
    """Progress for long-running commands (the kubelet): stderr and the log file."""
    print(f"minirun: {msg}", file=sys.stderr, flush=True)
    _write("info", msg)
