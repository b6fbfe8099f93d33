"""The launchd agent: there is no launchd or plutil on Linux and no launchd
validator in apt or PyPI, so the rendered plist is parsed with plistlib and
held to a table of launchd.plist(5) key types; `service install --dry-run` is
run as a real subprocess with `sys.platform` set to darwin, and its
`launchctl bootstrap gui/<uid>` / `bootout gui/<uid>/<label>` commands are
checked exactly.
"""

from __future__ import annotations

import os
import plistlib
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CREDHELPER, AwsEnv
from test_service import SECRETS, FakeRunner, install_env

from credhelper import service
from credhelper.errors import EXIT_CONFIG

LAUNCHD_PATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
AGENT = "com.github.credhelper.daemon"


@pytest.fixture(autouse=True)
def no_daemon_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("credhelper.service.manage._ask_daemon", lambda: None)


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
    "SoftResourceLimits": (dict,),
    "HardResourceLimits": (dict,),
}
KEEPALIVE_KEYS = {"SuccessfulExit": bool, "Crashed": bool}
#: launchd.plist(5) resource limit keys (all integers)
RESOURCE_LIMIT_KEYS = {
    "Core", "CPU", "Data", "FileSize", "MemoryLock", "NumberOfFiles", "NumberOfProcesses",
    "ResidentSetSize", "Stack",
}


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
    for key in ("SoftResourceLimits", "HardResourceLimits"):
        limits = doc.get(key)
        for k, v in (limits if isinstance(limits, dict) else {}).items():
            if k not in RESOURCE_LIMIT_KEYS or not isinstance(v, int) or isinstance(v, bool):
                problems.append(f"{key}.{k} is unknown or not an integer")
    env = doc.get("EnvironmentVariables", {})
    if isinstance(env, dict) and not all(isinstance(v, str) for v in env.values()):
        problems.append("EnvironmentVariables values should be strings")
    for key in ("StandardOutPath", "StandardErrorPath", "WorkingDirectory"):
        if isinstance(doc.get(key), str) and not os.path.isabs(doc[key]):
            problems.append(f"{key} is not absolute (launchd does not expand ~): {doc[key]}")
    return problems


def test_rendered_plist_parses_and_passes_the_key_table(tmp_path: Path) -> None:
    env = install_env(
        tmp_path, CREDHELPER_CONFIG="/tmp/x & <y>/c.toml", CREDHELPER_SOCKET="/tmp/s.sock", **SECRETS
    )
    text = service.render("launchd", CREDHELPER, env)
    assert lint_plist(text.encode()) == []
    doc = plistlib.loads(text.encode())
    assert doc["Label"] == service.LABEL == "com.github.credhelper.daemon"
    assert doc["ProgramArguments"] == [CREDHELPER, "daemon"]
    assert doc["RunAtLoad"] is True
    assert doc["KeepAlive"] == {"Crashed": True}  # not on exit 2 or 3: no loop
    assert doc["StandardErrorPath"] == f"{tmp_path}/home/Library/Logs/credhelper.log"
    assert doc["EnvironmentVariables"] == {
        "PATH": LAUNCHD_PATH,  # not this shell's PATH, and no CREDHELPER_SOCKET
        "CREDHELPER_CONFIG": "/tmp/x & <y>/c.toml",  # XML-escaped and back
    }
    # no core file: a crash must not write the credentials in memory to disk
    assert doc["SoftResourceLimits"] == {"Core": 0}
    assert doc["HardResourceLimits"] == {"Core": 0}
    for value in SECRETS.values():
        assert value not in text
    bare = plistlib.loads(service.render("launchd", CREDHELPER, {"HOME": str(tmp_path)}).encode())
    assert bare["EnvironmentVariables"] == {"PATH": LAUNCHD_PATH}


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (("<key>RunAtLoad</key>\n\t<true/>", "<key>RunAtLoad</key>\n\t<string>yes</string>"),
         "RunAtLoad should be bool"),
        (("<key>RunAtLoad</key>\n\t<true/>", "<key>RunAtLoad</key>"), "PARSE ERROR"),
        (("<key>RunAtLoad</key>", "<key>RunAtLaod</key>"), "unknown key RunAtLaod"),
        ((f"<string>{CREDHELPER}</string>", "<string>bin/credhelper</string>"), "not an absolute"),
        (("<string>Interactive</string>", "<string>Urgent</string>"), "ProcessType"),
        (("<key>Crashed</key>", "<key>Crashd</key>"), "KeepAlive.Crashd"),
        (("<key>Core</key>\n\t\t<integer>0</integer>", "<key>Core</key>\n\t\t<string>0</string>"),
         "SoftResourceLimits.Core is unknown or not an integer"),
    ],
)
def test_broken_plist_fails_the_key_table(tmp_path: Path, change: tuple[str, str], expect: str) -> None:
    text = service.render("launchd", CREDHELPER, {"HOME": str(tmp_path)})
    assert change[0] in text
    problems = lint_plist(text.replace(change[0], change[1], 1).encode())
    assert any(expect in p for p in problems), problems


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


# ------------------------------------------------------------------ the real CLI, as on macOS

#: `credhelper` with sys.platform set to darwin (everything else as installed);
#: the stdlib modules that pick macOS-only C modules at import are imported first
AS_MACOS = (
    "import sys, urllib.request, xml.sax.saxutils, botocore.configloader; "
    "sys.platform = 'darwin'; sys.argv[0] = {exe!r}; "
    "from credhelper.fastpath import main; sys.exit(main())"
)


def run_as_macos(aws_env: AwsEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", AS_MACOS.format(exe=CREDHELPER), *args],
        env=aws_env.environ(), cwd=aws_env.home, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, check=False,
    )


def test_cli_dry_run_on_macos_shows_the_plist_and_the_exact_launchctl_commands(aws_env: AwsEnv) -> None:
    uid = os.getuid()
    plist = aws_env.home / "Library" / "LaunchAgents" / f"{AGENT}.plist"
    proc = run_as_macos(aws_env, "service", "install", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert not (aws_env.home / "Library").exists()
    assert f"service environment: PATH={LAUNCHD_PATH}" in proc.stderr.splitlines()
    out = proc.stdout
    assert out.startswith(f"# would write {plist} (mode 0644):\n")
    text = out.split("\n", 1)[1].split("</plist>\n")[0] + "</plist>\n"
    assert lint_plist(text.encode()) == []
    doc = plistlib.loads(text.encode())
    assert doc["ProgramArguments"] == [CREDHELPER, "daemon"]
    assert doc["StandardErrorPath"] == f"{aws_env.home}/Library/Logs/credhelper.log"
    assert doc["EnvironmentVariables"]["PATH"] == LAUNCHD_PATH
    assert "CREDHELPER_SOCKET" not in doc["EnvironmentVariables"]
    assert out.rstrip("\n").endswith(
        "</plist>\n\n"
        "# CREDHELPER_SOCKET is set in this shell but not copied: the service uses the default "
        "socket; unset CREDHELPER_SOCKET where credhelper export runs\n"
        "# would run:\n"
        f"launchctl bootout gui/{uid}/{AGENT}   # failure ignored\n"
        f"launchctl enable gui/{uid}/{AGENT}\n"
        f"launchctl bootstrap gui/{uid} {plist}"
    )

    plist.parent.mkdir(parents=True)
    plist.write_text(text)
    proc = run_as_macos(aws_env, "service", "uninstall", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip("\n") == (
        f"# would run:\nlaunchctl bootout gui/{uid}/{AGENT}   # failure ignored\nrm -- {plist}"
    )
    assert plist.exists()
    proc = run_as_macos(aws_env, "service", "status", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"launchctl print gui/{uid}/{AGENT}"


def test_cli_on_macos_refuses_next_to_brew_services(aws_env: AwsEnv) -> None:
    """With Homebrew, brew services is canonical: install refuses while its agent
    is there, and says why and what to do."""
    brew = aws_env.home / "Library" / "LaunchAgents" / "homebrew.mxcl.credhelper.plist"
    brew.parent.mkdir(parents=True)
    brew.write_text("<plist/>")
    for args in (("service", "install"), ("service", "install", "--dry-run")):
        proc = run_as_macos(aws_env, *args)
        assert proc.returncode == EXIT_CONFIG, proc.stderr
        assert proc.stdout == ""
        assert proc.stderr.splitlines() == [
            f"credhelper: Homebrew's service for credhelper is installed ({brew}); with Homebrew, "
            "brew services is the canonical way to run the daemon, and a second daemon would only "
            "exit 2 (another credhelper daemon is serving): keep brew services, or run brew "
            "services stop credhelper and then credhelper service install"
        ]
    assert sorted(p.name for p in brew.parent.iterdir()) == [brew.name]
