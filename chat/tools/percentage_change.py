"""percentage_change: the reference's month-over-month / year-over-year calculator.

Its parameters are the reference's, names, types and descriptions as it gives them
(time, type: YoY or MoM, pre_value and current_value as strings), and so is its result:
{"time": ..., "type": ..., "change": "0.80%"}, the change in percent with two decimals.

Two departures, both invisible on the reference's own figures: Decimal instead of
float, so that a change of exactly x.xx5% rounds up as a person would (float's "%.2f"
rounds 0.005 either way depending on its binary approximation), and the change is
divided by the size of the previous value, so that a rise from a negative value (a loss
becoming a smaller loss) is a positive change, where (b - a) / a would call it a fall.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Context, Decimal, DecimalException, InvalidOperation

from chat.tools.registry import Tool, ToolError

CONTEXT = Context(prec=28, traps=[InvalidOperation])
VALUE_MAX_CHARS = 40
THOUSANDS = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?")


def percentage_change(*, time: str, type: str, pre_value: str, current_value: str) -> dict[str, str]:
    previous = _number("pre_value", pre_value)
    current = _number("current_value", current_value)
    if previous == 0:
        raise ToolError("A change from 0 has no percentage: pre_value must not be zero.")
    try:
        change = CONTEXT.multiply(CONTEXT.divide(current - previous, abs(previous)), 100)
        shown = change.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP, context=CONTEXT)
    except DecimalException:
        raise ToolError(f"The change from {pre_value} to {current_value} is too large to show.") from None
    return {"time": time, "type": type, "change": f"{shown}%"}


def _number(name: str, text: str) -> Decimal:
    # Figures come as the table has them: "1,234.5" and " 28.89 " are numbers too, but
    # not "28,89" (a decimal comma, or a typo: either way not ours to guess).
    cleaned = text.strip()
    if THOUSANDS.fullmatch(cleaned):
        cleaned = cleaned.replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise ToolError(f"{name} {text!r} is not a number; send the figure alone, e.g. \"28.89\".")
    return value


TOOL = Tool(
    name="percentage_change",
    description="YoY and MoM data calculator. YoY means year over year changes and MoM means month over month changes.",
    parameters={
        "type": "object",
        "properties": {
            "time": {"type": "string", "description": "date, month, or year information", "maxLength": 100},
            "type": {"type": "string", "enum": ["YoY", "MoM"]},
            "pre_value": {"type": "string", "description": "previous value being compared",
                          "maxLength": VALUE_MAX_CHARS},
            "current_value": {"type": "string", "description": "current data for comparison",
                              "maxLength": VALUE_MAX_CHARS},
        },
        "required": ["time", "type", "pre_value", "current_value"],
        "additionalProperties": False,
    },
    function=percentage_change,
)
