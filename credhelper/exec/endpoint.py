"""The loopback container-credentials endpoint of one `exec`.

SDKs' container provider (`AWS_CONTAINER_CREDENTIALS_FULL_URI` +
`AWS_CONTAINER_AUTHORIZATION_TOKEN`) GETs the URI with the token in the
`Authorization` header and expects `{"AccessKeyId", "SecretAccessKey",
"Token", "Expiration"}`. The server listens on 127.0.0.1 (SDKs accept plain
http only on a loopback host) on a port the kernel picks, answers only the
per-exec random token (401 without one, 403 with another), and lives in a
daemon thread of the exec process: the token dies with it.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from credhelper.errors import CredhelperError
from credhelper.model import Credentials, iso_z

PATH = "/credhelper/credentials"


class CredentialSource(Protocol):
    def get(self) -> Credentials: ...


def body_of(creds: Credentials) -> bytes:
    """The container-credentials JSON for `creds`."""
    assert creds.expiration is not None
    return json.dumps({
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.session_token,
        "Expiration": iso_z(creds.expiration),
    }).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: nothing here is worth a line on the child's terminal

    def _send(self, status: int, payload: dict[str, str] | bytes) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        given = self.headers.get("Authorization")
        if given is None:
            self._send(401, {"Code": "Unauthorized", "Message": "an Authorization header is required"})
            return
        if not hmac.compare_digest(given.encode(), self.server.token.encode()):
            self._send(403, {"Code": "Forbidden", "Message": "wrong authorization token"})
            return
        if self.path.split("?", 1)[0] != PATH:
            self._send(404, {"Code": "NotFound", "Message": f"credentials are at {PATH}"})
            return
        try:
            creds = self.server.source.get()
        except CredhelperError as exc:
            self.server.report(exc.message)
            self._send(503, {"Code": "CredentialsUnavailable", "Message": exc.message})
            return
        self._send(200, body_of(creds))

    def _refuse(self) -> None:
        self._send(405, {"Code": "MethodNotAllowed", "Message": "only GET"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, source: CredentialSource, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.source = source
        self.token = token
        self._said: set[str] = set()

    def report(self, message: str) -> None:
        """One stderr line per distinct failure (the child's SDK sees a 503)."""
        if message not in self._said:
            self._said.add(message)
            sys.stderr.write(f"credhelper exec: cannot serve credentials: {message}\n")
            sys.stderr.flush()


class Endpoint:
    """`with Endpoint(source) as ep:` serves `source` at `ep.url` for `ep.token`."""

    def __init__(self, source: CredentialSource, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)
        self._server = _Server(source, self.token)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="credhelper-exec-endpoint", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def start(self) -> Endpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Endpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
