"""`credhelper doctor`: every link from the AWS config to Bedrock, checked in
dependency order, each failure with its fix.

A check is a small function of the shared `State` that returns a `Result`
(and may fill in the state for the checks after it: the config, the region,
the store, the credentials). A check whose prerequisite failed is skipped.
Network checks run under a short total deadline each (`network.py`), so
doctor never hangs. The exit code is the first failure's, from the README's
table (3 config, 4 login required, 5 store, 6 upstream).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from credhelper.errors import EXIT_OK


@dataclass(frozen=True)
class Result:
    name: str
    #: True passed, False failed, None skipped (a prerequisite failed)
    ok: bool | None
    #: what was found, one line
    title: str
    #: what to do, for a failure
    fix: str = ""
    #: the exit code this failure stands for
    exit_code: int = EXIT_OK
    #: passed, with a caveat (`fix` says what to mind); does not change the exit code
    warn: bool = False

    def line(self) -> str:
        if self.ok and self.warn:
            return f"! {self.title}: {self.fix}"
        if self.ok:
            return f"✔ {self.title}"
        if self.ok is None:
            return f"- {self.title}"
        return f"✘ {self.title}: {self.fix}" if self.fix else f"✘ {self.title}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class State:
    """What the checks share: inputs, and what earlier checks found."""

    environ: Mapping[str, str]
    cwd: Path
    launcher: str
    profile_option: str | None = None
    #: total deadline of each network check, seconds
    deadline: float = 8.0
    profile: str = "default"
    config: Any = None  # AwsConfig
    region: str | None = None
    settings: Any = None  # Settings
    store: Any = None  # Store
    creds: Any = None  # Credentials
    clients: Any = None  # ClientFactory
    #: Claude Code's settings: (path, data) lowest precedence first; errors as text
    claude_files: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    claude_errors: list[str] = field(default_factory=list)


#: None: nothing to report for this setup (a check of something it does not use)
Check = Callable[[State], Result | None]


def prepare(state: State) -> State:
    """Read Claude Code's settings and decide the profile (what Claude Code would use)."""
    from credhelper import claude_settings as cs
    from credhelper.errors import ConfigError

    paths = [cs.user_settings_path(state.environ), *cs.project_settings_paths(state.cwd)]
    for path in paths:
        try:
            sf = cs.load(path)
        except ConfigError as exc:
            state.claude_errors.append(exc.message)
            continue
        if sf.exists:
            state.claude_files.append((path, sf.data))
    env = claude_env(state)
    state.profile = (
        state.profile_option or cs.command_profile(claude_value(state, "awsCredentialExport"))
        or env.get("CREDHELPER_PROFILE") or state.environ.get("CREDHELPER_PROFILE")
        or env.get("AWS_PROFILE") or state.environ.get("AWS_PROFILE") or "default"
    )
    return state


def claude_env(state: State) -> dict[str, str]:
    """The `env` block Claude Code ends up with (project over user)."""
    from credhelper.claude_settings import env_block

    out: dict[str, str] = {}
    for _, data in state.claude_files:
        out.update(env_block(data))
    return out


def claude_value(state: State, key: str) -> Any:
    value = None
    for _, data in state.claude_files:
        if key in data:
            value = data[key]
    return value


def checks() -> list[Check]:
    from credhelper.doctor import local, network

    return [
        local.aws_config, local.region, local.store, local.daemon,
        network.credentials, network.sts, network.bedrock,
        local.claude, local.environment, local.bearer, local.login_key,
    ]


def run(state: State) -> list[Result]:
    prepare(state)
    return [r for r in (check(state) for check in checks()) if r is not None]


def exit_code(results: list[Result]) -> int:
    for r in results:
        if r.ok is False:
            return r.exit_code
    return EXIT_OK


def default_state(profile: str | None, environ: Mapping[str, str] | None = None) -> State:
    from credhelper.claude_settings import stable_launcher, this_launcher

    env = os.environ if environ is None else environ
    return State(environ=env, cwd=Path.cwd(), launcher=stable_launcher(this_launcher(), env),
                 profile_option=profile)
