"""AWS profiles, read through botocore from the standard files.

`AWS_CONFIG_FILE` and `AWS_SHARED_CREDENTIALS_FILE` are honoured as botocore
honours them; the credentials file's sections are merged into the profiles.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import botocore.exceptions
import botocore.session

from credhelper.errors import ConfigError

Section = Mapping[str, Any]


@dataclass(frozen=True)
class AwsConfig:
    profiles: Mapping[str, Section]
    sso_sessions: Mapping[str, Section]

    @classmethod
    def load(cls) -> AwsConfig:
        try:
            with config_errors():
                full = botocore.session.Session().full_config
        except botocore.exceptions.BotoCoreError as exc:
            raise ConfigError(f"cannot read the AWS config: {exc}") from None
        return cls(profiles=full.get("profiles", {}), sso_sessions=full.get("sso_sessions", {}))

    def profile(self, name: str) -> Section | None:
        section = self.profiles.get(name)
        return section if isinstance(section, Mapping) else None

    def get(self, profile: str, key: str) -> str | None:
        """A string setting of a profile, or None."""
        value = (self.profile(profile) or {}).get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None


@contextmanager
def config_errors() -> Iterator[None]:
    """botocore reads the AWS files lazily (a session's first config lookup):
    wherever it does, a broken file is a configuration error, not a bug."""
    try:
        yield
    except botocore.exceptions.ConfigParseError as exc:
        raise ConfigError(f"{exc}: fix the syntax of that file") from None
    except (botocore.exceptions.ConfigNotFound, botocore.exceptions.ProfileNotFound) as exc:
        raise ConfigError(f"cannot read the AWS config: {exc}") from None


def botocore_session(config: AwsConfig, profile: str | None) -> botocore.session.Session:
    """A botocore session scoped to `profile` for its region and endpoint
    settings. A profile that is not in the files (keys only in the store) gets
    no profile at all, so a stray `AWS_PROFILE` cannot break client creation."""
    session = botocore.session.Session()
    if profile is not None and config.profile(profile) is not None:
        session.set_config_variable("profile", profile)
    else:
        session.session_var_map["profile"] = (None, None, None, None)
    return session
