"""IAM Identity Center: `sso_session` (or legacy `sso_start_url`) profiles with
`sso_account_id` / `sso_role_name` → GetRoleCredentials with the stored token.

The token comes from `login.tokens.Tokens`, which refreshes it silently with
the refresh token; only when that is impossible is a login required.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import botocore.exceptions

from credhelper.errors import ConfigError, LoginRequired
from credhelper.login.tokens import SsoSession, Tokens, sso_session_for
from credhelper.model import Credentials
from credhelper.sources.base import Context, upstream

NAME = "sso"


@dataclass
class SsoSource:
    profile: str
    session: SsoSession
    account_id: str
    role_name: str
    ctx: Context
    name: str = NAME
    cacheable: bool = True

    def basis(self) -> str:
        return f"{NAME}:{self.session.start_url}:{self.account_id}:{self.role_name}"

    def tokens(self) -> Tokens:
        return Tokens(self.ctx.store, self.ctx.clients, self.ctx.now,
                      lock_timeout=self.ctx.deadline.remaining())

    def fetch(self) -> Credentials:
        tokens = self.tokens()
        token = tokens.access_token(self.session, self.profile)
        creds = self._role_credentials(token)
        if creds is None:
            # The service no longer takes this access token (signed out elsewhere,
            # revoked): never use it again, so that `login` does not call it valid;
            # one refresh (it is expired now), then a login.
            tokens.reject(self.session, token)
            token = tokens.access_token(self.session, self.profile)
            creds = self._role_credentials(token)
        if creds is None:
            tokens.reject(self.session, token)
            raise LoginRequired(self.profile, "IAM Identity Center rejected the session")
        return creds

    def _role_credentials(self, token: str) -> Credentials | None:
        """Role credentials, or None when the access token is refused."""
        sso = self.ctx.clients.client("sso", None, None, region=self.session.region)
        with upstream("GetRoleCredentials", self.profile, secrets=(token,)):
            try:
                out = sso.get_role_credentials(
                    roleName=self.role_name, accountId=self.account_id, accessToken=token
                )["roleCredentials"]
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "UnauthorizedException":
                    return None
                raise
        return Credentials(
            access_key_id=out["accessKeyId"], secret_access_key=out["secretAccessKey"],
            session_token=out["sessionToken"],
            expiration=datetime.fromtimestamp(out["expiration"] / 1000, UTC), source=NAME,
        )


def from_profile(profile: str, ctx: Context) -> SsoSource | None:
    session = sso_session_for(profile, ctx.config)
    if session is None:
        return None
    account, role = ctx.setting(profile, "sso_account_id"), ctx.setting(profile, "sso_role_name")
    if not account or not role:
        raise ConfigError(f"profile {profile} needs sso_account_id and sso_role_name: add them")
    return SsoSource(profile, session, account, role, ctx)
