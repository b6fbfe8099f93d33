"""The encrypted-file store, read only, for the lean path: the format of
`credhelper.store.encrypted_file` (AES-256-GCM items, each bound to its name)
with its key from a `key_file`, without that module's writer machinery.

Stricter than the full store, never looser: a key file is used only when it is
an absolute (or `~/`) path outside systemd's `$CREDENTIALS_DIRECTORY`, a regular
file of this user that nobody else may read, holding a key in one of the three
accepted forms. Anything else, and any item that does not decrypt, is `None`
here and the full path decides (and reports).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from typing import Any

#: the file format of credhelper.store.encrypted_file (which imports these)
FORMAT = "credhelper-encrypted-file"
VERSION = 1
KEY_BYTES, NONCE_BYTES, TAG_BYTES = 32, 12, 16
_MAX_KEY_FILE = 4096


class Unusable(Exception):
    """Not for the lean path: the full path decides."""


def parse_key(data: bytes) -> bytes | None:
    """32 raw bytes, or 64 hex digits, or base64 of 32 bytes (whitespace around
    the text forms is ignored); None for anything else. The full store uses it too."""
    if len(data) == KEY_BYTES:
        return data
    text = data.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == KEY_BYTES else None


def read_key(setting: str) -> bytes:
    if os.environ.get("CREDENTIALS_DIRECTORY") or setting in ("", "keyring", "systemd"):
        raise Unusable("key not in a plain key file")
    path = os.path.expanduser(setting)
    if not os.path.isabs(path):
        raise Unusable("relative key_file")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise Unusable("key file the full path would refuse")
        key = parse_key(f.read(_MAX_KEY_FILE + 1))
    if key is None:
        raise Unusable("no key in the key file")
    return key


class LeanFileStore:
    def __init__(self, path: str, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)
        with open(path, "rb") as f:
            doc: Any = json.loads(f.read())
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("v") != VERSION:
            raise Unusable("not a store file this version reads")
        items = doc.get("items")
        if not isinstance(items, dict):
            raise Unusable("damaged store file")
        self._items: dict[str, Any] = items

    def get(self, name: str) -> str | None:
        blob = self._items.get(name)
        if blob is None:
            return None
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.b64decode(blob, validate=True)
            if len(raw) < NONCE_BYTES + TAG_BYTES:
                raise Unusable("short item")
            plain: bytes = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], name.encode("utf-8"))
            return plain.decode("utf-8")
        except (InvalidTag, ValueError, TypeError, binascii.Error):
            raise Unusable("item does not decrypt") from None


def open_store(settings: dict[str, Any]) -> LeanFileStore | None:
    """The store when the settings name the encrypted file with a key file, else None."""
    if settings["store"] != "encrypted-file":
        return None
    key = read_key(settings["key_file"])
    path = settings["encrypted_file"]
    if not path:
        from credhelper import paths

        path = os.path.join(paths.state_dir(), "store.enc")
    return LeanFileStore(os.path.abspath(path), key)
