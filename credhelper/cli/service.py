"""`credhelper service install|uninstall|status`: thin over credhelper/service.py."""

from __future__ import annotations

import click

_DRY_RUN = click.option(
    "--dry-run", is_flag=True, help="Print what would be written and run; change nothing."
)


@click.group()
def service() -> None:
    """Run the daemon as a systemd user service (Linux) or a launchd agent (macOS)."""


@service.command()
@_DRY_RUN
def install(dry_run: bool) -> None:
    """Write the unit/plist for this installation and enable it (starts the daemon).

    The service keeps from this shell only CREDHELPER_CONFIG, AWS_CONFIG_FILE and
    AWS_SHARED_CREDENTIALS_FILE, and gets a PATH of the standard directories plus
    those of your profiles' credential_process programs (printed on stderr).
    Refuses when another daemon (e.g. brew services) would compete for the socket."""
    from credhelper import service as lib

    plan = lib.install(dry_run=dry_run)
    # what the service keeps from this shell (paths only), and what it does not
    for name, value in plan.environment.items():
        click.echo(f"service environment: {name}={value}", err=True)
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    if dry_run:
        click.echo(plan.describe())
        return
    click.echo(f"installed {plan.path}")
    for cmd in plan.ran:
        click.echo(f"ran: {cmd}")
    click.echo("check it with: credhelper service status")


@service.command()
@_DRY_RUN
def uninstall(dry_run: bool) -> None:
    """Stop and disable the service and remove its file."""
    from credhelper import service as lib

    plan = lib.uninstall(dry_run=dry_run)
    if dry_run:
        click.echo(plan.describe())
        return
    for cmd in plan.ran:
        click.echo(f"ran: {cmd}")
    for note in plan.notes:
        click.echo(note)
    if plan.removed:
        click.echo(f"removed {plan.path}")


@service.command()
@_DRY_RUN
def status(dry_run: bool) -> None:
    """The service manager's view of the service, and whether the daemon answers.

    Exits 3 with one line when the manager cannot be asked or says the service is not running."""
    from credhelper import service as lib
    from credhelper.errors import ConfigError

    if dry_run:
        _kind, path, cmd = lib.plan_status()
        click.echo(f"# {path}\n# would run:\n{cmd}")
        return
    st = lib.status()
    if not st.ok:
        raise ConfigError(st.error())
    click.echo(st.describe())
