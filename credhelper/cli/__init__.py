"""The click CLI: thin. Parse, call the library, render, map errors to exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from credhelper import __version__
from credhelper.errors import EXIT_BUG, CredhelperError


def resolve_profile(option: str | None, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return option or env.get("CREDHELPER_PROFILE") or env.get("AWS_PROFILE") or "default"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="credhelper")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Short-lived AWS credentials for Claude Code on Bedrock, kept fresh in the OS keyring."""
    ctx.obj = {"debug": debug}


def _register() -> None:
    from credhelper.cli import daemon, doctor, export, keys, login, mint, service, setup, sso, status
    from credhelper.cli import exec as exec_cmd

    for command in (
        export.export, exec_cmd.exec_, login.login, login.logout, keys.keys, daemon.daemon,
        status.status, service.service, setup.setup, doctor.doctor, sso.sso, mint.mint,
    ):
        main.add_command(command)


_register()


def _one_line_usage(exc: click.UsageError) -> str:
    """click's multi-line usage text as one line that ends with the fix."""
    text = " ".join(exc.format_message().split()).rstrip(".")
    text = text[:1].lower() + text[1:]
    command = exc.ctx.command_path if exc.ctx is not None else "credhelper"
    return f"{text}: see {command} --help"


def run(argv: Sequence[str] | None = None) -> int:
    """Entry point: every failure is one stderr line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        main.main(args=args, prog_name="credhelper", standalone_mode=False)
    except CredhelperError as exc:
        click.echo(f"credhelper: {exc.message}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # `credhelper`, `credhelper keys`
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        return 0
    except click.UsageError as exc:
        click.echo(f"credhelper: {_one_line_usage(exc)}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("credhelper: aborted", err=True)
        return 130
    except Exception as exc:  # a bug: one line, traceback only with --debug
        if "--debug" in args:
            raise
        click.echo(
            f"credhelper: internal error ({type(exc).__name__}): rerun with --debug and report it",
            err=True,
        )
        return EXIT_BUG
    return 0
