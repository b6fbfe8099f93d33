"""`credhelper service` through the installed command, as real subprocesses in
a throwaway HOME: what `install --dry-run` freezes and prints, no user manager
to talk to, and the refusals to start a second daemon. The lifecycle under a
real `systemd --user` is in test_systemd_service.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from conftest import CREDHELPER, AwsEnv, file_store_toml
from test_service import STANDARD_PATH

from credhelper import service
from credhelper.errors import EXIT_CONFIG


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
    }


def _helper(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return path


def test_cli_install_dry_run_prints_unit_and_commands_and_writes_nothing(aws_env: AwsEnv) -> None:
    """Only the file locations and a PATH of the standard dirs plus the helpers'
    dirs are frozen, and stderr says so; this shell's PATH and socket are not."""
    helpers = aws_env.home / "helpers"
    on_path = _helper(helpers / "on-path", "corp-creds")
    absolute = _helper(helpers / "absolute", "vault-creds")
    aws_env.write_config(f"""
        [profile a]
        credential_process = corp-creds --role dev
        [profile b]
        credential_process = "{absolute}" --json
        [profile c]
        credential_process = not-installed-anywhere
        [profile d]
        role_arn = arn:aws:iam::123456789012:role/x
        source_profile = a
        """)
    shell_path = f"{aws_env.home}/only-this-shell:{on_path.parent}:/usr/bin:/bin"
    before = _tree(aws_env.home)
    proc = aws_env.run("service", "install", "--dry-run", env={"PATH": shell_path})
    assert proc.returncode == 0, proc.stderr
    assert _tree(aws_env.home) == before
    path = f"{on_path.parent}:{absolute.parent}:{STANDARD_PATH}"
    assert proc.stderr.splitlines() == [
        f"service environment: PATH={path}",
        f"service environment: CREDHELPER_CONFIG={aws_env.settings_file}",
        f"service environment: AWS_CONFIG_FILE={aws_env.config_file}",
        f"service environment: AWS_SHARED_CREDENTIALS_FILE={aws_env.credentials_file}",
        "note: profile c: credential_process program not-installed-anywhere is not on this shell's PATH",
        "note: CREDHELPER_SOCKET is set in this shell but not copied: the service uses the default "
        "socket; unset CREDHELPER_SOCKET where credhelper export runs",
    ]
    unit = service.render("systemd", CREDHELPER, aws_env.environ({"PATH": shell_path}))
    assert unit.rstrip("\n") in proc.stdout
    assert [ln for ln in proc.stdout.splitlines() if ln.startswith("Environment=")] == [
        f"Environment=PATH={path}",
        f"Environment=CREDHELPER_CONFIG={aws_env.settings_file}",
        f"Environment=AWS_CONFIG_FILE={aws_env.config_file}",
        f"Environment=AWS_SHARED_CREDENTIALS_FILE={aws_env.credentials_file}",
    ]
    assert "only-this-shell" not in proc.stdout and str(aws_env.socket) not in proc.stdout
    assert "AWS_ENDPOINT_URL_STS" not in proc.stdout
    assert proc.stdout.rstrip("\n").endswith(
        "# would run:\nsystemctl --user daemon-reload\nsystemctl --user enable --now credhelper.service"
    )
    assert f"would write {aws_env.home}/.config/systemd/user/credhelper.service" in proc.stdout

    proc = aws_env.run("service", "uninstall", "--dry-run")
    assert proc.returncode == 0 and "nothing to uninstall" in proc.stdout
    assert _tree(aws_env.home) == before


def test_cli_install_without_a_user_manager_exits_3_with_one_line(aws_env: AwsEnv) -> None:
    """The real systemctl, pointed at an empty runtime dir and no session bus, so
    it cannot reach any user manager on any machine."""
    env = {"DBUS_SESSION_BUS_ADDRESS": None}
    proc = aws_env.run("service", "install", env=env)
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    if shutil.which("systemctl"):
        assert "`systemctl --user daemon-reload` failed: Failed to connect to bus" in proc.stderr
    else:
        assert "systemctl not found" in proc.stderr
    assert "no systemd user session here" in proc.stderr
    assert proc.stderr.rstrip().endswith("credhelper daemon in your login shell")
    unit = aws_env.home / ".config" / "systemd" / "user" / "credhelper.service"
    assert unit.is_file()

    # systemctl fails: status says so in one line and exits 3, stdout empty
    status = aws_env.run("service", "status", env=env)
    assert status.returncode == EXIT_CONFIG, status.stderr
    assert status.stdout == ""
    assert len(status.stderr.splitlines()) == 1, status.stderr
    assert "credhelper.service is not running (installed)" in status.stderr
    assert f"daemon: not answering on {aws_env.socket}" in status.stderr
    assert status.stderr.rstrip().endswith("credhelper daemon in your login shell")

    proc = aws_env.run("service", "uninstall", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "removed the file only" in proc.stdout and not unit.exists()


def _wait_for_daemon(aws_env: AwsEnv, proc: subprocess.Popen[str], timeout: float = 30) -> int:
    """The pid `credhelper status --json` reports, polled until a total deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        out = aws_env.run("status", "--json", timeout=max(deadline - time.monotonic(), 1))
        if out.returncode == 0 and json.loads(out.stdout).get("daemon"):
            pid: int = json.loads(out.stdout)["daemon"]["pid"]
            return pid
        time.sleep(0.1)
    raise AssertionError(f"the daemon did not answer within {timeout}s")


def test_install_refuses_while_another_daemon_serves(aws_env: AwsEnv) -> None:
    """A daemon started by hand (or by brew services) holds the socket: a second
    one would only exit 2, so install refuses, says why, and writes nothing."""
    aws_env.write_settings(file_store_toml(aws_env.home))
    daemon = aws_env.popen("daemon")
    pid = _wait_for_daemon(aws_env, daemon)
    assert pid == daemon.pid
    for args in (("service", "install"), ("service", "install", "--dry-run")):
        proc = aws_env.run(*args)
        assert proc.returncode == EXIT_CONFIG, proc.stderr
        assert proc.stdout == ""
        assert proc.stderr.splitlines() == [
            f"credhelper: a credhelper daemon (pid {pid}) already serves this user and it was not "
            "started by this service; a second daemon would only exit 2 (another credhelper daemon is "
            f"serving): stop it (kill {pid}, or brew services stop credhelper) and rerun credhelper "
            "service install"
        ]
    assert not (aws_env.home / ".config" / "systemd").exists()
    # and the daemon itself refuses to be the second one, with the reason
    second = aws_env.run("daemon", timeout=30)
    assert second.returncode == 2
    assert "another credhelper daemon is serving" in second.stderr


def test_install_refuses_next_to_homebrews_service(aws_env: AwsEnv) -> None:
    brew = aws_env.home / ".config" / "systemd" / "user" / "homebrew.credhelper.service"
    brew.parent.mkdir(parents=True)
    brew.write_text("[Service]\nExecStart=/home/linuxbrew/.linuxbrew/opt/credhelper/bin/credhelper daemon\n")
    proc = aws_env.run("service", "install")
    assert proc.returncode == EXIT_CONFIG and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    assert f"Homebrew's service for credhelper is installed ({brew}); with Homebrew, brew services " \
           "is the canonical way to run the daemon" in proc.stderr
    assert proc.stderr.rstrip().endswith(
        "keep brew services, or run brew services stop credhelper and then credhelper service install"
    )
    assert not (brew.parent / "credhelper.service").exists()
