"""`credhelper mint` end to end: the installed console script in a subprocess
with a minimal environment (no D-Bus, an unwritable HOME, no settings file),
against the recording moto server, a local GitHub-style ID token endpoint, and
a tiny STS stand-in for the errors moto never returns.

Every success is checked where the credentials land ($GITHUB_ENV, stdout) and
by what moto saw; every failure for its exit code, an empty stdout, one stderr
line, and that no ID token, request token or secret shows anywhere.
Also here: `CREDHELPER_STORE` for `export` in CI.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import boto3
import pytest
import yaml
from daemon_helpers import find_leaks, parse_export
from gh_oidc import SUB, StsErrors, TokenEndpoint, make_jwt, parse_github_env

from credhelper.mint.output import github_env_block, masks
from credhelper.mint.session import MAX_LEN, default_name, sanitize
from credhelper.model import Credentials, parse_time

if TYPE_CHECKING:
    from conftest import AwsEnv, MotoServer

CREDHELPER = os.path.join(os.path.dirname(sys.executable), "credhelper")
ROLE = "arn:aws:iam::123456789012:role/ci"
AMBIENT_AKID = "AKIAAMBIENTKEYS00001"
AMBIENT_SECRET = "ambientSecret/0123456789+abcdefghijklmn"
ENV_NAMES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_CREDENTIAL_EXPIRATION",
)


# ------------------------------------------------------------------ the pieces


def test_session_names_fit_sts() -> None:
    assert sanitize("octo-org/app", "-7301-2") == "octo-org_app-7301-2"
    long = sanitize("g/" + "x" * 100 + "/é", "-123456789")
    assert len(long) == MAX_LEN and long.endswith("-123456789")
    assert all(c.isascii() and (c.isalnum() or c in "_+=,.@-") for c in long)
    assert sanitize("a") == "a_"
    env = {"CI_PROJECT_PATH": "group/sub/project", "CI_PIPELINE_ID": "4211"}
    assert default_name(env, 0) == "group_sub_project-4211"
    assert default_name({}, 1700000000.5) == "credhelper-1700000000"


def test_github_env_block_survives_hostile_values() -> None:
    pairs = [("A", "x\nghadelimiter_y\nEVIL=1"), ("B", "plain"), ("C", "")]
    block = github_env_block(pairs)
    assert parse_github_env(block) == dict(pairs)
    assert "EVIL" not in parse_github_env(block)


def test_masks_cover_every_secret() -> None:
    creds = Credentials("ASIAKEY", "sec/ret", "tok+en", parse_time("2030-01-01T00:00:00Z"))
    assert masks(creds).splitlines() == [
        "::add-mask::ASIAKEY", "::add-mask::sec/ret", "::add-mask::tok+en",
    ]


def test_cli_choices_match_the_library() -> None:
    """cli/mint.py repeats them so that `credhelper --help` does not load botocore."""
    from credhelper.cli import mint as cli_mint
    from credhelper.mint import identity, output
    from credhelper.model import EXPORT_FORMATS, FORMATS

    assert cli_mint.FORMATS == output.FORMATS == (*FORMATS, "github-env")
    assert cli_mint.KINDS == identity.KINDS
    assert "github-env" not in EXPORT_FORMATS  # mint's alone


# ------------------------------------------------------------------ harness


class MintEnv:
    """A CI job's environment: minimal, HOME unwritable, no D-Bus, no settings."""

    def __init__(self, root: Path, moto: MotoServer) -> None:
        self.root, self.moto = root, moto
        if os.geteuid() == 0:  # root writes through chmod 500: put a file in the path
            (root / "blocker").write_text("not a directory\n")
            self.home = root / "blocker" / "home"
        else:
            self.home = root / "home"
            self.home.mkdir(mode=0o500)
        self.tmp = root / "tmp"
        self.tmp.mkdir()
        self.github_env = root / "github_env"
        self.github_env.write_text("EARLIER=from another step\n")
        self.env = {
            "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "AWS_ENDPOINT_URL_STS": moto.url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        with pytest.raises(OSError):
            (self.home / ".config" / "credhelper").mkdir(parents=True)

    def run(self, *args: str, env: Mapping[str, str | None] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        merged = {**self.env, **(env or {})}
        proc = subprocess.run(
            [CREDHELPER, "mint", *args], env={k: v for k, v in merged.items() if v is not None},
            cwd=self.root, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        # nothing written anywhere but the format's sink
        assert not os.path.lexists(self.home), "mint created HOME"
        assert list(self.tmp.iterdir()) == [], "mint wrote to TMPDIR"
        return proc

    def sts_bodies(self, action: str) -> list[dict[str, list[str]]]:
        out = []
        for req in self.moto.recording.requests():
            if req["action"] == action:
                body = req.get("body") or ""
                raw = base64.b64decode(body).decode() if req.get("body_encoded") else str(body)
                out.append(parse_qs(raw, keep_blank_values=True))
        return out

    def caller_arn(self, creds: Mapping[str, str]) -> str:
        sts = boto3.client(
            "sts", endpoint_url=self.moto.url, region_name="us-east-1",
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        return str(sts.get_caller_identity()["Arn"])


@pytest.fixture
def job(tmp_path: Path, moto: MotoServer) -> MintEnv:
    moto.reset()
    return MintEnv(tmp_path, moto)


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with TokenEndpoint() as ep:
        yield ep


def assert_failed(proc: subprocess.CompletedProcess[str], code: int, *secrets: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("credhelper: "), proc.stderr
    assert find_leaks(proc.stderr, secrets) == [], proc.stderr
    return lines[0]


def assert_quiet(proc: subprocess.CompletedProcess[str], *secrets: str) -> None:
    assert find_leaks(proc.stdout + proc.stderr, secrets) == [], (proc.stdout, proc.stderr)


# ------------------------------------------------------------------ GitHub Actions


def test_github_env_from_github_oidc(job: MintEnv, endpoint: TokenEndpoint) -> None:
    proc = job.run(
        "--role-arn", ROLE, "--format", "github-env", "--region", "eu-west-1",
        env={**endpoint.env(), "GITHUB_ENV": str(job.github_env)},
    )
    assert proc.returncode == 0, proc.stderr
    [status] = proc.stderr.splitlines()  # what was done: a status line, on stderr
    assert status.startswith("credhelper: credentials for ") and "written to $GITHUB_ENV" in status
    assert endpoint.audiences == ["sts.amazonaws.com"] and endpoint.bad_auth == 0
    [id_token] = endpoint.issued

    written = parse_github_env(job.github_env.read_text())
    assert set(written) == {"EARLIER", *ENV_NAMES}
    assert written["EARLIER"] == "from another step"
    assert written["AWS_REGION"] == written["AWS_DEFAULT_REGION"] == "eu-west-1"
    exp = parse_time(written["AWS_CREDENTIAL_EXPIRATION"])
    assert written["AWS_CREDENTIAL_EXPIRATION"].endswith("Z") and exp.timestamp() > time.time() + 600
    akid, secret = written["AWS_ACCESS_KEY_ID"], written["AWS_SECRET_ACCESS_KEY"]
    token = written["AWS_SESSION_TOKEN"]

    # masks first, before anything else could show the values
    out = proc.stdout.splitlines()
    assert out == [f"::add-mask::{akid}", f"::add-mask::{secret}", f"::add-mask::{token}"]
    assert_quiet(proc, id_token, endpoint.request_token)

    [body] = job.sts_bodies("AssumeRoleWithWebIdentity")
    assert body["RoleSessionName"] == ["octo-org_app-7301-2"]
    assert body["WebIdentityToken"] == [id_token]
    assert body["RoleArn"] == [ROLE]
    assert job.moto.calls() == 1
    assert akid in job.moto.access_key_ids_issued("AssumeRoleWithWebIdentity")
    creds = {"AccessKeyId": akid, "SecretAccessKey": secret, "SessionToken": token}
    assert job.caller_arn(creds).endswith(":assumed-role/ci/octo-org_app-7301-2")


def test_github_audience_and_claude_format(job: MintEnv, endpoint: TokenEndpoint) -> None:
    proc = job.run("--role-arn", ROLE, "--audience", "my-aud", "--session-name", "run 5/x",
                   "--duration", "1800", env=endpoint.env())
    assert proc.returncode == 0, proc.stderr
    creds = parse_export(proc.stdout, "claude")
    assert endpoint.audiences == ["my-aud"]
    [body] = job.sts_bodies("AssumeRoleWithWebIdentity")
    assert body["RoleSessionName"] == ["run_5_x"] and body["DurationSeconds"] == ["1800"]
    assert_quiet(proc, *endpoint.issued, endpoint.request_token)
    assert job.caller_arn(creds).endswith("/run_5_x")


# ------------------------------------------------------------------ GitLab, token file


def test_gitlab_variable_env_format(job: MintEnv) -> None:
    id_token = make_jwt({
        "iss": "https://gitlab.com", "aud": "sts.amazonaws.com",
        "sub": "project_path:group/sub/project:ref_type:branch:ref:main",
    })
    gitlab = {"GITLAB_CI": "true", "CI_PROJECT_PATH": "group/sub/project", "CI_PIPELINE_ID": "4211",
              "AWS_ID_TOKEN": id_token, "AWS_REGION": "us-west-2"}
    proc = job.run("--role-arn", ROLE, "--format", "env", env=gitlab)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    # what `eval "$(credhelper mint … --format env)"` sets
    shell = subprocess.run(  # the output on stdin: never in argv
        ["bash", "-c", 'eval "$(cat)"; printf "%s\\n" "$AWS_REGION" "$AWS_DEFAULT_REGION"'],
        input=proc.stdout, capture_output=True, text=True, check=True,
    )
    assert shell.stdout.split() == ["us-west-2", "us-west-2"]
    creds = parse_export("".join(ln + "\n" for ln in proc.stdout.splitlines() if "REGION" not in ln), "env")
    [body] = job.sts_bodies("AssumeRoleWithWebIdentity")
    assert body["RoleSessionName"] == ["group_sub_project-4211"]
    assert body["WebIdentityToken"] == [id_token]
    assert_quiet(proc, id_token)
    assert job.caller_arn(creds).endswith("/group_sub_project-4211")


def test_gitlab_named_variable(job: MintEnv) -> None:
    id_token = make_jwt({"iss": "https://gitlab.example.com", "sub": "x", "aud": "sts.amazonaws.com"})
    proc = job.run("--role-arn", ROLE, "--token-env", "MY_OIDC", "--format", "process",
                   env={"MY_OIDC": id_token, "AWS_ID_TOKEN": "ignored-when-told"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["Version"] == 1
    [body] = job.sts_bodies("AssumeRoleWithWebIdentity")
    assert body["WebIdentityToken"] == [id_token]
    assert_quiet(proc, id_token)


def test_token_file(job: MintEnv) -> None:
    id_token = make_jwt({
        "iss": "https://oidc.eks.eu-west-1.amazonaws.com/id/X", "aud": "sts.amazonaws.com",
        "sub": "system:serviceaccount:ci:runner",
    })
    path = job.root / "token"
    path.write_text(id_token + "\n")
    before = time.time()
    proc = job.run("--role-arn", ROLE, "--token-file", str(path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["Source"] == "mint:web-identity:file" and data["AccessKeyId"].startswith("ASIA")
    [body] = job.sts_bodies("AssumeRoleWithWebIdentity")
    assert body["WebIdentityToken"] == [id_token]
    name = body["RoleSessionName"][0]
    assert name.startswith("credhelper-") and int(name.split("-")[1]) >= int(before)
    assert_quiet(proc, id_token)


def test_projected_token_file_from_the_environment(job: MintEnv) -> None:
    """EKS sets AWS_WEB_IDENTITY_TOKEN_FILE: mint uses the token for --role-arn directly."""
    id_token = make_jwt({"iss": "https://oidc.eks", "sub": "system:serviceaccount:a:b", "aud": "sts"})
    path = job.root / "eks-token"
    path.write_text(id_token)
    proc = job.run("--role-arn", ROLE, env={"AWS_WEB_IDENTITY_TOKEN_FILE": str(path)})
    assert proc.returncode == 0, proc.stderr
    assert job.moto.calls("AssumeRoleWithWebIdentity") == 1 and job.moto.calls() == 1


# ------------------------------------------------------------------ ambient credentials


AMBIENT = {"AWS_ACCESS_KEY_ID": AMBIENT_AKID, "AWS_SECRET_ACCESS_KEY": AMBIENT_SECRET}


def test_ambient_assume_role_with_tags(job: MintEnv) -> None:
    proc = job.run("--role-arn", ROLE, "--tag", "team=ml", "--tag", "run=1", "--duration", "7200",
                   "--format", "process", "--session-name", "nightly", env=AMBIENT)
    assert proc.returncode == 0, proc.stderr
    creds = json.loads(proc.stdout)
    [body] = job.sts_bodies("AssumeRole")
    assert body["RoleSessionName"] == ["nightly"] and body["DurationSeconds"] == ["7200"]
    assert body["Tags.member.1.Key"] == ["team"] and body["Tags.member.1.Value"] == ["ml"]
    assert body["Tags.member.2.Key"] == ["run"]
    assert job.moto.calls() == 1  # long-term keys: no chain check needed
    assert_quiet(proc, AMBIENT_SECRET)
    assert job.caller_arn(creds).endswith(":assumed-role/ci/nightly")


def _role_session(moto: MotoServer) -> dict[str, str]:
    sts = boto3.client("sts", endpoint_url=moto.url, region_name="us-east-1",
                       aws_access_key_id=AMBIENT_AKID, aws_secret_access_key=AMBIENT_SECRET)
    out = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/runner", RoleSessionName="runner")
    c = out["Credentials"]
    return {"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
            "AWS_SESSION_TOKEN": c["SessionToken"]}


def test_chained_duration_above_an_hour_is_a_config_error(job: MintEnv) -> None:
    session = _role_session(job.moto)
    job.moto.recording.mark()
    proc = job.run("--role-arn", ROLE, "--duration", "7200", env=session)
    line = assert_failed(proc, 3, session["AWS_SECRET_ACCESS_KEY"], session["AWS_SESSION_TOKEN"])
    assert "3600" in line and line.endswith("use --duration 3600 or less")
    assert job.moto.calls("AssumeRole") == 0
    # an hour is fine for the same chain
    ok = job.run("--role-arn", ROLE, "--duration", "3600", env=session)
    assert ok.returncode == 0, ok.stderr
    assert_quiet(ok, session["AWS_SECRET_ACCESS_KEY"], session["AWS_SESSION_TOKEN"])


def test_tags_need_ambient_credentials(job: MintEnv, endpoint: TokenEndpoint) -> None:
    proc = job.run("--role-arn", ROLE, "--tag", "a=b", env=endpoint.env())
    line = assert_failed(proc, 2, *endpoint.issued, endpoint.request_token)
    assert "--tag" in line and line.endswith("drop --tag")
    assert job.moto.calls() == 0


# ------------------------------------------------------------------ errors


def test_no_identity_on_github_without_permission(job: MintEnv) -> None:
    proc = job.run("--role-arn", ROLE, env={"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "o/r"})
    line = assert_failed(proc, 3)
    assert "no CI identity found" in line
    for looked in ("ACTIONS_ID_TOKEN_REQUEST_URL", "$AWS_ID_TOKEN", "$GITLAB_OIDC_TOKEN",
                   "$AWS_WEB_IDENTITY_TOKEN_FILE", "ambient AWS credentials"):
        assert looked in line, line
    assert "permissions: id-token: write" in line
    assert job.moto.calls() == 0


def test_no_identity_elsewhere(job: MintEnv) -> None:
    line = assert_failed(job.run("--role-arn", ROLE), 3)
    assert "id-token: write" in line and "id_tokens" in line and "--token-file" in line
    line = assert_failed(job.run("--role-arn", ROLE, "--token-env", "CI_JOB_JWT_V2"), 3)
    assert "$CI_JOB_JWT_V2" in line and "$AWS_ID_TOKEN" not in line and line.endswith("sts.amazonaws.com)")


@pytest.mark.parametrize("status", [403, 500])
def test_token_endpoint_failing(job: MintEnv, status: int) -> None:
    with TokenEndpoint(status=status) as ep:
        proc = job.run("--role-arn", ROLE, "--format", "github-env",
                       env={**ep.env(), "GITHUB_ENV": str(job.github_env)})
        line = assert_failed(proc, 6, ep.request_token)
        assert len(ep.audiences) == (1 if status == 403 else 3)  # 5xx retried, 4xx not
    assert "GitHub ID token endpoint" in line
    assert ("id-token: write" in line) == (status == 403)
    assert job.github_env.read_text() == "EARLIER=from another step\n"
    assert job.moto.calls() == 0


def test_token_endpoint_redirect_is_not_followed(job: MintEnv) -> None:
    """urllib would carry the request token to wherever a redirect points."""
    with TokenEndpoint(status=302) as ep:
        proc = job.run("--role-arn", ROLE, env=ep.env())
    line = assert_failed(proc, 6, ep.request_token)
    assert "HTTP 302" in line
    assert ep.paths == ["/_apis/idtoken"]


def test_wrong_request_token_is_refused_not_leaked(job: MintEnv, endpoint: TokenEndpoint) -> None:
    env = {**endpoint.env(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "stale-" + endpoint.request_token}
    proc = job.run("--role-arn", ROLE, env=env)
    assert_failed(proc, 6, endpoint.request_token, env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"])
    assert endpoint.bad_auth == 1 and endpoint.issued == []


def _sts_error(job: MintEnv, endpoint: TokenEndpoint, code: str, status: int,
               message: str) -> tuple[str, StsErrors]:
    with StsErrors(code, status, message) as sts:
        proc = job.run("--role-arn", ROLE, env={**endpoint.env(), "AWS_ENDPOINT_URL_STS": sts.url})
    [id_token] = endpoint.issued
    line = assert_failed(proc, 6, id_token, endpoint.request_token)
    [body] = sts.bodies
    assert body["Action"] == ["AssumeRoleWithWebIdentity"] and body["WebIdentityToken"] == [id_token]
    return line, sts


def test_access_denied_names_sub_and_aud(job: MintEnv, endpoint: TokenEndpoint) -> None:
    # the stand-in echoes the token in its message: it must be scrubbed
    line, _ = _sts_error(job, endpoint, "AccessDenied", 403,
                         "Not authorized to perform sts:AssumeRoleWithWebIdentity {token}")
    assert "AccessDenied" in line
    assert f'sub "{SUB}"' in line and 'aud "sts.amazonaws.com"' in line
    assert line.endswith(f"allow that sub and aud in the trust policy of {ROLE}")


def test_invalid_identity_token_hint(job: MintEnv, endpoint: TokenEndpoint) -> None:
    line, _ = _sts_error(job, endpoint, "InvalidIdentityToken", 400,
                         "No OpenIDConnect provider found in your account for "
                         "https://token.actions.githubusercontent.com")
    assert "InvalidIdentityToken" in line and "IAM OIDC identity provider" in line
    assert "https://token.actions.githubusercontent.com" in line and "--audience" in line


def test_throttling_is_retried_with_backoff(job: MintEnv) -> None:
    """Two Throttling answers, then moto: one mint, three requests, exit 0."""
    with StsErrors("Throttling", 400, "Rate exceeded", times=2, forward=job.moto.url) as sts:
        proc = job.run("--role-arn", ROLE, "--session-name", "throttled",
                       env={**AMBIENT, "AWS_ENDPOINT_URL_STS": sts.url})
    assert proc.returncode == 0, proc.stderr
    assert [b["Action"] for b in sts.bodies] == [["AssumeRole"]] * 3
    assert job.moto.calls("AssumeRole") == 1
    assert job.caller_arn(parse_export(proc.stdout)).endswith("/throttled")


def test_github_env_needs_github_env(job: MintEnv, endpoint: TokenEndpoint) -> None:
    line = assert_failed(job.run("--role-arn", ROLE, "--format", "github-env", env=endpoint.env()), 3)
    assert "$GITHUB_ENV" in line
    assert endpoint.audiences == [] and job.moto.calls() == 0  # checked before asking anyone


def test_bad_arguments_are_usage_errors(job: MintEnv) -> None:
    line = assert_failed(job.run("--role-arn", "ci-role", env=AMBIENT), 2, AMBIENT_SECRET)
    assert "arn:aws:iam::ACCOUNT:role/NAME" in line
    line = assert_failed(job.run("--role-arn", ROLE, "--tag", "novalue", env=AMBIENT), 2)
    assert "KEY=VALUE" in line
    policy = job.root / "policy.json"
    policy.write_text("{not json")
    assert_failed(job.run("--role-arn", ROLE, "--policy-file", str(policy), env=AMBIENT), 3)
    assert job.moto.calls() == 0


def test_session_policies_are_sent(job: MintEnv) -> None:
    policy = job.root / "policy.json"
    statement = {"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"}
    doc = {"Version": "2012-10-17", "Statement": [statement]}
    policy.write_text(json.dumps(doc))
    arn = "arn:aws:iam::aws:policy/AmazonBedrockReadOnly"
    proc = job.run("--role-arn", ROLE, "--policy-file", str(policy), "--policy-arn", arn, env=AMBIENT)
    assert proc.returncode == 0, proc.stderr
    [body] = job.sts_bodies("AssumeRole")
    assert json.loads(body["Policy"][0]) == doc and body["PolicyArns.member.1.arn"] == [arn]


def test_hung_sts_ends_at_the_deadline(job: MintEnv) -> None:
    with socket.socket() as hole:  # accepts connections (backlog), never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        started = time.monotonic()
        proc = job.run("--role-arn", ROLE, "--timeout", "3", env={**AMBIENT, "AWS_ENDPOINT_URL_STS": url})
        took = time.monotonic() - started
    line = assert_failed(proc, 6, AMBIENT_SECRET)
    assert "3 s" in line and "--timeout" in line
    assert took < 10, took


def test_settings_store_and_keyring_are_never_touched(job: MintEnv) -> None:
    """A broken settings file and a bogus CREDHELPER_STORE do not matter to mint."""
    bad = job.root / "settings.toml"
    bad.write_text("store = [broken\n")
    proc = job.run("--role-arn", ROLE, env={
        **AMBIENT, "CREDHELPER_CONFIG": str(bad), "CREDHELPER_STORE": "bogus",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    })
    assert proc.returncode == 0, proc.stderr
    parse_export(proc.stdout)


# ------------------------------------------------------------------ CREDHELPER_STORE for export


def _ci_role_profile(aws_env: AwsEnv) -> dict[str, str | None]:
    aws_env.write_config(f"""
        [profile ci]
        role_arn = {ROLE}
        credential_source = Environment
        """)
    return {**AMBIENT, "CI": "true", "DBUS_SESSION_BUS_ADDRESS": None}


def test_export_in_ci_with_memory_store(aws_env: AwsEnv) -> None:
    env = _ci_role_profile(aws_env)
    proc = aws_env.run("export", "--profile", "ci", env={**env, "CREDHELPER_STORE": "memory"})
    assert proc.returncode == 0, proc.stderr
    parse_export(proc.stdout)
    assert aws_env.moto.calls("AssumeRole") == 1


def test_export_in_ci_without_keyring_mentions_the_override(aws_env: AwsEnv) -> None:
    env = _ci_role_profile(aws_env)
    proc = aws_env.run("export", "--profile", "ci", env=env)
    line = assert_failed(proc, 5, AMBIENT_SECRET)
    assert "CREDHELPER_STORE=memory" in line
    outside = aws_env.run("export", "--profile", "ci", env={**env, "CI": None})
    assert outside.returncode == 5 and "CREDHELPER_STORE" not in outside.stderr


def test_credhelper_store_overrides_the_file_and_is_checked(aws_env: AwsEnv) -> None:
    env = _ci_role_profile(aws_env)
    aws_env.write_settings('store = "keyring"\n')
    ok = aws_env.run("export", "--profile", "ci", env={**env, "CREDHELPER_STORE": "memory"})
    assert ok.returncode == 0, ok.stderr
    line = assert_failed(aws_env.run("export", "--profile", "ci", env={**env, "CREDHELPER_STORE": "disk"}), 3)
    assert "CREDHELPER_STORE" in line and "memory" in line


# ------------------------------------------------------------------ the documented snippets

DOCS = Path(__file__).resolve().parent.parent / "docs" / "ci.md"
ACTION_README = Path(__file__).resolve().parent.parent / "packaging" / "github-action" / "README.md"


def _blocks(path: Path, lang: str) -> list[str]:
    """Fenced blocks of `lang`, also those indented under a list item."""
    found = re.findall(rf"^( *)```{lang}\n(.*?)^\1```", path.read_text(), flags=re.S | re.M)
    return [textwrap.dedent(body) for _, body in found]


def test_documented_policies_are_json() -> None:
    docs = [*_blocks(DOCS, "json"), *_blocks(ACTION_README, "json")]
    assert len(docs) == 3  # the GitLab trust policy; the GitHub trust and Bedrock policies
    for doc in docs:
        assert json.loads(doc)["Version"] == "2012-10-17"


def test_documented_gitlab_job_works(job: MintEnv) -> None:
    """The .gitlab-ci.yml snippet in docs/ci.md, run as GitLab would run its script."""
    [snippet] = [b for b in _blocks(DOCS, "yaml") if "id_tokens:" in b]
    [spec] = yaml.safe_load(snippet).values()
    assert spec["id_tokens"] == {"AWS_ID_TOKEN": {"aud": "sts.amazonaws.com"}}
    [line] = [ln for ln in spec["script"] if "credhelper mint" in ln]
    id_token = make_jwt({"iss": "https://gitlab.com", "aud": "sts.amazonaws.com",
                         "sub": "project_path:group/project:ref_type:branch:ref:main"})
    env = {**job.env, **spec["variables"], "AWS_ID_TOKEN": id_token,
           "CI_PROJECT_PATH": "group/project", "CI_PIPELINE_ID": "99"}
    shell = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", f'{line}\nprintf "%s\\n" "$AWS_ACCESS_KEY_ID" "$AWS_REGION"'],
        env=env, capture_output=True, text=True, timeout=60, cwd=job.root,
    )
    assert shell.returncode == 0, shell.stderr
    akid, region = shell.stdout.split()
    assert region == spec["variables"]["AWS_REGION"]
    assert akid in job.moto.access_key_ids_issued("AssumeRoleWithWebIdentity")
    [body] = job.sts_bodies("AssumeRoleWithWebIdentity")
    assert body["RoleArn"] == [spec["variables"]["ROLE_ARN"]] and body["WebIdentityToken"] == [id_token]
    assert body["RoleSessionName"] == ["group_project-99"]
    assert_quiet(shell, id_token)
