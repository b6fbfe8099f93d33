"""`credhelper daemon`."""

from __future__ import annotations

import click


@click.command()
def daemon() -> None:
    """Run the daemon in the foreground (what the systemd/launchd service runs)."""
    from credhelper.daemon import run

    raise SystemExit(run())
