"""`credhelper service install|uninstall|status`: the daemon as a systemd user
service (Linux) or a launchd agent (macOS). Library only; the click commands
are in credhelper/cli/service.py.

The templates live in `service/` at the top of the source tree (product.md).
They are found in the source checkout (editable install), else as package data
(`credhelper/service_templates/`), else as data files installed under
`<prefix>/share/credhelper/service/` (pyproject `[tool.setuptools] data-files`).

Every external command goes through a `Runner` (default `run_command`, i.e.
subprocess.run) so that tests can see and fake them. `dry_run` renders and
plans but writes nothing and runs nothing.

Errors: a platform without systemd/launchd, a missing `systemctl`, no user
session ("Failed to connect to bus") or a failing `systemctl`/`launchctl` are
all raised as `ConfigError` (exit 3). errors.py has no better fit and we add
nothing to it: each of these is "this machine is not set up the way the
service needs", which a human fixes (log in with a user session, enable
lingering, or start `credhelper daemon` another way), like a configuration
error; exit 1 would claim a bug in credhelper, and exit 6 (upstream) means AWS.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import shlex
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from credhelper.errors import ConfigError

SYSTEMD = "systemd"
LAUNCHD = "launchd"
UNIT = "credhelper.service"
LABEL = "com.github.credhelper.daemon"
TEMPLATES = {SYSTEMD: UNIT, LAUNCHD: f"{LABEL}.plist"}

#: Copied from the installing shell into the service's environment when set:
#: paths only, never a secret. With them the daemon reads the same files as the
#: `credhelper export` that asks it (the daemon sends a client whose files differ
#: to the direct path, so a mismatch would make the daemon useless), and finds
#: the same `credential_process` helpers on PATH.
PATH_VARIABLES = ("CREDHELPER_CONFIG", "CREDHELPER_SOCKET", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

#: What systemctl says when there is no user manager to talk to.
_NO_SESSION = (
    "Failed to connect to bus",
    "System has not been booted with systemd",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_RUNTIME_DIR",
    "Failed to connect to user scope bus",
    # a session bus without a user manager: D-Bus activation of systemd fails
    "org.freedesktop.systemd1",
)
_NO_SESSION_REMEDY = (
    "log in with a systemd user session (for a headless machine: loginctl enable-linger $USER) and "
    "rerun credhelper service install, or start the daemon another way, e.g. credhelper daemon "
    "in your login shell"
)


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The default runner: no stdin, output captured, one minute at most."""
    return subprocess.run(
        list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=60
    )


# ------------------------------------------------------------------ what and where


def kind_for(platform: str | None = None) -> str:
    platform = sys.platform if platform is None else platform
    if platform.startswith("linux"):
        return SYSTEMD
    if platform == "darwin":
        return LAUNCHD
    raise ConfigError(
        f"credhelper service supports systemd (Linux) and launchd (macOS), not {platform}: "
        "start credhelper daemon at login another way"
    )


def launcher(argv0: str | None = None, python: str | None = None) -> str:
    """Absolute path of this installation's `credhelper` command.

    `sys.argv[0]` first when it is the `credhelper` command itself: it is the
    path the user runs, e.g. Homebrew's /opt/homebrew/bin/credhelper symlink,
    which survives upgrades where the versioned path behind it does not (so it
    is made absolute but not resolved). Otherwise the launcher next to the
    interpreter (`sys.executable` is not resolved either: in a venv it is a
    symlink to the base Python, whose directory has no credhelper).
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    python = sys.executable if python is None else python
    candidates = []
    if argv0 and os.path.basename(argv0) == "credhelper":
        candidates.append(os.path.abspath(argv0))
    if python:
        candidates.append(os.path.join(os.path.dirname(os.path.abspath(python)), "credhelper"))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise ConfigError(
        f"cannot find this installation's credhelper command (looked at {', '.join(candidates)}): "
        "run credhelper service install by its full path"
    )


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def target_path(kind: str, env: Mapping[str, str] | None = None) -> Path:
    """Where the rendered file goes: the user unit dir / ~/Library/LaunchAgents."""
    env = os.environ if env is None else env
    home = _home(env)
    if kind == SYSTEMD:
        xdg = env.get("XDG_CONFIG_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else home / ".config"  # relative: ignored (XDG spec)
        return base / "systemd" / "user" / UNIT
    return home / "Library" / "LaunchAgents" / TEMPLATES[LAUNCHD]


def log_path(env: Mapping[str, str] | None = None) -> Path:
    """The launchd agent's stdout/stderr file (systemd logs go to the journal)."""
    return _home(os.environ if env is None else env) / "Library" / "Logs" / "credhelper.log"


def _template_candidates(name: str) -> list[Any]:
    """Source checkout, package data, installed data files: Traversables/Paths."""
    root = Path(__file__).resolve().parent.parent
    out: list[Any] = []
    if (root / "pyproject.toml").is_file():  # a source checkout, not site-packages
        out.append(root / "service" / name)
    try:
        out.append(importlib.resources.files("credhelper") / "service_templates" / name)
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - odd loaders
        pass
    prefixes = [sys.prefix]
    try:
        prefixes.append(site.getuserbase())
    except AttributeError:  # pragma: no cover - embedded interpreters
        pass
    out += [Path(p) / "share" / "credhelper" / "service" / name for p in prefixes]
    return out


def template(kind: str) -> str:
    name = TEMPLATES[kind]
    candidates = _template_candidates(name)
    for candidate in candidates:
        if candidate.is_file():
            text: str = candidate.read_text(encoding="utf-8")
            return text
    raise ConfigError(
        f"the service template {name} is missing from this installation "
        f"(looked in {', '.join(str(c) for c in candidates)}): reinstall credhelper"
    )


# ------------------------------------------------------------------ rendering


def service_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables the service gets: PATH (absolute entries) and PATH_VARIABLES
    made absolute (the service's working directory is not the installer's)."""
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    entries: list[str] = []
    for entry in env.get("PATH", "").split(os.pathsep):
        if os.path.isabs(entry) and entry not in entries:
            entries.append(entry)
    if entries:
        out["PATH"] = os.pathsep.join(entries)
    home = str(_home(env))
    for name in PATH_VARIABLES:
        value = env.get(name)
        if value:
            if value == "~" or value.startswith("~/"):
                value = home + value[1:]
            out[name] = os.path.abspath(value)
    return out


def _check_value(what: str, value: str) -> None:
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise ConfigError(f"{what} contains a control character: {value!r}: use a plain path")


_SAFE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def _systemd_quote(value: str, *, exec_line: bool) -> str:
    """One word for a unit file. `%` starts a specifier everywhere. In ExecStart
    the executable is unquoted but neither `$`-expanded nor allowed to hold
    quotes or backslashes (systemd: "Executable name contains special characters")."""
    if exec_line and any(c in value for c in "\"'\\"):
        raise ConfigError(
            f"systemd cannot run a path with quotes or backslashes: {value!r}: install credhelper elsewhere"
        )
    value = value.replace("%", "%%")
    if _SAFE.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fill(text: str, values: Mapping[str, str], blocks: Mapping[str, list[str]]) -> str:
    """`{name}` inline from `values`; a line holding only `{name}` becomes the
    lines of `blocks[name]` at that line's indentation (or disappears)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise ConfigError(f"the service template has an unknown placeholder {m.group(0)}: reinstall")
        return values[m.group(1)]

    out: list[str] = []
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("{") and stripped.endswith("}") and stripped[1:-1] in blocks:
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + b + "\n" for b in blocks[stripped[1:-1]]]
        else:
            out.append(re.sub(r"\{(\w+)\}", sub, line))
    return "".join(out)


def render(kind: str, executable: str, env: Mapping[str, str] | None = None) -> str:
    """The unit (`systemd`) or plist (`launchd`) for `executable`, with the
    service environment taken from `env` (default os.environ)."""
    env = os.environ if env is None else env
    if kind not in TEMPLATES:
        raise ConfigError(f"unknown service kind {kind!r}: use {SYSTEMD} or {LAUNCHD}")
    if not os.path.isabs(executable):
        raise ConfigError(f"the service needs an absolute path to credhelper, not {executable!r}")
    _check_value("the credhelper path", executable)
    variables = service_environment(env)
    for name, value in variables.items():
        _check_value(name, value)
    text = template(kind)
    if kind == SYSTEMD:
        return _fill(
            text,
            {"executable": _systemd_quote(executable, exec_line=True)},
            {"environment": [
                "Environment=" + _systemd_quote(f"{k}={v}", exec_line=False) for k, v in variables.items()
            ]},
        )
    block: list[str] = []
    if variables:
        block = ["<key>EnvironmentVariables</key>", "<dict>"]
        for k, v in variables.items():
            block += [f"\t<key>{xml_escape(k)}</key>", f"\t<string>{xml_escape(v)}</string>"]
        block.append("</dict>")
    log = str(log_path(env))
    _check_value("the log path", log)
    return _fill(
        text, {"executable": xml_escape(executable), "log": xml_escape(log)}, {"environment": block}
    )


# ------------------------------------------------------------------ plans


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    may_fail: bool = False  # e.g. `launchctl bootout` of an agent that is not loaded
    attempts: int = 1

    def __str__(self) -> str:
        return shlex.join(self.argv) + ("   # failure ignored" if self.may_fail else "")


@dataclass
class Plan:
    """What install/uninstall does: the file to write (content) or remove, the commands."""

    action: str
    kind: str
    path: Path
    content: str | None
    commands: list[Command]
    notes: list[str] = field(default_factory=list)
    ran: list[Command] = field(default_factory=list)  # what install/uninstall did run
    removed: bool = False  # uninstall removed the file

    def describe(self) -> str:
        """The --dry-run report."""
        lines: list[str] = []
        steps = [str(c) for c in self.commands]
        if self.content is not None:
            lines += [f"# would write {self.path} (mode 0644):", self.content.rstrip("\n"), ""]
        elif self.action == "uninstall" and steps:
            steps.insert(1, shlex.join(["rm", "--", str(self.path)]))  # after the stop
        lines += [f"# {n}" for n in self.notes]
        if steps:
            lines.append("# would run:")
            lines += steps
        return "\n".join(lines)


def _systemctl(*args: str) -> Command:
    return Command(("systemctl", "--user", *args))


def _domain(uid: int | None) -> str:
    return f"gui/{os.getuid() if uid is None else uid}"


def plan_install(
    *,
    env: Mapping[str, str] | None = None,
    executable: str | None = None,
    platform: str | None = None,
    uid: int | None = None,
) -> Plan:
    env = os.environ if env is None else env
    kind = kind_for(platform)
    exe = launcher() if executable is None else executable
    content = render(kind, exe, env)
    path = target_path(kind, env)
    if kind == SYSTEMD:
        try:
            old: str | None = path.read_text(encoding="utf-8")
        except OSError:
            old = None
        if old is not None and old != content:
            # A running daemon keeps its old command line through enable --now:
            # restart it so that the new unit (a new path after an upgrade) applies.
            commands = [_systemctl("daemon-reload"), _systemctl("enable", UNIT), _systemctl("restart", UNIT)]
        else:
            commands = [_systemctl("daemon-reload"), _systemctl("enable", "--now", UNIT)]
    else:
        domain = _domain(uid)
        commands = [
            Command(("launchctl", "bootout", f"{domain}/{LABEL}"), may_fail=True),
            Command(("launchctl", "enable", f"{domain}/{LABEL}")),
            # bootstrap right after bootout can fail with "5: Input/output error"
            # while the old job is still being torn down: try again.
            Command(("launchctl", "bootstrap", domain, str(path)), attempts=3),
        ]
    return Plan("install", kind, path, content, commands)


def plan_uninstall(
    *, env: Mapping[str, str] | None = None, platform: str | None = None, uid: int | None = None
) -> Plan:
    env = os.environ if env is None else env
    kind = kind_for(platform)
    path = target_path(kind, env)
    if not path.exists():
        return Plan("uninstall", kind, path, None, [], [f"{path} does not exist: nothing to uninstall"])
    if kind == SYSTEMD:
        commands = [_systemctl("disable", "--now", UNIT), _systemctl("daemon-reload")]
    else:
        commands = [Command(("launchctl", "bootout", f"{_domain(uid)}/{LABEL}"), may_fail=True)]
    return Plan("uninstall", kind, path, None, commands)


# ------------------------------------------------------------------ doing


def _first_line(proc: subprocess.CompletedProcess[str]) -> str:
    for text in (proc.stderr, proc.stdout):
        for line in (text or "").splitlines():
            if line.strip():
                return line.strip()
    return f"exit status {proc.returncode}"


def _no_session(proc: subprocess.CompletedProcess[str]) -> bool:
    out = (proc.stderr or "") + (proc.stdout or "")
    return any(s in out for s in _NO_SESSION)


class _NoManager(Exception):
    """No service manager to talk to: the tool is missing or there is no user session."""


def _run(cmd: Command, runner: Runner, remedy: str) -> subprocess.CompletedProcess[str]:
    """Run one command (retrying `attempts` times); a failure is a ConfigError
    ending with `remedy`, or _NoManager when there is no manager to talk to."""
    what = f"`{shlex.join(cmd.argv)}`"
    proc: subprocess.CompletedProcess[str] | None = None
    for attempt in range(cmd.attempts):
        if attempt:
            time.sleep(1)
        try:
            proc = runner(cmd.argv)
        except FileNotFoundError:
            raise _NoManager(f"{cmd.argv[0]} not found") from None
        except subprocess.TimeoutExpired:
            raise ConfigError(f"{what} did not finish within a minute: {remedy}") from None
        if proc.returncode == 0 or cmd.may_fail:
            return proc
    assert proc is not None
    if cmd.argv[0] == "systemctl" and _no_session(proc):
        raise _NoManager(f"{what} failed: {_first_line(proc)}")
    raise ConfigError(f"{what} failed: {_first_line(proc)}: {remedy}")


def _remedy(kind: str, uid: int | None, env: Mapping[str, str] | None) -> str:
    if kind == SYSTEMD:
        return f"see systemctl --user status {UNIT} and journalctl --user -u {UNIT}"
    return f"see launchctl print {_domain(uid)}/{LABEL} and {log_path(env)}"


def write_atomically(path: Path, content: str, mode: int = 0o644) -> None:
    """Temp file in the same directory, fsync, chmod, os.replace, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def install(
    *,
    dry_run: bool = False,
    runner: Runner | None = None,
    env: Mapping[str, str] | None = None,
    executable: str | None = None,
    platform: str | None = None,
    uid: int | None = None,
) -> Plan:
    """Render, write atomically (0644), enable and start.

    When enabling fails the written file stays: it is valid, the remedy in the
    error (enable it from a real session, or rerun install) needs it, and
    `uninstall` removes it even where systemctl cannot run.
    """
    plan = plan_install(env=env, executable=executable, platform=platform, uid=uid)
    if dry_run:
        return plan
    assert plan.content is not None
    if plan.kind == LAUNCHD:
        log_path(os.environ if env is None else env).parent.mkdir(parents=True, exist_ok=True)
    write_atomically(plan.path, plan.content)
    for cmd in plan.commands:
        try:
            _run(cmd, runner or run_command, _remedy(plan.kind, uid, env))
            plan.ran.append(cmd)
        except _NoManager as exc:
            if plan.kind == SYSTEMD:
                raise ConfigError(
                    f"{exc}: no systemd user session here ({plan.path} is written but not enabled): "
                    f"{_NO_SESSION_REMEDY}"
                ) from None
            raise ConfigError(f"{exc}: launchd agents need macOS ({plan.path} is written)") from None
    return plan


def uninstall(
    *,
    dry_run: bool = False,
    runner: Runner | None = None,
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    uid: int | None = None,
) -> Plan:
    """Stop, disable, remove the file, reload. With no manager to talk to
    (systemctl missing, no user session) nothing can be running under it: the
    file is removed all the same and a note says so."""
    plan = plan_uninstall(env=env, platform=platform, uid=uid)
    if dry_run or not plan.commands:
        return plan
    run, remedy = runner or run_command, _remedy(plan.kind, uid, env)
    first, rest = plan.commands[0], plan.commands[1:]
    try:
        _run(first, run, remedy)
        plan.ran.append(first)
    except _NoManager as exc:
        plan.notes.append(f"no service manager to stop it ({exc}): removed the file only")
        rest = []
    plan.path.unlink(missing_ok=True)
    plan.removed = True
    for cmd in rest:
        try:
            _run(cmd, run, remedy)
            plan.ran.append(cmd)
        except _NoManager as exc:  # it answered a moment ago
            raise ConfigError(f"{exc} ({plan.path} is removed): {remedy}") from None
    return plan


@dataclass
class Status:
    kind: str
    path: Path
    installed: bool
    command: Command
    returncode: int | None  # None: the command could not run
    output: str
    socket: str
    daemon: dict[str, Any] | None

    def describe(self) -> str:
        state = "installed" if self.installed else "not installed"
        what = "systemd user unit" if self.kind == SYSTEMD else "launchd agent"
        lines = [f"{what}: {self.path} ({state})", f"$ {shlex.join(self.command.argv)}"]
        lines += [self.output.rstrip("\n")] if self.output.strip() else []
        if self.daemon is None:
            lines.append(f"daemon: not answering on {self.socket}")
        else:
            d = self.daemon.get("daemon") or {}
            lines.append(
                f"daemon: answering on {self.socket} (pid {d.get('pid')}, up {d.get('uptime')}s, "
                f"version {d.get('version')})"
            )
        return "\n".join(lines)


def plan_status(
    *, env: Mapping[str, str] | None = None, platform: str | None = None, uid: int | None = None
) -> tuple[str, Path, Command]:
    kind = kind_for(platform)
    path = target_path(kind, os.environ if env is None else env)
    if kind == SYSTEMD:
        return kind, path, _systemctl("status", "--no-pager", UNIT)
    return kind, path, Command(("launchctl", "print", f"{_domain(uid)}/{LABEL}"))


def status(
    *,
    runner: Runner | None = None,
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    uid: int | None = None,
    ask_daemon: Callable[[], dict[str, Any] | None] | None = None,
) -> Status:
    """The service manager's view and whether the daemon answers on its socket.
    Never raises for a missing tool or session: that is part of the answer."""
    from credhelper import client, paths

    kind, path, cmd = plan_status(env=env, platform=platform, uid=uid)
    try:
        proc = (runner or run_command)(cmd.argv)
        rc: int | None = proc.returncode
        output = (proc.stdout or "") + (proc.stderr or "")
    except FileNotFoundError:
        rc, output = None, f"{cmd.argv[0]} not found"
    except subprocess.TimeoutExpired:
        rc, output = None, f"{cmd.argv[0]} did not answer within a minute"
    daemon = (ask_daemon or client.status)()
    return Status(kind, path, path.exists(), cmd, rc, output, paths.socket_path(), daemon)
