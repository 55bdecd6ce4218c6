"""Dependencies shared by the routes: a database session per request, the chat by slug."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.chats import get_chat
from app.db.models import Chat
from app.live.hub import LiveHub
from app.panel import Principal, authenticate, require_admin


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.tc.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def chat_by_slug(slug: str, session: SessionDep) -> Chat:
    return get_chat(session, slug)


ChatDep = Annotated[Chat, Depends(chat_by_slug)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def panel_user(request: Request, chat: ChatDep, session: SessionDep) -> Principal:
    """The panel member (or admin) acting on this chat; 401/403 otherwise."""
    return authenticate(
        session,
        chat=chat,
        token=bearer_token(request),
        admin_token=request.app.state.tc.settings.admin_token,
    )


PanelUser = Annotated[Principal, Depends(panel_user)]


def admin_user(request: Request) -> None:
    require_admin(bearer_token(request), request.app.state.tc.settings.admin_token)


AdminUser = Depends(admin_user)


def get_hub(request: Request) -> LiveHub:
    hub: LiveHub = request.app.state.tc.hub
    return hub


HubDep = Annotated[LiveHub, Depends(get_hub)]
