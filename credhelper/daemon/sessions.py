"""Seeing a sign-in coming: the daemon watches the sessions its credentials are
minted from, on a schedule of its own, not only when credentials are due.

Every `TICK` seconds (an APScheduler job on the keeper's scheduler) it looks at
each profile it serves whose credentials come from a session a human started:
- IAM Identity Center (directly or at the root of a role chain): whether the
  refresh token still works (a CreateToken call: at most once per
  `CHECK_EVERY` per session), and the fixed end it can see, the client
  registration's `clientSecretExpiresAt`; without a working refresh token the
  session ends with its access token;
- an MFA session: its expiry (less the serving floor: the broker takes no MFA
  session with less left).
When the session has ended, or ends before the credentials served now stop
being served, a sign-in is needed: the profile's status says
"sign-in needed, current credentials last 43m", the log has one
`sign_in_needed` line, and one desktop notification gives the command to run;
one more comes `REMIND_BEFORE` the served credentials stop being served.
None when the settings say `notifications = false` or no notification
service exists.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from credhelper import notify
from credhelper.errors import CorruptItem, CredhelperError, LoginRequired
from credhelper.model import Credentials, iso_z, parse_time
from credhelper.store import item

if TYPE_CHECKING:
    from credhelper.broker import Broker
    from credhelper.daemon.keeper import Keeper, ProfileState
    from credhelper.login.signin import Target

#: seconds between looks (memory and store only; upstream calls are rarer)
TICK = 10.0
#: a refresh-token check (one CreateToken call) at most this often per session
CHECK_EVERY = timedelta(minutes=15)
#: the second notification: this long before the served credentials stop being served
REMIND_BEFORE = timedelta(minutes=10)
#: how long a session check may wait for the session's lock
LOCK_TIMEOUT = 30.0


def span(seconds: float) -> str:
    s = max(0, int(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m" if s >= 60 else f"{s}s"


@dataclass(frozen=True)
class SessionEnd:
    #: when no more credentials can be minted without a human (None: no end seen)
    at: datetime | None
    #: what ends, for the log line
    why: str
    #: what the human signs in to (an sso-session name, or the MFA keys profile)
    name: str
    #: False when a check failed for a passing reason: nothing changes until the next
    known: bool = True


class SessionWatcher:
    def __init__(
        self, keeper: Keeper, scheduler: Any, log: Any, *,
        sender: Callable[[str, str], bool] = notify.send, tick: float = TICK,
    ) -> None:
        self.keeper, self.scheduler, self.log = keeper, scheduler, log
        self.sender, self.tick = sender, tick
        self._checked: dict[str, datetime] = {}  # session key -> last refresh-token check
        self._warned: dict[str, datetime | None] = {}  # session key -> the end warned about
        self._reminded: dict[str, datetime] = {}  # session key -> the serving end reminded about

    def start(self) -> None:
        self.scheduler.add_job(
            self.run, "interval", seconds=self.tick, id="sessions", replace_existing=True,
            coalesce=True, max_instances=1, misfire_grace_time=None,
        )

    def run(self) -> None:
        try:
            self.look()
        except Exception as exc:  # noqa: BLE001 - the next tick tries again; never kill the job
            self.log.error("sessions", outcome="failed", error=type(exc).__name__)

    # -- one look at every served profile ------------------------------------------------
    def look(self) -> None:
        from credhelper.login.signin import target

        broker = self.keeper.broker
        now = broker.now()
        groups: dict[str, list[tuple[ProfileState, Target]]] = defaultdict(list)
        for st in list(self.keeper._states.values()):
            if st.creds is None or st.creds.expiration is None:
                st.sign_in = None
                continue
            try:
                goal = target(broker, st.name)
            except CredhelperError:
                continue
            if goal.kind == "sso" and goal.sso is not None:
                groups[f"sso:{goal.sso.key}"].append((st, goal))
            elif goal.kind == "mfa":
                groups[f"mfa:{goal.profile}"].append((st, goal))
            else:
                st.sign_in = None
        for key, members in groups.items():
            self._judge(key, members, broker, now)
        for key in set(self._warned) - set(groups):
            self._forget(key)

    def _judge(self, key: str, members: list[tuple[ProfileState, Target]], broker: Broker,
               now: datetime) -> None:
        end = self._session_end(key, members[0][1], broker, now)
        if not end.known:
            return
        needy: list[tuple[datetime, str]] = []
        for st, _ in members:
            assert st.creds is not None
            served_until = broker.refresh_at(st.creds)
            if end.at is None or end.at > served_until:
                st.sign_in = None
                continue
            left = (served_until - now).total_seconds()
            st.sign_in = ("sign-in needed, current credentials last " + span(left)) if left > 0 \
                else "sign-in needed, no credentials served"
            needy.append((served_until, st.name))
        if not needy:
            self._forget(key)
            return
        served_until, profile = min(needy)
        command = f"credhelper login --profile {profile}"
        lasts = span((served_until - now).total_seconds())
        if key not in self._warned or self._warned[key] != end.at:
            self._warned[key] = end.at
            self.log.warning(
                "sign_in_needed", profile=profile, session=end.name, reason=end.why,
                session_ends=iso_z(end.at) if end.at else None,
                credentials_served_until=iso_z(served_until), remedy=command,
            )
            if now >= served_until - REMIND_BEFORE:
                self._reminded[key] = served_until  # the first one is already that late
            self._notify(f"Sign-in needed for {profile}",
                         f"{end.why}; the current credentials last {lasts}. Run: {command}")
        elif now >= served_until - REMIND_BEFORE and self._reminded.get(key) != served_until:
            self._reminded[key] = served_until
            self._notify(f"Credentials for {profile} stop in {lasts}",
                         f"{end.why}. Sign in again to keep working: {command}")

    def _forget(self, key: str) -> None:
        self._warned.pop(key, None)
        self._reminded.pop(key, None)

    def _notify(self, summary: str, body: str) -> None:
        if not self.keeper.broker.settings.notifications:
            return
        shown = self.sender(summary, body)
        self.log.info("notification", shown=shown, summary=summary)

    # -- when a session ends ---------------------------------------------------------------
    def _session_end(self, key: str, goal: Target, broker: Broker, now: datetime) -> SessionEnd:
        if goal.kind == "mfa":
            return self._mfa_end(goal, broker)
        assert goal.sso is not None
        from credhelper.locking import profile_lock
        from credhelper.login.tokens import Tokens

        sess = goal.sso
        tokens = Tokens(broker.store, broker.clients, broker.now, lock_timeout=LOCK_TIMEOUT)
        try:
            record = tokens.load(sess)
            due = now - self._checked.get(key, datetime.min.replace(tzinfo=now.tzinfo)) >= CHECK_EVERY
            if record is not None and record.refresh_token and due:
                self._checked[key] = now
                with profile_lock(f"sso:{sess.key}", LOCK_TIMEOUT, broker.lock_dir):
                    fresh = tokens.load(sess)
                    if fresh is not None and fresh.refresh_token:
                        with contextlib.suppress(LoginRequired):
                            tokens._refresh(sess, goal.profile, fresh)
                record = tokens.load(sess)
        except CorruptItem:
            return SessionEnd(now, f"the IAM Identity Center token of {sess.name} is unreadable", sess.name)
        except CredhelperError as exc:  # a passing failure: nothing is known; look again later
            self.log.info("session_check", session=sess.name, outcome="unknown", error=exc.message)
            return SessionEnd(None, "", sess.name, known=False)
        if record is None:
            return SessionEnd(now, f"there is no IAM Identity Center session for {sess.name}", sess.name)
        if not record.refresh_token:
            return SessionEnd(record.expiry(), f"the IAM Identity Center session {sess.name} can no "
                              "longer be refreshed", sess.name)
        registration = self._registration_end(broker, sess.key, record.client_id)
        return SessionEnd(registration, f"the client registration of {sess.name} expires", sess.name)

    @staticmethod
    def _registration_end(broker: Broker, session_key: str, client_id: str) -> datetime | None:
        for kind in ("pkce", "device"):
            try:
                raw = broker.store.get(item("sso-client", f"{session_key}#{kind}"))
                reg = json.loads(raw) if raw else None
                if isinstance(reg, dict) and reg.get("clientId") == client_id:
                    return parse_time(reg["expiresAt"])
            except (CorruptItem, ValueError, KeyError, TypeError):
                continue
        return None

    @staticmethod
    def _mfa_end(goal: Target, broker: Broker) -> SessionEnd:
        from credhelper.broker import SERVE_FLOOR

        name = goal.profile
        creds: Credentials | None = None
        try:
            raw = broker.store.get(item("mfa-session", name))
            data = json.loads(raw) if raw else {}
            if isinstance(data, dict) and data.get("serial") == goal.serial:
                creds = Credentials.from_record(data["credentials"])
        except (CorruptItem, ValueError, KeyError, TypeError):
            creds = None
        if creds is None or creds.expiration is None:
            return SessionEnd(broker.now(), f"there is no MFA session for {name}", name)
        return SessionEnd(creds.expiration - timedelta(seconds=SERVE_FLOOR),
                          f"the MFA session of {name} ends", name)
