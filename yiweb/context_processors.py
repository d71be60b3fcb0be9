"""Values every template may use, read from settings here rather than in each view."""

from django.conf import settings


def limits(request) -> dict:
    """The limits the chat page checks before sending (static/chat/chat.js), so that a
    message the server would refuse is refused in the page, with the text kept."""
    return {
        "message_max_chars": settings.MESSAGE_MAX_CHARS,
        "image_limits": {"per_message": settings.IMAGES_PER_MESSAGE, "max_bytes": settings.IMAGE_MAX_BYTES},
    }
