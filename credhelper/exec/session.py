"""One `credhelper exec`: resolve the profile's region, warn about what would
shadow the endpoint, serve it (or inject the keys with `--env`), run the child."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from credhelper.exec import runner, source
from credhelper.exec.endpoint import Endpoint


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


def execute(profile: str, command: Sequence[str], *, env_mode: bool = False,
            environ: Mapping[str, str] | None = None) -> int:
    """Run `command` with `profile`'s credentials; the child's exit status.
    Raises CredhelperError (no credentials, bad config) or runner.CommandError."""
    from credhelper import settings as settings_mod

    environ = dict(os.environ if environ is None else environ)
    region, shadowing = profile_facts(profile, environ)
    fetch = source.daemon_or_direct(profile, environ)
    if env_mode:
        creds = source.CachedCredentials(fetch, refresh_window=settings_mod.load().refresh_window).get()
        env, dropped = runner.child_env(environ, region=region, creds=creds)
        program = runner.resolve(command, env)
        _warn_dropped(dropped, profile)
        runner.block_signals()
        return runner.run(program, command, env)
    cache = source.CachedCredentials(fetch, refresh_window=settings_mod.load().refresh_window)
    cache.get()  # fail before the child starts: no credentials, no command
    runner.block_signals()  # before the endpoint's threads exist: they inherit the mask
    with Endpoint(cache) as endpoint:
        env, dropped = runner.child_env(environ, region=region, endpoint=(endpoint.url, endpoint.token))
        program = runner.resolve(command, env)
        _warn_dropped(dropped, profile)
        if shadowing:
            warn(f"the [default] profile has credential settings ({', '.join(shadowing)}) that AWS SDKs "
                 "use before the container endpoint: the command may not get profile "
                 f"{profile}'s credentials; move them out of [default]")
        return runner.run(program, command, env)


def _warn_dropped(dropped: list[str], profile: str) -> None:
    if dropped:
        warn(f"removed the inherited {', '.join(dropped)} from the command's environment: it gets "
             f"profile {profile}'s credentials from credhelper instead")
