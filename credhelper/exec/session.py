"""One `credhelper exec`: resolve the profile's region, warn about what would
shadow the endpoint, serve it (or inject the keys with `--env`), run the child."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from credhelper.errors import ConfigError
from credhelper.exec import runner, source
from credhelper.exec.endpoint import Endpoint
from credhelper.model import Credentials


def warn(message: str) -> None:
    sys.stderr.write(f"credhelper exec: {message}\n")
    sys.stderr.flush()


def profile_facts(profile: str, environ: Mapping[str, str]) -> tuple[str | None, list[str]]:
    """(the region for the child, the [default] profile's shadowing settings)."""
    from credhelper.config import AwsConfig, botocore_session

    config = AwsConfig.load()
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if not region:
        found = botocore_session(config, profile).get_config_variable("region")
        region = str(found) if found else None
    return region, runner.shadowing_settings(config.profile("default"))


def bedrock_token(creds: Credentials, region: str | None, profile: str) -> str:
    """A Bedrock API key for the child (as `export --format bedrock-token` mints it)."""
    from credhelper.bedrock_token import mint

    if not region:
        raise ConfigError(f"no region for profile {profile}: a Bedrock API key is bound to one region; "
                          "set AWS_REGION or add region to the profile")
    return mint(creds, region)


def execute(profile: str, command: Sequence[str], *, env_mode: bool = False, with_bedrock_token: bool = False,
            environ: Mapping[str, str] | None = None) -> int:
    """Run `command` with `profile`'s credentials; the child's exit status.
    Raises CredhelperError (no credentials, bad config) or runner.CommandError."""
    from credhelper import settings as settings_mod

    environ = dict(os.environ if environ is None else environ)
    region, shadowing = profile_facts(profile, environ)
    cache = source.CachedCredentials(source.daemon_or_direct(profile, environ),
                                     refresh_window=settings_mod.load().refresh_window)
    creds = cache.get()  # fail before the child starts: no credentials, no command
    extra = {"AWS_BEARER_TOKEN_BEDROCK": bedrock_token(creds, region, profile)} if with_bedrock_token else {}
    if env_mode:
        env, dropped = runner.child_env(environ, region=region, creds=creds)
        return _run(profile, command, {**env, **extra}, dropped, [])
    runner.block_signals()  # before the endpoint's threads exist: they inherit the mask
    with Endpoint(cache) as endpoint:
        env, dropped = runner.child_env(environ, region=region, endpoint=(endpoint.url, endpoint.token))
        return _run(profile, command, {**env, **extra}, dropped, shadowing)


def _run(profile: str, command: Sequence[str], env: dict[str, str], dropped: list[str],
         shadowing: list[str]) -> int:
    program = runner.resolve(command, env)
    if dropped:
        warn(f"removed the inherited {', '.join(dropped)} from the command's environment: it gets "
             f"profile {profile}'s credentials from credhelper instead")
    if shadowing:
        warn(f"the [default] profile has credential settings ({', '.join(shadowing)}) that AWS SDKs "
             "use before the container endpoint: the command may not get profile "
             f"{profile}'s credentials; move them out of [default]")
    runner.block_signals()
    return runner.run(program, command, env)
