"""Doctor checks that need no network: AWS config, region, store, daemon,
Claude Code's settings, and the environment variables that override them."""

from __future__ import annotations

import os
import shutil

from credhelper import claude_settings as cs
from credhelper.doctor import Result, State, claude_env, claude_value
from credhelper.errors import EXIT_CONFIG, EXIT_STORE, CorruptItem, CredhelperError


def _config_file(state: State) -> str:
    return state.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"


def aws_config(state: State) -> Result:
    from credhelper.config import AwsConfig

    name = "aws-config"
    try:
        state.config = AwsConfig.load()
    except CredhelperError as exc:
        return Result(name, False, "the AWS config cannot be read", exc.message, exc.exit_code)
    p, where = state.profile, _config_file(state)
    if state.config.profile(p) is not None:
        return Result(name, True, f"AWS config {where}: profile {p} found")
    hint = cs.suggest(p, sorted(state.config.profiles))
    return Result(
        name, False, f"profile {p} is not in {where}{hint}",
        f"fix the name (credhelper doctor --profile NAME checks another), add [profile {p}], "
        f"or store keys with credhelper keys add --profile {p}", EXIT_CONFIG,
    )


def region(state: State) -> Result:
    name = "region"
    if state.config is None:
        return Result(name, None, "region: skipped (no AWS config)")
    env = claude_env(state)
    for value, where in (
        (env.get("AWS_REGION"), "Claude Code settings env AWS_REGION"),
        (state.environ.get("AWS_REGION"), "AWS_REGION"),
        (state.environ.get("AWS_DEFAULT_REGION"), "AWS_DEFAULT_REGION"),
        (state.config.get(state.profile, "region"), f"profile {state.profile}'s region"),
    ):
        if value:
            state.region = value
            return Result(name, True, f"region {value} (from {where})")
    return Result(
        name, False, f"no region for profile {state.profile} (Claude Code would assume us-east-1)",
        f"run credhelper setup claude --profile {state.profile} --region REGION, or add "
        f"region = REGION to the profile in {_config_file(state)}", EXIT_CONFIG,
    )


def store(state: State) -> Result:
    from credhelper import settings as settings_mod
    from credhelper.store import item, open_store

    name = "store"
    try:
        state.settings = settings_mod.load()
        opened = open_store(state.settings)
        opened.get(item("creds", state.profile))  # a locked or broken store fails here
    except CorruptItem as exc:
        if state.settings is not None and state.settings.store == "encrypted-file":
            return Result(
                name, False, f"the encrypted store cannot be decrypted ({exc.message.split(':')[0]})",
                f"check key_file in {state.settings.path}: it must be the key "
                f"{state.settings.encrypted_file_path()} was written with (do not delete the store)",
                exc.exit_code)
        return Result(name, False, "the store cannot be used", exc.message, exc.exit_code)
    except CredhelperError as exc:
        return Result(name, False, "the store cannot be used", exc.message, exc.exit_code)
    state.store = opened
    if state.settings.store == "memory":
        return Result(name, False, "the store is memory: nothing survives the process",
                      'set store = "keyring" (or "encrypted-file") in '
                      f"{state.settings.path}", EXIT_STORE)
    return Result(name, True, f"store: {opened.description}")


def daemon(state: State) -> Result:
    from credhelper import client

    name = "daemon"
    try:
        status = client.status()
    except (OSError, ValueError):
        status = None
    if status is None:
        return Result(name, False, "the credhelper daemon is not running",
                      "start it with credhelper service install (or credhelper daemon in a "
                      "terminal)", EXIT_CONFIG)
    d = status.get("daemon") or {}
    return Result(name, True, f"daemon answers (pid {d.get('pid', '?')}, "
                              f"version {d.get('version', '?')})")


def _same_program(program: str, launcher: str, environ: dict[str, str]) -> bool:
    path = program if os.sep in program else shutil.which(program, path=environ.get("PATH"))
    if not path:
        return False
    try:
        return os.path.samefile(path, launcher)
    except OSError:
        return False


def claude(state: State) -> Result:
    name = "claude-settings"
    p = state.profile
    setup = f"run credhelper setup claude --profile {p}"
    if state.claude_errors:
        return Result(name, False, "Claude Code settings are broken", state.claude_errors[0],
                      EXIT_CONFIG)
    command = claude_value(state, "awsCredentialExport")
    if not command:
        return Result(name, False, "Claude Code settings have no awsCredentialExport", setup,
                      EXIT_CONFIG)
    program = cs.command_program(command) or ""
    if not _same_program(program, state.launcher, dict(state.environ)):
        return Result(name, False,
                      f"awsCredentialExport runs {program}, not this installation "
                      f"({state.launcher})", f"{setup} (with this installation)", EXIT_CONFIG)
    env = claude_env(state)
    used = (cs.command_profile(command) or env.get("CREDHELPER_PROFILE")
            or env.get("AWS_PROFILE"))
    if used is not None and used != p:
        return Result(name, False, f"Claude Code settings use profile {used}, not {p}", setup,
                      EXIT_CONFIG)
    if used is None:
        return Result(name, False, "Claude Code settings set no AWS_PROFILE", setup, EXIT_CONFIG)
    if env.get("CLAUDE_CODE_USE_BEDROCK") not in ("1", "true"):
        return Result(name, False, "Claude Code settings do not set CLAUDE_CODE_USE_BEDROCK=1",
                      setup, EXIT_CONFIG)
    if not env.get("AWS_REGION"):
        return Result(name, False, "Claude Code settings set no AWS_REGION",
                      f"{setup} --region REGION", EXIT_CONFIG)
    return Result(name, True, f"Claude Code settings use this credhelper with profile {p} "
                              f"in {env['AWS_REGION']}")


def environment(state: State) -> Result:
    name = "environment"
    exporting = bool(claude_value(state, "awsCredentialExport"))
    found = cs.profile_overrides(state.profile, claude_env(state), state.environ, exporting)
    if found:
        title, _, fix = found[0].rpartition("; ")
        return Result(name, False, title, fix, EXIT_CONFIG)
    return Result(name, True, f"no AWS_* variable overrides profile {state.profile}")


def bearer(state: State) -> Result:
    name = "bearer-token"
    found = cs.bearer_overrides(claude_env(state), state.environ)
    if found:
        title, _, fix = found[0].rpartition("; ")
        return Result(name, False, title, fix, EXIT_CONFIG)
    return Result(name, True, f"{cs.BEARER} is not set")


def login_key(state: State) -> Result | None:
    """`aws login` profiles: the DPoP key that refreshes the session is a plaintext file."""
    from credhelper.sources import login_session as ls

    if state.config is None:
        return None
    holder = ls.session_profile(state.config, state.profile)
    if holder is None:
        return None
    path = ls.cache_path(str(state.config.get(holder, "login_session")), state.environ)
    return Result(
        "login-session-key", True,
        f"profile {holder} is an aws login session; its DPoP private key and refresh token sit "
        f"in a plaintext file, {path} (the AWS CLI and SDKs read them there)",
        "keep that file's mode 0600 and your home directory private, and run "
        f"aws logout --profile {holder} when done on a shared machine", warn=True,
    )
