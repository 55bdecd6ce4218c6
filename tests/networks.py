"""A chat holding posts of X, Mastodon and Bluesky, for the tests of issue 7's pages, API and exports:
the recorded Mastodon and Bluesky payloads (the Bluesky posts moved to the chat's day) and a few X
posts of the chat's window."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from app.chats import QuestionPlan
from app.ingest.parse import Parsed, parse_object
from app.sources.bluesky import parse_post_view
from app.sources.mastodon import parse_statuses
from tests.conftest import FIXTURES

# Posts the tests look at (all collected in the chat window, 2023-03-28 18:00–19:00 UTC).
X_ANSWER = "1640790000000000001"  # "A2: ..." by @newcomer_nhs
X_OTHER = "1640790000000000002"  # "A3: ..." by @newcomer_nhs
MASTODON_ANSWER = "https://mas.to/users/li/statuses/110102280929341779"  # A2 by li@mas.to
MASTODON_ANSWER_PAGE = "https://mas.to/@li/110102280929341779"  # its `url`
MASTODON_BOOST = "https://hachyderm.io/users/sam/statuses/110102269132837737/activity"  # no `url`
BLUESKY_ANSWER = "at://did:plc:mwaebclmkbcubt4dxh2f3fno/app.bsky.feed.post/3miervztwk22d"
BLUESKY_ANSWER_PAGE = "https://bsky.app/profile/maria.bsky.social/post/3miervztwk22d"

QUESTIONS = [
    QuestionPlan(
        1, "What does leading from the front mean to you?", datetime(2023, 3, 28, 18, 5, tzinfo=UTC)
    ),
    QuestionPlan(
        2,
        "Why is it important that leaders lead from the front?",
        datetime(2023, 3, 28, 18, 12, tzinfo=UTC),
    ),
    QuestionPlan(3, "What gets in the way?", datetime(2023, 3, 28, 18, 25, tzinfo=UTC)),
]
NEWCOMER = {"id": "7001", "username": "newcomer_nhs", "name": "Newcomer NHS"}


def x_posts() -> Parsed:
    tweets: list[dict[str, Any]] = [
        {
            "id": X_ANSWER,
            "author_id": "7001",
            "created_at": "2023-03-28T18:20:00.000Z",
            "text": "A2: celebrate small wins #LeadingQI",
            "public_metrics": {
                "retweet_count": 2,
                "reply_count": 0,
                "like_count": 5,
                "quote_count": 0,
            },
        },
        {
            "id": X_OTHER,
            "author_id": "7001",
            "created_at": "2023-03-28T18:31:00.000Z",
            "text": "A3: ask the ward what gets in the way #LeadingQI",
        },
    ]
    return parse_object({"data": tweets, "includes": {"users": [NEWCOMER]}})


def mastodon_posts() -> Parsed:
    statuses = json.loads((FIXTURES / "mastodon" / "qi-chat.json").read_text())
    return parse_statuses(statuses, "mastodon.social")


def bluesky_posts() -> Parsed:
    text = (FIXTURES / "bluesky" / "searchPosts_leadingqi.json").read_text()
    answer = json.loads(text.replace("2026-03-31T", "2023-03-28T"))
    parsed = Parsed()
    for view in answer["posts"]:
        parsed.extend(parse_post_view(view))
    return parsed


def mixed_posts() -> list[Parsed]:
    return [x_posts(), mastodon_posts(), bluesky_posts()]


def prepare_mixed(database_url: str, slug: str = "qi") -> None:
    """Create the chat (as `tests.test_live.create_chat` does), store the three networks' posts
    in it and tag them, as an import would."""
    from app.chats import get_chat
    from app.db.engine import open_database
    from app.ingest.store import store_parsed
    from app.ingest.tagging import retag_chat
    from app.panel import replace_questions
    from tests.helpers import make_cli_runner
    from tests.test_live import create_chat

    create_chat(make_cli_runner(database_url), slug)
    engine, sessions = open_database(database_url)
    try:
        with sessions.begin() as session:
            chat = get_chat(session, slug)
            chat_id = chat.id
            replace_questions(session, chat, QUESTIONS)
        for parsed in mixed_posts():
            with sessions.begin() as session:
                store_parsed(session, chat_id, parsed)
        with sessions.begin() as session:
            retag_chat(session, get_chat(session, slug))
    finally:
        engine.dispose()
