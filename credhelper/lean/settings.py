"""credhelper's settings as the lean path needs them, without `credhelper.settings`
(its dataclass costs `dataclasses` and `inspect`, more than the rest of the lean
path together).

It accepts a settings file only where `credhelper.settings.load` would accept it
with the same values: the same key types, aliases, text limits and ranges
(copies of `_TYPES`, `ALIASES` and `RANGES`, which tests/test_lean.py compares
with the originals); anything else returns None and the full path reports it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any

from credhelper import paths

STORES = ("keyring", "encrypted-file", "memory")
TYPES: dict[str, type] = {
    "refresh_window": int, "store": str, "warm_profiles": list, "keyring_service": str,
    "encrypted_file": str, "key_file": str, "export_timeout": int, "max_refresh_rate": int,
    "notifications": bool,
}
RANGES: dict[str, tuple[int, int]] = {
    "refresh_window": (60, 86400), "export_timeout": (5, 600), "max_refresh_rate": (1, 100),
}
ALIASES = {"mint_timeout": "export_timeout"}
DEFAULTS: dict[str, Any] = {"refresh_window": 900, "store": "keyring", "encrypted_file": "", "key_file": ""}
MAX_TEXT = 4096
MAX_WARM = 10000


def _typed(value: object, want: type) -> bool:
    return isinstance(value, want) and (want is bool or not isinstance(value, bool))


def _valid(data: Mapping[str, Any]) -> bool:
    value: Any
    for key, value in data.items():
        if key in ALIASES:
            if ALIASES[key] in data:
                return False
            key = ALIASES[key]
        want = TYPES.get(key)
        if want is None or not _typed(value, want):
            return False
        if isinstance(value, str) and (len(value) > MAX_TEXT or "\x00" in value):
            return False
        if key in RANGES and not RANGES[key][0] <= value <= RANGES[key][1]:
            return False
        if key == "warm_profiles" and (len(value) > MAX_WARM or not all(
                isinstance(p, str) and p and len(p) <= 256 and "\x00" not in p for p in value)):
            return False
    return data.get("store", "keyring") in STORES


def load(environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """{store, encrypted_file, key_file, refresh_window, path}, or None: decline."""
    path = paths.config_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        data = {}
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if not _valid(data):
        return None
    values = {key: data.get(key, default) for key, default in DEFAULTS.items()}
    store = environ.get("CREDHELPER_STORE", "")
    if store:
        if store not in STORES:
            return None
        values["store"] = store
    values["path"] = path
    return values
