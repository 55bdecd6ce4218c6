"""Publish/subscribe for live updates, with one bounded queue per subscriber.

A subscriber that stops reading is not waited for: when its queue is full it is cut off (its
`Subscription.dropped` and `closed` are set, and its `deliver` ends), so one slow browser never
slows the others.
It can reconnect and start again from a fresh snapshot.

A subscriber with a sender (`Subscription.attach`, a WebSocket's send, and optionally a writer
of prepared frames) gets each message written by `publish` itself, in one loop over the
channel's subscribers, as long as its send completes without waiting (the socket takes the
bytes): waking one task per connection per update cost the server twice the CPU of that loop at
a thousand connections, and made the updates wait behind each other. A send that has to wait
(the socket's buffer is full: the client reads slowly) is handed, as it stands, to the
subscriber's own task (`Subscription.deliver`), which also sends whatever is published
meanwhile, in order, until it has caught up.

The in-memory backend serves one process; with `TWEETCHAT_REDIS_URL` the processes tell each
other what changed (app/live/sync.py) and each publishes its own updates here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 256

Message = dict[str, Any]
Sender = Callable[[Message], Coroutine[Any, Any, None]]
# Writes a message at once and returns True, or returns False when the sender must send it.
Writer = Callable[[Message], bool]


class Pending:
    """A send that could not complete at once: a coroutine suspended at its first wait (or the
    error it raised), for the subscriber's own task to await.

    Awaiting it resumes the coroutine where it stopped, as `await` on the coroutine would have
    (the future it waits on is passed up to the awaiting task unchanged): the same thing
    Python 3.12's eager tasks do.
    """

    __slots__ = ("_coro", "_error", "_waiting")

    def __init__(
        self,
        coro: Coroutine[Any, Any, None] | None,
        waiting: Any = None,
        error: BaseException | None = None,
    ) -> None:
        self._coro = coro
        self._waiting = waiting
        self._error = error

    def __await__(self) -> Generator[Any, Any, None]:
        if self._error is not None:
            raise self._error
        coro, value = self._coro, self._waiting
        assert coro is not None
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation too: it goes on to the send
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return

    def close(self) -> None:
        """Drop the send unfinished (its subscriber is gone)."""
        if self._coro is not None:
            self._coro.close()


def start(sender: Sender, message: Message) -> Pending | None:
    """Run `sender(message)` until it completes (None) or has to wait (a Pending to await).

    An error it raises before waiting is kept in the Pending, to be raised where it is awaited.
    """
    try:
        coro = sender(message)
        waiting = coro.send(None)
    except StopIteration:
        return None
    except Exception as exc:  # raised again where the send is awaited
        return Pending(None, error=exc)
    return Pending(coro, waiting)


@dataclass(eq=False)
class Subscription:
    channel: str
    queue: asyncio.Queue[Message | Pending | None] = field(
        default_factory=lambda: asyncio.Queue(DEFAULT_QUEUE_SIZE)
    )
    dropped: bool = False
    # Set when the subscription was cut off for not reading, so a sender blocked on a slow socket
    # can be cancelled at once.
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    # With a sender: publish sends at once while nothing is `busy` (a send pending, or messages
    # queued behind it); `since` is the loop time the send now pending began (None: none is).
    sender: Sender | None = None
    writer: Writer | None = None
    busy: bool = False
    since: float | None = None

    def attach(self, sender: Sender, writer: Writer | None = None) -> None:
        """From now on, publish sends messages with `sender` itself; run `deliver` beside.

        With a `writer` (app/api/frames.py), publish tries it first: what it writes costs no
        coroutine; what it declines goes to `sender` as before."""
        self.sender = sender
        self.writer = writer

    async def deliver(self) -> None:
        """Send, in order, what publish could not send at once (messages queued before the
        sender was attached, a send that had to wait, what was published meanwhile); returns
        when the subscription is dropped. Raises what the sender raises."""
        assert self.sender is not None, "attach a sender first"
        loop = asyncio.get_running_loop()
        while (item := await self.queue.get()) is not None:  # publish set `busy` with it
            if self.since is None:
                self.since = loop.time()
            if isinstance(item, Pending):
                await item
            else:
                await self.sender(item)
            self.since = None
            if self.queue.empty():
                self.busy = False

    def _discard_queued(self) -> None:
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if isinstance(item, Pending):
                item.close()


class Broadcast:
    """In-process pub/sub. `publish` never blocks: it is called from the ingest path."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = {}

    def subscribers(self, channel: str) -> int:
        return len(self._subscribers.get(channel, ()))

    def lagging(self, channel: str) -> int:
        """Subscribers with a send waiting or messages queued: their clients read slowly."""
        return sum(1 for s in self._subscribers.get(channel, ()) if s.busy)

    def publish(self, channel: str, message: Message) -> None:
        members = self._subscribers.get(channel)
        if not members:
            return
        for subscription in list(members):
            sender = subscription.sender
            if sender is not None and not subscription.busy and subscription.queue.empty():
                writer = subscription.writer
                if writer is not None:
                    try:
                        if writer(message):
                            continue  # written
                    except Exception:  # the sender meets the same trouble, for this one alone
                        log.debug("writer of %s failed", channel, exc_info=True)
                pending = start(sender, message)
                if pending is None:
                    continue  # sent
                subscription.busy = True
                subscription.since = asyncio.get_running_loop().time()
                subscription.queue.put_nowait(pending)  # the queue is empty: there is room
                continue
            subscription.busy = True
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
        subscription._discard_queued()
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
            subscription._discard_queued()
