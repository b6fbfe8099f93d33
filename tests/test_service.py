"""`credhelper service`: the systemd unit and launchd plist templates, rendered
for the real installed launcher, and install/uninstall/status.

The unit is checked by the real `systemd-analyze verify --user` (test-infra.md
§4: it needs XDG_RUNTIME_DIR; warnings count, so stderr must be empty). There
is no launchd validator on Linux: the plist is checked in test_launchd.py.
Install and uninstall are driven here through a fake runner that records the
commands; test_service_cli.py runs the installed CLI, and
test_systemd_service.py the whole lifecycle under a real `systemd --user`.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import CREDHELPER, unavailable

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
