"""The unit/plist text: the templates, the environment the service gets, quoting.

The templates live in `service/` at the top of the source tree (product.md).
They are found in the source checkout (editable install), else as package data
(`credhelper/service_templates/`), else as data files installed under
`<prefix>/share/credhelper/service/` (pyproject `[tool.setuptools] data-files`).

The service environment freezes only what it must (a value set for one shell
would otherwise be baked into a service that outlives it): the three file
locations, made absolute, and a PATH of the standard directories plus the
directories of the configured profiles' `credential_process` helpers, looked up
on the installing shell's PATH. Never the shell's PATH itself, never
`CREDHELPER_SOCKET` (the service listens on the default socket), never a secret.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import shlex
import shutil
import site
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from credhelper import paths
from credhelper.errors import ConfigError
from credhelper.service.common import LAUNCHD, SYSTEMD, TEMPLATES, home, log_path

#: Copied from the installing shell when set: paths only. With them the daemon
#: reads the same files as the `credhelper export` that asks it (the daemon
#: sends a client whose files differ to the direct path).
COPIED = ("CREDHELPER_CONFIG", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
#: Never copied, although the installing shell may have them.
NOT_COPIED = ("CREDHELPER_SOCKET",)
#: The service's PATH starts from these (systemd's own default for user
#: units; on macOS launchd's plus Homebrew's).
STANDARD_PATH = {
    SYSTEMD: ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"),
    LAUNCHD: ("/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"),
}


def launcher(argv0: str | None = None, python: str | None = None) -> str:
    """This installation's `credhelper` command (paths.this_launcher)."""
    return paths.this_launcher(argv0, python, run_as="credhelper service install")


def _template_candidates(name: str) -> list[Any]:
    """Source checkout, package data, installed data files: Traversables/Paths."""
    root = Path(__file__).resolve().parents[2]
    out: list[Any] = []
    if (root / "pyproject.toml").is_file():  # a source checkout, not site-packages
        out.append(root / "service" / name)
    try:
        out.append(importlib.resources.files("credhelper") / "service_templates" / name)
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - odd loaders
        pass
    prefixes = [sys.prefix]
    try:
        prefixes.append(site.getuserbase())
    except AttributeError:  # pragma: no cover - embedded interpreters
        pass
    out += [Path(p) / "share" / "credhelper" / "service" / name for p in prefixes]
    return out


def template(kind: str) -> str:
    name = TEMPLATES[kind]
    candidates = _template_candidates(name)
    for candidate in candidates:
        if candidate.is_file():
            text: str = candidate.read_text(encoding="utf-8")
            return text
    raise ConfigError(
        f"the service template {name} is missing from this installation "
        f"(looked in {', '.join(str(c) for c in candidates)}): reinstall credhelper"
    )


# ------------------------------------------------------------------ environment


def _expand(value: str, env: Mapping[str, str]) -> str:
    if value == "~" or value.startswith("~/"):
        value = str(home(env)) + value[1:]
    return os.path.abspath(value)


def helper_dirs(env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(directories, notes): where the `credential_process` helpers of the
    profiles in the AWS config file live, found the way the installing shell
    finds them (absolute paths as they are, bare names on its PATH)."""
    import botocore.configloader
    import botocore.exceptions

    path = _expand(env.get("AWS_CONFIG_FILE") or "~/.aws/config", env)
    try:
        profiles = botocore.configloader.load_config(path).get("profiles", {})
    except botocore.exceptions.ConfigNotFound:
        return [], []
    except botocore.exceptions.BotoCoreError as exc:
        return [], [f"could not read {path} for credential_process helpers ({exc})"]
    dirs: list[str] = []
    notes: list[str] = []
    for name, section in profiles.items():
        command = section.get("credential_process") if isinstance(section, dict) else None
        if not isinstance(command, str) or not command.strip():
            continue
        try:
            program = shlex.split(command)[0]
        except (ValueError, IndexError):
            notes.append(f"profile {name}: cannot parse credential_process {command!r}")
            continue
        if "/" in program:
            found: str | None = _expand(program, env)
        else:
            found = shutil.which(program, path=env.get("PATH", ""))
            if found is None:
                notes.append(
                    f"profile {name}: credential_process program {program} is not on this shell's PATH"
                )
                continue
        assert found is not None
        directory = os.path.dirname(os.path.abspath(found))
        if directory not in dirs:
            dirs.append(directory)
    return dirs, notes


def service_environment(
    env: Mapping[str, str] | None = None, kind: str = SYSTEMD
) -> tuple[dict[str, str], list[str]]:
    """(variables, notes): what the service gets. PATH = the helpers'
    directories then the standard ones; COPIED made absolute (the service's
    working directory is not the installer's). Notes say what was left out."""
    env = os.environ if env is None else env
    dirs, notes = helper_dirs(env)
    entries = [*dirs, *(d for d in STANDARD_PATH[kind] if d not in dirs)]
    out = {"PATH": os.pathsep.join(entries)}
    for name in COPIED:
        value = env.get(name)
        if value:
            out[name] = _expand(value, env)
    for name in NOT_COPIED:
        if env.get(name):
            notes.append(
                f"{name} is set in this shell but not copied: the service uses the default "
                f"socket; unset {name} where credhelper export runs"
            )
    return out, notes


# ------------------------------------------------------------------ rendering


def _check_value(what: str, value: str) -> None:
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise ConfigError(f"{what} contains a control character: {value!r}: use a plain path")


_SAFE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def _systemd_quote(value: str, *, exec_line: bool) -> str:
    """One word for a unit file. `%` starts a specifier everywhere. In ExecStart
    the executable is unquoted but neither `$`-expanded nor allowed to hold
    quotes or backslashes (systemd: "Executable name contains special characters")."""
    if exec_line and any(c in value for c in "\"'\\"):
        raise ConfigError(
            f"systemd cannot run a path with quotes or backslashes: {value!r}: install credhelper elsewhere"
        )
    value = value.replace("%", "%%")
    if _SAFE.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fill(text: str, values: Mapping[str, str], blocks: Mapping[str, list[str]]) -> str:
    """`{name}` inline from `values`; a line holding only `{name}` becomes the
    lines of `blocks[name]` at that line's indentation (or disappears)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise ConfigError(f"the service template has an unknown placeholder {m.group(0)}: reinstall")
        return values[m.group(1)]

    out: list[str] = []
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("{") and stripped.endswith("}") and stripped[1:-1] in blocks:
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + b + "\n" for b in blocks[stripped[1:-1]]]
        else:
            out.append(re.sub(r"\{(\w+)\}", sub, line))
    return "".join(out)


def render(
    kind: str,
    executable: str,
    env: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
) -> str:
    """The unit (`systemd`) or plist (`launchd`) for `executable`, with the
    service environment `variables` (default: service_environment(env))."""
    env = os.environ if env is None else env
    if kind not in TEMPLATES:
        raise ConfigError(f"unknown service kind {kind!r}: use {SYSTEMD} or {LAUNCHD}")
    if not os.path.isabs(executable):
        raise ConfigError(f"the service needs an absolute path to credhelper, not {executable!r}")
    _check_value("the credhelper path", executable)
    if variables is None:
        variables = service_environment(env, kind)[0]
    for name, value in variables.items():
        _check_value(name, value)
    text = template(kind)
    if kind == SYSTEMD:
        return _fill(
            text,
            {"executable": _systemd_quote(executable, exec_line=True)},
            {"environment": [
                "Environment=" + _systemd_quote(f"{k}={v}", exec_line=False) for k, v in variables.items()
            ]},
        )
    block: list[str] = []
    if variables:
        block = ["<key>EnvironmentVariables</key>", "<dict>"]
        for k, v in variables.items():
            block += [f"\t<key>{xml_escape(k)}</key>", f"\t<string>{xml_escape(v)}</string>"]
        block.append("</dict>")
    log = str(log_path(env))
    _check_value("the log path", log)
    return _fill(
        text, {"executable": xml_escape(executable), "log": xml_escape(log)}, {"environment": block}
    )
