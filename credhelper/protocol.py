"""The daemon's wire format, version 1 (docs/protocol.md). Stdlib only: the
export fast path imports it, so requests are encoded without `json`.

One request per connection:
    request:   one line of JSON, at most MAX_REQUEST bytes, ending in "\\n"
               {"v":1,"op":"export","profile":"dev","format":"claude","env":{...}}
    response:  a header line, then exactly <length> bytes of body
               CREDHELPER/1 <kind> <code> <length>\\n<body>
kinds: ok (body: the output, exactly as `export` prints it), error (code: the
exit code; body: one line), wait (the daemon is minting; code: seconds to wait
for the final header, which follows), fallback (the daemon sees another
configuration than the client: use the direct path).
"""

from __future__ import annotations

VERSION = 1
MAGIC = b"CREDHELPER/1"
MAX_REQUEST = 64 * 1024
MAX_HEADER = 64
#: bounds of a response header's numbers: anything larger is garbage
MAX_BODY = 16 * 1024 * 1024
MAX_WAIT = 86400
MAX_EXIT_CODE = 255
KINDS = ("ok", "error", "wait", "fallback")
#: environment a client sends, so the daemon can tell it sees the same files
CLIENT_ENV = (
    "HOME", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "CREDHELPER_CONFIG", "XDG_CONFIG_HOME",
)


class ProtocolError(Exception):
    pass


def _jstr(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch < " " or "\ud800" <= ch <= "\udfff":
            # controls, and surrogates (undecodable bytes of os.environ), as JSON escapes
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def encode_request(op: str, fields: dict[str, str], env: dict[str, str] | None = None) -> bytes:
    """A request line; values are strings (and `env` a string map)."""
    parts = [f'"v":{VERSION}', f'"op":{_jstr(op)}']
    parts += [f"{_jstr(k)}:{_jstr(v)}" for k, v in fields.items()]
    if env is not None:
        parts.append('"env":{' + ",".join(f"{_jstr(k)}:{_jstr(v)}" for k, v in env.items()) + "}")
    return ("{" + ",".join(parts) + "}\n").encode("utf-8")


def header(kind: str, code: int = 0, length: int = 0) -> bytes:
    return b"%s %s %d %d\n" % (MAGIC, kind.encode(), code, length)


def response(kind: str, code: int = 0, body: str = "") -> bytes:
    data = body.encode("utf-8")
    return header(kind, code, len(data)) + data


def parse_header(line: bytes) -> tuple[str, int, int]:
    parts = line.rstrip(b"\n").split(b" ")
    if len(parts) != 4 or parts[0] != MAGIC:
        raise ProtocolError("not a credhelper/1 header")
    kind = parts[1].decode("ascii", "replace")
    if kind not in KINDS or not _small_digits(parts[2]) or not _small_digits(parts[3]):
        raise ProtocolError("malformed header")
    code, length = int(parts[2]), int(parts[3])
    if length > MAX_BODY or code > (MAX_WAIT if kind == "wait" else MAX_EXIT_CODE):
        raise ProtocolError("header numbers out of range")
    return kind, code, length


def _small_digits(field: bytes) -> bool:
    """ASCII digits only (bytes.isdigit is ASCII-only), at most 9 of them."""
    return 0 < len(field) <= 9 and field.isdigit()


def decode_request(line: bytes) -> dict[str, object]:
    """Daemon side: the request as a dict, or ProtocolError saying what is wrong."""
    import json

    try:
        req = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: [[[[…
        raise ProtocolError("request is not one line of UTF-8 JSON") from None
    if not isinstance(req, dict):
        raise ProtocolError("request is not a JSON object")
    if type(req.get("v")) is not int or req.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {req.get('v')!r}; this daemon speaks {VERSION}")
    if not isinstance(req.get("op"), str):
        raise ProtocolError("request has no op")
    env = req.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ProtocolError("env must be an object of strings")
    return req
