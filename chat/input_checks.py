"""What a send must be before anything is stored: its text, model, system prompt,
sampling parameters and tool settings, each refused with the sentence the page shows (SendRefused)."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings

from chat.refusals import SendRefused
from chat.tools import tool_names

# The reference's forms of `tool_choice` besides one named function.
TOOL_CHOICES = ("auto", "none", "required")


def send_validate(*, text: Any, model: Any, system_prompt: Any = "", images: int = 0) -> tuple[str, str, str]:
    """Check a send before anything is stored; returns the cleaned (text, model, system
    prompt). With `images` attached, the text may be empty."""
    if images and (text is None or (isinstance(text, str) and not text.strip())):
        text = ""
    elif not isinstance(text, str) or not text.strip():
        raise SendRefused("empty_message", "Type a message before sending.")
    text_check(text, what="That message")
    limit = settings.MESSAGE_MAX_CHARS
    if len(text) > limit:
        raise SendRefused(
            "message_too_long",
            f"That message is too long ({len(text):,} characters; the limit is {limit:,}). Shorten it or split it.",
        )
    if not isinstance(model, str) or not model.strip() or len(model) > 100 or not text_storable(model):
        raise SendRefused("unknown_model", "Pick a model from the list.")
    system_prompt = system_prompt if isinstance(system_prompt, str) else ""
    text_check(system_prompt, what="The system prompt")
    if len(system_prompt) > limit:
        raise SendRefused(
            "system_prompt_too_long",
            f"The system prompt is too long ({len(system_prompt):,} characters; the limit is {limit:,}). Shorten it.",
        )
    return text, model.strip(), system_prompt


def tools_validate(tools: Any, tool_choice: Any) -> tuple[bool | None, Any]:
    """A send's tool settings: `tools` on or off, and `tool_choice` in one of the forms the
    reference defines ("auto", "none", "required", or one named built-in function); None
    for what the send leaves as the conversation has it."""
    if tools is not None and not isinstance(tools, bool):
        raise SendRefused("bad_tools", "Tools are either on or off.")
    if tool_choice is None or tool_choice in TOOL_CHOICES:
        return tools, tool_choice
    names = tool_names()
    function = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    named = isinstance(function, dict) and tool_choice.get("type") == "function"
    name = function.get("name") if named else None
    if name not in names:
        raise SendRefused(
            "bad_tool_choice",
            f"Tool choice must be auto, none, required, or one of the tools: {', '.join(names)}.",
        )
    return tools, {"type": "function", "function": {"name": name}}


def text_storable(text: str) -> bool:
    """False for text that cannot be stored: a NUL (PostgreSQL refuses it) or half of a
    surrogate pair (JSON can carry one; UTF-8 cannot)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def text_check(text: str, *, what: str) -> None:
    """Refuse text that cannot be stored (`text_storable`)."""
    if text_storable(text):
        return
    raise SendRefused(
        "bad_character", f"{what} contains a character that cannot be stored (U+0000, or half of a surrogate pair). "
        "Remove it and send again."
    )


def params_validate(raw: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters of a send, within the ranges the reference gives."""
    params: dict[str, Any] = {}
    for name, low, high, kind in (("temperature", 0, 2, float), ("top_p", 0, 1, float), ("max_tokens", 1, 32768, int)):
        value = raw.get(name)
        if value is None or value == "":
            continue
        try:
            number = kind(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: 1e400, or 400 digits as a float
            number = None
        if number is None or isinstance(value, bool) or not math.isfinite(number) or not low <= number <= high:
            raise SendRefused("bad_params", f"{name} must be a number from {low} to {high}.")
        params[name] = number
    return params
