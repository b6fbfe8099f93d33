"""`credhelper setup claude` through the installed command, in a temp HOME."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from credhelper import claude_settings as cs
from credhelper import fileedit
from credhelper.errors import ConfigError

if TYPE_CHECKING:
    from conftest import AwsEnv

CONFIG = """
[profile dev]
role_arn = arn:aws:iam::123456789012:role/dev
source_profile = base
region = eu-central-1

[profile base]
region = us-east-1

[profile sso-dev]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Dev
region = us-west-2

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1

[profile mfa-dev]
role_arn = arn:aws:iam::123456789012:role/dev
source_profile = base
mfa_serial = arn:aws:iam::123456789012:mfa/me
region = us-east-1

[profile noregion]
role_arn = arn:aws:iam::123456789012:role/dev
source_profile = base
"""

EXISTING: dict[str, Any] = {
    "model": "opus",
    "permissions": {"allow": ["Bash(ls:*)", "Read"], "deny": [], "nested": {"a": [1, {"b": None}]}},
    "env": {"EDITOR": "vim", "GREETING": "grüß dich ✓ 日本"},
    "hooks": {"PostToolUse": [{"matcher": "Edit", "hooks": [{"type": "command", "command": "x"}]}]},
    "includeCoAuthoredBy": False,
    "cleanupPeriodDays": 30,
}


def _export(aws_env: AwsEnv) -> str:
    return f"{shlex.quote(aws_env.credhelper)} export"


def _settings(aws_env: AwsEnv) -> Path:
    return aws_env.home / ".claude" / "settings.json"


def _write_existing(aws_env: AwsEnv, mode: int = 0o640) -> tuple[Path, bytes]:
    path = _settings(aws_env)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(EXISTING, indent=4, ensure_ascii=False).encode() + b"\n"
    path.write_bytes(raw)
    path.chmod(mode)
    return path, raw


def _backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".bak-*"))


@pytest.fixture
def env(aws_env: AwsEnv) -> AwsEnv:
    aws_env.write_config(CONFIG)
    return aws_env


def test_merge_keeps_everything_else_backs_up_and_keeps_mode(env: AwsEnv) -> None:
    path, before = _write_existing(env)
    r = env.run("setup", "claude", "--profile", "dev")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert f"updated {path}" in r.stderr
    data = json.loads(path.read_text())
    for key in ("model", "permissions", "hooks", "includeCoAuthoredBy", "cleanupPeriodDays"):
        assert data[key] == EXISTING[key]
    assert data["awsCredentialExport"] == _export(env)
    assert "--profile" not in data["awsCredentialExport"]
    assert "awsAuthRefresh" not in data  # a role profile: nothing to sign in to
    assert data["env"] == {**EXISTING["env"], "CLAUDE_CODE_USE_BEDROCK": "1",
                           "AWS_REGION": "eu-central-1", "AWS_PROFILE": "dev"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert "grüß dich ✓ 日本" in path.read_text(encoding="utf-8")  # not \\u-escaped
    (backup,) = _backups(path)
    assert backup.read_bytes() == before
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640
    assert str(backup) in r.stderr


def test_second_run_changes_nothing_and_says_so(env: AwsEnv) -> None:
    path, _ = _write_existing(env)
    assert env.run("setup", "claude", "--profile", "dev").returncode == 0
    after_first, mtime = path.read_bytes(), path.stat().st_mtime_ns
    r = env.run("setup", "claude", "--profile", "dev")
    assert r.returncode == 0, r.stderr
    assert "nothing changed" in r.stderr
    assert path.read_bytes() == after_first
    assert path.stat().st_mtime_ns == mtime
    assert len(_backups(path)) == 1


def test_writes_through_a_symlinked_settings_file(env: AwsEnv) -> None:
    dotfiles = env.home / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "claude-settings.json"
    real.write_text(json.dumps(EXISTING))
    real.chmod(0o600)
    link = _settings(env)
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    r = env.run("setup", "claude", "--profile", "dev")
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text())["awsCredentialExport"] == _export(env)
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert len(_backups(real)) == 1
    assert not _backups(link)


def test_invalid_json_is_refused_and_left_byte_for_byte(env: AwsEnv) -> None:
    path = _settings(env)
    path.parent.mkdir(parents=True)
    broken = b'{\n  "model": "opus",\n  // a comment\n  "env": {"A": "\xc3\xa9"}\n'
    path.write_bytes(broken)
    r = env.run("setup", "claude", "--profile", "dev")
    assert r.returncode == 3
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
    assert "not valid JSON" in r.stderr and "nothing was changed" in r.stderr
    assert path.read_bytes() == broken
    assert not _backups(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]


def test_dry_run_prints_a_diff_and_writes_nothing(env: AwsEnv) -> None:
    path, before = _write_existing(env)
    r = env.run("setup", "claude", "--profile", "dev", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"--- {path}\n+++ {path}\n@@ ")
    assert f'+    "awsCredentialExport": {json.dumps(_export(env))}' in r.stdout
    assert '+        "AWS_PROFILE": "dev"' in r.stdout
    assert path.read_bytes() == before
    assert not _backups(path)


def test_creates_a_missing_settings_file(env: AwsEnv) -> None:
    r = env.run("setup", "claude", "--profile", "dev")
    assert r.returncode == 0, r.stderr
    data = json.loads(_settings(env).read_text())
    assert set(data) == {"awsCredentialExport", "env"}
    assert f"created {_settings(env)}" in r.stderr


def test_sso_profile_gets_login_as_auth_refresh(env: AwsEnv) -> None:
    r = env.run("setup", "claude", "--profile", "sso-dev")
    assert r.returncode == 0, r.stderr
    data = json.loads(_settings(env).read_text())
    assert data["awsAuthRefresh"] == f"{shlex.quote(env.credhelper)} login"
    assert data["env"]["AWS_REGION"] == "us-west-2"
    # switching to a role profile drops credhelper's own awsAuthRefresh
    assert env.run("setup", "claude", "--profile", "dev").returncode == 0
    assert "awsAuthRefresh" not in json.loads(_settings(env).read_text())


def test_mfa_profile_gets_no_auth_refresh_and_a_note(env: AwsEnv) -> None:
    r = env.run("setup", "claude", "--profile", "mfa-dev")
    assert r.returncode == 0, r.stderr
    assert "awsAuthRefresh" not in json.loads(_settings(env).read_text())
    assert "uses MFA" in r.stderr and "credhelper login --profile mfa-dev" in r.stderr


def test_region_option_wins_and_missing_region_is_exit_3(env: AwsEnv) -> None:
    r = env.run("setup", "claude", "--profile", "noregion")
    assert r.returncode == 3
    assert r.stdout == "" and "pass --region" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not _settings(env).exists()
    r = env.run("setup", "claude", "--profile", "noregion", "--region", "ap-northeast-1")
    assert r.returncode == 0, r.stderr
    assert json.loads(_settings(env).read_text())["env"]["AWS_REGION"] == "ap-northeast-1"


def test_unknown_profile_is_exit_3_with_a_suggestion(env: AwsEnv) -> None:
    r = env.run("setup", "claude", "--profile", "dve", env={"CREDHELPER_STORE": "memory"})
    assert r.returncode == 3
    assert "unknown profile dve" in r.stderr and "did you mean dev?" in r.stderr
    assert not _settings(env).exists()


def test_profile_defaults_to_aws_profile(env: AwsEnv) -> None:
    r = env.run("setup", "claude", env={"AWS_PROFILE": "sso-dev"})
    assert r.returncode == 0, r.stderr
    assert json.loads(_settings(env).read_text())["env"]["AWS_PROFILE"] == "sso-dev"


def test_warns_about_variables_that_override_it(env: AwsEnv) -> None:
    _write_existing(env)
    path = _settings(env)
    data = json.loads(path.read_text())
    data["env"]["AWS_BEARER_TOKEN_BEDROCK"] = "bedrock-api-key-x"
    path.write_text(json.dumps(data))
    r = env.run("setup", "claude", "--profile", "dev",
                env={"AWS_ACCESS_KEY_ID": "AKIAOVERRIDE0000001", "AWS_PROFILE": "other"})
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("credhelper: warning:")]
    text = "\n".join(warnings)
    assert "sets AWS_BEARER_TOKEN_BEDROCK" in text
    assert "AWS_ACCESS_KEY_ID is set in this environment" in text
    # the settings' env block sets AWS_PROFILE=dev, which wins over the shell's
    assert "AWS_PROFILE=other" not in text
    assert "bedrock-api-key-x" not in r.stderr


def _run_in(env: AwsEnv, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([env.credhelper, *args], env=env.environ(), cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def test_project_scope_writes_only_the_profile(env: AwsEnv) -> None:
    repo = env.home / "src" / "app"
    (repo / ".git").mkdir(parents=True)
    sub = repo / "pkg"
    sub.mkdir()
    project = repo / ".claude" / "settings.json"
    project.parent.mkdir()
    project.write_text(json.dumps({"permissions": {"allow": ["Bash(make)"]}}))
    r = _run_in(env, sub, "setup", "claude", "--scope", "project", "--profile", "sso-dev")
    assert r.returncode == 0, r.stderr
    assert json.loads(project.read_text()) == {
        "permissions": {"allow": ["Bash(make)"]}, "env": {"AWS_PROFILE": "sso-dev"}}
    assert "still need" in r.stderr and "--scope user" in r.stderr
    assert not _settings(env).exists()  # the user scope is untouched
    assert env.run("setup", "claude", "--profile", "dev").returncode == 0
    r = _run_in(env, sub, "setup", "claude", "--scope", "project", "--profile", "sso-dev")
    assert "nothing changed" in r.stderr and "already have" in r.stderr


# -- library pieces --------------------------------------------------------------


def test_stable_launcher_prefers_homebrew_opt_and_pipx_links(tmp_path: Path) -> None:
    cellar = tmp_path / "homebrew" / "Cellar" / "credhelper" / "1.2.3" / "bin"
    opt = tmp_path / "homebrew" / "opt" / "credhelper" / "bin"
    for d in (cellar, opt):
        d.mkdir(parents=True)
        (d / "credhelper").write_text("#!/bin/sh\n")
    assert cs.stable_launcher(str(cellar / "credhelper"), {}) == str(opt / "credhelper")
    venv = tmp_path / "home" / ".local" / "pipx" / "venvs" / "credhelper" / "bin"
    venv.mkdir(parents=True)
    (venv / "credhelper").write_text("#!/bin/sh\n")
    link = tmp_path / "home" / ".local" / "bin" / "credhelper"
    link.parent.mkdir(parents=True)
    link.symlink_to(venv / "credhelper")
    env = {"HOME": str(tmp_path / "home")}
    assert cs.stable_launcher(str(venv / "credhelper"), env) == str(link)
    plain = "/work/venv/bin/credhelper"
    assert cs.stable_launcher(plain, env) == plain


def test_fileedit_refuses_a_file_changed_since_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("one\n")
    edit = fileedit.plan(path, "two\n")
    path.write_text("someone else\n")
    with pytest.raises(ConfigError, match="changed while"):
        fileedit.apply(edit)
    assert path.read_text() == "someone else\n"
    assert not list(tmp_path.glob("*.bak-*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_keeps_the_owner_of_a_file_written_as_root(env: AwsEnv) -> None:
    path, _ = _write_existing(env, mode=0o644)
    os.chown(path, 65534, 65534)
    r = env.run("setup", "claude", "--profile", "dev")
    assert r.returncode == 0, r.stderr
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o644)
    (backup,) = _backups(path)
    assert (backup.stat().st_uid, backup.stat().st_gid) == (65534, 65534)


def test_dry_run_of_a_new_file_diffs_from_nothing(env: AwsEnv) -> None:
    conf = env.home / "elsewhere"
    r = env.run("setup", "claude", "--profile", "dev", "--dry-run",
                env={"CLAUDE_CONFIG_DIR": str(conf)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"--- /dev/null\n+++ {conf / 'settings.json'}\n")
    assert not conf.exists() and not _settings(env).exists()
