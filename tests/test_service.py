"""`credhelper service`: the systemd unit and launchd plist templates, rendered
for the real installed launcher, and install/uninstall/status.

The unit is checked by the real `systemd-analyze verify --user` (test-infra.md
§4: it needs XDG_RUNTIME_DIR; warnings count, so stderr must be empty). There
is no launchd validator on Linux: the plist is checked in test_launchd.py.
Install and uninstall are driven through a fake runner that records the
commands, and the real CLI is run where systemctl cannot reach any user
manager; test_systemd_service.py runs the whole lifecycle under a real
`systemd --user`.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import CREDHELPER, AwsEnv, file_store_toml, unavailable

from credhelper import service
from credhelper.errors import EXIT_CONFIG, ConfigError

#: the service's PATH when no credential_process helper is configured
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLETOKEN",
}


# ------------------------------------------------------------------ systemd-analyze verify


def verify_unit(text: str, tmp_path: Path, name: str = "credhelper.service") -> tuple[bool, str]:
    """(passes, output) of `systemd-analyze verify --user`: rc 0 AND empty stderr."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        unavailable("systemd-analyze is not installed (Debian package: systemd)")
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    (units / name).write_text(text)
    xdg = tmp_path / "xdg-runtime"
    xdg.mkdir(mode=0o700, exist_ok=True)
    xdg.chmod(0o700)
    home = tmp_path / "verify-home"
    home.mkdir(exist_ok=True)
    proc = subprocess.run(
        [exe, "verify", "--user", str(units / name)],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),  # no stray units of the real user
            "XDG_RUNTIME_DIR": str(xdg),
            "LANG": "C.UTF-8",
            "SYSTEMD_LOG_COLOR": "0",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ok = proc.returncode == 0 and proc.stderr == ""
    return ok, f"rc={proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"


def install_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    env.update(extra)
    return env


def test_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    env = install_env(
        tmp_path,
        CREDHELPER_CONFIG=str(tmp_path / "credhelper.toml"),
        AWS_CONFIG_FILE="~/.aws/config",
        CREDHELPER_SOCKET=str(tmp_path / "one-shell.sock"),
        PATH="/opt/only-this-shell/bin:/usr/bin:/bin",
        **SECRETS,
    )
    unit = service.render("systemd", CREDHELPER, env)
    ok, out = verify_unit(unit, tmp_path)
    assert ok, f"{out}\n{unit}"
    lines = unit.splitlines()
    assert f"ExecStart={CREDHELPER} daemon" in lines or f'ExecStart="{CREDHELPER}" daemon' in lines
    for line in (
        "Type=notify", "NotifyAccess=main", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
        "WatchdogSec=30s", "NoNewPrivileges=yes", "WantedBy=default.target",
        f"Environment=CREDHELPER_CONFIG={tmp_path}/credhelper.toml",
        f"Environment=AWS_CONFIG_FILE={tmp_path}/home/.aws/config",
        f"Environment=PATH={STANDARD_PATH}",
        "LimitCORE=0",  # no core dump can hold the credentials in memory
    ):
        assert line in lines, line
    # frozen: only the file locations and PATH; not this shell's PATH or socket
    assert [ln.split("=")[1] for ln in lines if ln.startswith("Environment=")] == [
        "PATH", "CREDHELPER_CONFIG", "AWS_CONFIG_FILE",
    ]
    assert "only-this-shell" not in unit and "one-shell.sock" not in unit
    assert not any(ln.startswith(("PrivateTmp", "ProtectHome", "PrivateUsers")) for ln in lines)
    for value in SECRETS.values():
        assert value not in unit
    assert "{" not in unit.replace("${", "")  # no placeholder left


def test_unit_without_environment_and_with_awkward_paths_verifies(tmp_path: Path) -> None:
    """systemd unquotes ExecStart exactly back: verify checks that the executable
    exists, so a mis-escaped path would fail it."""
    odd = tmp_path / "dir with space %n $HOME"
    odd.mkdir()
    (odd / "credhelper").symlink_to(CREDHELPER)
    plain = service.render("systemd", CREDHELPER, {"HOME": str(tmp_path)})
    assert [ln for ln in plain.splitlines() if ln.startswith("Environment=")] == [
        f"Environment=PATH={STANDARD_PATH}"
    ]
    ok, out = verify_unit(plain, tmp_path)
    assert ok, f"{out}\n{plain}"
    env = install_env(tmp_path, CREDHELPER_CONFIG=f'{odd}/"q" \\.toml', PATH=f"{odd}:/usr/bin:rel")
    unit = service.render("systemd", str(odd / "credhelper"), env)
    ok, out = verify_unit(unit, tmp_path)
    assert ok, f"{out}\n{unit}"
    assert f'ExecStart="{tmp_path}/dir with space %%n $HOME/credhelper" daemon' in unit.splitlines()
    assert f'Environment="CREDHELPER_CONFIG={tmp_path}/dir with space %%n $HOME/\\"q\\" \\\\.toml"' in unit
    assert ":rel" not in unit  # relative PATH entries dropped
    # systemd refuses quotes and backslashes in an executable's path: say so, don't write it
    with pytest.raises(ConfigError, match="quotes or backslashes"):
        service.render("systemd", str(tmp_path / 'a"b' / "credhelper"), env)


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (("NoNewPrivileges=yes", "NoNewPrivilege=yes"), "Unknown key"),
        (("Type=notify", "Type=notfy"), "Failed to parse service type"),
        (("Restart=on-failure", "Restart=sometimes"), "restart"),  # only a warning: rc 0
        ((f"ExecStart={CREDHELPER}", "ExecStart=/nonexistent/bin/credhelper"), "not executable"),
    ],
)
def test_broken_unit_fails_the_same_check(
    tmp_path: Path, change: tuple[str, str], expect: str
) -> None:
    unit = service.render("systemd", CREDHELPER, {"HOME": str(tmp_path)})
    assert change[0] in unit
    ok, out = verify_unit(unit.replace(change[0], change[1], 1), tmp_path)
    assert not ok
    assert expect.lower() in out.lower(), out


# ------------------------------------------------------------------ the launcher, the templates


def test_launcher_is_this_installations_absolute_command(tmp_path: Path) -> None:
    assert service.launcher(argv0="/usr/bin/pytest") == CREDHELPER
    link = tmp_path / "bin" / "credhelper"
    link.parent.mkdir()
    link.symlink_to(CREDHELPER)
    # argv[0] as the user ran it (a stable symlink such as Homebrew's), not resolved
    assert service.launcher(argv0=str(link)) == str(link)
    with pytest.raises(ConfigError) as err:
        service.launcher(argv0="pytest", python=str(tmp_path / "nowhere" / "python"))
    assert err.value.exit_code == EXIT_CONFIG


def test_templates_come_from_the_top_level_service_dir() -> None:
    root = Path(service.__file__).resolve().parents[2]
    assert service.template("systemd") == (root / "service" / "credhelper.service").read_text()
    assert service.template("launchd") == (
        root / "service" / "com.github.credhelper.daemon.plist"
    ).read_text()


def test_unsupported_platform_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        service.install(platform="win32", env=install_env(tmp_path), runner=FakeRunner())
    assert err.value.exit_code == EXIT_CONFIG
    assert "credhelper daemon" in err.value.message


# ------------------------------------------------------------------ install/uninstall, fake runner


@pytest.fixture(autouse=True)
def no_daemon_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process installs must not see a daemon this test process may reach."""
    monkeypatch.setattr("credhelper.service.manage._ask_daemon", lambda: None)


class FakeRunner:
    """Records argv; answers from `fail` (argv prefix -> (rc, stderr)) or `missing`."""

    def __init__(
        self, fail: dict[tuple[str, ...], tuple[int, str]] | None = None, missing: bool = False
    ) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail or {}
        self.missing = missing

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        argv = tuple(argv)
        self.calls.append(argv)
        if self.missing:
            raise FileNotFoundError(argv[0])
        for prefix, (rc, err) in self.fail.items():
            if argv[: len(prefix)] == prefix:
                return subprocess.CompletedProcess(argv, rc, "", err)
        return subprocess.CompletedProcess(argv, 0, "", "")


RELOAD = ("systemctl", "--user", "daemon-reload")
ENABLE_NOW = ("systemctl", "--user", "enable", "--now", "credhelper.service")
DISABLE_NOW = ("systemctl", "--user", "disable", "--now", "credhelper.service")
NO_BUS = "Failed to connect to bus: No medium found"


@pytest.fixture
def replaces(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Every os.replace(src, dst), with a check that src is complete at that point."""
    seen: list[tuple[str, str]] = []
    real = os.replace

    def spy(src: Any, dst: Any) -> None:
        seen.append((str(src), str(dst)))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    yield seen


def test_install_writes_atomically_at_the_xdg_path_then_reloads_and_enables(
    tmp_path: Path, replaces: list[tuple[str, str]]
) -> None:
    env = install_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    run = FakeRunner()
    plan = service.install(runner=run, env=env, executable=CREDHELPER, platform="linux")
    path = tmp_path / "cfg" / "systemd" / "user" / "credhelper.service"
    assert plan.path == path
    assert path.read_text() == service.render("systemd", CREDHELPER, env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert run.calls == [RELOAD, ENABLE_NOW]
    assert [(Path(s).parent, d) for s, d in replaces] == [(path.parent, str(path))]
    assert sorted(p.name for p in path.parent.iterdir()) == ["credhelper.service"]  # no temp left

    # unchanged: the same two commands; changed (e.g. an upgrade moved the
    # launcher): the running daemon is restarted onto the new unit
    run = FakeRunner()
    service.install(runner=run, env=env, executable=CREDHELPER, platform="linux")
    assert run.calls == [RELOAD, ENABLE_NOW]
    other = tmp_path / "other" / "credhelper"
    other.parent.mkdir()
    other.symlink_to(CREDHELPER)
    run = FakeRunner()
    service.install(runner=run, env=env, executable=str(other), platform="linux")
    assert run.calls == [
        RELOAD, ("systemctl", "--user", "enable", "credhelper.service"),
        ("systemctl", "--user", "restart", "credhelper.service"),
    ]
    assert str(other) in path.read_text()

    run = FakeRunner()
    plan = service.uninstall(dry_run=True, runner=run, env=env, platform="linux")
    assert run.calls == [] and path.exists()
    assert plan.describe() == (
        f"# would run:\nsystemctl --user disable --now credhelper.service\nrm -- {path}\n"
        "systemctl --user daemon-reload"
    )
    plan = service.uninstall(runner=run, env=env, platform="linux")
    assert run.calls == [DISABLE_NOW, RELOAD]
    assert plan.removed and not path.exists()
    run = FakeRunner()
    plan = service.uninstall(runner=run, env=env, platform="linux")
    assert run.calls == [] and not plan.removed
    assert "nothing to uninstall" in plan.notes[0]


def test_install_default_path_is_dot_config(tmp_path: Path) -> None:
    env = install_env(tmp_path, XDG_CONFIG_HOME="relative/ignored")
    service.install(runner=FakeRunner(), env=env, executable=CREDHELPER, platform="linux")
    assert (tmp_path / "home" / ".config" / "systemd" / "user" / "credhelper.service").is_file()


def test_no_user_session_is_one_line_with_a_remedy_and_keeps_the_unit(tmp_path: Path) -> None:
    env = install_env(tmp_path)
    run = FakeRunner(fail={RELOAD: (1, NO_BUS + "\n")})
    with pytest.raises(ConfigError) as err:
        service.install(runner=run, env=env, executable=CREDHELPER, platform="linux")
    msg = err.value.message
    assert err.value.exit_code == EXIT_CONFIG
    assert "\n" not in msg
    assert NO_BUS in msg and "no systemd user session" in msg
    assert msg.endswith("or start the daemon another way, e.g. credhelper daemon in your login shell")
    assert run.calls == [RELOAD]  # stops at the first failure
    path = service.target_path("systemd", env)
    assert path.read_text() == service.render("systemd", CREDHELPER, env)  # documented: kept

    # uninstall without a session still removes the file, and says so
    plan = service.uninstall(runner=FakeRunner(fail={DISABLE_NOW: (1, NO_BUS)}), env=env, platform="linux")
    assert plan.removed and not path.exists()
    assert "removed the file only" in plan.notes[0]


def test_missing_systemctl_and_other_failures(tmp_path: Path) -> None:
    env = install_env(tmp_path)
    with pytest.raises(ConfigError) as err:
        service.install(runner=FakeRunner(missing=True), env=env, executable=CREDHELPER, platform="linux")
    assert err.value.message.startswith("systemctl not found: no systemd user session")
    plan = service.uninstall(runner=FakeRunner(missing=True), env=env, platform="linux")
    assert plan.removed

    failing = FakeRunner(fail={ENABLE_NOW: (1, "Job for credhelper.service failed because the "
                                              "control process exited with error code.\nSee ...")})
    with pytest.raises(ConfigError) as err:
        service.install(runner=failing, env=env, executable=CREDHELPER, platform="linux")
    assert err.value.message == (
        "`systemctl --user enable --now credhelper.service` failed: Job for credhelper.service "
        "failed because the control process exited with error code.: see systemctl --user status "
        "credhelper.service and journalctl --user -u credhelper.service"
    )
    # a real failure of disable keeps the file (nothing was stopped)
    with pytest.raises(ConfigError):
        service.uninstall(runner=FakeRunner(fail={DISABLE_NOW: (1, "Access denied")}), env=env,
                          platform="linux")
    assert service.target_path("systemd", env).exists()


def test_dry_run_changes_nothing_and_runs_nothing(tmp_path: Path) -> None:
    env = install_env(tmp_path)
    run = FakeRunner()
    plan = service.install(dry_run=True, runner=run, env=env, executable=CREDHELPER, platform="linux")
    assert run.calls == [] and not (tmp_path / "home" / ".config").exists()
    text = plan.describe()
    assert service.render("systemd", CREDHELPER, env).rstrip("\n") in text
    assert text.endswith("systemctl --user daemon-reload\nsystemctl --user enable --now credhelper.service")


def test_status_reports_the_manager_and_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDHELPER_SOCKET", str(tmp_path / "daemon.sock"))
    env = install_env(tmp_path)
    run = FakeRunner(fail={("systemctl",): (3, "○ credhelper.service - credhelper\n  Active: inactive")})
    st = service.status(runner=run, env=env, platform="linux", ask_daemon=lambda: None)
    assert run.calls == [("systemctl", "--user", "status", "--no-pager", "credhelper.service")]
    text = st.describe()
    assert "(not installed)" in text and "Active: inactive" in text
    assert f"daemon: not answering on {tmp_path}/daemon.sock" in text
    assert not st.ok
    assert st.error() == (
        f"the service credhelper.service is not running (not installed): `systemctl --user status "
        f"--no-pager credhelper.service` exited 3 (Active: inactive); daemon: not answering on "
        f"{tmp_path}/daemon.sock: run credhelper service install"
    )
    assert service.status(runner=FakeRunner(), env=env, platform="linux", ask_daemon=lambda: None).ok
    st = service.status(
        runner=FakeRunner(missing=True), env=env, platform="darwin", uid=501,
        ask_daemon=lambda: {"daemon": {"pid": 42, "uptime": 7, "version": "0.1.0"}},
    )
    assert st.returncode is None and "launchctl not found" in st.output
    assert "daemon: answering" in st.describe() and "pid 42" in st.describe()


# ------------------------------------------------------------------ the real CLI


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
