"""Publish/subscribe for live updates, with one bounded queue per subscriber.

A subscriber that stops reading is not waited for: when its queue is full it is cut off (its
`Subscription.dropped` is set and its iterator ends), so one slow browser never slows the others.
It can reconnect and start again from a fresh snapshot.

The in-memory backend serves one process; `TWEETCHAT_REDIS_URL` will select a Redis backend with
the same interface for several processes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 256


@dataclass(eq=False)
class Subscription:
    channel: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(DEFAULT_QUEUE_SIZE)
    )
    dropped: bool = False
    # Set when the subscription was cut off for not reading, so a sender blocked on a slow socket
    # can be cancelled at once.
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            message = await self.queue.get()
            if message is None:
                return
            yield message

    async def get(self) -> dict[str, Any] | None:
        """The next message, or None once the subscription was dropped or closed."""
        return await self.queue.get()


class Broadcast:
    """In-process pub/sub. `publish` never blocks: it is called from the ingest path."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = {}

    def subscribers(self, channel: str) -> int:
        return len(self._subscribers.get(channel, ()))

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        for subscription in list(self._subscribers.get(channel, ())):
            try:
                subscription.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._drop(subscription)

    def _drop(self, subscription: Subscription) -> None:
        log.info("dropping a subscriber of %s that stopped reading", subscription.channel)
        subscription.dropped = True
        subscription.closed.set()
        self._remove(subscription)
        # Make room for the end marker so that a reader that wakes up sees the end at once.
        while not subscription.queue.empty():
            subscription.queue.get_nowait()
        subscription.queue.put_nowait(None)

    def _remove(self, subscription: Subscription) -> None:
        members = self._subscribers.get(subscription.channel)
        if members is not None:
            members.discard(subscription)
            if not members:
                del self._subscribers[subscription.channel]

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(channel, asyncio.Queue(self._queue_size))
        self._subscribers.setdefault(channel, set()).add(subscription)
        try:
            yield subscription
        finally:
            self._remove(subscription)
