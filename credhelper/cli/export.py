"""`credhelper export`: print credentials for one profile, JSON only on stdout
(or `export` lines, or a bare Bedrock API key)."""

from __future__ import annotations

import os

import click

from credhelper.model import EXPORT_FORMATS


@click.command()
@click.option("--profile", "-p", help="Profile (default: $CREDHELPER_PROFILE, $AWS_PROFILE, default).")
@click.option(
    "--format", "-f", "fmt", type=click.Choice(EXPORT_FORMATS), default="claude", show_default=True,
    help="claude: awsCredentialExport; process: credential_process; env: export lines; json; "
    "bedrock-token: a short-term Bedrock API key (AWS_BEARER_TOKEN_BEDROCK).",
)
@click.option("--region", help="bedrock-token: the region the key is for "
              "(default: $AWS_REGION, else the profile's region).")
def export(profile: str | None, fmt: str, region: str | None) -> None:
    """Print credentials; never prompts, never opens a browser."""
    from credhelper.cli import resolve_profile
    from credhelper.errors import UsageError

    if region is not None and fmt != "bedrock-token":
        raise UsageError("--region only applies to --format bedrock-token: add that, or drop --region")
    name = resolve_profile(profile)
    if fmt == "bedrock-token":
        from credhelper.bedrock_token import export_token

        text = export_token(name, region, dict(os.environ))
    else:
        from credhelper.direct import export_text

        text = export_text(name, fmt, dict(os.environ))
    click.echo(text, nl=False)
