"""What every source gets (`Context`) and gives (`Source`), and the one place
where AWS errors become credhelper errors."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import botocore.awsrequest
import botocore.client
import botocore.config
import botocore.exceptions
import botocore.parsers

from credhelper import redact
from credhelper.config import AwsConfig, botocore_session, config_errors
from credhelper.deadline import DEFAULT_BUDGET, Deadline, unlimited
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


#: clients kept per factory (one per service, profile and set of credentials in use)
MAX_CLIENTS = 64


class ClientFactory:
    """Creates botocore clients; injected so tests and the daemon can choose
    retries and timeouts. Endpoints follow botocore (`AWS_ENDPOINT_URL_STS`…)."""

    def __init__(
        self, config: AwsConfig, *, max_attempts: int = 4, budget: float = DEFAULT_BUDGET,
        connect_timeout: float | None = None, read_timeout: float | None = None,
    ) -> None:
        self.config = config
        # Per-attempt timeouts worked back from the export budget, so that a
        # few attempts fit in it; the budget itself is enforced around the
        # whole call (Deadline.call), since a read timeout is per read.
        self._client_config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout or min(5.0, budget / 6),
            read_timeout=read_timeout or min(15.0, budget / 4),
            user_agent_extra="credhelper",
        )
        self._clients: OrderedDict[tuple[object, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def region(self, profile: str | None) -> str:
        with config_errors():
            session = botocore_session(self.config, profile)
            return str(session.get_config_variable("region") or "us-east-1")

    def client(
        self, service: str, profile: str | None, creds: Credentials | None, region: str | None = None
    ) -> Any:
        """A client for these credentials, made once and reused (a daemon retrying
        a refresh must not build, and parse the config for, a client per attempt)."""
        key = (service, profile, region, creds)
        with self._lock:
            cached = self._clients.get(key)
            if cached is not None:
                self._clients.move_to_end(key)
                return cached
        with config_errors():
            made = self._make(service, profile, creds, region)
        with self._lock:
            self._clients[key] = made
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
        return made

    def _make(self, service: str, profile: str | None, creds: Credentials | None, region: str | None) -> Any:
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
    #: the whole operation's deadline: lock waits, helper processes, token refreshes
    deadline: Deadline = field(default_factory=unlimited)

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


def _endpoint(exc: BaseException) -> str:
    """The endpoint the failing call talked to. Found in the call's own frames
    (the botocore client, or the request being sent), so that every caller of
    `upstream` gets it without passing its client in."""
    tb = exc.__traceback__
    while tb is not None:
        for value in tuple(tb.tb_frame.f_locals.values()):
            if isinstance(value, botocore.client.BaseClient):
                return str(value.meta.endpoint_url)
            url = getattr(value, "url", None)
            if isinstance(value, botocore.awsrequest.AWSPreparedRequest) and isinstance(url, str):
                return url.split("?")[0]
        tb = tb.tb_next
    return "the AWS endpoint"


def _http_answer(exc: BaseException) -> str:
    """"HTTP <status> <content type>, " of the answer being parsed when `exc`
    was raised ("" when there was none)."""
    status: object = None
    headers: Mapping[str, Any] = {}
    if isinstance(exc, botocore.exceptions.ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        status, headers = meta.get("HTTPStatusCode"), meta.get("HTTPHeaders") or {}
    tb = exc.__traceback__
    while tb is not None and status is None:
        answer = tb.tb_frame.f_locals.get("http_response")
        if isinstance(answer, botocore.awsrequest.AWSResponse):
            status, headers = answer.status_code, answer.headers
        tb = tb.tb_next
    if status is None:
        return ""
    kind = str({k.lower(): v for k, v in dict(headers).items()}.get("content-type", "")).split(";")[0]
    return f"HTTP {status} {kind}".strip() + ", "


def _not_aws(exc: botocore.exceptions.ClientError) -> bool:
    """An error answer that did not come from AWS: a proxy's page, an empty
    404. botocore names those by the HTTP status (AWS codes are words)."""
    err = exc.response.get("Error", {})
    message = str(err.get("Message", "")).lstrip().lower()
    code = str(err.get("Code", ""))
    return (code.isdigit() or (code in ("", "Unknown") and not message)
            or message.startswith(("<!doctype", "<html", "<?xml")))


def _non_aws_answer(action: str, profile: str, exc: BaseException, what: str) -> UpstreamError:
    return UpstreamError(
        f"{action} for profile {profile}: non-AWS answer from {_endpoint(exc)} "
        f"({_http_answer(exc)}{what}): check AWS_ENDPOINT_URL_* and the proxy (HTTPS_PROXY)"
    )


@contextmanager
def upstream(action: str, profile: str, *, remedy: str = "", secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Map what botocore raises during `action` to one `UpstreamError` line.
    An answer that is not AWS's (garbage, truncated, a proxy's HTML page, an
    empty error) is an upstream failure naming the endpoint, not a bug."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        if _not_aws(exc):
            raise _non_aws_answer(action, profile, exc, "no AWS error in it") from None
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
            f"{action} for profile {profile}: cannot reach AWS at {_endpoint(exc)} "
            f"({scrub(str(exc), secrets)}): "
            "check the network, proxy (HTTPS_PROXY) and AWS_ENDPOINT_URL_* settings"
        ) from None
    except botocore.parsers.ResponseParserError as exc:
        raise _non_aws_answer(action, profile, exc, "not a readable AWS response") from None
    except KeyError as exc:
        # a well-formed answer without what the call returns (no Credentials):
        # the blocks `upstream` guards are one call and the lookup of its result
        raise _non_aws_answer(action, profile, exc, f"no {exc.args[0]} in it") from None
    except botocore.exceptions.ParamValidationError as exc:
        raise ConfigError(
            f"{action} for profile {profile}: invalid setting: {scrub(str(exc), secrets)}"
        ) from None
