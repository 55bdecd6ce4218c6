"""Prepared frames (app/api/frames.py) under the uvicorn this project installs: a frame written
straight to the transport reaches the client as the text it holds, in order with what the
ordinary send sends; a connection with per-message deflate, or one whose client stopped reading,
gets nothing from the writer (the ordinary send takes over); and `tweetchat serve`'s app writes
its live updates that way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from app.api import create_app
from app.api.frames import FRAMES, FrameWriter, PreparedFrames, text_frame
from app.config import Settings
from tests.helpers import HubServer, LiveServer, make_cli_runner, recv_json

# Across the three sizes of a frame header (<126 bytes, <64 KiB, more), and text that is not ASCII.
TEXTS = ["caf\u00e9 \U0001f600 <b>not markup</b>", "x" * 300, "y" * 70_000]


async def _endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    writer: FrameWriter | None = websocket.scope.get("extensions", {}).get(FRAMES)
    if writer is None:
        await websocket.send_text("no writer")
        return
    mode = websocket.query_params["mode"]
    if mode == "texts":
        written = [writer.write(text_frame(text)) for text in TEXTS]
        await websocket.send_text(f"ordinary after {written}")
        await websocket.receive_text()
    elif mode == "deflate":
        await websocket.send_text(f"written {writer.write(text_frame('x'))}")
        await websocket.receive_text()
    elif mode == "stalled":
        # Frames until the transport pauses because the client does not read: then the writer
        # declines, and the ordinary send waits for the client.
        count = 0
        while count < 10_000 and writer.write(text_frame(f"{count:06d}" + "z" * 16_000)):
            count += 1
        await websocket.send_text(f"declined after {count}")
        await websocket.receive_text()


def _server(deflate: bool) -> LiveServer:
    app = Starlette(routes=[WebSocketRoute("/ws", _endpoint)])
    settings = Settings(ws_per_message_deflate=deflate)
    return LiveServer(settings, app=PreparedFrames(app))


@pytest.fixture
def plain() -> Iterator[LiveServer]:
    with _server(deflate=False) as server:
        yield server


def _ws(server: LiveServer, mode: str) -> str:
    return server.url.replace("http://", "ws://") + f"/ws?mode={mode}"


def test_prepared_frames_arrive_as_their_text_in_order(plain: LiveServer) -> None:
    async def scenario() -> list[Any]:
        async with websockets.connect(_ws(plain, "texts"), max_size=None) as ws:
            got = [await ws.recv() for _ in range(len(TEXTS) + 1)]
            await ws.send("bye")
            return got

    got = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert got == [*TEXTS, "ordinary after [True, True, True]"]


def test_no_frames_written_to_a_connection_with_deflate() -> None:
    # Deflate frames are compressed per connection: the writer leaves them to the ordinary send.
    async def scenario(url: str) -> Any:
        async with websockets.connect(url, compression="deflate") as ws:
            answer = await ws.recv()
            await ws.send("bye")
            return answer

    with _server(deflate=True) as server:
        assert asyncio.run(asyncio.wait_for(scenario(_ws(server, "deflate")), 20)) == (
            "written False"
        )


def test_a_client_that_stops_reading_gets_no_frame_written_past_the_pause(
    plain: LiveServer,
) -> None:
    async def scenario() -> tuple[list[str], str]:
        async with websockets.connect(_ws(plain, "stalled"), max_size=None) as ws:
            await asyncio.sleep(1.0)  # reads nothing while the server writes
            frames: list[str] = []
            while not (message := str(await ws.recv())).startswith("declined"):
                frames.append(message)
            await ws.send("bye")
            return frames, message

    frames, last = asyncio.run(asyncio.wait_for(scenario(), 30))
    count = int(last.split()[-1])
    assert 0 < count < 10_000  # it stopped at the pause, not at the end of the loop
    assert [f[:6] for f in frames] == [f"{n:06d}" for n in range(count)]  # none lost, in order


def test_the_app_writes_its_live_updates_as_prepared_frames(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    classes: list[object] = [m.cls for m in create_app(Settings()).user_middleware]
    assert PreparedFrames in classes
    monkeypatch.chdir(tmp_path)
    result = make_cli_runner(sqlite_url)(
        "chat", "create", "frames", "--title", "Frames", "--hashtags", "#Frames", "--host", "Host",
        "--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written: list[bytes] = []
    write = FrameWriter.write

    def counted(self: FrameWriter, frame: bytes) -> bool:
        done = write(self, frame)
        if done:
            written.append(frame)
        return done

    monkeypatch.setattr(FrameWriter, "write", counted)
    with HubServer(Settings(database_url=sqlite_url)) as server:
        assert server.hub is not None and server.loop is not None
        hub, loop = server.hub, server.loop

        async def scenario() -> list[int]:
            url = server.url.replace("http://", "ws://") + "/ws/chats/frames"
            async with websockets.connect(url) as ws:  # offers deflate; the server does not take it
                assert (await recv_json(ws))["type"] == "snapshot"
                for seq in range(1, 4):
                    message = {"type": "update", "seq": seq, "text": "\u00e9t\u00e9 <i>"}
                    loop.call_soon_threadsafe(hub.broadcast.publish, "chat:frames", message)
                return [(await recv_json(ws))["seq"] for _ in range(3)]

        assert asyncio.run(asyncio.wait_for(scenario(), 20)) == [1, 2, 3]
    assert len(written) == 3
