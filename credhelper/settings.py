"""credhelper's own settings: one small TOML file (`CREDHELPER_CONFIG`, else
`<user config dir>/credhelper/config.toml`). A missing file means defaults;
unknown keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any

from credhelper import paths
from credhelper.deadline import DEFAULT_BUDGET
from credhelper.errors import ConfigError

STORES = ("keyring", "encrypted-file", "memory")
DEFAULT_REFRESH_WINDOW = 900


@dataclass(frozen=True)
class Settings:
    #: seconds before expiry at which credentials stop being served and are refreshed
    refresh_window: int = DEFAULT_REFRESH_WINDOW
    #: where secrets live: the OS keyring, an AES-256-GCM file, or process memory
    store: str = "keyring"
    #: profiles the daemon keeps fresh from its start
    warm_profiles: tuple[str, ...] = ()
    #: service name of keyring items (separate installs can share one keyring)
    keyring_service: str = "credhelper"
    #: encrypted-file store: path of the file (default under the state dir)
    encrypted_file: str = ""
    #: encrypted-file store: where its key lives: "keyring", or a key file path
    #: (headless machines; `$CREDENTIALS_DIRECTORY/credhelper-key` under systemd)
    key_file: str = ""
    #: total seconds an export may take, whatever it waits for (daemon, lock,
    #: upstream calls, helper processes); then it ends with exit 6
    export_timeout: int = DEFAULT_BUDGET
    #: the daemon's upstream calls (scheduled refreshes, warm-up) per second, at most
    max_refresh_rate: int = 5
    #: desktop notifications when a sign-in is needed (daemon/sessions.py, login)
    notifications: bool = True
    #: where the settings came from (not a key of the file)
    path: str = field(default="", compare=False)

    def encrypted_file_path(self) -> str:
        return self.encrypted_file or os.path.join(paths.state_dir(), "store.enc")


_TYPES: dict[str, type] = {
    "refresh_window": int,
    "store": str,
    "warm_profiles": list,
    "keyring_service": str,
    "encrypted_file": str,
    "key_file": str,
    "export_timeout": int,
    "max_refresh_rate": int,
    "notifications": bool,
}
#: the documented range of each number, in seconds (README "Settings")
RANGES: dict[str, tuple[int, int]] = {
    "refresh_window": (60, 86400),
    "export_timeout": (5, 600),
    "max_refresh_rate": (1, 100),
}
#: the unit of a range, where it is not seconds
UNITS = {"max_refresh_rate": "calls per second"}
#: old names still accepted: `mint_timeout` was the lock wait, now part of the export budget
ALIASES = {"mint_timeout": "export_timeout"}
MAX_TEXT = 4096
MAX_WARM = 10000


def load(path: str | None = None) -> Settings:
    """The settings file's values; `CREDHELPER_STORE` overrides its `store`
    (CI jobs without a keyring: `CREDHELPER_STORE=memory`)."""
    import dataclasses

    path = path or paths.config_path()
    store = os.environ.get("CREDHELPER_STORE", "")
    if store and store not in STORES:
        raise ConfigError(
            f"CREDHELPER_STORE={store!r} is not a store: set it to one of {', '.join(STORES)}, or unset it"
        )
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        settings = Settings(path=path)
    except (OSError, ValueError) as exc:  # ValueError: TOMLDecodeError, not UTF-8, a 5000-digit number
        reason = _short_reason(exc)
        raise ConfigError(f"cannot read settings file {path}: {reason}: fix or remove it") from None
    else:
        settings = parse(data, path)
    return dataclasses.replace(settings, store=store) if store else settings


def _short_reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


def parse(data: dict[str, Any], path: str = "<settings>") -> Settings:
    known = {f.name for f in fields(Settings)} - {"path"}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in ALIASES and ALIASES[key] not in data:
            key = ALIASES[key]
        elif key in ALIASES:
            raise ConfigError(f"{path} sets both {key!r} and {ALIASES[key]!r}: remove {key!r}")
        if key not in known:
            raise ConfigError(
                f"unknown key {key!r} in {path}: known keys are {', '.join(sorted(known))}"
            )
        want = _TYPES[key]
        if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
            raise ConfigError(
                f"key {key!r} in {path} must be a {want.__name__}, not {type(value).__name__}"
            )
        if isinstance(value, str) and (len(value) > MAX_TEXT or "\x00" in value):
            raise ConfigError(f"key {key!r} in {path} must be at most {MAX_TEXT} characters, without NUL")
        values[key] = value
    if "warm_profiles" in values:
        profiles = values["warm_profiles"]
        if len(profiles) > MAX_WARM or not all(
            isinstance(p, str) and p and len(p) <= 256 and "\x00" not in p for p in profiles
        ):
            raise ConfigError(
                f"key 'warm_profiles' in {path} must be a list of at most {MAX_WARM} profile names"
            )
        values["warm_profiles"] = tuple(profiles)
    if values.get("store", "keyring") not in STORES:
        raise ConfigError(f"key 'store' in {path} must be one of {', '.join(STORES)}")
    for key, (low, high) in RANGES.items():
        if key in values and not low <= values[key] <= high:
            raise ConfigError(
                f"key {key!r} in {path} must be between {low} and {high} "
                f"{UNITS.get(key, 'seconds')}, not {values[key]}"
            )
    return Settings(path=path, **values)
