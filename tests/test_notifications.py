"""Sign-in warnings before the break (daemon/sessions.py, notify.py).

A real daemon, the IAM Identity Center emulator, and a fake freedesktop
Notifications service owning `org.freedesktop.Notifications` on the test's own
private D-Bus (a `dbus-daemon` started here; jeepney records every Notify call).
The daemon's wall clock is driven with libfaketime (Debian `faketime`): the test
writes an offset into FAKETIME_TIMESTAMP_FILE and moves the emulator's clock by
the same amount; monotonic time stays real, so every wait keeps its deadline.
The watcher looks every `TICK` seconds; a test that must show that nothing
happened waits for the status to show a look made after the clock moved.

Caveat of libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1 (needed: with a
faked monotonic clock Python's Event.wait never returns): `time.sleep` fails with
EINVAL in the faked process. The daemon's path in these tests does not sleep (no
lock contention, no paced warm-up); `login`, which polls with sleeps, runs on the
real clock.
"""

from __future__ import annotations

import glob
import io
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from conftest import file_store_toml, unavailable
from daemon_helpers import Daemon, Daemons, poll
from sso_emulator import SSOEmulator

from credhelper import notify
from credhelper.broker import Broker
from credhelper.config import AwsConfig
from credhelper.daemon.keeper import ProfileState
from credhelper.daemon.sessions import CHECK_EVERY, TICK, SessionWatcher, span
from credhelper.model import Credentials, iso_z
from credhelper.settings import Settings
from credhelper.store import item
from credhelper.store.memory import MemoryStore

if TYPE_CHECKING:
    from conftest import AwsEnv

PROFILE = "sso"
SESSION = "corp"
REMEDY = f"credhelper login --profile {PROFILE}"
CONFIG = f"""
[profile {PROFILE}]
sso_session = {SESSION}
sso_account_id = 333333333333
sso_role_name = BedrockUser
region = us-east-1

[sso-session {SESSION}]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
"""
#: role credentials live 1 h and are served until 15 min before: 45 min
ROLE_LIFETIME, WINDOW = 3600, 900
#: access tokens live 30 min: once the refresh token is dead the session ends first
TOKEN_LIFETIME = 1800
WAIT = 6 * TICK  # a few looks of the watcher, in real seconds

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


# ------------------------------------------------------------------ the private bus and the fake service


@dataclass
class Notifications:
    """A fake org.freedesktop.Notifications: records (app, summary, body) of each Notify."""

    address: str
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    owned: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> None:
        from jeepney import HeaderFields, MessageType, new_error, new_method_return
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        conn = open_dbus_connection(bus=self.address)
        try:
            reply = conn.send_and_get_reply(message_bus.RequestName("org.freedesktop.Notifications", 4))
            assert reply.body[0] == 1, reply.body  # primary owner
            self.owned.set()
            while not self.stop.is_set():
                try:
                    msg = conn.receive(timeout=0.1)
                except TimeoutError:
                    continue
                if msg.header.message_type != MessageType.method_call:
                    continue
                if msg.header.fields.get(HeaderFields.member) == "Notify":
                    app, _rid, _icon, summary, body, _actions, _hints, _timeout = msg.body
                    with self.lock:
                        self.calls.append((app, summary, body))
                        n = len(self.calls)
                    conn.send(new_method_return(msg, "u", (n,)))
                else:
                    conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))
        finally:
            conn.close()

    def received(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return list(self.calls)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[str]:
    """The address of a private session bus (its own dbus-daemon)."""
    exe = shutil.which("dbus-daemon")
    if exe is None:
        unavailable("dbus-daemon is not installed (apt-get install dbus)")
    sockdir = tmp_path / "bus"
    sockdir.mkdir()
    conf = tmp_path / "bus.conf"
    conf.write_text(BUS_CONFIG.format(dir=sockdir))
    proc = subprocess.Popen([exe, f"--config-file={conf}", "--nofork", "--print-address=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("unix:"), proc.stderr.read() if proc.stderr else address
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def notifications(bus: str) -> Iterator[Notifications]:
    service = Notifications(bus)
    thread = threading.Thread(target=service.serve, daemon=True)
    thread.start()
    assert service.owned.wait(10), "the fake notification service did not get its name"
    yield service
    service.stop.set()
    thread.join(10)


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        unavailable("libfaketime is not installed (apt-get install faketime)")
    return found[0]


# ------------------------------------------------------------------ the world


class World:
    def __init__(self, aws: AwsEnv, emu: SSOEmulator, bus: str, tmp: Path) -> None:
        self.aws, self.emu, self.tmp = aws, emu, tmp
        self.offset_file = tmp / "faketime-offset"
        self.offset = 0
        self.offset_file.write_text("+0\n")
        aws.env.update(AWS_ENDPOINT_URL_SSO=emu.url, AWS_ENDPOINT_URL_SSO_OIDC=emu.url,
                       DBUS_SESSION_BUS_ADDRESS=bus)
        aws.write_config(CONFIG)
        self.daemons = Daemons(aws)

    def settings(self, extra: str = "") -> None:
        self.aws.write_settings(file_store_toml(self.aws.home) + f"refresh_window = {WINDOW}\n" + extra)

    def login(self) -> subprocess.CompletedProcess[str]:
        """`login` as Claude Code runs awsAuthRefresh: no terminal on stdin."""
        done = self.aws.run("login", "--profile", PROFILE, "--device-code",
                            env={"CLAUDE_CODE_ENTRYPOINT": "cli"}, timeout=120)
        assert done.returncode == 0, done.stderr
        return done

    def start_daemon(self) -> Daemon:
        return self.daemons.start(env={
            "LD_PRELOAD": libfaketime(), "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        })

    def advance(self, seconds: int) -> None:
        """Move the daemon's and the emulator's clocks forward together."""
        self.offset += seconds
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(f"+{self.offset}\n")
        tmp.replace(self.offset_file)
        self.emu.advance(seconds)

    def refreshes(self) -> int:
        return int(self.emu.state()["create_token_by_grant"].get("refresh_token", 0))


@pytest.fixture
def emu() -> Iterator[SSOEmulator]:
    with SSOEmulator(auto_approve=True, access_token_lifetime=TOKEN_LIFETIME,
                     role_credential_lifetime=ROLE_LIFETIME) as e:
        yield e


@pytest.fixture
def world(aws_env: AwsEnv, emu: SSOEmulator, bus: str, tmp_path: Path) -> Iterator[World]:
    w = World(aws_env, emu, bus, tmp_path)
    yield w
    w.daemons.close()


def sign_in_status(daemon: Daemon) -> str | None:
    value = daemon.profile_status(PROFILE).get("sign_in")
    return str(value) if value else None


def until_revoked_and_seen(world: World) -> tuple[Daemon, dict[str, str]]:
    """Signed in, the daemon serving, the refresh token then revoked and the
    watcher's next check (CHECK_EVERY later) having seen it."""
    daemon = world.start_daemon()
    first = world.daemons.export(PROFILE)
    assert first.rc == 0, first.describe()
    # the watcher's first look checks the refresh token at once (it works)
    poll(lambda: world.refreshes() >= 1, timeout=WAIT, what="the first refresh-token check")
    assert sign_in_status(daemon) is None
    world.emu.revoke_refresh_tokens()
    world.advance(int(CHECK_EVERY.total_seconds()))
    poll(lambda: sign_in_status(daemon), timeout=WAIT, what="the status to say a sign-in is needed")
    return daemon, first.creds


# ------------------------------------------------------------------ the acceptance test


@pytest.mark.slow
def test_revoked_refresh_token_warns_once_then_near_the_end(
    world: World, notifications: Notifications
) -> None:
    world.settings()
    out = world.login().stdout
    # awsAuthRefresh: the URL and the code also went into a notification
    [(app, summary, body)] = notifications.received()
    code = out.split("shows the code: ")[1].split()[0]
    assert app == "credhelper" and summary == f"Sign in to {SESSION} for profile {PROFILE}"
    assert f"{world.emu.url}/device?user_code={code}" in body and f"confirm the code {code}" in body
    notifications.calls.clear()

    daemon, served = until_revoked_and_seen(world)
    # exactly one notification, with the remedy; export still serves the valid credentials
    poll(lambda: notifications.received(), timeout=WAIT, what="the first notification")
    [(_, summary, body)] = notifications.received()
    assert summary == f"Sign-in needed for {PROFILE}"
    assert body.endswith(f"Run: {REMEDY}") and "can no longer be refreshed" in body
    again = world.daemons.export(PROFILE)
    assert again.rc == 0 and again.akid == served["AccessKeyId"], again.describe()
    # status: how long the credentials still last (served until 45 min after the mint, 15 min passed)
    status = sign_in_status(daemon)
    assert status in {f"sign-in needed, current credentials last {m}m" for m in (29, 30)}, status
    text = world.aws.run("status").stdout
    assert f"{status}: run {REMEDY}" in text, text
    [line] = daemon.events("sign_in_needed")
    assert line["profile"] == PROFILE and line["remedy"] == REMEDY

    # 10 more minutes (20 min left): the watcher looks again; nothing new is sent
    world.advance(600)
    poll(lambda: (sign_in_status(daemon) or "").endswith(("19m", "20m")), timeout=WAIT,
         what="a look after the clock moved 10 min")
    assert len(notifications.received()) == 1
    assert len(daemon.events("sign_in_needed")) == 1

    # 11 more minutes (9 min left, inside the last 10): the second and last notification
    world.advance(660)
    poll(lambda: len(notifications.received()) == 2, timeout=WAIT, what="the second notification")
    _, summary, body = notifications.received()[1]
    assert summary.startswith(f"Credentials for {PROFILE} stop in ") and REMEDY in body
    world.advance(60)
    poll(lambda: (sign_in_status(daemon) or "").endswith(("7m", "8m")), timeout=WAIT,
         what="a look a minute later")
    assert len(notifications.received()) == 2
    assert len(daemon.events("sign_in_needed")) == 1
    assert world.daemons.export(PROFILE).akid == served["AccessKeyId"]

    # the remedy works: `login` signs in anew (the access token is still valid, but
    # it cannot be renewed), and the warning goes away (login on the real clock:
    # it sleeps between polls, see the module docstring)
    remedy = world.aws.run("login", "--profile", PROFILE, "--device-code", timeout=120)
    assert remedy.returncode == 0, remedy.stderr
    assert "already signed in" not in remedy.stdout
    assert world.emu.state()["authorizations_started"] == 2
    poll(lambda: sign_in_status(daemon) is None, timeout=WAIT, what="the warning to go away")


@pytest.mark.slow
def test_disabled_in_settings_none(world: World, notifications: Notifications) -> None:
    world.settings("notifications = false\n")
    world.login()
    daemon, _ = until_revoked_and_seen(world)
    daemon.wait_for("sign_in_needed")
    world.advance(1260)  # into the last 10 minutes too
    poll(lambda: (sign_in_status(daemon) or "").endswith(("8m", "9m")), timeout=WAIT,
         what="a look inside the last 10 minutes")
    assert notifications.received() == []
    assert daemon.events("notification") == []


def test_no_notification_service_is_not_an_error(world: World) -> None:
    """The bus has no org.freedesktop.Notifications: login works and says nothing about it."""
    world.settings()
    done = world.login()
    assert done.stderr == "" and "signed in to" in done.stdout
    address = world.aws.env["DBUS_SESSION_BUS_ADDRESS"]
    assert notify.send("x", "y", environ={"DBUS_SESSION_BUS_ADDRESS": address}) is False
    assert notify.send("x", "y", environ={}) is False


# ------------------------------------------------------------------ the pieces


def test_send_reaches_the_service(notifications: Notifications) -> None:
    assert notify.send("Summary", "Body text", environ={"DBUS_SESSION_BUS_ADDRESS": notifications.address})
    assert notifications.received() == [("credhelper", "Summary", "Body text")]


DEVICE_OUTPUT = """To sign in to corp, open this URL in a browser on any device:
  https://device.sso.us-east-1.amazonaws.com/?user_code=ABCD-EFGH
and confirm that it shows the code: ABCD-EFGH
waiting for approval… (150 s left)
"""
PKCE_OUTPUT = """To sign in to corp, open this URL in a browser on this machine:
  https://oidc.us-east-1.amazonaws.com/authorize?response_type=code&client_id=x
(opened in your browser)
"""


@pytest.mark.parametrize(("output", "wanted"), [
    (DEVICE_OUTPUT, "Open https://device.sso.us-east-1.amazonaws.com/?user_code=ABCD-EFGH and confirm "
                    "the code ABCD-EFGH (credhelper login --profile dev)."),
    (PKCE_OUTPUT, "Open https://oidc.us-east-1.amazonaws.com/authorize?response_type=code&client_id=x "
                  "(credhelper login --profile dev)."),
    ("already signed in to corp\n", None),
])
def test_sign_in_notifier(output: str, wanted: str | None) -> None:
    sent: list[tuple[str, str]] = []
    out = io.StringIO()
    tee = notify.SignInNotifier(out, "dev", sender=lambda s, b: sent.append((s, b)) or True)
    for i in range(0, len(output), 7):  # written in pieces, as a stream may be
        tee.write(output[i:i + 7])
    assert out.getvalue() == output
    assert sent == ([("Sign in to corp for profile dev", wanted)] if wanted else [])


def test_unattended() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert notify.unattended({}, io.StringIO())
    assert not notify.unattended({}, Tty())
    assert notify.unattended({"CLAUDE_CODE_ENTRYPOINT": "cli"}, Tty())


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59, "59s"), (60, "1m"), (1799, "29m"),
                                                (3600, "1h00m"), (5400, "1h30m"), (-5, "0s")])
def test_span(seconds: int, text: str) -> None:
    assert span(seconds) == text


# ------------------------------------------------------------------ the watcher's rules (injected clock)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def _add(self, event: str, **kw: Any) -> None:
        self.lines.append((event, kw))

    info = warning = error = _add

    def events(self, name: str) -> list[dict[str, Any]]:
        return [kw for event, kw in self.lines if event == name]


WATCHED_CONFIG = """
[profile mfa]
role_arn = arn:aws:iam::123456789012:role/mfa-role
source_profile = base
mfa_serial = arn:aws:iam::123456789012:mfa/alice

[profile base]
region = us-east-1

[profile sso]
sso_session = corp
sso_account_id = 333333333333
sso_role_name = BedrockUser

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
"""


class Watched:
    """A SessionWatcher over a stub keeper holding real ProfileStates and a real Broker."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        cfg = tmp / "config"
        cfg.write_text(WATCHED_CONFIG)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "credentials"))
        self.clock = Clock()
        self.store = MemoryStore()
        self.broker = Broker(settings=Settings(refresh_window=900), store=self.store, config=AwsConfig.load(),
                             now=self.clock, lock_dir=str(tmp))
        self.keeper = SimpleNamespace(broker=self.broker, _states={})
        self.sent: list[tuple[str, str]] = []
        self.log = Log()
        self.watcher = SessionWatcher(self.keeper, None, self.log,  # type: ignore[arg-type]
                                      sender=lambda s, b: self.sent.append((s, b)) or True)

    def serve(self, profile: str, lifetime: int = 3600) -> ProfileState:
        """The daemon serves credentials minted now: served until 45 min from now."""
        st = ProfileState(profile)
        st.creds = Credentials("ASIAWATCHED000000001", "secret", "token",
                               self.clock.now + timedelta(seconds=lifetime), source="x",
                               issued=self.clock.now)
        self.keeper._states[profile] = st
        return st

    def advance(self, seconds: float) -> None:
        self.clock.now += timedelta(seconds=seconds)


def test_mfa_session_ending_first_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = Watched(tmp_path, monkeypatch)
    st = w.serve("mfa")

    def mfa_session(ends_in: float) -> None:
        creds = Credentials("ASIAMFASESSION000001", "s", "t", w.clock.now + timedelta(seconds=ends_in))
        w.store.set(item("mfa-session", "base"), json.dumps(
            {"v": 1, "serial": "arn:aws:iam::123456789012:mfa/alice", "credentials": creds.to_record()}))

    mfa_session(3600 + 600)  # usable (SERVE_FLOOR before its end) after the served ones stop: quiet
    w.watcher.look()
    assert st.sign_in is None and w.sent == []
    mfa_session(1800)  # a new MFA session that ends first
    w.watcher.look()
    assert st.sign_in == "sign-in needed, current credentials last 45m"
    [(summary, body)] = w.sent
    assert summary == "Sign-in needed for mfa" and body.endswith("Run: credhelper login --profile mfa")
    assert "the MFA session of base ends" in body
    w.advance(60)
    w.watcher.look()
    assert len(w.sent) == 1 and st.sign_in == "sign-in needed, current credentials last 44m"
    w.advance(35 * 60)  # 9 min left
    w.watcher.look()
    assert len(w.sent) == 2 and w.sent[1][0] == "Credentials for mfa stop in 9m"
    w.advance(60)
    w.watcher.look()
    assert len(w.sent) == 2
    assert len(w.log.events("sign_in_needed")) == 1


def test_client_registration_expiry_is_a_fixed_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = Watched(tmp_path, monkeypatch)
    st = w.serve("sso")
    record = {"v": 1, "access_token": "a", "expires_at": iso_z(w.clock.now + timedelta(hours=1)),
              "refresh_token": "r", "client_id": "cid", "client_secret": "cs", "region": "us-east-1",
              "start_url": "https://corp.awsapps.com/start"}
    w.store.set(item("sso-token", "corp"), json.dumps(record))
    w.store.set(item("sso-client", "corp#device"), json.dumps(
        {"clientId": "cid", "clientSecret": "cs", "expiresAt": iso_z(w.clock.now + timedelta(minutes=20))}))
    w.watcher._checked["sso:corp"] = w.clock.now  # the refresh token was checked just now
    w.watcher.look()
    assert st.sign_in == "sign-in needed, current credentials last 45m"
    [(_, body)] = w.sent
    assert "the client registration of corp expires" in body
    # signed in again with a fresh registration: the warning goes, and may come again later
    w.store.set(item("sso-client", "corp#device"), json.dumps(
        {"clientId": "cid", "clientSecret": "cs", "expiresAt": iso_z(w.clock.now + timedelta(days=90))}))
    w.watcher.look()
    assert st.sign_in is None and len(w.sent) == 1


def test_a_session_check_that_fails_for_a_passing_reason_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = Watched(tmp_path, monkeypatch)
    st = w.serve("sso")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSO_OIDC", "http://127.0.0.1:9")  # nothing listens
    record = {"v": 1, "access_token": "a", "expires_at": iso_z(w.clock.now + timedelta(minutes=20)),
              "refresh_token": "r", "client_id": "cid", "client_secret": "cs", "region": "us-east-1",
              "start_url": "https://corp.awsapps.com/start"}
    w.store.set(item("sso-token", "corp"), json.dumps(record))
    w.watcher.look()  # the refresh check cannot reach the service: the token is kept
    assert st.sign_in is None and w.sent == []
    assert w.watcher._checked["sso:corp"] == w.clock.now


def test_macos_uses_osascript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On macOS the notification is `osascript -e 'display notification …'`, its
    text quoted as AppleScript strings (a stand-in osascript records its argv)."""
    record = tmp_path / "argv.json"
    fake = tmp_path / "osascript"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "darwin")
    assert notify.send('Say "hi"', "back\\slash")
    assert json.loads(record.read_text()) == [
        "-e", 'display notification "back\\\\slash" with title "credhelper" subtitle "Say \\"hi\\""']
    fake.unlink()
    assert notify.send("x", "y") is False  # no osascript: nothing shown, no error


def test_user_bus_of_systemd_is_found(notifications: Notifications, tmp_path: Path) -> None:
    """No DBUS_SESSION_BUS_ADDRESS (a service's environment): $XDG_RUNTIME_DIR/bus."""
    runtime = tmp_path / "rt"
    runtime.mkdir()
    (runtime / "bus").symlink_to(notifications.address.split("path=")[1].split(",")[0])
    assert notify.send("s", "b", environ={"XDG_RUNTIME_DIR": str(runtime)})
    assert notifications.received() == [("credhelper", "s", "b")]
