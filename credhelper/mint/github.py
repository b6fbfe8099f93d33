"""GitHub Actions OIDC: ask the runner's token endpoint for an ID token.

`GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with
`Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN` answers
`{"value": "<JWT>"}`. The URL exists only when the job has
`permissions: id-token: write`. Both the request token and the ID token are
secrets: neither appears in an error message.
"""

from __future__ import annotations

import functools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from credhelper.deadline import Deadline, DeadlineExceeded
from credhelper.errors import ConfigError, UpstreamError
from credhelper.sources.base import scrub

URL_VAR = "ACTIONS_ID_TOKEN_REQUEST_URL"
TOKEN_VAR = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 - a variable name
DEFAULT_AUDIENCE = "sts.amazonaws.com"
ATTEMPTS = 3
_MAX_BODY = 64 * 1024
PERMISSION_FIX = "give the job `permissions: id-token: write`"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class _Retry(Exception):
    """A failure worth another attempt (5xx, 429, connection trouble)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would send the Authorization header on to wherever a redirect points."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def request_url(base: str, audience: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}{urlencode({'audience': audience})}"


def _once(url: str, request_token: str, timeout: float) -> str:
    req = urllib.request.Request(url, headers={  # noqa: S310 - the runner's https URL
        "Authorization": f"bearer {request_token}",
        "Accept": "application/json; api-version=2.0",
        "User-Agent": "credhelper",
    })
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            body = resp.read(_MAX_BODY)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Retry(f"HTTP {exc.code}") from None
        raise UpstreamError(
            f"the GitHub ID token endpoint refused the request (HTTP {exc.code}): "
            f"{PERMISSION_FIX} and run mint in the same job that was granted it"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retry(scrub(str(reason), (request_token,))) from None
    try:
        value = json.loads(body).get("value")
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value.strip():
        raise UpstreamError(
            "the GitHub ID token endpoint answered without a token (no \"value\"): rerun the job"
        )
    return value.strip()


def fetch_id_token(
    base_url: str, request_token: str, audience: str, deadline: Deadline,
    *, sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The ID token for `audience`; retries 5xx/429/network failures with
    backoff, all within `deadline`."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    # the request token is a secret: only https, or plain http on this machine (tests, proxies)
    if not (parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK)) or not host:
        raise ConfigError(
            f"{URL_VAR} is not an https URL (scheme {parts.scheme or 'none'!r}): "
            "leave it as the runner sets it"
        )
    url = request_url(base_url, audience)
    delay, last = 0.5, ""
    for attempt in range(ATTEMPTS):
        try:
            timeout = deadline.sub(0.9, 15)
            return deadline.call(
                "the GitHub ID token request", functools.partial(_once, url, request_token, timeout)
            )
        except _Retry as exc:
            last = str(exc)
        except DeadlineExceeded:
            last = f"no answer within the {deadline.budget:.0f} s budget"
            break
        if attempt + 1 < ATTEMPTS and deadline.remaining() > delay:
            sleep(delay)
            delay *= 2
    raise UpstreamError(
        f"the GitHub ID token endpoint ({host}) failed after retries: {last}: "
        "GitHub may be having trouble; rerun the job"
    )
