"""The errors of calls to the Yi API (or any OpenAI-compatible API): one type per way a
call fails, each with the sentence the page shows (by code, said in the reader's language:
chat/sentences.py), and the provider's own explanation with anything key-like masked.
Made from HTTP answers by `error_from_response`; raised by the client (chat/upstream.py)
and the stream decoder (chat/upstream_events.py).
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from typing import TYPE_CHECKING

from chat.sentences import Sentence, said, sentence

if TYPE_CHECKING:
    import httpx

    from chat.upstream import Credential



class UpstreamError(Exception):
    """A failure talking to the upstream API, with a sentence for the person: `sentence`
    as stored with the answer, `message` the same in English (for logs), and, for one
    worth trying again, `retry_reason`: what went wrong, without the advice for giving up
    (the `retrying` frame's `reason`)."""

    code = "upstream"
    retryable = False

    def __init__(self, stored: Sentence, *, status: int | None = None, detail: str = "",
                 retry_after: float | None = None, retry_reason: Sentence | None = None):
        self.sentence = stored
        self.retry_reason = retry_reason or stored
        self.message = said(stored, "en")
        super().__init__(self.message)
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

    def __init__(self):
        super().__init__(sentence("stream_cut"))


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
    kwargs = {"status": status, "detail": detail, "retry_after": _retry_after(headers.get("retry-after"))}
    if status == 400:
        if any(word in detail.lower() for word in _CONTEXT_WORDS):
            return ContextLengthError(sentence("context_length_said", detail=detail), **kwargs)
        if detail:
            return BadRequestError(sentence("bad_request_said", provider=provider, detail=detail), **kwargs)
        return BadRequestError(sentence("bad_request", provider=provider), **kwargs)
    if status in (401, 403):
        return AuthError(sentence("auth", provider=provider, key=credential.key_named, status=status,
                                  advice=credential.key_advice), **kwargs)
    if status == 404:
        return NotFoundError(sentence("not_found", provider=provider, model=model, advice=credential.base_url_advice),
                             **kwargs)
    if status == 429:
        final = "rate_limited_untiered" if credential.untiered else "rate_limited"
        return RateLimitError(sentence(final, provider=provider, key=credential.key_named), **kwargs,
                              retry_reason=sentence("retry_rate_limited", provider=provider, key=credential.key_named))
    if status == 529:
        return OverloadedError(sentence("overloaded", provider=provider), **kwargs,
                               retry_reason=sentence("retry_overloaded", provider=provider))
    if status >= 500:
        return ServerError(sentence("server_error", provider=provider, status=status), **kwargs,
                           retry_reason=sentence("retry_server_error", provider=provider, status=status))
    if detail:
        return UpstreamError(sentence("refused_said", provider=provider, status=status, detail=detail), **kwargs)
    return UpstreamError(sentence("refused", provider=provider, status=status), **kwargs)
