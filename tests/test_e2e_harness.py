"""The e2e plumbing itself: the real Claude Code, a fixed-output helper, fake Bedrock."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import ClaudeCode

AKID = "ASIATESTHARNESS0001"
CREDS = {
    "Credentials": {
        "AccessKeyId": AKID,
        "SecretAccessKey": "harness-secret",
        "SessionToken": "harness-session-token",
        "Expiration": "2099-01-01T00:00:00Z",
    }
}


@pytest.mark.e2e
def test_fixed_helper_signs_bedrock(claude_code: ClaudeCode) -> None:
    """Claude Code runs the helper and signs every Bedrock request with its output."""
    helper = "printf '%s\\n' '" + json.dumps(CREDS) + "'"
    run = claude_code(helper, extra_env={"EXPECT_AKID": AKID})

    assert run.passed, run.report()
    assert run.rc == 0
    assert run.helper_outputs()[0] == CREDS
    requests = run.bedrock_requests()
    assert requests, run.report()
    assert run.bedrock_akids() == {AKID}
    assert all(r["x-amz-security-token"] == "harness-session-token" for r in requests)
