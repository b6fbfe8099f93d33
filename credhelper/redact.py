"""Scrub text that may hold secrets before anyone sees it: a helper's stderr,
an upstream error message, an exception's text.

It recognises secrets by their shape, so it also masks secrets credhelper
never heard of (a `credential_process` helper printing its own password):

- values given explicitly (raw and URL-encoded),
- `key=value`, `key: value`, `"key": "value"`, `<Key>value</Key>` and
  `--key value` where the key names a secret (password, secret, token,
  credential, authorization…),
- bearer tokens, JWTs (`eyJ….….…`), AWS access key ids (`AKIA…`, `ASIA…`),
- any long run of key-like characters (40-character secret keys, session
  tokens; URL-encoded ones too).

The result is one line of at most `limit` characters. Stdlib only: the export
fast path may import it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
LIMIT = 200
#: input beyond this is dropped before scrubbing (the output is short anyway)
_MAX_INPUT = 8192

#: words that make a key name a secret (matched anywhere in the key, any case)
SECRET_WORDS = (
    "password", "passwd", "passphrase", "pwd", "secret", "token", "credential", "authorization",
    "apikey", "api_key", "api-key", "private_key", "privatekey", "signature", "cookie",
    "sessionid", "session_id",
)
#: a key name, whole: a lookbehind anchors it at its start and the possessive
#: `++` never backtracks into it, so a long run of word characters costs linear
#: time (a `[…]*(?:secret|…)[…]*` pattern would be quadratic there)
_NAME = r"(?<![A-Za-z0-9_.-])(?P<name>[A-Za-z0-9_.-]++)"
_VALUE = r"""(?:"(?:[^"\\]|\\.)*+"?|'(?:[^'\\]|\\.)*+'?|[^\s,;&"'<>(){}\[\]]++)"""

_PAIR = re.compile(rf"""(?P<key>["']?{_NAME}["']?)(?P<sep>\s*+[=:]\s*+)(?P<value>{_VALUE})""")
#: command-line options: `--password hunter2`, `-token abc`
_FLAG = re.compile(r"(?<![^\s\"'])(?P<flag>--?(?P<name>[A-Za-z0-9_.-]++))\s++(?P<value>[^\s\-(\[<]\S*+)")
_XML = re.compile(r"<(?P<name>[A-Za-z0-9_.-]++)>[^<]*+(?:</(?P=name)>)?")
_BEARER = re.compile(r"\b(?P<kind>bearer|basic)\s+(?P<value>[A-Za-z0-9._~+/=%-]{8,})", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?")
_AKID = re.compile(r"\b(?P<prefix>A(?:KIA|SIA|ROA|IDA|GPA|NPA|NVA|PKA|IPA|BIA|CCA))[A-Z0-9]{8,}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: long runs of base64/URL-safe characters or %XX escapes (secret keys, session tokens)
_LONG = re.compile(r"(?<![A-Za-z0-9/+=_-])(?:[A-Za-z0-9/+=_-]|%[0-9A-Fa-f]{2}){32,}+")


def _long(match: re.Match[str]) -> str:
    run = match.group(0)
    if _UUID.fullmatch(run):  # request ids: worth keeping, never secret
        return run
    kinds = sum(
        1 for test in (str.isupper, str.islower, str.isdigit) if any(test(c) for c in run)
    )
    # a long lower-case word or a file path is not a key: keys mix cases and digits
    path = "/" in run and not any(c.isupper() for c in run)
    return MASK if "%" in run or (kinds >= 2 and not path) else run


def _bearer(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.isalpha() and value.islower():  # "bearer authentication", a word
        return match.group(0)
    return f"{match.group('kind')} {MASK}"


def _secret_name(name: str) -> bool:
    name = name.lower()
    return any(word in name for word in SECRET_WORDS)


def _pair(match: re.Match[str]) -> str:
    value = match.group("value")
    if not _secret_name(match.group("name")) or value.startswith(MASK) or not value:
        return match.group(0)
    return match.group("key") + match.group("sep") + MASK


def variants(secret: str) -> set[str]:
    """The forms a secret value takes in text: as is, URL-encoded, JSON-escaped."""
    return {secret, quote(secret, safe="", errors="surrogatepass"),
            quote_plus(secret, safe="", errors="surrogatepass"), secret.replace("/", "\\/")}


def scrub(text: str, secrets: Iterable[str] = (), limit: int = LIMIT) -> str:
    """`text` on one line, at most `limit` characters, with every secret masked."""
    if len(text) > _MAX_INPUT:
        # drop the word cut in half too: a piece of a secret would not match below
        text = re.sub(r"\S*$", "", text[:_MAX_INPUT])
    for secret in sorted({v for s in secrets if s for v in variants(s)}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = " ".join(text.split())
    text = _XML.sub(lambda m: f"<{m['name']}>{MASK}" if _secret_name(m["name"]) else m[0], text)
    text = _BEARER.sub(_bearer, text)
    text = _JWT.sub(MASK, text)
    text = _PAIR.sub(_pair, text)
    text = _FLAG.sub(lambda m: f"{m['flag']} {MASK}" if _secret_name(m["name"]) else m[0], text)
    text = _AKID.sub(lambda m: m.group("prefix") + MASK, text)
    text = _LONG.sub(_long, text)
    if len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + "…"
    return text
