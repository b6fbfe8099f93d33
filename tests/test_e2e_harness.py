"""The e2e plumbing itself (tests/claude_harness): the fake Bedrock's SigV4
checks against botocore's signer and its event-stream framing against
botocore's decoder, then the real Claude Code with a fixed-output helper, with
a given settings file, and with a command line other than `claude -p`."""

from __future__ import annotations

import base64
import json
import shlex
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from claude_harness.fake_bedrock import Behaviour, CredentialBook, FakeBedrock, serve

if TYPE_CHECKING:
    from conftest import ClaudeCode, MotoServer

AKID = "ASIATESTHARNESS0001"
CREDS = {
    "Credentials": {
        "AccessKeyId": AKID,
        "SecretAccessKey": "harness-secret",
        "SessionToken": "harness-session-token",
        "Expiration": "2099-01-01T00:00:00Z",
    }
}
STREAM = "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"


def fixed_helper(creds: dict[str, Any]) -> str:
    return "printf '%s\\n' '" + json.dumps(creds) + "'"


# ------------------------------------------------------------------ fake Bedrock alone


@pytest.fixture
def bedrock(tmp_path: Path) -> Iterator[FakeBedrock]:
    (tmp_path / "export.1.out").write_text(json.dumps(CREDS))
    server = serve(Behaviour(log=str(tmp_path / "bedrock.jsonl"),
                             book=CredentialBook([str(tmp_path / "export.*.out")])))
    yield server
    server.shutdown()
    server.server_close()


def send(server: FakeBedrock, *, secret: str = "harness-secret", akid: str = AKID,
         token: str = "harness-session-token", body: bytes = b'{"messages": []}',
         sent_body: bytes | None = None) -> tuple[int, bytes, dict[str, Any]]:
    """A request signed by botocore; returns (status, body, the fake's log line)."""
    req = AWSRequest(method="POST", url=server.url + STREAM, data=body,
                     headers={"content-type": "application/json"})
    SigV4Auth(Credentials(akid, secret, token), "bedrock", "us-east-1").add_auth(req)
    prepared = req.prepare()
    wire = body if sent_body is None else sent_body
    http = urllib.request.Request(prepared.url, data=wire, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(http, timeout=10) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, payload = err.code, err.read()
    lines = Path(server.behaviour.log).read_text().splitlines()
    return status, payload, json.loads(lines[-1])


def test_fake_bedrock_accepts_what_the_helper_printed(bedrock: FakeBedrock) -> None:
    status, payload, logged = send(bedrock)

    assert status == 200
    assert (logged["credential"], logged["sigv4"], logged["token"]) == (AKID, "ok", "match")
    buffer = EventStreamBuffer()  # botocore checks both CRCs of every message
    buffer.add_data(payload)
    events = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in buffer]
    assert [e["type"] for e in events] == ["message_start", "content_block_start", "content_block_delta",
                                           "content_block_stop", "message_delta", "message_stop"]
    assert events[2]["delta"]["text"] == "Hello from fake Bedrock"


def test_fake_bedrock_fails_the_first_streaming_calls(tmp_path: Path) -> None:
    """fail_first=N: the first N streaming calls get 403 ExpiredTokenException, then 200."""
    (tmp_path / "export.1.out").write_text(json.dumps(CREDS))
    server = serve(Behaviour(log=str(tmp_path / "bedrock.jsonl"), fail_first=2,
                             book=CredentialBook([str(tmp_path / "export.*.out")])))
    try:
        answers = [send(server)[0] for _ in range(3)]
    finally:
        server.shutdown()
        server.server_close()
    assert answers == [403, 403, 200]


@pytest.mark.parametrize(("change", "sigv4", "token"), [
    ({"secret": "another-secret"}, "mismatch", "match"),
    ({"akid": "ASIANOHELPERPRINTED1"}, "unknown-akid", "-"),
    ({"token": "another-token"}, "ok", "mismatch"),
    ({"sent_body": b'{"messages": [1]}'}, "mismatch", "match"),
])
def test_fake_bedrock_refuses_other_signatures(bedrock: FakeBedrock, change: dict[str, Any],
                                               sigv4: str, token: str) -> None:
    status, payload, logged = send(bedrock, **change)

    assert status == 403, payload
    assert (logged["sigv4"], logged["token"]) == (sigv4, token)


# ------------------------------------------------------------------ the real Claude Code


@pytest.mark.e2e
def test_fixed_helper_signs_bedrock(claude_code: ClaudeCode) -> None:
    """Claude Code runs the helper and signs every Bedrock request with its output."""
    run = claude_code(fixed_helper(CREDS), extra_env={"EXPECT_AKID": AKID})

    assert run.passed, run.report()
    assert run.rc == 0
    assert run.helper_outputs()[0] == CREDS
    requests = run.bedrock_requests()
    assert requests, run.report()
    assert run.bedrock_akids() == {AKID}
    assert all(r["x-amz-security-token"] == "harness-session-token" for r in requests)
    assert all(r["sigv4"] == "ok" for r in requests)


@pytest.mark.e2e
def test_an_expired_token_answer_makes_claude_rerun_the_helper(claude_code: ClaudeCode) -> None:
    """fail_first=1: the first model call is refused (ExpiredToken); Claude Code
    drops its cached credentials, runs the helper again and succeeds."""
    run = claude_code(fixed_helper(CREDS), fail_first=1, expect_akid=AKID)

    assert run.passed, run.report()
    assert run.helper_invocations() >= 2, run.report()
    answers = [r["answer"] for r in run.bedrock_requests() if r["op"] == "invoke-with-response-stream"]
    assert answers[0] == 403 and answers[-1] == 200, run.report()


@pytest.mark.e2e
def test_the_namespace_cannot_reach_the_hosts_loopback(claude_code: ClaudeCode, moto: MotoServer) -> None:
    """Inside, the host's moto (127.0.0.1 outside) is unreachable: the setup
    exits 9 if it gets through, which would make the run a harness error."""
    probe = f"import urllib.request; urllib.request.urlopen('{moto.url}/moto-api/', timeout=3)"
    setup = f"if {shlex.quote(sys.executable)} -c {shlex.quote(probe)}; then exit 9; fi"

    run = claude_code(fixed_helper(CREDS), netns_setup=setup, expect_akid=AKID)

    assert run.passed, run.report()


@pytest.mark.e2e
def test_a_failing_setup_is_a_harness_error(claude_code: ClaudeCode) -> None:
    run = claude_code(fixed_helper(CREDS), netns_setup="echo no-server-here >&2; exit 7")

    assert not run.passed and run.rc == 2, run.report()
    assert "NETNS_SETUP failed (exit 7): no-server-here" in run.report()


@pytest.mark.e2e
def test_expecting_another_key_fails(claude_code: ClaudeCode) -> None:
    """The verdict is not always PASS: an AccessKeyId the run never signed with fails it."""
    run = claude_code(fixed_helper(CREDS), expect_akid="ASIANEVERPRINTED0001")

    assert not run.passed, run.report()
    assert run.rc == 1


@pytest.mark.e2e
def test_a_given_settings_file(claude_code: ClaudeCode, tmp_path: Path) -> None:
    """settings=: Claude reads that file; only its helper commands are wrapped
    (for logging), and Bedrock is switched on by the file alone."""
    settings = tmp_path / "settings.json"
    doc = {"awsCredentialExport": fixed_helper(CREDS),
           "env": {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1"}, "model": "sonnet"}
    settings.write_text(json.dumps(doc))

    run = claude_code(settings=settings, expect_akid=AKID)

    assert run.passed, run.report()
    assert run.helper_invocations() >= 1
    used = json.loads(Path(run.workdir or "", "home", ".claude", "settings.json").read_text())
    assert used["env"] == doc["env"] and used["model"] == "sonnet"
    assert Path(used["awsCredentialExport"]).name == "export.sh"


@pytest.mark.e2e
def test_a_given_settings_file_byte_for_byte(claude_code: ClaudeCode, tmp_path: Path) -> None:
    """wrap_helpers=False copies the file unchanged; Bedrock then accepts the
    credentials the test names."""
    settings = tmp_path / "settings.json"
    settings.write_bytes(json.dumps({"awsCredentialExport": fixed_helper(CREDS),
                                     "env": {"CLAUDE_CODE_USE_BEDROCK": "1"}}).encode() + b"\n")

    run = claude_code(settings=settings, wrap_helpers=False, credentials=[CREDS["Credentials"]],
                      expect_akid=AKID)

    assert run.passed, run.report()
    assert Path(run.workdir or "", "home", ".claude", "settings.json").read_bytes() == settings.read_bytes()
    assert run.helper_invocations() == 0  # nothing wrapped, nothing logged


@pytest.mark.e2e
def test_another_command_line(claude_code: ClaudeCode) -> None:
    """command=: a launcher that puts credentials in Claude's environment and
    execs it (the shape of `credhelper exec -- claude`), no awsCredentialExport."""
    c = CREDS["Credentials"]
    launcher = (
        'printf "%s" "$CREDS" > "$1/creds/launcher.json"; '
        'exec env -u CREDS AWS_ACCESS_KEY_ID="$AKID" AWS_SECRET_ACCESS_KEY="$SECRET" '
        'AWS_SESSION_TOKEN="$TOKEN" "$2" -p "$3"'
    )

    run = claude_code(
        command=["sh", "-c", launcher, "launcher", "{workdir}", "{claude}", "{prompt}"],
        pass_env={"CREDS": json.dumps(c), "AKID": AKID, "SECRET": c["SecretAccessKey"],
                  "TOKEN": c["SessionToken"]},
        expect_akid=AKID,
    )

    assert run.passed, run.report()
    assert run.helper_invocations() == 0
    assert run.bedrock_akids() == {AKID}
