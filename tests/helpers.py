"""Helpers shared by the tests: the CLI run in-process, the app served on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar

from typer.testing import CliRunner

from app.cli import app as cli_app
from app.config import Settings
from app.live.delta import PageState

if TYPE_CHECKING:
    from app.live.hub import LiveHub

T = TypeVar("T")


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    output: str  # stdout and stderr together


CliRunnerFn = Callable[..., CliResult]


def make_cli_runner(database_url: str) -> CliRunnerFn:
    def run(*args: str) -> CliResult:
        runner = CliRunner()
        result = runner.invoke(
            cli_app,
            list(args),
            env={"TWEETCHAT_DATABASE_URL": database_url, "COLUMNS": "200", "NO_COLOR": "1"},
            catch_exceptions=False,
        )
        return CliResult(result.exit_code, result.output)

    return run


class LiveServer:
    """The real app served by uvicorn on a free loopback port, in a thread of the test process."""

    def __init__(self, settings: Settings, app: Any = None) -> None:
        import uvicorn

        from app.api import create_app

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app if app is not None else create_app(settings),
            log_level="warning",
            lifespan="on",
            # As `tweetchat serve` runs it (app/cli.py): off unless the settings turn it on.
            ws_per_message_deflate=settings.ws_per_message_deflate,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()


class HubServer(LiveServer):
    """The live server, with a handle on its hub and event loop to start sources from a test."""

    def __init__(self, settings: Settings) -> None:
        from app.api import create_app

        self.hub: LiveHub | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

        async def keep(hub: LiveHub) -> None:
            self.hub = hub
            self.loop = asyncio.get_running_loop()

        super().__init__(settings, app=create_app(settings, on_startup=keep))

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run `coro` on the server's event loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


_PAGES: dict[int, tuple[Any, PageState]] = {}


async def recv_json(ws: Any) -> dict[str, Any]:
    """The next message of a chat's WebSocket as a page sees it: an update's figure patches
    applied to what the connection's snapshot and earlier updates held (`app.live.delta`)."""
    message: dict[str, Any] = json.loads(await ws.recv())
    held = _PAGES.get(id(ws))
    if held is None or held[0] is not ws:
        held = _PAGES[id(ws)] = (ws, PageState())
    return held[1].take(message)
