"""Posts of X, Mastodon and Bluesky stored side by side in one chat (issue 7): each row keeps its
network, re-storing changes nothing, metrics still only grow, and the chat's figures count all."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.chats import create_chat, get_chat
from app.db.engine import open_database
from app.db.models import Account, Chat, ChatPost, Poll, Post
from app.db.statistics import Statistics
from app.ingest.parse import Parsed, account_network, id_order, post_network
from app.ingest.store import store_parsed
from app.sources.bluesky import parse_post_view
from app.sources.mastodon import parse_statuses
from app.sources.replay import load_timeline
from app.stats import chat_stats
from tests.conftest import FIXTURES


def _mastodon() -> Parsed:
    statuses = json.loads((FIXTURES / "mastodon" / "qi-chat.json").read_text())
    return parse_statuses(statuses, "mastodon.social")


def _bluesky() -> Parsed:
    answer = json.loads((FIXTURES / "bluesky" / "searchPosts_leadingqi.json").read_text())
    parsed = Parsed()
    for view in answer["posts"]:
        one = parse_post_view(view)
        parsed.collected += one.collected
        parsed.context += one.context
        parsed.users += one.users
    return parsed


def _qi_chat(session: Session) -> Chat:
    """The fixtures' chat: 28 March 2023, 18:00-19:00 UTC."""
    return create_chat(
        session,
        slug="qi",
        title="QI hour",
        hashtags=["#LeadingQI", "#QIHour"],
        hosts=["qihour"],
        start=datetime(2023, 3, 28, 18, tzinfo=UTC),
        end=datetime(2023, 3, 28, 19, tzinfo=UTC),
    )


def test_ids_tell_their_network() -> None:
    assert post_network("1640803720390950912") == "x"
    assert post_network("https://mastodon.social/users/qihour/statuses/110101") == "mastodon"
    assert post_network("at://did:plc:abc/app.bsky.feed.post/3kabc") == "bluesky"
    assert post_network("https://mastodon.social/users/qihour/statuses/110101#poll") == "mastodon"
    assert account_network("14159265") == "x"
    assert account_network("helen@mastodon.social") == "mastodon"
    assert account_network("did:plc:abc") == "bluesky"
    # X ids sort as numbers, whatever their length
    assert sorted(["100", "99", "1000"], key=id_order) == ["99", "100", "1000"]


def test_three_networks_share_a_chat(database_url: str) -> None:
    engine, sessions = open_database(database_url)
    mastodon, bluesky = _mastodon(), _bluesky()
    assert mastodon.collected and bluesky.collected
    with sessions.begin() as session:
        chat = _qi_chat(session)
        chat_id = chat.id
    for parsed in (mastodon, bluesky):
        with sessions.begin() as session:
            store_parsed(session, chat_id, parsed)
    wanted = {r.id for r in mastodon.collected} | {r.id for r in bluesky.collected}
    with sessions() as session:
        rows = dict(
            session.execute(
                select(ChatPost.post_id, ChatPost.network).where(ChatPost.chat_id == chat_id)
            ).all()
        )
        assert set(rows) == wanted
        assert {rows[i] for i in (r.id for r in mastodon.collected)} == {"mastodon"}
        assert {rows[i] for i in (r.id for r in bluesky.collected)} == {"bluesky"}
        networks = dict(
            session.execute(select(Account.network, func.count()).group_by(Account.network)).all()
        )
        assert set(networks) == {"mastodon", "bluesky"}
        polls = session.scalars(select(Poll.network)).all()
        assert polls and set(polls) == {"mastodon"}
        stats = chat_stats(session, get_chat(session, "qi"), "all")
        assert stats["polls"], "the Mastodon poll is found by its own network"
        before = session.scalar(select(func.count()).select_from(Post))

    # The same posts again, one Mastodon status with more favourites: nothing doubles, the
    # figure grows on the Mastodon row.
    again = copy.deepcopy(mastodon)
    grown = next(r for r in again.collected if r.kind != "retweet")
    grown.like_count += 40
    with sessions.begin() as session:
        result = store_parsed(session, chat_id, again)
        assert result.newly_collected == []
        store_parsed(session, chat_id, bluesky)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Post)) == before
        likes = session.scalar(
            select(Post.like_count).where(Post.network == "mastodon", Post.id == grown.id)
        )
        assert likes == grown.like_count
    engine.dispose()


def test_a_replay_plays_mastodon_and_bluesky_archives_in_time_order(tmp_path: Path) -> None:
    statuses = json.loads((FIXTURES / "mastodon" / "qi-chat.json").read_text())
    answer = json.loads((FIXTURES / "bluesky" / "searchPosts_leadingqi.json").read_text())
    archive = tmp_path / "mixed.jsonl"
    archive.write_text(
        "\n".join(json.dumps(item) for item in [*statuses, answer, {"not": "a post"}]) + "\n"
    )
    timeline = load_timeline(archive, mastodon_server="mastodon.social")
    networks = {post_network(post.id) for post in timeline.posts}
    assert networks == {"mastodon", "bluesky"}
    assert len(timeline.posts) == len({p.id for p in timeline.posts})
    times = [post.created_at for post in timeline.posts]
    assert times == sorted(times)
    # Mastodon replies found their parents, though the timeline is newest first (but for the one
    # whose parent was deleted).
    replies = [p for p in timeline.posts if p.kind == "reply" and p.network == "mastodon"]
    linked = [p for p in replies if p.in_reply_to_id]
    assert len(replies) >= 4 and len(linked) == len(replies) - 1
    assert [error.line for error in timeline.errors] == [len(statuses) + 2]


def test_a_fast_growing_chat_keeps_postgresql_planner_statistics(database_url: str) -> None:
    """On a fresh PostgreSQL database the store's lookups would be planned as scans of every
    post (no statistics yet); the writer analyzes the tables as they double."""
    engine, sessions = open_database(database_url)
    statistics = Statistics(first=5)
    with sessions.begin() as session:
        chat = _qi_chat(session)
        result = store_parsed(session, chat.id, _mastodon())
        analyzed = statistics.grew(session, len(result.new_posts) + len(result.newly_collected))
        again = statistics.grew(session, 1)  # next at twice what was written
    postgres = engine.dialect.name == "postgresql"
    assert (analyzed, again) == (postgres, False)
    if postgres:
        with engine.connect() as conn:
            tuples = conn.execute(
                text("SELECT reltuples FROM pg_class WHERE relname = 'posts'")
            ).scalar()
        assert tuples is not None and tuples > 0  # -1 until the table is analyzed
        assert statistics.next_at == 2 * (statistics.written - 1)  # twice the rows at ANALYZE
    engine.dispose()
