"""No IAM Identity Center secret leaves the Secret Service.

One scenario with the keyring store (the real Secret Service): sign-in (device
code and PKCE), exports in every format (direct and through the daemon), token
refreshes (every use refreshes: 10-min access tokens), a daemon's scheduled
refresh, a 401 answered by a refresh, failures (a sign-in nobody approves, a
revoked session), status, and logouts. Every stdout and stderr of every command
and the daemon's log are captured; then every file under the test's HOME
(recursively, as bytes) and all that output are searched for every access
token, refresh token, client secret, device code and authorization code the
emulator issued (taken from inside the emulator, which runs in this process),
whole or as any 24-character piece. The role credentials' SecretAccessKey and
SessionToken may appear in the stdout of successful exports, and nowhere else.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from daemon_helpers import Daemons, find_leaks, poll
from sso_emulator import SSOEmulator
from test_sso import Sso, status_where

if TYPE_CHECKING:
    from conftest import AwsEnv

CONFIG = """
[profile sso]
sso_session = corp
sso_account_id = 333333333333
sso_role_name = BedrockUser
region = us-east-1

[profile sso-readonly]
sso_session = corp
sso_account_id = 333333333333
sso_role_name = ReadOnly
region = us-east-1

[profile dev-admin]
sso_session = corp
sso_account_id = 111111111111
sso_role_name = Admin
region = us-east-1

[profile dev-readonly]
sso_session = corp
sso_account_id = 111111111111
sso_role_name = ReadOnly
region = us-east-1

[profile legacy]
sso_start_url = https://legacy.awsapps.com/start
sso_region = us-east-1
sso_account_id = 222222222222
sso_role_name = ReadOnly
region = us-east-1

[profile other]
sso_session = other
sso_account_id = 111111111111
sso_role_name = ReadOnly
region = us-east-1

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
sso_registration_scopes = sso:account:access

[sso-session other]
sso_start_url = https://other.awsapps.com/start
sso_region = us-east-1
"""


@dataclass
class Issued:
    """Every secret the emulator handed out, recorded as it answered."""

    tokens: set[str] = field(default_factory=set)  # access, refresh, id tokens
    access_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    client_secrets: set[str] = field(default_factory=set)
    device_codes: set[str] = field(default_factory=set)
    auth_codes: set[str] = field(default_factory=set)
    role_secrets: set[str] = field(default_factory=set)  # SecretAccessKey, SessionToken

    def token_like(self) -> set[str]:
        return (self.tokens | self.access_tokens | self.refresh_tokens | self.client_secrets
                | self.device_codes | self.auth_codes)


def spy_on(emu: SSOEmulator) -> Issued:
    """Wrap the emulator's issuing methods (it runs in this process)."""
    issued = Issued()
    issue, register = emu._issue, emu._op_RegisterClient
    start, authorize, role = emu._op_StartDeviceAuthorization, emu._op_Authorize, emu._op_GetRoleCredentials

    def _issue(sid: str, refresh: str | None = None) -> dict[str, Any]:
        out = issue(sid, refresh)
        issued.access_tokens.add(out["accessToken"])
        if out.get("refreshToken"):
            issued.refresh_tokens.add(out["refreshToken"])
        if out.get("idToken"):
            issued.tokens.add(out["idToken"])
        return out

    def _register(b: dict[str, Any]) -> dict[str, Any]:
        out = register(b)
        issued.client_secrets.add(out["clientSecret"])
        return out

    def _start(b: dict[str, Any]) -> dict[str, Any]:
        out = start(b)
        issued.device_codes.add(out["deviceCode"])
        return out

    def _authorize(q: dict[str, str]) -> Any:
        resp = authorize(q)
        query = parse_qs(urlsplit(resp[1].get("Location", "")).query)
        issued.auth_codes.update(query.get("code", []))
        return resp

    def _role(q: dict[str, str], token: str) -> Any:
        resp = role(q, token)
        if resp[0] == 200:
            creds = json.loads(resp[2])["roleCredentials"]
            issued.role_secrets.update((creds["secretAccessKey"], creds["sessionToken"]))
        return resp

    emu._issue = _issue  # type: ignore[method-assign]
    emu._op_RegisterClient = _register  # type: ignore[method-assign]
    emu._op_StartDeviceAuthorization = _start  # type: ignore[method-assign]
    emu._op_Authorize = _authorize  # type: ignore[method-assign]
    emu._op_GetRoleCredentials = _role  # type: ignore[method-assign]
    return issued


@dataclass
class Captured:
    label: str
    rc: int
    stdout: str
    stderr: str


@pytest.fixture
def world(aws_env: AwsEnv, secret_service: str, tmp_path: Path) -> Iterator[tuple[Sso, Issued]]:
    with SSOEmulator(access_token_lifetime=600, role_credential_lifetime=455) as emu:
        issued = spy_on(emu)
        aws_env.env.update(AWS_ENDPOINT_URL_SSO=emu.url, AWS_ENDPOINT_URL_SSO_OIDC=emu.url)
        aws_env.write_config(CONFIG)
        browser_dir = tmp_path / "browser"  # outside HOME: a browser's history is not ours
        browser_dir.mkdir()
        sso = Sso(aws_env, emu, secret_service, browser_dir)
        sso.write_settings()
        yield sso, issued


def regular_files(root: Path) -> list[Path]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if stat.S_ISREG(path.lstat().st_mode):
                out.append(path)
    return out


def test_no_secret_in_files_output_or_logs(world: tuple[Sso, Issued]) -> None:
    sso, issued = world
    emu, aws = sso.emu, sso.aws
    captured: list[Captured] = []

    def run(label: str, *args: str, env: dict[str, str | None] | None = None,
            expect: int | None = 0) -> Captured:
        done = aws.run(*args, env=env, timeout=240)
        c = Captured(label, done.returncode, done.stdout, done.stderr)
        captured.append(c)
        if expect is not None:
            assert c.rc == expect, f"{label}: rc={c.rc} stdout={c.stdout!r} stderr={c.stderr!r}"
        return c

    def popen(label: str, *args: str) -> tuple[str, subprocess.Popen[str]]:
        return label, aws.popen(*args)

    def finish(pending: tuple[str, subprocess.Popen[str]], expect: int = 0) -> Captured:
        label, proc = pending
        out, err = proc.communicate(timeout=240)
        c = Captured(label, proc.returncode, out, err)
        captured.append(c)
        assert c.rc == expect, f"{label}: rc={c.rc} stdout={out!r} stderr={err!r}"
        return c

    # -- sign in (device code; the test approves while login polls), export every format
    pending = popen("login sso", "login", "--profile", "sso")
    codes = emu.wait_pending(timeout=90)
    assert len(codes) == 1
    emu.approve(codes[0])
    finish(pending)
    for fmt in ("claude", "env", "process", "json"):
        run(f"export sso {fmt}", "export", "--profile", "sso", "--format", fmt)
    run("login sso again (refresh)", "login", "--profile", "sso")
    assert emu.state()["create_token_by_grant"].get("refresh_token", 0) >= 2

    # -- the daemon: exports through it, a PKCE sign-in it is nudged about, a scheduled refresh
    daemons = Daemons(aws)
    daemon = daemons.start()
    try:
        run("export sso (daemon)", "export", "--profile", "sso")
        run("export sso-readonly (daemon)", "export", "--profile", "sso-readonly")
        emu.set_auto_approve(True)
        browser = sso.browser()
        run("login legacy (pkce)", "login", "--profile", "legacy", env=browser.env)
        emu.set_auto_approve(False)
        assert len(browser.launches()) == 1 and issued.auth_codes
        run("export legacy (daemon)", "export", "--profile", "legacy")
        poll(lambda: status_where(daemon, lambda s: s["refreshes"] >= 2, profile="sso-readonly"),
             timeout=120, what="the daemon's scheduled refresh of sso-readonly")
        run("status --json", "status", "--json")
        run("status", "status")

        # -- a 401 answered by a token refresh (inside the daemon)
        emu.inject("GetRoleCredentials", "UnauthorizedException", times=1)
        before = emu.state()["create_token_by_grant"].get("refresh_token", 0)
        run("export dev-admin (401, refresh)", "export", "--profile", "dev-admin")
        assert emu.state()["create_token_by_grant"]["refresh_token"] > before

        # -- failures: a sign-in nobody approves; a session revoked at the portal
        run("login other (times out)", "login", "--profile", "other", "--timeout", "3", expect=4)
        run("logout legacy", "logout", "--profile", "legacy")
        assert emu.state()["logouts"] == 1
        emu.revoke_sessions()
        run("export dev-readonly (revoked)", "export", "--profile", "dev-readonly", expect=4)
        run("logout sso", "logout", "--profile", "sso")
        run("export sso (signed out)", "export", "--profile", "sso", expect=4)
        run("export legacy (signed out)", "export", "--profile", "legacy", expect=4)
        assert daemon.stop() == 0
        daemon.wait_for("stopped", timeout=10)
    finally:
        daemons.close()
    log = daemon.text()

    # -- what there is to find: the scan must not pass for want of material
    assert len(issued.access_tokens) >= 6, issued.access_tokens
    assert len(issued.refresh_tokens) >= 6
    assert len(issued.client_secrets) >= 2  # device and PKCE registrations
    assert issued.device_codes and issued.auth_codes
    assert len(issued.role_secrets) >= 10
    log_lines = [ln for ln in log.splitlines() if ln.strip()]
    assert len(log_lines) >= 10, log
    assert '"outcome": "minted"' in log and '"outcome": "login_required"' in log, log
    files = regular_files(aws.home)
    assert len(files) >= 5, files
    assert sum(len(c.stdout) + len(c.stderr) for c in captured) > 2000
    assert any(c.rc != 0 and c.stderr for c in captured)
    secrets = issued.token_like()
    role = issued.role_secrets
    # the scanner finds what it looks for (a positive control)
    exports = [c for c in captured if c.label.startswith("export") and c.rc == 0]
    assert len(exports) >= 7
    assert all(find_leaks(c.stdout, role) for c in exports), "exports print role secrets"
    some_token = next(iter(issued.refresh_tokens))
    assert find_leaks(f"xx{some_token[30:60]}yy", secrets)

    # -- the scan
    problems = []
    for c in captured:
        for stream, text in (("stdout", c.stdout), ("stderr", c.stderr)):
            leaks = find_leaks(text, secrets)
            if leaks:
                problems.append(f"{c.label} {stream}: tokens {leaks}")
            allowed = stream == "stdout" and c in exports
            leaks = [] if allowed else find_leaks(text, role)
            if leaks:
                problems.append(f"{c.label} {stream}: role credentials {leaks}")
    for where, text in [("daemon log", log)] + [
        (str(p.relative_to(aws.home)), p.read_bytes().decode("latin-1")) for p in files
    ]:
        leaks = find_leaks(text, secrets | role)
        if leaks:
            problems.append(f"{where}: {leaks}")
    assert not problems, "\n".join(problems)
    # the daemon's log was also among the files scanned
    assert any(p == daemon.log_path for p in files)
