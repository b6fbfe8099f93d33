"""The `Credentials` value type and the output formats.

Stdlib only. `repr()` never shows a secret, so a credential that ends up in a
log line or a traceback shows its key id and expiry, nothing else.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FORMATS = ("claude", "process", "env", "json")
#: what `credhelper export` prints: FORMATS (which the daemon serves) and the
#: Bedrock API key, which the CLI mints (it needs botocore's signer and a region)
EXPORT_FORMATS = (*FORMATS, "bedrock-token")


def iso_z(when: datetime) -> str:
    """ISO 8601, UTC, whole seconds, `Z`: what Claude Code and the SDKs parse."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime:
    """Parse an expiration as AWS, botocore or a credential_process gives it."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        when = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z") or text.endswith("z"):
            text = text[:-1] + "+00:00"
        when = datetime.fromisoformat(text)
    else:
        raise ValueError(f"not a time: {type(value).__name__}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str = field(repr=True)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expiration: datetime | None = None
    source: str = ""
    #: when credhelper minted them: lifetime = expiration - issued
    issued: datetime | None = None

    def remaining(self, now: datetime) -> float:
        """Seconds left; infinite for credentials that do not expire."""
        if self.expiration is None:
            return float("inf")
        return (self.expiration - now).total_seconds()

    def secrets(self) -> tuple[str, ...]:
        """The values that must never reach a log or an error message."""
        return tuple(v for v in (self.secret_access_key, self.session_token) if v)

    # -- persistence -----------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        return {
            "v": 1,
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "SessionToken": self.session_token,
            "Expiration": iso_z(self.expiration) if self.expiration else None,
            "Source": self.source,
            "Issued": iso_z(self.issued) if self.issued else None,
        }

    @classmethod
    def from_record(cls, record: object) -> Credentials:
        """Inverse of `to_record`; raises ValueError on anything malformed."""
        if not isinstance(record, dict) or record.get("v") != 1:
            raise ValueError("not a version 1 credentials record")
        akid, secret = record.get("AccessKeyId"), record.get("SecretAccessKey")
        token, exp = record.get("SessionToken"), record.get("Expiration")
        issued = record.get("Issued")
        if not (isinstance(akid, str) and akid and isinstance(secret, str) and secret):
            raise ValueError("credentials record without keys")
        if token is not None and not isinstance(token, str):
            raise ValueError("credentials record with a bad session token")
        return cls(
            access_key_id=akid,
            secret_access_key=secret,
            session_token=token or None,
            expiration=parse_time(exp) if exp is not None else None,
            source=str(record.get("Source") or ""),
            issued=parse_time(issued) if issued is not None else None,
        )


def render(creds: Credentials, fmt: str, *, profile: str = "", region: str = "") -> str:
    """The exact text `export` prints (with a trailing newline).

    Every JSON format carries `Expiration`; callers make sure exported credentials
    have a session token and an expiration (Claude Code rejects credentials
    without a `SessionToken`). `bedrock-token` is the bare key for `region`.
    """
    if creds.expiration is None or not creds.session_token:
        raise ValueError("only temporary credentials with an expiration are exported")
    exp = iso_z(creds.expiration)
    core = {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "SessionToken": creds.session_token,
        "Expiration": exp,
    }
    if fmt == "claude":
        return json.dumps({"Credentials": core}) + "\n"
    if fmt == "process":
        return json.dumps({"Version": 1, **core}) + "\n"
    if fmt == "json":
        return json.dumps({**core, "Profile": profile, "Source": creds.source}) + "\n"
    if fmt == "env":
        pairs = (
            ("AWS_ACCESS_KEY_ID", creds.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", creds.secret_access_key),
            ("AWS_SESSION_TOKEN", creds.session_token),
            ("AWS_CREDENTIAL_EXPIRATION", exp),
        )
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in pairs)
    if fmt == "bedrock-token":
        if not region:
            raise ValueError("a Bedrock API key needs a region")
        from credhelper.bedrock_token import mint  # botocore: only for this format

        return mint(creds, region) + "\n"
    raise ValueError(f"unknown format {fmt!r}")
