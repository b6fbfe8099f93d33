"""Running the real `credhelper daemon` in tests: a subprocess with `aws_env`'s
environment, its stderr (structlog JSON lines) captured to a file, ready when
the socket answers `ping`, stopped with SIGTERM (clean exit 0, socket removed).

`Daemons` is what the test modules' `daemons` fixture yields: it starts
daemons, runs `credhelper export` while remembering every secret an export
printed, and at teardown stops what still runs and scans every log line the
daemons wrote for those secrets (and the static keys the tests configure).
Every daemon log of the session is also kept in `COLLECTED`, so that
test_daemon_logs.py can check them all again.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conftest import file_store_toml

from credhelper import fastpath, protocol

if TYPE_CHECKING:
    from conftest import AwsEnv

#: the long-term keys of the `base` profile (the source of the `dev` role)
BASE_AKID = "AKIADAEMONTESTBASE01"
BASE_SECRET = "daemon-test-base-secret/0123456789+abcdefXYZ"
ROLE_ARN = "arn:aws:iam::123456789012:role/dev"
STATIC_SECRETS = frozenset({BASE_SECRET})
#: what `--format claude` holds
CRED_KEYS = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")

#: (daemon log text, secrets it must not contain) of every daemon this session ran
COLLECTED: list[tuple[str, frozenset[str]]] = []


# ------------------------------------------------------------------ configuration


def encrypted_file_settings(aws_env: AwsEnv) -> str:
    """Settings lines for an AES-GCM file store with its key in a key file
    (no keyring: these tests do not need a Secret Service)."""
    return file_store_toml(aws_env.home)


def write_setup(
    aws_env: AwsEnv,
    *,
    duration: int | None = None,
    refresh_window: int | None = None,
    warm: Iterable[str] = (),
    store: str | None = None,
    extra_config: str = "",
    extra_settings: str = "",
) -> None:
    """Profile `dev` (AssumeRole from the static keys of `base`) and the settings.

    `store`: settings lines choosing the store (default: an encrypted file)."""
    dev = f"[profile dev]\nrole_arn = {ROLE_ARN}\nsource_profile = base\nregion = us-east-1\n"
    if duration is not None:
        dev += f"duration_seconds = {duration}\n"
    aws_env.write_config(dev + "\n[profile base]\nregion = us-east-1\n\n" + extra_config)
    aws_env.write_credentials(
        f"[base]\naws_access_key_id = {BASE_AKID}\naws_secret_access_key = {BASE_SECRET}\n"
    )
    settings = store if store is not None else encrypted_file_settings(aws_env)
    if refresh_window is not None:
        settings += f"refresh_window = {refresh_window}\n"
    warm = list(warm)
    if warm:
        settings += f"warm_profiles = {json.dumps(warm)}\n"
    aws_env.write_settings(settings + extra_settings)


# ------------------------------------------------------------------ logs and exports


def parse_log(text: str) -> list[dict[str, Any]]:
    """The daemon's log lines as dicts; a line that is not a JSON object is
    kept as {"_raw": line} (a traceback would be one)."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        out.append(obj if isinstance(obj, dict) else {"_raw": line})
    return out


def log_time(line: Mapping[str, Any]) -> datetime:
    return parse_utc(str(line["timestamp"]))


def parse_utc(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def matches(line: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    """Every key equals (or, for a callable, satisfies) the wanted value."""
    for key, want in match.items():
        if key not in line:
            return False
        if callable(want):
            if not want(line[key]):
                return False
        elif line[key] != want:
            return False
    return True


def parse_export(text: str, fmt: str = "claude") -> dict[str, str]:
    """AccessKeyId, SecretAccessKey, SessionToken and Expiration of one export's stdout."""
    if fmt == "env":
        names = {
            "AWS_ACCESS_KEY_ID": "AccessKeyId",
            "AWS_SECRET_ACCESS_KEY": "SecretAccessKey",
            "AWS_SESSION_TOKEN": "SessionToken",
            "AWS_CREDENTIAL_EXPIRATION": "Expiration",
        }
        out = {}
        for line in text.splitlines():
            words = shlex.split(line)
            assert words[0] == "export", line
            key, _, value = words[1].partition("=")
            out[names[key]] = value
        return out
    data = json.loads(text)
    creds = data["Credentials"] if fmt == "claude" else data
    return {k: creds[k] for k in CRED_KEYS}


def valid_claude_output(text: str) -> dict[str, str]:
    """What Claude Code accepts from awsCredentialExport: one JSON object whose
    `Credentials` has the four non-empty strings, `Expiration` in UTC with `Z`."""
    data = json.loads(text.strip())
    assert isinstance(data, dict) and set(data) == {"Credentials"}, text
    creds = data["Credentials"]
    for key in CRED_KEYS:
        assert isinstance(creds.get(key), str) and creds[key], (key, text)
    assert creds["Expiration"].endswith("Z"), text
    parse_utc(creds["Expiration"])
    return {k: creds[k] for k in CRED_KEYS}


def remaining(creds: Mapping[str, str], now: datetime | None = None) -> float:
    """Seconds left before `Expiration` (which exports print in whole seconds)."""
    return (parse_utc(creds["Expiration"]) - (now or datetime.now(UTC))).total_seconds()


def find_leaks(text: str, secrets: Iterable[str], window: int = 24) -> list[str]:
    """Secrets that appear in `text`, whole or as any `window`-character piece
    (a truncated token in an error message is a leak too). Shown by their
    first characters only."""
    leaked: set[str] = set()
    pieces: dict[str, str] = {}
    for secret in set(secrets):
        if not secret:
            continue
        if len(secret) <= window:
            if secret in text:
                leaked.add(secret)
            continue
        for i in range(len(secret) - window + 1):
            pieces[secret[i : i + window]] = secret
    if pieces:
        for i in range(len(text) - window + 1):
            hit = pieces.get(text[i : i + window])
            if hit is not None:
                leaked.add(hit)
    return sorted(s[:6] + "…" for s in leaked)


@dataclass
class Export:
    """One `credhelper export` run."""

    rc: int
    stdout: str
    stderr: str
    fmt: str
    finished: datetime
    creds: dict[str, str] = field(default_factory=dict)

    @property
    def akid(self) -> str:
        return self.creds["AccessKeyId"]

    def describe(self) -> str:
        return f"rc={self.rc} stderr={self.stderr.strip()!r} stdout={self.stdout[:120]!r}"


# ------------------------------------------------------------------ the daemon process


def ask(path: str | os.PathLike[str], op: str, fields: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None) -> tuple[str, int, str] | None:
    """One request through the fast path's own client; None when nothing answers."""
    request = protocol.encode_request(op, dict(fields or {}), dict(env) if env is not None else None)
    return fastpath.ask_daemon(str(path), request)


class Daemon:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, socket: Path, env: dict[str, str]):
        self.proc = proc
        self.log_path = log_path
        self.socket = socket
        self.env = env
        self.killed = False
        self.stopped_rc: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    # -- its log --------------------------------------------------------------------
    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def lines(self) -> list[dict[str, Any]]:
        """Complete log lines so far (the daemon may be mid-line)."""
        text = self.text()
        return parse_log(text[: text.rfind("\n") + 1])

    def events(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [ln for ln in self.lines() if ln.get("event") == event and matches(ln, match)]

    def wait_for(
        self, event: str, *, count: int = 1, timeout: float = 60, **match: Any
    ) -> list[dict[str, Any]]:
        """The matching lines once there are at least `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(event, **match)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"daemon logged {len(found)} {event} lines matching {match} within "
                    f"{timeout} s, wanted {count}\n{self.tail()}"
                )
            if not self.running() and not self.killed:
                raise AssertionError(f"daemon exited with {self.proc.returncode}\n{self.tail()}")
            time.sleep(0.05)

    def tail(self, n: int = 40) -> str:
        return "-- daemon log (tail) --\n" + "\n".join(self.text().splitlines()[-n:])

    # -- its socket -----------------------------------------------------------------
    def ask(self, op: str, fields: Mapping[str, str] | None = None,
            env: Mapping[str, str] | None = None) -> tuple[str, int, str] | None:
        return ask(self.socket, op, fields, env)

    def ping(self) -> int | None:
        """The pid that answers `ping`, or None."""
        answer = self.ask("ping")
        if answer is None or answer[0] != "ok" or not answer[2].startswith("pong "):
            return None
        return int(answer[2].split()[1])

    def status(self) -> dict[str, Any]:
        answer = self.ask("status")
        assert answer is not None and answer[0] == "ok", answer
        data = json.loads(answer[2])
        assert isinstance(data, dict)
        return data

    def profile_status(self, profile: str) -> dict[str, Any]:
        for p in self.status()["profiles"]:
            if p["profile"] == profile:
                return dict(p)
        raise AssertionError(f"status has no profile {profile}: {self.status()}")

    # -- its end --------------------------------------------------------------------
    def send(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM; the exit status (also kept in `stopped_rc`)."""
        if self.running():
            self.send(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"daemon did not exit within {timeout} s of SIGTERM\n{self.tail()}"
            ) from None
        self.stopped_rc = rc
        return rc

    def kill9(self) -> None:
        self.killed = True
        self.proc.kill()
        self.proc.wait(30)


class Daemons:
    """Starts daemons for one test; stops and checks them at its end."""

    def __init__(self, aws_env: AwsEnv) -> None:
        self.aws_env = aws_env
        self.started: list[Daemon] = []
        #: every secret an export printed in this test (checked against the logs)
        self.secrets: set[str] = set(STATIC_SECRETS)

    def start(self, env: Mapping[str, str | None] | None = None, *, timeout: float = 60) -> Daemon:
        """`credhelper daemon` with `aws_env`'s environment (plus `env`), once it answers ping."""
        environ = self.aws_env.environ(env)
        socket = Path(environ["CREDHELPER_SOCKET"])
        n = len(self.started)
        log_path = self.aws_env.home / f"daemon.{n}.stderr"
        with open(log_path, "wb") as log, open(self.aws_env.home / f"daemon.{n}.stdout", "wb") as out:
            proc = subprocess.Popen(
                [self.aws_env.credhelper, "daemon"], env=environ, cwd=self.aws_env.home,
                stdin=subprocess.DEVNULL, stdout=out, stderr=log,
            )
        daemon = Daemon(proc, log_path, socket, environ)
        self.started.append(daemon)
        deadline = time.monotonic() + timeout
        while daemon.ping() != proc.pid:
            if proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {proc.returncode} before it answered\n{daemon.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon did not answer ping within {timeout} s\n{daemon.tail()}")
            time.sleep(0.05)
        return daemon

    def note(self, *secrets: str) -> None:
        self.secrets.update(s for s in secrets if s)

    def export(
        self, profile: str = "dev", fmt: str = "claude", *,
        env: Mapping[str, str | None] | None = None, timeout: float = 90,
    ) -> Export:
        """`credhelper export --profile P --format F`; its secrets are remembered."""
        done = self.aws_env.run("export", "--profile", profile, "--format", fmt, env=env, timeout=timeout)
        result = Export(done.returncode, done.stdout, done.stderr, fmt, datetime.now(UTC))
        if done.returncode == 0:
            result.creds = parse_export(done.stdout, fmt)
            self.note(result.creds["SecretAccessKey"], result.creds["SessionToken"])
        return result

    def close(self) -> None:
        problems = []
        for i, daemon in enumerate(self.started):
            if daemon.running():
                try:
                    daemon.stop()
                except AssertionError as exc:
                    problems.append(f"daemon {i}: {exc}")
            if not daemon.killed and daemon.stopped_rc not in (None, 0):
                problems.append(f"daemon {i} exited {daemon.stopped_rc} on SIGTERM\n{daemon.tail()}")
        last: dict[Path, Daemon] = {}
        for daemon in self.started:
            last[daemon.socket] = daemon
        for sock, daemon in last.items():
            if not daemon.killed and sock.exists():
                problems.append(f"the daemon stopped but left its socket {sock} behind")
        for i, daemon in enumerate(self.started):
            text = daemon.text()
            COLLECTED.append((text, frozenset(self.secrets)))
            leaks = find_leaks(text, self.secrets)
            if leaks:
                problems.append(f"daemon {i} logged secrets {leaks}")
        if problems:
            raise AssertionError("\n".join(problems))


def poll(check: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """The first truthy result of `check()` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(interval)
