"""The `credhelper` console script. Stdlib only until it knows it needs more.

`export` is the hot path: Claude Code runs it for every credential resolve.
When the daemon answers, nothing heavier than a Unix socket is imported (no
boto3, keyring, click, structlog). Every other command, and every case the
daemon cannot serve, goes to the click CLI and the direct path:
- no daemon (no socket file, connection refused): fall back at once;
- daemon busy minting (it says `wait N`): wait up to N seconds for its answer;
- daemon hung (no header within HUNG_TIMEOUT) or garbage: fall back.
"""

from __future__ import annotations

import os
import sys

from credhelper import protocol

HUNG_TIMEOUT = 1.5
CONNECT_TIMEOUT = 1.0
FORMATS = ("claude", "process", "env", "json")
#: set while a credential_process runs; the direct path checks it for recursion
CHAIN_ENV = "CREDHELPER_EXPORT_CHAIN"


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


def _recv_line(sock: object, limit: int) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)  # type: ignore[attr-defined]
        if not chunk:
            raise protocol.ProtocolError("connection closed")
        buf += chunk
        if len(buf) > limit:
            raise protocol.ProtocolError("header too long")
    return buf


def _recv_exact(sock: object, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = sock.recv(min(65536, n - got))  # type: ignore[attr-defined]
        if not chunk:
            raise protocol.ProtocolError("truncated body")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def ask_daemon(path: str, request: bytes) -> tuple[str, int, str] | None:
    """(kind, code, body) from the daemon, or None when it cannot answer."""
    import _socket  # the C module: `socket` would build its enums for nothing

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        sock.settimeout(HUNG_TIMEOUT)
        sock.sendall(request)
        kind, code, length = protocol.parse_header(_recv_line(sock, protocol.MAX_HEADER))
        if kind == "wait":
            sock.settimeout(max(code, 1))
            kind, code, length = protocol.parse_header(_recv_line(sock, protocol.MAX_HEADER))
            if kind == "wait":
                return None
        body = _recv_exact(sock, length).decode("utf-8")
        return kind, code, body
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
    req = protocol.encode_request("export", {"profile": profile, "format": fmt}, client_env)
    answer = ask_daemon(path, req)
    if answer is None:
        return None
    kind, code, body = answer
    if kind == "ok":
        sys.stdout.write(body)
        sys.stdout.flush()
        return 0
    if kind == "error" and code not in (0, 1):
        sys.stderr.write(f"credhelper: {body}\n")
        return code
    return None  # fallback, or a daemon bug: the direct path decides


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["export"]:
        code = try_daemon(args[1:])
        if code is not None:
            return code
    from credhelper.cli import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
