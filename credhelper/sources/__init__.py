"""Credential sources, one module each, behind one interface.

A source module exposes `NAME` and `from_profile(name, ctx) -> Source | None`:
None means "this profile is not mine", an exception means "mine, but it
failed". `resolve()` asks them in botocore's order and returns the first
taker. Caching and refresh are not here: the broker wraps every source.
"""

from __future__ import annotations

from collections.abc import Callable

from credhelper.errors import ConfigError
from credhelper.sources import assume_role, env, login_session, process, session_token, sso, web_identity
from credhelper.sources.base import Context, Source

__all__ = ["Context", "Source", "resolve"]

Finder = Callable[[str, Context], Source | None]

#: botocore's order: a role wins over keys in the same profile
_FINDERS: tuple[Finder, ...] = (
    web_identity.from_profile,
    assume_role.from_profile,
    sso.from_profile,
    login_session.from_profile,  # `aws login`; botocore asks it after the credentials file's keys
    process.from_profile,
    session_token.from_profile,
    env.from_profile,
)

MAX_CHAIN = 10


def resolve(profile: str, ctx: Context) -> Source:
    """The source for `profile`, or ConfigError naming the fix."""
    if profile in ctx.chain:
        loop = " -> ".join((*ctx.chain, profile))
        raise ConfigError(f"cyclic profile chain {loop}: fix source_profile in the AWS config")
    if len(ctx.chain) >= MAX_CHAIN:
        raise ConfigError(f"profile chain longer than {MAX_CHAIN} at {profile}: shorten it")
    for find in _FINDERS:
        source = find(profile, ctx)
        if source is not None:
            return source
    if ctx.config.profile(profile) is None:
        raise ConfigError(
            f"unknown profile {profile}: add it to {ctx.config_file_hint()} "
            f"or store keys with credhelper keys add --profile {profile}"
        )
    raise ConfigError(
        f"profile {profile} has no credential source (role_arn, sso_session, "
        f"login_session, credential_process, web_identity_token_file or keys): configure one, "
        f"or store keys with credhelper keys add --profile {profile}"
    )
