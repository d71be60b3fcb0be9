"""What a send must be before anything is stored: its text, model, system prompt,
sampling parameters and tool settings, each refused with the sentence the page shows (SendRefused)."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.utils.translation import gettext_noop

from chat.catalog import model_info
from chat.refusals import SendRefused
from chat.tools import tool_names

# The reference's forms of `tool_choice` besides one named function.
TOOL_CHOICES = ("auto", "none", "required")


def send_validate(
    *, text: Any, model: Any, system_prompt: Any = None, images: int = 0
) -> tuple[str, str, str | None]:
    """Check a send before anything is stored; returns the cleaned (text, model, system
    prompt). With `images` attached, the text may be empty. A system prompt left out (None)
    stays None: the conversation keeps its own."""
    if images and (text is None or (isinstance(text, str) and not text.strip())):
        text = ""
    elif not isinstance(text, str) or not text.strip():
        raise SendRefused("empty_message", gettext_noop("Type a message before sending."))
    text_check(text, what="That message")
    limit = settings.MESSAGE_MAX_CHARS
    if len(text) > limit:
        raise SendRefused(
            "message_too_long",
            gettext_noop("That message is too long (%(count)s characters; the limit is %(limit)s). Shorten it or "
                         "split it."),
            params={"count": f"{len(text):,}", "limit": f"{limit:,}"},
        )
    if not isinstance(model, str) or not model.strip() or len(model) > 100 or not text_storable(model):
        raise SendRefused("unknown_model", gettext_noop("Pick a model from the list."))
    if system_prompt is not None:
        system_prompt = system_prompt_validate(system_prompt)
    return text, model.strip(), system_prompt


def system_prompt_validate(system_prompt: Any) -> str:
    """A system prompt that can be stored and sent: text, at most MESSAGE_MAX_CHARS."""
    system_prompt = system_prompt if isinstance(system_prompt, str) else ""
    text_check(system_prompt, what="The system prompt", field="system_prompt")
    limit = settings.MESSAGE_MAX_CHARS
    if len(system_prompt) > limit:
        raise SendRefused(
            "system_prompt_too_long",
            f"The system prompt is too long ({len(system_prompt):,} characters; the limit is {limit:,}). Shorten it.",
            field="system_prompt",
        )
    return system_prompt


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


def text_check(text: str, *, what: str, field: str = "") -> None:
    """Refuse text that cannot be stored (`text_storable`)."""
    if text_storable(text):
        return
    raise SendRefused(
        "bad_character", f"{what} contains a character that cannot be stored (U+0000, or half of a surrogate pair). "
        "Remove it and send again.", field=field,
    )


# The reference's ranges (chat completions, Table 1) and defaults: temperature 0.3 and
# top_p 0.9; max_tokens has no default there (the API's own) and is bounded by the
# model's context window, or by MAX_TOKENS_BOUND for a model whose window is unknown.
PARAM_RANGES: dict[str, tuple[float, float, type]] = {
    "temperature": (0, 2, float),
    "top_p": (0, 1, float),
    "max_tokens": (1, 32768, int),
}
PARAM_DEFAULTS: dict[str, float | None] = {"temperature": 0.3, "top_p": 0.9, "max_tokens": None}
MAX_TOKENS_BOUND = PARAM_RANGES["max_tokens"][1]


def max_tokens_bound(model: str | None) -> int:
    """The largest max_tokens a send to `model` may ask for: its context window (prompt
    and answer together), else the general bound."""
    window = model_info(model).context_window if model else None
    return window or MAX_TOKENS_BOUND


def params_validate(raw: dict[str, Any], *, model: str | None = None) -> dict[str, Any]:
    """The sampling parameters a send (or the defaults form) names, within the reference's
    ranges, max_tokens within `model`'s window: {name: number}, or None for one named as
    null or "" (back to the API's default). A parameter left out is not in the result."""
    params: dict[str, Any] = {}
    for name, (low, high, kind) in PARAM_RANGES.items():
        if name not in raw:
            continue
        value = raw[name]
        if value is None or value == "":
            params[name] = None
            continue
        try:
            number = kind(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: 1e400, or 400 digits as a float
            number = None
        if kind is int and isinstance(value, float) and not value.is_integer():
            number = None  # 1.5 tokens: int() would quietly send 1
        bound = max_tokens_bound(model) if name == "max_tokens" else high
        if number is None or isinstance(value, bool) or not math.isfinite(number) or not low <= number <= bound:
            raise params_refusal(name, low, bound, model=model)
        params[name] = number
    return params


def params_refusal(name: str, low: float, high: float, *, model: str | None) -> SendRefused:
    """The sentence for a parameter out of range: the range, and for max_tokens under the
    general bound, the window that bounds it."""
    why = ""
    if name == "max_tokens" and model and high < MAX_TOKENS_BOUND:
        why = f" ({model}'s context window)"
    return SendRefused("bad_params", f"{name} must be a number from {low} to {high}{why}.", field=name)
