"""chat/consumer_loop.py copies and bypasses parts of Channels' consumer for speed. An
upgrade that changes what was copied must fail here, loudly, naming what to re-read,
rather than quietly change how every socket is served."""

from __future__ import annotations

import hashlib
import inspect
import re
from pathlib import Path

import channels
from channels.consumer import AsyncConsumer, get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.sessions import InstanceSessionWrapper

from chat.consumer_loop import InboxConsumer
from chat.consumers import ChatConsumer

# sha256 of each method's source in the Channels that requirements.txt pins (the first 12
# hex digits), as InboxConsumer copies or bypasses it.
COPIED = {
    "AsyncConsumer.__call__": (AsyncConsumer.__call__, "e52238720872"),
    "AsyncConsumer.dispatch": (AsyncConsumer.dispatch, "39f34e7d4fb0"),
    "AsyncJsonWebsocketConsumer.send_json": (AsyncJsonWebsocketConsumer.send_json, "7059f7a98264"),
    "InstanceSessionWrapper.send": (InstanceSessionWrapper.send, "e951315e4ef0"),
}


def digest(function) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:12]


def test_channels_is_the_version_the_loop_was_written_against():
    pinned = re.search(r"^channels==(\S+)", Path("requirements.txt").read_text(), re.M).group(1)
    assert channels.__version__ == pinned == "4.3.2", "re-read chat/consumer_loop.py against the new Channels"


def test_what_the_loop_copies_from_channels_is_unchanged():
    changed = [name for name, (function, known) in COPIED.items() if digest(function) != known]
    assert changed == [], f"Channels changed {changed}: re-read chat/consumer_loop.py against it"


def test_the_private_parts_the_loop_reaches_into_are_there():
    # The session wrapper keeps the socket's own send as `real_send`, which frames go
    # through to skip the session's work per frame.
    assert "self.real_send = send" in inspect.getsource(InstanceSessionWrapper.__init__)
    assert get_handler_name({"type": "chat.frame"}) == "chat_frame"
    # ChatConsumer is served by the copied loop, not Channels' own.
    assert ChatConsumer.__call__ is InboxConsumer.__call__ and ChatConsumer.dispatch is InboxConsumer.dispatch
