"""current_time: the date and time now in an IANA time zone (zoneinfo), e.g. Asia/Shanghai.

A model knows neither today's date nor the hour, and people ask both. Zones come from
the system's time zone database (Debian's tzdata; the python:3.11-slim image has it).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chat.tools.registry import Tool, ToolError

EXAMPLES = "Asia/Shanghai, Europe/London, America/New_York or UTC"


def current_time(*, timezone: str = "UTC") -> dict[str, str]:
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: a key that is not a relative path (e.g. "/etc/passwd", "../x");
        # OSError: a folder of the database, e.g. "America".
        raise ToolError(f"{timezone!r} is not a time zone the server knows; use an IANA name such as "
                        f"{EXAMPLES}.") from None
    now = datetime.now(zone)
    return {
        "timezone": timezone,
        "date": now.date().isoformat(),
        "time": now.strftime("%H:%M:%S"),
        "weekday": now.strftime("%A"),
        "utc_offset": now.strftime("%z")[:3] + ":" + now.strftime("%z")[3:],
        "abbreviation": now.tzname() or "",
        "iso": now.isoformat(timespec="seconds"),
    }


TOOL = Tool(
    name="current_time",
    description="The current date, time and weekday in a time zone. Use it whenever the answer depends on "
                "today's date or the time of day.",
    parameters={
        "type": "object",
        "properties": {
            "timezone": {"type": "string", "maxLength": 64,
                         "description": f"An IANA time zone name, e.g. {EXAMPLES} (default UTC)"},
        },
        "additionalProperties": False,
    },
    function=current_time,
)
