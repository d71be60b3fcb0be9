"""The errors of calls to the Yi API (or any OpenAI-compatible API): one type per way a
call fails, each with the sentence the page shows, and the provider's own explanation with
anything key-like masked. Made from HTTP answers by `error_from_response`; raised by the
client (chat/upstream.py) and the stream decoder (chat/upstream_events.py).
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from chat.upstream import Credential



class UpstreamError(Exception):
    """A failure talking to the upstream API, with a sentence for the person."""

    code = "upstream"
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, detail: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class BadRequestError(UpstreamError):
    code = "bad_request"


class ContextLengthError(BadRequestError):
    code = "context_length"


class AuthError(UpstreamError):
    code = "auth"


class NotFoundError(UpstreamError):
    code = "not_found"


class NotAModelListError(NotFoundError):
    """`GET /models` answered 200 with something that is not an OpenAI-compatible model
    list (a web page, a login form, another API): the base URL is wrong."""

    code = "not_a_model_list"


class RateLimitError(UpstreamError):
    code = "rate_limited"
    retryable = True


class ServerError(UpstreamError):
    code = "server_error"
    retryable = True


class OverloadedError(UpstreamError):
    code = "overloaded"
    retryable = True


class ConnectionFailedError(UpstreamError):
    code = "connection"
    retryable = True


class TimeoutError_(UpstreamError):
    code = "timeout"
    retryable = True


class StreamCutError(UpstreamError):
    code = "stream_cut"
    SENTENCE = "The connection to the model's API closed mid-answer. The text so far is kept; try again."


class StalledError(UpstreamError):
    code = "stalled"


# What a key looks like when an upstream (or a proxy in front of it) echoes a request back
# in its error: an Authorization header, a bearer token, an `sk-` key, or any long unbroken
# run of key characters. Masked before the text is shown, stored or logged.
_SECRET_PATTERNS = re.compile(
    r"(?i)(authorization\s*[:=]\s*)?\bbearer\s+[\w.~+/=-]+"
    r"|(?i:authorization)\s*[:=]\s*\S+"
    r"|\bsk-[\w-]{6,}"
    r"|(?<![\w-])[A-Za-z0-9_\-]{32,}(?![\w-])"
)
SECRET_MASK = "[hidden]"


def secret_mask(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """`text` quoted from upstream with every key-like string (and each of `secrets`) masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, SECRET_MASK)
    return _SECRET_PATTERNS.sub(SECRET_MASK, text)


def _detail(response_body: bytes, *, api_key: str = "") -> str:
    """The upstream's own explanation, if its error body has one (the reference gives no
    shape), with anything key-like masked."""
    text = response_body[:20_000].decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            text = str(error.get("message") or error.get("msg") or error.get("detail") or "")
        elif isinstance(error, str):
            text = error
    # Masked before it is cut: a key cut in half would not match.
    return secret_mask(" ".join(text.split()), secrets=(api_key,))[:300]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(value)
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


# How OpenAI-compatible servers word "input + max_tokens exceed the context window"
# (the reference gives no body); a plain "max_tokens must be positive" is a format error.
_CONTEXT_WORDS = ("context", "too long", "exceed", "must be <=", "maximum length", "max_new_tokens")


def error_from_response(
    status: int, body: bytes, headers: httpx.Headers, *, credential: Credential, model: str = ""
) -> UpstreamError:
    """Map an HTTP error answer to the typed error and the sentence the page shows, which
    names the provider and the key by its label (never the key)."""
    detail = _detail(body, api_key=credential.api_key)
    provider = credential.provider
    retry_after = _retry_after(headers.get("retry-after"))
    said = f" The API said: “{detail}”" if detail else ""
    kwargs = {"status": status, "detail": detail, "retry_after": retry_after}
    if status == 400:
        if any(word in detail.lower() for word in _CONTEXT_WORDS):
            return ContextLengthError(
                "This conversation is too long for the model's context window (400). Start a new "
                "conversation, shorten your message, or lower max_tokens." + said,
                **kwargs,
            )
        return BadRequestError(
            f"{provider} rejected the request as malformed (400). Check the model name (all lowercase, "
            "for example yi-large) and the parameters." + said,
            **kwargs,
        )
    if status in (401, 403):
        return AuthError(
            f"{provider} rejected {credential.key_named} ({status}): it is missing, wrong or disabled. "
            + credential.key_advice,
            **kwargs,
        )
    if status == 404:
        return NotFoundError(
            f"{provider} does not know the model “{model}” or the endpoint (404). Pick another model, "
            + credential.base_url_advice,
            **kwargs,
        )
    if status == 429:
        return RateLimitError(
            f"{provider} is rate-limiting {credential.key_named} (429): too many requests or tokens per "
            "minute. Wait a minute and try again, or move to a higher usage tier.",
            **kwargs,
        )
    if status == 529:
        return OverloadedError(
            f"{provider} is overloaded right now (529: system busy). Try again in a moment.", **kwargs
        )
    if status >= 500:
        return ServerError(
            f"{provider} had an internal error ({status}). Try again in a moment; if it keeps "
            "happening, the service may be down.",
            **kwargs,
        )
    return UpstreamError(f"{provider} refused the request ({status}).{said}", **kwargs)
