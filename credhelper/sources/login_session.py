"""`login_session` profiles (`aws login`, AWS CLI 2.32+) → the credentials in
botocore's login token cache, refreshed through botocore's own
`LoginCredentialFetcher` (AWS Sign-In CreateOAuth2Token with a DPoP proof).

The cache file, `<AWS_LOGIN_CACHE_DIRECTORY or ~/.aws/login/cache>/
<sha256(login_session)>.json`, is shared with the AWS CLI and every SDK:
- read-refresh-write happens under a credhelper lock named after the file
  (`login:<sha256>`), inside the broker's profile lock, so that credhelper
  processes (and several profiles of one session) refresh it once and never
  lose the rotated refresh token to each other;
- the rotated token is written back atomically (temp file + os.replace, 0600);
- the fetcher refreshes only when 300 s or less remain, but credhelper stops
  serving 15-minute credentials earlier (its effective window), so the token
  is handed to the fetcher through a loader that presents it as due. The
  fetcher's own clock is left alone: it computes the `expiresAt` it writes;
- a refresh refused because another program (the AWS CLI, an SDK) rotated the
  token meanwhile is answered from the file it wrote;
- a session that cannot be refreshed is `LoginRequired` naming `aws login`.

awscrt (DPoP signing, through botocore.compat) loads with botocore; the export
fast path imports neither.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from credhelper import fileedit
from credhelper.errors import ConfigError, CredhelperError, LoginRequired, UpstreamError
from credhelper.model import Credentials, parse_time
from credhelper.sources.base import Context, upstream

NAME = "login-session"
#: the file's credentials are used as they are while they can be served this long
REUSE_MARGIN = 60
#: presented to the fetcher as the token's expiry, so that it refreshes
DUE = "1970-01-01T00:00:00Z"
MIN_CLI = (2, 32)


def cache_dir(environ: Mapping[str, str]) -> str:
    """botocore's `get_login_token_cache_directory`, for this environment."""
    custom = environ.get("AWS_LOGIN_CACHE_DIRECTORY")
    if custom:
        return os.path.expanduser(os.path.expandvars(custom))
    return os.path.join(os.path.expanduser("~"), ".aws", "login", "cache")


def cache_key(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()


def cache_path(session: str, environ: Mapping[str, str]) -> str:
    return os.path.join(cache_dir(environ), cache_key(session) + ".json")


def read_token(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_token(path: str, token: Mapping[str, Any]) -> None:
    """Atomically, mode 0600 in a 0700 directory: a reader sees the old file or the new one."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fileedit.write_atomically(Path(path), json.dumps(token).encode("utf-8"), 0o600)


class DueLoader:
    """The fetcher's token loader: the file, with its expiry presented as due.
    The fetcher replaces the whole `accessToken` (expiry included) before it
    saves, so the presented expiry never reaches the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.saved: dict[str, Any] | None = None

    def load_token(self, session_name: str) -> dict[str, Any]:
        token = read_token(self.path)
        if not token:  # gone since it was read (the fetcher would fail on None)
            from botocore.exceptions import LoginTokenLoadError

            raise LoginTokenLoadError(error_msg="the token cache file is gone or unreadable")
        due = copy.deepcopy(token)
        if isinstance(due.get("accessToken"), dict):
            due["accessToken"]["expiresAt"] = DUE
        return due

    def save_token(self, session_name: str, token: dict[str, Any]) -> None:
        write_token(self.path, token)
        self.saved = token


def to_credentials(token: Mapping[str, Any]) -> Credentials | None:
    try:
        access = token["accessToken"]
        return Credentials(
            str(access["accessKeyId"]), str(access["secretAccessKey"]), str(access["sessionToken"]),
            parse_time(access["expiresAt"]), NAME,
        )
    except (KeyError, TypeError, ValueError):
        return None


def login_remedy(profile: str) -> str:
    return f"run aws login --profile {profile} (or credhelper login --profile {profile})"


class SessionEnded(LoginRequired):
    """The `aws login` session cannot be refreshed: the user signs in again."""

    def __init__(self, profile: str, reason: str, remedy: str | None = None) -> None:
        self.profile = profile
        CredhelperError.__init__(
            self, f"{reason} for profile {profile}: {remedy or login_remedy(profile)}")


@dataclass
class LoginSessionSource:
    profile: str
    session: str
    ctx: Context
    name: str = NAME
    cacheable: bool = True

    def basis(self) -> str:
        return f"{NAME}:{self.session}"

    @property
    def path(self) -> str:
        return cache_path(self.session, self.ctx.environ)

    def fetch(self) -> Credentials:
        from credhelper.locking import profile_lock

        with profile_lock(f"login:{cache_key(self.session)}", self.ctx.deadline.remaining()):
            token = self._token()
            creds = to_credentials(token)
            if creds is not None and self._usable(creds):
                return creds  # refreshed by another program, or still good
            return self._refresh(token)

    def _token(self) -> dict[str, Any]:
        token = read_token(self.path)
        if token is None:
            where = cache_dir(self.ctx.environ)
            raise SessionEnded(self.profile, f"no aws login session {self.session} in {where}")
        if not token or not all(k in token for k in ("accessToken", "refreshToken", "dpopKey", "clientId")):
            raise SessionEnded(self.profile, f"the aws login token cache {self.path} is unreadable")
        return token

    def _usable(self, creds: Credentials) -> bool:
        from credhelper.broker import MIN_SERVING, effective_window

        left = creds.remaining(self.ctx.now())
        window = effective_window(left, self.ctx.settings.refresh_window)
        return left - window > max(REUSE_MARGIN, MIN_SERVING)

    def _refresh(self, token: dict[str, Any]) -> Credentials:
        try:
            return self._call_fetcher()
        except SessionEnded:
            # Another program may have rotated the refresh token meanwhile (it takes
            # no lock of ours): then the session lives on in the file it wrote.
            again = read_token(self.path) or {}
            if again.get("refreshToken") in (None, token.get("refreshToken")):
                raise
            creds = to_credentials(again)
            if creds is not None and self._usable(creds):
                return creds
            return self._call_fetcher()

    def _call_fetcher(self) -> Credentials:
        import botocore.exceptions as bce
        from botocore.credentials import LoginCredentialFetcher

        loader = DueLoader(self.path)
        # (the stubs call token_loader a callable; botocore calls its load/save_token)
        fetcher = LoginCredentialFetcher(self.session, loader, self._client)  # type: ignore[arg-type]
        with upstream("CreateOAuth2Token (aws login session refresh)", self.profile):
            try:
                fetcher.refresh_credentials()
            except bce.LoginRefreshRequired:
                raise SessionEnded(self.profile, "the aws login session expired, was revoked or "
                                   "the user's credentials changed") from None
            except bce.LoginInsufficientPermissions:
                raise UpstreamError(
                    f"refreshing the aws login session of profile {self.profile} was denied: "
                    "the signed-in identity needs signin:CreateOAuth2Token; ask your administrator"
                ) from None
            except bce.LoginTokenLoadError:
                raise SessionEnded(
                    self.profile, f"the aws login token cache {self.path} is unusable") from None
            except bce.LoginError as exc:
                cause = exc.__cause__
                code = getattr(cause, "response", {}).get("error", "") if cause is not None else ""
                raise SessionEnded(
                    self.profile, f"AWS Sign-In refused the session refresh ({code or 'error'})"
                ) from None
            except bce.MissingDependencyException:
                raise ConfigError("aws login sessions need awscrt: pip install 'botocore[crt]' "
                                  "into credhelper's environment") from None
        creds = to_credentials(loader.saved or {})
        if creds is None:
            raise UpstreamError(f"AWS Sign-In answered the refresh for profile {self.profile} without "
                                "credentials: check AWS_ENDPOINT_URL_SIGNIN and the proxy")
        return creds

    def _client(self, service: str, config: Any = None, region_name: str | None = None) -> Any:
        # unsigned (the fetcher asks for it; ClientFactory does it for no creds);
        # AWS_ENDPOINT_URL_SIGNIN is honoured by botocore's client creation
        return self.ctx.clients.client(service, self.profile, None, region=region_name)


def from_profile(profile: str, ctx: Context) -> LoginSessionSource | None:
    session = ctx.setting(profile, "login_session")
    if not session:
        return None
    return LoginSessionSource(profile, session, ctx)


# ------------------------------------------------------------------ `credhelper login`


def session_profile(config: Any, profile: str) -> str | None:
    """The profile on `profile`'s source_profile chain that holds login_session."""
    seen: set[str] = set()
    current: str | None = profile
    while current is not None and current not in seen:
        seen.add(current)
        if config.get(current, "login_session"):
            return current
        current = config.get(current, "source_profile")
    return None


def cli_version(aws: str, run: Callable[..., Any] = subprocess.run) -> tuple[int, int] | None:
    try:
        done = run([aws, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"aws-cli/(\d+)\.(\d+)", f"{done.stdout} {done.stderr}")
    return (int(found.group(1)), int(found.group(2))) if found else None


def aws_login(profile: str, environ: Mapping[str, str]) -> str:
    """Run `aws login --profile P` (AWS CLI 2.32+) on this terminal."""
    aws = shutil.which("aws", path=environ.get("PATH"))
    version = cli_version(aws) if aws else None
    if aws is None or version is None or version < MIN_CLI:
        found = "no aws on PATH" if aws is None else f"{aws} is version {version or 'unknown'}"
        raise SessionEnded(
            profile, f"aws login needs AWS CLI 2.32 or later ({found})",
            "install it (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html), "
            f"then run aws login --profile {profile}")
    rc = subprocess.run([aws, "login", "--profile", profile], check=False).returncode
    if rc != 0:
        raise SessionEnded(profile, f"aws login exited with {rc}")
    return f"signed in with aws login for profile {profile}"
