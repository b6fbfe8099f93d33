"""The leak guard bites (issue 8, acceptance 4): deliberate leaks into each
kind of place fail the test that made them, the legal sinks do not, and the
opt-out marker works. The crafted cases run in a separate pytest process
with the real guard; the moto case checks the real recording end to end.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import leakguard
import pytest
from daemon_helpers import parse_export, write_setup

if TYPE_CHECKING:
    from conftest import AwsEnv

TESTS = Path(__file__).resolve().parent

INNER_CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from leakguard import leak_guard  # noqa: F401


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_leaks(reason): opt out")
"""

INNER_TESTS = '''
import logging, os, stat, subprocess, sys
from pathlib import Path
from urllib.parse import quote

import leakguard
import pytest

S = "{secret}"


def fake_credhelper(tmp_path):
    """A stand-in `credhelper` that prints $OUT on stdout and $ERR on stderr."""
    path = tmp_path / "credhelper"
    path.write_text('#!/bin/sh\\nprintf %s "$OUT"\\nprintf %s "$ERR" >&2\\n')
    path.chmod(0o755)
    return str(path)


def run(tmp_path, *args, out="", err=""):
    env = {{"PATH": os.environ["PATH"], "OUT": out, "ERR": err}}
    subprocess.run([fake_credhelper(tmp_path), *args], env=env, capture_output=True, check=True)


def test_leak_on_stderr_of_export(tmp_path):
    leakguard.secret(S)
    run(tmp_path, "export", err="error: " + S)


def test_leak_on_stdout_of_status(tmp_path):
    leakguard.secret(S)
    run(tmp_path, "status", out=S)


def test_leak_through_popen(tmp_path):
    leakguard.secret(S)
    env = {{"PATH": os.environ["PATH"], "ERR": S[:40]}}
    p = subprocess.Popen([fake_credhelper(tmp_path), "login"], env=env, stderr=subprocess.PIPE)
    p.communicate()


def test_leak_in_the_command_line(tmp_path):
    leakguard.secret(S)
    run(tmp_path, "keys", "add", "--secret", S)


def test_a_probe_of_the_test_may_print_secrets(tmp_path):
    leakguard.secret(S)
    subprocess.run([sys.executable, "-c", "print(" + repr(S) + ")"], capture_output=True)


def test_leak_in_a_file(tmp_path):
    leakguard.secret(S)
    (tmp_path / "home" / "state").mkdir(parents=True)
    (tmp_path / "home" / "state" / "debug.json").write_text('{{"k": "' + S + '"}}')


def test_leak_url_encoded_in_a_file(tmp_path):
    leakguard.secret(S)
    (tmp_path / "req.log").write_text("GET /?X-Amz-Security-Token=" + quote(S, safe=""))


def test_leak_of_a_piece_in_a_log_record(tmp_path):
    leakguard.secret(S)
    logging.getLogger("x").warning("refresh failed for %s", S[30:60])


def test_legal_stdout_of_export_and_mint(tmp_path):
    leakguard.secret(S)
    for cmd in ("export", "mint"):
        run(tmp_path, "--debug", cmd, "--profile", "dev", out=S)


def test_legal_github_env_and_login_cache(tmp_path):
    leakguard.secret(S)
    gh = tmp_path / "github_env"
    subprocess.run(["sh", "-c", 'printf "AWS_SESSION_TOKEN=%s" "$X" >> "$GITHUB_ENV"'],
                   env={{"GITHUB_ENV": str(gh), "X": S, "PATH": os.environ["PATH"]}}, check=True)
    assert S in gh.read_text()
    cache = tmp_path / ".aws" / "login" / "cache"
    cache.mkdir(parents=True)
    (cache / "token.json").write_text(S)


def test_legal_claude_harness_records(tmp_path):
    leakguard.secret(S)
    run_dir = tmp_path / "claude" / "claude-run.abc123"
    (run_dir / "helper").mkdir(parents=True)
    (run_dir / "helper" / "export.42.out").write_text(S)
    (run_dir / "bedrock.jsonl").write_text('{{"x-amz-security-token": "' + S + '"}}')


def test_leak_in_claude_harness_stderr(tmp_path):
    leakguard.secret(S)
    run_dir = tmp_path / "claude-run.abc123"
    (run_dir / "helper").mkdir(parents=True)
    (run_dir / "helper" / "export.42.err").write_text("failed: " + S)


@pytest.mark.allow_leaks("this test leaks on purpose")
def test_opted_out(tmp_path):
    leakguard.secret(S)
    (tmp_path / "leak").write_text(S)


def test_no_secret_obtained(tmp_path):
    (tmp_path / "x").write_text("nothing")
'''

MUST_FAIL = {
    "test_leak_on_stderr_of_export", "test_leak_on_stdout_of_status", "test_leak_through_popen",
    "test_leak_in_the_command_line", "test_leak_in_claude_harness_stderr",
    "test_leak_in_a_file", "test_leak_url_encoded_in_a_file", "test_leak_of_a_piece_in_a_log_record",
}
MUST_PASS = {
    "test_legal_stdout_of_export_and_mint", "test_legal_github_env_and_login_cache", "test_opted_out",
    "test_no_secret_obtained", "test_a_probe_of_the_test_may_print_secrets",
    "test_legal_claude_harness_records",
}


def test_the_guard_fails_leaks_and_passes_legal_sinks(tmp_path: Path) -> None:
    secret = "gu4rd/" + secrets.token_urlsafe(40) + "+X="
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(INNER_TESTS.format(secret=secret))
    report = tmp_path / "report.jsonl"
    plugin = tmp_path / "reporter.py"
    plugin.write_text(textwrap.dedent(f"""
        import json
        def pytest_runtest_logreport(report):
            if report.failed or report.when == "call":
                with open({str(report)!r}, "a") as f:
                    f.write(json.dumps({{"name": report.nodeid.split("::")[-1], "when": report.when,
                                         "outcome": report.outcome,
                                         "text": str(report.longrepr or "")}}) + "\\n")
    """))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "reporter",
         "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    failed = {r["name"] for r in rows if r["outcome"] == "failed"}
    assert failed == MUST_FAIL, f"{failed ^ MUST_FAIL}\n{done.stdout[-4000:]}"
    passed = {r["name"] for r in rows if r["when"] == "call" and r["outcome"] == "passed"} - failed
    assert MUST_PASS <= passed, done.stdout[-4000:]
    for r in rows:
        if r["outcome"] == "failed":
            assert r["when"] == "teardown" and "leak guard" in r["text"], r
            assert secret not in r["text"], "the guard's own report must not print the secret"
            assert secret[:6] in r["text"]


@pytest.mark.allow_leaks("writes a moto-issued secret to a file to show the guard would see it")
def test_moto_issued_secrets_are_tracked(aws_env: AwsEnv) -> None:
    """The recording has every SecretAccessKey/SessionToken moto handed out,
    and a copy of one in a file under HOME is reported."""
    write_setup(aws_env)
    done = aws_env.run("export", "--profile", "dev")
    assert done.returncode == 0, done.stderr
    creds = parse_export(done.stdout)
    issued = {s for r in aws_env.moto.recording.responses() for s in r.get("secrets", ())}
    assert {creds["SecretAccessKey"], creds["SessionToken"]} <= issued
    (aws_env.home / "notes.txt").write_text(f"token was {creds['SessionToken'][40:90]}\n")
    collected = leakguard.Collected(secrets=issued)
    collected.outputs.append(leakguard.Output(["/x/credhelper", "export"], done.stdout, done.stderr))
    problems = leakguard.check(collected, [aws_env.home])
    assert len(problems) == 1 and re.search(r"notes\.txt: \S{6}…$", problems[0]), problems


def test_a_clean_real_run_passes(aws_env: AwsEnv, leak_guard: leakguard.Collected) -> None:
    """export + status + a daemon-free second export under the real guard:
    nothing to report (the guard runs at teardown; it saw the commands)."""
    write_setup(aws_env)
    assert aws_env.run("export", "--profile", "dev").returncode == 0
    assert aws_env.run("export", "--profile", "dev", "--format", "env").returncode == 0
    aws_env.run("status")
    commands = [o.command() for o in leak_guard.outputs]
    assert commands.count("export") == 2 and "status" in commands, commands
