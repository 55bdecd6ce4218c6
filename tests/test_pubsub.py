"""The pub/sub's bounded queues: a subscriber that stops reading is cut off, the others are not."""

from __future__ import annotations

import asyncio

from app.live.pubsub import Broadcast


def test_a_stalled_subscriber_is_dropped_and_the_others_get_everything() -> None:
    async def scenario() -> tuple[list[int], bool, bool, int]:
        broadcast = Broadcast(queue_size=4)
        received: list[int] = []
        async with broadcast.subscribe("c") as reader, broadcast.subscribe("c") as stalled:

            async def read() -> None:
                async for message in reader:
                    received.append(message["n"])
                    if message["n"] == 99:
                        return

            task = asyncio.create_task(read())
            for n in range(100):
                broadcast.publish("c", {"n": n})
                await asyncio.sleep(0)  # the reader keeps up; the stalled one never reads
            await task
            # The stalled subscription ends at once: its iterator stops, `closed` is set.
            leftovers = [m async for m in stalled]
            return (
                received,
                stalled.dropped,
                stalled.closed.is_set(),
                len(leftovers) + broadcast.subscribers("c"),
            )

    received, dropped, closed, left = asyncio.run(scenario())
    assert received == list(range(100))
    assert dropped and closed
    assert left == 1  # no message left to the stalled one; only the reader is still subscribed


def test_channels_are_separate_and_unsubscribe_cleans_up() -> None:
    async def scenario() -> tuple[dict[str, object] | None, int]:
        broadcast = Broadcast()
        async with broadcast.subscribe("a") as a:
            async with broadcast.subscribe("b"):
                broadcast.publish("b", {"x": 1})
                broadcast.publish("a", {"x": 2})
            message = await a.get()
        return message, broadcast.subscribers("a") + broadcast.subscribers("b")

    message, left = asyncio.run(scenario())
    assert message == {"x": 2}
    assert left == 0
