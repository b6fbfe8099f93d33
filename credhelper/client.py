"""Asking the daemon from the CLI (status, nudges after login / keys add)."""

from __future__ import annotations

import json
import os
from typing import Any

from credhelper import protocol
from credhelper.fastpath import ask_daemon, socket_path


def request(op: str, fields: dict[str, str] | None = None) -> tuple[str, int, str] | None:
    """(kind, code, body), or None when no daemon answers."""
    path = socket_path()
    if not os.path.exists(path):
        return None
    return ask_daemon(path, protocol.encode_request(op, fields or {}))


def status() -> dict[str, Any] | None:
    answer = request("status")
    if answer is None or answer[0] != "ok":
        return None
    data = json.loads(answer[2])
    return data if isinstance(data, dict) else None


def nudge(profile: str) -> bool:
    """Tell the daemon a profile changed (login, keys): it fetches again now."""
    answer = request("refresh", {"profile": profile})
    return answer is not None and answer[0] == "ok"


def forget(profile: str) -> bool:
    answer = request("forget", {"profile": profile})
    return answer is not None and answer[0] == "ok"
