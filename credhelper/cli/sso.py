"""`credhelper sso ...`: IAM Identity Center helpers (`sso sync`)."""

from __future__ import annotations

import os

import click


@click.group()
def sso() -> None:
    """IAM Identity Center: profiles for every account and role you have."""


@sso.command()
@click.option("--sso-session", "session", help="The [sso-session NAME] to sync (default: the only one).")
@click.option("--template", default="{account_name}.{role_name}", show_default=True,
              help="Profile name; fields {account_name} {account_id} {role_name} {email} {sso_session}.")
@click.option("--region", help="region = R in every generated profile (default: none written).")
@click.option("--dry-run", is_flag=True, help="Show the diff of ~/.aws/config; change nothing.")
@click.option("--prune", is_flag=True, help="Remove managed profiles whose account or role is gone.")
def sync(session: str | None, template: str, region: str | None, dry_run: bool, prune: bool) -> None:
    """Write one profile per account/role into a managed block of ~/.aws/config."""
    from credhelper import settings as settings_mod
    from credhelper import sso_sync
    from credhelper.broker import utcnow
    from credhelper.config import AwsConfig
    from credhelper.store import open_store

    settings = settings_mod.load()
    result = sso_sync.sync(
        store=open_store(settings), config=AwsConfig.load(), environ=dict(os.environ), now=utcnow,
        session=session, template=template, region=region, prune=prune, dry_run=dry_run,
    )
    for _name, why in result.skipped:
        click.echo(f"credhelper: warning: skipped {why}: rename one, or use --template", err=True)
    assert result.edit is not None
    if dry_run:
        click.echo(result.edit.diff(), nl=False)
    counts = (f"{result.total} profiles: {len(result.added)} added, {len(result.updated)} updated, "
              f"{len(result.removed)} removed, {len(result.kept)} kept though gone "
              f"(--prune removes them), {len(result.skipped)} skipped")
    if not result.edit.changed:
        click.echo(f"{result.path}: no change ({counts})")
    elif dry_run:
        click.echo(f"{result.path}: would write ({counts}); nothing written (--dry-run)")
    else:
        backup = f"; backup {result.backup}" if result.backup else ""
        click.echo(f"{result.path}: written ({counts}){backup}")
