"""install / uninstall / status: plan, check for a second daemon, write, run."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from credhelper import fileedit
from credhelper.errors import ConfigError
from credhelper.service import launchd, systemd
from credhelper.service.common import (
    LAUNCHD,
    SYSTEMD,
    Command,
    Plan,
    Runner,
    kind_for,
    log_path,
    run_command,
    target_path,
)
from credhelper.service.render import launcher, render, service_environment

AskDaemon = Callable[[], "dict[str, Any] | None"]


def _ask_daemon() -> dict[str, Any] | None:
    from credhelper import client

    return client.status()


def _homebrew_note(executable: str) -> list[str]:
    if "/Cellar/" not in os.path.realpath(executable):
        return []
    return [
        "installed with Homebrew: brew services start credhelper is the canonical way to run the "
        "daemon; use either that or this service, never both"
    ]


def check_no_other_daemon(kind: str, path: Path, env: Mapping[str, str], ask_daemon: AskDaemon) -> None:
    """Refuse when installing would start a second daemon: Homebrew's service is
    installed, or a daemon that is not this service already answers."""
    brew = (systemd if kind == SYSTEMD else launchd).brew_service_file(env)
    if brew.exists():
        raise ConfigError(
            f"Homebrew's service for credhelper is installed ({brew}); with Homebrew, brew services "
            "is the canonical way to run the daemon, and a second daemon would only exit 2 "
            "(another credhelper daemon is serving): keep brew services, or run brew services stop "
            "credhelper and then credhelper service install"
        )
    if path.exists():
        return  # a daemon answering now is this service's own: install restarts it
    answer = ask_daemon()
    if answer is not None:
        pid = (answer.get("daemon") or {}).get("pid")
        raise ConfigError(
            f"a credhelper daemon (pid {pid}) already serves this user and it was not started by "
            "this service; a second daemon would only exit 2 (another credhelper daemon is serving): "
            f"stop it (kill {pid}, or brew services stop credhelper) and rerun credhelper service install"
        )


def plan_install(
    *,
    env: Mapping[str, str] | None = None,
    executable: str | None = None,
    platform: str | None = None,
    uid: int | None = None,
    ask_daemon: AskDaemon | None = None,
) -> Plan:
    env = os.environ if env is None else env
    kind = kind_for(platform)
    exe = launcher() if executable is None else executable
    path = target_path(kind, env)
    check_no_other_daemon(kind, path, env, ask_daemon or _ask_daemon)
    variables, notes = service_environment(env, kind)
    content = render(kind, exe, env, variables)
    if kind == SYSTEMD:
        commands = systemd.install_commands(path, content)
    else:
        commands = launchd.install_commands(path, uid)
    return Plan("install", kind, path, content, commands, notes + _homebrew_note(exe), variables)


def plan_uninstall(
    *, env: Mapping[str, str] | None = None, platform: str | None = None, uid: int | None = None
) -> Plan:
    env = os.environ if env is None else env
    kind = kind_for(platform)
    path = target_path(kind, env)
    if not path.exists():
        return Plan("uninstall", kind, path, None, [], [f"{path} does not exist: nothing to uninstall"])
    commands = systemd.uninstall_commands() if kind == SYSTEMD else launchd.uninstall_commands(uid)
    return Plan("uninstall", kind, path, None, commands)


# ------------------------------------------------------------------ doing


def first_line(proc: subprocess.CompletedProcess[str]) -> str:
    for text in (proc.stderr, proc.stdout):
        for line in (text or "").splitlines():
            if line.strip():
                return line.strip()
    return f"exit status {proc.returncode}"


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
    if cmd.argv[0] == "systemctl" and systemd.no_session((proc.stderr or "") + (proc.stdout or "")):
        raise _NoManager(f"{what} failed: {first_line(proc)}")
    raise ConfigError(f"{what} failed: {first_line(proc)}: {remedy}")


def _remedy(kind: str, uid: int | None, env: Mapping[str, str] | None) -> str:
    return systemd.REMEDY if kind == SYSTEMD else launchd.remedy(uid, env)


def write_atomically(path: Path, content: str, mode: int = 0o644) -> None:
    fileedit.write_atomically(path, content.encode("utf-8"), mode)


def install(
    *,
    dry_run: bool = False,
    runner: Runner | None = None,
    env: Mapping[str, str] | None = None,
    executable: str | None = None,
    platform: str | None = None,
    uid: int | None = None,
    ask_daemon: AskDaemon | None = None,
) -> Plan:
    """Render, write atomically (0644), enable and start.

    When enabling fails the written file stays: it is valid, the remedy in the
    error (enable it from a real session, or rerun install) needs it, and
    `uninstall` removes it even where systemctl cannot run.
    """
    plan = plan_install(env=env, executable=executable, platform=platform, uid=uid, ask_daemon=ask_daemon)
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
                    f"{systemd.NO_SESSION_REMEDY}"
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


# ------------------------------------------------------------------ status


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
    remedy: str

    @property
    def ok(self) -> bool:
        """The manager answered and says the service is up."""
        return self.returncode == 0

    def _daemon_line(self) -> str:
        if self.daemon is None:
            return f"daemon: not answering on {self.socket}"
        d = self.daemon.get("daemon") or {}
        return (
            f"daemon: answering on {self.socket} (pid {d.get('pid')}, up {d.get('uptime')}s, "
            f"version {d.get('version')})"
        )

    def describe(self) -> str:
        state = "installed" if self.installed else "not installed"
        what = "systemd user unit" if self.kind == SYSTEMD else "launchd agent"
        lines = [f"{what}: {self.path} ({state})", f"$ {shlex.join(self.command.argv)}"]
        lines += [self.output.rstrip("\n")] if self.output.strip() else []
        lines.append(self._daemon_line())
        return "\n".join(lines)

    def error(self) -> str:
        """The one-line failure (when not `ok`), ending with what to do."""
        state = "installed" if self.installed else "not installed"
        if self.returncode is None:
            said = self.output.strip()
        else:
            said = f"exited {self.returncode}"
            active = [ln.strip() for ln in self.output.splitlines() if ln.strip().startswith("Active:")]
            first = active[0] if active else next((ln.strip() for ln in self.output.splitlines()
                                                   if ln.strip()), "")
            said += f" ({first})" if first else ""
        no_manager = self.returncode is None or systemd.no_session(self.output)
        if not self.installed:
            fix = "run credhelper service install"
        elif self.kind == SYSTEMD and no_manager:
            fix = systemd.NO_SESSION_REMEDY
        else:
            fix = f"{self.remedy}, then rerun credhelper service install"
        return (
            f"the service {self.path.name} is not running ({state}): `{shlex.join(self.command.argv)}` "
            f"{said}; {self._daemon_line()}: {fix}"
        )


def plan_status(
    *, env: Mapping[str, str] | None = None, platform: str | None = None, uid: int | None = None
) -> tuple[str, Path, Command]:
    kind = kind_for(platform)
    path = target_path(kind, os.environ if env is None else env)
    if kind == SYSTEMD:
        return kind, path, systemd.status_command()
    return kind, path, launchd.status_command(uid)


def status(
    *,
    runner: Runner | None = None,
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    uid: int | None = None,
    ask_daemon: AskDaemon | None = None,
) -> Status:
    """The service manager's view and whether the daemon answers on its socket.
    Never raises for a missing tool or session: that is part of the answer."""
    from credhelper import paths

    kind, path, cmd = plan_status(env=env, platform=platform, uid=uid)
    try:
        proc = (runner or run_command)(cmd.argv)
        rc: int | None = proc.returncode
        output = (proc.stdout or "") + (proc.stderr or "")
    except FileNotFoundError:
        rc, output = None, f"{cmd.argv[0]} not found"
    except subprocess.TimeoutExpired:
        rc, output = None, f"{cmd.argv[0]} did not answer within a minute"
    daemon = (ask_daemon or _ask_daemon)()
    return Status(
        kind, path, path.exists(), cmd, rc, output, paths.socket_path(), daemon, _remedy(kind, uid, env)
    )
