"""What one harness run does: the knobs, written as JSON into the run's work
dir by the outer process and read back inside the network namespace."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

ENV_MODES = ("both", "settings", "process")

#: The Bedrock switch and its fake endpoint (ANTHROPIC_BEDROCK_BASE_URL is added
#: to wherever these go; with a given settings file it is set in the process env only).
BEDROCK_ENV = {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1"}

#: Claude Code's quiet switches: no telemetry, no updater, no traffic but the model's.
QUIET_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}


@dataclass
class Spec:
    workdir: str
    claude_bin: str
    #: awsCredentialExport / awsAuthRefresh commands (the harness writes settings.json)
    helper_cmd: str | None = None
    refresh_cmd: str | None = None
    #: a settings.json to use instead of writing one; its awsCredentialExport and
    #: awsAuthRefresh are replaced by logging wrappers that run the same command
    #: strings unless wrap_helpers is False (then it is copied byte for byte)
    settings: str | None = None
    wrap_helpers: bool = True
    #: where CLAUDE_CODE_USE_BEDROCK, AWS_REGION, ANTHROPIC_BEDROCK_BASE_URL go
    env_mode: str = "both"
    #: added to Claude's environment after the harness's own (so they win)
    pass_env: dict[str, str] = field(default_factory=dict)
    #: bash run inside the namespace before Claude starts; sees $W and $NETNS_PIDFILE
    netns_setup: str | None = None
    prompt: str = "say hi"
    expect_text: str = "Hello from fake Bedrock"
    fail_first: int = 0
    tool_sleep: int = 0
    extra_args: list[str] = field(default_factory=list)
    #: argv run instead of `claude -p PROMPT ...`; "{claude}", "{prompt}" and
    #: "{workdir}" in an argument are replaced
    command: list[str] | None = None
    cc_timeout: float = 120.0

    def dump(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(dataclasses.asdict(self), f, indent=2)

    @classmethod
    def load(cls, path: str) -> Spec:
        with open(path) as f:
            data: dict[str, Any] = json.load(f)
        return cls(**data)

    def check(self) -> None:
        if self.env_mode not in ENV_MODES:
            raise ValueError(f"env_mode must be one of {ENV_MODES}, not {self.env_mode!r}")
        if self.settings is None and not self.helper_cmd and self.command is None:
            raise ValueError("give helper_cmd (awsCredentialExport), a settings file, or a command")
        if self.settings is not None and (self.helper_cmd or self.refresh_cmd):
            raise ValueError("a given settings file already names the helper commands")
