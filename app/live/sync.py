"""Keeping several server processes in step through Redis pub/sub.

Every process keeps each open chat's live state (figures, screen, queue) and sends its own
browsers their updates. What changes that state in one process is announced to the others on the
chat's Redis channel, *after* it is committed to the database: a batch of posts stored (their
ids), a panel action (the post), a manual tag, the screen's settings, the run of show, a source's
state, the trends. A process that hears of a change reads what changed from the database and
applies it as if it were its own, so every process shows the same thing, whichever one a browser
is connected to. Messages carry the sending process's id; a process ignores its own.

Without `TWEETCHAT_REDIS_URL` there is one process and nothing to announce (`LocalSync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class LocalSync:
    """One process: nothing to tell anyone."""

    origin = "local"
    shared = False

    async def start(self) -> None:
        return None

    async def publish(self, slug: str, message: dict[str, Any]) -> None:
        return None

    async def subscribe(self, slug: str, handler: Handler) -> None:
        return None

    async def unsubscribe(self, slug: str) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisSync:
    """Redis pub/sub: one connection publishes, one subscribes to the open chats' channels.

    Channels are named after the database (a hash of its URL), so processes share live state
    exactly when they share a database, and two deployments can share one Redis.
    """

    shared = True

    def __init__(self, url: str, database_url: str) -> None:
        self.url = url
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.namespace = hashlib.sha256(database_url.encode()).hexdigest()[:12]
        self._handlers: dict[str, Handler] = {}
        self._client: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None

    def channel(self, slug: str) -> str:
        return f"tweetchat:{self.namespace}:chat:{slug}"

    async def start(self) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(self.url, decode_responses=True)
        await self._client.ping()  # a wrong URL fails at start, with Redis's own words
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._reader = asyncio.create_task(self._read(), name="redis-sync")

    async def publish(self, slug: str, message: dict[str, Any]) -> None:
        if self._client is None:
            return
        body = json.dumps({**message, "origin": self.origin}, separators=(",", ":"))
        try:
            await self._client.publish(self.channel(slug), body)
        except Exception:
            # The change is stored; other processes see it on their next reload. Say so.
            log.exception("could not announce a change of %s on Redis", slug)

    async def subscribe(self, slug: str, handler: Handler) -> None:
        self._handlers[slug] = handler
        if self._pubsub is not None:
            await self._pubsub.subscribe(self.channel(slug))

    async def unsubscribe(self, slug: str) -> None:
        self._handlers.pop(slug, None)
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(self.channel(slug))

    async def _read(self) -> None:
        prefix = f"tweetchat:{self.namespace}:chat:"
        while True:
            try:
                if not self._handlers:
                    await asyncio.sleep(0.05)  # nothing subscribed yet: get_message would fail
                    continue
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lost the Redis subscription; retrying")
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            slug = str(message["channel"])[len(prefix) :]
            try:
                body = json.loads(message["data"])
            except ValueError:
                log.warning("ignored a malformed message on %s", message["channel"])
                continue
            if body.get("origin") == self.origin:
                continue
            handler = self._handlers.get(slug)
            if handler is not None:
                try:
                    await handler(body)
                except Exception:
                    log.exception("could not apply a change of %s from another process", slug)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()


Sync = LocalSync | RedisSync


def make_sync(redis_url: str | None, database_url: str) -> Sync:
    return RedisSync(redis_url, database_url) if redis_url else LocalSync()
