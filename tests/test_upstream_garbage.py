"""Upstream garbage is not a bug (issue 8, item 7): an STS or a proxy in front
of it that answers with something that is not an AWS answer (a garbage or
truncated 200, an empty 404, a proxy's HTML error page, a 200 without
credentials) makes `credhelper export` exit 6 with one line naming the
endpoint, never exit 1 "internal error".

A tiny local HTTP server plays the broken endpoint (AWS_ENDPOINT_URL_STS);
the real `credhelper export` runs as a subprocess, on the direct path.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from daemon_helpers import BASE_SECRET, Daemons, write_setup

if TYPE_CHECKING:
    from conftest import AwsEnv

NS = 'xmlns="https://sts.amazonaws.com/doc/2011-06-15/"'
GOOD_HEAD = f"<AssumeRoleResponse {NS}><AssumeRoleResult><Credentials><AccessKeyId>ASIA"
HTML = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
    "<h1>Bad Gateway</h1><p>The proxy server received an invalid response from an upstream "
    "server.</p><hr><address>squid/5.7</address></body></html>"
)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/xml"
    #: Content-Length to announce (None: the body's length)
    length: int | None = None


CASES: dict[str, Answer] = {
    "200 garbage": Answer(200, b"\x00\x17 not xml at all \xff\xfe{{{"),
    "200 truncated": Answer(200, GOOD_HEAD.encode()),
    "200 empty": Answer(200, b""),
    "200 json": Answer(200, b'{"hello": "proxy"}', "application/json"),
    "200 without credentials": Answer(
        200, f"<AssumeRoleResponse {NS}><AssumeRoleResult></AssumeRoleResult></AssumeRoleResponse>"
        .encode()),
    "404 empty": Answer(404, b""),
    "403 html": Answer(403, HTML.replace("502 Bad Gateway", "403 Forbidden").encode(), "text/html"),
    "502 html": Answer(502, HTML.encode(), "text/html"),
    "200 html": Answer(200, HTML.encode(), "text/html"),
    "403 xhtml": Answer(403, b"<html><body><h1>Forbidden</h1></body></html>", "text/html"),
}


class Garbage:
    """An HTTP server that answers every request with `answer`; counts requests."""

    def __init__(self) -> None:
        self.answer = Answer(200, b"")
        self.requests = 0
        garbage = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                garbage.requests += 1
                a = garbage.answer
                self.send_response(a.status)
                self.send_header("Content-Type", a.content_type)
                self.send_header("Content-Length", str(len(a.body) if a.length is None else a.length))
                self.end_headers()
                self.wfile.write(a.body)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def garbage() -> Iterator[Garbage]:
    server = Garbage()
    yield server
    server.close()


@pytest.mark.parametrize("case", list(CASES))
def test_non_aws_answer_is_an_upstream_error(aws_env: AwsEnv, garbage: Garbage, case: str) -> None:
    """Exit 6 (not 1), stdout empty, one stderr line that names the endpoint
    and the call, says what came back, and ends with a fix."""
    garbage.answer = CASES[case]
    write_setup(aws_env)
    done = aws_env.run("export", "--profile", "dev", env={"AWS_ENDPOINT_URL_STS": garbage.url})
    assert garbage.requests >= 1, "the export never asked the endpoint"
    assert done.returncode == 6, f"{case}: rc={done.returncode} stderr={done.stderr!r}"
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert "internal error" not in line and "Traceback" not in line, line
    assert "AssumeRole" in line and "profile dev" in line, line
    assert garbage.url in line, f"{case}: the endpoint is not named: {line}"
    assert "non-AWS answer" in line or "cannot reach AWS" in line, line
    assert "<html" not in line.lower() and "<!doctype" not in line.lower(), line
    assert BASE_SECRET not in done.stderr
    assert len(line) < 400, line


def test_real_aws_errors_keep_their_message(aws_env: AwsEnv, garbage: Garbage) -> None:
    """A real AWS error document still reads as the AWS message (the control)."""
    garbage.answer = Answer(403, (
        f"<ErrorResponse {NS}><Error><Type>Sender</Type><Code>AccessDenied</Code>"
        "<Message>User: arn:aws:iam::123456789012:user/x is not authorized to perform: "
        "sts:AssumeRole</Message></Error><RequestId>1</RequestId></ErrorResponse>").encode())
    write_setup(aws_env)
    done = aws_env.run("export", "--profile", "dev", env={"AWS_ENDPOINT_URL_STS": garbage.url})
    assert done.returncode == 6, done.stderr
    assert "AccessDenied" in done.stderr and "not authorized to perform" in done.stderr
    assert "non-AWS answer" not in done.stderr


@pytest.mark.parametrize("case", ["200 truncated", "502 html"])
def test_non_aws_answer_through_the_daemon(aws_env: AwsEnv, garbage: Garbage, case: str) -> None:
    """The same through a running daemon: the export's line, `status` and the
    daemon's log name the endpoint; the daemon keeps serving."""
    garbage.answer = CASES[case]
    aws_env.env["AWS_ENDPOINT_URL_STS"] = garbage.url
    write_setup(aws_env)
    daemons = Daemons(aws_env)
    try:
        d = daemons.start()
        done = aws_env.run("export", "--profile", "dev")
        assert done.returncode == 6, f"{case}: rc={done.returncode} stderr={done.stderr!r}"
        assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
        assert "non-AWS answer from " + garbage.url in done.stderr, done.stderr
        assert "non-AWS answer" in str(d.profile_status("dev").get("last_error")), d.status()
        assert d.ping() == d.pid
    finally:
        daemons.close()
    assert "internal error" not in d.text() and "Traceback" not in d.text(), d.tail()
