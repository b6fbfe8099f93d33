"""The real Claude Code with only the settings file `credhelper setup claude` wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import file_store_toml

if TYPE_CHECKING:
    from conftest import ClaudeCode, NetnsMoto

CREDHELPER = os.path.join(os.path.dirname(sys.executable), "credhelper")
PROFILE = "e2e-setup"
SOURCE_AKID = "AKIAE2ESETUPSOURCE01"


@pytest.mark.e2e
def test_settings_written_by_setup_claude_sign_bedrock(
    claude_code: ClaudeCode, netns_moto: NetnsMoto, tmp_path: Path
) -> None:
    """`setup claude` into a fresh HOME; Claude Code runs with that settings file
    (nothing hand-written: no awsCredentialExport, no Bedrock env of the harness's)
    and signs Bedrock requests with credentials moto issued."""
    aws = tmp_path / "aws"
    aws.mkdir()
    (aws / "config").write_text(
        f"[profile {PROFILE}]\nrole_arn = arn:aws:iam::123456789012:role/e2e\n"
        "source_profile = e2e-base\nregion = us-east-1\n\n[profile e2e-base]\nregion = us-east-1\n"
    )
    (aws / "credentials").write_text(
        f"[e2e-base]\naws_access_key_id = {SOURCE_AKID}\naws_secret_access_key = e2e-setup-secret\n"
    )
    toml = aws / "credhelper.toml"
    toml.write_text(file_store_toml(aws))
    files = {
        "AWS_CONFIG_FILE": str(aws / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
        "CREDHELPER_CONFIG": str(toml),
        # nothing listens there: no daemon of the machine's user is asked
        "CREDHELPER_SOCKET": str(aws / "run" / "daemon.sock"),
    }
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [CREDHELPER, "setup", "claude", "--profile", PROFILE],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
             "LANG": "C.UTF-8", **files},
        cwd=home, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    settings_file = home / ".claude" / "settings.json"
    written = json.loads(settings_file.read_text())
    assert written["awsCredentialExport"] == f"{CREDHELPER} export"
    assert written["env"] == {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1",
                              "AWS_PROFILE": PROFILE}

    # The harness runs that file's command through a logging wrapper (the same
    # command string) and adds only ANTHROPIC_BEDROCK_BASE_URL (its fake Bedrock).
    run = claude_code(settings=str(settings_file),
                      pass_env={**files, "AWS_ENDPOINT_URL_STS": netns_moto.url},
                      netns_setup=netns_moto.setup)

    assert run.passed, run.report()
    assert run.helper_invocations() >= 1, run.report()
    assert run.workdir is not None
    assert Path(run.workdir, "helper", "export.cmd").read_text() == written["awsCredentialExport"]
    moto = netns_moto.recording(run)
    issued = moto.access_key_ids_issued("AssumeRole")
    assert issued, run.report()
    signing = run.bedrock_akids()
    assert signing and signing <= issued, f"signed with {signing}, moto issued {issued}"
    for out in run.helper_outputs():
        assert out["Credentials"]["AccessKeyId"] in issued
