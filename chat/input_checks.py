"""What a frame must be before anything is stored or queried: its ids, client_id, images
and holdings, and a send's text, model, system prompt, sampling parameters and tool
settings, each refused with the sentence the page shows (SendRefused)."""

from __future__ import annotations

import math
import re
from typing import Any

from django.conf import settings
from django.utils.translation import gettext_noop

from chat.catalog import model_info
from chat.credentials import SERVER_KEY, KeyChoice, key_missing
from chat.refusals import SendRefused
from chat.tools import tool_names

# What every malformed field of a frame is told: a page of ours never sends one.
BAD_FRAME = gettext_noop("The page sent something the server did not understand. Reload the page.")

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
    text_check(text, gettext_noop(
        "That message contains a character that cannot be stored (U+0000, or half of a surrogate pair). "
        "Remove it and send again."))
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
    text_check(system_prompt, gettext_noop(
        "The system prompt contains a character that cannot be stored (U+0000, or half of a surrogate pair). "
        "Remove it and send again."), field="system_prompt")
    limit = settings.MESSAGE_MAX_CHARS
    if len(system_prompt) > limit:
        raise SendRefused(
            "system_prompt_too_long",
            gettext_noop("The system prompt is too long (%(count)s characters; the limit is %(limit)s). Shorten it."),
            field="system_prompt", params={"count": f"{len(system_prompt):,}", "limit": f"{limit:,}"},
        )
    return system_prompt


def tools_validate(tools: Any, tool_choice: Any) -> tuple[bool | None, Any]:
    """A send's tool settings: `tools` on or off, and `tool_choice` in one of the forms the
    reference defines ("auto", "none", "required", or one named built-in function); None
    for what the send leaves as the conversation has it."""
    if tools is not None and not isinstance(tools, bool):
        raise SendRefused("bad_tools", gettext_noop("Tools are either on or off."))
    if tool_choice is None or tool_choice in TOOL_CHOICES:
        return tools, tool_choice
    names = tool_names()
    function = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    named = isinstance(function, dict) and tool_choice.get("type") == "function"
    name = function.get("name") if named else None
    if name not in names:
        raise SendRefused(
            "bad_tool_choice",
            gettext_noop("Tool choice must be auto, none, required, or one of the tools: %(tools)s."),
            params={"tools": ", ".join(names)},
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


def text_check(text: str, refusal: str, *, field: str = "") -> None:
    """Refuse text that cannot be stored (`text_storable`), with the sentence `refusal`."""
    if text_storable(text):
        return
    raise SendRefused("bad_character", refusal, field=field)


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
    params = {"name": name, "low": low, "high": high, "model": model}
    if name == "max_tokens" and model and high < MAX_TOKENS_BOUND:
        return SendRefused("bad_params", gettext_noop(
            "%(name)s must be a number from %(low)s to %(high)s (%(model)s's context window)."),
            field=name, params=params)
    return SendRefused("bad_params", gettext_noop("%(name)s must be a number from %(low)s to %(high)s."),
                       field=name, params=params)


# --- a frame's fields ------------------------------------------------------------------


def frame_constant_refuse(name: str) -> None:
    raise ValueError(f"{name} is not a number a frame may carry")


# What a page's client_id looks like (a UUID; any visible ASCII up to its column's length).
CLIENT_ID = re.compile(r"[\x21-\x7e]{1,64}")


def frame_client_id(value: Any) -> str:
    """The send's client_id, cut to its column's length once (the echo, the duplicate check
    and the row all use this); refused before any query if it is not visible ASCII: a lone
    surrogate in one made the whole batch of sends fail, other people's too."""
    if value is None or value == "":
        return ""
    if isinstance(value, str) and CLIENT_ID.fullmatch(value[:64]):
        return value[:64]
    raise SendRefused("bad_frame", BAD_FRAME)


# Ids are 64-bit: a larger number would make PostgreSQL refuse the query.
ID_MAX = 2**63 - 1


def frame_int(value: Any) -> int | None:
    """A whole number sent as a number or as digits, that fits an id; None for anything
    else (2.5, true, "x", 1e400)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        return None
    if isinstance(value, str) and len(value) > 20:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if -ID_MAX <= number <= ID_MAX else None


def frame_key_choice(value: Any) -> KeyChoice:
    """The key a send (or `GET /api/models`) names: a key id, SERVER_KEY, or None for the
    default; key_not_found for anything else. Whether the id is the sender's,
    `credentials_for` checks."""
    if value is None or value == SERVER_KEY:
        return value
    key_id = frame_int(value)
    if key_id is None:
        raise key_missing()
    return key_id


def frame_attachment_ids(value: Any) -> tuple[int, ...]:
    """The uploads a send attaches, in order, each once; whether they are the sender's
    own and unsent is checked when the send is stored."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SendRefused("bad_frame", BAD_FRAME)
    limit = settings.IMAGES_PER_MESSAGE
    if len(value) > limit:
        raise SendRefused(
            "too_many_images",
            gettext_noop("A message can carry at most %(limit)s images. Remove %(extra)s and send again."),
            params={"limit": limit, "extra": len(value) - limit},
        )
    ids = [frame_int(item) for item in value]
    if any(i is None or i < 1 for i in ids):
        raise SendRefused("bad_frame", BAD_FRAME)
    return tuple(dict.fromkeys(ids))


# At most this many message ids in a `subscribe`'s `shown` (a longer thread is cut to its end).
SHOWN_MAX = 5000


def frame_shown(value: Any) -> list[int] | None:
    """The ids of the messages a tab shows, if it says; anything else is not a list of ids."""
    if not isinstance(value, list):
        return None
    ids = [frame_int(item) for item in value[-SHOWN_MAX:]]
    return [i for i in ids if i is not None]


def frame_ids(value: Any, *, limit: int) -> list[int]:
    """A list of ids, each a whole number that fits one; anything else is refused."""
    ids = [frame_int(item) for item in value] if isinstance(value, list) else [None]
    if not ids or len(ids) > limit or any(i is None for i in ids):
        raise SendRefused("bad_frame", BAD_FRAME)
    return ids


# How many answers one `subscribe` may name in `holding`.
HOLDING_MAX = 50


def frame_holding(content: dict[str, Any]) -> dict[int, int]:
    """The answers a `subscribe` says the tab shows as streaming: message id -> last seq
    applied. The old single `message_id` and `last_seq` count as one entry."""
    entries = content.get("holding")
    entries = entries[:HOLDING_MAX] if isinstance(entries, list) else []
    if "message_id" in content:
        entries = [*entries, {"message_id": content.get("message_id"), "last_seq": content.get("last_seq")}]
    holding = {}
    for entry in entries:
        message_id = frame_int(entry.get("message_id")) if isinstance(entry, dict) else None
        if message_id is not None:
            holding[message_id] = max(frame_int(entry.get("last_seq")) or 0, 0)
    return holding
