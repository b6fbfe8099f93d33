"""The AWS config and credentials files, read as botocore reads them, with the
standard library's parser only (`import botocore.configloader` alone costs
several times a bare interpreter start).

This mirrors, line for line, botocore's `configloader.raw_config_parse`,
`configloader.build_profile_map` and `Session.full_config` (the merge of the
credentials file's sections into the profiles): the same `RawConfigParser`,
`[profile NAME]` split with `shlex` (two parts, else ignored), `[default]`,
`[sso-session NAME]`, indented sub-sections, `AWS_CONFIG_FILE` /
`AWS_SHARED_CREDENTIALS_FILE` (set but empty counts as set, as in botocore),
`$VAR` and `~` expansion. tests/test_lean.py checks it against botocore over
generated configs. Anything it cannot read raises `Unreadable`: the caller
then leaves the export to the full path, which reports the problem.
"""

from __future__ import annotations

import configparser
import os
import shlex
from collections.abc import Mapping
from typing import Any


class Unreadable(Exception):
    """A file botocore would refuse (or read differently): not for the lean path."""


def _raw_config_parse(path: str) -> dict[str, dict[str, Any]] | None:
    """botocore.configloader.raw_config_parse; None where it raises ConfigNotFound."""
    path = os.path.expanduser(os.path.expandvars(path))
    if not os.path.isfile(path):
        return None
    cp = configparser.RawConfigParser()
    try:
        cp.read([path])
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise Unreadable(path) from exc
    config: dict[str, dict[str, Any]] = {}
    for section in cp.sections():
        config[section] = {}
        for option in cp.options(section):
            value: Any = cp.get(section, option)
            if value.startswith("\n"):
                value = _parse_nested(value, path)
            config[section][option] = value
    return config


def _parse_nested(value: str, path: str) -> dict[str, str]:
    parsed = {}
    for line in value.splitlines():
        line = line.strip()
        if not line:
            continue
        if "=" not in line:  # botocore: ValueError -> ConfigParseError
            raise Unreadable(path)
        key, val = line.split("=", 1)
        parsed[key.strip()] = val.strip()
    return parsed


def _parse_section(key: str, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    try:
        parts = shlex.split(key)
    except ValueError:
        return {}
    return {parts[1]: values} if len(parts) == 2 else {}


def _build_profile_map(parsed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    profiles: dict[str, Any] = {}
    sso_sessions: dict[str, Any] = {}
    for key, values in parsed.items():
        if key.startswith("profile"):
            profiles.update(_parse_section(key, values))
        elif key.startswith("sso-session"):
            sso_sessions.update(_parse_section(key, values))
        elif key == "default":
            profiles[key] = values
    return {"profiles": profiles, "sso_sessions": sso_sessions}


class LeanConfig:
    """The same views as credhelper.config.AwsConfig, over the same data."""

    def __init__(self, profiles: Mapping[str, Any], sso_sessions: Mapping[str, Any]) -> None:
        self.profiles, self.sso_sessions = profiles, sso_sessions

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> LeanConfig:
        config_file = environ.get("AWS_CONFIG_FILE", "~/.aws/config")
        creds_file = environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
        parsed = _raw_config_parse(config_file)
        full = _build_profile_map(parsed) if parsed is not None else {"profiles": {}, "sso_sessions": {}}
        profiles: dict[str, Any] = full["profiles"]
        for name, values in (_raw_config_parse(creds_file) or {}).items():
            if name not in profiles:
                profiles[name] = values
            else:
                profiles[name].update(values)
        return cls(profiles, full["sso_sessions"])

    def profile(self, name: str) -> Mapping[str, Any] | None:
        section = self.profiles.get(name)
        return section if isinstance(section, Mapping) else None

    def get(self, profile: str, key: str) -> str | None:
        value = (self.profile(profile) or {}).get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None
