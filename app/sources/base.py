"""What every source hands the pipeline, and what the pipeline hands every source.

A source never writes to the database itself. It emits `SourceBatch`es into the chat's bounded
queue (waiting when the queue is full) and reports its state. Each batch may carry the source's
new position; the ingest worker stores that position only after the batch's posts are committed,
so a crash at any moment resumes from a position whose posts are all stored: posts may be read
again after a crash (and are then stored once), but none is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from app.ingest.parse import Parsed

# The names sources report under (and keep their positions by): the X sources, the Mastodon
# source (every server of the chat: app.sources.mastodon.SOURCE), the Bluesky source
# (app.sources.bluesky.SOURCE), a replay, and the X refreshes of trends and metrics.
SourceName = Literal[
    "x-search", "x-stream", "mastodon", "bluesky", "replay", "x-refresh", "x-trends", "x-lookup"
]
State = Literal["starting", "running", "waiting", "failing", "stopped"]


@dataclass(slots=True)
class SourceBatch:
    source: str
    parsed: Parsed
    # Merged into the stored position after the batch is committed (None: position unchanged).
    position: dict[str, Any] | None = None
    # Posts this request returned (data + includes.tweets), for the X spend estimate.
    posts_read: int = 0
    requests: int = 1
    # The X API pages `parsed` is the whole of (`parse_object` of each), when the source kept
    # their bytes: a storage process parses them again instead of being handed the records.
    pages: list[bytes] | None = None


@dataclass(frozen=True, slots=True)
class SourceStatus:
    source: str
    state: State
    detail: str = ""
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChatTarget:
    """What a source needs to know of the chat it collects."""

    slug: str
    hashtags: tuple[str, ...]
    start: datetime
    end: datetime
    # How long before the start a first search reaches back (the week's activity around a chat
    # is part of its report); recent search itself reaches 7 days at most.
    lookback: timedelta = timedelta(hours=72)


class SourceContext(Protocol):
    @property
    def chat(self) -> ChatTarget: ...

    # The position stored after the last committed batch of this source ({} at first).
    position: dict[str, Any]

    async def emit(self, batch: SourceBatch) -> None:
        """Queue a batch for ingest; waits while the chat's queue is full."""

    def report(self, status: SourceStatus) -> None:
        """Record the source's state (shown on the panel, written to the log)."""


@dataclass
class RecordingContext:
    """A SourceContext that keeps what it is given: for tests and one-off runs."""

    chat: ChatTarget
    position: dict[str, Any] = field(default_factory=dict)
    batches: list[SourceBatch] = field(default_factory=list)
    statuses: list[SourceStatus] = field(default_factory=list)

    async def emit(self, batch: SourceBatch) -> None:
        self.batches.append(batch)
        if batch.position:
            self.position = {**self.position, **batch.position}

    def report(self, status: SourceStatus) -> None:
        self.statuses.append(status)
