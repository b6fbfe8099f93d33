"""What mint prints: the export formats (`model.render`), plus `github-env`.

`github-env` appends the variables to `$GITHUB_ENV` with the multi-line-safe
`NAME<<DELIMITER` syntax (a random delimiter that occurs in no value), after
printing `::add-mask::` for the key id, the secret and the session token on
stdout, before anything else, so the runner masks them in every later log line.
"""

from __future__ import annotations

import os
import secrets
import shlex
from collections.abc import Mapping
from typing import IO

from credhelper.errors import ConfigError
from credhelper.model import Credentials, iso_z, render

#: `credhelper export`'s formats plus github-env (mint only)
FORMATS = ("claude", "process", "env", "json", "github-env")
GITHUB_ENV_VAR = "GITHUB_ENV"


def variables(creds: Credentials, region: str) -> list[tuple[str, str]]:
    assert creds.session_token and creds.expiration
    return [
        ("AWS_ACCESS_KEY_ID", creds.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", creds.secret_access_key),
        ("AWS_SESSION_TOKEN", creds.session_token),
        ("AWS_REGION", region),
        ("AWS_DEFAULT_REGION", region),
        ("AWS_CREDENTIAL_EXPIRATION", iso_z(creds.expiration)),
    ]


def text(creds: Credentials, fmt: str, region: str) -> str:
    """Output for the stdout formats; `env` also exports the region."""
    out = render(creds, fmt, profile="")
    if fmt == "env":
        out += "".join(f"export {k}={shlex.quote(region)}\n" for k in ("AWS_REGION", "AWS_DEFAULT_REGION"))
    return out


def delimiter(values: list[str]) -> str:
    while True:
        delim = f"ghadelimiter_{secrets.token_hex(16)}"
        if not any(delim in v for v in values):
            return delim


def github_env_block(pairs: list[tuple[str, str]]) -> str:
    delim = delimiter([v for _, v in pairs])
    return "".join(f"{name}<<{delim}\n{value}\n{delim}\n" for name, value in pairs)


def masks(creds: Credentials) -> str:
    values = (creds.access_key_id, creds.secret_access_key, creds.session_token or "")
    return "".join(f"::add-mask::{v}\n" for v in values if v)


class GithubEnv:
    """`$GITHUB_ENV`, opened for appending before anything is minted, so that a
    job without it fails before AWS is asked."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        path = environ.get(GITHUB_ENV_VAR)
        if not path:
            raise ConfigError(
                f"--format github-env needs ${GITHUB_ENV_VAR}, which GitHub Actions sets: "
                "run it in a workflow step, or use --format env"
            )
        try:
            self._file: IO[str] = open(path, "a", encoding="utf-8")  # closed by write()
        except OSError as exc:
            raise ConfigError(
                f"cannot append to ${GITHUB_ENV_VAR} ({path}: {exc.strerror}): check it"
            ) from None
        self.path = path

    def write(self, creds: Credentials, region: str, out: IO[str]) -> None:
        """Masks on `out` first, then the variables into the file."""
        out.write(masks(creds))
        out.flush()
        with self._file as f:
            f.write(github_env_block(variables(creds, region)))
            f.flush()
            os.fsync(f.fileno())
