"""One error tree. Each error knows its exit code; its message is one line that
ends with the remedy. The CLI catches `CredhelperError` once and prints it.

Exit codes (product.md "Interfaces"; README documents them):
0 ok, 2 usage, 3 configuration, 4 login required, 5 store unavailable,
6 upstream failure, 1 anything else (a bug).

Stdlib only: the export fast path imports this module.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_LOGIN = 4
EXIT_STORE = 5
EXIT_UPSTREAM = 6


class CredhelperError(Exception):
    """Base of every error credhelper reports to a user."""

    exit_code = EXIT_BUG

    def __init__(self, message: str) -> None:
        # One line, always: a multi-line message would break the stderr contract.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(CredhelperError):
    exit_code = EXIT_USAGE


class ConfigError(CredhelperError):
    """Malformed file, unknown profile, cyclic chain, unsupported setting."""

    exit_code = EXIT_CONFIG


class LoginRequired(CredhelperError):
    """A human must act: `credhelper login`."""

    exit_code = EXIT_LOGIN

    def __init__(self, profile: str, reason: str = "login required") -> None:
        self.profile = profile
        super().__init__(
            f"{reason} for profile {profile}: run credhelper login --profile {profile}"
        )


class StoreUnavailable(CredhelperError):
    """Keyring locked or absent, plaintext refused, encrypted file unreadable."""

    exit_code = EXIT_STORE


class CorruptItem(StoreUnavailable):
    """One store item cannot be read back; nothing else is touched."""


class UpstreamError(CredhelperError):
    """AWS refused or was unreachable after retries."""

    exit_code = EXIT_UPSTREAM

