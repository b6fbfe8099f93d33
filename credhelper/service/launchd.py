"""The launchd agent: the launchctl commands, and Homebrew's own agent.

With Homebrew, `brew services start credhelper` (the formula's `service do`
block) is the canonical way to run the daemon on macOS: its agent points at
Homebrew's stable `opt` path and `brew upgrade`/`brew services` manage it.
`credhelper service install` is for every other installation (pipx, a venv),
and refuses while Homebrew's agent is installed, saying why: a second daemon
on the same socket would only exit 2 ("another credhelper daemon is serving").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from credhelper.service.common import LABEL, Command, domain, launch_agents_dir, log_path

BREW_FORMULA = "credhelper"


def install_commands(path: Path, uid: int | None) -> list[Command]:
    target = domain(uid)
    return [
        Command(("launchctl", "bootout", f"{target}/{LABEL}"), may_fail=True),
        Command(("launchctl", "enable", f"{target}/{LABEL}")),
        # bootstrap right after bootout can fail with "5: Input/output error"
        # while the old job is still being torn down: try again.
        Command(("launchctl", "bootstrap", target, str(path)), attempts=3),
    ]


def uninstall_commands(uid: int | None) -> list[Command]:
    return [Command(("launchctl", "bootout", f"{domain(uid)}/{LABEL}"), may_fail=True)]


def status_command(uid: int | None) -> Command:
    return Command(("launchctl", "print", f"{domain(uid)}/{LABEL}"))


def remedy(uid: int | None, env: Mapping[str, str] | None) -> str:
    return f"see launchctl print {domain(uid)}/{LABEL} and {log_path(env)}"


def brew_service_file(env: Mapping[str, str]) -> Path:
    """The agent `brew services start credhelper` writes."""
    return launch_agents_dir(env) / f"homebrew.mxcl.{BREW_FORMULA}.plist"
