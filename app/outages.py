"""Where a chat's collection had gaps: each live source's outages.

An outage of a source begins with its first `waiting` (rate limited) or `failing` report and
ends with its next `running` or `stopped` one; the reports in between (retries, a rate limit
after an error) belong to the same outage, which keeps the state and reason that began it.
Only the sources that collect posts have outages: trends and metric refreshes lose no post.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Chat, SourceOutage

# The sources whose outages can lose posts.
POST_SOURCES = frozenset({"x-search", "x-stream", "replay", "mastodon", "bluesky"})
OUTAGE_STATES = frozenset({"waiting", "failing"})
RECOVERED_STATES = frozenset({"running", "stopped"})


def open_outage(session: Session, chat_id: int, source: str) -> SourceOutage | None:
    """The source's outage that has not ended yet, if any."""
    return session.scalar(
        select(SourceOutage)
        .where(
            SourceOutage.chat_id == chat_id,
            SourceOutage.source == source,
            SourceOutage.ended_at.is_(None),
        )
        .order_by(SourceOutage.started_at.desc(), SourceOutage.id.desc())
        .limit(1)
    )


def record_state(
    session: Session, chat_id: int, source: str, state: str, detail: str, now: datetime
) -> None:
    """Open or close the source's outage after it reported `state` (in the caller's
    transaction). `starting` changes nothing: a source restarted during an outage is still out
    until it runs."""
    if source not in POST_SOURCES:
        return
    if state in OUTAGE_STATES:
        if open_outage(session, chat_id, source) is None:
            session.add(
                SourceOutage(
                    chat_id=chat_id,
                    source=source,
                    started_at=now,
                    ended_at=None,
                    state=state,
                    detail=detail,
                )
            )
    elif state in RECOVERED_STATES:
        outage = open_outage(session, chat_id, source)
        if outage is not None:
            outage.ended_at = max(now, outage.started_at)


def chat_outages(session: Session, chat: Chat) -> list[dict[str, Any]]:
    """The chat's outages, oldest first: {"source", "state", "detail", "started_at",
    "ended_at" (None while it lasts), "seconds" (its length; None while it lasts)}."""
    rows = session.scalars(
        select(SourceOutage)
        .where(SourceOutage.chat_id == chat.id)
        .order_by(SourceOutage.started_at, SourceOutage.id)
    )
    return [
        {
            "source": row.source,
            "state": row.state,
            "detail": row.detail,
            "started_at": row.started_at,
            "ended_at": row.ended_at,
            "seconds": (
                (row.ended_at - row.started_at).total_seconds()
                if row.ended_at is not None
                else None
            ),
        }
        for row in rows
    ]
