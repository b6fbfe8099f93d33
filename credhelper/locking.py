"""One cross-process lock per profile (fcntl.flock on a file in the state dir),
taken by the daemon and the direct export path alike, so that there is one
upstream call per profile at a time. Threads of one process also queue on a
per-profile threading lock, so a daemon's callers do not poll."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from credhelper import paths
from credhelper.errors import UpstreamError

_thread_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def _thread_lock(name: str) -> threading.Lock:
    with _guard:
        return _thread_locks.setdefault(name, threading.Lock())


def lock_file(lock_dir: str, name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return os.path.join(lock_dir, f"{safe}-{digest}.lock")


@contextmanager
def profile_lock(
    name: str, timeout: float, lock_dir: str | None = None, on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold the lock for `name`, waiting at most `timeout` seconds; `on_wait` is
    called once if another process holds it."""
    deadline = time.monotonic() + timeout
    tlock = _thread_lock(name)
    if not tlock.acquire(timeout=timeout):
        raise _timeout(name, timeout)
    try:
        directory = paths.ensure_private_dir(lock_dir or paths.lock_dir())
        fd = os.open(lock_file(directory, name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if on_wait is not None:
                        on_wait()
                        on_wait = None
                    if time.monotonic() >= deadline:
                        raise _timeout(name, timeout) from None
                    time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        tlock.release()


def _timeout(name: str, timeout: float) -> UpstreamError:
    return UpstreamError(
        f"another credhelper has been minting {name} for over {timeout:.0f} s: "
        "check credhelper status, or raise mint_timeout"
    )
