"""`credhelper login` (Claude Code's awsAuthRefresh) and `credhelper logout`."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO, cast

import click

if TYPE_CHECKING:
    from credhelper.broker import Broker


def browser_usable(env: Mapping[str, str]) -> bool:
    """Whether a browser can open here: $BROWSER wins (WSL, remote boxes set it);
    an SSH session or a Linux box without a display has none."""
    if env.get("BROWSER"):
        return True
    if env.get("SSH_CONNECTION") or env.get("SSH_TTY"):
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def open_browser(url: str) -> bool:
    import webbrowser

    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


def _ask(text: str) -> str:
    # click.prompt adds its own ": " suffix
    return str(click.prompt(text.rstrip().rstrip(":"), hide_input=False))


def _broker() -> Broker:
    from credhelper import settings as settings_mod
    from credhelper.broker import Broker
    from credhelper.store import open_store

    settings = settings_mod.load()
    return Broker(settings=settings, store=open_store(settings))


@click.command()
@click.option("--profile", "-p", help="Profile (default: $CREDHELPER_PROFILE, $AWS_PROFILE, default).")
@click.option("--device-code", is_flag=True, help="Sign in with a code on any device (SSH, headless).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser; print the URL and code.")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=170.0, show_default=True,
              help="Give up after this many seconds (Claude Code kills awsAuthRefresh at 180).")
def login(profile: str | None, device_code: bool, no_browser: bool, timeout: float) -> None:
    """Sign in (IAM Identity Center, aws login) or enter an MFA code; warms the daemon."""
    from credhelper import client
    from credhelper.cli import resolve_profile
    from credhelper.login.signin import login as do_login

    name = resolve_profile(profile)
    broker = _broker()
    from credhelper.sources import login_session

    holder = login_session.session_profile(broker.config, name)
    if holder is not None:  # an `aws login` session: the AWS CLI (2.32+) signs it in
        click.echo(login_session.aws_login(holder, os.environ))
        if client.nudge(name):
            click.echo("the credhelper daemon is fetching credentials now")
        return
    usable = browser_usable(os.environ) and not no_browser
    ask = _ask if sys.stdin.isatty() else None
    from credhelper import notify

    out: TextIO = sys.stdout
    if notify.unattended(os.environ) and broker.settings.notifications:
        # awsAuthRefresh: Claude Code may not show this output; the URL and code go
        # into a desktop notification as well (anthropics/claude-code#21023)
        out = cast(TextIO, notify.SignInNotifier(sys.stdout, name))
    message = do_login(
        broker, name, out=out, open_url=open_browser if usable else None,
        device=device_code or not usable, timeout=timeout, ask_code=ask,
    )
    click.echo(message)
    if client.nudge(name):
        click.echo("the credhelper daemon is fetching credentials now")


@click.command()
@click.option("--profile", "-p", help="Profile to sign out.")
@click.option("--all", "all_profiles", is_flag=True, help="Every profile of the AWS config.")
def logout(profile: str | None, all_profiles: bool) -> None:
    """Sign out: end IAM Identity Center sessions and wipe tokens and cached credentials."""
    from credhelper import client
    from credhelper.cli import resolve_profile
    from credhelper.login.logout import logout as do_logout

    if all_profiles and profile:
        raise click.UsageError("give --profile or --all, not both")
    broker = _broker()
    names = list(broker.config.profiles) if all_profiles else [resolve_profile(profile)]
    if not all_profiles:
        _known(broker, names[0])
    lines = do_logout(broker, names)
    for name in names:
        client.forget(name)
    for line in lines:
        click.echo(line)
    if not lines:
        what = "any profile" if all_profiles else f"profile {names[0]}"
        click.echo(f"nothing to sign out of or wipe for {what}")


def _known(broker: Broker, name: str) -> None:
    """ConfigError (exit 3) for a profile neither the AWS config nor the store knows."""
    from credhelper.claude_settings import suggest
    from credhelper.errors import ConfigError
    from credhelper.store import item

    if broker.config.profile(name) is not None:
        return
    if any(broker.store.get(item(kind, name)) is not None for kind in ("keys", "creds")):
        return
    where = os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    raise ConfigError(f"unknown profile {name} in {where}"
                      f"{suggest(name, sorted(broker.config.profiles))}: check the name")
