"""A chat that follows Mastodon servers and Bluesky beside X, through the real hub and runtime.

The fake Mastodon (`tests/fakemastodon.py`, mastodon.social serving the hand-written chat of
`fixtures/mastodon/qi-chat.json`) and the fake Bluesky (`tests/fakebluesky.py`) run on loopback;
the server finds them through TWEETCHAT_MASTODON_URL_MASTODON_SOCIAL and TWEETCHAT_BLUESKY_URL,
as a deployment would find the real ones. The chat is created with the CLI
(`--mastodon mastodon.social --bluesky`, hosts and panel as Mastodon and Bluesky handles), and
followed by `hub.follow` (its 2023 window is not open, so the supervisor would not start it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

import app.live.hub as hub_module
from app.chats import get_chat
from app.config import Settings
from app.db.engine import open_database
from app.db.models import SourceState
from app.sources.mastodon import POSITION_KEY, rewind_id
from tests.conftest import FIXTURES
from tests.fakebluesky import Account, FakeBluesky, PostFactory
from tests.fakemastodon import FakeMastodon
from tests.helpers import CliRunnerFn, HubServer, make_cli_runner
from tests.sources_helpers import eventually, network_settings

STATUSES: list[dict[str, Any]] = json.loads(
    (FIXTURES / "mastodon" / "qi-chat.json").read_text(encoding="utf-8")
)
HASHTAGS = {"leadingqi", "qihour"}
START = datetime(2023, 3, 28, 18, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
HOSTS = "qihour@mastodon.social,QIHour.bsky.social"
PANEL = "@Helen@mastodon.social,helen.bsky.social"
STAFF = {
    "qihour@mastodon.social",
    "qihour.bsky.social",
    "helen@mastodon.social",
    "helen.bsky.social",
}

# What the tagger makes of the two networks' posts (fixtures/mastodon/README.md says who posts
# what): Q1-Q3 are the Mastodon host's, Q4 the Bluesky host's. Answers count the panel's too.
ANSWERS = {1: 1, 2: 9, 3: 3, 4: 2}
# Answers by neither host nor panel with no reply from them: Mastodon's li (Q1), bryan, ana,
# li, bryan, sam (Q2), li, bryan (Q3); Bluesky's dan and erin (Q4). Carol's A2 has a reply
# from the Bluesky panel member.
UNANSWERED = 10


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeMastodon, FakeBluesky]]:
    with FakeMastodon(domain="mastodon.social") as social, FakeBluesky() as bluesky:
        yield social, bluesky


@pytest.fixture
def social(fakes: tuple[FakeMastodon, FakeBluesky]) -> FakeMastodon:
    fake = fakes[0]
    fake.reset(STATUSES, domain="mastodon.social", heartbeat_interval=0.1)
    return fake


@pytest.fixture
def bluesky(fakes: tuple[FakeMastodon, FakeBluesky]) -> FakeBluesky:
    fake = fakes[1]
    fake.reset()
    return fake


@pytest.fixture(autouse=True)
def no_supervisor_unfollow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The supervisor stops following chats whose window is closed, as this 2023 chat's is; its
    # next look must come after the test. And no `.env` of the working folder leaks in.
    monkeypatch.setattr(hub_module, "SUPERVISE_EVERY", 3600.0)
    monkeypatch.chdir(tmp_path)


def bluesky_posts() -> list[dict[str, Any]]:
    """The chat on Bluesky, oldest first: an A2 answered by the panel, the host's Q4, two
    answers to it (a reply, and a custom-domain handle's A4)."""
    factory = PostFactory(START + timedelta(minutes=30), step=timedelta(minutes=1))
    carol = factory.post(Account("carol.bsky.social"), "A2 late, but: lead by listening #QIHour")
    thanks = factory.post(
        Account("helen.bsky.social"), "Thank you Carol, so true #QIHour", reply_to=carol
    )
    q4 = factory.post(
        Account("qihour.bsky.social"),
        "Q4 What will you do tomorrow? #QIHour #LeadingQI",
        at=START + timedelta(minutes=45),
    )
    dan = factory.post(Account("dan.bsky.social"), "Speak up, every day #QIHour", reply_to=q4)
    erin = factory.post(Account("erin.example.org"), "A4 ask one more question #LeadingQI")
    other = factory.post(Account("frank.bsky.social"), "Not this chat #SomethingElse")
    return [carol, thanks, q4, dan, erin, other]


def mastodon_chat(fake: FakeMastodon) -> set[str]:
    """The uris of the published statuses a source collects: with the chat's hashtags, no
    reblogs (tag timelines have none); the 72 hours before the chat reach back far enough."""
    found = set()
    for local in fake.published:
        status = fake.statuses[local]
        if not status["reblog"] and not fake.tags_of(local).isdisjoint(HASHTAGS):
            found.add(status["uri"])
    return found


def bluesky_chat(posts: list[dict[str, Any]]) -> set[str]:
    return {post["uri"] for post in posts if "SomethingElse" not in post["record"]["text"]}


def create(cli: CliRunnerFn, slug: str, *options: str) -> str:
    result = cli(
        "chat", "create", slug, "--title", "QI on three networks",
        "--hashtags", "#LeadingQI,#QIHour", "--host", HOSTS, "--panel", PANEL,
        "--start", f"{START:%Y-%m-%dT%H:%M:%SZ}", "--end", f"{END:%Y-%m-%dT%H:%M:%SZ}",
        *options,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output


def settings_for(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    social: FakeMastodon,
    bluesky: FakeBluesky,
    *,
    token: bool,
) -> Settings:
    return network_settings(
        monkeypatch,
        database_url,
        mastodon={"mastodon.social": social.url},
        mastodon_tokens={"mastodon.social": str(social.token)} if token else None,
        bluesky=(bluesky.public_url, bluesky.pds_url),
    )


def follow_until(server: HubServer, slug: str, expected: set[str]) -> dict[str, Any]:
    """Follow the chat until it has collected exactly `expected`; its live snapshot."""

    async def run() -> dict[str, Any]:
        assert server.hub is not None
        await server.hub.follow(slug)
        runtime = await server.hub.runtime(slug)
        await eventually(
            lambda: runtime.collected >= expected,
            lambda: (
                f"missing {sorted(expected - runtime.collected)}; sources "
                f"{runtime.snapshot()['sources']}"
            ),
        )
        await runtime.published()
        assert runtime.collected == expected
        return runtime.snapshot()

    return server.call(run())


def stored_positions(database_url: str) -> dict[str, dict[str, Any]]:
    engine, sessions = open_database(database_url)
    try:
        with sessions() as session:
            rows = session.scalars(select(SourceState)).all()
            return {row.source: dict(row.position) for row in rows}
    finally:
        engine.dispose()


def figures(server: HubServer, slug: str) -> dict[str, Any]:
    with httpx.Client(base_url=server.url) as http:
        answer = http.get(f"/api/chats/{slug}/stats", params={"window": "all"})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def check_tags(stats: dict[str, Any], database_url: str, slug: str, q4_uri: str) -> None:
    """The hosts' question posts on both networks are recognised, and the answers counted."""
    assert {q["number"]: q["answers"] for q in stats["questions"]} == ANSWERS
    assert stats["unanswered"] == UNANSWERED
    q2 = next(s for s in STATUSES if s["content"].startswith("<p>Q2 "))
    engine, sessions = open_database(database_url)
    try:
        with sessions() as session:
            chat = get_chat(session, slug)
            posts = {q.number: q.post_id for q in chat.questions}
    finally:
        engine.dispose()
    assert posts[2] == q2["uri"] and posts[4] == q4_uri


def test_a_chat_follows_mastodon_and_bluesky_without_an_x_token(
    database_url: str,
    social: FakeMastodon,
    bluesky: FakeBluesky,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_for(monkeypatch, database_url, social, bluesky, token=True)
    cli = make_cli_runner(database_url)
    output = create(
        cli, "live", "--source", "x-search", "--mastodon", "mastodon.social", "--bluesky"
    )
    assert "sources: x-search, Mastodon (mastodon.social), Bluesky" in output
    posts = bluesky_posts()
    social.publish(12)
    bluesky.publish(*posts[:2])
    with HubServer(settings) as server:
        first = follow_until(server, "live", mastodon_chat(social) | bluesky_chat(posts[:2]))
        # The rest of the chat happens while it is followed: streamed from Mastodon, searched
        # on Bluesky.
        social.publish_all()
        bluesky.publish(*posts[2:])
        snapshot = follow_until(server, "live", mastodon_chat(social) | bluesky_chat(posts))
        stats = figures(server, "live")
        queue = server.call(_queue(server, "live"))
    # No X bearer token: X says so, the other networks collect all the same.
    for shown in (first, snapshot):
        sources = shown["sources"]
        assert sources["x-search"]["state"] == "stopped"
        assert "TWEETCHAT_X_BEARER_TOKEN" in sources["x-search"]["detail"]
        assert sources["mastodon"]["state"] == "running"
        assert sources["bluesky"]["state"] == "running"
    assert "streaming" in snapshot["sources"]["mastodon"]["detail"]  # the token was found
    streams = social.requests("stream")
    assert streams and all(r.headers.get("authorization") == "Bearer test-token" for r in streams)
    assert snapshot["sources"]["bluesky"]["requests"] > 0
    assert snapshot["spend"]["posts_read"] == 0  # only X reads cost money
    check_tags(stats, database_url, "live", posts[2]["uri"])
    # The panel's queue, live, agrees with the stored figures; no host or panel post is in it.
    assert len(queue) == UNANSWERED
    assert not {post["username"].lower() for post in queue} & STAFF


async def _queue(server: HubServer, slug: str) -> list[dict[str, Any]]:
    assert server.hub is not None
    runtime = await server.hub.runtime(slug)
    return runtime.queue()


def test_a_restart_resumes_each_network_from_its_position(
    database_url: str,
    social: FakeMastodon,
    bluesky: FakeBluesky,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_for(monkeypatch, database_url, social, bluesky, token=False)
    cli = make_cli_runner(database_url)
    create(cli, "again", "--mastodon", "https://Mastodon.Social/", "--bluesky")
    posts = bluesky_posts()
    social.publish(12)
    bluesky.publish(*posts[:3])
    first_half = mastodon_chat(social) | bluesky_chat(posts[:3])
    with HubServer(settings) as server:
        snapshot = follow_until(server, "again", first_half)

        async def positions_stored() -> None:
            assert server.hub is not None
            runtime = await server.hub.runtime("again")
            await eventually(
                lambda: (
                    bool(runtime.position("mastodon").get(POSITION_KEY))
                    and "since" in runtime.position("bluesky")
                ),
                lambda: f"positions {runtime.position('mastodon')}, {runtime.position('bluesky')}",
            )

        server.call(positions_stored())
    assert "polling" in snapshot["sources"]["mastodon"]["detail"]  # no token: the timeline
    assert "x-search" not in snapshot["sources"] and "x-stream" not in snapshot["sources"]
    stored = stored_positions(database_url)
    ((host, groups),) = stored["mastodon"][POSITION_KEY].items()
    newest = groups["leadingqi,qihour"]
    timeline_before = len(social.requests("timeline"))
    search_before = len(bluesky.requests("search"))

    # While the server is down the chat goes on; a new server takes it from the positions.
    social.publish_all()
    bluesky.publish(*posts[3:])
    everything = mastodon_chat(social) | bluesky_chat(posts)
    with HubServer(settings) as server:
        snapshot = follow_until(server, "again", everything)
        stats = figures(server, "again")
    resumed = social.requests("timeline")[timeline_before]
    assert host == social.url.removeprefix("http://")
    assert "max_id" not in resumed.params  # not from the top again, but forwards from ...
    assert resumed.param("min_id") == rewind_id(newest, 300.0)  # ... the stored id (late margin)
    assert bluesky.requests("search")[search_before].params["since"] == stored["bluesky"]["since"]
    # Posts read twice (the late margin, the search overlap) are stored and counted once.
    assert stats["original_tweets"] == len(everything)
    assert stats["retweets"] == 0
    check_tags(stats, database_url, "again", posts[2]["uri"])
    assert snapshot["sources"]["mastodon"]["state"] == "running"
    assert snapshot["sources"]["bluesky"]["state"] == "running"


def test_chat_create_validates_and_shows_the_networks(cli: CliRunnerFn) -> None:
    base = ("chat", "create", "c", "--title", "C", "--hashtags", "#QIHour",
            "--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z")  # fmt: skip
    bad = [
        (("--host", "h", "--mastodon", "mastodon social"), "--mastodon 'mastodon social'"),
        (("--host", "h", "--mastodon", "mastodon.social,http://x.org/a"), "'http://x.org/a'"),
        (("--host", "h", "--mastodon", "localhost"), "--mastodon 'localhost'"),
        (("--host", "qihour@"), "host 'qihour@' is not an account"),
        (("--host", "h", "--panel", "helen@mastodon social"), "'helen@mastodon social'"),
        (("--host", "h", "--panel", "a,bad name"), "panel member 'bad name'"),
        (("--host", "h", "--source", "mastodon"), "unknown source 'mastodon'"),
    ]
    for options, message in bad:
        result = cli(*base, *options)
        assert result.exit_code == 2, (options, result.output)
        assert message in result.output, (options, result.output)
        assert "Traceback" not in result.output
    assert "No chats yet" in cli("chat", "list").output  # nothing half-made

    result = cli(
        *base, "--source", "x-stream", "--host", "WarwickBSchool,@QIHour@Mastodon.Social",
        "--host", "QIHour.bsky.social", "--panel", "helen@mastodon.social,helen.bsky.social",
        "--mastodon", "mastodon.social,Fosstodon.org", "--mastodon", "mastodon.social",
        "--bluesky",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sources: x-stream, Mastodon (mastodon.social, fosstodon.org), Bluesky" in result.output
    shown = cli("chat", "show", "c").output
    assert "hosts: WarwickBSchool, qihour@mastodon.social, qihour.bsky.social" in shown
    assert "panel: helen@mastodon.social, helen.bsky.social" in shown
    assert "X: x-stream" in shown
    assert "Mastodon: mastodon.social, fosstodon.org" in shown
    assert "Bluesky: yes" in shown
    listed = cli("chat", "list").output
    assert "x-stream, Mastodon (mastodon.social, fosstodon.org), Bluesky" in listed

    plain = cli(*base[:2], "d", *base[3:], "--host", "h")
    assert plain.exit_code == 0, plain.output
    shown = cli("chat", "show", "d").output
    assert "X: none" in shown and "Mastodon: -" in shown and "Bluesky: no" in shown


def test_a_chat_on_mastodon_or_bluesky_only_is_followed_in_its_window(sqlite_url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    cli = make_cli_runner(sqlite_url)
    for slug, options in (
        ("mastodon-only", ("--mastodon", "mastodon.social")),
        ("bluesky-only", ("--bluesky",)),
        ("imports-only", ()),
    ):
        result = cli(
            "chat", "create", slug, "--title", slug, "--hashtags", "#QIHour", "--host", "h",
            "--start", f"{now - timedelta(minutes=10):%Y-%m-%dT%H:%M:%SZ}",
            "--end", f"{now + timedelta(minutes=50):%Y-%m-%dT%H:%M:%SZ}", *options,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    with HubServer(Settings(database_url=sqlite_url)) as server:
        assert server.hub is not None
        assert sorted(server.hub.open_chats(now)) == ["bluesky-only", "mastodon-only"]


def test_mastodon_and_bluesky_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "TWEETCHAT_MASTODON_TOKEN_FOSSTODON_ORG=from-dotenv\n"
        "TWEETCHAT_MASTODON_TOKEN_MASTODON_SOCIAL=overridden\n"
        "TWEETCHAT_MASTODON_URL_SOCIAL_COOP=http://127.0.0.1:9/\n"
    )
    monkeypatch.setenv("TWEETCHAT_MASTODON_TOKEN_MASTODON_SOCIAL", "from-env")
    monkeypatch.setenv("tweetchat_mastodon_token_xn__bcher_kva_example", "lower-case name")
    monkeypatch.setenv("TWEETCHAT_BLUESKY_IDENTIFIER", "wbs.bsky.social")
    monkeypatch.setenv("TWEETCHAT_BLUESKY_APP_PASSWORD", "abcd-efgh-ijkl-mnop")
    settings = Settings()
    assert settings.mastodon_token("mastodon.social") == "from-env"  # the environment wins
    assert settings.mastodon_token("fosstodon.org") == "from-dotenv"
    assert settings.mastodon_token("xn--bcher-kva.example") == "lower-case name"
    assert settings.mastodon_token("mas.to") is None
    assert settings.mastodon_url("social.coop") == "http://127.0.0.1:9"
    assert settings.mastodon_url("mas.to") == "https://mas.to"
    assert settings.bluesky_url == "https://public.api.bsky.app"
    assert settings.bluesky_pds_url == "https://bsky.social"
    assert (settings.bluesky_identifier, settings.bluesky_app_password) == (
        "wbs.bsky.social",
        "abcd-efgh-ijkl-mnop",
    )
    # Given in code, by host.
    assert Settings(mastodon_tokens={"mas.to": "t"}).mastodon_token("mas.to") == "t"
    monkeypatch.setenv("TWEETCHAT_MASTODON_URL_MAS_TO", "mas.to")
    with pytest.raises(ValidationError, match=r"TWEETCHAT_MASTODON_URL_MAS_TO is 'mas\.to'"):
        Settings()
    monkeypatch.delenv("TWEETCHAT_MASTODON_URL_MAS_TO")
    monkeypatch.setenv("TWEETCHAT_MASTODON_KEEPALIVE_TIMEOUT", "0")
    with pytest.raises(
        ValidationError, match=r"mastodon_keepalive_timeout\s+Input should be greater than 0"
    ):
        Settings()
    # A stream found silent later than the late margin loses nothing: its catch-up reads from
    # the position as of its last byte (test_mastodon.py).
    monkeypatch.setenv("TWEETCHAT_MASTODON_KEEPALIVE_TIMEOUT", "600")
    assert Settings().mastodon_keepalive_timeout == 600


def test_a_bad_mastodon_url_is_named_by_the_cli(
    cli: CliRunnerFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWEETCHAT_MASTODON_URL_MASTODON_SOCIAL", "ftp://mastodon.social")
    result = cli("chat", "list")
    assert result.exit_code == 2
    assert "TWEETCHAT_MASTODON_URL_MASTODON_SOCIAL is 'ftp://mastodon.social'" in result.output
