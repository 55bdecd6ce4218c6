"""The HTTP application: `create_app(settings)` builds it; the lifespan owns the database engine,
the pub/sub and the live hub (with its sources), and closes them in that order's reverse."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import __version__
from app.api.frames import PreparedFrames
from app.config import Settings
from app.db.engine import open_database
from app.errors import TweetchatError
from app.live.hub import LiveHub
from app.live.lease import make_leases
from app.live.pubsub import Broadcast
from app.live.sync import make_sync

StartupHook = Callable[[LiveHub], Awaitable[None]]


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    broadcast: Broadcast
    hub: LiveHub


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def create_app(settings: Settings, *, on_startup: StartupHook | None = None) -> FastAPI:
    """The application. `on_startup` runs once the hub is ready (replay and demo start there)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine, sessions = open_database(settings.database_url)
        broadcast = Broadcast(settings.ws_queue_size)
        sync = make_sync(settings.redis_url, settings.database_url)
        await sync.start()
        hub = LiveHub(settings, sessions, broadcast, sync, make_leases(settings.database_url))
        app.state.tc = AppState(settings, engine, sessions, broadcast, hub)
        try:
            await hub.start()
            if on_startup is not None:
                await on_startup(hub)
            yield
        finally:
            await hub.close()
            await sync.close()
            engine.dispose()

    app = FastAPI(title="tweetchat", version=__version__, lifespan=lifespan)
    # Each live update framed once for all connections (app/api/frames.py).
    app.add_middleware(PreparedFrames)

    @app.exception_handler(TweetchatError)
    async def _domain_error(_request: Request, exc: TweetchatError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'request'}: {err['msg']}"
            for err in exc.errors()
        )
        return JSONResponse(error_body("invalid_input", problems), status_code=422)

    @app.get("/api/health", tags=["health"])
    def health(request: Request) -> dict[str, object]:
        """For load balancers and operators: this process, and the chats it collects."""
        hub: LiveHub = request.app.state.tc.hub
        return {
            "status": "ok",
            "process": hub.sync.origin if hub.sync.shared else "single",
            "redis": hub.sync.shared,
            "collecting": hub.collecting(),
        }

    from app.api.routes import chats, live, pages, panel, people

    app.include_router(chats.router)
    app.include_router(panel.router)
    app.include_router(people.router)
    app.include_router(live.router)
    app.include_router(pages.router)
    app.mount("/static", pages.static, name="static")
    return app
