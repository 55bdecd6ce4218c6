"""One WebSocket frame per update, written as it is to every connection that can take it.

The broadcast sends each update to every connection of a chat (app/live/pubsub.py). Through
ASGI, each of those sends goes through Starlette's checks, uvicorn's `send`, and websockets'
framing of the same text into the same bytes: a server's frames are not masked, so one update
makes the same frame for every connection that did not negotiate per-message deflate. With a
thousand connections that per-connection work was a third of the time an update took to send
(docs/benchmarks.md), and the event loop does nothing else meanwhile.

`PreparedFrames` is an ASGI middleware: on a WebSocket served by uvicorn's websockets (Sans-I/O)
protocol, the one `tweetchat serve` runs, it adds a `FrameWriter` to the scope's extensions
(`FRAMES`). The writer writes a frame made once by websockets' own `Frame.serialize` straight to
the connection's transport, when, and only when, uvicorn's own send would write at once: the
handshake done, the connection open, nothing closing, no extension negotiated (deflate frames
differ per connection), and the transport not paused (the client reads slowly: the ordinary send,
which waits, takes over, and the broadcast keeps the order). Any other server, or another uvicorn
protocol, gets no writer and everything goes through the ordinary send.

It reads attributes of uvicorn's protocol object that are not a public API: `available()` checks
them, and tests/test_frames.py runs the installed uvicorn, so an upgrade that changes them fails
a test rather than slowing the fan-out unseen.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.frames import Frame, Opcode
from websockets.protocol import State

FRAMES = "tweetchat.frames"

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import (
        WebSocketsSansIOProtocol as _Protocol,
    )
except ImportError:  # pragma: no cover - uvicorn without websockets installed
    _Protocol = None  # type: ignore[assignment, misc]

# What the writer reads of uvicorn's protocol and of its websockets connection.
_PROTOCOL_FIELDS = ("transport", "conn", "writable", "handshake_complete", "close_sent")


def text_frame(text: str) -> bytes:
    """A server's unfragmented text frame of `text`, as websockets would write it."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


class FrameWriter:
    """Writes prepared frames to one uvicorn WebSocket connection when it would take them now."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def write(self, frame: bytes) -> bool:
        """Write `frame` now and return True, or return False (nothing written) if the ordinary
        send must do it: it would wait, refuse, or frame it differently."""
        p = self._protocol
        if (
            p.close_sent
            or not p.handshake_complete
            or not p.writable.is_set()
            or p.conn.state is not State.OPEN
            or p.conn.extensions
            or p.transport.is_closing()
        ):
            return False
        p.transport.write(frame)
        return True


def available(send: Send) -> FrameWriter | None:
    """A writer for the connection behind the server's own `send`, if it is one it can serve."""
    owner = getattr(send, "__self__", None)
    if _Protocol is None or not isinstance(owner, _Protocol):
        return None
    if not all(hasattr(owner, name) for name in _PROTOCOL_FIELDS):
        return None
    conn = owner.conn
    if not (hasattr(conn, "state") and hasattr(conn, "extensions")):
        return None
    return FrameWriter(owner)


class PreparedFrames:
    """ASGI middleware: WebSocket scopes get a `FrameWriter` in `scope["extensions"][FRAMES]`
    when the server's connection allows one. It must see the server's own `send`: added with
    `app.add_middleware`, only Starlette's error middleware is outside it, and that passes a
    WebSocket's `send` on as it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            writer = available(send)
            if writer is not None:
                scope = {**scope, "extensions": {**(scope.get("extensions") or {}), FRAMES: writer}}
        await self.app(scope, receive, send)
