"""The panel's actions (docs/panel-api.md): credentials, claims, marks, manual tags, pins,
approvals, the screen's settings and the run of show. Each needs a panel or admin token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, status
from pydantic import BaseModel, Field

from app.api.deps import AdminUser, ChatDep, HubDep, PanelUser, SessionDep
from app.chats import QuestionPlan, get_chat, parse_when
from app.errors import InvalidInput
from app.panel import (
    claim,
    create_panel_token,
    release,
    replace_questions,
    screen_settings,
    set_flag,
)

router = APIRouter(prefix="/api/chats/{slug}")


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class QuestionBody(BaseModel):
    question: int | None = Field(ge=1, le=99)


class PlannedQuestion(BaseModel):
    number: int = Field(ge=1, le=99)
    text: str = Field(max_length=1000)
    planned_at: str | None = None


@router.post("/panel-tokens", status_code=status.HTTP_201_CREATED, dependencies=[AdminUser])
def new_panel_token(slug: str, body: NewToken, session: SessionDep) -> dict[str, str]:
    token = create_panel_token(session, slug=slug, name=body.name)
    session.commit()
    return {"name": body.name.strip(), "token": token}


@router.get("/me")
def me(who: PanelUser) -> dict[str, str]:
    return {"name": who.name, "role": who.role}


@router.post("/posts/{post_id:path}/claim")
async def claim_post(post_id: str, chat: ChatDep, who: PanelUser, hub: HubDep) -> dict[str, Any]:
    runtime = await hub.runtime(chat.slug)
    return await runtime.post_action(post_id, lambda s, c: claim(s, c, post_id, who))


@router.delete("/posts/{post_id:path}/claim")
async def release_post(post_id: str, chat: ChatDep, who: PanelUser, hub: HubDep) -> dict[str, Any]:
    runtime = await hub.runtime(chat.slug)
    return await runtime.post_action(post_id, lambda s, c: release(s, c, post_id, who))


def _flag_route(flag: str) -> None:
    async def set_post_flag(
        post_id: str,
        chat: ChatDep,
        _who: PanelUser,
        hub: HubDep,
        body: Annotated[dict[str, bool], Body()],
    ) -> dict[str, Any]:
        value = body.get(flag)
        if not isinstance(value, bool):
            raise InvalidInput(f'send {{"{flag}": true}} or {{"{flag}": false}}')
        runtime = await hub.runtime(chat.slug)
        return await runtime.post_action(post_id, lambda s, c: set_flag(s, c, post_id, flag, value))

    set_post_flag.__name__ = f"set_{flag}"
    router.put(f"/posts/{{post_id:path}}/{flag}", name=f"set_{flag}")(set_post_flag)


for _flag in ("handled", "hidden", "pinned", "approved"):
    _flag_route(_flag)


@router.put("/posts/{post_id:path}/question")
async def tag_post(
    post_id: str, body: QuestionBody, chat: ChatDep, _who: PanelUser, hub: HubDep
) -> dict[str, Any]:
    runtime = await hub.runtime(chat.slug)
    return await runtime.tag_action(post_id, body.question, manual=True)


@router.delete("/posts/{post_id:path}/question")
async def untag_post(post_id: str, chat: ChatDep, _who: PanelUser, hub: HubDep) -> dict[str, Any]:
    runtime = await hub.runtime(chat.slug)
    return await runtime.tag_action(post_id, None, manual=False)


@router.get("/screen")
def get_screen(chat: ChatDep) -> dict[str, Any]:
    return screen_settings(chat)


@router.put("/screen")
async def put_screen(
    chat: ChatDep, _who: PanelUser, hub: HubDep, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    runtime = await hub.runtime(chat.slug)
    return await runtime.screen_action(body)


@router.put("/questions")
async def put_questions(
    chat: ChatDep, _who: PanelUser, hub: HubDep, body: list[PlannedQuestion]
) -> list[dict[str, Any]]:
    runtime = await hub.runtime(chat.slug)
    plans = [
        QuestionPlan(
            q.number,
            q.text.strip(),
            parse_when(q.planned_at, f"question {q.number}'s planned_at") if q.planned_at else None,
        )
        for q in body
    ]

    def write() -> None:
        with runtime.sessions.begin() as session:
            replace_questions(session, get_chat(session, chat.slug), plans)

    await runtime.run_db(write)
    await runtime.reload()
    return list(runtime.info["questions"])
