"""The pages: `/` (chats), `/chats/{slug}/screen` (big screen), `/chats/{slug}/panel` (panel),
and their static files, served from the `frontend` folder as they are (no build step); and the
reports, `/chats/{slug}/report` and `/series/{slug}/report`, made from the store on each visit."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

import frontend
from app.api.deps import ChatDep, SessionDep
from app.chats import get_series

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


# A report is one self-contained page: inline styles and data: images, nothing else.
REPORT_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/chats/{slug}/report", include_in_schema=False)
async def report(chat: ChatDep, session: SessionDep) -> HTMLResponse:
    from app.report.render import chat_report_html

    html = await run_in_threadpool(chat_report_html, session, chat)
    return HTMLResponse(html, headers=REPORT_HEADERS)


@router.get("/series/{slug}/report", include_in_schema=False)
async def series_report(slug: str, session: SessionDep) -> HTMLResponse:
    from app.report.render import series_report_html

    series = get_series(session, slug)
    html = await run_in_threadpool(series_report_html, session, series)
    return HTMLResponse(html, headers=REPORT_HEADERS)
