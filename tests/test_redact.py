"""Secrets in error text (issue 8, item 3): the scrubber on its own, then a
`credential_process` helper that fails with secrets on its stderr, through the
real `credhelper export` (direct path) and a real daemon (its log and
`status --json`)."""

from __future__ import annotations

import base64
import json
import secrets as rnd
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from daemon_helpers import Daemons, encrypted_file_settings, find_leaks
from hypothesis import given, settings
from hypothesis import strategies as st

from credhelper.redact import LIMIT, scrub

if TYPE_CHECKING:
    from conftest import AwsEnv


def b64(n: int) -> str:
    """n characters as AWS secrets look: base64 with / + (and = at the end)."""
    text = base64.b64encode(rnd.token_bytes(n)).decode()[: n - 1]
    return text + "="


def akid() -> str:
    return "AKIA" + "".join(rnd.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def jwt() -> str:
    def part(claims: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    sig = base64.urlsafe_b64encode(rnd.token_bytes(32)).decode().rstrip("=")
    return f"{part({'alg': 'RS256', 'kid': rnd.token_hex(8)})}.{part({'sub': rnd.token_hex(12)})}.{sig}"


class Leaky:
    """The secrets one failing helper prints, and the forms they take."""

    def __init__(self) -> None:
        self.password = "hunter2-" + rnd.token_urlsafe(12)
        self.token = "IQoJb3JpZ2luX2Vj" + b64(300)
        self.akid = akid()
        self.secret = b64(40)
        self.jwt = jwt()
        self.encoded_token = quote(self.token, safe="")

    def values(self) -> list[str]:
        return [self.password, self.token, self.encoded_token, self.akid, self.secret, self.jwt]

    def line(self) -> str:
        return (
            f"helper: login as bob with password='{self.password}' failed; "
            f"GET https://sso.example/?X=1&Session={self.encoded_token} -> 403; "
            f"fallback keys {self.akid} {self.secret}; id_token {self.jwt}"
        )


# ------------------------------------------------------------------ the scrubber


class TestScrub:
    def test_each_shape_is_masked(self) -> None:
        leaky = Leaky()
        out = scrub(leaky.line(), limit=10_000)
        assert not find_leaks(out, leaky.values()), out
        assert "password=***" in out and "AKIA***" in out
        assert out.startswith("helper: login as bob with")

    @pytest.mark.parametrize(
        ("text", "gone"),
        [
            ('{"SecretAccessKey": "s3cr3t/value", "AccessKeyId": "x"}', "s3cr3t/value"),
            ("aws_secret_access_key = plainvalue1", "plainvalue1"),
            ("AWS_SESSION_TOKEN=shorttok123", "shorttok123"),
            ("sessionToken: 'a b c d'", "a b c"),
            ("PASSWORD: swordfish", "swordfish"),
            ("'Password'='swordfish'", "swordfish"),
            ("Authorization: Bearer abc123def456ghi789", "abc123def456ghi789"),
            ("<SessionToken>tok/abc</SessionToken>", "tok/abc"),
            ("X-Amz-Security-Token=abc%2Fdef%3D", "abc%2Fdef"),
            ("credential=ASIAABCDEFGHIJKLMNOP/20260101/us-east-1", "ABCDEFGHIJKLMNOP"),
            ("client_secret: xyz-0123", "xyz-0123"),
            ("exec: vault-login --password hunter2 --user bob", "hunter2"),
            ("aws configure set --aws-session-token tok/123 --profile x", "tok/123"),
            ('{"password":"pw1","x":1}', "pw1"),
        ],
    )
    def test_secret_pairs(self, text: str, gone: str) -> None:
        out = scrub(text)
        assert gone not in out, out
        assert "***" in out

    def test_explicit_secrets_raw_and_url_encoded(self) -> None:
        secret = "short/sec+ret"
        out = scrub(f"got {secret} and {quote(secret, safe='')}", (secret,))
        assert out == "got *** and ***"

    @pytest.mark.parametrize(
        "text",
        [
            "The security token included in the request is expired",
            "Not authorized to perform sts:AssumeRole on arn:aws:iam::123456789012:role/dev",
            "cannot open /usr/local/lib/python3.11/site-packages/botocore/data/sts.json",
            "Rate exceeded",
            "bearer authentication is not supported",
            "Request ID: 2b3f6c3e-9a1d-4c55-8f0e-1234567890ab",
            "use --profile dev or --token-file (see --help)",
        ],
    )
    def test_ordinary_messages_are_kept(self, text: str) -> None:
        assert scrub(text) == text

    def test_one_line_and_capped(self) -> None:
        out = scrub("a\nb\r\n" + "word " * 500)
        assert "\n" not in out and len(out) <= LIMIT and out.endswith("…")
        assert out.startswith("a b word")

    def test_huge_input_keeps_no_half_secret(self) -> None:
        secret = b64(40)
        text = "x " * 4093 + secret  # the input cap falls inside the secret
        assert not find_leaks(scrub(text, limit=100_000), [secret], window=8)

    @settings(max_examples=300, deadline=None)
    @given(prefix=st.text(max_size=40), suffix=st.text(max_size=40),
           sep=st.sampled_from(["=", ": ", " = ", '": "', "='"]),
           key=st.sampled_from(["password", "Secret", "aws_session_token", "SessionToken",
                                "x-amz-security-token", "Authorization", "credential"]))
    def test_any_context(self, prefix: str, suffix: str, sep: str, key: str) -> None:
        """Whatever surrounds them, a secret pair's value and a long key never survive."""
        value = "V4lue" + rnd.token_hex(8)
        long_key = b64(40)
        close = sep[-1] if sep[-1] in "\"'" else ""
        text = f"{prefix} {key}{sep}{value}{close} {suffix} {long_key}"
        out = scrub(text, limit=100_000)
        assert value not in out and long_key not in out, (text, out)
        assert "\n" not in out


    @pytest.mark.parametrize("text", ["a" * 8192, "a_" * 4096, "password-" * 910, "<token>" * 1170,
                                      "--secret " * 910, 'a="' * 2730, "Bearer " * 1170])
    def test_linear_time_on_hostile_input(self, text: str) -> None:
        """No catastrophic backtracking: a nested `[…]*(?:secret)[…]*` took 4 s on 8 KB."""
        started = time.perf_counter()
        scrub(text)
        assert time.perf_counter() - started < 0.5

    @settings(max_examples=300, deadline=None)
    @given(st.text(st.characters(blacklist_categories=()), max_size=600), st.integers(1, 300))
    def test_never_raises_and_respects_the_cap(self, text: str, limit: int) -> None:
        out = scrub(text, (text[:20],), limit=limit)
        assert len(out) <= limit and "\n" not in out


# ------------------------------------------------------------------ a failing helper, end to end


@pytest.fixture
def leaky_helper(aws_env: AwsEnv) -> Iterator[Leaky]:
    """Profile `leaky`: its credential_process prints secrets on stderr and exits 1."""
    leaky = Leaky()
    script = aws_env.home / "leaky-helper.sh"
    err = aws_env.home / "leaky-helper.stderr"
    err.write_text("helper: starting\n" + leaky.line() + "\n")
    script.write_text(f"#!/bin/sh\ncat {err} >&2\nexit 1\n")
    script.chmod(0o700)
    aws_env.write_config(f"[profile leaky]\ncredential_process = {script}\nregion = us-east-1\n")
    aws_env.write_settings(encrypted_file_settings(aws_env))
    yield leaky


def assert_clean(where: str, text: str, leaky: Leaky) -> None:
    leaks = find_leaks(text, leaky.values())
    assert not leaks, f"{where} holds secrets {leaks}: {text[-2000:]}"


class TestHelperStderr:
    def test_export_stderr_holds_no_helper_secret(self, aws_env: AwsEnv, leaky_helper: Leaky) -> None:
        """Direct path: exit 6, one line quoting the helper, every secret masked."""
        done = aws_env.run("export", "--profile", "leaky")
        assert done.returncode == 6 and done.stdout == "", done
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert "credential_process of profile leaky exited 1" in done.stderr
        assert "password=***" in done.stderr  # the helper's words are still quoted
        assert_clean("export's stderr", done.stderr, leaky_helper)

    def test_daemon_log_and_status_hold_no_helper_secret(self, aws_env: AwsEnv, leaky_helper: Leaky) -> None:
        """Through a real daemon: export's stderr, the daemon's log and
        `status --json` last_error quote the helper without its secrets."""
        daemons = Daemons(aws_env)
        try:
            daemon = daemons.start()
            done = aws_env.run("export", "--profile", "leaky")
            assert done.returncode == 6, done
            assert_clean("export's stderr", done.stderr, leaky_helper)
            status = aws_env.run("status", "--json")
            assert status.returncode == 0, status
            errors = [p.get("last_error") for p in json.loads(status.stdout)["profiles"]
                      if p["profile"] == "leaky"]
            assert errors and errors[0] and "exited 1" in errors[0], status.stdout
            assert_clean("status --json", status.stdout, leaky_helper)
            assert_clean("status", aws_env.run("status").stdout, leaky_helper)
            assert "exited 1" in daemon.text(), daemon.tail()
        finally:
            daemons.close()
        assert_clean("the daemon's log", daemon.text(), leaky_helper)
        for path in Path(aws_env.home).rglob("*"):
            if path.is_file() and not path.name.startswith(("leaky-helper", "store.")):
                assert_clean(str(path), path.read_text(errors="replace"), leaky_helper)

