"""Desktop notifications: how credhelper tells a person that a sign-in is needed
when nobody watches its output (the daemon; `login` run by Claude Code as
awsAuthRefresh, whose output Claude Code may not show: anthropics/claude-code#21023).

- Linux: the freedesktop Notifications API on the session bus
  (`org.freedesktop.Notifications.Notify`), through jeepney (pure Python; it
  comes with SecretStorage, keyring's Linux backend).
- macOS: `osascript -e 'display notification …'`.

`send()` never raises and never waits long: no bus, no service, no jeepney or
no osascript all mean False ("not shown"). Nothing secret is ever put into a
notification: the sign-in URL and the user code are not secrets (the code is
what the user compares on the approval page).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import TextIO

APP = "credhelper"
#: seconds a notification call may take in all
TIMEOUT = 3.0
_DEVICE_URL = re.compile(r"^\s+(https?://\S+)\s*$")
_CODE = re.compile(r"shows the code: (\S+)\s*$")
_SIGN_IN = re.compile(r"^To sign in to (.+?), open this URL in a browser on (any device|this machine)")

Sender = Callable[[str, str], bool]


def send(summary: str, body: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Show one notification; True when a notification service took it."""
    env = os.environ if environ is None else environ
    try:
        if sys.platform == "darwin":
            return _osascript(summary, body)
        return _freedesktop(summary, body, env)
    except Exception:  # noqa: BLE001 - a notification must never break its caller
        return False


def _freedesktop(summary: str, body: str, env: Mapping[str, str]) -> bool:
    address = env.get("DBUS_SESSION_BUS_ADDRESS")
    runtime = env.get("XDG_RUNTIME_DIR")
    if not address and runtime and os.path.exists(os.path.join(runtime, "bus")):
        address = f"unix:path={os.path.join(runtime, 'bus')}"  # what systemd's user bus listens on
    if not address:
        return False
    from jeepney import DBusAddress, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    target = DBusAddress("/org/freedesktop/Notifications", bus_name="org.freedesktop.Notifications",
                         interface="org.freedesktop.Notifications")
    conn = open_dbus_connection(bus=address, enable_fds=False)
    try:
        msg = new_method_call(target, "Notify", "susssasa{sv}i",
                              (APP, 0, "dialog-password", summary, body, [], {}, -1))
        reply = conn.send_and_get_reply(msg, timeout=TIMEOUT)
        return bool(reply.header.message_type == MessageType.method_return)
    finally:
        conn.close()


def _osascript(summary: str, body: str) -> bool:
    exe = shutil.which("osascript")
    if exe is None:
        return False

    def quoted(text: str) -> str:  # an AppleScript string literal
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    script = f"display notification {quoted(body)} with title {quoted(APP)} subtitle {quoted(summary)}"
    done = subprocess.run([exe, "-e", script], capture_output=True, timeout=TIMEOUT, check=False)
    return done.returncode == 0


# ------------------------------------------------------------------ awsAuthRefresh


def unattended(environ: Mapping[str, str], stdin: TextIO | None = None) -> bool:
    """Whether `login` runs where nobody may see its output: no terminal on
    stdin, or started by Claude Code (`CLAUDE_CODE_ENTRYPOINT`)."""
    if environ.get("CLAUDE_CODE_ENTRYPOINT"):
        return True
    stream = sys.stdin if stdin is None else stdin
    try:
        return stream is None or not stream.isatty()
    except (ValueError, OSError):
        return True


class SignInNotifier(io.TextIOBase):
    """Passes `login`'s output through and, once it has printed the sign-in
    URL (and the device code, for that flow), shows them in one notification
    with the profile the user signs in for."""

    def __init__(self, out: TextIO, profile: str, sender: Sender = send) -> None:
        self.out, self.profile, self.sender = out, profile, sender
        self._line = ""
        self.session = ""
        self.device = False
        self.url = ""
        self.sent = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        n = self.out.write(text)
        self._line += text
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            self._seen(line)
        return n

    def flush(self) -> None:
        self.out.flush()

    def _seen(self, line: str) -> None:
        if self.sent:
            return
        m = _SIGN_IN.match(line)
        if m:
            self.session, self.device = m.group(1), m.group(2) == "any device"
            return
        m = _DEVICE_URL.match(line)
        if m and self.session and not self.url:
            self.url = m.group(1)
            if not self.device:  # PKCE: no code follows
                self._send("")
            return
        m = _CODE.search(line)
        if m and self.url:
            self._send(m.group(1))

    def _send(self, code: str) -> None:
        self.sent = True
        body = f"Open {self.url}" + (f" and confirm the code {code}" if code else "") + \
            f" (credhelper login --profile {self.profile})."
        self.sender(f"Sign in to {self.session} for profile {self.profile}", body)
