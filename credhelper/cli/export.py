"""`credhelper export`: print credentials for one profile, JSON only on stdout."""

from __future__ import annotations

import os

import click

from credhelper.model import FORMATS


@click.command()
@click.option("--profile", "-p", help="Profile (default: $CREDHELPER_PROFILE, $AWS_PROFILE, default).")
@click.option(
    "--format", "-f", "fmt", type=click.Choice(FORMATS), default="claude", show_default=True,
    help="claude: awsCredentialExport; process: credential_process; env: export lines; json.",
)
def export(profile: str | None, fmt: str) -> None:
    """Print credentials; never prompts, never opens a browser."""
    from credhelper.cli import resolve_profile
    from credhelper.direct import export_text

    text = export_text(resolve_profile(profile), fmt, dict(os.environ))
    click.echo(text, nl=False)
