"""The HTTP application: `create_app(settings)` builds it; the lifespan owns the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import __version__
from app.config import Settings
from app.db.engine import open_database
from app.errors import TweetchatError


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine, sessions = open_database(settings.database_url)
        app.state.tc = AppState(settings=settings, engine=engine, sessions=sessions)
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(title="tweetchat", version=__version__, lifespan=lifespan)

    @app.exception_handler(TweetchatError)
    async def _domain_error(_request: Request, exc: TweetchatError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)

    from app.api.routes import chats

    app.include_router(chats.router)
    return app
