"""The `Store` protocol: where secrets live, behind one small interface.

Backends: `keyring` (the OS secret store, through the keyring library),
`encrypted-file` (AES-256-GCM; its key in the keyring or a key file) and
`memory` (CI one-shots, tests). Values are text (JSON); item names are
versioned and say what they hold (`item()`), e.g. `v1/creds/dev`.

Every backend:
- raises `StoreUnavailable` (exit 5) with a remedy when it cannot work (locked,
  absent, plaintext refused); never falls back to another backend silently;
- raises `CorruptItem` for an item it cannot read back, leaving it in place;
- writes atomically: a reader sees the old value or the new one, never a mix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from credhelper.deadline import Deadline
    from credhelper.settings import Settings

#: kinds of items; the version prefix lets later releases read older items
KINDS = ("creds", "keys", "sso-token", "sso-client", "mfa-session")


def item(kind: str, name: str) -> str:
    """`item("creds", "dev") == "v1/creds/dev"`."""
    if kind not in KINDS:
        raise ValueError(f"unknown store item kind {kind!r}")
    return f"v1/{kind}/{name}"


class Store(Protocol):
    #: what the backend is, for `status`/`doctor` and error messages
    description: str

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...


def open_store(settings: Settings, deadline: Deadline | None = None) -> Store:
    """The backend the settings name; `StoreUnavailable` if it cannot work.
    Keyring calls that time out are retried within `deadline`."""
    if settings.store == "memory":
        from credhelper.store.memory import MemoryStore

        return MemoryStore()
    if settings.store == "encrypted-file":
        from credhelper.store.encrypted_file import EncryptedFileStore

        return EncryptedFileStore.from_settings(settings, deadline)
    from credhelper.store.keyring_store import KeyringStore

    return KeyringStore(service=settings.keyring_service, deadline=deadline)
