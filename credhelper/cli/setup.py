"""`credhelper setup claude`: thin over credhelper/claude_settings.py."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group()
def setup() -> None:
    """Configure other tools to use credhelper."""


@setup.command()
@click.option("--profile", "-p", help="Profile (default: $CREDHELPER_PROFILE, $AWS_PROFILE, default).")
@click.option("--region", "-r", help="Bedrock region (default: the profile's region).")
@click.option("--scope", type=click.Choice(["user", "project"]), default="user", show_default=True,
              help="user: ~/.claude/settings.json; project: this repository's .claude/settings.json.")
@click.option("--dry-run", is_flag=True, help="Print the diff; write nothing.")
def claude(profile: str | None, region: str | None, scope: str, dry_run: bool) -> None:
    """Point Claude Code's settings at this installation's credhelper."""
    from credhelper import claude_settings as cs
    from credhelper import fileedit
    from credhelper.cli import resolve_profile
    from credhelper.config import AwsConfig

    name = resolve_profile(profile)
    config = AwsConfig.load()
    if config.profile(name) is None:
        cs.check_profile(config, name, _stored_keys(name), _config_file())
    launcher = cs.stable_launcher(cs.this_launcher(), os.environ)
    plan = cs.plan_setup(profile=name, region=region, scope=scope, config=config,
                         launcher=launcher, environ=os.environ, cwd=Path.cwd())
    for warning in plan.warnings:
        click.echo(f"credhelper: warning: {warning}", err=True)
    edit = plan.edit
    if not edit.changed:
        click.echo(f"{edit.path} already has these settings: nothing changed", err=True)
    elif dry_run:
        click.echo(edit.diff(), nl=False)
        click.echo(f"dry run: {edit.path} was not changed", err=True)
    else:
        backup = fileedit.apply(edit)
        saved = f" (backup: {backup})" if backup else ""
        click.echo(f"{'updated' if edit.old is not None else 'created'} {edit.path}{saved}",
                   err=True)
    for note in plan.notes:
        click.echo(note, err=True)


def _config_file() -> str:
    return os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"


def _stored_keys(profile: str) -> bool:
    """Whether the store holds keys for a profile that is not in the AWS config."""
    from credhelper import settings as settings_mod
    from credhelper.errors import CredhelperError
    from credhelper.store import item, open_store

    try:
        return open_store(settings_mod.load()).get(item("keys", profile)) is not None
    except CredhelperError:
        return False
