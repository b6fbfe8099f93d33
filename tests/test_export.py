"""`credhelper export` end to end: the installed console script in a subprocess,
against the recording moto server (or a canned STS for failures), with the real
Secret Service as the store for most tests (encrypted-file and memory for a few).

Every success is checked the way Claude Code reads it; every failure for its exit
code, an empty stdout, exactly one stderr line with the remedy, and no secret.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest
from conftest import file_store_toml

from credhelper.broker import MIN_SERVING, SERVE_FLOOR, Broker, effective_window
from credhelper.config import AwsConfig
from credhelper.model import Credentials, parse_time
from credhelper.settings import Settings
from credhelper.store import item
from credhelper.store.keyring_store import KeyringStore
from credhelper.store.memory import MemoryStore

if TYPE_CHECKING:
    from conftest import AwsEnv, MotoServer

VENV_BIN = os.path.dirname(sys.executable)
CREDHELPER = os.path.join(VENV_BIN, "credhelper")

ROLE_ARN = "arn:aws:iam::123456789012:role/dev"
MID_ROLE_ARN = "arn:aws:iam::123456789012:role/mid"
#: long-term keys of the `base` profile in the credentials file
SRC_AKID = "AKIASOURCEKEYS000001"
SRC_SECRET = "srcSecret/0123456789+abcdefghijklmnopqrs"
#: keys handed in through the environment
ENV_AKID = "AKIAENVIRONMENT00001"
ENV_SECRET = "envSecret/0123456789+abcdefghijklmnopqrs"
ENV_TOKEN = "envSessionToken/IQoJb3JpZ2luX2VjEXAMPLE0123456789abcdef"
#: keys `keys add` stores
STORED_AKID = "AKIASTOREDKEYS000001"
STORED_SECRET = "storedSecret/0123456789+abcdefghijklmnop"
#: what the credential_process helpers print
PROC_AKID = "ASIAPROCESSHELPER001"
PROC_SECRET = "procSecret/0123456789+abcdefghijklmnopqr"
PROC_TOKEN = "procSessionToken/IQoJb3JpZ2luX2VjEXAMPLE0123456789abcdef"
PROC_LONG_AKID = "AKIAPROCESSLONGTERM1"
#: the canned STS's credentials
STUB_SECRET = "stubSecret/0123456789+abcdefghijklmnopqr"
STUB_TOKEN = "stubSessionToken/IQoJb3JpZ2luX2VjEXAMPLE0123456789abcdef"

SECRETS = (
    SRC_SECRET, ENV_SECRET, ENV_TOKEN, STORED_SECRET, PROC_SECRET, PROC_TOKEN, STUB_SECRET,
    STUB_TOKEN,
)

BASE_KEYS = f"""
[base]
aws_access_key_id = {SRC_AKID}
aws_secret_access_key = {SRC_SECRET}
"""

DEV_ROLE = f"""
[profile dev]
role_arn = {ROLE_ARN}
source_profile = base
"""


# ------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def now() -> datetime:
    return datetime.now(UTC)


def export(aws_env: AwsEnv, *args: str, env: dict[str, str | None] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return aws_env.run("export", *args, env=env, timeout=timeout)


def claude_ok(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Exit 0, nothing on stderr, and stdout as Claude Code reads it:
    `JSON.parse(stdout.trim()).Credentials` with non-empty string fields."""
    assert proc.returncode == 0, f"rc={proc.returncode} stderr={proc.stderr!r}"
    assert proc.stderr == "", proc.stderr
    parsed = json.loads(proc.stdout.strip())
    creds = parsed["Credentials"]
    assert list(parsed) == ["Credentials"]
    for key in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"):
        assert isinstance(creds[key], str) and creds[key], key
    assert creds["Expiration"].endswith("Z") and len(creds["Expiration"]) == 20
    assert parse_time(creds["Expiration"]) > now()
    return dict(creds)


def expires_in(creds: dict[str, str]) -> float:
    return (parse_time(creds["Expiration"]) - now()).total_seconds()


def error_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str,
               secrets: tuple[str, ...] = ()) -> str:
    """The failure contract: exit `code`, empty stdout, one stderr line naming the fix."""
    assert proc.returncode == code, f"rc={proc.returncode} stderr={proc.stderr!r}"
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and proc.stderr.endswith("\n"), proc.stderr
    line = lines[0]
    assert line.startswith("credhelper: ")
    assert "Traceback" not in line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    for secret in (*SECRETS, *secrets):
        assert secret not in proc.stderr
    return line


def request_form(entry: dict[str, Any]) -> dict[str, str]:
    import base64

    body = entry.get("body") or ""
    raw = base64.b64decode(body) if entry.get("body_encoded") else str(body).encode()
    return {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}


def requests_of(moto: MotoServer, action: str) -> list[dict[str, Any]]:
    return [r for r in moto.recording.requests() if r["action"] == action]


def signing_akids(moto: MotoServer, action: str) -> list[str]:
    """The AccessKeyId in the SigV4 Authorization header of each `action` request."""
    out = []
    for r in requests_of(moto, action):
        headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
        auth = headers.get("authorization", "")
        out.append(auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else "")
    return out


def files_containing(root: Path, *needles: str) -> list[str]:
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                data = Path(path).read_bytes()
            except OSError:
                continue
            if any(n.encode() in data for n in needles):
                hits.append(path)
    return hits


def write_settings(aws_env: AwsEnv, service: str, **extra: object) -> None:
    """Keyring store under the test's service, plus `extra` keys."""
    lines = ['store = "keyring"', f"keyring_service = {json.dumps(service)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    aws_env.write_settings("\n".join(lines) + "\n")


def file_store_settings(aws_env: AwsEnv, mode: int = 0o600, **extra: object) -> tuple[Path, Path]:
    """encrypted-file store with a 32-byte random key file (chmod `mode`)."""
    text = file_store_toml(aws_env.home, mode)
    text += "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    aws_env.write_settings(text)
    return aws_env.home / "store.key", aws_env.home / "store.enc"


def age_cache(service: str, profile: str, seconds: float) -> None:
    """Move the cached credentials of `profile` `seconds` into the past (issued
    and expiration alike: same lifetime, less time left)."""
    store = KeyringStore(service=service)
    raw = store.get(item("creds", profile))
    assert raw is not None, f"nothing cached for {profile}"
    record = json.loads(raw)
    creds = record["credentials"]
    for key in ("Expiration", "Issued"):
        when = parse_time(creds[key]) - timedelta(seconds=seconds)
        creds[key] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    store.set(item("creds", profile), json.dumps(record))


def write_script(path: Path, body: str) -> str:
    """A python script run by the venv's interpreter; returns its command line."""
    path.write_text(body)
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(path))}"


PROCESS_HELPER = '''
import json, sys
from datetime import datetime, timedelta, timezone
counter, mode = sys.argv[1], sys.argv[2]
with open(counter, "a") as f:
    f.write("run\\n")
life = {"short": 440, "tenmin": 600}.get(mode, 3600)
exp = (datetime.now(timezone.utc) + timedelta(seconds=life)).strftime("%Y-%m-%dT%H:%M:%SZ")
if mode in ("session", "short", "tenmin"):
    print(json.dumps({"Version": 1, "AccessKeyId": "{AKID}", "SecretAccessKey": "{SECRET}",
                      "SessionToken": "{TOKEN}", "Expiration": exp}))
elif mode == "longterm":
    print(json.dumps({"Version": 1, "AccessKeyId": "{LONG_AKID}",
                      "SecretAccessKey": "{SECRET}"}))
elif mode == "fail":
    print("helper: token expired, leaking {SECRET}", file=sys.stderr)
    print("helper: cannot refresh", file=sys.stderr)
    sys.exit(3)
elif mode == "garbage":
    print("Welcome! <html>not json</html>")
'''
for _name, _value in {"AKID": PROC_AKID, "SECRET": PROC_SECRET, "TOKEN": PROC_TOKEN,
                      "LONG_AKID": PROC_LONG_AKID}.items():
    PROCESS_HELPER = PROCESS_HELPER.replace("{" + _name + "}", _value)


def process_profile(aws_env: AwsEnv, mode: str, profile: str = "proc") -> Path:
    """A profile whose credential_process is PROCESS_HELPER in `mode`; returns its counter file."""
    counter = aws_env.home / f"{profile}.runs"
    command = write_script(aws_env.home / "helper.py", PROCESS_HELPER)
    aws_env.write_config(f"""
        [profile {profile}]
        credential_process = {command} {shlex.quote(str(counter))} {mode}
        """)
    return counter


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


# ------------------------------------------------------------------ canned STS


ASSUME_ROLE_OK = """<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>{akid}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{exp}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEXAMPLEROLEID0001:credhelper</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/dev/credhelper</Arn>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>
"""


def sts_error(code: str, message: str, kind: str = "Sender") -> str:
    return (
        f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code>"
        f"<Message>{message}</Message></Error><RequestId>x</RequestId></ErrorResponse>"
    )


class CannedSts:
    """A tiny STS on 127.0.0.1: `answer(n, form)` gives (status, body) for the n-th request."""

    def __init__(self, answer: Callable[[int, dict[str, str]], tuple[int, str]]) -> None:
        self.answer = answer
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                with canned._lock:
                    canned.requests.append(form)
                    n = len(canned.requests)
                status, text = canned.answer(n, form)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CannedSts:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def assume_role_ok(akid: str = "ASIACANNEDSTS0000001") -> str:
    exp = (now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ASSUME_ROLE_OK.format(akid=akid, secret=STUB_SECRET, token=STUB_TOKEN, exp=exp)


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def kr(aws_env: AwsEnv, secret_service: str) -> AwsEnv:
    """aws_env with the keyring store (the real Secret Service, this test's service)."""
    aws_env.keyring_settings(secret_service)
    return aws_env


@pytest.fixture
def dev_role(kr: AwsEnv) -> AwsEnv:
    """`dev` assumes a role with the static keys of `base` (credentials file)."""
    kr.write_config(DEV_ROLE)
    kr.write_credentials(BASE_KEYS)
    return kr


# ================================================================== sources


class TestAssumeRole:
    """role_arn + source_profile / credential_source → AssumeRole, cached."""

    def test_source_profile_static_keys_then_cache(self, dev_role: AwsEnv, moto: MotoServer) -> None:
        """One AssumeRole signed with the source keys; the second export comes from the cache."""
        first = claude_ok(export(dev_role, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 1
        assert first["AccessKeyId"] in moto.access_key_ids_issued("AssumeRole")
        assert signing_akids(moto, "AssumeRole") == [SRC_AKID]
        assert requests_of(moto, "AssumeRole")[0]["action"] == "AssumeRole"
        assert request_form(requests_of(moto, "AssumeRole")[0])["RoleArn"] == ROLE_ARN
        assert 3500 < expires_in(first) <= 3600

        second = claude_ok(export(dev_role, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 1
        assert moto.calls() == 1
        assert second == first

    def test_keyring_store_leaves_no_secret_on_disk(
        self, dev_role: AwsEnv, moto: MotoServer, secret_service: str
    ) -> None:
        """The minted credentials are cached in the keyring item v1/creds/dev, not in files."""
        creds = claude_ok(export(dev_role, "--profile", "dev"))
        cached = KeyringStore(service=secret_service).get(item("creds", "dev"))
        assert cached is not None and creds["SecretAccessKey"] in cached
        assert files_containing(dev_role.home, creds["SecretAccessKey"], creds["SessionToken"]) == []

    def test_role_chain(self, kr: AwsEnv, moto: MotoServer) -> None:
        """role → role → static keys: two AssumeRole calls, each link signed by the one below."""
        kr.write_config(f"""
            [profile mid]
            role_arn = {MID_ROLE_ARN}
            source_profile = base

            [profile dev]
            role_arn = {ROLE_ARN}
            source_profile = mid
            """)
        kr.write_credentials(BASE_KEYS)
        first = claude_ok(export(kr, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 2
        forms = [request_form(r) for r in requests_of(moto, "AssumeRole")]
        assert [f["RoleArn"] for f in forms] == [MID_ROLE_ARN, ROLE_ARN]
        signers = signing_akids(moto, "AssumeRole")
        assert signers[0] == SRC_AKID
        assert signers[1] in moto.access_key_ids_issued("AssumeRole")  # mid's credentials
        assert signers[1] != first["AccessKeyId"]
        assert first["AccessKeyId"] in moto.access_key_ids_issued("AssumeRole")

        second = claude_ok(export(kr, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 2
        assert second == first

    def test_intermediate_role_is_cached_too(self, kr: AwsEnv, moto: MotoServer) -> None:
        """After a chain export, exporting the middle profile costs no upstream call."""
        kr.write_config(f"""
            [profile mid]
            role_arn = {MID_ROLE_ARN}
            source_profile = base

            [profile dev]
            role_arn = {ROLE_ARN}
            source_profile = mid
            """)
        kr.write_credentials(BASE_KEYS)
        claude_ok(export(kr, "--profile", "dev"))
        mid_signer = signing_akids(moto, "AssumeRole")[1]
        mid = claude_ok(export(kr, "--profile", "mid"))
        assert moto.calls("AssumeRole") == 2
        assert mid["AccessKeyId"] == mid_signer

    def test_parameters_pass_through(self, kr: AwsEnv, moto: MotoServer) -> None:
        """external_id, role_session_name and duration_seconds reach STS as given."""
        kr.write_config(f"""
            [profile dev]
            role_arn = {ROLE_ARN}
            source_profile = base
            external_id = ext-4242
            role_session_name = alice-laptop
            duration_seconds = 1800
            """)
        kr.write_credentials(BASE_KEYS)
        creds = claude_ok(export(kr, "--profile", "dev"))
        (req,) = requests_of(moto, "AssumeRole")
        form = request_form(req)
        assert form["RoleArn"] == ROLE_ARN
        assert form["ExternalId"] == "ext-4242"
        assert form["RoleSessionName"] == "alice-laptop"
        assert form["DurationSeconds"] == "1800"
        assert 1800 - 60 < expires_in(creds) <= 1800

    def test_default_session_name_and_no_optional_parameters(
        self, dev_role: AwsEnv, moto: MotoServer
    ) -> None:
        """Without settings: a credhelper-<time> session name, no ExternalId or DurationSeconds."""
        claude_ok(export(dev_role, "--profile", "dev"))
        form = request_form(requests_of(moto, "AssumeRole")[0])
        assert form["RoleSessionName"].startswith("credhelper-")
        assert "ExternalId" not in form and "DurationSeconds" not in form

    def test_credential_source_environment(self, kr: AwsEnv, moto: MotoServer) -> None:
        """credential_source = Environment signs AssumeRole with AWS_ACCESS_KEY_ID/SECRET."""
        kr.write_config(f"""
            [profile dev]
            role_arn = {ROLE_ARN}
            credential_source = Environment
            """)
        env: dict[str, str | None] = {
            "AWS_ACCESS_KEY_ID": ENV_AKID, "AWS_SECRET_ACCESS_KEY": ENV_SECRET,
        }
        creds = claude_ok(export(kr, "--profile", "dev", env=env))
        assert moto.calls("AssumeRole") == 1
        assert signing_akids(moto, "AssumeRole") == [ENV_AKID]
        assert creds["AccessKeyId"] in moto.access_key_ids_issued("AssumeRole")
        assert claude_ok(export(kr, "--profile", "dev", env=env)) == creds
        assert moto.calls("AssumeRole") == 1

    def test_credential_source_environment_without_keys(self, kr: AwsEnv, moto: MotoServer) -> None:
        """credential_source = Environment with no keys in the environment: exit 3, says to set them."""
        kr.write_config(f"""
            [profile dev]
            role_arn = {ROLE_ARN}
            credential_source = Environment
            """)
        error_line(export(kr, "--profile", "dev"), 3, "AWS_ACCESS_KEY_ID")
        assert moto.calls() == 0

    def test_memory_store_mints_every_time(self, aws_env: AwsEnv, moto: MotoServer) -> None:
        """store = memory: nothing outlives the process, so each export mints."""
        aws_env.write_settings('store = "memory"\n')
        aws_env.write_config(DEV_ROLE)
        aws_env.write_credentials(BASE_KEYS)
        first = claude_ok(export(aws_env, "--profile", "dev"))
        second = claude_ok(export(aws_env, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 2
        assert first["AccessKeyId"] != second["AccessKeyId"]
        assert {first["AccessKeyId"], second["AccessKeyId"]} <= moto.access_key_ids_issued("AssumeRole")

    def test_encrypted_file_store_caches(self, aws_env: AwsEnv, moto: MotoServer) -> None:
        """store = encrypted-file: cached across processes, and the file holds no plaintext."""
        _key, store = file_store_settings(aws_env)
        aws_env.write_config(DEV_ROLE)
        aws_env.write_credentials(BASE_KEYS)
        first = claude_ok(export(aws_env, "--profile", "dev"))
        second = claude_ok(export(aws_env, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 1
        assert second == first
        data = store.read_bytes()
        assert json.loads(data)["format"] == "credhelper-encrypted-file"
        assert first["SecretAccessKey"].encode() not in data
        assert first["SessionToken"].encode() not in data
        assert first["AccessKeyId"].encode() not in data


class TestStaticKeys:
    """Long-term keys (store or files) → GetSessionToken; never exported raw."""

    def test_keys_add_then_export(self, kr: AwsEnv, moto: MotoServer) -> None:
        """`keys add` reads two lines on stdin; export is a GetSessionToken signed with them."""
        argv = ("keys", "add", "--profile", "stored")
        added = kr.run(*argv, input=f"{STORED_AKID}\n{STORED_SECRET}\n")
        assert added.returncode == 0, added.stderr
        assert STORED_SECRET not in " ".join(argv)
        assert STORED_SECRET not in added.stdout and STORED_SECRET not in added.stderr
        assert added.stdout == ""

        creds = claude_ok(export(kr, "--profile", "stored"))
        assert moto.calls("GetSessionToken") == 1
        assert moto.calls() == 1
        assert signing_akids(moto, "GetSessionToken") == [STORED_AKID]
        assert creds["AccessKeyId"] in moto.access_key_ids_issued("GetSessionToken")
        assert creds["AccessKeyId"] != STORED_AKID
        assert STORED_SECRET not in json.dumps(creds)
        form = request_form(requests_of(moto, "GetSessionToken")[0])
        assert form["DurationSeconds"] == "3600"
        assert 3500 < expires_in(creds) <= 3600

        claude_ok(export(kr, "--profile", "stored"))
        assert moto.calls("GetSessionToken") == 1
        assert files_containing(kr.home, STORED_SECRET) == []

    def test_keys_add_refuses_one_line(self, kr: AwsEnv, secret_service: str) -> None:
        """`keys add` with only one line on stdin: usage error, nothing stored."""
        added = kr.run("keys", "add", "--profile", "stored", input=f"{STORED_AKID}\n")
        error_line(added, 2, "two lines")
        assert KeyringStore(service=secret_service).get(item("keys", "stored")) is None

    def test_keys_add_replaces_cached_session(self, kr: AwsEnv, moto: MotoServer) -> None:
        """New keys drop the session minted from the old ones: the next export mints again."""
        kr.run("keys", "add", "--profile", "stored", input=f"{STORED_AKID}\n{STORED_SECRET}\n")
        claude_ok(export(kr, "--profile", "stored"))
        other = "AKIASTOREDKEYS000002"
        done = kr.run("keys", "add", "--profile", "stored", input=f"{other}\n{STORED_SECRET}\n")
        assert done.returncode == 0
        claude_ok(export(kr, "--profile", "stored"))
        assert signing_akids(moto, "GetSessionToken") == [STORED_AKID, other]

    def test_credentials_file_keys(self, kr: AwsEnv, moto: MotoServer) -> None:
        """Keys in the credentials file → GetSessionToken, then served from the cache."""
        kr.write_credentials(BASE_KEYS)
        creds = claude_ok(export(kr, "--profile", "base"))
        assert moto.calls("GetSessionToken") == 1
        assert signing_akids(moto, "GetSessionToken") == [SRC_AKID]
        assert creds["AccessKeyId"] in moto.access_key_ids_issued("GetSessionToken")
        assert claude_ok(export(kr, "--profile", "base")) == creds
        assert moto.calls("GetSessionToken") == 1

    def test_stored_keys_win_over_file_keys(self, kr: AwsEnv, moto: MotoServer) -> None:
        """Keys in the store take precedence over keys in the credentials file."""
        kr.write_credentials(BASE_KEYS)
        kr.run("keys", "add", "--profile", "base", input=f"{STORED_AKID}\n{STORED_SECRET}\n")
        claude_ok(export(kr, "--profile", "base"))
        assert signing_akids(moto, "GetSessionToken") == [STORED_AKID]

    def test_session_keys_in_file_pass_through(self, kr: AwsEnv, moto: MotoServer) -> None:
        """Temporary keys in the credentials file are exported as they are, an hour ahead."""
        kr.write_credentials(f"""
            [tmp]
            aws_access_key_id = ASIAFILESESSION00001
            aws_secret_access_key = {ENV_SECRET}
            aws_session_token = {ENV_TOKEN}
            """)
        creds = claude_ok(export(kr, "--profile", "tmp"))
        assert creds["AccessKeyId"] == "ASIAFILESESSION00001"
        assert creds["SessionToken"] == ENV_TOKEN
        assert 3540 < expires_in(creds) <= 3600
        assert moto.calls() == 0


class TestEnvironmentDefault:
    """Environment credentials answer for `default` when no file defines it."""

    def test_long_term_env_keys(self, kr: AwsEnv, moto: MotoServer) -> None:
        """AWS_ACCESS_KEY_ID/SECRET without a token → GetSessionToken signed with them."""
        env: dict[str, str | None] = {"AWS_ACCESS_KEY_ID": ENV_AKID, "AWS_SECRET_ACCESS_KEY": ENV_SECRET}
        creds = claude_ok(export(kr, env=env))
        assert moto.calls("GetSessionToken") == 1
        assert signing_akids(moto, "GetSessionToken") == [ENV_AKID]
        assert creds["AccessKeyId"] in moto.access_key_ids_issued("GetSessionToken")
        assert creds["SecretAccessKey"] != ENV_SECRET

    def test_env_session_passes_through(self, kr: AwsEnv, moto: MotoServer) -> None:
        """Keys + AWS_SESSION_TOKEN are exported as they are, Expiration about an hour ahead."""
        env: dict[str, str | None] = {
            "AWS_ACCESS_KEY_ID": ENV_AKID, "AWS_SECRET_ACCESS_KEY": ENV_SECRET,
            "AWS_SESSION_TOKEN": ENV_TOKEN,
        }
        creds = claude_ok(export(kr, env=env))
        assert (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]) == (
            ENV_AKID, ENV_SECRET, ENV_TOKEN
        )
        assert 3540 < expires_in(creds) <= 3600
        assert moto.calls() == 0

    def test_env_session_keeps_given_expiration(self, kr: AwsEnv, moto: MotoServer) -> None:
        """AWS_CREDENTIAL_EXPIRATION, when set, is the exported Expiration."""
        exp = (now() + timedelta(minutes=50)).strftime("%Y-%m-%dT%H:%M:%SZ")
        env: dict[str, str | None] = {
            "AWS_ACCESS_KEY_ID": ENV_AKID, "AWS_SECRET_ACCESS_KEY": ENV_SECRET,
            "AWS_SESSION_TOKEN": ENV_TOKEN, "AWS_CREDENTIAL_EXPIRATION": exp,
        }
        assert claude_ok(export(kr, env=env))["Expiration"] == exp

    def test_env_does_not_answer_for_a_configured_default(self, kr: AwsEnv, moto: MotoServer) -> None:
        """A `default` profile in the files wins over the environment keys."""
        kr.write_credentials(BASE_KEYS.replace("[base]", "[default]"))
        env: dict[str, str | None] = {"AWS_ACCESS_KEY_ID": ENV_AKID, "AWS_SECRET_ACCESS_KEY": ENV_SECRET}
        claude_ok(export(kr, env=env))
        assert signing_akids(moto, "GetSessionToken") == [SRC_AKID]

    def test_no_default_anywhere(self, kr: AwsEnv, moto: MotoServer) -> None:
        """No default profile and no environment keys: exit 3 naming the profile."""
        error_line(export(kr), 3, "unknown profile default", "credhelper keys add --profile default")


class TestWebIdentity:
    """role_arn + web_identity_token_file → AssumeRoleWithWebIdentity."""

    def test_web_identity(self, kr: AwsEnv, moto: MotoServer) -> None:
        """The token file's content is sent unsigned; the result is cached."""
        token = kr.home / "token.jwt"
        token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm8vciJ9.c2lnbmF0dXJl\n")
        kr.write_config(f"""
            [profile ci]
            role_arn = {ROLE_ARN}
            web_identity_token_file = {token}
            role_session_name = ci-run-7
            """)
        creds = claude_ok(export(kr, "--profile", "ci"))
        assert moto.calls("AssumeRoleWithWebIdentity") == 1
        assert moto.calls() == 1
        assert creds["AccessKeyId"] in moto.access_key_ids_issued("AssumeRoleWithWebIdentity")
        form = request_form(requests_of(moto, "AssumeRoleWithWebIdentity")[0])
        assert form["WebIdentityToken"] == token.read_text().strip()
        assert form["RoleArn"] == ROLE_ARN and form["RoleSessionName"] == "ci-run-7"
        assert signing_akids(moto, "AssumeRoleWithWebIdentity") == [""]
        assert claude_ok(export(kr, "--profile", "ci")) == creds
        assert moto.calls() == 1

    def test_missing_token_file(self, kr: AwsEnv, moto: MotoServer) -> None:
        """A token file that does not exist: exit 3, names the path."""
        missing = kr.home / "nope.jwt"
        kr.write_config(f"""
            [profile ci]
            role_arn = {ROLE_ARN}
            web_identity_token_file = {missing}
            """)
        error_line(export(kr, "--profile", "ci"), 3, str(missing))
        assert moto.calls() == 0


class TestCredentialProcess:
    """credential_process is wrapped and cached."""

    def test_session_credentials_are_cached(self, kr: AwsEnv, moto: MotoServer) -> None:
        """Two exports run the helper once and print what it printed."""
        counter = process_profile(kr, "session")
        first = claude_ok(export(kr, "--profile", "proc"))
        second = claude_ok(export(kr, "--profile", "proc"))
        assert runs(counter) == 1
        assert first == second
        assert (first["AccessKeyId"], first["SecretAccessKey"], first["SessionToken"]) == (
            PROC_AKID, PROC_SECRET, PROC_TOKEN
        )
        assert 3500 < expires_in(first) <= 3600
        assert moto.calls() == 0

    def test_long_term_keys_become_a_session(self, kr: AwsEnv, moto: MotoServer) -> None:
        """A helper printing keys without a session token → GetSessionToken with those keys."""
        counter = process_profile(kr, "longterm")
        creds = claude_ok(export(kr, "--profile", "proc"))
        assert moto.calls("GetSessionToken") == 1
        assert signing_akids(moto, "GetSessionToken") == [PROC_LONG_AKID]
        assert creds["AccessKeyId"] in moto.access_key_ids_issued("GetSessionToken")
        assert claude_ok(export(kr, "--profile", "proc")) == creds
        assert runs(counter) == 1
        assert moto.calls("GetSessionToken") == 1

    def test_helper_exiting_non_zero(self, kr: AwsEnv, moto: MotoServer) -> None:
        """A failing helper: exit 6, one line with its last stderr line, its secret scrubbed."""
        counter = process_profile(kr, "fail")
        line = error_line(export(kr, "--profile", "proc"), 6, "credential_process", "proc",
                          "exited 3")
        assert "cannot refresh" in line
        assert runs(counter) == 1

    def test_helper_leaking_secret_on_stderr_is_scrubbed(self, kr: AwsEnv) -> None:
        """A secret in the helper's last stderr line never reaches our stderr."""
        body = PROCESS_HELPER.replace(
            'print("helper: cannot refresh", file=sys.stderr)',
            f'print("helper: bad secret {PROC_SECRET}", file=sys.stderr)',
        )
        assert body != PROCESS_HELPER
        command = write_script(kr.home / "leaky.py", body)
        kr.write_config(f"""
            [profile proc]
            credential_process = {command} {kr.home / "leaky.runs"} fail
            """)
        error_line(export(kr, "--profile", "proc"), 6, "credential_process")

    def test_helper_printing_garbage(self, kr: AwsEnv, moto: MotoServer) -> None:
        """A helper printing non-JSON: exit 6, says it printed no valid credentials."""
        process_profile(kr, "garbage")
        error_line(export(kr, "--profile", "proc"), 6, "no valid Version 1")
        assert moto.calls() == 0

    def test_failures_are_not_cached(self, kr: AwsEnv) -> None:
        """After a failure the helper runs again on the next export."""
        counter = process_profile(kr, "fail")
        export(kr, "--profile", "proc")
        export(kr, "--profile", "proc")
        assert runs(counter) == 2

    def test_missing_helper(self, kr: AwsEnv) -> None:
        """A credential_process that does not exist: exit 3, says to fix the path."""
        kr.write_config("""
            [profile proc]
            credential_process = /nonexistent/helper --flag
            """)
        error_line(export(kr, "--profile", "proc"), 3, "/nonexistent/helper", "fix the path")


class TestRecursionGuard:
    """credential_process that runs credhelper export is a configuration error."""

    @pytest.mark.parametrize(
        "command",
        [
            "credhelper export --profile self",
            f"{CREDHELPER} export --profile self",
            f"{sys.executable} -m credhelper export --profile self",
        ],
        ids=["bare", "absolute", "python-m"],
    )
    def test_direct_self_reference(self, kr: AwsEnv, command: str) -> None:
        """credential_process = credhelper export --profile self → exit 3 at once."""
        kr.write_config(f"""
            [profile self]
            credential_process = {command}
            """)
        started = time.monotonic()
        error_line(export(kr, "--profile", "self", timeout=30), 3, "recurse")
        assert time.monotonic() - started < 15

    def _chain(self, kr: AwsEnv) -> Path:
        """outer's helper runs `credhelper export --profile other`, whose helper runs
        `credhelper export --profile outer`: a loop the command lines do not show."""
        log = kr.home / "relay.log"
        relay = f'''
import subprocess, sys
with open({str(log)!r}, "a") as f:
    f.write(sys.argv[1] + "\\n")
done = subprocess.run([{CREDHELPER!r}, "export", "--profile", sys.argv[1], "--format", "process"],
                      capture_output=True, text=True, timeout=60)
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr)
sys.exit(done.returncode)
'''
        command = write_script(kr.home / "relay.py", relay)
        kr.write_config(f"""
            [profile outer]
            credential_process = {command} other

            [profile other]
            credential_process = {command} outer
            """)
        return log

    def _run_bounded(self, kr: AwsEnv, profile: str) -> tuple[subprocess.CompletedProcess[str], float]:
        proc = kr.popen("export", "--profile", profile, start_new_session=True)
        started = time.monotonic()
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail("export did not finish: credential_process recursion is not bounded")
        elapsed = time.monotonic() - started
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), elapsed

    def test_indirect_loop_terminates(self, kr: AwsEnv) -> None:
        """A loop through two helpers ends promptly, fails, and the helpers ran once each."""
        log = self._chain(kr)
        done, elapsed = self._run_bounded(kr, "outer")
        assert elapsed < 60
        assert done.returncode != 0 and done.stdout == ""
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert "recursion" in done.stderr
        assert log.read_text().splitlines() == ["other", "outer"]

    def test_indirect_loop_is_a_configuration_error(self, kr: AwsEnv) -> None:
        """A loop through two helpers is exit 3 for the outermost export too."""
        self._chain(kr)
        done, _ = self._run_bounded(kr, "outer")
        error_line(done, 3, "recursion")


# ================================================================== formats and profiles


class TestFormats:
    """--format process|env|json print the same credentials as claude."""

    def test_all_formats_agree(self, dev_role: AwsEnv, moto: MotoServer) -> None:
        """Each format carries the same cached credentials, in its own shape."""
        claude = claude_ok(export(dev_role, "--profile", "dev"))

        process = export(dev_role, "--profile", "dev", "--format", "process")
        assert process.returncode == 0 and process.stderr == ""
        assert json.loads(process.stdout) == {"Version": 1, **claude}
        assert process.stdout.count("\n") == 1

        as_json = export(dev_role, "--profile", "dev", "--format", "json")
        assert as_json.returncode == 0 and as_json.stderr == ""
        assert json.loads(as_json.stdout) == {**claude, "Profile": "dev", "Source": "assume-role"}

        env = export(dev_role, "--profile", "dev", "-f", "env")
        assert env.returncode == 0 and env.stderr == ""
        names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_CREDENTIAL_EXPIRATION")
        script = env.stdout + "".join(f'printf "%s\\n" "${n}"\n' for n in names)
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                             env={"PATH": os.environ["PATH"]})
        assert out.stdout.splitlines() == [
            claude["AccessKeyId"], claude["SecretAccessKey"], claude["SessionToken"],
            claude["Expiration"],
        ]
        assert moto.calls("AssumeRole") == 1

    def test_process_format_feeds_the_aws_sdk(self, dev_role: AwsEnv, moto: MotoServer) -> None:
        """botocore, given credential_process = credhelper export --format process, signs with it."""
        claude = claude_ok(export(dev_role, "--profile", "dev"))
        sdk_config = dev_role.home / "sdk.config"
        sdk_config.write_text(
            "[profile sdk]\n"
            f"credential_process = env AWS_CONFIG_FILE={dev_role.config_file} "
            f"{CREDHELPER} export --profile dev --format process\n"
        )
        probe = (
            "import botocore.session\n"
            "c = botocore.session.Session(profile='sdk').get_credentials().get_frozen_credentials()\n"
            "print(c.access_key, c.token)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
            env=dev_role.environ({"AWS_CONFIG_FILE": str(sdk_config)}), check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [claude["AccessKeyId"], claude["SessionToken"]]
        assert moto.calls("AssumeRole") == 1

    def test_unknown_format_is_a_usage_error(self, dev_role: AwsEnv, moto: MotoServer) -> None:
        """--format yaml: exit 2, nothing on stdout, no upstream call."""
        done = export(dev_role, "--profile", "dev", "--format", "yaml")
        assert done.returncode == 2
        assert done.stdout == ""
        assert "yaml" in done.stderr
        assert moto.calls() == 0


class TestProfilePrecedence:
    """--profile > CREDHELPER_PROFILE > AWS_PROFILE > default."""

    KEYS = {
        "flag": "AKIAPRECEDENCEFLAG01",
        "chp": "AKIAPRECEDENCECHP001",
        "awsp": "AKIAPRECEDENCEAWSP01",
        "default": "AKIAPRECEDENCEDEF001",
    }

    @pytest.fixture
    def four(self, kr: AwsEnv) -> AwsEnv:
        kr.write_credentials("".join(
            f"[{p}]\naws_access_key_id = {k}\naws_secret_access_key = {SRC_SECRET}\n\n"
            for p, k in self.KEYS.items()
        ))
        return kr

    @pytest.mark.parametrize(
        ("args", "env", "expected"),
        [
            (("--profile", "flag"), {"CREDHELPER_PROFILE": "chp", "AWS_PROFILE": "awsp"}, "flag"),
            (("-p", "flag"), {"CREDHELPER_PROFILE": "chp"}, "flag"),
            ((), {"CREDHELPER_PROFILE": "chp", "AWS_PROFILE": "awsp"}, "chp"),
            ((), {"AWS_PROFILE": "awsp"}, "awsp"),
            ((), {}, "default"),
        ],
        ids=["flag>all", "short-flag", "CREDHELPER_PROFILE>AWS_PROFILE", "AWS_PROFILE", "default"],
    )
    def test_precedence(self, four: AwsEnv, moto: MotoServer, args: tuple[str, ...],
                        env: dict[str, str | None], expected: str) -> None:
        """The chosen profile's keys sign the call, and json output names that profile."""
        done = export(four, *args, "--format", "json", env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["Profile"] == expected
        assert signing_akids(moto, "GetSessionToken") == [self.KEYS[expected]]


# ================================================================== concurrency


class TestConcurrency:
    """N concurrent exports of a cold profile: one upstream call."""

    def _stampede(self, aws_env: AwsEnv, n: int) -> list[str]:
        procs = [aws_env.popen("export", "--profile", "dev") for _ in range(n)]
        outs = []
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
            assert err == ""
            outs.append(out)
        return outs

    def test_fifty_exports_keyring(self, dev_role: AwsEnv, moto: MotoServer) -> None:
        """50 cold exports with the keyring store: 1 AssumeRole, 50 identical valid outputs."""
        outs = self._stampede(dev_role, 50)
        assert moto.calls("AssumeRole") == 1
        assert moto.calls() == 1
        assert len(set(outs)) == 1
        creds = json.loads(outs[0].strip())["Credentials"]
        assert creds["AccessKeyId"] in moto.access_key_ids_issued("AssumeRole")
        assert all(json.loads(o.strip())["Credentials"]["SessionToken"] for o in outs)

    def test_twenty_exports_encrypted_file(self, aws_env: AwsEnv, moto: MotoServer) -> None:
        """20 cold exports with the encrypted-file store: 1 AssumeRole, identical outputs."""
        file_store_settings(aws_env)
        aws_env.write_config(DEV_ROLE)
        aws_env.write_credentials(BASE_KEYS)
        outs = self._stampede(aws_env, 20)
        assert moto.calls("AssumeRole") == 1
        assert len(set(outs)) == 1
        creds = json.loads(outs[0].strip())["Credentials"]
        assert creds["AccessKeyId"] in moto.access_key_ids_issued("AssumeRole")


# ================================================================== refresh window


def broker_at(t: datetime, refresh_window: int = 900) -> Broker:
    return Broker(
        settings=Settings(refresh_window=refresh_window), store=MemoryStore(),
        config=AwsConfig(profiles={}, sso_sessions={}), now=lambda: t,
    )


T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def creds_for(lifetime: float) -> Credentials:
    return Credentials("ASIAUNIT", "secret", "token", T0 + timedelta(seconds=lifetime), "unit", T0)


class TestEffectiveWindow:
    """broker.effective_window and Broker.servable, with an injected clock."""

    def test_constants(self) -> None:
        """The floor is 7 minutes (Claude Code caches <= 6 min for an hour); 30 s minimum serving."""
        assert SERVE_FLOOR == 420
        assert MIN_SERVING == 30

    @pytest.mark.parametrize(
        ("lifetime", "configured", "expected"),
        [
            (3600, 900, 900),  # honoured: plenty of lifetime
            (900, 900, 450),  # would leave 0 s: half the lifetime
            (900, 870, 870),  # leaves exactly 30 s: honoured
            (900, 871, 450),  # leaves 29 s: half
            (900, 60, 420),  # below the floor: the floor
            (480, 900, 420),  # half is 240, below the floor
            (43200, 900, 900),
            (43200, 7200, 7200),
            (1000, 971, 500),
            (1000, 970, 970),
        ],
    )
    def test_effective_window(self, lifetime: float, configured: float, expected: float) -> None:
        """Configured while it leaves >= 30 s of serving, else half the lifetime; never < 420 s."""
        assert effective_window(lifetime, configured) == expected

    @pytest.mark.parametrize("lifetime", [60, 300, 420, 421, 450, 480, 600, 900, 3600, 43200])
    @pytest.mark.parametrize("configured", [1, 60, 420, 900, 3600])
    def test_never_below_floor(self, lifetime: float, configured: float) -> None:
        """Whatever the inputs, the window is at least SERVE_FLOOR."""
        assert effective_window(lifetime, configured) >= SERVE_FLOOR

    @pytest.mark.parametrize("lifetime", [421, 450, 480, 900, 3600, 43200])
    def test_never_served_with_floor_or_less_left(self, lifetime: int) -> None:
        """Credentials with <= 7 min left are never servable, whatever their lifetime."""
        creds = creds_for(lifetime)
        for left in (SERVE_FLOOR, SERVE_FLOOR - 1, 60, 0, -10):
            t = T0 + timedelta(seconds=lifetime - left)
            assert not broker_at(t).servable(creds), (lifetime, left)
            assert not broker_at(t, refresh_window=1).servable(creds), (lifetime, left)

    def test_480s_lifetime_served_for_60s_at_most(self) -> None:
        """A 480 s credential is servable for its first 60 s only."""
        creds = creds_for(480)
        assert broker_at(T0).servable(creds)
        assert broker_at(T0 + timedelta(seconds=59)).servable(creds)
        assert not broker_at(T0 + timedelta(seconds=60)).servable(creds)
        assert not broker_at(T0 + timedelta(seconds=61)).servable(creds)

    def test_one_hour_served_until_15_min_before_expiry(self) -> None:
        """1 h credentials with the 900 s default: served until 15 min before expiry."""
        creds = creds_for(3600)
        broker = broker_at(T0)
        assert broker.window(creds) == 900
        assert broker.refresh_at(creds) == T0 + timedelta(seconds=2700)
        assert broker_at(T0 + timedelta(seconds=2699)).servable(creds)
        assert not broker_at(T0 + timedelta(seconds=2700)).servable(creds)

    def test_900s_lifetime_with_900s_window_served_for_half(self) -> None:
        """A 900 s credential with the 900 s default is served for 450 s, not refreshed in a loop."""
        creds = creds_for(900)
        assert broker_at(T0).servable(creds)
        assert broker_at(T0 + timedelta(seconds=449)).servable(creds)
        assert not broker_at(T0 + timedelta(seconds=450)).servable(creds)

    def test_window_uses_lifetime_from_issued(self) -> None:
        """The lifetime is expiration - issued, so the window does not shrink as time passes."""
        creds = creds_for(900)
        assert broker_at(T0).window(creds) == broker_at(T0 + timedelta(seconds=400)).window(creds)

    def test_no_expiration_uses_the_configured_window(self) -> None:
        """Credentials that never expire are always servable, with the configured window."""
        keys = Credentials("AKIAUNIT", "secret")
        assert broker_at(T0, refresh_window=1234).window(keys) == 1234
        assert broker_at(T0).servable(keys)


class TestRefreshWindowExport:
    """The window, through export: cached credentials with too little left are re-minted.

    moto grants the DurationSeconds asked for; the cache is aged by moving its
    Issued and Expiration into the past in the keyring item."""

    def _setup(self, kr: AwsEnv, service: str, duration: int | None, **settings: object) -> None:
        write_settings(kr, service, **settings)
        extra = f"duration_seconds = {duration}\n" if duration else ""
        kr.write_config(DEV_ROLE.rstrip("\n") + "\n" + extra)
        kr.write_credentials(BASE_KEYS)

    def _check(self, kr: AwsEnv, moto: MotoServer, service: str, age: float, served: bool) -> None:
        first = claude_ok(export(kr, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 1
        age_cache(service, "dev", age)
        second = claude_ok(export(kr, "--profile", "dev"))
        if served:
            assert moto.calls("AssumeRole") == 1
            assert second["AccessKeyId"] == first["AccessKeyId"]
        else:
            assert moto.calls("AssumeRole") == 2
            assert second["AccessKeyId"] != first["AccessKeyId"]
            assert second["AccessKeyId"] in moto.access_key_ids_issued("AssumeRole")

    def test_900s_credentials_served_from_cache(self, kr: AwsEnv, moto: MotoServer,
                                                secret_service: str) -> None:
        """duration 900, window 900: effective window 450, so the second export is cached."""
        self._setup(kr, secret_service, 900, refresh_window=900)
        self._check(kr, moto, secret_service, age=0, served=True)

    def test_900s_credentials_aged_within_half(self, kr: AwsEnv, moto: MotoServer,
                                               secret_service: str) -> None:
        """duration 900, window 900, 500 s left: still served (> 450)."""
        self._setup(kr, secret_service, 900, refresh_window=900)
        self._check(kr, moto, secret_service, age=400, served=True)

    def test_900s_credentials_aged_past_half(self, kr: AwsEnv, moto: MotoServer,
                                             secret_service: str) -> None:
        """duration 900, window 900, 440 s left: re-minted (< 450)."""
        self._setup(kr, secret_service, 900, refresh_window=900)
        self._check(kr, moto, secret_service, age=460, served=False)

    def test_window_honoured_when_it_leaves_30s(self, kr: AwsEnv, moto: MotoServer,
                                                secret_service: str) -> None:
        """duration 900, window 860 (leaves 40 s): 850 s left is too little, re-minted."""
        self._setup(kr, secret_service, 900, refresh_window=860)
        self._check(kr, moto, secret_service, age=50, served=False)

    def test_window_honoured_fresh_is_served(self, kr: AwsEnv, moto: MotoServer,
                                             secret_service: str) -> None:
        """duration 900, window 860: fresh credentials are served during their 40 s."""
        self._setup(kr, secret_service, 900, refresh_window=860)
        self._check(kr, moto, secret_service, age=0, served=True)

    def test_window_leaving_under_30s_falls_back_to_half(self, kr: AwsEnv, moto: MotoServer,
                                                         secret_service: str) -> None:
        """duration 900, window 880 (leaves 20 s): half (450) applies, so 850 s left is served."""
        self._setup(kr, secret_service, 900, refresh_window=880)
        self._check(kr, moto, secret_service, age=50, served=True)

    def test_floor_applies_to_small_windows_served(self, kr: AwsEnv, moto: MotoServer,
                                                   secret_service: str) -> None:
        """window 60: the 420 s floor applies; 430 s left is still served."""
        self._setup(kr, secret_service, 900, refresh_window=60)
        self._check(kr, moto, secret_service, age=470, served=True)

    def test_floor_applies_to_small_windows_reminted(self, kr: AwsEnv, moto: MotoServer,
                                                     secret_service: str) -> None:
        """window 60: 410 s left is under the 420 s floor, re-minted."""
        self._setup(kr, secret_service, 900, refresh_window=60)
        self._check(kr, moto, secret_service, age=490, served=False)

    def test_default_window_one_hour_served(self, kr: AwsEnv, moto: MotoServer,
                                            secret_service: str) -> None:
        """1 h credentials, default window: 910 s left is served."""
        self._setup(kr, secret_service, None)
        self._check(kr, moto, secret_service, age=2690, served=True)

    def test_default_window_one_hour_reminted(self, kr: AwsEnv, moto: MotoServer,
                                              secret_service: str) -> None:
        """1 h credentials, default window: 890 s left is re-minted."""
        self._setup(kr, secret_service, None)
        self._check(kr, moto, secret_service, age=2710, served=False)

    def test_duration_below_sts_minimum(self, kr: AwsEnv, moto: MotoServer,
                                        secret_service: str) -> None:
        """duration_seconds = 440 is below STS's 900 s minimum: exit 3, no call."""
        self._setup(kr, secret_service, 440)
        error_line(export(kr, "--profile", "dev"), 3, "DurationSeconds", "900")
        assert moto.calls() == 0

    def test_too_short_lifetime_is_refused(self, kr: AwsEnv, secret_service: str) -> None:
        """A helper granting 440 s (servable < 30 s): exit 6, says to raise duration_seconds."""
        write_settings(kr, secret_service)
        counter = process_profile(kr, "short")
        error_line(export(kr, "--profile", "proc"), 6, "proc", "valid for only", "duration_seconds")
        assert KeyringStore(service=secret_service).get(item("creds", "proc")) is None
        error_line(export(kr, "--profile", "proc"), 6, "valid for only")
        assert runs(counter) == 2

    def test_short_but_servable_lifetime_is_cached(self, kr: AwsEnv, secret_service: str) -> None:
        """A helper granting 600 s (window 420, 180 s of serving): exported and cached."""
        write_settings(kr, secret_service)
        counter = process_profile(kr, "tenmin")
        first = claude_ok(export(kr, "--profile", "proc"))
        assert 540 < expires_in(first) <= 600
        assert claude_ok(export(kr, "--profile", "proc")) == first
        assert runs(counter) == 1


# ================================================================== errors


class TestConfigErrors:
    """Exit 3: the configuration is wrong; the line says what to fix."""

    def test_unknown_profile(self, dev_role: AwsEnv, moto: MotoServer) -> None:
        """An unknown profile names itself, the config file and `keys add`."""
        error_line(export(dev_role, "--profile", "nope"), 3, "unknown profile nope",
                   str(dev_role.config_file), "credhelper keys add --profile nope")
        assert moto.calls() == 0

    def test_malformed_aws_config(self, kr: AwsEnv, moto: MotoServer) -> None:
        """A config file that does not parse: exit 3, names the file."""
        kr.write_config("[profile dev\nrole_arn = x\n  = = =\n")
        error_line(export(kr, "--profile", "dev"), 3, str(kr.config_file))
        assert moto.calls() == 0

    def test_malformed_settings_toml(self, dev_role: AwsEnv, moto: MotoServer) -> None:
        """Settings that are not TOML: exit 3, names the file and says to fix it."""
        dev_role.write_settings('store = "keyring\nrefresh_window = \n')
        error_line(export(dev_role, "--profile", "dev"), 3, str(dev_role.settings_file), "fix")
        assert moto.calls() == 0

    def test_unknown_settings_key(self, dev_role: AwsEnv, moto: MotoServer) -> None:
        """An unknown settings key is named."""
        dev_role.write_settings('store = "memory"\nrefresh_windw = 600\n')
        error_line(export(dev_role, "--profile", "dev"), 3, "refresh_windw",
                   str(dev_role.settings_file))
        assert moto.calls() == 0

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ('refresh_window = "900"\n', "refresh_window"),
            ("refresh_window = true\n", "refresh_window"),
            ("store = 3\n", "store"),
            ('warm_profiles = "dev"\n', "warm_profiles"),
            ('store = "plaintext"\n', "store"),
            ("refresh_window = 0\n", "refresh_window"),
        ],
        ids=["str-for-int", "bool-for-int", "int-for-str", "str-for-list", "bad-store", "zero"],
    )
    def test_wrong_settings_type(self, dev_role: AwsEnv, moto: MotoServer, text: str,
                                 key: str) -> None:
        """A settings value of the wrong type or range names the key."""
        dev_role.write_settings(text)
        error_line(export(dev_role, "--profile", "dev"), 3, f"'{key}'")
        assert moto.calls() == 0

    def test_cyclic_chain(self, kr: AwsEnv, moto: MotoServer) -> None:
        """a → b → a: exit 3 showing the loop, no upstream call."""
        kr.write_config(f"""
            [profile a]
            role_arn = {ROLE_ARN}
            source_profile = b

            [profile b]
            role_arn = {MID_ROLE_ARN}
            source_profile = a
            """)
        error_line(export(kr, "--profile", "a"), 3, "cyclic", "a -> b -> a", "source_profile")
        assert moto.calls() == 0

    def test_role_without_source(self, kr: AwsEnv, moto: MotoServer) -> None:
        """role_arn with neither source_profile nor credential_source: exit 3, says add one."""
        kr.write_config(f"""
            [profile dev]
            role_arn = {ROLE_ARN}
            """)
        error_line(export(kr, "--profile", "dev"), 3, "source_profile", "credential_source")
        assert moto.calls() == 0

    def test_profile_without_any_source(self, kr: AwsEnv, moto: MotoServer) -> None:
        """A profile with only a region: exit 3, lists the sources to configure."""
        kr.write_config("""
            [profile dev]
            region = eu-west-1
            """)
        error_line(export(kr, "--profile", "dev"), 3, "no credential source",
                   "credhelper keys add --profile dev")

    def test_bad_duration_seconds(self, kr: AwsEnv, moto: MotoServer) -> None:
        """duration_seconds that is not a number: exit 3, names the key."""
        kr.write_config(DEV_ROLE + "duration_seconds = one hour\n")
        kr.write_credentials(BASE_KEYS)
        error_line(export(kr, "--profile", "dev"), 3, "duration_seconds")
        assert moto.calls() == 0


class TestStoreErrors:
    """Exit 5: the store cannot serve; never a silent fallback."""

    def test_keyring_without_dbus(self, dev_role: AwsEnv, moto: MotoServer) -> None:
        """No D-Bus session: keyring's fail backend is refused with the fix; nothing on disk."""
        done = export(dev_role, "--profile", "dev", env={"DBUS_SESSION_BUS_ADDRESS": None})
        error_line(done, 5, "keyring", "encrypted-file")
        assert moto.calls() == 0
        found = [str(p) for p in dev_role.home.rglob("*") if "keyring" in p.name.lower()]
        assert found == []
        assert not (dev_role.home / ".local" / "share" / "python_keyring").exists()
        assert files_containing(dev_role.home / "xdg", SRC_SECRET) == []

    def test_group_readable_key_file(self, aws_env: AwsEnv, moto: MotoServer) -> None:
        """A key file readable by the group: exit 5, says chmod 600."""
        key, store = file_store_settings(aws_env, mode=0o640)
        aws_env.write_config(DEV_ROLE)
        aws_env.write_credentials(BASE_KEYS)
        error_line(export(aws_env, "--profile", "dev"), 5, str(key), "chmod 600")
        assert moto.calls() == 0
        assert not store.exists()

    def test_missing_key_file(self, aws_env: AwsEnv, moto: MotoServer) -> None:
        """A key file that does not exist: exit 5, says how to generate one."""
        key, _ = file_store_settings(aws_env)
        key.unlink()
        aws_env.write_config(DEV_ROLE)
        aws_env.write_credentials(BASE_KEYS)
        error_line(export(aws_env, "--profile", "dev"), 5, str(key), "/dev/urandom")

    @pytest.mark.parametrize("content", [b"garbage\n", b'{"format": "other"}', b"\x00\xff" * 50])
    def test_corrupted_encrypted_store_file(self, aws_env: AwsEnv, moto: MotoServer,
                                            content: bytes) -> None:
        """An unreadable store file: exit 5, says to move it away; the file is untouched."""
        _, store = file_store_settings(aws_env)
        aws_env.write_config(DEV_ROLE)
        aws_env.write_credentials(BASE_KEYS)
        store.write_bytes(content)
        before = store.stat()
        error_line(export(aws_env, "--profile", "dev"), 5, str(store), "move")
        assert store.read_bytes() == content
        assert store.stat().st_mtime_ns == before.st_mtime_ns
        assert moto.calls("AssumeRole") == 0


class TestUpstreamErrors:
    """Exit 6: AWS refused or could not be reached (after retries); exit 4: a human must act."""

    def test_access_denied(self, dev_role: AwsEnv) -> None:
        """AccessDenied (403): exit 6 at once, with AWS's code and the fix."""
        with CannedSts(lambda n, f: (403, sts_error("AccessDenied", "not authorized"))) as sts:
            done = export(dev_role, "--profile", "dev", env={"AWS_ENDPOINT_URL_STS": sts.url})
        error_line(done, 6, "AssumeRole", "dev", "AccessDenied", "not authorized", "trust policy")
        assert len(sts.requests) == 1
        assert sts.requests[0]["Action"] == "AssumeRole"

    def test_rejected_source_keys(self, dev_role: AwsEnv) -> None:
        """InvalidClientTokenId: exit 6, says to renew the source profile's keys."""
        body = sts_error("InvalidClientTokenId", "The security token included is invalid.")
        with CannedSts(lambda n, f: (403, body)) as sts:
            done = export(dev_role, "--profile", "dev", env={"AWS_ENDPOINT_URL_STS": sts.url})
        error_line(done, 6, "InvalidClientTokenId", "base", "renew")

    def test_throttled_every_time(self, dev_role: AwsEnv) -> None:
        """Throttling on every attempt: exit 6 after retries (more than one request)."""
        with CannedSts(lambda n, f: (400, sts_error("Throttling", "Rate exceeded"))) as sts:
            done = export(dev_role, "--profile", "dev", env={"AWS_ENDPOINT_URL_STS": sts.url},
                          timeout=120)
        error_line(done, 6, "Throttling", "try again")
        assert 1 < len(sts.requests) <= 10

    def test_throttled_twice_then_ok(self, dev_role: AwsEnv, secret_service: str) -> None:
        """Throttled twice, then a valid answer: exit 0 with the third answer's credentials."""
        def answer(n: int, form: dict[str, str]) -> tuple[int, str]:
            if n <= 2:
                return 400, sts_error("Throttling", "Rate exceeded")
            return 200, assume_role_ok()

        with CannedSts(answer) as sts:
            done = export(dev_role, "--profile", "dev", env={"AWS_ENDPOINT_URL_STS": sts.url},
                          timeout=120)
        creds = claude_ok(done)
        assert len(sts.requests) == 3
        assert all(r["Action"] == "AssumeRole" and r["RoleArn"] == ROLE_ARN for r in sts.requests)
        assert (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]) == (
            "ASIACANNEDSTS0000001", STUB_SECRET, STUB_TOKEN
        )

    def test_server_error_then_ok(self, dev_role: AwsEnv) -> None:
        """A 500 is retried like throttling."""
        def answer(n: int, form: dict[str, str]) -> tuple[int, str]:
            if n == 1:
                return 500, sts_error("InternalFailure", "oops", kind="Receiver")
            return 200, assume_role_ok()

        with CannedSts(answer) as sts:
            done = export(dev_role, "--profile", "dev", env={"AWS_ENDPOINT_URL_STS": sts.url},
                          timeout=120)
        claude_ok(done)
        assert len(sts.requests) == 2

    def test_network_down(self, dev_role: AwsEnv) -> None:
        """STS unreachable (closed port): exit 6, says to check the network / endpoint."""
        port = free_port()
        done = export(dev_role, "--profile", "dev",
                      env={"AWS_ENDPOINT_URL_STS": f"http://127.0.0.1:{port}"}, timeout=120)
        error_line(done, 6, "cannot reach AWS", "AWS_ENDPOINT_URL")

    def test_mfa_on_role_needs_login(self, kr: AwsEnv, moto: MotoServer) -> None:
        """mfa_serial on the role: exit 4, `credhelper login --profile dev`, no prompt, no call."""
        kr.write_config(DEV_ROLE + "mfa_serial = arn:aws:iam::123456789012:mfa/alice\n")
        kr.write_credentials(BASE_KEYS)
        error_line(export(kr, "--profile", "dev", timeout=30), 4, "credhelper login --profile dev")
        assert moto.calls() == 0

    def test_mfa_on_keys_needs_login(self, kr: AwsEnv, moto: MotoServer) -> None:
        """mfa_serial on a static-keys profile: exit 4 too, never GetSessionToken without a code."""
        kr.write_credentials(BASE_KEYS)
        kr.write_config("[profile base]\nmfa_serial = arn:aws:iam::123456789012:mfa/alice\n")
        error_line(export(kr, "--profile", "base", timeout=30), 4,
                   "credhelper login --profile base")
        assert moto.calls() == 0

    def test_failure_then_recovery_is_not_cached(self, dev_role: AwsEnv, moto: MotoServer) -> None:
        """After an upstream failure, the next export (STS back) mints normally."""
        with CannedSts(lambda n, f: (403, sts_error("AccessDenied", "nope"))) as sts:
            error_line(export(dev_role, "--profile", "dev",
                              env={"AWS_ENDPOINT_URL_STS": sts.url}), 6)
        claude_ok(export(dev_role, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 1


class TestCorruptCache:
    """The credentials cache is derivable: a damaged item is re-minted, not fatal."""

    def test_garbage_plain_item_is_reminted(self, dev_role: AwsEnv, moto: MotoServer,
                                            secret_service: str) -> None:
        """`plain:` + garbage in v1/creds/dev: export mints again and overwrites it."""
        import keyring

        first = claude_ok(export(dev_role, "--profile", "dev"))
        keyring.get_keyring().set_password(secret_service, "v1/creds/dev", "plain:{not json")
        second = claude_ok(export(dev_role, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 2
        assert second["AccessKeyId"] != first["AccessKeyId"]
        assert second["AccessKeyId"] in moto.access_key_ids_issued("AssumeRole")
        stored = keyring.get_keyring().get_password(secret_service, "v1/creds/dev")
        assert stored is not None and stored.startswith("plain:{")
        assert json.loads(stored[len("plain:"):])["credentials"]["AccessKeyId"] == second["AccessKeyId"]
        assert claude_ok(export(dev_role, "--profile", "dev")) == second
        assert moto.calls("AssumeRole") == 2

    @pytest.mark.parametrize(
        "value",
        [
            'plain:{"v": 1, "basis": "x"}',
            'plain:{"v": 1, "credentials": {"AccessKeyId": 1}}',
            "plain:[]",
            "plain:",
        ],
    )
    def test_wrong_shaped_plain_item_is_reminted(self, dev_role: AwsEnv, moto: MotoServer,
                                                 secret_service: str, value: str) -> None:
        """Valid JSON of the wrong shape is a cache miss too."""
        import keyring

        keyring.get_keyring().set_password(secret_service, "v1/creds/dev", value)
        claude_ok(export(dev_role, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 1

    def test_bad_credentials_under_the_right_basis_are_reminted(
        self, dev_role: AwsEnv, moto: MotoServer, secret_service: str
    ) -> None:
        """A record with the right basis but unreadable credentials is a cache miss."""
        claude_ok(export(dev_role, "--profile", "dev"))
        store = KeyringStore(service=secret_service)
        raw = store.get(item("creds", "dev"))
        assert raw is not None
        record = json.loads(raw)
        record["credentials"]["AccessKeyId"] = 1
        store.set(item("creds", "dev"), json.dumps(record))
        claude_ok(export(dev_role, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 2

    def test_credentials_of_another_role_are_not_served(self, dev_role: AwsEnv, moto: MotoServer) -> None:
        """Changing role_arn changes the basis: cached credentials of the old role are not served."""
        first = claude_ok(export(dev_role, "--profile", "dev"))
        dev_role.write_config(DEV_ROLE.replace(ROLE_ARN, MID_ROLE_ARN))
        second = claude_ok(export(dev_role, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 2
        assert second["AccessKeyId"] != first["AccessKeyId"]

    def test_garbage_keyring_head_is_reminted(self, dev_role: AwsEnv, moto: MotoServer,
                                              secret_service: str) -> None:
        """A creds item the keyring store cannot parse at all (no `plain:`) is re-minted too."""
        import keyring

        keyring.get_keyring().set_password(secret_service, "v1/creds/dev", "garbage")
        claude_ok(export(dev_role, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 1

    def test_tampered_encrypted_file_item_is_reminted(self, aws_env: AwsEnv, moto: MotoServer) -> None:
        """encrypted-file: a creds item that fails authentication is re-minted, others kept."""
        _, store = file_store_settings(aws_env)
        aws_env.write_config(DEV_ROLE)
        aws_env.write_credentials(BASE_KEYS)
        claude_ok(export(aws_env, "--profile", "dev"))
        doc = json.loads(store.read_text())
        blob = doc["items"]["v1/creds/dev"]
        doc["items"]["v1/creds/dev"] = blob[:-8] + ("A" * 8 if blob[-8:] != "A" * 8 else "B" * 8)
        store.write_text(json.dumps(doc))
        claude_ok(export(aws_env, "--profile", "dev"))
        assert moto.calls("AssumeRole") == 2
