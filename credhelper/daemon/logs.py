"""structlog JSON lines on stderr (journald under systemd), never a secret.

Secrets are kept out by construction (events carry key ids and expiry times,
never keys or tokens); `Redactor` is the belt to those braces: every value the
daemon hands out is registered, and any log value containing one is masked.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog


class Redactor:
    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *secrets: str | None) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= 8)

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        with self._lock:
            secrets = tuple(self._secrets)
        for key, value in event.items():
            text = value if isinstance(value, str) else None
            if text and any(s in text for s in secrets):
                for s in secrets:
                    text = text.replace(s, "***")
                event[key] = text
        return event


REDACT = Redactor()


def configure(stream: TextIO | None = None) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            REDACT,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )


def get() -> Any:
    return structlog.get_logger("credhelper")
