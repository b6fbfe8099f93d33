"""Cache, refresh policy and single-flight over the sources and the store.

Used by the daemon and by export's direct path alike. The rules
(product.md "Interfaces: Refresh window"):
- credentials are served only while they have more than the *effective*
  window left, and are refreshed before that point;
- the effective window is the configured one while the credentials live at
  least `MIN_SERVING` longer than it; for shorter-lived ones it is half their
  lifetime (so they are served for a while instead of refreshed in a loop);
  never below `SERVE_FLOOR`: Claude Code caches credentials with 6 minutes or
  less left for a whole hour;
- minting happens under the profile's cross-process lock, and the store is
  read again once the lock is held: N concurrent callers, one upstream call.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from credhelper import sources
from credhelper.config import AwsConfig
from credhelper.deadline import Deadline, DeadlineExceeded
from credhelper.errors import CorruptItem, CredhelperError, UpstreamError
from credhelper.locking import profile_lock
from credhelper.model import Credentials, iso_z
from credhelper.policy import MIN_SERVING, SERVE_FLOOR, effective_window
from credhelper.settings import Settings
from credhelper.sources.base import ClientFactory, Context, Source
from credhelper.store import Store, item


def utcnow() -> datetime:
    return datetime.now(UTC)


class Broker:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        config: AwsConfig | None = None,
        clients: ClientFactory | None = None,
        now: Callable[[], datetime] = utcnow,
        environ: Mapping[str, str] | None = None,
        lock_dir: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.config = config if config is not None else AwsConfig.load()
        self.clients = clients or ClientFactory(self.config, budget=settings.export_timeout)
        self.now = now
        self.environ = environ if environ is not None else os.environ
        self.lock_dir = lock_dir
        #: upstream mints per profile by this broker (the daemon tells "minted" from "loaded")
        self.mints: Counter[str] = Counter()

    # -- policy -----------------------------------------------------------------
    def window(self, creds: Credentials) -> float:
        """The effective refresh window of these credentials, in seconds."""
        if creds.expiration is None:
            return float(self.settings.refresh_window)
        issued = creds.issued or self.now()
        lifetime = (creds.expiration - issued).total_seconds()
        return effective_window(lifetime, self.settings.refresh_window)

    def servable(self, creds: Credentials) -> bool:
        return creds.remaining(self.now()) > self.window(creds)

    def refresh_at(self, creds: Credentials) -> datetime:
        """When these credentials stop being served (refresh before this)."""
        assert creds.expiration is not None
        return creds.expiration - timedelta(seconds=self.window(creds))

    # -- sources ------------------------------------------------------------------
    def deadline(self) -> Deadline:
        """A fresh budget (the daemon's refreshes); an export brings its own."""
        return Deadline(self.settings.export_timeout)

    def context(self, chain: tuple[str, ...] = (), deadline: Deadline | None = None) -> Context:
        dl = deadline or self.deadline()
        return Context(
            config=self.config, settings=self.settings, store=self.store, clients=self.clients,
            credentials_of=lambda p, ch: self.get(p, chain=ch, deadline=dl), environ=self.environ,
            now=self.now, chain=chain, deadline=dl,
        )

    def source(self, profile: str, chain: tuple[str, ...] = (), deadline: Deadline | None = None) -> Source:
        return sources.resolve(profile, self.context(chain, deadline))

    # -- cache ---------------------------------------------------------------------
    def cached(self, profile: str, source: Source) -> Credentials | None:
        """What the store holds for `profile`, if it was minted from the same basis.
        A damaged cache item is a miss: it is derivable, and is overwritten."""
        try:
            raw = self.store.get(item("creds", profile))
        except CorruptItem:
            return None
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            if record.get("basis") != source.basis():
                return None
            return Credentials.from_record(record["credentials"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def _save(self, profile: str, source: Source, creds: Credentials) -> None:
        record = {"v": 1, "basis": source.basis(), "credentials": creds.to_record()}
        self.store.set(item("creds", profile), json.dumps(record))

    def forget(self, profile: str) -> None:
        self.store.delete(item("creds", profile))

    # -- the entry points --------------------------------------------------------------
    def get(
        self, profile: str, *, chain: tuple[str, ...] = (), deadline: Deadline | None = None,
    ) -> Credentials:
        """Servable credentials for `profile`: from the cache, else minted once,
        all within `deadline` (a fresh budget when None)."""
        dl = deadline or self.deadline()
        source = self.source(profile, chain, dl)
        if not source.cacheable:
            return self._checked(profile, self._fetch(profile, source, dl), cached=False)
        creds = self.cached(profile, source)
        if creds is not None and self.servable(creds):
            return creds
        with profile_lock(profile, dl.remaining(), self.lock_dir):
            creds = self.cached(profile, source)  # someone else may have minted meanwhile
            if creds is not None and self.servable(creds):
                return creds
            return self._mint(profile, source, dl)

    def refresh(
        self, profile: str, *, stale: Credentials | None = None, deadline: Deadline | None = None,
    ) -> Credentials:
        """Mint now (the daemon's scheduled refresh) to replace `stale`, unless
        another process minted newer servable credentials meanwhile."""
        dl = deadline or self.deadline()
        source = self.source(profile, deadline=dl)
        if not source.cacheable:
            return self._checked(profile, self._fetch(profile, source, dl), cached=False)
        with profile_lock(profile, dl.remaining(), self.lock_dir):
            creds = self.cached(profile, source)
            newer = (
                creds is not None and stale is not None and creds.expiration is not None
                and stale.expiration is not None and creds.expiration > stale.expiration
            )
            if creds is not None and newer and self.servable(creds):
                return creds
            return self._mint(profile, source, dl)

    @staticmethod
    def _fetch(profile: str, source: Source, deadline: Deadline) -> Credentials:
        """`source.fetch()` within the deadline, whatever the upstream does
        (a trickling server defeats every per-read timeout)."""
        try:
            return deadline.call(f"fetch:{profile}", source.fetch)
        except DeadlineExceeded:
            raise UpstreamError(
                f"getting credentials for profile {profile} ({source.name}) took longer than the "
                f"{deadline.budget:.0f} s budget: check the network, proxy and AWS_ENDPOINT_URL_* "
                "settings, or raise export_timeout"
            ) from None

    def _mint(self, profile: str, source: Source, deadline: Deadline) -> Credentials:
        # Whole seconds, and `issued` taken before the call: the lifetime is what
        # was granted (900 s, not 899.9), and the same after a store round trip.
        issued = self.now().replace(microsecond=0)
        creds = self._fetch(profile, source, deadline)
        creds = replace(
            creds, issued=issued,
            expiration=creds.expiration.replace(microsecond=0) if creds.expiration else None,
        )
        creds = self._checked(profile, creds, cached=True)
        self._save(profile, source, creds)
        self.mints[profile] += 1
        return creds

    def _checked(self, profile: str, creds: Credentials, *, cached: bool) -> Credentials:
        if not creds.session_token or creds.expiration is None:
            raise UpstreamError(
                f"profile {profile} yielded credentials without a session token or expiration: "
                "Claude Code cannot use them; check the profile's source"
            )
        left, window = creds.remaining(self.now()), self.window(creds)
        if left <= 0:
            raise UpstreamError(
                f"profile {profile} got credentials that expired {int(-left)} s ago by this machine's "
                f"clock ({iso_z(creds.expiration)}, now {iso_z(self.now())}): check the system clock "
                "(date -u; enable NTP)"
            )
        lifetime = (creds.expiration - creds.issued).total_seconds() if creds.issued else left
        if left <= window or (cached and lifetime - window < MIN_SERVING):
            raise UpstreamError(
                f"profile {profile} got credentials valid for only {int(left)} s; credhelper "
                f"needs more than {SERVE_FLOOR + MIN_SERVING} s: raise duration_seconds "
                "or renew them"
            )
        return creds


__all__ = ["MIN_SERVING", "SERVE_FLOOR", "Broker", "CredhelperError", "effective_window"]
