"""The daemon's memory: each profile's credentials, its refresh schedule, and
what went wrong. Callers get credentials from memory; a profile that has none
servable is minted once however many callers ask (single-flight), through the
broker, which also holds the cross-process lock.

Refreshes run on an APScheduler job per profile at `Broker.refresh_at` minus
jitter (taken off, never added). Failures back off with jitter and keep the
still-valid credentials in service; a profile that needs a human is marked
"login required", logged once, and left alone until something changes
(a login, `keys add`, a config change, SIGHUP).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from credhelper import procs
from credhelper.broker import Broker
from credhelper.daemon.pacing import TokenBucket, needed_rate
from credhelper.deadline import Deadline
from credhelper.errors import ConfigError, CredhelperError, LoginRequired, UpstreamError
from credhelper.locking import RECURSION
from credhelper.model import Credentials, iso_z
from credhelper.sources.env import EnvSource
from credhelper.sources.process import RUNNING
from credhelper.sources.session_token import PassThroughSource

#: sources that hand out credentials anew each time (no upstream call): not kept
UNCACHED_SOURCES = (EnvSource.name, PassThroughSource.name)
#: a refresh starts this share of the serving time (at most LEAD_MAX s) before serving ends
LEAD_SHARE = 0.25
LEAD_MAX = 300.0
BACKOFF_BASE = 5.0
BACKOFF_CAP = 300.0
#: profiles asked for within this long are kept warm across restarts
RECENT_DAYS = 7


@dataclass
class ProfileState:
    name: str
    source: str = ""
    creds: Credentials | None = None
    next_refresh: datetime | None = None
    last_error: str = ""
    #: set when a human must act; raised again to callers until something changes
    login_error: LoginRequired | None = None
    failures: int = 0
    refreshes: int = 0
    last_refresh: datetime | None = None
    #: "sign-in needed, current credentials last 43m" (daemon/sessions.py), else None
    sign_in: str | None = None

    def as_status(self, now: datetime) -> dict[str, Any]:
        exp = self.creds.expiration if self.creds else None
        return {
            "profile": self.name,
            "source": self.source,
            "access_key_id": self.creds.access_key_id if self.creds else None,
            "expires_at": iso_z(exp) if exp else None,
            "expires_in": int((exp - now).total_seconds()) if exp else None,
            "next_refresh": iso_z(self.next_refresh) if self.next_refresh else None,
            "last_refresh": iso_z(self.last_refresh) if self.last_refresh else None,
            "refreshes": self.refreshes,
            "last_error": self.last_error or None,
            "login_required": self.login_error is not None,
            "sign_in": self.sign_in,
        }


class Keeper:
    def __init__(
        self,
        *,
        make_broker: Callable[[], Broker],
        scheduler: Any,
        log: Any,
        rng: random.Random | None = None,
        recent_file: str | None = None,
        on_secret: Callable[..., None] = lambda *s: None,
        pacer: TokenBucket | None = None,
    ) -> None:
        self._make_broker = make_broker
        self.broker = make_broker()
        #: paces scheduled refreshes and warm-up (max_refresh_rate); exports are not paced
        self.pacer = pacer or TokenBucket(self.broker.settings.max_refresh_rate)
        self.scheduler = scheduler
        self.log = log
        self.rng = rng or random.Random()
        self.recent_file = recent_file
        self.on_secret = on_secret
        self._states: dict[str, ProfileState] = {}
        self._inflight: dict[str, Future[Credentials]] = {}
        #: profile -> profiles its credential_process asked for (recursion guard)
        self._waits_for: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._recent: dict[str, str] = self._load_recent()

    # -- serving ------------------------------------------------------------------
    def state(self, profile: str) -> ProfileState:
        with self._lock:
            return self._states.setdefault(profile, ProfileState(profile))

    def serve_from_memory(self, profile: str) -> Credentials | None:
        """Servable credentials without any I/O, or None."""
        st = self._states.get(profile)
        creds = st.creds if st else None
        if creds is not None and creds.source not in UNCACHED_SOURCES and self.broker.servable(creds):
            return creds
        return None

    def check_login(self, profile: str) -> None:
        st = self._states.get(profile)
        if st is not None and st.login_error is not None:
            raise st.login_error.with_traceback(None)  # no growing traceback in a long-lived daemon

    def obtain(self, profile: str, deadline: Deadline | None = None) -> Credentials:
        """Credentials for a caller: one mint per profile however many ask,
        each caller waiting at most until its own deadline."""
        dl = deadline or self.broker.deadline()
        with self._lock:
            fut = self._inflight.get(profile)
            leader = fut is None
            if fut is None:
                fut = self._inflight[profile] = Future()
        if leader:
            try:
                fut.set_result(self._fetch(profile, scheduled=False, deadline=dl))
            except Exception as exc:  # noqa: BLE001 - handed to every waiter
                fut.set_exception(exc)
            finally:
                with self._lock:
                    self._inflight.pop(profile, None)
        try:
            return fut.result(timeout=dl.remaining())
        except FutureTimeout:
            raise UpstreamError(
                f"another request has been minting profile {profile} for the whole "
                f"{dl.budget:.0f} s budget: check credhelper status, or raise export_timeout"
            ) from None

    def check_recursion(self, profile: str, peer_pid: int | None) -> None:
        """Refuse a request that a credential_process of this daemon made, directly
        or through other profiles, for a profile whose mint waits for that helper:
        it would wait for itself until the budget ran out."""
        if peer_pid is None or not RUNNING:
            return
        lineage = [peer_pid, *procs.ancestors(peer_pid)]  # a helper may exec credhelper itself
        asking = {RUNNING[pid] for pid in lineage if pid in RUNNING}
        if not asking:
            return
        with self._lock:
            running = set(RUNNING.values())
            for done in [k for k in self._waits_for if k not in running]:
                del self._waits_for[done]  # edges live as long as the helper that made them
            for helper_of in asking:
                self._waits_for.setdefault(helper_of, set()).add(profile)
            # Does `profile`'s mint (transitively) wait for one of the asking helpers?
            seen, todo = set(), [profile]
            while todo:
                name = todo.pop()
                if name in asking and name in self._inflight:
                    raise ConfigError(
                        f"{RECURSION} through profile {name}: its credential_process asks credhelper "
                        f"for {profile}, which leads back to it; point it at the real helper"
                    )
                if name not in seen:
                    seen.add(name)
                    todo.extend(self._waits_for.get(name, ()))

    # -- minting and refreshing ------------------------------------------------------
    def _fetch(self, profile: str, *, scheduled: bool, deadline: Deadline | None = None) -> Credentials:
        st = self.state(profile)
        broker = self.broker
        started = time.monotonic()
        mints = broker.mints[profile]
        try:
            if scheduled:
                creds = broker.refresh(profile, stale=st.creds, deadline=deadline)
            else:
                creds = broker.get(profile, deadline=deadline)
        except CredhelperError as exc:
            self._failed(st, exc, started, scheduled)
            raise
        except Exception as exc:
            self._failed(st, exc, started, scheduled)
            raise
        minted = broker.mints[profile] > mints or creds.source in UNCACHED_SOURCES
        self._succeeded(st, creds, started, "minted" if minted else "loaded")
        return creds

    def _succeeded(self, st: ProfileState, creds: Credentials, started: float, outcome: str) -> None:
        self.on_secret(*creds.secrets())
        self._remember(st.name)
        st.creds, st.source = creds, creds.source
        st.failures, st.last_error, st.login_error = 0, "", None
        st.last_refresh = self.broker.now()
        st.refreshes += outcome == "minted"
        if creds.source in UNCACHED_SOURCES:
            st.next_refresh = None
        else:
            # Start before serving ends (LEAD), so a failed refresh is retried while
            # the current credentials are still served; jitter spreads refreshes of
            # many profiles and is taken off, never added.
            serving = (self.broker.refresh_at(creds) - self.broker.now()).total_seconds()
            lead = min(LEAD_MAX, LEAD_SHARE * serving)
            jitter = self.rng.uniform(0, max(0.0, min(60.0, 0.1 * serving)))
            self._schedule(st, self.broker.refresh_at(creds) - timedelta(seconds=lead + jitter))
        self.log.info(
            "refresh", profile=st.name, source=creds.source, outcome=outcome,
            access_key_id=creds.access_key_id,
            expires_in=int(creds.remaining(self.broker.now())),
            next_refresh=iso_z(st.next_refresh) if st.next_refresh else None,
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    def _failed(self, st: ProfileState, exc: BaseException, started: float, scheduled: bool) -> None:
        duration_ms = int((time.monotonic() - started) * 1000)
        message = exc.message if isinstance(exc, CredhelperError) else f"internal error {type(exc).__name__}"
        if st.creds is None and not self._known(st.name):
            # A name no configuration knows (a typo, garbage from a client):
            # the caller hears the error and the log has a line; no state is kept.
            with self._lock:
                if self._states.get(st.name) is st:
                    del self._states[st.name]
            outcome = "config_error" if isinstance(exc, ConfigError) else "failed"
            self.log.warning("refresh", profile=st.name, outcome=outcome, error=message,
                             duration_ms=duration_ms)
            return
        first_time = message != st.last_error
        st.last_error = message
        if isinstance(exc, LoginRequired):
            st.login_error = exc
            self._unschedule(st)
            if first_time:
                self.log.warning("refresh", profile=st.name, outcome="login_required",
                                 error=message, duration_ms=duration_ms)
            return
        if isinstance(exc, ConfigError):
            self._unschedule(st)
            self.log.error("refresh", profile=st.name, outcome="config_error", error=message,
                           duration_ms=duration_ms)
            return
        if not scheduled and st.creds is None:
            # A caller's first mint failed: the caller hears it; no schedule to keep.
            self.log.warning("refresh", profile=st.name, outcome="failed", error=message,
                             duration_ms=duration_ms)
            return
        st.failures += 1
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (st.failures - 1))
        delay = self.rng.uniform(delay / 2, delay)
        self._schedule(st, self.broker.now() + timedelta(seconds=delay))
        self.log.warning("refresh", profile=st.name, outcome="retry", error=message,
                         failures=st.failures, retry_in=round(delay, 1), duration_ms=duration_ms)

    def _refresh_job(self, profile: str) -> None:
        # Failures are logged and rescheduled by _failed; nothing to add here.
        with contextlib.suppress(Exception):
            self.pacer.acquire()
            self._fetch(profile, scheduled=True)

    def _schedule(self, st: ProfileState, when: datetime) -> None:
        st.next_refresh = when
        self.scheduler.add_job(
            self._refresh_job, "date", run_date=when, args=[st.name], id=f"refresh:{st.name}",
            # max_instances=2: a failed run schedules its retry under the same id while
            # it still counts as running; with 1, a retry due at once would be skipped
            # and, a date job having no later run, dropped for good
            replace_existing=True, misfire_grace_time=None, coalesce=True, max_instances=2,
        )

    def _unschedule(self, st: ProfileState) -> None:
        st.next_refresh = None
        from apscheduler.jobstores.base import JobLookupError

        with contextlib.suppress(JobLookupError):  # nothing was scheduled
            self.scheduler.remove_job(f"refresh:{st.name}")

    def _known(self, profile: str) -> bool:
        """A profile of the AWS config or the warm set (what `status` should show)."""
        return (self.broker.config.profile(profile) is not None
                or profile in self.broker.settings.warm_profiles)

    # -- warm set, reload, forget ----------------------------------------------------
    def warm(self, profiles: list[str]) -> None:
        for profile in profiles:
            with contextlib.suppress(Exception):  # logged by _failed; status shows it
                if not self._stored(profile):
                    self.pacer.acquire()  # a mint: paced like the refreshes
                self.obtain(profile)
        self._check_rate()

    def _stored(self, profile: str) -> bool:
        """Servable credentials for `profile` in the store: loading them costs no upstream call."""
        try:
            source = self.broker.source(profile)
            creds = self.broker.cached(profile, source) if source.cacheable else None
        except Exception:  # noqa: BLE001 - obtain() reports it
            return False
        return creds is not None and self.broker.servable(creds)

    def _check_rate(self) -> None:
        """Warn when keeping every profile fresh takes more upstream calls per
        second than max_refresh_rate allows: refreshes would fall behind."""
        now = self.broker.now()
        with self._lock:
            kept = [st.creds for st in self._states.values()
                    if st.creds is not None and st.next_refresh is not None]
        serving = [(self.broker.refresh_at(c) - (c.issued or now)).total_seconds() for c in kept]
        needed, limit = needed_rate(serving), self.broker.settings.max_refresh_rate
        if needed > limit:
            self.log.warning("refresh_rate", profiles=len(kept), needed_per_s=round(needed, 2),
                             max_refresh_rate=limit, fix="raise max_refresh_rate in the settings, "
                             "or the profiles' duration_seconds, or keep fewer warm_profiles")

    def warm_set(self) -> list[str]:
        return list(dict.fromkeys([*self.broker.settings.warm_profiles, *self._recent]))

    def nudge(self, profile: str) -> None:
        """Something changed for `profile` (login, keys): forget and fetch again."""
        st = self.state(profile)
        st.login_error, st.creds = None, None
        self._unschedule(st)
        threading.Thread(target=self.warm, args=([profile],), daemon=True).start()

    def forget(self, profile: str) -> None:
        with self._lock:
            st = self._states.pop(profile, None)
            self._recent.pop(profile, None)
        if st is not None:
            self._unschedule(st)
        self._save_recent()

    def reload(self) -> None:
        """New settings and AWS config (SIGHUP, or the files changed). A broken
        file keeps the running configuration and says so."""
        try:
            self.broker = self._make_broker()
        except CredhelperError as exc:
            self.log.error("reload", outcome="kept_old_config", error=exc.message)
            return
        self.pacer.set_rate(self.broker.settings.max_refresh_rate)
        with self._lock:
            states = list(self._states.values())
            self._states.clear()
        for st in states:
            self._unschedule(st)
        self.log.info("reload", profiles=len(states))
        threading.Thread(target=self.warm, args=(self.warm_set(),), daemon=True).start()

    def status(self) -> list[dict[str, Any]]:
        now = self.broker.now()
        with self._lock:
            states = sorted(self._states.values(), key=lambda s: s.name)
        return [st.as_status(now) for st in states]

    # -- recently asked profiles (names only: no secret) --------------------------------
    def _load_recent(self) -> dict[str, str]:
        if not self.recent_file:
            return {}
        try:
            with open(self.recent_file, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        cutoff = iso_z(self.broker.now() - timedelta(days=RECENT_DAYS))
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items() if isinstance(v, str) and v >= cutoff}

    def _remember(self, profile: str) -> None:
        today = iso_z(self.broker.now())[:10]
        with self._lock:
            if self._recent.get(profile, "")[:10] == today:
                return
            self._recent[profile] = iso_z(self.broker.now())
        self._save_recent()

    def _save_recent(self) -> None:
        if not self.recent_file:
            return
        with self._lock:
            data = json.dumps(self._recent)
        tmp = f"{self.recent_file}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.recent_file), mode=0o700, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data)
            os.replace(tmp, self.recent_file)
        except OSError as exc:
            self.log.warning("recent_profiles_not_saved", error=exc.strerror)
