"""The child of `credhelper exec`: its environment, its start, the signals it
is sent, and its exit status (which `exec` returns: 128+N for a death by signal N).

Signals: SIGINT, SIGTERM and SIGHUP sent to `exec` are forwarded to the child.
The child shares the terminal's process group, so a Ctrl-C (or a hangup)
reaches it directly from the kernel; those are not sent a second time (Linux
tells them apart by `si_code`). `exec` never dies of them before the child.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence

from credhelper.errors import UsageError
from credhelper.model import Credentials, iso_z

#: set by `exec` for the container provider
FULL_URI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
AUTH_TOKEN = "AWS_CONTAINER_AUTHORIZATION_TOKEN"  # noqa: S105 - a variable name
#: secrets: never inherited by the child (with --env, replaced by the profile's)
KEY_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
            "AWS_CREDENTIAL_EXPIRATION")
#: would make the child's SDK pick another provider than the endpoint
SHADOWING_VARS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                  "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", FULL_URI, AUTH_TOKEN,
                  "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME")
#: profile settings an SDK turns into credentials before it tries the container provider
CREDENTIAL_SETTINGS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "role_arn",
                       "source_profile", "credential_source", "credential_process", "sso_session",
                       "sso_start_url", "sso_account_id", "web_identity_token_file", "login_session")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Python ignores these; a child gets them back at their defaults (as subprocess does)
RESET = tuple(getattr(signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, n))
#: si_code of a signal the kernel generated (a terminal's Ctrl-C or hangup)
SI_KERNEL = 0x80


def child_env(
    environ: Mapping[str, str], *, region: str | None, endpoint: tuple[str, str] | None = None,
    creds: Credentials | None = None,
) -> tuple[dict[str, str], list[str]]:
    """(the child's environment, the inherited secret variables it lost).

    `endpoint` (url, token) for the container provider, or `creds` for --env."""
    env = {k: v for k, v in environ.items() if k not in KEY_VARS and k not in SHADOWING_VARS}
    dropped = [k for k in KEY_VARS if environ.get(k)]
    if endpoint is not None:
        env[FULL_URI], env[AUTH_TOKEN] = endpoint
    if creds is not None:
        env["AWS_ACCESS_KEY_ID"] = creds.access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = creds.secret_access_key
        if creds.session_token:
            env["AWS_SESSION_TOKEN"] = creds.session_token
        if creds.expiration is not None:
            env["AWS_CREDENTIAL_EXPIRATION"] = iso_z(creds.expiration)
    if region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
    return env, dropped


def shadowing_settings(default_profile: Mapping[str, object] | None) -> list[str]:
    """The credential settings of the `[default]` profile (the child's SDK reads
    that profile before it asks the container endpoint)."""
    return [k for k in CREDENTIAL_SETTINGS if (default_profile or {}).get(k)]


def resolve(command: Sequence[str], env: Mapping[str, str]) -> str:
    """The program to run, looked up in the child's PATH as a shell would."""
    if not command:
        raise UsageError("no command to run: credhelper exec --profile P -- COMMAND [ARGS...]")
    name = command[0]
    found = name if os.sep in name else shutil.which(name, path=env.get("PATH", os.defpath))
    if not found or not os.path.exists(found):
        raise CommandError(f"command not found: {name}: check its name and PATH", 127)
    if os.path.isdir(found) or not os.access(found, os.X_OK):
        raise CommandError(f"cannot run {name}: it is not an executable file; check its permissions", 126)
    return found


class CommandError(Exception):
    """The command could not be started (exit 127 not found, 126 not executable)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def status_of(wait_status: int) -> int:
    """The exit status `exec` returns for the child's wait status."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.waitstatus_to_exitcode(wait_status)


def block_signals() -> None:
    """Called before any thread starts (threads inherit the mask): the signals
    `exec` forwards, and SIGCHLD, wait for `run` to take them (Linux)."""
    if hasattr(signal, "sigwaitinfo"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})


def run(program: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run the child to its end; its exit status (128+N for signal N)."""
    try:
        pid = os.posix_spawn(program, list(argv), dict(env), setsigmask=(), setsigdef=RESET)
    except OSError as exc:
        raise CommandError(f"cannot run {argv[0]}: {exc.strerror}; check the command", 126) from None
    if hasattr(signal, "sigwaitinfo"):
        return _wait_linux(pid)
    return _wait_portable(pid)


def _wait_linux(pid: int) -> int:
    wanted = {*FORWARDED, signal.SIGCHLD}
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return status_of(status)
        info = signal.sigwaitinfo(wanted)
        if info.si_signo != signal.SIGCHLD and info.si_code != SI_KERNEL:
            _forward(pid, info.si_signo)


def _wait_portable(pid: int) -> int:
    """Without sigwaitinfo (macOS): handlers forward what is not the terminal's."""

    def forward(signo: int, _frame: object) -> None:
        if signo == signal.SIGINT and _terminal_foreground():
            return  # the terminal sent it to the child's process group as well
        _forward(pid, signo)

    previous = [(s, signal.signal(s, forward)) for s in FORWARDED]
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                return status_of(status)
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
    finally:
        _restore(previous)


def _restore(previous: Iterable[tuple[signal.Signals, object]]) -> None:
    for signo, handler in previous:
        signal.signal(signo, handler)  # type: ignore[arg-type]


def _terminal_foreground() -> bool:
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def _forward(pid: int, signo: int) -> None:
    try:
        os.kill(pid, signo)
    except ProcessLookupError:
        pass  # it has just exited: the next wait says so
