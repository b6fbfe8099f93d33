"""`credhelper exec` end to end (issue 13): real SDKs inside a real `credhelper
exec` get credentials through its container endpoint and call moto; a child
that outlives several credential lifetimes (libfaketime: the daemon, exec and
the child share a faked wall clock) keeps getting fresh ones across a daemon
restart and while no daemon runs; the real Claude Code started by
`credhelper exec --profile P -- claude -p` gets PASS without settings."""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import AwsEnv, unavailable
from daemon_helpers import Daemons, parse_utc, write_setup

PY = sys.executable
#: the AWS SDK for JavaScript v3, pinned; installed once under $AWS_SDK_JS_PREFIX (scripts/test does it too)
JS_PACKAGES = {"@aws-sdk/credential-providers": "3.1175.0", "@aws-sdk/client-sts": "3.1177.0"}


def js_prefix() -> str:
    return os.environ.get("AWS_SDK_JS_PREFIX") or os.path.join(os.environ.get("TMPDIR") or "/tmp",
                                                               "aws-sdk-js-e2e")


def _js_installed(prefix: str) -> bool:
    for name, version in JS_PACKAGES.items():
        try:
            pkg = json.loads(Path(prefix, "node_modules", name, "package.json").read_text())
        except (OSError, ValueError):
            return False
        if pkg.get("version") != version:
            return False
    return True


@pytest.fixture(scope="session")
def aws_sdk_js() -> str:
    """node_modules of the pinned AWS SDK for JavaScript v3 (npm install once, under a lock)."""
    prefix = js_prefix()
    if shutil.which("node") is None:
        unavailable("node is not installed: the AWS SDK for JavaScript test needs it")
    if not _js_installed(prefix):
        if shutil.which("npm") is None:
            unavailable(f"the AWS SDK for JavaScript is not installed under {prefix} and npm is missing")
        os.makedirs(prefix, exist_ok=True)
        with open(os.path.join(prefix, ".install.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _js_installed(prefix):
                done = subprocess.run(
                    ["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund",
                     *(f"{n}@{v}" for n, v in JS_PACKAGES.items())],
                    stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, check=False,
                )
                if not _js_installed(prefix):
                    unavailable(f"npm install of the AWS SDK for JavaScript under {prefix} failed "
                                f"(exit {done.returncode}): {done.stderr[-600:]}")
    return os.path.join(prefix, "node_modules")


def moto_secrets(aws_env: AwsEnv) -> set[str]:
    """Every SecretAccessKey and SessionToken moto issued in this test."""
    return {s for r in aws_env.moto.recording.responses() for s in r.get("secrets", ())}


# ------------------------------------------------------------------ SDKs inside exec

BOTO3_CHILD = textwrap.dedent("""
    import json, os, urllib.error, urllib.request
    import boto3
    uri = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    refused = []
    for headers in ({}, {"Authorization": "not-the-token"}):
        try:
            urllib.request.urlopen(urllib.request.Request(uri, headers=headers), timeout=10)
            refused.append(200)
        except urllib.error.HTTPError as exc:
            refused.append(exc.code)
    session = boto3.Session()
    creds = session.get_credentials()
    ident = session.client("sts").get_caller_identity()
    with open("/proc/self/environ", "rb") as f:
        environ = f.read().decode()
    akid = creds.get_frozen_credentials().access_key
    print(json.dumps({"refused": refused, "method": creds.method, "akid": akid,
                      "arn": ident["Arn"], "environ": environ}))
""")

JS_CHILD = textwrap.dedent("""
    const { STSClient, GetCallerIdentityCommand } = require("@aws-sdk/client-sts");
    const { fromContainerMetadata } = require("@aws-sdk/credential-providers");
    const endpoint = process.env.AWS_ENDPOINT_URL_STS;
    async function who(credentials) {
      const client = new STSClient({ region: process.env.AWS_REGION, endpoint, credentials });
      const out = await client.send(new GetCallerIdentityCommand({}));
      const creds = await client.config.credentials();
      return { arn: out.Arn, akid: creds.accessKeyId };
    }
    (async () => {
      const chain = await who(undefined);  // the default chain: env, ini, ..., the container provider
      const container = await who(fromContainerMetadata());
      console.log(JSON.stringify({ chain, container }));
    })().catch((e) => { console.error(String(e)); process.exit(3); });
""")


@pytest.fixture
def dev(aws_env: AwsEnv) -> AwsEnv:
    write_setup(aws_env)
    return aws_env


def test_boto3_gets_credentials_through_the_endpoint(dev: AwsEnv) -> None:
    done = dev.run("exec", "--profile", "dev", "--", PY, "-c", BOTO3_CHILD,
                   env={"AWS_PROFILE": "base", "AWS_ACCESS_KEY_ID": None})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["refused"] == [401, 403]
    assert out["method"] == "container-role"
    assert out["akid"] in dev.moto.access_key_ids_issued("AssumeRole")  # moto issued them to credhelper
    assert out["arn"] == "arn:aws:sts::123456789012:assumed-role/dev/" + out["arn"].rsplit("/", 1)[1]
    environ = dict(kv.split("=", 1) for kv in out["environ"].split("\0") if kv)
    issued = moto_secrets(dev)
    assert issued, "moto issued no secret: the test proves nothing"
    assert not [s for s in issued if s in out["environ"]], "a secret sits in the child's environment"
    dropped = {"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    assert not dropped & set(environ)
    assert environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"] and environ["AWS_REGION"] == "us-east-1"


def test_the_javascript_sdk_gets_credentials_through_the_endpoint(dev: AwsEnv, aws_sdk_js: str) -> None:
    if shutil.which("node", path=dev.env["PATH"]) is None:
        unavailable("node is not on the test PATH")
    done = dev.run("exec", "--profile", "dev", "--", "node", "-e", JS_CHILD, env={"NODE_PATH": aws_sdk_js})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    issued = dev.moto.access_key_ids_issued("AssumeRole")
    for how in ("chain", "container"):
        assert out[how]["akid"] in issued, out
        assert "assumed-role/dev/" in out[how]["arn"], out
    assert dev.moto.calls("GetCallerIdentity") == 2


# ------------------------------------------------------------------ renewal over a faked clock

CRED_PROCESS = textwrap.dedent("""
    import datetime, json, os, secrets, sys
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getppid()} {now.isoformat()}\\n")
    print(json.dumps({"Version": 1, "AccessKeyId": "ASIAFT" + secrets.token_hex(7).upper(),
                      "SecretAccessKey": secrets.token_urlsafe(30), "SessionToken": secrets.token_urlsafe(60),
                      "Expiration": (now + datetime.timedelta(seconds=3600)).strftime("%Y-%m-%dT%H:%M:%SZ")}))
""")

#: reads a line, prints what botocore's container provider holds and what the endpoint answers now
CLOCKED_CHILD = textwrap.dedent("""
    import datetime, json, os, sys, urllib.request
    import botocore.session
    creds = botocore.session.get_session().get_credentials()
    uri = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    print("ready", flush=True)
    for line in sys.stdin:
        now = datetime.datetime.now(datetime.timezone.utc)
        sdk = creds.get_frozen_credentials().access_key
        req = urllib.request.Request(uri, headers={"Authorization": token})
        with urllib.request.urlopen(req, timeout=60) as resp:
            got = json.loads(resp.read())
        print(json.dumps({"now": now.isoformat(), "method": creds.method, "sdk": sdk,
                          "sdk_exp": creds._expiry_time.isoformat(), "akid": got["AccessKeyId"],
                          "exp": got["Expiration"]}), flush=True)
""")


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        unavailable("libfaketime is not installed (apt-get install faketime)")
    return found[0]


@pytest.fixture
def daemons(aws_env: AwsEnv) -> Iterator[Daemons]:
    d = Daemons(aws_env)
    yield d
    d.close()


def test_fresh_credentials_for_hours_across_a_daemon_restart(aws_env: AwsEnv, daemons: Daemons) -> None:
    """3 hours of faked time in 1000 s steps (credentials live 1 h, are served
    while more than 15 min remain): daemon A, then none (exec mints directly),
    then daemon B. Every answer has more than the window left, botocore in the
    child renews through the endpoint, and each phase minted through its own
    process (the credential_process logs its parent)."""
    mints, script = aws_env.home / "mints.log", aws_env.home / "cred_process.py"
    script.write_text(CRED_PROCESS)
    write_setup(aws_env, extra_config=f"[profile ft]\ncredential_process = {PY} {script} {mints}\n"
                                      "region = us-east-1\n")
    offset_file = aws_env.home / "faketime-offset"
    offset_file.write_text("+0\n")
    # the monotonic clock is faked too: with FAKETIME_DONT_FAKE_MONOTONIC, libfaketime 0.9.10 makes
    # time.sleep (clock_nanosleep on CLOCK_MONOTONIC) fail with EINVAL; the clock moves between asks only
    fake = {"LD_PRELOAD": libfaketime(), "FAKETIME_TIMESTAMP_FILE": str(offset_file),
            "FAKETIME_NO_CACHE": "1"}
    daemon_a = daemons.start(env=fake)
    proc = aws_env.popen("exec", "--profile", "ft", "--", PY, "-c", CLOCKED_CHILD, env=fake,
                         stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""

    def mint_parents() -> list[int]:
        return [int(line.split()[0]) for line in mints.read_text().splitlines()] if mints.exists() else []

    steps: list[dict[str, Any]] = []
    phases: dict[str, list[int]] = {}

    def step(offset: int) -> None:
        offset_file.write_text(f"+{offset}\n")
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("next\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line, f"the child ended: {proc.stderr.read() if proc.stderr else ''}"
        steps.append(json.loads(line))

    offset = 0
    for phase in ("daemon A", "no daemon", "daemon B"):
        before = len(mint_parents())
        if phase == "no daemon":
            assert daemon_a.stop() == 0
        if phase == "daemon B":
            daemon_b = daemons.start(env=fake)
        for _ in range(4):
            step(offset)
            offset += 1000
        phases[phase] = mint_parents()[before:]
    proc.stdin.close()
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    for s in steps:
        now = datetime.fromisoformat(s["now"])
        assert s["method"] == "container-role"
        assert (parse_utc(s["exp"]) - now).total_seconds() > 900, s  # more than the window left
        assert datetime.fromisoformat(s["sdk_exp"]) > now + timedelta(seconds=60), s  # botocore renewed
    served = {s["akid"] for s in steps}
    assert len(served) >= 4, steps  # 12000 s of credentials that are served for 2700 s each
    assert {s["sdk"] for s in steps} <= served
    assert phases["daemon A"] and set(phases["daemon A"]) == {daemon_a.pid}, phases
    assert phases["no daemon"] and set(phases["no daemon"]) == {proc.pid}, phases
    assert phases["daemon B"] and set(phases["daemon B"]) == {daemon_b.pid}, phases


# ------------------------------------------------------------------ the real Claude Code

#: $1 work dir, $2 claude, $3 prompt. The fake Bedrock verifies signatures with the
#: credentials it finds under $1/creds: `export --format json` puts the profile's
#: current ones there (exec serves the same, from the store), then Claude runs under exec.
LAUNCHER = ('"$CREDHELPER" export --profile e2e --format json > "$1/creds/exec.json" && '
            'exec "$CREDHELPER" exec --profile e2e -- "$2" -p "$3"')


def test_claude_code_under_exec_without_settings(claude_code: Any, netns_moto: Any, tmp_path: Path) -> None:
    """`credhelper exec --profile e2e -- claude -p …`: settings without
    awsCredentialExport, Claude Code's default AWS chain reaches the container
    endpoint, and Bedrock requests are signed with what moto issued."""
    from conftest import CREDHELPER, file_store_toml

    aws = tmp_path / "aws"
    aws.mkdir()
    (aws / "config").write_text("[profile e2e]\nrole_arn = arn:aws:iam::123456789012:role/e2e\n"
                                "source_profile = e2e-base\nregion = us-east-1\n\n"
                                "[profile e2e-base]\nregion = us-east-1\n")
    (aws / "credentials").write_text("[e2e-base]\naws_access_key_id = AKIAEXECE2ESOURCE001\n"
                                     "aws_secret_access_key = exec-e2e-source-secret\n")
    (aws / "credhelper.toml").write_text(file_store_toml(aws))
    pass_env = {
        "CREDHELPER": CREDHELPER,
        "AWS_CONFIG_FILE": str(aws / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
        "CREDHELPER_CONFIG": str(aws / "credhelper.toml"),
        "CREDHELPER_SOCKET": str(aws / "run" / "daemon.sock"),  # no daemon: exec mints directly
        "AWS_ENDPOINT_URL_STS": netns_moto.url,
        "AWS_PROFILE": "e2e-base",  # exec removes it: else it would shadow the endpoint
    }

    run = claude_code(command=["sh", "-c", LAUNCHER, "launcher", "{workdir}", "{claude}", "{prompt}"],
                      pass_env=pass_env, netns_setup=netns_moto.setup)

    assert run.passed, run.report()
    settings = json.loads(Path(run.workdir, "home", ".claude", "settings.json").read_text())
    assert "awsCredentialExport" not in settings and "awsAuthRefresh" not in settings, settings
    moto = netns_moto.recording(run)
    issued = moto.access_key_ids_issued("AssumeRole")
    served = json.loads(Path(run.workdir, "creds", "exec.json").read_text())["AccessKeyId"]
    assert served in issued, run.report()
    # the role's credentials: Claude knows no profile that yields them (AWS_PROFILE would give
    # the static keys of e2e-base), so they came from the endpoint
    assert run.bedrock_akids() == {served}, run.report()
    assert "removed the inherited" not in run.claude_stderr  # AWS_PROFILE goes silently
