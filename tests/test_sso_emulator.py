"""Proves tests/sso_emulator.py against real boto3/botocore clients."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.loaders import Loader
from sso_emulator import DEVICE_GRANT, OIDC_ERRORS, SSO_ERRORS, SSOEmulator

START_URL = "https://example.awsapps.com/start"
NO_RETRY = {"total_max_attempts": 1}


@pytest.fixture(autouse=True)
def _isolated_aws_env(tmp_path, monkeypatch):
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSO",
                "AWS_ENDPOINT_URL_SSO_OIDC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


@pytest.fixture
def emu():
    with SSOEmulator() as e:
        yield e


def make_clients(url, retries=None):
    cfg = Config(signature_version=botocore.UNSIGNED, region_name="us-east-1",
                 retries=retries or NO_RETRY)
    return (boto3.client("sso-oidc", endpoint_url=url, config=cfg),
            boto3.client("sso", endpoint_url=url, config=cfg))


@pytest.fixture
def oidc(emu):
    return make_clients(emu.url)[0]


@pytest.fixture
def sso(emu):
    return make_clients(emu.url)[1]


def register(oidc, **kw):
    return oidc.register_client(clientName="credhelper-test", clientType="public", **kw)


def device_login(emu, oidc, reg=None):
    reg = reg or register(oidc, scopes=["sso:account:access"])
    auth = oidc.start_device_authorization(clientId=reg["clientId"],
                                           clientSecret=reg["clientSecret"], startUrl=START_URL)
    emu.approve(auth["userCode"])
    tok = oidc.create_token(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                            grantType=DEVICE_GRANT, deviceCode=auth["deviceCode"])
    return reg, tok


def refresh(oidc, reg, refresh_token):
    return oidc.create_token(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                             grantType="refresh_token", refreshToken=refresh_token)


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


# --------------------------------------------------------------------------- wire format
@pytest.mark.parametrize("service,table", [("sso-oidc", OIDC_ERRORS), ("sso", SSO_ERRORS)])
def test_error_statuses_match_botocore_service_models(service, table):
    model = Loader().load_service_model(service, "service-2")
    ops = ["RegisterClient", "StartDeviceAuthorization", "CreateToken"] if service == "sso-oidc" \
        else ["GetRoleCredentials", "ListAccounts", "ListAccountRoles", "Logout"]
    modeled = {e["shape"] for op in ops for e in model["operations"][op]["errors"]}
    for name in modeled:
        status = table[name][0] if service == "sso-oidc" else table[name]
        assert status == model["shapes"][name]["error"]["httpStatusCode"], name


@pytest.mark.parametrize("code", sorted(OIDC_ERRORS))
def test_oidc_errors_parse_into_modeled_exceptions(emu, oidc, code):
    emu.inject("CreateToken", code, message="injected")
    with pytest.raises(getattr(oidc.exceptions, code)) as ei:
        oidc.create_token(clientId="x", clientSecret="y", grantType=DEVICE_GRANT, deviceCode="z")
    resp = ei.value.response
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == OIDC_ERRORS[code][0]
    assert resp["error"] == OIDC_ERRORS[code][1]
    assert resp["error_description"] == "injected"


@pytest.mark.parametrize("code", sorted(SSO_ERRORS))
def test_portal_errors_parse(emu, sso, code):
    emu.inject("GetRoleCredentials", code, message="injected")
    exc = getattr(sso.exceptions, code, ClientError)  # ForbiddenException is not modeled
    with pytest.raises(exc) as ei:
        sso.get_role_credentials(roleName="r", accountId="1", accessToken="t")
    assert error_code(ei) == code
    assert ei.value.response["Error"]["Message"] == "injected"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == SSO_ERRORS[code]


# --------------------------------------------------------------------------- device flow
def test_full_device_flow(emu, oidc, sso):
    reg = register(oidc, scopes=["sso:account:access"])
    assert reg["clientSecretExpiresAt"] - reg["clientIdIssuedAt"] == 90 * 86400
    auth = oidc.start_device_authorization(clientId=reg["clientId"],
                                           clientSecret=reg["clientSecret"], startUrl=START_URL)
    assert len(auth["userCode"]) == 9 and auth["userCode"][4] == "-"
    assert auth["verificationUri"] == f"{emu.url}/device"
    assert auth["verificationUriComplete"].endswith(f"?user_code={auth['userCode']}")
    assert (auth["expiresIn"], auth["interval"]) == (600, 1)
    kw = dict(clientId=reg["clientId"], clientSecret=reg["clientSecret"], grantType=DEVICE_GRANT,
              deviceCode=auth["deviceCode"])
    with pytest.raises(oidc.exceptions.AuthorizationPendingException):
        oidc.create_token(**kw)
    assert emu.state()["authorizations"][0]["status"] == "pending"
    assert emu.approve("all") == [auth["userCode"]]
    tok = oidc.create_token(**kw)
    assert tok["tokenType"] == "Bearer" and tok["expiresIn"] == 3600 and tok["refreshToken"]
    with pytest.raises(oidc.exceptions.InvalidGrantException):  # device codes are one-time
        oidc.create_token(**kw)

    at = tok["accessToken"]
    pages = list(sso.get_paginator("list_accounts").paginate(
        accessToken=at, PaginationConfig={"PageSize": 1}))
    assert len(pages) == 3
    assert [a["accountId"] for p in pages for a in p["accountList"]] == [
        "111111111111", "222222222222", "333333333333"]
    roles = sso.list_account_roles(accessToken=at, accountId="111111111111", maxResults=1)
    assert roles["roleList"] == [{"roleName": "ReadOnly", "accountId": "111111111111"}]
    roles2 = sso.list_account_roles(accessToken=at, accountId="111111111111",
                                    nextToken=roles["nextToken"])
    assert [r["roleName"] for r in roles2["roleList"]] == ["Admin"] and "nextToken" not in roles2

    before = time.time()
    creds = sso.get_role_credentials(accessToken=at, accountId="111111111111",
                                     roleName="Admin")["roleCredentials"]
    assert creds["accessKeyId"].startswith("ASIA") and len(creds["accessKeyId"]) == 20
    assert creds["secretAccessKey"] and creds["sessionToken"]
    assert before + 3599 <= creds["expiration"] / 1000 <= time.time() + 3601  # epoch ms
    other = sso.get_role_credentials(accessToken=at, accountId="111111111111", roleName="Admin")
    assert other["roleCredentials"]["accessKeyId"] != creds["accessKeyId"]

    st = emu.state()
    assert st["access_keys"] == [creds["accessKeyId"], other["roleCredentials"]["accessKeyId"]]
    assert st["authorizations_started"] == st["device_authorizations"] == 1
    assert st["create_token_by_grant"] == {DEVICE_GRANT: 3}
    assert st["counts"]["ListAccounts"] == 3 and st["counts"]["GetRoleCredentials"] == 2
    assert st["registrations"][0]["clientId"] == reg["clientId"]
    assert [e["status"] for e in st["log"]][:4] == [200, 200, 400, 200]
    assert st["log"][2]["error"] == "AuthorizationPendingException"


def test_device_flow_failures(emu, oidc):
    reg = register(oidc)
    start = dict(clientId=reg["clientId"], clientSecret=reg["clientSecret"], startUrl=START_URL)
    with pytest.raises(oidc.exceptions.InvalidClientException) as ei:
        oidc.start_device_authorization(**{**start, "clientSecret": "wrong"})
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401

    def poll(auth, **over):
        return oidc.create_token(**{"clientId": reg["clientId"], "grantType": DEVICE_GRANT,
                                    "clientSecret": reg["clientSecret"],
                                    "deviceCode": auth["deviceCode"], **over})

    auth = oidc.start_device_authorization(**start)
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        poll(auth, deviceCode="unknown")
    with pytest.raises(oidc.exceptions.InvalidClientException):
        poll(auth, clientSecret="wrong")
    emu.deny(auth["userCode"])
    with pytest.raises(oidc.exceptions.AccessDeniedException):
        poll(auth)
    auth = oidc.start_device_authorization(**start)
    emu.advance(601)
    with pytest.raises(oidc.exceptions.ExpiredTokenException):
        poll(auth)
    emu.expire_clients()
    with pytest.raises(oidc.exceptions.InvalidClientException):
        oidc.start_device_authorization(**start)


def test_slow_down(emu, oidc):
    reg = register(oidc)
    auth = oidc.start_device_authorization(clientId=reg["clientId"],
                                           clientSecret=reg["clientSecret"], startUrl=START_URL)
    kw = dict(clientId=reg["clientId"], clientSecret=reg["clientSecret"], grantType=DEVICE_GRANT,
              deviceCode=auth["deviceCode"])
    emu.approve()
    emu.inject("CreateToken", "SlowDownException", times=2)
    for _ in range(2):
        with pytest.raises(oidc.exceptions.SlowDownException):
            oidc.create_token(**kw)
    assert oidc.create_token(**kw)["accessToken"]

    emu.configure(enforce_interval=True, interval=5)
    auth = oidc.start_device_authorization(clientId=reg["clientId"],
                                           clientSecret=reg["clientSecret"], startUrl=START_URL)
    kw["deviceCode"] = auth["deviceCode"]
    with pytest.raises(oidc.exceptions.AuthorizationPendingException):
        oidc.create_token(**kw)
    with pytest.raises(oidc.exceptions.SlowDownException):
        oidc.create_token(**kw)
    emu.advance(5)
    with pytest.raises(oidc.exceptions.AuthorizationPendingException):
        oidc.create_token(**kw)


def test_auto_approve_and_concurrent_credentials(emu, oidc, sso):
    emu.set_auto_approve(True)
    reg = register(oidc)
    auth = oidc.start_device_authorization(clientId=reg["clientId"],
                                           clientSecret=reg["clientSecret"], startUrl=START_URL)
    at = oidc.create_token(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                           grantType=DEVICE_GRANT, deviceCode=auth["deviceCode"])["accessToken"]
    with ThreadPoolExecutor(10) as pool:
        keys = list(pool.map(lambda _: sso.get_role_credentials(
            accessToken=at, accountId="333333333333",
            roleName="BedrockUser")["roleCredentials"]["accessKeyId"], range(20)))
    assert len(set(keys)) == 20 and sorted(emu.state()["access_keys"]) == sorted(keys)
    with pytest.raises(ClientError) as ei:  # unassigned role: what real portals answer
        sso.get_role_credentials(accessToken=at, accountId="333333333333", roleName="Admin")
    assert error_code(ei) == "ForbiddenException"


# --------------------------------------------------------------------------- PKCE
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def browser_get(url):
    """GET like a browser that does not follow the redirect; returns the Location query."""
    try:
        urllib.request.build_opener(_NoRedirect).open(url, timeout=30)
    except urllib.error.HTTPError as e:
        assert e.code == 302
        loc = e.headers["Location"]
        assert loc.startswith("http://127.0.0.1:4242/oauth/callback?")
        return {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}
    raise AssertionError("no redirect")


def pkce_register(oidc):
    return register(oidc, grantTypes=["authorization_code", "refresh_token"],
                    redirectUris=["http://127.0.0.1/oauth/callback"], issuerUrl=START_URL,
                    scopes=["sso:account:access"])


def authorize_url(emu, reg, verifier, state="st8"):
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return f"{emu.url}/authorize?" + urlencode({
        "response_type": "code", "client_id": reg["clientId"],
        "redirect_uri": "http://127.0.0.1:4242/oauth/callback", "state": state,
        "code_challenge_method": "S256", "code_challenge": challenge,
        "scopes": "sso:account:access"})


def test_pkce_flow(emu, oidc, sso):
    emu.set_auto_approve(True)
    reg = pkce_register(oidc)
    assert reg["authorizationEndpoint"] == f"{emu.url}/authorize"
    verifier = "v" * 64
    q = browser_get(authorize_url(emu, reg, verifier))
    assert q["state"] == "st8"
    kw = dict(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
              grantType="authorization_code", code=q["code"],
              redirectUri="http://127.0.0.1:4242/oauth/callback", codeVerifier=verifier)
    tok = oidc.create_token(**kw)
    assert tok["accessToken"] and tok["refreshToken"]
    sso.list_accounts(accessToken=tok["accessToken"])
    with pytest.raises(oidc.exceptions.InvalidGrantException):  # codes are one-time
        oidc.create_token(**kw)

    q = browser_get(authorize_url(emu, reg, verifier))
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        oidc.create_token(**{**kw, "code": q["code"], "codeVerifier": "w" * 64})
    q = browser_get(authorize_url(emu, reg, verifier))
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        oidc.create_token(**{**kw, "code": q["code"], "redirectUri": "http://127.0.0.1:1/x"})
    st = emu.state()
    assert st["authorize_hits"] == st["authorizations_started"] == 3
    assert st["create_token_by_grant"] == {"authorization_code": 4}
    device = register(oidc)  # a device-code client may not use authorization_code
    with pytest.raises(oidc.exceptions.UnauthorizedClientException):
        oidc.create_token(**{**kw, "clientId": device["clientId"],
                             "clientSecret": device["clientSecret"]})


def test_authorize_waits_for_approval_or_denial(emu, oidc):
    reg = pkce_register(oidc)
    out = {}
    t = threading.Thread(target=lambda: out.update(browser_get(authorize_url(emu, reg, "v" * 50))))
    t.start()
    assert len(emu.wait_pending(10)) == 1
    assert t.is_alive() and emu.state()["authorizations"][0]["kind"] == "authorize"
    emu.approve("all")
    t.join(10)
    assert out["code"] and out["state"] == "st8"

    t = threading.Thread(target=lambda: out.update(browser_get(authorize_url(emu, reg, "v" * 50))))
    out.clear()
    t.start()
    assert control(emu.url, "wait_pending", timeout=10)["result"]
    emu.deny("all")
    t.join(10)
    assert out == {"error": "access_denied", "state": "st8"}
    emu.inject("Authorize", "server_error")
    assert browser_get(authorize_url(emu, reg, "v" * 50))["error"] == "server_error"
    device_client = register(oidc)  # not registered for authorization_code: no redirect
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(authorize_url(emu, device_client, "v" * 50), timeout=10)
    assert ei.value.code == 400
    assert emu.state()["authorize_hits"] == 4


# --------------------------------------------------------------------------- tokens
def test_refresh_rotation_revocation_and_session_cap(emu, oidc, sso):
    reg, tok = device_login(emu, oidc)
    new = refresh(oidc, reg, tok["refreshToken"])
    assert new["refreshToken"] != tok["refreshToken"]
    assert new["accessToken"] != tok["accessToken"]
    with pytest.raises(oidc.exceptions.InvalidGrantException):  # rotated: old one is dead
        refresh(oidc, reg, tok["refreshToken"])
    sso.list_accounts(accessToken=new["accessToken"])
    new = refresh(oidc, reg, new["refreshToken"])

    emu.advance(8 * 3600 - 600)  # 10 minutes of session left: access token capped
    assert 599 <= refresh(oidc, reg, new["refreshToken"])["expiresIn"] <= 600
    reg, tok = device_login(emu, oidc)
    emu.advance(8 * 3600)
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        refresh(oidc, reg, tok["refreshToken"])

    reg, tok = device_login(emu, oidc)
    assert emu.revoke_refresh_tokens() >= 1
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        refresh(oidc, reg, tok["refreshToken"])
    sso.list_accounts(accessToken=tok["accessToken"])  # access tokens survive
    emu.revoke_sessions()
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.list_accounts(accessToken=tok["accessToken"])


def test_expired_access_token_is_unauthorized(emu, oidc, sso):
    emu.configure(access_token_lifetime=60)
    reg, tok = device_login(emu, oidc)
    assert tok["expiresIn"] == 60
    sso.get_role_credentials(accessToken=tok["accessToken"], accountId="111111111111",
                             roleName="ReadOnly")
    emu.advance(61)
    with pytest.raises(sso.exceptions.UnauthorizedException) as ei:
        sso.get_role_credentials(accessToken=tok["accessToken"], accountId="111111111111",
                                 roleName="ReadOnly")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    tok = refresh(oidc, reg, tok["refreshToken"])
    emu.expire_access_tokens()
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.list_accounts(accessToken=tok["accessToken"])
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.list_accounts(accessToken="never-issued")


def test_throttling_retried_in_standard_mode(emu, oidc, sso):
    _, tok = device_login(emu, oidc)
    kw = dict(accessToken=tok["accessToken"], accountId="111111111111", roleName="ReadOnly")
    emu.inject("GetRoleCredentials", "TooManyRequestsException", times=3)
    with pytest.raises(sso.exceptions.TooManyRequestsException) as ei:
        sso.get_role_credentials(**kw)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    _, retrying = make_clients(emu.url, {"mode": "standard", "max_attempts": 5})
    resp = retrying.get_role_credentials(**kw)
    assert resp["ResponseMetadata"]["RetryAttempts"] == 2
    assert emu.state()["counts"]["GetRoleCredentials"] == 4


def test_delay_fault(emu, oidc):
    emu.inject("RegisterClient", delay=0.3)
    t0 = time.monotonic()
    register(oidc)
    assert time.monotonic() - t0 >= 0.3


def test_logout_revokes_session(emu, oidc, sso):
    reg, tok = device_login(emu, oidc)
    sso.logout(accessToken=tok["accessToken"])
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.get_role_credentials(accessToken=tok["accessToken"], accountId="111111111111",
                                 roleName="ReadOnly")
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        refresh(oidc, reg, tok["refreshToken"])
    assert emu.state()["logouts"] == 1


# --------------------------------------------------------------------------- subprocess + HTTP
def control(url, name, **body):
    req = urllib.request.Request(f"{url}/_emu/{name}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def get_state(url):
    with urllib.request.urlopen(f"{url}/_emu/state", timeout=10) as r:
        return json.load(r)


def test_http_control_api_from_subprocess(tmp_path):
    port_file, state_file = tmp_path / "port", tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("sso_emulator.py")),
                             "--port", "0", "--port-file", str(port_file),
                             "--state-file", str(state_file)], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        oidc, sso = make_clients(url)
        reg = register(oidc)
        auth = oidc.start_device_authorization(
            clientId=reg["clientId"], clientSecret=reg["clientSecret"], startUrl=START_URL)
        kw = dict(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                  grantType=DEVICE_GRANT, deviceCode=auth["deviceCode"])
        with pytest.raises(oidc.exceptions.AuthorizationPendingException):
            oidc.create_token(**kw)
        assert control(url, "approve", user_code=auth["userCode"]) == {
            "ok": True, "result": [auth["userCode"]]}
        tok = oidc.create_token(**kw)

        control(url, "inject", operation="GetRoleCredentials", error="TooManyRequestsException")
        role = dict(accessToken=tok["accessToken"], accountId="111111111111", roleName="ReadOnly")
        with pytest.raises(sso.exceptions.TooManyRequestsException):
            sso.get_role_credentials(**role)
        akid = sso.get_role_credentials(**role)["roleCredentials"]["accessKeyId"]
        control(url, "configure", access_token_lifetime=10)
        assert control(url, "advance", seconds=3600)["ok"]
        with pytest.raises(sso.exceptions.UnauthorizedException):
            sso.get_role_credentials(**role)
        control(url, "set_auto_approve", enabled=True)
        with pytest.raises(urllib.error.HTTPError) as ei:
            control(url, "inject", operation="NoSuchOp")
        assert ei.value.code == 400

        st = get_state(url)
        assert st["access_keys"] == [akid]
        assert st["counts"] == {"RegisterClient": 1, "StartDeviceAuthorization": 1,
                                "CreateToken": 2, "GetRoleCredentials": 3}
        assert st["authorizations_started"] == 1 and st["config"]["auto_approve"] is True
        assert st["clock_offset"] == 3600 and st["faults"] == {}
        assert [e["operation"] for e in st["log"]][-1] == "GetRoleCredentials"
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
    assert json.loads(state_file.read_text())["access_keys"] == [akid]


# --------------------------------------------------------------------------- botocore provider
def write_sso_profile(tmp_path, emu, monkeypatch, token, reg, expires_at):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSO", emu.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSO_OIDC", emu.url)
    (tmp_path / "config").write_text(
        "[profile p]\nsso_session = corp\nsso_account_id = 333333333333\n"
        "sso_role_name = BedrockUser\nregion = us-east-1\n\n[sso-session corp]\n"
        f"sso_start_url = {START_URL}\nsso_region = us-east-1\n"
        "sso_registration_scopes = sso:account:access\n")
    cache = tmp_path / ".aws" / "sso" / "cache" / (hashlib.sha1(b"corp").hexdigest() + ".json")
    cache.parent.mkdir(parents=True)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    cache.write_text(json.dumps({
        "startUrl": START_URL, "region": "us-east-1", "accessToken": token["accessToken"],
        "expiresAt": expires_at.strftime(iso), "refreshToken": token["refreshToken"],
        "clientId": reg["clientId"], "clientSecret": reg["clientSecret"],
        "registrationExpiresAt": datetime.fromtimestamp(
            reg["clientSecretExpiresAt"], UTC).strftime(iso)}))
    return cache


def botocore_credentials():
    """botocore fixes the token cache dir (~/.aws/sso/cache) at import: use a fresh process."""
    code = ("import boto3; c = boto3.Session(profile_name='p').get_credentials(); "
            "print(c.method, c.get_frozen_credentials().access_key)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.allow_leaks("the emulator check writes botocore's own SSO token cache, as the AWS CLI does")
def test_botocore_sso_credential_provider(emu, oidc, tmp_path, monkeypatch):
    reg, tok = device_login(emu, oidc)
    write_sso_profile(tmp_path, emu, monkeypatch, tok, reg, datetime.now(UTC) + timedelta(hours=1))
    assert botocore_credentials() == ["sso", emu.state()["access_keys"][-1]]
    assert emu.state()["issued_credentials"][-1]["roleName"] == "BedrockUser"


@pytest.mark.allow_leaks("the emulator check writes botocore's own SSO token cache, as the AWS CLI does")
def test_botocore_refreshes_and_stores_rotated_token(emu, oidc, tmp_path, monkeypatch):
    reg, tok = device_login(emu, oidc)
    emu.expire_access_tokens()
    cache = write_sso_profile(tmp_path, emu, monkeypatch, tok, reg,
                              datetime.now(UTC) - timedelta(minutes=1))
    assert botocore_credentials() == ["sso", emu.state()["access_keys"][-1]]
    stored = json.loads(cache.read_text())
    assert emu.state()["create_token_by_grant"]["refresh_token"] == 1
    assert stored["refreshToken"] != tok["refreshToken"]
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        refresh(oidc, reg, tok["refreshToken"])
    refresh(oidc, reg, stored["refreshToken"])
