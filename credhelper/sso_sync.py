"""`credhelper sso sync`: one AWS profile per account and role the signed-in
IAM Identity Center user has, written into a managed block of `~/.aws/config`.

- Accounts and roles come from the portal API (ListAccounts, ListAccountRoles
  through botocore's paginators) with the stored session token; throttling is
  retried by botocore's standard retry mode, and the whole listing has a total
  deadline.
- Profile names come from a template (default `{account_name}.{role_name}`),
  normalized: every run of characters outside `[A-Za-z0-9._@+=,-]` becomes one
  `-`, runs of `-` collapse to one, and `-` is trimmed from both ends; first in
  each field (`Team A / Dev (eu)` -> `Team-A-Dev-eu`), then in the whole name. Names that
  several account/role pairs share get `.<account id>` appended (and `-2`, `-3`…
  in role order if that is not enough), so the outcome never depends on the
  order the API answers in.
- The block sits between `# >>> credhelper sso sync [SESSION] >>>` and
  `# <<< credhelper sso sync [SESSION] <<<`; every byte outside it is kept. A
  name that a profile outside the block already uses is skipped with a warning
  (a duplicate section breaks every tool that reads the file). Profiles that
  disappeared stay unless `prune` is set. The file is written by
  `credhelper.fileedit` (backup, atomic, through symlinks, mode kept); a run
  that changes nothing does not touch it.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from credhelper import fileedit
from credhelper.config import AwsConfig
from credhelper.errors import (
    EXIT_LOGIN,
    ConfigError,
    CredhelperError,
    LoginRequired,
    UpstreamError,
    UsageError,
)
from credhelper.sources.base import ClientFactory, upstream
from credhelper.store import Store

if TYPE_CHECKING:  # imported where used: login.tokens and sources.sso import each other
    from credhelper.login.tokens import SsoSession

DEFAULT_TEMPLATE = "{account_name}.{role_name}"
FIELDS = ("account_name", "account_id", "role_name", "email", "sso_session")
#: seconds the whole listing may take
DEFAULT_TIMEOUT = 300.0
#: attempts per portal call (botocore standard mode: backoff, throttling retried)
MAX_ATTEMPTS = 8
_BAD = re.compile(r"[^A-Za-z0-9._@+=,-]+")
_DASHES = re.compile(r"-{2,}")
_PROFILE = re.compile(r"^\s*\[\s*profile\s+(.+?)\s*\]\s*(?:[#;].*)?$")
_DEFAULT = re.compile(r"^\s*\[\s*default\s*\]\s*(?:[#;].*)?$")
_SECTION = re.compile(r"^\s*\[")


class SignInFirst(CredhelperError):
    exit_code = EXIT_LOGIN


def begin_marker(session: str) -> str:
    return f"# >>> credhelper sso sync [{session}] >>>"


def end_marker(session: str) -> str:
    return f"# <<< credhelper sso sync [{session}] <<<"


def normalize(name: str) -> str:
    """A valid profile name: see the module docstring for the rule."""
    return _DASHES.sub("-", _BAD.sub("-", name)).strip("-")


@dataclass(frozen=True, order=True)
class Assignment:
    account_id: str
    role_name: str
    account_name: str = ""
    email: str = ""


def check_template(template: str) -> None:
    try:
        template.format(**{f: f for f in FIELDS})
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"bad --template {template!r} ({type(exc).__name__}: {exc}): "
            f"use the fields {', '.join('{' + f + '}' for f in FIELDS)}"
        ) from None


def names_for(assignments: list[Assignment], template: str, session: str) -> dict[str, Assignment]:
    """Profile name -> assignment, collisions resolved deterministically."""
    groups: dict[str, list[Assignment]] = defaultdict(list)
    for a in sorted(set(assignments)):
        fields = {"account_name": a.account_name, "account_id": a.account_id, "role_name": a.role_name,
                  "email": a.email, "sso_session": session}
        clean = {k: normalize(v) for k, v in fields.items()}
        clean["account_name"] = clean["account_name"] or a.account_id
        name = normalize(template.format(**clean))
        groups[name or normalize(f"{a.account_id}.{a.role_name}")].append(a)
    out: dict[str, Assignment] = {}
    for base, members in sorted(groups.items()):
        if len(members) == 1 and base not in out:
            out[base] = members[0]
            continue
        for a in members:
            name, n = f"{base}.{a.account_id}", 1
            while name in out or name in groups:
                n += 1
                name = f"{base}.{a.account_id}-{n}"
            out[name] = a
    return out


# ------------------------------------------------------------------ listing


def list_assignments(
    sso: Any, token: str, *, timeout: float = DEFAULT_TIMEOUT,
    clock: Callable[[], float] = time.monotonic, what: str = "sso sync",
) -> list[Assignment]:
    """Every account and role the token's user has, page by page."""
    deadline = clock() + timeout

    def check() -> None:
        if clock() > deadline:
            raise UpstreamError(
                f"{what}: listing accounts and roles did not finish within {timeout:.0f} s: "
                "try again later (IAM Identity Center is throttling or slow)"
            )

    accounts: list[dict[str, Any]] = []
    for page in sso.get_paginator("list_accounts").paginate(accessToken=token):
        accounts.extend(page.get("accountList", []))
        check()
    out: list[Assignment] = []
    for acc in accounts:
        paginator = sso.get_paginator("list_account_roles")
        for page in paginator.paginate(accessToken=token, accountId=acc["accountId"]):
            out.extend(
                Assignment(str(acc["accountId"]), str(r["roleName"]), str(acc.get("accountName") or ""),
                           str(acc.get("emailAddress") or ""))
                for r in page.get("roleList", [])
            )
            check()
    return out


# ------------------------------------------------------------------ the config file


@dataclass
class ConfigText:
    before: list[str]
    block: list[str] | None
    after: list[str]
    newline: str = "\n"

    def outside_names(self) -> set[str]:
        return {n for n in (section_name(ln) for ln in self.before + self.after) if n}

    def managed(self) -> dict[str, list[str]]:
        """name -> the lines of its section in the block (header included)."""
        out: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in (self.block or [])[1:-1]:
            name = section_name(line)
            if name is not None:
                current = out.setdefault(name, [])
            elif _SECTION.match(line):
                current = None
            if current is not None and line.strip():
                current.append(line.rstrip("\r\n"))
        return out


def section_name(line: str) -> str | None:
    m = _PROFILE.match(line.rstrip("\r\n"))
    if m:
        return m.group(1)
    return "default" if _DEFAULT.match(line.rstrip("\r\n")) else None


def split(text: str, session: str, path: Path) -> ConfigText:
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    stripped = [ln.rstrip("\r\n") for ln in lines]
    begins = [i for i, s in enumerate(stripped) if s == begin_marker(session)]
    ends = [i for i, s in enumerate(stripped) if s == end_marker(session)]
    if not begins and not ends:
        return ConfigText(lines, None, [], newline)
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ConfigError(
            f"{path}: the managed block of sso-session {session} is damaged "
            f"({len(begins)} start and {len(ends)} end markers): fix or remove its marker lines by hand"
        )
    b, e = begins[0], ends[0]
    return ConfigText(lines[:b], lines[b:e + 1], lines[e + 1:], newline)


def profile_lines(name: str, a: Assignment, session: str, region: str | None) -> list[str]:
    out = [f"[profile {name}]", f"sso_session = {session}", f"sso_account_id = {a.account_id}",
           f"sso_role_name = {a.role_name}"]
    return out + ([f"region = {region}"] if region else [])


def render_block(session: str, sections: Mapping[str, list[str]], nl: str) -> list[str]:
    out = [begin_marker(session),
           f"# Written by `credhelper sso sync --sso-session {session}`; edits inside this block "
           "are replaced by the next sync."]
    for name in sorted(sections):
        out += ["", *sections[name]]
    out.append(end_marker(session))
    return [ln + nl for ln in out]


# ------------------------------------------------------------------ the whole sync


@dataclass
class Result:
    path: Path
    edit: fileedit.Edit | None = None
    total: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    #: (name, why) of generated profiles not written
    skipped: list[tuple[str, str]] = field(default_factory=list)
    backup: Path | None = None


def plan(
    text: str, path: Path, session: str, assignments: list[Assignment], *,
    template: str = DEFAULT_TEMPLATE, region: str | None = None, prune: bool = False,
) -> Result:
    """What the config file becomes; nothing is written."""
    check_template(template)
    parsed = split(text, session, path)
    taken = parsed.outside_names()
    old = parsed.managed()
    wanted = names_for(assignments, template, session)
    sections: dict[str, list[str]] = {}
    result = Result(path=path)
    for name, a in wanted.items():
        if name in taken:
            result.skipped.append(
                (name, f"account {a.account_id} role {a.role_name}: a profile named {name} already "
                       f"exists outside the managed block of {path}")
            )
            continue
        sections[name] = profile_lines(name, a, session, region)
        if name not in old:
            result.added.append(name)
        elif old[name] != sections[name]:
            result.updated.append(name)
    for name, lines in old.items():
        if name in sections:
            continue
        if prune or name in taken:
            result.removed.append(name)
        else:
            sections[name] = lines
            result.kept.append(name)
    result.total = len(sections)
    block = render_block(session, sections, parsed.newline)
    before = list(parsed.before)
    if parsed.block is None:
        if before and not before[-1].endswith(("\n", "\r")):
            before[-1] += parsed.newline
        if before and before[-1].strip():
            before.append(parsed.newline)
    new = "".join(before + block + parsed.after)
    result.edit = fileedit.plan(path, new, old=text.encode("utf-8"), target=Path(os.path.realpath(path)))
    return result


def config_path(environ: Mapping[str, str]) -> Path:
    return Path(os.path.expanduser(environ.get("AWS_CONFIG_FILE") or "~/.aws/config"))


def session_named(name: str | None, config: AwsConfig) -> SsoSession:
    from credhelper.login.tokens import named_sso_session

    names = sorted(config.sso_sessions)
    if name is None:
        if len(names) != 1:
            if not names:
                raise ConfigError("no [sso-session NAME] section in the AWS config: add one "
                                  "(sso_start_url, sso_region) and sign in")
            raise UsageError(f"several sso-sessions ({', '.join(names)}): pass --sso-session NAME")
        name = names[0]
    if not isinstance(config.sso_sessions.get(name), Mapping):
        raise ConfigError(f"no [sso-session {name}] in the AWS config: add it, or pass one of "
                          f"{', '.join(names) or '(none defined)'}")
    return named_sso_session(name, config)


def login_profile(session: str, config: AwsConfig, managed: Set[str] = frozenset()) -> str:
    """The profile `credhelper login` signs in with: a hand-written one if any."""
    users = sorted(p for p in config.profiles if config.get(p, "sso_session") == session)
    users = sorted(users, key=lambda p: p in managed)
    if not users:
        raise SignInFirst(
            f"no profile uses sso-session {session}, so there is nothing to sign in with: add "
            f"[profile {session}-login] with sso_session = {session}, run credhelper login "
            f"--profile {session}-login, then sso sync again"
        )
    return users[0]


def sync(
    *, store: Store, config: AwsConfig, environ: Mapping[str, str], now: Callable[[], datetime],
    session: str | None = None, template: str = DEFAULT_TEMPLATE, region: str | None = None,
    prune: bool = False, dry_run: bool = False, timeout: float = DEFAULT_TIMEOUT,
) -> Result:
    from credhelper.login.tokens import Tokens

    check_template(template)
    sess = session_named(session, config)
    path = config_path(environ)
    target, raw = fileedit.read(path)
    try:
        text = (raw or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: fix its encoding") from None
    profile = login_profile(sess.name, config, set(split(text, sess.name, path).managed()))
    clients = ClientFactory(config, max_attempts=MAX_ATTEMPTS)
    tokens = Tokens(store, clients, now, lock_timeout=timeout)
    token = tokens.access_token(sess, profile)
    sso = clients.client("sso", None, None, region=sess.region)
    with upstream("ListAccounts/ListAccountRoles", profile, secrets=(token,)):
        try:
            found = list_assignments(sso, token, timeout=timeout, what=f"sso sync {sess.name}")
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "UnauthorizedException":
                raise
            tokens.reject(sess, token)
            raise LoginRequired(profile, "IAM Identity Center rejected the session") from None
    result = plan(text, path, sess.name, found, template=template, region=region, prune=prune)
    assert result.edit is not None
    result.edit = fileedit.plan(path, result.edit.new, old=raw, target=target)
    if not dry_run and result.edit.changed:
        result.backup = fileedit.apply(result.edit, now=now())
    return result
