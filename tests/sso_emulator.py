"""A stdlib-only emulator of IAM Identity Center's ``sso`` (portal) and ``sso-oidc`` APIs.

moto has neither service.  Wire format follows botocore's service models (rest-json, no
auth): errors carry ``x-amzn-ErrorType`` plus a JSON body (oidc: ``{"error",
"error_description"}``, portal: ``{"message"}``) with the model's status codes.
One server serves both APIs (their paths do not collide) plus ``GET /authorize`` (the
browser leg of authorization code + PKCE) and a JSON control API under ``/_emu/``.

In-process::

    with SSOEmulator(auto_approve=True) as emu:
        os.environ["AWS_ENDPOINT_URL_SSO"] = os.environ["AWS_ENDPOINT_URL_SSO_OIDC"] = emu.url

Subprocess: ``python tests/sso_emulator.py --port 0 --port-file F [--auto-approve]
[--state-file F] [--config JSON]``; drive it with ``POST /_emu/<method>`` (JSON body =
keyword arguments of the method of the same name, see CONTROL) and ``GET /_emu/state``.

``GET /authorize`` answers 302 to ``redirect_uri?code=..&state=..`` at once when
auto-approve is on; otherwise it blocks (up to ``authorize_timeout`` s) until the pending
authorization is approved or denied through ``approve``/``deny`` (a denial or time-out
redirects with ``error=access_denied``).  Loopback redirect URIs match the registered
ones whatever their port (RFC 8252 7.3; the AWS CLI registers ``http://127.0.0.1/oauth/
callback`` and redirects to ``http://127.0.0.1:PORT/oauth/callback``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import signal
import string
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANTS = {DEVICE_GRANT, "authorization_code", "refresh_token"}
# Status codes as in botocore/data/sso-oidc/2019-06-10/service-2.json (checked by the tests).
OIDC_ERRORS = {
    "AccessDeniedException": (400, "access_denied"),
    "AuthorizationPendingException": (400, "authorization_pending"),
    "ExpiredTokenException": (400, "expired_token"),
    "InternalServerException": (500, "server_error"),
    "InvalidClientException": (401, "invalid_client"),
    "InvalidClientMetadataException": (400, "invalid_client_metadata"),
    "InvalidGrantException": (400, "invalid_grant"),
    "InvalidRedirectUriException": (400, "invalid_redirect_uri"),
    "InvalidRequestException": (400, "invalid_request"),
    "InvalidScopeException": (400, "invalid_scope"),
    "SlowDownException": (400, "slow_down"),
    "UnauthorizedClientException": (400, "unauthorized_client"),
    "UnsupportedGrantTypeException": (400, "unsupported_grant_type"),
}
# botocore/data/sso/2019-06-10/service-2.json, plus the unmodeled 403 real portals send
# for an unassigned account/role ("ForbiddenException: No access").
SSO_ERRORS = {
    "InvalidRequestException": 400,
    "UnauthorizedException": 401,
    "ForbiddenException": 403,
    "ResourceNotFoundException": 404,
    "TooManyRequestsException": 429,
}
ROUTES = {
    ("POST", "/client/register"): "RegisterClient",
    ("POST", "/device_authorization"): "StartDeviceAuthorization",
    ("POST", "/token"): "CreateToken",
    ("GET", "/authorize"): "Authorize",
    ("GET", "/federation/credentials"): "GetRoleCredentials",
    ("GET", "/assignment/accounts"): "ListAccounts",
    ("GET", "/assignment/roles"): "ListAccountRoles",
    ("POST", "/logout"): "Logout",
}
PORTAL_OPS = {"GetRoleCredentials", "ListAccounts", "ListAccountRoles", "Logout"}
CONTROL = (
    "approve", "deny", "wait_pending", "set_auto_approve", "inject", "clear_faults", "revoke_refresh_tokens",
    "revoke_sessions", "expire_access_tokens", "expire_clients", "advance", "configure", "reset",
)
DEFAULT_ACCOUNTS = [
    {"accountId": "111111111111", "accountName": "dev", "emailAddress": "dev@example.com",
     "roles": ["ReadOnly", "Admin"]},
    {"accountId": "222222222222", "accountName": "staging", "emailAddress": "stg@example.com",
     "roles": ["ReadOnly"]},
    {"accountId": "333333333333", "accountName": "prod", "emailAddress": "prod@example.com",
     "roles": ["ReadOnly", "BedrockUser"]},
]
DEFAULTS: dict[str, Any] = {
    "auto_approve": False,
    "enforce_interval": False,       # SlowDownException when polled faster than `interval`
    "interval": 1,
    "device_code_lifetime": 600,
    "client_secret_lifetime": 90 * 86400,
    "access_token_lifetime": 3600,   # capped at the end of the session
    "session_lifetime": 8 * 3600,    # refresh after this -> InvalidGrantException
    "role_credential_lifetime": 3600,
    "auth_code_lifetime": 300,
    "authorize_timeout": 60.0,       # how long GET /authorize waits for approve/deny
    "issue_refresh_tokens": True,
    "rotate_refresh_tokens": True,
    "issue_id_token": False,
    "default_max_results": 20,
    "accounts": DEFAULT_ACCOUNTS,
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
Response = tuple[int, dict[str, str], bytes]


class ApiError(Exception):
    def __init__(self, code: str, message: str = "", status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


@dataclass
class Client:
    client_id: str
    secret: str
    name: str
    grant_types: list[str]
    redirect_uris: list[str]
    scopes: list[str]
    issuer_url: str | None
    issued_at: int
    expires_at: int


@dataclass
class Pending:  # an authorization waiting for the "user": device code or GET /authorize
    user_code: str
    kind: str  # "device" | "authorize"
    client_id: str
    expires_at: float
    status: str = "pending"  # pending | approved | denied | used
    device_code: str | None = None
    last_poll: float | None = None


@dataclass
class Session:
    client_id: str
    ends: float
    revoked: bool = False


@dataclass
class Fault:
    error: str | None
    message: str
    status: int | None
    delay: float
    times: int


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(status: int, obj: Any, **headers: str) -> Response:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(obj).encode()


def _add_query(uri: str, **params: str) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


class SSOEmulator:
    def __init__(self, port: int = 0, state_file: str | None = None, **config: Any) -> None:
        self.port, self.state_file = port, state_file
        self.config = json.loads(json.dumps(DEFAULTS))
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._closing = False
        self.configure(**config)
        self.reset()

    # ----------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SSOEmulator:
        self._closing = False
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._server.daemon_threads = True
        self._server.emu = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.state_file:
            with open(self.state_file + ".tmp", "w") as f:
                json.dump(self.state(), f, indent=1)
            os.replace(self.state_file + ".tmp", self.state_file)

    def __enter__(self) -> SSOEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- control API
    def now(self) -> float:
        return time.time() + self.offset

    def reset(self) -> None:
        """Forget every client, token, fault, counter and log entry; reset the clock."""
        with self._cond:
            self.offset = 0.0
            self.clients: dict[str, Client] = {}
            self.pending: dict[str, Pending] = {}  # by user code
            self.auth_codes: dict[str, dict[str, Any]] = {}
            self.sessions: dict[str, Session] = {}
            self.access_tokens: dict[str, list[Any]] = {}  # token -> [session id, expires]
            self.refresh_tokens: dict[str, str] = {}  # token -> session id
            self.faults: dict[str, list[Fault]] = {}
            self.counts: Counter[str] = Counter()
            self.grant_counts: Counter[str] = Counter()
            self.device_starts = self.authorize_hits = self.logouts = 0
            self.registrations: list[dict[str, Any]] = []
            self.issued_credentials: list[dict[str, Any]] = []
            self.log: list[dict[str, Any]] = []
            self._cond.notify_all()

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set lifetimes (seconds) and switches; see DEFAULTS for the keys."""
        with self._cond:
            unknown = set(settings) - set(DEFAULTS)
            if unknown:
                raise ValueError(f"unknown settings: {sorted(unknown)}")
            self.config.update(settings)
            return dict(self.config)

    def set_auto_approve(self, enabled: bool = True) -> None:
        self.configure(auto_approve=enabled)
        if enabled:
            self.approve("all")

    def advance(self, seconds: float) -> float:
        """Move the emulator's clock forward (all lifetimes follow it)."""
        with self._cond:
            self.offset += seconds
            return self.now()

    def _decide(self, user_code: str, status: str) -> list[str]:
        with self._cond:
            codes = [c for c, p in self.pending.items() if p.status == "pending"]
            if user_code != "all":
                if user_code not in codes:
                    raise KeyError(f"no pending authorization with user code {user_code!r}")
                codes = [user_code]
            for c in codes:
                self.pending[c].status = status
            self._cond.notify_all()
            return codes

    def wait_pending(self, timeout: float = 10.0) -> list[str]:
        """Block until some authorization awaits approval; return the pending user codes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                codes = [c for c, p in self.pending.items() if p.status == "pending"]
                if codes or time.monotonic() >= deadline:
                    return codes
                self._cond.wait(deadline - time.monotonic())

    def approve(self, user_code: str = "all") -> list[str]:
        """Approve a pending device / authorize authorization by user code, or all of them."""
        return self._decide(user_code, "approved")

    def deny(self, user_code: str = "all") -> list[str]:
        return self._decide(user_code, "denied")

    def inject(self, operation: str, error: str | None = None, times: int = 1,
               message: str = "", status: int | None = None, delay: float = 0.0) -> None:
        """Queue a canned fault for the next `times` calls of `operation` (e.g. "CreateToken").

        `error` is the x-amzn-ErrorType code (for "Authorize": the OAuth error of the redirect);
        `delay` seconds are slept first (with error=None the call then proceeds normally).
        """
        if operation not in ROUTES.values():
            raise ValueError(f"unknown operation {operation!r}")
        with self._cond:
            self.faults.setdefault(operation, []).append(
                Fault(error, message, status, delay, times))

    def clear_faults(self) -> None:
        with self._cond:
            self.faults.clear()

    def revoke_refresh_tokens(self) -> int:
        """Invalidate every refresh token (access tokens stay valid until they expire)."""
        with self._cond:
            n = len(self.refresh_tokens)
            self.refresh_tokens.clear()
            return n

    def revoke_sessions(self) -> None:
        """End every sign-in session: its access and refresh tokens stop working."""
        with self._cond:
            for s in self.sessions.values():
                s.revoked = True

    def expire_access_tokens(self) -> None:
        with self._cond:
            for rec in self.access_tokens.values():
                rec[1] = min(rec[1], self.now())

    def expire_clients(self) -> None:
        """Make every client registration's secret expire (-> InvalidClientException)."""
        with self._cond:
            for c in self.clients.values():
                c.expires_at = min(c.expires_at, int(self.now()))

    def state(self) -> dict[str, Any]:
        with self._cond:
            state: dict[str, Any] = json.loads(json.dumps({
                "now": self.now(),
                "clock_offset": self.offset,
                "config": self.config,
                "counts": self.counts,
                "authorizations_started": self.device_starts + self.authorize_hits,
                "device_authorizations": self.device_starts,
                "authorize_hits": self.authorize_hits,
                "create_token_by_grant": self.grant_counts,
                "registrations": self.registrations,
                "authorizations": [{"user_code": p.user_code, "kind": p.kind,
                                    "client_id": p.client_id, "status": p.status}
                                   for p in self.pending.values()],
                "issued_credentials": self.issued_credentials,
                "access_keys": [c["accessKeyId"] for c in self.issued_credentials],
                "logouts": self.logouts,
                "active_access_tokens": sum(map(self._token_ok, self.access_tokens)),
                "refresh_tokens": len(self.refresh_tokens),
                "faults": {op: sum(f.times for f in fs) for op, fs in self.faults.items() if fs},
                "log": self.log,
            }))
            return state

    # ----------------------------------------------------------------- request entry points
    def _control(self, method: str, name: str, raw: bytes) -> Response:
        if method == "GET" and name == "state":
            return _json(200, self.state())
        if method != "POST" or name not in CONTROL:
            return _json(404, {"ok": False, "error": f"no control route {method} /_emu/{name}"})
        try:
            result = getattr(self, name)(**json.loads(raw or b"{}"))
        except (TypeError, ValueError, KeyError) as e:
            return _json(400, {"ok": False, "error": str(e)})
        return _json(200, {"ok": True, "result": result})

    def _serve(self, method: str, path: str, query: dict[str, str], headers: Any,
               raw: bytes) -> Response:
        op = ROUTES.get((method, path))
        if op is None and method == "GET" and path == "/device":
            resp: Response = 200, {"Content-Type": "text/html"}, b"<h1>Enter your code</h1>"
        elif op is None:
            resp = _json(404, {"message": f"no route {method} {path}"},
                         **{"x-amzn-ErrorType": "UnknownOperationException"})
        else:
            resp = self._call(op, query, headers, raw)
        with self._cond:
            loc = parse_qs(urlsplit(resp[1].get("Location", "")).query)
            error = resp[1].get("x-amzn-ErrorType") or loc.get("error", [None])[0]
            self.log.append({"seq": len(self.log) + 1, "time": self.now(), "operation": op,
                             "method": method, "path": path, "status": resp[0], "error": error})
        return resp

    def _call(self, op: str, query: dict[str, str], headers: Any, raw: bytes) -> Response:
        with self._cond:
            self.counts[op] += 1
            self.authorize_hits += op == "Authorize"
            queue = self.faults.get(op)
            fault = queue[0] if queue else None
            if fault:
                fault.times -= 1
                if fault.times <= 0:
                    queue.pop(0)  # type: ignore[union-attr]
        if fault and fault.delay:
            time.sleep(fault.delay)
        with self._cond:
            try:
                if fault and fault.error:
                    if op == "Authorize":
                        return self._authorize_redirect(query, error=fault.error)
                    raise ApiError(fault.error, fault.message, fault.status)
                if op == "Authorize":
                    return self._op_Authorize(query)
                if op in PORTAL_OPS:
                    token = headers.get("x-amz-sso_bearer_token") or ""
                    resp: Response = getattr(self, f"_op_{op}")(query, token)
                    return resp
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    raise ApiError("InvalidRequestException", "request body is not a JSON object")
                return _json(200, getattr(self, f"_op_{op}")(body))
            except ApiError as e:
                hdr = {"x-amzn-ErrorType": e.code, "x-amzn-RequestId": str(uuid.uuid4())}
                if op in PORTAL_OPS:
                    return _json(e.status or SSO_ERRORS.get(e.code, 400),
                                 {"message": e.message}, **hdr)
                status, oauth = OIDC_ERRORS.get(e.code, (400, e.code))
                return _json(e.status or status,
                             {"error": oauth, "error_description": e.message}, **hdr)

    # ----------------------------------------------------------------- sso-oidc
    def _op_RegisterClient(self, b: dict[str, Any]) -> dict[str, Any]:
        if not b.get("clientName") or not b.get("clientType"):
            raise ApiError("InvalidRequestException", "clientName and clientType are required")
        if b["clientType"] != "public":
            raise ApiError("InvalidClientMetadataException", "clientType must be public")
        grants, uris = b.get("grantTypes") or [], b.get("redirectUris") or []
        if set(grants) - GRANTS:
            raise ApiError("UnsupportedGrantTypeException", f"unsupported: {grants}")
        if "authorization_code" in grants and not uris:
            raise ApiError("InvalidRedirectUriException", "redirectUris required")
        for u in uris:
            if urlsplit(u).scheme not in ("http", "https") or not urlsplit(u).netloc:
                raise ApiError("InvalidRedirectUriException", f"invalid redirect uri {u}")
        now = int(self.now())
        c = Client(_rand(22), _rand(64), b["clientName"], grants, uris, b.get("scopes") or [],
                   b.get("issuerUrl"), now, now + int(self.config["client_secret_lifetime"]))
        self.clients[c.client_id] = c
        self.registrations.append({"clientId": c.client_id, "clientName": c.name,
                                   "grantTypes": grants, "redirectUris": uris,
                                   "scopes": c.scopes, "issuerUrl": c.issuer_url,
                                   "issuedAt": now, "expiresAt": c.expires_at})
        out = {"clientId": c.client_id, "clientSecret": c.secret, "clientIdIssuedAt": now,
               "clientSecretExpiresAt": c.expires_at}
        if "authorization_code" in grants:
            out |= {"authorizationEndpoint": f"{self.url}/authorize",
                    "tokenEndpoint": f"{self.url}/token"}
        return out

    def _client(self, b: dict[str, Any], grant: str | None = None) -> Client:
        c = self.clients.get(b.get("clientId") or "")
        if c is None or not secrets.compare_digest(c.secret, b.get("clientSecret") or ""):
            raise ApiError("InvalidClientException", "Invalid client credentials")
        if c.expires_at <= self.now():
            raise ApiError("InvalidClientException", "Client secret has expired")
        allowed = c.grant_types or [DEVICE_GRANT, "refresh_token"]
        if grant and grant not in allowed:
            raise ApiError("UnauthorizedClientException", f"client may not use {grant}")
        return c

    def _op_StartDeviceAuthorization(self, b: dict[str, Any]) -> dict[str, Any]:
        c = self._client(b, DEVICE_GRANT)
        if not b.get("startUrl"):
            raise ApiError("InvalidRequestException", "startUrl is required")
        letters = "BCDFGHJKLMNPQRSTVWXZ"
        user_code = f"{_rand(4, letters)}-{_rand(4, letters)}"
        ttl = int(self.config["device_code_lifetime"])
        p = Pending(user_code, "device", c.client_id, self.now() + ttl, device_code=_rand(64))
        if self.config["auto_approve"]:
            p.status = "approved"
        self.pending[user_code] = p
        self.device_starts += 1
        self._cond.notify_all()
        return {"deviceCode": p.device_code, "userCode": user_code,
                "verificationUri": f"{self.url}/device",
                "verificationUriComplete": f"{self.url}/device?user_code={user_code}",
                "expiresIn": ttl, "interval": self.config["interval"]}

    def _op_CreateToken(self, b: dict[str, Any]) -> dict[str, Any]:
        grant = b.get("grantType") or ""
        self.grant_counts[grant] += 1
        if grant not in GRANTS:
            raise ApiError("UnsupportedGrantTypeException", f"unsupported grant type {grant}")
        c = self._client(b, grant)
        now = self.now()
        if grant == DEVICE_GRANT:
            p = next((p for p in self.pending.values()
                      if p.device_code and p.device_code == b.get("deviceCode")), None)
            if p is None or p.client_id != c.client_id or p.status == "used":
                raise ApiError("InvalidGrantException", "Invalid device code provided")
            if p.expires_at <= now:
                raise ApiError("ExpiredTokenException", "Device code has expired")
            last, p.last_poll = p.last_poll, now
            if self.config["enforce_interval"] and last and now - last < self.config["interval"]:
                raise ApiError("SlowDownException", "Client is polling too fast")
            if p.status == "denied":
                raise ApiError("AccessDeniedException", "Authorization was denied")
            if p.status == "pending":
                raise ApiError("AuthorizationPendingException", "Authorization is pending")
            p.status = "used"
            return self._issue(self._new_session(c))
        if grant == "authorization_code":
            if not b.get("code"):
                raise ApiError("InvalidRequestException", "code is required")
            rec = self.auth_codes.pop(b["code"], None)  # one-time, even when the check fails
            if rec is None or rec["client_id"] != c.client_id or rec["expires_at"] <= now:
                raise ApiError("InvalidGrantException", "Invalid authorization code")
            if b.get("redirectUri") != rec["redirect_uri"]:
                raise ApiError("InvalidGrantException", "redirectUri does not match")
            verifier = (b.get("codeVerifier") or "").encode()
            if _b64url(hashlib.sha256(verifier).digest()) != rec["challenge"]:
                raise ApiError("InvalidGrantException", "PKCE verification failed")
            return self._issue(self._new_session(c))
        sid = self.refresh_tokens.get(b.get("refreshToken") or "")
        s = self.sessions.get(sid or "")
        if s is None or s.client_id != c.client_id or s.revoked or s.ends <= now:
            raise ApiError("InvalidGrantException", "Invalid refresh token provided")
        rotate = self.config["rotate_refresh_tokens"]
        if rotate:
            del self.refresh_tokens[b["refreshToken"]]
        return self._issue(sid, None if rotate else b["refreshToken"])  # type: ignore[arg-type]

    def _new_session(self, c: Client) -> str:
        sid = uuid.uuid4().hex
        self.sessions[sid] = Session(c.client_id, self.now() + self.config["session_lifetime"])
        return sid

    def _issue(self, sid: str, refresh: str | None = None) -> dict[str, Any]:
        now, s = self.now(), self.sessions[sid]
        ttl = max(1, int(min(self.config["access_token_lifetime"], s.ends - now)))
        token = "aoa" + _rand(200)
        self.access_tokens[token] = [sid, now + ttl]
        out: dict[str, Any] = {"accessToken": token, "tokenType": "Bearer", "expiresIn": ttl}
        if self.config["issue_refresh_tokens"]:
            if refresh is None:
                refresh = "aor" + _rand(200)
                self.refresh_tokens[refresh] = sid
            out["refreshToken"] = refresh
        if self.config["issue_id_token"]:
            claims = {"iss": self.url, "aud": s.client_id, "iat": int(now), "exp": int(now) + ttl}
            out["idToken"] = ".".join(_b64url(json.dumps(x).encode())
                                      for x in ({"alg": "none"}, claims)) + "."
        return out

    def _redirect_ok(self, c: Client, uri: str) -> bool:
        u = urlsplit(uri)
        for reg in c.redirect_uris:
            r = urlsplit(reg)
            if uri == reg or (u.scheme == r.scheme == "http" and u.hostname in LOOPBACK
                              and u.hostname == r.hostname and u.path == r.path):
                return True
        return False

    def _authorize_redirect(self, q: dict[str, str], **params: str) -> Response:
        if not q.get("redirect_uri"):
            return 400, {"Content-Type": "text/plain"}, b"redirect_uri is required"
        params = {**params, "state": q["state"]} if "state" in q else params
        return 302, {"Location": _add_query(q["redirect_uri"], **params)}, b""

    def _op_Authorize(self, q: dict[str, str]) -> Response:
        c = self.clients.get(q.get("client_id", ""))
        if (c is None or "authorization_code" not in c.grant_types
                or not self._redirect_ok(c, q.get("redirect_uri", ""))):
            return 400, {"Content-Type": "text/plain"}, b"unknown client_id or redirect_uri"
        if q.get("response_type") != "code":
            return self._authorize_redirect(q, error="unsupported_response_type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return self._authorize_redirect(q, error="invalid_request")
        letters = "BCDFGHJKLMNPQRSTVWXZ"
        p = Pending(f"{_rand(4, letters)}-{_rand(4, letters)}", "authorize", c.client_id,
                    self.now() + float(self.config["authorize_timeout"]))
        p.status = "approved" if self.config["auto_approve"] else "pending"
        self.pending[p.user_code] = p
        self._cond.notify_all()
        deadline = time.monotonic() + float(self.config["authorize_timeout"])
        while p.status == "pending" and not self._closing and time.monotonic() < deadline:
            self._cond.wait(deadline - time.monotonic())
        if p.status != "approved":
            p.status = "denied"
            return self._authorize_redirect(q, error="access_denied")
        p.status = "used"
        code = _rand(48)
        self.auth_codes[code] = {"client_id": c.client_id, "redirect_uri": q["redirect_uri"],
                                 "challenge": q["code_challenge"],
                                 "expires_at": self.now() + self.config["auth_code_lifetime"]}
        return self._authorize_redirect(q, code=code)

    # ----------------------------------------------------------------- sso portal
    def _token_ok(self, token: str) -> bool:
        rec = self.access_tokens.get(token)
        s = self.sessions.get(rec[0]) if rec else None
        now = self.now()
        return bool(rec and s and rec[1] > now and not s.revoked and s.ends > now)

    def _auth(self, token: str) -> str:
        if not self._token_ok(token):
            raise ApiError("UnauthorizedException", "Session token not found or invalid")
        return self.access_tokens[token][0]  # type: ignore[no-any-return]

    def _page(self, items: list[Any], q: dict[str, str], kind: str) -> tuple[list[Any], Any]:
        try:
            size = int(q.get("max_result") or self.config["default_max_results"])
            start = 0
            if q.get("next_token"):
                k, _, n = base64.urlsafe_b64decode(q["next_token"]).decode().rpartition(":")
                start = int(n) if k == kind else -1
            if size < 1 or start < 0:
                raise ValueError
        except ValueError:
            raise ApiError("InvalidRequestException", "Invalid pagination parameters") from None
        end = start + size
        token = base64.urlsafe_b64encode(f"{kind}:{end}".encode()).decode()
        return items[start:end], (token if end < len(items) else None)

    def _account(self, account_id: str) -> dict[str, Any] | None:
        return next((a for a in self.config["accounts"] if a["accountId"] == account_id), None)

    def _op_GetRoleCredentials(self, q: dict[str, str], token: str) -> Response:
        self._auth(token)
        account, role = q.get("account_id"), q.get("role_name")
        if not account or not role:
            raise ApiError("InvalidRequestException", "account_id and role_name are required")
        a = self._account(account)
        if a is None or role not in a["roles"]:
            raise ApiError("ForbiddenException", "No access")
        now = self.now()
        expiration = int((now + self.config["role_credential_lifetime"]) * 1000)
        akid = "ASIA" + _rand(16, string.ascii_uppercase + "234567")
        self.issued_credentials.append({"accessKeyId": akid, "accountId": account,
                                        "roleName": role, "expiration": expiration,
                                        "issuedAt": now})
        return _json(200, {"roleCredentials": {
            "accessKeyId": akid, "secretAccessKey": _rand(40),
            "sessionToken": "IQoJb3JpZ2luX2Vj" + _rand(300), "expiration": expiration}})

    def _op_ListAccounts(self, q: dict[str, str], token: str) -> Response:
        self._auth(token)
        accounts = [{k: a[k] for k in ("accountId", "accountName", "emailAddress")}
                    for a in self.config["accounts"]]
        page, nxt = self._page(accounts, q, "accounts")
        return _json(200, {"accountList": page, "nextToken": nxt})

    def _op_ListAccountRoles(self, q: dict[str, str], token: str) -> Response:
        self._auth(token)
        if not q.get("account_id"):
            raise ApiError("InvalidRequestException", "account_id is required")
        a = self._account(q["account_id"]) or {"roles": []}
        roles = [{"roleName": r, "accountId": q["account_id"]} for r in a["roles"]]
        page, nxt = self._page(roles, q, "roles:" + q["account_id"])
        return _json(200, {"roleList": page, "nextToken": nxt})

    def _op_Logout(self, q: dict[str, str], token: str) -> Response:
        self.sessions[self._auth(token)].revoked = True
        self.logouts += 1
        return 200, {}, b""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sso-emulator"
    # Headers and body go out in two writes: with Nagle on, every keep-alive call
    # waits ~40 ms for the client's delayed ACK (375 portal calls took 17 s).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        emu: SSOEmulator = self.server.emu  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if parts.path.startswith("/_emu/"):
            status, headers, body = emu._control(method, parts.path[len("/_emu/"):], raw)
        else:
            status, headers, body = emu._serve(method, parts.path, query, self.headers, raw)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here (atomically) once listening")
    ap.add_argument("--auto-approve", action="store_true")
    ap.add_argument("--state-file", help="write GET /_emu/state here on exit")
    ap.add_argument("--config", default="{}", help="JSON object of settings (see DEFAULTS)")
    args = ap.parse_args(argv)
    config = json.loads(args.config)
    if args.auto_approve:
        config["auto_approve"] = True
    emu = SSOEmulator(port=args.port, state_file=args.state_file, **config).start()
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(emu.port))
        os.replace(args.port_file + ".tmp", args.port_file)
    print(emu.url, flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    emu.stop()


if __name__ == "__main__":
    main()
