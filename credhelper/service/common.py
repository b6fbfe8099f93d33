"""What every part of `credhelper service` shares: the names, where files go,
the commands and plans, and how external commands are run.

Errors: a platform without systemd/launchd, a missing `systemctl`, no user
session ("Failed to connect to bus") or a failing `systemctl`/`launchctl` are
all raised as `ConfigError` (exit 3). errors.py has no better fit and we add
nothing to it: each of these is "this machine is not set up the way the
service needs", which a human fixes (log in with a user session, enable
lingering, or start `credhelper daemon` another way), like a configuration
error; exit 1 would claim a bug in credhelper, and exit 6 (upstream) means AWS.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from credhelper.errors import ConfigError

SYSTEMD = "systemd"
LAUNCHD = "launchd"
UNIT = "credhelper.service"
LABEL = "com.github.credhelper.daemon"
TEMPLATES = {SYSTEMD: UNIT, LAUNCHD: f"{LABEL}.plist"}

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The default runner: no stdin, output captured, one minute at most."""
    return subprocess.run(
        list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=60
    )


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


def home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def systemd_user_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else home(env) / ".config"  # relative: ignored (XDG spec)
    return base / "systemd" / "user"


def launch_agents_dir(env: Mapping[str, str]) -> Path:
    return home(env) / "Library" / "LaunchAgents"


def target_path(kind: str, env: Mapping[str, str] | None = None) -> Path:
    """Where the rendered file goes: the user unit dir / ~/Library/LaunchAgents."""
    env = os.environ if env is None else env
    if kind == SYSTEMD:
        return systemd_user_dir(env) / UNIT
    return launch_agents_dir(env) / TEMPLATES[LAUNCHD]


def log_path(env: Mapping[str, str] | None = None) -> Path:
    """The launchd agent's stdout/stderr file (systemd logs go to the journal)."""
    return home(os.environ if env is None else env) / "Library" / "Logs" / "credhelper.log"


def domain(uid: int | None) -> str:
    """launchd's per-user GUI domain."""
    return f"gui/{os.getuid() if uid is None else uid}"


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
    #: the variables the service gets from the installing shell (install only)
    environment: dict[str, str] = field(default_factory=dict)
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
