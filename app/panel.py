"""Panel credentials and the panel's actions on a chat's posts and screen, in the database.

Routes and the CLI are thin over these; the live side (`app.live.runtime`) applies the same
changes to what the pages show, after the database has them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.chats import QuestionPlan, get_chat
from app.db.models import Chat, ChatPost, PanelToken, Question
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from app.ingest.parse import post_network

SCREEN_MODES = ("immediate", "delay", "approval")
MAX_PINNED = 3


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Literal["panel", "admin"]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_panel_token(session: Session, *, slug: str, name: str) -> str:
    """A new panel token for `name` on chat `slug` (returned once, stored hashed)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("a panel member needs a name of 1 to 100 characters")
    chat = get_chat(session, slug)
    token = secrets.token_urlsafe(24)
    session.add(
        PanelToken(
            chat_id=chat.id, name=name, token_hash=_hash(token), created_at=datetime.now(UTC)
        )
    )
    session.flush()
    return token


def authenticate(
    session: Session, *, chat: Chat, token: str | None, admin_token: str | None
) -> Principal:
    """Who `token` is on `chat`: 401 without a known token, 403 for another chat's token."""
    if not token:
        raise Unauthorized("this needs a panel token: send Authorization: Bearer TOKEN")
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal("admin", "admin")
    row = session.scalar(select(PanelToken).where(PanelToken.token_hash == _hash(token)))
    if row is None:
        raise Unauthorized("unknown or revoked panel token")
    if row.chat_id != chat.id:
        raise Forbidden(f"this panel token is for another chat, not {chat.slug!r}")
    return Principal(row.name, "panel")


def require_admin(token: str | None, admin_token: str | None) -> None:
    if not admin_token:
        raise Forbidden("no admin token is configured: set TWEETCHAT_ADMIN_TOKEN")
    if not token:
        raise Unauthorized("this needs the admin token: send Authorization: Bearer TOKEN")
    if not hmac.compare_digest(token.encode(), admin_token.encode()):
        raise Unauthorized("that is not the admin token")


def chat_post(session: Session, chat: Chat, post_id: str) -> ChatPost:
    row = session.get(ChatPost, (chat.id, post_network(post_id), post_id))
    if row is None:
        raise NotFound(f"chat {chat.slug!r} has no post {post_id!r}")
    return row


def claim(session: Session, chat: Chat, post_id: str, who: Principal) -> ChatPost:
    row = chat_post(session, chat, post_id)
    if row.claimed_by and row.claimed_by != who.name:
        raise Conflict(f"{row.claimed_by} has claimed this post already")
    row.claimed_by = who.name
    return row


def release(session: Session, chat: Chat, post_id: str, who: Principal) -> ChatPost:
    row = chat_post(session, chat, post_id)
    if row.claimed_by and row.claimed_by != who.name and who.role != "admin":
        raise Forbidden(f"{row.claimed_by} holds this claim; only they or an admin can release it")
    row.claimed_by = None
    return row


def set_flag(session: Session, chat: Chat, post_id: str, flag: str, value: bool) -> ChatPost:
    row = chat_post(session, chat, post_id)
    if flag == "handled":
        row.handled = value
    elif flag == "hidden":
        row.hidden = value
    elif flag == "approved":
        row.approved = value
    elif flag == "pinned":
        row.pinned_at = datetime.now(UTC) if value else None
        if value:
            _limit_pins(session, chat)
    else:  # a programming error, not user input
        raise ValueError(flag)
    return row


def _limit_pins(session: Session, chat: Chat) -> None:
    session.flush()
    pinned = session.scalars(
        select(ChatPost)
        .where(ChatPost.chat_id == chat.id, ChatPost.pinned_at.is_not(None))
        .order_by(ChatPost.pinned_at.desc())
    ).all()
    for old in pinned[MAX_PINNED:]:
        old.pinned_at = None


def set_manual_tag(
    session: Session, chat: Chat, post_id: str, question: int | None, *, manual: bool = True
) -> ChatPost:
    row = chat_post(session, chat, post_id)
    if manual and question is not None and question not in {q.number for q in chat.questions}:
        raise InvalidInput(f"chat {chat.slug!r} has no question {question}")
    row.manual = manual
    if manual:
        row.question = question
        row.tag_method = "manual"
    return row


_WORD = re.compile(r"\S.{0,99}")


def update_screen(session: Session, chat: Chat, changes: dict[str, Any]) -> dict[str, Any]:
    if "mode" in changes:
        if changes["mode"] not in SCREEN_MODES:
            raise InvalidInput(f"screen mode must be one of {', '.join(SCREEN_MODES)}")
        chat.screen_mode = changes["mode"]
    if "delay_seconds" in changes:
        delay = changes["delay_seconds"]
        if not isinstance(delay, int) or not 5 <= delay <= 600:
            raise InvalidInput("delay_seconds must be a whole number from 5 to 600")
        chat.screen_delay = delay
    for key in ("blocked_words", "blocked_accounts"):
        if key in changes:
            values = changes[key]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise InvalidInput(f"{key} must be a list of strings")
            cleaned = [
                v.strip().lstrip("@") if key == "blocked_accounts" else v.strip() for v in values
            ]
            if any(len(v) > 100 for v in cleaned) or len(cleaned) > 500:
                raise InvalidInput(f"{key}: at most 500 entries of 100 characters")
            setattr(chat, key, sorted({v for v in cleaned if v}, key=str.lower))
    if "public" in changes:
        if not isinstance(changes["public"], bool):
            raise InvalidInput("public must be true or false")
        chat.screen_public = changes["public"]
    if "current_question" in changes:
        number = changes["current_question"]
        if number is not None and number not in {q.number for q in chat.questions}:
            raise InvalidInput(f"chat {chat.slug!r} has no question {number}")
        chat.current_question = number
    return screen_settings(chat)


def screen_settings(chat: Chat) -> dict[str, Any]:
    return {
        "mode": chat.screen_mode,
        "delay_seconds": chat.screen_delay,
        "blocked_words": list(chat.blocked_words),
        "blocked_accounts": list(chat.blocked_accounts),
        "public": chat.screen_public,
        "current_question": chat.current_question,
    }


def replace_questions(session: Session, chat: Chat, plans: Sequence[QuestionPlan]) -> None:
    """A new run of show; a question post already seen stays attached to its number."""
    numbers = [plan.number for plan in plans]
    if len(set(numbers)) != len(numbers) or any(n < 1 or n > 99 for n in numbers):
        raise InvalidInput("question numbers must be distinct, from 1 to 99")
    existing = {q.number: q for q in chat.questions}
    for number, kept in existing.items():
        if number not in numbers and kept.post_id is None:
            chat.questions.remove(kept)
        elif number not in numbers:
            kept.planned = False  # seen as a host post: kept, but not planned any more
    for plan in plans:
        question = existing.get(plan.number)
        if question is None:
            chat.questions.append(
                Question(
                    number=plan.number, text=plan.text, planned_at=plan.planned_at, planned=True
                )
            )
        else:
            question.text = plan.text
            question.planned_at = plan.planned_at
            question.planned = True
    session.flush()
