"""IAM Identity Center end to end: `credhelper login`, `export`, `logout` and the
daemon as real subprocesses (the installed console script) against the SSO
emulator (tests/sso_emulator.py, run in this process), with the real Secret
Service as the store; MFA sessions against the recording moto.

Clocks: credhelper always uses the real clock. The emulator's clock can be moved
forward (`emu.advance`); where a test does so its docstring says why that is sound.
Waits are deadlines on observable state (the emulator's log and counters, the
daemon's status, a process's output), never fixed sleeps, except where a test
must prove that nothing happens for a stated period.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from daemon_helpers import Daemon, Daemons, poll
from sso_emulator import DEVICE_GRANT, SSOEmulator

from credhelper.broker import SERVE_FLOOR, effective_window
from credhelper.login.tokens import REFRESH_WINDOW
from credhelper.model import iso_z, parse_time
from credhelper.settings import DEFAULT_REFRESH_WINDOW
from credhelper.store import item
from credhelper.store.keyring_store import KeyringStore

if TYPE_CHECKING:
    from conftest import AwsEnv, MotoServer

PROFILE = "sso"
ACCOUNT = "333333333333"
ROLE = "BedrockUser"
SESSION = "corp"
START_URL = "https://corp.awsapps.com/start"
LEGACY_URL = "https://legacy.awsapps.com/start"
REMEDY = f"credhelper login --profile {PROFILE}"

SSO_CONFIG = f"""
[profile {PROFILE}]
sso_session = {SESSION}
sso_account_id = {ACCOUNT}
sso_role_name = {ROLE}
region = us-east-1

[profile sso-readonly]
sso_session = {SESSION}
sso_account_id = {ACCOUNT}
sso_role_name = ReadOnly
region = us-east-1

[profile legacy]
sso_start_url = {LEGACY_URL}
sso_region = us-east-1
sso_account_id = 111111111111
sso_role_name = ReadOnly
region = us-east-1

[sso-session {SESSION}]
sso_start_url = {START_URL}
sso_region = us-east-1
sso_registration_scopes = sso:account:access
"""

#: the MFA-protected role and the long-term keys it is assumed from (moto)
MFA_PROFILE = "mfa"
MFA_SERIAL = "arn:aws:iam::123456789012:mfa/alice"
MFA_ROLE_ARN = "arn:aws:iam::123456789012:role/mfa-role"
MFA_BASE_AKID = "AKIAMFABASEKEYS00001"
MFA_BASE_SECRET = "mfaBaseSecret/0123456789+abcdefghijklmno"
MFA_CONFIG = f"""
[profile {MFA_PROFILE}]
role_arn = {MFA_ROLE_ARN}
source_profile = mfabase
mfa_serial = {MFA_SERIAL}
region = us-east-1

[profile mfabase]
region = us-east-1
"""
MFA_CREDENTIALS = f"""
[mfabase]
aws_access_key_id = {MFA_BASE_AKID}
aws_secret_access_key = {MFA_BASE_SECRET}
"""

DEVICE_URL = re.compile(r"^  (http://127\.0\.0\.1:\d+/device\?user_code=([A-Z]{4}-[A-Z]{4}))$", re.M)
DEVICE_CODE = re.compile(r"confirm that it shows the code: ([A-Z]{4}-[A-Z]{4})$", re.M)


# ------------------------------------------------------------------ helpers


def error_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The failure contract: exit `code`, empty stdout, one stderr line with the remedy."""
    assert proc.returncode == code, f"rc={proc.returncode} stdout={proc.stdout!r} stderr={proc.stderr!r}"
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and proc.stderr.endswith("\n"), proc.stderr
    line = lines[0]
    assert line.startswith("credhelper: ") and "Traceback" not in line, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def login_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """A failed login: exit `code` and one stderr line; stdout may hold the URL it printed."""
    assert proc.returncode == code, f"rc={proc.returncode} stdout={proc.stdout!r} stderr={proc.stderr!r}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"rc={proc.returncode} stdout={proc.stdout!r} stderr={proc.stderr!r}"
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def exported(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Exit 0, nothing on stderr, and stdout as Claude Code reads it."""
    out = ok(proc)
    data = json.loads(out.strip())
    assert list(data) == ["Credentials"], out
    creds = data["Credentials"]
    for key in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"):
        assert isinstance(creds[key], str) and creds[key], key
    assert creds["Expiration"].endswith("Z")
    assert parse_time(creds["Expiration"]) > datetime.now(UTC)
    return dict(creds)


def log_of(emu: SSOEmulator, operation: str) -> list[dict[str, Any]]:
    return [e for e in emu.state()["log"] if e["operation"] == operation]


def counts(emu: SSOEmulator) -> dict[str, int]:
    return dict(emu.state()["counts"])


BROWSER_SCRIPT = '''#!{python}
"""A stand-in browser. It logs each URL it is asked to open and, for an
/authorize URL, loads it in the background the way a browser would: urllib
follows the emulator's 302 to credhelper's loopback callback. The launcher
itself returns at once, like `xdg-open`."""
import os
import sys
import urllib.request

url = sys.argv[-1]
with open({launches!r}, "a") as f:
    f.write(url + "\\n")
if {follow!r} and "/authorize?" in url and os.fork() == 0:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        with urllib.request.urlopen(url, timeout=330) as r:
            result = f"{{r.status}} {{r.geturl()}} {{r.read().decode(errors='replace')}}"
    except Exception as exc:
        result = f"error {{exc!r}}"
    with open({fetched!r}, "a") as f:
        f.write(result + "\\n")
    os._exit(0)
'''


@dataclass
class Browser:
    path: Path
    launches_file: Path
    fetched_file: Path

    @property
    def env(self) -> dict[str, str]:
        return {"BROWSER": str(self.path)}

    def launches(self) -> list[str]:
        try:
            return self.launches_file.read_text().splitlines()
        except FileNotFoundError:
            return []

    def fetched(self) -> list[str]:
        try:
            return self.fetched_file.read_text().splitlines()
        except FileNotFoundError:
            return []


@dataclass
class Sso:
    """One test's world: `aws_env` pointed at the emulator, the keyring store."""

    aws: AwsEnv
    emu: SSOEmulator
    service: str
    tmp: Path

    def write_settings(self, **extra: object) -> None:
        lines = ['store = "keyring"', f"keyring_service = {json.dumps(self.service)}"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
        self.aws.write_settings("\n".join(lines) + "\n")

    def run(self, *args: str, env: dict[str, str | None] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.aws.run(*args, env=env, timeout=timeout)

    def login(self, *args: str, profile: str = PROFILE, env: dict[str, str | None] | None = None,
              timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return self.run("login", "--profile", profile, *args, env=env, timeout=timeout)

    def signed_in(self, profile: str = PROFILE) -> str:
        """Sign in with the device code flow, the emulator approving at once."""
        auto = self.emu.config["auto_approve"]
        self.emu.set_auto_approve(True)
        try:
            out = ok(self.login(profile=profile))
        finally:
            self.emu.configure(auto_approve=auto)
        assert "signed in to" in out, out
        return out

    def export(self, profile: str = PROFILE, env: dict[str, str | None] | None = None,
               ) -> subprocess.CompletedProcess[str]:
        return self.run("export", "--profile", profile, env=env)

    # -- the store (the same Secret Service items credhelper uses) --------------------
    def store(self) -> KeyringStore:
        return KeyringStore(service=self.service)

    def token_record(self, key: str = SESSION) -> dict[str, Any] | None:
        raw = self.store().get(item("sso-token", key))
        return None if raw is None else dict(json.loads(raw))

    def set_token_expiry(self, when: datetime, key: str = SESSION) -> None:
        record = self.token_record(key)
        assert record is not None, "no token record"
        record["expires_at"] = iso_z(when)
        self.store().set(item("sso-token", key), json.dumps(record))

    def drop_cached_credentials(self, profile: str = PROFILE) -> None:
        self.store().delete(item("creds", profile))

    def browser(self, name: str = "browser", follow: bool = True) -> Browser:
        b = Browser(self.tmp / name, self.tmp / f"{name}.launches", self.tmp / f"{name}.fetched")
        b.path.write_text(BROWSER_SCRIPT.format(
            python=sys.executable, launches=str(b.launches_file), fetched=str(b.fetched_file),
            follow=follow,
        ))
        b.path.chmod(0o755)
        return b


@pytest.fixture
def emu() -> Iterator[SSOEmulator]:
    with SSOEmulator(authorize_timeout=300) as e:
        yield e


@pytest.fixture
def sso(aws_env: AwsEnv, secret_service: str, emu: SSOEmulator, tmp_path: Path) -> Sso:
    aws_env.env.update(AWS_ENDPOINT_URL_SSO=emu.url, AWS_ENDPOINT_URL_SSO_OIDC=emu.url)
    aws_env.write_config(SSO_CONFIG)
    world = Sso(aws_env, emu, secret_service, tmp_path)
    world.write_settings()
    return world


@pytest.fixture
def daemons(sso: Sso) -> Iterator[Daemons]:
    d = Daemons(sso.aws)
    yield d
    d.close()


def status_where(daemon: Daemon, check: Callable[[dict[str, Any]], bool],
                 profile: str = PROFILE) -> dict[str, Any] | None:
    """The daemon's status of `profile` if it satisfies `check`, else None."""
    for p in daemon.status()["profiles"]:
        if p["profile"] == profile:
            return dict(p) if check(p) else None
    return None


# ================================================================== sign-in flows


class TestDeviceCode:
    def test_device_flow_end_to_end(self, sso: Sso) -> None:
        """No browser here (no $BROWSER, no DISPLAY): device code. `login` prints the
        URL and code and polls; the test approves only once a poll was answered
        "pending"; then `export` returns the role credentials the emulator issued."""
        emu = sso.emu
        proc = sso.aws.popen("login", "--profile", PROFILE)
        codes = emu.wait_pending(timeout=90)
        assert len(codes) == 1, emu.state()["authorizations"]
        poll(lambda: any(e["error"] == "AuthorizationPendingException" for e in log_of(emu, "CreateToken")),
             timeout=90, what="login polling CreateToken while the authorization is pending")
        assert proc.poll() is None, "login ended before the authorization was approved"
        emu.approve(codes[0])
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, (out, err)
        assert err == ""
        url = DEVICE_URL.search(out)
        code = DEVICE_CODE.search(out)
        assert url and code, out
        assert url.group(1).startswith(emu.url + "/device?")
        assert url.group(2) == code.group(1) == codes[0]
        assert out.splitlines()[-1] == f"signed in to {SESSION}"

        state = emu.state()
        assert state["authorizations_started"] == state["device_authorizations"] == 1
        assert state["create_token_by_grant"][DEVICE_GRANT] >= 2  # pending, then the token
        [reg] = state["registrations"]
        assert reg["clientName"] == "credhelper" and reg["scopes"] == ["sso:account:access"]

        record = sso.token_record()
        assert record is not None and record["refresh_token"] and record["start_url"] == START_URL

        creds = exported(sso.export())
        state = emu.state()
        assert state["access_keys"] == [creds["AccessKeyId"]]
        [issued] = state["issued_credentials"]
        assert (issued["accountId"], issued["roleName"]) == (ACCOUNT, ROLE)
        assert state["counts"]["GetRoleCredentials"] == 1
        # served from the store the second time
        assert exported(sso.export())["AccessKeyId"] == creds["AccessKeyId"]
        assert emu.state()["counts"]["GetRoleCredentials"] == 1

    def test_no_browser_flag_prints_code_and_opens_nothing(self, sso: Sso) -> None:
        """A browser is available but `--no-browser`: device code, nothing launched."""
        browser = sso.browser()
        proc = sso.aws.popen("login", "--profile", PROFILE, "--no-browser", env=browser.env)
        codes = sso.emu.wait_pending(timeout=90)
        assert len(codes) == 1
        sso.emu.approve(codes[0])
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, (out, err)
        assert f"code: {codes[0]}" in out
        assert browser.launches() == []
        assert sso.emu.state()["device_authorizations"] == 1
        exported(sso.export())

    def test_device_code_not_approved_times_out(self, sso: Sso) -> None:
        """Nobody approves: exit 4 at `--timeout`, one stderr line, no token stored."""
        started = time.monotonic()
        proc = sso.login("--timeout", "3")
        elapsed = time.monotonic() - started
        login_error(proc, 4, "not approved in time", REMEDY)
        assert DEVICE_CODE.search(proc.stdout), proc.stdout
        assert elapsed < 60
        assert sso.token_record() is None
        error_line(sso.export(), 4, REMEDY)

    def test_legacy_profile(self, sso: Sso) -> None:
        """sso_start_url / sso_region in the profile itself (no sso-session)."""
        sso.signed_in(profile="legacy")
        creds = exported(sso.export("legacy"))
        [issued] = sso.emu.state()["issued_credentials"]
        assert issued["accessKeyId"] == creds["AccessKeyId"]
        assert (issued["accountId"], issued["roleName"]) == ("111111111111", "ReadOnly")
        assert sso.token_record(f"url:{LEGACY_URL}") is not None
        # another session: not signed in by the legacy login
        assert sso.token_record() is None
        error_line(sso.export(), 4, REMEDY)


class TestPkce:
    def test_pkce_flow_end_to_end(self, sso: Sso) -> None:
        """$BROWSER is set: authorization code + PKCE. The browser is launched once,
        follows /authorize back to credhelper's loopback callback, and `export` works."""
        sso.emu.set_auto_approve(True)
        browser = sso.browser()
        out = ok(sso.login(env=browser.env))
        [url] = browser.launches()
        assert url.startswith(sso.emu.url + "/authorize?")
        assert f"  {url}" in out.splitlines()
        assert out.splitlines()[-1] == f"signed in to {SESSION}"
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
        assert q["code_challenge"] and q["state"]
        redirect = urlsplit(q["redirect_uri"])
        assert (redirect.hostname, redirect.path) == ("127.0.0.1", "/oauth/callback") and redirect.port
        fetched = poll(browser.fetched, timeout=30, what="the browser's page load")
        assert fetched[0].startswith("200 http://127.0.0.1:") and "Signed in" in fetched[0], fetched

        state = sso.emu.state()
        assert state["authorizations_started"] == state["authorize_hits"] == 1
        assert state["device_authorizations"] == 0
        assert state["create_token_by_grant"] == {"authorization_code": 1}
        [reg] = state["registrations"]
        assert "authorization_code" in reg["grantTypes"]
        assert reg["redirectUris"] == ["http://127.0.0.1/oauth/callback"]

        creds = exported(sso.export())
        assert creds["AccessKeyId"] in sso.emu.state()["access_keys"]

    def test_pkce_denied(self, sso: Sso) -> None:
        """The user refuses in the browser: exit 4, one line, nothing stored."""
        browser = sso.browser()
        proc = sso.aws.popen("login", "--profile", PROFILE, env=browser.env)
        codes = sso.emu.wait_pending(timeout=90)
        assert len(codes) == 1
        sso.emu.deny(codes[0])
        out, err = proc.communicate(timeout=90)
        login_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), 4,
                    "refused", "access_denied", REMEDY)
        assert len(browser.launches()) == 1
        assert sso.token_record() is None


# ================================================================== existing tokens


class TestExistingToken:
    def test_valid_token_returns_at_once(self, sso: Sso) -> None:
        """A valid token: exit 0 at once, no browser, no authorization, no upstream call."""
        sso.signed_in()
        before = sso.emu.state()
        browser = sso.browser()
        started = time.monotonic()
        out = ok(sso.login(env=browser.env))
        assert time.monotonic() - started < 30
        assert out.splitlines()[0] == f"already signed in to {SESSION}"
        assert browser.launches() == []
        after = sso.emu.state()
        assert after["authorizations_started"] == 1
        assert after["counts"] == before["counts"]

    def test_refreshable_token_is_refreshed_without_browser(self, sso: Sso) -> None:
        """Only a refreshable token: the emulator has expired the access token and
        the stored record says so too (its expiry moved into the past; credhelper's
        clock is the real one). `login` refreshes (CreateToken, refresh_token grant),
        exits 0, opens nothing and starts no authorization."""
        sso.signed_in()
        old = sso.token_record()
        assert old is not None
        sso.emu.expire_access_tokens()
        sso.set_token_expiry(datetime.now(UTC) - timedelta(seconds=60))
        browser = sso.browser()
        out = ok(sso.login(env=browser.env))
        assert out.splitlines()[0] == f"already signed in to {SESSION}"
        assert browser.launches() == []
        state = sso.emu.state()
        assert state["authorizations_started"] == 1
        assert state["create_token_by_grant"]["refresh_token"] == 1
        new = sso.token_record()
        assert new is not None
        assert new["access_token"] != old["access_token"]
        assert new["refresh_token"] != old["refresh_token"]  # rotated
        assert parse_time(new["expires_at"]) > datetime.now(UTC) + timedelta(minutes=30)
        creds = exported(sso.export())
        assert creds["AccessKeyId"] in sso.emu.state()["access_keys"]
        assert [e["status"] for e in log_of(sso.emu, "GetRoleCredentials")] == [200]

    def test_silent_refresh_over_a_day(self, sso: Sso) -> None:
        """One sign-in, then a day of refreshes with rotating refresh tokens.

        credhelper runs on the real clock, so the day is simulated on the emulator's:
        before each export the emulator's clock moves 2 h forward, which kills (by its
        clock) every access token and role credential issued before. Two settings keep
        the two clocks' views consistent:
        - access tokens live 10 min, less than credhelper's 15-min REFRESH_WINDOW, so
          credhelper (real clock) sees every stored token as due for refresh and
          refreshes it before use, exactly as it would after 2 h of real time;
        - the cached role credentials are dropped from the store before each export:
          their expiration was stamped by the advanced emulator clock, hours in
          credhelper's future, so they would otherwise be served from cache.
        The session lasts 3 days, so each refresh must be accepted. 13 cycles cover
        26 h of session time; each must refresh once, with a new refresh token
        (the old one is revoked by the emulator), and no new authorization."""
        assert REFRESH_WINDOW > 600
        sso.emu.configure(access_token_lifetime=600, session_lifetime=3 * 86400)
        sso.signed_in()
        login_time = sso.emu.now()
        record = sso.token_record()
        assert record is not None
        previous = record["refresh_token"]
        akids: list[str] = []
        cycles = 13
        for i in range(cycles):
            sso.emu.advance(2 * 3600)
            sso.drop_cached_credentials()
            creds = exported(sso.export())
            akids.append(creds["AccessKeyId"])
            record = sso.token_record()
            assert record is not None
            assert record["refresh_token"] != previous, f"cycle {i}: refresh token not rotated"
            assert record["refresh_token"] in sso.emu.refresh_tokens, f"cycle {i}"
            assert previous not in sso.emu.refresh_tokens, f"cycle {i}: old refresh token still valid"
            previous = record["refresh_token"]

        state = sso.emu.state()
        assert state["now"] - login_time >= 24 * 3600
        assert state["authorizations_started"] == 1
        assert state["create_token_by_grant"]["refresh_token"] == cycles
        assert state["counts"]["GetRoleCredentials"] == cycles  # no 401 retry: refreshed before use
        assert state["refresh_tokens"] == 1
        assert len(set(akids)) == cycles and set(akids) <= set(state["access_keys"])
        for entry in state["log"]:
            if entry["operation"] in ("CreateToken", "GetRoleCredentials"):
                assert entry["status"] == 200, entry


# ================================================================== single flight


class TestConcurrentLogin:
    N = 20

    def test_twenty_logins_one_authorization_one_tab(self, sso: Sso, tmp_path: Path) -> None:
        """20 concurrent `login`s without a token, PKCE with a counting $BROWSER, the
        emulator holding the authorization until the test approves it: the test waits
        until 19 of them report waiting for the other login and exactly one
        authorization is pending, then approves. One authorization, one browser
        launch, one client registration, all 20 exit 0."""
        emu = sso.emu
        browser = sso.browser()
        outs = [tmp_path / f"login.{i}.out" for i in range(self.N)]
        errs = [tmp_path / f"login.{i}.err" for i in range(self.N)]
        procs = []
        for out, err in zip(outs, errs, strict=True):
            with open(out, "w") as o, open(err, "w") as e:
                procs.append(sso.aws.popen("login", "--profile", PROFILE, env=browser.env,
                                           stdout=o, stderr=e))

        def waiting() -> int:
            return sum("is in progress; waiting" in p.read_text() for p in outs)

        def all_queued() -> bool:
            for i, p in enumerate(procs):
                assert p.poll() is None, f"login {i} ended early: {errs[i].read_text()}"
            return waiting() == self.N - 1 and len(emu.wait_pending(timeout=0)) == 1

        poll(all_queued, timeout=240, interval=0.2,
             what=f"{self.N - 1} logins waiting and 1 pending authorization "
                  f"(waiting={waiting()}, pending={emu.wait_pending(timeout=0)})")
        assert len(browser.launches()) == 1
        assert emu.state()["authorizations_started"] == 1
        emu.approve("all")

        deadline = time.monotonic() + 180
        for i, p in enumerate(procs):
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
            assert p.returncode == 0, f"login {i}: rc={p.returncode} {errs[i].read_text()}"
        texts = [o.read_text() for o in outs]
        assert sum("open this URL" in t for t in texts) == 1
        assert sum("(by another credhelper login)" in t for t in texts) == self.N - 1
        assert len(browser.launches()) == 1
        state = emu.state()
        assert state["authorizations_started"] == 1
        assert len(state["registrations"]) == 1
        assert state["create_token_by_grant"] == {"authorization_code": 1}
        creds = exported(sso.export())
        assert creds["AccessKeyId"] in emu.state()["access_keys"]


# ================================================================== sessions that end


class TestSessionEnds:
    def test_revoked_refresh_token_needs_login(self, sso: Sso) -> None:
        """Access token expired and refresh token revoked: export exits 4 with the
        remedy; the dead refresh token is not tried again; and `login` then really
        signs in again (it must not say "already signed in" with a token the
        service refuses)."""
        sso.signed_in()
        sso.emu.expire_access_tokens()
        assert sso.emu.revoke_refresh_tokens() == 1
        error_line(sso.export(), 4, REMEDY)
        assert sso.emu.state()["create_token_by_grant"]["refresh_token"] == 1
        # again: nothing left to try, no upstream token call
        error_line(sso.export(), 4, REMEDY)
        assert sso.emu.state()["create_token_by_grant"]["refresh_token"] == 1

        out = sso.signed_in()
        assert "already signed in" not in out
        assert sso.emu.state()["authorizations_started"] == 2
        creds = exported(sso.export())
        assert creds["AccessKeyId"] in sso.emu.state()["access_keys"]

    def test_session_revoked_elsewhere(self, sso: Sso) -> None:
        """The session is ended at the portal while the stored token looks valid:
        export exits 4 once refresh fails, and the next `login` signs in again."""
        sso.signed_in()
        exported(sso.export())
        sso.drop_cached_credentials()
        sso.emu.revoke_sessions()
        error_line(sso.export(), 4, REMEDY)
        out = sso.signed_in()
        assert "already signed in" not in out
        exported(sso.export())
        assert sso.emu.state()["authorizations_started"] == 2

    def test_daemon_marks_login_required_and_stops(self, sso: Sso, daemons: Daemons) -> None:
        """With the daemon keeping the profile warm, the refresh token is revoked:
        the daemon's next scheduled refresh fails, it marks the profile
        login_required (`credhelper status --json`), and then it leaves the
        emulator alone.

        The refresh period: the daemon refreshes credentials when they stop being
        servable, at expiry minus the effective window. Role credentials that live
        455 s have an effective window of max(SERVE_FLOOR = 420, ...) = 420 s (the
        configured 900 s would leave no serving time), so they are served for 35 s:
        the daemon refreshes every ~35 s (minus up to 10 % jitter), the shortest
        period credhelper allows (it refuses credentials servable for < 30 s). A
        daemon that kept retrying would do so within 5 s (its first backoff), so
        silence over 3 such periods shows it is not spinning."""
        lifetime = 455
        window = effective_window(lifetime, DEFAULT_REFRESH_WINDOW)
        assert window == SERVE_FLOOR == 420
        period = lifetime - window
        emu = sso.emu
        emu.configure(role_credential_lifetime=lifetime)
        sso.write_settings(warm_profiles=[PROFILE])
        sso.signed_in()
        daemon = daemons.start()
        st = poll(lambda: status_where(daemon, lambda s: bool(s["access_key_id"])), timeout=90,
                  what="the daemon's first mint")
        assert st["access_key_id"] in emu.state()["access_keys"]
        assert st["next_refresh"] is not None and not st["login_required"]
        scheduled_in = (parse_time(st["next_refresh"]) - datetime.now(UTC)).total_seconds()
        assert scheduled_in <= period + 1, st

        emu.expire_access_tokens()
        emu.revoke_refresh_tokens()
        st = poll(lambda: status_where(daemon, lambda s: s["login_required"]),
                  timeout=max(scheduled_in, 0) + period + 90, what="the daemon marking login_required")
        assert st["next_refresh"] is None
        assert REMEDY in (st["last_error"] or ""), st
        status = json.loads(ok(sso.run("status", "--json")))
        [cli_st] = [p for p in status["profiles"] if p["profile"] == PROFILE]
        assert cli_st["login_required"] is True and cli_st["next_refresh"] is None
        daemon.wait_for("refresh", profile=PROFILE, outcome="login_required")

        state = emu.state()
        assert state["create_token_by_grant"].get("refresh_token", 0) == 1
        frozen = dict(state["counts"])
        # The refresh ran up to 10 % early (jitter): until the old credentials stop
        # being servable the daemon may still hand them out; then export says
        # login required, at once, without an upstream call.
        unservable_at = parse_time(st["expires_at"]) - timedelta(seconds=window)
        quiet_until = time.monotonic() + 3 * period + 5
        while time.monotonic() < quiet_until:
            assert counts(emu) == frozen, "the daemon called the emulator after login_required"
            time.sleep(0.5)
        assert datetime.now(UTC) > unservable_at
        error_line(sso.export(), 4, REMEDY)
        assert counts(emu) == frozen
        assert len(daemon.events("refresh", profile=PROFILE, outcome="login_required")) == 1
        assert daemon.running()

        # a login is what changes things: a real sign-in, and the daemon fetches again
        out = sso.signed_in()
        assert "already signed in" not in out
        assert "the credhelper daemon is fetching credentials now" in out
        old_akid = cli_st["access_key_id"]
        st = poll(lambda: status_where(
            daemon, lambda s: not s["login_required"] and s["access_key_id"] not in (None, old_akid)),
            timeout=90, what="the daemon minting after the new login")
        assert st["access_key_id"] in emu.state()["access_keys"]
        assert emu.state()["authorizations_started"] == 2


# ================================================================== faults


class TestFaults:
    def test_throttling_is_retried(self, sso: Sso) -> None:
        """Two TooManyRequestsException on GetRoleCredentials: botocore's standard
        retries absorb them; export succeeds on the third attempt."""
        sso.signed_in()
        sso.emu.inject("GetRoleCredentials", "TooManyRequestsException", times=2)
        creds = exported(sso.export())
        assert [e["status"] for e in log_of(sso.emu, "GetRoleCredentials")] == [429, 429, 200]
        assert creds["AccessKeyId"] in sso.emu.state()["access_keys"]

    def test_throttling_beyond_retries(self, sso: Sso) -> None:
        """More faults than retries: with valid cached credentials the user sees
        nothing (served from the store, no upstream call); without them, exit 6
        with one line after botocore's 4 attempts."""
        sso.signed_in()
        first = exported(sso.export())
        sso.emu.inject("GetRoleCredentials", "TooManyRequestsException", times=10)
        again = exported(sso.export())
        assert again["AccessKeyId"] == first["AccessKeyId"]
        assert sso.emu.state()["counts"]["GetRoleCredentials"] == 1
        assert sso.emu.state()["faults"] == {"GetRoleCredentials": 10}

        sso.drop_cached_credentials()
        error_line(sso.export(), 6, "TooManyRequestsException", "throttling")
        attempts = [e["status"] for e in log_of(sso.emu, "GetRoleCredentials")][1:]
        assert 3 <= len(attempts) < 10 and set(attempts) == {429}, attempts  # retried, then gave up
        assert sso.emu.state()["faults"] == {"GetRoleCredentials": 10 - len(attempts)}
        assert sso.emu.state()["authorizations_started"] == 1

    def test_unauthorized_refreshes_once(self, sso: Sso) -> None:
        """One UnauthorizedException on GetRoleCredentials: credhelper refreshes the
        token once (CreateToken, refresh_token grant) and succeeds."""
        sso.signed_in()
        old = sso.token_record()
        assert old is not None
        sso.emu.inject("GetRoleCredentials", "UnauthorizedException", times=1)
        creds = exported(sso.export())
        state = sso.emu.state()
        assert [e["status"] for e in log_of(sso.emu, "GetRoleCredentials")] == [401, 200]
        assert state["create_token_by_grant"]["refresh_token"] == 1
        assert state["authorizations_started"] == 1
        assert creds["AccessKeyId"] in state["access_keys"]
        new = sso.token_record()
        assert new is not None and new["access_token"] != old["access_token"]


# ================================================================== logout


class TestLogout:
    def test_logout_ends_session_and_wipes(self, sso: Sso) -> None:
        """logout calls the SSO Logout API once, wipes tokens, client registrations
        and cached credentials; afterwards export exits 4."""
        sso.signed_in()
        exported(sso.export())
        store = sso.store()
        assert store.get(item("sso-client", f"{SESSION}#device")) is not None
        out = ok(sso.run("logout", "--profile", PROFILE))
        assert f"signed out of {SESSION}" in out
        state = sso.emu.state()
        assert state["logouts"] == 1
        assert state["active_access_tokens"] == 0
        assert sso.token_record() is None
        assert store.get(item("sso-client", f"{SESSION}#device")) is None
        assert store.get(item("creds", PROFILE)) is None
        error_line(sso.export(), 4, REMEDY)
        # a new sign-in is a new authorization
        sso.signed_in()
        assert sso.emu.state()["authorizations_started"] == 2
        exported(sso.export())


# ================================================================== MFA (moto)


def sts_requests(moto: MotoServer, action: str) -> list[dict[str, Any]]:
    return [r for r in moto.recording.requests() if r["action"] == action]


def form_of(entry: dict[str, Any]) -> dict[str, str]:
    import base64

    body = entry.get("body") or ""
    raw = base64.b64decode(body) if entry.get("body_encoded") else str(body).encode()
    return {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}


def signing_akid(entry: dict[str, Any]) -> str:
    headers = {k.lower(): v for k, v in (entry.get("headers") or {}).items()}
    m = re.search(r"Credential=([^/]+)/", headers.get("authorization", ""))
    return m.group(1) if m else ""


class TestMfa:
    @pytest.fixture
    def mfa(self, aws_env: AwsEnv, secret_service: str) -> AwsEnv:
        aws_env.keyring_settings(secret_service)
        aws_env.write_config(MFA_CONFIG)
        aws_env.write_credentials(MFA_CREDENTIALS)
        return aws_env

    def run_on_tty(self, aws_env: AwsEnv, *args: str, typed: bytes = b"",
                   timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`credhelper *args` with a pseudo-terminal as stdin (what it prompts on);
        `typed` is what the user types."""
        master, slave = os.openpty()
        try:
            proc = aws_env.popen(*args, stdin=slave)
            os.close(slave)
            slave = -1
            if typed:
                os.write(master, typed)
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                raise AssertionError(f"{args} hung on a terminal: {out!r} {err!r}") from None
            return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        finally:
            if slave >= 0:
                os.close(slave)
            os.close(master)

    def test_mfa_login_without_terminal(self, mfa: AwsEnv, moto: MotoServer) -> None:
        """No terminal (Claude Code's awsAuthRefresh): exit 4, one line saying to
        run it in a terminal; nothing asked of STS."""
        proc = mfa.run("login", "--profile", MFA_PROFILE)
        login_error(proc, 4, "terminal", f"credhelper login --profile {MFA_PROFILE}")
        assert moto.calls() == 0
        error_line(mfa.run("export", "--profile", MFA_PROFILE), 4,
                   f"credhelper login --profile {MFA_PROFILE}")
        assert moto.calls() == 0

    def test_mfa_login_on_terminal_then_exports(self, mfa: AwsEnv, moto: MotoServer) -> None:
        """In a terminal, login asks for the code and mints an MFA session
        (GetSessionToken with SerialNumber/TokenCode, signed with the long-term
        keys); export then assumes the role from that session without a prompt,
        and a second export is served from the cache."""
        proc = self.run_on_tty(mfa, "login", "--profile", MFA_PROFILE, typed=b"123456\n")
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert f"MFA code for {MFA_SERIAL}:" in proc.stdout
        assert "MFA session for mfabase valid until" in proc.stdout
        [gst] = sts_requests(moto, "GetSessionToken")
        form = form_of(gst)
        assert form["SerialNumber"] == MFA_SERIAL and form["TokenCode"] == "123456"
        assert signing_akid(gst) == MFA_BASE_AKID
        session_akids = moto.access_key_ids_issued("GetSessionToken")
        assert session_akids

        # on a terminal too, to prove export never prompts (it would hang here)
        done = self.run_on_tty(mfa, "export", "--profile", MFA_PROFILE, timeout=90)
        creds = exported(done)
        [ar] = sts_requests(moto, "AssumeRole")
        assert form_of(ar)["RoleArn"] == MFA_ROLE_ARN
        assert signing_akid(ar) in session_akids
        assert creds["AccessKeyId"] in moto.access_key_ids_issued("AssumeRole")

        again = exported(mfa.run("export", "--profile", MFA_PROFILE))
        assert again["AccessKeyId"] == creds["AccessKeyId"]
        assert moto.calls("AssumeRole") == 1 and moto.calls("GetSessionToken") == 1

        # login again while the MFA session lasts: no prompt, no STS call
        proc = self.run_on_tty(mfa, "login", "--profile", MFA_PROFILE)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert "still valid" in proc.stdout and "MFA code" not in proc.stdout
        assert moto.calls("GetSessionToken") == 1
