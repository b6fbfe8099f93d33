"""The Unix socket server (docs/protocol.md).

One thread, the accept loop, owns every connection until its request line is
complete; only complete requests get a worker thread. So:
- a client knows the daemon is alive at once: the accept loop greets every
  connection with `wait <budget>` before doing any other work, however busy the
  workers are (a slow daemon is not a hung one);
- a request line has a total deadline (REQUEST_TIMEOUT from accept), not a
  per-read one, and a connection waiting for its line costs a file descriptor,
  not a thread: clients that trickle bytes (slowloris) cannot take the slots
  of well-behaved ones; past MAX_PENDING the oldest waiting connection goes.
It checks the peer's uid itself (SO_PEERCRED / LOCAL_PEERCRED), whatever the
socket file's mode, and answers garbage, oversized and half-open requests with
an error and keeps serving.
"""

from __future__ import annotations

import collections
import contextlib
import os
import resource
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from credhelper import protocol
from credhelper.deadline import DEFAULT_BUDGET

#: a request line must be complete this long after the connection was accepted
#: (a client starved of CPU between connect and send still makes it; a waiting
#: connection costs a descriptor, not a thread, so this need not be short)
REQUEST_TIMEOUT = 10.0
#: worker threads (requests being answered) at once
MAX_CLIENTS = 512
#: connections still sending their request line at once
MAX_PENDING = 4096
#: a reply must be taken by the client within this long
REPLY_TIMEOUT = 5.0


def peer_credentials(conn: socket.socket) -> tuple[int | None, int | None]:
    """(pid, uid) of the peer, from the kernel; None where it cannot say."""
    if hasattr(socket, "SO_PEERCRED"):
        data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", data)
        return int(pid), int(uid)
    if sys.platform == "darwin":  # struct xucred: cr_version, cr_uid, …; LOCAL_PEERPID = 2
        sol_local, local_peercred, local_peerpid = 0, 1, 2
        uid = int(struct.unpack("Ii", conn.getsockopt(sol_local, local_peercred, 76)[:8])[1])
        pid = int(struct.unpack("i", conn.getsockopt(sol_local, local_peerpid, 4))[0])
        return pid, uid
    return None, None


def peer_uid(conn: socket.socket) -> int | None:
    return peer_credentials(conn)[1]


class Reply:
    def __init__(self, conn: socket.socket, peer_pid: int | None = None) -> None:
        self.conn = conn
        self.peer_pid = peer_pid

    def send(self, kind: str, code: int = 0, body: str = "") -> None:
        try:
            self.conn.sendall(protocol.response(kind, code, body))
        except OSError:
            pass  # the client went away, or does not read: nothing to tell it

    def ok(self, body: str) -> None:
        self.send("ok", 0, body)

    def error(self, code: int, message: str) -> None:
        self.send("error", code, message)

    def wait(self, seconds: int) -> None:
        self.send("wait", seconds)


Handler = Callable[[dict[str, object], Reply], None]


@dataclass
class _Pending:
    conn: socket.socket
    pid: int | None
    deadline: float
    buf: bytearray = field(default_factory=bytearray)


def raise_fd_limit() -> None:
    """Pending connections cost a descriptor each: use the hard limit."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536) if hard > 0 else soft, hard))


class Server:
    def __init__(self, path: str, handler: Handler, log: Any, *,
                 budget: Callable[[], int] = lambda: DEFAULT_BUDGET,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.handler = handler
        self.log = log
        self.uid = os.getuid()
        #: seconds a client may wait for an answer (the greeting's `wait` code),
        #: read per connection: a reload may change it
        self.budget = budget
        self.clock = clock
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._pending: dict[int, _Pending] = {}
        # Signal handlers only append here and write a byte to the pipe: the accept
        # loop (the main thread) runs the calls. A handler that took a lock (a log
        # line, a thread start) could deadlock against the code it interrupted.
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def bind(self) -> None:
        """Bind a fresh socket (the caller holds the single-instance lock, so a
        file already there is stale), 0600 in its 0700 directory."""
        if os.path.lexists(self.path):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(1024)
        sock.setblocking(False)
        self._sock = sock
        raise_fd_limit()

    # -- the accept loop -------------------------------------------------------------
    def serve_forever(self) -> None:
        assert self._sock is not None
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                timeout: float | None = None  # idle: sleep until a connection or a call_soon
                if self._pending:
                    nearest = min(p.deadline for p in self._pending.values())
                    timeout = max(0.0, nearest - self.clock())
                try:
                    events = sel.select(timeout)
                except (OSError, ValueError):
                    if self._stopping.is_set():
                        break
                    raise
                for key, _ in events:
                    if key.fd == self._wake_r:
                        self._run_calls()
                    elif key.fileobj is self._sock:
                        self._accept(sel)
                    else:
                        self._readable(sel, key.fd)
                self._expire(sel)
        finally:
            for pending in list(self._pending.values()):
                self._drop(sel, pending)
            sel.close()

    def _accept(self, sel: selectors.BaseSelector) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: the pending cap keeps it rare
                self.log.warning("accept_failed", error=exc.strerror or type(exc).__name__)
                return
            try:
                pid, uid = peer_credentials(conn)
            except OSError:
                pid, uid = None, None
            if uid != self.uid:
                self.log.warning("peer_rejected", peer_uid=uid, daemon_uid=self.uid)
                self._send_now(conn, protocol.response(
                    "error", 2, "permission denied: this daemon serves only its own user"))
                conn.close()
                continue
            # The sign of life, before anything else: this daemon is alive and
            # will answer within `budget` seconds (protocol.md "Liveness").
            if not self._send_now(conn, protocol.header("wait", self.budget())):
                conn.close()
                continue
            if len(self._pending) >= MAX_PENDING:
                oldest = min(self._pending.values(), key=lambda p: p.deadline)
                self._refuse(sel, oldest, "bad request: too many connections waiting for a request line")
            conn.setblocking(False)
            pending = _Pending(conn, pid, self.clock() + REQUEST_TIMEOUT)
            self._pending[conn.fileno()] = pending
            sel.register(conn, selectors.EVENT_READ)

    @staticmethod
    def _send_now(conn: socket.socket, data: bytes) -> bool:
        """Send a few bytes without blocking (a fresh socket's buffer takes them)."""
        try:
            conn.setblocking(False)
            conn.send(data)
            return True
        except OSError:
            return False

    def _readable(self, sel: selectors.BaseSelector, fd: int) -> None:
        pending = self._pending.get(fd)
        if pending is None:
            return
        try:
            chunk = pending.conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            if pending.buf:
                self.log.info("bad_request", error="incomplete")
            self._drop(sel, pending)
            return
        pending.buf += chunk
        newline = pending.buf.find(b"\n")
        if (newline < 0 and len(pending.buf) > protocol.MAX_REQUEST) or newline >= protocol.MAX_REQUEST:
            self.log.info("bad_request", error="too large")
            self._refuse(sel, pending, f"bad request: larger than {protocol.MAX_REQUEST} bytes")
            return
        if newline < 0:
            return
        line = bytes(pending.buf[:newline])
        sel.unregister(pending.conn)
        del self._pending[fd]
        self._dispatch(pending.conn, pending.pid, line)

    def _expire(self, sel: selectors.BaseSelector) -> None:
        now = self.clock()
        for pending in [p for p in self._pending.values() if p.deadline <= now]:
            self.log.info("bad_request", error="timeout")
            self._refuse(sel, pending, "bad request: timed out: no complete request line "
                         f"within {REQUEST_TIMEOUT:g} s of connecting")

    def _refuse(self, sel: selectors.BaseSelector, pending: _Pending, message: str) -> None:
        self._send_now(pending.conn, protocol.response("error", 2, message))
        self._drop(sel, pending)

    def _drop(self, sel: selectors.BaseSelector, pending: _Pending) -> None:
        self._pending.pop(pending.conn.fileno(), None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            sel.unregister(pending.conn)
        pending.conn.close()

    # -- workers ---------------------------------------------------------------------
    def _dispatch(self, conn: socket.socket, pid: int | None, line: bytes) -> None:
        conn.setblocking(True)
        conn.settimeout(REPLY_TIMEOUT)  # a total for sendall (Python >= 3.5)
        if not self._slots.acquire(blocking=False):
            Reply(conn).error(1, "daemon busy")
            conn.close()
            return
        try:
            threading.Thread(target=self._serve, args=(conn, pid, line), daemon=True).start()
        except RuntimeError:  # can't start new thread
            self._slots.release()
            Reply(conn).error(1, "daemon busy")
            conn.close()

    def _serve(self, conn: socket.socket, pid: int | None, line: bytes) -> None:
        try:
            reply = Reply(conn, pid)
            try:
                request = protocol.decode_request(line)
            except protocol.ProtocolError as exc:
                self.log.info("bad_request", error=str(exc))
                reply.error(2, f"bad request: {exc}")
                return
            self.handler(request, reply)
        except Exception as exc:  # noqa: BLE001 - one bad connection never stops the daemon
            self.log.error("connection_failed", error=type(exc).__name__)
        finally:
            conn.close()
            self._slots.release()

    # -- control (signal-safe) -----------------------------------------------------------
    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` in the accept loop. Safe in a signal handler: no lock, no I/O but a pipe write."""
        self._calls.append(fn)
        with contextlib.suppress(OSError):  # a full pipe already wakes the loop
            os.write(self._wake_w, b"x")

    def request_stop(self) -> None:
        """Make serve_forever return. Safe in a signal handler."""
        self.call_soon(self._stopping.set)

    def _run_calls(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 4096)
        while self._calls:
            self._calls.popleft()()

    def close(self) -> None:
        """After serve_forever: close the socket and remove its file."""
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
