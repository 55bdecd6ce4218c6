"""People: link a person's accounts across networks (admin only). See docs/panel-api.md."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from app.api.deps import AdminUser, HubDep, SessionDep
from app.people import LinkResult, link, people, unlink

router = APIRouter(prefix="/api/people", dependencies=[AdminUser])


class Accounts(BaseModel):
    accounts: list[str] = Field(min_length=1, max_length=20)


@router.get("")
def list_people(session: SessionDep) -> list[dict[str, Any]]:
    """The linked people and their accounts."""
    return people(session)


async def _change(hub: HubDep, work: Any) -> dict[str, Any]:
    def write() -> LinkResult:
        with hub.sessions.begin() as session:
            result: LinkResult = work(session)
            return result

    result = await run_in_threadpool(write)
    # The chats open in this server read their people and cross-posts again (and tell the
    # other processes to).
    for slug in result.chats:
        runtime = hub.running(slug)
        if runtime is not None:
            await runtime.reload()
    return {"person": result.person, "chats": result.chats}


@router.post("/links")
async def post_link(body: Accounts, hub: HubDep) -> dict[str, Any]:
    """Link the accounts as one person (with those already linked to any of them)."""
    return await _change(hub, lambda session: link(session, body.accounts))


@router.post("/unlink")
async def post_unlink(body: Accounts, hub: HubDep) -> dict[str, Any]:
    """Take the accounts out of the person they are linked to."""
    return await _change(hub, lambda session: unlink(session, body.accounts))
