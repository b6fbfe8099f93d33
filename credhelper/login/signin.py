"""`credhelper login`: what a profile needs from a human, done once.

- IAM Identity Center profiles (directly, or as the source of a role chain):
  returns at once when a valid or refreshable token exists; otherwise one
  sign-in per session across all processes: a second `login` waits for the
  first under a cross-process lock and never opens a second tab.
- MFA profiles: asks for the code (in a terminal only), mints an MFA session
  (GetSessionToken) and stores it, so refreshes need no code until it ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from credhelper.broker import Broker
from credhelper.errors import ConfigError, LoginRequired
from credhelper.locking import profile_lock
from credhelper.login.oidc import DeviceFlow, PkceFlow
from credhelper.login.tokens import SsoSession, Tokens, sso_session_for
from credhelper.sources.base import upstream
from credhelper.sources.session_token import from_sts, mfa_session, static_keys
from credhelper.store import item

DEFAULT_TIMEOUT = 170.0  # inside Claude Code's 3-minute kill of awsAuthRefresh
MFA_SESSION_SECONDS = 43200


@dataclass
class Target:
    """What signing in for a profile means."""

    kind: str  # "sso" | "mfa" | "none"
    profile: str  # the profile that holds the setting
    sso: SsoSession | None = None
    serial: str | None = None


def target(broker: Broker, profile: str) -> Target:
    """Walk the source_profile chain to the first thing a human must do."""
    config, seen = broker.config, list[str]()
    current: str | None = profile
    while current is not None:
        if current in seen:
            raise ConfigError(f"cyclic profile chain {' -> '.join([*seen, current])}: fix source_profile")
        seen.append(current)
        sess = sso_session_for(current, config)
        if sess is not None:
            return Target("sso", current, sso=sess)
        serial = config.get(current, "mfa_serial")
        if serial:
            src = config.get(current, "source_profile") if config.get(current, "role_arn") else current
            return Target("mfa", src or current, serial=serial)
        nxt = config.get(current, "source_profile")
        current = nxt if nxt != current else None
    if config.profile(profile) is None and broker.store.get(item("keys", profile)) is None:
        raise ConfigError(f"unknown profile {profile}: add it to the AWS config")
    return Target("none", profile)


def login(
    broker: Broker, profile: str, *, out: TextIO, open_url: Callable[[str], bool] | None,
    device: bool, timeout: float = DEFAULT_TIMEOUT, ask_code: Callable[[str], str] | None = None,
) -> str:
    """Sign in for `profile`; returns the line to print on success."""
    deadline = time.monotonic() + timeout
    goal = target(broker, profile)
    if goal.kind == "sso":
        assert goal.sso is not None
        return _sso(broker, profile, goal.sso, out=out, open_url=open_url, device=device,
                    deadline=deadline)
    if goal.kind == "mfa":
        assert goal.serial is not None
        return _mfa(broker, profile, goal.profile, goal.serial, ask_code)
    return f"profile {profile} needs no sign-in"


def _sso(
    broker: Broker, profile: str, sess: SsoSession, *, out: TextIO,
    open_url: Callable[[str], bool] | None, device: bool, deadline: float,
) -> str:
    wait = max(deadline - time.monotonic(), 1)
    tokens = Tokens(broker.store, broker.clients, broker.now, lock_timeout=wait)
    if _signed_in(tokens, sess, profile):
        return f"already signed in to {sess.name}"

    def waiting() -> None:
        out.write(f"another credhelper login for {sess.name} is in progress; waiting for it…\n")
        out.flush()

    left = max(deadline - time.monotonic(), 0.1)
    with profile_lock(f"login:{sess.key}", left, broker.lock_dir, on_wait=waiting):
        if _signed_in(tokens, sess, profile):  # the login we waited for succeeded
            return f"signed in to {sess.name} (by another credhelper login)"
        flow_cls = DeviceFlow if device else PkceFlow
        record = flow_cls(tokens, sess, profile, out=out, open_url=open_url, deadline=deadline).run()
        tokens.save(sess, record)
    return f"signed in to {sess.name}"


def _signed_in(tokens: Tokens, sess: SsoSession, profile: str) -> bool:
    """A valid or refreshable token that can also be renewed. One whose refresh
    token was refused (or never issued) lasts only until its access token ends:
    signing in again now is what the daemon's "sign-in needed" warning asks for."""
    if not tokens.usable(sess, profile):
        return False
    record = tokens.load(sess)
    return record is not None and bool(record.refresh_token)


def _mfa(
    broker: Broker, profile: str, keys_profile: str, serial: str,
    ask_code: Callable[[str], str] | None,
) -> str:
    ctx = broker.context()
    if mfa_session(keys_profile, serial, ctx) is not None:
        return f"MFA session for {keys_profile} is still valid"
    if ask_code is None:
        raise LoginRequired(profile, "an MFA code is needed (run it in a terminal)")
    keys = static_keys(keys_profile, ctx)
    if keys is None or keys.session_token:
        raise ConfigError(
            f"MFA needs long-term keys for profile {keys_profile}: "
            f"store them with credhelper keys add --profile {keys_profile}"
        )
    code = ask_code(f"MFA code for {serial}: ").strip()
    duration = ctx.int_setting(keys_profile, "mfa_session_duration") or MFA_SESSION_SECONDS
    sts = broker.clients.client("sts", keys_profile, keys)
    with upstream("GetSessionToken", profile, secrets=keys.secrets(),
                  remedy="the MFA code or keys were rejected: try again"):
        out = sts.get_session_token(SerialNumber=serial, TokenCode=code, DurationSeconds=duration)
    creds = from_sts(out["Credentials"], "mfa-session")
    broker.store.set(
        item("mfa-session", keys_profile),
        json.dumps({"v": 1, "serial": serial, "credentials": creds.to_record()}),
    )
    return f"MFA session for {keys_profile} valid until {creds.expiration:%Y-%m-%d %H:%M} UTC"
