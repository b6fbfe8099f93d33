"""The lean direct path: `credhelper export` served from the store when no
daemon answers, without botocore, click, structlog, apscheduler or keyring.

It needs three things, each read with the standard library (plus
`cryptography`'s AES-GCM for the encrypted file): the credhelper settings
(`credhelper.settings`), the profile's basis (`lean.basis`, over the AWS files
read as botocore reads them: `lean.awsconfig`) and the configured store. It
answers only when the store holds credentials minted from the same basis that
the broker's policy (`credhelper.policy`) would serve; everything else (a miss,
a stale item, an uncached source, a config the full path would reject, the
keyring store, a credential_process chain) returns None, and the caller runs
today's full path, which decides and reports.

Stores: the encrypted file with a `key_file` only. Its key in the keyring, or
the keyring store itself, go to the full path (the keyring library's checks,
such as the plaintext refusal, stay in one place).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from credhelper.lean.awsconfig import LeanConfig, Unreadable
from credhelper.lean.basis import basis

if TYPE_CHECKING:
    from credhelper.settings import Settings
    from credhelper.store import Store

#: set while a credential_process runs (credhelper.sources.process.CHAIN_ENV)
CHAIN_ENV = "CREDHELPER_EXPORT_CHAIN"


def _encrypted_store(settings: Settings) -> Store | None:
    """The encrypted-file store when its key is in a key file, else None."""
    if settings.store != "encrypted-file" or settings.key_file in ("", "keyring"):
        return None
    from credhelper.store.encrypted_file import EncryptedFileStore

    return EncryptedFileStore.from_settings(settings)


def export_text(profile: str, fmt: str, environ: Mapping[str, str],
                now: datetime | None = None) -> str | None:
    """What `export` prints for `profile`, or None: take the full path."""
    if environ.get(CHAIN_ENV):
        return None  # the full path checks the recursion and says why
    from credhelper import settings as settings_mod
    from credhelper.errors import CredhelperError
    from credhelper.model import Credentials, render
    from credhelper.policy import effective_window

    try:
        settings = settings_mod.load()
        store = _encrypted_store(settings)
        if store is None:
            return None
        get = store.get
        config = LeanConfig.load(environ)
        want = basis(profile, config, get, environ)
        if want is None:
            return None
        raw = get(f"v1/creds/{profile}")
        if raw is None:
            return None
        record = json.loads(raw)
        if record.get("basis") != want:
            return None
        creds = Credentials.from_record(record["credentials"])
    except (CredhelperError, Unreadable, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if creds.expiration is None or not creds.session_token:
        return None
    now = now or datetime.now(UTC)
    lifetime = (creds.expiration - (creds.issued or now)).total_seconds()
    if creds.remaining(now) <= effective_window(lifetime, settings.refresh_window):
        return None
    return render(creds, fmt, profile=profile)


def try_export(profile: str, fmt: str) -> int | None:
    """Print the lean answer and return 0, or None: take the full path."""
    text = export_text(profile, fmt, os.environ)
    if text is None:
        return None
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0
