"""The Unix socket server: one thread per connection, one request per
connection (docs/protocol.md). It checks the peer's uid itself (SO_PEERCRED /
LOCAL_PEERCRED), whatever the socket file's mode, answers garbage, oversized
and half-open requests with an error (or a timeout) and keeps serving.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

from credhelper import protocol

REQUEST_TIMEOUT = 5.0
MAX_CLIENTS = 512


def peer_uid(conn: socket.socket) -> int | None:
    if hasattr(socket, "SO_PEERCRED"):
        data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", data)[1])
    if sys.platform == "darwin":  # struct xucred: cr_version, cr_uid, …
        sol_local, local_peercred = 0, 1
        data = conn.getsockopt(sol_local, local_peercred, 76)
        return int(struct.unpack("Ii", data[:8])[1])
    return None


class Reply:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def send(self, kind: str, code: int = 0, body: str = "") -> None:
        try:
            self.conn.sendall(protocol.response(kind, code, body))
        except OSError:
            pass  # the client went away; nothing to tell it

    def ok(self, body: str) -> None:
        self.send("ok", 0, body)

    def error(self, code: int, message: str) -> None:
        self.send("error", code, message)

    def wait(self, seconds: int) -> None:
        self.send("wait", seconds)


Handler = Callable[[dict[str, object], Reply], None]


class Server:
    def __init__(self, path: str, handler: Handler, log: Any) -> None:
        self.path = path
        self.handler = handler
        self.log = log
        self.uid = os.getuid()
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()

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
        sock.listen(MAX_CLIENTS)
        self._sock = sock

    def serve_forever(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stopping.is_set():
                    break
                continue
            if not self._slots.acquire(blocking=False):
                Reply(conn).error(1, "daemon busy")
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def shutdown(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _serve(self, conn: socket.socket) -> None:
        try:
            reply = Reply(conn)
            uid = peer_uid(conn)
            if uid != self.uid:
                self.log.warning("peer_rejected", peer_uid=uid, daemon_uid=self.uid)
                reply.error(2, "permission denied: this daemon serves only its own user")
                return
            conn.settimeout(REQUEST_TIMEOUT)
            line = self._read_line(conn, reply)
            if line is None:
                return
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

    def _read_line(self, conn: socket.socket, reply: Reply) -> bytes | None:
        buf = b""
        while b"\n" not in buf:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                self.log.info("bad_request", error="timeout")
                reply.error(2, "bad request: timed out waiting for a complete line")
                return None
            if not chunk:
                if buf:
                    self.log.info("bad_request", error="incomplete")
                return None
            buf += chunk
            if len(buf) > protocol.MAX_REQUEST:
                self.log.info("bad_request", error="too large")
                reply.error(2, f"bad request: larger than {protocol.MAX_REQUEST} bytes")
                return None
        return buf.split(b"\n", 1)[0]
