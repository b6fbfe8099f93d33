"""`credhelper mint`: credentials for a CI job from its own identity (thin)."""

from __future__ import annotations

import os
import sys

import click

#: kept in step with credhelper.mint.output.FORMATS / identity.KINDS (importing
#: them here would load botocore for `credhelper --help`)
FORMATS = ("claude", "process", "env", "json", "github-env")
KINDS = ("auto", "github", "env", "file", "ambient")


@click.command()
@click.option("--role-arn", required=True, help="The IAM role to assume.")
@click.option("--duration", type=click.IntRange(900, 43200), help="Session seconds (STS default 3600).")
@click.option("--session-name", help="RoleSessionName (default: from CI metadata; sanitized).")
@click.option("--policy-arn", multiple=True, help="Managed session policy ARN (repeatable).")
@click.option("--policy-file", help="Inline session policy: a JSON file.")
@click.option("--tag", multiple=True, metavar="K=V",
              help="Session tag, ambient AssumeRole only (repeatable).")
@click.option("--region", help="STS region, also written out (default: AWS_REGION, else us-east-1).")
@click.option("--audience", default="sts.amazonaws.com", show_default=True,
              help="Audience of the GitHub Actions ID token.")
@click.option("--token-env", metavar="NAME", help="Variable holding an ID token (GitLab id_tokens:).")
@click.option("--token-file", help="File holding an ID token (Kubernetes/EKS projected token).")
@click.option("--identity", "kind", type=click.Choice(KINDS), default="auto", show_default=True,
              help="Which identity to use; auto: GitHub, token variable, token file, ambient.")
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="claude", show_default=True,
              help="Export formats, or github-env: append to $GITHUB_ENV (masked).")
@click.option("--timeout", type=click.FloatRange(1, 900), default=60, show_default=True,
              help="Total seconds for the whole mint.")
def mint(
    role_arn: str, duration: int | None, session_name: str | None, policy_arn: tuple[str, ...],
    policy_file: str | None, tag: tuple[str, ...], region: str | None, audience: str,
    token_env: str | None, token_file: str | None, kind: str, fmt: str, timeout: float,
) -> None:
    """Mint short-lived AWS credentials from the CI job's own identity (one-shot;
    no daemon, no keyring, no settings file)."""
    from credhelper.deadline import Deadline
    from credhelper.mint import Wanted, mint, output, request

    deadline = Deadline(timeout)
    environ = dict(os.environ)
    req = request(role_arn, duration=duration, session=session_name, policy_arns=policy_arn,
                  policy_file=policy_file, tags=tag, region=region)
    sink = output.GithubEnv(environ) if fmt == "github-env" else None
    wanted = Wanted(kind=kind, token_env=token_env, token_file=token_file, audience=audience)
    minted = mint(req, wanted, environ, deadline)
    if sink is None:
        click.echo(output.text(minted.credentials, fmt, minted.region), nl=False)
        return
    sink.write(minted.credentials, minted.region, sys.stdout)
    exp = minted.credentials.expiration
    click.echo(
        f"credhelper: credentials for {req.role_arn} (session {minted.session_name}, from "
        f"{minted.identity.where}) written to $GITHUB_ENV, valid until {exp:%Y-%m-%dT%H:%M:%SZ}",
        err=True,  # a status line: stdout is for the workflow commands (::add-mask::)
    )
