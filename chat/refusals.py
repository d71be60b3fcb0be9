"""Why a frame's request is not carried out: the code and the sentence the page shows."""

from __future__ import annotations


class SendRefused(Exception):
    """A send that must not start: nothing was stored. `code` and `message` go to the page."""

    def __init__(self, code: str, message: str, *, message_id: int | None = None, field: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_id = message_id  # for `busy`: the answer still streaming
        self.field = field  # for a form's refusal: the field it is about, to show it beside


def conversation_missing() -> SendRefused:
    return SendRefused("not_found", "That conversation does not exist or is not yours.")
