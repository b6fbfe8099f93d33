"""The fault matrix (issue 8, "Also"): one test per fault that no other module
already covers in full; docs/reliability.md lists every row and names the test
that proves it (this module's or another's), and tests/test_reliability_doc.py
keeps that table true. The store and clock faults are in
tests/test_fault_matrix_store.py, which uses this module's helpers.

Each test runs the real `credhelper` (subprocesses of the installed console
script, a real daemon where one is involved) against moto or a small STS
stand-in, and checks what the user sees (exit code, empty stdout, exactly one
stderr line, `status --json`) and what is left afterwards (the store still
reads, nothing lost, still-valid credentials still served, with no upstream
call). Faults are real where this machine allows: a full tmpfs (ENOSPC) in a
private mount namespace, a network namespace without a route, a listener whose
accept queue is full (a blackhole), SIGKILL, libfaketime for the clock.
"""

from __future__ import annotations

import glob
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest
from conftest import unavailable
from daemon_helpers import ROLE_ARN, Daemons, parse_export, write_setup
from test_sso import Sso, emu, sso  # noqa: F401 - the SSO emulator fixtures, reused
from test_sso import exported as sso_exported

if TYPE_CHECKING:
    from conftest import AwsEnv
    from daemon_helpers import Export

OTHER_ARN = "arn:aws:iam::123456789012:role/other"
#: a second role on the same source keys: the profile a fault hits while `dev` is cached
OTHER = f"[profile other]\nrole_arn = {OTHER_ARN}\nsource_profile = base\nregion = us-east-1\n"
#: process start-up and teardown on top of a budget (2 shared cores, a loaded CI box)
SLACK = 8.0


# ------------------------------------------------------------------ helpers


def one_line(proc: subprocess.CompletedProcess[str] | Export, code: int, *needles: str) -> str:
    """The failure contract: exit `code`, empty stdout, one stderr line with the fix."""
    rc = proc.returncode if isinstance(proc, subprocess.CompletedProcess) else proc.rc
    assert rc == code, f"rc={rc} stderr={proc.stderr!r}"
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and proc.stderr.endswith("\n"), proc.stderr
    assert lines[0].startswith("credhelper: ") and "Traceback" not in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def export(aws_env: AwsEnv, profile: str = "dev", *, env: dict[str, str | None] | None = None,
           timeout: float = 90) -> tuple[subprocess.CompletedProcess[str], float]:
    """`credhelper export --profile P` and how long it took."""
    started = time.monotonic()
    done = aws_env.run("export", "--profile", profile, env=env, timeout=timeout)
    return done, time.monotonic() - started


def creds_of(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert done.returncode == 0, f"rc={done.returncode} stderr={done.stderr!r}"
    assert done.stderr == "", done.stderr
    return parse_export(done.stdout)


def cached(aws_env: AwsEnv, *extra_settings: str) -> dict[str, str]:
    """`dev` and `other` configured on an encrypted-file store, `dev` exported
    once from moto (now cached); returns dev's credentials."""
    write_setup(aws_env, extra_config=OTHER, extra_settings="".join(extra_settings))
    first = creds_of(export(aws_env)[0])
    assert aws_env.moto.calls("AssumeRole") == 1
    return first


def still_served(aws_env: AwsEnv, first: dict[str, str], *,
                 env: dict[str, str | None] | None = None) -> None:
    """`dev`'s cached credentials are still exported, without an upstream call."""
    calls = aws_env.moto.calls("AssumeRole")
    assert creds_of(export(aws_env, env=env)[0]) == first
    assert aws_env.moto.calls("AssumeRole") == calls


def status_json(aws_env: AwsEnv) -> dict[str, Any]:
    done = aws_env.run("status", "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def profile_status(aws_env: AwsEnv, profile: str) -> dict[str, Any]:
    (row,) = [p for p in status_json(aws_env)["profiles"] if p["profile"] == profile]
    return dict(row)


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        unavailable("libfaketime is not installed (apt-get install faketime)")
    return found[0]


def need_root_namespaces() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        unavailable("needs root and unshare(1) for a private mount/network namespace")


# ------------------------------------------------------------------ an STS stand-in


def sts_error(code: str, message: str, kind: str = "Sender") -> str:
    return (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
            f"<Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")


#: what the stand-in does with one request: (status, body), or None for silence
Answer = Callable[[dict[str, str]], "tuple[int, str] | None"]


class StsStandIn:
    """STS on 127.0.0.1 answering `answer(form)`; records each request's form.
    Silence (None) holds the connection open until the stand-in stops."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[dict[str, str]] = []
        self.stop = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                outer.requests.append(form)
                reply = outer.answer(form)
                if reply is None:
                    outer.stop.wait(120)
                    return
                status, body = reply
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def calls(self, role: str) -> int:
        return sum(1 for f in self.requests if f.get("RoleArn") == role)

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sts() -> Iterator[Callable[[Answer], StsStandIn]]:
    made: list[StsStandIn] = []

    def make(answer: Answer) -> StsStandIn:
        made.append(StsStandIn(answer))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.fixture
def daemons(aws_env: AwsEnv) -> Iterator[Daemons]:
    started = Daemons(aws_env)
    yield started
    started.close()


# ================================================================== upstream


def test_sts_throttling(aws_env: AwsEnv, sts: Callable[[Answer], StsStandIn],
                        daemons: Daemons) -> None:
    """STS throttles every AssumeRole of `other` while a daemon serves `dev`: the
    export of `other` is retried (botocore's standard retries) and then ends with
    exit 6 naming Throttling, well inside the 30 s budget; `status --json` shows
    the error on `other`; `dev` is still served from the daemon's memory."""
    first = cached(aws_env)
    stand_in = sts(lambda form: (400, sts_error("Throttling", "Rate exceeded")))
    aws_env.env["AWS_ENDPOINT_URL_STS"] = stand_in.url
    d = daemons.start()
    assert creds_of(export(aws_env)[0]) == first  # loaded from the store

    done, took = export(aws_env, "other")
    one_line(done, 6, "other", "Throttling", "try again")
    assert took < 30 + SLACK, took
    assert 1 < stand_in.calls(OTHER_ARN) <= 10, stand_in.requests
    row = profile_status(aws_env, "other")
    assert "Throttling" in (row["last_error"] or ""), row
    assert not row["login_required"]

    assert creds_of(export(aws_env)[0]) == first
    # the daemon logs an export after answering it: wait for the line
    assert d.wait_for("export", count=2, profile="dev")[1]["served_by"] == "memory"
    assert stand_in.calls(ROLE_ARN) == 0 and aws_env.moto.calls("AssumeRole") == 1
    assert profile_status(aws_env, "dev")["last_error"] is None


@pytest.mark.parametrize("status", [500, 503])
def test_sts_5xx(aws_env: AwsEnv, sts: Callable[[Answer], StsStandIn], status: int) -> None:
    """STS answers 5xx every time (no daemon): retried, then exit 6 with AWS's
    code; the store still serves `dev` with no upstream call."""
    first = cached(aws_env)
    code = "InternalFailure" if status == 500 else "ServiceUnavailable"
    stand_in = sts(lambda form: (status, sts_error(code, "try later", kind="Receiver")))
    env: dict[str, str | None] = {"AWS_ENDPOINT_URL_STS": stand_in.url}
    done, took = export(aws_env, "other", env=env)
    one_line(done, 6, "other", code)
    assert took < 30 + SLACK, took
    assert 1 < stand_in.calls(OTHER_ARN) <= 10, stand_in.requests
    still_served(aws_env, first, env=env)
    assert stand_in.calls(ROLE_ARN) == 0


def test_sts_expired_token(aws_env: AwsEnv, sts: Callable[[Answer], StsStandIn]) -> None:
    """STS says ExpiredToken (the signing credentials expired; moto never does):
    exit 6 at once (not retried), naming the code and saying to renew the
    source credentials; `dev` still served."""
    first = cached(aws_env)
    stand_in = sts(lambda form: (
        403, sts_error("ExpiredToken", "The security token included in the request is expired")))
    env: dict[str, str | None] = {"AWS_ENDPOINT_URL_STS": stand_in.url}
    done, _ = export(aws_env, "other", env=env)
    one_line(done, 6, "other", "ExpiredToken", "renew")
    assert stand_in.calls(OTHER_ARN) == 1
    still_served(aws_env, first, env=env)


def test_sts_connect_timeout(aws_env: AwsEnv) -> None:
    """STS's port is a blackhole (a listener whose accept queue is full: SYNs are
    dropped, connect never completes): exit 6 within the export budget
    (export_timeout = 10 here), saying to check the network; `dev` still served."""
    first = cached(aws_env, "export_timeout = 10\n")
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):  # fill the accept queue: further SYNs are dropped
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        env: dict[str, str | None] = {"AWS_ENDPOINT_URL_STS": f"http://127.0.0.1:{port}"}
        done, took = export(aws_env, "other", env=env)
        one_line(done, 6, "other", "network")
        assert took < 10 + SLACK, took
        still_served(aws_env, first, env=env)
    finally:
        for c in fillers:
            c.close()
        listener.close()


def test_sts_read_timeout(aws_env: AwsEnv, sts: Callable[[Answer], StsStandIn]) -> None:
    """STS accepts the request and never answers: exit 6 within the budget
    (export_timeout = 5, the floor), not after botocore's per-read timeouts
    and retries; `dev` still served."""
    first = cached(aws_env, "export_timeout = 5\n")
    stand_in = sts(lambda form: None)
    env: dict[str, str | None] = {"AWS_ENDPOINT_URL_STS": stand_in.url}
    done, took = export(aws_env, "other", env=env)
    one_line(done, 6, "other", "5 s budget", "export_timeout")
    assert took < 5 + SLACK, took
    assert stand_in.calls(OTHER_ARN) >= 1
    still_served(aws_env, first, env=env)


@pytest.mark.parametrize("operation", ["GetRoleCredentials", "CreateToken"])
def test_sso_5xx(sso: Sso, operation: str) -> None:  # noqa: F811 - the fixture
    """IAM Identity Center answers 500 on every call of `operation` (role
    credentials, or the token refresh): cached credentials are still served
    with no call; without them, botocore retries, then exit 6 with one line;
    no sign-in is asked for (a server error is not a revoked session)."""
    sso.signed_in()
    first = sso_exported(sso.export())
    sso.emu.inject(operation, "InternalServerException", times=20, status=500,
                   message="internal error")
    assert sso_exported(sso.export()) == first
    assert sso.emu.state()["faults"] == {operation: 20}
    sso.drop_cached_credentials()
    if operation == "CreateToken":
        sso.emu.expire_access_tokens()
    done, took = export(sso.aws, "sso")
    one_line(done, 6, "InternalServerException")
    assert took < 30 + SLACK, took
    assert 1 < 20 - sso.emu.state()["faults"].get(operation, 0) <= 10
    assert sso.emu.state()["authorizations_started"] == 1
    sso.emu.clear_faults()
    assert sso_exported(sso.export())["AccessKeyId"] in sso.emu.state()["access_keys"]


def test_network_unreachable(aws_env: AwsEnv) -> None:
    """No network at all (a network namespace without routes: ENETUNREACH, as on
    a laptop offline): exit 6 at once saying AWS cannot be reached; `dev`'s
    cached credentials are still exported offline."""
    need_root_namespaces()
    first = cached(aws_env)

    def offline(profile: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["unshare", "-n", aws_env.credhelper, "export", "--profile", profile],
            env=aws_env.environ({"AWS_ENDPOINT_URL_STS": "http://192.0.2.1:9"}),
            cwd=aws_env.home, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=60, check=False)

    started = time.monotonic()
    one_line(offline("other"), 6, "other", "cannot reach AWS", "check the network")
    assert time.monotonic() - started < 30 + SLACK
    assert creds_of(offline("dev")) == first
    assert aws_env.moto.calls("AssumeRole") == 1


# ================================================================== configuration and daemon


def test_malformed_config_with_daemon(aws_env: AwsEnv, daemons: Daemons) -> None:
    """The AWS config is broken while the daemon serves (an editor's half-saved
    file): the daemon keeps its last good configuration (logged), so `dev` is
    still served from memory; a profile it does not hold exits 3 naming the
    file, as does `status`; once the file is fixed everything is served again
    (nothing lost, `dev` not minted again)."""
    first = cached(aws_env)
    d = daemons.start()
    assert creds_of(export(aws_env)[0]) == first
    good = aws_env.config_file.read_text()
    aws_env.config_file.write_text("[profile dev\nrole_arn = x\n  = = =\n")
    assert creds_of(export(aws_env)[0]) == first
    d.wait_for("reload", outcome="kept_old_config")
    one_line(export(aws_env, "other")[0], 3, str(aws_env.config_file), "fix the syntax")
    one_line(aws_env.run("status", "--json"), 3, str(aws_env.config_file))
    assert d.running() and d.ping() == d.pid
    aws_env.config_file.write_text(good)
    still_served(aws_env, first)
    creds_of(export(aws_env, "other")[0])
    assert status_json(aws_env)["daemon"]["pid"] == d.pid
    assert aws_env.moto.calls("AssumeRole") == 2


def test_daemon_answers_config_errors_itself(aws_env: AwsEnv, daemons: Daemons) -> None:
    """With a broken config the daemon answers `other` with exit 3 itself, not
    with an internal error that the client has to redo on the direct path."""
    cached(aws_env)
    d = daemons.start()
    aws_env.config_file.write_text("[profile dev\nrole_arn = x\n  = = =\n")
    one_line(export(aws_env, "other")[0], 3, str(aws_env.config_file))
    (line,) = d.wait_for("export", profile="other")
    assert line.get("exit_code") == 3, line  # today: error=ConfigParseError, an internal error


def test_socket_path_is_a_regular_file(aws_env: AwsEnv, daemons: Daemons) -> None:
    """CREDHELPER_SOCKET names a regular file: export takes the direct path at
    once (exit 0, nothing on stderr); the daemon replaces the stale file with
    its socket and serves."""
    first = cached(aws_env)
    aws_env.socket.parent.mkdir(mode=0o700, exist_ok=True)
    aws_env.socket.write_text("not a socket\n")
    done, took = export(aws_env)
    assert creds_of(done) == first and took < 5
    d = daemons.start()
    assert creds_of(export(aws_env)[0]) == first
    d.wait_for("export", profile="dev")  # through the daemon
    assert aws_env.socket.is_socket()
    assert aws_env.moto.calls("AssumeRole") == 1


def test_socket_path_taken_by_a_foreign_listener(aws_env: AwsEnv) -> None:
    """Another program of the same user listens on CREDHELPER_SOCKET and never
    speaks the protocol (no greeting): export treats it as a hung daemon and
    falls back to the direct path after HUNG_TIMEOUT, exit 0; one that answers
    garbage at once is left at once."""
    from credhelper.fastpath import HUNG_TIMEOUT

    first = cached(aws_env)
    aws_env.socket.parent.mkdir(mode=0o700, exist_ok=True)
    for greeting, limit in ((b"", HUNG_TIMEOUT + SLACK), (b"HTTP/1.1 400 Bad Request\r\n\r\n", SLACK)):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(aws_env.socket))
        listener.listen(8)
        stop = threading.Event()

        def serve(sock: socket.socket = listener, data: bytes = greeting,
                  halt: threading.Event = stop) -> None:
            held = []
            sock.settimeout(0.2)
            while not halt.is_set():
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                if data:
                    conn.sendall(data)
                    conn.close()
                else:
                    held.append(conn)
            for c in held:
                c.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            done, took = export(aws_env)
            assert creds_of(done) == first
            assert took < limit, (greeting, took)
        finally:
            stop.set()
            thread.join(10)
            listener.close()
            aws_env.socket.unlink()
    assert aws_env.moto.calls("AssumeRole") == 1


def test_two_daemons(aws_env: AwsEnv, daemons: Daemons) -> None:
    """A second `credhelper daemon` on the same socket: exit 2 (a human must
    act; the service does not restart on it), one line naming the socket; the
    first keeps serving and `status --json` shows its pid."""
    first = cached(aws_env)
    d = daemons.start()
    second = aws_env.run("daemon", timeout=60)
    one_line(second, 2, "another credhelper daemon", str(aws_env.socket))
    assert d.running() and d.ping() == d.pid
    assert status_json(aws_env)["daemon"]["pid"] == d.pid
    assert creds_of(export(aws_env)[0]) == first
    assert aws_env.moto.calls("AssumeRole") == 1


