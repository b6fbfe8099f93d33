"""The systemd user unit: the systemctl commands, and how its failures read."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from credhelper.service.common import UNIT, Command, systemd_user_dir

#: What systemctl says when there is no user manager to talk to.
NO_SESSION = (
    "Failed to connect to bus",
    "System has not been booted with systemd",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_RUNTIME_DIR",
    "Failed to connect to user scope bus",
    # a session bus without a user manager: D-Bus activation of systemd fails
    "org.freedesktop.systemd1",
)
NO_SESSION_REMEDY = (
    "log in with a systemd user session (for a headless machine: loginctl enable-linger $USER) and "
    "rerun credhelper service install, or start the daemon another way, e.g. credhelper daemon "
    "in your login shell"
)
REMEDY = f"see systemctl --user status {UNIT} and journalctl --user -u {UNIT}"


def systemctl(*args: str) -> Command:
    return Command(("systemctl", "--user", *args))


def install_commands(path: Path, content: str) -> list[Command]:
    try:
        old: str | None = path.read_text(encoding="utf-8")
    except OSError:
        old = None
    if old is not None and old != content:
        # A running daemon keeps its old command line through enable --now:
        # restart it so that the new unit (a new path after an upgrade) applies.
        return [systemctl("daemon-reload"), systemctl("enable", UNIT), systemctl("restart", UNIT)]
    return [systemctl("daemon-reload"), systemctl("enable", "--now", UNIT)]


def uninstall_commands() -> list[Command]:
    return [systemctl("disable", "--now", UNIT), systemctl("daemon-reload")]


def status_command() -> Command:
    return systemctl("status", "--no-pager", UNIT)


def no_session(output: str) -> bool:
    """Whether systemctl's output says there is no user manager to talk to."""
    return any(s in output for s in NO_SESSION)


def brew_service_file(env: Mapping[str, str]) -> Path:
    """The unit `brew services start credhelper` writes (Homebrew on Linux)."""
    return systemd_user_dir(env) / "homebrew.credhelper.service"
