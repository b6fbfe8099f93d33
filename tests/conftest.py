"""Shared test fixtures: moto as STS, a real Secret Service, a clean AWS
environment for the installed `credhelper`, and the real-Claude-Code harness.

Fixtures (the feature tests rely on these names):

- `moto` (session): a `moto_server` subprocess on a free 127.0.0.1 port that
  records every request it receives (moto's own recorder) and every response's
  AccessKeyIds (a thin WSGI wrapper), both on the server side.
  `.url`, `.port`, `.reset()`, `.calls(action=None)`,
  `.access_key_ids_issued(action=None)`.
- `aws_env` (function): a throwaway HOME and a clean environment for subprocesses;
  resets `moto` first. `.run(...)` / `.popen(...)` run the installed console script.
- `secret_service` (function): a unique keyring service name on a working
  Secret Service, else skip (fail under CI=true).
- `claude_code` (function): `claude_code(helper_cmd, ...) -> ClaudeRun` driving
  the real Claude Code through tests/claude_harness, else skip (fail under CI=true).
- `netns_moto` (function): a NETNS_SETUP command that starts the same recording
  moto inside the harness's network namespace, and a reader for its logs.

Under CI=true a skipped test marked `keyring` or `e2e` is reported as a failure.
Tests that use `secret_service` / `claude_code` get those marks automatically.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import claude_harness
import pytest
from claude_harness import ClaudeRun
from leakguard import leak_guard  # noqa: F401 - the autouse secret-leak guard, for every test

REPO = Path(__file__).resolve().parent.parent
CREDHELPER = os.path.join(os.path.dirname(sys.executable), "credhelper")



def file_store_toml(directory: Path, mode: int = 0o600) -> str:
    """Settings lines for the encrypted-file store in `directory`, with a 32-byte
    random key file (made once; chmod `mode`): no Secret Service needed."""
    key = directory / "store.key"
    if not key.exists():
        key.write_bytes(os.urandom(32))
    key.chmod(mode)
    store = directory / "store.enc"
    return (f'store = "encrypted-file"\nencrypted_file = {json.dumps(str(store))}\n'
            f"key_file = {json.dumps(str(key))}\n")


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip locally; fail under CI=true, where every test must really run."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this must work in CI)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ------------------------------------------------------------------ CI policy


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "secret_service" in names:
            item.add_marker(pytest.mark.keyring)
        if "claude_code" in names or "netns_moto" in names:
            item.add_marker(pytest.mark.e2e)


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.skipped and in_ci() and not hasattr(rep, "wasxfail"):
        marks = sorted({m.name for m in item.iter_markers()} & {"keyring", "e2e"})
        if marks:
            reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            rep.outcome = "failed"
            rep.longrepr = (
                f"test marked {'/'.join(marks)} was skipped under CI=true, "
                f"where it must run: {reason}"
            )
    item.stash.setdefault(_REPORTS, {})[rep.when] = rep
    return rep


# ------------------------------------------------------------------ moto

#: moto_server itself (same CLI and behaviour), with its app wrapped so that
#: each response's action and AccessKeyIds are appended to a log before the
#: response is sent. Requests are recorded by moto's recorder
#: (MOTO_ENABLE_RECORDING / MOTO_RECORDER_FILEPATH) as they arrive.
MOTO_LAUNCHER = '''
import json, os, re, sys, threading, time
import moto.server

LOG = os.environ["CREDHELPER_TEST_MOTO_RESPONSES"]
LOCK = threading.Lock()
AKID = re.compile(rb"<AccessKeyId>([^<]+)</AccessKeyId>")
SECRET = re.compile(rb"<(?:SecretAccessKey|SessionToken)>([^<]+)</")  # for tests/leakguard.py
ROOT = re.compile(rb"<(\\w+)Response[\\s>]")


def wrap(app):
    def logged(environ, start_response):
        seen = {}

        def sr(status, headers, exc_info=None):
            seen["status"] = status
            return start_response(status, headers, exc_info)

        result = app(environ, sr)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not environ.get("PATH_INFO", "").startswith("/moto-api"):
            m = ROOT.search(body[:400])
            rec = {
                "t": time.time(),
                "status": int(str(seen.get("status", "0")).split()[0]),
                "action": m.group(1).decode() if m else None,
                "akids": [a.decode() for a in AKID.findall(body)],
                "secrets": [a.decode() for a in SECRET.findall(body)],
            }
            with LOCK:
                with open(LOG, "a") as f:
                    f.write(json.dumps(rec) + "\\n")
        return [body]

    return logged


_run_simple = moto.server.run_simple


def run_simple(host, port, app, **kw):
    return _run_simple(host, port, wrap(app), **kw)


moto.server.run_simple = run_simple
moto.server.main(sys.argv[1:])
'''

REQUESTS_LOG = "moto.requests.jsonl"
RESPONSES_LOG = "moto.responses.jsonl"


def _complete_lines(path: str, offset: int) -> list[str]:
    """Lines appended after `offset` that are complete (a writer may be mid-line)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n")
    return [ln for ln in data[: end + 1].decode().splitlines() if ln.strip()]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def request_action(entry: Mapping[str, Any]) -> str | None:
    """The `Action` of one moto recorder entry (form body, else query string)."""
    body = entry.get("body") or ""
    raw = base64.b64decode(body) if entry.get("body_encoded") else str(body).encode()
    try:
        form = parse_qs(raw.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        form = {}
    if "Action" in form:
        return form["Action"][0]
    query = parse_qs(urlsplit(str(entry.get("url", ""))).query)
    return query["Action"][0] if "Action" in query else None


class MotoRecording:
    """Reads the server-side logs: moto's request recording and the response log.

    Counts only what arrived after the last `mark()`.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.requests_file = os.path.join(directory, REQUESTS_LOG)
        self.responses_file = os.path.join(directory, RESPONSES_LOG)
        self._req_offset = 0
        self._resp_offset = 0

    def mark(self) -> None:
        self._req_offset = _size(self.requests_file)
        self._resp_offset = _size(self.responses_file)

    def requests(self) -> list[dict[str, Any]]:
        """Recorded API requests (moto-api calls left out), oldest first."""
        out = []
        for ln in _complete_lines(self.requests_file, self._req_offset):
            entry = json.loads(ln)
            if urlsplit(entry.get("url", "")).path.startswith("/moto-api"):
                continue
            entry["action"] = request_action(entry)
            out.append(entry)
        return out

    def calls(self, action: str | None = None) -> int:
        """Requests with this Action (any Action if None) since the last mark."""
        actions = [r["action"] for r in self.requests()]
        if action is None:
            return sum(1 for a in actions if a is not None)
        return actions.count(action)

    def responses(self) -> list[dict[str, Any]]:
        return [json.loads(ln) for ln in _complete_lines(self.responses_file, self._resp_offset)]

    def access_key_ids_issued(self, action: str | None = None) -> set[str]:
        """AccessKeyIds in successful responses (of this Action) since the last mark."""
        return {
            akid
            for r in self.responses()
            if r["status"] < 300 and (action is None or r["action"] == action)
            for akid in r["akids"]
        }


def _launch_moto(launcher: str, host: str, port: int, logdir: str, log: IO[bytes]) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        MOTO_ENABLE_RECORDING="True",
        MOTO_RECORDER_FILEPATH=os.path.join(logdir, REQUESTS_LOG),
        CREDHELPER_TEST_MOTO_RESPONSES=os.path.join(logdir, RESPONSES_LOG),
    )
    return subprocess.Popen(
        [sys.executable, launcher, "-H", host, "-p", str(port)],
        env=env,
        cwd=logdir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class MotoServer:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, logdir: str) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.logdir = logdir
        self.recording = MotoRecording(logdir)

    def reset(self) -> None:
        """Reset moto's state and forget the calls recorded so far."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
        self.recording.mark()

    def calls(self, action: str | None = None) -> int:
        return self.recording.calls(action)

    def access_key_ids_issued(self, action: str | None = None) -> set[str]:
        return self.recording.access_key_ids_issued(action)


@pytest.fixture(scope="session")
def moto_launcher(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("moto-launcher") / "moto_launcher.py"
    path.write_text(MOTO_LAUNCHER)
    return str(path)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory, moto_launcher: str) -> Iterator[MotoServer]:
    logdir = str(tmp_path_factory.mktemp("moto"))
    with open(os.path.join(logdir, "moto.log"), "ab") as log:
        for _ in range(3):  # the free port may be taken between probe and bind
            port = free_port()
            proc = _launch_moto(moto_launcher, "127.0.0.1", port, logdir, log)
            if _wait_http(f"http://127.0.0.1:{port}/moto-api/", proc):
                break
            proc.kill()
            proc.wait()
        else:
            log.flush()
            text = Path(logdir, "moto.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"moto_server did not start:\n{text}", pytrace=False)
        server = MotoServer(proc, port, logdir)
        try:
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ------------------------------------------------------------------ aws_env


class AwsEnv:
    """A throwaway HOME and a clean environment for the installed `credhelper`."""

    def __init__(self, home: Path, moto: MotoServer) -> None:
        self.home = home
        self.moto = moto
        self.credhelper = CREDHELPER
        self.config_file = home / ".aws" / "config"
        self.credentials_file = home / ".aws" / "credentials"
        self.settings_file = home / "credhelper.toml"
        self.socket = home / "run" / "daemon.sock"
        xdg = home / "xdg"
        (home / ".aws").mkdir(parents=True, exist_ok=True)
        xdg.mkdir(mode=0o700, exist_ok=True)
        xdg.chmod(0o700)
        self.env: dict[str, str] = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "AWS_CONFIG_FILE": str(self.config_file),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials_file),
            "CREDHELPER_CONFIG": str(self.settings_file),
            "CREDHELPER_SOCKET": str(self.socket),
            "XDG_RUNTIME_DIR": str(xdg),
            "AWS_ENDPOINT_URL_STS": moto.url,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
            self.env["DBUS_SESSION_BUS_ADDRESS"] = os.environ["DBUS_SESSION_BUS_ADDRESS"]
        self._procs: list[subprocess.Popen[str]] = []

    @staticmethod
    def _write(path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def write_config(self, text: str) -> Path:
        return self._write(self.config_file, text)

    def write_credentials(self, text: str) -> Path:
        return self._write(self.credentials_file, text)

    def write_settings(self, text: str) -> Path:
        return self._write(self.settings_file, text)

    def keyring_settings(self, service: str) -> Path:
        return self.write_settings(f'store = "keyring"\nkeyring_service = {json.dumps(service)}\n')

    def environ(self, env: Mapping[str, str | None] | None = None) -> dict[str, str]:
        """`.env` with `env` merged over it (a None value removes the variable)."""
        merged: dict[str, str | None] = {**self.env, **(env or {})}
        return {k: v for k, v in merged.items() if v is not None}

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str | None] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = (
            {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        )
        return subprocess.run(
            [self.credhelper, *args],
            env=self.environ(env),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    def popen(
        self,
        *args: str,
        env: Mapping[str, str | None] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        **kwargs: Any,
    ) -> subprocess.Popen[str]:
        """Start `credhelper *args` (stdout/stderr piped, text); killed at teardown."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen(
            [self.credhelper, *args],
            env=self.environ(env),
            cwd=self.home,
            stdin=stdin,
            text=True,
            **kwargs,
        )
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=10)
            except (subprocess.TimeoutExpired, ValueError):
                pass


@pytest.fixture
def aws_env(tmp_path: Path, moto: MotoServer) -> Iterator[AwsEnv]:
    home = tmp_path / "home"
    short = None
    if len(str(home / "run" / "daemon.sock")) > 100:  # sun_path is 108 bytes
        short = tempfile.mkdtemp(prefix="chome-")
        home = Path(short)
    home.mkdir(exist_ok=True)
    moto.reset()
    env = AwsEnv(home, moto)
    try:
        yield env
    finally:
        env.close()
        if short:
            shutil.rmtree(short, ignore_errors=True)


# ------------------------------------------------------------------ secret_service


def _secret_service_problem(service: str) -> str | None:
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return "DBUS_SESSION_BUS_ADDRESS is not set (run the tests with scripts/test)"
    try:
        import keyring
        from keyring.backends import SecretService

        kr = keyring.get_keyring()
        if type(kr) is not SecretService.Keyring:
            return f"keyring.get_keyring() is {type(kr).__module__}.{type(kr).__name__}"
        value = f"probe-{uuid.uuid4().hex}"
        kr.set_password(service, "probe", value)
        back = kr.get_password(service, "probe")
        kr.delete_password(service, "probe")
        if back != value:
            return "Secret Service round trip returned a different value"
    except Exception as exc:
        return f"Secret Service round trip failed: {type(exc).__name__}: {exc}"
    return None


def _delete_service_items(service: str) -> None:
    try:
        import secretstorage

        conn = secretstorage.dbus_init()
        try:
            collection = secretstorage.get_default_collection(conn)
            for item in collection.search_items({"service": service}):
                item.delete()
        finally:
            conn.close()
    except Exception:
        pass  # best effort: the keyring lives in a throwaway HOME anyway


@pytest.fixture
def secret_service() -> Iterator[str]:
    """A keyring service name unique to this test, on a working Secret Service."""
    service = f"credhelper-test-{uuid.uuid4().hex[:12]}"
    problem = _secret_service_problem(service)
    if problem:
        unavailable(f"no usable Secret Service: {problem}")
    yield service
    _delete_service_items(service)


# ------------------------------------------------------------------ Claude Code e2e


class ClaudeCode:
    """What the `claude_code` fixture returns: `claude_code(helper_cmd, ...) -> ClaudeRun`.

    Each run's work dir is under the test's tmp_path. Keyword arguments are
    claude_harness.run's (settings=, wrap_helpers=, command=, expect_akid=,
    fail_first=, ...); `extra_env` takes the same knobs by their old variable
    names (EXPECT_AKID, EXPECT_TEXT, FAIL_FIRST, TOOL_SLEEP, AUTH_REFRESH_CMD,
    PROMPT, CC_TIMEOUT, ENV_MODE, EXTRA_CLAUDE_ARGS).
    """

    _KNOBS: Mapping[str, tuple[str, Any]] = {
        "EXPECT_AKID": ("expect_akid", str), "EXPECT_TEXT": ("expect_text", str),
        "FAIL_FIRST": ("fail_first", int), "TOOL_SLEEP": ("tool_sleep", int),
        "AUTH_REFRESH_CMD": ("refresh_cmd", str), "PROMPT": ("prompt", str),
        "CC_TIMEOUT": ("cc_timeout", float), "ENV_MODE": ("env_mode", str),
        "EXTRA_CLAUDE_ARGS": ("extra_args", shlex.split),
    }

    def __init__(self, workdirs: Path) -> None:
        self.workdirs = workdirs
        self.runs: list[ClaudeRun] = []

    def __call__(
        self,
        helper_cmd: str | None = None,
        *,
        pass_env: Mapping[str, str] | None = None,
        netns_setup: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **knobs: Any,
    ) -> ClaudeRun:
        for name, value in (extra_env or {}).items():
            if name not in self._KNOBS:
                raise ValueError(f"unknown harness knob {name}: one of {sorted(self._KNOBS)}")
            key, convert = self._KNOBS[name]
            knobs[key] = convert(value)
        try:
            run = claude_harness.run(helper_cmd, pass_env=pass_env, netns_setup=netns_setup,
                                     timeout=timeout, parent=self.workdirs, **knobs)
        except claude_harness.HarnessUnavailable as exc:
            unavailable(str(exc))
        self.runs.append(run)
        return run


@pytest.fixture
def claude_code(tmp_path: Path) -> ClaudeCode:
    """`claude_code(helper_cmd, ...) -> ClaudeRun` (tests/claude_harness), else skip
    (fail under CI=true)."""
    problem = claude_harness.problem()
    if problem:
        unavailable(problem)
    workdirs = tmp_path / "claude"
    workdirs.mkdir()
    return ClaudeCode(workdirs)


class NetnsMoto:
    """moto (recording, as in the `moto` fixture) started inside the harness's netns.

    Pass `.setup` as `netns_setup=`; the netns has its own loopback, so the
    port is fixed. After the run, `.recording(run)` reads its logs under $W.
    """

    port = 5055
    url = f"http://127.0.0.1:{port}"

    def __init__(self, launcher: str) -> None:
        py, launcher = shlex.quote(sys.executable), shlex.quote(launcher)
        wait = (
            "import sys,time,urllib.request\n"
            "for _ in range(600):\n"
            "    try:\n"
            f"        urllib.request.urlopen('{self.url}/moto-api/', timeout=1); sys.exit(0)\n"
            "    except OSError: time.sleep(0.05)\n"
            "sys.exit(1)\n"
        )
        self.setup = (
            '(cd "$W" && export MOTO_ENABLE_RECORDING=True'
            f' MOTO_RECORDER_FILEPATH="$W/{REQUESTS_LOG}"'
            f' CREDHELPER_TEST_MOTO_RESPONSES="$W/{RESPONSES_LOG}"'
            f' && exec {py} {launcher} -H 127.0.0.1 -p {self.port} >"$W/moto.log" 2>&1'
            ') & echo $! >> "$NETNS_PIDFILE"\n'
            f"{py} -c {shlex.quote(wait)} || {{ cat \"$W/moto.log\" >&2; exit 1; }}\n"
        )

    @staticmethod
    def recording(run: ClaudeRun) -> MotoRecording:
        if not run.workdir:
            raise AssertionError(f"the harness made no work dir\n{run.report()}")
        return MotoRecording(run.workdir)


@pytest.fixture
def netns_moto(moto_launcher: str) -> NetnsMoto:
    return NetnsMoto(moto_launcher)
