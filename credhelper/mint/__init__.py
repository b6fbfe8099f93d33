"""`credhelper mint`: short-lived credentials from a CI job's own identity.

One-shot and self-contained: no daemon, no store, no keyring, no settings
file, nothing written to disk except `$GITHUB_ENV` for `github-env`; never
prompts. The identity (`identity.discover`) is an OIDC ID token (GitHub
Actions, GitLab CI, a token file) → AssumeRoleWithWebIdentity, or ambient AWS
credentials → AssumeRole; everything within one total deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from credhelper.deadline import Deadline
from credhelper.errors import ConfigError, UsageError
from credhelper.mint import identity as identity_mod
from credhelper.mint import sts
from credhelper.mint.identity import Identity, Wanted
from credhelper.mint.session import session_name
from credhelper.mint.sts import RoleRequest
from credhelper.model import Credentials

__all__ = ["Minted", "RoleRequest", "Wanted", "mint", "read_policy", "request", "role_arn_ok"]


@dataclass(frozen=True)
class Minted:
    credentials: Credentials
    region: str
    identity: Identity
    session_name: str


def role_arn_ok(arn: str) -> bool:
    parts = arn.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn" and parts[2] == "iam" and parts[5].startswith("role/")


def read_policy(path: str) -> str:
    """A session policy document from a file, checked to be JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        json.loads(text)
    except OSError as exc:
        raise ConfigError(f"cannot read the policy file {path} ({exc.strerror}): fix the path") from None
    except ValueError as exc:
        raise ConfigError(f"the policy file {path} is not JSON ({exc}): fix it") from None
    return text


def parse_tags(tags: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for tag in tags:
        key, eq, value = tag.partition("=")
        if not eq or not key:
            raise UsageError(f"--tag {tag!r} is not KEY=VALUE: write it as --tag team=ml")
        out.append((key, value))
    return tuple(out)


def request(
    role_arn: str, *, duration: int | None = None, session: str | None = None,
    policy_arns: tuple[str, ...] = (), policy_file: str | None = None, tags: tuple[str, ...] = (),
    region: str | None = None,
) -> RoleRequest:
    """The command line's role request, checked before anything is asked of CI or AWS."""
    if not role_arn_ok(role_arn):
        raise UsageError(
            f"--role-arn {role_arn!r} is not an IAM role ARN: use arn:aws:iam::ACCOUNT:role/NAME"
        )
    return RoleRequest(
        role_arn=role_arn, session_name=session or "", duration=duration,
        policy_arns=policy_arns, policy=read_policy(policy_file) if policy_file else None,
        tags=parse_tags(tags), region=region or None,
    )


def mint(req: RoleRequest, wanted: Wanted, environ: Mapping[str, str], deadline: Deadline) -> Minted:
    found = identity_mod.discover(environ, wanted, deadline)
    if req.tags and found.kind != "ambient":
        raise UsageError(
            f"--tag needs ambient credentials (AssumeRole); with {found.where} the session "
            "tags come from the token's claims: drop --tag"
        )
    req = replace(req, session_name=session_name(req.session_name or None, environ, time.time()))
    # AWS_REGION is what the CLI v2 and most SDKs read; botocore reads AWS_DEFAULT_REGION
    region = req.region or environ.get("AWS_REGION") or sts.clients(deadline).region(None)
    req = replace(req, region=region)
    if found.kind == "ambient":
        creds = sts.with_ambient(found, req, deadline)
    else:
        creds = sts.with_web_identity(found, req, deadline)
    return Minted(credentials=creds, region=region, identity=found, session_name=req.session_name)
