"""The pause holder: the process a pod's namespaces hang on.

Two implementations of the same program live here (see docs/pause.md):

- ``pause.c``, compiled at install time by setup.py into ``bin/minirun-pause``, a
  static binary that sleeps in well under 1 MiB of memory. Pods use it.
- ``pause.py``, the same logic in Python, for reading in a lab
  (``python -m minirun.pause.pause``); about 9 MiB of memory per pod.

This module only says which one to execve(2); it never imports ``pause.py``.
"""

from __future__ import annotations

import os
import sys

NATIVE_PAUSE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "minirun-pause")

_warned_fallback = False


def native_pause_path() -> str | None:
    """The built native holder, or None if the install did not build it."""
    return NATIVE_PAUSE if os.access(NATIVE_PAUSE, os.X_OK) else None


def python_pause_command() -> list[str]:
    """argv that runs the Python holder with the interpreter running minirun."""
    return [sys.executable, "-m", "minirun.pause.pause"]


def pause_command() -> list[str]:
    """argv of the holder pods run: the native binary, else the Python one with a warning."""
    global _warned_fallback
    native = native_pause_path()
    if native is not None:
        return [native]
    if not _warned_fallback:
        from minirun import log

        log.warning(f"native pause holder {NATIVE_PAUSE} is missing (reinstall minirun to "
                    "build it with gcc); pods use the Python holder, about 9 MiB each")
        _warned_fallback = True
    return python_pause_command()
