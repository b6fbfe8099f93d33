"""The lean direct path (issue 12): `export` served from the store without the
client machinery when no daemon answers, and agreeing with the full path.

- Real subprocesses of the installed `credhelper` with `PYTHONPROFILEIMPORTTIME`
  (what `python -X importtime` prints): a store hit imports none of boto3,
  botocore, click, structlog, apscheduler, keyring; moto sees no call and the
  credentials are the cached ones.
- A hypothesis property test over generated AWS configs: whenever the lean
  reader answers, its basis is the one botocore's reading plus the sources'
  `basis()` give; and it answers for >= 90 % of the well-formed profiles of the
  cacheable kinds.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from conftest import AwsEnv, MotoServer, file_store_toml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credhelper.broker import Broker
from credhelper.config import AwsConfig
from credhelper.errors import CredhelperError
from credhelper.lean import awsconfig, export_text
from credhelper.lean.basis import basis as lean_basis
from credhelper.model import Credentials
from credhelper.settings import Settings
from credhelper.store.memory import MemoryStore

HEAVY = ("boto3", "botocore", "click", "structlog", "apscheduler", "keyring", "secretstorage")
ROLE = "arn:aws:iam::123456789012:role/dev"


def _role_config(aws_env: AwsEnv, external_id: str = "x-1") -> None:
    aws_env.write_config(f"""
        [profile demo]
        role_arn = {ROLE}
        source_profile = base
        external_id = {external_id}
        region = us-east-1
        [profile base]
        region = us-east-1
        """)
    aws_env.write_credentials("""
        [base]
        aws_access_key_id = AKIAIOSFODNN7EXAMPLE
        aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
        """)


def _imported(stderr: str) -> set[str]:
    """Module names from `-X importtime` lines ("import time: self | cumulative | name")."""
    names = set()
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", line)
        if m:
            names.add(m.group(1))
    return names


@pytest.fixture
def file_role(aws_env: AwsEnv) -> AwsEnv:
    _role_config(aws_env)
    aws_env.write_settings(file_store_toml(aws_env.home))
    return aws_env


class TestStoreHit:
    def test_no_client_machinery_and_served_from_store(self, file_role: AwsEnv, moto: MotoServer) -> None:
        assert not file_role.socket.exists()  # no daemon: the direct path
        first = file_role.run("export", "--profile", "demo")
        assert first.returncode == 0, first.stderr
        assert moto.calls("AssumeRole") == 1
        cold = _imported(file_role.run("export", "--profile", "demo",
                                       env={"PYTHONPROFILEIMPORTTIME": "1"}).stderr)
        hit = file_role.run("export", "--profile", "demo", env={"PYTHONPROFILEIMPORTTIME": "1"})
        assert hit.returncode == 0
        assert hit.stdout == first.stdout  # the very credentials cached by the first export
        assert moto.calls("AssumeRole") == 1  # no upstream call
        names = _imported(hit.stderr)
        assert "credhelper.lean" in names and "credhelper.fastpath" in names
        heavy = sorted(n for n in names if n.split(".")[0] in HEAVY)
        assert heavy == [], heavy
        assert "credhelper.lean" in cold  # the earlier hit was lean too (not a fluke of order)

    def test_other_basis_declines_to_the_full_path(self, file_role: AwsEnv, moto: MotoServer) -> None:
        first = file_role.run("export", "--profile", "demo")
        assert first.returncode == 0, first.stderr
        _role_config(file_role, external_id="x-2")  # the cached item was minted for another basis
        again = file_role.run("export", "--profile", "demo", env={"PYTHONPROFILEIMPORTTIME": "1"})
        assert again.returncode == 0, again.stderr
        assert moto.calls("AssumeRole") == 2
        assert json.loads(again.stdout) != json.loads(first.stdout)
        assert "botocore.client" in _imported(again.stderr)  # the full path minted

    def test_chain_env_declines_and_the_recursion_check_holds(self, file_role: AwsEnv) -> None:
        assert file_role.run("export", "--profile", "demo").returncode == 0
        loop = file_role.run("export", "--profile", "demo", env={"CREDHELPER_EXPORT_CHAIN": "demo"})
        assert loop.returncode == 3 and loop.stdout == ""
        assert "recursion" in loop.stderr

    def test_keyring_store_declines(self, aws_env: AwsEnv, tmp_path: Path) -> None:
        aws_env.write_settings('store = "keyring"\n')
        _role_config(aws_env)
        env = aws_env.environ()
        with mock.patch.dict(os.environ, env, clear=True):
            assert export_text("demo", "claude", env) is None


class TestServablePolicy:
    """In-process: the same rule as Broker.servable, on both sides of the window."""

    def _setup(self, tmp: Path, issued: datetime, lifetime: int, window: int) -> dict[str, str]:
        (tmp / "config").write_text("[profile p]\ncredential_process = /bin/true\n")
        (tmp / "s.toml").write_text(file_store_toml(tmp) + f"refresh_window = {window}\n")
        env = {"AWS_CONFIG_FILE": str(tmp / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"),
               "CREDHELPER_CONFIG": str(tmp / "s.toml"), "HOME": str(tmp)}
        with mock.patch.dict(os.environ, env):
            from credhelper.settings import load
            from credhelper.store.encrypted_file import EncryptedFileStore

            creds = Credentials("ASIAEXAMPLE", "secret", "token", issued + timedelta(seconds=lifetime),
                                "process", issued)
            record = {"v": 1, "basis": "process:/bin/true", "credentials": creds.to_record()}
            EncryptedFileStore.from_settings(load()).set("v1/creds/p", json.dumps(record))
        return env

    @pytest.mark.parametrize(("lifetime", "window"), [(900, 420), (3600, 900), (1000, 60), (43200, 3600)])
    def test_agrees_with_broker(self, tmp_path: Path, lifetime: int, window: int) -> None:
        issued = datetime(2026, 1, 1, tzinfo=UTC)
        env = self._setup(tmp_path, issued, lifetime, window)
        creds = Credentials("ASIAEXAMPLE", "secret", "token", issued + timedelta(seconds=lifetime),
                            "process", issued)
        for left in range(0, lifetime, max(1, lifetime // 97)):
            now = issued + timedelta(seconds=lifetime - left)
            broker = Broker(settings=Settings(refresh_window=window, store="memory"), store=MemoryStore(),
                            config=AwsConfig({}, {}), now=lambda: now)  # noqa: B023 - used at once
            with mock.patch.dict(os.environ, env):
                lean = export_text("p", "claude", env, now=now)
            assert (lean is not None) == broker.servable(creds), (left, lifetime, window)


class TestCopiesAgree:
    """The lean path's copies of the settings rules and of model.render."""

    def test_settings_tables(self) -> None:
        from credhelper import settings as full
        from credhelper.lean import settings as lean

        assert lean.TYPES == full._TYPES and lean.RANGES == full.RANGES and lean.ALIASES == full.ALIASES
        assert (lean.MAX_TEXT, lean.MAX_WARM, lean.STORES) == (full.MAX_TEXT, full.MAX_WARM, full.STORES)
        defaults = Settings()
        assert all(getattr(defaults, k) == v for k, v in lean.DEFAULTS.items())

    @settings(max_examples=300, deadline=None)
    @given(data=st.dictionaries(
        st.sampled_from(["refresh_window", "store", "warm_profiles", "key_file", "export_timeout",
                         "mint_timeout", "max_refresh_rate", "encrypted_file", "nope"]),
        st.one_of(st.integers(-10, 100000), st.booleans(),
                  st.sampled_from(["keyring", "encrypted-file", "x", ""]),
                  st.lists(st.sampled_from(["a", "", "b\x00"]), max_size=3)), max_size=4))
    def test_lean_accepts_only_what_parse_accepts(self, data: dict[str, Any]) -> None:
        from credhelper import settings as full
        from credhelper.lean import settings as lean

        try:
            parsed: Settings | None = full.parse(dict(data))
        except CredhelperError:
            parsed = None
        assert lean._valid(data) == (parsed is not None), data
        if parsed is not None:
            for key in ("refresh_window", "store", "encrypted_file", "key_file"):
                assert data.get(key, lean.DEFAULTS[key]) == getattr(parsed, key)

    @pytest.mark.parametrize("fmt", ["claude", "process", "env", "json"])
    def test_render(self, fmt: str) -> None:
        from credhelper.lean import from_record, render
        from credhelper.model import render as full_render

        issued = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
        creds = Credentials("ASIAEXAMPLE", "se'cr et/+=", "to$ken\"x", issued + timedelta(seconds=3600),
                            "assume-role", issued)
        record = json.loads(json.dumps(creds.to_record()))
        assert render(from_record(record), fmt, "dev") == full_render(
            Credentials.from_record(record), fmt, profile="dev")


class TestFastPathClock:
    def test_warm_path_imports_neither_typing_nor_threading(self) -> None:
        import subprocess
        import sys

        out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import credhelper.fastpath"],
                             capture_output=True, text=True, check=True).stderr
        assert "credhelper.fastpath" in _imported(out)
        assert not {"typing", "threading", "credhelper.deadline"} & _imported(out)

    def test_the_full_path_budget_counts_from_process_start(self, tmp_path: Path) -> None:
        from credhelper import deadline, fastpath

        assert fastpath.DEFAULT_BUDGET == deadline.DEFAULT_BUDGET
        (tmp_path / "config").write_text("")
        (tmp_path / "s.toml").write_text('store = "memory"\n')
        env = {"CREDHELPER_SOCKET": str(tmp_path / "none"), "CREDHELPER_CONFIG": str(tmp_path / "s.toml"),
               "AWS_CONFIG_FILE": str(tmp_path / "config"), "HOME": str(tmp_path)}
        old = deadline.STARTED
        try:
            deadline.STARTED = -1.0
            with mock.patch.dict(os.environ, env):
                assert fastpath.main(["export", "--profile", "nowhere"]) == 3  # unknown profile
            assert deadline.STARTED == fastpath.STARTED
        finally:
            deadline.STARTED = old


class TestStricterThanTheFullStore:
    def test_key_file_others_can_read_or_relative_declines(self, tmp_path: Path) -> None:
        issued = datetime.now(UTC).replace(microsecond=0)
        env = TestServablePolicy()._setup(tmp_path, issued, 3600, 900)
        with mock.patch.dict(os.environ, env):
            assert export_text("p", "claude", env) is not None
            (tmp_path / "store.key").chmod(0o644)  # the full store refuses it (exit 5)
            assert export_text("p", "claude", env) is None
            (tmp_path / "store.key").chmod(0o600)
            toml = (tmp_path / "s.toml").read_text().replace(str(tmp_path / "store.key"), "store.key")
            (tmp_path / "s.toml").write_text(toml)  # relative: resolved by the full store's rules
            assert export_text("p", "claude", env) is None


# ------------------------------------------------------------------ the property test

NAMES = ["default", "dev", "prod", "base", "ci", "a.b", "sso-user", "x_1"]
KINDS = ["assume-role", "assume-role-env", "sso-session", "sso-legacy", "static", "stored-keys",
         "web-identity", "process", "file-session", "env-default", "broken", "empty"]
#: the kinds the acceptance's ">= 90 % answered" counts
COUNTED = {"assume-role", "assume-role-env", "sso-session", "sso-legacy", "static", "stored-keys",
           "web-identity", "process"}


@st.composite
def _profile(draw: st.DrawFn, name: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    opts: dict[str, str] = {}
    extra = draw(st.sets(st.sampled_from(["external_id", "mfa_serial", "duration", "session_name",
                                          "region", "bad_duration", "spaces"]), max_size=3))
    if kind in ("assume-role", "assume-role-env"):
        opts["role_arn"] = draw(st.sampled_from([ROLE, "arn:aws:iam::210987654321:role/ops/admin",
                                                 "arn:aws-cn:iam::123456789012:role/x"]))
        if kind == "assume-role":
            opts["source_profile"] = draw(st.sampled_from(NAMES))
        else:
            opts["credential_source"] = "Environment"
        if "external_id" in extra:
            opts["external_id"] = draw(st.sampled_from(["ext-1", "a:b/c"]))
        if "duration" in extra:
            opts["duration_seconds"] = draw(st.sampled_from(["900", "3600", " 43200"]))
        if "bad_duration" in extra:
            opts["duration_seconds"] = draw(st.sampled_from(["60", "1h", "99999"]))
        if "session_name" in extra:
            opts["role_session_name"] = draw(st.sampled_from(["me", "ci@build", "x y"]))
    elif kind == "sso-session":
        opts.update(sso_session=draw(st.sampled_from(["corp", "missing"])), sso_account_id="123456789012",
                    sso_role_name=draw(st.sampled_from(["Admin", "ReadOnly"])))
    elif kind == "sso-legacy":
        opts.update(sso_start_url="https://legacy.awsapps.com/start", sso_region="eu-west-1",
                    sso_account_id="123456789012", sso_role_name="Dev")
    elif kind in ("static", "file-session"):
        opts.update(aws_access_key_id=draw(st.sampled_from(["AKIAAAAAAAAAAAAAAAAA", "AKIABBBBBBBBBBBBBBBB"])),
                    aws_secret_access_key="s3cr3t")
        if kind == "file-session":
            opts["aws_session_token"] = "tok"
    elif kind == "web-identity":
        opts.update(role_arn=ROLE, web_identity_token_file=draw(st.sampled_from(["/tmp/tok", "~/t"])))
    elif kind == "process":
        opts["credential_process"] = draw(st.sampled_from(
            ["/usr/bin/helper --x 1", "'/opt/my helper' get", "helper 'unterminated", "credhelper export"]))
    elif kind == "broken":
        opts["role_arn"] = draw(st.sampled_from(["not-an-arn", ROLE]))
        if draw(st.booleans()):
            opts["source_profile"], opts["credential_source"] = "base", "Environment"
    if "mfa_serial" in extra and kind not in ("empty",):
        opts["mfa_serial"] = "arn:aws:iam::123456789012:mfa/me"
    if "region" in extra:
        opts["region"] = "us-west-2"
    where = draw(st.sampled_from(["config", "credentials"] if kind in ("static", "file-session")
                                 else ["config", "config", "credentials"]))
    header = draw(st.sampled_from(["profile {n}", "profile  {n}", "profile '{n}'"]))
    if name == "default" and where == "config":
        header = draw(st.sampled_from(["default", "profile default"]))
    return {"name": name, "kind": kind, "opts": opts, "where": where, "header": header,
            "spaces": "spaces" in extra, "stored": kind == "stored-keys"}


@st.composite
def _configs(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    profiles = [draw(_profile(n)) for n in names]
    noise = draw(st.lists(st.sampled_from(["[profilex]\nregion = x\n", "[profile a b]\nregion = y\n",
                                           "[preview]\ncloudfront = true\n",
                                           "[profile dev]\nregion = dup\n",
                                           "[profile nested]\ns3 =\n  max_concurrent_requests = 5\n"]),
                          max_size=2))
    env_keys = draw(st.sampled_from([{}, {"AWS_ACCESS_KEY_ID": "AKIAENVENVENVENVENVE",
                                          "AWS_SECRET_ACCESS_KEY": "e"},
                                     {"AWS_ACCESS_KEY_ID": "ASIAENV", "AWS_SECRET_ACCESS_KEY": "e",
                                      "AWS_SESSION_TOKEN": "t"}]))
    return {"profiles": profiles, "noise": noise, "env": env_keys,
            "sso_session": draw(st.booleans())}


def _render(cfg: dict[str, Any]) -> tuple[str, str]:
    config, creds = [], []
    if cfg["sso_session"]:
        config.append("[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n"
                      "sso_region = us-east-1\n")
    for p in cfg["profiles"]:
        eq = " =  " if p["spaces"] else " = "
        body = "".join(f"{k}{eq}{v}\n" for k, v in p["opts"].items())
        if p["where"] == "config":
            config.append(f"[{p['header'].format(n=p['name'])}]\n{body}")
        else:
            creds.append(f"[{p['name']}]\n{body}")
    config.extend(cfg["noise"])
    return "\n".join(config), "\n".join(creds)


def _full_basis(name: str, store: MemoryStore, env: dict[str, str]) -> str | None:
    """What the full path would cache under: botocore's reading and the source's basis()."""
    try:
        config = AwsConfig.load()
        source = Broker(settings=Settings(store="memory"), store=store, config=config,
                        environ=env).source(name)
    except CredhelperError:
        return None
    return source.basis() if source.cacheable else None


STATS: Counter[str] = Counter()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=_configs())
def test_lean_basis_agrees_with_botocore(cfg: dict[str, Any]) -> None:
    config_text, creds_text = _render(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config").write_text(config_text)
        Path(tmp, "credentials").write_text(creds_text)
        env = {"AWS_CONFIG_FILE": str(Path(tmp, "config")),
               "AWS_SHARED_CREDENTIALS_FILE": str(Path(tmp, "credentials")),
               "HOME": tmp, **cfg["env"]}
        store = MemoryStore()
        for p in cfg["profiles"]:
            if p["stored"]:
                store.set(f"v1/keys/{p['name']}",
                          json.dumps({"AccessKeyId": "AKIASTORED0000000000", "SecretAccessKey": "k"}))
        keep = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with mock.patch.dict(os.environ, {**keep, **env}, clear=True):
            try:
                lean_config: awsconfig.LeanConfig | None = awsconfig.LeanConfig.load(env)
            except awsconfig.Unreadable:
                lean_config = None
            for p in cfg["profiles"]:
                full = _full_basis(p["name"], store, env)
                lean = None if lean_config is None else lean_basis(p["name"], lean_config, store.get, env)
                if lean is not None:
                    assert lean == full, (p, config_text, creds_text)
                if p["kind"] in COUNTED and full is not None:
                    STATS["counted"] += 1
                    STATS["answered"] += lean is not None


def test_lean_answers_for_most_cacheable_profiles() -> None:
    """Runs after the property test (file order): >= 90 % answered."""
    if STATS["counted"] < 100:
        test_lean_basis_agrees_with_botocore()
    assert STATS["counted"] >= 100
    print("lean answered", dict(STATS))
    assert STATS["answered"] / STATS["counted"] >= 0.9, STATS
