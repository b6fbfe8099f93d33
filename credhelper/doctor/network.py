"""Doctor checks that talk to AWS: credentials can be obtained, STS accepts
them, Bedrock answers in the region. Each runs in a thread joined with a total
deadline, over clients with one attempt and short timeouts: doctor never hangs."""

from __future__ import annotations

import os
import re
from typing import Any

import botocore.exceptions

from credhelper.claude_settings import BEARER
from credhelper.deadline import Deadline, DeadlineExceeded
from credhelper.doctor import Result, State
from credhelper.errors import (
    EXIT_BUG,
    EXIT_CONFIG,
    EXIT_UPSTREAM,
    CredhelperError,
    LoginRequired,
)

#: what Claude Code needs from Bedrock (its startup calls, contract §4)
BEDROCK_ACTIONS = (
    "bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream",
    "bedrock:ListInferenceProfiles", "bedrock:GetInferenceProfile",
    "bedrock:ListFoundationModels",
)
_NETWORK_ERRORS = (
    botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
)


def _clients(state: State) -> Any:
    from credhelper.sources.base import ClientFactory

    if state.clients is None:
        timeout = max(state.deadline / 2, 1)
        state.clients = ClientFactory(state.config, max_attempts=1, connect_timeout=timeout,
                                      read_timeout=timeout)
    return state.clients


def _keys_profile(state: State) -> str:
    """The end of the profile's source_profile chain: whose keys sign the first call."""
    current, seen = state.profile, set()
    while current not in seen:
        seen.add(current)
        nxt = state.config.get(current, "source_profile")
        if not nxt:
            break
        current = nxt
    return str(current)


def _code(message: str) -> str | None:
    m = re.search(r"failed: (\w+):", message)
    return m.group(1) if m else None


def credentials(state: State) -> Result:
    from credhelper.broker import Broker

    name = "credentials"
    p = state.profile
    if state.config is None or state.store is None:
        return Result(name, None, "credentials: skipped (needs the AWS config and the store)")
    broker = Broker(settings=state.settings, store=state.store, config=state.config,
                    clients=_clients(state), environ=state.environ)
    try:
        budget = Deadline(state.deadline * 2)
        state.creds = budget.call("credentials", lambda: broker.get(p, deadline=budget))
    except LoginRequired as exc:
        return Result(name, False, f"profile {p} needs a sign-in",
                      f"run credhelper login --profile {exc.profile}", exc.exit_code)
    except DeadlineExceeded as exc:
        return Result(name, False, f"getting credentials for profile {p} hung ({exc})",
                      "check the network, HTTPS_PROXY and AWS_ENDPOINT_URL_*", EXIT_UPSTREAM)
    except CredhelperError as exc:
        return _credential_failure(state, exc)
    left = int(state.creds.remaining(broker.now()) // 60)
    return Result(name, True, f"credentials for profile {p} ({left} min left)")


def _credential_failure(state: State, exc: CredhelperError) -> Result:
    name, p, code = "credentials", state.profile, _code(exc.message)
    keys = _keys_profile(state)
    replace = (f"replace the keys of profile {keys} (in the AWS credentials file, or with "
               f"credhelper keys add --profile {keys})")
    if code in ("InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId"):
        return Result(name, False, f"AWS does not know the access key of profile {keys} ({code})",
                      replace, exc.exit_code)
    if code == "SignatureDoesNotMatch":
        return Result(name, False, f"the secret key of profile {keys} is wrong ({code})",
                      replace, exc.exit_code)
    if code in ("AccessDenied", "AccessDeniedException"):
        role = state.config.get(p, "role_arn") or "the role"
        return Result(name, False, f"AssumeRole of {role} was denied ({code})",
                      f"let profile {keys}'s identity assume it: check the role's trust policy "
                      "and sts:AssumeRole in its permissions", exc.exit_code)
    title, _, fix = exc.message.rpartition(": ")
    return Result(name, False, title or exc.message, fix, exc.exit_code)


def _aws_failure(name: str, service: str, exc: BaseException, endpoint: str) -> tuple[str, str]:
    """(code or what happened, the endpoint) of a failed call, for a message."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown")), endpoint
    if isinstance(exc, DeadlineExceeded | botocore.exceptions.ReadTimeoutError):
        return "timeout", endpoint
    if isinstance(exc, _NETWORK_ERRORS):
        return "unreachable", endpoint
    return type(exc).__name__, endpoint


def sts(state: State) -> Result:
    name, p = "sts", state.profile
    if state.creds is None:
        return Result(name, None, "STS GetCallerIdentity: skipped (no credentials)")
    client = _clients(state).client("sts", p, state.creds)
    try:
        ident = Deadline(state.deadline).call("sts", client.get_caller_identity)
    except (DeadlineExceeded, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        code, url = _aws_failure(name, "sts", exc, client.meta.endpoint_url)
        drop = f"drop them with credhelper logout --profile {p}, then run credhelper doctor again"
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
            return Result(name, False, f"STS says the credentials of profile {p} expired ({code})",
                          f"check the clock (date -u), then {drop}", EXIT_UPSTREAM)
        if code in ("timeout", "unreachable"):
            return Result(name, False, f"cannot reach STS at {url} ({code})",
                          "check the network, HTTPS_PROXY and AWS_ENDPOINT_URL_STS",
                          EXIT_UPSTREAM)
        return Result(name, False, f"STS refused the credentials of profile {p} ({code})", drop,
                      EXIT_UPSTREAM)
    return Result(name, True, f"STS: credentials of profile {p} belong to {ident.get('Arn')}")


def bedrock(state: State) -> Result:
    name = "bedrock"
    if state.creds is None or state.region is None:
        return Result(name, None, "Bedrock: skipped (needs credentials and a region)")
    # botocore would sign with this key instead: the check is about credhelper's credentials
    bearer = os.environ.pop(BEARER, None)
    try:
        return _bedrock(state)
    finally:
        if bearer is not None:
            os.environ[BEARER] = bearer


def _bedrock(state: State) -> Result:
    name = "bedrock"
    try:
        client = _clients(state).client("bedrock", state.profile, state.creds, region=state.region)
    except botocore.exceptions.BotoCoreError as exc:
        return Result(name, False, f"no Bedrock client for region {state.region} ({exc})",
                      "check the region name", EXIT_CONFIG)
    url = client.meta.endpoint_url

    def call() -> str:
        try:
            client.list_inference_profiles(maxResults=1)
            return "ListInferenceProfiles"
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "AccessDenied" in code or code == "UnauthorizedOperation":
                raise
            client.list_foundation_models()
            return "ListFoundationModels"

    try:
        action = Deadline(state.deadline).call("bedrock", call)
    except (DeadlineExceeded, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        code, _ = _aws_failure(name, "bedrock", exc, url)
        if "AccessDenied" in code:
            return Result(name, False, f"Bedrock in {state.region} denied profile "
                          f"{state.profile} ({code})",
                          f"grant its role {', '.join(BEDROCK_ACTIONS)}", EXIT_UPSTREAM)
        if code in ("timeout", "unreachable"):
            return Result(name, False, f"cannot reach Bedrock in {state.region} at {url} ({code})",
                          "check the network, HTTPS_PROXY and AWS_ENDPOINT_URL_BEDROCK",
                          EXIT_UPSTREAM)
        return Result(name, False, f"Bedrock in {state.region} failed ({code})",
                      "see the AWS documentation for that error", EXIT_UPSTREAM)
    except Exception as exc:  # noqa: BLE001 - a check reports, it does not crash doctor
        return Result(name, False, f"Bedrock check failed ({type(exc).__name__})",
                      "rerun with --debug and report it", EXIT_BUG)
    return Result(name, True, f"Bedrock in {state.region} answers ({action})")
