"""Values every template may use, read from settings here rather than in each view."""

from django.conf import settings


def limits(request) -> dict:
    """The limits the chat page checks before sending (static/chat/chat.js), so that a
    message the server would refuse is refused in the page, with the text kept."""
    return {
        "message_max_chars": settings.MESSAGE_MAX_CHARS,
        "image_limits": {"per_message": settings.IMAGES_PER_MESSAGE, "max_bytes": settings.IMAGE_MAX_BYTES},
    }


def theme(request) -> dict:
    """The signed-in person's theme ("system", "light" or "dark"), which base.html puts on
    <html> so that the first paint already has it (chat/preferences.py)."""
    from chat.preferences import preferences_of_request

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"theme": "system"}
    return {"theme": preferences_of_request(request).theme}
