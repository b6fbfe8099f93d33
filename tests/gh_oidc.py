"""Local stand-ins for `credhelper mint` tests.

- `TokenEndpoint`: the GitHub Actions runner's ID token endpoint
  (`GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD`, `Authorization: bearer
  $ACTIONS_ID_TOKEN_REQUEST_TOKEN` → `{"value": "<JWT>"}`). It checks the bearer
  request token and records the audience asked for; a wrong token gets 401.
- `parse_github_env`: $GITHUB_ENV as the runner reads it.
- `StsErrors`: an STS endpoint that answers every call with one AWS error
  (AccessDenied, InvalidIdentityToken…), which moto never does, and records
  the request bodies.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ISSUER = "https://token.actions.githubusercontent.com"
SUB = "repo:octo-org/app:ref:refs/heads/main"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token with these claims and a random (unverifiable) signature."""
    header = {"alg": "RS256", "typ": "JWT", "kid": secrets.token_hex(8)}
    return ".".join((
        _b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()),
        _b64(secrets.token_bytes(256)),
    ))


def github_claims(audience: str, sub: str = SUB) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER, "sub": sub, "aud": audience, "repository": "octo-org/app",
        "jti": secrets.token_hex(16), "iat": now, "nbf": now, "exp": now + 300,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler], owner: Any) -> Iterator[None]:
    server = _Server(("127.0.0.1", 0), handler)
    server.owner = owner  # type: ignore[attr-defined]
    owner.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class TokenEndpoint:
    """Use as a context manager; `.url`, `.request_token`, `.issued`, `.audiences`."""

    def __init__(self, *, status: int = 200, sub: str = SUB) -> None:
        self.request_token = secrets.token_urlsafe(32)
        self.status = status
        self.sub = sub
        self.port = 0
        self.issued: list[str] = []
        self.audiences: list[str] = []
        self.bad_auth = 0
        #: every request's path (a followed redirect shows up here)
        self.paths: list[str] = []
        self._ctx: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/_apis/idtoken?api-version=2.0"

    def env(self) -> dict[str, str]:
        """The variables the runner sets for a job with `id-token: write`."""
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token,
            "GITHUB_REPOSITORY": "octo-org/app",
            "GITHUB_RUN_ID": "7301",
            "GITHUB_RUN_ATTEMPT": "2",
        }

    def __enter__(self) -> TokenEndpoint:
        self._ctx = _serving(_TokenHandler, self)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(None, None, None)


class _TokenHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        ep: TokenEndpoint = self.server.owner  # type: ignore[attr-defined]
        ep.paths.append(urlsplit(self.path).path)
        query = parse_qs(urlsplit(self.path).query)
        if ep.status in (302, 307) and self.path.startswith("/_apis/"):
            self.send_response(ep.status)
            self.send_header("Location", f"http://127.0.0.1:{ep.port}/elsewhere{self.path[6:]}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.headers.get("Authorization") != f"bearer {ep.request_token}":
            ep.bad_auth += 1
            self._send(401, {"message": "bad request token"})
            return
        if query.get("api-version") != ["2.0"] or len(query.get("audience", [])) != 1:
            self._send(400, {"message": "missing api-version or audience"})
            return
        audience = query["audience"][0]
        ep.audiences.append(audience)
        if ep.status != 200:
            self._send(ep.status, {"message": "injected failure"})
            return
        token = make_jwt(github_claims(audience, ep.sub))
        ep.issued.append(token)
        self._send(200, {"count": 1, "value": token})


class StsErrors:
    """An STS endpoint answering with `code` (HTTP `status`): every request, or
    the first `times` ones, passing the rest on to `forward` (moto)."""

    def __init__(self, code: str, status: int, message: str, *, times: int | None = None,
                 forward: str | None = None) -> None:
        self.code, self.status, self.message = code, status, message
        self.times, self.forward = times, forward
        self.port = 0
        self.bodies: list[dict[str, list[str]]] = []
        self._ctx: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> StsErrors:
        self._ctx = _serving(_StsHandler, self)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(None, None, None)


class _StsHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        sts: StsErrors = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        sts.bodies.append(parse_qs(raw.decode()))
        if sts.times is not None and len(sts.bodies) > sts.times:
            self._forward(sts, raw)
            return
        message = sts.message.replace("{token}", sts.bodies[-1].get("WebIdentityToken", [""])[0])
        body = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>Sender</Type><Code>{sts.code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{secrets.token_hex(8)}</RequestId></ErrorResponse>"
        ).encode()
        self.send_response(sts.status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self, sts: StsErrors, raw: bytes) -> None:
        assert sts.forward
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        req = urllib.request.Request(sts.forward + self.path, data=raw, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, data, kind = resp.status, resp.read(), resp.headers.get("Content-Type", "text/xml")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def parse_github_env(text: str) -> dict[str, str]:
    """$GITHUB_ENV as the runner reads it: `NAME=value` and `NAME<<DELIM` blocks."""
    out: dict[str, str] = {}
    lines = iter(text.split("\n"))
    for line in lines:
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            value: list[str] = []
            for body in lines:
                if body == delim:
                    break
                value.append(body)
            else:
                raise AssertionError(f"unterminated {name}<<{delim}")
            out[name] = "\n".join(value)
        else:
            name, _, val = line.partition("=")
            out[name] = val
    return out
