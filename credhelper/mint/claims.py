"""The non-secret claims of an ID token, for hints in error messages.

The token itself is a bearer secret; its `iss`, `sub` and `aud` claims are
not (they are what the role's trust policy matches on). The payload is decoded
without verifying the signature: it is only ever shown to the user.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

SHOWN = ("iss", "sub", "aud")


def claims(token: str) -> dict[str, Any]:
    """The JWT payload, or {} if `token` is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)[:200]


def presented(token_claims: Mapping[str, Any]) -> str:
    """e.g. `sub "repo:o/r:ref:refs/heads/main", aud "sts.amazonaws.com"`."""
    shown = [f'{k} "{_text(token_claims[k])}"' for k in ("sub", "aud") if k in token_claims]
    return ", ".join(shown) or "a token that is not a JWT"
