"""chat.layers: the in-memory channel layer's direct delivery to a receiver in this process."""

import asyncio

from chat.layers import InMemoryChannelLayer


async def test_a_receiver_gets_group_messages_at_once_and_in_order():
    layer = InMemoryChannelLayer()
    delivered: list[dict] = []
    direct, queued = await layer.new_channel(), await layer.new_channel()
    layer.deliver_to(direct, delivered.append)
    await layer.group_add("conversation.1", direct)
    await layer.group_add("conversation.1", queued)

    for seq in (1, 2, 3):
        await layer.group_send("conversation.1", {"type": "chat.frame", "frame": {"seq": seq}})
    await layer.send(direct, {"type": "snapshot.timeout", "message_id": 7})

    # Handed over during the sends themselves: nothing had to run in between.
    assert [m.get("frame", {}).get("seq") for m in delivered] == [1, 2, 3, None]
    assert delivered[-1] == {"type": "snapshot.timeout", "message_id": 7}
    # A member without a receiver still reads from its queue, as in Channels.
    received = [await asyncio.wait_for(layer.receive(queued), 1) for _ in range(3)]
    assert [m["frame"]["seq"] for m in received] == [1, 2, 3]


async def test_after_deliver_stop_the_channel_is_out_of_its_groups():
    layer = InMemoryChannelLayer()
    delivered: list[dict] = []
    channel = await layer.new_channel()
    layer.deliver_to(channel, delivered.append)
    await layer.group_add("conversation.1", channel)
    await layer.group_send("conversation.1", {"type": "chat.frame", "frame": {"seq": 1}})

    layer.deliver_stop(channel)
    await layer.group_send("conversation.1", {"type": "chat.frame", "frame": {"seq": 2}})

    assert [m["frame"]["seq"] for m in delivered] == [1]
    assert "conversation.1" not in layer.groups  # left, and the emptied group is gone
    assert channel not in layer.channels  # nothing piled up for a socket that has gone


async def test_deliver_stop_leaves_the_other_members_and_the_groups_already_left():
    layer = InMemoryChannelLayer()
    delivered: list[dict] = []
    channel, other = await layer.new_channel(), await layer.new_channel()
    layer.deliver_to(channel, delivered.append)
    for group in ("user.1", "conversation.1", "conversation.2"):
        await layer.group_add(group, channel)
    await layer.group_add("conversation.1", other)
    await layer.group_discard("conversation.2", channel)  # as a consumer does when it moves on

    layer.deliver_stop(channel)

    assert layer.groups == {"conversation.1": {other: layer.groups["conversation.1"][other]}}
    await layer.group_send("conversation.1", {"type": "chat.frame", "frame": {"seq": 1}})
    assert delivered == []
    assert (await asyncio.wait_for(layer.receive(other), 1))["frame"]["seq"] == 1
