"""A real `systemd --user` for tests, run by root for a non-root test user.

PID 1 here need not be systemd, but the user manager still runs (checked with
systemd 252; see test-infra.md §4 of the project notes):

1. a cgroup for it in every cgroup hierarchy systemd uses (the named `systemd`
   v1 hierarchy and the `unified` cgroup2 mount of a hybrid setup, or the one
   cgroup2 tree), owned by the test user;
2. a private mount namespace with a tmpfs on `/run/systemd` holding `system/`
   (sd_booted() checks for it, else `systemd --user` exits 1 silently), the
   shell moved into those cgroups, then `setpriv` to the test user and exec of
   the manager with `XDG_RUNTIME_DIR` a 0700 directory of that user;
3. ready when `systemctl --user show -p SystemState` says `running`;
4. stopped with SIGTERM (the manager stops its units), then whatever is left in
   its cgroups is killed by pid and the cgroups are removed.

There is no journald: units log where their drop-ins say (StandardError=).

The user runs the credhelper of a venv it can read, built from /usr/bin/python3
with a regular (not editable) install of this source tree, once per source
tree (cached under $TMPDIR, keyed on the hash of the files it is built from).

Every wait has a total deadline.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

TEST_USER = "credhelper-test"
SYSTEMD = "/lib/systemd/systemd"
SYSTEM_PYTHON = "/usr/bin/python3"
T = TypeVar("T")


class Unavailable(Exception):
    """This machine cannot run a user manager (the reason is the message)."""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Poll `probe` until it returns something other than None/False, within a
    total deadline; AssertionError naming `what` (and the last value) otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------ the test user


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def ensure_user(name: str = TEST_USER) -> User:
    """The non-root user the manager runs as; created (a system user with a
    home) when missing and we are root. `.ci/run` creates it up front."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            raise Unavailable(f"user {name} does not exist and only root can create it") from None
        if shutil.which("useradd") is None:
            raise Unavailable("useradd is missing: cannot create the test user") from None
        proc = subprocess.run(
            ["useradd", "--system", "--create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if proc.returncode != 0 and "already exists" not in proc.stderr:
            raise Unavailable(f"useradd {name} failed: {proc.stderr.strip()}") from None
        pw = pwd.getpwnam(name)
    if pw.pw_uid == 0:
        raise Unavailable(f"user {name} is root")
    return User(name, pw.pw_uid, pw.pw_gid)


def problem() -> str | None:
    """Why no user manager can run here, or None."""
    if os.geteuid() != 0:
        return "starting a systemd user manager for another uid needs root"
    for tool in ("systemctl", "unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.access(SYSTEMD, os.X_OK):
        return f"{SYSTEMD} is missing (Debian package: systemd)"
    if not cgroup_roots():
        return "no writable cgroup hierarchy for systemd under /sys/fs/cgroup"
    return None


def cgroup_roots() -> list[Path]:
    """The hierarchies systemd uses: hybrid (named v1 `systemd` + `unified`)
    or pure cgroup2 (/sys/fs/cgroup itself)."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        roots = [base]
    else:
        roots = [p for p in (base / "systemd", base / "unified") if (p / "cgroup.procs").exists()]
    return [r for r in roots if os.access(r, os.W_OK)]


def _chown_tree(path: Path, user: User) -> None:
    os.chown(path, user.uid, user.gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)


# ------------------------------------------------------------------ the venv the user runs


def _source_files(root: Path) -> list[str]:
    """What a wheel is built from: tracked and new files, tests and benchmarks left out."""
    skip = ("tests/", "bench/", ".ci/", "docs/")
    if (root / ".git").exists() and shutil.which("git"):
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, timeout=60, check=True,
        ).stdout.decode()
        names = [n for n in out.split("\0") if n]
    else:
        names = []
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in (
                "__pycache__", "build", "dist") and not d.endswith(".egg-info")]
            names += [os.path.relpath(os.path.join(dirpath, f), root) for f in files]
    return sorted(n for n in names if not n.startswith(skip) and (root / n).is_file())


def source_hash(root: Path, files: Sequence[str]) -> str:
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _prune(keep: Path, max_age: float = 3600) -> None:
    """Remove the venvs of other source trees unused for an hour (not being built):
    about 100 MB each, and a checkout being edited makes a new one per change."""
    for other in keep.parent.glob("credhelper-service-venv-*"):
        if other == keep or not other.is_dir() or time.time() - other.stat().st_mtime < max_age:
            continue
        with open(f"{other}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(other, ignore_errors=True)
        Path(f"{other}.lock").unlink(missing_ok=True)


def service_venv(root: Path, timeout: float = 600) -> Path:
    """A venv of /usr/bin/python3 with this source tree installed (not
    editable), readable by everyone; built once per source tree hash."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        raise Unavailable(f"{SYSTEM_PYTHON} is missing: the test user needs a Python it can read")
    files = _source_files(root)
    venv = Path(tempfile.gettempdir()) / f"credhelper-service-venv-{source_hash(root, files)}"
    _prune(venv)
    done = venv / ".complete"
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building it
        if done.exists():
            os.utime(venv)  # in use: not pruned
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a half-built one
        deadline = time.monotonic() + timeout
        with tempfile.TemporaryDirectory(prefix="credhelper-src-") as src:
            for name in files:
                dest = Path(src, name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / name, dest)
            for argv in (
                [SYSTEM_PYTHON, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input", src],
            ):
                proc = subprocess.run(
                    argv, capture_output=True, text=True, check=False,
                    timeout=max(deadline - time.monotonic(), 1), env={**os.environ, "PIP_NO_INPUT": "1"},
                )
                if proc.returncode != 0:
                    if "ensurepip is not available" in proc.stdout + proc.stderr:
                        raise Unavailable(f"{SYSTEM_PYTHON} has no venv module (apt install python3-venv)")
                    raise AssertionError(f"{shlex.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
        for dirpath, _dirs, names in os.walk(venv):
            for name in [".", *names]:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    mode = os.stat(p).st_mode
                    os.chmod(p, mode | 0o444 | (0o111 if mode & 0o100 or name == "." else 0))
        done.write_text("ok\n")
    return venv


# ------------------------------------------------------------------ the manager


class UserManager:
    """`systemd --user` for `user`, with its HOME and XDG_RUNTIME_DIR under `base`."""

    def __init__(self, user: User, base: Path, name: str) -> None:
        self.user = user
        self.base = base
        self.home = base / "home"
        self.runtime_dir = base / "rt"
        self.log = base / "manager.log"
        self.cgroup = name
        self.proc: subprocess.Popen[bytes] | None = None

    # -- running things as the user

    def env(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "USER": self.user.name,
            "LOGNAME": self.user.name,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={self.runtime_dir}/bus",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "SYSTEMD_COLORS": "0",
        }
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(
        self, argv: Sequence[str], env: Mapping[str, str | None] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """`argv` as the test user (no stdin, output captured)."""
        return subprocess.run(
            list(argv), env=self.env(env), cwd=self.home, user=self.user.uid, group=self.user.gid,
            extra_groups=[], stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=False,
        )

    def systemctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--user", *args], timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        proc = self.systemctl("show", unit, *(f"--property={p}" for p in props))
        if proc.returncode != 0:
            raise AssertionError(f"systemctl --user show {unit} failed: {proc.stderr}")
        return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)

    # -- lifecycle

    def _cgroups(self) -> list[Path]:
        return [root / self.cgroup for root in cgroup_roots()]

    def start(self, timeout: float = 30) -> None:
        for d in (self.home, self.runtime_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)
            os.chown(d, self.user.uid, self.user.gid)
        self.base.chmod(0o755)
        for cg in self._cgroups():
            cg.mkdir(exist_ok=True)
            _chown_tree(cg, self.user)
        u = self.user
        script = (
            "set -e; mount -t tmpfs -o mode=755 tmpfs /run/systemd; mkdir /run/systemd/system; "
            + "".join(f"echo $$ > {shlex.quote(str(cg / 'cgroup.procs'))}; " for cg in self._cgroups())
            + f"exec setpriv --reuid={u.uid} --regid={u.gid} --init-groups --reset-env env "
            + f"HOME={shlex.quote(str(self.home))} XDG_RUNTIME_DIR={shlex.quote(str(self.runtime_dir))} "
            + f"USER={u.name} LOGNAME={u.name} PATH=/usr/local/bin:/usr/bin:/bin {SYSTEMD} --user"
        )
        os.makedirs("/run/systemd", exist_ok=True)  # the mount point, in the host namespace
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

        def running() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"systemd --user exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            state = self.systemctl("show", "--property=SystemState", "--value", timeout=10)
            return state.stdout.strip() == "running"

        try:
            wait_for("the user manager to be running", running, timeout)
        except BaseException:
            self.stop()
            raise

    def pids(self) -> set[int]:
        found: set[int] = set()
        for cg in self._cgroups():
            for procs in cg.rglob("cgroup.procs"):
                try:
                    found |= {int(p) for p in procs.read_text().split()}
                except OSError:
                    pass
        return found

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the manager and wait; kill what is left by pid; remove the cgroups."""
        deadline = time.monotonic() + timeout
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(max(deadline - time.monotonic() - 10, 1))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        while self.pids() and time.monotonic() < deadline:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        left = self.pids()
        for cg in self._cgroups():
            for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                d.rmdir()
            if cg.exists():
                cg.rmdir()
        if left:
            raise AssertionError(f"processes left in the user manager's cgroups: {sorted(left)}")
