"""Why a frame's request is not carried out: the code and the sentence the page shows, in
the page's language.

A refusal's sentence is written in English, marked for the translation catalog
(gettext_noop, or `params` for its numbers), and put in the page's language only when it
is sent: a send can be refused inside a batch that serves several people at once
(chat/batches.py), so the language is the socket's, not the thread's.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext_noop
from django.utils.translation.trans_real import parse_accept_lang_header


class SendRefused(Exception):
    """A send that must not start: nothing was stored. `code` and `message` go to the page;
    a message with numbers in it is a template, `params` its numbers."""

    def __init__(self, code: str, message: str, *, message_id: int | None = None, field: str = "",
                 params: dict[str, Any] | None = None):
        self.template = message
        self.params = params
        message = message % params if params else message
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_id = message_id  # for `busy`: the answer still streaming
        self.field = field  # for a form's refusal: the field it is about, to show it beside


def sentence_in(language: str, message: str, params: dict[str, Any] | None = None) -> str:
    """`message` in `language` when the catalog has it (else as it is), `params` put in."""
    with translation.override(language):
        said = translation.gettext(message)
    return said % params if params else said


def refusal_said(refused: Any) -> str:
    """A refusal's sentence (anything with a `template` and its `params`: SendRefused,
    ImageRefused, ImportRefused) in the active language: in a view, the request's."""
    return sentence_in(translation.get_language() or settings.LANGUAGE_CODE, refused.template, refused.params)


def language_of_socket(scope: dict) -> str:
    """The language the page that opened the socket speaks, found as LocaleMiddleware finds
    it for a page: Django's language cookie, else the browser's Accept-Language."""
    for wanted in [scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME, "")] + [
        code for code, _ in parse_accept_lang_header(
            dict(scope.get("headers", [])).get(b"accept-language", b"").decode("latin-1"))
    ]:
        if wanted and wanted != "*":
            try:
                return translation.get_supported_language_variant(wanted)
            except LookupError:
                continue
    return settings.LANGUAGE_CODE


def conversation_missing() -> SendRefused:
    return SendRefused("not_found", gettext_noop("That conversation does not exist or is not yours."))


def conversation_busy(streaming_id: int) -> SendRefused:
    return SendRefused(
        "busy", gettext_noop("An answer is still being written in this conversation. Wait for it or press Stop."),
        message_id=streaming_id,
    )
