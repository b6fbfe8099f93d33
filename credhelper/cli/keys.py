"""`credhelper keys add|remove`: long-term keys into the store, never via argv."""

from __future__ import annotations

import json
import re
import sys

import click

from credhelper.errors import UsageError

_AKID = re.compile(r"^[A-Z0-9]{16,128}$")


@click.group()
def keys() -> None:
    """Keep long-term access keys in the store (exports are GetSessionToken results)."""


def _read_keys() -> tuple[str, str]:
    if sys.stdin.isatty():
        akid = click.prompt("Access key id").strip()
        secret = click.prompt("Secret access key", hide_input=True).strip()
    else:
        lines = [ln.strip() for ln in sys.stdin.read().splitlines() if ln.strip()]
        if len(lines) != 2:
            raise UsageError(
                "keys add reads two lines on stdin: the access key id, then the secret key"
            )
        akid, secret = lines
    if not _AKID.match(akid):
        raise UsageError("that does not look like an access key id (AKIA…): check the first line")
    if len(secret) < 16 or any(c.isspace() for c in secret):
        raise UsageError("that does not look like a secret access key: check the second line")
    return akid, secret


@keys.command("add")
@click.option("--profile", "-p", required=True, help="Profile the keys belong to.")
def add(profile: str) -> None:
    """Store keys read from stdin (two lines) or a hidden prompt."""
    from credhelper import settings as settings_mod
    from credhelper.config import AwsConfig
    from credhelper.store import item, open_store

    akid, secret = _read_keys()
    store = open_store(settings_mod.load())
    config = AwsConfig.load()
    if config.profile(profile) is None:
        from credhelper.claude_settings import suggest

        click.echo(
            f"credhelper: warning: profile {profile} is not in the AWS config"
            f"{suggest(profile, sorted(config.profiles))}: credhelper export --profile {profile} "
            "works, but the AWS CLI and Claude Code's AWS tools will not know it", err=True)
    store.set(item("keys", profile), json.dumps({"AccessKeyId": akid, "SecretAccessKey": secret}))
    store.delete(item("creds", profile))
    click.echo(f"stored keys {akid} for profile {profile} in {store.description}", err=True)
    from credhelper import client

    client.nudge(profile)


@keys.command("remove")
@click.option("--profile", "-p", required=True)
def remove(profile: str) -> None:
    """Delete a profile's stored keys and cached credentials."""
    from credhelper import client
    from credhelper import settings as settings_mod
    from credhelper.store import item, open_store

    store = open_store(settings_mod.load())
    had_keys = store.get(item("keys", profile)) is not None
    store.delete(item("keys", profile))
    store.delete(item("creds", profile))
    # the daemon holds credentials minted from these keys in memory: drop them too
    told = client.forget(profile)
    if not had_keys:
        click.echo(f"no stored keys for profile {profile}: nothing to remove", err=True)
        return
    daemon = " and from the daemon" if told else ""
    click.echo(f"removed the keys of profile {profile} and the credentials minted from them "
               f"from {store.description}{daemon}", err=True)
