"""The ten breaks of the adversarial review (issue 8), one test each where the
mechanism lives in the export path, the daemon or the lock; docs/reliability.md
names every test. Each one failed on the code before the fix.

Breaks 3 (secrets in helper stderr), 4 (core dumps) and 7 (upstream garbage)
have their own modules: test_redact.py, test_core_dump.py, test_upstream_garbage.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from daemon_helpers import Daemon, Daemons, poll, valid_claude_output, write_setup

from credhelper import fastpath, protocol
from credhelper.daemon import server

if TYPE_CHECKING:
    from conftest import AwsEnv

#: the default export budget, plus process start-up and a loaded machine's slack
BUDGET = 30
SLACK = 8


@pytest.fixture
def daemons(aws_env: AwsEnv) -> Iterator[Daemons]:
    started = Daemons(aws_env)
    yield started
    started.close()


def one_line(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == "", done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("credhelper: "), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ------------------------------------------------------------------ break 1: bounded time


class Trickle:
    """An "STS" that accepts, then sends one byte every `every` seconds forever
    (every=None: never a byte). Per-read timeouts never fire on it."""

    def __init__(self, every: float | None) -> None:
        self.every = every
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n\r\n"
        body = head + b"<a>" + b"x" * 100000
        for byte in body:
            if self.stop.wait(self.every if self.every is not None else 3600):
                return
            try:
                conn.send(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    server = Trickle(every=5)
    yield server
    server.close()


@pytest.fixture
def silent() -> Iterator[Trickle]:
    server = Trickle(every=None)
    yield server
    server.close()


def timed_exports(
    aws_env: AwsEnv, envs: list[dict[str, str | None]],
) -> list[tuple[float, subprocess.CompletedProcess[str]]]:
    """Run the exports at once; (seconds, result) each, killed at 3x the budget."""
    started = time.monotonic()
    procs = [aws_env.popen("export", "--profile", "dev", env=env) for env in envs]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(1.0, started + 3 * BUDGET - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"export still running after {3 * BUDGET} s: no total deadline")
        results.append((time.monotonic() - started,
                        subprocess.CompletedProcess(proc.args, proc.returncode, out, err)))
    return results


@pytest.mark.slow
def test_break01_trickling_or_silent_sts_ends_within_the_budget(
    aws_env: AwsEnv, trickle: Trickle, silent: Trickle,
) -> None:
    """No daemon: an STS that trickles a byte every 5 s, or says nothing, ends
    the export with exit 6 and one line within the 30 s budget."""
    write_setup(aws_env)
    nobody = str(aws_env.home / "nobody.sock")
    results = timed_exports(aws_env, [
        {"AWS_ENDPOINT_URL_STS": trickle.url, "CREDHELPER_SOCKET": nobody},
        {"AWS_ENDPOINT_URL_STS": silent.url, "CREDHELPER_SOCKET": nobody},
    ])
    for elapsed, done in results:
        one_line(done, 6, "30 s budget")
        assert elapsed < BUDGET + SLACK, elapsed


@pytest.mark.slow
def test_break01_trickling_sts_through_the_daemon_ends_within_the_budget(
    aws_env: AwsEnv, daemons: Daemons, trickle: Trickle, silent: Trickle,
) -> None:
    """With a daemon (one per upstream) the same faults cost the same budget,
    not 120 s of waiting on the daemon then 120 s on the lock its mint holds;
    and the daemon still answers afterwards."""
    write_setup(aws_env)
    other = tempfile.mkdtemp(prefix="chrel-")
    try:
        d1 = daemons.start({"AWS_ENDPOINT_URL_STS": trickle.url})
        d2 = daemons.start({"AWS_ENDPOINT_URL_STS": silent.url,
                            "CREDHELPER_SOCKET": os.path.join(other, "d.sock")})
        results = timed_exports(aws_env, [
            {"AWS_ENDPOINT_URL_STS": trickle.url},
            {"AWS_ENDPOINT_URL_STS": silent.url, "CREDHELPER_SOCKET": os.path.join(other, "d.sock")},
        ])
        for elapsed, done in results:
            one_line(done, 6)
            assert elapsed < BUDGET + SLACK, elapsed
        for d in (d1, d2):
            assert d.ping() == d.pid
            assert d.events("export", served_by="error"), d.tail()
    finally:
        for d in daemons.started[1:]:
            d.stop()
        shutil.rmtree(other, ignore_errors=True)


# ------------------------------------------------------------------ break 2: load


@contextlib.contextmanager
def saturated_cpus(per_core: int = 20) -> Iterator[int]:
    """`per_core` busy loops per core (a build running on the same laptop)."""
    n = per_core * (os.cpu_count() or 1)
    procs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(n)]
    try:
        yield n
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


@pytest.mark.slow
def test_break02_200_cold_exports_on_saturated_cpus_all_succeed_with_one_upstream_call(
    aws_env: AwsEnv, daemons: Daemons, secret_service: str,
) -> None:
    """200 concurrent cold exports, daemon up, the real keyring store, every core
    busy with 20 loops: all succeed, from the daemon, with one AssumeRole. (Before:
    clients gave up on the slow daemon after 1.5 s, fell back all at once, and the
    keyring's 1 s D-Bus timeout turned the pile-up into exit 5 "no usable OS keyring".)"""
    write_setup(aws_env, store=f'store = "keyring"\nkeyring_service = {json.dumps(secret_service)}\n')
    d = daemons.start()
    with saturated_cpus():
        procs = [aws_env.popen("export", "--profile", "dev") for _ in range(200)]
        deadline = time.monotonic() + 240
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
    assert aws_env.moto.calls("AssumeRole") == 1
    exports = d.wait_for("export", count=200, timeout=60, profile="dev")
    assert {ln["served_by"] for ln in exports} <= {"mint", "memory"}


# ------------------------------------------------------------------ break 5: foreign daemon

FAKE_DAEMON = r'''
import json, os, socket, sys
path = sys.argv[1]
body = json.dumps({"Credentials": {"AccessKeyId": "ASIAFAKEFAKEFAKE0001", "SecretAccessKey": "fake",
                   "SessionToken": "fake-token", "Expiration": "2099-01-01T00:00:00Z"}}) + "\n"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chmod(path, 0o666)
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.recv(65536)
        c.sendall(b"CREDHELPER/1 ok 0 %d\n" % len(body.encode()) + body.encode())
    finally:
        c.close()
'''


@pytest.fixture
def foreign_daemon() -> Iterator[Path]:
    """A "daemon" of uid 65534 in a sticky world-writable directory (like /tmp),
    printing fake credentials to whoever asks."""
    shared = Path(tempfile.mkdtemp(prefix="chshared-"))
    shared.chmod(0o1777)
    path = shared / "daemon.sock"
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.fail("/usr/bin/python3 is needed to run a process as another uid")
    proc = subprocess.Popen(
        [python, "-c", FAKE_DAEMON, str(path)], stdout=subprocess.PIPE, text=True,
        user=65534, group=65534, extra_groups=[], cwd="/",
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield path
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(shared, ignore_errors=True)


def test_break05_a_socket_of_another_user_is_ignored(aws_env: AwsEnv, foreign_daemon: Path) -> None:
    """CREDHELPER_SOCKET in a shared directory, created by another uid: export
    says once that it ignores it and prints real credentials from the direct path."""
    write_setup(aws_env)
    done = aws_env.run("export", "--profile", "dev", env={"CREDHELPER_SOCKET": str(foreign_daemon)})
    assert done.returncode == 0, done.stderr
    assert "ASIAFAKE" not in done.stdout
    creds = valid_claude_output(done.stdout)
    assert creds["AccessKeyId"] in aws_env.moto.access_key_ids_issued("AssumeRole")
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "ignoring the daemon socket" in lines[0] and "uid 65534" in lines[0], lines


def test_break05_a_daemon_of_another_user_behind_our_socket_file_is_ignored(
    aws_env: AwsEnv, foreign_daemon: Path,
) -> None:
    """Even when the socket file is ours (chowned to us), the peer's uid from
    the kernel (SO_PEERCRED) decides: another uid's daemon is not trusted."""
    write_setup(aws_env)
    private = Path(tempfile.mkdtemp(prefix="chpriv-"))
    try:
        link = private / "daemon.sock"
        os.link(foreign_daemon, link)  # same socket inode, in a directory of ours
        os.chown(link, os.getuid(), os.getgid())
        assert link.stat().st_uid == os.getuid() and stat.S_ISSOCK(link.stat().st_mode)
        done = aws_env.run("export", "--profile", "dev", env={"CREDHELPER_SOCKET": str(link)})
        assert done.returncode == 0, done.stderr
        assert "ASIAFAKE" not in done.stdout
        valid_claude_output(done.stdout)
        assert "runs as uid 65534" in done.stderr, done.stderr
    finally:
        shutil.rmtree(private, ignore_errors=True)


# ------------------------------------------------------------------ break 6: absurd values


@pytest.mark.parametrize(("line", "key"), [
    ("mint_timeout = 1000000000000", "export_timeout"),
    ("export_timeout = 0", "export_timeout"),
    ("export_timeout = 100000", "export_timeout"),
    ("refresh_window = 99999999999999999", "refresh_window"),
    ("refresh_window = -5", "refresh_window"),
])
def test_break06_absurd_settings_are_a_configuration_error(aws_env: AwsEnv, line: str, key: str) -> None:
    """Out-of-range numbers are exit 3 naming the key (before: accepted, then a
    traceback on every export)."""
    write_setup(aws_env, extra_settings=line + "\n")
    done = aws_env.run("export", "--profile", "dev")
    one_line(done, 3, key, "between")


def serve_once(path: Path, answer: bytes) -> threading.Thread:
    """A same-uid "daemon" that answers every connection with `answer`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(8)

    def run() -> None:
        with sock:
            sock.settimeout(30)
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = sock.accept()
                    with conn:
                        conn.recv(65536)
                        conn.sendall(answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("answer", [
    b"CREDHELPER/1 error 99999999999 5\nhello",
    b"CREDHELPER/1 error 256 5\nhello",
    b"CREDHELPER/1 wait 999999999999 0\n",
], ids=["huge code", "code 256", "huge wait"])
def test_break06_absurd_daemon_replies_are_garbage_and_fall_back(aws_env: AwsEnv, answer: bytes) -> None:
    """A reply with out-of-range numbers is garbage: the export takes the direct
    path and succeeds (before: a huge code exited 255)."""
    write_setup(aws_env)
    sock_dir = Path(tempfile.mkdtemp(prefix="chabs-"))
    try:
        path = sock_dir / "d.sock"
        serve_once(path, answer)
        started = time.monotonic()
        done = aws_env.run("export", "--profile", "dev", env={"CREDHELPER_SOCKET": str(path)}, timeout=60)
        assert done.returncode == 0, (done.returncode, done.stderr)
        valid_claude_output(done.stdout)
        assert time.monotonic() - started < fastpath.HUNG_TIMEOUT + SLACK
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


# ------------------------------------------------------------------ break 8: unbounded state


def test_break08_unknown_profiles_are_not_remembered(aws_env: AwsEnv, daemons: Daemons) -> None:
    """5,000 exports of profiles nobody configured leave `status` as it was
    (before: every name was kept forever, 4.7 MB of status)."""
    write_setup(aws_env)
    d = daemons.start()
    assert daemons.export().rc == 0
    env = {k: aws_env.env[k] for k in protocol.CLIENT_ENV if k in aws_env.env}

    def ask_many(start: int) -> None:
        for i in range(start, 5000, 8):
            req = protocol.encode_request("export", {"profile": f"nobody-{i:05d}-" + "x" * 40}, env)
            answer = fastpath.ask_daemon(str(d.socket), req)
            assert answer is not None and answer[:2] == ("error", 3), answer

    threads = [threading.Thread(target=ask_many, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    answer = fastpath.ask_daemon(str(d.socket), protocol.encode_request("status", {}))
    assert answer is not None and answer[0] == "ok"
    assert [p["profile"] for p in json.loads(answer[2])["profiles"]] == ["dev"]
    assert len(answer[2]) < 10_000, len(answer[2])
    assert d.ping() == d.pid


# ------------------------------------------------------------------ break 9: slowloris


class Slowloris:
    """`n` connections that each send one byte of a request at a time, and
    come back when the daemon closes them."""

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n = path, n
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self) -> socket.socket | None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(str(self.path))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            s.close()
            return None
        self.opened += 1
        return s

    def _run(self) -> None:
        conns = [c for c in (self._connect() for _ in range(self.n)) if c is not None]
        while not self.stop.wait(0.2):
            for i, c in enumerate(conns):
                try:
                    c.send(b"{")
                except OSError:
                    c.close()
                    fresh = self._connect()
                    if fresh is not None:
                        conns[i] = fresh
        for c in conns:
            c.close()

    def __enter__(self) -> Slowloris:
        self.thread.start()
        poll(lambda: self.opened >= self.n, timeout=30, what="slowloris connections")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.mark.slow
def test_break09_slowloris_does_not_starve_real_clients(aws_env: AwsEnv, daemons: Daemons) -> None:
    """600 connections trickling a byte at a time (more than the old 512 slots):
    exports are still answered by the daemon, not "daemon busy" and the direct path."""
    write_setup(aws_env)
    d = daemons.start()
    first = daemons.export()
    assert first.rc == 0
    with Slowloris(d.socket, 600):
        time.sleep(1)  # let the attack fill whatever it can
        for _ in range(5):
            done = daemons.export()
            assert done.rc == 0 and done.creds == first.creds, done.describe()
        # a request line has a total deadline: the trickling connections are cut off
        d.wait_for("bad_request", error="timeout", timeout=server.REQUEST_TIMEOUT + 20)
        done = daemons.export()
        assert done.rc == 0 and done.creds == first.creds, done.describe()
    served = [ln for ln in d.events("export", profile="dev") if ln.get("served_by") == "memory"]
    assert len(served) >= 6, d.tail()


# ------------------------------------------------------------------ break 10: recursion


LOOP_HELPER = """#!/bin/sh
# a wrapper that scrubs the environment, then asks credhelper for its own profile
exec env -u CREDHELPER_EXPORT_CHAIN {credhelper} export --profile loop --format process
"""


def write_loop(aws_env: AwsEnv) -> None:
    helper = aws_env.home / "loop-helper.sh"
    helper.write_text(LOOP_HELPER.format(credhelper=aws_env.credhelper))
    helper.chmod(0o755)
    write_setup(aws_env, extra_config=f"[profile loop]\ncredential_process = {helper}\n")


def test_break10_recursion_without_the_environment_marker_is_exit_3(aws_env: AwsEnv) -> None:
    """A credential_process that runs `credhelper export` for its own profile
    through a wrapper that removes CREDHELPER_EXPORT_CHAIN: exit 3 at once
    (the lock's holder is an ancestor), not a 20 s spin and exit 6."""
    write_loop(aws_env)
    started = time.monotonic()
    done = aws_env.run("export", "--profile", "loop",
                       env={"CREDHELPER_SOCKET": str(aws_env.home / "nobody.sock")})
    one_line(done, 3, "recursion")
    assert time.monotonic() - started < 15


def test_break10_recursion_through_the_daemon_is_exit_3(aws_env: AwsEnv, daemons: Daemons) -> None:
    """The same loop with a daemon: the helper's export asks the daemon that is
    minting `loop` for it; the daemon sees its own helper among the asker's
    ancestors and says exit 3 at once; the daemon keeps serving."""
    write_loop(aws_env)
    d: Daemon = daemons.start()
    started = time.monotonic()
    done = aws_env.run("export", "--profile", "loop")
    one_line(done, 3, "recursion")
    assert time.monotonic() - started < 15
    assert d.ping() == d.pid
    assert daemons.export().rc == 0
