"""The two IAM Identity Center sign-in flows, over botocore's sso-oidc client.

- Authorization code + PKCE with a loopback redirect (the default where a
  browser runs on this machine): the browser comes back to 127.0.0.1.
- Device code (SSH, headless, `--device-code`, `--no-browser`): the user
  opens the URL on any device and approves the code shown.

Both print what the user must do on `out` (Claude Code shows awsAuthRefresh's
output), open the browser only through `open_url`, and give up at `deadline`.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TextIO

import botocore.exceptions

from credhelper.errors import LoginRequired
from credhelper.login.tokens import SsoSession, TokenRecord, Tokens
from credhelper.model import iso_z, parse_time
from credhelper.sources.base import upstream
from credhelper.store import item

CLIENT_NAME = "credhelper"
PROGRESS_EVERY = 15.0
CANCEL = "press Ctrl-C to cancel"


class Flow:
    def __init__(
        self, tokens: Tokens, sess: SsoSession, profile: str, *, out: TextIO,
        open_url: Callable[[str], bool] | None, deadline: float,
    ) -> None:
        self.tokens, self.sess, self.profile, self.out = tokens, sess, profile, out
        self.open_url, self.deadline = open_url, deadline
        self.oidc = tokens.oidc(sess)

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def failed(self, why: str) -> LoginRequired:
        return LoginRequired(self.profile, f"sign-in {why}")

    def register(self, kind: str, **extra: Any) -> tuple[str, str]:
        """A client registration, reused from the store until it nearly expires."""
        key = item("sso-client", f"{self.sess.key}#{kind}")
        raw = self.tokens.store.get(key)
        if raw:
            try:
                reg = json.loads(raw)
                if parse_time(reg["expiresAt"]) > self.tokens.now() + timedelta(days=1):
                    return str(reg["clientId"]), str(reg["clientSecret"])
            except (ValueError, KeyError, TypeError):
                pass  # re-register; the new registration overwrites it
        with upstream("RegisterClient", self.profile):
            out = self.oidc.register_client(
                clientName=CLIENT_NAME, clientType="public", scopes=list(self.sess.scopes), **extra
            )
        tz = self.tokens.now().tzinfo
        expires = datetime.fromtimestamp(int(out.get("clientSecretExpiresAt", 0)), tz=tz)
        reg = {"clientId": out["clientId"], "clientSecret": out["clientSecret"], "expiresAt": iso_z(expires)}
        self.tokens.store.set(key, json.dumps(reg))
        return str(out["clientId"]), str(out["clientSecret"])

    def record(self, out: dict[str, Any], client_id: str, client_secret: str) -> TokenRecord:
        return self.tokens.record_from(self.sess, out, client_id, client_secret)


class DeviceFlow(Flow):
    def run(self) -> TokenRecord:
        client_id, secret = self.register("device")
        with upstream("StartDeviceAuthorization", self.profile):
            start = self.oidc.start_device_authorization(
                clientId=client_id, clientSecret=secret, startUrl=self.sess.start_url
            )
        url = start.get("verificationUriComplete") or start["verificationUri"]
        self.say(f"To sign in to {self.sess.name}, open this URL in a browser on any device:")
        self.say(f"  {url}")
        self.say(f"and confirm that it shows the code: {start['userCode']}")
        if self.open_url is not None and self.open_url(url):
            self.say("(opened in your browser)")
        interval = float(start.get("interval") or 5)
        expires = time.monotonic() + float(start.get("expiresIn") or 600)
        self.say(f"waiting up to {int(min(self.left(), expires - time.monotonic()))} s for "
                 f"approval ({CANCEL})")
        last_note = time.monotonic()
        while True:
            wait = min(interval, self.left(), expires - time.monotonic())
            if wait <= 0:
                raise self.failed("was not approved in time")
            time.sleep(wait)
            try:
                out = self.oidc.create_token(
                    clientId=client_id, clientSecret=secret,
                    grantType="urn:ietf:params:oauth:grant-type:device_code",
                    deviceCode=start["deviceCode"],
                )
                return self.record(out, client_id, secret)
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "SlowDownException":
                    interval += 5
                elif code == "AuthorizationPendingException":
                    pass
                elif code == "ExpiredTokenException":
                    raise self.failed("code expired before it was approved") from None
                elif code == "AccessDeniedException":
                    raise self.failed("was denied") from None
                else:
                    with upstream("CreateToken", self.profile):
                        raise
            if time.monotonic() - last_note >= PROGRESS_EVERY:
                self.say(f"waiting for approval… ({int(self.left())} s left; {CANCEL})")
                last_note = time.monotonic()


class _Callback(http.server.BaseHTTPRequestHandler):
    server: _CallbackServer

    def do_GET(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        if parsed.path != "/oauth/callback":
            self.send_error(404)
            return
        params = dict(urllib.parse.parse_qsl(parsed.query))
        ok = "code" in params and params.get("state") == self.server.state
        body = ("Signed in. You can close this tab." if ok else "Sign-in failed; see the terminal.").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if params.get("state") == self.server.state:
            self.server.result = params
            self.server.done.set()

    def log_message(self, format: str, *args: Any) -> None:
        return


class _CallbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: str) -> None:
        super().__init__(("127.0.0.1", 0), _Callback)
        self.state = state
        self.result: dict[str, str] = {}
        self.done = threading.Event()


class PkceFlow(Flow):
    def run(self) -> TokenRecord:
        state = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(64)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        server = _CallbackServer(state)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            redirect = f"http://127.0.0.1:{server.server_address[1]}/oauth/callback"
            client_id, secret = self.register(
                "pkce", grantTypes=["authorization_code", "refresh_token"],
                redirectUris=["http://127.0.0.1/oauth/callback"], issuerUrl=self.sess.start_url,
            )
            query = urllib.parse.urlencode({
                "response_type": "code", "client_id": client_id, "redirect_uri": redirect,
                "state": state, "code_challenge_method": "S256", "scopes": " ".join(self.sess.scopes),
                "code_challenge": challenge.decode(),
            })
            url = f"{self.oidc.meta.endpoint_url}/authorize?{query}"
            self.say(f"To sign in to {self.sess.name}, open this URL in a browser on this machine:")
            self.say(f"  {url}")
            if self.open_url is not None and self.open_url(url):
                self.say("(opened in your browser)")
            self.say(f"waiting up to {int(max(self.left(), 0))} s for the browser ({CANCEL})")
            while not server.done.wait(min(PROGRESS_EVERY, max(self.left(), 0))):
                if self.left() <= 0:
                    raise self.failed("was not completed in time")
                self.say(f"waiting for the browser… ({int(self.left())} s left; {CANCEL})")
            params = server.result
        finally:
            server.shutdown()
            server.server_close()
        if "error" in params or "code" not in params:
            raise self.failed(f"was refused ({params.get('error', 'no code')})")
        with upstream("CreateToken", self.profile):
            out = self.oidc.create_token(
                clientId=client_id, clientSecret=secret, grantType="authorization_code",
                code=params["code"], codeVerifier=verifier, redirectUri=redirect,
            )
        return self.record(out, client_id, secret)
