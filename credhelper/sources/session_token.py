"""Long-term keys (from the store, else the AWS files) → GetSessionToken.

Claude Code rejects credentials without a session token, and long-term keys
should not leave the machine's secret store anyway: exports are always
GetSessionToken results. The same keys, raw, are the base of role chains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from credhelper.errors import CorruptItem, LoginRequired
from credhelper.model import Credentials
from credhelper.sources.base import Context, upstream
from credhelper.store import item

NAME = "session-token"
DEFAULT_DURATION = 3600


def stored_keys(profile: str, ctx: Context) -> Credentials | None:
    key = item("keys", profile)
    raw = ctx.store.get(key)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return Credentials(data["AccessKeyId"], data["SecretAccessKey"], source="store")
    except (ValueError, KeyError, TypeError):
        raise CorruptItem(
            f"store item {key} is unreadable: store the keys again with "
            f"credhelper keys add --profile {profile}"
        ) from None


def file_keys(profile: str, ctx: Context) -> Credentials | None:
    akid = ctx.setting(profile, "aws_access_key_id")
    secret = ctx.setting(profile, "aws_secret_access_key")
    if not (akid and secret):
        return None
    return Credentials(akid, secret, ctx.setting(profile, "aws_session_token"), source="file")


def mfa_session(keys_profile: str, serial: str, ctx: Context) -> Credentials | None:
    """The MFA session `credhelper login` minted from `keys_profile`'s keys, if it
    is for `serial` and still has more than the serving floor left."""
    from credhelper.broker import SERVE_FLOOR

    raw = ctx.store.get(item("mfa-session", keys_profile))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        creds = Credentials.from_record(data["credentials"])
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: the next login overwrites it
    if data.get("serial") != serial or creds.remaining(ctx.now()) <= SERVE_FLOOR:
        return None
    return creds


def static_keys(profile: str, ctx: Context) -> Credentials | None:
    """Keys of `profile`: the store first (where `keys add` puts them), then the files."""
    return stored_keys(profile, ctx) or file_keys(profile, ctx)


@dataclass
class SessionTokenSource:
    profile: str
    keys: Credentials
    ctx: Context
    name: str = NAME
    cacheable: bool = True

    def basis(self) -> str:
        return f"{NAME}:{self.keys.access_key_id}:{self.ctx.setting(self.profile, 'mfa_serial')}"

    def fetch(self) -> Credentials:
        serial = self.ctx.setting(self.profile, "mfa_serial")
        if serial:
            # The MFA session `login` minted is itself a GetSessionToken result.
            # A code is needed otherwise; `login` asks for it. Export never prompts.
            session = mfa_session(self.profile, serial, self.ctx)
            if session is None:
                raise LoginRequired(self.profile, "MFA session required")
            return session
        duration = self.ctx.int_setting(self.profile, "duration_seconds") or DEFAULT_DURATION
        sts = self.ctx.clients.client("sts", self.profile, self.keys)
        with upstream(
            "GetSessionToken", self.profile, secrets=self.keys.secrets(),
            remedy="the keys were rejected: store valid ones with "
            f"credhelper keys add --profile {self.profile}",
        ):
            out = sts.get_session_token(DurationSeconds=duration)["Credentials"]
        return from_sts(out, NAME)


@dataclass
class PassThroughSource:
    """Temporary keys already in the files: served as they are, never cached.
    Their expiry is unknown; an hour from now makes Claude Code ask again hourly."""

    profile: str
    keys: Credentials
    ctx: Context
    name: str = "static-session"
    cacheable: bool = False

    def basis(self) -> str:
        return f"static-session:{self.keys.access_key_id}"

    def fetch(self) -> Credentials:
        exp = self.ctx.now() + timedelta(hours=1)
        return Credentials(
            self.keys.access_key_id, self.keys.secret_access_key, self.keys.session_token,
            exp, self.name,
        )


def from_sts(out: dict[str, object], source: str) -> Credentials:
    """An STS `Credentials` structure as botocore parses it."""
    from credhelper.model import parse_time

    return Credentials(
        access_key_id=str(out["AccessKeyId"]),
        secret_access_key=str(out["SecretAccessKey"]),
        session_token=str(out["SessionToken"]),
        expiration=parse_time(out["Expiration"]),
        source=source,
    )


def from_profile(profile: str, ctx: Context) -> SessionTokenSource | PassThroughSource | None:
    keys = static_keys(profile, ctx)
    if keys is None:
        return None
    if keys.session_token:
        return PassThroughSource(profile, keys, ctx)
    return SessionTokenSource(profile, keys, ctx)
