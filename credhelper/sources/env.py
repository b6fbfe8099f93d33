"""Credentials from the environment (`AWS_ACCESS_KEY_ID`…), as botocore reads them.

They answer for the `default` profile when no file defines it (the CI case),
and as `credential_source = Environment` for roles. Long-term keys are turned
into a session (GetSessionToken); temporary ones pass through uncached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from credhelper.model import Credentials, parse_time
from credhelper.sources.base import Context
from credhelper.sources.session_token import SessionTokenSource

NAME = "env"


def env_keys(environ: Mapping[str, str]) -> Credentials | None:
    akid = environ.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if not (akid and secret):
        return None
    token = environ.get("AWS_SESSION_TOKEN", "").strip() or None
    exp_text = environ.get("AWS_CREDENTIAL_EXPIRATION", "").strip()
    try:
        exp = parse_time(exp_text) if exp_text else None
    except ValueError:
        exp = None
    return Credentials(akid, secret, token, exp, NAME)


@dataclass
class EnvSource:
    profile: str
    keys: Credentials
    ctx: Context
    name: str = NAME
    cacheable: bool = False

    def basis(self) -> str:
        return f"{NAME}:{self.keys.access_key_id}"

    def fetch(self) -> Credentials:
        exp = self.keys.expiration or self.ctx.now() + timedelta(hours=1)
        return Credentials(
            self.keys.access_key_id, self.keys.secret_access_key, self.keys.session_token, exp, NAME
        )


def from_profile(profile: str, ctx: Context) -> EnvSource | SessionTokenSource | None:
    if profile != "default" or ctx.config.profile(profile) is not None:
        return None
    keys = env_keys(ctx.environ)
    if keys is None:
        return None
    if keys.session_token:
        return EnvSource(profile, keys, ctx)
    return SessionTokenSource(profile, keys, ctx)
