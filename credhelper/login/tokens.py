"""IAM Identity Center sessions and their tokens, kept in the store.

An `SsoSession` comes from a profile's `sso_session` section (or the legacy
`sso_start_url` in the profile). Its token record (access token, refresh token,
the client that issued them) lives in the store as `v1/sso-token/<key>`. The
access token is refreshed with CreateToken(grant_type=refresh_token) within
`REFRESH_WINDOW` of its expiry, under a cross-process lock, and the rotated
refresh token is written back atomically: concurrent refreshers never lose
the session. A refresh token the service refuses is dropped, so nothing
retries it; the access token is used until it expires, then a login is needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import botocore.exceptions

from credhelper.config import AwsConfig
from credhelper.errors import ConfigError, CorruptItem, LoginRequired, UpstreamError
from credhelper.locking import profile_lock
from credhelper.model import iso_z, parse_time
from credhelper.sources.base import ClientFactory, scrub, upstream
from credhelper.store import Store, item

#: botocore's SSO token refresh window
REFRESH_WINDOW = 15 * 60
#: an access token with less than this left is not used
MIN_TOKEN_LEFT = 60
DEFAULT_SCOPES = ("sso:account:access",)
_DEAD_GRANT = ("InvalidGrantException", "ExpiredTokenException", "InvalidClientException",
               "UnauthorizedClientException", "AccessDeniedException")


@dataclass(frozen=True)
class SsoSession:
    key: str
    name: str
    start_url: str
    region: str
    scopes: tuple[str, ...]


def named_sso_session(name: str, config: AwsConfig) -> SsoSession:
    """The `[sso-session NAME]` section as an SsoSession; ConfigError if it is incomplete."""
    section = config.sso_sessions.get(name)
    if not isinstance(section, Mapping):
        raise ConfigError(f"no [sso-session {name}] in the AWS config: add it")
    url, region = section.get("sso_start_url"), section.get("sso_region")
    if not url or not region:
        raise ConfigError(f"[sso-session {name}] needs sso_start_url and sso_region: add them")
    raw = str(section.get("sso_registration_scopes") or "")
    scopes = tuple(s.strip() for s in raw.split(",") if s.strip()) or DEFAULT_SCOPES
    return SsoSession(key=name, name=name, start_url=str(url), region=str(region), scopes=scopes)


def sso_session_for(profile: str, config: AwsConfig) -> SsoSession | None:
    """The IAM Identity Center session a profile signs in through, or None."""
    name = config.get(profile, "sso_session")
    if name:
        if not isinstance(config.sso_sessions.get(name), Mapping):
            raise ConfigError(f"profile {profile} names sso_session {name}, which is not defined: "
                              f"add an [sso-session {name}] section")
        return named_sso_session(name, config)
    url = config.get(profile, "sso_start_url")
    if not url:
        return None
    region = config.get(profile, "sso_region")
    if not region:
        raise ConfigError(f"profile {profile} has sso_start_url but no sso_region: add it")
    return SsoSession(key=f"url:{url}", name=url, start_url=url, region=region, scopes=DEFAULT_SCOPES)


@dataclass(frozen=True)
class TokenRecord:
    access_token: str
    expires_at: str
    refresh_token: str | None
    client_id: str
    client_secret: str
    region: str
    start_url: str

    def expiry(self) -> datetime:
        return parse_time(self.expires_at)

    def __repr__(self) -> str:  # never a token in a log or traceback
        return f"TokenRecord(expires_at={self.expires_at!r}, refreshable={bool(self.refresh_token)})"


class Tokens:
    def __init__(
        self, store: Store, clients: ClientFactory, now: Callable[[], datetime],
        lock_timeout: float = 120, lock_dir: str | None = None,
    ) -> None:
        self.store, self.clients, self.now = store, clients, now
        self.lock_timeout, self.lock_dir = lock_timeout, lock_dir

    # -- store --------------------------------------------------------------------------
    def load(self, sess: SsoSession) -> TokenRecord | None:
        key = item("sso-token", sess.key)
        raw = self.store.get(key)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            data.pop("v", None)
            return TokenRecord(**data)
        except (ValueError, TypeError):
            raise CorruptItem(
                f"store item {key} is unreadable: sign in again with credhelper login"
            ) from None

    def save(self, sess: SsoSession, record: TokenRecord) -> None:
        self.store.set(item("sso-token", sess.key), json.dumps({"v": 1, **asdict(record)}))

    def delete(self, sess: SsoSession) -> None:
        self.store.delete(item("sso-token", sess.key))

    def oidc(self, sess: SsoSession) -> Any:
        return self.clients.client("sso-oidc", None, None, region=sess.region)

    def record_from(self, sess: SsoSession, out: dict[str, Any], client_id: str,
                    client_secret: str, previous_refresh: str | None = None) -> TokenRecord:
        """A token record from a CreateToken answer."""
        expires = self.now() + timedelta(seconds=int(out.get("expiresIn", 3600)))
        return TokenRecord(
            access_token=str(out["accessToken"]), expires_at=iso_z(expires),
            refresh_token=str(out.get("refreshToken") or previous_refresh or "") or None,
            client_id=client_id, client_secret=client_secret,
            region=sess.region, start_url=sess.start_url,
        )

    # -- use -----------------------------------------------------------------------------
    def left(self, record: TokenRecord) -> float:
        return (record.expiry() - self.now()).total_seconds()

    def access_token(self, sess: SsoSession, profile: str) -> str:
        """A usable access token: the stored one, refreshed when close to expiry."""
        record = self.load(sess)
        if record is None:
            raise LoginRequired(profile, f"no IAM Identity Center session for {sess.name}")
        if self.left(record) > REFRESH_WINDOW:
            return record.access_token
        if not record.refresh_token:
            if self.left(record) > MIN_TOKEN_LEFT:
                return record.access_token
            raise LoginRequired(profile, f"IAM Identity Center session {sess.name} expired")
        with profile_lock(f"sso:{sess.key}", self.lock_timeout, self.lock_dir):
            fresh = self.load(sess)  # another process may have refreshed meanwhile
            if fresh is not None and fresh.access_token != record.access_token \
                    and self.left(fresh) > REFRESH_WINDOW:
                return fresh.access_token
            return self._refresh(sess, profile, fresh or record)

    def _refresh(self, sess: SsoSession, profile: str, record: TokenRecord) -> str:
        if not record.refresh_token:
            raise LoginRequired(profile, f"IAM Identity Center session {sess.name} expired")
        oidc = self.oidc(sess)
        try:
            out = oidc.create_token(
                clientId=record.client_id, clientSecret=record.client_secret,
                grantType="refresh_token", refreshToken=record.refresh_token,
            )
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in _DEAD_GRANT:
                return self._keep_or_raise(sess, profile, record, exc)
            # The service will never take this refresh token again: drop it, so
            # nothing retries it, and use the access token while it lasts.
            self.save(sess, replace(record, refresh_token=None))
            if self.left(record) > MIN_TOKEN_LEFT:
                return record.access_token
            raise LoginRequired(
                profile, f"IAM Identity Center session {sess.name} ended ({code})"
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            return self._keep_or_raise(sess, profile, record, exc)
        new = self.record_from(sess, out, record.client_id, record.client_secret, record.refresh_token)
        self.save(sess, new)
        return new.access_token

    def _keep_or_raise(self, sess: SsoSession, profile: str, record: TokenRecord,
                       exc: Exception) -> str:
        """A refresh that failed for a passing reason: keep the current token while it lasts."""
        if self.left(record) > MIN_TOKEN_LEFT:
            return record.access_token
        with upstream("CreateToken", profile, secrets=(record.refresh_token or "", record.client_secret)):
            raise exc
        raise UpstreamError(f"CreateToken for profile {profile} failed: {scrub(str(exc))}")

    def reject(self, sess: SsoSession, access_token: str) -> None:
        """The service refused `access_token`: mark it expired in the store, so that
        nothing uses it again and `login` signs in anew unless a refresh token can
        still replace it. A token another process has stored meanwhile is kept."""
        with profile_lock(f"sso:{sess.key}", self.lock_timeout, self.lock_dir):
            record = self.load(sess)
            if record is not None and record.access_token == access_token and self.left(record) > 0:
                self.save(sess, replace(record, expires_at=iso_z(self.now())))

    def usable(self, sess: SsoSession, profile: str) -> bool:
        """True when a sign-in is not needed (valid, or refreshed now)."""
        try:
            self.access_token(sess, profile)
            return True
        except LoginRequired:
            return False
