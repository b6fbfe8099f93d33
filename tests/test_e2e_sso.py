"""The real Claude Code signing in through IAM Identity Center with credhelper:
`awsAuthRefresh` = `credhelper login --no-browser`, `awsCredentialExport` =
`credhelper export`, against the SSO emulator running inside the harness's
network namespace (the helper cannot reach the host's loopback)."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import file_store_toml

if TYPE_CHECKING:
    from conftest import ClaudeCode, ClaudeRun

CREDHELPER = os.path.join(os.path.dirname(sys.executable), "credhelper")
EMULATOR = Path(__file__).resolve().parent / "sso_emulator.py"
PORT = 5056
EMU_URL = f"http://127.0.0.1:{PORT}"
STATE_FILE = "emu.state.json"

CONFIG = """
[profile sso]
sso_session = corp
sso_account_id = 333333333333
sso_role_name = BedrockUser
region = us-east-1

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
sso_registration_scopes = sso:account:access
"""

#: NETNS_SETUP: start the emulator inside the namespace (its pid recorded so the
#: harness ends it: SIGTERM makes it write its state file), wait for its port.
SETUP = (
    f'(cd "$W" && exec {shlex.quote(sys.executable)} {shlex.quote(str(EMULATOR))} --port {PORT}'
    f' --port-file "$W/emu.port" --auto-approve --state-file "$W/{STATE_FILE}"'
    ' >"$W/emu.log" 2>&1) & echo $! >> "$NETNS_PIDFILE"\n'
    'for _ in $(seq 600); do [ -s "$W/emu.port" ] && break; sleep 0.05; done\n'
    '[ -s "$W/emu.port" ] || { cat "$W/emu.log" >&2; exit 1; }\n'
)


def emulator_state(run: ClaudeRun, timeout: float = 30) -> dict[str, Any]:
    """The emulator's final state: written when the harness's cleanup ends it,
    which may be just after run.sh returns."""
    assert run.workdir, run.report()
    path = Path(run.workdir, STATE_FILE)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            log = Path(run.workdir, "emu.log")
            raise AssertionError(
                f"no {path} within {timeout} s; emu.log: "
                f"{log.read_text() if log.exists() else '-'}\n{run.report()}"
            )
        time.sleep(0.1)
    state: dict[str, Any] = json.loads(path.read_text())
    return state


@pytest.mark.e2e
def test_claude_code_signs_in_via_sso_and_signs_bedrock(
    claude_code: ClaudeCode, tmp_path: Path
) -> None:
    """Claude Code's default chain fails (no credentials), so it runs
    awsAuthRefresh: `credhelper login --no-browser` signs in with the device code
    (the emulator approves at once) and prints the URL and code; then
    awsCredentialExport gets role credentials from GetRoleCredentials, and every
    Bedrock request is signed with credentials the emulator issued."""
    aws = tmp_path / "aws"
    home = tmp_path / "home"
    aws.mkdir()
    home.mkdir()
    (aws / "config").write_text(CONFIG)
    settings = aws / "credhelper.toml"
    # An encrypted file with a key file: the keyring's D-Bus need not cross the netns.
    settings.write_text(file_store_toml(aws))
    env = {
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(aws / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
        "CREDHELPER_CONFIG": str(settings),
        # nothing listens there: no daemon of the machine's user is asked
        "CREDHELPER_SOCKET": str(aws / "run" / "daemon.sock"),
        "AWS_ENDPOINT_URL_SSO": EMU_URL,
        "AWS_ENDPOINT_URL_SSO_OIDC": EMU_URL,
    }
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    cli = shlex.quote(CREDHELPER)

    run = claude_code(
        f"{prefix} {cli} export --profile sso",
        netns_setup=SETUP,
        extra_env={"AUTH_REFRESH_CMD": f"{prefix} {cli} login --no-browser --profile sso"},
    )
    state = emulator_state(run)

    assert run.passed, run.report()
    refreshes = run.refresh_outputs()
    assert refreshes, f"awsAuthRefresh never ran\n{run.report()}"
    first = refreshes[0]
    url = re.search(rf"^  ({re.escape(EMU_URL)}/device\?user_code=([A-Z]{{4}}-[A-Z]{{4}}))$", first, re.M)
    code = re.search(r"confirm that it shows the code: ([A-Z]{4}-[A-Z]{4})$", first, re.M)
    assert url and code and url.group(2) == code.group(1), first
    assert "signed in to corp" in first, first
    for later in refreshes[1:]:
        assert "already signed in to corp" in later, later

    assert state["authorizations_started"] == state["device_authorizations"] == 1, state["counts"]
    issued = set(state["access_keys"])
    assert issued, state["counts"]
    signing = run.bedrock_akids()
    assert signing, run.report()
    assert signing <= issued, f"signed with {signing}, the emulator issued {issued}\n{run.report()}"
    outputs = run.helper_outputs()
    assert outputs, run.report()
    for out in outputs:
        assert out["Credentials"]["AccessKeyId"] in issued
        assert out["Credentials"]["Expiration"].endswith("Z")
