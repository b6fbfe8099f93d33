"""Credentials for a running `exec`: asked from the daemon over its socket when
one runs (so a daemon restart between two asks is harmless), minted directly
through the broker otherwise, and cached in the exec process until they are no
longer servable under credhelper's refresh policy (broker.effective_window)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from credhelper import fastpath, protocol
from credhelper.broker import SERVE_FLOOR, effective_window
from credhelper.errors import CredhelperError, UpstreamError
from credhelper.model import Credentials, parse_time

Fetch = Callable[[], Credentials]


def utcnow() -> datetime:
    return datetime.now(UTC)


class ExitCodeError(CredhelperError):
    """An error the daemon reported with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def from_daemon(profile: str, environ: Mapping[str, str], socket: str | None = None) -> Credentials | None:
    """The daemon's `export --format json` answer; None when no daemon can
    answer (no socket, refused, a fallback): the caller mints directly.
    The daemon's own errors (login required, upstream) are raised."""
    if environ.get(fastpath.CHAIN_ENV):
        return None
    if profile == "default" and environ.get("AWS_ACCESS_KEY_ID"):
        return None  # the environment source: the daemon sees another environment
    path = socket or environ.get("CREDHELPER_SOCKET") or fastpath.socket_path()
    if not os.path.exists(path):
        return None
    client_env = {k: environ[k] for k in protocol.CLIENT_ENV if k in environ}
    request = protocol.encode_request("export", {"profile": profile, "format": "json"}, client_env)
    answer = fastpath.ask_daemon(path, request)
    if answer is None:
        return None
    kind, code, body = answer
    if kind == "error" and code not in (0, 1):
        raise ExitCodeError(body, code)
    if kind != "ok":
        return None
    try:
        data = json.loads(body)
        return Credentials(
            access_key_id=data["AccessKeyId"], secret_access_key=data["SecretAccessKey"],
            session_token=data["SessionToken"], expiration=parse_time(data["Expiration"]),
            source=str(data.get("Source") or ""),
        )
    except (ValueError, KeyError, TypeError):
        return None  # garbage: the direct path decides


def direct(profile: str, environ: Mapping[str, str]) -> Credentials:
    """Servable credentials from the store, else minted under the profile lock
    (export's direct path, with a fresh budget for each ask)."""
    from credhelper import settings as settings_mod
    from credhelper.broker import Broker
    from credhelper.deadline import Deadline
    from credhelper.sources.process import check_recursion
    from credhelper.store import open_store

    check_recursion(profile, environ)
    settings = settings_mod.load()
    deadline = Deadline(settings.export_timeout)
    broker = Broker(settings=settings, store=open_store(settings, deadline), environ=environ)
    return broker.get(profile, deadline=deadline)


def daemon_or_direct(profile: str, environ: Mapping[str, str]) -> Fetch:
    """The real fetch: the daemon when it answers, else the direct path."""
    env = dict(environ)

    def fetch() -> Credentials:
        return from_daemon(profile, env) or direct(profile, env)

    return fetch


class CachedCredentials:
    """`fetch()` behind a cache: `get()` returns credentials with more than their
    effective window left, asking again (once, under a lock shared by the
    endpoint's threads) when the cached ones are no longer servable.

    The daemon's answers carry no `issued` time, so their lifetime, and with it
    the window the daemon applies, is not known: at least the window of a
    lifetime equal to what they had left when received (they are never served
    below it), at most the configured one. In between, each ask tries for
    fresher ones (the daemon refreshes on its own schedule) and keeps the
    cached ones if it gets nothing that expires later."""

    def __init__(self, fetch: Fetch, *, refresh_window: int,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.fetch = fetch
        self.refresh_window = refresh_window
        self.now = now
        self.asks = 0
        self._lock = threading.Lock()
        self._cached: Credentials | None = None
        self._received: datetime | None = None

    def window(self, creds: Credentials, received: datetime) -> float:
        """The effective window (its lower bound for credentials without `issued`)."""
        if creds.expiration is None:
            return float(self.refresh_window)
        lifetime = (creds.expiration - (creds.issued or received)).total_seconds()
        return effective_window(lifetime, self.refresh_window)

    def servable(self, creds: Credentials, received: datetime) -> bool:
        return creds.remaining(self.now()) > self.window(creds, received)

    def _settled(self, creds: Credentials, received: datetime) -> bool:
        """Servable without asking for fresher ones."""
        if creds.issued is not None:
            return self.servable(creds, received)
        upper = max(float(self.refresh_window), float(SERVE_FLOOR))
        return creds.remaining(self.now()) > max(upper, self.window(creds, received))

    def get(self) -> Credentials:
        with self._lock:
            cached, received = self._cached, self._received
            if cached is not None and received is not None:
                if self._settled(cached, received):
                    return cached
                if self.servable(cached, received):
                    return self._fresher(cached, received)
            return self._ask()

    def _fresher(self, cached: Credentials, received: datetime) -> Credentials:
        try:
            creds = self._ask()
        except CredhelperError:
            creds = cached  # what we had still serves
        assert creds.expiration is not None and cached.expiration is not None
        if creds.expiration <= cached.expiration:
            self._cached, self._received = cached, received
            return cached
        return creds

    def _ask(self) -> Credentials:
        received = self.now()
        creds = self.fetch()
        self.asks += 1
        if creds.expiration is None or not creds.session_token:
            raise UpstreamError("the credentials have no session token or expiration: "
                                "check the profile's source")
        if not self.servable(creds, received):
            raise UpstreamError(
                f"the credentials expire in {int(creds.remaining(self.now()))} s, within "
                "their refresh window: check the daemon (credhelper status) and the profile's source"
            )
        self._cached, self._received = creds, received
        return creds
