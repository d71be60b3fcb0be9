"""The simulator's `[sim ...]` directives (chat/simulator.py): faults and shapes of the
answer asked for per request, with no shared state, in the last user message, e.g.
`[sim deltas=5 interval=0 cut=3]`. DIRECTIVE_DEFAULTS lists the keys.

Here they are read (directives_parse) and the HTTP error `status=` asks for is raised
(fault_check). `deltas` is honoured by chat/simulator_answer.py; interval, cut,
malformed, stall, accumulate, usage and stamp by chat/simulator_responses.py; the tool
keys by chat/simulator_tools.py.
"""

import hashlib
import re

from chat.simulator_errors import SimulatedError

DIRECTIVE_RE = re.compile(r"\[sim(?=[\s\]])([^\]]*)\]")  # not [sim-call ...]: chat/simulator_tools.py
DIRECTIVE_DEFAULTS = {
    "deltas": None,      # int: answer is exactly N deltas "t0 ", "t1 ", ...
    "interval": None,    # float ms between deltas; None -> SIMULATOR_DELTA_MS or 20
    "status": None,      # int: answer with this HTTP error
    "retry_after": None,  # str: Retry-After header on that error
    "times": None,       # int: only the first K identical requests get the error
    "cut": None,         # int: end the body after N deltas, no finish chunk, no [DONE]
    "malformed": None,   # int: the N-th delta chunk (1-based) is invalid JSON
    "stall": None,       # int: after N deltas, go silent for stall_for seconds
    "stall_for": 3600.0,  # float seconds
    "accumulate": 1,     # 0: no top-level "content" in stream chunks
    "usage": 1,          # 0: no usage in the last chunk / the completion
    "stamp": 0,          # 1: delta i is "t{i}@{unix time it was sent, 6 decimals} "; 2: "t{i}:{...} ",
                         # which Markdown leaves as text (it links "t1@17….12" as an e-mail address)
    "tool_calls": 1,     # 0: under tool_choice "auto", answer in text (chat/simulator_tools.py)
    "tool_rounds": 1,    # int: rounds of tool calls under "auto" before the answer in text
    "broken": None,      # int: the K-th call of the first round has invalid JSON arguments
}
DIRECTIVE_TYPES = {"interval": float, "stall_for": float, "retry_after": str}

# Requests that asked for `times=K`, counted by sha256 of the raw body, so a client's
# retry of the very same request fails K times and then succeeds.
_failures: dict[str, int] = {}


def directives_parse(text: str) -> dict:
    found = dict(DIRECTIVE_DEFAULTS)
    for match in DIRECTIVE_RE.finditer(text):
        for word in match.group(1).split():
            key, sep, value = word.partition("=")
            if not sep or key not in DIRECTIVE_DEFAULTS:
                raise SimulatedError(400, f"Input format error: unknown simulator "
                                          f"directive {word!r}.")
            try:
                found[key] = DIRECTIVE_TYPES.get(key, int)(value)
            except ValueError:
                raise SimulatedError(400, f"Input format error: simulator directive "
                                          f"{word!r} needs a number.") from None
    return found


def fault_check(directives: dict, body: bytes) -> None:
    """Raise the HTTP error a `status=` directive asks for, unless `times=` is used up."""
    status = directives["status"]
    if status is None:
        return
    if not 400 <= status <= 599:
        raise SimulatedError(400, "Input format error: simulator status must be 4xx or 5xx.")
    if directives["times"] is not None:
        key = hashlib.sha256(body).hexdigest()
        _failures[key] = _failures.get(key, 0) + 1
        if _failures[key] > directives["times"]:
            return
    headers = []
    if directives["retry_after"] is not None:
        headers.append((b"retry-after", directives["retry_after"].encode()))
    raise SimulatedError(status, headers=headers)
