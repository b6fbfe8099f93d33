"""The `credhelper` console script. Stdlib only until it knows it needs more.

`export` is the hot path: Claude Code runs it for every credential resolve.
When the daemon answers, nothing heavier than a Unix socket is imported (no
boto3, keyring, click, structlog). Every other command, and every case the
daemon cannot serve, goes to the click CLI and the direct path. The whole
export has one budget (`export_timeout`, 30 s by default), counted from start:
- no daemon (no socket file, connection refused): fall back at once;
- a socket this user does not own, or a daemon of another uid: ignored (said
  once on stderr), fall back;
- the daemon greets every connection with `wait N` from its accept loop: no
  greeting within HUNG_TIMEOUT means hung, fall back; after it, the daemon is
  alive (perhaps slow: CPUs saturated) and the client waits for its answer
  within the budget, then exits 6 instead of starting over on the direct path;
- garbage: fall back.
"""

from __future__ import annotations

import os
import sys
import time

from credhelper import protocol

#: when this process started: the export budget counts from here. Not
#: `credhelper.deadline.STARTED`: that module imports typing and threading
#: (8 ms, most of the warm export's cost); main() hands this value to it
#: before any other path runs.
STARTED = time.monotonic()
#: credhelper.deadline.DEFAULT_BUDGET (tests/test_lean.py keeps them equal)
DEFAULT_BUDGET = 30

#: no greeting within this long: the daemon is hung (its accept loop greets first)
HUNG_TIMEOUT = 5.0
CONNECT_TIMEOUT = 1.0
FORMATS = ("claude", "process", "env", "json")
#: set while a credential_process runs; the direct path checks it for recursion
CHAIN_ENV = "CREDHELPER_EXPORT_CHAIN"
EXIT_UPSTREAM = 6
#: time for the daemon's last-moment answer to arrive after its budget
REPLY_GRACE = 1.0


def parse_export_args(args: list[str]) -> tuple[str | None, str] | None:
    """(profile, format) for the simple forms of `export`, else None."""
    profile: str | None = None
    fmt = "claude"
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in ("--profile", "-p", "--format", "-f"):
            if not eq:
                if i + 1 >= len(args):
                    return None
                value = args[i + 1]
                i += 1
            if name in ("--profile", "-p"):
                profile = value
            else:
                fmt = value
        else:
            return None
        i += 1
    if fmt not in FORMATS or profile == "":
        return None
    return profile, fmt


class _Expired(Exception):
    """The export's budget ran out while a live daemon was answering."""


def _recv_some(sock: object, until: float) -> bytes:
    left = until - time.monotonic()
    if left <= 0:
        raise TimeoutError
    sock.settimeout(left)  # type: ignore[attr-defined]
    chunk: bytes = sock.recv(65536)  # type: ignore[attr-defined]
    if not chunk:
        raise protocol.ProtocolError("connection closed")
    return chunk


class _Reader:
    """Reads headers and bodies off the socket, each read bounded by an
    absolute monotonic time (a total, not a per-read timeout)."""

    def __init__(self, sock: object) -> None:
        self.sock = sock
        self.buf = b""

    def header(self, until: float) -> tuple[str, int, int]:
        while b"\n" not in self.buf:
            if len(self.buf) > protocol.MAX_HEADER:
                raise protocol.ProtocolError("header too long")
            self.buf += _recv_some(self.sock, until)
        line, _, self.buf = self.buf.partition(b"\n")
        if len(line) >= protocol.MAX_HEADER:
            raise protocol.ProtocolError("header too long")
        return protocol.parse_header(line)

    def body(self, length: int, until: float) -> bytes:
        while len(self.buf) < length:
            self.buf += _recv_some(self.sock, until)
        data, self.buf = self.buf[:length], self.buf[length:]
        return data


def _peer_uid(sock: object) -> int | None:
    import _socket

    if hasattr(_socket, "SO_PEERCRED"):
        data = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # type: ignore[attr-defined]
        return int.from_bytes(data[4:8], sys.byteorder, signed=True)
    if sys.platform == "darwin":  # LOCAL_PEERCRED: struct xucred {u_int cr_version; uid_t cr_uid; …}
        data = sock.getsockopt(0, 1, 76)  # type: ignore[attr-defined]
        return int.from_bytes(data[4:8], sys.byteorder, signed=False)
    return None


def distrust(path: str) -> str | None:
    """Why the socket at `path` must not be trusted, or None. The socket and
    its directory must be this user's; a directory of another user (or one
    anybody may write to without the sticky bit) lets someone else swap it."""
    uid = os.getuid()
    try:
        st = os.lstat(path)
        parent = os.stat(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None  # gone: connect will say so
    if st.st_uid != uid:
        return f"it belongs to uid {st.st_uid}"
    sticky, others_write = parent.st_mode & 0o1000, parent.st_mode & 0o022
    if parent.st_uid not in (uid, 0) or (others_write and not sticky):
        return f"its directory can be changed by another user (owner uid {parent.st_uid})"
    return None


def ask_daemon(path: str, request: bytes, started: float | None = None) -> tuple[str, int, str] | None:
    """(kind, code, body) from the daemon, or None when it cannot answer:
    the caller takes the direct path. The budget (the daemon's, from its
    greeting) counts from `started` (monotonic; default now); running out of it
    with a live daemon is an `error 6`."""
    if started is None:
        started = time.monotonic()
    import _socket  # the C module: `socket` would build its enums for nothing

    until = started + DEFAULT_BUDGET  # until the greeting says the daemon's budget
    why = distrust(path)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        if why is None:
            sock.settimeout(min(CONNECT_TIMEOUT, max(0.01, until - time.monotonic())))
            sock.connect(path)
            uid = _peer_uid(sock)
            if uid is not None and uid != os.getuid():
                why = f"the daemon listening there runs as uid {uid}"
        if why is not None:
            sys.stderr.write(f"credhelper: ignoring the daemon socket {path}: {why}; "
                             "using the direct path (fix CREDHELPER_SOCKET)\n")
            return None
        sock.settimeout(CONNECT_TIMEOUT)
        sock.sendall(request)
        reader = _Reader(sock)
        kind, code, length = reader.header(min(until, time.monotonic() + HUNG_TIMEOUT))
        if kind == "wait":
            # The greeting: alive, and answering within its budget (`code` s,
            # the settings' export_timeout), counted from this process's start.
            until = started + code + REPLY_GRACE
        while kind == "wait":
            try:
                kind, code, length = reader.header(until)
            except TimeoutError:
                raise _Expired from None
        body = reader.body(length, until).decode("utf-8")
        return kind, code, body
    except _Expired:
        budget = round(until - started - REPLY_GRACE)
        return ("error", EXIT_UPSTREAM, f"the credhelper daemon did not answer within the {budget} s "
                "budget (it is busy or stuck): check credhelper status, or raise export_timeout")
    except (OSError, protocol.ProtocolError, UnicodeDecodeError):
        return None
    finally:
        sock.close()


def socket_path() -> str:
    explicit = os.environ.get("CREDHELPER_SOCKET")
    if explicit:
        return explicit
    from credhelper import paths

    return paths.socket_path()


def try_daemon(args: list[str]) -> int | None:
    """Serve `export` through the daemon; None means: use the CLI instead."""
    parsed = parse_export_args(args)
    if parsed is None or os.environ.get(CHAIN_ENV):
        return None
    option, fmt = parsed
    env = os.environ
    profile = option or env.get("CREDHELPER_PROFILE") or env.get("AWS_PROFILE") or "default"
    if profile == "default" and env.get("AWS_ACCESS_KEY_ID"):
        return None  # the environment source: the daemon sees another environment
    path = socket_path()
    if not os.path.exists(path):
        return None
    client_env = {k: env[k] for k in protocol.CLIENT_ENV if k in env}
    elapsed = str(int((time.monotonic() - STARTED) * 1000))
    req = protocol.encode_request("export", {"profile": profile, "format": fmt, "elapsed_ms": elapsed},
                                  client_env)
    answer = ask_daemon(path, req, STARTED)
    if answer is None:
        return None
    kind, code, body = answer
    if kind == "ok":
        sys.stdout.write(body)
        sys.stdout.flush()
        return 0
    if kind == "error" and code not in (0, 1, 2):
        sys.stderr.write(f"credhelper: {body}\n")
        return code
    return None  # fallback, a daemon bug or a request it could not take: the direct path decides


def try_lean(args: list[str]) -> int | None:
    """Serve `export` from the store without the client machinery (no daemon
    answered); None means: use the CLI (credhelper/lean decides, see there)."""
    parsed = parse_export_args(args)
    if parsed is None or os.environ.get(CHAIN_ENV):
        return None  # the CLI checks the recursion
    option, fmt = parsed
    env = os.environ
    profile = option or env.get("CREDHELPER_PROFILE") or env.get("AWS_PROFILE") or "default"
    from credhelper.lean import try_export

    return try_export(profile, fmt)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["export"]:
        code = try_daemon(args[1:])
        if code is None:
            code = try_lean(args[1:])
        if code is not None:
            return code
    from credhelper import deadline

    deadline.STARTED = STARTED  # the direct path's budget counts from this process's start
    from credhelper.cli import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
