"""`export --format bedrock-token`: short-term Bedrock API keys.

Each key is decoded and its SigV4 query signature checked by signing the same
request again with botocore against the secret of the credentials it was minted
from (and failing against another secret); its credential scope and expiry are
checked; and with a frozen clock it equals what AWS's reference generator
(PyPI `aws-bedrock-token-generator`) makes from the same credentials.
End to end, the installed `credhelper` mints one from a moto AssumeRole.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import botocore.auth
import pytest
from aws_bedrock_token_generator import BedrockTokenGenerator, provide_token
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from conftest import file_store_toml

from credhelper import bedrock_token
from credhelper.errors import ConfigError
from credhelper.model import Credentials, render

if TYPE_CHECKING:
    from conftest import AwsEnv

AKID = "ASIABEDROCKTOKEN0001"
SECRET = "bedrockSecret/0123456789+abcdefghijklmn"
TOKEN = "IQoJb3JpZ2luX2VjEBedrock/Session+Token=="
NOW = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
REGION = "eu-central-1"


def creds(left: float, *, akid: str = AKID, secret: str = SECRET) -> Credentials:
    return Credentials(akid, secret, TOKEN, NOW + timedelta(seconds=left), source="test")


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """botocore's signing clock (for credhelper and the reference alike) stands at NOW."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda remove_tzinfo=True: NOW.replace(tzinfo=None))
    return NOW


def query(token: str) -> dict[str, str]:
    """The presigned URL's query parameters (each exactly once)."""
    url = bedrock_token.decode(token)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "bedrock.amazonaws.com", "/")
    q = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    assert all(len(v) == 1 for v in q.values()), q
    return {k: v[0] for k, v in q.items()}


def resign(q: dict[str, str], secret: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """X-Amz-Signature of the same request signed again by botocore with `secret`
    at the token's own X-Amz-Date and X-Amz-Expires."""
    when = datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: when)
    request = AWSRequest(method="POST", url="https://bedrock.amazonaws.com/",
                         headers={"host": "bedrock.amazonaws.com"},
                         params={"Action": "CallWithBearerToken"})
    akid, _, scope = q["X-Amz-Credential"].partition("/")
    _date, region, _service, _term = scope.split("/")
    signer = BotoCredentials(akid, secret, q.get("X-Amz-Security-Token"))
    SigV4QueryAuth(signer, "bedrock", region, expires=int(q["X-Amz-Expires"])).add_auth(request)
    again = parse_qs(urlsplit(str(request.url)).query)
    return again["X-Amz-Signature"][0]


# ------------------------------------------------------------------ the token itself


def test_token_decodes_to_a_presigned_call_with_bearer_token(frozen: datetime) -> None:
    token = bedrock_token.mint(creds(3600), REGION, now=lambda: NOW)
    assert token.startswith("bedrock-api-key-")
    raw = base64.b64decode(token[len("bedrock-api-key-"):]).decode()
    assert raw.startswith("bedrock.amazonaws.com/?Action=CallWithBearerToken&")
    assert raw.endswith("&Version=1") and "https://" not in raw
    q = query(token)
    assert q["Action"] == "CallWithBearerToken"
    assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert q["X-Amz-Credential"] == f"{AKID}/20261130/{REGION}/bedrock/aws4_request"
    assert q["X-Amz-Date"] == "20261130T100000Z"
    assert q["X-Amz-SignedHeaders"] == "host"
    assert q["X-Amz-Security-Token"] == TOKEN
    assert SECRET not in raw


def test_signature_verifies_against_the_minting_secret_only(
    frozen: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = query(bedrock_token.mint(creds(5000), REGION, now=lambda: NOW))
    assert len(q["X-Amz-Signature"]) == 64
    assert resign(q, SECRET, monkeypatch) == q["X-Amz-Signature"]
    assert resign(q, SECRET[:-1] + "X", monkeypatch) != q["X-Amz-Signature"]


@pytest.mark.parametrize(("left", "expires"), [
    (3600, 3600),        # bounded by the credentials' own expiry
    (3600.9, 3600),      # never a second past it
    (43200, 43200),
    (36 * 3600, 43200),  # at most 12 hours
])
def test_expiry_is_the_credentials_lifetime_at_most_12_hours(
    frozen: datetime, left: float, expires: int
) -> None:
    q = query(bedrock_token.mint(creds(left), REGION, now=lambda: NOW))
    assert int(q["X-Amz-Expires"]) == expires


def test_expired_or_long_term_credentials_are_refused(frozen: datetime) -> None:
    with pytest.raises(Exception, match="expired"):
        bedrock_token.mint(creds(-1), REGION, now=lambda: NOW)
    with pytest.raises(Exception, match="temporary credentials"):
        bedrock_token.mint(Credentials(AKID, SECRET, None, None), REGION, now=lambda: NOW)


def test_same_token_as_the_aws_reference_generator(frozen: datetime) -> None:
    reference_creds = BotoCredentials(AKID, SECRET, TOKEN)
    # the reference's fixed 12-hour lifetime: credentials that outlive it
    ours = bedrock_token.mint(creds(20 * 3600), REGION, now=lambda: NOW)
    assert ours == BedrockTokenGenerator().get_token(reference_creds, REGION)

    # a shorter expiry: the reference with the same expiry as the credentials' lifetime
    class Provider:
        def load(self) -> BotoCredentials:
            return reference_creds

    short = bedrock_token.mint(creds(2 * 3600), "us-west-2", now=lambda: NOW)
    assert short == provide_token(region="us-west-2", aws_credentials_provider=Provider(),  # type: ignore[arg-type]
                                  expiry=timedelta(hours=2))
    assert short != ours


def test_render_prints_the_bare_token_and_a_newline(frozen: datetime) -> None:
    text = render(creds(3 * 3600, akid=AKID), "bedrock-token", profile="dev", region=REGION)
    assert text.endswith("\n") and text.count("\n") == 1
    assert text.startswith("bedrock-api-key-")
    with pytest.raises(ValueError, match="region"):
        render(creds(3600), "bedrock-token")


def test_region_order(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import pathlib

    cfg = pathlib.Path(str(tmp_path)) / "config"
    cfg.write_text("[profile dev]\nregion = ap-south-1\n[profile none]\nrole_arn = x\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    env = {"AWS_REGION": "us-east-2"}
    assert bedrock_token.region_for("eu-west-3", "dev", env) == "eu-west-3"
    assert bedrock_token.region_for(None, "dev", env) == "us-east-2"
    assert bedrock_token.region_for(None, "dev", {}) == "ap-south-1"
    with pytest.raises(ConfigError, match="pass --region"):
        bedrock_token.region_for(None, "none", {})


# ------------------------------------------------------------------ through the installed CLI


def test_export_bedrock_token_end_to_end(aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key is minted from the same cached credentials `export` serves, bound
    to the region asked for, and lives exactly as long as they do (≤ 12 h)."""
    aws_env.write_config("""
        [profile dev]
        role_arn = arn:aws:iam::123456789012:role/dev
        source_profile = base
        region = us-east-1
        duration_seconds = 3600
        """)
    aws_env.write_credentials("""
        [base]
        aws_access_key_id = AKIABEDROCKBASE00001
        aws_secret_access_key = bedrockBase/0123456789+abcdefghijklmnop
        """)
    aws_env.write_settings(file_store_toml(aws_env.home))
    plain = aws_env.run("export", "--profile", "dev", "--format", "json")
    assert plain.returncode == 0, plain.stderr
    served = json.loads(plain.stdout)

    done = aws_env.run("export", "--profile", "dev", "--format", "bedrock-token", "--region", "us-west-2")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.endswith("\n") and done.stdout.count("\n") == 1
    token = done.stdout.strip()
    q = query(token)
    assert q["X-Amz-Credential"].startswith(served["AccessKeyId"] + "/")
    assert q["X-Amz-Credential"].endswith("/us-west-2/bedrock/aws4_request")
    assert q["X-Amz-Security-Token"] == served["SessionToken"]
    assert resign(q, served["SecretAccessKey"], monkeypatch) == q["X-Amz-Signature"]
    signed = datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ends = signed + timedelta(seconds=int(q["X-Amz-Expires"]))
    expiration = datetime.fromisoformat(served["Expiration"].replace("Z", "+00:00"))
    assert timedelta(0) <= expiration - ends <= timedelta(seconds=2), (ends, expiration)

    # no --region: AWS_REGION (the aws_env sets us-east-1)
    q2 = query(aws_env.run("export", "-p", "dev", "-f", "bedrock-token").stdout.strip())
    assert "/us-east-1/bedrock/" in q2["X-Amz-Credential"]


def test_region_with_another_format_is_a_usage_error(aws_env: AwsEnv) -> None:
    done = aws_env.run("export", "--profile", "dev", "--region", "us-west-2")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "--region only applies to --format bedrock-token" in done.stderr
