"""Signing out: the SSO Logout API where there is a token, then the store is wiped
of tokens, client registrations, MFA sessions and cached credentials. Long-term
keys stay (`credhelper keys remove` deletes them)."""

from __future__ import annotations

import botocore.exceptions

from credhelper.broker import Broker
from credhelper.errors import CorruptItem, CredhelperError
from credhelper.login.tokens import Tokens, sso_session_for
from credhelper.store import item


def _wipe(broker: Broker, key: str) -> bool:
    """Delete one store item; whether there was one."""
    try:
        had = broker.store.get(key) is not None
    except CorruptItem:
        had = True
    broker.store.delete(key)
    return had


def logout(broker: Broker, profiles: list[str]) -> list[str]:
    """Sign out of `profiles`; one line per thing really ended or wiped."""
    lines: list[str] = []
    ended: set[str] = set()
    tokens = Tokens(broker.store, broker.clients, broker.now)
    for profile in profiles:
        try:
            sess = sso_session_for(profile, broker.config)
        except CredhelperError:
            sess = None
        if sess is not None and sess.key not in ended:
            ended.add(sess.key)
            record = tokens.load(sess)
            if record is not None:
                sso = broker.clients.client("sso", None, None, region=sess.region)
                try:
                    sso.logout(accessToken=record.access_token)
                    lines.append(f"signed out of {sess.name}")
                except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
                    lines.append(f"{sess.name}: the session had already ended; token wiped")
            for kind in ("device", "pkce"):
                broker.store.delete(item("sso-client", f"{sess.key}#{kind}"))
            tokens.delete(sess)
        if _wipe(broker, item("mfa-session", profile)):
            lines.append(f"wiped the MFA session of {profile}")
        if _wipe(broker, item("creds", profile)):
            lines.append(f"wiped cached credentials of {profile}")
    return lines
