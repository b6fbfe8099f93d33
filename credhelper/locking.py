"""One cross-process lock per profile (fcntl.flock on a file in the state dir),
taken by the daemon and the direct export path alike, so that there is one
upstream call per profile at a time. Threads of one process also queue on a
per-profile threading lock, so a daemon's callers do not poll.

The lock file records its holder's pid. A process that finds the lock held by
one of its own ancestors is the ancestor's `credential_process` (or a helper
it ran) asking for the same profile again: waiting would deadlock until the
budget runs out, so it stops at once with a configuration error. This works
whatever the environment between them (a wrapper that scrubs it, `env -u`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from credhelper import paths, procs
from credhelper.errors import ConfigError, UpstreamError

_thread_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()
#: text shared with the credential_process source, which recognises it in a helper's stderr
RECURSION = "credential_process recursion"


def _thread_lock(name: str) -> threading.Lock:
    with _guard:
        return _thread_locks.setdefault(name, threading.Lock())


def lock_file(lock_dir: str, name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return os.path.join(lock_dir, f"{safe}-{digest}.lock")


def _holder(fd: int) -> int | None:
    try:
        data = os.pread(fd, 32, 0)
    except OSError:
        return None
    text = data.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() and 0 < int(text) < 2**31 else None


def _record_holder(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode() + b"\n", 0)
    except OSError:
        pass  # the pid is a diagnosis aid; the lock itself is the flock


def _clear_holder(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass


@contextmanager
def profile_lock(
    name: str, timeout: float, lock_dir: str | None = None, on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold the lock for `name`, waiting at most `timeout` seconds in total;
    `on_wait` is called once if another process holds it."""
    deadline = time.monotonic() + timeout
    tlock = _thread_lock(name)
    if not tlock.acquire(timeout=max(0.0, timeout)):
        raise _timeout(name, timeout)
    try:
        directory = paths.ensure_private_dir(lock_dir or paths.lock_dir())
        fd = os.open(lock_file(directory, name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            checked: int | None = None
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = _holder(fd)
                    if holder is not None and holder != checked:
                        checked = holder
                        if holder in procs.ancestors(os.getpid()):
                            raise _recursion(name, holder) from None
                    if on_wait is not None:
                        on_wait()
                        on_wait = None
                    if time.monotonic() >= deadline:
                        raise _timeout(name, timeout) from None
                    time.sleep(0.02)
            _record_holder(fd)
            try:
                yield
            finally:
                _clear_holder(fd)  # a stale pid must not look like a holder later
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        tlock.release()


def _timeout(name: str, timeout: float) -> UpstreamError:
    return UpstreamError(
        f"another credhelper has been minting {name} for the whole {timeout:.0f} s budget: "
        "check credhelper status and the profile's upstream, or raise export_timeout"
    )


def _recursion(name: str, holder: int) -> ConfigError:
    return ConfigError(
        f"{RECURSION}: {name} is being minted by process {holder}, which started this one: "
        "a profile's credential_process must not run credhelper export for itself; "
        "point it at the real helper"
    )
