"""Signal names as users type them: TERM, SIGTERM, 15, RTMIN+3 (signal(7))."""

from __future__ import annotations

import signal

from minirun.errors import MinirunError


def parse_signal(text: str) -> int:
    """The signal number for ``text``, or a clear error."""
    if text.isdigit():
        number = int(text)
        if 0 < number <= signal.SIGRTMAX:
            return number
        raise MinirunError(f"invalid signal {text!r}: numbers go from 1 to {int(signal.SIGRTMAX)}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    for prefix, base in (("SIGRTMIN+", signal.SIGRTMIN), ("SIGRTMAX-", signal.SIGRTMAX)):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            offset = int(name[len(prefix):])
            number = base + offset if prefix == "SIGRTMIN+" else base - offset
            if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                return int(number)
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise MinirunError(f"invalid signal {text!r} (try TERM, SIGKILL or 9)") from None
