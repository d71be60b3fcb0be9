"""Images attached to messages. The only module that will import Pillow (uploads come later).

At send time a stored image becomes a `data:<type>;base64,` URL inside the user
message's `content` list, which is how yi-vision takes local images (reference,
"Visual understanding", approach 3).
"""

from __future__ import annotations

import base64

from chat.models import Attachment


def attachment_data_url(attachment: Attachment) -> str:
    with attachment.file.open("rb") as fh:
        encoded = base64.b64encode(fh.read()).decode("ascii")
    return f"data:{attachment.media_type};base64,{encoded}"
