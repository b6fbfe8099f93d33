"""A fake Amazon Bedrock runtime for the real Claude Code (standard library only).

`POST /model/{id}/invoke-with-response-stream` is answered with AWS event-stream
framing (prelude and message CRC32s) whose `chunk` events carry base64 Anthropic
Messages streaming events; `POST /model/{id}/invoke` with a Messages JSON body;
`POST /model/{id}/count-tokens` with `{"inputTokens": N}`; anything else 404.

Every request's SigV4 signature is verified when it arrives, against the
credentials the credential helper printed (`CredentialBook`: each helper run's
stdout file, plus any JSON files a test drops in an extra directory). A request
whose AccessKeyId no helper printed, whose `x-amz-security-token` differs from
that output's SessionToken, or whose signature does not verify is answered 403
as Bedrock would. Every request is logged as one JSON line, with the outcome.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CRED_KEYS = ("AccessKeyId", "SecretAccessKey", "SessionToken")


# ------------------------------------------------------------------ credentials


def parse_like_claude(text: str) -> dict[str, str] | None:
    """Claude Code's reading of awsCredentialExport stdout: JSON.parse(trimmed),
    then `.Credentials` or the object itself, each of AccessKeyId,
    SecretAccessKey and SessionToken a non-empty string."""
    try:
        obj = json.loads(text.strip())
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    for cand in (obj.get("Credentials"), obj):
        if isinstance(cand, dict) and all(isinstance(cand.get(k), str) and cand[k] for k in CRED_KEYS):
            return {k: cand[k] for k in CRED_KEYS}
    return None


class CredentialBook:
    """AccessKeyId -> credentials, read afresh from files matching `patterns`."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = list(patterns)

    def lookup(self, akid: str) -> dict[str, str] | None:
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern)):
                try:
                    with open(path, errors="replace") as f:
                        creds = parse_like_claude(f.read())
                except OSError:
                    continue
                if creds and creds["AccessKeyId"] == akid:
                    return creds
        return None


# ------------------------------------------------------------------ SigV4


@dataclass(frozen=True)
class Authorization:
    akid: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization | None:
    prefix = "AWS4-HMAC-SHA256 "
    if not value.startswith(prefix):
        return None
    try:
        parts = dict(p.strip().split("=", 1) for p in value[len(prefix):].split(","))
        akid, date, region, service, terminator = parts["Credential"].split("/")
        if terminator != "aws4_request":
            return None
        return Authorization(akid, date, region, service,
                             tuple(parts["SignedHeaders"].split(";")), parts["Signature"])
    except (KeyError, ValueError):
        return None


def _quote(text: str, keep_slash: bool) -> str:
    return urllib.parse.quote(text, safe="-_.~" + ("/" if keep_slash else ""))


def expected_signature(method: str, raw_path: str, headers: Mapping[str, str], body: bytes,
                       auth: Authorization, secret: str) -> str:
    """The SigV4 signature of this request (AWS SDKs encode the path once more
    for every service but S3, so the path as received is quoted again)."""
    path, _, query = raw_path.partition("?")
    pairs = sorted(urllib.parse.parse_qsl(query, keep_blank_values=True))
    canonical_query = "&".join(f"{_quote(k, False)}={_quote(v, False)}" for k, v in pairs)
    canonical_headers = "".join(
        f"{name}:{' '.join((headers.get(name) or '').split())}\n" for name in auth.signed_headers
    )
    payload = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    creq = "\n".join([method, _quote(path, True), canonical_query, canonical_headers,
                      ";".join(auth.signed_headers), payload])
    scope = f"{auth.date}/{auth.region}/{auth.service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", headers.get("x-amz-date", ""), scope,
                         hashlib.sha256(creq.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (auth.date, auth.region, auth.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def verify(method: str, raw_path: str, headers: Mapping[str, str], body: bytes,
           book: CredentialBook) -> dict[str, Any]:
    """{"credential", "sigv4": ok|mismatch|unknown-akid|no-sigv4, "token": match|mismatch|-}.

    `headers` has lower-case names. The body hash must match a signed
    x-amz-content-sha256 too, else the signature covers some other body."""
    auth = parse_authorization(headers.get("authorization") or "")
    if auth is None:
        return {"credential": None, "sigv4": "no-sigv4", "token": "-"}
    creds = book.lookup(auth.akid)
    if creds is None:
        return {"credential": auth.akid, "sigv4": "unknown-akid", "token": "-"}
    declared = headers.get("x-amz-content-sha256")
    body_ok = declared in (None, "UNSIGNED-PAYLOAD") or declared == hashlib.sha256(body).hexdigest()
    want = expected_signature(method, raw_path, headers, body, auth, creds["SecretAccessKey"])
    sig_ok = body_ok and hmac.compare_digest(want, auth.signature) and "x-amz-date" in auth.signed_headers
    token = headers.get("x-amz-security-token")
    token_ok = token == creds["SessionToken"] and "x-amz-security-token" in auth.signed_headers
    return {"credential": auth.akid, "sigv4": "ok" if sig_ok else "mismatch",
            "token": "match" if token_ok else "mismatch"}


# ------------------------------------------------------------------ event stream


def event_stream_message(headers: Iterable[tuple[str, str]], payload: bytes) -> bytes:
    """One application/vnd.amazon.eventstream message; every header a string (type 7)."""
    encoded = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        encoded += bytes([len(n)]) + n + b"\x07" + len(v).to_bytes(2, "big") + v
    total = 4 + 4 + 4 + len(encoded) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    message = prelude + zlib.crc32(prelude).to_bytes(4, "big") + encoded + payload
    return message + zlib.crc32(message).to_bytes(4, "big")


def chunk(event: Mapping[str, Any]) -> bytes:
    data = base64.b64encode(json.dumps(event, separators=(",", ":")).encode()).decode()
    return event_stream_message(
        [(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")],
        json.dumps({"bytes": data}).encode(),
    )


def _start(model: str, msg_id: str) -> dict[str, Any]:
    return {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}}


def _end(stop_reason: str) -> Iterator[dict[str, Any]]:
    yield {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
           "usage": {"output_tokens": 5}}
    yield {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": 10, "outputTokenCount": 5, "invocationLatency": 1, "firstByteLatency": 1}}


def text_events(model: str, text: str) -> Iterator[dict[str, Any]]:
    yield _start(model, "msg_fake_bedrock_text")
    yield {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    yield {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    yield {"type": "content_block_stop", "index": 0}
    yield from _end("end_turn")


def bash_events(model: str, command: str) -> Iterator[dict[str, Any]]:
    yield _start(model, "msg_fake_bedrock_tool")
    yield {"type": "content_block_start", "index": 0, "content_block": {
        "type": "tool_use", "id": "toolu_fake_bedrock_1", "name": "Bash", "input": {}}}
    yield {"type": "content_block_delta", "index": 0, "delta": {
        "type": "input_json_delta", "partial_json": json.dumps({"command": command, "description": "wait"})}}
    yield {"type": "content_block_stop", "index": 0}
    yield from _end("tool_use")


# ------------------------------------------------------------------ server


@dataclass
class Behaviour:
    log: str  # JSONL file, one line per request
    book: CredentialBook
    text: str = "Hello from fake Bedrock"
    fail_first: int = 0  # streaming calls answered 403 ExpiredTokenException first
    tool_sleep: int = 0  # first streaming turn asks the Bash tool to wait this long


class FakeBedrock(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, behaviour: Behaviour, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.behaviour = behaviour
        self.lock = threading.Lock()
        self.streaming_calls = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="fake-bedrock", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeBedrock

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if n := int(self.headers.get("content-length") or 0):
            return self.rfile.read(n)
        if (self.headers.get("transfer-encoding") or "").lower() != "chunked":
            return b""
        out = b""
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            out += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return out

    def _reply(self, code: int, ctype: str, payload: bytes, record: dict[str, Any],
               headers: Iterable[tuple[str, str]] = ()) -> None:
        record["answer"] = code
        with self.server.lock, open(self.server.behaviour.log, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-amzn-requestid", "fake-bedrock-request")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, code: int, kind: str, message: str, record: dict[str, Any]) -> None:
        self._reply(code, "application/json", json.dumps({"message": message}).encode(), record,
                    [("x-amzn-errortype", f"{kind}:http://internal.amazon.com/coral/com.amazon.coral.service/")])

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        self._handle(self._body())

    def _handle(self, body: bytes) -> None:
        b = self.server.behaviour
        headers = {k.lower(): v for k, v in self.headers.items()}
        rec: dict[str, Any] = {
            "t": time.time(), "method": self.command, "path": self.path,
            "authorization": headers.get("authorization"),
            "x-amz-security-token": headers.get("x-amz-security-token"),
            "x-amz-date": headers.get("x-amz-date"),
            "x-amz-content-sha256": headers.get("x-amz-content-sha256"),
            "user-agent": headers.get("user-agent"),
            "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest(), "headers": headers,
        }
        rec.update(verify(self.command, self.path, headers, body, b.book))
        segs = urllib.parse.urlsplit(self.path).path.split("/")
        op = segs[-1] if self.command == "POST" and len(segs) == 4 and segs[1] == "model" else None
        rec["op"] = op
        if op not in ("invoke", "invoke-with-response-stream", "count-tokens"):
            return self._error(404, "UnknownOperationException", "fake bedrock: unknown operation", rec)
        if op == "invoke-with-response-stream":
            with self.server.lock:
                self.server.streaming_calls += 1
                rec["streaming_call"] = self.server.streaming_calls
            if rec["streaming_call"] <= b.fail_first:
                return self._error(403, "ExpiredTokenException",
                                   "The security token included in the request is expired", rec)
        if rec["sigv4"] != "ok" or rec["token"] != "match":
            return self._error(403, "InvalidSignatureException",
                               f"fake bedrock: sigv4={rec['sigv4']} token={rec['token']}", rec)
        model = urllib.parse.unquote(segs[2])
        if op == "count-tokens":
            return self._reply(200, "application/json", b'{"inputTokens":10}', rec)
        if op == "invoke":
            msg = {"id": "msg_fake_bedrock_text", "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": b.text}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5}}
            return self._reply(200, "application/json", json.dumps(msg).encode(), rec)
        if b.tool_sleep and b"tool_result" not in body:
            # newer Bash tools refuse a plain `sleep N`: wait another way
            events = bash_events(model, f"timeout {b.tool_sleep} tail -f /dev/null; echo waited")
        else:
            rec["tool_result"] = b"tool_result" in body
            events = text_events(model, b.text)
        return self._reply(200, "application/vnd.amazon.eventstream", b"".join(chunk(e) for e in events),
                           rec, [("x-amzn-bedrock-content-type", "application/json")])


def serve(behaviour: Behaviour) -> FakeBedrock:
    """Started on a free 127.0.0.1 port; `.shutdown()` stops it."""
    os.makedirs(os.path.dirname(os.path.abspath(behaviour.log)), exist_ok=True)
    open(behaviour.log, "a").close()
    server = FakeBedrock(behaviour)
    server.start()
    return server
