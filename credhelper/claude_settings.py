"""Claude Code's settings files: where they are, what credhelper needs in them,
and merging that in while keeping everything else.

User scope (`~/.claude/settings.json`, or `$CLAUDE_CONFIG_DIR/settings.json`):
`awsCredentialExport` = this installation's `credhelper export` *without*
`--profile` (the profile comes from `AWS_PROFILE`, so a project's own
`AWS_PROFILE` wins), `awsAuthRefresh` = `credhelper login` for IAM Identity
Center profiles only (Claude Code runs it without a terminal; an MFA code
cannot be typed there), and `env` with `CLAUDE_CODE_USE_BEDROCK`, `AWS_REGION`
and `AWS_PROFILE`. User settings are not behind the workspace trust gate.

Project scope (`<repo>/.claude/settings.json`): only what differs per
repository, `AWS_PROFILE` (and `AWS_REGION` when given); commands there would
run only after the trust dialog (claude-code-contract.md §1).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from credhelper import fileedit, paths
from credhelper.config import AwsConfig
from credhelper.errors import ConfigError

#: Claude Code uses this key for Bedrock before anything else (contract §4)
BEARER = "AWS_BEARER_TOKEN_BEDROCK"
_VERSIONED = re.compile(r"/Cellar/credhelper/[^/]+/")


def user_settings_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("CLAUDE_CONFIG_DIR") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".claude")
    return Path(base) / "settings.json"


def project_root(cwd: Path) -> Path:
    """The repository `cwd` is in (nearest directory with `.git`), else `cwd`."""
    for d in (cwd, *cwd.parents):
        if (d / ".git").exists():
            return d
    return cwd


def project_settings_paths(cwd: Path) -> list[Path]:
    """The project's settings files, lowest precedence first."""
    root = project_root(cwd) / ".claude"
    return [root / "settings.json", root / "settings.local.json"]


# -- reading and writing ---------------------------------------------------------------


@dataclass
class SettingsFile:
    path: Path
    target: Path
    raw: bytes | None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.raw is not None


def load(path: Path) -> SettingsFile:
    """Read a settings file; ConfigError (exit 3) if it is not a JSON object."""
    target, raw = fileedit.read(path)
    if raw is None or not raw.strip():
        return SettingsFile(path, target, raw)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: fix or move it; nothing was changed") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
            "fix it; nothing was changed"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, not {type(data).__name__}: fix it; "
                          "nothing was changed")
    return SettingsFile(path, target, raw, data)


def dump(data: Mapping[str, Any], old: bytes | None) -> str:
    """JSON text in the file's own indentation (2 spaces for a new file)."""
    indent: int | str = 2
    if old:
        m = re.search(rb"\n([ \t]+)\S", old)
        if m:
            ws = m.group(1).decode()
            indent = "\t" if "\t" in ws else len(ws)
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n"


def merge(current: Mapping[str, Any], updates: Mapping[str, Any],
          remove: tuple[str, ...] = ()) -> dict[str, Any]:
    """`current` with `updates` set (the `env` object merged key by key) and
    `remove` keys dropped; every other key and value, and the order, kept."""
    out = dict(current)
    for key, value in updates.items():
        if key == "env" and isinstance(value, Mapping):
            env = out.get("env")
            out["env"] = {**(env if isinstance(env, Mapping) else {}), **value}
        else:
            out[key] = value
    for key in remove:
        out.pop(key, None)
    return out


def edit(sf: SettingsFile, data: Mapping[str, Any]) -> fileedit.Edit:
    """The edit that makes `sf` hold `data`; unchanged data means no change at all
    (the file is not re-formatted)."""
    if sf.exists and data == sf.data:
        return fileedit.plan(sf.path, (sf.raw or b"").decode("utf-8"), old=sf.raw,
                             target=sf.target)
    return fileedit.plan(sf.path, dump(data, sf.raw), old=sf.raw, target=sf.target,
                         new_mode=0o600)


# -- what credhelper writes ---------------------------------------------------------------


def this_launcher(argv0: str | None = None, python: str | None = None) -> str:
    """Absolute path of this installation's `credhelper` command (paths.this_launcher)."""
    return paths.this_launcher(argv0, python)


def stable_launcher(path: str, environ: Mapping[str, str]) -> str:
    """A path to `credhelper` that survives upgrades: Homebrew's `opt` link instead
    of a versioned Cellar directory, pipx's `~/.local/bin` link instead of its venv."""
    m = _VERSIONED.search(path)
    if m:
        opt = path[: m.start()] + "/opt/credhelper/" + path[m.end():]
        if os.path.exists(opt):
            return opt
    if "/pipx/venvs/credhelper/" in path:
        home = environ.get("HOME") or os.path.expanduser("~")
        bin_dir = environ.get("PIPX_BIN_DIR") or os.path.join(home, ".local", "bin")
        link = os.path.join(bin_dir, "credhelper")
        if os.path.exists(link) and os.path.realpath(link) == os.path.realpath(path):
            return link
    return path


def login_kind(config: AwsConfig, profile: str) -> str | None:
    """"sso" or "mfa" when the profile (or its source_profile chain) needs a human."""
    import credhelper.sources  # noqa: F401  (first: login.tokens and sources import each other)
    from credhelper.login.tokens import sso_session_for

    seen: set[str] = set()
    current: str | None = profile
    while current is not None and current not in seen:
        seen.add(current)
        if sso_session_for(current, config) is not None:
            return "sso"
        if config.get(current, "mfa_serial"):
            return "mfa"
        current = config.get(current, "source_profile")
    return None


def suggest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def export_command(launcher: str) -> str:
    return f"{shlex.quote(launcher)} export"


def login_command(launcher: str) -> str:
    return f"{shlex.quote(launcher)} login"


def user_updates(launcher: str, profile: str, region: str,
                 sso: bool) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(keys to set, keys to remove) in the user settings."""
    updates: dict[str, Any] = {
        "awsCredentialExport": export_command(launcher),
        "env": {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": region, "AWS_PROFILE": profile},
    }
    if sso:
        updates["awsAuthRefresh"] = login_command(launcher)
        return updates, ()
    return updates, ("awsAuthRefresh",)


def _words(command: object) -> list[str]:
    if not isinstance(command, str):
        return []
    try:
        return shlex.split(command)
    except ValueError:
        return []


def command_program(command: object) -> str | None:
    """The program a settings command runs (its first word), or None."""
    words = _words(command)
    return words[0] if words else None


def is_credhelper_login(command: object) -> bool:
    words = _words(command)
    return len(words) >= 2 and os.path.basename(words[0]) == "credhelper" and words[1] == "login"


def command_profile(command: object) -> str | None:
    """The `--profile P` of a settings command, if it has one."""
    words = _words(command)
    for i, w in enumerate(words):
        if w in ("--profile", "-p") and i + 1 < len(words):
            return words[i + 1]
        if w.startswith("--profile="):
            return w.split("=", 1)[1]
    return None


def env_block(data: Mapping[str, Any]) -> dict[str, str]:
    env = data.get("env")
    if not isinstance(env, Mapping):
        return {}
    return {str(k): str(v) for k, v in env.items()}


def bearer_overrides(settings_env: Mapping[str, str], environ: Mapping[str, str]) -> list[str]:
    """`AWS_BEARER_TOKEN_BEDROCK` wins over awsCredentialExport (contract §4)."""
    out = []
    if BEARER in settings_env:
        out.append(f"the settings env block sets {BEARER}: Claude Code then uses that key "
                   "and never runs awsCredentialExport; remove it from the env block")
    if environ.get(BEARER):
        out.append(f"{BEARER} is set in this environment: Claude Code started from here uses "
                   f"that key and never runs awsCredentialExport; unset {BEARER}")
    return out


def profile_overrides(profile: str, settings_env: Mapping[str, str], environ: Mapping[str, str],
                      exporting: bool = True) -> list[str]:
    """Variables that make something use other credentials than `profile`'s."""
    out: list[str] = []
    for where, env in (("the settings env block", settings_env), ("this environment", environ)):
        if env.get("AWS_ACCESS_KEY_ID"):
            what = (f"Bedrock signing still uses credhelper, but the AWS tools Claude Code runs "
                    f"use the keys instead of profile {profile}, and while they are valid Claude "
                    "Code skips awsAuthRefresh" if exporting else
                    f"they override profile {profile} for Claude Code and every AWS tool")
            out.append(f"AWS_ACCESS_KEY_ID is set in {where}: {what}; unset AWS_ACCESS_KEY_ID "
                       "AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN")
    chosen = settings_env.get("CREDHELPER_PROFILE") or environ.get("CREDHELPER_PROFILE")
    if chosen and chosen != profile:
        out.append(f"CREDHELPER_PROFILE={chosen} is set: credhelper export would use profile "
                   f"{chosen}, not {profile}; unset CREDHELPER_PROFILE")
    # the settings' env block wins over the environment in Claude Code
    other = None if settings_env.get("AWS_PROFILE") else environ.get("AWS_PROFILE")
    if other and other != profile:
        out.append(f"AWS_PROFILE={other} is set in this environment, not {profile}: it overrides "
                   f"the profile; unset AWS_PROFILE or run credhelper setup claude --profile {other}")
    return out


def overrides(profile: str, settings_env: Mapping[str, str],
              environ: Mapping[str, str]) -> list[str]:
    """What would override what `setup claude` configured, one warning each."""
    return bearer_overrides(settings_env, environ) + profile_overrides(
        profile, settings_env, environ)


# -- setup claude ---------------------------------------------------------------------------


@dataclass
class SetupPlan:
    edit: fileedit.Edit
    #: things that would override what was configured
    warnings: list[str]
    #: what else the user should know (project scope: what the user scope still needs)
    notes: list[str]


def check_profile(config: AwsConfig, profile: str, stored_keys: bool, config_file: str) -> None:
    if config.profile(profile) is not None or stored_keys:
        return
    raise ConfigError(
        f"unknown profile {profile} in {config_file}{suggest(profile, sorted(config.profiles))}: "
        f"pass --profile with a profile of that file, or credhelper keys add --profile {profile}"
    )


def plan_setup(
    *, profile: str, region: str | None, scope: str, config: AwsConfig, launcher: str,
    environ: Mapping[str, str], cwd: Path,
) -> SetupPlan:
    """What `setup claude` would write; ConfigError when it cannot."""
    if scope == "project":
        return _plan_project(profile, region, launcher, environ, cwd)
    region = region or config.get(profile, "region")
    if not region:
        raise ConfigError(
            f"profile {profile} has no region and none was given: pass --region "
            "(e.g. --region us-east-1), or add region to the profile"
        )
    sf = load(user_settings_path(environ))
    kind = login_kind(config, profile)
    updates, remove = user_updates(launcher, profile, region, kind == "sso")
    if "awsAuthRefresh" in remove and not is_credhelper_login(sf.data.get("awsAuthRefresh")):
        remove = ()  # someone else's refresh command: not ours to drop
    data = merge(sf.data, updates, remove)
    notes = []
    if kind == "mfa":
        notes.append(f"profile {profile} uses MFA: Claude Code cannot ask for a code, so run "
                     f"credhelper login --profile {profile} in a terminal when the MFA session ends")
    return SetupPlan(edit(sf, data), overrides(profile, env_block(data), environ), notes)


def _plan_project(profile: str, region: str | None, launcher: str,
                  environ: Mapping[str, str], cwd: Path) -> SetupPlan:
    sf = load(project_settings_paths(cwd)[0])
    env = {"AWS_PROFILE": profile, **({"AWS_REGION": region} if region else {})}
    data = merge(sf.data, {"env": env})
    user = load(user_settings_path(environ))
    missing = []
    if command_program(user.data.get("awsCredentialExport")) != launcher:
        missing.append(f"awsCredentialExport = {export_command(launcher)}")
    uenv = env_block(user.data)
    if uenv.get("CLAUDE_CODE_USE_BEDROCK") != "1":
        missing.append("env CLAUDE_CODE_USE_BEDROCK=1")
    if not region and not uenv.get("AWS_REGION"):
        missing.append("env AWS_REGION")
    if missing:
        notes = [f"the user settings {user.path} still need {', '.join(missing)}: run credhelper "
                 "setup claude --scope user (commands in project settings wait for the trust "
                 "dialog)"]
    else:
        notes = [f"the user settings {user.path} already have awsCredentialExport and the "
                 "Bedrock env"]
    return SetupPlan(edit(sf, data), overrides(profile, env_block(data), environ), notes)
