"""The CLI says what it did, truthfully: each fix through the installed
`credhelper` (with a real daemon where the daemon is involved)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from conftest import file_store_toml
from daemon_helpers import Daemons, poll, write_setup
from sso_emulator import SSOEmulator

if TYPE_CHECKING:
    from conftest import AwsEnv

STATIC_AKID = "AKIATRUTHFULSTATIC01"
STATIC_SECRET = "truthful-static-secret/0123456789abcdef"
MFA_SERIAL = "arn:aws:iam::123456789012:mfa/alice"


@pytest.fixture
def daemons(aws_env: AwsEnv) -> Iterator[Daemons]:
    started = Daemons(aws_env)
    yield started
    started.close()


def one_error_line(r: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


# -- keys -------------------------------------------------------------------------------


def test_keys_remove_tells_the_daemon_which_stops_serving(aws_env: AwsEnv, daemons: Daemons) -> None:
    write_setup(aws_env, extra_config="[profile static]\nregion = us-east-1\n")
    daemon = daemons.start()
    added = aws_env.run("keys", "add", "--profile", "static",
                        input=f"{STATIC_AKID}\n{STATIC_SECRET}\n")
    assert added.returncode == 0 and added.stdout == "", added.stderr
    assert "warning" not in added.stderr
    first = daemons.export("static")
    assert first.rc == 0, first.describe()
    poll(lambda: daemon.events("export", profile="static"), timeout=10, what="daemon export")
    assert daemon.profile_status("static")["access_key_id"] == first.akid

    removed = aws_env.run("keys", "remove", "--profile", "static")
    assert removed.returncode == 0 and removed.stdout == "", removed.stderr
    assert "removed the keys of profile static" in removed.stderr
    assert "and from the daemon" in removed.stderr
    after = daemons.export("static")
    assert after.rc == 3, after.describe()  # no keys: nothing to serve, old creds included
    assert first.akid not in after.stdout
    assert "static" not in {p["profile"] for p in daemon.status()["profiles"]
                            if p.get("access_key_id")}

    again = aws_env.run("keys", "remove", "--profile", "static")
    assert again.returncode == 0 and again.stdout == ""
    assert "no stored keys for profile static: nothing to remove" in again.stderr


def test_keys_add_warns_about_a_profile_not_in_the_config(aws_env: AwsEnv) -> None:
    write_setup(aws_env)
    r = aws_env.run("keys", "add", "--profile", "dve", input=f"{STATIC_AKID}\n{STATIC_SECRET}\n")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert "warning: profile dve is not in the AWS config (did you mean dev?)" in r.stderr
    assert STATIC_SECRET not in r.stderr


# -- logout -----------------------------------------------------------------------------


def test_logout_unknown_profile_is_exit_3_like_login(aws_env: AwsEnv) -> None:
    write_setup(aws_env)
    one_error_line(aws_env.run("logout", "--profile", "deev"), 3, "unknown profile deev",
                   "did you mean dev?")
    one_error_line(aws_env.run("login", "--profile", "deev"), 3, "unknown profile deev")


def test_logout_all_lists_only_what_it_wiped(aws_env: AwsEnv) -> None:
    write_setup(aws_env, extra_config="[profile other]\nregion = us-east-1\n")
    assert aws_env.run("export", "--profile", "dev").returncode == 0
    r = aws_env.run("logout", "--all")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["wiped cached credentials of dev"]
    r = aws_env.run("logout", "--all")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["nothing to sign out of or wipe for any profile"]


# -- status -----------------------------------------------------------------------------


def test_status_without_daemon_shows_the_store(aws_env: AwsEnv) -> None:
    write_setup(aws_env, extra_config="[profile sso-dev]\nsso_session = corp\n"
                "sso_account_id = 123456789012\nsso_role_name = Dev\n\n[sso-session corp]\n"
                "sso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\n")
    assert aws_env.run("export", "--profile", "dev").returncode == 0
    js = aws_env.run("status", "--json")
    assert js.returncode == 0, js.stderr
    data = json.loads(js.stdout)
    assert data["daemon"] is None
    rows = {p["profile"]: p for p in data["profiles"]}
    assert rows["dev"]["source"] == "assume-role"
    assert 3000 < rows["dev"]["expires_in"] <= 3600
    assert rows["dev"]["login_required"] is False
    assert rows["sso-dev"]["login_required"] is True
    text = aws_env.run("status")
    assert text.returncode == 0, text.stderr
    assert "daemon: not running" in text.stdout
    (dev,) = [ln for ln in text.stdout.splitlines() if ln.startswith("dev ")]
    assert re.search(r"assume-role\s+(59m|1h00m)\s+in 4\dm\s+ok$", dev), dev
    (sso,) = [ln for ln in text.stdout.splitlines() if ln.startswith("sso-dev ")]
    assert "login required: run credhelper login --profile sso-dev" in sso


def test_status_next_refresh_reads_in_minutes_with_a_daemon(
    aws_env: AwsEnv, daemons: Daemons
) -> None:
    write_setup(aws_env)
    daemons.start()
    assert daemons.export().rc == 0
    text = aws_env.run("status")
    assert text.returncode == 0, text.stderr
    (dev,) = [ln for ln in text.stdout.splitlines() if ln.startswith("dev ")]
    assert re.search(r"\s+in [1-5]?\dm\s+ok$", dev), dev  # the daemon's jittered schedule
    assert "T" not in dev.split()[3]  # not an ISO timestamp


@pytest.mark.parametrize("broken", ["aws-config", "settings"])
def test_status_reports_a_broken_file(aws_env: AwsEnv, broken: str) -> None:
    write_setup(aws_env)
    if broken == "aws-config":
        aws_env.config_file.write_text("[profile dev\nregion = us-east-1\n")
        one_error_line(aws_env.run("status"), 3, str(aws_env.config_file))
    else:
        aws_env.settings_file.write_text("refresh_windw = 10\n")
        one_error_line(aws_env.run("status"), 3, "refresh_windw")


# -- login ------------------------------------------------------------------------------


def test_login_shows_time_left_and_how_to_cancel(aws_env: AwsEnv) -> None:
    with SSOEmulator(authorize_timeout=300) as emu:
        write_setup(aws_env, extra_config="[profile sso-dev]\nsso_session = corp\n"
                    "sso_account_id = 333333333333\nsso_role_name = Dev\nregion = us-east-1\n\n"
                    "[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n"
                    "sso_region = us-east-1\n")
        env = {"AWS_ENDPOINT_URL_SSO": emu.url, "AWS_ENDPOINT_URL_SSO_OIDC": emu.url}
        r = aws_env.run("login", "--profile", "sso-dev", "--device-code", "--no-browser",
                        "--timeout", "3", env=env, timeout=60)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert re.search(r"waiting up to [123] s for approval \(press Ctrl-C to cancel\)", r.stdout), \
        r.stdout
    assert "credhelper login --profile sso-dev" in r.stderr


def test_mfa_prompt_has_one_colon(aws_env: AwsEnv) -> None:
    write_setup(aws_env, extra_config=(
        f"[profile mfa]\nrole_arn = arn:aws:iam::123456789012:role/mfa\nsource_profile = base\n"
        f"mfa_serial = {MFA_SERIAL}\nregion = us-east-1\n"))
    master, slave = os.openpty()
    try:
        proc = aws_env.popen("login", "--profile", "mfa", stdin=slave)
        os.close(slave)
        slave = -1
        os.write(master, b"123456\n")
        out, err = proc.communicate(timeout=60)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0, (out, err)
    assert f"MFA code for {MFA_SERIAL}: " in out
    assert "::" not in out.replace("arn:aws:iam::", "")


# -- usage and configuration errors -------------------------------------------------------


@pytest.mark.parametrize("args, parts", [
    (("export", "--format", "yaml"), ("'yaml' is not one of", "see credhelper export --help")),
    (("nosuchcommand",), ("no such command", "see credhelper --help")),
    (("logout", "--all", "--profile", "dev"), ("not both",)),
    (("setup", "claude", "--scope", "team"), ("--scope", "see credhelper setup claude --help")),
])
def test_usage_errors_are_one_line_exit_2(aws_env: AwsEnv, args: tuple[str, ...],
                                          parts: tuple[str, ...]) -> None:
    write_setup(aws_env)
    line = one_error_line(aws_env.run(*args), 2, *parts)
    assert line.startswith("credhelper: ")
    assert "Usage:" not in line


def test_source_profile_naming_a_missing_profile(aws_env: AwsEnv) -> None:
    aws_env.write_config("[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/dev\n"
                         "source_profile = bsae\nregion = us-east-1\n")
    aws_env.write_settings(file_store_toml(aws_env.home))
    one_error_line(aws_env.run("export", "--profile", "dev"), 3, "profile dev",
                   str(aws_env.config_file), "source_profile = bsae", "add [profile bsae]")


def test_malformed_role_arn_names_the_key_not_botocore(aws_env: AwsEnv) -> None:
    write_setup(aws_env)
    text = aws_env.config_file.read_text().replace(
        "role_arn = arn:aws:iam::123456789012:role/dev", "role_arn = dev-role")
    aws_env.config_file.write_text(text)
    line = one_error_line(aws_env.run("export", "--profile", "dev"), 3,
                          "role_arn of profile dev", str(aws_env.config_file), "'dev-role'",
                          "arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME")
    assert "Parameter validation" not in line and "Invalid length" not in line


@pytest.mark.parametrize("key, value, parts", [
    ("duration_seconds", "440", ("duration_seconds of profile dev", "900 to 43200")),
    ("role_session_name", "a b", ("role_session_name of profile dev", "'a b'")),
    ("external_id", "x", ("external_id of profile dev",)),
])
def test_role_settings_sts_would_refuse_name_the_key(aws_env: AwsEnv, key: str, value: str,
                                                     parts: tuple[str, ...]) -> None:
    write_setup(aws_env, extra_settings="")
    aws_env.config_file.write_text(aws_env.config_file.read_text().replace(
        "[profile dev]\n", f"[profile dev]\n{key} = {value}\n"))
    line = one_error_line(aws_env.run("export", "--profile", "dev"), 3, *parts,
                          str(aws_env.config_file))
    assert "Parameter validation" not in line
    assert aws_env.moto.calls() == 0


@pytest.mark.parametrize("args", [(), ("keys",), ("setup",)])
def test_a_bare_group_prints_its_help_not_a_usage_error(aws_env: AwsEnv,
                                                        args: tuple[str, ...]) -> None:
    r = aws_env.run(*args)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.startswith(f"Usage: {' '.join(('credhelper', *args))} [OPTIONS] COMMAND")
    assert "Commands:" in r.stdout
