"""Short-term Amazon Bedrock API keys (`AWS_BEARER_TOKEN_BEDROCK`) minted from
a profile's credentials, the way AWS's token generator
(`aws-bedrock-token-generator`) does:

- a SigV4 *query* presign (botocore's `SigV4QueryAuth`) of
  `POST https://bedrock.amazonaws.com/?Action=CallWithBearerToken` for the
  service `bedrock` in one region;
- `X-Amz-Expires` = the credentials' remaining lifetime, at most 12 hours
  (a presigned URL can never outlive the credentials that signed it anyway);
- the URL without `https://`, plus `&Version=1`, base64, prefixed with
  `bedrock-api-key-`.

The token holds the session token: it is a secret like the credentials.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from credhelper.errors import ConfigError, UpstreamError
from credhelper.model import Credentials

HOST = "bedrock.amazonaws.com"
URL = f"https://{HOST}/"
SERVICE = "bedrock"
ACTION = "CallWithBearerToken"
PREFIX = "bedrock-api-key-"
VERSION = "&Version=1"
#: the longest lifetime Bedrock accepts for a short-term key
MAX_SECONDS = 43200


def lifetime(creds: Credentials, now: datetime) -> int:
    """Seconds the token may live: what the credentials have left, at most 12 h."""
    left = int(creds.remaining(now))
    return max(0, min(MAX_SECONDS, left))


def mint(creds: Credentials, region: str, *, now: Callable[[], datetime] | None = None) -> str:
    """The bearer token for `creds` in `region`. The signature's time is
    botocore's clock; `now` only decides how long the token may live."""
    if not creds.session_token or creds.expiration is None:
        raise UpstreamError("a Bedrock API key needs temporary credentials: check the profile's source")
    expires = lifetime(creds, (now or (lambda: datetime.now(UTC)))())
    if expires <= 0:
        raise UpstreamError("the credentials have expired: run credhelper login, then export again")
    request = AWSRequest(method="POST", url=URL, headers={"host": HOST}, params={"Action": ACTION})
    signer = BotoCredentials(creds.access_key_id, creds.secret_access_key, creds.session_token)
    SigV4QueryAuth(signer, SERVICE, region, expires=expires).add_auth(request)
    url = str(request.url).removeprefix("https://") + VERSION
    return PREFIX + base64.b64encode(url.encode("utf-8")).decode("ascii")


def decode(token: str) -> str:
    """The presigned URL inside a token (with `https://` put back, without `&Version=1`)."""
    if not token.startswith(PREFIX):
        raise ValueError("not a Bedrock API key")
    url = base64.b64decode(token[len(PREFIX):], validate=True).decode("utf-8")
    if not url.endswith(VERSION):
        raise ValueError("not a version 1 Bedrock API key")
    return "https://" + url[: -len(VERSION)]


def region_for(option: str | None, profile: str, environ: Mapping[str, str]) -> str:
    """The region the key is bound to: `--region`, else `AWS_REGION` (what Claude
    Code and the SDKs that send the key use), else `AWS_DEFAULT_REGION` or the
    profile's `region` (as botocore resolves them)."""
    if option:
        return option
    if environ.get("AWS_REGION"):
        return environ["AWS_REGION"]
    from credhelper.config import AwsConfig, botocore_session

    region = botocore_session(AwsConfig.load(), profile).get_config_variable("region")
    if not region:
        raise ConfigError(
            f"no region for profile {profile}: a Bedrock API key is bound to one region; "
            "pass --region, set AWS_REGION, or add region to the profile"
        )
    return str(region)


def export_token(profile: str, region: str | None, environ: Mapping[str, str]) -> str:
    """What `export --format bedrock-token` prints: the bare token and a newline.
    The credentials come from the direct path exactly as `export --format json`
    gets them (store, else minted under the profile lock, same deadlines)."""
    import json

    from credhelper.direct import export_text
    from credhelper.model import parse_time, render

    where = region_for(region, profile, environ)
    data = json.loads(export_text(profile, "json", environ))
    creds = Credentials(
        access_key_id=data["AccessKeyId"], secret_access_key=data["SecretAccessKey"],
        session_token=data["SessionToken"], expiration=parse_time(data["Expiration"]),
        source=str(data.get("Source") or ""),
    )
    return render(creds, "bedrock-token", profile=profile, region=where)


__all__ = ["MAX_SECONDS", "decode", "export_token", "lifetime", "mint", "region_for"]
