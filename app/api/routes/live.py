"""`WS /ws/chats/{slug}`: a snapshot of the chat on connect, then its coalesced live updates.

One task group per connection: a receive loop (pings, and noticing the client left) and a send
loop fed by the connection's own bounded subscription. A client that stops reading is cut off
with close code 1013 ("try again later") and can reconnect for a fresh snapshot; it never slows
the others.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from app.chats import get_chat
from app.errors import TweetchatError, UnknownChat
from app.live.hub import LiveHub
from app.panel import authenticate

log = logging.getLogger(__name__)
router = APIRouter()

CLOSE_POLICY = 1008
CLOSE_BAD_PAYLOAD = 1003
CLOSE_TRY_AGAIN = 1013
TOO_SLOW = "too slow: reconnect for a fresh snapshot"


@router.websocket("/ws/chats/{slug}")
async def chat_updates(websocket: WebSocket, slug: str) -> None:
    hub: LiveHub = websocket.app.state.tc.hub
    # A send that cannot complete in this time means the client stopped reading.
    send_timeout = hub.settings.ws_send_timeout
    await websocket.accept()
    try:
        runtime = await hub.runtime(slug)
    except UnknownChat as exc:
        await websocket.close(code=CLOSE_POLICY, reason=exc.message[:120])
        return
    token = websocket.query_params.get("token")
    panel = False  # panel members also get the unanswered queue, which names who claimed what
    if token or not runtime.screen.settings.public:

        def check() -> None:
            with runtime.sessions() as session:
                authenticate(
                    session,
                    chat=get_chat(session, slug),
                    token=token,
                    admin_token=hub.settings.admin_token,
                )

        try:
            await runtime.run_db(check)
            panel = True
        except TweetchatError as exc:
            if not runtime.screen.settings.public:
                await websocket.close(code=CLOSE_POLICY, reason=exc.message[:120])
                return
    view = (lambda message: message) if panel else _public
    async with hub.broadcast.subscribe(runtime.channel) as subscription:
        # Subscribed before the snapshot is taken: nothing published after it is missed.
        await websocket.send_json(view(runtime.snapshot()))
        outcome: tuple[int, str] | None = None  # None: the client left
        async with anyio.create_task_group() as group:

            def finish(result: tuple[int, str] | None) -> None:
                nonlocal outcome
                outcome = result
                group.cancel_scope.cancel()

            async def send() -> None:
                try:
                    async for message in subscription:
                        with anyio.fail_after(send_timeout):
                            await websocket.send_json(view(message))
                except TimeoutError:
                    finish((CLOSE_TRY_AGAIN, TOO_SLOW))
                except (WebSocketDisconnect, RuntimeError, OSError):
                    finish(None)
                else:  # the subscription ended: dropped for not reading
                    finish((CLOSE_TRY_AGAIN, TOO_SLOW))

            async def receive() -> None:
                try:
                    while True:
                        message = await websocket.receive_json()
                        if not isinstance(message, dict) or message.get("type") != "ping":
                            finish((CLOSE_BAD_PAYLOAD, 'send only {"type": "ping"}'))
                            return
                        await websocket.send_json({"type": "pong"})
                except (ValueError, KeyError):
                    finish((CLOSE_BAD_PAYLOAD, "send JSON only"))
                except (WebSocketDisconnect, RuntimeError, OSError):
                    finish(None)

            async def watch_drop() -> None:
                await subscription.closed.wait()
                finish((CLOSE_TRY_AGAIN, TOO_SLOW))

            group.start_soon(send)
            group.start_soon(receive)
            group.start_soon(watch_drop)
    if outcome is not None:
        await _close(websocket, *outcome)


PANEL_ONLY = ("queue", "queue_upsert", "queue_remove")


def _public(message: dict[str, Any]) -> dict[str, Any]:
    """A message as a viewer without a panel token sees it."""
    if not any(key in message for key in PANEL_ONLY):
        return message
    return {key: value for key, value in message.items() if key not in PANEL_ONLY}


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError):  # the client is gone already
            await websocket.close(code=code, reason=reason)
