"""`credhelper doctor`: thin over credhelper/doctor/."""

from __future__ import annotations

import click


@click.command()
@click.option("--profile", "-p", help="Profile to check (default: the one Claude Code would use).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def doctor(profile: str | None, as_json: bool) -> None:
    """Check every link from the AWS config to Bedrock; print a fix for each failure."""
    raise click.UsageError("doctor is not implemented yet")
