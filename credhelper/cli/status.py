"""`credhelper status`: the daemon's view, or without a daemon the store's."""

from __future__ import annotations

import json
from typing import Any

import click


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    sign, s = ("-" if seconds < 0 else ""), abs(seconds)
    if s >= 3600:
        return f"{sign}{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{sign}{s // 60}m{s % 60:02d}s"
    return f"{sign}{s}s"


def _row(p: dict[str, Any]) -> str:
    state = "ok"
    if p.get("login_required"):
        state = f"login required: run credhelper login --profile {p['profile']}"
    elif p.get("last_error"):
        state = f"error: {p['last_error']}"
    return (
        f"{p['profile']:<20} {p.get('source') or '-':<16} {_ago(p.get('expires_in')):>10}  "
        f"{p.get('next_refresh') or '-':<21} {state}"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Each profile's source, time left, next refresh and last error; the daemon's pid and uptime."""
    from credhelper import client

    data = client.status()
    if data is None:
        data = {"daemon": None, "profiles": []}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    d = data["daemon"]
    if d is None:
        click.echo("daemon: not running (start it with: credhelper daemon, or credhelper service install)")
        return
    click.echo(
        f"daemon: pid {d['pid']}, up {_ago(d['uptime'])}, version {d['version']}, store {d['store']}"
    )
    if not data["profiles"]:
        click.echo("no profiles yet: they appear after the first export or from warm_profiles")
        return
    click.echo(f"{'PROFILE':<20} {'SOURCE':<16} {'EXPIRES IN':>10}  {'NEXT REFRESH':<21} STATE")
    for p in data["profiles"]:
        click.echo(_row(p))
