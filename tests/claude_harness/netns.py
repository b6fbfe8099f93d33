"""The inside of one harness run, executed under `unshare --net` as root:

    python -c '<put tests/ on sys.path>; from claude_harness.netns import main; main()' W/spec.json

It brings up the namespace's own loopback (and checks there is no other link),
starts the fake Bedrock, writes the throwaway HOME's settings.json (or uses the
given one), runs the test's NETNS_SETUP, then the real Claude Code from an empty
environment (`env -i` plus a short list), and ends whatever the run started.
Everything lands in the work dir W; `harness.json` says how it went. Exit 0
when Claude ran (whatever it answered), 2 on a harness error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from claude_harness.fake_bedrock import Behaviour, CredentialBook, serve
from claude_harness.spec import BEDROCK_ENV, QUIET_ENV, Spec

WRAPPER = Path(__file__).with_name("helper_wrapper.sh")
BASE_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
SETUP_TIMEOUT = 120.0
STOP_GRACE = 10.0


class HarnessError(Exception):
    pass


def loopback_only() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, timeout=30)
    out = subprocess.run(["ip", "-o", "link", "show"], check=True, capture_output=True, text=True,
                         timeout=30).stdout
    links = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    if links != ["lo"]:
        raise HarnessError(f"the network namespace has links other than lo: {links}")


def make_wrapper(helper: Path, tag: str, command: str) -> str:
    """Write helper/<tag>.sh running `command`; return its path."""
    (helper / f"{tag}.cmd").write_text(command)
    path = helper / f"{tag}.sh"
    head = f"#!/bin/sh\nTAG={tag}\nD='{helper}'\n"
    path.write_text(head + WRAPPER.read_text().split("\n", 1)[1])
    path.chmod(0o755)
    return str(path)


def write_settings(spec: Spec, w: Path, base_url: str) -> None:
    target = w / "home" / ".claude" / "settings.json"
    helper = w / "helper"
    if spec.settings is not None:
        raw = Path(spec.settings).read_bytes()
        if not spec.wrap_helpers:
            target.write_bytes(raw)
            return
        settings: dict[str, Any] = json.loads(raw)
        for key, tag in (("awsCredentialExport", "export"), ("awsAuthRefresh", "refresh")):
            if isinstance(settings.get(key), str):
                settings[key] = make_wrapper(helper, tag, settings[key])
        target.write_text(json.dumps(settings, indent=2))
        return
    settings = {}
    if spec.helper_cmd:
        settings["awsCredentialExport"] = make_wrapper(helper, "export", spec.helper_cmd)
    if spec.refresh_cmd:
        settings["awsAuthRefresh"] = make_wrapper(helper, "refresh", spec.refresh_cmd)
    env = dict(QUIET_ENV)
    if spec.env_mode in ("settings", "both"):
        env.update(BEDROCK_ENV, ANTHROPIC_BEDROCK_BASE_URL=base_url)
    settings["env"] = env
    target.write_text(json.dumps(settings, indent=2))


def claude_env(spec: Spec, w: Path, base_url: str) -> dict[str, str]:
    """The whole environment Claude starts with: no AWS credentials, no profile."""
    env = {
        "PATH": BASE_PATH, "HOME": str(w / "home"), "TERM": "dumb", "LANG": "C.UTF-8",
        "USER": "root", "SHELL": "/bin/bash", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(w / "home" / ".aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(w / "home" / ".aws" / "credentials"),
        **QUIET_ENV,
    }
    if spec.settings is not None:
        env["ANTHROPIC_BEDROCK_BASE_URL"] = base_url  # the only way to the fake
    elif spec.env_mode in ("process", "both"):
        env.update(BEDROCK_ENV, ANTHROPIC_BEDROCK_BASE_URL=base_url)
    env.update(spec.pass_env)
    return env


def claude_argv(spec: Spec, w: Path) -> list[str]:
    if spec.command is not None:
        subst = {"{claude}": spec.claude_bin, "{prompt}": spec.prompt, "{workdir}": str(w)}
        out = []
        for arg in spec.command:
            for key, value in subst.items():
                arg = arg.replace(key, value)
            out.append(arg)
        return out
    extra = list(spec.extra_args)
    if spec.tool_sleep:
        extra += ["--allowedTools", "Bash"]
    return [spec.claude_bin, "-p", spec.prompt, *extra]


def run_claude(argv: list[str], env: dict[str, str], w: Path, timeout: float) -> dict[str, Any]:
    t0 = time.time()
    with open(w / "claude.stdout", "wb") as out, open(w / "claude.stderr", "wb") as err:
        proc = subprocess.Popen(argv, env=env, cwd=w / "proj", stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
        timed_out = False
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
    t1 = time.time()
    (w / "claude.rc").write_text(f"{rc}\n")
    (w / "claude.times").write_text(f"{t0} {t1}\n")
    return {"rc": rc, "t0": t0, "t1": t1, "timed_out": timed_out, "argv": argv}


def claude_version(spec: Spec, env: dict[str, str], w: Path) -> str:
    try:
        out = subprocess.run([spec.claude_bin, "--version"], env=env, cwd=w / "proj", capture_output=True,
                             text=True, timeout=30, stdin=subprocess.DEVNULL).stdout
    except subprocess.TimeoutExpired:
        return "?"
    return (out.splitlines() or ["?"])[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(pids: list[int]) -> None:
    """SIGTERM, wait for all of them (STOP_GRACE in total), then SIGKILL."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + STOP_GRACE
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _pids(*files: Path) -> list[int]:
    out = []
    for f in files:
        try:
            out += [int(p) for p in f.read_text().split()]
        except (OSError, ValueError):
            continue
    return [p for p in out if p > 1 and p != os.getpid()]


def run(spec: Spec) -> dict[str, Any]:
    w = Path(spec.workdir)
    for sub in ("home/.claude", "home/.aws", "proj", "helper", "creds"):
        (w / sub).mkdir(parents=True, exist_ok=True)
    (w / "helper" / "invocations.log").touch()
    loopback_only()
    book = CredentialBook([str(w / "helper" / "export.*.out"), str(w / "creds" / "*.json")])
    server = serve(Behaviour(log=str(w / "bedrock.jsonl"), book=book, text=spec.expect_text,
                             fail_first=spec.fail_first, tool_sleep=spec.tool_sleep))
    pidfile = w / "netns.pids"
    pidfile.touch()
    result: dict[str, Any] = {"bedrock": server.url}
    try:
        write_settings(spec, w, server.url)
        if spec.netns_setup:
            setup_env = {**os.environ, "W": str(w), "NETNS_PIDFILE": str(pidfile)}
            # output to a file, not a pipe: what the setup leaves running may keep a pipe open
            log = w / "netns_setup.log"
            with open(log, "wb") as out:
                try:
                    done = subprocess.run(["bash", "-c", spec.netns_setup], env=setup_env, cwd=w,
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                          timeout=SETUP_TIMEOUT)
                except subprocess.TimeoutExpired as exc:
                    raise HarnessError(f"NETNS_SETUP did not finish within {SETUP_TIMEOUT:.0f} s") from exc
            if done.returncode != 0:
                tail = log.read_text(errors="replace")[-1000:]
                raise HarnessError(f"NETNS_SETUP failed (exit {done.returncode}): {tail}")
        env = claude_env(spec, w, server.url)
        result["version"] = claude_version(spec, env, w)
        result.update(run_claude(claude_argv(spec, w), env, w, spec.cc_timeout))
    finally:
        server.shutdown()
        server.server_close()
        stop(_pids(pidfile, *sorted((w / "helper").glob("*.pids"))))
    return result


def main() -> None:
    spec = Spec.load(sys.argv[1])
    w = Path(spec.workdir)
    try:
        result = run(spec)
        code = 0
    except (HarnessError, OSError, subprocess.SubprocessError, ValueError) as exc:
        result, code = {"error": f"{type(exc).__name__}: {exc}"}, 2
    (w / "harness.json").write_text(json.dumps(result, indent=2))
    sys.exit(code)
