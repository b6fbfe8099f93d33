"""`credential_process`: run an existing helper and cache what it prints.

The AWS CLI and SDKs run it on every call (aws/aws-cli#5585); wrapped here,
it runs once per credential lifetime. A helper that calls `credhelper export`
again (directly, or anywhere down a chain) is a configuration error, caught
statically from the command line and at run time through `CHAIN_ENV`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
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


#: pid -> profile of the helpers running in this process (the daemon's recursion guard)
RUNNING: dict[int, str] = {}


def run_helper(
    argv: list[str], *, env: dict[str, str], timeout: float, profile: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run a helper with no stdin; on timeout kill its whole process group
    (a shell wrapper's children too), so nothing it started outlives the budget."""
    with subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, start_new_session=True,
    ) as proc:
        RUNNING[proc.pid] = profile
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=1)  # reap it; pipes a grandchild kept open are dropped
            raise
        finally:
            RUNNING.pop(proc.pid, None)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@dataclass
class ProcessSource:
    profile: str
    command: str
    ctx: Context
    run: Callable[..., subprocess.CompletedProcess[str]] = field(default=run_helper, repr=False)
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
        budget = self.ctx.deadline.remaining()
        try:
            done = self.run(argv, env=self._env(), timeout=budget, profile=self.profile)
        except FileNotFoundError:
            raise ConfigError(
                f"credential_process of profile {self.profile} not found ({argv[0]}): fix the path"
            ) from None
        except subprocess.TimeoutExpired:
            raise UpstreamError(
                f"credential_process of profile {self.profile} did not finish within the "
                f"{self.ctx.deadline.budget:.0f} s budget: check it runs without a prompt, "
                "or raise export_timeout"
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
