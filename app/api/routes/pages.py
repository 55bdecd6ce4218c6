"""The pages: `/` (chats), `/chats/{slug}/screen` (big screen), `/chats/{slug}/panel` (panel),
and their static files, served from the `frontend` folder as they are (no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import frontend

FRONTEND = Path(frontend.__file__).parent
router = APIRouter()

# The pages load nothing from elsewhere and run no inline script: say so to the browser.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _page(name: str) -> FileResponse:
    return FileResponse(FRONTEND / name, media_type="text/html", headers=SECURITY_HEADERS)


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return _page("index.html")


@router.get("/chats/{slug}/screen", include_in_schema=False)
def screen(slug: str) -> FileResponse:
    return _page("screen.html")


@router.get("/chats/{slug}/panel", include_in_schema=False)
def panel(slug: str) -> FileResponse:
    return _page("panel.html")


static = StaticFiles(directory=FRONTEND / "static")
