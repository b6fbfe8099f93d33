"""`credhelper sso sync` end to end: the installed console script against the
IAM Identity Center emulator (150 accounts x 3 roles, every listing spread over
pages of 2), signed in with a real `credhelper login` (device code, approved by
the emulator), an encrypted-file store. Plus the naming rule as unit tests.
"""

from __future__ import annotations

import configparser
import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import file_store_toml
from sso_emulator import SSOEmulator

from credhelper.sso_sync import Assignment, begin_marker, end_marker, names_for, normalize, plan

if TYPE_CHECKING:
    from conftest import AwsEnv

SESSION = "corp"
LOGIN = "corp-login"
N_ACCOUNTS = 150
ROLES = ["ReadOnly", "Admin", "BedrockUser"]
#: the hand-written profile whose name account 000000000007 ("acct-007") would get for ReadOnly
TAKEN = "acct-007.ReadOnly"


def accounts() -> list[dict[str, Any]]:
    out = []
    for i in range(N_ACCOUNTS):
        name = f"acct-{i:03d}"
        if i == 3:
            name = "Team A / Dev  (eu)"      # -> Team-A-Dev-eu
        if i in (10, 11):
            name = "shared"                  # collide -> shared.<id>.<role>... see expected()
        out.append({"accountId": f"{i:012d}", "accountName": name,
                    "emailAddress": f"a{i}@example.com", "roles": list(ROLES)})
    return out


def expected(accs: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Profile name -> (account, role), written out by the documented rule
    independently of the code under test."""
    out = {}
    for a in accs:
        for r in a["roles"]:
            if a["accountName"] == "Team A / Dev  (eu)":
                name = f"Team-A-Dev-eu.{r}"
            elif a["accountName"] == "shared":
                name = f"shared.{r}.{a['accountId']}"
            else:
                name = f"{a['accountName']}.{r}"
            out[name] = (a["accountId"], r)
    return out


PREAMBLE = f"""\
# my hand-written config; spacing   and comments are mine
[default]
region = eu-west-1
output=json

[profile {TAKEN}]
  # hand-written on purpose
role_arn = arn:aws:iam::000000000007:role/ReadOnly
source_profile = default

[sso-session {SESSION}]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
sso_registration_scopes = sso:account:access

[profile {LOGIN}]
sso_session = {SESSION}
sso_account_id = 000000000000
sso_role_name = ReadOnly
region = us-east-1
"""
TRAILER_NO_NEWLINE = "[profile tail]\nregion = us-west-2"


class World:
    def __init__(self, aws: AwsEnv, emu: SSOEmulator) -> None:
        self.aws, self.emu = aws, emu

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.aws.run(*args, timeout=180)

    def sync(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run("sso", "sync", *args)
        assert done.returncode == 0, f"rc={done.returncode} {done.stdout[-500:]} {done.stderr}"
        return done

    def text(self) -> str:
        return self.aws.config_file.read_text()

    def backups(self) -> list[Path]:
        return sorted(self.aws.config_file.parent.glob("config.bak-*"))


def split(text: str) -> tuple[str, str, str]:
    begin, end = begin_marker(SESSION) + "\n", end_marker(SESSION) + "\n"
    assert text.count(begin) == 1 and text.count(end) == 1, text[-2000:]
    head, rest = text.split(begin)
    block, tail = rest.split(end)
    return head, block, tail


def block_profiles(text: str) -> dict[str, dict[str, str]]:
    """The managed block's profiles, parsed the way AWS tools parse the file."""
    _, block, _ = split(text)
    cp = configparser.RawConfigParser(strict=True)
    cp.read_string(block)
    return {s.removeprefix("profile "): dict(cp[s]) for s in cp.sections()}


@pytest.fixture
def emu() -> Iterator[SSOEmulator]:
    with SSOEmulator(accounts=accounts(), default_max_results=2, auto_approve=True) as e:
        yield e


@pytest.fixture
def world(aws_env: AwsEnv, emu: SSOEmulator) -> World:
    aws_env.env.update(AWS_ENDPOINT_URL_SSO=emu.url, AWS_ENDPOINT_URL_SSO_OIDC=emu.url)
    aws_env.write_settings(file_store_toml(aws_env.home))
    aws_env.config_file.write_text(PREAMBLE + "\n" + TRAILER_NO_NEWLINE)
    w = World(aws_env, emu)
    login = w.run("login", "--profile", LOGIN, "--device-code")
    assert login.returncode == 0, login.stderr
    return w


# ------------------------------------------------------------------ the naming rule


@pytest.mark.parametrize(("raw", "name"), [
    ("dev.Admin", "dev.Admin"),
    ("Team A / Dev  (eu)", "Team-A-Dev-eu"),
    ("Team A / Dev  (eu).Admin", "Team-A-Dev-eu-.Admin"),  # why fields are normalized first
    ("a--b", "a-b"),
    ("  x  ", "x"),
    ("ok@x+y=z,w_1.R", "ok@x+y=z,w_1.R"),
    ("Ünïcødé.Role", "n-c-d-.Role"),
    ("[prod]#1", "prod-1"),
])
def test_normalize(raw: str, name: str) -> None:
    assert normalize(raw) == name


def test_collisions_resolved_by_account_id_whatever_the_order() -> None:
    items = [Assignment("222", "Admin", "x"), Assignment("111", "Admin", "x"),
             Assignment("333", "Admin", "y"), Assignment("111", "admin", "x")]
    first = names_for(items, "{account_name}.{role_name}", SESSION)
    assert first == {"x.Admin.111": items[1], "x.Admin.222": items[0], "y.Admin": items[2],
                     "x.admin": items[3]}
    for seed in range(5):
        shuffled = list(items)
        random.Random(seed).shuffle(shuffled)
        assert names_for(shuffled, "{account_name}.{role_name}", SESSION) == first
    # same account, two roles normalising to one name: a counter after the account id
    twins = [Assignment("111", "A#b"), Assignment("111", "A_b"), Assignment("111", "A b")]
    assert names_for(twins, "{role_name}", SESSION) == {
        "A-b.111": twins[2], "A-b.111-2": twins[0], "A_b": twins[1]}


def test_block_is_appended_and_outside_bytes_kept_in_plan(tmp_path: Path) -> None:
    text = "[profile x]\r\nregion = a\r\n"
    result = plan(text, tmp_path / "config", SESSION, [Assignment("1", "R", "n")])
    assert result.edit is not None
    new = result.edit.new
    assert new.startswith(text + "\r\n" + begin_marker(SESSION) + "\r\n")
    assert "[profile n.R]\r\nsso_session = corp\r\n" in new


# ------------------------------------------------------------------ end to end


def test_sync_writes_the_block_and_keeps_everything_else(world: World) -> None:
    before = world.aws.config_file.read_bytes()
    world.emu.inject("ListAccountRoles", "TooManyRequestsException", times=3)  # retried away
    done = world.sync("--region", "us-east-1")
    text = world.text()
    head, _, tail = split(text)
    # outside: the original bytes, a newline added after the unterminated last line, a blank line
    assert (head + tail).encode() == before + b"\n\n"
    assert tail == ""

    want = expected(accounts())
    got = block_profiles(text)
    assert len(want) == N_ACCOUNTS * len(ROLES)
    assert set(got) == set(want) - {TAKEN}
    for name, (account, role) in want.items():
        if name == TAKEN:
            continue
        assert got[name] == {"sso_session": SESSION, "sso_account_id": account, "sso_role_name": role,
                             "region": "us-east-1"}, name
    # the whole file still parses (no duplicate section) the way botocore's parser does
    configparser.RawConfigParser(strict=True).read_string(text)

    [warning] = done.stderr.splitlines()
    assert warning.startswith("credhelper: warning: skipped") and TAKEN in warning
    assert "written (449 profiles: 449 added" in done.stdout
    [backup] = world.backups()
    assert backup.read_bytes() == before
    state = world.emu.state()
    assert state["counts"]["ListAccounts"] == N_ACCOUNTS // 2
    assert state["counts"]["ListAccountRoles"] >= N_ACCOUNTS * 2 + 3  # 2 pages each + throttled retries

    # a second run: no change at all (bytes, mtime, no new backup)
    stat = os.stat(world.aws.config_file)
    again = world.sync("--region", "us-east-1")
    assert "no change" in again.stdout
    assert world.text() == text
    assert os.stat(world.aws.config_file).st_mtime_ns == stat.st_mtime_ns
    assert len(world.backups()) == 1

    # a synced profile exports through credhelper export
    exported = world.run("export", "--profile", "acct-042.BedrockUser")
    assert exported.returncode == 0, exported.stderr
    creds = json.loads(exported.stdout)["Credentials"]
    issued = [c for c in world.emu.state()["issued_credentials"] if c["accessKeyId"] == creds["AccessKeyId"]]
    assert [(c["accountId"], c["roleName"]) for c in issued] == [("000000000042", "BedrockUser")]

    # ... and serves `setup claude --scope project` in a repository, whose env then selects it
    repo = world.aws.home / "repo"
    (repo / ".git").mkdir(parents=True)
    setup = subprocess.run(
        [world.aws.credhelper, "setup", "claude", "--profile", "acct-042.BedrockUser", "--scope", "project"],
        env=world.aws.environ(), cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    assert setup.returncode == 0, setup.stderr
    env = json.loads((repo / ".claude" / "settings.json").read_text())["env"]
    assert env["AWS_PROFILE"] == "acct-042.BedrockUser"
    again = world.aws.run("export", env={"AWS_PROFILE": env["AWS_PROFILE"]})
    assert json.loads(again.stdout)["Credentials"]["AccessKeyId"] == creds["AccessKeyId"]


def test_dry_run_and_prune(world: World) -> None:
    world.sync()
    synced = world.text()
    head, _, tail = split(synced)
    # accounts 0..9 lose Admin; account 149 disappears
    accs = accounts()[:-1]
    for a in accs[:10]:
        a["roles"] = ["ReadOnly", "BedrockUser"]
    world.emu.configure(accounts=accs)
    vanished = set(expected(accounts())) - set(expected(accs))
    assert len(vanished) == 10 + 3

    dry = world.sync("--dry-run", "--prune")
    assert world.text() == synced
    lines = dry.stdout.splitlines()
    minus = {ln[len("-[profile "):-1] for ln in lines if ln.startswith("-[profile ")}
    plus = {ln[len("+[profile "):-1] for ln in lines if ln.startswith("+[profile ")}
    assert minus - plus == vanished and plus <= minus  # difflib may pair neighbours differently
    assert "nothing written (--dry-run)" in dry.stdout

    kept = world.sync()  # without --prune the vanished ones stay
    assert "no change" in kept.stdout and "13 kept though gone" in kept.stdout
    assert world.text() == synced

    pruned = world.sync("--prune")
    assert "13 removed" in pruned.stdout
    text = world.text()
    assert set(block_profiles(text)) == set(expected(accs)) - {TAKEN}
    new_head, _, new_tail = split(text)
    assert (new_head, new_tail) == (head, tail)
    assert world.sync("--prune").stdout.count("no change") == 1


def test_through_a_symlink_and_the_login_needed(world: World, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "aws-config"
    real.parent.mkdir()
    real.write_bytes(world.aws.config_file.read_bytes())
    real.chmod(0o640)
    world.aws.config_file.unlink()
    world.aws.config_file.symlink_to(real)
    world.sync("--template", "{account_id}-{role_name}")
    assert world.aws.config_file.is_symlink()
    assert oct(real.stat().st_mode & 0o777) == "0o640"
    assert "[profile 000000000042-Admin]" in real.read_text()

    world.emu.revoke_sessions()
    world.emu.expire_access_tokens()
    done = world.run("sso", "sync")
    assert done.returncode == 4, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert f"credhelper login --profile {LOGIN}" in done.stderr


def test_bad_template_is_a_usage_error(world: World) -> None:
    done = world.run("sso", "sync", "--template", "{account}.{role_name}")
    assert done.returncode == 2 and done.stdout == ""
    assert "bad --template" in done.stderr and done.stderr.count("\n") == 1


def test_listing_has_a_total_deadline() -> None:
    """Pages keep coming (throttled, slow) past the deadline: one error, no endless listing."""
    from credhelper.errors import UpstreamError
    from credhelper.sso_sync import list_assignments

    ticks = iter(range(0, 10_000, 50))  # every look at the clock: 50 s later

    class Paginator:
        def __init__(self, key: str) -> None:
            self.key = key

        def paginate(self, **_: str) -> Iterator[dict[str, Any]]:
            for i in range(1000):
                yield {self.key: [{"accountId": f"{i:012d}", "accountName": "a", "roleName": "R"}]}

    class Sso:
        def get_paginator(self, name: str) -> Paginator:
            return Paginator("accountList" if name == "list_accounts" else "roleList")

    with pytest.raises(UpstreamError, match=r"did not finish within 300 s: try again later"):
        list_assignments(Sso(), "token", timeout=300, clock=lambda: float(next(ticks)))
