"""The real Claude Code served by the daemon over its Unix socket.

The daemon runs on the host, with moto (the session `moto` fixture) as STS.
Claude Code and its `awsCredentialExport` helper run inside the harness's
loopback-only network namespace: the helper cannot reach moto, so every
credential it prints must come from the daemon through the socket, whose path
crosses the namespace boundary. The helper is given the daemon's HOME and file
paths so that the daemon sees the same configuration (else it answers
`fallback`).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from daemon_helpers import Daemon, Daemons, write_setup

if TYPE_CHECKING:
    from conftest import AwsEnv, ClaudeCode, ClaudeRun


@pytest.fixture
def daemons(aws_env: AwsEnv) -> Iterator[Daemons]:
    started = Daemons(aws_env)
    yield started
    started.close()


def helper_cmd(aws_env: AwsEnv) -> str:
    env = {k: aws_env.env[k] for k in (
        "CREDHELPER_SOCKET", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "CREDHELPER_CONFIG", "HOME",
    )}
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"{assignments} {shlex.quote(str(Path(aws_env.credhelper).absolute()))} export --profile dev"


def daemon_served(d: Daemon, run: ClaudeRun) -> set[str]:
    """The AccessKeyIds the daemon served, checked against the helper's runs:
    one daemon export line per helper run, each run printing what it served."""
    invocations = run.helper_invocations()
    lines = d.wait_for("export", count=invocations, profile="dev")
    assert len(lines) == invocations, (lines, run.report())
    assert {ln["served_by"] for ln in lines} <= {"mint", "memory"}, lines
    served = {ln["access_key_id"] for ln in lines}
    for out in run.helper_outputs():
        creds = out["Credentials"]
        assert creds["AccessKeyId"] in served, (creds["AccessKeyId"], served)
        assert creds["Expiration"].endswith("Z")
    return served


@pytest.mark.e2e
def test_claude_code_is_served_by_the_daemon(claude_code: ClaudeCode, aws_env: AwsEnv,
                                             daemons: Daemons) -> None:
    """Claude Code's helper is answered by the daemon outside the namespace;
    Bedrock requests are signed with the credentials the daemon minted on moto."""
    write_setup(aws_env)
    d = daemons.start()

    run = claude_code(helper_cmd(aws_env))

    assert run.passed, run.report()
    served = daemon_served(d, run)
    signing = run.bedrock_akids()
    assert signing and signing <= served, (signing, served, run.report())
    assert served <= aws_env.moto.access_key_ids_issued("AssumeRole")
    assert aws_env.moto.calls("AssumeRole") == 1
    assert d.events("export", profile="dev")[0]["served_by"] == "mint"


@pytest.mark.e2e
def test_claude_code_reruns_the_helper_after_a_403(claude_code: ClaudeCode, aws_env: AwsEnv,
                                                   daemons: Daemons) -> None:
    """Bedrock answers the first model call 403 ExpiredToken: Claude Code runs
    the helper again, the daemon answers again, and Claude Code succeeds."""
    write_setup(aws_env)
    d = daemons.start()

    run = claude_code(helper_cmd(aws_env), extra_env={"FAIL_FIRST": "1"})

    rc_file = Path(run.workdir or "", "claude.rc")
    assert rc_file.read_text().strip() == "0", run.report()
    assert run.passed, run.report()
    assert run.helper_invocations() >= 2, run.report()
    served = daemon_served(d, run)
    requests = run.bedrock_requests()
    assert len(requests) >= 2, run.report()
    signing = run.bedrock_akids()
    assert signing and signing <= served, (signing, served, run.report())
    assert aws_env.moto.calls("AssumeRole") == 1
