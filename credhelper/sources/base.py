"""What every source gets (`Context`) and gives (`Source`), and the one place
where AWS errors become credhelper errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import botocore.config
import botocore.exceptions

from credhelper import redact
from credhelper.config import AwsConfig, botocore_session
from credhelper.errors import ConfigError, UpstreamError
from credhelper.model import Credentials

if TYPE_CHECKING:
    from credhelper.settings import Settings
    from credhelper.store import Store


class Source(Protocol):
    #: e.g. "assume-role"; shown in `status` and logs
    name: str
    profile: str
    #: False for sources that cost nothing to ask again (environment variables)
    cacheable: bool

    def basis(self) -> str:
        """What the credentials are minted from (role ARN, key id, command):
        a cached credential minted from another basis is not served."""
        ...

    def fetch(self) -> Credentials:
        """Mint temporary credentials (with a session token and an expiration)."""
        ...


class ClientFactory:
    """Creates botocore clients; injected so tests and the daemon can choose
    retries and timeouts. Endpoints follow botocore (`AWS_ENDPOINT_URL_STS`…)."""

    def __init__(
        self, config: AwsConfig, *, max_attempts: int = 4, connect_timeout: float = 5,
        read_timeout: float = 15,
    ) -> None:
        self.config = config
        self._client_config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            user_agent_extra="credhelper",
        )

    def region(self, profile: str | None) -> str:
        session = botocore_session(self.config, profile)
        return str(session.get_config_variable("region") or "us-east-1")

    def client(
        self, service: str, profile: str | None, creds: Credentials | None, region: str | None = None
    ) -> Any:
        session = botocore_session(self.config, profile)
        cfg = self._client_config
        if creds is None:
            cfg = cfg.merge(botocore.config.Config(signature_version=botocore.UNSIGNED))
        return session.create_client(
            service,
            region_name=region or self.region(profile),
            aws_access_key_id=creds.access_key_id if creds else None,
            aws_secret_access_key=creds.secret_access_key if creds else None,
            aws_session_token=creds.session_token if creds else None,
            config=cfg,
        )


@dataclass(frozen=True)
class Context:
    config: AwsConfig
    settings: Settings
    store: Store
    clients: ClientFactory
    #: credentials of another profile (a chain's source), through the broker's cache
    credentials_of: Callable[[str, tuple[str, ...]], Credentials]
    environ: Mapping[str, str]
    now: Callable[[], datetime]
    #: profiles already on the way to this one (cycle detection)
    chain: tuple[str, ...] = ()

    def config_file_hint(self) -> str:
        return self.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"

    def setting(self, profile: str, key: str) -> str | None:
        return self.config.get(profile, key)

    def role_params(self, profile: str, role_arn: str) -> dict[str, object]:
        """RoleArn, RoleSessionName and DurationSeconds as the profile sets them."""
        params: dict[str, object] = {
            "RoleArn": role_arn,
            "RoleSessionName": self.setting(profile, "role_session_name")
            or f"credhelper-{int(time.time())}",
        }
        duration = self.int_setting(profile, "duration_seconds")
        if duration:
            params["DurationSeconds"] = duration
        return params

    def int_setting(self, profile: str, key: str) -> int | None:
        value = self.setting(profile, key)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise ConfigError(
                f"{key} of profile {profile} must be a whole number of seconds, not {value!r}"
            ) from None


_AUTH_CODES = {
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
    "SignatureDoesNotMatch", "InvalidAccessKeyId",
}


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Cut an upstream message to one short line with no secret in it."""
    return redact.scrub(text, secrets)


@contextmanager
def upstream(action: str, profile: str, *, remedy: str = "", secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Map what botocore raises during `action` to one `UpstreamError` line."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        text = scrub(str(err.get("Message", "")), secrets)
        if code in _AUTH_CODES:
            fix = remedy or "the source credentials were rejected: renew them"
        elif code in ("AccessDenied", "AccessDeniedException"):
            fix = "check the role's trust policy and your permissions"
        elif "Throttl" in code or code in ("TooManyRequestsException", "RequestLimitExceeded"):
            fix = "AWS is throttling after retries: try again in a minute"
        else:
            fix = "see the AWS message"
        raise UpstreamError(f"{action} for profile {profile} failed: {code}: {text}: {fix}") from None
    except (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.ConnectionError,
        botocore.exceptions.HTTPClientError,
    ) as exc:
        raise UpstreamError(
            f"{action} for profile {profile}: cannot reach AWS ({scrub(str(exc), secrets)}): "
            "check the network, proxy (HTTPS_PROXY) and AWS_ENDPOINT_URL_* settings"
        ) from None
    except botocore.exceptions.ParamValidationError as exc:
        raise ConfigError(
            f"{action} for profile {profile}: invalid setting: {scrub(str(exc), secrets)}"
        ) from None
