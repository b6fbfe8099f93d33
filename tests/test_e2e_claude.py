"""The real Claude Code with `credhelper export` as its `awsCredentialExport`."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import file_store_toml

if TYPE_CHECKING:
    from conftest import ClaudeCode, NetnsMoto

CREDHELPER = os.path.join(os.path.dirname(sys.executable), "credhelper")

PROFILE = "e2e-role"
SOURCE_AKID = "AKIAE2ESOURCE0000001"


@pytest.mark.e2e
def test_export_assume_role_signs_bedrock(
    claude_code: ClaudeCode, netns_moto: NetnsMoto, tmp_path: Path
) -> None:
    """Claude Code signs Bedrock requests with credentials credhelper got from AssumeRole."""
    aws = tmp_path / "aws"
    aws.mkdir()
    (aws / "config").write_text(
        f"[profile {PROFILE}]\n"
        "role_arn = arn:aws:iam::123456789012:role/e2e\n"
        "source_profile = e2e-base\n"
        "region = us-east-1\n"
        "\n"
        "[profile e2e-base]\n"
        "region = us-east-1\n"
    )
    (aws / "credentials").write_text(
        "[e2e-base]\n"
        f"aws_access_key_id = {SOURCE_AKID}\n"
        "aws_secret_access_key = e2e-source-secret\n"
    )
    settings = aws / "credhelper.toml"
    settings.write_text(file_store_toml(aws))
    pass_env = {
        "AWS_CONFIG_FILE": str(aws / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
        "CREDHELPER_CONFIG": str(settings),
        # nothing listens there: no daemon of the machine's user is asked
        "CREDHELPER_SOCKET": str(aws / "run" / "daemon.sock"),
        "AWS_ENDPOINT_URL_STS": netns_moto.url,
    }

    run = claude_code(
        f"{shlex.quote(CREDHELPER)} export --profile {PROFILE}",
        pass_env=pass_env,
        netns_setup=netns_moto.setup,
    )

    assert run.passed, run.report()
    moto = netns_moto.recording(run)
    assert moto.calls("AssumeRole") >= 1, run.report()
    issued = moto.access_key_ids_issued("AssumeRole")
    signing = run.bedrock_akids()
    assert signing, run.report()
    assert signing <= issued, f"signed with {signing}, moto issued {issued}\n{run.report()}"
    for out in run.helper_outputs():
        creds = out["Credentials"]
        assert creds["AccessKeyId"] in issued
        assert creds["Expiration"].endswith("Z")
