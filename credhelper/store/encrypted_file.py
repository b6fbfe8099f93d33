"""An AES-256-GCM encrypted file: for machines without a usable OS keyring
(servers, containers), or users who prefer one file.

File format (JSON, so that a human can see what it is and which items it holds):
    {"format": "credhelper-encrypted-file", "v": 1,
     "items": {"<name>": "<base64(nonce[12] + ciphertext + tag)>"}}
Each item is encrypted on its own with its name as associated data: items cannot
be swapped or renamed unnoticed, and one damaged item (`CorruptItem`) leaves the
others readable.

Writes are read-modify-write under an exclusive `flock` on `<file>.lock`, then a
temp file in the same directory (0600), fsync, `os.replace`, fsync of the
directory: a reader (who takes no lock) sees the old file or the new one. A file
that cannot be parsed is never overwritten: it may be the user's only copy.

The key lives in the OS keyring (item `v1/file-key/<absolute file path>`,
created on first use), or, on headless machines, in a key file or a systemd
credential (`key_file` setting; see `find_key_file`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shlex
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from credhelper.errors import CorruptItem, StoreUnavailable

# The file format and the key forms, shared with the lean path's reader (stdlib only).
from credhelper.lean.store import FORMAT, KEY_BYTES, NONCE_BYTES, TAG_BYTES, VERSION, parse_key

if TYPE_CHECKING:
    from credhelper.deadline import Deadline
    from credhelper.settings import Settings

#: an item that holds its own name, written with the first item: opening it proves the key
KEY_CHECK = "keycheck"
#: file name of the key under `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`)
SYSTEMD_CREDENTIAL = "credhelper-key"
_MAX_KEY_FILE = 4096


def key_item(path: str) -> str:
    """Keyring item holding the key of the store file at `path`."""
    return f"v1/file-key/{os.path.abspath(path)}"


def _generate_command(path: str) -> str:
    return f"(umask 077; head -c32 /dev/urandom > {shlex.quote(path)})"


def _move_away(path: str) -> str:
    return (
        f"move {path} away (the tokens it holds will have to be re-created "
        "with credhelper login) or set encrypted_file to another path"
    )


class EncryptedFileStore:
    """Items in one AES-256-GCM encrypted JSON file; see the module docstring."""

    def __init__(self, path: str, key: bytes, *, key_source: str = "key given by caller") -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("EncryptedFileStore needs a 32-byte key")
        self.path = os.path.abspath(path)
        self._aead = AESGCM(key)
        self.description = f"encrypted-file ({self.path}, {key_source})"

    @classmethod
    def from_settings(cls, settings: Settings, deadline: Deadline | None = None) -> EncryptedFileStore:
        path = os.path.abspath(settings.encrypted_file_path())
        if not settings.encrypted_file:
            _private_default_dir(os.path.dirname(path))
        if settings.key_file in ("", "keyring"):
            key = key_from_keyring(path, settings.keyring_service, deadline)
            store = cls(path, key, key_source="key in keyring")
        else:
            key_path = find_key_file(settings)
            store = cls(path, read_key_file(key_path), key_source=f"key file {key_path}")
        store.check_key(settings.path or "the credhelper settings")
        return store

    def check_key(self, settings_path: str) -> None:
        """Refuse a key that opens none of the file's items: a wrong key_file
        must not read as "every item is corrupt", nor get new items written
        under it next to the old ones. Nothing is deleted."""
        items = read_items(self.path)
        if KEY_CHECK in items:  # a known item: decrypting it says whether the key is the one
            candidates = [(KEY_CHECK, items[KEY_CHECK])]
        else:  # a file from before the key check item: any item that opens will do
            candidates = list(items.items())
        if not candidates:
            return
        for name, blob in candidates:
            try:
                self._decrypt(name, blob)
                return
            except CorruptItem:
                continue
        raise StoreUnavailable(
            f"the encrypted-file store {self.path} cannot be decrypted with its "
            f"{self.description.split(', ', 1)[-1].rstrip(')')}: check key_file in {settings_path} "
            "(the key the store was written with); do not delete the store"
        )

    # -- the Store protocol -------------------------------------------------

    def get(self, key: str) -> str | None:
        blob = read_items(self.path).get(key)
        if blob is None:
            return None
        return self._decrypt(key, blob)

    def set(self, key: str, value: str) -> None:
        blob = self._encrypt(key, value)
        with file_lock(self.path):
            items = read_items(self.path)
            items[key] = blob
            if KEY_CHECK not in items:  # lets check_key tell a wrong key from a damaged item
                items[KEY_CHECK] = self._encrypt(KEY_CHECK, KEY_CHECK)
            _write_items(self.path, items)

    def delete(self, key: str) -> None:
        with file_lock(self.path):
            items = read_items(self.path)
            if items.pop(key, None) is None:
                return
            _write_items(self.path, items)

    # -- crypto -------------------------------------------------------------

    def _encrypt(self, key: str, value: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), key.encode("utf-8"))
        return base64.b64encode(nonce + sealed).decode("ascii")

    def _decrypt(self, key: str, blob: object) -> str:
        try:
            if not isinstance(blob, str):
                raise ValueError("not text")
            raw = base64.b64decode(blob, validate=True)
            if len(raw) < NONCE_BYTES + TAG_BYTES:
                raise ValueError("too short")
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], key.encode("utf-8"))
            return plain.decode("utf-8")
        except InvalidTag:
            reason = "wrong key or tampered"
        except (ValueError, binascii.Error) as exc:  # includes UnicodeDecodeError
            reason = f"malformed: {type(exc).__name__}"
        raise CorruptItem(
            f"store item {key} is unreadable ({reason}): "
            "remove it with credhelper logout and sign in again"
        )


# -- the file -------------------------------------------------------------------


def _private_default_dir(directory: str) -> None:
    """The default location is credhelper's own state dir: make it 0700 even if
    something else created it first. (A directory the user chose is left as is.)"""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.stat(directory)
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(directory, 0o700)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create {directory} ({exc.strerror}): check the permissions of its parent"
        ) from exc


def read_items(path: str) -> dict[str, object]:
    """The items of the store file at `path` (empty if it does not exist)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot read the encrypted store {path} ({exc.strerror}): fix its permissions"
        ) from exc
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StoreUnavailable(f"{path} is not a credhelper encrypted store: {_move_away(path)}")
    version = doc.get("v")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise StoreUnavailable(
            f"{path} was written by a newer credhelper (format v{version}): upgrade credhelper"
        )
    items = doc.get("items")
    if version != VERSION or not isinstance(items, dict):
        raise StoreUnavailable(f"{path} is a damaged credhelper store: {_move_away(path)}")
    return items


def _write_items(path: str, items: dict[str, object]) -> None:
    """Replace the file atomically and durably (caller holds `file_lock`)."""
    directory = os.path.dirname(path)
    body = json.dumps({"format": FORMAT, "v": VERSION, "items": items}, sort_keys=True)
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".credhelper-", suffix=".tmp")  # 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = ""
        _fsync_dir(directory)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot write the encrypted store {path} ({exc.strerror}): "
            "check free space and permissions of its directory"
        ) from exc
    finally:
        if tmp:
            with suppress(OSError):
                os.unlink(tmp)


def _fsync_dir(directory: str) -> None:
    """Make the rename durable. Best effort: the new file is in place already,
    and some file systems refuse fsync on a directory."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: a writer holds the file lock for one write: waiting longer means it is stuck
LOCK_TIMEOUT = 10.0


@contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Exclusive `flock` on `<path>.lock`, serialising writers across processes.
    Creates the store's directory (0700) if needed."""
    try:
        import fcntl
    except ImportError as exc:  # Windows
        raise StoreUnavailable(
            "the encrypted-file store needs POSIX file locks: use store = keyring here"
        ) from exc
    lock = path + ".lock"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create the lock file {lock} ({exc.strerror}): "
            "check the permissions of its directory"
        ) from exc
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"another process has held {lock} for over {LOCK_TIMEOUT:.0f} s "
                        "(a writer is stopped or hung): find it with fuser, or try again"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- the key --------------------------------------------------------------------


def key_from_keyring(path: str, service: str, deadline: Deadline | None = None) -> bytes:
    """The key of the store file at `path`, kept in the OS keyring; created on
    first use. `StoreUnavailable` if the keyring cannot serve (no plaintext
    fallback: then the key file setting is the way)."""
    from credhelper.store.keyring_store import KeyringStore

    ring = KeyringStore(service=service, deadline=deadline)
    name = key_item(path)
    encoded = ring.get(name)
    if encoded is None:
        with file_lock(path):  # two first uses must not make two keys
            encoded = ring.get(name)
            if encoded is None:
                if read_items(path):
                    # A new key would make every item unreadable: say so instead.
                    raise StoreUnavailable(
                        f"the key of {path} is missing from the keyring "
                        f"(service {service}, item {name}): restore it, or {_move_away(path)}"
                    )
                encoded = base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")
                ring.set(name, encoded)
    key = parse_key(encoded.encode("ascii", "replace"))
    if key is None:
        raise CorruptItem(
            f"store item {name} is unreadable (not a 32-byte key): "
            f"remove it from the keyring and {_move_away(path)}"
        )
    return key


def find_key_file(settings: Settings) -> str:
    """Where the key file named by `settings.key_file` is.

    - `"systemd"`: `$CREDENTIALS_DIRECTORY/credhelper-key` (`LoadCredential=`);
    - an absolute path (or `~/...`): that file;
    - a relative name: `$CREDENTIALS_DIRECTORY/<name>`, then
      `$CREDENTIALS_DIRECTORY/credhelper-key` when run by systemd, then the
      name relative to the settings file's directory (a daemon's working
      directory means nothing).
    The first that exists wins; if none does, `StoreUnavailable` says how to
    create one.
    """
    setting = settings.key_file
    creds = os.environ.get("CREDENTIALS_DIRECTORY", "")
    if setting == "systemd":
        if not creds:
            raise StoreUnavailable(
                'key_file = "systemd" but $CREDENTIALS_DIRECTORY is not set: run credhelper '
                f"under systemd with LoadCredential={SYSTEMD_CREDENTIAL}:/path/to/key, "
                "or set key_file to the key file's path"
            )
        candidates = [os.path.join(creds, SYSTEMD_CREDENTIAL)]
    else:
        expanded = os.path.expanduser(setting)
        if os.path.isabs(expanded):
            candidates = [expanded]
        else:
            candidates = []
            if creds:
                candidates += [os.path.join(creds, setting), os.path.join(creds, SYSTEMD_CREDENTIAL)]
            base = os.path.dirname(os.path.abspath(settings.path)) if settings.path else os.getcwd()
            candidates.append(os.path.join(base, expanded))
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    target = candidates[-1]
    raise StoreUnavailable(
        f"key file {target} does not exist: generate one with: {_generate_command(target)}"
    )


def read_key_file(path: str) -> bytes:
    """The 32-byte key in `path` (raw, 64 hex digits or base64).

    Refuses a file others could read or that another user owns: the key is as
    secret as every token in the store. A systemd credential is exempt from the
    owner check (systemd owns and guards `$CREDENTIALS_DIRECTORY`).
    """
    creds = os.environ.get("CREDENTIALS_DIRECTORY", "")
    systemd = bool(creds) and os.path.dirname(os.path.abspath(path)) == os.path.abspath(creds)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise StoreUnavailable(
            f"key file {path} does not exist: generate one with: {_generate_command(path)}"
        ) from exc
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot read key file {path} ({exc.strerror}): make it readable by this user only "
            f"(chmod 600 {shlex.quote(path)})"
        ) from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())  # of the file we read, not of a name that may change
        if not stat.S_ISREG(st.st_mode):
            raise StoreUnavailable(f"key file {path} is not a regular file: point key_file at one")
        mode = stat.S_IMODE(st.st_mode)
        if not systemd and st.st_uid != os.getuid():
            raise StoreUnavailable(
                f"key file {path} belongs to another user (uid {st.st_uid}): "
                f"chown it to yourself, or generate your own with: {_generate_command(path)}"
            )
        if mode & (0o004 if systemd else 0o077):
            raise StoreUnavailable(
                f"key file {path} is readable by others (mode {mode:04o}): "
                f"chmod 600 {shlex.quote(path)}"
            )
        data = f.read(_MAX_KEY_FILE + 1)
    key = parse_key(data)
    if key is None:
        raise StoreUnavailable(
            f"key file {path} does not hold a 32-byte key (raw, 64 hex digits or base64): "
            f"generate one with: {_generate_command(path)}"
        )
    return key
