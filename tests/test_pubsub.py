"""The pub/sub's bounded queues: a subscriber that stops reading is cut off, the others are not."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from app.live.pubsub import Broadcast
from app.live.runtime import IDLE_LOOK, ChatRuntime, UpdatePace


class FakeSocket:
    """A socket as uvicorn's WebSocket protocol behaves: a send waits only while the transport
    has paused writing (its buffer is full), then writes."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.got: list[int] = []
        self.written: list[int] = []  # by `write`

    async def send(self, message: dict[str, Any]) -> None:
        await self.writable.wait()
        if message.get("boom"):
            raise OSError("connection reset")
        self.got.append(message["n"])

    def write(self, message: dict[str, Any]) -> bool:
        """As app/api/frames.py's writer: writes only when the send would not wait."""
        if message.get("bad frame"):
            raise RuntimeError("a writer that fails")
        if not self.writable.is_set():
            return False
        self.written.append(message["n"])
        self.got.append(message["n"])
        return True


def test_publish_writes_to_sockets_that_take_it_at_once_without_waking_a_task() -> None:
    async def scenario() -> tuple[list[list[int]], bool]:
        broadcast = Broadcast()
        sockets = [FakeSocket() for _ in range(3)]
        async with contextlib.AsyncExitStack() as stack:
            for socket in sockets:
                subscription = await stack.enter_async_context(broadcast.subscribe("c"))
                subscription.attach(socket.send)
            for n in range(5):
                broadcast.publish("c", {"n": n})
            # Written by publish itself, before anything else ran: no deliver task exists.
            got = [list(socket.got) for socket in sockets]
            return got, subscription.busy

    got, busy = asyncio.run(scenario())
    assert got == [[0, 1, 2, 3, 4]] * 3
    assert not busy


def test_a_send_that_waits_goes_on_in_the_subscribers_task_in_order() -> None:
    async def scenario() -> tuple[list[int], list[int], float | None, float | None, bool]:
        broadcast = Broadcast()
        fast, slow = FakeSocket(), FakeSocket()
        async with broadcast.subscribe("c") as a, broadcast.subscribe("c") as b:
            a.attach(fast.send)
            b.attach(slow.send)
            delivering = asyncio.create_task(b.deliver())
            broadcast.publish("c", {"n": 0})
            slow.writable.clear()  # the slow client's buffer fills up
            for n in range(1, 6):
                broadcast.publish("c", {"n": n})
                await asyncio.sleep(0)
            fast_got = list(fast.got)  # the fast one got everything at once
            since_while_stuck = b.since
            slow.writable.set()  # the client reads again
            for _ in range(10):
                await asyncio.sleep(0)
            broadcast.publish("c", {"n": 6})  # caught up: written by publish again
            delivering.cancel()
            return fast_got, slow.got, since_while_stuck, b.since, b.busy

    fast_got, slow_got, since_stuck, since_after, busy = asyncio.run(scenario())
    assert fast_got == [0, 1, 2, 3, 4, 5]
    assert slow_got == [0, 1, 2, 3, 4, 5, 6]  # every message once, in order
    assert since_stuck is not None  # the watchdog sees the send pending
    assert since_after is None and not busy


def test_a_writer_is_tried_first_and_what_it_declines_goes_through_the_sender_in_order() -> None:
    async def scenario() -> tuple[list[int], list[int], bool]:
        broadcast = Broadcast()
        socket = FakeSocket()
        async with broadcast.subscribe("c") as subscription:
            subscription.attach(socket.send, socket.write)
            delivering = asyncio.create_task(subscription.deliver())
            broadcast.publish("c", {"n": 0})  # written
            socket.writable.clear()  # paused: the writer declines, the sender waits
            broadcast.publish("c", {"n": 1})
            broadcast.publish("c", {"n": 2})  # queued behind it, not written past it
            socket.writable.set()
            broadcast.publish("c", {"n": 3})  # writable again, but 1 and 2 are not sent yet
            for _ in range(10):
                await asyncio.sleep(0)
            broadcast.publish("c", {"n": 4, "bad frame": True})  # the sender takes over
            broadcast.publish("c", {"n": 5})  # caught up: written again
            delivering.cancel()
            return socket.got, socket.written, subscription.busy

    got, written, busy = asyncio.run(scenario())
    assert got == [0, 1, 2, 3, 4, 5]  # every message once, in order
    assert written == [0, 5]
    assert not busy


def test_a_socket_that_never_drains_is_dropped_without_holding_the_others() -> None:
    async def scenario() -> tuple[list[int], bool, bool, int]:
        broadcast = Broadcast(queue_size=4)
        fast, stuck = FakeSocket(), FakeSocket()
        stuck.writable.clear()
        async with broadcast.subscribe("c") as a, broadcast.subscribe("c") as b:
            a.attach(fast.send)
            b.attach(stuck.send)
            delivering = asyncio.create_task(b.deliver())
            for n in range(20):
                broadcast.publish("c", {"n": n})
                await asyncio.sleep(0)
            closed = b.closed.is_set()  # what the connection's watchdog waits on
            delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivering
            return fast.got, b.dropped, closed, broadcast.subscribers("c")

    fast_got, dropped, closed, left = asyncio.run(scenario())
    assert fast_got == list(range(20))
    assert dropped and closed
    assert left == 1  # only the fast one is still subscribed


def test_an_error_in_a_send_reaches_the_subscribers_task() -> None:
    async def scenario() -> BaseException | None:
        broadcast = Broadcast()
        socket = FakeSocket()
        async with broadcast.subscribe("c") as subscription:
            subscription.attach(socket.send)
            broadcast.publish("c", {"n": 0, "boom": True})  # publish itself does not raise
            try:
                await asyncio.wait_for(subscription.deliver(), 2)
            except OSError as exc:
                return exc
        return None

    error = asyncio.run(scenario())
    assert isinstance(error, OSError) and "reset" in str(error)


def test_messages_published_before_the_sender_is_attached_come_first() -> None:
    async def scenario() -> list[int]:
        broadcast = Broadcast()
        socket = FakeSocket()
        async with broadcast.subscribe("c") as subscription:
            broadcast.publish("c", {"n": 0})  # while the snapshot is being sent
            subscription.attach(socket.send)
            broadcast.publish("c", {"n": 1})  # queued behind 0, not written ahead of it
            delivering = asyncio.create_task(subscription.deliver())
            for _ in range(5):
                await asyncio.sleep(0)
            broadcast.publish("c", {"n": 2})
            delivering.cancel()
            return socket.got

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_updates_are_paced_by_the_interval_and_by_how_long_the_last_took_to_send() -> None:
    pace = UpdatePace(interval=0.1)
    assert pace.due(0.0)  # a change after a quiet spell goes out at once
    pace.sent(0.0, 0.03)  # a thousand pages: 30 ms
    assert not pace.due(0.09)
    assert pace.due(0.1)  # the interval binds, not the time it took
    pace.sent(1.0, 1.4)  # five thousand pages: 400 ms
    assert not pace.due(1.4)
    assert not pace.due(1.59)  # half as long again left to the rest of the server
    assert pace.due(1.6)


def test_an_idle_chat_sleeps_until_a_held_post_falls_due_or_a_change_wakes_it() -> None:
    runtime = ChatRuntime(slug="idle", sessions=None, broadcast=Broadcast())  # type: ignore[arg-type]
    screen = runtime.screen
    assert runtime._release_held() == IDLE_LOOK  # nothing held: the longest sleep
    screen.hold("approval", math.inf)  # held for approval: an action wakes it
    assert runtime._release_held() == IDLE_LOOK
    screen.hold("delayed", time.monotonic() + 0.2)  # the screen's delay
    screen.hold("later", time.monotonic() + 0.3)
    assert 0.1 < runtime._release_held() <= 0.2
    screen.hold("late", time.monotonic() - 1)  # due already: shown now
    assert 0.1 < runtime._release_held() <= 0.2
    assert list(screen.wall) == ["late"] and "late" not in screen.held
    screen.held.pop("delayed")  # hidden or approved meanwhile: the next is "later"
    assert 0.2 < runtime._release_held() <= 0.3
    assert list(screen.wall) == ["late"] and set(screen.held) == {"approval", "later"}


def test_channels_are_separate_and_unsubscribe_cleans_up() -> None:
    async def scenario() -> tuple[list[int], list[int], int]:
        broadcast = Broadcast()
        a, b = FakeSocket(), FakeSocket()
        async with broadcast.subscribe("a") as on_a:
            on_a.attach(a.send)
            async with broadcast.subscribe("b") as on_b:
                on_b.attach(b.send)
                broadcast.publish("b", {"n": 1})
                broadcast.publish("a", {"n": 2})
            broadcast.publish("b", {"n": 3})  # nobody left on b
        return a.got, b.got, broadcast.subscribers("a") + broadcast.subscribers("b")

    a_got, b_got, left = asyncio.run(scenario())
    assert a_got == [2] and b_got == [1]
    assert left == 0
