"""The built-in demo chat: a run of show (`chat.json`) and its posts (`qi-chat.jsonl`, the same
hand-made archive the tests use), loaded into a fresh SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.chats import QuestionPlan, create_chat, parse_when
from app.ingest.importer import ImportReport, import_files

DEMO_DIR = Path(__file__).parent
DEMO_ARCHIVE = DEMO_DIR / "qi-chat.jsonl"
DEMO_CHAT = DEMO_DIR / "chat.json"


def demo_definition() -> dict[str, object]:
    definition = json.loads(DEMO_CHAT.read_text(encoding="utf-8"))
    assert isinstance(definition, dict)
    return definition


def create_demo_chat(session: Session) -> str:
    """Create the demo chat from its run of show; returns its slug."""
    spec = demo_definition()
    questions = spec["questions"]
    assert isinstance(questions, list)
    chat = create_chat(
        session,
        slug=str(spec["slug"]),
        title=str(spec["title"]),
        hashtags=list(spec["hashtags"]),  # type: ignore[call-overload]
        hosts=list(spec["hosts"]),  # type: ignore[call-overload]
        panel=list(spec["panel"]),  # type: ignore[call-overload]
        start=parse_when(str(spec["start"]), "start"),
        end=parse_when(str(spec["end"]), "end"),
        series=str(spec["series"]) if spec.get("series") else None,
        timezone=str(spec.get("timezone", "UTC")),
        questions=[
            QuestionPlan(
                number=int(q["number"]),
                text=str(q["text"]),
                planned_at=parse_when(q["planned_at"], "planned_at")
                if q.get("planned_at")
                else None,
            )
            for q in questions
        ],
    )
    return chat.slug


def load_demo(sessions: sessionmaker[Session]) -> tuple[str, ImportReport]:
    """Create the demo chat and import its whole archive at once (no replay)."""
    with sessions.begin() as session:
        slug = create_demo_chat(session)
    return slug, import_files(sessions, slug=slug, paths=[DEMO_ARCHIVE])
