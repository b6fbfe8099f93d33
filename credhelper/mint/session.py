"""The RoleSessionName: from CI metadata by default, always in STS's alphabet.

STS allows `[A-Za-z0-9_+=,.@-]`, 2 to 64 characters. The name shows up in
CloudTrail and in `sts:RoleSessionName` conditions, so the default says which
pipeline run minted the credentials: `octo-org_app-7301-1` on GitHub
(repository, run id, attempt), `group_project-4211` on GitLab (project path,
pipeline id).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MAX_LEN = 64
_BAD = re.compile(r"[^A-Za-z0-9_+=,.@-]")


def sanitize(name: str, tail: str = "") -> str:
    """`name` + `tail` in STS's alphabet, cut to 64 characters from `name`'s end
    so that `tail` (the run ids that make the name unique) survives."""
    head, tail = _BAD.sub("_", name), _BAD.sub("_", tail)[:MAX_LEN]
    text = head[: MAX_LEN - len(tail)] + tail
    return text if len(text) >= 2 else (text + "__")[:2]


def default_name(environ: Mapping[str, str], now: float) -> str:
    """What CI metadata gives, else `credhelper-<unix time>`."""
    repo = environ.get("GITHUB_REPOSITORY")
    if repo:
        ids = [environ.get("GITHUB_RUN_ID", ""), environ.get("GITHUB_RUN_ATTEMPT", "")]
        return sanitize(repo, "".join(f"-{i}" for i in ids if i))
    project = environ.get("CI_PROJECT_PATH")
    if project:
        pipeline = environ.get("CI_PIPELINE_ID", "")
        return sanitize(project, f"-{pipeline}" if pipeline else "")
    return f"credhelper-{int(now)}"


def session_name(explicit: str | None, environ: Mapping[str, str], now: float) -> str:
    return sanitize(explicit) if explicit else default_name(environ, now)
