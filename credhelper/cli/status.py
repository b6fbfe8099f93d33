"""`credhelper status`: the daemon's view, or without a daemon the store's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click


def _span(seconds: int) -> str:
    s = abs(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m"
    return f"{s}s"


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return ("expired " if seconds < 0 else "") + _span(seconds)


def _next(when: str | None, now: datetime) -> str:
    """`next_refresh` (ISO 8601) as "in 38m" / "due now"."""
    if not when:
        return "-"
    try:
        at = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return when
    seconds = int((at - now).total_seconds())
    return f"in {_span(seconds)}" if seconds > 0 else "due now"


def _row(p: dict[str, Any], now: datetime) -> str:
    state = "ok"
    if p.get("login_required"):
        state = f"login required: run credhelper login --profile {p['profile']}"
    elif p.get("sign_in"):
        state = f"{p['sign_in']}: run credhelper login --profile {p['profile']}"
    elif p.get("last_error"):
        state = f"error: {p['last_error']}"
    elif p.get("expires_in") is None:
        state = "nothing cached yet"
    return (
        f"{p['profile']:<20} {p.get('source') or '-':<16} {_ago(p.get('expires_in')):>10}  "
        f"{_next(p.get('next_refresh'), now):<13} {state}"
    )


def _offline() -> list[dict[str, Any]]:
    from credhelper import settings as settings_mod
    from credhelper import store_status
    from credhelper.broker import Broker
    from credhelper.config import AwsConfig
    from credhelper.store import open_store

    settings, config = settings_mod.load(), AwsConfig.load()
    if not config.profiles and not settings.warm_profiles:
        return []  # nothing to show: the store need not even open
    broker = Broker(settings=settings, store=open_store(settings), config=config)
    return store_status.profiles(broker)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Each profile's source, time left, next refresh and last error; the daemon's pid and uptime."""
    from credhelper import client
    from credhelper import settings as settings_mod
    from credhelper.config import AwsConfig

    # a broken AWS config or settings file is an error (exit 3), daemon or not
    AwsConfig.load()
    settings_mod.load()
    data = client.status()
    if data is None:
        data = {"daemon": None, "profiles": _offline()}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    now = datetime.now(UTC)
    d = data["daemon"]
    if d is None:
        click.echo("daemon: not running (start it with: credhelper service install); "
                   "showing what the store holds")
    else:
        click.echo(f"daemon: pid {d['pid']}, up {_ago(d['uptime'])}, version {d['version']}, "
                   f"store {d['store']}")
    if not data["profiles"]:
        click.echo("no profiles: add some to the AWS config (or warm_profiles)")
        return
    click.echo(f"{'PROFILE':<20} {'SOURCE':<16} {'EXPIRES IN':>10}  {'NEXT REFRESH':<13} STATE")
    for p in data["profiles"]:
        click.echo(_row(p, now))
