"""What a consumer pays to take one channel-layer message: Channels' wait against yiweb's two.

    python bench/dispatch.py [--messages 5000]

Every relayed frame reaches its socket's consumer as a channel-layer message. Channels'
`AsyncConsumer` waits on the socket and the layer with `asyncio.wait` and a new task per
message (`await_many_dispatch`). `ChatConsumer` copies each source into one queue with a
task per source (`chat.consumer_loop.pump`), which is its path with the Redis layer; yiweb's
in-memory layer puts the message into that queue itself (`deliver_to`), so only the
socket has a pump. All three here take messages from yiweb's in-memory layer while the
socket stays silent, one message in flight at a time, on uvloop. Figures: CPU µs per
message, sent, received and dispatched; then what handing a frame to the server costs
through the session middleware's `send` and past it (`ChatConsumer.frame_send`);
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yiweb.settings")

import django  # noqa: E402

django.setup()

import uvloop  # noqa: E402
from channels.sessions import InstanceSessionWrapper  # noqa: E402
from channels.utils import await_many_dispatch  # noqa: E402

from chat.consumer_loop import pump  # noqa: E402
from chat.layers import InMemoryChannelLayer  # noqa: E402

FRAME = {"type": "chat.frame", "frame": {"type": "delta", "message_id": 1, "seq": 1, "text": "t1@1795566101.829123 "}}


async def channels_wait(layer, channel, socket, dispatch) -> None:
    await await_many_dispatch([socket, functools.partial(layer.receive, channel)], dispatch)


async def queue_dispatch(inbox: asyncio.Queue, sources, dispatch) -> None:
    pumps = [asyncio.create_task(pump(source, inbox)) for source in sources]
    try:
        while True:
            await dispatch(await inbox.get())
    finally:
        for task in pumps:
            task.cancel()


async def yiweb_pump(layer, channel, socket, dispatch) -> None:
    await queue_dispatch(asyncio.Queue(), [socket, functools.partial(layer.receive, channel)], dispatch)


async def yiweb_direct(layer, channel, socket, dispatch) -> None:
    inbox: asyncio.Queue = asyncio.Queue()
    layer.deliver_to(channel, inbox.put_nowait)
    await queue_dispatch(inbox, [socket], dispatch)


async def per_message(waiter, messages: int) -> float:
    """CPU µs per message: send to the group, wait until dispatched, next."""
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("conversation.1", channel)
    dispatched = 0

    async def dispatch(message) -> None:
        nonlocal dispatched
        dispatched += 1

    silent = asyncio.Event()
    consumer = asyncio.create_task(waiter(layer, channel, silent.wait, dispatch))
    await asyncio.sleep(0)
    started = time.process_time()
    for sent in range(messages):
        await layer.group_send("conversation.1", FRAME)
        while dispatched <= sent:
            await asyncio.sleep(0)
    elapsed = time.process_time() - started
    consumer.cancel()
    return elapsed / messages * 1e6


async def frame_send_cost(through_session: bool, frames: int) -> float:
    """CPU µs per frame handed to the server: through the session middleware's send
    (Channels' `InstanceSessionWrapper`, as every consumer's `send` is) or past it."""

    async def server_send(message) -> None:
        pass

    wrapper = InstanceSessionWrapper({"cookies": {}}, server_send)
    await wrapper.resolve_session()
    send = wrapper.send if through_session else wrapper.real_send
    message = {"type": "websocket.send", "text": '{"type": "delta"}'}
    started = time.process_time()
    for _ in range(frames):
        await send(message)
    return (time.process_time() - started) / frames * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args(argv)
    figures = {}
    for _ in range(3):  # interleaved, best of three: the machine's speed drifts
        for waiter in (channels_wait, yiweb_pump, yiweb_direct):
            cost = uvloop.run(per_message(waiter, args.messages))
            figures[waiter.__name__] = min(cost, figures.get(waiter.__name__, cost))
    baseline, pumps, direct = figures["channels_wait"], figures["yiweb_pump"], figures["yiweb_direct"]
    print(f"dispatch: {args.messages} layer messages, one in flight, uvloop; CPU µs per message, best of 3")
    print(f"  Channels' await_many_dispatch             {baseline:6.1f} µs")
    print(f"  ChatConsumer's pumps (Redis layer)        {pumps:6.1f} µs   ratio {pumps / baseline:.2f}×")
    print(f"  in-memory layer's deliver_to, one pump    {direct:6.1f} µs   ratio {direct / baseline:.2f}×")
    sends = {}
    for _ in range(3):
        for through in (True, False):
            cost = uvloop.run(frame_send_cost(through, args.messages * 4))
            sends[through] = min(cost, sends.get(through, cost))
    print("a frame handed to the server; CPU µs per frame, best of 3")
    print(f"  through the session middleware's send     {sends[True]:6.2f} µs")
    print(f"  past it (ChatConsumer.frame_send)         {sends[False]:6.2f} µs   ratio {sends[False] / sends[True]:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
