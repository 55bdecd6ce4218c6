"""Dependencies shared by the routes: a database session per request, the chat by slug."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.chats import get_chat
from app.db.models import Chat


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.tc.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def chat_by_slug(slug: str, session: SessionDep) -> Chat:
    return get_chat(session, slug)


ChatDep = Annotated[Chat, Depends(chat_by_slug)]
