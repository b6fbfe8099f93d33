"""`aws login` sessions (issue 13): the `login_session` source against an
emulator of the AWS Sign-In token endpoint (tests/signin_emulator.py, which
verifies every DPoP proof and rotates refresh tokens).

Real `credhelper export` subprocesses, a real daemon, and botocore's own
`LoginProvider` in a subprocess as the other user of the shared token file.
Time: the emulator's clock is real time plus an offset; subprocesses get the
same offset through libfaketime (FAKETIME_TIMESTAMP_FILE, monotonic time left
real, so every wait keeps its deadline).
"""

from __future__ import annotations

import glob
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import leakguard
import pytest
from conftest import file_store_toml, unavailable
from daemon_helpers import Daemons, parse_export
from signin_emulator import LOGIN_SESSION, SignInEmulator

from credhelper.sources.login_session import cache_key

if TYPE_CHECKING:
    from conftest import AwsEnv

PROFILE = "console"
CHAINED = "chained"
ROLE_ARN = "arn:aws:iam::123456789012:role/dev"
CONFIG = f"""
[profile {PROFILE}]
login_session = {LOGIN_SESSION}
region = us-east-1

[profile {CHAINED}]
role_arn = {ROLE_ARN}
source_profile = {PROFILE}
region = us-east-1
"""
REMEDY = f"run aws login --profile {PROFILE} (or credhelper login --profile {PROFILE})"
#: credhelper stops serving 15-minute credentials with 450 s left (effective window)
SERVED_FOR = 450


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        unavailable("libfaketime is not installed (apt-get install faketime)")
    return found[0]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class World:
    """The emulator, a HOME with the login profile and its token file, and a
    clock shared by the emulator and every subprocess started with `.env()`."""

    def __init__(self, aws: AwsEnv, emu: SignInEmulator, tmp: Path) -> None:
        self.aws, self.emu = aws, emu
        self.offset_file = tmp / "faketime-offset"
        self.offset_file.write_text("+0\n")
        self.cache_dir = aws.home / ".aws" / "login" / "cache"
        self.token_file = self.cache_dir / f"{cache_key(LOGIN_SESSION)}.json"
        aws.env["AWS_ENDPOINT_URL_SIGNIN"] = emu.url
        aws.write_config(CONFIG)
        aws.write_settings(file_store_toml(aws.home))
        self.daemons = Daemons(aws)

    def env(self, *, long_lived: bool = False) -> dict[str, str | None]:
        """libfaketime on the shared offset. libfaketime 0.9.10 fails every
        time.sleep (EINVAL) when it leaves monotonic time alone, and the lock
        waits sleep: so short-lived processes (whose offset does not change
        while they run) get a faked monotonic clock too; the daemon, which
        lives across advances and must keep its deadlines, a real one."""
        env: dict[str, str | None] = {
            "LD_PRELOAD": libfaketime(), "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_NO_CACHE": "1",
        }
        if long_lived:
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        return env

    def advance(self, seconds: int) -> None:
        self.emu.advance(seconds)
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(f"+{int(self.emu.offset)}\n")
        tmp.replace(self.offset_file)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.emu.now(), UTC)

    def sign_in(self, left: int | None = None) -> dict[str, Any]:
        """What `aws login` leaves: the token file (mode 0600), its credentials
        with `left` seconds to go (as if signed in a while ago)."""
        token = self.emu.sign_in()
        if left is not None:
            when = datetime.fromtimestamp(self.emu.now() + left, UTC)
            token["accessToken"]["expiresAt"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(json.dumps(token))
        self.token_file.chmod(0o600)
        return token

    def token(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.token_file.read_text())
        return data

    def export(self, profile: str = PROFILE) -> subprocess.CompletedProcess[str]:
        done = self.aws.run("export", "--profile", profile, env=self.env(), timeout=90)
        if done.returncode == 0:
            creds = parse_export(done.stdout)
            self.daemons.note(creds["SecretAccessKey"], creds["SessionToken"])
        return done

    def assert_file_is_current(self, granted: int = 900) -> None:
        """The file holds the last refresh's credentials and unused refresh token,
        with the expiry the emulator granted from its own clock (never a shifted
        one), mode 0600. Polled: a daemon's background refresh may be mid-write."""
        deadline = time.monotonic() + 10
        while True:
            token = self.token()
            akid, unused = token["accessToken"]["accessKeyId"], token["refreshToken"]
            issued_at = self.emu.state.issued_at.get(akid)
            expires = utc(token["accessToken"]["expiresAt"]).timestamp()
            ok = (akid == self.emu.state.issued[-1] and issued_at is not None
                  and abs(expires - (issued_at + granted)) <= 2
                  and self.emu.state.refresh_tokens[unused][1] is False)
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert ok, (akid, self.emu.state.issued[-3:], expires, issued_at)
        assert stat.S_IMODE(self.token_file.stat().st_mode) == 0o600


@pytest.fixture
def emu(leak_guard: Any) -> Iterator[SignInEmulator]:
    with SignInEmulator(on_secret=leakguard.secret) as e:
        yield e


@pytest.fixture
def world(aws_env: AwsEnv, emu: SignInEmulator, tmp_path: Path) -> Iterator[World]:
    w = World(aws_env, emu, tmp_path)
    yield w
    w.daemons.close()


def creds_of(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stderr)
    return parse_export(done.stdout)


# ------------------------------------------------------------------ 1. twelve hours


@pytest.mark.slow
def test_silent_refresh_for_twelve_hours_through_the_daemon(world: World) -> None:
    world.sign_in()
    daemon = world.daemons.start(env=world.env(long_lived=True))
    served: list[str] = []
    step = 300
    for _ in range(12 * 3600 // step - 1):
        world.advance(step)
        creds = creds_of(world.export())
        left = (utc(creds["Expiration"]) - world.now()).total_seconds()
        assert left > 420, f"served credentials with {left:.0f} s left"
        if not served or served[-1] != creds["AccessKeyId"]:
            served.append(creds["AccessKeyId"])
            assert creds["AccessKeyId"] in world.emu.state.issued
        world.assert_file_is_current()
    # about one refresh per 450 s of serving (the daemon's own, or for an export),
    # none refused: every proof valid, no refresh token used twice
    assert len(served) >= 12 * 3600 // 900 and world.emu.refreshes >= len(served) - 1, served
    assert not world.emu.state.refused, world.emu.state.refused
    row = daemon.profile_status(PROFILE)
    assert row["source"] == "login-session", row
    # the session's 12 hours are over: the next refresh is refused -> exit 4, the remedy
    world.advance(2 * step)
    done = world.export()
    assert done.returncode == 4 and done.stdout == "", done
    assert done.stderr.strip().endswith(REMEDY) and len(done.stderr.splitlines()) == 1
    assert world.emu.state.refused["TOKEN_EXPIRED"] >= 1


# ------------------------------------------------------------------ 2. one refresh for 20


def test_twenty_concurrent_exports_refresh_once(world: World) -> None:
    """No daemon: 20 processes race on the cross-process locks. The file's
    credentials have 400 s left: botocore alone would not refresh (> 300 s),
    credhelper must (it serves only with more than 450 s left)."""
    world.sign_in(left=400)
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: world.export(), range(20)))
    keys = {creds_of(done)["AccessKeyId"] for done in results}
    assert world.emu.refreshes == 1, world.emu.state
    assert keys == {world.emu.state.issued[-1]}
    world.assert_file_is_current()


def test_credentials_with_enough_left_are_served_from_the_file(world: World) -> None:
    token = world.sign_in(left=800)
    creds = creds_of(world.export())
    assert creds["AccessKeyId"] == token["accessToken"]["accessKeyId"]
    assert world.emu.refreshes == 0


# ------------------------------------------------------------------ 3. botocore alongside


BOTOCORE_USER = textwrap.dedent("""
    import sys, boto3
    creds = boto3.Session(profile_name=sys.argv[1]).get_credentials()
    assert creds.method == "login", creds.method
    print(creds.get_frozen_credentials().access_key)
""")


def botocore_user(world: World) -> str:
    """botocore's own LoginProvider (a boto3 Session) on the same file and clock:
    the access key id it ends up with."""
    env = world.aws.environ(world.env())
    done = subprocess.run([sys.executable, "-c", BOTOCORE_USER, PROFILE], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_botocore_and_credhelper_share_the_file_without_losing_the_session(world: World) -> None:
    world.sign_in(left=400)
    mine = creds_of(world.export())["AccessKeyId"]  # credhelper rotates the refresh token
    assert world.emu.refreshes == 1
    # botocore reads the file credhelper rewrote: fresh enough, it uses it as it is
    assert botocore_user(world) == mine
    # 11 minutes on: botocore refreshes by itself (< 300 s left), rotating the token again
    world.advance(660)
    theirs = botocore_user(world)
    assert theirs != mine and theirs == world.emu.state.issued[-1]
    # credhelper serves what botocore wrote, then refreshes with botocore's refresh token
    assert creds_of(world.export())["AccessKeyId"] == theirs
    world.advance(500)
    again = creds_of(world.export())["AccessKeyId"]
    assert again == world.emu.state.issued[-1] and again != theirs
    # and botocore keeps working on what credhelper wrote
    world.advance(300)
    assert botocore_user(world) in world.emu.state.issued
    assert not world.emu.state.refused, world.emu.state.refused  # no refresh token was lost
    world.assert_file_is_current()


# ------------------------------------------------------------------ 4. a dead session


@pytest.mark.parametrize("kill", ["revoke_all", "credentials_changed"])
def test_revoked_session_is_exit_4_with_the_remedy(world: World, kill: str) -> None:
    before = world.sign_in(left=100)
    getattr(world.emu, kill)()
    for profile in (PROFILE, CHAINED):  # a role chained from it needs the same sign-in
        done = world.export(profile)
        assert done.returncode == 4 and done.stdout == "", (done.returncode, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and done.stderr.strip().endswith(REMEDY), done.stderr
    assert world.token() == before  # the file is left for `aws login` to replace
    assert world.emu.refreshes == 0


def test_no_token_file_is_exit_4(world: World) -> None:
    done = world.export()
    assert done.returncode == 4 and done.stderr.strip().endswith(REMEDY), done.stderr


def test_a_role_chains_from_a_login_session(world: World) -> None:
    world.sign_in(left=100)
    creds = creds_of(world.export(CHAINED))
    assert world.emu.refreshes == 1 and world.aws.moto.calls("AssumeRole") == 1
    assert creds["AccessKeyId"] not in world.emu.state.issued  # moto's, from the login credentials


def test_tampered_proof_key_is_refused(world: World) -> None:
    """The emulator really checks the proof: a token file whose DPoP key is not
    the session's gets no credentials (and credhelper says to sign in again)."""
    world.sign_in(left=100)
    other = world.emu.sign_in()
    token = world.token()
    token["dpopKey"] = other["dpopKey"]
    world.token_file.write_text(json.dumps(token))
    done = world.export()
    assert done.returncode in (4, 6) and done.stdout == "", done.stderr
    assert world.emu.refreshes == 0 and world.emu.state.refused["invalid_grant"] == 1


# ------------------------------------------------------------------ `credhelper login`, doctor


FAKE_AWS = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "aws-cli/{version} Python/3.13.7 Linux/6.1 exe/x86_64"; exit 0; fi
echo "$@" >> "{log}"
exit {rc}
"""


def fake_aws(world: World, tmp: Path, version: str, rc: int = 0) -> tuple[dict[str, str], Path]:
    bindir, log = tmp / "bin", tmp / "aws-calls"
    bindir.mkdir(exist_ok=True)
    aws = bindir / "aws"
    aws.write_text(FAKE_AWS.format(version=version, log=log, rc=rc))
    aws.chmod(0o755)
    return {"PATH": f"{bindir}{os.pathsep}{world.aws.env['PATH']}"}, log


@pytest.mark.parametrize("profile", [PROFILE, CHAINED])
def test_login_runs_aws_login_for_the_session_profile(world: World, tmp_path: Path, profile: str) -> None:
    env, log = fake_aws(world, tmp_path, "2.32.4")
    done = world.aws.run("login", "--profile", profile, env=env)
    assert done.returncode == 0, done.stderr
    assert log.read_text().split() == ["login", "--profile", PROFILE]


@pytest.mark.parametrize("version", ["2.31.9", "1.42.0", None])
def test_login_explains_when_no_recent_aws_cli(world: World, tmp_path: Path, version: str | None) -> None:
    env, log = fake_aws(world, tmp_path, version or "0")
    if version is None:
        env = {"PATH": str(tmp_path / "empty")}
    done = world.aws.run("login", "--profile", PROFILE, env=env)
    assert done.returncode == 4 and done.stdout == "", done.stderr
    assert "needs AWS CLI 2.32 or later" in done.stderr and len(done.stderr.splitlines()) == 1
    assert done.stderr.strip().endswith(f"then run aws login --profile {PROFILE}")
    assert not log.exists()


def test_failed_aws_login_is_exit_4(world: World, tmp_path: Path) -> None:
    env, _ = fake_aws(world, tmp_path, "2.33.0", rc=255)
    done = world.aws.run("login", "--profile", PROFILE, env=env)
    assert done.returncode == 4 and "aws login exited with 255" in done.stderr


def test_doctor_warns_about_the_plaintext_dpop_key(world: World) -> None:
    world.sign_in()
    done = world.aws.run("doctor", "--profile", CHAINED, timeout=120)
    [line] = [ln for ln in done.stdout.splitlines() if "DPoP" in ln]
    assert line.startswith("! profile console is an aws login session") and str(world.token_file) in line


# ------------------------------------------------------------------ the fast path


def test_daemon_served_export_imports_neither_botocore_nor_awscrt(world: World) -> None:
    world.sign_in()
    world.daemons.start(env=world.env(long_lived=True))
    creds_of(world.export())  # the daemon holds credentials now
    env = world.aws.environ(world.env())
    done = subprocess.run([sys.executable, "-X", "importtime", world.aws.credhelper, "export",
                           "--profile", PROFILE], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = parse_export(done.stdout)
    world.daemons.note(printed["SecretAccessKey"], printed["SessionToken"])
    modules = [ln.split("|")[-1].strip() for ln in done.stderr.splitlines() if ln.startswith("import time:")]
    assert modules and not [m for m in modules if m.split(".")[0] in ("awscrt", "_awscrt", "botocore")]
    # and `status` shows the profile like any other, with its source
    status = world.aws.run("status", env=world.env())
    assert status.returncode == 0, status.stderr
    [row] = [ln for ln in status.stdout.splitlines() if ln.startswith(PROFILE + " ")]
    assert row.split()[1] == "login-session", status.stdout


def test_login_cache_directory_override(world: World) -> None:
    world.sign_in(left=800)
    # (inside the default one: the leak guard allows secrets only in ~/.aws/login/cache)
    moved = world.cache_dir / "moved"
    moved.mkdir()
    world.token_file.rename(moved / world.token_file.name)
    assert world.export().returncode == 4  # not where botocore looks by default any more
    env = {**world.env(), "AWS_LOGIN_CACHE_DIRECTORY": str(moved)}
    done = world.aws.run("export", "--profile", PROFILE, env=env)
    assert creds_of(done)["AccessKeyId"] == world.emu.state.issued[-1]


# ------------------------------------------------------------------ the emulator refuses


class Proofs:
    """DPoP proofs made by botocore's own builder (awscrt), for the emulator's checks."""

    def __init__(self, emu: SignInEmulator) -> None:
        from botocore.credentials import LoginCredentialFetcher

        self.emu = emu
        self.token = emu.sign_in()
        self.key = LoginCredentialFetcher._load_private_key(self.token)
        self.url = f"{emu.url}/v1/token"

    def proof(self, *, url: str | None = None, iat: float | None = None, jti: str | None = None) -> str:
        from botocore.credentials import _build_dpop_header

        return str(_build_dpop_header(self.key, url or self.url, uid=jti, ts=int(iat or self.emu.now())))

    def body(self) -> dict[str, str]:
        return {"clientId": self.token["clientId"], "refreshToken": self.token["refreshToken"],
                "grantType": "refresh_token"}


def test_emulator_accepts_a_valid_proof_once_per_refresh_token(emu: SignInEmulator) -> None:
    from signin_emulator import Refused

    p = Proofs(emu)
    out = emu.token(p.body(), p.proof(), p.url)
    assert out["accessToken"]["accessKeyId"] == emu.state.issued[-1] and emu.refreshes == 1
    with pytest.raises(Refused) as used:  # the rotated-away refresh token
        emu.token(p.body(), p.proof(), p.url)
    assert used.value.error == "invalid_grant"


@pytest.mark.parametrize("bad", ["replayed_jti", "stale_iat", "future_iat", "other_url", "bad_signature",
                                 "no_proof", "other_key"])
def test_emulator_refuses_a_bad_proof(emu: SignInEmulator, bad: str) -> None:
    from signin_emulator import Refused

    p = Proofs(emu)
    proof = p.proof()
    if bad == "replayed_jti":
        emu.token(p.body(), p.proof(jti="same"), p.url)
        p.token["refreshToken"] = emu.sign_in()["refreshToken"]  # irrelevant: the jti is refused first
        proof = p.proof(jti="same")
    elif bad == "stale_iat":
        proof = p.proof(iat=emu.now() - 120)
    elif bad == "future_iat":
        proof = p.proof(iat=emu.now() + 120)
    elif bad == "other_url":
        proof = p.proof(url="http://127.0.0.1:1/v1/token")
    elif bad == "bad_signature":
        head, payload, sig = proof.split(".")
        proof = f"{head}.{payload}.{('A' if sig[0] != 'A' else 'B')}{sig[1:]}"
    elif bad == "no_proof":
        proof = ""
    elif bad == "other_key":
        p.key = Proofs(emu).key
        proof = p.proof()
    before = emu.refreshes
    with pytest.raises(Refused) as refused:
        emu.token(p.body(), proof, p.url)
    assert emu.refreshes == before
    assert refused.value.error in ("invalid_request", "invalid_grant"), refused.value.message


def test_a_refresh_lost_to_another_program_is_answered_from_its_file(world: World) -> None:
    """botocore (no lock of ours) rotates the refresh token between credhelper's
    read of the file and its refresh call: the emulator refuses credhelper's
    (used) refresh token, and credhelper serves what the other program wrote."""
    import botocore.session
    from botocore.credentials import LoginCredentialFetcher
    from botocore.utils import JSONFileCache, LoginTokenLoader

    world.sign_in(left=100)

    def other_program(body: dict[str, Any]) -> None:
        world.emu.before_refresh = None
        session = botocore.session.Session()

        def client(service: str, **kwargs: Any) -> Any:
            return session.create_client(service, endpoint_url=world.emu.url, region_name="us-east-1",
                                         **kwargs)

        loader = LoginTokenLoader(JSONFileCache(str(world.cache_dir)))
        LoginCredentialFetcher(LOGIN_SESSION, loader, client).refresh_credentials()

    world.emu.before_refresh = other_program
    creds = creds_of(world.export())
    assert world.emu.refreshes == 1 and world.emu.state.refused["invalid_grant"] == 1
    assert creds["AccessKeyId"] == world.emu.state.issued[-1] == world.token()["accessToken"]["accessKeyId"]


def test_profiles_sharing_a_session_share_one_refresh(world: World) -> None:
    twin = f"\n[profile twin]\nlogin_session = {LOGIN_SESSION}\nregion = us-east-1\n"
    world.aws.write_config(CONFIG + twin)
    world.sign_in(left=100)
    first, twin = creds_of(world.export()), creds_of(world.export("twin"))
    assert first["AccessKeyId"] == twin["AccessKeyId"] == world.emu.state.issued[-1]
    assert world.emu.refreshes == 1


@pytest.mark.parametrize("content", ["{not json", json.dumps({"accessToken": {}}), "[]"])
def test_unreadable_token_cache_is_exit_4(world: World, content: str) -> None:
    world.sign_in()
    world.token_file.write_text(content)
    done = world.export()
    assert done.returncode == 4 and done.stdout == "" and done.stderr.strip().endswith(REMEDY), done.stderr
    assert "token cache" in done.stderr and len(done.stderr.splitlines()) == 1
