"""Store backends: one contract every backend passes (`StoreContract`, in the
manner of keyring's `testing/backend.py`), then what each backend must refuse.

Tests marked `keyring` use a real Secret Service (gnome-keyring over D-Bus, see
test-infra.md section 2). Without one they are skipped, except in CI
(`CI=true`), where a missing Secret Service is a failure: CI must exercise the
real thing.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import re
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from credhelper.errors import EXIT_STORE, CorruptItem, StoreUnavailable
from credhelper.settings import Settings
from credhelper.store import Store, open_store
from credhelper.store.encrypted_file import KEY_CHECK, EncryptedFileStore, key_item, parse_key
from credhelper.store.keyring_store import CHUNK_UNITS, KeyringStore
from credhelper.store.memory import MemoryStore

SECRET_SERVICE = "keyring.backends.SecretService.Keyring"
#: long enough to be chunked by the keyring backend
LONG_SECRET = "ASIA-very-secret-" + "s3cr3t" * 400
KEY = "v1/creds/dev"


# -- keyring backend doubles (duck-typed: subclassing KeyringBackend would
# -- register them with keyring's backend discovery for the whole session) ----


class DictBackend:
    """A keyring backend double that is acceptable (priority >= 1)."""

    priority: float = 5

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError("No such password!")


class PlaintextBackend(DictBackend):
    """Stands for keyrings.alt's PlaintextKeyring (priority 0.5)."""

    priority = 0.5


class RaisingBackend(DictBackend):
    """Raises `exc` from every operation (or from writes only)."""

    def __init__(self, exc: BaseException, reads: bool = True) -> None:
        super().__init__()
        self.exc = exc
        self.reads = reads

    def get_password(self, service: str, username: str) -> str | None:
        if self.reads:
            raise self.exc
        return super().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        raise self.exc

    def delete_password(self, service: str, username: str) -> None:
        raise self.exc


# -- the Secret Service --------------------------------------------------------


@pytest.fixture(scope="session")
def secret_service() -> str:
    """Checks that a real, unlocked Secret Service is what keyring picks."""

    def unavailable(reason: str) -> None:
        message = f"no usable Secret Service ({reason}); see test-infra.md section 2"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)

    probe = f"credhelper-probe-{uuid.uuid4().hex}"
    try:
        store = KeyringStore(service=probe)
    except StoreUnavailable as exc:
        unavailable(exc.message)
        raise
    if store.backend_name != SECRET_SERVICE:
        unavailable(f"keyring picked {store.backend_name}")
    try:
        store.set("probe", "ok")
        ok = store.get("probe") == "ok"
        store.delete("probe")
    except StoreUnavailable as exc:
        unavailable(exc.message)
        raise
    if not ok:
        unavailable("set/get round trip failed")
    return store.backend_name


def secret_service_items(service: str) -> list[str]:
    """Usernames of every item of `service`, in all unlocked collections."""
    import secretstorage

    with closing(secretstorage.dbus_init()) as bus:
        names = []
        for collection in secretstorage.get_all_collections(bus):
            if collection.is_locked():
                continue
            for item in collection.search_items({"service": service}):
                names.append(item.get_attributes()["username"])
        return sorted(names)


def delete_secret_service_items(service: str) -> None:
    import secretstorage

    with closing(secretstorage.dbus_init()) as bus:
        for collection in secretstorage.get_all_collections(bus):
            if not collection.is_locked():
                for item in collection.search_items({"service": service}):
                    item.delete()


@pytest.fixture
def keyring_service(secret_service: str) -> Iterator[str]:
    """A keyring service name of its own for one test; its items go afterwards."""
    service = f"credhelper-test-{uuid.uuid4().hex}"
    yield service
    delete_secret_service_items(service)


# -- the contract ------------------------------------------------------------------


class StoreContract:
    """What every `Store` does. Subclasses provide `make_store()` and, if they
    can, `corrupt()`."""

    def make_store(self) -> Store:
        raise NotImplementedError

    def corrupt(self, store: Store, key: str) -> None:
        """Damage item `key` from outside the store."""
        pytest.skip("this backend cannot be damaged from outside")

    @pytest.fixture
    def store(self) -> Store:
        return self.make_store()

    def test_missing_item_is_none(self, store: Store) -> None:
        assert store.get("v1/creds/nobody") is None

    def test_round_trip(self, store: Store) -> None:
        value = json.dumps({"AccessKeyId": "ASIAEXAMPLE", "SessionToken": "tok"})
        store.set(KEY, value)
        assert store.get(KEY) == value

    def test_overwrite(self, store: Store) -> None:
        for value in ("first", LONG_SECRET, "x" * 1500, "short again", ""):
            store.set(KEY, value)
            assert store.get(KEY) == value

    def test_delete_is_idempotent(self, store: Store) -> None:
        store.delete(KEY)
        store.set(KEY, "value")
        store.delete(KEY)
        assert store.get(KEY) is None
        store.delete(KEY)
        assert store.get(KEY) is None

    def test_items_are_independent(self, store: Store) -> None:
        store.set("v1/creds/a", "A")
        store.set("v1/creds/b", LONG_SECRET)
        store.delete("v1/creds/a")
        assert store.get("v1/creds/b") == LONG_SECRET
        assert store.get("v1/creds/a") is None

    def test_unicode(self, store: Store) -> None:
        value = "pässwörd 🔑 日本語 \u0000 \n end"
        store.set("v1/creds/prøfile-ü", value)
        assert store.get("v1/creds/prøfile-ü") == value

    def test_large_value_round_trips(self, store: Store) -> None:
        value = "".join(chr(33 + i % 90) for i in range(10_000))
        store.set("v1/sso-token/big", value)
        assert store.get("v1/sso-token/big") == value

    def test_large_astral_value_round_trips(self, store: Store) -> None:
        # Two UTF-16 code units per character: chunking must count units.
        value = "🔑a" * 1_500
        store.set("v1/sso-token/emoji", value)
        assert store.get("v1/sso-token/emoji") == value

    def test_keys_with_slashes(self, store: Store) -> None:
        store.set("v1/creds/team/dev", "one")
        store.set("v1/creds/team", "two")
        assert store.get("v1/creds/team/dev") == "one"
        assert store.get("v1/creds/team") == "two"

    def test_values_never_leak_into_error_messages(self, store: Store) -> None:
        store.set(KEY, LONG_SECRET)
        self.corrupt(store, KEY)
        with pytest.raises(CorruptItem) as info:
            store.get(KEY)
        message = str(info.value)
        assert KEY in message
        assert "credhelper logout" in message
        assert "s3cr3t" not in message and "s3cr3t" not in repr(info.value)
        assert info.value.exit_code == EXIT_STORE
        # A damaged item can be removed, and then written again.
        store.delete(KEY)
        assert store.get(KEY) is None
        store.set(KEY, "fresh")
        assert store.get(KEY) == "fresh"

    def test_description(self, store: Store) -> None:
        assert isinstance(store.description, str) and store.description


class TestMemoryStore(StoreContract):
    def make_store(self) -> Store:
        return MemoryStore()


def write_key_file(path: Path, key: bytes | None = None, mode: int = 0o600) -> bytes:
    key = key or os.urandom(32)
    path.write_bytes(key)
    path.chmod(mode)
    return key


def file_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "store": "encrypted-file",
        "encrypted_file": str(tmp_path / "state" / "store.enc"),
        "key_file": str(tmp_path / "key"),
    }
    values.update(overrides)
    return Settings(**values)


def tamper(path: str, key: str) -> None:
    """Flip one ciphertext bit of item `key` in the store file at `path`."""
    with open(path) as f:
        doc = json.load(f)
    raw = bytearray(base64.b64decode(doc["items"][key]))
    raw[-1] ^= 1
    doc["items"][key] = base64.b64encode(bytes(raw)).decode()
    with open(path, "w") as f:
        json.dump(doc, f)


class TestEncryptedFileStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _key_file(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        write_key_file(tmp_path / "key")

    def make_store(self) -> Store:
        return EncryptedFileStore.from_settings(file_settings(self.tmp_path))

    def corrupt(self, store: Store, key: str) -> None:
        assert isinstance(store, EncryptedFileStore)
        tamper(store.path, key)


class TestKeyringStoreWithDictBackend(StoreContract):
    """The keyring store's own logic (chunks, manifests), without D-Bus."""

    def make_store(self) -> Store:
        self.backend = DictBackend()
        return KeyringStore(service="credhelper-test", backend=self.backend)

    def corrupt(self, store: Store, key: str) -> None:
        chunk = next(u for (_, u) in self.backend.items if u.startswith(key + "#"))
        del self.backend.items[("credhelper-test", chunk)]


@pytest.mark.keyring
class TestKeyringStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _service(self, keyring_service: str) -> None:
        self.service = keyring_service

    def make_store(self) -> Store:
        return KeyringStore(service=self.service)

    def corrupt(self, store: Store, key: str) -> None:
        import keyring

        chunk = next(u for u in secret_service_items(self.service) if u.startswith(key + "#"))
        keyring.delete_password(self.service, chunk)


# -- keyring: which backend --------------------------------------------------------


@pytest.mark.keyring
def test_keyring_uses_the_secret_service(keyring_service: str) -> None:
    store = KeyringStore(service=keyring_service)
    assert store.backend_name == SECRET_SERVICE
    assert store.description == "keyring (SecretService Keyring)"


def fail_backend() -> object:
    from keyring.backends import fail

    return fail.Keyring()  # type: ignore[no-untyped-call]


def null_backend() -> object:
    from keyring.backends import null

    return null.Keyring()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("make_backend", [fail_backend, null_backend, PlaintextBackend])
def test_refuses_failing_and_insecure_backends(make_backend: Any) -> None:
    backend = make_backend()
    with pytest.raises(StoreUnavailable) as info:
        KeyringStore(service="credhelper-test", backend=backend)
    message = str(info.value)
    assert f"{type(backend).__module__}.{type(backend).__qualname__}" in message
    assert 'store = "encrypted-file"' in message
    assert info.value.exit_code == EXIT_STORE
    assert "\n" not in message


def test_fail_backend_message() -> None:
    with pytest.raises(StoreUnavailable) as info:
        KeyringStore(backend=fail_backend())
    assert str(info.value).startswith("no usable OS keyring (keyring.backends.fail.Keyring): ")


def test_refuses_default_backend_when_keyring_finds_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.backends import fail

    monkeypatch.setattr(keyring, "get_keyring", fail.Keyring)
    with pytest.raises(StoreUnavailable, match=re.escape("keyring.backends.fail.Keyring")):
        KeyringStore()


def test_keyring_that_cannot_start_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring

    def broken() -> None:
        raise RuntimeError("Unable to initialize SecretService: DBUS_SESSION_BUS_ADDRESS is unset")

    monkeypatch.setattr(keyring, "get_keyring", broken)
    with pytest.raises(StoreUnavailable, match="DBUS_SESSION_BUS_ADDRESS"):
        KeyringStore()


def chainer(monkeypatch: pytest.MonkeyPatch, members: list[object]) -> object:
    from keyring.backends.chainer import ChainerBackend

    monkeypatch.setattr(ChainerBackend, "backends", members)
    return ChainerBackend()  # type: ignore[no-untyped-call]


def test_chainer_without_backends_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StoreUnavailable, match="ChainerBackend with no backends"):
        KeyringStore(backend=chainer(monkeypatch, []))


def test_chainer_of_plaintext_only_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    plaintext = PlaintextBackend()
    with pytest.raises(StoreUnavailable, match="PlaintextBackend"):
        KeyringStore(backend=chainer(monkeypatch, [plaintext]))
    assert plaintext.items == {}


def test_chainer_uses_its_secure_member_only(monkeypatch: pytest.MonkeyPatch) -> None:
    secure, plaintext = DictBackend(), PlaintextBackend()
    store = KeyringStore(service="svc", backend=chainer(monkeypatch, [secure, plaintext]))
    assert store.backend_name.endswith("DictBackend")
    store.set(KEY, "value")
    assert plaintext.items == {}
    assert store.get(KEY) == "value"


def test_chainer_that_would_write_to_plaintext_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    secure, plaintext = DictBackend(), PlaintextBackend()
    with pytest.raises(StoreUnavailable, match="insecure"):
        KeyringStore(backend=chainer(monkeypatch, [plaintext, secure]))


# -- keyring: errors at call time ---------------------------------------------------


def keyring_error(name: str, message: str) -> BaseException:
    import keyring.errors

    cls: type[BaseException] = getattr(keyring.errors, name)
    return cls(message)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("KeyringLocked", "Failed to unlock the collection!"),
        ("InitError", "Failed to create the collection: Prompt dismissed.."),
    ],
)
def test_locked_keyring_is_unavailable_with_remedy(name: str, message: str) -> None:
    store = KeyringStore(backend=RaisingBackend(keyring_error(name, message)))
    operations: list[Callable[[], object]] = [
        lambda: store.get(KEY),
        lambda: store.set(KEY, "v"),
        lambda: store.delete(KEY),
    ]
    for operation in operations:
        with pytest.raises(StoreUnavailable) as info:
            operation()
        assert "locked" in str(info.value)
        assert "gnome-keyring-daemon --unlock" in str(info.value)
        assert info.value.exit_code == EXIT_STORE


def test_absent_keyring_is_unavailable() -> None:
    store = KeyringStore(backend=RaisingBackend(keyring_error("NoKeyringError", "no backend")))
    with pytest.raises(StoreUnavailable, match="NoKeyringError: no backend"):
        store.get(KEY)


def test_dbus_errors_are_unavailable() -> None:
    store = KeyringStore(backend=RaisingBackend(ConnectionRefusedError(111, "Connection refused")))
    with pytest.raises(StoreUnavailable, match="ConnectionRefusedError"):
        store.get(KEY)


def test_errors_that_quote_the_secret_are_scrubbed() -> None:
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"
    error = keyring_error("PasswordSetError", f"cannot store {secret}")
    store = KeyringStore(backend=RaisingBackend(error, reads=False))
    for value in (secret, secret * 100):  # plain and chunked
        with pytest.raises(StoreUnavailable) as info:
            store.set(KEY, value)
        assert secret[:10] not in str(info.value)
        assert info.value.__cause__ is None
        assert "failed to write v1/creds/dev (PasswordSetError)" in str(info.value)


def test_programming_errors_are_not_disguised() -> None:
    store = KeyringStore(backend=RaisingBackend(TypeError("a bug")))
    with pytest.raises(TypeError):
        store.get(KEY)


# -- keyring: chunks ----------------------------------------------------------------


def test_no_keyring_item_exceeds_the_windows_blob_limit() -> None:
    backend = DictBackend()
    store = KeyringStore(service="svc", backend=backend)
    store.set(KEY, "🔑x" * 5_000)
    store.set("v1/creds/small", "y" * CHUNK_UNITS)
    assert all(len(v.encode("utf-16-le")) <= 2560 for v in backend.items.values())
    assert len(backend.items) > 2


def test_a_plain_value_cannot_pass_for_a_manifest() -> None:
    store = KeyringStore(service="svc", backend=DictBackend())
    looks_like_manifest = "chunked:v1:0123456789abcdef:3:2000"
    store.set(KEY, looks_like_manifest)
    assert store.get(KEY) == looks_like_manifest


def test_foreign_item_is_corrupt() -> None:
    backend = DictBackend()
    backend.items[("svc", KEY)] = "written by someone else"
    with pytest.raises(CorruptItem, match=re.escape(f"store item {KEY} is unreadable")):
        KeyringStore(service="svc", backend=backend).get(KEY)


def test_reader_racing_a_writer_gets_the_new_value() -> None:
    """A writer replaces the value between the reader's head and chunk reads:
    the old chunks are gone, so the reader reads the head again."""

    class RacingBackend(DictBackend):
        raced = False

        def get_password(self, service: str, username: str) -> str | None:
            if username.endswith("/0") and not self.raced:
                self.raced = True
                KeyringStore(service=service, backend=self).set(KEY, "new" * 500)
            return super().get_password(service, username)

    backend = RacingBackend()
    store = KeyringStore(service="svc", backend=backend)
    store.set(KEY, "old" * 500)
    assert store.get(KEY) == "new" * 500
    assert backend.raced


def chunk_generations(names: list[str], key: str) -> set[str]:
    return {n[len(key) + 1 :].split("/")[0] for n in names if n.startswith(key + "#")}


@pytest.mark.keyring
def test_overwrite_removes_the_previous_generation(keyring_service: str) -> None:
    store = KeyringStore(service=keyring_service)
    store.set(KEY, "a" * 3_500)
    first = secret_service_items(keyring_service)
    assert len(first) == 1 + 4 and KEY in first
    (old,) = chunk_generations(first, KEY)

    store.set(KEY, "b" * 2_500)
    second = secret_service_items(keyring_service)
    (new,) = chunk_generations(second, KEY)
    assert new != old
    assert len(second) == 1 + 3
    assert store.get(KEY) == "b" * 2_500

    store.set(KEY, "short")
    assert secret_service_items(keyring_service) == [KEY]
    store.delete(KEY)
    assert secret_service_items(keyring_service) == []


@pytest.mark.keyring
def test_missing_chunk_is_corrupt_item(keyring_service: str) -> None:
    import keyring

    store = KeyringStore(service=keyring_service)
    store.set(KEY, LONG_SECRET)
    chunk = next(n for n in secret_service_items(keyring_service) if n.endswith("/1"))
    keyring.delete_password(keyring_service, chunk)
    with pytest.raises(CorruptItem) as info:
        store.get(KEY)
    assert str(info.value) == (
        f"store item {KEY} is unreadable (a chunk is missing): "
        "remove it with credhelper logout and sign in again"
    )
    store.delete(KEY)  # removes what is left, missing chunk or not
    assert secret_service_items(keyring_service) == []


# -- keyring: a really locked collection -----------------------------------------------


class ThrowawayCollection:
    """A throw-away Secret Service collection with a known password, so a test
    can lock and unlock it without a prompt (there is no display). Uses
    gnome-keyring's `InternalUnsupportedGuiltRiddenInterface`, which creates and
    unlocks collections with a master password; the login collection and its
    (unknown) password are left alone."""

    PASSWORD = b"credhelper-test-password"

    def __init__(self) -> None:
        import secretstorage

        self.bus = secretstorage.dbus_init()
        session = self._call(
            "org.freedesktop.Secret.Service", "OpenSession", "sv", ("plain", ("s", ""))
        )
        self.session = session[1]
        label = f"credhelper-test-{uuid.uuid4().hex[:8]}"
        (self.path,) = self._call(
            "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface",
            "CreateWithMasterPassword",
            "a{sv}(oayays)",
            ({"org.freedesktop.Secret.Collection.Label": ("s", label)}, self._secret()),
        )
        self.collection = secretstorage.Collection(self.bus, self.path)

    def _secret(self) -> tuple[str, bytes, bytes, str]:
        return (self.session, b"", self.PASSWORD, "text/plain")

    def _call(self, interface: str, method: str, signature: str, body: tuple[Any, ...]) -> Any:
        from jeepney import DBusAddress, new_method_call
        from jeepney.wrappers import unwrap_msg

        address = DBusAddress(
            "/org/freedesktop/secrets", bus_name="org.freedesktop.secrets", interface=interface
        )
        return unwrap_msg(self.bus.send_and_get_reply(new_method_call(address, method, signature, body)))

    def lock(self) -> None:
        self.collection.lock()
        assert self.collection.is_locked()

    def unlock(self) -> None:
        self._call(
            "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface",
            "UnlockWithMasterPassword",
            "o(oayays)",
            (self.path, self._secret()),
        )
        assert not self.collection.is_locked()

    def backend(self) -> object:
        from keyring.backends import SecretService

        backend = SecretService.Keyring()  # type: ignore[no-untyped-call]
        backend.preferred_collection = self.path  # type: ignore[attr-defined]
        return backend

    def close(self) -> None:
        try:
            if self.collection.is_locked():
                self.unlock()
            self.collection.delete()
        finally:
            self.bus.close()


@pytest.fixture
def throwaway_collection(secret_service: str) -> Iterator[ThrowawayCollection]:
    from jeepney.wrappers import DBusErrorResponse

    try:
        collection = ThrowawayCollection()
    except DBusErrorResponse as exc:
        pytest.skip(f"the Secret Service is not gnome-keyring ({exc}): cannot lock headless")
    try:
        yield collection
    finally:
        collection.close()


@pytest.mark.keyring
def test_really_locked_keyring_is_unavailable(throwaway_collection: ThrowawayCollection) -> None:
    store = KeyringStore(service="credhelper-test", backend=throwaway_collection.backend())
    store.set(KEY, LONG_SECRET)
    throwaway_collection.lock()
    # keyring asks gnome-keyring to unlock; its prompt cannot show without a
    # display, so it is dismissed at once: exit 5 with a remedy, no hang.
    operations: list[Callable[[], object]] = [lambda: store.get(KEY), lambda: store.set(KEY, "new")]
    for operation in operations:
        with pytest.raises(StoreUnavailable) as info:
            operation()
        assert str(info.value).startswith(f"the OS keyring is locked ({SECRET_SERVICE}): ")
        assert not isinstance(info.value, CorruptItem)
    throwaway_collection.unlock()
    assert store.get(KEY) == LONG_SECRET


# -- encrypted file -------------------------------------------------------------------


def file_store(tmp_path: Path) -> EncryptedFileStore:
    if not (tmp_path / "key").exists():
        write_key_file(tmp_path / "key")
    return EncryptedFileStore.from_settings(file_settings(tmp_path))


def test_file_description_and_modes(tmp_path: Path) -> None:
    store = file_store(tmp_path)
    store.set(KEY, "value")
    assert store.description == f"encrypted-file ({store.path}, key file {tmp_path / 'key'})"
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(store.path)).st_mode) == 0o700
    assert not [n for n in os.listdir(os.path.dirname(store.path)) if n.endswith(".tmp")]


def test_file_holds_no_plaintext(tmp_path: Path) -> None:
    store = file_store(tmp_path)
    values = {f"v1/creds/p{i}": f"plain-value-{i}-{uuid.uuid4().hex}" for i in range(5)}
    for k, v in values.items():
        store.set(k, v)
    store.set("v1/creds/long", LONG_SECRET)
    data = Path(store.path).read_text()
    doc = json.loads(data)
    assert doc["format"] == "credhelper-encrypted-file" and doc["v"] == 1
    assert set(doc["items"]) == {*values, "v1/creds/long", KEY_CHECK}
    for v in values.values():
        assert v not in data
    assert "s3cr3t" not in data


def test_tampered_item_is_corrupt_and_others_survive(tmp_path: Path) -> None:
    store = file_store(tmp_path)
    store.set("v1/creds/a", "A")
    store.set("v1/creds/b", "B")
    tamper(store.path, "v1/creds/a")
    with pytest.raises(CorruptItem, match="wrong key or tampered"):
        store.get("v1/creds/a")
    assert store.get("v1/creds/b") == "B"
    before = json.loads(Path(store.path).read_text())["items"]["v1/creds/a"]
    store.set("v1/creds/c", "C")  # other writes leave the damaged item in place
    assert json.loads(Path(store.path).read_text())["items"]["v1/creds/a"] == before


def test_swapped_items_are_detected(tmp_path: Path) -> None:
    store = file_store(tmp_path)
    store.set("v1/creds/a", "A")
    store.set("v1/creds/b", "B")
    doc = json.loads(Path(store.path).read_text())
    doc["items"]["v1/creds/b"] = doc["items"]["v1/creds/a"]
    Path(store.path).write_text(json.dumps(doc))
    with pytest.raises(CorruptItem):
        store.get("v1/creds/b")


def test_a_damaged_item_is_not_a_wrong_key(tmp_path: Path) -> None:
    """With the key check item intact, one item that fails authentication is
    that item's problem (CorruptItem, re-derived by the broker), not a wrong key."""
    file_store(tmp_path).set(KEY, "value")
    path = Path(file_store(tmp_path).path)
    doc = json.loads(path.read_text())
    raw = bytearray(base64.b64decode(doc["items"][KEY]))
    raw[-1] ^= 1
    doc["items"][KEY] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(CorruptItem):
        file_store(tmp_path).get(KEY)


def test_wrong_key_is_refused_at_open_with_the_key_file_named(tmp_path: Path) -> None:
    """A key that opens none of the items is a wrong key_file, not a corrupt
    store: refused when the store opens (nothing written with it), with the
    advice to check key_file and never to delete anything."""
    file_store(tmp_path).set(KEY, "value")
    path = file_store(tmp_path).path
    before = Path(path).read_bytes()
    write_key_file(tmp_path / "key")  # a different key
    with pytest.raises(StoreUnavailable) as info:
        file_store(tmp_path)
    message = str(info.value)
    assert "check key_file" in message and "do not delete" in message
    assert "logout" not in message and "remove" not in message
    assert Path(path).read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [b"\x00\xffgarbage", b"{}", b"[1, 2]", b'{"format": "credhelper-encrypted-file", "v": 1}'],
)
def test_unparseable_file_is_never_overwritten(tmp_path: Path, content: bytes) -> None:
    store = file_store(tmp_path)
    os.makedirs(os.path.dirname(store.path), exist_ok=True)
    Path(store.path).write_bytes(content)
    operations: list[Callable[[], object]] = [
        lambda: store.get(KEY),
        lambda: store.set(KEY, "v"),
        lambda: store.delete(KEY),
    ]
    for operation in operations:
        with pytest.raises(StoreUnavailable) as info:
            operation()
        assert store.path in str(info.value)
        assert "move" in str(info.value)
        assert not isinstance(info.value, CorruptItem)
    assert Path(store.path).read_bytes() == content


def test_newer_format_asks_for_an_upgrade(tmp_path: Path) -> None:
    store = file_store(tmp_path)
    os.makedirs(os.path.dirname(store.path), exist_ok=True)
    Path(store.path).write_text('{"format": "credhelper-encrypted-file", "v": 2, "items": {}}')
    with pytest.raises(StoreUnavailable, match="upgrade credhelper"):
        store.get(KEY)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    write_key_file(tmp_path / "key", mode=0o644)
    with pytest.raises(StoreUnavailable) as info:
        EncryptedFileStore.from_settings(file_settings(tmp_path))
    assert f"chmod 600 {tmp_path / 'key'}" in str(info.value)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file away")
def test_key_file_of_another_user_is_refused(tmp_path: Path) -> None:
    write_key_file(tmp_path / "key")
    os.chown(tmp_path / "key", 12345, 12345)
    with pytest.raises(StoreUnavailable, match="belongs to another user"):
        EncryptedFileStore.from_settings(file_settings(tmp_path))


def test_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as info:
        EncryptedFileStore.from_settings(file_settings(tmp_path))
    assert "head -c32 /dev/urandom >" in str(info.value)
    assert not (tmp_path / "key").exists()


@pytest.mark.parametrize("content", [b"short", b"x" * 33, b"z" * 64 + b"\n"])
def test_key_file_of_wrong_length_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "key").write_bytes(content)
    (tmp_path / "key").chmod(0o600)
    with pytest.raises(StoreUnavailable, match="32-byte key"):
        EncryptedFileStore.from_settings(file_settings(tmp_path))


def test_key_file_forms() -> None:
    key = os.urandom(32)
    assert parse_key(key) == key
    assert parse_key(key.hex().encode() + b"\n") == key
    assert parse_key(base64.b64encode(key) + b"\n") == key
    assert parse_key(base64.b64encode(key[:16])) is None


def test_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    write_key_file(creds / "credhelper-key", mode=0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    store = EncryptedFileStore.from_settings(file_settings(tmp_path, key_file="systemd"))
    store.set(KEY, "value")
    assert store.get(KEY) == "value"
    assert "credhelper-key" in store.description
    # a relative key_file also finds the systemd credential
    relative = EncryptedFileStore.from_settings(file_settings(tmp_path, key_file="credhelper-key"))
    assert relative.get(KEY) == "value"


def test_systemd_key_without_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(StoreUnavailable, match="CREDENTIALS_DIRECTORY is not set"):
        EncryptedFileStore.from_settings(file_settings(tmp_path, key_file="systemd"))


def test_relative_key_file_is_relative_to_the_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    write_key_file(tmp_path / "my.key")
    settings = file_settings(tmp_path, key_file="my.key", path=str(tmp_path / "config.toml"))
    store = EncryptedFileStore.from_settings(settings)
    assert store.description.endswith(f"key file {tmp_path / 'my.key'})")


def _write_many(path: str, key: bytes, worker: int, count: int) -> None:
    store = EncryptedFileStore(path, key)
    for i in range(count):
        store.set(f"v1/creds/w{worker}-{i}", f"value-{worker}-{i}")


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    key = write_key_file(tmp_path / "key")
    path = str(tmp_path / "state" / "store.enc")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_write_many, args=(path, key, w, 20)) for w in range(8)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    store = EncryptedFileStore(path, key)
    for w in range(8):
        for i in range(20):
            assert store.get(f"v1/creds/w{w}-{i}") == f"value-{w}-{i}"
    assert len(json.loads(Path(path).read_text())["items"]) == 160 + 1  # and the key check item


def test_key_in_refused_keyring_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyring
    from keyring.backends import fail

    monkeypatch.setattr(keyring, "get_keyring", fail.Keyring)
    with pytest.raises(StoreUnavailable, match="no usable OS keyring"):
        EncryptedFileStore.from_settings(file_settings(tmp_path, key_file=""))
    assert not (tmp_path / "state" / "store.enc").exists()


@pytest.mark.keyring
def test_key_in_keyring(tmp_path: Path, keyring_service: str) -> None:
    settings = file_settings(tmp_path, key_file="", keyring_service=keyring_service)
    store = EncryptedFileStore.from_settings(settings)
    assert store.description == f"encrypted-file ({store.path}, key in keyring)"
    store.set(KEY, LONG_SECRET)
    assert secret_service_items(keyring_service) == [key_item(store.path)]
    # a second process finds the same key
    assert EncryptedFileStore.from_settings(settings).get(KEY) == LONG_SECRET
    assert "s3cr3t" not in Path(store.path).read_text()

    # Without its key the file is not silently given a new one.
    KeyringStore(service=keyring_service).delete(key_item(store.path))
    content = Path(store.path).read_bytes()
    with pytest.raises(StoreUnavailable, match="missing from the keyring"):
        EncryptedFileStore.from_settings(settings)
    assert Path(store.path).read_bytes() == content
    assert secret_service_items(keyring_service) == []


def test_open_store_dispatch(tmp_path: Path) -> None:
    assert isinstance(open_store(Settings(store="memory")), MemoryStore)
    write_key_file(tmp_path / "key")
    assert isinstance(open_store(file_settings(tmp_path)), EncryptedFileStore)
