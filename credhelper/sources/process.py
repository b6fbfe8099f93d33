"""`credential_process`: run an existing helper and cache what it prints.

The AWS CLI and SDKs run it on every call (aws/aws-cli#5585); wrapped here,
it runs once per credential lifetime. A helper that calls `credhelper export`
again (directly, or anywhere down a chain) is a configuration error, caught
statically from the command line and at run time through `CHAIN_ENV`.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from credhelper import redact
from credhelper.errors import EXIT_CONFIG, ConfigError, UpstreamError
from credhelper.model import Credentials, parse_time
from credhelper.sources.base import Context
from credhelper.sources.session_token import SessionTokenSource

NAME = "process"
#: profiles whose credential_process is running, outermost first (comma-separated)
CHAIN_ENV = "CREDHELPER_EXPORT_CHAIN"
MAX_DEPTH = 4
RECURSION = "credential_process recursion"


def running_chain(environ: Mapping[str, str]) -> list[str]:
    return [p for p in environ.get(CHAIN_ENV, "").split(",") if p]


def check_recursion(profile: str, environ: Mapping[str, str]) -> None:
    """Called by `export` before anything else: refuse a fork bomb."""
    chain = running_chain(environ)
    if profile in chain or len(chain) >= MAX_DEPTH:
        loop = " -> ".join((*chain, profile))
        raise ConfigError(
            f"{RECURSION} ({loop}): a profile's credential_process "
            "must not run credhelper export for itself; point it at the real helper"
        )


def _is_self(argv: list[str]) -> bool:
    names = [os.path.basename(a) for a in argv]
    runs_us = (bool(names) and names[0] == "credhelper") or (
        "-m" in argv and argv.index("-m") + 1 < len(argv) and argv[argv.index("-m") + 1] == "credhelper"
    )
    return runs_us and "export" in argv


@dataclass
class ProcessSource:
    profile: str
    command: str
    ctx: Context
    run: Callable[..., subprocess.CompletedProcess[str]] = field(default=subprocess.run, repr=False)
    name: str = NAME
    cacheable: bool = True

    def basis(self) -> str:
        return f"{NAME}:{self.command}"

    def _env(self) -> dict[str, str]:
        env = dict(self.ctx.environ)
        env[CHAIN_ENV] = ",".join((*running_chain(self.ctx.environ), self.profile))
        return env

    def fetch(self) -> Credentials:
        argv = shlex.split(self.command)
        try:
            done = self.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                env=self._env(), timeout=self.ctx.settings.mint_timeout, check=False,
            )
        except FileNotFoundError:
            raise ConfigError(
                f"credential_process of profile {self.profile} not found ({argv[0]}): fix the path"
            ) from None
        except subprocess.TimeoutExpired:
            raise UpstreamError(
                f"credential_process of profile {self.profile} did not finish in "
                f"{self.ctx.settings.mint_timeout} s: check it runs without a prompt"
            ) from None
        if done.returncode != 0:
            # The helper's own words, only through the scrubber: helpers print
            # passwords, tokens and keys when they fail.
            lines = [ln for ln in (done.stderr or "").splitlines() if ln.strip()]
            last = redact.scrub(lines[-1]) if lines else ""
            if done.returncode == EXIT_CONFIG and RECURSION in done.stderr:
                # An export further down refused to recurse: the loop is in the config.
                raise ConfigError(
                    f"{RECURSION} through profile {self.profile}: its credential_process leads "
                    "back to credhelper export; point it at the real helper"
                )
            raise UpstreamError(
                f"credential_process of profile {self.profile} exited {done.returncode}"
                f"{': ' + last if last else ''}: run it by hand to see why"
            )
        creds = self._parse(done.stdout)
        if creds.session_token is None:
            # Long-term keys: Claude Code needs a session token.
            return SessionTokenSource(self.profile, creds, self.ctx).fetch()
        return creds

    def _parse(self, stdout: str) -> Credentials:
        bad = UpstreamError(
            f"credential_process of profile {self.profile} printed no valid Version 1 "
            "credentials JSON: run it by hand to see why"
        )
        try:
            data: Any = json.loads(stdout)
        except ValueError:
            raise bad from None
        if not isinstance(data, dict) or data.get("Version") != 1:
            raise bad
        akid, secret = data.get("AccessKeyId"), data.get("SecretAccessKey")
        token, exp = data.get("SessionToken"), data.get("Expiration")
        if not (isinstance(akid, str) and akid and isinstance(secret, str) and secret):
            raise bad
        try:
            expiration = parse_time(exp) if exp else None
        except ValueError:
            raise bad from None
        if token and expiration is None:
            raise UpstreamError(
                f"credential_process of profile {self.profile} printed a session token "
                "without an Expiration: credhelper cannot tell when to refresh it; fix the helper"
            )
        return Credentials(akid, secret, token if isinstance(token, str) and token else None,
                           expiration, NAME)


def from_profile(profile: str, ctx: Context) -> ProcessSource | None:
    command = ctx.setting(profile, "credential_process")
    if not command:
        return None
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"credential_process of profile {profile} does not parse: {exc}") from None
    if not argv:
        raise ConfigError(f"credential_process of profile {profile} is empty: set a command")
    if _is_self(argv):
        raise ConfigError(
            f"credential_process of profile {profile} runs credhelper export itself: "
            "that would recurse; point it at the real helper"
        )
    return ProcessSource(profile, command, ctx)
