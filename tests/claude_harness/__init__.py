"""The project's end-to-end harness for the real Claude Code on a fake Bedrock.

`run(helper_cmd=..., ...)` runs the pinned `@anthropic-ai/claude-code` native
binary (installed with npm under $CC_PREFIX) with `awsCredentialExport` set to
the command under test, inside `unshare --net`: a network namespace with only
its own loopback, where the fake Bedrock (fake_bedrock.py) listens and verifies
every request's SigV4 signature against what the helper printed. Claude starts
from an empty environment with a throwaway HOME (`AWS_CONFIG_FILE` and
`AWS_SHARED_CREDENTIALS_FILE` point at files that do not exist): a helper sees
no AWS profile unless `pass_env` hands one in. Needs root.

The helper cannot reach servers on the host's 127.0.0.1; Unix sockets bound to
a filesystem path cross the boundary, so a daemon started outside is reachable.
A server the helper needs (moto, an SSO emulator) is started inside with
`netns_setup`: bash that sees `$W` (the work dir) and `$NETNS_PIDFILE` (append
the pid of what you leave running: it is sent SIGTERM, and waited for, before
`run` returns).

Work dir files: spec.json, harness.json (version, rc, times or error),
settings in home/.claude/settings.json, helper/invocations.log and
helper/<tag>.<pid>.{out,err,env} per helper run (tag export or refresh),
bedrock.jsonl, claude.{stdout,stderr,rc,times}, creds/ (JSON credential files
a `command` may drop there: the fake Bedrock accepts signatures made with them).
By hand: `cd tests && python -m claude_harness --help`.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from claude_harness.report import ClaudeRun
from claude_harness.spec import Spec

__all__ = ["CC_VERSION", "ClaudeRun", "HarnessUnavailable", "cc_prefix", "ensure_claude", "problem", "run"]

CC_VERSION = "2.1.330"
TESTS = Path(__file__).resolve().parent.parent
INNER = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from claude_harness.netns import main; del sys.argv[1]; main()")
NPM_TIMEOUT = 600


class HarnessUnavailable(Exception):
    """This machine cannot run the harness (the reason says why)."""


def cc_version() -> str:
    return os.environ.get("CC_VERSION") or CC_VERSION


def cc_prefix() -> str:
    return os.environ.get("CC_PREFIX") or os.path.join(os.environ.get("TMPDIR") or "/tmp", "claude-code-e2e")


def claude_binary(prefix: str | None = None, version: str | None = None) -> str | None:
    """The pinned version's native binary under `prefix`, if installed (the
    platform package holds it; bin/claude.exe may be a stub when postinstall did not run)."""
    prefix, version = prefix or cc_prefix(), version or cc_version()
    pkg = Path(prefix, "node_modules", "@anthropic-ai", "claude-code", "package.json")
    try:
        if json.loads(pkg.read_text()).get("version") != version:
            return None
    except (OSError, ValueError):
        return None
    arch = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    for path in sorted(glob.glob(os.path.join(prefix, "node_modules", "@anthropic-ai",
                                              f"claude-code-linux-{arch}*", "claude"))):
        if os.access(path, os.X_OK):
            return path
    return None


def ensure_claude(prefix: str | None = None, version: str | None = None) -> str:
    """The binary, installed with `npm install --prefix` first if missing
    (under a lock: concurrent first installs into one prefix race)."""
    prefix, version = prefix or cc_prefix(), version or cc_version()
    if found := claude_binary(prefix, version):
        return found
    if shutil.which("npm") is None:
        raise HarnessUnavailable(f"Claude Code {version} is not installed under {prefix} and npm is missing")
    os.makedirs(prefix, exist_ok=True)
    with open(os.path.join(prefix, ".install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (found := claude_binary(prefix, version)):
            done = subprocess.run(
                ["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund",
                 f"@anthropic-ai/claude-code@{version}"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False,
            )
            found = claude_binary(prefix, version)
            if not found:
                raise HarnessUnavailable(f"npm install of Claude Code {version} under {prefix} failed "
                                         f"(exit {done.returncode}): {done.stderr[-800:]}")
    return found


_problem: list[str | None] = []


def problem() -> str | None:
    """Why the harness cannot run here (None: it can). Installs Claude Code if needed."""
    if _problem:
        return _problem[0]
    reason: str | None = None
    if os.geteuid() != 0:
        reason = "the Claude Code harness must run as root (unshare --net)"
    elif shutil.which("unshare") is None or shutil.which("ip") is None:
        reason = "unshare (util-linux) and ip (iproute2) are needed"
    elif subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False).returncode != 0:
        reason = "unshare --net does not work here"
    else:
        try:
            ensure_claude()
        except (HarnessUnavailable, subprocess.SubprocessError, OSError) as exc:
            reason = str(exc)
    _problem.append(reason)
    return reason


def run(
    helper_cmd: str | None = None,
    *,
    refresh_cmd: str | None = None,
    settings: str | os.PathLike[str] | None = None,
    wrap_helpers: bool = True,
    command: Sequence[str] | None = None,
    credentials: Sequence[Mapping[str, str]] = (),
    pass_env: Mapping[str, str] | None = None,
    netns_setup: str | None = None,
    expect_akid: str | None = None,
    expect_text: str = "Hello from fake Bedrock",
    require_helper: bool | None = None,
    fail_first: int = 0,
    tool_sleep: int = 0,
    env_mode: str = "both",
    prompt: str = "say hi",
    extra_args: Sequence[str] = (),
    cc_timeout: float = 120,
    timeout: float | None = None,
    parent: str | os.PathLike[str] | None = None,
) -> ClaudeRun:
    """One run of the real Claude Code; see the module doc and spec.Spec.

    `settings`: use this settings.json instead of writing one (its helper
    commands wrapped for logging unless `wrap_helpers=False`: then the file is
    copied byte for byte). `command`: run this argv instead of `claude -p`
    ("{claude}", "{prompt}", "{workdir}" replaced). `credentials`: more
    credentials (AccessKeyId, SecretAccessKey, SessionToken) the fake Bedrock
    accepts besides what the helper prints (written to creds/). `require_helper`: whether
    check (a) applies (default: unless a command is given or helpers are not
    wrapped). `timeout`: the whole run's deadline (default cc_timeout + 180 s).
    """
    binary = ensure_claude()
    workdir = tempfile.mkdtemp(prefix="claude-run.", dir=parent)
    spec = Spec(
        workdir=workdir, claude_bin=binary, helper_cmd=helper_cmd, refresh_cmd=refresh_cmd,
        settings=os.fspath(settings) if settings is not None else None, wrap_helpers=wrap_helpers,
        env_mode=env_mode, pass_env=dict(pass_env or {}), netns_setup=netns_setup, prompt=prompt,
        expect_text=expect_text, fail_first=fail_first, tool_sleep=tool_sleep, extra_args=list(extra_args),
        command=list(command) if command is not None else None, cc_timeout=cc_timeout,
    )
    spec.check()
    spec.dump(os.path.join(workdir, "spec.json"))
    os.makedirs(os.path.join(workdir, "creds"))
    for n, creds in enumerate(credentials):
        with open(os.path.join(workdir, "creds", f"given-{n}.json"), "w") as f:
            json.dump(dict(creds), f)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CREDHELPER_"))}
    proc = subprocess.Popen(
        ["unshare", "--net", sys.executable, "-c", INNER, str(TESTS), os.path.join(workdir, "spec.json")],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    deadline = timeout if timeout is not None else cc_timeout + 180
    try:
        output, _ = proc.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        output += f"\nharness: killed after {deadline:.0f} s"
    if require_helper is None:
        require_helper = command is None and (settings is None or wrap_helpers)
    return ClaudeRun(workdir, expect_akid=expect_akid, expect_text=expect_text,
                     require_helper=require_helper, stderr=output)
