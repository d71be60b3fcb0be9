"""Reading a chat request in the simulator (chat/simulator.py): the body checked as the
reference checks it, the models it knows with their context windows, its directives
(chat/simulator_directives.py) and tool calls asked for (chat/simulator_tools.py), its
images decoded (chat/simulator_vision.py), and its prompt tokens counted against the
model's context window.
"""

import json
import math
from dataclasses import dataclass, field

from chat.images import ImageDescription
from chat.simulator_directives import DIRECTIVE_RE, directives_parse
from chat.simulator_errors import SimulatedError
from chat.simulator_tools import ToolRequestRefused, call_directives_parse, tool_request_check
from chat.simulator_vision import image_decode

# Context windows from the reference's model table ("32K" read as 32 * 1024).
CONTEXT_WINDOWS = {
    "yi-large": 32 * 1024,
    "yi-large-turbo": 4 * 1024,
    "yi-large-fc": 32 * 1024,
    "yi-vision": 16 * 1024,
}
VISION_MODELS = {"yi-vision"}
TOKENS_PER_IMAGE = 1000


@dataclass
class ChatRequest:
    model: str
    messages: list
    stream: bool
    max_tokens: int | None
    tools: list
    tool_choice: object
    directives: dict
    question: str                                # last user text, directives removed
    images: list[ImageDescription] = field(default_factory=list)  # in order
    prompt_tokens: int = 0
    calls: list = field(default_factory=list)    # its [sim-call NAME {...}]: (name, arguments or None)


def message_text(content) -> str:
    """The text of a message's content, whether a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text")
    return ""


def request_parse(body: bytes) -> ChatRequest:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SimulatedError(400, "Input format error: the body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise SimulatedError(400, "Input format error: the body must be a JSON object.")
    model, messages = data.get("model"), data.get("messages")
    if not isinstance(model, str) or not model:
        raise SimulatedError(400, "Input format error: model is required.")
    if model != model.lower():
        raise SimulatedError(400, "Input format error: the model name must be all "
                                  f"lowercase, e.g. {model.lower()}.")
    if model not in CONTEXT_WINDOWS:
        raise SimulatedError(404, f"Not found: the model {model!r} does not exist.")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise SimulatedError(400, "Input format error: messages must be a non-empty "
                                  "list of objects with a role.")
    max_tokens = data.get("max_tokens")
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        raise SimulatedError(400, "Input format error: max_tokens must be a positive "
                                  "integer or null.")
    for name, top in (("temperature", 2), ("top_p", 1)):
        value = data.get(name)
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= top):
            raise SimulatedError(400, f"Input format error: {name} must be between "
                                      f"0 and {top}.")

    last_user = next((m for m in reversed(messages) if m["role"] == "user"), {})
    user_text = message_text(last_user.get("content"))
    try:
        tool_request_check(data.get("tools"), data.get("tool_choice"), messages)
        calls, user_text = call_directives_parse(user_text)
    except ToolRequestRefused as refused:
        raise SimulatedError(400, str(refused)) from None
    request = ChatRequest(
        model=model, messages=messages, stream=data.get("stream") is True,
        max_tokens=max_tokens, tools=data.get("tools") or [],
        tool_choice=data.get("tool_choice"), directives=directives_parse(user_text),
        question=" ".join(DIRECTIVE_RE.sub(" ", user_text).split()), calls=calls)
    prompt_inspect(request)
    return request


def prompt_inspect(request: ChatRequest) -> None:
    """Decode images, estimate prompt tokens, and enforce the model's context window."""
    characters = 0
    for message in request.messages:
        content = message.get("content")
        characters += len(message_text(content))
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                if request.model not in VISION_MODELS:
                    raise SimulatedError(400, f"Input format error: {request.model} does "
                                              "not accept images; use yi-vision.")
                request.images.append(image_decode(part, len(request.images) + 1))
    request.prompt_tokens = math.ceil(characters / 4) + TOKENS_PER_IMAGE * len(request.images)
    window = CONTEXT_WINDOWS[request.model]
    needed = request.prompt_tokens + (request.max_tokens or 0)
    if needed > window:
        raise SimulatedError(
            400, f"Bad request: context length exceeded. {request.model} has a maximum "
                 f"context window of {window} tokens, but this request needs {needed} "
                 f"({request.prompt_tokens} in the messages + {request.max_tokens or 0} "
                 "max_tokens). Reduce the inputs length, or set max_tokens to a smaller "
                 "value.", type_="context_length_exceeded")
