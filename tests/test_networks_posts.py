"""Posts of X, Mastodon and Bluesky as every view shows them (issue 7, step 4): each post object
names its network and links to the post on its own site (only ever an http(s) link); the live
posts agree with the stored ones; the API filters by network and the panel acts on posts whose
ids are URIs; the exports carry a `network` column and the report shows each post's network and
the posts per network."""

from __future__ import annotations

import asyncio
import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pandas as pd
import pytest
import websockets
from bs4 import BeautifulSoup
from sqlalchemy import select

from app.chats import get_chat
from app.config import Settings
from app.db.engine import open_database
from app.db.models import ChatPost
from app.export import export_chat
from app.ingest.parse import Parsed, post_network
from app.links import post_url, web_url
from app.live.figures import LiveFigures
from app.live.runtime import _live_post, _live_posts
from app.report.render import chat_report_html
from app.stats import chat_stats, post_object, posts_query
from tests.helpers import HubServer, recv_json
from tests.networks import (
    BLUESKY_ANSWER,
    BLUESKY_ANSWER_PAGE,
    MASTODON_ANSWER,
    MASTODON_ANSWER_PAGE,
    MASTODON_BOOST,
    X_ANSWER,
    mixed_posts,
    prepare_mixed,
)
from tests.test_export import REQUIRED

ADMIN = "admin-token-for-network-tests-01"
X_ID = "1640779118382354432"
TOOT = "https://mas.to/users/li/statuses/110102280929341779"
SKEET = "at://did:plc:mwaebclmkbcubt4dxh2f3fno/app.bsky.feed.post/3miervztwk22d"
DID = "did:plc:mwaebclmkbcubt4dxh2f3fno"


# ---- post_url, one network at a time ----------------------------------------------------------


@pytest.mark.parametrize(
    ("network", "post_id", "username", "status_url", "expected"),
    [
        ("x", X_ID, "HelenBevanTweets", None, f"https://x.com/HelenBevanTweets/status/{X_ID}"),
        ("x", X_ID, None, None, f"https://x.com/i/web/status/{X_ID}"),
        ("x", X_ID, "javascript:alert(1)", None, f"https://x.com/i/web/status/{X_ID}"),
        ("x", X_ID, "a" * 51, None, f"https://x.com/i/web/status/{X_ID}"),
        ("x", X_ID, "helen", "https://evil.example/", f"https://x.com/helen/status/{X_ID}"),
        ("x", "1640/../../evil", "helen", None, ""),
        (
            "mastodon",
            TOOT,
            "li@mas.to",
            "https://mas.to/@li/110102280929341779",
            "https://mas.to/@li/110102280929341779",
        ),
        ("mastodon", TOOT, "li@mas.to", None, TOOT),
        ("mastodon", TOOT, "li@mas.to", "", TOOT),
        ("mastodon", TOOT, "li@mas.to", "javascript:alert(1)", TOOT),
        ("mastodon", TOOT, "li@mas.to", "JavaScript:alert(1)//https://mas.to", TOOT),
        ("mastodon", TOOT, "li@mas.to", "data:text/html,<script>alert(1)</script>", TOOT),
        ("mastodon", TOOT, "li@mas.to", 'https://mas.to/@li/1" onmouseover="alert(1)', TOOT),
        ("mastodon", TOOT, "li@mas.to", "//mas.to/@li/110102280929341779", TOOT),
        ("mastodon", TOOT, "li@mas.to", "https://li:secret@evil.example/", TOOT),
        ("mastodon", TOOT, "li@mas.to", "https://mas.to:99999/@li/1", TOOT),
        (
            "mastodon",
            "http://old.example/users/li/statuses/1",
            "li@old.example",
            None,
            "http://old.example/users/li/statuses/1",
        ),
        ("mastodon", "javascript://mas.to/%0aalert(1)", "li@mas.to", None, ""),
        (
            "bluesky",
            SKEET,
            "maria.bsky.social",
            None,
            "https://bsky.app/profile/maria.bsky.social/post/3miervztwk22d",
        ),
        (
            "bluesky",
            SKEET,
            "Maria.BSKY.Social",
            None,
            "https://bsky.app/profile/maria.bsky.social/post/3miervztwk22d",
        ),
        (
            "bluesky",
            SKEET,
            "handle.invalid",
            None,
            f"https://bsky.app/profile/{DID}/post/3miervztwk22d",
        ),
        ("bluesky", SKEET, "", None, f"https://bsky.app/profile/{DID}/post/3miervztwk22d"),
        (
            "bluesky",
            SKEET,
            "<script>.example",
            None,
            f"https://bsky.app/profile/{DID}/post/3miervztwk22d",
        ),
        ("bluesky", SKEET, "maria", None, f"https://bsky.app/profile/{DID}/post/3miervztwk22d"),
        (
            "bluesky",
            SKEET,
            "maria.bsky.social",
            "https://evil.example/",
            "https://bsky.app/profile/maria.bsky.social/post/3miervztwk22d",
        ),
        ("bluesky", f"at://{DID}/app.bsky.feed.like/3miervztwk22d", "maria.bsky.social", None, ""),
        ("bluesky", f"at://{DID}/app.bsky.feed.post/3mi/../../x", "maria.bsky.social", None, ""),
        (
            "bluesky",
            "at://maria.bsky.social/app.bsky.feed.post/3miervztwk22d",
            "maria.bsky.social",
            None,
            "",
        ),
        ("threads", "12345", "helen", "https://threads.example/p/1", ""),
    ],
)
def test_post_url_per_network(
    network: str, post_id: str, username: str | None, status_url: str | None, expected: str
) -> None:
    url = post_url(network, post_id, username, status_url)
    assert url == expected
    if url:
        assert web_url(url) == url and urlsplit(url).scheme in ("http", "https")


def test_only_http_urls_become_links() -> None:
    assert web_url("https://mastodon.social/@qihour/110102426419238833")
    assert web_url("http://example.org/x?y=1#z")
    for bad in [
        None,
        42,
        "",
        "javascript:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "ftp://example.org/",
        "https://",
        "https:///path-only",
        "/relative/path",
        "https://example.org/a b",
        "https://example.org/\nx",
        " https://example.org/",
        "https://example.org/<script>",
        "https://user@example.org/",
        "https://example.org/" + "x" * 3000,
    ]:
        assert web_url(bad) is None, bad


# ---- post objects, stored and live ------------------------------------------------------------


def _expected_host(obj: dict[str, Any]) -> str:
    return {"x": "x.com", "bluesky": "bsky.app"}.get(obj["network"], "")


def test_post_objects_name_their_network_and_link_to_its_site(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    prepare_mixed(database_url)
    engine, sessions = open_database(database_url)
    try:
        with sessions() as session:
            chat = get_chat(session, "qi")
            query, _ = posts_query(chat)
            stored = {
                row[1].id: (row[0].network, post_object(*row))
                for row in session.execute(query.where(ChatPost.chat_id == chat.id))
            }
            objects = {post_id: obj for post_id, (_, obj) in stored.items()}
            assert Counter(o["network"] for o in objects.values()).keys() == {
                "x",
                "mastodon",
                "bluesky",
            }
            for post_id, (network, obj) in stored.items():
                assert obj["network"] == network == post_network(post_id)
                assert web_url(obj["url"]) == obj["url"], obj
                if _expected_host(obj):
                    assert urlsplit(obj["url"]).hostname == _expected_host(obj)
            assert objects[X_ANSWER]["url"] == f"https://x.com/newcomer_nhs/status/{X_ANSWER}"
            assert objects[MASTODON_ANSWER]["url"] == MASTODON_ANSWER_PAGE  # the status's url
            assert objects[MASTODON_BOOST]["url"] == MASTODON_BOOST  # a boost has none: its uri
            assert objects[BLUESKY_ANSWER]["url"] == BLUESKY_ANSWER_PAGE
            stats = chat_stats(session, chat, "all")
            tops = stats["top_tweets"] + [p for q in stats["questions"] for p in q["top"]]
            assert tops and all(p == objects[p["id"]] for p in tops)

            # The live figures, loaded as the runtime loads a chat, show the same posts.
            live = LiveFigures(
                slug=chat.slug,
                start=chat.start_at,
                end=chat.end_at,
                hosts=chat.hosts,
                panel=chat.panel,
                questions={q.number: q.text for q in chat.questions},
            )
            for post in _live_posts(session, chat.id):
                live.add(post)
            for post_id, obj in objects.items():
                assert live.post(post_id) == obj
            assert live.figures("all")["top_tweets"] == stats["top_tweets"]
            # Only the Mastodon statuses' payloads are read for their page.
            loaded = list(_live_posts(session, chat.id))
            assert {p.network for p in loaded if p.status_url} == {"mastodon"}
    finally:
        engine.dispose()

    # Posts as the runtime makes them from a new batch carry the same network and link.
    fresh = LiveFigures(
        slug="qi",
        start=chat.start_at,
        end=chat.end_at,
        hosts=[],
        panel=[],
        questions={},
    )
    for parsed in mixed_posts():
        names = {u.id: (u.username, u.name) for u in parsed.users}
        for record in parsed.collected:
            fresh.add(_live_post(record, names, None))
    for post_id, obj in objects.items():
        made = fresh.post(post_id)
        assert made is not None
        assert (made["network"], made["url"]) == (obj["network"], obj["url"])


def test_a_live_post_without_a_network_reads_it_off_its_id() -> None:
    parsed: Parsed = mixed_posts()[2]
    record = parsed.collected[0]
    post = _live_post(record, {}, None)
    post.network = ""
    live = LiveFigures(
        slug="qi",
        start=record.created_at,
        end=record.created_at,
        hosts=[],
        panel=[],
        questions={},
    )
    live.add(post)
    made = live.post(record.id)
    assert made is not None and made["network"] == "bluesky"
    assert made["url"].startswith("https://bsky.app/profile/did:plc:")


# ---- the API: filters, the panel's actions, the WebSocket ------------------------------------


@pytest.fixture
def server(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    prepare_mixed(database_url)
    with HubServer(Settings(database_url=database_url, admin_token=ADMIN)) as live:
        yield live


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_api_filters_by_network_and_the_panel_acts_on_every_network(
    server: HubServer,
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        every = http.get("/api/chats/qi/posts", params={"limit": 500}).json()
        assert every["total"] == len(every["posts"]) > 20
        by_network: dict[str, list[dict[str, Any]]] = {}
        for network in ("x", "mastodon", "bluesky"):
            found = http.get(
                "/api/chats/qi/posts", params={"network": network, "limit": 500}
            ).json()
            assert found["posts"] and found["total"] == len(found["posts"])
            assert {p["network"] for p in found["posts"]} == {network}
            by_network[network] = found["posts"]
        assert sorted(p["id"] for ps in by_network.values() for p in ps) == sorted(
            p["id"] for p in every["posts"]
        )
        # Combined with the other filters: the Bluesky answers to Q2.
        q2 = http.get("/api/chats/qi/posts", params={"network": "bluesky", "question": 2}).json()
        assert q2["total"] > 0
        assert all(p["network"] == "bluesky" and p["question"] == 2 for p in q2["posts"])
        # A Mastodon handle is an author.
        li = http.get("/api/chats/qi/posts", params={"author": "@li@mas.to"}).json()
        assert li["total"] > 0 and {p["username"] for p in li["posts"]} == {"li@mas.to"}
        bad = http.get("/api/chats/qi/posts", params={"network": "threads"})
        assert bad.status_code == 422

        unanswered = http.get("/api/chats/qi/unanswered", params={"limit": 500}).json()
        split = []
        for network in ("x", "mastodon", "bluesky"):
            part = http.get(
                "/api/chats/qi/unanswered", params={"network": network, "limit": 500}
            ).json()["posts"]
            assert part and {p["network"] for p in part} == {network}
            split += [p["id"] for p in part]
        assert sorted(split) == sorted(p["id"] for p in unanswered["posts"])

        # The panel's actions reach posts whose ids are URIs (slashes and all).
        token = http.post(
            "/api/chats/qi/panel-tokens", json={"name": "Helen"}, headers=_auth(ADMIN)
        ).json()["token"]
        for post_id in (MASTODON_ANSWER, BLUESKY_ANSWER, X_ANSWER):
            path = f"/api/chats/qi/posts/{quote(post_id, safe='')}"
            claimed = http.post(f"{path}/claim", headers=_auth(token))
            assert claimed.status_code == 200, claimed.text
            assert claimed.json()["claimed_by"] == "Helen"
            assert claimed.json()["id"] == post_id
            assert claimed.json()["network"] == post_network(post_id)
            hidden = http.put(f"{path}/hidden", json={"hidden": True}, headers=_auth(token))
            assert hidden.status_code == 200 and hidden.json()["hidden"] is True
            tagged = http.put(f"{path}/question", json={"question": 3}, headers=_auth(token))
            assert tagged.status_code == 200, tagged.text
            assert http.delete(f"{path}/question", headers=_auth(token)).status_code == 200
            assert http.delete(f"{path}/claim", headers=_auth(token)).status_code == 200
        missing = http.post(
            f"/api/chats/qi/posts/{quote(MASTODON_ANSWER + '9', safe='')}/claim",
            headers=_auth(token),
        )
        assert missing.status_code == 404

    async def snapshot() -> dict[str, Any]:
        url = server.url.replace("http://", "ws://") + f"/ws/chats/qi?token={ADMIN}"
        async with websockets.connect(url, max_size=2**24) as ws:
            return await recv_json(ws)

    first = asyncio.run(snapshot())
    queue = {p["id"]: p for p in first["queue"]}
    assert {p["network"] for p in queue.values()} == {"x", "mastodon", "bluesky"}
    assert queue[MASTODON_ANSWER]["url"] == MASTODON_ANSWER_PAGE
    assert queue[BLUESKY_ANSWER]["url"] == BLUESKY_ANSWER_PAGE
    latest = first["latest"]
    assert latest and all(p["network"] == post_network(p["id"]) for p in latest)
    assert all(web_url(p["url"]) for p in latest)
    stored = {p["id"]: p for p in every["posts"]}
    for post in latest:
        assert (post["network"], post["url"]) == (
            stored[post["id"]]["network"],
            stored[post["id"]]["url"],
        )


# ---- exports and the report ---------------------------------------------------------------------


def test_exports_carry_each_posts_network(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    prepare_mixed(database_url)
    engine, sessions = open_database(database_url)
    try:
        with sessions() as session:
            chat = get_chat(session, "qi")
            for fmt in ("csv", "json", "xlsx"):
                export_chat(session, chat, fmt, tmp_path / f"qi.{fmt}")
    finally:
        engine.dispose()

    with (tmp_path / "qi.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert list(reader.fieldnames or [])[: len(REQUIRED) + 1] == [*REQUIRED, "network"]
        rows = list(reader)
    assert {row["network"] for row in rows} == {"x", "mastodon", "bluesky"}
    assert all(row["network"] == post_network(row["id"]) for row in rows)
    urls = {row["id"]: row["url"] for row in rows}
    assert urls[MASTODON_ANSWER] == MASTODON_ANSWER_PAGE
    assert urls[BLUESKY_ANSWER] == BLUESKY_ANSWER_PAGE
    assert all(web_url(url) == url for url in urls.values())

    document = json.loads((tmp_path / "qi.json").read_text(encoding="utf-8"))
    assert [(p["id"], p["network"]) for p in document["posts"]] == [
        (row["id"], row["network"]) for row in rows
    ]
    assert all("network" in p for p in document["stats_all"]["top_tweets"])

    posts = pd.read_excel(tmp_path / "qi.xlsx", sheet_name="Posts")
    assert list(posts.columns[: len(REQUIRED) + 1]) == [*REQUIRED, "network"]
    assert Counter(posts["network"]) == Counter(row["network"] for row in rows)


def test_the_report_shows_each_posts_network_and_the_posts_per_network(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    prepare_mixed(database_url)
    engine, sessions = open_database(database_url)
    try:
        with sessions() as session:
            chat = get_chat(session, "qi")
            # As `chat create --mastodon mastodon.social,mas.to --bluesky` names them (not saved).
            chat.mastodon_servers = ["mastodon.social", "mas.to"]
            chat.bluesky = True
            html = chat_report_html(session, chat)
            counts = Counter(
                session.scalars(select(ChatPost.network).where(ChatPost.chat_id == chat.id))
            )
    finally:
        engine.dispose()
    soup = BeautifulSoup(html, "html.parser")
    section = soup.select_one("#collection")
    assert section is not None
    collection = " ".join(section.get_text(" ").split())
    assert "from the hashtag timelines of mastodon.social, mas.to" in collection
    assert "Bluesky posts were collected from Bluesky's post search" in collection
    assert "no live source" not in collection
    assert "followed on 3 networks" in collection
    table = soup.select_one("#collection table#networks")
    assert table is not None
    shown = {
        str(row["data-network"]): [cell.get_text() for cell in row.find_all("td")]
        for row in table.select("tbody tr")
    }
    assert list(shown) == ["x", "mastodon", "bluesky"]
    for network, cells in shown.items():
        assert cells[0] == {"x": "X", "mastodon": "Mastodon", "bluesky": "Bluesky"}[network]
        assert int(cells[1].replace(",", "")) == counts[network]

    badges = {b.get_text() for b in soup.select(".badge.net")}
    assert badges == {"X", "Mastodon", "Bluesky"}
    # Each post shown links to its own site, named by its network; only http(s) links.
    linked = 0
    for post in soup.select(".post"):
        badge = post.select_one(".badge.net")
        assert badge is not None
        link = post.select_one(".stats a")
        if link is None:
            continue
        linked += 1
        assert link.get_text() == f"on {badge.get_text()}"
        assert web_url(link["href"]) == link["href"]
    assert linked > 0
    for anchor in soup.select("a[href]"):
        href = str(anchor["href"])
        assert href.startswith("#") or web_url(href) == href, href
