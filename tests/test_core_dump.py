"""A crash must not write the credentials to disk (issue 8, item 4).

The daemon runs as an unprivileged uid (65534 when the tests run as root,
else the test's own uid), serves a real export from moto, and is then looked
at from outside, as another process of the same uid would:

- `/proc/PID/environ` cannot be read (the daemon cleared its dumpable flag),
- `SIGABRT` with `ulimit -c unlimited` in a writable cwd leaves no core file
  holding a secret (none at all).

The positive control: a plain Python process of the same uid, holding the
same secret, in the same kind of directory, is readable and does leave a core
with the secret in it, so the machine does write cores (kernel.core_pattern
is `core` here; the test never changes it) and the protection is what stops
them.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, AwsEnv, MotoServer, unavailable
from daemon_helpers import BASE_SECRET, Daemon, find_leaks, parse_export, write_setup

NOBODY = 65534
LAUNCH = "import sys; from credhelper.fastpath import main; sys.exit(main())"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and cores")


class Uid:
    """Runs commands as one unprivileged uid with `ulimit -c unlimited`."""

    def __init__(self) -> None:
        self.switch = os.geteuid() == 0
        self.uid, self.gid = (NOBODY, NOBODY) if self.switch else (os.getuid(), os.getgid())
        self.python, self.pythonpath = self._python()

    def preexec(self) -> Callable[[], None]:
        uid, gid, switch = self.uid, self.gid, self.switch

        def run() -> None:
            inf = resource.RLIM_INFINITY
            try:
                resource.setrlimit(resource.RLIMIT_CORE, (inf, inf))
            except (ValueError, OSError):
                _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
                resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
            if switch:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)

        return run

    def _python(self) -> tuple[str, str]:
        """An interpreter this uid may run, with credhelper and its dependencies
        importable: the venv's, else (its base under /root is 0700) a system
        Python of the same version with the venv's site-packages on the path."""
        site = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
        pythonpath = os.pathsep.join([str(REPO), *site])
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        candidates = [sys.executable, f"/usr/bin/python{version}", "/usr/local/bin/python" + version]
        probe = "import credhelper.daemon, botocore, structlog, apscheduler, cryptography, click"
        check = f"import sys; assert sys.version_info[:2] == {sys.version_info[:2]}; {probe}"
        for python in candidates:
            if not os.path.exists(python):
                continue
            try:
                done = subprocess.run(
                    [python, "-c", check],
                    env={"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath}, cwd="/",
                    preexec_fn=self.preexec(), capture_output=True, timeout=60, check=False,
                )
            except PermissionError:  # the uid may not run it (e.g. under a 0700 /root)
                continue
            if done.returncode == 0:
                return python, pythonpath
        unavailable(f"no Python {version} that uid {self.uid} can run credhelper with "
                    f"(tried {', '.join(candidates)})")

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "PYTHONPATH": self.pythonpath}

    def popen(self, argv: list[str], env: dict[str, str], cwd: Path, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(argv, env=self.env(env), cwd=cwd, preexec_fn=self.preexec(),
                                text=True, **kw)

    def run(self, argv: list[str], env: dict[str, str], cwd: Path,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=self.env(env), cwd=cwd, preexec_fn=self.preexec(),
                              text=True, capture_output=True, timeout=60, check=False, **kw)

    def credhelper(self, *args: str) -> list[str]:
        return [self.python, "-c", LAUNCH, *args]

    def can_read_environ(self, pid: int, cwd: Path) -> tuple[bool, str]:
        """Whether another process of this uid can read /proc/PID/environ."""
        done = self.run([self.python, "-c", f"print(len(open('/proc/{pid}/environ','rb').read()))"],
                        {"PATH": "/usr/bin:/bin"}, cwd)
        return done.returncode == 0, (done.stdout + done.stderr).strip()[-200:]


@pytest.fixture
def uid() -> Uid:
    return Uid()


@pytest.fixture
def home(uid: Uid) -> Iterator[Path]:
    """A directory owned by the uid, outside pytest's root-only tmp dir."""
    path = Path(tempfile.mkdtemp(prefix="chcore-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def chown_tree(path: Path, uid: Uid) -> None:
    if not uid.switch:
        return
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid.uid, uid.gid)


def cores(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("core*") if p.is_file()]


def abort_and_wait(proc: subprocess.Popen[str], timeout: float = 30) -> int:
    proc.send_signal(signal.SIGABRT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"pid {proc.pid} survived SIGABRT for {timeout} s") from None


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_daemon_crash_leaves_no_core_and_hides_its_environment(
    uid: Uid, home: Path, moto: MotoServer
) -> None:
    moto.reset()
    env = AwsEnv(home / "home", moto)
    write_setup(env)
    canary = "canary-" + secrets.token_hex(16)
    daemon_cwd = home / "daemon-cwd"
    control_cwd = home / "control-cwd"
    daemon_cwd.mkdir()
    control_cwd.mkdir()
    log_path = home / "daemon.stderr"
    log_path.touch()
    chown_tree(home, uid)

    # -- the daemon, serving one export --------------------------------------------
    with open(log_path, "w") as log:
        proc = uid.popen(uid.credhelper("daemon"), {**env.environ(), "CREDHELPER_TEST_CANARY": canary},
                         daemon_cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    daemon = Daemon(proc, log_path, env.socket, env.environ())  # type: ignore[arg-type]
    try:
        daemon.wait_for("started", timeout=60)
        done = uid.run(uid.credhelper("export", "--profile", "dev"), env.environ(), env.home)
        assert done.returncode == 0, f"{done.returncode} {done.stderr}\n{daemon.tail()}"
        daemon.wait_for("export", profile="dev", served_by="mint", timeout=30)
        creds = parse_export(done.stdout)
        held = [creds["SecretAccessKey"], creds["SessionToken"], BASE_SECRET, canary]

        readable, why = uid.can_read_environ(proc.pid, home)
        assert not readable, f"uid {uid.uid} read the daemon's /proc/{proc.pid}/environ: {why}"
        assert "Permission denied" in why, why

        rc = abort_and_wait(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == -signal.SIGABRT, f"daemon exited {rc}\n{daemon.tail()}"
    leaky = [(p, find_leaks(p.read_bytes().decode("latin-1"), held)) for p in cores(home)]
    assert not [p for p, leaks in leaky if leaks], f"core files hold secrets: {leaky}"
    assert not cores(home), f"the daemon's crash left core files: {cores(home)}"

    # -- the control: the same uid, secret and crash, no protection --------------
    control = uid.popen(
        [uid.python, "-c", "import sys, time\nheld = sys.stdin.readline()\nprint('ready', flush=True)\n"
         "time.sleep(60)\n"],
        {"PATH": "/usr/bin:/bin", "CREDHELPER_TEST_CANARY": canary}, control_cwd,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        assert control.stdin is not None and control.stdout is not None
        control.stdin.write(creds["SecretAccessKey"] + "\n")
        control.stdin.flush()
        assert control.stdout.readline().strip() == "ready"
        readable, why = uid.can_read_environ(control.pid, home)
        assert readable, f"control: uid {uid.uid} cannot read its own process's environ: {why}"
        assert abort_and_wait(control) == -signal.SIGABRT
    finally:
        if control.poll() is None:
            control.kill()
            control.wait()
    wait_until(lambda: cores(control_cwd), 10, "the control's core file")
    core = cores(control_cwd)[0].read_bytes().decode("latin-1")
    assert find_leaks(core, [creds["SecretAccessKey"], canary]), \
        "control: the core does not hold the secret, so the check above proves nothing"
