"""`WS /ws/chats/{slug}`: a snapshot of the chat on connect, then its coalesced live updates.

The broadcast writes each update to every connection whose socket takes it at once, in one loop
(app/live/pubsub.py). Beside that, one task group per connection: a receive loop (pings, and
noticing the client left), a send loop for the sends that had to wait and what is published
behind them (the connection's own bounded queue), and a watchdog. A client that stops reading
is cut off with close code 1013 ("try again later") and can reconnect for a fresh snapshot; it
never slows the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from typing import Any

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from app.api.frames import FRAMES, FrameWriter, text_frame
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
        # Subscribed before the snapshot is taken: nothing published after it is missed (what
        # is published before the sender is attached waits in the queue, for `deliver`).
        await websocket.send_json(view(runtime.snapshot()))
        frames: FrameWriter | None = websocket.scope.get("extensions", {}).get(FRAMES)
        subscription.attach(
            lambda message: websocket.send_text(_encoded(message, panel)[0]),
            None if frames is None else lambda message: frames.write(_encoded(message, panel)[1]),
        )
        outcome: tuple[int, str] | None = None  # None: the client left
        async with anyio.create_task_group() as group:

            def finish(result: tuple[int, str] | None) -> None:
                nonlocal outcome
                outcome = result
                group.cancel_scope.cancel()

            loop = asyncio.get_running_loop()

            async def send() -> None:
                # The broadcast sends each update itself while this socket takes them at once;
                # here go the sends that had to wait, and what came in behind them.
                try:
                    await subscription.deliver()
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

            async def watch() -> None:
                # Dropped by the broadcast (its queue filled up), or a send pending for
                # `send_timeout`: the client stopped reading. One watchdog per connection rather
                # than a timer per message: with thousands of connections, the per-message
                # timers were a good part of the fan-out's CPU.
                while True:
                    began, now = subscription.since, loop.time()
                    if began is not None and now - began >= send_timeout:
                        break
                    wait = (now if began is None else began) + send_timeout - now
                    with anyio.move_on_after(wait):
                        await subscription.closed.wait()
                        break
                finish((CLOSE_TRY_AGAIN, TOO_SLOW))

            group.start_soon(send)
            group.start_soon(receive)
            group.start_soon(watch)
    if outcome is not None:
        await _close(websocket, *outcome)


PANEL_ONLY = ("queue", "queue_upsert", "queue_remove")


def _public(message: dict[str, Any]) -> dict[str, Any]:
    """A message as a viewer without a panel token sees it."""
    if not any(key in message for key in PANEL_ONLY):
        return message
    return {key: value for key, value in message.items() if key not in PANEL_ONLY}


# (id of a published message, panel view) → (the message, its JSON, its frame). Every subscriber
# of a channel gets the same message object, so it is encoded once per view rather than once per
# connection (with a thousand connections, encoding was the larger part of the fan-out's CPU),
# and framed once too (app/api/frames.py). Holding the message keeps its id from being reused
# while it is cached.
_ENCODED: OrderedDict[tuple[int, bool], tuple[dict[str, Any], tuple[str, bytes]]] = OrderedDict()
ENCODED_KEPT = 64


def _encoded(message: dict[str, Any], panel: bool) -> tuple[str, bytes]:
    """The message as the connection's view sends it, in compact JSON, and as a text frame.

    ASCII only (other characters as \\u escapes, the same JSON to any parser): the server encodes
    the text to UTF-8 again for every connection, and an ASCII string is copied as it is, where
    one with a single emoji is converted character by character (40 times slower: a tenth of
    the fan-out's CPU).
    """
    key = (id(message), panel)
    cached = _ENCODED.get(key)
    if cached is not None and cached[0] is message:
        return cached[1]
    text = json.dumps(message if panel else _public(message), separators=(",", ":"))
    encoded = (text, text_frame(text))
    _ENCODED[key] = (message, encoded)
    while len(_ENCODED) > ENCODED_KEPT:
        _ENCODED.popitem(last=False)
    return encoded


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError):  # the client is gone already
            await websocket.close(code=code, reason=reason)
