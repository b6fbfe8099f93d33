"""A profile's *basis* (what its credentials are minted from), computed as
`credhelper.sources.resolve(profile, ctx).basis()` computes it, without the
sources (they import botocore).

Each branch below mirrors one source module's `from_profile` and `basis()`, in
`sources._FINDERS` order: web identity, assume-role, SSO, credential_process,
session-token (keys in the store, then in the files), the environment. Where
the full path would raise (a config error) or hand out uncached credentials
(environment or file session tokens), the answer is None: the lean path
declines and the full path decides. tests/test_lean.py checks that both agree
over generated configs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Mapping

from credhelper.lean.awsconfig import LeanConfig

#: credhelper.sources.assume_role's checks (its _ROLE_ARN and _check_role_settings)
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")
SUPPORTED_CREDENTIAL_SOURCES = ("Environment",)


class Decline(Exception):
    """The full path must decide (it raises, or it does not cache)."""


def _int_setting(config: LeanConfig, profile: str, key: str) -> int | None:
    value = config.get(profile, key)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise Decline(key) from None


def _web_identity(profile: str, config: LeanConfig) -> str | None:
    token_file = config.get(profile, "web_identity_token_file")
    if not token_file:
        return None
    role_arn = config.get(profile, "role_arn")
    if not role_arn:
        raise Decline("no role_arn")
    return f"web-identity:{role_arn}:{token_file}"


def _assume_role(profile: str, config: LeanConfig) -> str | None:
    s = config.get
    role_arn = s(profile, "role_arn")
    if not role_arn or s(profile, "web_identity_token_file"):
        return None
    src, cs = s(profile, "source_profile"), s(profile, "credential_source")
    if (src and cs) or (not src and not cs) or (cs and cs not in SUPPORTED_CREDENTIAL_SOURCES):
        raise Decline("role source")
    if not _ROLE_ARN.match(role_arn):
        raise Decline("role_arn")
    duration = _int_setting(config, profile, "duration_seconds")
    if duration is not None and not 900 <= duration <= 43200:
        raise Decline("duration_seconds")
    name = s(profile, "role_session_name")
    if name is not None and not _SESSION_NAME.fullmatch(name):
        raise Decline("role_session_name")
    external_id = s(profile, "external_id")
    if external_id is not None and not _EXTERNAL_ID.fullmatch(external_id):
        raise Decline("external_id")
    parts = ("assume-role", role_arn, external_id, src, cs, s(profile, "mfa_serial"))
    return ":".join(str(x) for x in parts)


def _sso(profile: str, config: LeanConfig) -> str | None:
    """credhelper.login.tokens.sso_session_for, then sources.sso.from_profile."""
    name = config.get(profile, "sso_session")
    if name:
        section = config.sso_sessions.get(name)
        if not isinstance(section, dict):
            raise Decline("sso_session")
        url, region = section.get("sso_start_url"), section.get("sso_region")
        if not url or not region or not isinstance(url, str):
            raise Decline("sso-session section")
        start_url = url
    else:
        legacy = config.get(profile, "sso_start_url")
        if not legacy:
            return None
        if not config.get(profile, "sso_region"):
            raise Decline("sso_region")
        start_url = legacy
    account, role = config.get(profile, "sso_account_id"), config.get(profile, "sso_role_name")
    if not account or not role:
        raise Decline("sso account")
    return f"sso:{start_url}:{account}:{role}"


def _is_self(argv: list[str]) -> bool:
    """credhelper.sources.process._is_self."""
    names = [os.path.basename(a) for a in argv]
    runs_us = (bool(names) and names[0] == "credhelper") or (
        "-m" in argv and argv.index("-m") + 1 < len(argv) and argv[argv.index("-m") + 1] == "credhelper"
    )
    return runs_us and "export" in argv


def _process(profile: str, config: LeanConfig) -> str | None:
    command = config.get(profile, "credential_process")
    if not command:
        return None
    try:
        argv = shlex.split(command)
    except ValueError:
        raise Decline("credential_process") from None
    if not argv or _is_self(argv):
        raise Decline("credential_process")
    return f"process:{command}"


StoreGet = Callable[[str], "str | None"]


def _stored_key_id(profile: str, store_get: StoreGet) -> str | None:
    """The key id of `credhelper keys add` keys (session_token.stored_keys)."""
    raw = store_get(f"v1/keys/{profile}")
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        akid, secret = data["AccessKeyId"], data["SecretAccessKey"]
    except (ValueError, KeyError, TypeError):
        raise Decline("stored keys") from None
    if not (isinstance(akid, str) and akid and isinstance(secret, str) and secret):
        raise Decline("stored keys")
    return akid


def _session_token(profile: str, config: LeanConfig, store_get: StoreGet) -> str | None:
    akid = _stored_key_id(profile, store_get)
    if akid is None:
        akid = config.get(profile, "aws_access_key_id")
        if not (akid and config.get(profile, "aws_secret_access_key")):
            return None
        if config.get(profile, "aws_session_token"):
            raise Decline("session token in the files: not cached")
    return f"session-token:{akid}:{config.get(profile, 'mfa_serial')}"


def _env(profile: str, config: LeanConfig, environ: Mapping[str, str]) -> str | None:
    if profile != "default" or config.profile(profile) is not None:
        return None
    akid = environ.get("AWS_ACCESS_KEY_ID", "").strip()
    if not (akid and environ.get("AWS_SECRET_ACCESS_KEY", "").strip()):
        return None
    if environ.get("AWS_SESSION_TOKEN", "").strip():
        raise Decline("environment session: not cached")
    return f"session-token:{akid}:{config.get(profile, 'mfa_serial')}"


def basis(profile: str, config: LeanConfig, store_get: StoreGet, environ: Mapping[str, str]) -> str | None:
    """The basis the full path computes for `profile`, or None: decline."""
    try:
        return (
            _web_identity(profile, config) or _assume_role(profile, config) or _sso(profile, config)
            or _process(profile, config) or _session_token(profile, config, store_get)
            or _env(profile, config, environ)
        )
    except Decline:
        return None
