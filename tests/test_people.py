"""People linked across networks and cross-posts (issue 7, step 5): a person's accounts count once,
and the same words posted by them on X, Mastodon and Bluesky within five minutes show once, counted
as the first post, with the other networks listed (`also`). Linked by the command line or the admin
API, before or after the posts are collected; live, imported and stored figures agree."""

from __future__ import annotations

import asyncio
import csv
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st

from app.chats import get_chat
from app.config import Settings
from app.db.engine import open_database
from app.ingest import crossposts as crossposts_module
from app.ingest.crossposts import COPY_WINDOW, CopyInput, CrossPosts, normalize
from app.ingest.parse import Parsed, PostRecord, UserRecord, id_order
from app.ingest.store import store_parsed
from app.ingest.tagging import retag_chat
from app.people import link, parse_ref
from app.sources.base import SourceBatch
from app.stats import chat_stats
from tests.helpers import CliRunnerFn, HubServer, make_cli_runner, recv_json

ADMIN = "admin-token-for-people-tests-01"
AT = datetime(2023, 3, 28, 18, 20, tzinfo=UTC)
HELEN = [
    UserRecord(id="9001", username="HelenBevan", name="Helen Bevan"),
    UserRecord(
        id="helen@mastodon.social",
        username="helen@mastodon.social",
        name="Helen",
        network="mastodon",
    ),
    UserRecord(id="did:plc:helen", username="helen.bsky.social", name="Helen", network="bluesky"),
]
SAM = UserRecord(id="9002", username="sam_nhs", name="Sam")
PANELLIST = UserRecord(
    id="did:plc:panel", username="panel.bsky.social", name="Panel", network="bluesky"
)
LINK = ["x:HelenBevan", "helen@mastodon.social", "@helen.bsky.social"]

X_POST = "1640790000000000101"
TOOT = "https://mastodon.social/users/helen/statuses/110102280000000001"
TOOT_PAGE = "https://mastodon.social/@helen/110102280000000001"
SKEET = "at://did:plc:helen/app.bsky.feed.post/3lcopyaaaaa22"
SKEET_PAGE = "https://bsky.app/profile/helen.bsky.social/post/3lcopyaaaaa22"
LATE_SKEET = "at://did:plc:helen/app.bsky.feed.post/3lcopybbbbb22"  # six minutes on: her own
SAM_X = "1640790000000000102"  # the same words by someone else
PANEL_REPLY = "at://did:plc:panel/app.bsky.feed.post/3lcopyccccc22"  # answers SKEET, so X_POST


def post(
    post_id: str,
    author: str,
    minutes: float,
    text: str,
    *,
    network: str = "x",
    reply_to: str | None = None,
    raw: dict[str, Any] | None = None,
) -> PostRecord:
    return PostRecord(
        network=network,
        id=post_id,
        author_id=author,
        created_at=AT + timedelta(minutes=minutes),
        text=text,
        kind="reply" if reply_to else "original",
        in_reply_to_id=reply_to,
        in_reply_to_user_id=None,
        quoted_id=None,
        retweeted_id=None,
        conversation_id=None,
        lang="en",
        poll_id=None,
        retweet_count=0,
        reply_count=0,
        like_count=0,
        quote_count=0,
        impression_count=None,
        raw=raw or {"id": post_id},
    )


def batches() -> list[Parsed]:
    """One batch a network, in the order the sources might bring them."""
    words = "A2: celebrate small wins"
    return [
        Parsed(
            collected=[
                post(X_POST, "9001", 0, f"{words} #LeadingQI https://t.co/abc"),
                post(SAM_X, "9002", 2, f"{words} #LeadingQI"),
            ],
            users=[HELEN[0], SAM],
        ),
        Parsed(
            collected=[
                post(
                    TOOT,
                    "helen@mastodon.social",
                    1.5,
                    "a2:  Celebrate SMALL wins #leadingqi",
                    network="mastodon",
                    raw={"id": "1", "uri": TOOT, "url": TOOT_PAGE},
                )
            ],
            users=[HELEN[1]],
        ),
        Parsed(
            collected=[
                post(SKEET, "did:plc:helen", 3, f"{words} #LeadingQI #QIHour", network="bluesky"),
                post(LATE_SKEET, "did:plc:helen", 6, f"{words} #LeadingQI", network="bluesky"),
                post(
                    PANEL_REPLY,
                    "did:plc:panel",
                    4,
                    "@helen.bsky.social so true!",
                    network="bluesky",
                    reply_to=SKEET,
                ),
            ],
            users=[HELEN[2], PANELLIST],
        ),
    ]


def create_chat(cli: CliRunnerFn, slug: str = "qi") -> None:
    result = cli(
        "chat", "create", slug, "--title", "QI", "--hashtags", "#LeadingQI,#QIHour",
        "--host", "WarwickBSchool", "--panel", "panel.bsky.social",
        "--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def store(database_url: str, slug: str = "qi", *, link_first: bool = False) -> None:
    """The posts stored as an import stores them (a batch each, then the chat re-tagged)."""
    engine, sessions = open_database(database_url)
    try:
        with sessions.begin() as session:
            chat_id = get_chat(session, slug).id
            if link_first:
                store_parsed(session, chat_id, Parsed(users=[*HELEN, SAM, PANELLIST]))
                link(session, LINK)
        for parsed in batches():
            with sessions.begin() as session:
                store_parsed(session, chat_id, parsed)
        with sessions.begin() as session:
            retag_chat(session, get_chat(session, slug))
    finally:
        engine.dispose()


def stats(cli: CliRunnerFn, slug: str = "qi") -> dict[str, Any]:
    result = cli("stats", slug, "--json")
    assert result.exit_code == 0, result.output
    figures: dict[str, Any] = json.loads(result.output)
    return figures


def q2(figures: dict[str, Any]) -> dict[str, Any]:
    return next(q for q in figures["questions"] if q["number"] == 2)


# ---- the text two cross-posts share, and deciding copies in any order -------------------------


def test_normalize_folds_what_differs_between_networks() -> None:
    tags = ["#LeadingQI", "#QIHour"]
    same = [
        "A1: Yes!! https://t.co/abc #LeadingQI @bob",
        "a1:  yes!!  example.com/long-pa… #leadingqi @bob@mastodon.social",
        "A1: yes!! #LeadingQI #QIHour @bob.bsky.social",
        "A1: yes!! &amp; #LeadingQI".replace(" &amp;", ""),
    ]
    assert {normalize(text, tags) for text in same} == {"a1: yes"}
    assert normalize("A1: yes #OtherTag", tags) == "a1: yes #othertag"  # other hashtags stay
    assert normalize("write to me@example.com", tags) == "write to me@example.com"
    assert normalize("#LeadingQI https://t.co/x @bob", tags) == ""  # nothing left: never a copy


def test_copies_only_across_networks_within_five_minutes() -> None:
    crossposts = CrossPosts(["#QIHour"])
    at = AT

    def item(post_id: str, minutes: float, person: str = "helen") -> CopyInput:
        return CopyInput(post_id, person, at + timedelta(minutes=minutes), "same words")

    changed = crossposts.add(
        [
            item("101", 0),
            item("https://m.example/s/1", 1),  # a copy of 101
            item("102", 2),  # X again: never a copy of an X post, so a post of its own
            item("https://m.example/s/2", 3),  # Mastodon again: joins 102's
            item("at://did:plc:h/app.bsky.feed.post/1", 5),  # the edge: still 101's
            item("at://did:plc:h/app.bsky.feed.post/2", 5.01),  # past it: 102's
            item("at://did:plc:s/app.bsky.feed.post/3", 0.5, person="sam"),  # someone else
        ]
    )
    assert changed == {
        "https://m.example/s/1": "101",
        "https://m.example/s/2": "102",
        "at://did:plc:h/app.bsky.feed.post/1": "101",
        "at://did:plc:h/app.bsky.feed.post/2": "102",
    }
    assert timedelta(minutes=5) == COPY_WINDOW
    # An earlier post collected late takes the group over: the first post becomes its copy.
    late = crossposts.add(
        [
            CopyInput(
                "at://did:plc:h/app.bsky.feed.post/0",
                "helen",
                at - timedelta(minutes=1),
                "same words",
            )
        ]
    )
    assert late == {
        "101": "at://did:plc:h/app.bsky.feed.post/0",
        "https://m.example/s/1": "at://did:plc:h/app.bsky.feed.post/0",
        "at://did:plc:h/app.bsky.feed.post/1": "102",
        "at://did:plc:h/app.bsky.feed.post/2": None,
    }


def test_people_on_one_network_cost_no_normalizing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Texts are compared only once a person is seen on a second network; what is decided is
    the same as when every text is compared at once."""
    calls: list[str] = []
    original = crossposts_module.normalize

    def counted(text: str, hashtags: Any) -> str:
        calls.append(text)
        return original(text, hashtags)

    monkeypatch.setattr(crossposts_module, "normalize", counted)
    crossposts = CrossPosts(["#QIHour"])
    on_x = [CopyInput(str(100 + n), "helen", AT + timedelta(minutes=n), "same") for n in range(5)]
    assert crossposts.add(on_x) == {}
    assert calls == []
    # Her first post elsewhere: her posts are compared now; it copies her first X post.
    later = AT + timedelta(seconds=30)
    changed = crossposts.add([CopyInput("https://m.example/s/1", "helen", later, "same #QIHour")])
    assert changed == {"https://m.example/s/1": "100"}
    assert len(calls) == 6


NETWORK_FORMS = ["{}", "https://m.example/s/{}", "at://did:plc:h/app.bsky.feed.post/{}"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(["helen", "sam"]),
            st.sampled_from([0, 1, 3, 4.5, 5, 5.5, 7, 9, 10, 12]),
            st.sampled_from(["a", "b"]),
        ),
        min_size=1,
        max_size=14,
    ),
    st.randoms(use_true_random=False),
)
def test_copies_do_not_depend_on_arrival_order(
    specs: list[tuple[int, str, float, str]], rng: random.Random
) -> None:
    items = [
        CopyInput(NETWORK_FORMS[net].format(n), person, AT + timedelta(minutes=at), key)
        for n, (net, person, at, key) in enumerate(specs)
    ]
    batch = CrossPosts([])
    items.sort(key=lambda i: (i.created_at, id_order(i.id)))
    batch.add(items)
    incremental = CrossPosts([])
    seen: dict[str, str] = {}
    order = items[:]
    rng.shuffle(order)
    while order:
        size = rng.randint(1, 3)
        chunk, order = order[:size], order[size:]
        for post_id, first in incremental.add(chunk).items():
            if first is None:
                seen.pop(post_id, None)
            else:
                seen[post_id] = first
    assert dict(incremental.copies()) == dict(batch.copies()) == seen


def test_accounts_are_read_as_people_write_them() -> None:
    assert parse_ref("x:HelenBevan") == parse_ref("@HelenBevan") == parse_ref("HelenBevan")
    assert parse_ref("@helen@mastodon.social").network == "mastodon"
    assert parse_ref("helen.bsky.social").network == "bluesky"
    assert parse_ref("bluesky:did:plc:helen").value == "did:plc:helen"
    assert parse_ref("did:plc:helen").network == "bluesky"


# ---- the command line, on SQLite and PostgreSQL -------------------------------------------------


def test_people_link_makes_one_participant_and_one_post(
    cli: CliRunnerFn, database_url: str, tmp_path: Path
) -> None:
    create_chat(cli)
    store(database_url)
    before = stats(cli)
    assert before["participants"] == 5  # Helen's three accounts, Sam, the panellist
    assert before["original_tweets"] == 6
    assert q2(before)["answers"] == 6 and q2(before)["participants"] == 5  # the panel too
    assert before["unanswered"] == 4  # the Bluesky copy has the panel's reply

    # Clear errors that name the account, and nothing changed.
    unknown = cli("people", "link", "x:HelenBevan", "x:nobody", "nobody@mastodon.social")
    assert unknown.exit_code == 2
    assert "x account 'nobody'" in unknown.output
    assert "mastodon account 'nobody@mastodon.social'" in unknown.output
    alone = cli("people", "link", "x:HelenBevan", "@HelenBevan")
    assert alone.exit_code == 2 and "at least two" in alone.output
    bad = cli("people", "link", "x:Helen Bevan", "x:HelenBevan")
    assert bad.exit_code == 2 and "not an account" in bad.output
    not_linked = cli("people", "unlink", "x:HelenBevan")
    assert not_linked.exit_code == 2 and "not linked to anyone" in not_linked.output
    assert stats(cli) == before

    linked = cli("people", "link", *LINK)
    assert linked.exit_code == 0, linked.output
    assert "bluesky:helen.bsky.social" in linked.output
    assert "mastodon:helen@mastodon.social" in linked.output
    assert "x:HelenBevan" in linked.output
    assert "Figures worked out again for: qi." in linked.output
    after = stats(cli)
    assert after["participants"] == 3
    assert after["original_tweets"] == 4  # the Mastodon and Bluesky copies count as the X post
    assert q2(after)["answers"] == 4 and q2(after)["participants"] == 3
    # The panel's reply to the Bluesky copy answers the X post; the late skeet is her own post.
    assert after["unanswered"] == 2
    top = {p["id"]: p for p in after["top_tweets"]}
    assert TOOT not in top and SKEET not in top and LATE_SKEET in top
    assert top[X_POST]["also"] == [
        {"network": "mastodon", "id": TOOT, "url": TOOT_PAGE},
        {"network": "bluesky", "id": SKEET, "url": SKEET_PAGE},
    ]

    listed = cli("people", "list", "--json")
    people = json.loads(listed.output)
    assert len(people) == 1
    assert [a["label"] for a in people[0]["accounts"]] == [
        "x:HelenBevan",
        "mastodon:helen@mastodon.social",
        "bluesky:helen.bsky.social",
    ]
    assert "x:HelenBevan" in cli("people", "list").output

    # The export keeps every post, each copy naming the post it repeats.
    out = tmp_path / "qi.csv"
    assert cli("export", "qi", "--format", "csv", "--output", str(out)).exit_code == 0
    with out.open(newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert rows[TOOT]["copy_of"] == rows[SKEET]["copy_of"] == X_POST
    assert rows[X_POST]["copy_of"] == rows[LATE_SKEET]["copy_of"] == ""

    # The report counts people and lists the other networks.
    report = tmp_path / "qi.html"
    assert cli("export", "qi", "--format", "html", "--output", str(report)).exit_code == 0
    html = report.read_text()
    assert f'<a href="{SKEET_PAGE}">on Bluesky</a>' in html
    assert "2 cross-posts" in html

    # Unlinking one account: Mastodon counts on its own again; X and Bluesky stay linked.
    unlinked = cli("people", "unlink", "helen@mastodon.social")
    assert unlinked.exit_code == 0, unlinked.output
    partly = stats(cli)
    assert partly["participants"] == 4 and partly["original_tweets"] == 5
    assert cli("people", "unlink", "x:HelenBevan").exit_code == 0
    assert json.loads(cli("people", "list", "--json").output) == []  # Bluesky alone: no link
    assert stats(cli) == before


# ---- linked first: an import and a live chat give the same figures ------------------------------


def test_linked_before_collection_live_equals_import(database_url: str, tmp_path: Path) -> None:
    cli = make_cli_runner(database_url)
    create_chat(cli, "imported")
    store(database_url, "imported", link_first=True)
    imported = {window: stats_of(database_url, "imported", window) for window in ("chat", "all")}
    assert imported["chat"]["participants"] == 3

    create_chat(cli, "qi")
    with HubServer(Settings(database_url=database_url, admin_token=ADMIN)) as server:
        hub = server.hub
        assert hub is not None

        async def collect() -> dict[str, Any]:
            runtime = await hub.runtime("qi")
            # Bluesky first: the copies arrive before the post they repeat.
            for parsed in reversed(batches()):
                await runtime.emit(SourceBatch("test", parsed))
                await runtime.drained()
            assert runtime.figures is not None
            return {
                "figures": {w: runtime.figures.figures(w) for w in ("chat", "all")},
                "latest": runtime.figures.latest(50),
                "queue": runtime.queue(),
            }

        live = server.call(collect())
        stored = {window: stats_of(database_url, "qi", window) for window in ("chat", "all")}
        for window in ("chat", "all"):
            assert live["figures"][window] == stored[window] | {"trending": []}
            assert stored[window] == imported[window] | {"chat": "qi"}
        latest = {p["id"]: p for p in live["latest"]}
        assert set(latest) == {X_POST, SAM_X, LATE_SKEET, PANEL_REPLY}
        assert [a["network"] for a in latest[X_POST]["also"]] == ["mastodon", "bluesky"]
        assert {p["id"] for p in live["queue"]} == {SAM_X, LATE_SKEET}

        with httpx.Client(base_url=server.url, timeout=30) as http:
            posts = http.get("/api/chats/qi/posts").json()
            assert {p["id"] for p in posts["posts"]} == set(latest)
            assert posts["total"] == 4
            shown = next(p for p in posts["posts"] if p["id"] == X_POST)
            assert shown["also"] == latest[X_POST]["also"]


def stats_of(database_url: str, slug: str, window: str) -> dict[str, Any]:
    engine, sessions = open_database(database_url)
    try:
        with sessions() as session:
            return chat_stats(session, get_chat(session, slug), window)  # type: ignore[arg-type]
    finally:
        engine.dispose()


# ---- the admin API: a running chat shows the link at once ---------------------------------------


def test_the_admin_api_links_and_open_chats_reload(database_url: str, tmp_path: Path) -> None:
    create_chat(make_cli_runner(database_url))
    store(database_url)
    with HubServer(Settings(database_url=database_url, admin_token=ADMIN)) as server:
        url = server.url.replace("http://", "ws://") + f"/ws/chats/qi?token={ADMIN}"

        async def published() -> None:
            assert server.hub is not None
            runtime = server.hub.running("qi")
            if runtime is not None:
                await runtime.published()

        async def figures() -> tuple[dict[str, Any], dict[str, Any]]:
            server.call(published())  # the reload's update is out: snapshots show it
            async with websockets.connect(url, max_size=2**24) as ws:
                snapshot = await recv_json(ws)
                return snapshot["figures"], {p["id"]: p for p in snapshot["latest"]}

        before, latest = asyncio.run(figures())
        assert before["participants"] == 5 and TOOT in latest
        auth = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            refused = http.post("/api/people/links", json={"accounts": LINK})
            assert refused.status_code == 401
            unknown = http.post(
                "/api/people/links", json={"accounts": ["x:HelenBevan", "x:ghost"]}, headers=auth
            )
            assert unknown.status_code == 404
            assert "x account 'ghost'" in unknown.json()["error"]["message"]
            empty = http.post("/api/people/links", json={"accounts": []}, headers=auth)
            assert empty.status_code == 422

            linked = http.post("/api/people/links", json={"accounts": LINK}, headers=auth)
            assert linked.status_code == 200, linked.text
            assert linked.json()["chats"] == ["qi"]
            assert len(linked.json()["person"]["accounts"]) == 3
            assert len(http.get("/api/people", headers=auth).json()) == 1
            assert http.get("/api/people").status_code == 401

            after, latest = asyncio.run(figures())
            assert after["participants"] == 3 and after["original_tweets"] == 4
            assert TOOT not in latest and SKEET not in latest
            assert [a["id"] for a in latest[X_POST]["also"]] == [TOOT, SKEET]

            unlinked = http.post(
                "/api/people/unlink", json={"accounts": ["helen.bsky.social"]}, headers=auth
            )
            assert unlinked.status_code == 200, unlinked.text
            partly, latest = asyncio.run(figures())
            assert partly["participants"] == 4
            assert SKEET in latest and [a["id"] for a in latest[X_POST]["also"]] == [TOOT]
