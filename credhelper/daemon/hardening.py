"""Keep the daemon's memory out of reach: it holds every served credential.

`make_undumpable()` runs first thing in the daemon. On Linux it clears the
process's dumpable flag (`prctl(PR_SET_DUMPABLE, 0)`): no core file is written
when it crashes, and other processes of the same user can no longer read its
`/proc/PID/environ`, `/proc/PID/mem` or attach a debugger (ptrace). Everywhere
it also sets `RLIMIT_CORE` to 0 (soft and hard), which is all macOS offers
short of code signing. The service files set the same zero core limit
(`LimitCORE=0`, launchd's `Core` resource limits), so a crash before this
runs writes nothing either.

Children do not inherit the flag (execve resets it); they inherit the core limit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys

#: <linux/prctl.h>
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def make_undumpable() -> list[str]:
    """Apply what this platform offers; the list names what is in force
    (logged at start: an empty list means a crash could dump secrets)."""
    done = []
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        done.append("RLIMIT_CORE=0")
    except (ValueError, OSError):
        pass
    if sys.platform.startswith("linux"):
        try:
            libc = _libc()
            if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 and dumpable() is False:
                done.append("PR_SET_DUMPABLE=0")
        except (OSError, AttributeError):
            pass
    return done


def dumpable() -> bool | None:
    """Linux: this process's dumpable flag (None elsewhere, or if unknown)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        result = int(_libc().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
    except (OSError, AttributeError):
        return None
    return None if result < 0 else bool(result)
