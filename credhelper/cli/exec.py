"""`credhelper exec`: run a command with a profile's self-renewing credentials."""

from __future__ import annotations

import sys

import click


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--profile", "-p", help="Profile (default: $CREDHELPER_PROFILE, $AWS_PROFILE, default).")
@click.option("--env", "env_mode", is_flag=True,
              help="Put the keys in the command's environment instead of serving them "
              "(no renewal; the secrets sit in its environment).")
@click.option("--bedrock-token", "with_bedrock_token", is_flag=True,
              help="Also set AWS_BEARER_TOKEN_BEDROCK, a Bedrock API key for the region "
              "(not renewed; it holds the session token).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(profile: str | None, env_mode: bool, with_bedrock_token: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND with the profile's credentials from a loopback container-credentials
    endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI) that renews them; exit with its status."""
    from credhelper.cli import resolve_profile
    from credhelper.exec.runner import CommandError
    from credhelper.exec.session import execute

    try:
        code = execute(resolve_profile(profile), list(command), env_mode=env_mode,
                       with_bedrock_token=with_bedrock_token)
    except CommandError as exc:
        click.echo(f"credhelper: {exc.message}", err=True)
        code = exc.code
    sys.stdout.flush()
    raise SystemExit(code)  # the child's status, whatever it is (run() maps only errors)


exec_.name = "exec"
