"""Which identity the CI job has: an OIDC ID token, or ambient AWS credentials.

In this order unless told (`--identity`, `--token-env`, `--token-file`):
1. GitHub Actions: an ID token from the runner's endpoint;
2. GitLab CI: an `id_tokens:` variable (`--token-env`, else `AWS_ID_TOKEN`,
   `GITLAB_OIDC_TOKEN`);
3. a token file (`--token-file`, else `AWS_WEB_IDENTITY_TOKEN_FILE`: EKS and
   Kubernetes projected tokens);
4. ambient credentials: botocore's default chain (environment, files,
   container and instance roles).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions
import botocore.session

from credhelper.deadline import Deadline, DeadlineExceeded
from credhelper.errors import ConfigError, UpstreamError, UsageError
from credhelper.mint import github
from credhelper.model import Credentials
from credhelper.sources.base import scrub

KINDS = ("auto", "github", "env", "file", "ambient")
DEFAULT_TOKEN_ENVS = ("AWS_ID_TOKEN", "GITLAB_OIDC_TOKEN")
TOKEN_FILE_VAR = "AWS_WEB_IDENTITY_TOKEN_FILE"  # noqa: S105 - a variable name
#: botocore credential methods that are role sessions: AssumeRole from them is a chain
ROLE_METHODS = frozenset({
    "assume-role", "assume-role-with-web-identity", "iam-role", "container-role", "sso",
})


@dataclass(frozen=True)
class Identity:
    kind: str
    #: where it came from, for messages: "GitHub Actions OIDC", "$AWS_ID_TOKEN"…
    where: str
    token: str | None = field(default=None, repr=False)
    credentials: Credentials | None = None
    #: botocore's name for how it found ambient credentials ("env", "iam-role"…)
    method: str = ""


@dataclass(frozen=True)
class Wanted:
    """What the command line asked for."""

    kind: str = "auto"
    token_env: str | None = None
    token_file: str | None = None
    audience: str = github.DEFAULT_AUDIENCE


def _kind(wanted: Wanted) -> str:
    told = {k for k, given in (("env", wanted.token_env), ("file", wanted.token_file)) if given}
    if wanted.kind != "auto":
        told.add(wanted.kind)
    if len(told) > 1:
        raise UsageError(
            f"conflicting identities asked for ({', '.join(sorted(told))}): keep one of "
            "--identity, --token-env, --token-file"
        )
    return told.pop() if told else "auto"


def _github(environ: Mapping[str, str], wanted: Wanted, deadline: Deadline) -> Identity | None:
    url, request_token = environ.get(github.URL_VAR), environ.get(github.TOKEN_VAR)
    if not (url and request_token):
        return None
    token = github.fetch_id_token(url, request_token, wanted.audience, deadline)
    return Identity("github", "GitHub Actions OIDC", token=token)


def _env(environ: Mapping[str, str], names: tuple[str, ...]) -> Identity | None:
    for name in names:
        token = environ.get(name, "").strip()
        if token:
            return Identity("env", f"${name}", token=token)
    return None


def _file(path: str) -> Identity:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read(1 << 20).strip()
    except (OSError, UnicodeError) as exc:
        raise ConfigError(
            f"cannot read the token file {path} ({getattr(exc, 'strerror', None) or exc}): fix the path"
        ) from None
    if not token:
        raise ConfigError(f"the token file {path} is empty: check what writes it")
    return Identity("file", f"token file {path}", token=token)


def _ambient(deadline: Deadline) -> Identity | None:
    def resolve() -> Any:
        found = botocore.session.Session().get_credentials()
        return (found.get_frozen_credentials(), found.method) if found is not None else None

    try:
        got = deadline.call("looking for ambient AWS credentials", resolve)
    except DeadlineExceeded as exc:
        raise UpstreamError(f"{exc}: check the instance/container metadata endpoint") from None
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigError(f"ambient AWS credentials: {exc}: fix or unset AWS_PROFILE") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise UpstreamError(
            f"ambient AWS credentials could not be loaded: {scrub(str(exc))}: fix them"
        ) from None
    if got is None:
        return None
    frozen, method = got
    if not (frozen.access_key and frozen.secret_key):
        return None
    creds = Credentials(frozen.access_key, frozen.secret_key, frozen.token or None, source=method)
    return Identity("ambient", f"ambient AWS credentials ({method})", credentials=creds, method=method)


def _nothing(environ: Mapping[str, str], kind: str, wanted: Wanted) -> ConfigError:
    names = (wanted.token_env,) if wanted.token_env else DEFAULT_TOKEN_ENVS
    looked = {
        "github": f"a GitHub Actions ID token (${github.URL_VAR})",
        "env": " or ".join(f"${n}" for n in names),
        "file": f"${TOKEN_FILE_VAR}",
        "ambient": "ambient AWS credentials (environment, ~/.aws, container or instance role)",
    }
    searched = list(looked) if kind == "auto" else [kind]
    what = ", ".join(looked[k] for k in searched)
    if environ.get("GITHUB_ACTIONS") == "true" and "github" in searched:
        fix = f"{github.PERMISSION_FIX} (the runner sets ${github.URL_VAR} only then)"
    elif kind == "env":
        fix = "define it under `id_tokens:` in .gitlab-ci.yml (aud: sts.amazonaws.com)"
    else:
        fix = ("on GitHub give the job `permissions: id-token: write`; on GitLab define "
               "`id_tokens: AWS_ID_TOKEN`; or pass --token-file, or provide AWS credentials")
    return ConfigError(f"no CI identity found: looked for {what}: {fix}")


def discover(environ: Mapping[str, str], wanted: Wanted, deadline: Deadline) -> Identity:
    """The first identity found, in the order above; ConfigError (3) if none."""
    kind = _kind(wanted)
    found: Identity | None = None
    if kind in ("auto", "github"):
        found = _github(environ, wanted, deadline)
    if found is None and kind in ("auto", "env"):
        names = (wanted.token_env,) if wanted.token_env else DEFAULT_TOKEN_ENVS
        found = _env(environ, names)
    if found is None and kind in ("auto", "file"):
        path = wanted.token_file or environ.get(TOKEN_FILE_VAR)
        if path:
            found = _file(path)
    if found is None and kind in ("auto", "ambient"):
        found = _ambient(deadline)
    if found is None:
        raise _nothing(environ, kind, wanted)
    return found
