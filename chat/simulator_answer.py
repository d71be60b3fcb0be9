"""What the simulator answers (chat/simulator.py), decided from the request alone: tool
calls (chat/simulator_tools.py); a few words when yiweb asks for a title; `deltas=N`
numbered pieces; the results of the last round of tool calls; what yi-vision sees
(chat/simulator_vision.py); else a paragraph that shows off Markdown. Cut to max_tokens.
"""

import re
from dataclasses import dataclass

from chat.simulator_directives import DIRECTIVE_RE
from chat.simulator_request import VISION_MODELS, ChatRequest, message_text
from chat.simulator_tools import (
    call_directives_parse,
    tool_call_deltas,
    tool_calls_choose,
    tool_results_text,
)
from chat.simulator_vision import vision_sentence


@dataclass
class Answer:
    pieces: list                 # text deltas, or the deltas of tool calls (dicts)
    finish_reason: str
    tool_calls: list | None = None  # [{"id", "name", "arguments"}] when the answer calls tools

    @property
    def text(self) -> str:
        return "" if self.tool_calls else "".join(self.pieces)


def text_split(text: str) -> list[str]:
    """Word-ish tokens with the whitespace before each word attached, like the real
    stream (" image"), so that joining the deltas gives back the exact text."""
    return re.findall(r"\s*\S+|\s+", text)


def default_text(request: ChatRequest) -> str:
    question = request.question
    if len(question) > 200:
        question = question[:200] + "…"
    asked = f"You asked: “{question}”" if question else "You sent an empty message."
    return (
        f"{asked}\n\n"
        "This answer comes from the **offline simulator**, a stand-in for the 01.AI "
        "Yi API that runs on this machine, so nothing left your computer. It can show:\n\n"
        "- streaming, one word at a time\n"
        "- *Markdown* formatting, with `inline code`\n"
        "- a fenced code block, like this one:\n\n"
        "```python\n"
        "def greet(name: str) -> str:\n"
        "    return f\"Hello, {name}!\"\n"
        "```\n\n"
        "To talk to the real Yi models, set `YI_API_KEY` in the environment "
        "and restart the server."
    )


# How yiweb asks for a conversation's title (chat/titles.py's TITLE_PROMPT begins so): a
# model would answer with a few words, so the stand-in does too.
TITLE_REQUEST = "Write a title for this conversation"


def title_asked(request: ChatRequest) -> bool:
    first = request.messages[0]
    return first["role"] == "system" and message_text(first.get("content")).startswith(TITLE_REQUEST)


def title_for(request: ChatRequest) -> str:
    """The question's first five words, as a model's title might be."""
    text = message_text(request.messages[-1].get("content")).removeprefix("Question:")
    words = DIRECTIVE_RE.sub(" ", call_directives_parse(text.split("\n\nAnswer:")[0])[1]).split()
    return "Simulated: " + " ".join(words[:5]) if words else "Simulated title"


def answer_compose(request: ChatRequest) -> Answer:
    calls = tool_calls_choose(request)
    if calls:
        return Answer(tool_call_deltas(calls), "tool_calls", calls)
    deltas = request.directives["deltas"]
    results = tool_results_text(request.messages, message_text)
    if title_asked(request):
        pieces = text_split(title_for(request))
    elif deltas is not None:
        pieces = [f"t{i} " for i in range(deltas)]
    elif results is not None:
        pieces = text_split(results)
    elif request.model in VISION_MODELS:
        pieces = text_split(vision_sentence(request.images) + "\n\n" + default_text(request))
    else:
        pieces = text_split(default_text(request))
    if request.max_tokens is not None and len(pieces) > request.max_tokens:
        return Answer(pieces[:request.max_tokens], "length")
    return Answer(pieces, "stop")
