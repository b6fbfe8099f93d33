"""`role_arn` + `web_identity_token_file` → AssumeRoleWithWebIdentity (unsigned)."""

from __future__ import annotations

from dataclasses import dataclass

from credhelper.errors import ConfigError
from credhelper.model import Credentials
from credhelper.sources.base import Context, upstream
from credhelper.sources.session_token import from_sts

NAME = "web-identity"


@dataclass
class WebIdentitySource:
    profile: str
    role_arn: str
    token_file: str
    ctx: Context
    name: str = NAME
    cacheable: bool = True

    def basis(self) -> str:
        return f"{NAME}:{self.role_arn}:{self.token_file}"

    def _token(self) -> str:
        try:
            with open(self.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read web_identity_token_file of profile {self.profile} "
                f"({self.token_file}: {exc.strerror}): fix the path"
            ) from None
        if not token:
            raise ConfigError(f"web identity token file {self.token_file} is empty: refill it")
        return token

    def fetch(self) -> Credentials:
        token = self._token()
        params = self.ctx.role_params(self.profile, self.role_arn)
        params["WebIdentityToken"] = token
        sts = self.ctx.clients.client("sts", self.profile, None)
        with upstream(
            "AssumeRoleWithWebIdentity", self.profile, secrets=(token,),
            remedy="the web identity token was rejected: provide a fresh one",
        ):
            out = sts.assume_role_with_web_identity(**params)["Credentials"]
        return from_sts(out, NAME)


def from_profile(profile: str, ctx: Context) -> WebIdentitySource | None:
    token_file = ctx.setting(profile, "web_identity_token_file")
    if not token_file:
        return None
    role_arn = ctx.setting(profile, "role_arn")
    if not role_arn:
        raise ConfigError(f"profile {profile} has web_identity_token_file but no role_arn: add it")
    return WebIdentitySource(profile, role_arn, token_file, ctx)
