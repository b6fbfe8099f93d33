"""Golden tests of the output formats (`credhelper.model.render`) and of the
`Credentials` value type: what `export` prints, byte for byte, and how the
cache record round-trips.

Exact strings on purpose: Claude Code, the AWS CLI (credential_process) and
shells parse this output, so any change to it must be deliberate.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from credhelper.model import FORMATS, Credentials, iso_z, parse_time, render

AKID = "ASIAGOLDENEXAMPLE123"
SECRET = "golden/Secret+Key=0123456789abcdefGHIJKL"
TOKEN = "IQoJb3JpZ2luX2VjEGolden/Session+Token=="
EXP = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
EXP_Z = "2030-01-02T03:04:05Z"

CREDS = Credentials(AKID, SECRET, TOKEN, EXP, source="assume-role")

GOLDEN = {
    "claude": (
        '{"Credentials": {"AccessKeyId": "ASIAGOLDENEXAMPLE123", '
        '"SecretAccessKey": "golden/Secret+Key=0123456789abcdefGHIJKL", '
        '"SessionToken": "IQoJb3JpZ2luX2VjEGolden/Session+Token==", '
        '"Expiration": "2030-01-02T03:04:05Z"}}\n'
    ),
    "process": (
        '{"Version": 1, "AccessKeyId": "ASIAGOLDENEXAMPLE123", '
        '"SecretAccessKey": "golden/Secret+Key=0123456789abcdefGHIJKL", '
        '"SessionToken": "IQoJb3JpZ2luX2VjEGolden/Session+Token==", '
        '"Expiration": "2030-01-02T03:04:05Z"}\n'
    ),
    "json": (
        '{"AccessKeyId": "ASIAGOLDENEXAMPLE123", '
        '"SecretAccessKey": "golden/Secret+Key=0123456789abcdefGHIJKL", '
        '"SessionToken": "IQoJb3JpZ2luX2VjEGolden/Session+Token==", '
        '"Expiration": "2030-01-02T03:04:05Z", "Profile": "dev", "Source": "assume-role"}\n'
    ),
    "env": (
        "export AWS_ACCESS_KEY_ID=ASIAGOLDENEXAMPLE123\n"
        "export AWS_SECRET_ACCESS_KEY=golden/Secret+Key=0123456789abcdefGHIJKL\n"
        "export AWS_SESSION_TOKEN=IQoJb3JpZ2luX2VjEGolden/Session+Token==\n"
        "export AWS_CREDENTIAL_EXPIRATION=2030-01-02T03:04:05Z\n"
    ),
}


def claude_code_parse(stdout: str) -> dict[str, Any]:
    """What Claude Code does with awsCredentialExport's stdout:
    `JSON.parse(stdout.trim())`, then `.Credentials` with non-empty string keys."""
    parsed = json.loads(stdout.strip())
    assert isinstance(parsed, dict)
    creds = parsed["Credentials"]
    assert isinstance(creds, dict)
    for key in ("AccessKeyId", "SecretAccessKey", "SessionToken"):
        assert isinstance(creds[key], str) and creds[key], key
    return creds


class TestGolden:
    """Each format, byte for byte."""

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_golden_output(self, fmt: str) -> None:
        """render() prints exactly the golden text of each format."""
        assert render(CREDS, fmt, profile="dev") == GOLDEN[fmt]

    def test_every_format_has_a_golden(self) -> None:
        """The golden table covers exactly the formats export offers."""
        assert set(GOLDEN) == set(FORMATS) == {"claude", "process", "env", "json"}

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_one_trailing_newline(self, fmt: str) -> None:
        """Every format ends with exactly one newline and has no blank line."""
        text = render(CREDS, fmt, profile="dev")
        assert text.endswith("\n") and not text.endswith("\n\n")
        assert "" not in text[:-1].split("\n")

    def test_json_profile_defaults_to_empty(self) -> None:
        """The json format names the profile it was asked for, empty when none."""
        assert json.loads(render(CREDS, "json"))["Profile"] == ""
        assert json.loads(render(CREDS, "json", profile="prod"))["Profile"] == "prod"

    def test_env_quotes_shell_metacharacters(self) -> None:
        """The env format shell-quotes values that need it, and a shell reads them back."""
        odd = replace(CREDS, secret_access_key="a b'c$d", session_token="tok;rm -rf ~")
        text = render(odd, "env")
        assert "export AWS_SECRET_ACCESS_KEY='a b'\"'\"'c$d'\n" in text
        assert "export AWS_SESSION_TOKEN='tok;rm -rf ~'\n" in text
        script = text + 'printf "%s\\n%s\\n" "$AWS_SECRET_ACCESS_KEY" "$AWS_SESSION_TOKEN"'
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
        assert out.stdout == "a b'c$d\ntok;rm -rf ~\n"

    def test_env_golden_is_shell_evaluable(self) -> None:
        """`eval "$(credhelper export --format env)"` sets all four variables."""
        names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_CREDENTIAL_EXPIRATION")
        script = GOLDEN["env"] + "".join(f'printf "%s\\n" "${n}"\n' for n in names)
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
        assert out.stdout.splitlines() == [AKID, SECRET, TOKEN, EXP_Z]
        assert shlex.split(GOLDEN["env"].splitlines()[1])[1] == f"AWS_SECRET_ACCESS_KEY={SECRET}"

    def test_unknown_format_refused(self) -> None:
        """An unknown format is a ValueError, not some default output."""
        with pytest.raises(ValueError, match="unknown format"):
            render(CREDS, "yaml")


class TestClaudeCodeParse:
    """The claude format read the way Claude Code reads it."""

    def test_claude_code_accepts_the_claude_format(self) -> None:
        """JSON.parse(stdout.trim()).Credentials has the four non-empty fields."""
        creds = claude_code_parse(render(CREDS, "claude"))
        assert creds == {
            "AccessKeyId": AKID, "SecretAccessKey": SECRET, "SessionToken": TOKEN,
            "Expiration": EXP_Z,
        }

    def test_claude_format_is_one_json_value_only(self) -> None:
        """Nothing but the one JSON object on stdout (no banner, no second document)."""
        text = render(CREDS, "claude")
        obj, end = json.JSONDecoder().raw_decode(text)
        assert text[end:] == "\n"
        assert list(obj) == ["Credentials"]
        assert list(obj["Credentials"]) == [
            "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"
        ]

    @pytest.mark.parametrize("fmt", ["process", "json", "env"])
    def test_other_formats_are_not_claude_shaped(self, fmt: str) -> None:
        """Only the claude format carries `.Credentials` (a wrong --format fails loudly)."""
        text = render(CREDS, fmt, profile="dev")
        with pytest.raises((KeyError, ValueError, AssertionError)):
            claude_code_parse(text)

    def test_process_format_is_read_by_botocore(self, tmp_path: Path) -> None:
        """botocore's own credential_process provider loads the process format."""
        from botocore.credentials import ProcessProvider

        out = tmp_path / "process.json"
        out.write_text(render(CREDS, "process"))
        command = f"cat {shlex.quote(str(out))}"
        provider = ProcessProvider(
            "p", lambda: {"profiles": {"p": {"credential_process": command}}}
        )
        loaded = provider.load()
        assert loaded is not None
        frozen = loaded.get_frozen_credentials()
        assert (frozen.access_key, frozen.secret_key, frozen.token) == (AKID, SECRET, TOKEN)
        assert parse_time(json.loads(out.read_text())["Expiration"]) == EXP


class TestExpiration:
    """Expiration is always ISO 8601, UTC, whole seconds, `Z`."""

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_non_utc_aware_datetime_is_converted(self, fmt: str) -> None:
        """An expiration in UTC+05:30 is printed as the same instant in UTC."""
        ist = timezone(timedelta(hours=5, minutes=30))
        creds = replace(CREDS, expiration=datetime(2030, 1, 2, 8, 34, 5, tzinfo=ist))
        assert render(creds, fmt, profile="dev") == GOLDEN[fmt]

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_negative_offset_crossing_midnight(self, fmt: str) -> None:
        """UTC-08:00 on the evening before is the next day in UTC."""
        pst = timezone(timedelta(hours=-8))
        creds = replace(CREDS, expiration=datetime(2030, 1, 1, 19, 4, 5, tzinfo=pst))
        assert render(creds, fmt, profile="dev") == GOLDEN[fmt]

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_microseconds_are_dropped(self, fmt: str) -> None:
        """Microseconds are truncated to whole seconds (never rounded up past expiry)."""
        creds = replace(CREDS, expiration=EXP.replace(microsecond=999_999))
        assert render(creds, fmt, profile="dev") == GOLDEN[fmt]

    def test_iso_z_shape(self) -> None:
        """iso_z gives YYYY-MM-DDTHH:MM:SSZ and nothing else."""
        assert iso_z(datetime(2031, 12, 31, 23, 59, 59, 123456, tzinfo=UTC)) == "2031-12-31T23:59:59Z"
        assert iso_z(datetime(2030, 6, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=2)))) == (
            "2030-05-31T22:00:00Z"
        )

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2030-01-02T03:04:05Z", EXP),
            ("2030-01-02T03:04:05z", EXP),
            ("2030-01-02T03:04:05.000Z", EXP),
            ("2030-01-02T03:04:05+00:00", EXP),
            ("2030-01-02T08:34:05+05:30", EXP),
            ("2030-01-02T03:04:05", EXP),
            (EXP.timestamp(), EXP),
            (int(EXP.timestamp()), EXP),
            (datetime(2030, 1, 2, 3, 4, 5), EXP),
        ],
    )
    def test_parse_time_normalises_to_utc(self, value: object, expected: datetime) -> None:
        """parse_time accepts what AWS, botocore and credential_process helpers give."""
        got = parse_time(value)
        assert got == expected and got.utcoffset() == timedelta(0)

    @pytest.mark.parametrize("value", ["", "soon", "2030-13-01T00:00:00Z", True, None, [1]])
    def test_parse_time_rejects_garbage(self, value: object) -> None:
        """parse_time raises ValueError for anything that is not a time."""
        with pytest.raises(ValueError):
            parse_time(value)


class TestRefusals:
    """render() exports only temporary credentials with an expiration."""

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_no_session_token(self, fmt: str) -> None:
        """Long-term keys (no session token) are refused in every format."""
        with pytest.raises(ValueError, match="temporary credentials"):
            render(replace(CREDS, session_token=None), fmt)

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_empty_session_token(self, fmt: str) -> None:
        """An empty session token counts as none."""
        with pytest.raises(ValueError, match="temporary credentials"):
            render(replace(CREDS, session_token=""), fmt)

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_no_expiration(self, fmt: str) -> None:
        """Credentials without an expiration are refused in every format."""
        with pytest.raises(ValueError, match="temporary credentials"):
            render(replace(CREDS, expiration=None), fmt)


class TestRepr:
    """A Credentials value that reaches a log shows no secret."""

    def test_repr_hides_secrets(self) -> None:
        """repr/str show the key id and expiry, never the secret key or token."""
        for text in (repr(CREDS), str(CREDS), f"{CREDS}", f"{CREDS!r}", repr([CREDS])):
            assert SECRET not in text and TOKEN not in text
            assert "Secret+Key" not in text and "Session+Token" not in text
            assert AKID in text
            assert "2030" in text

    def test_secrets_lists_what_must_be_hidden(self) -> None:
        """secrets() returns the secret key and the token (and skips a missing token)."""
        assert CREDS.secrets() == (SECRET, TOKEN)
        assert replace(CREDS, session_token=None).secrets() == (SECRET,)

    def test_remaining(self) -> None:
        """remaining() counts seconds to expiry; no expiry is infinite."""
        assert CREDS.remaining(EXP - timedelta(seconds=90)) == 90
        assert CREDS.remaining(EXP + timedelta(seconds=5)) == -5
        assert replace(CREDS, expiration=None).remaining(EXP) == float("inf")


class TestRecord:
    """to_record / from_record: the cache's persistent form."""

    def test_round_trip(self) -> None:
        """A record read back gives equal credentials, issued time included."""
        creds = replace(CREDS, issued=EXP - timedelta(hours=1))
        record = creds.to_record()
        assert record == {
            "v": 1, "AccessKeyId": AKID, "SecretAccessKey": SECRET, "SessionToken": TOKEN,
            "Expiration": EXP_Z, "Source": "assume-role", "Issued": "2030-01-02T02:04:05Z",
        }
        assert Credentials.from_record(record) == creds
        assert Credentials.from_record(json.loads(json.dumps(record))) == creds

    def test_round_trip_without_optional_fields(self) -> None:
        """Keys with no token, expiry, source or issued time survive a round trip."""
        keys = Credentials("AKIAEXAMPLEKEYS00001", SECRET)
        record = keys.to_record()
        assert record["SessionToken"] is None and record["Expiration"] is None
        assert Credentials.from_record(record) == keys

    def test_round_trip_normalises_to_utc_seconds(self) -> None:
        """A non-UTC, microsecond expiry comes back as the same whole-second UTC instant."""
        ist = timezone(timedelta(hours=5, minutes=30))
        creds = replace(CREDS, expiration=datetime(2030, 1, 2, 8, 34, 5, 700_000, tzinfo=ist))
        back = Credentials.from_record(creds.to_record())
        assert back.expiration == EXP and back.expiration is not None
        assert back.expiration.utcoffset() == timedelta(0)

    @pytest.mark.parametrize(
        "record",
        [
            None,
            "not a dict",
            [],
            {},
            {"v": 2, "AccessKeyId": AKID, "SecretAccessKey": SECRET},
            {"AccessKeyId": AKID, "SecretAccessKey": SECRET},
            {"v": 1, "SecretAccessKey": SECRET},
            {"v": 1, "AccessKeyId": AKID},
            {"v": 1, "AccessKeyId": "", "SecretAccessKey": SECRET},
            {"v": 1, "AccessKeyId": AKID, "SecretAccessKey": ""},
            {"v": 1, "AccessKeyId": 42, "SecretAccessKey": SECRET},
            {"v": 1, "AccessKeyId": AKID, "SecretAccessKey": ["x"]},
            {"v": 1, "AccessKeyId": AKID, "SecretAccessKey": SECRET, "SessionToken": 7},
            {"v": 1, "AccessKeyId": AKID, "SecretAccessKey": SECRET, "Expiration": "tomorrow"},
            {"v": 1, "AccessKeyId": AKID, "SecretAccessKey": SECRET, "Expiration": ""},
            {"v": 1, "AccessKeyId": AKID, "SecretAccessKey": SECRET, "Expiration": {"a": 1}},
            {"v": 1, "AccessKeyId": AKID, "SecretAccessKey": SECRET, "Issued": "yesterday"},
        ],
        ids=lambda r: json.dumps(r)[:60],
    )
    def test_from_record_rejects_malformed(self, record: object) -> None:
        """Anything but a well-formed version 1 record is a ValueError."""
        with pytest.raises(ValueError):
            Credentials.from_record(record)

    def test_from_record_rejection_names_no_secret(self) -> None:
        """The ValueError of a bad record does not quote the secret it held."""
        bad = {"v": 1, "AccessKeyId": AKID, "SecretAccessKey": SECRET, "SessionToken": 7}
        with pytest.raises(ValueError) as info:
            Credentials.from_record(bad)
        assert SECRET not in str(info.value)
