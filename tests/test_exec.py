"""`credhelper exec` (issue 13): the endpoint with an injected clock and a fake
credential source (renewal over several lifetimes, token checks), the child's
environment, and the exit status and signals through real `credhelper exec`
subprocesses (SIGINT from a real terminal: a pty)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import textwrap
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from daemon_helpers import write_setup

from credhelper.broker import SERVE_FLOOR
from credhelper.errors import UpstreamError
from credhelper.exec import runner
from credhelper.exec.endpoint import Endpoint
from credhelper.exec.source import CachedCredentials
from credhelper.model import Credentials, parse_time

PY = sys.executable


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeSource:
    """Mints credentials of `lifetime` seconds at the clock's time."""

    def __init__(self, clock: Clock, lifetime: int) -> None:
        self.clock, self.lifetime, self.minted = clock, lifetime, 0
        self.fail: str | None = None

    def __call__(self) -> Credentials:
        if self.fail:
            raise UpstreamError(self.fail)
        self.minted += 1
        n = self.minted
        return Credentials(f"ASIAFAKE{n:012d}", f"fake-secret-{n}", f"fake-token-{n}",
                           expiration=self.clock() + timedelta(seconds=self.lifetime), issued=self.clock())


def get(ep: Endpoint, token: str | None) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(ep.url, headers={"Authorization": token} if token is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_only_the_token_gets_credentials() -> None:
    clock = Clock()
    fake = FakeSource(clock, 3600)
    with Endpoint(CachedCredentials(fake, refresh_window=900, now=clock)) as ep:
        assert ep.url.startswith("http://127.0.0.1:") and len(ep.token) >= 40
        assert get(ep, None)[0] == 401
        assert get(ep, "wrong")[0] == 403
        assert get(ep, ep.token[:-1])[0] == 403
        assert fake.minted == 0  # a refused ask costs nothing
        status, body = get(ep, ep.token)
        assert status == 200
        assert set(body) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
        assert body["AccessKeyId"] == "ASIAFAKE000000000001" and body["Token"] == "fake-token-1"
        assert body["Expiration"] == "2026-01-01T13:00:00Z"
    other = Endpoint(CachedCredentials(fake, refresh_window=900, now=clock))
    assert other.token != ep.token  # one random token per exec
    other.stop()


@pytest.mark.parametrize(("lifetime", "window"), [(3600, 900), (900, 450), (43200, 900)])
def test_fresh_credentials_over_several_lifetimes(lifetime: int, window: int) -> None:
    """Every answer has more than the effective window left; new credentials
    come exactly when the old ones stop being servable, for 5 lifetimes."""
    clock = Clock()
    fake = FakeSource(clock, lifetime)
    start = clock()
    seen = []
    with Endpoint(CachedCredentials(fake, refresh_window=900, now=clock)) as ep:
        step = max(60, lifetime // 60)
        while clock() < start + timedelta(seconds=5 * lifetime):
            status, body = get(ep, ep.token)
            assert status == 200
            left = (parse_time(body["Expiration"]) - clock()).total_seconds()
            assert left > window, (clock(), body["Expiration"])
            assert left > SERVE_FLOOR
            seen.append(body["AccessKeyId"])
            clock.advance(step)
    served = lifetime - window  # each credential is served this long
    assert fake.minted == len(set(seen))
    assert abs(fake.minted - 5 * lifetime / served) <= 1, fake.minted


def test_a_failing_source_is_a_503_without_secrets(capfd: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    fake = FakeSource(clock, 3600)
    with Endpoint(CachedCredentials(fake, refresh_window=900, now=clock)) as ep:
        assert get(ep, ep.token)[0] == 200
        fake.fail = "STS said no: check the network"
        assert get(ep, ep.token)[0] == 200  # still servable: cached
        clock.advance(3600 - 900)
        status, body = get(ep, ep.token)
        assert status == 503 and body["Message"] == "STS said no: check the network"
        assert "fake-secret" not in json.dumps(body)
        assert get(ep, ep.token)[0] == 503
        fake.fail = None
        status, body = get(ep, ep.token)
        assert status == 200 and body["AccessKeyId"] == "ASIAFAKE000000000002"
    err = capfd.readouterr().err
    assert err.count("cannot serve credentials: STS said no") == 1  # once, not per ask


class FakeDaemon:
    """Answers like the daemon: its current credentials (1 h, refreshed when 900 s
    are left) without their issue time; `down` makes it fail."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.minted, self.down = clock, 0, False
        self.current: Credentials | None = None

    def __call__(self) -> Credentials:
        if self.down:
            raise UpstreamError("the daemon is restarting: try again")
        if self.current is None or self.current.remaining(self.clock()) <= 900:
            self.minted += 1
            self.current = Credentials(f"ASIADAEMON{self.minted:010d}", "s", "t",
                                       expiration=self.clock() + timedelta(seconds=3600))
        return self.current


def test_daemon_answers_are_renewed_within_the_configured_window() -> None:
    """Without an issue time the daemon's window is unknown: from the configured
    window down, each ask tries for fresher credentials and keeps the cached ones
    when there are none (or the daemon is away)."""
    clock = Clock()
    daemon = FakeDaemon(clock)
    daemon()
    clock.advance(3600 - 920)  # received with 920 s left: served down to 460 s (their lower bound)
    cache = CachedCredentials(daemon, refresh_window=900, now=clock)
    first = cache.get()
    assert first.access_key_id == "ASIADAEMON0000000001" and cache.asks == 1
    assert cache.get() is first and cache.asks == 1  # above the configured window: no ask
    clock.advance(30)
    daemon.down = True
    assert cache.get() is first and cache.asks == 1  # 890 s left: asked, failed, the cached ones serve
    daemon.down = False
    second = cache.get()
    assert second.access_key_id == "ASIADAEMON0000000002" and cache.asks == 2
    assert cache.get() is second and cache.asks == 2
    clock.advance(3600 - 900 + 1)  # 899 s left: the daemon has new ones
    third = cache.get()
    assert third.access_key_id == "ASIADAEMON0000000003" and cache.asks == 3


def test_unservable_fetch_is_refused() -> None:
    clock = Clock()
    short = Credentials("ASIAX", "s", "t", expiration=clock() + timedelta(seconds=400))
    cache = CachedCredentials(lambda: short, refresh_window=900, now=clock)
    with pytest.raises(UpstreamError, match="within their refresh window"):
        cache.get()


def test_child_env() -> None:
    inherited = {"PATH": "/bin", "AWS_PROFILE": "x", "AWS_DEFAULT_PROFILE": "y",
                 "AWS_ACCESS_KEY_ID": "AKIAOLD", "AWS_SECRET_ACCESS_KEY": "old-secret",
                 "AWS_SESSION_TOKEN": "old-token",
                 "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/f", "AWS_REGION": "eu-west-1", "KEEP": "1"}
    env, dropped = runner.child_env(inherited, region="us-west-2", endpoint=("http://127.0.0.1:1/c", "tok"))
    assert env == {"PATH": "/bin", "KEEP": "1", "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-west-2",
                   "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/c",
                   "AWS_CONTAINER_AUTHORIZATION_TOKEN": "tok"}
    assert dropped == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    creds = Credentials("ASIANEW", "new-secret", "new-token", expiration=datetime(2030, 1, 1, tzinfo=UTC))
    env, _ = runner.child_env(inherited, region=None, creds=creds)
    assert env["AWS_ACCESS_KEY_ID"] == "ASIANEW" and env["AWS_SESSION_TOKEN"] == "new-token"
    assert env["AWS_CREDENTIAL_EXPIRATION"] == "2030-01-01T00:00:00Z" and "AWS_PROFILE" not in env
    assert runner.shadowing_settings({"region": "x", "role_arn": "r", "source_profile": "b"}) == [
        "role_arn", "source_profile"]
    assert runner.shadowing_settings(None) == []


def test_status_of() -> None:
    for code in (0, 1, 7, 255):
        assert runner.status_of(code << 8) == code
    assert runner.status_of(signal.SIGKILL) == 128 + 9


# ------------------------------------------------------------------ real `credhelper exec`


@pytest.fixture
def dev(aws_env):  # type: ignore[no-untyped-def]
    write_setup(aws_env)
    return aws_env


def test_exit_status_and_signal_death(dev) -> None:  # type: ignore[no-untyped-def]
    done = dev.run("exec", "--profile", "dev", "--", PY, "-c", "import sys; sys.exit(7)")
    assert done.returncode == 7, done.stderr
    done = dev.run("exec", "--profile", "dev", "--", PY, "-c", "import os; os.kill(os.getpid(), 9)")
    assert done.returncode == 137, done.stderr
    done = dev.run("exec", "--profile", "dev", "--", "no-such-command-xyz")
    assert done.returncode == 127 and done.stdout == ""
    assert done.stderr.strip() == (
        "credhelper: command not found: no-such-command-xyz: check its name and PATH")
    done = dev.run("exec", "--profile", "nope", "--", "true")
    assert done.returncode == 3 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr


TRAP = textwrap.dedent("""
    import signal, sys
    got = []
    def on(signo, frame):
        got.append(signo)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on)
    print("ready", flush=True)
    while not got:
        signal.pause()
    # a second copy of the signal would come right away: wait a bounded while for one
    extra = signal.sigtimedwait({signal.SIGINT, signal.SIGTERM, signal.SIGHUP}, 1.0)
    print("got", got[0], "extra", extra.si_signo if extra else 0, flush=True)
    sys.exit(40 + got[0])
""")


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.stderr.read() if proc.stderr else "")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_sent_to_exec_reach_the_child(dev, sig: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    """`kill -SIG <exec>` (exec alone: its own session): the child gets it once,
    exec outlives it and exits with the child's status."""
    proc = dev.popen("exec", "--profile", "dev", "--", PY, "-c", TRAP, start_new_session=True)
    _wait_ready(proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 40 + sig, (out, err)
    assert out == f"got {int(sig)} extra 0\n", err


def test_ctrl_c_on_a_terminal_reaches_the_child_once(dev) -> None:  # type: ignore[no-untyped-def]
    """A real Ctrl-C: exec and the child on a pty, ^C written to its master. The
    kernel signals the foreground process group (the child too); exec does not
    send a second SIGINT and does not die before the child."""
    master, slave = pty.openpty()

    def controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [dev.credhelper, "exec", "--profile", "dev", "--", PY, "-c", TRAP], env=dev.environ(), cwd=dev.home,
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=controlling_tty,
    )
    os.close(slave)
    try:
        text = _read_until(master, "ready", 60)
        os.write(master, b"\x03")
        text += _read_until(master, "extra", 30)
        assert proc.wait(30) == 40 + signal.SIGINT, text
        assert f"got {int(signal.SIGINT)} extra 0" in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def _read_until(fd: int, word: str, timeout: float) -> str:
    deadline, text = time.monotonic() + timeout, ""
    while word not in text:
        left = deadline - time.monotonic()
        assert left > 0, f"no {word!r} on the terminal within {timeout} s: {text!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            text += chunk.decode(errors="replace")
    return text


def test_inherited_keys_are_dropped_and_default_profile_warns(dev) -> None:  # type: ignore[no-untyped-def]
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    dev.write_config(Path(dev.config_file).read_text() + "\n[default]\nrole_arn = arn:aws:iam::1:role/x\n"
                     "source_profile = base\n")
    done = dev.run("exec", "--profile", "dev", "--", PY, "-c", dump,
                   env={"AWS_ACCESS_KEY_ID": "AKIAINHERITED0000000",
                        "AWS_SECRET_ACCESS_KEY": "inherited-secret",
                        "AWS_PROFILE": "dev", "AWS_DEFAULT_PROFILE": "dev", "AWS_REGION": None})
    assert done.returncode == 0, done.stderr
    env = json.loads(done.stdout)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE"):
        assert name not in env
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"  # the profile's region
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    lines = done.stderr.splitlines()
    assert any("removed the inherited AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" in ln for ln in lines), lines
    assert any("[default] profile has credential settings (role_arn, source_profile)" in ln
               for ln in lines), lines
    assert "inherited-secret" not in done.stderr


def test_env_mode_injects_the_keys(dev) -> None:  # type: ignore[no-untyped-def]
    script = ("import os; print(os.environ['AWS_ACCESS_KEY_ID'],"
               " 'AWS_CONTAINER_CREDENTIALS_FULL_URI' in os.environ,"
              " bool(os.environ['AWS_SESSION_TOKEN']), os.environ['AWS_CREDENTIAL_EXPIRATION'])")
    done = dev.run("exec", "--env", "--profile", "dev", "--", PY, "-c", script)
    assert done.returncode == 0, done.stderr
    akid, has_uri, has_token, exp = done.stdout.split()
    assert akid in dev.moto.access_key_ids_issued("AssumeRole")
    assert (has_uri, has_token) == ("False", "True")
    assert parse_time(exp) > datetime.now(UTC) + timedelta(seconds=SERVE_FLOOR)


def test_bedrock_token_for_the_profiles_region(dev) -> None:  # type: ignore[no-untyped-def]
    """--bedrock-token: AWS_BEARER_TOKEN_BEDROCK, presigned with the served credentials
    for the profile's region; the endpoint still serves the credentials."""
    script = textwrap.dedent("""
        import os, urllib.parse
        from credhelper.bedrock_token import decode
        url = decode(os.environ["AWS_BEARER_TOKEN_BEDROCK"])
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        akid, _, region = query["X-Amz-Credential"][0].split("/")[:3]
        print(akid, region, "AWS_CONTAINER_CREDENTIALS_FULL_URI" in os.environ)
    """)
    done = dev.run("exec", "--bedrock-token", "--profile", "dev", "--", PY, "-c", script,
                   env={"AWS_REGION": None})
    assert done.returncode == 0, done.stderr
    akid, region, endpoint = done.stdout.split()
    assert akid in dev.moto.access_key_ids_issued("AssumeRole")
    assert (region, endpoint) == ("us-east-1", "True")
