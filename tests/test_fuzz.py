"""Bounded-time fuzzing (issue 8, "Also"): the socket protocol, a real daemon,
the settings parser and the AWS config loader get random and near-valid input.
Each property: a clean result or a `CredhelperError` (or `ProtocolError` for
the wire format), never any other exception. ~300 examples each, no
deadline per example, no example database: the run is the same length every
time and fits in CI.

Crashes the fuzzers found are pinned below as plain regression tests.
"""

from __future__ import annotations

import json
import os
import socket
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from daemon_helpers import Daemon, Daemons, write_setup
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credhelper import protocol, sources
from credhelper import settings as settings_mod
from credhelper.config import AwsConfig
from credhelper.errors import CredhelperError
from credhelper.sources.base import ClientFactory, Context
from credhelper.store.memory import MemoryStore

if TYPE_CHECKING:
    from conftest import AwsEnv

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
#: every character, surrogates too (os.environ holds them for non-UTF-8 bytes)
ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=30)
#: environment values may hold surrogates (undecodable bytes of os.environ)
ENV_TEXT = ANY_TEXT


# ------------------------------------------------------------------ the wire format


def header_like() -> st.SearchStrategy[bytes]:
    """Lines near a valid header: right and wrong magic, kinds, numbers, spacing."""
    word = st.sampled_from([b"CREDHELPER/1", b"CREDHELPER/2", b"credhelper/1", b""])
    kind = st.sampled_from([k.encode() for k in protocol.KINDS] + [b"OK", b"", b"\xff"])
    number = st.one_of(
        st.integers(min_value=0, max_value=2**70).map(lambda n: str(n).encode()),
        st.sampled_from([b"-1", b"+1", b"1.5", b"", b"\xd9\xa3", b"0x10", b" 1", b"9" * 5000]),
    )
    sep = st.sampled_from([b" ", b"  ", b"\t"])
    return st.tuples(word, sep, kind, sep, number, sep, number, st.sampled_from([b"\n", b"", b"\r\n"])).map(
        b"".join
    )


class TestProtocol:
    @FUZZ
    @given(st.binary(max_size=200) | header_like())
    def test_parse_header_accepts_or_refuses(self, line: bytes) -> None:
        try:
            kind, code, length = protocol.parse_header(line)
        except protocol.ProtocolError:
            return
        assert kind in protocol.KINDS
        assert code >= 0 and length >= 0

    @FUZZ
    @given(st.sampled_from(protocol.KINDS), st.integers(0, 255), st.integers(0, protocol.MAX_REQUEST))
    def test_header_round_trip(self, kind: str, code: int, length: int) -> None:
        line = protocol.header(kind, code, length)
        assert len(line) <= protocol.MAX_HEADER
        assert protocol.parse_header(line) == (kind, code, length)

    @FUZZ
    @given(st.binary(max_size=400))
    def test_decode_request_accepts_or_refuses(self, line: bytes) -> None:
        try:
            req = protocol.decode_request(line)
        except protocol.ProtocolError:
            return
        assert isinstance(req, dict) and req["v"] == protocol.VERSION and isinstance(req["op"], str)

    @FUZZ
    @given(st.dictionaries(st.sampled_from(["v", "op", "profile", "format", "env", "x"]),
                           st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                                        | ANY_TEXT, lambda i: st.lists(i, max_size=3)
                                        | st.dictionaries(ANY_TEXT, i, max_size=3), max_leaves=6),
                           max_size=6))
    def test_decode_request_of_json_objects(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj).encode() + b"\n"
        try:
            req = protocol.decode_request(line)
        except protocol.ProtocolError:
            return
        assert req["v"] == protocol.VERSION

    def test_surrogate_in_environment_round_trips(self) -> None:
        env = {"HOME": "/home/caf\udce9"}
        assert protocol.decode_request(protocol.encode_request("export", {}, env))["env"] == env

    @FUZZ
    @given(op=st.text(max_size=12), fields=st.dictionaries(st.text(max_size=8), ENV_TEXT, max_size=4),
           env=st.none() | st.dictionaries(st.text(max_size=8), ENV_TEXT, max_size=4))
    def test_request_round_trip(self, op: str, fields: dict[str, str],
                                env: dict[str, str] | None) -> None:
        """What the fast path encodes (without json), the daemon decodes to the same values."""
        fields = {k: v for k, v in fields.items() if k not in ("v", "op", "env")}
        line = protocol.encode_request(op, fields, env)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        req = protocol.decode_request(line)
        want: dict[str, object] = {"v": protocol.VERSION, "op": op, **fields}
        if env is not None:
            want["env"] = env
        assert req == want


# ------------------------------------------------------------------ a real daemon


@pytest.fixture
def daemon(aws_env: AwsEnv) -> Iterator[tuple[Daemon, Daemons]]:
    started = Daemons(aws_env)
    write_setup(aws_env)
    yield started.start(), started
    started.close()


def near_requests() -> st.SearchStrategy[bytes]:
    """Valid request lines with bytes flipped, cut, doubled, or padded."""
    valid = [
        protocol.encode_request("ping", {}),
        protocol.encode_request("status", {}),
        protocol.encode_request("export", {"profile": "dev", "format": "claude"},
                                {"HOME": "/nonexistent"}),
    ]

    def mutate(data: tuple[bytes, int, bytes, str]) -> bytes:
        line, at, junk, how = data
        at %= len(line)
        if how == "flip":
            return line[:at] + junk[:1] + line[at + 1:]
        if how == "cut":
            return line[:at] + b"\n"
        if how == "insert":
            return line[:at] + junk + line[at:]
        return line[:-1] + junk + b"\n"

    return st.tuples(st.sampled_from(valid), st.integers(0, 10_000), st.binary(min_size=1, max_size=40),
                     st.sampled_from(["flip", "cut", "insert", "append"])).map(mutate)


def exchange(path: Path, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(str(path))
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except OSError:
            pass
        return data


def test_daemon_survives_random_and_mutated_requests(aws_env: AwsEnv,
                                                     daemon: tuple[Daemon, Daemons]) -> None:
    """Every answer is a well-formed response (or a quiet close for a line
    without an end); afterwards the same daemon still answers and serves."""
    d, daemons = daemon
    pid = d.pid

    @FUZZ
    @given(st.binary(max_size=2048) | near_requests())
    def throw(payload: bytes) -> None:
        data = exchange(d.socket, payload)
        body = data
        while body:  # `wait` headers (the greeting, a mint), then at most one answer
            head, nl, body = body.partition(b"\n")
            assert nl, data[:200]
            kind, _code, length = protocol.parse_header(head + b"\n")
            if kind != "wait":
                assert len(body) == length, data[:200]
                break
        assert b"SecretAccessKey" not in body

    throw()
    assert d.running(), d.tail()
    assert d.ping() == pid
    assert daemons.export().rc == 0
    tracebacks = [ln for ln in d.lines() if "_raw" in ln]
    assert not tracebacks, tracebacks[:5]


# ------------------------------------------------------------------ settings


#: any bytes (not UTF-8 is a config error too), and integers past Python's 4300-digit limit
SETTINGS_BYTES = st.binary(max_size=300) | st.text(max_size=300).map(str.encode)
SETTINGS_ERRORS = "surrogatepass"
HUGE_DIGITS = 5000


TOML_KEYS = [
    "refresh_window", "store", "warm_profiles", "keyring_service", "encrypted_file", "key_file",
    "mint_timeout", "export_timeout", "unknown", "", "Store",
]


def toml_values() -> st.SearchStrategy[Any]:
    scalars = (st.integers(min_value=-(2**70), max_value=2**70) | st.booleans() | st.floats()
               | st.text(max_size=20) | st.sampled_from(["keyring", "encrypted-file", "memory"]))
    return st.recursive(scalars, lambda i: st.lists(i, max_size=4)
                        | st.dictionaries(st.text(max_size=5), i, max_size=3), max_leaves=6)


def toml_text() -> st.SearchStrategy[str]:
    """TOML-ish lines: known keys with literals of every type, and junk."""
    literal = st.one_of(
        st.integers(min_value=-(2**80), max_value=2**80).map(str),
        st.sampled_from(["true", "1e999", "inf", "nan", "0x10", "1_000", "[]", '["dev", 1]',
                         '"memory"', "'keyring'", '"""x"""', "{a = 1}", "1979-05-27", "[[[[1]]]]",
                         "9" * HUGE_DIGITS]),
        st.text(max_size=15).map(json.dumps),
    )
    line = st.one_of(
        st.tuples(st.sampled_from(TOML_KEYS), literal).map(lambda kv: f"{kv[0]} = {kv[1]}"),
        st.text(max_size=40),
        st.sampled_from(["[table]", "[[arr]]", "a.b = 1", "= 1", "key =", "\x00"]),
    )
    return st.lists(line, max_size=6).map("\n".join)


class TestSettings:
    def test_settings_file_not_utf8_is_a_config_error(self, tmp_path: Path) -> None:
        path = tmp_path / "config.toml"
        path.write_bytes(b'store = "memory"\n# caf\xe9\n')
        with pytest.raises(CredhelperError):
            settings_mod.load(str(path))

    def test_integer_of_5000_digits_is_a_config_error(self, tmp_path: Path) -> None:
        path = tmp_path / "config.toml"
        path.write_text("mint_timeout = " + "9" * 5000 + "\n")
        with pytest.raises(CredhelperError):
            settings_mod.load(str(path))

    @FUZZ
    @given(st.dictionaries(st.sampled_from(TOML_KEYS), toml_values(), max_size=5))
    def test_parse(self, data: dict[str, Any]) -> None:
        try:
            result = settings_mod.parse(data, "fuzz.toml")
        except CredhelperError:
            return
        assert isinstance(result, settings_mod.Settings)

    @FUZZ
    @given(SETTINGS_BYTES | toml_text().map(lambda t: t.encode("utf-8", SETTINGS_ERRORS)))
    def test_load(self, tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
        path = tmp_path_factory.getbasetemp() / "fuzz-settings.toml"
        path.write_bytes(raw)
        try:
            result = settings_mod.load(str(path))
        except CredhelperError:
            return
        assert isinstance(result, settings_mod.Settings)


# ------------------------------------------------------------------ the AWS config


def ini_text() -> st.SearchStrategy[str]:
    name = st.text(string.ascii_letters + string.digits + " -_.%$[]", max_size=10)
    header = st.one_of(
        name.map(lambda n: f"[profile {n}]"), name.map(lambda n: f"[{n}]"),
        name.map(lambda n: f"[sso-session {n}]"), st.just("[default]"),
    )
    keys = st.sampled_from([
        "region", "role_arn", "source_profile", "credential_process", "sso_session",
        "duration_seconds", "s3", "%(x)s", "", " ", "web_identity_token_file",
    ])
    value = st.text(max_size=20) | st.sampled_from(["%(region)s", "%", "\n  nested = 1", "${X}"])
    line = st.one_of(
        header,
        st.tuples(keys, st.sampled_from(["=", ":", " = ", ""]), value).map("".join),
        st.text(max_size=30),
    )
    return st.lists(line, max_size=8).map("\n".join)


class TestAwsConfig:
    @FUZZ
    @given(st.binary(max_size=300) | ini_text().map(lambda t: t.encode("utf-8", "surrogatepass")))
    def test_load(self, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                  raw: bytes) -> None:
        path = tmp_path_factory.getbasetemp() / "fuzz-aws-config"
        path.write_bytes(raw)
        with monkeypatch.context() as m:
            m.setenv("AWS_CONFIG_FILE", str(path))
            m.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
            m.delenv("AWS_PROFILE", raising=False)
            try:
                config = AwsConfig.load()
            except CredhelperError:
                return
        for name in list(config.profiles)[:5]:
            config.profile(name)
            config.get(name, "region")

    @FUZZ
    @given(ini_text().map(lambda t: t.encode("utf-8", "surrogatepass")))
    def test_every_profile_resolves_or_is_a_config_error(
        self, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, raw: bytes
    ) -> None:
        """Choosing a profile's source (no upstream call is made) from whatever
        the file says: a Source or a CredhelperError naming the fix."""
        path = tmp_path_factory.getbasetemp() / "fuzz-aws-config-2"
        path.write_bytes(raw)
        with monkeypatch.context() as m:
            m.setenv("AWS_CONFIG_FILE", str(path))
            m.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
            m.delenv("AWS_PROFILE", raising=False)
            try:
                config = AwsConfig.load()
            except CredhelperError:
                return
            ctx = Context(
                config=config, settings=settings_mod.Settings(store="memory"), store=MemoryStore(),
                clients=ClientFactory(config), credentials_of=_no_chain, environ={},
                now=lambda: datetime.now(UTC),
            )
            for name in list(config.profiles)[:5]:
                try:
                    source = sources.resolve(name, ctx)
                except CredhelperError:
                    continue
                assert source.profile == name
                source.basis()


def _no_chain(profile: str, chain: tuple[str, ...]) -> Any:
    raise AssertionError("resolve() must not fetch a source profile's credentials")
