"""The service under a real `systemd --user` (tests/systemd_user.py), as a
non-root user, driven through the installed `credhelper service
install|status|uninstall` of a regular (non-editable) install.

The shipped unit is used as installed; a drop-in adds only what a test needs:
the moto endpoint, the daemon's stderr appended to a file (there is no
journald), a 2 s watchdog and a 1 s RestartSec so that the waits stay short.

Under CI=true these tests fail instead of skipping when the machine cannot run
a user manager.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, MotoServer, file_store_toml, unavailable
from systemd_user import Unavailable, UserManager, ensure_user, problem, service_venv, wait_for

from credhelper.errors import EXIT_CONFIG

UNIT = "credhelper.service"
ROLE_ARN = "arn:aws:iam::123456789012:role/svc"
BASE_AKID = "AKIASYSTEMDTESTBASE1"
BASE_SECRET = "systemd-test-base-secret/0123456789+abcdef"
WATCHDOG_SEC = 2
RESTART_SEC = 1
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.slow


class Service:
    """The test user's side: its files, its `credhelper`, the unit's state, the daemon log."""

    def __init__(self, manager: UserManager, venv: Path, moto: MotoServer) -> None:
        self.m = manager
        self.credhelper = str(venv / "bin" / "credhelper")
        self.moto = moto
        self.home = manager.home
        self.conf = self.home / "conf"
        self.config_file = self.conf / "aws-config"
        self.credentials_file = self.conf / "aws-credentials"
        self.settings_file = self.conf / "credhelper.toml"
        self.helpers = self.home / "helpers"
        self.log = self.home / "daemon.log"
        self.unit_dir = self.home / ".config" / "systemd" / "user"
        self.unit_file = self.unit_dir / UNIT
        self.socket = manager.runtime_dir / "credhelper" / "daemon.sock"

    def setup(self) -> None:
        """Profile `dev` (AssumeRole from `base`'s keys), a helper profile, an
        encrypted-file store, the test drop-in; everything owned by the user."""
        self.conf.mkdir(parents=True, exist_ok=True)
        self.helpers.mkdir(exist_ok=True)
        helper = self.helpers / "corp-creds"
        helper.write_text("#!/bin/sh\nexit 1\n")
        helper.chmod(0o755)
        self.config_file.write_text(textwrap.dedent(f"""\
            [profile dev]
            role_arn = {ROLE_ARN}
            source_profile = base
            region = us-east-1
            [profile base]
            region = us-east-1
            [profile corp]
            credential_process = corp-creds --json
            """))
        self.credentials_file.write_text(
            f"[base]\naws_access_key_id = {BASE_AKID}\naws_secret_access_key = {BASE_SECRET}\n"
        )
        self.settings_file.write_text(file_store_toml(self.conf))
        dropin = self.unit_dir / f"{UNIT}.d" / "test.conf"
        dropin.parent.mkdir(parents=True, exist_ok=True)
        dropin.write_text(textwrap.dedent(f"""\
            [Service]
            Environment=AWS_ENDPOINT_URL_STS={self.moto.url} AWS_REGION=us-east-1
            Environment=AWS_EC2_METADATA_DISABLED=true
            StandardError=append:{self.log}
            WatchdogSec={WATCHDOG_SEC}s
            RestartSec={RESTART_SEC}s
            """))
        self.log.touch()
        for root, dirs, files in os.walk(self.home):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), self.m.user.uid, self.m.user.gid)

    def client_env(self, **extra: str | None) -> dict[str, str | None]:
        """What a shell of the user has: the file locations, the moto endpoint."""
        return {
            "AWS_CONFIG_FILE": str(self.config_file),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials_file),
            "CREDHELPER_CONFIG": str(self.settings_file),
            "AWS_ENDPOINT_URL_STS": self.moto.url,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            **extra,
        }

    def run(self, *args: str, **extra: str | None) -> Any:
        return self.m.run([self.credhelper, *args], env=self.client_env(**extra))

    def props(self, *names: str) -> dict[str, str]:
        return self.m.show(UNIT, *names)

    def log_events(self, after: int = 0) -> list[dict[str, Any]]:
        text = self.log.read_bytes()[after:].decode(errors="replace")
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"_raw": line})
        return out

    def log_size(self) -> int:
        return self.log.stat().st_size

    def wait_event(self, event: str, after: int, timeout: float = 30, **match: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for e in self.log_events(after):
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                    return e
            return None

        try:
            return wait_for(f"a {event} {match} line in the daemon log", find, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log.read_text()[-3000:]}") from None

    def export(self) -> dict[str, Any]:
        proc = self.run("export", "--profile", "dev")
        assert proc.returncode == 0, proc.stderr
        creds: dict[str, Any] = json.loads(proc.stdout)["Credentials"]
        return creds

    def daemon_pid(self) -> int | None:
        proc = self.run("status", "--json")
        assert proc.returncode == 0, proc.stderr
        daemon = json.loads(proc.stdout).get("daemon")
        return int(daemon["pid"]) if daemon else None

    def cleanup(self) -> None:
        self.m.systemctl("disable", "--now", UNIT)
        self.m.systemctl("reset-failed", UNIT)
        shutil.rmtree(self.home / ".config", ignore_errors=True)
        shutil.rmtree(self.conf, ignore_errors=True)
        self.m.systemctl("daemon-reload")


@pytest.fixture(scope="module")
def user_manager() -> Iterator[tuple[UserManager, Path]]:
    """A running `systemd --user` of the test user, and the venv it runs credhelper from."""
    reason = problem()
    if reason:
        unavailable(f"no systemd user manager: {reason}")
    try:
        user = ensure_user()
        venv = service_venv(REPO)
    except Unavailable as exc:
        unavailable(f"no systemd user manager: {exc}")
    base = Path(tempfile.mkdtemp(prefix="credhelper-systemd-"))
    manager = UserManager(user, base, f"credhelper-test-{uuid.uuid4().hex[:8]}")
    try:
        manager.start()
        yield manager, venv
    finally:
        manager.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def svc(user_manager: tuple[UserManager, Path], moto: MotoServer) -> Iterator[Service]:
    manager, venv = user_manager
    moto.reset()
    s = Service(manager, venv, moto)
    s.setup()
    try:
        yield s
    finally:
        s.cleanup()


def test_the_whole_lifecycle_through_service_install(svc: Service) -> None:
    # ---- install: a shell with a one-off PATH entry and socket, neither frozen
    shell_path = f"/opt/one-shell/bin:{svc.helpers}:/usr/bin:/bin"
    proc = svc.run("service", "install", PATH=shell_path, CREDHELPER_SOCKET="/tmp/one-shell.sock")
    assert proc.returncode == 0, proc.stderr
    path = f"{svc.helpers}:{STANDARD_PATH}"
    assert proc.stderr.splitlines()[:4] == [
        f"service environment: PATH={path}",
        f"service environment: CREDHELPER_CONFIG={svc.settings_file}",
        f"service environment: AWS_CONFIG_FILE={svc.config_file}",
        f"service environment: AWS_SHARED_CREDENTIALS_FILE={svc.credentials_file}",
    ]
    assert f"installed {svc.unit_file}" in proc.stdout
    unit = svc.unit_file.read_text()
    assert f"ExecStart={svc.credhelper} daemon" in unit.splitlines()
    assert [ln for ln in unit.splitlines() if ln.startswith("Environment=")] == [
        f"Environment=PATH={path}",
        f"Environment=CREDHELPER_CONFIG={svc.settings_file}",
        f"Environment=AWS_CONFIG_FILE={svc.config_file}",
        f"Environment=AWS_SHARED_CREDENTIALS_FILE={svc.credentials_file}",
    ]

    # ---- active (running): Type=notify READY reached, with its status text
    p = svc.props("ActiveState", "SubState", "Type", "StatusText", "NRestarts", "MainPID", "LimitCORE",
                  "UnitFileState", "WatchdogUSec")
    assert (p["ActiveState"], p["SubState"], p["Type"]) == ("active", "running", "notify"), p
    assert p["StatusText"] == f"serving {svc.socket}"
    assert p["NRestarts"] == "0" and p["UnitFileState"] == "enabled"
    assert p["LimitCORE"] == "0"  # no core file can hold the credentials
    assert p["WatchdogUSec"] == f"{WATCHDOG_SEC}s"
    pid = int(p["MainPID"])
    started = svc.wait_event("started", 0, pid=pid)
    assert started["socket"] == str(svc.socket)
    environ = dict(
        kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv
    )
    assert environ["PATH"] == path and environ["CREDHELPER_CONFIG"] == str(svc.settings_file)
    assert "CREDHELPER_SOCKET" not in environ

    # ---- an export answered by the service's daemon
    mark = svc.log_size()
    creds = svc.export()
    served = svc.wait_event("export", mark, profile="dev")
    assert served["served_by"] in ("mint", "memory")
    assert served["access_key_id"] == creds["AccessKeyId"]
    assert creds["AccessKeyId"] in svc.moto.access_key_ids_issued("AssumeRole")
    assert svc.daemon_pid() == pid

    # ---- the watchdog kept fed: several WatchdogSec periods pass, no restart
    def pings() -> int:
        return int(svc.props("WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"])

    seen: set[int] = set()

    def enough_pings() -> bool:
        seen.add(pings())
        return len(seen) >= 7

    wait_for(f"6 watchdog pings ({3 * WATCHDOG_SEC} s)", enough_pings,
             timeout=6 * WATCHDOG_SEC + 10, interval=0.2)
    assert max(seen) - min(seen) >= 2 * WATCHDOG_SEC * 1_000_000  # > 2 periods between pings seen
    p = svc.props("ActiveState", "NRestarts", "MainPID", "Result")
    assert (p["ActiveState"], p["NRestarts"], p["MainPID"], p["Result"]) == ("active", "0", str(pid),
                                                                             "success"), p

    # ---- systemctl --user reload: SIGHUP, the same daemon reloads
    mark = svc.log_size()
    proc = svc.m.systemctl("reload", UNIT)
    assert proc.returncode == 0, proc.stderr
    svc.wait_event("reload", mark)
    assert svc.props("MainPID")["MainPID"] == str(pid)

    # ---- kill -9: Restart=on-failure starts a new daemon, which serves
    mark = svc.log_size()
    os.kill(pid, signal.SIGKILL)

    def restarted() -> dict[str, str] | None:
        q = svc.props("ActiveState", "SubState", "NRestarts", "MainPID")
        return q if q["NRestarts"] == "1" and q["ActiveState"] == "active" and q["MainPID"] not in (
            "0", str(pid)) else None

    new_pid = int(wait_for("a restart after kill -9", restarted, timeout=30)["MainPID"])
    svc.wait_event("started", mark, pid=new_pid)
    mark = svc.log_size()
    creds = svc.export()
    assert svc.wait_event("export", mark, profile="dev")["access_key_id"] == creds["AccessKeyId"]
    assert svc.daemon_pid() == new_pid

    # ---- service status: the manager's view and the daemon's
    proc = svc.run("service", "status")
    assert proc.returncode == 0, proc.stderr
    assert f"systemd user unit: {svc.unit_file} (installed)" in proc.stdout
    assert "Active: active (running)" in proc.stdout
    assert f"daemon: answering on {svc.socket} (pid {new_pid}," in proc.stdout

    # ---- uninstall: stopped, disabled, unit file gone
    mark = svc.log_size()
    proc = svc.run("service", "uninstall")
    assert proc.returncode == 0, proc.stderr
    assert f"removed {svc.unit_file}" in proc.stdout
    assert not svc.unit_file.exists()
    p = svc.props("ActiveState", "LoadState", "MainPID")
    assert p["ActiveState"] == "inactive" and p["MainPID"] == "0", p
    svc.wait_event("stopped", mark)  # SIGTERM: a clean stop
    wait_for("the daemon process to be gone", lambda: new_pid not in svc.m.pids(), timeout=10)
    proc = svc.run("service", "status")
    assert proc.returncode == EXIT_CONFIG and proc.stdout == ""
    assert "is not running (not installed)" in proc.stderr


def test_a_config_error_is_not_restarted_in_a_loop(svc: Service) -> None:
    """The daemon exits 3 on a broken settings file; RestartPreventExitStatus
    keeps systemd from restarting it every RestartSec."""
    proc = svc.run("service", "install")
    assert proc.returncode == 0, proc.stderr
    pid = int(svc.props("MainPID")["MainPID"])
    svc.settings_file.write_text('store = "encrypted-file"\nrefresh_windw = 900\n')  # a typo
    mark = svc.log_size()
    os.kill(pid, signal.SIGKILL)  # the crash is restarted; the restart meets the bad file

    def failed() -> dict[str, str] | None:
        q = svc.props("ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts")
        return q if q["ActiveState"] == "failed" else None

    p = wait_for("the unit to fail", failed, timeout=30)
    assert (p["SubState"], p["Result"], p["ExecMainStatus"], p["NRestarts"]) == (
        "failed", "exit-code", str(EXIT_CONFIG), "1"), p
    errors = [e for e in svc.log_events(mark) if "refresh_windw" in json.dumps(e)]
    assert errors, svc.log.read_text()[-2000:]

    # no auto-restart is pending, and none happens over several RestartSec
    def changed() -> dict[str, str] | None:
        q = svc.props("ActiveState", "SubState", "NRestarts")
        return q if q != {"ActiveState": "failed", "SubState": "failed", "NRestarts": "1"} else None

    with pytest.raises(AssertionError, match="timed out"):
        wait_for("any restart", changed, timeout=4 * RESTART_SEC, interval=0.2)

    proc = svc.run("service", "status")
    assert proc.returncode == EXIT_CONFIG and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    assert "is not running (installed)" in proc.stderr and "failed" in proc.stderr
    assert proc.stderr.rstrip().endswith("then rerun credhelper service install")
