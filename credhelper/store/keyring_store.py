"""The OS keyring backend (Secret Service, macOS Keychain, Windows Credential
Manager), through the `keyring` library.

Why the care around backend choice: `keyring` quietly picks whatever backend is
viable. With `keyrings.alt` installed and no Secret Service it writes base64
"encrypted" secrets to a plaintext file; with nothing at all it picks a backend
that fails (or, configured so, one that silently drops every secret). Each of
those is refused here with a one-line remedy, never used as a fallback.

Item layout (service = `Settings.keyring_service`, username = the item name):
- the head item `<key>` holds either `plain:<value>` or, for values longer than
  `CHUNK_UNITS`, a manifest `chunked:v1:<gen>:<count>:<length>`;
- chunks live under `<key>#<gen>/<i>`. Windows Credential Manager limits a
  blob to 2,560 bytes (UTF-16), so no single item may grow past that.

A write stores the chunks under a fresh generation first, then the head, then
deletes the previous generation's chunks: a reader sees the old value or the
new one, never a mix. Concurrent writers of one key may leak an orphaned
generation (never a wrong value); callers serialise per profile anyway.

`keyring` is imported here only: it costs ~200 ms, which the export fast path
must not pay unless it really reads the keyring.
"""

from __future__ import annotations

import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from credhelper.deadline import Deadline
from credhelper.errors import CorruptItem, StoreUnavailable

T = TypeVar("T")

#: max UTF-16 code units per keyring item (2,000 bytes < Windows' 2,560)
CHUNK_UNITS = 1000
#: bound on chunks per value (1 MB): a damaged manifest must not make us loop
MAX_CHUNKS = 1000

_PLAIN = "plain:"
_CHUNKED = "chunked:v1:"
_MANIFEST = re.compile(r"chunked:v1:([0-9a-f]{16}):([0-9]+):([0-9]+)")
_GET_ATTEMPTS = 3

_REMEDY = {
    "darwin": "unlock the login keychain (security unlock-keychain)",
    "win32": "sign in to Windows interactively so Credential Manager is available",
}
_LINUX_REMEDY = "start a Secret Service (gnome-keyring) and unlock it"
_FILE_STORE = 'set store = "encrypted-file" with key_file in the credhelper settings'


def _remedy() -> str:
    import os

    ci = "in CI set CREDHELPER_STORE=memory (no keyring needed); else " if os.environ.get("CI") else ""
    return f"{ci}{_REMEDY.get(sys.platform, _LINUX_REMEDY)}, or {_FILE_STORE}"


def qualified_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _refusal(backend: object) -> str | None:
    """Why `backend` must not hold secrets, or None if it may."""
    from keyring.backends import fail, null

    name = qualified_name(backend)
    if isinstance(backend, fail.Keyring):
        return f"no usable OS keyring ({name})"
    if isinstance(backend, null.Keyring):
        return f"the OS keyring backend {name} discards every secret"
    module = type(backend).__module__
    if module == "keyrings.alt" or module.startswith("keyrings.alt."):
        # plaintext files, or crypto whose key sits next to the data
        return f"the keyring backend {name} is not an OS keyring (it may keep secrets in plaintext)"
    try:
        priority = float(getattr(backend, "priority"))  # noqa: B009 - duck-typed
    except Exception as exc:  # noqa: BLE001 - keyring treats any failure here as "not viable"
        return f"the OS keyring ({name}) is not usable: {type(exc).__name__}: {_short(str(exc))}"
    if priority < 1:
        return (
            f"the keyring backend {name} is insecure (priority {priority:g} < 1; "
            "it may keep secrets in plaintext)"
        )
    return None


def choose_backend(backend: object) -> object:
    """The backend to use, given the configured one; `StoreUnavailable` if none fits.

    A chainer is unwrapped to its first acceptable member, used directly so that
    a write can never reach a plaintext member further down the chain. If the
    chainer itself would write to a refused backend (its top member), refuse.
    """
    from keyring.backends.chainer import ChainerBackend

    if isinstance(backend, ChainerBackend):
        chain = list(backend.backends)
        if not chain:
            raise StoreUnavailable(
                f"no usable OS keyring ({qualified_name(backend)} with no backends): {_remedy()}"
            )
        top = _refusal(chain[0])
        if top is not None:
            raise StoreUnavailable(f"{top}: {_remedy()}{_env_hint()}")
        return chain[0]
    reason = _refusal(backend)
    if reason is not None:
        raise StoreUnavailable(f"{reason}: {_remedy()}{_env_hint()}")
    return backend


def _env_hint() -> str:
    import os

    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return " (PYTHON_KEYRING_BACKEND is set: unset it)"
    return ""


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _environment_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the secret store cannot serve us now" rather
    than a bug. Looked up in `sys.modules` so that nothing extra is imported:
    a backend that raises them has imported them already."""
    from keyring.errors import KeyringError

    found: list[type[BaseException]] = [KeyringError, OSError]
    for module, attr in (
        ("secretstorage.exceptions", "SecretStorageException"),
        ("jeepney.wrappers", "DBusErrorResponse"),
        ("jeepney.io.common", "RouterClosed"),
        ("jeepney.auth", "AuthenticationError"),
        ("pywintypes", "error"),
        ("win32ctypes.pywin32.pywintypes", "error"),
    ):
        cls = getattr(sys.modules.get(module), attr, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def _is_locked(exc: BaseException) -> bool:
    from keyring.errors import KeyringLocked

    if isinstance(exc, KeyringLocked):
        return True
    if type(exc).__name__ in ("LockedException", "PromptDismissedException"):
        return True
    # "Failed to create the collection: Prompt dismissed.." (InitError): a
    # Secret Service that is running but was never unlocked
    return "prompt dismissed" in str(exc).lower()


def _is_timeout(exc: BaseException) -> bool:
    """A D-Bus call or authentication that timed out (jeepney raises TimeoutError)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _secret_service_timed_out() -> bool:
    """Whether the Secret Service backend is unusable only because D-Bus timed out."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        from keyring.backends import SecretService

        SecretService.Keyring.priority  # noqa: B018 - the property opens a D-Bus connection
    except Exception as exc:  # noqa: BLE001 - any other failure is not a timeout
        return _is_timeout(exc)
    return False


_TIMEOUT_MARK = "D-Bus timeout"
#: retry budget of one keyring call when the caller brings no deadline
OP_BUDGET = 10.0


def _timed_out(what: str, budget: float) -> StoreUnavailable:
    return StoreUnavailable(
        f"the OS keyring did not {what} within the {budget:.0f} s budget ({_TIMEOUT_MARK}s; "
        "the machine may be overloaded): try again, or raise export_timeout"
    )


def split_units(value: str, limit: int = CHUNK_UNITS) -> list[str]:
    """Split `value` into pieces of at most `limit` UTF-16 code units (what
    Windows counts), never inside a character."""
    chunks: list[str] = []
    start = units = 0
    for i, ch in enumerate(value):
        width = 2 if ord(ch) > 0xFFFF else 1
        if units + width > limit:
            chunks.append(value[start:i])
            start, units = i, 0
        units += width
    chunks.append(value[start:])
    return chunks


def _units(value: str) -> int:
    return len(value) + sum(1 for ch in value if ord(ch) > 0xFFFF)


class KeyringStore:
    """Secrets in the OS keyring; see the module docstring for the item layout."""

    def __init__(
        self, service: str = "credhelper", backend: object | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        try:
            import keyring
        except ImportError as exc:  # a broken install, but a clear message helps
            raise StoreUnavailable(
                f"the keyring library cannot be imported ({exc}): reinstall credhelper"
            ) from exc
        #: a busy D-Bus (CPUs saturated) times out; such calls are retried within
        #: this deadline (an export's), or within OP_BUDGET each (the daemon's store)
        self._deadline = deadline
        if backend is None:
            backend = self._discover(keyring)
        self._backend: Any = choose_backend(backend)
        self._service = service
        self._errors = _environment_errors()
        self.description = f"keyring ({getattr(self._backend, 'name', self.backend_name)})"

    def _discover(self, keyring: Any) -> object:
        """keyring's backend choice. Its discovery swallows a Secret Service
        that timed out (busy D-Bus) and picks the failing backend instead:
        a timeout is retried within the deadline, then reported as one."""
        errors: tuple[type[BaseException], ...] = (RuntimeError, *_environment_errors())
        deadline = self._deadline or Deadline(OP_BUDGET)
        delay = 0.05
        while True:
            try:
                backend = keyring.get_keyring()
            except errors as exc:
                if not _is_timeout(exc):
                    # e.g. PYTHON_KEYRING_BACKEND names a backend that cannot start
                    raise StoreUnavailable(
                        f"no usable OS keyring ({type(exc).__name__}: {_short(str(exc))}): "
                        f"{_remedy()}{_env_hint()}"
                    ) from exc
            else:
                if _refusal(backend) is None or not _secret_service_timed_out():
                    return backend
            if deadline.remaining() < delay:
                raise _timed_out("answer", deadline.budget)
            time.sleep(delay)
            delay = min(0.5, delay * 2)
            keyring.core.init_backend()

    def _retrying(self, action: str, key: str, writing: bool, call: Callable[[], T]) -> T:
        """`call()` through `_mapped`, retried while the keyring times out and
        the deadline allows: a slow D-Bus is not an absent keyring."""
        deadline = self._deadline or Deadline(OP_BUDGET)
        delay = 0.05
        while True:
            try:
                with self._mapped(action, key, writing):
                    return call()
            except StoreUnavailable as exc:
                if _TIMEOUT_MARK not in exc.message:
                    raise
                if deadline.remaining() < delay:
                    raise _timed_out(f"{action} {key}", deadline.budget) from None
            time.sleep(delay)
            delay = min(0.5, delay * 2)

    @property
    def backend_name(self) -> str:
        """Fully qualified class name of the backend in use."""
        return qualified_name(self._backend)

    # -- the Store protocol -------------------------------------------------

    def get(self, key: str) -> str | None:
        for _ in range(_GET_ATTEMPTS):
            head = self._read(key, key)
            if head is None:
                return None
            if head.startswith(_PLAIN):
                return head[len(_PLAIN) :]
            gen, count, length = self._manifest(key, head)
            value = self._read_chunks(key, gen, count)
            if value is None:
                # A writer may have replaced the value between our reads: the
                # old generation's chunks are gone. Read the head again.
                continue
            if len(value) != length:
                raise self._corrupt(key, "chunks do not add up")
            return value
        raise self._corrupt(key, "a chunk is missing")

    def set(self, key: str, value: str) -> None:
        old_head = self._read(key, key)
        if _units(value) <= CHUNK_UNITS:
            head = _PLAIN + value
            self._write(key, key, head)
        else:
            gen = secrets.token_hex(8)
            chunks = split_units(value)
            written: list[str] = []
            try:
                for i, chunk in enumerate(chunks):
                    name = self._chunk_name(key, gen, i)
                    self._write(key, name, chunk)
                    written.append(name)
                manifest = f"{_CHUNKED}{gen}:{len(chunks)}:{len(value)}"
                self._write(key, key, manifest)
            except StoreUnavailable:
                self._forget(written)
                raise
        if old_head is not None and old_head.startswith(_CHUNKED):
            # The new value is in place; stale chunks are garbage, not an error.
            with suppress(StoreUnavailable):
                self._delete_generation(key, old_head)

    def delete(self, key: str) -> None:
        head = self._read(key, key)
        if head is None:
            return
        # The head goes first: a reader then sees "no item", not a missing chunk.
        self._delete_item(key)
        if head.startswith(_CHUNKED):
            self._delete_generation(key, head)

    # -- helpers --------------------------------------------------------------

    def _read(self, key: str, name: str) -> str | None:
        """Read keyring item `name` (part of store item `key`)."""
        value = self._retrying("read", key, False, lambda: self._backend.get_password(self._service, name))
        if value is not None and not isinstance(value, str):
            raise self._corrupt(key, "not text")
        return value

    def _write(self, key: str, name: str, text: str) -> None:
        """Write keyring item `name` (part of store item `key`)."""
        self._retrying("write", key, True, lambda: self._backend.set_password(self._service, name, text))

    @staticmethod
    def _chunk_name(key: str, gen: str, index: int) -> str:
        return f"{key}#{gen}/{index}"

    def _manifest(self, key: str, head: str) -> tuple[str, int, int]:
        match = _MANIFEST.fullmatch(head)
        if match is None:
            raise self._corrupt(key, "unknown format")
        gen, count, length = match.group(1), int(match.group(2)), int(match.group(3))
        if not 1 <= count <= MAX_CHUNKS:
            raise self._corrupt(key, "bad chunk count")
        return gen, count, length

    def _read_chunks(self, key: str, gen: str, count: int) -> str | None:
        parts: list[str] = []
        for i in range(count):
            name = self._chunk_name(key, gen, i)
            part = self._read(key, name)
            if part is None:
                return None
            parts.append(part)
        return "".join(parts)

    def _delete_generation(self, key: str, head: str) -> None:
        match = _MANIFEST.fullmatch(head)
        if match is None:
            return
        gen, count = match.group(1), min(int(match.group(2)), MAX_CHUNKS)
        for i in range(count):
            self._delete_item(self._chunk_name(key, gen, i))

    def _delete_item(self, name: str) -> None:
        from keyring.errors import PasswordDeleteError

        # Every backend reports "no such item" as PasswordDeleteError: deleting
        # what is gone already is success.
        def delete() -> None:
            with suppress(PasswordDeleteError):
                self._backend.delete_password(self._service, name)

        self._retrying("delete", name, False, delete)

    def _forget(self, names: Sequence[str]) -> None:
        """Best effort: remove chunks of a write that did not complete."""
        with suppress(StoreUnavailable):
            for name in names:
                self._delete_item(name)

    @contextmanager
    def _mapped(self, action: str, key: str, writing: bool) -> Iterator[None]:
        """Turn "the keyring cannot serve us" errors into `StoreUnavailable`
        (exit 5), letting anything else (a bug) through untouched.

        A backend's error text may quote what it was asked to store (a whole
        value or any piece of it), so for writes only the error's type is
        reported and the original exception is not chained."""
        try:
            yield
        except self._errors as exc:
            if _is_timeout(exc):
                message = f"the OS keyring timed out ({_TIMEOUT_MARK}) on {action} {key}"
            elif _is_locked(exc):
                message = (
                    f"the OS keyring is locked ({self.backend_name}): unlock it (e.g. log in "
                    "to the desktop session or run gnome-keyring-daemon --unlock), "
                    f"or {_FILE_STORE}"
                )
            else:
                reason = type(exc).__name__
                if not writing:
                    reason += f": {_short(str(exc))}"
                message = (
                    f"the OS keyring ({self.backend_name}) failed to {action} {key} "
                    f"({reason}): {_remedy()}"
                )
            if writing:
                raise StoreUnavailable(message) from None
            raise StoreUnavailable(message) from exc

    def _corrupt(self, key: str, reason: str) -> CorruptItem:
        return CorruptItem(
            f"store item {key} is unreadable ({reason}): "
            "remove it with credhelper logout and sign in again"
        )
