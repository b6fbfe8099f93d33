"""`role_arn` with `source_profile` (chains) or `credential_source` → AssumeRole."""

from __future__ import annotations

import re
from dataclasses import dataclass

from credhelper.errors import ConfigError, LoginRequired
from credhelper.model import Credentials
from credhelper.sources.base import Context, upstream
from credhelper.sources.env import env_keys
from credhelper.sources.session_token import from_sts, mfa_session, static_keys

NAME = "assume-role"
#: what STS accepts as RoleArn (botocore would only say "Invalid length for parameter")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
SUPPORTED_CREDENTIAL_SOURCES = ("Environment",)


@dataclass
class AssumeRoleSource:
    profile: str
    role_arn: str
    source_profile: str | None
    credential_source: str | None
    ctx: Context
    name: str = NAME
    cacheable: bool = True

    def basis(self) -> str:
        s = self.ctx.setting
        return ":".join(
            str(x) for x in (
                NAME, self.role_arn, s(self.profile, "external_id"), self.source_profile,
                self.credential_source, s(self.profile, "mfa_serial"),
            )
        )

    def _base(self) -> Credentials:
        if self.credential_source == "Environment":
            keys = env_keys(self.ctx.environ)
            if keys is None:
                raise ConfigError(
                    f"profile {self.profile} has credential_source = Environment but "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set: set them"
                )
            return keys
        src = self.source_profile
        assert src is not None  # from_profile checked: one of the two is set
        if src == self.profile or not self.ctx.setting(src, "role_arn"):
            keys = static_keys(src, self.ctx)
            if keys is not None:
                return keys
            if src == self.profile:
                raise ConfigError(
                    f"profile {src} is its own source_profile but has no keys: "
                    f"store them with credhelper keys add --profile {src}"
                )
        if self.ctx.config.profile(src) is None:
            raise ConfigError(
                f"profile {self.profile} in {self.ctx.config_file_hint()} has source_profile = "
                f"{src}, which is not defined there: add [profile {src}], fix source_profile, "
                f"or store keys with credhelper keys add --profile {src}"
            )
        # A role, SSO, process… profile: its credentials, cached like any other.
        return self.ctx.credentials_of(src, (*self.ctx.chain, self.profile))

    def keys_profile(self) -> str | None:
        """The profile whose long-term keys an MFA session is minted from."""
        src = self.source_profile
        if src and (src == self.profile or not self.ctx.setting(src, "role_arn")):
            return src
        return None

    def fetch(self) -> Credentials:
        serial = self.ctx.setting(self.profile, "mfa_serial")
        if serial:
            # AssumeRole with the MFA session `login` minted (aws-vault's way):
            # refreshes need no code until that session ends.
            keys_profile = self.keys_profile()
            if keys_profile is None:
                raise ConfigError(
                    f"mfa_serial on profile {self.profile} needs a source_profile with keys"
                )
            base = mfa_session(keys_profile, serial, self.ctx)
            if base is None:
                raise LoginRequired(self.profile, "MFA session required")
        else:
            base = self._base()
        params = self.ctx.role_params(self.profile, self.role_arn)
        external_id = self.ctx.setting(self.profile, "external_id")
        if external_id:
            params["ExternalId"] = external_id
        sts = self.ctx.clients.client("sts", self.profile, base)
        remedy = (
            f"the credentials of source profile {self.source_profile} were rejected: renew them"
            if self.source_profile else "the environment credentials were rejected: renew them"
        )
        with upstream("AssumeRole", self.profile, remedy=remedy, secrets=base.secrets()):
            out = sts.assume_role(**params)["Credentials"]
        return from_sts(out, NAME)


def from_profile(profile: str, ctx: Context) -> AssumeRoleSource | None:
    role_arn = ctx.setting(profile, "role_arn")
    if not role_arn or ctx.setting(profile, "web_identity_token_file"):
        return None
    src = ctx.setting(profile, "source_profile")
    cs = ctx.setting(profile, "credential_source")
    if src and cs:
        raise ConfigError(
            f"profile {profile} sets both source_profile and credential_source: keep one"
        )
    if not src and not cs:
        raise ConfigError(
            f"profile {profile} has role_arn but no source_profile or credential_source: add one"
        )
    if cs and cs not in SUPPORTED_CREDENTIAL_SOURCES:
        raise ConfigError(
            f"credential_source = {cs} in profile {profile} is not supported: "
            "use Environment or a source_profile"
        )
    if not _ROLE_ARN.match(role_arn):
        raise ConfigError(
            f"role_arn of profile {profile} in {ctx.config_file_hint()} is not a role ARN "
            f"({role_arn!r}): write it as arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME"
        )
    _check_role_settings(profile, ctx)
    return AssumeRoleSource(profile, role_arn, src, cs, ctx)


def _check_role_settings(profile: str, ctx: Context) -> None:
    """The AssumeRole parameters STS would refuse, named by their config key."""
    where = f"of profile {profile} in {ctx.config_file_hint()}"
    duration = ctx.int_setting(profile, "duration_seconds")
    if duration is not None and not 900 <= duration <= 43200:
        raise ConfigError(f"duration_seconds {where} is {duration}, but STS takes a "
                          "DurationSeconds of 900 to 43200: use a value in that range (at most "
                          "the role's maximum session duration)")
    name = ctx.setting(profile, "role_session_name")
    if name is not None and not re.fullmatch(r"[\w+=,.@-]{2,64}", name):
        raise ConfigError(f"role_session_name {where} is not valid ({name!r}): use 2 to 64 "
                          "letters, digits or +=,.@_-")
    external_id = ctx.setting(profile, "external_id")
    if external_id is not None and not re.fullmatch(r"[\w+=,.@:/-]{2,1224}", external_id):
        raise ConfigError(f"external_id {where} is not valid: use 2 to 1224 letters, digits "
                          "or +=,.@:/_-")
