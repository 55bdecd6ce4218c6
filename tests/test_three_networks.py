"""One chat followed on X, Mastodon and Bluesky at once has the figures of importing the same posts.

The three fakes run on loopback: X (`tests/fakex.py`, recent search, serving `qi-chat.jsonl`),
mastodon.social (`tests/fakemastodon.py`, serving `fixtures/mastodon/qi-chat.json`, streamed with
a token) and Bluesky (`tests/fakebluesky.py`, searchPosts). The fake X moves its archive's times
so that its newest post is two minutes old (recent search reaches back 7 days); the Mastodon
statuses, the Bluesky posts and the chat's window move by the same amount, so the three networks'
chats happen at the same (moved) times, as in `tests/test_networks_chat.py`.

A chat created with `--source x-search --mastodon mastodon.social --bluesky` and a host and panel
on each network is followed through the real hub while the posts appear, until every post is in.
Its figures (GET /stats for both windows, and the figures of a WebSocket snapshot and of a page
that watched it all) must equal those of a second database where a chat with the same window,
hosts and panel imports the same posts from files: the X archive's pages holding the posts search
found, the Mastodon tag timeline the fake served and the Bluesky searchPosts answers it served
(`tweetchat import` with the three in one run). Every post must also be tagged with the same
question in both.

Two Mastodon replies point at statuses outside the tag timeline (a status without the chat's
hashtags, which the live source fetches as context, and a deleted one): the import cannot link
them and says so; no figure depends on it.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

import app.live.hub as hub_module
from tests.conftest import FIXTURES, _postgres_database
from tests.fakebluesky import Account, FakeBluesky, PostFactory
from tests.fakemastodon import FakeMastodon, iso, parse_time
from tests.fakex import FakeX
from tests.helpers import CliRunnerFn, HubServer, make_cli_runner, recv_json
from tests.sources_helpers import network_settings
from tests.test_live import PANEL as X_PANEL
from tests.test_live_x import chat_posts
from tests.test_networks_chat import HASHTAGS, START, STATUSES, follow_until

QI = FIXTURES / "qi-chat.jsonl"
END = START + timedelta(hours=1)
SLUG = "qi"
HOSTS = "WarwickBSchool,qihour@mastodon.social,qihour.bsky.social"
PANEL = f"{X_PANEL},helen@mastodon.social,helen.bsky.social"


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeX, FakeMastodon, FakeBluesky]]:
    with (
        FakeX(posts=QI, keepalive_interval=0.2) as x,
        FakeMastodon(domain="mastodon.social") as social,
        FakeBluesky() as bluesky,
    ):
        yield x, social, bluesky


@pytest.fixture(autouse=True)
def no_supervisor_unfollow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The moved chat ended hours ago: the supervisor would stop following it. And no `.env` of
    # the working folder leaks in.
    monkeypatch.setattr(hub_module, "SUPERVISE_EVERY", 3600.0)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def imported_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty database on the same back end, for the import."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'imported.db'}"
    else:
        yield from _postgres_database("imp")


def moved_statuses(shift: timedelta) -> list[dict[str, Any]]:
    """The Mastodon fixture with its times moved by `shift` (statuses, boosted and quoted ones,
    polls)."""

    def move(status: dict[str, Any]) -> None:
        for key in ("created_at", "edited_at"):
            if status.get(key):
                status[key] = iso(parse_time(status[key]) + shift)
        poll = status.get("poll")
        if isinstance(poll, dict) and poll.get("expires_at"):
            poll["expires_at"] = iso(parse_time(poll["expires_at"]) + shift)
        if isinstance(status.get("reblog"), dict):
            move(status["reblog"])
        quote = status.get("quote")
        if isinstance(quote, dict) and isinstance(quote.get("quoted_status"), dict):
            move(quote["quoted_status"])

    statuses = copy.deepcopy(STATUSES)
    for status in statuses:
        move(status)
    return statuses


def mastodon_statuses(fake: FakeMastodon) -> set[str]:
    """The uris of the statuses the Mastodon source collects once all are out: those with the
    chat's hashtags, boosts left out (tag timelines and streams have none)."""
    return {
        status["uri"]
        for local, status in fake.statuses.items()
        if not status["reblog"] and not fake.tags_of(local).isdisjoint(HASHTAGS)
    }


def bluesky_posts(start: datetime) -> list[dict[str, Any]]:
    """The chat on Bluesky, oldest first: carol's A2 answered by the Bluesky panel member; the
    Bluesky host's Q4 at :45 (X's host asked it at :30), a reply and a quote of it, a
    custom-domain handle's A4; and a post with another hashtag, which search does not serve."""
    factory = PostFactory(start + timedelta(minutes=30), step=timedelta(minutes=1))
    carol = factory.post(
        Account("carol.bsky.social"), "A2 late, but: lead by listening #QIHour", likes=4
    )
    thanks = factory.post(
        Account("helen.bsky.social"), "Thank you Carol, so true #QIHour", reply_to=carol
    )
    q4 = factory.post(
        Account("qihour.bsky.social"),
        "Q4 What will you do tomorrow? #QIHour #LeadingQI",
        at=start + timedelta(minutes=45),
        reposts=3,
        likes=12,
    )
    dan = factory.post(Account("dan.bsky.social"), "Speak up, every day #QIHour", reply_to=q4)
    gina = factory.post(Account("gina.bsky.social"), "This one, yes #LeadingQI", quote=q4)
    erin = factory.post(Account("erin.example.org"), "A4 ask one more question #LeadingQI")
    other = factory.post(Account("frank.bsky.social"), "Not this chat #SomethingElse")
    return [carol, thanks, q4, dan, gina, erin, other]


def create(cli: CliRunnerFn, start: datetime, *options: str) -> None:
    result = cli(
        "chat", "create", SLUG, "--title", "QI on three networks",
        "--hashtags", "#LeadingQI,#QIHour", "--host", HOSTS, "--panel", PANEL,
        "--start", f"{start:%Y-%m-%dT%H:%M:%SZ}",
        "--end", f"{start + (END - START):%Y-%m-%dT%H:%M:%SZ}", *options,
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def without_trending(figures: dict[str, Any]) -> dict[str, Any]:
    """Figures less the trends reading, which only the live X source makes."""
    return {key: value for key, value in figures.items() if key != "trending"}


def page_figures(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "chat": without_trending(message["figures"]),
        "all": without_trending(message["figures_all"]),
    }


async def watch(
    url: str, expected: set[str], final: asyncio.Future[dict[str, dict[str, Any]]]
) -> list[str]:
    """A page open from before the chat is followed: the ids of the posts it was sent, once
    every post came and its figures reached `final`'s."""
    seen: list[str] = []
    message: dict[str, Any] = {}
    try:
        async with asyncio.timeout(40), websockets.connect(url, max_size=2**24) as ws:
            message = await recv_json(ws)
            seen.extend(post["id"] for post in message["latest"])
            while not expected <= set(seen):
                message = await recv_json(ws)
                seen.extend(post["id"] for post in message.get("posts", []))
            # The sources report every poll, so updates keep coming: the page's figures must
            # come to the final ones.
            want = await final
            while page_figures(message) != want:
                message = await recv_json(ws)
                seen.extend(post["id"] for post in message.get("posts", []))
    except TimeoutError:
        missing = sorted(expected - set(seen))[:5]
        raise AssertionError(f"the page saw {len(set(seen))} posts, missing {missing}") from None
    return seen


async def snapshot(url: str) -> dict[str, Any]:
    async with websockets.connect(url, max_size=2**24) as ws:
        message = await recv_json(ws)
    assert message["type"] == "snapshot"
    return message


def follow_live(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    x: FakeX,
    social: FakeMastodon,
    bluesky: FakeBluesky,
    posts: list[dict[str, Any]],
    expected: set[str],
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Follow the chat while the three networks publish it; (stats by window, the snapshot of
    a page opened at the end, the ids a page open all along was sent)."""
    settings = network_settings(
        monkeypatch,
        database_url,
        mastodon={"mastodon.social": social.url},
        mastodon_tokens={"mastodon.social": str(social.token)},
        bluesky=(bluesky.public_url, bluesky.pds_url),
        x_api_url=x.url,
        x_bearer_token=x.token,
        refresh_interval=0.5,
        x_backoff_scale=0.02,
    )
    order = x.chronological()
    # A part of each network's chat is out before the chat is followed; the rest comes after.
    x.publish_ids(order[:150])
    social.publish(8)
    bluesky.publish(*posts[:2])
    with HubServer(settings) as server:
        ws_url = server.url.replace("http://", "ws://") + f"/ws/chats/{SLUG}"

        async def scenario() -> tuple[dict[str, Any], list[str]]:
            loop = asyncio.get_running_loop()
            final: asyncio.Future[dict[str, dict[str, Any]]] = loop.create_future()
            page = asyncio.create_task(watch(ws_url, expected, final))
            await asyncio.sleep(0.3)  # the page has its snapshot before the first post
            assert server.hub is not None and server.loop is not None
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(server.hub.follow(SLUG), server.loop)
            )
            for index, start in enumerate(range(150, len(order), 50)):
                x.publish_ids(order[start : start + 50])
                social.publish(3)
                if index == 1:
                    bluesky.publish(*posts[2:5])
                await asyncio.sleep(0.15)
            social.publish_all()
            bluesky.publish(*posts[5:])
            await asyncio.to_thread(follow_until, server, SLUG, expected)
            shown = await snapshot(ws_url)
            final.set_result(page_figures(shown))
            return shown, await page

        shown, seen = asyncio.run(scenario())
        with httpx.Client(base_url=server.url) as http:
            stats = {
                window: http.get(f"/api/chats/{SLUG}/stats", params={"window": window}).json()
                for window in ("chat", "all")
            }
    return stats, shown, seen


def x_archive(x: FakeX, keep: set[str], path: Path) -> None:
    """The archive's pages holding only the posts search found, as the fake served them (its
    moved times): data, and the includes (users, referenced posts, polls)."""
    lines = []
    for line in QI.read_text(encoding="utf-8").splitlines():
        page = json.loads(line)
        page["data"] = [x.tweet(tweet["id"]) for tweet in page["data"] if tweet["id"] in keep]
        includes = page.get("includes") or {}
        includes["tweets"] = [x.tweet(tweet["id"]) for tweet in includes.get("tweets") or []]
        includes["polls"] = [dict(x.polls[poll["id"]]) for poll in includes.get("polls") or []]
        lines.append(json.dumps(page) + "\n")
    path.write_text("".join(lines), encoding="utf-8")


def imported_figures(
    imported_url: str, start: datetime, files: list[Path]
) -> tuple[dict[str, dict[str, Any]], str]:
    cli = make_cli_runner(imported_url)
    create(cli, start, "--source", "none")
    result = cli("import", SLUG, *map(str, files))
    assert result.exit_code == 0, result.output
    figures = {}
    for window in ("chat", "all"):
        shown = cli("stats", SLUG, "--window", window, "--json")
        assert shown.exit_code == 0, shown.output
        figures[window] = json.loads(shown.output)
    return figures, result.output


def tags(database_url: str, path: Path) -> dict[str, tuple[str, str, int | None]]:
    """Every collected post's (network, kind, question), from the JSON export."""
    result = make_cli_runner(database_url)(
        "export", SLUG, "--format", "json", "--output", str(path)
    )
    assert result.exit_code == 0, result.output
    posts = json.loads(path.read_text(encoding="utf-8"))["posts"]
    return {post["id"]: (post["network"], post["kind"], post["question"]) for post in posts}


def test_three_networks_followed_live_give_the_figures_of_importing_the_same_posts(
    database_url: str,
    imported_url: str,
    fakes: tuple[FakeX, FakeMastodon, FakeBluesky],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    x, social, bluesky = fakes
    # Search that returns retweets (as before May 2026), so that X's figures can be the archive's.
    x.reset(QI, keepalive_interval=0.2, search_excludes_retweets=False)
    start = x.at(START)
    social.reset(moved_statuses(x.shift), domain="mastodon.social", heartbeat_interval=0.1)
    bluesky.reset()
    posts = bluesky_posts(start)
    create(
        make_cli_runner(database_url),
        start,
        "--source", "x-search", "--mastodon", "mastodon.social", "--bluesky",
    )  # fmt: skip

    on_x, on_mastodon = chat_posts(x), mastodon_statuses(social)
    on_bluesky = {post["uri"] for post in posts if "#SomethingElse" not in post["record"]["text"]}
    expected = on_x | on_mastodon | on_bluesky
    live, shown, seen = follow_live(database_url, monkeypatch, x, social, bluesky, posts, expected)
    assert len(seen) == len(set(seen)) and set(seen) == expected  # every post once, on the page

    # The same posts, as files: what each fake served.
    x_file, mastodon_file, bluesky_file = (
        tmp_path / "x-search.jsonl",
        tmp_path / "mastodon-timeline.json",
        tmp_path / "bluesky-search.json",
    )
    x_archive(x, on_x, x_file)
    timeline = [
        social.status(local)
        for local in sorted(social.published, reverse=True)
        if social.uri(local) in on_mastodon
    ]
    mastodon_file.write_text(json.dumps(timeline, indent=2), encoding="utf-8")
    served = {uri for request in bluesky.requests("search") for uri in request.returned}
    assert served == on_bluesky  # search served the chat's posts only
    answers = [
        {"posts": [bluesky.posts[uri] for uri in request.returned]}
        for request in bluesky.requests("search")
        if request.returned
    ]
    bluesky_file.write_text("".join(json.dumps(a) + "\n" for a in answers), encoding="utf-8")
    imported, output = imported_figures(imported_url, start, [x_file, mastodon_file, bluesky_file])
    assert f"Imported {len(expected)} new post(s)" in output
    assert "2 Mastodon reply(ies) or quote(s) point at a status in none of the files" in output

    for window in ("chat", "all"):
        want = without_trending(imported[window])
        assert without_trending(live[window]) == want, window
        assert page_figures(shown)[window] == want, window
    assert imported["chat"]["trending"] == []  # only the live X source reads the trends

    # What the figures are made of: every network's posts, tagged alike.
    live_tags = tags(database_url, tmp_path / "live.json")
    assert live_tags == tags(imported_url, tmp_path / "imported.json")
    by_network = {
        network: {i for i, (n, _, _) in live_tags.items() if n == network}
        for network in ("x", "mastodon", "bluesky")
    }
    assert by_network == {"x": on_x, "mastodon": on_mastodon, "bluesky": on_bluesky}
    carol, thanks, q4, dan, gina, erin, _ = (post["uri"] for post in posts)
    assert {uri: live_tags[uri][1:] for uri in (carol, thanks, q4, dan, gina, erin)} == {
        carol: ("original", 2),
        thanks: ("reply", 2),
        q4: ("original", 4),
        dan: ("reply", 4),
        gina: ("quote", 4),
        erin: ("original", 4),
    }
    mastodon_answers = {
        number: sum(1 for uri in on_mastodon if live_tags[uri][2] == number) for number in (1, 2, 3)
    }
    assert all(mastodon_answers.values()), mastodon_answers
    figures = live["chat"]
    assert [q["number"] for q in figures["questions"]] == [1, 2, 3, 4, 5, 6]
    assert figures["retweets"] > 0 and figures["quotes"] > 0 and figures["replies"] > 0
    assert figures["unanswered"] > 0 and figures["top_tweets"] and figures["polls"]
