"""Sentences the server stores to be read later, in whatever language the reader's page
speaks: the notes on an answer (which model answered and why, what was left out to fit
the window) and the error an answer ended with.

Each is stored as a code and the params its sentence holds, `{"code": ..., "params":
{...}}`, never as text, and said in the reader's language only where it leaves the server
(`message_said`: the page's history, each socket's frames, an export). One answer is read
by tabs and exports in different languages, long after it was stored, and its frames are
built once for every tab watching (in a generation task, a batch), where no reader's
language is known. A param may itself be such a sentence (a key's name, a piece of
advice), said first; the upstream's own words (`detail`) stay as the upstream wrote them.

Notes stored before notes had codes are English text: migration 0014 gave the ones the
app wrote codes (`note_parsed`); any other text is shown as it is.
"""

from __future__ import annotations

import re
from typing import Any

from django.utils import translation
from django.utils.translation import gettext_noop, ngettext_lazy

Sentence = dict[str, Any]

_WINDOW = {
    "window_k": gettext_noop("%(k)sK"),
    "window_tokens": gettext_noop("%(tokens)s-token"),
}

# The notes on answers (chat/exchanges.py, chat/requests.py). An export carries them by
# code, and an import keeps only these, with params of their shapes (`note_checked`).
NOTES = {
    "vision_answered": gettext_noop("%(model)s does not take images, so %(vision)s answered."),
    "tools_not_offered": gettext_noop(
        "%(model)s does not call tools, so none were offered. Pick yi-large-fc to use them."),
    "images_left_out": ngettext_lazy(
        "%(count)s earlier image was not sent: this conversation is over %(model)s's %(window)s window.",
        "%(count)s earlier images were not sent: this conversation is over %(model)s's %(window)s window.",
        "count"),
    "messages_left_out": ngettext_lazy(
        "%(count)s earlier message was not sent: this conversation is over %(model)s's %(window)s window.",
        "%(count)s earlier messages were not sent: this conversation is over %(model)s's %(window)s window.",
        "count"),
}

# Who a failed request went to, and what to do about it: the pieces of `ERRORS`' sentences.
_PIECES = {
    "provider_yi": gettext_noop("The Yi API"),
    "provider_at": gettext_noop("The API at %(host)s"),
    "provider_yi_at": gettext_noop("The Yi API at %(host)s"),
    "provider_yi_at_inline": gettext_noop("the Yi API at %(host)s"),
    "provider_at_inline": gettext_noop("the API at %(host)s"),
    "key_own": gettext_noop("the key “%(label)s”"),
    "key_server": gettext_noop("the server's API key"),
    "key_advice_own": gettext_noop("Check it on the Keys page, or pick another key for this conversation."),
    "key_advice_server": gettext_noop(
        "Add a key of your own on the Keys page, or ask the administrator to check the server's key."),
    "base_url_advice_own": gettext_noop(
        "or check on the Keys page that the base URL of the key “%(label)s” ends in /v1."),
    "base_url_advice_server": gettext_noop(
        "or ask the administrator to check that the server's base URL ends in /v1."),
    "base_url_check_own": gettext_noop("Check on the Keys page that the base URL of the key “%(label)s” ends in /v1."),
    "base_url_check_server": gettext_noop("Ask the administrator to check that the server's base URL ends in /v1."),
}

# The errors an answer ends with (`Message.error_sentence`; `error_code` says which kind).
ERRORS = {
    "context_length_said": gettext_noop(
        "This conversation is too long for the model's context window (400). Start a new conversation, "
        "shorten your message, or lower max_tokens. The API said: “%(detail)s”"),
    "bad_request": gettext_noop(
        "%(provider)s rejected the request as malformed (400). Check the model name (all lowercase, "
        "for example yi-large) and the parameters."),
    "bad_request_said": gettext_noop(
        "%(provider)s rejected the request as malformed (400). Check the model name (all lowercase, "
        "for example yi-large) and the parameters. The API said: “%(detail)s”"),
    "auth": gettext_noop("%(provider)s rejected %(key)s (%(status)s): it is missing, wrong or disabled. %(advice)s"),
    "not_found": gettext_noop(
        "%(provider)s does not know the model “%(model)s” or the endpoint (404). Pick another model, %(advice)s"),
    "not_a_model_list": gettext_noop(
        "%(provider)s answered, but not with an OpenAI-compatible list of models. %(advice)s"),
    "rate_limited": gettext_noop(
        "%(provider)s is rate-limiting %(key)s (429): too many requests or tokens per minute. Wait a minute "
        "and try again, or move to a higher usage tier."),
    "overloaded": gettext_noop("%(provider)s is overloaded right now (529: system busy). Try again in a moment."),
    "server_error": gettext_noop(
        "%(provider)s had an internal error (%(status)s). Try again in a moment; if it keeps happening, "
        "the service may be down."),
    "refused": gettext_noop("%(provider)s refused the request (%(status)s)."),
    "refused_said": gettext_noop("%(provider)s refused the request (%(status)s). The API said: “%(detail)s”"),
    "stream_cut": gettext_noop(
        "The connection to the model's API closed mid-answer. The text so far is kept; try again."),
    "stalled": gettext_noop(
        "%(provider)s sent nothing for %(seconds)s seconds, so the answer was given up. The text so far is kept."),
    "timeout": gettext_noop(
        "%(provider)s did not answer in time. Check your network and the key's base URL, and try again."),
    "connection": gettext_noop(
        "Could not connect to %(provider)s (%(reason)s). Check your network and the key's base URL, then try again."),
    "not_a_completion": gettext_noop(
        "The API answered, but not with a chat completion. The answer could not be read."),
    "image_unreadable": gettext_noop(
        "An image of this conversation could not be read from the server's storage, so nothing was sent. "
        "Start a new conversation and attach it again."),
    "internal": gettext_noop("Something went wrong on the server while answering. The text so far is kept."),
    "tools_internal": gettext_noop("Something went wrong on the server while running tools."),
    "stopped_serving": gettext_noop("The server stopped while answering."),
    "restarted": gettext_noop("The server restarted while answering; the text up to that moment is kept."),
    "not_saved": gettext_noop(
        "The server could not save this answer yet: the database refused the write. It keeps trying for a "
        "few minutes, and this note goes away once the answer is saved."),
    "imported_error": gettext_noop(
        "This answer ended with an error (%(code)s) in the conversation this was imported from."),
    # A tier above is no cure for a key whose tier is the no-limit one: the 429 came from
    # the person's own server or a proxy in front of it.
    "rate_limited_untiered": gettext_noop(
        "%(provider)s is rate-limiting %(key)s (429): too many requests or tokens per minute. Wait a minute "
        "and try again."),
    "connection_refused": gettext_noop(
        "%(provider)s refused the connection. Check the key's base URL and that the service is running, "
        "then try again."),
    "host_unknown": gettext_noop(
        "Could not find %(provider)s: the name does not resolve. Check your network and the key's base URL, "
        "then try again."),
    "connection_failed": gettext_noop(
        "Could not connect to %(provider)s. Check your network and the key's base URL, then try again."),
}

# Why a request is being tried again (a `retrying` frame's `reason`): what went wrong and
# nothing else, since the server is the one trying again; the page adds when. The advice
# for giving up is the error's own sentence, shown only if the retries run out.
RETRY_REASONS = {
    "retry_rate_limited": gettext_noop("%(provider)s is rate-limiting %(key)s (429)"),
    "retry_overloaded": gettext_noop("%(provider)s is overloaded (529)"),
    "retry_server_error": gettext_noop("%(provider)s had an internal error (%(status)s)"),
    "retry_timeout": gettext_noop("%(provider)s did not answer in time"),
    "retry_refused": gettext_noop("%(provider)s refused the connection"),
    "retry_host_unknown": gettext_noop("Could not find %(provider)s"),
    "retry_connection": gettext_noop("Could not reach %(provider)s"),
}

SENTENCES = {**_WINDOW, **NOTES, **_PIECES, **ERRORS, **RETRY_REASONS}


def sentence(code: str, /, **params: Any) -> Sentence:
    """The stored form of the sentence `code` with `params` (each a value or a sentence)."""
    assert code in SENTENCES, code
    return {"code": code, "params": params}


def said(stored: Sentence | str, language: str | None = None) -> str:
    """`stored` in `language` (None: the active one, a request's); text stored before
    sentences had codes as it is, and a code this server does not know as nothing."""
    if isinstance(stored, str):
        return stored
    if language is not None:
        with translation.override(language):
            return said(stored)
    template = SENTENCES.get(stored.get("code")) if isinstance(stored, dict) else None
    if template is None:
        return ""
    params = {name: said(value) if isinstance(value, dict) else value
              for name, value in (stored.get("params") or {}).items()}
    if isinstance(template, str):
        return translation.gettext(template) % params if params else translation.gettext(template)
    return template % params  # a plural: ngettext_lazy picks the form by `count`, in the active language


def error_fields(stored: Sentence) -> dict[str, Any]:
    """The fields of a `Message` that store an error's sentence."""
    return {"error_sentence": stored, "error_message": said(stored, "en")}


def message_said(message: dict[str, Any], language: str | None = None) -> dict[str, Any]:
    """A `message_to_dict` as its reader gets it: its notes and its error's sentence in
    `language` (None: the active one). A copy: broadcast frames are shared by tabs."""
    out = {**message, "notes": [text for text in (said(note, language) for note in message.get("notes") or []) if text]}
    error = out.pop("error_sentence", None)
    if error:
        out["error_message"] = said(error, language) or out.get("error_message", "")
    return out


_FRAMES_WITH_MESSAGES = {"message", "done"}


def frame_said(frame: dict[str, Any], language: str) -> dict[str, Any]:
    """A frame for a socket whose page speaks `language`: the messages it carries said in it."""
    kind = frame.get("type")
    if kind in _FRAMES_WITH_MESSAGES and isinstance(frame.get("message"), dict):
        return {**frame, "message": message_said(frame["message"], language)}
    if kind == "thread":
        return {**frame, "messages": [message_said(m, language) for m in frame["messages"]]}
    if kind == "retrying" and isinstance(frame.get("reason"), dict):
        return {**frame, "reason": said(frame["reason"], language)}
    return frame


# --- notes written before they had codes, and notes an import brings -------------------

_MODEL = r"[\w.:/-]{1,100}"
_MODEL_NAME = re.compile(_MODEL)
_OVER = (rf"this conversation is over (?P<model>{_MODEL})'s "
         rf"(?:(?P<k>\d{{1,7}})K|(?P<tokens>[\d,]{{1,12}})-token) window\.")
_NOTE_TEXTS = [
    ("vision_answered", re.compile(rf"(?P<model>{_MODEL}) does not take images, so (?P<vision>{_MODEL}) answered\.")),
    ("tools_not_offered", re.compile(
        rf"(?P<model>{_MODEL}) does not call tools, so none were offered\. Pick yi-large-fc to use them\.")),
    ("images_left_out", re.compile(rf"(?P<count>\d{{1,6}}) earlier images? (?:was|were) not sent: {_OVER}")),
    ("messages_left_out", re.compile(rf"(?P<count>\d{{1,6}}) earlier messages? (?:was|were) not sent: {_OVER}")),
]


def window_sentence(window: int) -> Sentence:
    """A context window as its notes name it: 32K, or 16,000-token where it is no whole K."""
    if window % 1024 == 0:
        return sentence("window_k", k=window // 1024)
    return sentence("window_tokens", tokens=f"{window:,}")


def note_parsed(text: str) -> Sentence | None:
    """The code and params of a note the app wrote as English text (before notes had
    codes; an old export's), or None for any other text. Migration 0014 uses it."""
    for code, shape in _NOTE_TEXTS:
        found = shape.fullmatch(text)
        if found is None:
            continue
        params = {name: value for name, value in found.groupdict().items() if value is not None}
        if "count" in params:
            params["count"] = int(params["count"])
            k, tokens = params.pop("k", None), params.pop("tokens", None)
            params["window"] = sentence("window_k", k=int(k)) if k else sentence("window_tokens", tokens=tokens)
        return sentence(code, **params)
    return None


_NOTE_PARAMS = {
    "vision_answered": {"model", "vision"},
    "tools_not_offered": {"model"},
    "images_left_out": {"count", "model", "window"},
    "messages_left_out": {"count", "model", "window"},
}


def note_checked(raw: Any) -> Sentence | None:
    """An imported note as it is stored, if it is one the app writes (by code, with params
    of its shapes: an export is a file anyone can write, and notes speak in the app's voice);
    else None. Text from an export made before notes had codes is parsed (`note_parsed`)."""
    if isinstance(raw, str):
        return note_parsed(raw)
    if not isinstance(raw, dict) or set(raw) != {"code", "params"} or not isinstance(raw["params"], dict):
        return None
    code, params = raw["code"], raw["params"]
    if _NOTE_PARAMS.get(code) != set(params):
        return None
    for name, value in params.items():
        if name in ("model", "vision") and not (isinstance(value, str) and _MODEL_NAME.fullmatch(value)):
            return None
        if name == "count" and not (type(value) is int and 0 < value < 1_000_000):
            return None
        if name == "window" and not _window_checked(value):
            return None
    return sentence(code, **params)


def _window_checked(raw: Any) -> bool:
    if not isinstance(raw, dict) or set(raw) != {"code", "params"} or not isinstance(raw["params"], dict):
        return False
    params = raw["params"]
    if raw["code"] == "window_k":
        return set(params) == {"k"} and type(params["k"]) is int and 0 < params["k"] < 10_000_000
    if raw["code"] == "window_tokens":
        return set(params) == {"tokens"} and isinstance(params["tokens"], str) and bool(
            re.fullmatch(r"[\d,]{1,12}", params["tokens"]))
    return False
