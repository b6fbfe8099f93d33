"""`credhelper doctor`: thin over credhelper/doctor/."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--profile", "-p", help="Profile to check (default: the one Claude Code would use).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def doctor(profile: str | None, as_json: bool) -> None:
    """Check every link from the AWS config to Bedrock; print a fix for each failure."""
    from credhelper import doctor as lib

    state = lib.default_state(profile)
    results = lib.run(state)
    code = lib.exit_code(results)
    if as_json:
        doc = {"profile": state.profile, "ok": code == 0, "exit_code": code,
               "checks": [r.to_json() for r in results]}
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        for r in results:
            click.echo(r.line())
    if code:
        failed = sum(1 for r in results if r.ok is False)
        click.echo(f"credhelper: {failed} check(s) failed: fix the first ✘ and run "
                   "credhelper doctor again", err=True)
        raise SystemExit(code)
