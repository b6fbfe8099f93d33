"""An emulator of the AWS Sign-In token endpoint (`signin` CreateOAuth2Token,
grant `refresh_token`), the call botocore's `LoginCredentialFetcher` makes.

Wire format from botocore's own model (botocore/data/signin/*/service-2.json,
read at start-up): rest-json, the operation's method and path, the request body
is the `tokenInput` payload and the answer the `tokenOutput` payload; errors
carry `x-amzn-ErrorType` and `{"error", "message"}` (AccessDeniedException for
a session that must sign in again, as botocore expects).

What it checks, as the real service would:
- the DPoP proof: a compact JWS with `typ` dpop+jwt, `alg` ES256 and the public
  JWK in its header; the ES256 signature verified with that key
  (`cryptography`); `htm` POST, `htu` the URL called, `iat` within
  `IAT_SKEW` s of its clock, `jti` never seen before; and the key must be the
  one the session was signed in with (the refresh token is bound to it);
- refresh tokens rotate: each is good for one refresh; a used one is refused
  (invalid_grant) — so a process that lost the rotated token loses the session;
- a session lasts `max_session` s (12 h); after that, or once revoked,
  TOKEN_EXPIRED; `credentials_changed()` makes it USER_CREDENTIALS_CHANGED.

Its clock is `time.time() + offset` (`advance()`), so tests that move a
subprocess's clock with libfaketime move it along. `on_secret` is called with
every secret it issues (the leak guard's registry).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import secrets
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

CLIENT_ID = "arn:aws:signin:::devtools/same-device"
ACCOUNT = "123456789012"
LOGIN_SESSION = f"arn:aws:iam::{ACCOUNT}:user/alice"
IAT_SKEW = 60
MAX_SESSION = 12 * 3600
CREDENTIAL_LIFETIME = 900


def _model() -> dict[str, Any]:
    base = os.path.join(os.path.dirname(botocore.__file__), "data", "signin")
    version = sorted(os.listdir(base))[-1]
    with gzip.open(os.path.join(base, version, "service-2.json.gz"), "rt") as f:
        data: dict[str, Any] = json.load(f)
    return data


MODEL = _model()
TOKEN_OP = MODEL["operations"]["CreateOAuth2Token"]
TOKEN_METHOD = TOKEN_OP["http"]["method"]
TOKEN_PATH = TOKEN_OP["http"]["requestUri"]
ERROR_CODES = frozenset(MODEL["shapes"]["OAuth2ErrorCode"]["enum"])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC JWK."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    nums = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64url(nums.x.to_bytes(32, "big")),
            "y": _b64url(nums.y.to_bytes(32, "big"))}


def sec1_pem(key: ec.EllipticCurvePrivateKey) -> str:
    """The key as the AWS CLI writes it: SEC1 DER, base64 in 64-character lines."""
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    body = textwrap.fill(base64.b64encode(der).decode(), width=64)
    return f"-----BEGIN EC PRIVATE KEY-----\n{body}\n-----END EC PRIVATE KEY-----\n"


class Refused(Exception):
    def __init__(self, status: int, kind: str, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.error, self.message = status, kind, error, message


@dataclass
class Session:
    key: str  # JWK thumbprint
    started: float
    revoked: bool = False
    credentials_changed: bool = False


@dataclass
class State:
    sessions: dict[str, Session] = field(default_factory=dict)
    #: refresh token -> (session id, used)
    refresh_tokens: dict[str, tuple[str, bool]] = field(default_factory=dict)
    jtis: set[str] = field(default_factory=set)
    refreshes: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    #: access key ids issued, in order, and when (the emulator's clock)
    issued: list[str] = field(default_factory=list)
    issued_at: dict[str, float] = field(default_factory=dict)


class SignInEmulator:
    def __init__(self, *, credential_lifetime: int = CREDENTIAL_LIFETIME, max_session: int = MAX_SESSION,
                 on_secret: Callable[..., None] | None = None) -> None:
        self.credential_lifetime = credential_lifetime
        self.max_session = max_session
        self.on_secret = on_secret or (lambda *values: None)
        self.offset = 0.0
        #: called with the request body before a token request is handled (races)
        self.before_refresh: Callable[[dict[str, Any]], None] | None = None
        self.state = State()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SignInEmulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)

    # -- the clock and control ------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def revoke_all(self) -> None:
        with self.lock:
            for s in self.state.sessions.values():
                s.revoked = True

    def credentials_changed(self) -> None:
        with self.lock:
            for s in self.state.sessions.values():
                s.credentials_changed = True

    @property
    def refreshes(self) -> int:
        return self.state.refreshes

    # -- what `aws login` would have written ------------------------------------------
    def sign_in(self, *, region: str | None = None) -> dict[str, Any]:
        """A new session: the token cache file's content, as the AWS CLI writes it
        after the authorization-code exchange (a fresh EC P-256 key)."""
        key = ec.generate_private_key(ec.SECP256R1())
        with self.lock:
            sid = secrets.token_hex(8)
            self.state.sessions[sid] = Session(thumbprint(public_jwk(key)), self.now())
            output = self._issue(sid)
        pem = sec1_pem(key)
        self.on_secret(pem.split("\n")[1])
        expires = datetime.fromtimestamp(self.now() + output["expiresIn"], UTC)
        token: dict[str, Any] = {
            "accessToken": {**output["accessToken"], "accountId": ACCOUNT,
                            "expiresAt": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "tokenType": output["tokenType"], "clientId": CLIENT_ID,
            "refreshToken": output["refreshToken"], "idToken": output["idToken"], "dpopKey": pem,
        }
        if region:
            token["signInRegion"] = region
        return token

    def _issue(self, sid: str) -> dict[str, Any]:
        akid = "ASIA" + secrets.token_hex(8).upper()
        secret, session_token = secrets.token_urlsafe(30), "IQoJ" + secrets.token_urlsafe(96)
        refresh = "rt-" + secrets.token_urlsafe(48)
        self.state.refresh_tokens[refresh] = (sid, False)
        self.state.issued.append(akid)
        self.state.issued_at[akid] = self.now()
        self.on_secret(secret, session_token, refresh)
        claims = _b64url(json.dumps({"sub": LOGIN_SESSION}).encode())
        return {
            "accessToken": {"accessKeyId": akid, "secretAccessKey": secret, "sessionToken": session_token},
            "tokenType": "aws_sigv4", "expiresIn": self.credential_lifetime, "refreshToken": refresh,
            "idToken": f"{_b64url(b'{}')}.{claims}.sig",
        }

    # -- the token endpoint ------------------------------------------------------------
    def token(self, body: dict[str, Any], dpop: str | None, url: str) -> dict[str, Any]:
        if self.before_refresh is not None:
            self.before_refresh(body)
        if body.get("grantType") != "refresh_token":
            raise Refused(400, "ValidationException", "unsupported_grant_type", "grant not supported")
        if body.get("clientId") != CLIENT_ID:
            raise Refused(400, "ValidationException", "invalid_client", "unknown client")
        key = self._check_proof(dpop, url)
        with self.lock:
            entry = self.state.refresh_tokens.get(str(body.get("refreshToken")))
            if entry is None:
                raise self._refuse("invalid_grant", "unknown refresh token")
            sid, used = entry
            session = self.state.sessions[sid]
            if key != session.key:
                raise self._refuse("invalid_grant", "DPoP key does not match the session",
                                   kind="ValidationException")
            if used:
                raise self._refuse("invalid_grant", "refresh token already used")
            if session.credentials_changed:
                raise self._refuse("USER_CREDENTIALS_CHANGED", "the user's credentials changed")
            if session.revoked or self.now() - session.started > self.max_session:
                raise self._refuse("TOKEN_EXPIRED", "the session expired or was revoked")
            self.state.refresh_tokens[str(body["refreshToken"])] = (sid, True)
            self.state.refreshes += 1
            return self._issue(sid)

    def _refuse(self, error: str, message: str, kind: str = "AccessDeniedException") -> Refused:
        assert error in ERROR_CODES, error
        self.state.refused[error] += 1
        return Refused(400, kind, error, message)

    def _check_proof(self, proof: str | None, url: str) -> str:
        """The JWK thumbprint of a valid DPoP proof for this request."""
        def bad(why: str) -> Refused:
            with self.lock:
                self.state.refused["invalid_dpop_proof"] += 1
            return Refused(400, "ValidationException", "invalid_request", f"invalid DPoP proof: {why}")

        if not proof or proof.count(".") != 2:
            raise bad("missing or not a compact JWS")
        h64, p64, s64 = proof.split(".")
        try:
            header, payload = json.loads(_unb64url(h64)), json.loads(_unb64url(p64))
            jwk, sig = header["jwk"], _unb64url(s64)
            if header.get("typ") != "dpop+jwt" or header.get("alg") != "ES256":
                raise bad("typ/alg")
            if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or len(sig) != 64:
                raise bad("key or signature shape")
            public = ec.EllipticCurvePublicNumbers(
                int.from_bytes(_unb64url(jwk["x"]), "big"), int.from_bytes(_unb64url(jwk["y"]), "big"),
                ec.SECP256R1(),
            ).public_key()
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            public.verify(der, f"{h64}.{p64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise bad("signature does not verify") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise bad("unreadable") from None
        if payload.get("htm") != TOKEN_METHOD or payload.get("htu") != url:
            raise bad(f"htm/htu {payload.get('htm')} {payload.get('htu')} for {url}")
        iat = payload.get("iat")
        if not isinstance(iat, int) or abs(iat - self.now()) > IAT_SKEW:
            raise bad(f"iat {iat} is not within {IAT_SKEW} s of {int(self.now())}")
        jti = payload.get("jti")
        with self.lock:
            if not isinstance(jti, str) or not jti or jti in self.state.jtis:
                self.state.refused["invalid_dpop_proof"] += 1
                raise Refused(400, "ValidationException", "invalid_request", "DPoP jti replayed")
            self.state.jtis.add(jti)
        return thumbprint(jwk)


def _handler(emu: SignInEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any], kind: str | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if kind:
                self.send_header("x-amzn-ErrorType", kind)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.split("?")[0] != TOKEN_PATH:
                self._send(404, {"error": "RESOURCE_NOT_FOUND", "message": self.path},
                           "ResourceNotFoundException")
                return
            url = f"http://{self.headers.get('Host')}{TOKEN_PATH}"
            try:
                body = json.loads(raw or b"{}")
                self._send(200, emu.token(body, self.headers.get("DPoP"), url))
            except Refused as exc:
                self._send(exc.status, {"error": exc.error, "message": exc.message}, exc.kind)
            except ValueError:
                self._send(400, {"error": "invalid_request", "message": "not JSON"}, "ValidationException")

    return Handler
