"""The naive fan-out that `benchmarks/fanout.py` compares tweetchat with.

A minimal FastAPI app, the pattern of the FastAPI docs' `ConnectionManager`: a list of the open
sockets, and a broadcast that loops over the list awaiting each `send_text` in turn. It is fed the
update messages a tweetchat run recorded, at their recorded pace, once it gets SIGUSR1:

    python benchmarks/fanout_baseline.py --port 8001 --messages recorded.jsonl

Each line of `--messages` is an update message as tweetchat sent it. The message due `t` seconds
after the first one is broadcast `t` seconds after SIGUSR1, with its `sent_at` and its posts'
`received_at` set to that due time: this server has no ingest, a post enters it with its message,
so a client's delays are this server's fan-out alone. A broadcast that runs late delays the next
one (and shows in the delays); none is skipped.

`WS /ws` sends a small `{"type": "snapshot", "seq": N}` on connect (N: the seq before the first
update), then the updates. The app lives here, not in `app/`: it is only a yardstick.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

log = logging.getLogger("fanout_baseline")


class ConnectionManager:
    """As in the FastAPI docs (https://fastapi.tiangolo.com/advanced/websockets/)."""

    def __init__(self) -> None:
        self.active_connections: list[WebSocket] = []

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str) -> None:
        for connection in self.active_connections:
            await connection.send_text(message)


def load_messages(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def play(manager: ConnectionManager, messages: list[dict[str, Any]]) -> None:
    """Broadcast `messages` at their recorded pace (see the module's docstring)."""
    if not messages:
        return
    first_sent = float(messages[0]["sent_at"])
    began = time.time()
    for message in messages:
        due = began + float(message["sent_at"]) - first_sent
        wait = due - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        out = {**message, "sent_at": due}
        out["posts"] = [{**post, "received_at": due} for post in message["posts"]]
        # Encoded once for everyone, exactly as tweetchat encodes its updates (compact, ASCII).
        text = json.dumps(out, separators=(",", ":"))
        try:
            await manager.broadcast(text)
        except Exception:  # a socket that went away: the naive loop skips the rest of the list
            log.exception("broadcast of seq %s failed", message.get("seq"))


def create_app(messages: list[dict[str, Any]]) -> FastAPI:
    manager = ConnectionManager()
    first_seq = int(messages[0]["seq"]) if messages else 1
    snapshot = json.dumps({"type": "snapshot", "seq": first_seq - 1}, separators=(",", ":"))
    running: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def start() -> None:
            if not running:
                running.add(loop.create_task(play(manager, messages)))

        loop.add_signal_handler(signal.SIGUSR1, start)
        yield
        for task in running:
            task.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await manager.connect(websocket)
        try:
            await websocket.send_text(snapshot)
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            manager.disconnect(websocket)

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=Path, required=True)
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # The same uvicorn settings as `tweetchat serve` (uvloop, httptools, websockets; per-message
    # deflate as TWEETCHAT_WS_PER_MESSAGE_DEFLATE says, off by default).
    from app.config import Settings

    uvicorn.run(
        create_app(load_messages(args.messages)),
        host=args.host,
        port=args.port,
        log_level="warning",
        ws_per_message_deflate=Settings().ws_per_message_deflate,
    )


if __name__ == "__main__":
    main()
