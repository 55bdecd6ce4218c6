"""The live side of a server process: one `ChatRuntime` per chat someone watches or a source
feeds, the sources' tasks, and the supervisor that follows every chat whose window is open.

A chat's sources, each a task of its own with its own stored position: its X source (x-search or
x-stream, with the trends and metrics refresh), one "mastodon" source for all its Mastodon
servers, and a "bluesky" source (app.chats.ChatSources says which it names).

With several processes (PostgreSQL and Redis), every process serves every chat, but only the
holder of a chat's lease (app/live/lease.py) collects it; the others try for the lease every
second and the first to get it after the collector dies takes in what the collector stored but
did not announce, then resumes its sources from their stored positions."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.chats import ChatSources, get_chat
from app.config import Settings
from app.db.models import Chat, TrendSnapshot
from app.live.lease import LEASE_RETRY, Leases, LocalLeases
from app.live.pubsub import Broadcast
from app.live.runtime import ChatRuntime, SourceView
from app.live.sync import LocalSync, Sync
from app.sources.base import ChatTarget, SourceBatch, SourceStatus
from app.sources.bluesky import SOURCE as BLUESKY
from app.sources.bluesky import BlueskyClient, run_bluesky
from app.sources.mastodon import SOURCE as MASTODON
from app.sources.mastodon import MastodonClient, run_mastodon
from app.sources.replay import Timeline, run_replay
from app.sources.x_api import XApi, XApiError
from app.sources.x_refresh import fetch_trends, lookup_posts
from app.sources.x_search import Backoff, run_search
from app.sources.x_stream import run_stream
from app.stats import trending_of

log = logging.getLogger(__name__)

# A chat is followed from a little before it starts until a while after it ends.
FOLLOW_BEFORE = timedelta(minutes=15)
FOLLOW_AFTER = timedelta(hours=1)
SUPERVISE_EVERY = 30.0
X_SOURCES = ("x-search", "x-stream")


@dataclass
class RuntimeContext:
    """A source's view of a chat runtime (the `SourceContext` protocol)."""

    runtime: ChatRuntime
    source: str
    position: dict[str, Any]

    @property
    def chat(self) -> ChatTarget:
        assert self.runtime.target is not None
        return self.runtime.target

    async def emit(self, batch: SourceBatch) -> None:
        await self.runtime.emit(batch)
        if batch.position:
            self.position = {**self.position, **batch.position}

    def report(self, status: SourceStatus) -> None:
        self.runtime.report(status)


class LiveHub:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        broadcast: Broadcast,
        sync: Sync | None = None,
        leases: Leases | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.broadcast = broadcast
        self.sync: Sync = sync or LocalSync()
        self.leases: Leases = leases or LocalLeases()
        # Chats this process would collect if it held their lease.
        self._wanted: set[str] = set()
        self._leaser: asyncio.Task[None] | None = None
        self._replays: dict[str, tuple[Timeline, float, float]] = {}
        self._runtimes: dict[str, ChatRuntime] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._sources: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._api: XApi | None = None

    async def runtime(self, slug: str) -> ChatRuntime:
        """The chat's runtime, started on first use (raises UnknownChat)."""
        runtime = self._runtimes.get(slug)
        if runtime is not None:
            return runtime
        lock = self._starting.setdefault(slug, asyncio.Lock())
        async with lock:
            runtime = self._runtimes.get(slug)
            if runtime is None:
                runtime = ChatRuntime(
                    slug=slug,
                    sessions=self.sessions,
                    broadcast=self.broadcast,
                    sync=self.sync,
                    price_per_post=self.settings.x_price_per_post,
                    lookback=timedelta(hours=self.settings.collect_hours_before),
                    update_interval=self.settings.update_interval,
                    storage_process=self.settings.storage_process,
                )
                await runtime.start()
                self._runtimes[slug] = runtime
        return runtime

    def running(self, slug: str) -> ChatRuntime | None:
        """The chat's runtime if this process has started it (None: nothing to update)."""
        return self._runtimes.get(slug)

    async def start(self) -> None:
        """Start following the chats whose window is open (and keep doing so)."""
        self._supervisor = asyncio.create_task(self._supervise(), name="supervisor")
        if self.leases.shared:
            self._leaser = asyncio.create_task(self._keep_leases(), name="leases")

    def collecting(self) -> list[str]:
        """The chats this process collects (holds the lease of)."""
        return sorted(self.leases.held())

    async def _lease(self, slug: str, runtime: ChatRuntime) -> bool:
        """Hold the chat's lease (asking for it if needed); on a fresh lease, first take in
        what the previous collector stored."""
        if slug in self.leases.held():
            return True
        if not await self.leases.acquire(slug):
            return False
        if self.leases.shared:
            caught = await runtime.catch_up()
            if caught:
                log.info("%s: took in %d posts the previous collector stored", slug, caught)
        return True

    async def _keep_leases(self) -> None:
        """Every LEASE_RETRY seconds: check the leases held are still held, and ask again for
        those of the chats wanted."""
        while True:
            await asyncio.sleep(LEASE_RETRY)
            try:
                held = self.leases.held()
                if held and not await self.leases.alive():
                    for slug in held:
                        log.error("%s: lost the lease; stopping its sources", slug)
                        self._stop_sources(slug)
                        if slug in self._replays:  # waits for the lease again, then resumes
                            timeline, speed, max_gap = self._replays[slug]
                            await self.start_replay(slug, timeline, speed=speed, max_gap=max_gap)
                        else:
                            self._wanted.add(slug)
                for slug in sorted(self._wanted - self.leases.held()):
                    await self.follow(slug)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not check the collect leases")

    async def _supervise(self) -> None:
        while True:
            try:
                open_now = set(self.open_chats(self.now()))
                for slug in open_now:
                    await self.follow(slug)
                for slug in {chat for chat, _ in self._sources} - open_now:
                    self.unfollow(slug)
            except Exception:
                log.exception("the supervisor could not check the open chats")
            await asyncio.sleep(SUPERVISE_EVERY)

    async def follow(self, slug: str) -> None:
        """Run the chat's live sources, unless running: its X source (with the trends and
        metrics refresh), its Mastodon servers (one "mastodon" source) and Bluesky, each on its
        own; a network that cannot run (no X bearer token) leaves the others running."""
        runtime = await self.runtime(slug)
        sources = await runtime.run_db(functools.partial(self._chat_sources, slug))
        works: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        if sources.x in X_SOURCES:
            if self.settings.x_bearer_token:
                works[sources.x] = functools.partial(self._x_source, runtime, sources.x)
                works["x-refresh"] = functools.partial(self._x_refresh, runtime)
            elif runtime.sources.get(sources.x, SourceView()).state != "stopped":
                runtime.report(
                    SourceStatus(
                        sources.x, "stopped", "no X bearer token: set TWEETCHAT_X_BEARER_TOKEN"
                    )
                )
        if sources.mastodon:
            works[MASTODON] = functools.partial(self._mastodon, runtime, sources.mastodon)
        if sources.bluesky:
            works[BLUESKY] = functools.partial(self._bluesky, runtime)
        missing = [name for name in works if not self._running(slug, name)]
        if not missing:
            return  # checked every SUPERVISE_EVERY seconds: nothing to start when all run
        self._wanted.add(slug)
        if not await self._lease(slug, runtime):
            return  # another process collects it; we try again every LEASE_RETRY seconds
        for name in missing:
            self._start_source(slug, name, works[name]())

    def _chat_sources(self, slug: str) -> ChatSources:
        with self.sessions() as session:
            return ChatSources.of(get_chat(session, slug))

    def _running(self, slug: str, source: str) -> bool:
        task = self._sources.get((slug, source))
        return task is not None and not task.done()

    def _x_source(self, runtime: ChatRuntime, source: str) -> Coroutine[Any, Any, None]:
        api = self._x_api()
        ctx = self.context(runtime, source)
        scale = self.settings.x_backoff_scale
        backoff = Backoff(base=1.0 * scale, cap=60.0 * scale, reset_margin=1.0 * scale)
        if source == "x-search":
            return run_search(ctx, api, interval=self.settings.search_interval, backoff=backoff)
        return run_stream(
            ctx,
            api,
            keepalive_timeout=self.settings.x_stream_keepalive_timeout,
            backoff_scale=scale,
            search_backoff=backoff,
        )

    def _x_refresh(self, runtime: ChatRuntime) -> Coroutine[Any, Any, None]:
        return self._refresh(runtime, self._x_api())

    def _network_backoff(self) -> Backoff:
        scale = self.settings.network_backoff_scale
        return Backoff(base=1.0 * scale, cap=60.0 * scale, reset_margin=1.0 * scale)

    async def _mastodon(self, runtime: ChatRuntime, servers: Sequence[str]) -> None:
        """The chat's Mastodon servers as one source: a server with a user token
        (TWEETCHAT_MASTODON_TOKEN_<HOST>) is streamed, the others polled."""
        settings = self.settings
        clients = [
            MastodonClient(settings.mastodon_url(host), settings.mastodon_token(host))
            for host in servers
        ]
        try:
            await run_mastodon(
                self.context(runtime, MASTODON),
                clients,
                interval=settings.search_interval,
                keepalive_timeout=settings.mastodon_keepalive_timeout,
                backoff=self._network_backoff(),
            )
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _bluesky(self, runtime: ChatRuntime) -> None:
        """Bluesky's search: the public AppView, or the PDS with the configured app password
        when the AppView refuses."""
        settings = self.settings
        client = BlueskyClient(
            settings.bluesky_url,
            settings.bluesky_pds_url,
            settings.bluesky_identifier,
            settings.bluesky_app_password,
        )
        try:
            await run_bluesky(
                self.context(runtime, BLUESKY),
                client,
                interval=settings.search_interval,
                backoff=self._network_backoff(),
            )
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    def _x_api(self) -> XApi:
        if self._api is None:
            self._api = XApi.from_settings(self.settings)
        return self._api

    def unfollow(self, slug: str) -> None:
        self._wanted.discard(slug)
        self._stop_sources(slug, keep_replay=True)
        if not any(chat == slug for chat, _ in self._sources):
            asyncio.get_running_loop().create_task(self.leases.release(slug))

    def _stop_sources(self, slug: str, keep_replay: bool = False) -> None:
        for (chat, source), task in list(self._sources.items()):
            if chat == slug and not (keep_replay and source == "replay"):
                task.cancel()
                del self._sources[(chat, source)]

    async def _refresh(self, runtime: ChatRuntime, api: XApi) -> None:
        """Every few minutes while the chat is followed: trends, and the top posts' metrics
        and polls (the figures rank posts by them)."""
        while True:
            await self.refresh_once(runtime, api)
            await asyncio.sleep(self.settings.refresh_interval)

    async def refresh_once(self, runtime: ChatRuntime, api: XApi) -> None:
        result = await fetch_trends(api, self.settings.trends_woeid)
        trends = [
            {"name": t.name, "tweet_count": t.tweet_count, "rank": t.rank} for t in result.trends
        ]
        snapshot = TrendSnapshot(
            chat_id=runtime.chat_id,
            taken_at=self.now(),
            woeid=result.woeid,
            location=self.settings.trends_location,
            available=result.ok,
            detail=result.reason,
            trends=trends,
        )
        await asyncio.get_running_loop().run_in_executor(None, self._save, snapshot)
        runtime.set_trends(*trending_of(snapshot, list(runtime.info["hashtags"])))
        ids = runtime.refresh_ids()
        if not ids:
            return
        try:
            parsed = await lookup_posts(api, ids)
        except XApiError as exc:
            runtime.report(SourceStatus("x-lookup", "failing", exc.message))
            return
        # Only posts the chat collected already: a lookup refreshes, it never collects.
        parsed.collected = [p for p in parsed.collected if p.id in runtime.collected]
        parsed.context = []
        await runtime.emit(
            SourceBatch("x-lookup", parsed, posts_read=len(parsed.collected), requests=1)
        )
        runtime.report(
            SourceStatus("x-lookup", "running", f"refreshed {len(parsed.collected)} posts")
        )

    def _save(self, row: TrendSnapshot) -> None:
        with self.sessions.begin() as session:
            session.add(row)

    def context(self, runtime: ChatRuntime, source: str) -> RuntimeContext:
        return RuntimeContext(runtime, source, runtime.position(source))

    async def start_replay(
        self, slug: str, timeline: Timeline, *, speed: float, max_gap: float = 5.0
    ) -> asyncio.Task[None]:
        """Play `timeline` into the chat once this process holds its lease (at once with one
        process), from the stored position: a replay taken over resumes where it stopped."""
        runtime = await self.runtime(slug)
        self._replays[slug] = (timeline, speed, max_gap)

        async def leased() -> None:
            while not await self._lease(slug, runtime):
                await asyncio.sleep(LEASE_RETRY)
            ctx = self.context(runtime, "replay")
            await run_replay(ctx, timeline, speed=speed, max_gap=max_gap)

        return self._start_source(slug, "replay", leased())

    def _start_source(self, slug: str, source: str, work: Any) -> asyncio.Task[None]:
        key = (slug, source)
        running = self._sources.get(key)
        if running is not None and not running.done():
            work.close()
            return running
        task: asyncio.Task[None] = asyncio.create_task(work, name=f"{source}:{slug}")
        task.add_done_callback(functools.partial(self._source_done, key))
        self._sources[key] = task
        return task

    def _source_done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("source %s of %s crashed: %r", key[1], key[0], error, exc_info=error)
            runtime = self._runtimes.get(key[0])
            if runtime is not None:
                runtime.report(SourceStatus(key[1], "stopped", f"crashed: {error!r}"))

    def open_chats(self, now: datetime) -> list[str]:
        """Chats with a live source (on any network) whose follow window is open."""
        with self.sessions() as session:
            chats = session.scalars(
                select(Chat).where(
                    Chat.start_at <= now + FOLLOW_BEFORE,
                    Chat.end_at > now - FOLLOW_AFTER,
                )
            ).all()
            return [chat.slug for chat in chats if ChatSources.of(chat).live]

    async def close(self) -> None:
        for background in (self._supervisor, self._leaser):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        for task in self._sources.values():
            task.cancel()
        for task in self._sources.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._sources.clear()
        for runtime in self._runtimes.values():
            await runtime.stop()
        self._runtimes.clear()
        if self._api is not None:
            await self._api.aclose()
            self._api = None
        await self.leases.close()

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)
