"""`status` without a daemon: what the store holds for each configured profile.

Rows have the shape of the daemon's status rows (profile, source, expires_in,
next_refresh, last_error, login_required). Nothing here calls AWS: the login
state is read from the stored IAM Identity Center token or MFA session.
"""

from __future__ import annotations

from typing import Any

from credhelper.broker import Broker
from credhelper.errors import CredhelperError
from credhelper.model import iso_z


def _login_required(broker: Broker, profile: str) -> bool:
    from credhelper.claude_settings import login_kind
    from credhelper.login.tokens import Tokens, sso_session_for
    from credhelper.sources.session_token import mfa_session

    config, kind = broker.config, login_kind(broker.config, profile)
    current: str | None = profile
    seen: set[str] = set()
    while kind is not None and current is not None and current not in seen:
        seen.add(current)
        sess = sso_session_for(current, config)
        if sess is not None:
            record = Tokens(broker.store, broker.clients, broker.now).load(sess)
            return record is None or (record.expiry() <= broker.now() and not record.refresh_token)
        serial = config.get(current, "mfa_serial")
        if serial:
            src = config.get(current, "source_profile") if config.get(current, "role_arn") else None
            return mfa_session(src or current, serial, broker.context()) is None
        current = config.get(current, "source_profile")
    return False


def row(broker: Broker, profile: str) -> dict[str, Any]:
    out: dict[str, Any] = {"profile": profile, "source": None, "expires_in": None,
                           "next_refresh": None, "last_error": None, "login_required": False}
    try:
        source = broker.source(profile)
        out["source"] = source.name
        creds = broker.cached(profile, source) if source.cacheable else None
        if creds is not None and creds.expiration is not None:
            out["expires_in"] = int(creds.remaining(broker.now()))
            if broker.servable(creds):
                out["next_refresh"] = iso_z(broker.refresh_at(creds))
        if creds is None or not broker.servable(creds):
            out["login_required"] = _login_required(broker, profile)
    except CredhelperError as exc:
        out["last_error"] = exc.message
    return out


def profiles(broker: Broker) -> list[dict[str, Any]]:
    names = list(broker.config.profiles)
    names += [p for p in broker.settings.warm_profiles if p not in names]
    return [row(broker, name) for name in names]
