"""Read-only chat endpoints: chats, figures, posts and the unanswered queue."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy import and_, func, or_, select
from starlette.background import BackgroundTask

from app.api.deps import ChatDep, SessionDep
from app.chats import get_series, list_chats
from app.db.models import Account, ChatPost, Post
from app.errors import NotFound
from app.export import FORMATS, MEDIA_TYPES, chat_info, export_chat
from app.links import NETWORKS
from app.stats import (
    Window,
    answers_filter,
    chat_stats,
    post_object,
    posts_query,
    unanswered_query,
    with_also,
)

router = APIRouter(prefix="/api")

NetworkParam = Annotated[
    str | None,
    Query(pattern=f"^({'|'.join(NETWORKS)})$", description="Only the posts of this network"),
]


@router.get("/chats")
def chats(session: SessionDep) -> list[dict[str, Any]]:
    return [chat_info(chat) for chat in list_chats(session)]


@router.get("/chats/{slug}")
def chat(chat: ChatDep) -> dict[str, Any]:
    return chat_info(chat)


@router.get("/chats/{slug}/stats")
def stats(chat: ChatDep, session: SessionDep, window: Window = "chat") -> dict[str, Any]:
    return chat_stats(session, chat, window)


@router.get("/chats/{slug}/posts")
def posts(
    chat: ChatDep,
    session: SessionDep,
    question: Annotated[int | None, Query(ge=0, description="0: posts with no question")] = None,
    kind: Annotated[str | None, Query(pattern="^(original|reply|quote|retweet)$")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text contains")] = None,
    author: Annotated[str | None, Query(max_length=320)] = None,
    network: NetworkParam = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """The chat's collected posts, newest first, with filters. A cross-post shows once: its
    copies on other networks are listed under the first post's `also`."""
    query, _ = posts_query(chat)
    where = [ChatPost.chat_id == chat.id, ChatPost.copy_of.is_(None)]
    if question == 0:
        where.append(ChatPost.question.is_(None))
    elif question is not None:
        where.append(ChatPost.question == question)
    if kind:
        where.append(ChatPost.kind == kind)
    if network:
        where.append(ChatPost.network == network)
    if q:
        where.append(func.lower(Post.text).contains(q.lower(), autoescape=True))
    if author:
        name = author.lstrip("@").lower()
        where.append(
            or_(
                func.lower(Account.username) == name,
                func.lower(Account.name).contains(name, autoescape=True),
            )
        )
    total = session.scalar(
        select(func.count())
        .select_from(ChatPost)
        .join(Post, and_(Post.network == ChatPost.network, Post.id == ChatPost.post_id))
        .outerjoin(Account, and_(Account.network == Post.network, Account.id == Post.author_id))
        .where(*where)
    )
    rows = session.execute(
        query.where(*where)
        .order_by(ChatPost.created_at.desc(), ChatPost.post_id.desc())
        .limit(limit)
        .offset(offset)
    )
    items = with_also(session, chat.id, [post_object(*row) for row in rows])
    return {"total": total or 0, "posts": items}


@router.get("/chats/{slug}/unanswered")
def unanswered(
    chat: ChatDep,
    session: SessionDep,
    question: Annotated[int | None, Query(ge=1)] = None,
    network: NetworkParam = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Answers nobody on the panel has replied to yet, newest first (PRODUCT.md)."""
    where = ChatPost.chat_id == chat.id
    if question is not None:
        where = and_(where, ChatPost.question == question)
    if network:
        where = and_(where, ChatPost.network == network)
    answers, staff = answers_filter(session, chat, where)
    query, _ = posts_query(chat)
    rows = session.execute(
        query.where(unanswered_query(chat, answers, staff))
        .order_by(ChatPost.created_at.desc(), ChatPost.post_id.desc())
        .limit(limit)
    )
    items = with_also(session, chat.id, [post_object(*row) for row in rows])
    return {"count": len(items), "posts": items}


@router.get("/series/{slug}")
async def series(slug: str, session: SessionDep) -> dict[str, Any]:
    """A series' month-over-month figures: one row per chat, oldest first."""
    from app.report.data import build_series_report, series_figures

    found = get_series(session, slug)
    report = await run_in_threadpool(build_series_report, session, found)
    return {"series": found.slug, "title": found.title, "chats": series_figures(report)}


@router.get("/chats/{slug}/export.{fmt}")
async def export(slug: str, fmt: str, chat: ChatDep, session: SessionDep) -> FileResponse:
    """The chat's posts with their tags (and, in XLSX and JSON, its figures) as a download, or
    its report (html)."""
    if fmt not in FORMATS:
        raise NotFound(f"no export as {fmt!r}; there are {', '.join(FORMATS)}")
    folder = Path(tempfile.mkdtemp(prefix="tweetchat-export-"))
    path = folder / f"{chat.slug}.{fmt}"
    await run_in_threadpool(export_chat, session, chat, fmt, path)
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[fmt],
        filename=path.name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
