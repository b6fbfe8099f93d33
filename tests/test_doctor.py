"""`credhelper doctor`: each failure provoked once through the installed command.

Real parts: moto as STS (a second moto in IAM auth mode for rejected keys and
denied AssumeRole), a real daemon, the encrypted-file store, and a small local
HTTP server standing in for Bedrock (200 / 403 AccessDeniedException / no
answer) and for an STS that answers ExpiredToken (moto never does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.session
import pytest
from conftest import RESPONSES_LOG, free_port
from daemon_helpers import Daemons, write_setup

if TYPE_CHECKING:
    from conftest import AwsEnv

SSO_PROFILE = """
[profile sso-dev]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Dev
region = us-east-1

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
"""

EXPIRED = (b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
           b"<Type>Sender</Type><Code>ExpiredToken</Code><Message>The security token included "
           b"in the request is expired</Message></Error><RequestId>r-1</RequestId></ErrorResponse>")


class FakeAws:
    """Bedrock (`/inference-profiles`, `/foundation-models`) and STS (anything else)."""

    def __init__(self) -> None:
        self.bedrock = "ok"  # ok | denied | hang
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str]) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if fake.bedrock == "hang":
                    fake.release.wait(30)
                    return
                if fake.bedrock == "denied":
                    self._send(403, b'{"message":"User is not authorized to perform '
                               b'bedrock:ListInferenceProfiles"}', "application/json",
                               {"x-amzn-ErrorType": "AccessDeniedException"})
                    return
                key = "inferenceProfileSummaries" if "inference" in self.path else "modelSummaries"
                self._send(200, json.dumps({key: []}).encode(), "application/json", {})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send(403, EXPIRED, "text/xml", {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_aws() -> Iterator[FakeAws]:
    fake = FakeAws()
    yield fake
    fake.close()


@dataclass
class AuthMoto:
    url: str
    akid: str
    secret: str


@pytest.fixture(scope="module")
def auth_moto(moto_launcher: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthMoto]:
    """moto in IAM auth mode with one user and its access key (no policy)."""
    logdir = tmp_path_factory.mktemp("auth-moto")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(INITIAL_NO_AUTH_ACTION_COUNT="2",
               CREDHELPER_TEST_MOTO_RESPONSES=str(logdir / RESPONSES_LOG))
    port = free_port()
    with open(logdir / "moto.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, moto_launcher, "-H", "127.0.0.1", "-p", str(port)],
                                env=env, cwd=logdir, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        iam = botocore.session.Session().create_client(
            "iam", region_name="us-east-1", endpoint_url=url, aws_access_key_id="AKIASETUP",
            aws_secret_access_key="setup")
        deadline = time.monotonic() + 30
        while True:
            try:
                iam.create_user(UserName="doctor")
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        key = iam.create_access_key(UserName="doctor")["AccessKey"]
        yield AuthMoto(url, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def daemons(aws_env: AwsEnv) -> Iterator[Daemons]:
    started = Daemons(aws_env)
    yield started
    started.close()


@dataclass
class Doctor:
    rc: int
    stdout: str
    stderr: str

    @property
    def failed(self) -> list[str]:
        return [ln for ln in self.stdout.splitlines() if ln.startswith("✘")]

    @property
    def passed(self) -> list[str]:
        return [ln for ln in self.stdout.splitlines() if ln.startswith("✔")]

    def report(self) -> str:
        return f"rc={self.rc}\n{self.stdout}\n{self.stderr}"


def doctor(aws_env: AwsEnv, *args: str, env: dict[str, str | None] | None = None) -> Doctor:
    started = time.monotonic()
    r = aws_env.run("doctor", *args, env=env, timeout=60)
    assert time.monotonic() - started < 30, "doctor took too long"
    return Doctor(r.returncode, r.stdout, r.stderr)


def healthy(aws_env: AwsEnv, daemons: Daemons, fake: FakeAws, profile: str = "dev",
            extra_config: str = "") -> dict[str, str | None]:
    """Profile dev (AssumeRole on moto), Claude settings from setup claude, a daemon;
    returns the environment doctor runs with (Bedrock = the local fake)."""
    write_setup(aws_env, extra_config=extra_config)
    r = aws_env.run("setup", "claude", "--profile", profile)
    assert r.returncode == 0, r.stderr
    daemons.start()
    return {"AWS_ENDPOINT_URL_BEDROCK": fake.url}


def only_failure(d: Doctor, *parts: str) -> str:
    assert len(d.failed) == 1, d.report()
    line = d.failed[0]
    for part in parts:
        assert part in line, d.report()
    assert d.stderr.count("\n") == 1 and "check(s) failed" in d.stderr, d.report()
    return line


# -- a healthy setup ---------------------------------------------------------------------


def test_healthy_setup_prints_only_checks_and_exits_0(
    aws_env: AwsEnv, daemons: Daemons, fake_aws: FakeAws
) -> None:
    env = healthy(aws_env, daemons, fake_aws)
    d = doctor(aws_env, env=env)
    assert d.rc == 0, d.report()
    lines = d.stdout.splitlines()
    assert lines and all(ln.startswith("✔ ") for ln in lines), d.report()
    assert len(lines) == 10
    assert any("Bedrock in us-east-1 answers" in ln for ln in lines)
    assert any("arn:aws:sts::123456789012:assumed-role/dev/" in ln for ln in lines), d.report()
    assert d.stderr == ""


def test_json_is_one_document(aws_env: AwsEnv, daemons: Daemons, fake_aws: FakeAws) -> None:
    env = healthy(aws_env, daemons, fake_aws)
    fake_aws.bedrock = "denied"
    d = doctor(aws_env, "--json", env=env)
    doc = json.loads(d.stdout)
    assert d.rc == 6 and doc["exit_code"] == 6 and doc["ok"] is False
    assert doc["profile"] == "dev"
    by_name = {c["name"]: c for c in doc["checks"]}
    assert by_name["bedrock"]["ok"] is False and "bedrock:InvokeModel" in by_name["bedrock"]["fix"]
    assert by_name["sts"]["ok"] is True


# -- each failure once ---------------------------------------------------------------------


def test_missing_region(aws_env: AwsEnv) -> None:
    aws_env.write_config("[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/dev\n"
                         "source_profile = base\n[profile base]\n")
    d = doctor(aws_env, "--profile", "dev", env={"AWS_REGION": None})
    assert d.rc == 3, d.report()
    assert d.failed[0].startswith("✘ no region for profile dev"), d.report()
    assert "--region REGION" in d.failed[0]


def test_unknown_profile_with_a_suggestion(aws_env: AwsEnv) -> None:
    write_setup(aws_env)
    d = doctor(aws_env, "--profile", "deev")
    assert d.rc == 3, d.report()
    assert d.failed[0].startswith("✘ profile deev is not in"), d.report()
    assert "(did you mean dev?)" in d.failed[0]


def test_plaintext_keyring_backend(aws_env: AwsEnv, tmp_path: Path) -> None:
    write_setup(aws_env, store='store = "keyring"\n')
    stub = tmp_path / "plainstub.py"
    stub.write_text(
        "from keyring.backend import KeyringBackend\n"
        "class PlaintextKeyring(KeyringBackend):\n"
        "    priority = 0.5\n"
        "    def get_password(self, s, u): return None\n"
        "    def set_password(self, s, u, p): pass\n"
        "    def delete_password(self, s, u): pass\n"
    )
    d = doctor(aws_env, "--profile", "dev", env={
        "PYTHONPATH": str(tmp_path), "PYTHON_KEYRING_BACKEND": "plainstub.PlaintextKeyring"})
    assert d.rc == 5, d.report()
    line = d.failed[0]
    assert line.startswith("✘ the store cannot be used") and "plaintext" in line, d.report()
    assert "encrypted-file" in line


def test_wrong_encrypted_file_key_says_check_key_file(aws_env: AwsEnv) -> None:
    write_setup(aws_env)
    assert aws_env.run("export", "--profile", "dev").returncode == 0
    store = aws_env.home / "store.enc"
    before = store.read_bytes()
    key = aws_env.home / "store.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    d = doctor(aws_env, "--profile", "dev")
    assert d.rc == 5, d.report()
    line = d.failed[0]
    assert line.startswith("✘ the store cannot be used") and "cannot be decrypted" in line, d.report()
    assert f"check key_file in {aws_env.settings_file}" in line
    assert "logout" not in line and "do not delete the store" in line
    assert store.read_bytes() == before


def test_daemon_down(aws_env: AwsEnv, fake_aws: FakeAws) -> None:
    write_setup(aws_env)
    assert aws_env.run("setup", "claude", "--profile", "dev").returncode == 0
    d = doctor(aws_env, env={"AWS_ENDPOINT_URL_BEDROCK": fake_aws.url})
    assert d.rc == 3, d.report()
    only_failure(d, "✘ the credhelper daemon is not running", "credhelper service install")


def test_login_required(aws_env: AwsEnv, daemons: Daemons, fake_aws: FakeAws) -> None:
    env = healthy(aws_env, daemons, fake_aws, profile="sso-dev", extra_config=SSO_PROFILE)
    d = doctor(aws_env, env=env)
    assert d.rc == 4, d.report()
    only_failure(d, "✘ profile sso-dev needs a sign-in", "run credhelper login --profile sso-dev")


@pytest.mark.parametrize("case", ["unknown-key", "wrong-secret", "denied"])
def test_rejected_source_keys_and_denied_assume_role(
    aws_env: AwsEnv, daemons: Daemons, fake_aws: FakeAws, auth_moto: AuthMoto, case: str
) -> None:
    env = healthy(aws_env, daemons, fake_aws)
    akid, secret = {
        "unknown-key": ("AKIADOCTORUNKNOWN001", "doctor-unknown-secret-0123456789"),
        "wrong-secret": (auth_moto.akid, "doctor-wrong-secret-0123456789abc"),
        "denied": (auth_moto.akid, auth_moto.secret),
    }[case]
    aws_env.write_credentials(f"[base]\naws_access_key_id = {akid}\n"
                              f"aws_secret_access_key = {secret}\n")
    d = doctor(aws_env, env={**env, "AWS_ENDPOINT_URL_STS": auth_moto.url})
    assert d.rc == 6, d.report()
    expected = {
        "unknown-key": ("✘ AWS does not know the access key of profile base "
                        "(InvalidClientTokenId)", "replace the keys of profile base"),
        "wrong-secret": ("✘ the secret key of profile base is wrong (SignatureDoesNotMatch)",
                         "replace the keys of profile base"),
        "denied": ("✘ AssumeRole of arn:aws:iam::123456789012:role/dev was denied (AccessDenied)",
                   "trust policy"),
    }[case]
    only_failure(d, *expected)
    assert secret not in d.stdout + d.stderr


def test_expired_credentials(aws_env: AwsEnv, daemons: Daemons, fake_aws: FakeAws) -> None:
    env = healthy(aws_env, daemons, fake_aws)
    first = aws_env.run("export", "--profile", "dev")  # cached in the store
    assert first.returncode == 0, first.stderr
    # an STS that says the (cached, unexpired-looking) credentials expired
    d = doctor(aws_env, env={**env, "AWS_ENDPOINT_URL_STS": fake_aws.url})
    assert d.rc == 6, d.report()
    only_failure(d, "✘ STS says the credentials of profile dev expired (ExpiredToken)",
                 "check the clock", "credhelper logout --profile dev")


def test_bedrock_access_denied(aws_env: AwsEnv, daemons: Daemons, fake_aws: FakeAws) -> None:
    env = healthy(aws_env, daemons, fake_aws)
    fake_aws.bedrock = "denied"
    d = doctor(aws_env, env=env)
    assert d.rc == 6, d.report()
    only_failure(d, "✘ Bedrock in us-east-1 denied profile dev (AccessDeniedException)",
                 "bedrock:InvokeModel, bedrock:InvokeModelWithResponseStream, "
                 "bedrock:ListInferenceProfiles, bedrock:GetInferenceProfile, "
                 "bedrock:ListFoundationModels")


@pytest.mark.parametrize("how", ["no-answer", "refused"])
def test_bedrock_unreachable_within_the_deadline(
    aws_env: AwsEnv, daemons: Daemons, fake_aws: FakeAws, how: str
) -> None:
    env = healthy(aws_env, daemons, fake_aws)
    if how == "no-answer":
        fake_aws.bedrock = "hang"
    else:
        env["AWS_ENDPOINT_URL_BEDROCK"] = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    d = doctor(aws_env, env=env)
    assert time.monotonic() - started < 15, d.report()
    assert d.rc == 6, d.report()
    only_failure(d, "✘ cannot reach Bedrock in us-east-1", "AWS_ENDPOINT_URL_BEDROCK")


def test_settings_for_another_profile(aws_env: AwsEnv, daemons: Daemons, fake_aws: FakeAws) -> None:
    env = healthy(aws_env, daemons, fake_aws, profile="base")
    d = doctor(aws_env, "--profile", "dev", env=env)
    assert d.rc == 3, d.report()
    only_failure(d, "✘ Claude Code settings use profile base, not dev",
                 "run credhelper setup claude --profile dev")


def test_settings_for_another_installation(
    aws_env: AwsEnv, daemons: Daemons, fake_aws: FakeAws, tmp_path: Path
) -> None:
    env = healthy(aws_env, daemons, fake_aws)
    other = tmp_path / "old-venv" / "bin" / "credhelper"
    other.parent.mkdir(parents=True)
    other.write_text("#!/bin/sh\nexit 1\n")
    other.chmod(0o755)
    path = aws_env.home / ".claude" / "settings.json"
    data = json.loads(path.read_text())
    data["awsCredentialExport"] = f"{other} export"
    path.write_text(json.dumps(data))
    d = doctor(aws_env, env=env)
    assert d.rc == 3, d.report()
    only_failure(d, f"✘ awsCredentialExport runs {other}, not this installation",
                 "run credhelper setup claude --profile dev")


def test_access_key_in_the_environment(aws_env: AwsEnv, daemons: Daemons, fake_aws: FakeAws) -> None:
    env = healthy(aws_env, daemons, fake_aws)
    d = doctor(aws_env, env={**env, "AWS_ACCESS_KEY_ID": "AKIASTALEENV00000001",
                             "AWS_SECRET_ACCESS_KEY": "stale-env-secret-0123456789"})
    assert d.rc == 3, d.report()
    line = only_failure(d, "✘ AWS_ACCESS_KEY_ID is set in this environment",
                        "Bedrock signing still uses credhelper", "skips awsAuthRefresh",
                        "unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN")
    assert "stale-env-secret" not in line


def test_bearer_token_set(aws_env: AwsEnv, daemons: Daemons, fake_aws: FakeAws) -> None:
    env = healthy(aws_env, daemons, fake_aws)
    d = doctor(aws_env, env={**env, "AWS_BEARER_TOKEN_BEDROCK": "bedrock-api-key-abc"})
    assert d.rc == 3, d.report()
    only_failure(d, "✘ AWS_BEARER_TOKEN_BEDROCK is set in this environment",
                 "never runs awsCredentialExport", "unset AWS_BEARER_TOKEN_BEDROCK")
    assert "bedrock-api-key-abc" not in d.stdout
