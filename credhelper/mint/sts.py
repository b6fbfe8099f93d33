"""The STS calls: AssumeRoleWithWebIdentity for a token, AssumeRole for
ambient credentials. botocore's standard retry mode backs off on throttling;
the whole call is bounded by the mint's deadline. AWS errors become one line
through `upstream()`, with a hint where the fix is in IAM, not in credhelper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from credhelper.config import AwsConfig
from credhelper.deadline import Deadline, DeadlineExceeded
from credhelper.errors import ConfigError, UpstreamError
from credhelper.mint.claims import claims, presented
from credhelper.mint.identity import ROLE_METHODS, Identity
from credhelper.model import Credentials
from credhelper.sources.base import ClientFactory, scrub, upstream
from credhelper.sources.session_token import from_sts

#: STS caps a session minted by a role session (role chaining) at one hour
CHAIN_LIMIT = 3600
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class RoleRequest:
    role_arn: str
    session_name: str
    duration: int | None = None
    policy_arns: tuple[str, ...] = ()
    policy: str | None = None
    #: session tags: AssumeRole only (web identity tags come from the token's claims)
    tags: tuple[tuple[str, str], ...] = ()
    region: str | None = None


def clients(deadline: Deadline) -> ClientFactory:
    """No profile, no files: region and endpoint from the environment."""
    return ClientFactory(
        AwsConfig(profiles={}, sso_sessions={}), max_attempts=MAX_ATTEMPTS,
        connect_timeout=deadline.sub(0.5, 5), read_timeout=deadline.sub(0.8, 15),
    )


def _params(req: RoleRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"RoleArn": req.role_arn, "RoleSessionName": req.session_name}
    if req.duration:
        params["DurationSeconds"] = req.duration
    if req.policy_arns:
        params["PolicyArns"] = [{"arn": arn} for arn in req.policy_arns]
    if req.policy:
        params["Policy"] = req.policy
    return params


def _call(
    action: str, req: RoleRequest, fn: Callable[[], Any], deadline: Deadline, *,
    secrets: tuple[str, ...], hints: dict[str, str], remedy: str = "",
) -> Any:
    """`fn()` within the deadline; an AWS error with a hint becomes one line
    ending with that hint (the fix is in IAM), any other through `upstream()`."""

    def attempt() -> Any:
        try:
            return fn()
        except botocore.exceptions.ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code not in hints:
                raise
            text = scrub(str(err.get("Message", "")), secrets)
            raise UpstreamError(f"{action} of {req.role_arn} failed: {code}: {text}: {hints[code]}") from None

    try:
        with upstream(action, req.role_arn, remedy=remedy, secrets=secrets):
            return deadline.call(action, attempt)
    except DeadlineExceeded as exc:
        raise UpstreamError(
            f"{exc}: check the network and AWS_ENDPOINT_URL_STS, or raise --timeout"
        ) from None


def with_web_identity(identity: Identity, req: RoleRequest, deadline: Deadline) -> Credentials:
    token = identity.token or ""
    seen = claims(token)
    shown = presented(seen)
    issuer = str(seen.get("iss", "the token's issuer"))[:200]
    hints = {
        "AccessDenied": (
            f"the role's trust policy does not accept the token from {identity.where}, which "
            f"presented {shown}: allow that sub and aud in the trust policy of {req.role_arn}"
        ),
        "InvalidIdentityToken": (
            f"the token from {identity.where} ({shown}) is not trusted by the role's account: "
            f"create an IAM OIDC identity provider for {issuer} there with the token's aud as a "
            "client ID, or pass --audience to match the provider's"
        ),
    }
    sts = clients(deadline).client("sts", None, None, req.region)
    params = {**_params(req), "WebIdentityToken": token}
    out = _call(
        "AssumeRoleWithWebIdentity", req, lambda: sts.assume_role_with_web_identity(**params),
        deadline, secrets=(token,), hints=hints,
        remedy=f"the ID token from {identity.where} has expired or is invalid: mint a fresh one",
    )
    return from_sts(out["Credentials"], f"mint:web-identity:{identity.kind}")


def _is_role_session(identity: Identity, sts: Any, req: RoleRequest, deadline: Deadline) -> bool:
    creds = identity.credentials
    if creds is None or not creds.session_token:
        return False
    if identity.method in ROLE_METHODS:
        return True
    out = _call("GetCallerIdentity", req, sts.get_caller_identity, deadline,
                secrets=creds.secrets(), hints={})
    return ":assumed-role/" in str(out.get("Arn", ""))


def with_ambient(identity: Identity, req: RoleRequest, deadline: Deadline) -> Credentials:
    creds = identity.credentials
    assert creds is not None
    sts = clients(deadline).client("sts", None, creds, req.region)
    if req.duration and req.duration > CHAIN_LIMIT and _is_role_session(identity, sts, req, deadline):
        raise ConfigError(
            f"--duration {req.duration} is more than the {CHAIN_LIMIT} s STS allows when a role "
            f"session assumes a role ({identity.where} are a role session): "
            f"use --duration {CHAIN_LIMIT} or less"
        )
    params = _params(req)
    if req.tags:
        params["Tags"] = [{"Key": k, "Value": v} for k, v in req.tags]
    hints = {
        "AccessDenied": (
            f"{identity.where} may not assume {req.role_arn}: allow their principal in the "
            "role's trust policy (and sts:TagSession when passing --tag)"
        ),
    }
    out = _call(
        "AssumeRole", req, lambda: sts.assume_role(**params), deadline,
        secrets=creds.secrets(), hints=hints,
        remedy=f"{identity.where} were rejected: renew them",
    )
    return from_sts(out["Credentials"], f"mint:{identity.kind}")
