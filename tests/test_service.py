"""`credhelper service`: the systemd unit and launchd plist templates, rendered
for the real installed launcher, and install/uninstall/status.

The unit is checked by the real `systemd-analyze verify --user` (test-infra.md
§4: it needs XDG_RUNTIME_DIR; warnings count, so stderr must be empty). There
is no launchd validator on Linux: the plist is parsed with plistlib and held
to a table of key types. systemctl/launchctl cannot run here: install and
uninstall are driven through a fake runner that records the commands, and the
real CLI is run where systemctl cannot reach any user manager.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import CREDHELPER, AwsEnv, unavailable

from credhelper import service
from credhelper.errors import EXIT_CONFIG, ConfigError

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
    ):
        assert line in lines, line
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
    assert "Environment=" not in plain
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


# ------------------------------------------------------------------ launchd plist

#: launchd.plist(5) keys the agent may use, and their types.
PLIST_KEYS: dict[str, tuple[type, ...]] = {
    "Label": (str,),
    "ProgramArguments": (list,),
    "RunAtLoad": (bool,),
    "KeepAlive": (bool, dict),
    "ProcessType": (str,),
    "StandardOutPath": (str,),
    "StandardErrorPath": (str,),
    "EnvironmentVariables": (dict,),
    "ExitTimeOut": (int,),
    "ThrottleInterval": (int,),
    "Umask": (int,),
    "WorkingDirectory": (str,),
}
KEEPALIVE_KEYS = {"SuccessfulExit": bool, "Crashed": bool}


def lint_plist(data: bytes) -> list[str]:
    """Problems with a launchd agent plist; [] when it is fine."""
    try:
        doc = plistlib.loads(data)
    except Exception as exc:
        return [f"PARSE ERROR {type(exc).__name__}: {exc}"]
    if not isinstance(doc, dict):
        return ["top level is not a dict"]
    problems = [f"missing {k}" for k in ("Label", "ProgramArguments") if k not in doc]
    for key, value in doc.items():
        types = PLIST_KEYS.get(key)
        if types is None:
            problems.append(f"unknown key {key}")
        elif not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            problems.append(f"{key} should be {' or '.join(t.__name__ for t in types)}")
    args = doc.get("ProgramArguments")
    if isinstance(args, list):
        if not args or not all(isinstance(a, str) for a in args):
            problems.append("ProgramArguments should be a non-empty list of strings")
        elif not (os.path.isabs(args[0]) and os.access(args[0], os.X_OK)):
            problems.append(f"ProgramArguments[0] is not an absolute executable: {args[0]}")
    if isinstance(doc.get("KeepAlive"), dict):
        for k, v in doc["KeepAlive"].items():
            if not isinstance(v, KEEPALIVE_KEYS.get(k, type(None))):
                problems.append(f"KeepAlive.{k} is unknown or not a bool")
    if doc.get("ProcessType", "Standard") not in ("Background", "Standard", "Adaptive", "Interactive"):
        problems.append(f"ProcessType {doc['ProcessType']!r} is not a launchd process type")
    env = doc.get("EnvironmentVariables", {})
    if isinstance(env, dict) and not all(isinstance(v, str) for v in env.values()):
        problems.append("EnvironmentVariables values should be strings")
    for key in ("StandardOutPath", "StandardErrorPath", "WorkingDirectory"):
        if isinstance(doc.get(key), str) and not os.path.isabs(doc[key]):
            problems.append(f"{key} is not absolute (launchd does not expand ~): {doc[key]}")
    return problems


def test_rendered_plist_parses_and_passes_the_key_table(tmp_path: Path) -> None:
    env = install_env(tmp_path, CREDHELPER_SOCKET="/tmp/x & <y>/daemon.sock", **SECRETS)
    text = service.render("launchd", CREDHELPER, env)
    assert lint_plist(text.encode()) == []
    doc = plistlib.loads(text.encode())
    assert doc["Label"] == service.LABEL == "com.github.credhelper.daemon"
    assert doc["ProgramArguments"] == [CREDHELPER, "daemon"]
    assert doc["RunAtLoad"] is True
    assert doc["KeepAlive"] == {"SuccessfulExit": False}
    assert doc["StandardErrorPath"] == f"{tmp_path}/home/Library/Logs/credhelper.log"
    assert doc["EnvironmentVariables"] == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "CREDHELPER_SOCKET": "/tmp/x & <y>/daemon.sock",  # XML-escaped and back
    }
    for value in SECRETS.values():
        assert value not in text
    bare = plistlib.loads(service.render("launchd", CREDHELPER, {"HOME": str(tmp_path)}).encode())
    assert "EnvironmentVariables" not in bare


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (("<key>RunAtLoad</key>\n\t<true/>", "<key>RunAtLoad</key>\n\t<string>yes</string>"),
         "RunAtLoad should be bool"),
        (("<key>RunAtLoad</key>\n\t<true/>", "<key>RunAtLoad</key>"), "PARSE ERROR"),
        (("<key>RunAtLoad</key>", "<key>RunAtLaod</key>"), "unknown key RunAtLaod"),
        ((f"<string>{CREDHELPER}</string>", "<string>bin/credhelper</string>"), "not an absolute"),
        (("<string>Interactive</string>", "<string>Urgent</string>"), "ProcessType"),
        (("<key>SuccessfulExit</key>", "<key>SucessfulExit</key>"), "KeepAlive.SucessfulExit"),
    ],
)
def test_broken_plist_fails_the_key_table(tmp_path: Path, change: tuple[str, str], expect: str) -> None:
    text = service.render("launchd", CREDHELPER, {"HOME": str(tmp_path)})
    assert change[0] in text
    problems = lint_plist(text.replace(change[0], change[1], 1).encode())
    assert any(expect in p for p in problems), problems


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
    root = Path(service.__file__).resolve().parent.parent
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


def test_launchd_install_bootstraps_and_uninstall_boots_out(tmp_path: Path) -> None:
    env = install_env(tmp_path)
    run = FakeRunner(fail={("launchctl", "bootout"): (3, "Boot-out failed: 3: No such process")})
    plan = service.install(runner=run, env=env, executable=CREDHELPER, platform="darwin", uid=501)
    path = tmp_path / "home" / "Library" / "LaunchAgents" / "com.github.credhelper.daemon.plist"
    assert plan.path == path and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert lint_plist(path.read_bytes()) == []
    assert (tmp_path / "home" / "Library" / "Logs").is_dir()
    assert run.calls == [
        ("launchctl", "bootout", "gui/501/com.github.credhelper.daemon"),  # not loaded: ignored
        ("launchctl", "enable", "gui/501/com.github.credhelper.daemon"),
        ("launchctl", "bootstrap", "gui/501", str(path)),
    ]
    run = FakeRunner()
    service.uninstall(runner=run, env=env, platform="darwin", uid=501)
    assert run.calls == [("launchctl", "bootout", "gui/501/com.github.credhelper.daemon")]
    assert not path.exists()


def test_status_reports_the_manager_and_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDHELPER_SOCKET", str(tmp_path / "daemon.sock"))
    env = install_env(tmp_path)
    run = FakeRunner(fail={("systemctl",): (3, "○ credhelper.service - credhelper\n  Active: inactive")})
    st = service.status(runner=run, env=env, platform="linux", ask_daemon=lambda: None)
    assert run.calls == [("systemctl", "--user", "status", "--no-pager", "credhelper.service")]
    text = st.describe()
    assert "(not installed)" in text and "Active: inactive" in text
    assert f"daemon: not answering on {tmp_path}/daemon.sock" in text
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


def test_cli_install_dry_run_prints_unit_and_commands_and_writes_nothing(aws_env: AwsEnv) -> None:
    before = _tree(aws_env.home)
    proc = aws_env.run("service", "install", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert _tree(aws_env.home) == before
    unit = service.render("systemd", CREDHELPER, aws_env.environ())
    assert unit.rstrip("\n") in proc.stdout
    assert f"Environment=CREDHELPER_CONFIG={aws_env.settings_file}" in proc.stdout
    assert f"Environment=CREDHELPER_SOCKET={aws_env.socket}" in proc.stdout
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

    status = aws_env.run("service", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert f"{unit} (installed)" in status.stdout
    assert f"daemon: not answering on {aws_env.socket}" in status.stdout

    proc = aws_env.run("service", "uninstall", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "removed the file only" in proc.stdout and not unit.exists()
