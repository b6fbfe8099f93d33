"""The daemon never logs a secret.

A real daemon runs a scenario that touches every log path we know of: several
profiles and sources (AssumeRole, a chained role, GetSessionToken from static
keys, credential_process), exports in every format, a scheduled refresh, a
nudge, a profile that needs a login, a failing helper, an unknown profile, bad
requests and a fallback. Then EVERY line it wrote to stderr is searched for
every secret an export printed and every static secret key configured, whole
and in pieces. The scan refuses to pass on a log without a canonical refresh
line (`refresh` / `minted`): an empty or broken capture cannot pass.

The daemons of the other test modules feed their logs into
`daemon_helpers.COLLECTED`; the last test here scans those too.
"""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from daemon_helpers import (
    BASE_SECRET,
    COLLECTED,
    STATIC_SECRETS,
    Daemons,
    ask,
    find_leaks,
    parse_log,
    write_setup,
)

from credhelper import protocol

if TYPE_CHECKING:
    from conftest import AwsEnv

FORMATS = ("claude", "process", "env", "json")
SESS_AKID = "AKIADAEMONLOGSESS001"
SESS_SECRET = "daemon-logs-session-secret/0123456789+ABCDEFgh"
PROC_AKID = "ASIADAEMONLOGPROC001"
PROC_SECRET = "daemon-logs-process-secret/0123456789+ABCDEFgh"
PROC_TOKEN = "daemon-logs-process-token/IQoJb3JpZ2luX2VjEXAMPLE0123456789abcdef"
#: what the failing credential_process says on stderr before it exits 1
BADPROC_SECRET = "badproc-leaked-secret/0123456789+ABCDEFghijkl"
WINDOW, DURATION = 860, 900


def scan(texts: Iterable[str], secrets: Iterable[str]) -> int:
    """Check daemon logs: no secret in any line, and at least one canonical
    refresh line, so that the scan cannot pass on nothing. The number of lines."""
    secrets = set(secrets)
    assert secrets, "no secrets to look for: the scan would be vacuous"
    lines = [ln for text in texts for ln in parse_log(text)]
    minted = [ln for ln in lines if ln.get("event") == "refresh" and ln.get("outcome") == "minted"]
    assert minted, f"no canonical refresh line (event=refresh, outcome=minted) among {len(lines)} lines"
    for text in texts:
        leaks = find_leaks(text, secrets)
        assert not leaks, f"secrets in the daemon log: {leaks}"
    return len(lines)


class TestScanner:
    """The scan itself: it must be able to fail."""

    MINTED = '{"event": "refresh", "outcome": "minted", "access_key_id": "ASIAX"}\n'

    def test_fails_without_a_refresh_line(self) -> None:
        """A log without a minted refresh line fails the scan."""
        with pytest.raises(AssertionError, match="no canonical refresh line"):
            scan(['{"event": "started"}\n'], {"some-secret-value-0123456789"})
        with pytest.raises(AssertionError, match="no canonical refresh line"):
            scan([""], {"some-secret-value-0123456789"})

    def test_fails_on_a_whole_or_partial_secret(self) -> None:
        """A secret, or a 24-character piece of one, anywhere in a line fails the scan."""
        secret = "Zq0Yw8Xv7Uu6Tt5Ss4Rr3Qq2Pp1Oo0NnMmLlKkJjIiHh"
        assert scan([self.MINTED], {secret}) == 1
        for leak in (secret, secret[5:29], secret[-24:]):
            with pytest.raises(AssertionError, match="secrets in the daemon log"):
                scan([self.MINTED + json.dumps({"event": "x", "error": f"oops {leak}!"}) + "\n"], {secret})


@pytest.fixture
def daemons(aws_env: AwsEnv) -> Iterator[Daemons]:
    started = Daemons(aws_env)
    yield started
    started.close()


def write_scenario(aws_env: AwsEnv) -> None:
    helper = aws_env.home / "proc_helper.py"
    exp = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    helper.write_text(
        "#!/bin/sh\n"
        f"""echo '{{"Version": 1, "AccessKeyId": "{PROC_AKID}", "SecretAccessKey": "{PROC_SECRET}", """
        f""""SessionToken": "{PROC_TOKEN}", "Expiration": "{exp}"}}'\n"""
    )
    bad = aws_env.home / "bad_helper.sh"
    bad.write_text(f"#!/bin/sh\necho 'starting' >&2\necho 'refused: key {BADPROC_SECRET}' >&2\nexit 1\n")
    for script in (helper, bad):
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    extra = (
        "[profile chain]\nrole_arn = arn:aws:iam::123456789012:role/chain\nsource_profile = dev\n\n"
        "[profile sess]\nregion = us-east-1\n\n"
        f"[profile proc]\ncredential_process = {helper}\n\n"
        f"[profile badproc]\ncredential_process = {bad}\n\n"
        "[profile mfa]\nrole_arn = arn:aws:iam::123456789012:role/mfa\nsource_profile = base\n"
        "mfa_serial = arn:aws:iam::123456789012:mfa/someone\n"
    )
    write_setup(aws_env, duration=DURATION, refresh_window=WINDOW, warm=["sess"], extra_config=extra)
    with open(aws_env.credentials_file, "a") as out:
        out.write(f"\n[sess]\naws_access_key_id = {SESS_AKID}\naws_secret_access_key = {SESS_SECRET}\n")


def test_no_secret_in_any_daemon_log_line(aws_env: AwsEnv, daemons: Daemons) -> None:
    """Every line the daemon wrote during the scenario is free of every secret."""
    write_scenario(aws_env)
    daemons.note(SESS_SECRET, BADPROC_SECRET)
    d = daemons.start()
    d.wait_for("refresh", profile="sess", outcome="minted")  # warm_profiles

    printed = []
    for profile in ("dev", "chain", "sess", "proc"):
        for fmt in FORMATS:
            e = daemons.export(profile, fmt)
            assert e.rc == 0, (profile, fmt, e.describe())
            printed.append(e)
    assert {e.creds["SecretAccessKey"] for e in printed if e.fmt == "claude"} >= {PROC_SECRET}
    for profile, code in (("mfa", 4), ("badproc", 6), ("ghost", 3)):
        e = daemons.export(profile)
        assert e.rc == code, (profile, e.describe())
        assert not find_leaks(e.stderr, daemons.secrets - {BADPROC_SECRET}), e.stderr
    # bad requests and a client that reads other files (fallback)
    assert ask(d.socket, "launch") is not None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(d.socket))
        s.sendall(f"garbage {BASE_SECRET}\n".encode())
        data = b""
        while b" error " not in data and (chunk := s.recv(4096)):
            data += chunk
        greeting, _, rest = data.partition(b"\n")  # the accept loop's `wait` comes first
        assert greeting.startswith(protocol.MAGIC + b" wait ")
        assert rest.startswith(protocol.MAGIC + b" error 2 ")
    other = {"HOME": str(aws_env.home), "AWS_CONFIG_FILE": str(aws_env.home / "elsewhere")}
    answer = ask(d.socket, "export", {"profile": "dev", "format": "claude"}, other)
    assert answer is not None and answer[0] == "fallback"
    # a nudge (what `login` / `keys add` send) and the status
    assert ask(d.socket, "refresh", {"profile": "chain"}) == ("ok", 0, "")
    d.wait_for("refresh", profile="chain", count=2)
    assert d.status()["profiles"]

    # the scheduled refresh of dev (duration 900 s, window 860 s)
    d.wait_for("refresh", profile="dev", outcome="minted", count=2, timeout=90)
    for fmt in FORMATS:
        e = daemons.export("dev", fmt)
        assert e.rc == 0, e.describe()
    fresh = d.events("refresh", profile="dev", outcome="minted")[1]["access_key_id"]
    assert daemons.export("dev").akid == fresh

    assert d.stop() == 0
    text = d.text()
    secrets = daemons.secrets | STATIC_SECRETS | {SESS_SECRET, PROC_SECRET, PROC_TOKEN}
    assert len(secrets) >= 12, len(secrets)
    n = scan([text], secrets)
    events = {ln.get("event") for ln in parse_log(text)}
    assert {"started", "refresh", "export", "bad_request", "stopping", "stopped"} <= events, events
    outcomes = {ln.get("outcome") for ln in parse_log(text) if ln.get("event") == "refresh"}
    assert {"minted", "login_required", "failed", "config_error"} <= outcomes, outcomes
    assert n >= 30, n
    # key ids are what the log shows instead
    assert PROC_AKID in text and fresh in text
    assert BASE_SECRET not in text


def test_every_daemon_log_of_this_session() -> None:
    """The logs of every daemon this session ran (test_daemon.py's too, when it
    ran first) hold none of the secrets their tests saw."""
    if not COLLECTED:  # only when this test is selected alone; the scenario above is the real check
        pytest.skip("no daemon ran before this test in this session")
    texts = [text for text, _ in COLLECTED]
    everything = set(STATIC_SECRETS).union(*(s for _, s in COLLECTED))
    assert scan(texts, everything) > 0
