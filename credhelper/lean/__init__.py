"""The lean direct path: `credhelper export` served from the store when no
daemon answers, without botocore, click, structlog, apscheduler or keyring
(and without `dataclasses`/`inspect`: each millisecond counts on this path).

It needs, read with the standard library plus `cryptography`'s AES-GCM: the
credhelper settings (`lean.settings`), the profile's basis (`lean.basis`, over
the AWS files read as botocore reads them: `lean.awsconfig`) and the encrypted
file store with a key file (`lean.store`). It answers only when the store holds
credentials minted from the same basis that the broker's policy
(`credhelper.policy`) would serve; everything else (a miss, a stale item, an
uncached source, a config or settings file the full path would reject, the
keyring store or a key kept in it, a credential_process chain) returns None,
and the caller runs today's full path, which decides and reports.

The output is what `credhelper.model.render` prints for the same record
(tests/test_lean.py compares them, format by format).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from credhelper.lean import settings as lean_settings
from credhelper.lean.awsconfig import LeanConfig, Unreadable
from credhelper.lean.basis import basis
from credhelper.lean.store import Unusable, open_store

#: set while a credential_process runs (credhelper.sources.process.CHAIN_ENV)
CHAIN_ENV = "CREDHELPER_EXPORT_CHAIN"
FORMATS = ("claude", "process", "env", "json")


def parse_time(value: object) -> datetime:
    """credhelper.model.parse_time for the strings a record holds."""
    if not isinstance(value, str):
        raise ValueError("not a time")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def iso_z(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_record(record: Any) -> dict[str, Any]:
    """credhelper.model.Credentials.from_record, as a dict; ValueError if malformed."""
    if not isinstance(record, dict) or record.get("v") != 1:
        raise ValueError("not a version 1 credentials record")
    akid, secret = record.get("AccessKeyId"), record.get("SecretAccessKey")
    token, exp, issued = record.get("SessionToken"), record.get("Expiration"), record.get("Issued")
    if not (isinstance(akid, str) and akid and isinstance(secret, str) and secret):
        raise ValueError("credentials record without keys")
    if token is not None and not isinstance(token, str):
        raise ValueError("credentials record with a bad session token")
    return {
        "akid": akid, "secret": secret, "token": token or None,
        "expiration": parse_time(exp) if exp is not None else None,
        "issued": parse_time(issued) if issued is not None else None,
        "source": str(record.get("Source") or ""),
    }


def render(creds: Mapping[str, Any], fmt: str, profile: str) -> str:
    """credhelper.model.render for the formats the fast path takes."""
    exp = iso_z(creds["expiration"])
    core = {"AccessKeyId": creds["akid"], "SecretAccessKey": creds["secret"],
            "SessionToken": creds["token"], "Expiration": exp}
    if fmt == "claude":
        return json.dumps({"Credentials": core}) + "\n"
    if fmt == "process":
        return json.dumps({"Version": 1, **core}) + "\n"
    if fmt == "json":
        return json.dumps({**core, "Profile": profile, "Source": creds["source"]}) + "\n"
    import shlex

    pairs = (("AWS_ACCESS_KEY_ID", creds["akid"]), ("AWS_SECRET_ACCESS_KEY", creds["secret"]),
             ("AWS_SESSION_TOKEN", creds["token"]), ("AWS_CREDENTIAL_EXPIRATION", exp))
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in pairs)


def export_text(profile: str, fmt: str, environ: Mapping[str, str],
                now: datetime | None = None) -> str | None:
    """What `export` prints for `profile`, or None: take the full path."""
    if environ.get(CHAIN_ENV) or fmt not in FORMATS:
        return None  # the full path checks the recursion and says why
    from credhelper.policy import effective_window

    try:
        settings = lean_settings.load(environ)
        store = open_store(settings) if settings is not None else None
        if settings is None or store is None:
            return None
        want = basis(profile, LeanConfig.load(environ), store.get, environ)
        if want is None:
            return None
        raw = store.get(f"v1/creds/{profile}")
        if raw is None:
            return None
        record = json.loads(raw)
        if record.get("basis") != want:
            return None
        creds = from_record(record["credentials"])
    except (Unusable, Unreadable, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    expiration = creds["expiration"]
    if expiration is None or not creds["token"]:
        return None
    now = now or datetime.now(UTC)
    lifetime = (expiration - (creds["issued"] or now)).total_seconds()
    if (expiration - now).total_seconds() <= effective_window(lifetime, settings["refresh_window"]):
        return None
    return render(creds, fmt, profile)


def try_export(profile: str, fmt: str) -> int | None:
    """Print the lean answer and return 0, or None: take the full path."""
    text = export_text(profile, fmt, os.environ)
    if text is None:
        return None
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0
