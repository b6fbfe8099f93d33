"""The real daemon: `credhelper daemon` as a subprocess, its real Unix socket,
moto as STS (or a throttling STS stand-in), `credhelper export` as Claude Code
runs it. Waits are deadlines on what the daemon logs, never fixed sleeps.

The daemon's log (structlog JSON on stderr) is the witness of what happened
inside it; moto's server-side recording is the witness of upstream calls.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest
from daemon_helpers import (
    BASE_AKID,
    BASE_SECRET,
    Daemon,
    Daemons,
    Export,
    encrypted_file_settings,
    log_time,
    parse_utc,
    remaining,
    valid_claude_output,
    write_setup,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import credhelper
from credhelper import protocol
from credhelper.broker import SERVE_FLOOR, effective_window
from credhelper.daemon import server
from credhelper.daemon.keeper import LEAD_SHARE

if TYPE_CHECKING:
    from conftest import AwsEnv

HEAVY = ("boto3", "botocore", "keyring", "cryptography", "apscheduler", "structlog", "click")
MFA_PROFILE = (
    "[profile mfa]\nrole_arn = arn:aws:iam::123456789012:role/mfa\nsource_profile = base\n"
    "mfa_serial = arn:aws:iam::123456789012:mfa/someone\nregion = us-east-1\n"
)
#: with duration_seconds = 900 this window leaves ~40 s of serving: a refresh
#: well inside a test. (870 would leave exactly MIN_SERVING = 30 s on paper and
#: a little less once the mint's latency is counted: the broker then falls back
#: to half the lifetime, see the report.)
SHORT_WINDOW = 870  # the 'window close to a 900 s session': 30 s of serving
SHORT_DURATION = 900
#: the earliest a scheduled refresh may start, as a share of the serving time (lead + 10% jitter)
EARLIEST = 1 - LEAD_SHARE - 0.1


@pytest.fixture
def daemons(aws_env: AwsEnv) -> Iterator[Daemons]:
    started = Daemons(aws_env)
    yield started
    started.close()


@pytest.fixture
def daemon(aws_env: AwsEnv, daemons: Daemons) -> Daemon:
    """A daemon serving `dev` (AssumeRole on moto) from an encrypted-file store."""
    write_setup(aws_env, extra_config=MFA_PROFILE)
    return daemons.start()


def client_env(aws_env: AwsEnv) -> dict[str, str]:
    """What the fast path sends with an export: the client's view of the files."""
    return {k: aws_env.env[k] for k in protocol.CLIENT_ENV if k in aws_env.env}


# ------------------------------------------------------------------ raw socket clients


def exchange(path: str | os.PathLike[str], payload: bytes, *, close_write: bool = True,
             timeout: float = 20) -> tuple[bytes, str]:
    """Send `payload`, optionally half-close, read to EOF: (bytes, how it ended)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        ended = "eof"
        try:
            s.sendall(payload)
            if close_write:
                s.shutdown(socket.SHUT_WR)
        except OSError as exc:
            ended = f"send:{exc.errno}"
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            ended = f"recv:{type(exc).__name__}"
        return data, ended


GREETING = b"CREDHELPER/1 wait 30 0\n"


def parse_response(data: bytes) -> tuple[str, int, str]:
    """A whole response, strictly: the greeting (`wait <budget>`, unless the
    peer was rejected), then a header, then exactly <length> bytes of body."""
    if data.startswith(GREETING):
        data = data[len(GREETING):]
    head, nl, body = data.partition(b"\n")
    assert nl, f"no header line in {data[:200]!r}"
    kind, code, length = protocol.parse_header(head + b"\n")
    assert kind != "wait", f"a second wait: {data[:200]!r}"
    assert len(body) == length, f"body is {len(body)} bytes, header says {length}: {data[:200]!r}"
    return kind, code, body.decode("utf-8")


# ------------------------------------------------------------------ a throttling STS


class FlakySts:
    """A tiny STS stand-in: AssumeRole succeeds when `succeed(n)` (n: 1-based call
    number), else answers 400 Throttling as AWS does. Records every call."""

    def __init__(self, succeed: Callable[[int], bool]) -> None:
        self.succeed = succeed
        self.calls: list[tuple[float, str]] = []  # (monotonic time, "ok" | "throttled")
        self.issued: list[str] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                outer.answer(self, form)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, handler: http.server.BaseHTTPRequestHandler, form: dict[str, list[str]]) -> None:
        assert form.get("Action") == ["AssumeRole"], form
        with self._lock:
            n = len(self.calls) + 1
            ok = self.succeed(n)
            self.calls.append((time.monotonic(), "ok" if ok else "throttled"))
            akid = f"ASIAFLAKY{n:011d}"
            if ok:
                self.issued.append(akid)
        rid = str(uuid.uuid4())
        if ok:
            duration = int(form.get("DurationSeconds", ["3600"])[0])
            exp = datetime.now(UTC) + timedelta(seconds=duration)
            body = (
                '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                "<AssumeRoleResult><Credentials>"
                f"<AccessKeyId>{akid}</AccessKeyId>"
                f"<SecretAccessKey>flaky-secret-{uuid.uuid4().hex}</SecretAccessKey>"
                f"<SessionToken>flaky-token-{uuid.uuid4().hex}{uuid.uuid4().hex}</SessionToken>"
                f"<Expiration>{exp.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}</Expiration>"
                "</Credentials><AssumedRoleUser>"
                "<AssumedRoleId>AROAFLAKY000000000001:s</AssumedRoleId>"
                "<Arn>arn:aws:sts::123456789012:assumed-role/dev/s</Arn>"
                "</AssumedRoleUser><PackedPolicySize>6</PackedPolicySize></AssumeRoleResult>"
                f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata>"
                "</AssumeRoleResponse>"
            )
            status = 200
        else:
            body = (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                "<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
                f"</Error><RequestId>{rid}</RequestId></ErrorResponse>"
            )
            status = 400
        data = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/xml")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------ serving


class TestServing:
    def test_second_export_is_served_from_memory(self, aws_env: AwsEnv, daemon: Daemon,
                                                 daemons: Daemons) -> None:
        """The first export mints once through the daemon; the second comes from its memory."""
        first = daemons.export()
        second = daemons.export()
        assert first.rc == 0 and second.rc == 0, (first.describe(), second.describe())
        assert second.creds == first.creds
        lines = daemon.wait_for("export", count=2, profile="dev")
        assert [ln["served_by"] for ln in lines] == ["mint", "memory"], lines
        assert {ln["access_key_id"] for ln in lines} == {first.akid}
        assert aws_env.moto.calls("AssumeRole") == 1
        assert first.akid in aws_env.moto.access_key_ids_issued("AssumeRole")

    @pytest.mark.parametrize("how", ["python -X importtime -m credhelper", "console script"])
    def test_fast_path_imports_nothing_heavy(self, aws_env: AwsEnv, daemon: Daemon,
                                             daemons: Daemons, how: str) -> None:
        """With the daemon answering, export imports none of boto3, botocore,
        keyring, cryptography, apscheduler, structlog, click."""
        warm = daemons.export()
        assert warm.rc == 0, warm.describe()
        if how == "console script":
            argv = [aws_env.credhelper, "export", "--profile", "dev"]
            env = aws_env.environ({"PYTHONPROFILEIMPORTTIME": "1"})
        else:
            python = os.path.join(os.path.dirname(aws_env.credhelper), "python")
            argv = [python, "-X", "importtime", "-m", "credhelper", "export", "--profile", "dev"]
            env = aws_env.environ()
        done = subprocess.run(argv, env=env, cwd=aws_env.home, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr[-2000:]
        assert valid_claude_output(done.stdout) == warm.creds
        modules = [
            line.rsplit("|", 1)[1].strip()
            for line in done.stderr.splitlines() if line.startswith("import time:") and "|" in line
        ]
        assert "credhelper.fastpath" in modules, done.stderr[-2000:]
        heavy = sorted({m for m in modules if m.split(".")[0] in HEAVY})
        assert not heavy, f"the fast path imported {heavy}"
        slow_parts = ("cli", "broker", "direct", "config", "store", "sources", "daemon", "login")
        ours = sorted(m for m in modules if m.split(".")[0] == "credhelper" and "." in m)
        assert not [m for m in ours if m.split(".")[1] in slow_parts], ours
        lines = daemon.wait_for("export", count=2, profile="dev")
        assert lines[1]["served_by"] == "memory" and lines[1]["access_key_id"] == warm.akid

    def test_200_concurrent_cold_exports_make_one_upstream_call(
        self, aws_env: AwsEnv, daemons: Daemons, secret_service: str
    ) -> None:
        """200 exports at once on a cold daemon (keyring store): one AssumeRole,
        200 identical answers, every one of them served by the daemon."""
        write_setup(aws_env, store=f'store = "keyring"\nkeyring_service = {json.dumps(secret_service)}\n')
        # The clients cannot take the direct path: without the D-Bus address the
        # keyring is unavailable (exit 5) and STS is a closed port. So an answer
        # with rc 0 is an answer from the daemon.
        cut_off = {"DBUS_SESSION_BUS_ADDRESS": None, "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9"}
        alone = aws_env.run("export", "--profile", "dev",
                            env={**cut_off, "CREDHELPER_SOCKET": str(aws_env.home / "none.sock")})
        assert alone.returncode != 0, "the direct path must be unusable for this test to prove anything"
        d = daemons.start()
        assert d.status()["profiles"] == []
        deadline = time.monotonic() + 180
        procs = [aws_env.popen("export", "--profile", "dev", env=cut_off) for _ in range(200)]
        outs = []
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outs.append((proc.returncode, out, err))
        failed = [(rc, err.strip()) for rc, out, err in outs if rc != 0]
        assert not failed, f"{len(failed)} of 200 failed, e.g. {failed[:3]}\n{d.tail()}"
        texts = {out for _, out, _ in outs}
        assert len(texts) == 1, f"{len(texts)} different outputs"
        creds = valid_claude_output(texts.pop())
        daemons.note(creds["SecretAccessKey"], creds["SessionToken"])
        assert remaining(creds) > SERVE_FLOOR
        exports = d.wait_for("export", count=200, timeout=60, profile="dev")
        assert len(exports) == 200
        assert {ln["served_by"] for ln in exports} <= {"mint", "memory"}, {ln["served_by"] for ln in exports}
        assert {ln["access_key_id"] for ln in exports} == {creds["AccessKeyId"]}
        assert len(d.events("refresh", profile="dev", outcome="minted")) == 1
        assert aws_env.moto.calls("AssumeRole") == 1


# ------------------------------------------------------------------ refresh


class TestRefresh:
    def test_scheduled_refresh_mints_before_the_window(self, aws_env: AwsEnv, daemons: Daemons) -> None:
        """duration 900 s, window 870 s: the daemon mints new credentials within
        the 30 s of serving (starting a quarter of it, less jitter, before the end),
        before the old ones enter the window, and every export meanwhile has more
        than the window left."""
        write_setup(aws_env, duration=SHORT_DURATION, refresh_window=SHORT_WINDOW)
        d = daemons.start()
        first = daemons.export()
        assert first.rc == 0, first.describe()
        mint = d.wait_for("refresh", outcome="minted", profile="dev")[0]
        lifetime = math.ceil(remaining(first.creds, log_time(mint)))  # whole seconds, as granted
        assert lifetime == pytest.approx(SHORT_DURATION, abs=3)
        window = effective_window(lifetime, SHORT_WINDOW)
        assert window == SHORT_WINDOW, "the configured window must be honoured here"
        serving = SHORT_DURATION - SHORT_WINDOW
        window_starts = parse_utc(first.creds["Expiration"]) - timedelta(seconds=SHORT_WINDOW)
        assert parse_utc(mint["next_refresh"]) <= window_starts + timedelta(seconds=1), mint
        assert parse_utc(mint["next_refresh"]) >= log_time(mint) + timedelta(seconds=EARLIEST * serving - 2)

        exports: list[Export] = [first]
        deadline = time.monotonic() + 90
        while len(d.events("refresh", outcome="minted", profile="dev")) < 2:
            assert time.monotonic() < deadline, f"no scheduled refresh within 90 s\n{d.tail()}"
            tick = time.monotonic()
            exports.append(daemons.export())
            time.sleep(max(0.0, 2 - (time.monotonic() - tick)))
        second = d.events("refresh", outcome="minted", profile="dev")[1]
        exports.append(daemons.export())

        assert second["access_key_id"] != first.akid
        delay = (log_time(second) - log_time(mint)).total_seconds()
        assert EARLIEST * serving - 2 <= delay <= serving + 5, delay
        assert log_time(second) <= window_starts + timedelta(seconds=3), (second, window_starts)
        for e in exports:
            assert e.rc == 0, e.describe()
            left = remaining(e.creds, e.finished)
            assert left > SHORT_WINDOW - 3, f"exported with {left:.1f} s left: {e.creds['AccessKeyId']}"
        assert exports[-1].akid == second["access_key_id"]
        assert {e.akid for e in exports} == {first.akid, second["access_key_id"]}
        assert aws_env.moto.calls("AssumeRole") == 2
        served = {ln["served_by"] for ln in d.events("export", profile="dev")[1:]}
        assert served == {"memory"}, served

    def test_throttled_refresh_backs_off_and_keeps_serving(self, aws_env: AwsEnv, daemons: Daemons) -> None:
        """Throttling in the scheduled refresh: `retry` lines with a growing
        `retry_in`, exactly one botocore round (5 calls) per failed refresh and
        none before the announced backoff, the old credentials served while they
        are servable, new ones once STS answers again.

        The first refresh is due where the serving period ends, less a jitter of
        at most 10 % of it: after a failed refresh the old credentials stay
        servable only for that jitter, so exports are made only then."""
        throttled_refreshes = 2
        # sources.base.ClientFactory: standard mode, max_attempts = 4, which botocore
        # counts as retries: 5 calls per refresh
        attempts = 5
        last_throttled = 1 + attempts * throttled_refreshes
        sts = FlakySts(lambda n: n == 1 or n > last_throttled)
        try:
            env = {"AWS_ENDPOINT_URL_STS": sts.url}
            aws_env.env.update(env)
            write_setup(aws_env, duration=SHORT_DURATION, refresh_window=SHORT_WINDOW)
            d = daemons.start()
            first = daemons.export()
            assert first.rc == 0, first.describe()
            servable_until = parse_utc(first.creds["Expiration"]) - timedelta(seconds=SHORT_WINDOW)

            exports: list[Export] = []
            deadline = time.monotonic() + 180
            while len(d.events("refresh", outcome="minted", profile="dev")) < 2:
                assert time.monotonic() < deadline, f"no recovery within 180 s\n{d.tail()}"
                tick = time.monotonic()
                if datetime.now(UTC) < servable_until - timedelta(seconds=2):
                    exports.append(daemons.export())
                time.sleep(max(0.0, 1 - (time.monotonic() - tick)))
            recovered = d.events("refresh", outcome="minted", profile="dev")[1]
            after = daemons.export()
        finally:
            sts.close()

        retries = d.events("refresh", outcome="retry", profile="dev")
        assert [r["failures"] for r in retries] == list(range(1, throttled_refreshes + 1)), retries
        assert all("Throttling" in r["error"] for r in retries), retries
        delays = [r["retry_in"] for r in retries]
        assert 2.5 <= delays[0] <= 5 and 5 <= delays[1] <= 10, delays
        assert delays == sorted(delays), delays

        # No busy loop: exactly `attempts` calls per failed refresh, and the next
        # refresh only after the announced backoff.
        kinds = [k for _, k in sts.calls]
        assert kinds == ["ok"] + ["throttled"] * (attempts * throttled_refreshes) + ["ok"], kinds
        starts = [sts.calls[1 + attempts * i][0] for i in range(throttled_refreshes + 1)]
        ends = [sts.calls[attempts * (i + 1)][0] for i in range(throttled_refreshes)]
        for i, delay in enumerate(delays):
            assert starts[i + 1] - ends[i] >= delay - 0.5, (i, starts, ends, delays)

        for e in exports:
            assert e.rc == 0 and e.akid == first.akid, e.describe()
        assert exports, "no export happened while the first credentials were servable"
        assert recovered["access_key_id"] == sts.issued[1]
        assert after.rc == 0 and after.akid == sts.issued[1], after.describe()
        assert remaining(after.creds) > SHORT_WINDOW - 3


# ------------------------------------------------------------------ restarts


class TestRestarts:
    def test_kill9_falls_back_then_restart_resumes_from_store(self, aws_env: AwsEnv,
                                                              daemons: Daemons) -> None:
        """kill -9: export falls back to the direct path (stale socket, refused)
        with the stored credentials; a new daemon loads them, warms the recently
        asked profile, and makes no upstream call."""
        write_setup(aws_env)
        d1 = daemons.start()
        first = daemons.export()
        assert first.rc == 0, first.describe()
        d1.wait_for("export", served_by="mint")
        d1.kill9()
        assert aws_env.socket.exists(), "kill -9 leaves the socket file behind"

        fallback = daemons.export()
        assert fallback.rc == 0, fallback.describe()
        assert fallback.creds == first.creds
        assert aws_env.moto.calls("AssumeRole") == 1

        d2 = daemons.start()
        assert d2.pid != d1.pid
        warmed = d2.wait_for("refresh", profile="dev")[0]
        assert warmed["outcome"] == "loaded", warmed
        assert warmed["access_key_id"] == first.akid
        assert "dev" in d2.events("started")[0]["warm_profiles"]
        status = aws_env.run("status", "--json")
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["daemon"]["pid"] == d2.pid
        (dev,) = [p for p in data["profiles"] if p["profile"] == "dev"]
        assert dev["access_key_id"] == first.akid and dev["source"] == "assume-role"
        again = daemons.export()
        assert again.rc == 0 and again.creds == first.creds
        assert d2.wait_for("export", profile="dev")[0]["served_by"] == "memory"
        assert aws_env.moto.calls("AssumeRole") == 1

    def test_second_daemon_refuses_to_start(self, aws_env: AwsEnv, daemon: Daemon, daemons: Daemons) -> None:
        """A second daemon on the same socket exits non-zero with one stderr line;
        the first keeps serving."""
        before = daemons.export()
        assert before.rc == 0, before.describe()
        second = aws_env.run("daemon", timeout=60)
        assert second.returncode != 0
        assert second.stdout == ""
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "another credhelper daemon" in lines[0], second.stderr
        assert daemon.running() and daemon.ping() == daemon.pid
        after = daemons.export()
        assert after.rc == 0 and after.creds == before.creds
        assert daemon.wait_for("export", count=2)[1]["served_by"] == "memory"

    def test_sighup_reloads_and_aws_config_edits_need_no_signal(self, aws_env: AwsEnv,
                                                                daemons: Daemons) -> None:
        """SIGHUP: new settings (refresh window, warm profiles), logged `reload`.
        An edited AWS config is picked up at the next export, without a signal."""
        other = "[profile other]\nrole_arn = arn:aws:iam::123456789012:role/other\nsource_profile = base\n"
        write_setup(aws_env, extra_config=other)
        d = daemons.start()
        assert daemons.export().rc == 0
        assert d.status()["daemon"]["refresh_window"] == 900

        aws_env.write_settings(encrypted_file_settings(aws_env)
                               + 'refresh_window = 1000\nwarm_profiles = ["other"]\n')
        d.send(signal.SIGHUP)
        d.wait_for("reload")
        d.wait_for("refresh", profile="other", outcome="minted")
        assert d.status()["daemon"]["refresh_window"] == 1000
        assert d.ping() == d.pid

        aws_env.write_config(
            f"[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/dev2\nsource_profile = base\n\n"
            f"[profile base]\nregion = us-east-1\n\n{other}\n"
            "[profile later]\nrole_arn = arn:aws:iam::123456789012:role/later\nsource_profile = base\n"
        )
        later = daemons.export("later")
        assert later.rc == 0, later.describe()
        assert len(d.events("reload")) == 2
        dev = daemons.export("dev")
        assert dev.rc == 0
        lines = d.events("refresh", profile="dev", outcome="minted")
        assert len(lines) == 2 and lines[1]["access_key_id"] == dev.akid, "a new role is a new mint"
        assert d.pid == d.ping()


# ------------------------------------------------------------------ the socket


def connect_as(uid: int, gid: int, path: str, request: bytes) -> dict[str, Any]:
    """Fork a child that drops to uid/gid, sends `request`, reads the reply."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no exceptions out of here
        result: dict[str, Any] = {}
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            result["uid"] = os.getuid()
            data, ended = exchange(path, request, close_write=False, timeout=10)
            result.update(data=data.decode("latin-1"), ended=ended)
        except BaseException as exc:
            result["error"] = repr(exc)
        finally:
            try:
                os.write(w, json.dumps(result).encode())
            finally:
                os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    out: dict[str, Any] = json.loads(b"".join(chunks))
    return out


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory anyone may enter (the test relaxes the socket's modes in it)."""
    path = Path(tempfile.mkdtemp(prefix="chpeer-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=8,
    )


def requests() -> st.SearchStrategy[dict[str, Any]]:
    """Request-shaped JSON objects: right and wrong versions, ops, fields and types."""
    values = json_values()
    return st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from([1, 2, 0, "1", None, 1.5, True]) | values,
            "op": st.sampled_from(["ping", "status", "export", "launch", "", "EXPORT"]) | values,
            "profile": st.sampled_from(["dev", "", "nope", "../dev", "dev\n"]) | values,
            "format": st.sampled_from(["claude", "process", "env", "json", "yaml"]) | values,
            "env": st.dictionaries(st.sampled_from([*protocol.CLIENT_ENV, "X"]), st.text(max_size=10))
            | values,
            "extra": values,
        },
    )


class TestSocket:
    def test_other_uid_is_rejected(self, public_dir: Path, aws_env: AwsEnv, daemons: Daemons) -> None:
        """Even with the socket opened to everyone, a peer with another uid gets
        no credentials (`peer_rejected` logged); the owner still does."""
        sock = public_dir / "run" / "daemon.sock"
        aws_env.env["CREDHELPER_SOCKET"] = str(sock)
        write_setup(aws_env)
        d = daemons.start()
        owner = daemons.export()
        assert owner.rc == 0, owner.describe()
        sock.parent.chmod(0o777)
        sock.chmod(0o777)
        fields = {"profile": "dev", "format": "claude"}
        request = protocol.encode_request("export", fields, client_env(aws_env))

        got = connect_as(65534, 65534, str(sock), request)

        assert got.get("uid") == 65534, got
        assert "error" not in got, got
        data = got["data"].encode("latin-1")
        assert b"AccessKeyId" not in data and owner.creds["SecretAccessKey"].encode() not in data
        if data:  # normally the daemon says why; a reset without a word is a rejection too
            kind, code, body = parse_response(data)
            assert (kind, code) == ("error", 2) and "permission denied" in body, data
        rejected = d.wait_for("peer_rejected")
        assert rejected[0]["peer_uid"] == 65534 and rejected[0]["daemon_uid"] == os.getuid()
        # the owner's client distrusts a socket others could swap: make it private again
        sock.parent.chmod(0o700)
        sock.chmod(0o600)
        after = daemons.export()
        assert after.rc == 0 and after.creds == owner.creds
        assert d.wait_for("export", count=2)[1]["served_by"] == "memory"
        assert d.ping() == d.pid

    CASES = [
        ("garbage", b"hello daemon\n", "not one line of UTF-8 JSON"),
        ("binary", b"\xff\xfe\x00\x01\n", "not one line of UTF-8 JSON"),
        ("empty line", b"\n", "not one line of UTF-8 JSON"),
        ("non-JSON", b"{v:1, op:ping}\n", "not one line of UTF-8 JSON"),
        ("JSON array", b'[{"v":1,"op":"ping"}]\n', "not a JSON object"),
        ("JSON string", b'"ping"\n', "not a JSON object"),
        ("deep nesting", b"[" * 60000 + b"\n", "not one line of UTF-8 JSON"),
        ("wrong version", b'{"v":2,"op":"ping"}\n', "unsupported protocol version 2"),
        ("no version", b'{"op":"ping"}\n', "unsupported protocol version None"),
        ("no op", b'{"v":1}\n', "request has no op"),
        ("op not a string", b'{"v":1,"op":["ping"]}\n', "request has no op"),
        ("unknown op", b'{"v":1,"op":"launch"}\n', "unknown op 'launch'"),
        ("bad format", b'{"v":1,"op":"export","profile":"dev","format":"yaml"}\n', "unknown format 'yaml'"),
        ("export without profile", b'{"v":1,"op":"export"}\n', "export needs a profile"),
        ("profile not a string", b'{"v":1,"op":"export","profile":7}\n', "export needs a profile"),
        ("env not an object", b'{"v":1,"op":"ping","env":["HOME"]}\n', "env must be an object of strings"),
        ("env values not strings", b'{"v":1,"op":"ping","env":{"HOME":1}}\n', "env must be an object"),
        ("oversized, no newline", b"x" * (70 * 1024), "larger than 65536 bytes"),
        ("oversized line", b'{"v":1,"op":"ping","pad":"' + b"x" * (65 * 1024) + b'"}\n',
         "larger than 65536 bytes"),
    ]

    @pytest.mark.parametrize(("name", "payload", "message"), CASES, ids=[c[0] for c in CASES])
    def test_bad_request_gets_an_error_reply(self, aws_env: AwsEnv, daemon: Daemon, daemons: Daemons,
                                             name: str, payload: bytes, message: str) -> None:
        """Each malformed request gets one error reply (exit code 2, one line) and
        the same daemon process answers a valid export afterwards."""
        data, ended = exchange(daemon.socket, payload)
        assert data, f"{name}: no reply ({ended})\n{daemon.tail()}"
        kind, code, body = parse_response(data)
        assert (kind, code) == ("error", 2), data
        assert message in body and "\n" not in body, body
        assert daemon.ping() == daemon.pid
        ok = daemons.export()
        assert ok.rc == 0, ok.describe()
        assert daemon.wait_for("export", profile="dev")[0]["served_by"] == "mint"

    def test_silent_and_partial_connections_are_closed_quietly(self, aws_env: AwsEnv, daemon: Daemon,
                                                               daemons: Daemons) -> None:
        """Connect-and-close, and a partial line then EOF: a clean close, no reply;
        two requests on one connection: one answer."""
        assert exchange(daemon.socket, b"") == (GREETING, "eof")
        assert exchange(daemon.socket, b'{"v":1,"op":"pi') == (GREETING, "eof")
        data, _ = exchange(daemon.socket, b'{"v":1,"op":"ping"}\n{"v":1,"op":"ping"}\n')
        assert parse_response(data) == ("ok", 0, f"pong {daemon.pid}")
        daemon.wait_for("bad_request", error="incomplete")
        assert daemon.ping() == daemon.pid
        assert daemons.export().rc == 0

    def test_half_open_connections_time_out_and_others_are_served(self, aws_env: AwsEnv, daemon: Daemon,
                                                                  daemons: Daemons) -> None:
        """Clients that send part of a line and wait get a timeout error after
        REQUEST_TIMEOUT from connecting; meanwhile the daemon serves everyone else."""
        held = []
        for _ in range(20):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            s.connect(str(daemon.socket))
            s.sendall(b'{"v":1,"op":"export","prof')
            held.append(s)
        opened = time.monotonic()
        try:
            served = daemons.export()
            served_after = time.monotonic() - opened
            assert served.rc == 0, served.describe()
            limit = server.REQUEST_TIMEOUT - 0.5
            assert served_after < limit, f"a valid export waited {served_after:.1f} s behind half-open ones"
            assert daemon.ping() == daemon.pid
            replies = []
            for s in held:
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                replies.append((time.monotonic() - opened, data))
        finally:
            for s in held:
                s.close()
        for elapsed, data in replies:
            kind, code, body = parse_response(data)
            assert (kind, code) == ("error", 2) and "timed out" in body, data
            assert server.REQUEST_TIMEOUT - 0.5 <= elapsed <= server.REQUEST_TIMEOUT + 20, elapsed
        assert len(daemon.events("bad_request", error="timeout")) == 20
        again = daemons.export()
        assert again.rc == 0 and again.creds == served.creds

    def test_random_bytes_never_hurt_the_daemon(self, aws_env: AwsEnv, daemon: Daemon,
                                                daemons: Daemons) -> None:
        """Hypothesis throws random bytes: each gets a well-formed error reply (a
        line) or a quiet close (no line); the same daemon serves afterwards."""
        pid = daemon.pid

        @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(st.binary(max_size=4096) | st.binary(max_size=200).map(lambda b: b + b"\n"))
        def throw(payload: bytes) -> None:
            data, _ = exchange(daemon.socket, payload)
            if b"\n" not in payload:
                assert data == GREETING, (payload, data)
                return
            kind, code, body = parse_response(data)
            assert kind in ("error", "ok"), data
            if kind == "error":
                assert code == 2 and body.startswith("bad request"), data

        throw()
        assert daemon.ping() == pid
        ok = daemons.export()
        assert ok.rc == 0, ok.describe()
        assert daemon.running()

    def test_random_requests_never_hurt_the_daemon(self, aws_env: AwsEnv, daemon: Daemon,
                                                   daemons: Daemons) -> None:
        """Hypothesis throws request-shaped JSON: every one gets a well-formed
        answer and none gets credentials (no client sent the daemon's files)."""
        pid = daemon.pid

        @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(requests())
        def throw(req: dict[str, Any]) -> None:
            line = json.dumps(req, ensure_ascii=False).encode("utf-8") + b"\n"
            data, _ = exchange(daemon.socket, line)
            kind, code, body = parse_response(data)
            assert "SecretAccessKey" not in body, req
            valid = type(req.get("v")) is int and req["v"] == 1 and isinstance(req.get("op"), str) and (
                "env" not in req or (isinstance(req["env"], dict)
                                     and all(isinstance(v, str) for v in req["env"].values())))
            if not valid:
                assert (kind, code) == ("error", 2) and body.startswith("bad request"), (req, data)
            elif req["op"] == "ping":
                assert (kind, body) == ("ok", f"pong {pid}")
            elif req["op"] == "status":
                assert kind == "ok" and json.loads(body)["daemon"]["pid"] == pid
            elif req["op"] == "export" and isinstance(req.get("profile"), str) and req["profile"]:
                known = req.get("format", "claude") in ("claude", "process", "env", "json")
                assert kind == ("fallback" if known else "error"), (req, data)
            else:
                assert (kind, code) == ("error", 2), (req, data)

        throw()
        assert daemon.ping() == pid
        ok = daemons.export()
        assert ok.rc == 0, ok.describe()
        assert aws_env.moto.calls("AssumeRole") == 1


# ------------------------------------------------------------------ login required


class TestLoginRequired:
    def test_login_required_is_reported_once_and_not_retried(self, aws_env: AwsEnv, daemon: Daemon,
                                                             daemons: Daemons) -> None:
        """A profile that needs a human (mfa_serial): export exits 4 with the
        remedy, the daemon logs `login_required` once, shows it in status, and
        answers the next export 4 without trying again."""
        first = daemons.export("mfa")
        assert first.rc == 4, first.describe()
        assert first.stdout == ""
        (line,) = first.stderr.strip().splitlines()
        assert re.fullmatch(r"credhelper: .*MFA.* for profile mfa: run credhelper login --profile mfa", line)
        daemon.wait_for("refresh", profile="mfa", outcome="login_required")
        status = json.loads(aws_env.run("status", "--json").stdout)
        (mfa,) = [p for p in status["profiles"] if p["profile"] == "mfa"]
        assert mfa["login_required"] is True and mfa["next_refresh"] is None, mfa
        assert "MFA" in mfa["last_error"] and "credhelper login --profile mfa" in mfa["last_error"]

        second = daemons.export("mfa")
        assert second.rc == 4 and second.stderr == first.stderr
        errors = daemon.wait_for("export", count=2, profile="mfa", served_by="error")
        assert [e["exit_code"] for e in errors] == [4, 4]
        assert len(daemon.events("refresh", profile="mfa")) == 1, daemon.events("refresh")
        assert aws_env.moto.calls() == 0


# ------------------------------------------------------------------ systemd


class TestSystemd:
    def test_sd_notify_ready_watchdog_stopping(self, aws_env: AwsEnv, daemons: Daemons) -> None:
        """Under systemd: READY=1 (with MAINPID), WATCHDOG=1 every half
        WATCHDOG_USEC, STOPPING=1 at SIGTERM."""
        write_setup(aws_env)
        where = tempfile.mkdtemp(prefix="chnotify-")
        path = os.path.join(where, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        got: list[tuple[float, str]] = []

        def read_until(pred: Callable[[str], bool], timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while not any(pred(m) for _, m in got):
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; got {got}"
                sock.settimeout(left)
                try:
                    got.append((time.monotonic(), sock.recv(4096).decode()))
                except TimeoutError:
                    pass

        try:
            d = daemons.start({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
            read_until(lambda m: "READY=1" in m.splitlines(), 30)
            ready_at, ready = next((t, m) for t, m in got if "READY=1" in m.splitlines())
            assert f"MAINPID={d.pid}" in ready.splitlines(), ready
            read_until(lambda m: False if m != "WATCHDOG=1" else
                       sum(1 for _, x in got if x == "WATCHDOG=1") >= 2, 5)
            first_dog = next(t for t, m in got if m == "WATCHDOG=1")
            assert first_dog - ready_at < 2, got
            d.send(signal.SIGTERM)
            read_until(lambda m: "STOPPING=1" in m.splitlines(), 30)
            assert d.stop() == 0
        finally:
            sock.close()
            shutil.rmtree(where, ignore_errors=True)


# ------------------------------------------------------------------ status


class TestStatus:
    def test_status_without_daemon(self, aws_env: AwsEnv) -> None:
        """No daemon: `status` says so; `status --json` has daemon null."""
        text = aws_env.run("status")
        assert text.returncode == 0 and "daemon: not running" in text.stdout, text
        js = aws_env.run("status", "--json")
        assert json.loads(js.stdout) == {"daemon": None, "profiles": []}

    def test_status_with_daemon(self, aws_env: AwsEnv, daemon: Daemon, daemons: Daemons) -> None:
        """pid, uptime, version; each profile's source, expires_in, next_refresh,
        last_error and login_required, as JSON and as text."""
        assert daemons.export().rc == 0
        assert daemons.export("mfa").rc == 4
        js = aws_env.run("status", "--json")
        assert js.returncode == 0, js.stderr
        data = json.loads(js.stdout)
        d = data["daemon"]
        assert d["pid"] == daemon.pid and d["version"] == credhelper.__version__
        assert isinstance(d["uptime"], int) and 0 <= d["uptime"] < 600
        profiles = {p["profile"]: p for p in data["profiles"]}
        assert set(profiles) == {"dev", "mfa"}
        dev, mfa = profiles["dev"], profiles["mfa"]
        for p in (dev, mfa):
            assert {"source", "expires_in", "next_refresh", "last_error", "login_required"} <= set(p)
        assert dev["source"] == "assume-role" and dev["login_required"] is False and dev["last_error"] is None
        assert 3000 < dev["expires_in"] <= 3600
        assert parse_utc(dev["next_refresh"]) > datetime.now(UTC)
        assert mfa["login_required"] is True and mfa["expires_in"] is None and mfa["next_refresh"] is None
        assert "MFA" in mfa["last_error"] and "credhelper login --profile mfa" in mfa["last_error"]

        text = aws_env.run("status")
        assert text.returncode == 0, text.stderr
        out = text.stdout
        assert f"daemon: pid {daemon.pid}, up " in out and f"version {credhelper.__version__}" in out
        (dev_row,) = [ln for ln in out.splitlines() if ln.startswith("dev ")]
        assert "assume-role" in dev_row and re.search(r"\b(59m|1h00m)", dev_row) and dev_row.endswith(" ok")
        (mfa_row,) = [ln for ln in out.splitlines() if ln.startswith("mfa ")]
        assert mfa_row.endswith("login required: run credhelper login --profile mfa"), mfa_row
        assert BASE_AKID not in out and BASE_SECRET not in out
